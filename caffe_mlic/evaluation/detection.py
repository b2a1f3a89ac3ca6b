"""Pascal VOC detection evaluation (AP) and CorLoc; COCO's metrics for a
ground truth built from COCO.

Boxes are x1 y1 x2 y2, 0-based inclusive pixels, so a box is x2 - x1 + 1
wide (the VOC "+1" convention, used for every IoU here).

Result files: the devkit's one file per class, comp4_det_<set>_<class>.txt,
one detection per line, `image_id score x1 y1 x2 y2` in 1-based inclusive
pixels (ours + 1); or one COCO results JSON, a list of {"image_id",
"category_id", "bbox": [x, y, w, h], "score"} with the COCO image and
category ids a ground truth built from COCO keeps (gt.json "coco_id",
"category_ids"). bbox is x = x1, y = y1, w = x2 - x1 + 1, h = y2 - y1 + 1:
our inclusive pixel boxes as Detectron converts them for COCO (COCO's own
tools read boxes as continuous, x2 = x + w, so a box is one pixel wider
there); reading inverts it, x2 = x + w - 1 (a w under 1 counts as 1).

Rules
- nms: greedy; the highest score is kept and every remaining box whose IoU
  with it is > the threshold is dropped; kept indices in descending score
  order, equal scores: the earlier index first.
- AP of a class: its detections sorted by score, descending (stable). A
  detection's best match is the ground-truth box of the class in its image
  with the highest IoU (the first such box on ties). At IoU > 0.5 with a
  difficult box the detection is ignored (neither TP nor FP); with a box not
  matched yet it is a TP and matches the box; with a box already matched it
  is a duplicate, a FP; at IoU <= 0.5 (or no box) a FP. Recall is over the
  non-difficult boxes. AP07: the VOC2007 11-point mean of the highest
  precision at recall >= t, t = 0, 0.1, ..., 1 (exact tenths: recall k/10
  reaches t = k/10). AP: the area under the monotone precision envelope
  (VOC2010+). A class with no non-difficult box has no AP (None) and is
  left out of the means.
- CorLoc of a class (as OICR and wetectron compute it): over the images that
  contain the class (any box of it, difficult included), the fraction whose
  top-scoring detection of the class (the earliest in the file on ties)
  has IoU > 0.5 with some box of the class in that image; an image with no
  detection of the class counts as wrong. A class in no image has no
  CorLoc. Means are over the classes that have one.
- COCO (a ground truth built from COCO): COCOeval's twelve bbox numbers
  (COCO_METRICS: AP at IoU .50:.95, AP50, AP75, AP small / medium / large,
  AR at 1 / 10 / 100 detections, AR small / medium / large) from
  pycocotools itself, on the ground truth and detections in COCO's [x, y,
  w, h] as above (coco_ground_truth says what differs from COCO's files).

Ground truth: a VOC folder needs only Annotations/ and ImageSets/Main/ (the
size in each XML's <size>), or the gt.json of `datalist build`.

Results are in percent.
"""
import contextlib
import io
import json
import math
import os
from typing import List, NamedTuple, Optional

import numpy as np

from caffe_mlic.errors import InputError, Problem, RunError, UsageError, folder_problem
from caffe_mlic.fileio import atomic_write, open_regular, read_json, text_lines, text_number

IOU_THRESHOLD = 0.5
RESULT_PREFIX = 'comp4_det_'
RESULT_FIELDS = ('image_id', 'score', 'x1', 'y1', 'x2', 'y2')
# The largest coordinate (in pixels, either sign) a box may have. No image we
# read is that wide (imageio caps them at 2^28 pixels), so a box beyond it is
# a detector's or a writer's bug; within it a box's area (< 2^66) and sums of
# areas stay far from float64's overflow (a box at 1e308 gave overflow
# warnings and a NaN IoU).
MAX_COORDINATE = 2 ** 31


class ClassDetections(NamedTuple):
    """The detections of one class: image_ids (K strings), scores (K,),
    boxes (K, 4) 0-based inclusive."""
    image_ids: List[str]
    scores: np.ndarray
    boxes: np.ndarray


class GroundTruth(NamedTuple):
    """Ground-truth boxes of a set of images, as flat arrays over the G boxes:
    image (G,) index into image_ids, label (G,) index into classes, boxes
    (G, 4) 0-based inclusive, difficult (G,) bool. source names the input."""
    classes: List[str]
    image_ids: List[str]
    image: np.ndarray
    label: np.ndarray
    boxes: np.ndarray
    difficult: np.ndarray
    source: str
    coco_image_ids: Optional[List[int]] = None   # per image: its COCO id (COCO ground truth)
    category_ids: Optional[List[Optional[int]]] = None   # per class: its COCO category id


