"""Datalists: build one from ground truth and proposals; check one.

build: ground truth (Pascal VOC, MS-COCO or a plain label file, see
caffe_mlic/data/annotations.py) + proposals (`caffe-mlic proposals`, one
<image stem>.npz per image; or, with no proposals folder, the whole image as
the one proposal of every image, score 1) -> a datalist (`caffe_mlic.data.datalist`) and, beside
it, for OUT.txt:
  OUT.classes.txt  the class names, one per line, in label order
  OUT.gt.json      {"classes": [...], "size": [W, H] of the datalist boxes,
                    "images": [{"path", "file", "width", "height", "labels",
                                "objects": [{"class", "box", "difficult"}]}]}
                   "path" as in the datalist, "file" absolute, boxes
                   [x1, y1, x2, y2] 0-based inclusive in original pixels;
                   built from COCO, also "category_ids" (the COCO category
                   id of each class, null for a class of the class file
                   that is no category) and each image's "coco_id", which
                   `detect --coco-ids` and `eval det` use for COCO results.
The datalist takes each image's top bbox_num proposals by score, mapped to
the resized (size = W' x H') image: x' = floor(x * S / W), y' = floor(y * S / H), clipped to
[0, S-1]; an image with fewer proposals has them repeated cyclically (in
score order) up to bbox_num; an image with none is an error. Image paths
are relative to root when given, else absolute. All three files are
written only when everything checked out, and atomically.

check: validate a datalist with the project's parser and print class counts,
proposal statistics and every bad line; exit status 1 if there is any.
"""
import json
import os
import sys
from typing import NamedTuple

import numpy as np

from caffe_mlic.data import annotations
from caffe_mlic.data.datalist import format_line, resize_boxes, scan_datalist
from caffe_mlic.errors import InputError, Problem, UsageError
from caffe_mlic.fileio import atomic_files


def companion_paths(out):
    """(classes file, gt file) beside the datalist OUT (its .txt replaced)."""
    stem = out[:-4] if out.endswith('.txt') else out
    return stem + '.classes.txt', stem + '.gt.json'


