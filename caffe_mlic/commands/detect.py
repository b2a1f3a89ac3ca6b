"""Detect objects with the trained WSDDN teacher on any images:

    caffe-mlic detect --net nets/wsddn/wsddn_deploy.prototxt --weights teacher.caffemodel \\
        photos/*.jpg -o detections [--proposals props] [--scales 480 576 672] [--flip]

Images without a proposal file (<stem>.npz in --proposals, as `caffe-mlic
proposals` writes them) get EdgeBoxes proposals, saved under OUT/proposals/;
a line on stderr says how many when --proposals is given. A --proposals that
is missing or not a folder is an error.
Writes, under OUT:
  comp4_det_<set>_<class>.txt  VOC devkit result files (`caffe-mlic eval det` reads them)
  json/<stem>.json             image-level scores, the detections of each image, and its
                               --top regions by region score of any class (before NMS)
  vis/<stem>.jpg               the image with its top detections drawn and labelled
  coco_results.json            with --coco-ids GT.json (the gt.json of `datalist build
                               --coco`): the detections as a COCO results file (image_id,
                               category_id, bbox [x, y, w, h], score), which COCO tools
                               and `caffe-mlic eval det --results` read
The preprocessing, sizes and class names come from the deploy.json that
`netgen` writes beside the nets (see caffe_mlic.inference.settings).

Everything that can be checked is checked before anything is written: the
names of the images (their stems name the outputs and are the devkit image
ids), outputs that would overwrite an input, the classes, --coco-ids. The
json/ and vis/ files of an image are written as it is done; the devkit files
(and coco_results.json) at the end, all together or none. An image name that
is not UTF-8 is written into the devkit files as its bytes (the devkit reads
bytes).
"""
import os
import sys

from caffe_mlic.errors import InputError, UsageError

HELP = 'detect objects with the WSDDN teacher on any images (proposals computed if needed)'


def add_arguments(p):
    from caffe_mlic.commands.argtypes import float_in, int_in
    from caffe_mlic.inference.detector import MAX_SCALE, MIN_SCALE
    p.add_argument('--net', required=True, help='WSDDN deploy prototxt')
    p.add_argument('--weights', help='trained teacher caffemodel (not with --control)')
    p.add_argument('--control', choices=['random'],
                   help='the control detector instead of the net: the same proposals and '
                        'protocol, every region a random score per class (seeded by --seed)')
    p.add_argument('--seed', type=int_in(0), default=0, help='seed of --control random, >= 0 (default 0)')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files or folders of images')
    p.add_argument('-o', '--output', required=True, metavar='DIR')
    p.add_argument('--proposals', metavar='DIR', help='folder of <image stem>.npz proposal files')
    p.add_argument('--scales', type=int_in(MIN_SCALE, MAX_SCALE, 16), nargs='+', metavar='S',
                   help="input sizes to run, multiples of 16 from %d to %d (default: the net's); "
                        "region scores are summed over them" % (MIN_SCALE, MAX_SCALE))
    p.add_argument('--flip', action='store_true', help='also run each scale mirrored, summing the scores')
    p.add_argument('--classes', metavar='FILE',
                   help="class names, one per line (default: deploy.json's, else --coco-ids' "
                        "classes, else class_0 ...)")
    p.add_argument('--coco-ids', metavar='GT.json',
                   help='the gt.json of `datalist build --coco`: write coco_results.json with its '
                        'COCO image and category ids (every image must be in it)')
    p.add_argument('--settings', metavar='deploy.json', help='deploy settings (default: beside the net)')
    p.add_argument('--set-name', default='test',
                   help='the <set> of the devkit file names (default test): part of a file name, so not '
                        'empty and without "/"')
    p.add_argument('--top', type=int_in(1), default=10,
                   help='detections drawn and top regions recorded per image, >= 1 (default 10)')
    p.add_argument('--score-threshold', type=float_in(0), default=1e-3,
                   help='keep regions scoring above this (default 1e-3): a finite number >= 0 and below '
                        'the number of passes (scales x flips), the most a region can score summed '
                        'over them')
    p.add_argument('--nms', type=float_in(0, 1), default=0.4,
                   help='NMS IoU threshold, from 0 (suppress any overlap) to 1 (suppress nothing) '
                        '(default 0.4)')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar')


def class_names(path, count, known=None):
    """The names of the net's ``count`` classes: those of the class file
    ``path`` (one per line), else ``known`` (deploy.json's), else class_0 ...
    Names are checked as deploy.json's are (settings.class_names_problems):
    they name files (``comp4_det_<set>_<class>.txt``)."""
    from caffe_mlic.data.annotations import read_class_list
    if not path:
        return list(known) if known else ['class_%d' % i for i in range(count)]
    names = read_class_list(path)
    check_class_names(names, path)
    if len(names) != count:
        raise InputError('%s: %d classes, but the net scores %d' % (path, len(names), count))
    return names


