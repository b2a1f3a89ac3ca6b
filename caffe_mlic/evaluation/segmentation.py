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
"""
import os

import numpy as np

from caffe_mlic.data import labelmaps
from caffe_mlic.errors import InputError, Problem, UsageError, raise_if_problems
from caffe_mlic.evaluation import Evaluator

LABEL_EXTENSIONS = ('.png', '.tif', '.tiff', '.bmp')
EXCLUDE_FROM_MEAN = ('clutter',)
# The benchmark erodes 3 px. The disc's work per pixel grows with its area
# (about 0.3 s a megapixel at 64, so 10 s for a 6000 x 6000 ISPRS tile), and
# OpenCV's kernel is (2r + 1)^2 bytes: a radius of 100000 would ask for 40 GB.
MAX_ERODE_RADIUS = 64


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


# ---------------------------------------------------------------- folders


def _label_files(folder, what):
    """{stem: [paths]} of the label-map images in ``folder``."""
    if not os.path.isdir(folder):
        raise InputError('%s: %s folder not found' % (folder, what))
    files = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        path = os.path.join(folder, name)
        if ext.lower() in LABEL_EXTENSIONS and os.path.isfile(path):
            files.setdefault(stem, []).append(path)
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


def _score_pair(evaluator, pred_path, gt_path, palette, eroded, radius):
    """Add one image to ``evaluator``; its info; InputError naming the file."""
    gt = _read_map(gt_path, 'ground truth', evaluator.num_classes, palette)
    pred = _read_map(pred_path, 'prediction', None, palette)   # checked where scored, by confusion
    if pred.shape != gt.shape:
        raise InputError(problems=[Problem(pred_path, None, None, 'prediction is %s (WxH) but its ground '
                                           'truth %s is %s' % (_size(pred), gt_path, _size(gt)))])
    if eroded:
        gt = labelmaps.erode_boundaries(gt, radius)
    before = evaluator.conf.copy()
    evaluator.process(pred, gt, where=pred_path)
    conf = evaluator.conf - before
    pixels, correct = int(conf.sum()), int(np.trace(conf))
    return {'prediction': os.path.abspath(pred_path), 'ground_truth': os.path.abspath(gt_path),
            'width': int(gt.shape[1]), 'height': int(gt.shape[0]), 'pixels': pixels, 'correct': correct,
            'OA': 100.0 * correct / pixels if pixels else None}


def evaluate_dirs(pred_dir, gt_dir, palette=None, num_classes=None, eroded=False, radius=3,
                  progress=True, gt_suffix=None, evaluator=None):
    """(confusion summed over the images, [per-image info], [ground truths
    not scored]) of the label maps in ``pred_dir`` against ``gt_dir`` (module
    docstring for pairing), accumulated in ``evaluator`` (a new
    SegmentationEvaluator by default). ``num_classes`` defaults to the
    palette's size (ISPRS: 6). Every problem (pairing, unreadable maps,
    sizes, values) is reported in one InputError."""
    from caffe_mlic.progress import progress as bar
    if eroded:
        check_erode_radius(radius)
    palette = labelmaps.load_palette(palette)
    num_classes = num_classes or len(palette)
    evaluator = evaluator or SegmentationEvaluator(num_classes)
    pairs, unscored = pair_files(pred_dir, gt_dir, gt_suffix)
    images, problems = [], []
    for pred_path, gt_path in bar(pairs, desc='eval seg', unit='image', enabled=progress):
        try:
            images.append(_score_pair(evaluator, pred_path, gt_path, palette, eroded, radius))
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
