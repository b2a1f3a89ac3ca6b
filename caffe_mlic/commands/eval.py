"""Evaluate: multi-label classification metrics (cls), VOC detection AP
and CorLoc (det) and semantic labeling OA / F1 / IoU (seg)."""
import os
import sys

import numpy as np

from caffe_mlic.commands import subcommands
from caffe_mlic.commands.argtypes import float_in, int_in
from caffe_mlic.errors import InputError, Problem, UsageError

HELP = ('classification (mAP, CP/CR/CF1, OP/OR/OF1), detection (AP, CorLoc; COCO AP/AR) or '
        'segmentation (OA, F1, IoU, hard-pixel accuracy, boundary F1, object recall) metrics')


def add_arguments(p):
    from caffe_mlic.evaluation import classification, detection, segmentation
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
    c.add_argument('--fit-thresholds', metavar='OUT.json',
                   help='write per-class thresholds (each class at its best F1 on these scores: '
                        'run it on the validation split); the metrics stay at 0.5')
    c.add_argument('--thresholds', metavar='FILE.json',
                   help='predict with the per-class thresholds of a --fit-thresholds file instead '
                        'of 0.5 (CP .. OF1 and their top-3 forms; the JSON names them)')
    c.add_argument('--classes', metavar='FILE', help='class names, one per line, for the table and JSON')
    c.add_argument('--json', metavar='OUT', help='write the metrics as JSON')
    c.add_argument('--csv', metavar='OUT.csv',
                   help='write the metrics as CSV: metric,class,value (AP per class, then mAP and '
                        'the overall metrics with an empty class)')

    d = add('det', run_det, 'VOC AP (07 11-point and area) and CorLoc of result files, and COCO AP/AR '
            'for a COCO ground truth', detection.__doc__)
    gt = d.add_argument_group('ground truth (one)')
    gt.add_argument('--voc', metavar='ROOT', help='Pascal VOC folder (with --set): only its Annotations/ '
                                                  'and ImageSets/Main/<set>.txt are read')
    gt.add_argument('--gt', metavar='GT.json', help='the gt.json `datalist build` writes (built with '
                                                    '--coco: COCO AP/AR too, through pycocotools)')
    d.add_argument('--set', dest='image_set', metavar='SET',
                   help='image set: the VOC set, and the <set> of the result files (default with '
                        '--gt: the one the files name)')
    d.add_argument('--classes', metavar='FILE', help='VOC class names (default as `datalist build`)')
    d.add_argument('--results', required=True, metavar='DIR|FILE.json',
                   help='folder of comp4_det_<set>_<class>.txt files, or a COCO results JSON '
                        '(with the --gt of `datalist build --coco`)')
    d.add_argument('--json', metavar='OUT', help='write the metrics as JSON (COCO ones under "COCO")')
    d.add_argument('--save-coco', metavar='OUT.json',
                   help='also write the detections as a COCO results JSON (with the --gt of '
                        '`datalist build --coco`)')

    s = add('seg', run_seg, 'semantic labeling: OA, per-class F1 and IoU, mF1, mIoU, hard-pixel accuracy, '
            'accuracy by distance to a cue, boundary F1 and object recall of label maps', segmentation.__doc__)
    s.add_argument('--pred', required=True, metavar='DIR', help='predicted label maps (index or colour PNGs)')
    s.add_argument('--gt', required=True, metavar='DIR',
                   help='ground-truth label maps (index or colour-coded): X.<ext> or X_<suffix>.<ext> '
                        'for the prediction X.png')
    s.add_argument('--gt-suffix', metavar='SUFFIX',
                   help='pair X.png only with X<SUFFIX>.<ext> (e.g. _noBoundary)')
    s.add_argument('--palette', default='isprs', metavar='isprs|FILE',
                   help='class names and colours: the built-in ISPRS one (default) or a file of '
                        '"name R G B" lines')
    s.add_argument('--classes', type=int_in(1, 255), metavar='K',
                   help="number of classes, 1-255 (255 marks ignored pixels; default: the palette's, "
                        "6 for ISPRS)")
    s.add_argument('--eroded', action='store_true',
                   help="erode the ground truth's class boundaries (ignored pixels), as the "
                        "benchmark's noBoundary references")
    s.add_argument('--erode-radius', type=int_in(0, segmentation.MAX_ERODE_RADIUS), metavar='PX',
                   help='with --eroded: radius of the disc, 0-%d (default 3, as the benchmark; the '
                        'work per pixel grows with the disc\'s area)' % segmentation.MAX_ERODE_RADIUS)
    s.add_argument('--json', metavar='OUT',
                   help='write the metrics as JSON (and, unless given, the confusion as '
                        '<stem>.confusion.csv and .png beside it)')
    s.add_argument('--confusion-csv', metavar='OUT.csv', help='write the confusion matrix as CSV')
    s.add_argument('--confusion-png', metavar='OUT.png',
                   help='plot the row-normalised confusion matrix')
    d = s.add_argument_group('detail metrics (on the ground truth as read: --eroded applies to OA, F1 and IoU '
                             'only)')
    d.add_argument('--hard-masks', metavar='DIR',
                   help='hard-pixel masks, one single-channel image per tile named as its prediction '
                        '(else its ground truth) with a label-map extension, nonzero = hard (`synth --task '
                        'seg` writes hard/<tile>.png); default: computed from the ground truth')
    from caffe_mlic.data.labelmaps import MAX_HARD_DISTANCE
    d.add_argument('--hard-distance', type=int_in(1, MAX_HARD_DISTANCE), metavar='PX',
                   help='computed masks: pixels farther than PX from any other label are hard, a whole '
                        'number 1 to %d as for `synth --task seg` (default %d)'
                        % (MAX_HARD_DISTANCE, segmentation.HARD_DISTANCE))
    d.add_argument('--hard-classes', metavar='NAMES',
                   help='computed masks: only pixels of these classes (comma-separated names; default all)')
    d.add_argument('--boundary-tolerance', type=float_in(0), default=segmentation.BOUNDARY_TOLERANCE,
                   metavar='PX', help='boundary F1: a boundary pixel matches when one of the other map is '
                                      'within PX, Euclidean (default %g)' % segmentation.BOUNDARY_TOLERANCE)
    d.add_argument('--object-classes', metavar='NAMES',
                   help='object recall of these classes (comma-separated names; default: %s, when a class '
                        'has that name)' % segmentation.OBJECT_CLASS)
    d.add_argument('--min-object-pixels', type=int_in(1), default=segmentation.MIN_OBJECT_PIXELS, metavar='N',
                   help='object recall: smaller 8-connected components are not objects (default %d)'
                        % segmentation.MIN_OBJECT_PIXELS)