def check_class_names(names, source):
    """InputError naming ``source`` for each class name that cannot name a
    devkit result file (empty, whitespace, "/" or NUL) or repeats."""
    from caffe_mlic.errors import Problem
    from caffe_mlic.inference.settings import class_names_problems
    problems = [Problem(source, None, None, 'class %s (class names name the devkit result files)'
                        % message) for message in class_names_problems(list(names))]
    if problems:
        raise InputError(problems=problems)


def check_set_name(name):
    """UsageError unless ``name`` can be the <set> part of a devkit file name."""
    if not name or '/' in name or '\0' in name or not name.strip():
        raise UsageError('set_name must be part of a file name (comp4_det_<set>_<class>.txt): not empty, '
                         'not only whitespace, without "/" or NUL, got %r' % name, 'set_name')
    return name


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


def detection_classes(args, count, coco_gt, known=None):
    """The class names: --classes, else deploy.json's (``known``), else those
    of --coco-ids, else class_0 ...; with --coco-ids, each must have a COCO
    category id."""
    from caffe_mlic.evaluation.detection import coco_ids
    if coco_gt is None or args.classes or known:
        classes = class_names(args.classes, count, known)
    elif len(coco_gt.classes) != count:
        raise InputError('%s: %d classes, but the net scores %d' % (args.coco_ids, len(coco_gt.classes), count))
    else:
        classes = list(coco_gt.classes)
        check_class_names(classes, args.coco_ids)
    unknown = [c for c in classes if coco_gt is not None and c not in coco_ids(coco_gt)[1]]
    if unknown:
        raise InputError('%s: no COCO category id for class %s' % (args.coco_ids, ', '.join(unknown)))
    return classes


def check_proposals_folder(path):
    """UsageError naming --proposals unless ``path`` is a folder this process
    can read: a mistyped, missing or non-folder --proposals would otherwise
    give every image EdgeBoxes proposals instead, with no word."""
    if path is None:
        return
    if not path or not os.path.isdir(path):
        from caffe_mlic.errors import folder_problem
        raise UsageError('%s: %s (the folder of <image stem>.npz proposal files)' % (path or "''", folder_problem(path)),
                         'proposals')
    try:
        with os.scandir(path):
            pass
    except OSError as e:
        raise UsageError('%s: cannot read the folder: %s' % (path, e.strerror or e), 'proposals')


def note_missing_proposals(proposals_dir, images, cache_dir, log=None):
    """A line on ``log`` (stderr) when the --proposals folder has no file for
    some images: they get EdgeBoxes proposals (documented), but not silently,
    since a folder of other names or an empty one is often a mistake."""
    import sys
    from caffe_mlic.data import proposals
    from caffe_mlic.inference import printable
    missing = [p for p in images if not os.path.lexists(proposals.output_path(proposals_dir, p))]
    if missing:
        (log or sys.stderr).write(
            'note: --proposals %s has no <stem>.npz for %d of the %d images (%s%s): they get EdgeBoxes '
            'proposals, saved in %s\n' % (printable(proposals_dir), len(missing), len(images),
                                           ', '.join(printable(os.path.basename(p)) for p in missing[:3]),
                                           ' ...' if len(missing) > 3 else '', printable(cache_dir)))


def image_proposals(image_path, image, proposals_dir, cache_dir):
    """(boxes, scores) of an image: its file in proposals_dir, else computed
    with EdgeBoxes (and saved in cache_dir). A proposal file is checked by
    the one reader (proposals.read_proposal_file): its errors name it. An
    entry of proposals_dir that is there but no file (a folder, a broken
    link) is read too, so it is an error naming it, not silently replaced."""
    from caffe_mlic.data import proposals
    path = proposals.output_path(proposals_dir, image_path) if proposals_dir else None
    if path and os.path.lexists(path):
        found = proposals.read_proposal_file(path, image.shape[:2], image_path)
        why = proposals.record_problem(path, image_path)        # (of another image of this name?)
        if why:
            raise InputError(why + '; run `caffe-mlic proposals` on the image again')
        return found
    # the cache: a file of other settings, of another image of this name, or of before the records
    # (one that could be either) is computed again
    out = proposals.output_path(cache_dir, image_path)
    if os.path.isfile(out) and not proposals.record_problem(out, image_path, proposals.DEFAULT_SETTINGS,
                                                            strict=True):
        return proposals.read_proposal_file(out, image.shape[:2], image_path)
    if proposals.process_image(image_path, out, settings=proposals.DEFAULT_SETTINGS) == 0:
        raise InputError('%s: EdgeBoxes found no proposal' % image_path)
    return proposals.read_proposal_file(out, image.shape[:2], image_path)