# ------------------------------------------------------------------ boxes

def box_iou(a, b):
    """IoU of boxes a (..., 4) and b (..., 4), broadcast against each other,
    with the +1 pixel convention."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    return inter / (area_a + area_b - inter)


def nms(boxes, scores, iou_threshold):
    """Indices of the boxes greedy NMS keeps, in descending score order."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64).reshape(-1), kind='stable')
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.array(keep, np.int64)


def _same_image_pairs(det_image, gt_image, n_images):
    """(detection index, box index) of every pair in the same image; a
    detection's pairs are consecutive, its boxes in their order in gt_image."""
    gt_order = np.argsort(gt_image, kind='stable')
    counts = np.bincount(gt_image, minlength=n_images)
    starts = np.cumsum(counts) - counts
    per_det = counts[det_image]
    det = np.repeat(np.arange(len(det_image)), per_det)
    offset = np.arange(per_det.sum()) - np.repeat(np.cumsum(per_det) - per_det, per_det)
    return det, gt_order[np.repeat(starts[det_image], per_det) + offset]


def _best_match(det_image, det_boxes, gt_image, gt_boxes, n_images):
    """Per detection: (index of its best box in gt_* or -1, that IoU or 0)."""
    det, gt = _same_image_pairs(det_image, gt_image, n_images)
    iou = box_iou(det_boxes[det], gt_boxes[gt])
    order = np.lexsort((np.arange(len(det)), -iou, det))
    first = order[np.unique(det[order], return_index=True)[1]]
    best = np.full(len(det_image), -1, np.int64)
    best_iou = np.zeros(len(det_image))
    best[det[first]], best_iou[det[first]] = gt[first], iou[first]
    return best, best_iou


# ------------------------------------------------------------------ AP

def ap_voc07(tp, npos, precision):
    """11-point AP from cumulative TP counts (K,), the number of positives
    and the precision (K,): recall >= k/10 tested exactly as 10 tp >= k npos."""
    reached = 10 * np.asarray(tp)[None, :] >= np.arange(11)[:, None] * npos
    return float(np.where(reached, np.asarray(precision)[None, :], 0.0).max(axis=1, initial=0).mean())