def _fmt(value, width=6):
    return ('%*.1f' % (width, value)) if value is not None else '%*s' % (width, 'n/a')


def _load_npy(path, what):
    """The array of the .npy file ``path`` (numpy.save's format, numbers
    only); an InputError naming the file and the format otherwise. np.load
    alone takes a .npz or a pickle too, and calls any other file "pickled
    data"."""
    from caffe_mlic.fileio import read_npy
    if not os.path.lexists(path):
        raise InputError('%s: no such file' % path)     # (any other kind: read_npy says what it is)
    try:
        return read_npy(path)
    except OSError as e:
        problem = 'cannot read it: %s' % (e.strerror or e)
    except ValueError as e:
        problem = str(e)
    raise InputError(problems=[Problem(path, None, None, '%s; --%s takes an images x classes array '
                                       'of numbers saved by numpy.save (.npy)' % (problem, what))])


def _sigmoid(x):
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(x, np.float64)))


def _labels_path(scores_path):
    stem = scores_path[:-4] if scores_path.endswith('.npy') else scores_path
    return stem + '.labels.npy'


def _refuse_overwriting(outputs, inputs=(), folders=(), among=()):
    """UsageError, before anything is written, when an output would replace
    an input (fileio.refuse_overwriting) or another output. outputs: [(path
    or None, the library parameter its option sets)]; inputs: paths (None
    ignored); folders: [(folder, names)], where the files of ``folder`` that
    ``names`` holds (a set, or a test on a name) are inputs too, matched by
    the output's own folder and name, so a folder of thousands of inputs
    costs no look-up per file; ``among``: folders read as a whole (the
    predictions, the results), where no output may go (the next eval would
    read it as one of them)."""
    from caffe_mlic.fileio import refuse_folders, refuse_overwriting, same_file
    outputs = [(path, param) for path, param in outputs if path]
    for k, (path, param) in enumerate(outputs):
        refuse_folders([path], param)
        real = os.path.realpath(path)
        name = os.path.basename(real)
        held = [os.path.join(folder, name) for folder, names in folders
                if folder and os.path.isdir(folder) and (names(name) if callable(names) else name in names)
                and same_file(os.path.dirname(real), folder)]
        refuse_overwriting([path], list(inputs) + held, param)
        for folder in among:
            if folder and os.path.isdir(folder) and same_file(os.path.dirname(real), folder):
                raise UsageError('%s would be written into %s, a folder eval reads as a whole (the next eval '
                                 'would take it for one of its files): write it elsewhere' % (path, folder), param)
        for other, _ in outputs[:k]:
            if same_file(path, other):
                raise UsageError('%s is also the output of another option: one would overwrite the other'
                                 % path, param)


