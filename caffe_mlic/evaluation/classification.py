"""Multi-label classification metrics, with the conventions of the
multi-label literature (ML-GCN's evaluation).

Inputs: scores S (images x classes), probabilities; labels L of the same
shape, 1 (present), 0 (absent) or -1 (ignore: that image is left out of that
class's AP and of every count).

- AP of a class: non-interpolated, the mean of the precision at the rank of
  each positive image, images ranked by score descending, ties kept in the
  order given (stable sort); undefined (NaN, null in JSON) for a class with
  no positive. mAP: the mean over the classes with a positive.
- A label is predicted when its score >= 0.5. Per class: Nc correct
  predictions, Np predictions (counted as 1 when 0, so a class never
  predicted has precision 0), Ng positives.
- CP = mean_c Nc/Np, CR = mean_c Nc/Ng, CF1 = 2 CP CR / (CP + CR): means
  over the classes with a positive (Ng > 0), the classes mAP averages. For
  a class with Ng = 0 recall is 0/0 and AP undefined, and its precision is 0
  whatever it predicts, so it would only measure what the test set lacks;
  its false positives still count in OP.
- OP = sum Nc / sum Np, OR = sum Nc / sum Ng, OF1 = 2 OP OR / (OP + OR),
  over all classes.
- The _top3 variants predict only an image's 3 highest-scoring labels
  (ties: the lower class index first) that are also >= 0.5; an ignored label
  among the 3 takes its place but is not counted.
- An F1 is 0 when its precision and recall are both 0.
- Per-class thresholds instead of 0.5 (``fit_thresholds``): each class's is
  chosen where its F1 is highest on other scores (the validation split's),
  then applied unchanged; a class without a positive there keeps 0.5.

Results are in percent; undefined values are None.
"""
import math

import numpy as np

from caffe_mlic.errors import InputError, Problem
from caffe_mlic.evaluation import Evaluator

THRESHOLD = 0.5
TOP_K = 3
PROBABILITY_SLACK = 1e-5   # float32 sums of softmax products may exceed 1 by rounding
OVERALL_KEYS = ('CP', 'CR', 'CF1', 'OP', 'OR', 'OF1')


def _average_precisions(scores, labels):
    """AP per column of scores/labels (M, C): float64 (C,), NaN without positive."""
    order = np.argsort(-scores, axis=0, kind='stable')
    ranked = np.take_along_axis(labels, order, axis=0)
    positive, counted = ranked == 1, ranked != -1
    hits = np.cumsum(positive, axis=0)
    ranks = np.cumsum(counted, axis=0)
    precision_at_hit = np.where(positive, hits / np.maximum(ranks, 1), 0.0)
    with np.errstate(invalid='ignore', divide='ignore'):
        return precision_at_hit.sum(axis=0) / positive.sum(axis=0)


def average_precision(scores, targets):
    """AP of one class: scores (M,), targets (M,) in {1, 0, -1}. NaN when no positive."""
    scores = np.asarray(scores, np.float64).reshape(-1, 1)
    targets = np.asarray(targets).reshape(-1, 1)
    return float(_average_precisions(scores, targets)[0])


def mean_average_precision(scores, targets):
    """(mAP, per-class APs) for scores/targets (M, C), as fractions; mAP over
    the classes with a positive (NaN when none has)."""
    aps = _average_precisions(np.asarray(scores, np.float64), np.asarray(targets))
    return float(np.nanmean(aps)) if np.isfinite(aps).any() else float('nan'), aps


def _first(mask):
    """'S[i, j]' of the first True of a 2-D mask, and how many more there are."""
    where = np.argwhere(mask)
    return tuple(int(v) for v in where[0]), len(where) - 1


def _more(n):
    return ' (and %d more)' % n if n else ''