def ap_area(recall, precision):
    """All-point AP: the area under the monotone precision envelope."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def _class_ap(image, scores, boxes, gt_image, gt_boxes, gt_difficult, n_images):
    """(AP07, AP) of one class, NaN when it has no non-difficult box."""
    npos = int((~gt_difficult).sum())
    if npos == 0:
        return float('nan'), float('nan')
    order = np.argsort(-scores, kind='stable')
    best, best_iou = _best_match(image[order], boxes[order], gt_image, gt_boxes, n_images)
    hit = best_iou > IOU_THRESHOLD
    ignored = hit & gt_difficult[np.maximum(best, 0)]
    candidate = np.flatnonzero(hit & ~ignored)
    tp = np.zeros(len(order), bool)
    tp[candidate[np.unique(best[candidate], return_index=True)[1]]] = True
    tp = tp[~ignored]
    tp_count = np.cumsum(tp)
    precision = tp_count / np.arange(1, len(tp) + 1)
    return ap_voc07(tp_count, npos, precision), ap_area(tp_count / npos, precision)


def _class_corloc(image, scores, boxes, gt_image, gt_boxes, n_images):
    """CorLoc of one class, NaN when no image contains it."""
    images = np.unique(gt_image)
    if images.size == 0:
        return float('nan')
    order = np.argsort(-scores, kind='stable')
    top_image, first = np.unique(image[order], return_index=True)
    top = order[first][np.isin(top_image, images)]
    _, best_iou = _best_match(image[top], boxes[top], gt_image, gt_boxes, n_images)
    return float((best_iou > IOU_THRESHOLD).sum() / images.size)


def _image_indices(gt, image_ids, where):
    """Indices into gt.image_ids of image_ids; InputError for an unknown one."""
    ids = np.asarray(gt.image_ids, str)
    order = np.argsort(ids)
    wanted = np.asarray(list(image_ids), str)
    pos = np.clip(np.searchsorted(ids[order], wanted), 0, max(len(ids) - 1, 0))
    found = ids[order][pos] == wanted if len(ids) else np.zeros(len(wanted), bool)
    if not found.all():
        missing = wanted[~found]
        raise InputError('%s: image id %r is not an image of %s%s' % (
            where, str(missing[0]), gt.source,
            '' if len(missing) == 1 else ' (and %d more detections of unknown images)' % (len(missing) - 1)))
    return order[pos]


def evaluate_detections(gt, detections):
    """AP07, AP and CorLoc of detections ({class name: ClassDetections}; a
    class not in it has none) against GroundTruth gt: {'AP07', 'AP',
    'CorLoc' (means), 'AP07_per_class', 'AP_per_class', 'CorLoc_per_class',
    'classes'}, in percent, None where undefined."""
    unknown = sorted(set(detections) - set(gt.classes))
    if unknown:
        raise InputError('detections of %s, not a class of %s' % (', '.join(map(repr, unknown)), gt.source))
    n = len(gt.image_ids)
    ap07, ap, corloc = [], [], []
    for c, name in enumerate(gt.classes):
        d = detections.get(name)
        if d is None or len(d.scores) == 0:
            image, scores, boxes = np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 4))
        else:
            image = _image_indices(gt, d.image_ids, 'detections of %s' % name)
            scores = np.asarray(d.scores, np.float64).reshape(-1)
            boxes = np.asarray(d.boxes, np.float64).reshape(-1, 4)
        mine = gt.label == c
        a07, a = _class_ap(image, scores, boxes, gt.image[mine], gt.boxes[mine], gt.difficult[mine], n)
        ap07.append(a07)
        ap.append(a)
        corloc.append(_class_corloc(image, scores, boxes, gt.image[mine], gt.boxes[mine], n))

    def percent(values):
        return [None if math.isnan(v) else 100 * v for v in values]

    def mean(values):
        kept = [v for v in values if not math.isnan(v)]
        return 100 * float(np.mean(kept)) if kept else None
    return {'AP07': mean(ap07), 'AP': mean(ap), 'CorLoc': mean(corloc),
            'AP07_per_class': percent(ap07), 'AP_per_class': percent(ap),
            'CorLoc_per_class': percent(corloc), 'classes': list(gt.classes)}


# ------------------------------------------------------------------ result files

def result_file_name(image_set, class_name):
    return '%s%s_%s.txt' % (RESULT_PREFIX, image_set, class_name)


def _number_text(value):
    return '%.9g' % value


def write_voc_results(results_dir, image_set, detections, classes):
    """Write one devkit result file per class of ``classes`` (empty for a class
    without detections), each atomically; detections: {class: ClassDetections},
    boxes 0-based. Returns the paths."""
    problems = []
    for name, d in detections.items():
        if name not in classes:
            problems.append('detections of %r, which is not in the class list' % name)
            continue
        bad = [i for i in d.image_ids if not i or any(ch.isspace() for ch in i)]
        if bad:
            problems.append('image id %r of %s cannot be written (empty or has whitespace)' % (bad[0], name))
        if np.asarray(d.boxes).reshape(-1, 4).shape[0] != len(d.image_ids) or len(d.scores) != len(d.image_ids):
            problems.append('detections of %s: %d image ids, %d scores, %d boxes'
                            % (name, len(d.image_ids), len(d.scores), np.asarray(d.boxes).size // 4))
    if problems:
        raise InputError(problems=problems, what='detections')
    paths = []
    for name in classes:
        path = os.path.join(results_dir, result_file_name(image_set, name))
        d = detections.get(name)
        with atomic_write(path) as f:
            if d is not None:
                boxes = np.asarray(d.boxes, np.float64).reshape(-1, 4) + 1
                for image_id, score, box in zip(d.image_ids, np.asarray(d.scores).reshape(-1), boxes):
                    f.write(' '.join([image_id] + [_number_text(v) for v in (score, *box)]) + '\n')
        paths.append(path)
    return paths


def find_result_set(results_dir, classes):
    """The <set> of the comp4_det_<set>_<class>.txt files in results_dir: the
    one set with a file for every class, else the only set named at all."""
    try:
        names = set(os.listdir(results_dir))
    except OSError as e:
        raise InputError('%s: cannot list the results folder: %s' % (results_dir, e.strerror or e))
    sets = set()
    for file_name in names:
        for c in classes:
            suffix = '_%s.txt' % c
            if file_name.startswith(RESULT_PREFIX) and file_name.endswith(suffix) \
                    and len(file_name) > len(RESULT_PREFIX) + len(suffix):
                sets.add(file_name[len(RESULT_PREFIX):-len(suffix)])
    complete = {s for s in sets if all(result_file_name(s, c) in names for c in classes)}
    if len(complete) == 1 or (not complete and len(sets) == 1):
        return (complete or sets).pop()
    raise UsageError('%s holds %s: name the image set' % (
        results_dir, 'no %s<set>_<class>.txt result files' % RESULT_PREFIX if not sets
        else 'result files of several image sets (%s)' % ', '.join(sorted(complete or sets))), 'image_set')


def _foreign_result_files(results_dir, image_set, classes):
    """The comp4_det_<image_set>_<class>.txt files in results_dir whose class
    is not one of ``classes`` (a name ending in a known class's suffix is
    taken for another set's file of that class)."""
    prefix = result_file_name(image_set, '')[:-len('.txt')]
    try:
        names = os.listdir(results_dir)
    except OSError:
        return []
    known = {'_%s.txt' % c for c in classes}
    return sorted(n for n in names if n.startswith(prefix) and n.endswith('.txt') and len(n) > len(prefix) + 4
                  and not any(n.endswith(k) for k in known))


def _parse_result_line(path, no, line, known_ids):
    """(image_id, score, x1, y1, x2, y2) of a line (1-based box), or (None, problems)."""
    parts = line.split()
    if len(parts) != len(RESULT_FIELDS):
        return None, [Problem(path, no, None, 'expected %d fields (%s), got %d'
                              % (len(RESULT_FIELDS), ' '.join(RESULT_FIELDS), len(parts)))]
    problems, values = [], []
    for name, token in zip(RESULT_FIELDS[1:], parts[1:]):
        try:
            value = text_number(token)
        except ValueError:
            value = None
        if value is None:
            problems.append(Problem(path, no, name, '%r is not a number%s' % (
                token, " (digit separators '_' are not allowed)" if '_' in token else '')))
            continue
        if not math.isfinite(value):
            problems.append(Problem(path, no, name, '%r is not a finite number' % token))
        elif name != 'score' and abs(value) > MAX_COORDINATE:
            problems.append(Problem(path, no, name, '%r is not a pixel coordinate (beyond +-2^31)' % token))
        values.append(value)
    if parts[0] not in known_ids:
        problems.append(Problem(path, no, 'image_id', "'%s' is not an image of the ground truth" % parts[0]))
    if not problems:
        x1, y1, x2, y2 = values[1:]
        for lo, hi, axis in ((x1, x2, 'x'), (y1, y2, 'y')):
            if hi < lo:
                problems.append(Problem(path, no, None, '%s2 = %s < %s1 = %s'
                                        % (axis, _number_text(hi), axis, _number_text(lo))))
    return (None, problems) if problems else ((parts[0], *values), [])


def read_voc_results(results_dir, image_set, classes, image_ids):
    """{class: ClassDetections} of the result files in results_dir, boxes
    0-based. Every malformed line (field count, a number that is not one or
    not finite, x2 < x1 or y2 < y1, '1_0'), every image id not in image_ids,
    every missing file and every result file of a class not in ``classes`` is
    reported together, with file:line. A UTF-8 BOM is skipped."""
    known = set(image_ids)
    problems, out = [], {}
    for name in classes:
        path = os.path.join(results_dir, result_file_name(image_set, name))
        try:
            # (surrogateescape: an image id that is not UTF-8 is written by
            # `detect` as its bytes, and read back as the same str as gt.json's)
            with open_regular(path, encoding='utf-8', errors='surrogateescape') as f:   # a FIFO would block
                text = f.read()
            lines = text_lines(text[1:] if text.startswith('\ufeff') else text)   # a BOM
        except FileNotFoundError:
            problems.append(Problem(path, None, None, 'no result file for class %r' % name))
            continue
        except (OSError, UnicodeDecodeError) as e:
            problems.append(Problem(path, None, None, 'cannot read: %s' % (getattr(e, 'strerror', None) or e)))
            continue
        rows = []
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            row, bad = _parse_result_line(path, no, line, known)
            problems.extend(bad)
            if row:
                rows.append(row)
        values = np.array([r[1:] for r in rows], np.float64).reshape(-1, 5)
        out[name] = ClassDetections([r[0] for r in rows], values[:, 0], values[:, 1:] - 1)
    prefix = result_file_name(image_set, '')[:-len('.txt')]
    for file_name in _foreign_result_files(results_dir, image_set, classes):
        problems.append(Problem(os.path.join(results_dir, file_name), None, None,
                                'results of class %r, which is not in the class list (%s): evaluating '
                                'without it would report a mean over the other classes; remove the file, '
                                'or give the class list that has it'
                                % (file_name[len(prefix):-len('.txt')], _examples(list(classes)))))
    if problems:
        raise InputError(problems=problems, what='detection results')
    return out


# ------------------------------------------------------------------ ground truth

def ground_truth(classes, image_ids, objects, source, coco_image_ids=None, category_ids=None):
    """GroundTruth of image_ids with objects[i] = [(class name, box, difficult)]."""
    class_index = {c: k for k, c in enumerate(classes)}
    rows = [(i, class_index[name], box, bool(difficult))
            for i, objs in enumerate(objects) for name, box, difficult in objs]
    return GroundTruth(list(classes), list(image_ids),
                       np.array([r[0] for r in rows], np.int64),
                       np.array([r[1] for r in rows], np.int64),
                       np.array([r[2] for r in rows], np.float64).reshape(-1, 4),
                       np.array([r[3] for r in rows], bool), source,
                       None if coco_image_ids is None else list(coco_image_ids),
                       None if category_ids is None else list(category_ids))


def read_voc_ground_truth(root, image_set, classes=None):
    """GroundTruth of a VOC image set, as the devkit reads it: the ids of
    ROOT/ImageSets/Main/<set>.txt and their ROOT/Annotations/<id>.xml, nothing
    else (no JPEGImages/). Image id = the VOC id. The image size, against
    which boxes are checked, is the XML's <size>; only an XML without one
    falls back to its image (as annotations.read_voc finds it). Classes:
    ``classes``, else ROOT/classes.txt, else the 20 VOC classes. Every problem
    is reported together; files missing from a folder as one line with
    their count and a few names."""
    from caffe_mlic.data import annotations as ann
    if classes is None:
        own = os.path.join(root, 'classes.txt')
        # lexists: a classes.txt that is a folder, a FIFO or a broken link is an error of its reader
        classes = ann.read_class_list(own) if os.path.lexists(own) else list(ann.VOC_CLASSES)
        class_source = own if os.path.lexists(own) else 'the 20 Pascal VOC classes'
    else:
        class_source = 'the class list'
    set_file = ann.voc_set_file(root, image_set)
    ann_dir = os.path.join(root, 'Annotations')
    ids = ann.one_per_line(set_file, 'image set', 'image id')
    if not os.path.isdir(ann_dir):
        raise InputError('%s: %s (a VOC folder holds Annotations/ and ImageSets/Main/)' % (
            ann_dir, folder_problem(ann_dir)))
    present = set(os.listdir(ann_dir))
    problems = ann.ProblemList()
    missing = [(no, i) for no, i in ids if i + '.xml' not in present]
    if len(missing) == 1:
        problems.add(set_file, missing[0][0], None, 'annotation of image id %s not found: %s'
                     % (missing[0][1], os.path.join(ann_dir, missing[0][1] + '.xml')))
    elif missing:
        problems.add(ann_dir, None, None, '%d annotation files missing (of the %d that %s lists), e.g. %s'
                     % (len(missing), len(ids), set_file, _examples([i + '.xml' for _, i in missing])))
    parsed, no_size, class_set = [], [], set(classes)
    for no, image_id in ids:
        if image_id + '.xml' not in present:
            continue
        xml_path = os.path.join(ann_dir, image_id + '.xml')
        objects, size_from = _read_voc_xml(root, image_id, xml_path, class_set, class_source, problems)
        if size_from is not None:    # no <size> and no image to take it from
            no_size.append((xml_path, size_from))
        elif objects is not None:
            parsed.append((image_id, objects))
    if len(no_size) == 1:
        problems.add(no_size[0][0], None, '<size>', 'missing, and no image to read the size from (%s not '
                     'found)' % no_size[0][1])
    elif no_size:
        problems.add(ann_dir, None, None, '%d annotation files have no <size> and no image in %s to read it '
                     'from, e.g. %s' % (len(no_size), os.path.join(root, 'JPEGImages'),
                                        _examples([os.path.basename(x) for x, _ in no_size])))
    if problems:
        raise InputError(problems=problems, what='annotations' if len(problems) > 1 else None)
    return ground_truth(classes, [i for i, _ in parsed], [o for _, o in parsed],
                        'VOC %s set %s' % (root, image_set))


def _examples(names, count=3):
    """'a, b, c ...': the first few of names, '...' when there are more."""
    return ', '.join(names[:count]) + (' ...' if len(names) > count else '')


def _read_voc_xml(root, image_id, xml_path, class_set, class_source, problems):
    """(objects [(class, 0-based box, difficult)], None) of a VOC annotation;
    (None, image path) when it has no <size> and that image is not there;
    (None, None) after adding its problems."""
    from caffe_mlic.data import annotations as ann
    from caffe_mlic.data.imageio import image_size
    xml = ann.parse_voc_xml(xml_path, problems)
    if xml is None:
        return None, None
    before = len(problems)
    size = xml.find('size')
    w = h = None
    if size is not None:
        w = ann.xml_text(size, 'width', xml_path, '<size>', problems, int, required=False)
        h = ann.xml_text(size, 'height', xml_path, '<size>', problems, int, required=False)
    if len(problems) > before:
        return None, None
    if w is None or h is None:      # the devkit needs no size; we check boxes against it
        filename = ann.xml_text(xml, 'filename', xml_path, None, problems, required=False)
        image = ann.find_voc_image(root, image_id, filename)
        if not os.path.isfile(image):
            return None, image
        try:
            w, h = image_size(image)
        except Exception as e:  # noqa: BLE001  PIL raises several types for bad files
            problems.add(xml_path, None, '<size>', 'missing, and the image %s is unreadable: %s' % (image, e))
            return None, None
    if w < 1 or h < 1:
        problems.add(xml_path, None, '<size>', '%dx%d is not a valid image size' % (w, h))
        return None, None
    objects = [(o.name, o.box, o.difficult)
               for o in ann.voc_objects(xml, xml_path, w, h, class_set, class_source, problems)]
    return (None, None) if len(problems) > before else (objects, None)


def read_gt_json(path):
    """GroundTruth of a `datalist build` gt.json; image id = the file stem of "path"."""
    def fail(message, field=None):
        raise InputError(problems=[Problem(path, None, field, message)])
    data = read_json(path, 'ground truth')
    if not isinstance(data, dict) or not isinstance(data.get('classes'), list) \
            or not isinstance(data.get('images'), list):
        fail('expected {"classes": [...], "images": [...]}')
    classes = data['classes']
    if not classes or not all(isinstance(c, str) for c in classes) or len(set(classes)) != len(classes):
        fail('must be a non-empty list of distinct class names', '"classes"')
    class_set = set(classes)
    problems, ids, objects, seen = [], [], [], {}
    for k, image in enumerate(data['images']):
        field = 'images[%d]' % k
        if not isinstance(image, dict) or not isinstance(image.get('path'), str) \
                or not isinstance(image.get('objects', []), list):
            problems.append(Problem(path, None, field, 'needs a string "path" and a list "objects"'))
            continue
        image_id = os.path.splitext(os.path.basename(image['path']))[0]
        if image_id in seen:
            problems.append(Problem(path, None, field, 'image id %r (the file stem of "path") repeats '
                                    'images[%d]' % (image_id, seen[image_id])))
            continue
        seen[image_id] = k
        w, h = image.get('width'), image.get('height')     # (datalist build writes both)
        if ('width' in image or 'height' in image) and not (_is_int(w) and _is_int(h) and w > 0 and h > 0):
            problems.append(Problem(path, None, field, '"width" and "height" must be positive integers, '
                                    'got %s and %s' % (json.dumps(w), json.dumps(h))))
            continue
        objs = []
        for j, obj in enumerate(image.get('objects', [])):
            where = '%s.objects[%d]' % (field, j)
            box = obj.get('box') if isinstance(obj, dict) else None
            if not isinstance(obj, dict) or obj.get('class') not in class_set:
                problems.append(Problem(path, None, where, 'needs a "class" from "classes"'))
            elif not (isinstance(box, list) and len(box) == 4 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    and abs(v) <= MAX_COORDINATE for v in box)
                    and box[0] <= box[2] and box[1] <= box[3]):
                problems.append(Problem(path, None, where, '"box" must be [x1, y1, x2, y2] in pixels '
                                        '(within +-2^31) with x1 <= x2, y1 <= y2, got %r' % (box,)))
            elif w is not None and not (0 <= box[0] and 0 <= box[1] and box[2] <= w - 1 and box[3] <= h - 1):
                problems.append(Problem(path, None, where, '"box" %r is not inside the %dx%d image (0-based: '
                                        'need 0 <= x1, x2 <= width - 1, same for y)' % (box, w, h)))
            elif not isinstance(obj.get('difficult', False), bool):
                problems.append(Problem(path, None, where, '"difficult" must be true or false, got %s'
                                        % json.dumps(obj['difficult'])))
            else:
                objs.append((obj['class'], box, obj.get('difficult', False)))
        ids.append(image_id)
        objects.append(objs)
    if not ids and not problems:
        problems.append(Problem(path, None, '"images"', 'is empty'))
    coco_ids = _gt_coco_image_ids(path, data['images'], problems)
    category_ids = _gt_category_ids(path, data, len(classes), problems)
    if problems:
        raise InputError(problems=problems, what='ground truth')
    return ground_truth(classes, ids, objects, path, coco_ids, category_ids)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _gt_coco_image_ids(path, images, problems):
    """Each image's "coco_id" (all images or none have one), or None."""
    have = [isinstance(im, dict) and 'coco_id' in im for im in images]
    if not any(have):
        return None
    out, seen = [], {}
    for k, image in enumerate(images):
        cid = image.get('coco_id') if isinstance(image, dict) else None
        if not _is_int(cid):
            problems.append(Problem(path, None, 'images[%d]' % k, '"coco_id" must be an integer (other '
                                    'images have one), got %s' % json.dumps(cid)))
        elif cid in seen:
            problems.append(Problem(path, None, 'images[%d]' % k, '"coco_id" %d repeats images[%d]'
                                    % (cid, seen[cid])))
        else:
            seen[cid] = k
        out.append(cid)
    return out