def check_proposable(images, folders):
    """InputError naming every image that has no proposal file in
    ``folders`` and is too small for EdgeBoxes to propose a box (a side under
    its min_size): found from the headers, before any output is written."""
    from caffe_mlic.data import proposals
    from caffe_mlic.data.imageio import image_size
    from caffe_mlic.inference import printable
    min_size = proposals.MIN_SIZE       # what detect computes proposals with
    problems = []
    for path in images:
        if any(os.path.lexists(proposals.output_path(f, path)) for f in folders if f):
            continue
        try:
            width, height = image_size(path)
        except (OSError, ValueError):
            continue        # (unreadable: said by the reader, in the same words as elsewhere)
        if min(width, height) < max(min_size, 2):
            problems.append((printable(path), None, None, 'the image is %dx%d px: smaller than the smallest box '
                             'EdgeBoxes keeps (min_size %d px a side), so it can have no proposal; give it a '
                             'proposal file in --proposals, or leave it out' % (width, height, min_size)))
    if problems:
        raise InputError(problems=problems)


def devkit_text(detections):
    """The bytes of one devkit result file: a line 'id score x1 y1 x2 y2' per
    detection, 1-based pixels, numbers as write_voc_results writes them. The
    id is the image's stem as its bytes on disk: a name that is not UTF-8 is
    written as it is (the devkit's reader takes bytes)."""
    import numpy as np
    lines = []
    if detections is not None:
        boxes = np.asarray(detections.boxes, np.float64).reshape(-1, 4) + 1
        scores = np.asarray(detections.scores).reshape(-1)
        for image_id, score, box in zip(detections.image_ids, scores, boxes):
            numbers = ' '.join('%.9g' % v for v in (score, *box))
            lines.append(os.fsencode(image_id) + b' ' + numbers.encode('ascii') + b'\n')
    return b''.join(lines)


