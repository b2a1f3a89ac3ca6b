"""Multi-label classification metrics, and `caffe-mlic evaluate` over a net's TEST phase.

mAP here is the mean over classes of the non-interpolated average precision
(the mean of the precision at the rank of every positive image), the measure
the MLIC-KD-WSD paper reports; classes with no positive image are left out.
"""
import json
import os
import sys

import numpy as np


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


def _test_data_layer(prototxt):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    with open(prototxt) as f:
        text_format.Merge(f.read(), net)
    for layer in net.layer:
        if (layer.type == 'Python' and layer.python_param.layer == 'MultiLabelProposalData'
                and any(r.phase == caffe_pb2.TEST for r in layer.include)):
            return json.loads(layer.python_param.param_str)
    raise ValueError('%s has no TEST-phase MultiLabelProposalData layer' % prototxt)


def score_test_set(prototxt, weights, blob, label_blob=None):
    """Run the TEST phase once over its whole datalist: (scores (M, C), labels (M, C))."""
    import caffe
    from caffe_mlic.datalist import read_datalist
    params = _test_data_layer(prototxt)
    count = len(read_datalist(params['source'], params['att_num'], params['bbox_num'],
                              check_images=False).image_paths)
    net = caffe.Net(prototxt, caffe.TEST, weights=weights)
    label_blob = label_blob or next(b for b in ('labels', 'label') if b in net.blobs)
    scores, labels = [], []
    for _ in range(-(-count // params['batch_size'])):
        net.forward()
        scores.append(net.blobs[blob].data.reshape(net.blobs[blob].shape[0], -1).copy())
        labels.append(net.blobs[label_blob].data.copy())
    return np.concatenate(scores)[:count], np.concatenate(labels)[:count]


def register(sub):
    p = sub.add_parser('evaluate', help='mAP of a trained net on its TEST datalist')
    p.add_argument('--net', required=True, help='train/test prototxt with a TEST data layer')
    p.add_argument('--weights', required=True, help='caffemodel')
    p.add_argument('--blob', required=True,
                   help='score blob: image_level_score (teacher), fc8_mscoco (student logits)')
    p.add_argument('--classes', help='class-name file for the per-class table')
    p.set_defaults(func=_cmd)


def _cmd(args):
    for path in (args.net, args.weights):
        if not os.path.isfile(path):
            sys.exit('caffe-mlic evaluate: %s: no such file' % path)
    try:
        scores, labels = score_test_set(args.net, args.weights, args.blob)
    except (ValueError, KeyError, OSError) as e:  # DatalistError is a ValueError
        sys.exit('caffe-mlic evaluate: %s' % e)
    mean_ap, aps = mean_average_precision(scores, labels)
    names = [l.strip() for l in open(args.classes)] if args.classes else [str(c) for c in range(len(aps))]
    for name, ap in zip(names, aps):
        print('  AP %-20s %s' % (name, 'n/a' if np.isnan(ap) else '%.1f' % (100 * ap)))
    print('mAP %.1f %% over %d images' % (100 * mean_ap, len(scores)))
    return 0