def load_proposals(npz_path, record):
    """(boxes (K,4) float64, scores (K,)) in original pixels, checked against the image."""
    def bad(message):
        return InputError(problems=[Problem(npz_path, None, 'proposals of %s' % record.path, message)])

    if not os.path.isfile(npz_path):
        from caffe_mlic.fileio import file_kind_problem
        raise bad('not found; run `caffe-mlic proposals` on the image' if not os.path.lexists(npz_path) else
                  file_kind_problem(npz_path))
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            if 'boxes' not in z or 'scores' not in z:
                raise bad('needs arrays "boxes" and "scores", has %s' % ', '.join(z.files))
            boxes = np.asarray(z['boxes'], np.float64)
            scores = np.asarray(z['scores'], np.float64)
            shape = z['image_shape'] if 'image_shape' in z else None
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001  zip/pickle/format errors of many types
        raise bad('unreadable: %s' % e)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (len(boxes),):
        raise bad('boxes must be (K, 4) and scores (K,), got %s and %s' % (boxes.shape, scores.shape))
    if len(boxes) == 0:
        raise bad('no proposals for this image')
    if shape is not None and tuple(int(v) for v in shape) != (record.height, record.width):
        raise bad('computed on a %dx%d image but the image is %dx%d'
                  % (int(shape[1]), int(shape[0]), record.width, record.height))
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise bad('boxes or scores are not finite')
    outside = np.flatnonzero((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > record.width - 1)
                         | (boxes[:, 3] > record.height - 1)
                         | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if outside.size:
        b = boxes[outside[0]]
        raise bad('box %d (%g, %g, %g, %g) is not inside the %dx%d image%s'
                  % (outside[0], b[0], b[1], b[2], b[3], record.width, record.height,
                     '' if outside.size == 1 else ' (and %d more)' % (outside.size - 1)))
    return boxes, scores


def whole_image_box(record):
    """The one "proposal" of a datalist built without proposals: the whole
    image, score 1 (for nets that ignore proposals, e.g. pretraining a classifier)."""
    return (np.array([[0, 0, record.width - 1, record.height - 1]], np.float64),
            np.ones(1, np.float64))


def resize_top_boxes(boxes, scores, width, height, size, bbox_num):
    """Top bbox_num by score, mapped to the size=(W', H') image, padded cyclically."""
    order = np.argsort(-scores, kind='stable')[:bbox_num]
    boxes, scores = boxes[order], scores[order]
    out = resize_boxes(boxes, width, height, *size)
    idx = np.arange(bbox_num) % len(out)
    return out[idx].astype(np.float32), scores[idx].astype(np.float32)


def _gt_json(classes, size, images, category_ids=None):
    """Valid JSON with one image per line: compact, yet greppable and diffable."""
    head = '{"classes": %s, "size": %s, ' % (json.dumps(list(classes)), json.dumps(list(size)))
    if category_ids is not None:
        head += '"category_ids": %s, ' % json.dumps([category_ids.get(c) for c in classes])
    head += '"images": [\n'
    return head + ',\n'.join(json.dumps(im) for im in images) + '\n]}\n'


def _datalist_path(path, root):
    if root is None:
        return os.path.abspath(path)
    return os.path.relpath(os.path.abspath(path), os.path.abspath(root))


def build(records, classes, proposals_dir, out, size=(672, 672), bbox_num=500, root=None,
          difficult='include', category_ids=None):
    """Write the datalist, OUT.classes.txt and OUT.gt.json; all or nothing.
    category_ids: {class: COCO category id}, kept in gt.json."""
    if bbox_num < 1:
        raise UsageError('bbox_num must be >= 1, got %d' % bbox_num, 'bbox_num')
    if not records:
        raise InputError('no images to write')
    classes_path, gt_path = companion_paths(out)
    # Lines are streamed into the datalist's temp file (a COCO-size list is
    # gigabytes); the three files are renamed into place only if every image
    # checked out, else all temp files go.
    # (surrogateescape: image names that are not UTF-8 keep their bytes)
    with atomic_files([out, classes_path, gt_path], encoding='utf-8',
                      errors='surrogateescape') as (f_list, f_cls, f_gt):
        gt_images = _write_lines(f_list, records, classes, proposals_dir, size, bbox_num,
                                 root, difficult)
        f_cls.write(''.join(c + '\n' for c in classes))
        f_gt.write(_gt_json(classes, size, gt_images, category_ids))
    return len(gt_images)


def _write_lines(f, records, classes, proposals_dir, size, bbox_num, root, difficult):
    """Write one datalist line per record to f; returns the gt.json entries.
    Raises InputError listing every problem found."""
    from caffe_mlic.data import proposals
    problems, gt_images, seen_npz, seen_stem = [], [], {}, {}
    # the folder's settings: a file computed with others (a shard run with other settings) is refused;
    # with no settings.json (files copied without it), the first file's record stands for the folder's
    folder_settings, strict = proposals.folder_settings(proposals_dir) if proposals_dir else (None, False)
    first_recorded = None
    for rec in records:
        npz = None
        stem = os.path.splitext(os.path.basename(rec.path))[0]
        if proposals_dir is not None:
            npz = os.path.join(proposals_dir, stem + '.npz')
            if npz in seen_npz:
                problems.append(rec.problem('image %s has the same file stem as %s, so they would '
                                            'share %s' % (rec.path, seen_npz[npz], npz)))
                continue
            seen_npz[npz] = rec.path
        elif stem in seen_stem:
            # (gt.json's image id is the stem, as in the devkit's result files: eval det refuses a repeat)
            problems.append(rec.problem('image %s has the same file stem as %s: detection results and the '
                                        'gt.json name an image by its stem' % (rec.path, seen_stem[stem])))
            continue
        seen_stem.setdefault(stem, rec.path)
        path = _datalist_path(rec.path, root)
        if any(c.isspace() for c in path):
            if any(c.isspace() for c in os.path.basename(path)):   # no --root can drop it
                hint = ' (the file name itself holds it: rename the file)'
            elif root:
                hint = ' (a --root DIR below the folder whose name holds it would drop it)'
            else:
                hint = ' (--root DIR writes paths relative to DIR)'
            problems.append(rec.problem('image path %r contains whitespace, which a datalist cannot hold%s'
                                        % (path, hint)))
            continue
        try:
            boxes, scores = load_proposals(npz, rec) if npz else whole_image_box(rec)
        except InputError as e:
            problems.extend(e.problems)
            continue
        if npz and not folder_settings and first_recorded is None:
            first_recorded = proposals.recorded_settings(npz)
            if first_recorded is not None:
                first_recorded = (first_recorded, npz)
        reference = folder_settings or (first_recorded[0] if first_recorded else None)
        # (each file's image record too: a file computed for another image of the name is refused)
        why = proposals.record_problem(npz, rec.path, reference, strict) if npz else None
        if why:
            how = ('run `caffe-mlic proposals` on the folder again with its settings (each shard)' if folder_settings
                   else 'the folder has no settings.json holding its settings, and %s was computed with other '
                        'settings: run '
                        '`caffe-mlic proposals` on the folder again' % first_recorded[1] if first_recorded and
                        'computed with' in why else 'run `caffe-mlic proposals` on the folder again')
            problems.append(rec.problem('%s: %s' % (why, how)))
            continue
        if problems:
            continue  # the output is lost anyway: just look for more problems
        rb, rs = resize_top_boxes(boxes, scores, rec.width, rec.height, size, bbox_num)
        f.write(format_line(path, annotations.label_vector(rec, classes, difficult), rb, rs) + '\n')
        gt_images.append({
            'path': path, 'file': rec.path, 'width': rec.width, 'height': rec.height,
            'labels': sorted(rec.label_names(difficult), key=classes.index),
            'objects': [{'class': o.name, 'box': [float(v) for v in o.box], 'difficult': o.difficult}
                        for o in rec.objects],
        })
        if rec.coco_id is not None:
            gt_images[-1]['coco_id'] = rec.coco_id
    if problems:
        raise InputError(problems=problems, what='datalist build')
    return gt_images


# ------------------------------------------------------------------ check

def _distinct_boxes(boxes):
    """Distinct boxes in each image of (M, B, 4)."""
    counts = np.empty(len(boxes), np.int64)
    for i, b in enumerate(boxes):
        counts[i] = len(np.unique(b, axis=0))
    return counts


def undecodable_images(dl, jobs=2):
    """Problems (datalist, line, 'image', why) of the datalist's images that
    do not decode as the data layer decodes them: empty, text, truncated or
    corrupt files; one for every line of such an image (each image is decoded
    once). Threads read the files side by side; the decoding itself is one
    at a time (imageio.imdecode hears the decoders on the process's stderr)."""
    from concurrent.futures import ThreadPoolExecutor
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    from caffe_mlic.progress import progress
    lines = {}
    for image, line in zip(dl.image_paths, dl.line_numbers.tolist()):
        lines.setdefault(image, []).append(line)
    images = list(lines)

    def decodes(image):
        return decode_file(image) is not None
    problems = []
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        results = pool.map(decodes, images)
        for image, ok in zip(images, progress(results, total=len(images), desc='decoding',
                                              unit='img')):
            if not ok:
                why = 'cannot decode %s: %s' % (image, why_undecodable(image))
                problems += [Problem(dl.source, line, 'image', why) for line in lines[image]]
    return problems


class CheckSummary(NamedTuple):
    """What `datalist check` found: image lines (not blank) = valid + bad_lines;
    problems counts every problem (a line can have several; file_problems
    are about the whole file: unreadable, empty)."""
    lines: int
    valid: int
    bad_lines: int
    problems: int
    file_problems: int

    def __str__(self):
        text = '%d image line%s: %d valid, %d with problems' % (
            self.lines, '' if self.lines == 1 else 's', self.valid, self.bad_lines)
        line_problems = self.problems - self.file_problems
        if line_problems != self.bad_lines:
            text += ' (%d problems on those lines)' % line_problems
        if self.file_problems:
            text += '; %d problem%s with the whole file' % (self.file_problems,
                                                          '' if self.file_problems == 1 else 's')
        return text


def summarise_check(dl, problems):
    """CheckSummary of scan_datalist's valid lines ``dl`` and every problem
    found (the decoding's included: those lines are in ``dl``)."""
    bad = {p.line for p in problems if p.line is not None}
    valid = int((~np.isin(dl.line_numbers, np.fromiter(bad, np.int64, len(bad)))).sum())
    file_problems = sum(p.line is None for p in problems)
    return CheckSummary(valid + len(bad), valid, len(bad), len(problems), file_problems)


def check(path, att_num, bbox_num, size=(672, 672), root=None, check_images=True, out=None,
          decode=True):
    """Print a report; returns its CheckSummary. ``decode``: also decode
    every image (with check_images)."""
    out = out or sys.stdout
    dl, problems = scan_datalist(path, att_num, bbox_num, size[0], size[1], root or '', check_images)
    if check_images and decode and len(dl):
        problems = sorted(problems + undecodable_images(dl), key=lambda p: p.line or 0)
    if not len(dl) and problems and all(p.line is None for p in problems):
        # Nothing to report on (unreadable, not a file, empty): the problem is the message.
        raise InputError('; '.join(str(p) for p in problems))
    summary = summarise_check(dl, problems)
    classes_path, _ = companion_paths(path)
    names = None
    if os.path.isfile(classes_path):
        try:
            names = annotations.read_class_list(classes_path)
        except InputError as e:
            out.write('note: ignoring %s: %s\n' % (classes_path, e))
        if names is not None and len(names) != att_num:
            out.write('note: ignoring %s: it has %d classes, att_num is %d\n'
                      % (classes_path, len(names), att_num))
            names = None
    names = names or ['class %d' % i for i in range(att_num)]
    m = len(dl)
    out.write('%s: %s\n' % (path, summary))
    if m:
        counts = dl.labels.sum(0)
        width = max(len(n) for n in names) if names else 0
        out.write('images per class:\n')
        for name, c in zip(names, counts.tolist()):
            out.write('  %-*s %6d\n' % (width, name, c))
        per_image = dl.labels.sum(1)
        out.write('labels per image: min %d, mean %.2f, max %d; images with no label: %d\n'
                  % (per_image.min(), per_image.mean(), per_image.max(), int((per_image == 0).sum())))
        if bbox_num:
            distinct = _distinct_boxes(dl.boxes)
            out.write('distinct boxes per image: min %d, mean %.1f, max %d (of %d)\n'
                      % (distinct.min(), distinct.mean(), distinct.max(), bbox_num))
            out.write('scores: min %g, max %g\n' % (float(dl.scores.min()), float(dl.scores.max())))
    for p in problems:
        out.write(str(p) + '\n')
    return summary
