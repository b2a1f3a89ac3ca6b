"""Semantic labeling metrics (ScasNet, ISPRS 2D semantic labeling), from a
confusion matrix of label maps (caffe_mlic.data.labelmaps).

- Confusion C (K x K, int64): rows ground truth, columns prediction. Pixels
  whose ground truth is IGNORE_LABEL (255) are not scored, whatever is
  predicted there; at a scored pixel a prediction outside 0..K-1 (255
  included) is an error. With ``eroded`` the ground truth's class boundaries
  are first eroded (a disc of ``radius`` px, 0..MAX_ERODE_RADIUS, 3 as the
  benchmark's "noBoundary" references) to IGNORE_LABEL. Ground-truth values
  must be classes or IGNORE_LABEL everywhere.
- OA = trace(C) / sum(C), over every scored pixel.
- Per class, TP = C[c, c], FP = column sum - TP, FN = row sum - TP:
  precision TP / (TP + FP), recall TP / (TP + FN), F1 = 2 TP / (2 TP + FP +
  FN) (= 2PR / (P + R)), IoU = TP / (TP + FP + FN). Precision is undefined
  for a class never predicted, recall for a class absent from the ground
  truth; F1 and IoU only for a class in neither (they are 0 for a class
  only predicted, or only in the ground truth). Undefined is None (null in
  JSON) and is left out of every mean.
- Means (peers differ, so the result says which classes each covers, in
  ``means``): mF1 over the classes except ``exclude_from_mean`` (clutter: the
  five classes the ISPRS benchmark reports), mF1_all and mIoU over all
  classes (mIoU as mmsegmentation).

Folders: a prediction ``X.<ext>`` is paired with the ground truth ``X.<ext>``
(any label-map extension); without one, with the single ``X_<suffix>.<ext>``
(ISPRS names such as ``X_noBoundary.tif``), or, given ``gt_suffix``, only
with ``X<gt_suffix>.<ext>``. Every prediction needs its ground truth; a
ground truth with no prediction is not scored (and reported as such: a
reference folder usually holds every tile). Either may be an index image or
colour-coded with the palette. Results are in percent.

Detail metrics (DetailMetrics; `eval seg` reports them beside the above),
for what a context model claims. They use the ground truth as read: with
``eroded`` the erosion applies to the confusion's metrics only (an eroded
boundary band would leave no boundary and no pixel near a cue to score).
Pixels whose ground truth (as read) is IGNORE_LABEL are not scored; a
prediction outside the classes there is simply wrong.
- Hard-pixel accuracy: the share of "hard" pixels predicted right. Hard
  pixels are given as masks (a single-channel image per tile, nonzero =
  hard) or computed from the ground truth with labelmaps.hard_pixel_mask:
  farther than ``hard_distance`` px (24 by default) from any pixel of
  another label, optionally only those of ``hard_classes``. None when no
  scored pixel is hard.
- Accuracy by distance to the nearest cue (labelmaps.distance_to_cue of the
  ground truth, where IGNORE_LABEL counts as another label), in the bins
  [0, 2), [2, 4), [4, 8), ..., [64, inf) px: accuracy (None for an empty
  bin) and pixels.
- Boundary F1 (meant for full references): a boundary pixel of
  a map has a 4-neighbour of another label, neither being IGNORE_LABEL (a
  boundary with the ignored band of an eroded reference, or with a
  prediction of 255, is none). Precision: the share of predicted boundary
  pixels within ``boundary_tolerance`` px (Euclidean, <=; 2 by default) of
  a reference boundary pixel, counting only predicted ones whose ground
  truth is not ignored; recall: the share of reference boundary pixels
  within the tolerance of any predicted boundary pixel; both summed over
  every image, then F1 = 2PR / (P + R) (0 when P + R is 0, an undefined P
  counting as 0). None when the references hold no boundary pixel: an
  eroded reference has none (its classes never touch).
- Object recall: the reference's objects of a class are its 8-connected
  components of at least ``min_object_pixels`` px (10 by default: smaller
  ones are fragments, not objects); an object is found when at least half
  of its pixels are predicted as its class. Per class: found, total,
  recall (None without objects). The object classes default to the class
  named ``car`` when there is one (car recall).
"""
import os

import numpy as np

from caffe_mlic.data import labelmaps
from caffe_mlic.errors import InputError, Problem, UsageError, folder_problem, raise_if_problems
from caffe_mlic.evaluation import Evaluator