def run_cls(args):
    from caffe_mlic.data.annotations import read_class_list
    from caffe_mlic.evaluation import classification, write_json
    saved = [args.scores, args.labels]
    trained = [args.net, args.weights, args.blob]
    if any(saved) and any(trained):
        raise UsageError('give either --scores/--labels or --net/--weights/--blob, not both')
    if any(saved) and not all(saved):
        raise UsageError('--scores and --labels go together')
    if not any(saved) and not all(trained):
        raise UsageError('give --scores S.npy --labels L.npy, or --net PROTOTXT --weights W --blob B')
    if args.datalist and not args.net:
        raise UsageError('--list goes with --net')
    if args.fit_thresholds and args.thresholds:
        raise UsageError('--fit-thresholds and --thresholds go to different splits: fit on the '
                         'validation scores, apply to the test scores')
    _refuse_overwriting([(args.json, 'json'), (args.csv, 'csv'), (args.save_scores, 'save_scores'),
                         (args.save_scores and _labels_path(args.save_scores), 'save_scores'),
                         (args.fit_thresholds, 'fit_thresholds')],
                        [args.scores, args.labels, args.net, args.weights, args.datalist, args.thresholds,
                         args.classes])
    names = read_class_list(args.classes) if args.classes else None
    if args.scores:
        scores = _load_npy(args.scores, 'scores')
        labels = _load_npy(args.labels, 'labels')
        sources = dict(scores_source=args.scores, labels_source=args.labels)
    else:
        from caffe_mlic.evaluation.net_scores import score_test_set
        from caffe_mlic.fileio import input_file_problem
        for path in (args.net, args.weights):
            if input_file_problem(path):
                raise InputError(input_file_problem(path))
        scores, labels = score_test_set(args.net, args.weights, args.blob, datalist=args.datalist)
        sources = dict(scores_source='%s blob %s' % (args.net, args.blob),
                       labels_source='%s labels' % args.net)
    if args.sigmoid and np.asarray(scores).dtype.kind in 'biuf':
        raw = np.asarray(scores, np.float64)
        if raw.size and np.isfinite(raw).all() and raw.min() >= 0 and raw.max() <= 1:
            # probabilities through a sigmoid all land in [0.5, 0.73]: every label is predicted at 0.5
            print('note: the scores all lie in [0, 1] already (probabilities, as WSDDN\'s image_level_score?): '
                  '--sigmoid maps them into [0.5, 0.73], where every label counts as predicted at 0.5 (CP, CR, '
                  'CF1, OP, OR, OF1); leave --sigmoid out for probabilities (mAP is the same either way)',
                  file=sys.stderr)
        scores = _sigmoid(scores)
    scores, labels = classification.check_inputs(scores, labels, names, classes_source=args.classes,
                                                 **sources)
    names = names or [str(c) for c in range(scores.shape[1])]
    threshold = classification.THRESHOLD
    if args.thresholds:
        threshold = classification.read_thresholds(args.thresholds, names)
    result = classification.multilabel_metrics(scores, labels, names, threshold=threshold)
    result['threshold'] = (dict(file=os.path.abspath(args.thresholds), values=threshold.tolist())
                           if args.thresholds else classification.THRESHOLD)
    if args.fit_thresholds:
        classification.write_thresholds(args.fit_thresholds, classification.fit_thresholds(scores, labels),
                                        names, sources['scores_source'])
    if args.save_scores:
        from caffe_mlic.fileio import atomic_save_npy
        atomic_save_npy(args.save_scores, np.asarray(scores, np.float64))
        atomic_save_npy(_labels_path(args.save_scores), np.asarray(labels, np.int8))
    if args.json:
        write_json(args.json, result)
    if args.csv:
        classification.write_metrics_csv(args.csv, result)
    width = max(12, max(len(n) for n in result['classes']))
    print('%-*s %6s' % (width, 'class', 'AP'))
    for name, ap in zip(result['classes'], result['AP']):
        print('%-*s %s' % (width, name, _fmt(ap)))
    keys = classification.OVERALL_KEYS
    print('%-*s %s' % (width, '', ' '.join('%6s' % k for k in keys)))
    above = 'all >= thresholds' if args.thresholds else 'all >= 0.5'
    for label, suffix in ((above, ''), ('top-3', '_top3')):
        print('%-*s %s' % (width, label, ' '.join(_fmt(result[k + suffix]) for k in keys)))
    print('mAP %s %% over %d images' % (_fmt(result['mAP'], 0), len(scores)))


