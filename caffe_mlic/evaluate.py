"""Multi-label classification metrics, and `caffe-mlic evaluate` over a net's TEST phase.

mAP here is the mean over classes of the non-interpolated average precision
(the mean of the precision at the rank of every positive image), the measure
the MLIC-KD-WSD paper reports; classes with no positive image are left out.
"""
import numpy as np

from caffe_mlic.errors import UsageError


def average_precision(scores, targets):
    """AP of one class: scores (M,), targets (M,) in {0, 1}. NaN when no positive."""
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets) > 0.5
    positives = targets.sum()
    if positives == 0:
        return float('nan')
    order = np.argsort(-scores, kind='stable')
    hits = targets[order]
    precision_at_hit = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    return float(precision_at_hit.sum() / positives)


def mean_average_precision(scores, targets):
    """(mAP, per-class APs) for scores/targets of shape (M, C)."""
    aps = np.array([average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])
    return float(np.nanmean(aps)) if np.isfinite(aps).any() else float('nan'), aps


def score_test_set(prototxt_path, weights, blob, label_blob=None):
    """Run the TEST phase once over its whole datalist: (scores (M, C), labels (M, C))."""
    from caffe_mlic import prototxt
    from caffe_mlic.datalist import read_datalist
    layer = prototxt.data_layer(prototxt.read_net(prototxt_path), 'TEST', where=prototxt_path)
    params = prototxt.python_params(layer)
    count = len(read_datalist(params['source'], params['att_num'], params['bbox_num'],
                              check_images=False).image_paths)
    net = prototxt.caffe_net(prototxt_path, 'TEST', weights=weights)
    if blob not in net.blobs:
        raise UsageError('%s has no blob %r; its blobs: %s' % (prototxt_path, blob, ', '.join(net.blobs)),
                         'blob')
    label_blob = label_blob or next(b for b in ('labels', 'label') if b in net.blobs)
    scores, labels = [], []
    for _ in range(-(-count // params['batch_size'])):
        net.forward()
        scores.append(net.blobs[blob].data.reshape(net.blobs[blob].shape[0], -1).copy())
        labels.append(net.blobs[label_blob].data.copy())
    return np.concatenate(scores)[:count], np.concatenate(labels)[:count]