def check_inputs(scores, labels, classes=None, scores_source='scores', labels_source='labels',
                 classes_source='class list'):
    """(scores float64, labels int8) once both are images x classes arrays of
    the same shape, scores finite probabilities, labels 1/0/-1 and, when
    given, one class name per column; InputError naming the source otherwise."""
    S, L = np.asarray(scores), np.asarray(labels)
    problems = []
    for name, a, source in (('scores', S, scores_source), ('labels', L, labels_source)):
        if a.dtype.kind not in 'biuf':
            problems.append(Problem(source, None, None, '%s must be numbers, got dtype %s' % (name, a.dtype)))
        elif a.ndim != 2:
            problems.append(Problem(source, None, None, '%s must be a 2-D array (images x classes), '
                                    'got shape %s' % (name, a.shape)))
        elif a.shape[0] == 0 or a.shape[1] == 0:
            problems.append(Problem(source, None, None, '%s are empty (shape %s)' % (name, a.shape)))
    if problems:
        raise InputError(problems=problems)
    if S.shape != L.shape:
        raise InputError(problems=[Problem(scores_source, None, None, 'scores are %d images x %d classes '
                                           'but the labels (%s) are %d x %d'
                                           % (S.shape + (labels_source,) + L.shape))])
    S = S.astype(np.float64)
    bad = ~np.isfinite(S)
    if bad.any():
        (i, j), more = _first(bad)
        problems.append(Problem(scores_source, None, None, 'S[%d, %d] = %r is not a finite number%s'
                                % (i, j, S[i, j], _more(more))))
    else:
        outside = (S < -PROBABILITY_SLACK) | (S > 1 + PROBABILITY_SLACK)
        if outside.any():
            (i, j), more = _first(outside)
            problems.append(Problem(scores_source, None, None,
                                    'S[%d, %d] = %g is outside [0, 1]%s (scores from %g to %g): the '
                                    'metrics need probabilities; logits need a sigmoid first'
                                    % (i, j, S[i, j], _more(more), S.min(), S.max())))
    bad = (L != 1) & (L != 0) & (L != -1)
    if bad.any():
        (i, j), more = _first(bad)
        problems.append(Problem(labels_source, None, None, 'L[%d, %d] = %r is not 1, 0 or -1 (ignore)%s'
                                % (i, j, L[i, j].item(), _more(more))))
    if classes is not None and len(classes) != S.shape[1]:
        problems.append(Problem(classes_source, None, None, '%d class names, but the scores have %d classes'
                                % (len(classes), S.shape[1])))
    if problems:
        raise InputError(problems=problems)
    return S, L.astype(np.int8)


def _percent(value):
    return None if value is None or not np.isfinite(value) else 100.0 * float(value)


def _f1(p, r):
    if not (np.isfinite(p) and np.isfinite(r)):
        return float('nan')
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def _count_metrics(predicted, positive):
    """CP CR CF1 OP OR OF1 (fractions) of boolean predictions against positives."""
    nc = (predicted & positive).sum(axis=0)
    np_ = predicted.sum(axis=0)
    ng = positive.sum(axis=0)
    has = ng > 0
    if has.any():
        cp = float(np.mean(nc[has] / np.maximum(np_[has], 1)))
        cr = float(np.mean(nc[has] / ng[has]))
    else:
        cp = cr = float('nan')
    op = nc.sum() / max(np_.sum(), 1)
    orr = nc.sum() / ng.sum() if ng.sum() else float('nan')
    return dict(zip(OVERALL_KEYS, (cp, cr, _f1(cp, cr), op, orr, _f1(op, orr))))


def fit_thresholds(scores, labels):
    """(C,) per-class thresholds: for each class, the cut in its scores
    (halfway between two distinct scores) where its F1 is highest on these
    scores and labels (-1 ignored); ties go to the higher threshold. A class
    without a positive keeps THRESHOLD."""
    S, L = check_inputs(scores, labels)
    out = np.full(S.shape[1], THRESHOLD)
    for c in range(S.shape[1]):
        keep = L[:, c] != -1
        s, positive = S[keep, c], L[keep, c] == 1
        if not positive.any():
            continue
        order = np.argsort(-s, kind='stable')
        s, positive = s[order], positive[order]
        true_pos = np.cumsum(positive)
        predicted = np.arange(1, len(s) + 1)
        f1 = 2 * true_pos / (predicted + positive.sum())
        # a cut must keep tied scores together: after the last of each run of ties
        cut = np.append(s[1:] < s[:-1], True)
        best = int(np.flatnonzero(cut)[np.argmax(f1[cut])])
        out[c] = s[best] if best == len(s) - 1 else 0.5 * (s[best] + s[best + 1])
    return out


def write_thresholds(path, thresholds, classes, fitted_on):
    from caffe_mlic.fileio import atomic_write_json
    atomic_write_json(path, dict(classes=list(classes), thresholds=[float(t) for t in thresholds],
                                 fitted_on=fitted_on, rule='per class, the highest F1 on fitted_on'))


