"""Evaluate: multi-label classification metrics (cls) and VOC detection AP
and CorLoc (det)."""
import os

import numpy as np

from caffe_mlic.commands import subcommands
from caffe_mlic.errors import InputError, Problem, UsageError

HELP = 'classification (mAP, CP/CR/CF1, OP/OR/OF1) or detection (AP, CorLoc) metrics'


def add_arguments(p):
    from caffe_mlic.evaluation import classification, detection
    add = subcommands(p)
    c = add('cls', run_cls, 'multi-label metrics of saved scores or of a trained net',
            classification.__doc__)
    saved = c.add_argument_group('saved scores (both)')
    saved.add_argument('--scores', metavar='S.npy', help='images x classes scores (.npy)')
    saved.add_argument('--labels', metavar='L.npy', help='images x classes labels 1/0/-1 (.npy)')
    net = c.add_argument_group("a trained net over its TEST datalist (all three)")
    net.add_argument('--net', metavar='PROTOTXT', help='train/test prototxt with a TEST data layer')
    net.add_argument('--weights', metavar='W.caffemodel', help='caffemodel')
    net.add_argument('--blob', help='image-level score blob: image_level_score (teacher), '
                                    'fc8_mscoco (student logits, with --sigmoid)')
    c.add_argument('--list', metavar='DATALIST', dest='datalist',
                   help="with --net: score this datalist instead of the TEST layer's own "
                        "(e.g. the test split of nets whose TEST phase is the validation split)")
    c.add_argument('--save-scores', metavar='OUT.npy',
                   help='also save the scores (images x classes, after --sigmoid) and, beside '
                        'them, the labels as OUT.labels.npy')
    c.add_argument('--sigmoid', action='store_true',
                   help='the scores are logits: apply the logistic function first')
    c.add_argument('--classes', metavar='FILE', help='class names, one per line, for the table and JSON')
    c.add_argument('--json', metavar='OUT', help='write the metrics as JSON')

    d = add('det', run_det, 'VOC AP (07 11-point and area) and CorLoc of result files',
            detection.__doc__)
    gt = d.add_argument_group('ground truth (one)')
    gt.add_argument('--voc', metavar='ROOT', help='Pascal VOC folder (with --set)')
    gt.add_argument('--gt', metavar='GT.json', help='the gt.json `datalist build` writes')
    d.add_argument('--set', dest='image_set', metavar='SET',
                   help='image set: the VOC set, and the <set> of the result files (default with '
                        '--gt: the one the files name)')
    d.add_argument('--classes', metavar='FILE', help='VOC class names (default as `datalist build`)')
    d.add_argument('--results', required=True, metavar='DIR',
                   help='folder of comp4_det_<set>_<class>.txt files')
    d.add_argument('--json', metavar='OUT', help='write the metrics as JSON')


def _fmt(value, width=6):
    return ('%*.1f' % (width, value)) if value is not None else '%*s' % (width, 'n/a')


def _load_npy(path, what):
    if not os.path.isfile(path):
        raise InputError('%s: no such file' % path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(problems=[Problem(path, None, None, 'cannot read the %s as a .npy array: %s'
                                           % (what, e))])


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(x, np.float64)))


def _labels_path(scores_path):
    stem = scores_path[:-4] if scores_path.endswith('.npy') else scores_path
    return stem + '.labels.npy'