def _gt_category_ids(path, data, count, problems):
    """"category_ids" (one integer or null per class), or None."""
    if 'category_ids' not in data:
        return None
    ids = data['category_ids']
    if not (isinstance(ids, list) and len(ids) == count and all(i is None or _is_int(i) for i in ids)
            and len({i for i in ids if i is not None}) == sum(i is not None for i in ids)):
        problems.append(Problem(path, None, '"category_ids"', 'must list %d distinct integers (or null), '
                                'one per class' % count))
        return None
    return ids


# ------------------------------------------------------------------ COCO results

COCO_RESULTS = 'coco_results.json'


def box_to_coco(box):
    """[x, y, w, h] of an inclusive 0-based box (module docstring)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1 + 1, y2 - y1 + 1]


def box_from_coco(bbox):
    """The inclusive 0-based box of a COCO [x, y, w, h]: box_to_coco inverted."""
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + max(w, 1.0) - 1, y + max(h, 1.0) - 1]


def coco_ids(gt):
    """({our image id: COCO image id}, {class: COCO category id}) of a
    ground truth built from COCO; InputError when it has no COCO ids."""
    if gt.coco_image_ids is None or gt.category_ids is None:
        raise InputError('%s has no COCO image and category ids: COCO results need the gt.json of '
                         '`datalist build --coco`' % gt.source)
    return (dict(zip(gt.image_ids, gt.coco_image_ids)),
            {c: i for c, i in zip(gt.classes, gt.category_ids) if i is not None})


def coco_results(detections, gt, uncategorized='error'):
    """{class: ClassDetections} as a COCO results list [{"image_id",
    "category_id", "bbox", "score"}] with the COCO ids of ground truth gt.
    Detections of a class without a category id: an InputError, or with
    uncategorized='skip' left out; of an image gt lacks: an InputError."""
    images, categories = coco_ids(gt)
    problems, out = [], []
    for name, d in detections.items():
        if not len(d.image_ids):
            continue
        if name not in categories:
            if uncategorized != 'skip':
                problems.append('class %r has no COCO category id in %s' % (name, gt.source))
            continue
        unknown = sorted({i for i in d.image_ids if i not in images})
        if unknown:
            problems.append('detections of %s on %s, which %s does not list'
                            % (name, ', '.join(unknown[:5]), gt.source))
            continue
        boxes = np.asarray(d.boxes, np.float64).reshape(-1, 4)
        # box_to_coco on all rows at once (the same float operations)
        bboxes = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2] + 1], axis=1).tolist()
        category = categories[name]
        out.extend({'image_id': images[i], 'category_id': category, 'bbox': b, 'score': s}
                   for i, b, s in zip(d.image_ids, bboxes, np.asarray(d.scores, np.float64).reshape(-1).tolist()))
    if problems:
        raise InputError(problems=problems, what='detections')
    return out


def write_coco_results(path, detections, gt):
    """Write {class: ClassDetections} as a COCO results JSON (one result a
    line), with the COCO ids of ground truth gt, atomically."""
    lines = [json.dumps(r) for r in coco_results(detections, gt)]
    with atomic_write(path) as f:
        f.write('[' + ',\n'.join(lines) + ']\n')
    return path


def _coco_result(path, k, item, images, classes):
    """(class, image id, score, box) of results[k], or a Problem."""
    def bad(message):
        return Problem(path, None, 'results[%d]' % k, message)
    if not isinstance(item, dict):
        return bad('expected {"image_id", "category_id", "bbox", "score"}')
    image_id, category_id = item.get('image_id'), item.get('category_id')
    if not _is_int(image_id) or image_id not in images:
        return bad('image_id %s is not a COCO image id of the ground truth' % json.dumps(image_id))
    if not _is_int(category_id) or category_id not in classes:
        return bad('category_id %s is not a COCO category id of the ground truth' % json.dumps(category_id))
    bbox, score = item.get('bbox'), item.get('score')
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox)) \
            or bbox[2] < 0 or bbox[3] < 0:
        return bad('"bbox" must be [x, y, w, h]: 4 finite numbers, w and h >= 0, got %s' % json.dumps(bbox))
    if max(abs(v) for v in bbox) > MAX_COORDINATE:
        return bad('"bbox" %s is not in pixels (a number beyond +-2^31)' % json.dumps(bbox))
    if not _finite(score):
        return bad('"score" must be a finite number, got %s' % json.dumps(score))
    return classes[category_id], images[image_id], float(score), box_from_coco(bbox)


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_coco_results(path, gt):
    """{class: ClassDetections} of a COCO results JSON, with the COCO ids of
    ground truth gt; every bad result is reported together."""
    images, categories = coco_ids(gt)
    images = {cid: ours for ours, cid in images.items()}
    classes = {cid: name for name, cid in categories.items()}
    data = read_json(path)
    if not isinstance(data, list):
        raise InputError(problems=[Problem(path, None, None, 'expected a COCO results list '
                                           '[{"image_id", "category_id", "bbox", "score"}, ...]')])
    problems, rows = [], {name: [] for name in gt.classes}
    for k, item in enumerate(data):
        result = _coco_result(path, k, item, images, classes)
        if isinstance(result, Problem):
            problems.append(result)
        else:
            rows[result[0]].append(result[1:])
    if problems:
        raise InputError(problems=problems, what='detection results')
    return {name: ClassDetections([r[0] for r in found], np.array([r[1] for r in found], np.float64),
                                  np.array([r[2] for r in found], np.float64).reshape(-1, 4))
            for name, found in rows.items()}


# ------------------------------------------------------------------ COCO metrics

# COCOeval.stats of iouType 'bbox', in its order: AP over IoU .50:.05:.95, at
# IoU .50 and .75, over small (area < 32^2), medium and large (> 96^2) boxes,
# all at 100 detections per image; AR at 1, 10 and 100 detections per image,
# then small / medium / large at 100.
COCO_METRICS = ('AP', 'AP50', 'AP75', 'AP_small', 'AP_medium', 'AP_large',
                'AR1', 'AR10', 'AR100', 'AR_small', 'AR_medium', 'AR_large')


def is_coco(gt):
    """Whether ground truth gt was built from COCO (keeps its ids)."""
    return gt.coco_image_ids is not None and gt.category_ids is not None


def _pycocotools():
    """(COCO, COCOeval), imported when first needed: only COCO metrics use them."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise RunError('COCO metrics need pycocotools, which does not import (%s): run `make install`' % e)
    return COCO, COCOeval