LABEL_EXTENSIONS = ('.png', '.tif', '.tiff', '.bmp')
EXCLUDE_FROM_MEAN = ('clutter',)
# The benchmark erodes 3 px. The disc's work per pixel grows with its area
# (about 0.3 s a megapixel at 64, so 10 s for a 6000 x 6000 ISPRS tile), and
# OpenCV's kernel is (2r + 1)^2 bytes: a radius of 100000 would ask for 40 GB.
MAX_ERODE_RADIUS = 64
# Detail metrics (module docstring).
HARD_DISTANCE = labelmaps.HARD_DISTANCE
BOUNDARY_TOLERANCE = 2.0
MIN_OBJECT_PIXELS = 10
OBJECT_CLASS = 'car'
DISTANCE_BINS = (0, 2, 4, 8, 16, 32, 64)   # lower edges in px; the last bin has no upper edge


# ---------------------------------------------------------------- metrics


def confusion(gt, pred, num_classes, where='prediction'):
    """(K, K) int64 counts, rows ground truth, columns prediction, over the
    pixels whose gt is not IGNORE_LABEL. InputError naming ``where`` for a
    prediction outside 0..K-1 at a scored pixel, or for a gt value that is
    neither a class nor IGNORE_LABEL."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise InputError('%s: shape %s differs from the ground truth\'s %s' % (where, pred.shape, gt.shape))
    labelmaps.check_indices(gt, num_classes, '%s: ground truth' % where)
    scored = gt != labelmaps.IGNORE_LABEL
    bad = scored & ((pred < 0) | (pred >= num_classes))
    if bad.any():
        first = np.argwhere(bad)[0]
        at = ' first at x=%d y=%d;' % (first[1], first[0]) if bad.ndim == 2 else ''
        values = np.unique(pred[bad])
        raise InputError('%s: %d scored pixels are predicted outside the %d classes (0-%d),%s values %s'
                         % (where, int(bad.sum()), num_classes, num_classes - 1, at,
                            ', '.join(str(int(v)) for v in values[:10])))
    index = gt[scored].astype(np.int64) * num_classes + pred[scored].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(num, den):
    """num / den in percent per class, None where den is 0."""
    return [100.0 * float(n) / float(d) if d else None for n, d in zip(num, den)]


def _mean(values, keep):
    chosen = [v for v, k in zip(values, keep) if k and v is not None]
    return float(np.mean(chosen)) if chosen else None


def _covers(names, values, keep, note=''):
    """Which classes a mean covers, in words."""
    used = [n for n, v, k in zip(names, values, keep) if k and v is not None]
    undefined = [n for n, v, k in zip(names, values, keep) if k and v is None]
    text = '%d classes: %s' % (len(used), ', '.join(used)) if used else 'no class'
    if note:
        text += ' (%s)' % note
    if undefined:
        text += '; undefined, left out: %s' % ', '.join(undefined)
    return text


def metrics(conf, class_names, exclude_from_mean=EXCLUDE_FROM_MEAN):
    """OA, per-class precision/recall/F1/IoU and their means (module
    docstring) of a confusion matrix, in percent, None where undefined."""
    conf = np.asarray(conf, np.int64)
    names = list(class_names)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1] or conf.shape[0] != len(names):
        raise ValueError('confusion %s does not match %d class names' % (conf.shape, len(names)))
    tp = np.diag(conf)
    gt_px, pred_px = conf.sum(axis=1), conf.sum(axis=0)
    fp, fn = pred_px - tp, gt_px - tp
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    iou = _ratio(tp, tp + fp + fn)
    everything = [True] * len(names)
    kept = [n not in exclude_from_mean for n in names]
    excluded = [n for n in names if n in exclude_from_mean]
    note = ('%s left out, as the ISPRS benchmark reports' % ', '.join(excluded)) if excluded else ''
    total = int(conf.sum())
    return {
        'OA': 100.0 * float(tp.sum()) / total if total else None,
        'mF1': _mean(f1, kept),
        'mF1_all': _mean(f1, everything),
        'mIoU': _mean(iou, everything),
        'means': {'mF1': _covers(names, f1, kept, note),
                  'mF1_all': _covers(names, f1, everything, 'all classes'),
                  'mIoU': _covers(names, iou, everything, 'all classes, as mmsegmentation')},
        'classes': names,
        'precision': _ratio(tp, pred_px),
        'recall': _ratio(tp, gt_px),
        'F1': f1,
        'IoU': iou,
        'gt_pixels': gt_px.tolist(),
        'predicted_pixels': pred_px.tolist(),
        'pixels': total,
        'confusion': conf.tolist(),
    }


class SegmentationEvaluator(Evaluator):
    """The confusion of label maps: outputs are score maps (N, K, H, W),
    scored by their argmax, label maps (N, H, W) or one label map (H, W);
    targets (N, 1, H, W), (N, H, W) or (H, W), 255 ignored. evaluate() gives segmentation.metrics (mIoU,
    OA, per class F1 ...) with ``exclude_from_mean`` left out of the means."""
    key = 'mIoU'

    def __init__(self, num_classes, count=None, class_names=None, exclude_from_mean=()):
        self.num_classes = num_classes
        self.class_names = class_names or ['class_%d' % k for k in range(num_classes)]
        self.exclude_from_mean = exclude_from_mean
        super().__init__(count)

    def reset(self):
        super().reset()
        self.conf = np.zeros((self.num_classes, self.num_classes), np.int64)

    @staticmethod
    def fits(output_shape, label_shape):
        return (len(output_shape) == 4 and len(label_shape) == 4 and label_shape[1] == 1
                and tuple(output_shape[2:]) == tuple(label_shape[2:]))

    def process(self, outputs, targets, where='prediction'):
        outputs, targets = np.asarray(outputs), np.asarray(targets)
        predicted = outputs.argmax(axis=1) if outputs.ndim == 4 else outputs
        truth = targets[:, 0] if targets.ndim == 4 else targets
        if predicted.ndim == 2:             # one map: confusion names the first bad pixel's place
            self._keep(1)
            self.conf += confusion(truth.astype(np.uint8), predicted, self.num_classes, where)
            return
        keep = self._keep(len(predicted))
        self.conf += confusion(truth[:keep].astype(np.uint8), predicted[:keep], self.num_classes, where)

    def evaluate(self):
        return metrics(self.conf, self.class_names, exclude_from_mean=self.exclude_from_mean)


# ---------------------------------------------------------------- detail metrics


def _number(value, what, param, lo=0.0):
    """``value`` as a float, or a UsageError naming ``param`` unless it is a
    finite number >= lo."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value) or value < lo:
        raise UsageError('%s must be a finite number >= %g, got %r' % (what, lo, value), param)
    return float(value)


