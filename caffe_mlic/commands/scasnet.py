"""ScasNet (semantic labeling of aerial images): its nets.

    caffe-mlic scasnet netgen -o prototxt/scasnet                  # the released deploy nets
    caffe-mlic scasnet netgen -o nets --classes 5 --input-size 512 --variant resnet
    caffe-mlic scasnet infer --net nets/vgg_scasnet_deploy.prototxt --weights vgg.caffemodel \
        tiles/*.tif -o predictions [--stride 267] [--flip]

Writes <variant>_scasnet_deploy.prototxt, _train.prototxt and _solver.prototxt
for each variant asked. Every field of ScasConfig (caffe_mlic/netspec/scasnet.py)
is an option here and can be set with --set FIELD=VALUE. With the release's parameters the deploy nets are
the released VGG_ScasNet and ResNet_ScasNet (BN as stock BatchNorm + Scale);
the Interp sizes follow --input-size. The train nets read `image label`
datalists (SegmentationData: random crops of the input size, scale jitter,
both flips; the TEST phase the centre crops of --val-list) into
SoftmaxWithLoss ignoring label 255; the solvers use DeepLab-v2's poly decay.

The context dilations default to the release's 6 12 18 24 scaled to the pool5
map (51x51 at 400 px): round(d * side / 51), 2 4 6 8 at 128 px; the rates
chosen are printed and, unless they are the release's, written to
deploy.json. A given rate (--dilations) >= the pool5 side is refused unless
--allow-wide-dilations. Ablations: --context parallel|none,
--no-residual-correction, --set 'refine=()' (no refinement).
"""
import os

from caffe_mlic.commands import subcommands

HELP = 'ScasNet: generate its nets, label images with it, report a run'


def add_arguments(p):
    from caffe_mlic.netspec.config import add_config_flags
    from caffe_mlic.netspec.scasnet import ScasConfig
    add = subcommands(p)
    g = add('netgen', run_netgen, 'write the ScasNet deploy and train nets and solvers', __doc__)
    g.add_argument('-o', '--out', required=True, metavar='DIR', help='output folder')
    g.add_argument('--variant', choices=('vgg', 'resnet', 'both'), default='both')
    add_infer(add)
    add_report(add)
    add_config_flags(g, ScasConfig, 'configuration (ScasConfig fields; default: the release)')
    from caffe_mlic.commands.netgen import add_classes_file
    add_classes_file(g)
    t = g.add_argument_group('every solver')
    from caffe_mlic.commands.argtypes import INT32_MAX, INT64_MAX, int_in, plain_float
    t.add_argument('--max-iter', type=int_in(1, INT32_MAX), help='iterations (default: 20000)')
    t.add_argument('--base-lr', type=plain_float, help='base learning rate (VGG 1e-3, ResNet 1e-2)')
    t.add_argument('--solver-type', choices=('SGD', 'Adam'), help='solver (SGD)')
    t.add_argument('--random-seed', type=int_in(0, INT64_MAX), help="Caffe's seed for fillers and dropout")


def add_report(add):
    from caffe_mlic.report import scasnet
    r = add('report', run_report, 'results.json and an HTML report of a ScasNet run (make demo-scasnet); '
            'the same as `caffe-mlic report RUN`, kept for the commands users type', scasnet.__doc__)
    r.add_argument('run_dir', metavar='RUN', help='the run folder (runs/scasnet)')


def run_report(args):
    from caffe_mlic.processes import run_stoppable
    return run_stoppable(args, write_report)


