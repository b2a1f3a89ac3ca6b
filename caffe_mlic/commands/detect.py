"""Detect objects with the trained WSDDN teacher on any images:

    caffe-mlic detect --net nets/wsddn/wsddn_deploy.prototxt --weights teacher.caffemodel \\
        photos/*.jpg -o detections [--proposals props] [--scales 480 576 672] [--flip]

Images without a proposal file (<stem>.npz in --proposals, as `caffe-mlic
proposals` writes them) get EdgeBoxes proposals, saved under OUT/proposals/.
Writes, under OUT:
  comp4_det_<set>_<class>.txt  VOC devkit result files (`caffe-mlic eval det` reads them)
  json/<stem>.json             image-level scores, the detections of each image, and its
                               --top regions by region score of any class (before NMS)
  vis/<stem>.jpg               the image with its top detections drawn and labelled
  coco_results.json            with --coco-ids GT.json (the gt.json of `datalist build
                               --coco`): the detections as a COCO results file (image_id,
                               category_id, bbox [x, y, w, h], score), which COCO tools
                               and `caffe-mlic eval det --results` read
The preprocessing and sizes come from the deploy.json that `netgen` writes
beside the nets (see caffe_mlic.inference.settings).
"""
import os

from caffe_mlic.errors import InputError, UsageError

HELP = 'detect objects with the WSDDN teacher on any images (proposals computed if needed)'


def add_arguments(p):
    p.add_argument('--net', required=True, help='WSDDN deploy prototxt')
    p.add_argument('--weights', help='trained teacher caffemodel (not with --control)')
    p.add_argument('--control', choices=['random'],
                   help='the control detector instead of the net: the same proposals and '
                        'protocol, every region a random score per class (seeded by --seed)')
    p.add_argument('--seed', type=int, default=0, help='seed of --control random (default 0)')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files or folders of images')
    p.add_argument('-o', '--output', required=True, metavar='DIR')
    p.add_argument('--proposals', metavar='DIR', help='folder of <image stem>.npz proposal files')
    p.add_argument('--scales', type=int, nargs='+', metavar='S',
                   help='input sizes to run (default: the net\'s); region scores are summed over them')
    p.add_argument('--flip', action='store_true', help='also run each scale mirrored, summing the scores')
    p.add_argument('--classes', metavar='FILE',
                   help="class names, one per line (default: --coco-ids' classes, else class_0 ...)")
    p.add_argument('--coco-ids', metavar='GT.json',
                   help='the gt.json of `datalist build --coco`: write coco_results.json with its '
                        'COCO image and category ids (every image must be in it)')
    p.add_argument('--settings', metavar='deploy.json', help='deploy settings (default: beside the net)')
    p.add_argument('--set-name', default='test', help='the <set> of the devkit file names (default test)')
    p.add_argument('--top', type=int, default=10, help='detections drawn per image (default 10)')
    p.add_argument('--score-threshold', type=float, default=1e-3)
    p.add_argument('--nms', type=float, default=0.4, help='NMS IoU threshold (default 0.4)')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar')


def class_names(path, count):
    from caffe_mlic.data.annotations import read_class_list
    if not path:
        return ['class_%d' % i for i in range(count)]
    names = read_class_list(path)
    if len(names) != count:
        raise InputError('%s: %d classes, but the net scores %d' % (path, len(names), count))
    return names


def coco_ground_truth(path, images):
    """The ground truth of --coco-ids, checked: it has COCO ids and lists
    every image (by file stem), so that nothing is detected in vain."""
    from caffe_mlic.evaluation.detection import coco_ids, read_gt_json
    gt = read_gt_json(path)
    known = coco_ids(gt)[0]
    missing = [p for p in images if os.path.splitext(os.path.basename(p))[0] not in known]
    if missing:
        raise InputError('%s: has no COCO image id for %d of the images: %s%s'
                         % (path, len(missing), ', '.join(missing[:5]), ' ...' if len(missing) > 5 else ''))
    return gt


def detection_classes(args, count, coco_gt):
    """The class names: --classes, else those of --coco-ids, else class_0 ...;
    with --coco-ids, each must have a COCO category id."""
    from caffe_mlic.evaluation.detection import coco_ids
    if coco_gt is None or args.classes:
        classes = class_names(args.classes, count)
    elif len(coco_gt.classes) != count:
        raise InputError('%s: %d classes, but the net scores %d' % (args.coco_ids, len(coco_gt.classes), count))
    else:
        classes = list(coco_gt.classes)
    unknown = [c for c in classes if coco_gt is not None and c not in coco_ids(coco_gt)[1]]
    if unknown:
        raise InputError('%s: no COCO category id for class %s' % (args.coco_ids, ', '.join(unknown)))
    return classes