def class_indices(names, class_names, param):
    """The indices, in class order, of ``names`` (a list of class names or
    one comma-separated text); a UsageError naming ``param`` for an unknown
    name or no name at all."""
    if isinstance(names, str):
        names = names.split(',')
    names = [str(n).strip() for n in names]
    names = [n for n in names if n]
    known = list(class_names)
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        what = ('unknown class%s %s' % ('es' if len(unknown) > 1 else '', ', '.join(repr(n) for n in unknown))
                if unknown else 'no class named')
        raise UsageError('%s: the classes are %s' % (what, ', '.join(known)), param)
    return sorted({known.index(n) for n in names})


def boundary_mask(labels):
    """Pixels with a 4-neighbour of another label, neither being
    IGNORE_LABEL (both sides of an edge are boundary pixels)."""
    labels = np.asarray(labels)
    valid = labels != labelmaps.IGNORE_LABEL
    edge = np.zeros(labels.shape, bool)
    across = (labels[:, 1:] != labels[:, :-1]) & valid[:, 1:] & valid[:, :-1]
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    down = (labels[1:, :] != labels[:-1, :]) & valid[1:, :] & valid[:-1, :]
    edge[1:, :] |= down
    edge[:-1, :] |= down
    return edge


# px: a tolerance up to this is a dilation by the exact disc (about 1 ms a megapixel at 2 px), beyond it a
# distance transform (about 30 ms)
DILATE_UP_TO = 12