def run(args):
    from caffe_mlic.evaluation.detection import (COCO_RESULTS, ClassDetections, result_file_name,
                                                 write_coco_results)
    from caffe_mlic.fileio import atomic_files, atomic_write_json
    from caffe_mlic.data.imageio import read_image
    from caffe_mlic.fileio import (refuse_folders, refuse_lost_outputs, refuse_non_folders, refuse_output_among_inputs,
                                   refuse_overwriting)
    from caffe_mlic.inference.settings import find_settings
    from caffe_mlic.inference import image_ids, model_and_images, printable
    from caffe_mlic.inference.detector import RandomControlDetector, WsddnDetector, check_scales
    from caffe_mlic.inference.draw import colour, draw_boxes, write_image
    from caffe_mlic.inference.settings import load_settings
    from caffe_mlic.progress import progress
    if bool(args.weights) == bool(args.control):
        raise UsageError('give --weights (the trained teacher) or --control random, not both')
    check_set_name(args.set_name)
    check_proposals_folder(args.proposals)
    if args.scales:
        check_scales(args.scales)
        twice = sorted({s for s in args.scales if args.scales.count(s) > 1})
        if twice:       # (the passes' scores are summed: a scale given twice would count twice)
            raise UsageError('scales must be distinct (the passes\' scores are summed, so a repeated scale '
                             'would count twice), got %s more than once' % ', '.join(map(str, twice)), 'scales')
    passes = len(args.scales or [None]) * (2 if args.flip else 1)
    if args.score_threshold >= passes:
        raise UsageError('score_threshold must be below %d, the most a region scores summed over the %d '
                         'pass%s (scales x flips), got %g' % (passes, passes, 'es' if passes > 1 else '',
                                                              args.score_threshold), 'score_threshold')
    images = model_and_images((args.net, args.weights), args.images)
    stems = image_ids(images)
    settings = load_settings(args.net, args.settings)
    if args.control:
        detector = RandomControlDetector(args.net, settings, args.seed, args.score_threshold, args.nms)
    else:
        detector = WsddnDetector(args.net, args.weights, settings, args.score_threshold, args.nms)
    coco_gt = coco_ground_truth(args.coco_ids, images) if args.coco_ids else None
    classes = detection_classes(args, detector.num_classes, coco_gt, settings.classes)
    cache = os.path.join(args.output, 'proposals')
    per_image = {stem: (os.path.join(args.output, 'json', stem + '.json'),
                        os.path.join(args.output, 'vis', stem + '.jpg')) for stem in stems}
    results = [os.path.join(args.output, result_file_name(args.set_name, c)) for c in classes]
    if coco_gt is not None:
        results.append(os.path.join(args.output, COCO_RESULTS))
    refuse_output_among_inputs(args.output, images, [args.proposals], 'output',
                               subfolders=('json', 'vis', 'proposals'))
    if os.path.isfile(os.path.join(cache, 'settings.json')):
        # detect keeps the proposals it computes in OUT/proposals: not in a `caffe-mlic proposals` folder
        raise UsageError('%s is a folder of `caffe-mlic proposals` (it holds settings.json), where detect would '
                         'keep the proposals it computes: choose another output folder (to use those proposals, '
                         'give --proposals %s)' % (cache, cache), 'output')
    refuse_overwriting([args.output] + results + [p for pair in per_image.values() for p in pair],
                              images + [args.net, args.weights, args.settings or find_settings(args.net), args.classes,
                                        args.coco_ids],
                              'output')
    # (one of another kind failed after the first image's outputs were written)
    refuse_non_folders([args.output] + [os.path.join(args.output, sub) for sub in ('json', 'vis', 'proposals')],
                       'output')
    refuse_folders(results + [p for pair in per_image.values() for p in pair], 'output')
    check_proposable(images, (args.proposals, cache))
    if args.proposals is not None:
        note_missing_proposals(args.proposals, images, cache)
    all_detections = []
    for image_path, stem in progress(list(zip(images, stems)), desc='detect', unit='img',
                                     enabled=not args.quiet):
        image = read_image(image_path)
        boxes, scores = image_proposals(image_path, image, args.proposals, cache)
        result = detector.detect(image, boxes, scores, args.scales, args.flip)
        all_detections += [(stem, d.class_index, d.score, d.box) for d in result.detections]
        record = dict(image=os.path.abspath(image_path), width=result.width, height=result.height,
                      scores={c: float(s) for c, s in zip(classes, result.image_scores)},
                      detections=[dict(**{'class': classes[d.class_index]}, score=d.score,
                                       box=list(d.box)) for d in result.detections],
                      top_regions=[dict(**{'class': classes[d.class_index]}, score=d.score,
                                        box=list(d.box)) for d in result.top_regions(args.top)])
        json_path, vis_path = per_image[stem]
        atomic_write_json(json_path, record)
        top = result.detections[:args.top]
        write_image(vis_path, draw_boxes(
            image, [d.box for d in top], ['%s %.2f' % (classes[d.class_index], d.score) for d in top],
            [colour(d.class_index) for d in top]))
    by_class = {}
    for stem, c, score, box in all_detections:
        ids, scores, boxes = by_class.setdefault(classes[c], ([], [], []))
        ids.append(stem)
        scores.append(score)
        boxes.append(box)
    detections = {name: ClassDetections(ids, scores, boxes) for name, (ids, scores, boxes) in by_class.items()}
    # the result sets: every devkit file and coco_results.json, or none
    with atomic_files(results, 'wb') as files:
        for f, name in zip(files, classes):
            f.write(devkit_text(detections.get(name)))
        if coco_gt is not None:
            write_coco_results(files[-1].name, detections, coco_gt)   # writes where the temp file is
    refuse_lost_outputs([p for pair in per_image.values() for p in pair] + results, 'detect')
    print('detect: %d images, %d detections -> %s (%d devkit files%s, json/, vis/)'
          % (len(images), len(all_detections), printable(args.output), len(classes),
             ', ' + COCO_RESULTS if coco_gt is not None else ''))
    earlier = _files_of_other_images(args.output, per_image)
    if earlier:
        print('detect: json/ and vis/ also hold %d file(s) of images not in this run (an earlier run\'s, left as '
              'they were; the devkit files are of this run only), e.g. %s'
              % (len(earlier), printable(earlier[0])), file=sys.stderr)


def _files_of_other_images(output, per_image):
    """The files in OUT/json and OUT/vis that are not this run's images'
    (``per_image``: stem -> its two paths)."""
    ours = {os.path.normpath(p) for pair in per_image.values() for p in pair}
    found = []
    for sub, ext in (('json', '.json'), ('vis', '.jpg')):
        try:
            names = sorted(os.listdir(os.path.join(output, sub)))
        except OSError:
            continue
        found += [os.path.join(output, sub, n) for n in names if n.endswith(ext) and not n.startswith('.')
                  and os.path.normpath(os.path.join(output, sub, n)) not in ours]
    return found