def image_proposals(image_path, image, proposals_dir, cache_dir):
    """(boxes, scores) of an image: its file in proposals_dir, else computed
    with EdgeBoxes (and saved in cache_dir)."""
    import numpy as np
    from caffe_mlic.data import proposals
    for folder in filter(None, (proposals_dir, cache_dir)):
        path = proposals.output_path(folder, image_path)
        if os.path.isfile(path):
            with np.load(path, allow_pickle=False) as z:
                shape = tuple(int(v) for v in z['image_shape']) if 'image_shape' in z else None
                if shape is not None and shape != image.shape[:2]:
                    raise InputError('%s: proposals of a %dx%d image, but %s is %dx%d'
                                     % (path, shape[1], shape[0], image_path, image.shape[1],
                                        image.shape[0]))
                return z['boxes'], z['scores']
    out = proposals.output_path(cache_dir, image_path)
    proposals.process_image(image_path, out)
    with np.load(out, allow_pickle=False) as z:
        if len(z['boxes']) == 0:
            raise InputError('%s: EdgeBoxes found no proposal' % image_path)
        return z['boxes'], z['scores']


def run(args):
    from caffe_mlic.evaluation.detection import (COCO_RESULTS, ClassDetections, write_coco_results,
                                                 write_voc_results)
    from caffe_mlic.fileio import atomic_write_json
    from caffe_mlic.data.imageio import read_image
    from caffe_mlic.inference import model_and_images
    from caffe_mlic.inference.detector import RandomControlDetector, WsddnDetector, check_scales
    from caffe_mlic.inference.draw import colour, draw_boxes, write_image
    from caffe_mlic.inference.settings import load_settings
    from caffe_mlic.progress import progress
    if bool(args.weights) == bool(args.control):
        raise UsageError('give --weights (the trained teacher) or --control random, not both')
    if args.scales:
        check_scales(args.scales)
    images = model_and_images((args.net, args.weights), args.images)
    if args.control:
        detector = RandomControlDetector(args.net, load_settings(args.net, args.settings), args.seed,
                                         args.score_threshold, args.nms)
    else:
        detector = WsddnDetector(args.net, args.weights, load_settings(args.net, args.settings),
                                 args.score_threshold, args.nms)
    coco_gt = coco_ground_truth(args.coco_ids, images) if args.coco_ids else None
    classes = detection_classes(args, detector.num_classes, coco_gt)
    cache = os.path.join(args.output, 'proposals')
    all_detections = []
    for image_path in progress(images, desc='detect', unit='img', enabled=not args.quiet):
        image = read_image(image_path)
        boxes, scores = image_proposals(image_path, image, args.proposals, cache)
        result = detector.detect(image, boxes, scores, args.scales, args.flip)
        stem = os.path.splitext(os.path.basename(image_path))[0]
        all_detections += [(stem, d.class_index, d.score, d.box) for d in result.detections]
        record = dict(image=os.path.abspath(image_path), width=result.width, height=result.height,
                      scores={c: float(s) for c, s in zip(classes, result.image_scores)},
                      detections=[dict(**{'class': classes[d.class_index]}, score=d.score,
                                       box=list(d.box)) for d in result.detections],
                      top_regions=[dict(**{'class': classes[d.class_index]}, score=d.score,
                                        box=list(d.box)) for d in result.top_regions(args.top)])
        atomic_write_json(os.path.join(args.output, 'json', stem + '.json'), record)
        top = result.detections[:args.top]
        write_image(os.path.join(args.output, 'vis', stem + '.jpg'), draw_boxes(
            image, [d.box for d in top], ['%s %.2f' % (classes[d.class_index], d.score) for d in top],
            [colour(d.class_index) for d in top]))
    by_class = {}
    for stem, c, score, box in all_detections:
        ids, scores, boxes = by_class.setdefault(classes[c], ([], [], []))
        ids.append(stem)
        scores.append(score)
        boxes.append(box)
    detections = {name: ClassDetections(ids, scores, boxes) for name, (ids, scores, boxes) in by_class.items()}
    written = write_voc_results(args.output, args.set_name, detections, classes)
    if coco_gt is not None:
        write_coco_results(os.path.join(args.output, COCO_RESULTS), detections, coco_gt)
    print('detect: %d images, %d detections -> %s (%d devkit files%s, json/, vis/)'
          % (len(images), len(all_detections), args.output, len(written),
             ', ' + COCO_RESULTS if coco_gt is not None else ''))