def coco_ground_truth(gt):
    """Ground truth gt (built from COCO) as a COCO instances dict: its images
    (COCO ids), the categories of its classes that have an id, and each box
    of those classes with bbox = box_to_coco(box) (which inverts how
    annotations.read_coco_set made the box: exactly for a box inside its
    image and at least a pixel wide and high, as read_coco_set clips and
    widens the others), area = w * h of that bbox and iscrowd = difficult
    (read_coco_set keeps crowd annotations as difficult). COCO's own
    files give the area of the segmentation, which gt.json does not keep: the
    small / medium / large split can differ from theirs for a box whose mask
    area falls in another range."""
    images, categories = coco_ids(gt)
    category = np.array([-1 if c is None else c for c in gt.category_ids], np.int64)[gt.label]
    keep = np.flatnonzero(category >= 0)
    boxes = gt.boxes[keep]
    wh = boxes[:, 2:] - boxes[:, :2] + 1
    bboxes = np.concatenate([boxes[:, :2], wh], axis=1).tolist()
    image = np.asarray(gt.coco_image_ids, np.int64)[gt.image[keep]].tolist()
    annotations = [{'id': k + 1, 'image_id': i, 'category_id': c, 'bbox': b, 'area': a, 'iscrowd': int(d)}
                   for k, (i, c, b, a, d) in enumerate(zip(image, category[keep].tolist(), bboxes,
                                                          (wh[:, 0] * wh[:, 1]).tolist(),
                                                          gt.difficult[keep].tolist()))]
    return {'info': {'description': gt.source},     # pycocotools' loadRes copies it
            'images': [{'id': i} for i in gt.coco_image_ids],
            'categories': [{'id': c, 'name': n} for n, c in categories.items()],
            'annotations': annotations}


def evaluate_coco(gt, detections):
    """COCO's standard bbox metrics (COCO_METRICS) of detections ({class:
    ClassDetections}) against ground truth gt built from COCO, computed by
    pycocotools' COCOeval on coco_ground_truth(gt) and coco_results: in
    percent, None where COCOeval has none (-1: no box in that area range).
    Detections of classes without a COCO category id are left out, as are
    those classes. 'classes': the classes covered."""
    COCO, COCOeval = _pycocotools()
    dataset = coco_ground_truth(gt)
    results = coco_results(detections, gt, uncategorized='skip')
    with contextlib.redirect_stdout(io.StringIO()):    # pycocotools prints progress and its table
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:   # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {'images': dataset['images'], 'categories': dataset['categories'],
                               'annotations': []}
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, 'bbox')
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    out = {k: None if v < 0 else 100 * float(v) for k, v in zip(COCO_METRICS, evaluator.stats)}
    out['classes'] = [c['name'] for c in dataset['categories']]
    return out
