"""Semantic labeling metrics (ScasNet, ISPRS 2D semantic labeling), from a
confusion matrix of label maps (caffe_mlic.data.labelmaps).

- Confusion C (K x K, int64): rows ground truth, columns prediction. Pixels
  whose ground truth is IGNORE_LABEL (255) are not scored, whatever is
  predicted there; at a scored pixel a prediction outside 0..K-1 (255
  included) is an error. With ``eroded`` the ground truth's class boundaries
  are first eroded (a disc of ``radius`` px, 3 as the benchmark's
  "noBoundary" references) to IGNORE_LABEL. Ground-truth values must be
  classes or IGNORE_LABEL everywhere.
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
from caffe_mlic.errors import InputError, Problem, raise_if_problems

LABEL_EXTENSIONS = ('.png', '.tif', '.tiff', '.bmp')
EXCLUDE_FROM_MEAN = ('clutter',)


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


def _score_pair(pred_path, gt_path, num_classes, palette, eroded, radius):
    """(confusion, info) of one image; InputError naming the file."""
    gt = labelmaps.read_label_map(gt_path, num_classes, palette)
    pred = labelmaps.read_label_map(pred_path, None, palette)   # checked where scored, by confusion
    if pred.shape != gt.shape:
        raise InputError(problems=[Problem(pred_path, None, None, 'prediction is %s (WxH) but its ground '
                                           'truth %s is %s' % (_size(pred), gt_path, _size(gt)))])
    if eroded:
        gt = labelmaps.erode_boundaries(gt, radius)
    conf = confusion(gt, pred, num_classes, pred_path)
    pixels, correct = int(conf.sum()), int(np.trace(conf))
    info = {'prediction': os.path.abspath(pred_path), 'ground_truth': os.path.abspath(gt_path), 'width': int(gt.shape[1]),
            'height': int(gt.shape[0]), 'pixels': pixels, 'correct': correct,
            'OA': 100.0 * correct / pixels if pixels else None}
    return conf, info


def evaluate_dirs(pred_dir, gt_dir, palette=None, num_classes=None, eroded=False, radius=3,
                  progress=True, gt_suffix=None):
    """(confusion summed over the images, [per-image info]) of the label
    maps in ``pred_dir`` against ``gt_dir`` (module docstring for pairing).
    ``num_classes`` defaults to the palette's size (ISPRS: 6). Every problem
    (pairing, unreadable maps, sizes, values) is reported in one InputError."""
    from caffe_mlic.progress import progress as bar
    palette = labelmaps.load_palette(palette)
    num_classes = num_classes or len(palette)
    pairs, unscored = pair_files(pred_dir, gt_dir, gt_suffix)
    total = np.zeros((num_classes, num_classes), np.int64)
    images, problems = [], []
    for pred_path, gt_path in bar(pairs, desc='eval seg', unit='image', enabled=progress):
        try:
            conf, info = _score_pair(pred_path, gt_path, num_classes, palette, eroded, radius)
        except InputError as e:
            problems.extend(e.problems or [str(e)])
            continue
        total += conf
        images.append(info)
    raise_if_problems(problems)
    return total, images, unscored


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


def plot_confusion(path, conf, names, title=None):
    """PNG of the row-normalised confusion (percent of each ground-truth
    class), every cell annotated; atomic."""
    from caffe_mlic.report.figures import _figure, _save
    pct = row_percentages(conf)
    k = len(names)
    fig = _figure(max(4.0, 0.9 * k + 2.5), max(3.5, 0.8 * k + 1.8))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.nan_to_num(pct), cmap='Blues', vmin=0, vmax=100)
    for (i, j), value in np.ndenumerate(pct):
        text = 'n/a' if np.isnan(value) else '%.1f' % value
        ax.text(j, i, text, ha='center', va='center', fontsize=8,
                color='white' if value > 60 else 'black')
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=35, ha='right', fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel('prediction')
    ax.set_ylabel('ground truth')
    ax.set_title(title or 'confusion (% of each ground-truth class)', fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    _save(fig, path)
    return path
