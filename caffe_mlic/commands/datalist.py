"""Build a datalist from ground truth and proposals, or check one."""
import os

from caffe_mlic.commands import subcommands
from caffe_mlic.commands.argtypes import int_in, net_image_size
from caffe_mlic.data.datalist import MAX_ATT_NUM, MAX_BBOX_NUM
from caffe_mlic.data.datalist_build import __doc__ as DESCRIPTION
from caffe_mlic.errors import InputError, UsageError

HELP = 'build or check a datalist (images, labels, proposals)'
SIZE_HELP = 'resized image size (default 672; 3 x W x H at most 2^31 - 1, a Caffe blob)'


def add_arguments(p):
    from caffe_mlic.data import annotations
    add = subcommands(p)
    b = add('build', run_build, 'ground truth + proposals -> datalist, classes, gt.json',
            DESCRIPTION + '\n' + annotations.__doc__)
    src = b.add_argument_group('ground truth (exactly one)')
    src.add_argument('--voc', metavar='ROOT', help='Pascal VOC folder (holds Annotations, ImageSets, JPEGImages)')
    src.add_argument('--coco', metavar='JSON', help='COCO instances file (with --images DIR)')
    src.add_argument('--labels', metavar='FILE', help='plain label file (with --classes FILE)')
    b.add_argument('--set', help='VOC image set, e.g. trainval')
    b.add_argument('--images', metavar='DIR', help='image folder (COCO; plain labels: base of relative paths)')
    b.add_argument('--classes', metavar='FILE', help='class names, one per line (label order)')
    boxes = b.add_mutually_exclusive_group(required=True)
    boxes.add_argument('--proposals', metavar='DIR', help='folder of <image stem>.npz')
    boxes.add_argument('--whole-image', action='store_true',
                       help='no proposals: the whole image is each image\'s one box (score 1), '
                            'for classifiers that ignore proposals, e.g. pretraining')
    b.add_argument('-o', '--output', required=True, metavar='OUT.txt')
    b.add_argument('--size', type=net_image_size, default='672', metavar='S|WxH', help=SIZE_HELP)
    b.add_argument('--bbox-num', type=int_in(1, MAX_BBOX_NUM), default=500,
                   help='proposals per image, 1 to %d (default 500)' % MAX_BBOX_NUM)
    b.add_argument('--root', metavar='DIR', help='write image paths relative to DIR (default: absolute)')
    b.add_argument('--voc-difficult', choices=('include', 'ignore'), default='include',
                   help='whether difficult objects (VOC) / crowd annotations (COCO) make a label '
                        'present (default include)')

    c = add('check', run_check, 'validate a datalist and print statistics')
    c.add_argument('file', metavar='FILE')
    c.add_argument('--att-num', type=int_in(0, MAX_ATT_NUM), required=True,
                   help='number of classes C, 0 to %d' % MAX_ATT_NUM)
    c.add_argument('--bbox-num', type=int_in(0, MAX_BBOX_NUM), required=True,
                   help='proposals per image B, 0 to %d' % MAX_BBOX_NUM)
    c.add_argument('--size', type=net_image_size, metavar='S|WxH',
                   help=SIZE_HELP.replace('(default 672;', '(the size `datalist build` was given, which the '
                                          'list does not record; default 672;'))
    c.add_argument('--root', metavar='DIR', help='root folder the image paths are relative to')
    c.add_argument('--no-images', action='store_true', help='do not check that image files exist')
    c.add_argument('--no-decode', dest='decode', action='store_false',
                   help='check that image files exist but do not decode them (decoding every '
                        'image finds empty, text, truncated and corrupt files; it is the default)')