def run_det(args):
    from caffe_mlic.data.annotations import read_class_list
    from caffe_mlic.evaluation import detection, write_json
    if bool(args.voc) == bool(args.gt):
        raise UsageError('give exactly one of --voc ROOT (with --set) or --gt GT.json')
    if args.voc and not args.image_set:
        raise UsageError('--voc needs --set (e.g. test)')
    if args.gt and args.classes:
        raise UsageError('--classes goes with --voc; a gt.json names its classes')
    coco_results = os.path.isfile(args.results)
    if not (coco_results or os.path.isdir(args.results)):
        from caffe_mlic.errors import path_kind
        kind = path_kind(args.results)
        raise InputError('%s %s: give the results folder or a COCO results file' % (
            args.results, 'does not exist' if kind is None else 'is ' + kind))
    outputs = [(args.json, 'json'), (args.save_coco, 'save_coco')]
    voc_inputs = [os.path.join(args.voc, 'classes.txt'),
                  os.path.join(args.voc, 'ImageSets', 'Main', '%s.txt' % args.image_set)] if args.voc else []
    _refuse_overwriting(outputs, [args.gt, args.classes, args.results if coco_results else None] + voc_inputs)
    if args.voc:
        names = read_class_list(args.classes) if args.classes else None
        gt = detection.read_voc_ground_truth(args.voc, args.image_set, names)
    else:
        gt = detection.read_gt_json(args.gt)
    image_set = None if coco_results else args.image_set or detection.find_result_set(args.results, gt.classes)
    # the inputs held in folders: the result files, the VOC annotations
    _refuse_overwriting(outputs, among=[None if coco_results else args.results], folders=[
        (None if coco_results else args.results, {detection.result_file_name(image_set, c) for c in gt.classes}),
        (args.voc and os.path.join(args.voc, 'Annotations'), {i + '.xml' for i in gt.image_ids})])
    if coco_results:
        detections = detection.read_coco_results(args.results, gt)
    else:
        detections = detection.read_voc_results(args.results, image_set, gt.classes, gt.image_ids)
    result = detection.evaluate_detections(gt, detections)
    if detection.is_coco(gt):
        result['COCO'] = detection.evaluate_coco(gt, detections)
    if args.save_coco:
        detection.write_coco_results(args.save_coco, detections, gt)
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
    coco = result.get('COCO')
    if coco:
        print('COCO (pycocotools, bbox) over %d categories:' % len(coco['classes']))
        print('  AP %s %% (IoU .50:.95), AP50 %s, AP75 %s, small %s, medium %s, large %s'
              % tuple(_fmt(coco[k], 0) for k in detection.COCO_METRICS[:6]))
        print('  AR %s %% (100 per image), AR1 %s, AR10 %s, small %s, medium %s, large %s'
              % tuple(_fmt(coco[k], 0) for k in ('AR100', 'AR1', 'AR10') + detection.COCO_METRICS[9:]))


def _seg_outputs(args):
    """(csv path, png path) of the confusion: as given, else beside --json."""
    stem = os.path.splitext(args.json)[0] if args.json else None
    csv_path = args.confusion_csv or (stem + '.confusion.csv' if stem else None)
    png_path = args.confusion_png or (stem + '.confusion.png' if stem else None)
    if args.confusion_png and os.path.exists(args.confusion_png) and not os.path.isfile(args.confusion_png):
        pass        # (a device or FIFO: written through, as PNG)
    elif args.confusion_png:
        from caffe_mlic.plotting import FORMATS
        ext = os.path.splitext(args.confusion_png)[1][1:].lower()
        if ext not in FORMATS:
            raise UsageError('%s: the image format comes from the extension: .png, .pdf or .svg'
                             % args.confusion_png, 'confusion_png')
    return csv_path, png_path


def _count(n):
    """A pixel count in a few characters: 950, 12k, 3.4M."""
    if n < 1000:
        return '%d' % n
    if n < 999500:
        return '%.3gk' % (n / 1e3)
    return '%.3gM' % (n / 1e6)