def run_cls(args):
    from caffe_mlic.annotations import read_class_list
    from caffe_mlic.evaluation import classification, write_json
    saved = [args.scores, args.labels]
    trained = [args.net, args.weights, args.blob]
    if any(saved) and any(trained):
        raise UsageError('give either --scores/--labels or --net/--weights/--blob, not both')
    if any(saved) and not all(saved):
        raise UsageError('--scores and --labels go together')
    if not any(saved) and not all(trained):
        raise UsageError('give --scores S.npy --labels L.npy, or --net PROTOTXT --weights W --blob B')
    names = read_class_list(args.classes) if args.classes else None
    if args.datalist and not args.net:
        raise UsageError('--list goes with --net')
    if args.scores:
        scores = _load_npy(args.scores, 'scores')
        labels = _load_npy(args.labels, 'labels')
        sources = dict(scores_source=args.scores, labels_source=args.labels)
    else:
        from caffe_mlic.evaluation.net_scores import score_test_set
        for path in (args.net, args.weights):
            if not os.path.isfile(path):
                raise InputError('%s: no such file' % path)
        scores, labels = score_test_set(args.net, args.weights, args.blob, datalist=args.datalist)
        sources = dict(scores_source='%s blob %s' % (args.net, args.blob),
                       labels_source='%s labels' % args.net)
    if args.sigmoid and np.asarray(scores).dtype.kind in 'biuf':
        scores = _sigmoid(scores)
    scores, labels = classification.check_inputs(scores, labels, names, classes_source=args.classes,
                                                 **sources)
    result = classification.multilabel_metrics(scores, labels, names)
    if args.save_scores:
        from caffe_mlic.fileio import atomic_save_npy
        atomic_save_npy(args.save_scores, np.asarray(scores, np.float64))
        atomic_save_npy(_labels_path(args.save_scores), np.asarray(labels, np.int8))
    if args.json:
        write_json(args.json, result)
    width = max(12, max(len(n) for n in result['classes']))
    print('%-*s %6s' % (width, 'class', 'AP'))
    for name, ap in zip(result['classes'], result['AP']):
        print('%-*s %s' % (width, name, _fmt(ap)))
    keys = classification.OVERALL_KEYS
    print('%-*s %s' % (width, '', ' '.join('%6s' % k for k in keys)))
    for label, suffix in (('all >= 0.5', ''), ('top-3', '_top3')):
        print('%-*s %s' % (width, label, ' '.join(_fmt(result[k + suffix]) for k in keys)))
    print('mAP %s %% over %d images' % (_fmt(result['mAP'], 0), len(scores)))


def run_det(args):
    from caffe_mlic.annotations import read_class_list
    from caffe_mlic.evaluation import detection, write_json
    if bool(args.voc) == bool(args.gt):
        raise UsageError('give exactly one of --voc ROOT (with --set) or --gt GT.json')
    if args.voc and not args.image_set:
        raise UsageError('--voc needs --set (e.g. test)')
    if args.gt and args.classes:
        raise UsageError('--classes goes with --voc; a gt.json names its classes')
    if not os.path.isdir(args.results):
        raise InputError('%s: results folder not found' % args.results)
    if args.voc:
        names = read_class_list(args.classes) if args.classes else None
        gt = detection.read_voc_ground_truth(args.voc, args.image_set, names)
    else:
        gt = detection.read_gt_json(args.gt)
    image_set = args.image_set or detection.find_result_set(args.results, gt.classes)
    detections = detection.read_voc_results(args.results, image_set, gt.classes, gt.image_ids)
    result = detection.evaluate_detections(gt, detections)
    if args.json:
        write_json(args.json, result)
    width = max(12, max(len(n) for n in result['classes']))
    print('%-*s %6s %6s %6s' % (width, 'class', 'AP07', 'AP', 'CorLoc'))
    rows = zip(result['classes'], result['AP07_per_class'], result['AP_per_class'],
               result['CorLoc_per_class'])
    for name, ap07, ap, corloc in rows:
        print('%-*s %s %s %s' % (width, name, _fmt(ap07), _fmt(ap), _fmt(corloc)))
    print('%-*s %s %s %s' % (width, 'mean', _fmt(result['AP07']), _fmt(result['AP']),
                             _fmt(result['CorLoc'])))
    print('AP07 %s %%, AP %s %%, CorLoc %s %% over %d images'
          % (_fmt(result['AP07'], 0), _fmt(result['AP'], 0), _fmt(result['CorLoc'], 0),
             len(gt.image_ids)))