def run_build(args):
    from caffe_mlic.data import annotations
    from caffe_mlic.fileio import refuse_folders, refuse_overwriting
    from caffe_mlic.data.datalist_build import build, companion_paths
    sources = [s for s in ('voc', 'coco', 'labels') if getattr(args, s)]
    if len(sources) != 1:
        raise UsageError('give exactly one of --voc ROOT, --coco JSON, --labels FILE')
    if args.voc and not args.set:
        raise UsageError('--voc needs --set (e.g. trainval)')
    if args.coco and not args.images:
        raise UsageError('--coco needs --images DIR')
    if args.labels and not args.classes:
        raise UsageError('--labels needs --classes FILE')
    _refuse_overwriting(args)
    refuse_folders((args.output,) + companion_paths(args.output), 'output')
    if os.path.exists(args.output) and not os.path.isfile(args.output):
        from caffe_mlic.errors import path_kind
        # (-o /dev/null wrote /dev/null.classes.txt and /dev/null.gt.json into /dev)
        raise UsageError('%s is %s: give a file path (the datalist\'s .classes.txt and .gt.json are written beside '
                         'it)' % (args.output, path_kind(args.output)), 'output')
    for companion, kind in zip(companion_paths(args.output), ('class list', 'ground truth')):
        if os.path.lexists(companion) and not os.path.isfile(companion):    # (a FIFO: the write waited for good)
            from caffe_mlic.errors import in_the_way
            raise UsageError(in_the_way(companion, 'datalist build writes the datalist\'s %s' % kind), 'output')
    if args.root is not None and not os.path.isdir(args.root):
        # (the paths would be written relative to a folder no reader can find)
        raise UsageError('%r is not a folder%s; give the folder the datalist\'s readers join its image '
                         'paths to (their root_folder)' % (args.root, '' if args.root == '' or not os.path.exists(
                             args.root) else ' (a file)'), 'root')
    classes = annotations.read_class_list(args.classes) if args.classes else None
    category_ids = None
    if args.voc:
        classes, records = annotations.read_voc(args.voc, args.set, classes)
    elif args.coco:
        classes, records, category_ids = annotations.read_coco_set(args.coco, args.images, classes)
    else:
        records = annotations.read_label_file(args.labels, classes, args.images)
    if args.proposals is not None and not os.path.isdir(args.proposals):
        from caffe_mlic.errors import folder_problem
        raise InputError('%s: %s' % (args.proposals, folder_problem(args.proposals, 'proposals folder')))
    # every file read: the images, their annotations, the set and the proposals
    inputs = [p for r in records for p in (r.path, r.source)]
    if args.voc:
        inputs.append(os.path.join(args.voc, 'ImageSets', 'Main', args.set + '.txt'))
    if args.proposals is not None:
        inputs += [os.path.join(args.proposals, os.path.splitext(os.path.basename(r.path))[0] + '.npz')
                   for r in records]
    refuse_overwriting((args.output,) + companion_paths(args.output), inputs, 'output')
    n = build(records, classes, args.proposals, args.output, args.size, args.bbox_num, args.root,
              args.voc_difficult, category_ids)
    classes_path, gt_path = companion_paths(args.output)
    print('wrote %s (%d images, %d classes, %d boxes each), %s, %s'
          % (args.output, n, len(classes), args.bbox_num, classes_path, gt_path))


def _refuse_overwriting(args):
    """UsageError when an output (the datalist or a companion file) is one of
    the inputs: e.g. -o VOC/classes.txt would replace the data set's class list."""
    from caffe_mlic.data.datalist_build import companion_paths
    inputs = [args.classes, args.coco, args.labels,
              os.path.join(args.voc, 'classes.txt') if args.voc else None]
    inputs = [p for p in inputs if p and os.path.isfile(p)]
    for out in (args.output,) + companion_paths(args.output):
        for path in inputs:
            if os.path.exists(out) and os.path.samefile(out, path):
                raise UsageError('-o %s would write %s over the input %s; choose another output'
                                 % (args.output, out, path), 'output')


def run_check(args):
    from caffe_mlic.data.datalist_build import check
    summary = check(args.file, args.att_num, args.bbox_num, args.size or (672, 672), args.root,
                    not args.no_images, decode=args.decode)
    if args.size is None and args.bbox_num and summary.lines:
        print('note: the boxes were checked against 672x672 images (the default): give --size as '
              '`datalist build` had it')
    if summary.problems:   # listed on stdout, with the report
        raise InputError('%s: %s' % (args.file, summary))