def _print_detail(result):
    """The detail metrics of ``result`` (segmentation.DetailMetrics), a few lines."""
    source = result['hard_mask']
    if source['from'] == 'files':
        how = 'masks in %s' % source['folder']
    else:
        how = ('farther than %g px from another label in the ground truth, %s'
               % (source['distance'], 'all classes' if len(source['classes']) == len(result['classes'])
                  else ', '.join(source['classes'])))
    print('%-7s %s %% over %d hard pixels (%s)' % ('hard', _fmt(result['hard_accuracy']), result['hard_pixels'],
                                                    how))
    bins = result['accuracy_by_distance']
    heads = ['%g-%s' % (b['from'], '%g' % b['to'] if b['to'] is not None else '') for b in bins]
    heads = [h if not h.endswith('-') else h[:-1] + '+' for h in heads]
    width = max(6, max(len(h) for h in heads))
    print('accuracy by distance to the nearest other label in the ground truth, px [from, to):')
    print('  %-8s %s' % ('px', ' '.join('%*s' % (width, h) for h in heads)))
    print('  %-8s %s' % ('acc %', ' '.join(_fmt(b['accuracy'], width) for b in bins)))
    print('  %-8s %s' % ('pixels', ' '.join('%*s' % (width, _count(b['pixels'])) for b in bins)))
    boundary = result['boundary']
    if boundary['reference_pixels']:
        print('%-7s %s %% boundary F1 within %g px: precision %s, recall %s (%d predicted, %d reference '
              'boundary pixels)' % ('bF1', _fmt(boundary['F1']), boundary['tolerance'],
                                    _fmt(boundary['precision'], 0), _fmt(boundary['recall'], 0),
                                    boundary['predicted_pixels'], boundary['reference_pixels']))
    else:
        print('%-7s %s   no boundary pixel in the ground truth (an eroded reference has none: boundary F1 is '
              'for full references)' % ('bF1', _fmt(None)))
    if not result['objects']:
        from caffe_mlic.evaluation.segmentation import OBJECT_CLASS
        print('objects: none scored (no class named %s; see --object-classes)' % OBJECT_CLASS)
    for name, o in result['objects'].items():
        print('%-7s %s %% of the %s objects found: %d of %d (8-connected, >= %d px; found: at least half '
              'predicted %s)' % ('objects', _fmt(o['recall']), name, o['found'], o['total'],
                                 result['object_min_pixels'], name))


def run_seg(args):
    from caffe_mlic.evaluation.seg_eval import evaluate_seg
    if args.erode_radius is not None and not args.eroded:
        raise UsageError('--erode-radius goes with --eroded')
    if args.hard_masks and (args.hard_distance is not None or args.hard_classes is not None):
        raise UsageError('--hard-distance and --hard-classes compute the hard-pixel masks from the ground truth; '
                         'they do not go with --hard-masks')
    csv_path, png_path = _seg_outputs(args)
    radius = 3 if args.erode_radius is None else args.erode_radius   # argparse bounded it
    result, names, images, unscored = evaluate_seg(
        args.pred, args.gt, args.palette, args.classes, args.eroded, radius, args.gt_suffix, args.hard_masks,
        args.hard_distance, args.hard_classes, args.boundary_tolerance, args.object_classes,
        args.min_object_pixels, args.json, csv_path, png_path, refuse=_refuse_overwriting)
    width = max(12, max(len(n) for n in names))
    print('%-*s %6s %6s %6s %6s %12s' % (width, 'class', 'P', 'R', 'F1', 'IoU', 'gt pixels'))
    for k, name in enumerate(names):
        print('%-*s %s %s %s %s %12d' % (width, name, _fmt(result['precision'][k]), _fmt(result['recall'][k]),
                                         _fmt(result['F1'][k]), _fmt(result['IoU'][k]),
                                         result['gt_pixels'][k]))
    scored = '%d pixels of %d images' % (result['pixels'], len(images))
    if args.eroded:
        scored += ', class boundaries eroded (radius %d px)' % radius
    print('%-7s %s %% over %s' % ('OA', _fmt(result['OA']), scored))
    for key in ('mF1', 'mF1_all', 'mIoU'):
        print('%-7s %s %% over %s' % (key, _fmt(result[key]), result['means'][key]))
    if args.eroded:
        print('below: on the ground truth as read, not eroded')
    _print_detail(result)
    if unscored:
        print('not scored: %d ground-truth maps in %s have no prediction (%s%s)'
              % (len(unscored), args.gt, ', '.join(os.path.basename(p) for p in unscored[:5]),
                 ' ...' if len(unscored) > 5 else ''))