def write_report(args):
    from caffe_mlic.errors import InputError
    from caffe_mlic.report import layout
    system = layout.system_of(args.run_dir)
    if system == 'mlic':
        raise InputError('%s: an MLIC-KD-WSD run, not a ScasNet one: its report is `caffe-mlic report %s`'
                         % (args.run_dir, args.run_dir))
    if not (layout.scasnet_heads(args.run_dir) or os.path.isfile(layout.scasnet_eval(args.run_dir))):
        raise InputError('%s: a ScasNet run with no evaluated net yet (no seed<S>/<head>/eval/scasnet.json, no '
                         'eval/scasnet.json): finish it first (`caffe-mlic run CONFIG`, `--status` says what '
                         'is left)' % args.run_dir)
    if layout.scasnet_heads(args.run_dir):        # the comparison of heads (make demo-scasnet)
        from caffe_mlic.report.scasnet_heads import table, write_report
    else:                                         # one net (VARIANTS=full)
        from caffe_mlic.report.scasnet import table, write_report
    results, path = write_report(args.run_dir)
    print(table(results))
    print('results: %s\nreport:  %s' % (os.path.join(args.run_dir, 'results.json'), path))


def add_infer(add):
    i = add('infer', run_infer, 'label images of any size with a trained ScasNet (sliding window)',
            INFER_DOC)
    i.add_argument('--net', required=True, help='ScasNet deploy prototxt')
    i.add_argument('--weights', required=True, help='trained caffemodel')
    i.add_argument('images', nargs='+', metavar='IMAGE', help='image files or folders of images')
    i.add_argument('-o', '--out', required=True, metavar='DIR', help='output folder')
    from caffe_mlic.commands.argtypes import int_in
    i.add_argument('--tile', type=int_in(1), help="tile side (default and only choice: the net's input size)")
    i.add_argument('--stride', type=int_in(1),
                   help='tile stride, from 1 to the tile (default: two thirds of the tile, 267 for 400)')
    i.add_argument('--flip', action='store_true', help='also run each tile flipped left-right and up-down')
    i.add_argument('--palette', default='isprs', help="colours of the classes: 'isprs' or a palette file")
    i.add_argument('--settings', metavar='deploy.json', help='preprocessing (default: beside the net)')


INFER_DOC = """Sliding-window inference: every image, whatever its size, is covered by
overlapping tiles of the net's input size (the last ones aligned with the
edges; images smaller than a tile are padded with the mean); the softmax
probabilities of overlapping tiles are averaged. Writes, per image X:
DIR/labels/X.png (class indices: `caffe-mlic eval seg --pred DIR/labels`),
DIR/color/X.png (palette colours) and DIR/overlay/X.jpg (colours over the image).
"""


def run_infer(args):
    from caffe_mlic.inference.segmenter import label_images
    label_images(args.net, args.weights, args.images, args.out, args.tile, args.stride, args.flip, args.palette,
                 args.settings)


def run_netgen(args):
    from caffe_mlic.commands.netgen import deploy_class_names
    from caffe_mlic.netspec.config import config_from_args
    from caffe_mlic.netspec.netgen import generate_scasnet
    from caffe_mlic.netspec.scasnet import ScasConfig
    variants = ('vgg', 'resnet') if args.variant == 'both' else (args.variant,)
    configs = [config_from_args(ScasConfig, args, variant=variant) for variant in variants]
    from caffe_mlic.fileio import refuse_non_folders
    refuse_non_folders([args.out], 'out')
    from caffe_mlic.data.labelmaps import LabelMapError, load_palette
    from caffe_mlic.errors import UsageError
    try:        # (the train nets' data layers read it: said here, not at the first training)
        palette = load_palette(configs[0].palette)
    except LabelMapError as e:
        raise UsageError(str(e), "palette") from None
    if len(palette) < configs[0].num_classes:      # (the data layers refuse it: said before writing)
        raise UsageError('the palette %s has %d colours, fewer than the %d classes' % (
            configs[0].palette, len(palette), configs[0].num_classes), 'palette')
    classes = deploy_class_names(args, configs[0], ('train_list', 'val_list'))
    for path in generate_scasnet(args.out, configs, args.max_iter, args.base_lr, args.solver_type,
                                 args.random_seed, classes=classes, inputs={'classes_file': args.classes_file}):
        print(path)
    for cfg in configs:     # the rates chosen for this input size
        print(cfg.describe_context())