def _within(pixels, targets, tolerance):
    """How many of ``pixels`` (a mask) lie within ``tolerance`` px
    (Euclidean, <=) of a pixel of ``targets`` (a mask)."""
    import cv2
    if not targets.any() or not pixels.any():
        return 0
    targets = np.ascontiguousarray(targets)
    if tolerance <= DILATE_UP_TO:
        # every offset (x, y) with x^2 + y^2 <= tolerance^2: the exact disc
        r = int(np.floor(tolerance + 1e-6))
        y, x = np.mgrid[-r:r + 1, -r:r + 1]
        disc = (x * x + y * y <= tolerance * tolerance + 1e-6).astype(np.uint8)
        near = cv2.dilate(targets.view(np.uint8), disc, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        return int(np.count_nonzero(near[pixels]))
    # the distance of each pixel to the nearest zero: the targets are zero
    dist = cv2.distanceTransform((~targets).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return int(np.count_nonzero(dist[pixels] <= tolerance + 1e-4))   # float32 sqrt: 2.0 is 2.0, sqrt(5) 2.236


def boundary_counts(gt, pred, tolerance=BOUNDARY_TOLERANCE):
    """(predicted boundary pixels counted, those within ``tolerance`` of a
    reference boundary, reference boundary pixels, those within
    ``tolerance`` of a predicted boundary) of one image (module docstring:
    predicted boundary pixels are counted where the gt is not ignored)."""
    ref = boundary_mask(gt)
    predicted = boundary_mask(pred)
    counted = predicted & (np.asarray(gt) != labelmaps.IGNORE_LABEL)
    return (int(counted.sum()), _within(counted, ref, tolerance),
            int(ref.sum()), _within(ref, predicted, tolerance))


def boundary_scores(pred_pixels, pred_matched, ref_pixels, ref_matched):
    """(precision, recall, F1) in percent from boundary_counts' sums (module
    docstring); F1 None when the references hold no boundary pixel."""
    precision = 100.0 * pred_matched / pred_pixels if pred_pixels else None
    recall = 100.0 * ref_matched / ref_pixels if ref_pixels else None
    if recall is None:
        return precision, recall, None
    p = precision or 0.0
    return precision, recall, (2 * p * recall / (p + recall) if p + recall else 0.0)


def object_counts(gt, pred, cls, min_pixels=MIN_OBJECT_PIXELS):
    """(objects found, objects) of class ``cls`` in one image: the gt's
    8-connected components of ``cls`` of at least ``min_pixels`` px, found
    when at least half of their pixels are predicted ``cls``."""
    import cv2
    inside = np.ascontiguousarray(np.asarray(gt) == cls)
    if not inside.any():
        return 0, 0
    count, components = cv2.connectedComponents(inside.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    sizes = np.bincount(components.ravel(), minlength=count)[1:]
    hits = np.bincount(components[np.asarray(pred) == cls], minlength=count)[1:]
    objects = sizes >= min_pixels
    return int(np.count_nonzero(objects & (2 * hits >= sizes))), int(np.count_nonzero(objects))


class DetailMetrics:
    """Hard-pixel accuracy, accuracy by distance to the nearest cue,
    boundary F1 and object recall (module docstring), summed over images:
    add(gt, pred) per image, with its hard-pixel mask when ``hard_masks``
    names where the masks come from; evaluate() for the totals.

    class_names: the classes, in index order. hard_distance (px, default
    HARD_DISTANCE) and hard_classes (names; default all) compute the masks
    from the gt; hard_masks: the masks' source (a folder), given to add()
    instead. boundary_tolerance in px (default BOUNDARY_TOLERANCE).
    object_classes: names (default: 'car' when a class has that name);
    min_object_pixels: smaller components are not objects. Bad values are
    a UsageError naming the parameter."""

    def __init__(self, class_names, hard_distance=None, hard_classes=None, hard_masks=None,
                 boundary_tolerance=BOUNDARY_TOLERANCE, object_classes=None,
                 min_object_pixels=MIN_OBJECT_PIXELS, bins=DISTANCE_BINS):
        self.class_names = list(class_names)
        if hard_masks is not None and (hard_distance is not None or hard_classes is not None):
            raise UsageError('hard_distance and hard_classes compute the hard-pixel masks from the ground truth; '
                             'they do not go with masks given as files (hard_masks)', 'hard_masks')
        self.hard_masks = hard_masks
        self.hard_distance = labelmaps.check_hard_distance(HARD_DISTANCE if hard_distance is None else hard_distance,
                                                 'the hard-pixel distance (px)')
        self.hard_classes = None if hard_classes is None else class_indices(hard_classes, self.class_names,
                                                                            'hard_classes')
        self.boundary_tolerance = _number(boundary_tolerance, 'the boundary tolerance (px)', 'boundary_tolerance')
        if isinstance(min_object_pixels, bool) or not isinstance(min_object_pixels, (int, np.integer)) \
                or min_object_pixels < 1:
            raise UsageError('the smallest object must be an integer >= 1 px, got %r' % (min_object_pixels,),
                             'min_object_pixels')
        self.min_object_pixels = int(min_object_pixels)
        if object_classes is None:
            object_classes = [OBJECT_CLASS] if OBJECT_CLASS in self.class_names else []
            self.object_classes = [self.class_names.index(n) for n in object_classes]
        else:
            self.object_classes = class_indices(object_classes, self.class_names, 'object_classes')
        self.bins = [float(b) for b in bins]
        self.reset()

    def reset(self):
        self.hard_pixels = self.hard_correct = 0
        self.bin_pixels = np.zeros(len(self.bins), np.int64)
        self.bin_correct = np.zeros(len(self.bins), np.int64)
        self.boundary = np.zeros(4, np.int64)    # boundary_counts' four sums
        self.found = {c: 0 for c in self.object_classes}
        self.objects = {c: 0 for c in self.object_classes}

    def add(self, gt, pred, hard=None):
        """Score one image: gt and pred (H, W) label maps of one shape (the gt
        as read, IGNORE_LABEL not scored), ``hard`` its mask (nonzero = hard)
        when the masks are given. Its own numbers: hard_pixels,
        hard_accuracy, boundary_F1."""
        gt, pred = np.asarray(gt), np.asarray(pred)
        if gt.shape != pred.shape:
            raise ValueError('prediction %s and ground truth %s differ in shape' % (pred.shape, gt.shape))
        scored = gt != labelmaps.IGNORE_LABEL
        correct = (pred == gt) & scored
        dist = labelmaps.distance_to_cue(gt)
        if self.hard_masks is not None:
            if hard is None or np.shape(hard) != gt.shape:
                raise ValueError('a hard-pixel mask of shape %s is needed' % (gt.shape,))
            hard = (np.asarray(hard) != 0) & scored
        else:
            hard = labelmaps.hard_pixel_mask(gt, self.hard_distance, self.hard_classes, cue_distance=dist)
        hard_pixels, hard_correct = int(np.count_nonzero(hard)), int(np.count_nonzero(hard & correct))
        self.hard_pixels += hard_pixels
        self.hard_correct += hard_correct
        near = dist[scored]
        which = np.zeros(near.shape, np.intp)      # [lo, hi): a distance hi is in the next bin
        for edge in self.bins[1:]:
            which += near >= edge
        self.bin_pixels += np.bincount(which, minlength=len(self.bins))
        self.bin_correct += np.bincount(which[correct[scored]], minlength=len(self.bins))
        counts = boundary_counts(gt, pred, self.boundary_tolerance)
        self.boundary += counts
        for c in self.object_classes:
            found, total = object_counts(gt, pred, c, self.min_object_pixels)
            self.found[c] += found
            self.objects[c] += total
        return {'hard_pixels': hard_pixels,
                'hard_accuracy': 100.0 * hard_correct / hard_pixels if hard_pixels else None,
                'boundary_F1': boundary_scores(*counts)[2]}

    def hard_mask_source(self):
        if self.hard_masks is not None:
            return {'from': 'files', 'folder': os.path.abspath(self.hard_masks)}
        classes = range(len(self.class_names)) if self.hard_classes is None else self.hard_classes
        return {'from': 'reference', 'distance': self.hard_distance,
                'classes': [self.class_names[c] for c in classes]}

    def evaluate(self):
        """The totals, keyed as eval seg's JSON: hard_accuracy, hard_pixels,
        hard_mask, accuracy_by_distance, boundary_F1, boundary, objects,
        car_recall, object_min_pixels (percent; None where undefined)."""
        precision, recall, f1 = boundary_scores(*self.boundary.tolist())
        objects = {}
        for c in self.object_classes:
            total = self.objects[c]
            objects[self.class_names[c]] = {'found': self.found[c], 'total': total,
                                            'recall': 100.0 * self.found[c] / total if total else None}
        tops = self.bins[1:] + [None]
        return {
            'hard_accuracy': 100.0 * self.hard_correct / self.hard_pixels if self.hard_pixels else None,
            'hard_pixels': self.hard_pixels,
            'hard_mask': self.hard_mask_source(),
            'accuracy_by_distance': [
                {'from': lo, 'to': hi, 'accuracy': 100.0 * int(right) / int(n) if n else None, 'pixels': int(n)}
                for lo, hi, n, right in zip(self.bins, tops, self.bin_pixels, self.bin_correct)],
            'boundary_F1': f1,
            'boundary': {'tolerance': self.boundary_tolerance, 'precision': precision, 'recall': recall,
                         'F1': f1, 'predicted_pixels': int(self.boundary[0]),
                         'predicted_matched': int(self.boundary[1]), 'reference_pixels': int(self.boundary[2]),
                         'reference_matched': int(self.boundary[3])},
            'objects': objects,
            'car_recall': (objects[OBJECT_CLASS]['recall'] if OBJECT_CLASS in objects else None),
            'object_min_pixels': self.min_object_pixels,
        }


# ---------------------------------------------------------------- folders


def _files_by_stem(folder):
    """{stem: [paths]} of the files with a label-map extension in ``folder``."""
    from caffe_mlic.fileio import file_kind_problem
    files, problems = {}, []
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        path = os.path.join(folder, name)
        if ext.lower() in LABEL_EXTENSIONS and os.path.isfile(path):
            files.setdefault(stem, []).append(path)
        elif ext.lower() in LABEL_EXTENSIONS:   # a FIFO, folder, link loop by a map's name: not "no map"
            problems.append(Problem(path, None, None, file_kind_problem(path, 'label map')))
    raise_if_problems(problems)
    return files


def _label_files(folder, what):
    """{stem: [paths]} of the label-map images in ``folder``."""
    if not os.path.isdir(folder):
        raise InputError('%s: %s' % (folder, folder_problem(folder, what + ' folder')))
    files = _files_by_stem(folder)
    if not files:
        raise InputError('%s: no %s label maps (%s) in the folder'
                         % (folder, what, ' '.join(LABEL_EXTENSIONS)))
    return files


def _gt_stem(stem, gt_stems, gt_suffix):
    """The gt stem paired with prediction ``stem`` and, if none, why."""
    if gt_suffix is not None:
        wanted = stem + gt_suffix
        return (wanted, None) if wanted in gt_stems else (None, 'no ground truth %s.<ext>' % wanted)
    if stem in gt_stems:
        return stem, None
    suffixed = sorted(s for s in gt_stems if s.startswith(stem + '_'))
    if len(suffixed) == 1:
        return suffixed[0], None
    if suffixed:
        return None, ('several ground truths could be its own: %s (pass gt_suffix to choose)'
                      % ', '.join(suffixed))
    return None, 'no ground truth %s.<ext> or %s_<suffix>.<ext>' % (stem, stem)


def pair_files(pred_dir, gt_dir, gt_suffix=None):
    """([(prediction path, gt path)] in name order, [gt paths no prediction
    claims]); one InputError listing every prediction without its ground
    truth, and stems with two files. Ground truths without a prediction are
    not an error: a reference folder usually holds every tile and only the
    test tiles are predicted; the caller reports them as not scored."""
    preds = _label_files(pred_dir, 'prediction')
    gts = _label_files(gt_dir, 'ground truth')
    problems = [Problem(paths[1], None, None, 'two files with the stem %r: %s' % (stem, ', '.join(paths)))
                for files in (preds, gts) for stem, paths in files.items() if len(paths) > 1]
    pairs, claimed = [], {}
    for stem, paths in preds.items():
        gt_stem, why = _gt_stem(stem, gts, gt_suffix)
        if gt_stem is None:
            problems.append(Problem(paths[0], None, None, 'prediction with no ground truth in %s: %s'
                                    % (gt_dir, why)))
            continue
        claimed.setdefault(gt_stem, []).append(paths[0])
        pairs.append((paths[0], gts[gt_stem][0]))
    unscored = []
    for gt_stem, paths in gts.items():
        owners = claimed.get(gt_stem, [])
        if not owners:
            unscored.append(paths[0])
        elif len(owners) > 1:
            problems.append(Problem(paths[0], None, None, 'the ground truth of several predictions: %s'
                                    % ', '.join(owners)))
    raise_if_problems(problems)
    return pairs, unscored


def _size(labels):
    return '%dx%d' % (labels.shape[1], labels.shape[0])


def _read_map(path, what, num_classes, palette):
    """labelmaps.read_label_map, after the image readers' size bound (a
    header claiming 60000 x 60000 px is refused before OpenCV allocates it);
    an OpenCV error while decoding is one line naming the file."""
    import cv2
    from caffe_mlic.data.imageio import oversized
    why = oversized(path)
    if why:
        raise InputError(problems=[Problem(path, None, None, '%s: cannot read label map (%s)' % (what, why))])
    try:
        return labelmaps.read_label_map(path, num_classes, palette)
    except cv2.error as e:
        last = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise InputError(problems=[Problem(path, None, None, '%s: cannot read label map (OpenCV cannot decode '
                                           'it: %s)' % (what, last[-1] if last else 'cv2.error'))])


def _mask_stems(folder):
    """{stem: path} of the hard-pixel masks in ``folder`` (files with a
    label-map extension); InputError for a stem with two files (X.png and
    X.tif: which one is meant?), as for the predictions and ground truths."""
    files = _files_by_stem(folder)
    raise_if_problems([Problem(paths[1], None, None, 'two files with the stem %r: %s' % (stem, ', '.join(paths)))
                       for stem, paths in files.items() if len(paths) > 1])
    return {stem: paths[0] for stem, paths in files.items()}


def _mask_stems_of(pred_path, gt_path):
    """The stems a prediction's mask may have: the prediction's, then its ground truth's."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in (pred_path, gt_path)]
    return stems[:1] if stems[0] == stems[1] else stems


def _mask_paths(folder, pairs):
    """{prediction path: its mask's path} for ``pairs``; one InputError
    naming the folder and the predictions without a mask."""
    masks = _mask_stems(folder)
    found, missing = {}, []
    for pred_path, gt_path in pairs:
        path = next((masks[s] for s in _mask_stems_of(pred_path, gt_path) if s in masks), None)
        if path is None:
            stems = _mask_stems_of(pred_path, gt_path)
            missing.append(os.path.basename(pred_path) + (' (or %s)' % stems[1] if len(stems) > 1 else ''))
        found[pred_path] = path
    if missing:
        from caffe_mlic.errors import MAX_LISTED
        shown = ', '.join(missing[:MAX_LISTED]) + (', and %d more' % (len(missing) - MAX_LISTED)
                                                   if len(missing) > MAX_LISTED else '')
        raise InputError('%s: no hard-pixel mask for %d of %d predictions (%s; a mask is named as its '
                         'prediction, else its ground truth, with one of %s)'
                         % (folder, len(missing), len(pairs), shown, ' '.join(LABEL_EXTENSIONS)))
    return found


def read_hard_mask(path, shape, of):
    """The hard-pixel mask in ``path`` (single-channel; nonzero = hard) as a
    bool array of ``shape`` (H, W); InputError naming the file when it is
    unreadable, not single-channel or of another size than ``of`` (the
    prediction's path)."""
    import cv2
    from caffe_mlic.data.imageio import bytes_problem, file_bytes, imdecode, oversized, without_colour_profile

    def bad(why):
        return InputError(problems=[Problem(path, None, None, 'hard-pixel mask %s' % why)])
    why = oversized(path)
    if why:
        raise bad('cannot be read (%s)' % why)
    try:
        data = file_bytes(path)
    except (OSError, ValueError) as e:
        raise bad('cannot be read: %s' % (getattr(e, 'strerror', None) or e))
    refused = bytes_problem(data)
    if refused:
        raise bad('cannot be read (%s)' % refused)
    mask, said = imdecode(without_colour_profile(data), cv2.IMREAD_UNCHANGED)
    if mask is None or mask.size == 0:
        raise bad('cannot be read (%s)' % ('OpenCV cannot decode it: %s' % said if said else
                                           'empty, corrupt or not an image'))
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.ndim != 2:
        raise bad('is a %d-channel image; a mask is a single-channel image (0 = not hard, nonzero = hard)'
                  % mask.shape[2])
    if mask.shape != tuple(shape):
        raise bad('is %s (WxH) but the prediction %s is %dx%d' % (_size(mask), of, shape[1], shape[0]))
    return mask != 0


def _score_pair(evaluator, pred_path, gt_path, palette, eroded, radius, detail=None, mask_path=None):
    """Add one image to ``evaluator`` (and to ``detail``, a DetailMetrics,
    on the ground truth as read, with the hard-pixel mask in ``mask_path``
    when its masks are files); its info; InputError naming the file."""
    gt = _read_map(gt_path, 'ground truth', evaluator.num_classes, palette)
    pred = _read_map(pred_path, 'prediction', None, palette)   # checked where scored, by confusion
    if pred.shape != gt.shape:
        raise InputError(problems=[Problem(pred_path, None, None, 'prediction is %s (WxH) but its ground '
                                           'truth %s is %s' % (_size(pred), gt_path, _size(gt)))])
    hard = None
    if detail is not None and detail.hard_masks is not None:
        if mask_path is None:
            stems = _mask_stems_of(pred_path, gt_path)
            raise InputError(problems=[Problem(os.path.join(detail.hard_masks, stems[0] + '.png'), None, None,
                                               'hard-pixel mask not found (for the prediction %s; looked for '
                                               '%s.<ext>, %s)' % (pred_path, ' or '.join(sorted(set(stems))),
                                                                  ' '.join(LABEL_EXTENSIONS)))])
        hard = read_hard_mask(mask_path, gt.shape, pred_path)
    info = {'prediction': os.path.abspath(pred_path), 'ground_truth': os.path.abspath(gt_path)}
    info.update(score_maps(evaluator, pred, gt, eroded, radius, detail, hard, where=pred_path))
    return info


def score_maps(evaluator, pred, gt, eroded=False, radius=3, detail=None, hard=None, where='prediction'):
    """Add one prediction ``pred`` against its ground truth ``gt`` (label
    maps of one shape) to ``evaluator`` (on ``gt`` eroded by ``radius`` when
    ``eroded``) and to ``detail`` (a DetailMetrics, on ``gt`` as given, with
    the hard-pixel mask ``hard`` when its masks are files); the image's info.
    What eval seg does per image, for maps read from files or made in memory."""
    full = gt
    if eroded:
        gt = labelmaps.erode_boundaries(gt, radius)
    before = evaluator.conf.copy()
    evaluator.process(pred, gt, where=where)
    conf = evaluator.conf - before
    pixels, correct = int(conf.sum()), int(np.trace(conf))
    info = {'width': int(gt.shape[1]), 'height': int(gt.shape[0]), 'pixels': pixels, 'correct': correct,
            'OA': 100.0 * correct / pixels if pixels else None}
    if detail is not None:
        info.update(detail.add(full, pred, hard))
    return info


def evaluate_dirs(pred_dir, gt_dir, palette=None, num_classes=None, eroded=False, radius=3,
                  progress=True, gt_suffix=None, evaluator=None, detail=None):
    """(confusion summed over the images, [per-image info], [ground truths
    not scored]) of the label maps in ``pred_dir`` against ``gt_dir`` (module
    docstring for pairing), accumulated in ``evaluator`` (a new
    SegmentationEvaluator by default) and, when given, in ``detail`` (a
    DetailMetrics: its hard-pixel masks, if files, are read from its
    ``hard_masks`` folder as ``<prediction stem>.<ext>``, else ``<ground
    truth stem>.<ext>``). ``num_classes`` defaults to the palette's size
    (ISPRS: 6). Every problem (pairing, unreadable maps or masks, sizes,
    values) is reported in one InputError."""
    from caffe_mlic.progress import progress as bar
    if eroded:
        check_erode_radius(radius)
    if detail is not None and detail.hard_masks is not None and not os.path.isdir(detail.hard_masks):
        raise InputError('%s: %s' % (detail.hard_masks, folder_problem(detail.hard_masks, 'hard-pixel mask folder')))
    palette = labelmaps.load_palette(palette)
    num_classes = num_classes or len(palette)
    evaluator = evaluator or SegmentationEvaluator(num_classes)
    pairs, unscored = pair_files(pred_dir, gt_dir, gt_suffix)
    masks = _mask_paths(detail.hard_masks, pairs) if detail is not None and detail.hard_masks is not None else {}
    images, problems = [], []
    for pred_path, gt_path in bar(pairs, desc='eval seg', unit='image', enabled=progress):
        try:
            images.append(_score_pair(evaluator, pred_path, gt_path, palette, eroded, radius, detail,
                                      masks.get(pred_path)))
        except InputError as e:
            problems.extend(e.problems or [str(e)])
    raise_if_problems(problems)
    return evaluator.conf, images, unscored


def check_erode_radius(radius):
    """UsageError unless radius is an integer 0..MAX_ERODE_RADIUS."""
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) \
            or not 0 <= radius <= MAX_ERODE_RADIUS:
        raise UsageError('the erosion radius must be an integer from 0 to %d px (the benchmark\'s is 3), '
                         'got %r' % (MAX_ERODE_RADIUS, radius), 'radius')


def class_names(palette, num_classes):
    """The palette's names for the first ``num_classes`` classes; classes
    beyond the palette are named by their index."""
    names = list(labelmaps.load_palette(palette).names)
    return [names[k] if k < len(names) else 'class_%d' % k for k in range(num_classes)]


# ---------------------------------------------------------------- outputs


def write_confusion_csv(path, conf, names):
    """The confusion as CSV: a header row ``gt\\pred,<names>``, then one row
    per ground-truth class (its name, then the counts); atomic."""
    from caffe_mlic.fileio import atomic_write_csv
    rows = [[name] + row for name, row in zip(names, np.asarray(conf, np.int64).tolist())]
    return atomic_write_csv(path, ['gt\\pred'] + list(names), rows)


def row_percentages(conf):
    """Each row of the confusion in percent of its sum (NaN for an empty row)."""
    conf = np.asarray(conf, np.float64)
    rows = conf.sum(axis=1, keepdims=True)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(rows > 0, 100.0 * conf / rows, np.nan)