def read_thresholds(path, classes):
    """(C,) thresholds from a ``write_thresholds`` file (or a bare JSON list
    of them, in the scores' class order), for ``classes`` (names, in the
    scores' order); InputError naming the file and field."""
    from caffe_mlic.fileio import read_json
    data = read_json(path, 'thresholds')
    if isinstance(data, list):      # a bare list, one per class in the scores' order
        data = {'thresholds': data}
    if not isinstance(data, dict):
        raise InputError(problems=[Problem(path, None, 'thresholds', 'expected the object --fit-thresholds '
                                           'writes ({"thresholds": [...], "classes": [...]}) or a list of '
                                           'numbers, got %s' % type(data).__name__)])
    values = data.get('thresholds')
    if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in values):
        raise InputError(problems=[Problem(path, None, 'thresholds', 'must be a list of numbers in [0, 1]')])
    if len(values) != len(classes):
        raise InputError(problems=[Problem(path, None, 'thresholds', '%d thresholds for %d classes'
                                           % (len(values), len(classes)))])
    named = data.get('classes')
    if named is not None and list(named) != list(classes):
        raise InputError(problems=[Problem(path, None, 'classes', 'fitted for classes %s, the scores are '
                                           'of %s' % (named, list(classes)))])
    return np.asarray(values, np.float64)


def multilabel_metrics(scores, labels, classes=None, threshold=THRESHOLD, top_k=TOP_K):
    """The metrics of the module docstring, in percent: {'mAP', 'AP' (per
    class, None without positive), 'CP', 'CR', 'CF1', 'OP', 'OR', 'OF1',
    the same six with '_top3' (for top_k 3), 'classes'}. classes: names
    (default '0', '1', ...). threshold: one number, or one per class."""
    S, L = check_inputs(scores, labels, classes)
    names = list(classes) if classes is not None else [str(c) for c in range(S.shape[1])]
    mean_ap, aps = mean_average_precision(S, L)
    positive, counted = L == 1, L != -1
    above = (S >= threshold) & counted
    top = np.argsort(-S, axis=1, kind='stable')[:, :min(top_k, S.shape[1])]
    in_top = np.zeros(S.shape, bool)
    np.put_along_axis(in_top, top, True, axis=1)
    result = {'mAP': _percent(mean_ap), 'AP': [_percent(ap) for ap in aps]}
    result.update({k: _percent(v) for k, v in _count_metrics(above, positive).items()})
    result.update({'%s_top%d' % (k, top_k): _percent(v)
                   for k, v in _count_metrics(above & in_top, positive).items()})
    result['classes'] = names
    return result


def metrics_rows(result):
    """The rows (metric, class, value) of a multilabel_metrics result: AP of
    each class, then mAP and the overall metrics (class empty)."""
    rows = [('AP', name, ap) for name, ap in zip(result['classes'], result['AP'])]
    rows.append(('mAP', None, result['mAP']))
    rows += [(key + suffix, None, result[key + suffix]) for suffix in ('', '_top%d' % TOP_K)
             for key in OVERALL_KEYS if key + suffix in result]
    return rows


def write_metrics_csv(path, result):
    """Write a multilabel_metrics result as CSV, metric,class,value (percent;
    an undefined value is an empty cell)."""
    from caffe_mlic.fileio import atomic_write_csv
    return atomic_write_csv(path, ('metric', 'class', 'value'), metrics_rows(result))


class MultiLabelEvaluator(Evaluator):
    """mAP of image scores (N, C) against 0/1 labels (N, C); keeps both, for
    `eval cls --net`, which writes them (``scores``, ``labels``)."""
    key = 'mAP'

    def reset(self):
        super().reset()
        self._scores, self._labels = [], []

    @staticmethod
    def fits(output_shape, label_shape):
        return len(output_shape) >= 1 and (output_shape[0], int(np.prod(output_shape[1:]))) == tuple(label_shape)

    def process(self, outputs, targets):
        keep = self._keep(len(outputs))
        self._scores.append(np.asarray(outputs).reshape(len(outputs), -1)[:keep].astype(np.float64))
        self._labels.append(np.asarray(targets).reshape(len(targets), -1)[:keep].copy())

    def scores(self):
        """(M, C) float64, the images' scores in list order."""
        return np.concatenate(self._scores) if self._scores else np.zeros((0, 0))

    def labels(self):
        """(M, C) int8, the images' labels in list order."""
        return np.rint(np.concatenate(self._labels)).astype(np.int8) if self._labels else np.zeros((0, 0), np.int8)

    def evaluate(self):
        mean_ap, _ = mean_average_precision(self.scores(), self.labels())
        return {'mAP': 100 * mean_ap if math.isfinite(mean_ap) else None}
