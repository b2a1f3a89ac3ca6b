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
    t.add_argument('--max-iter', type=int, help='iterations (default: 20000)')
    t.add_argument('--base-lr', type=float, help='base learning rate (VGG 1e-3, ResNet 1e-2)')
    t.add_argument('--solver-type', choices=('SGD', 'Adam'), help='solver (SGD)')
    t.add_argument('--random-seed', type=int, help="Caffe's seed for fillers and dropout")


def add_report(add):
    from caffe_mlic.report import scasnet
    r = add('report', run_report, 'results.json and an HTML report of a ScasNet run (make demo-scasnet); '
            'the same as `caffe-mlic report RUN`, kept for the commands users type', scasnet.__doc__)
    r.add_argument('run_dir', metavar='RUN', help='the run folder (runs/scasnet)')


def run_report(args):
    from caffe_mlic.processes import run_stoppable
    return run_stoppable(args, write_report)


def write_report(args):
    from caffe_mlic.report import layout
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
    from caffe_mlic.errors import InputError, UsageError
    from caffe_mlic.fileio import atomic_write
    from caffe_mlic.data.imageio import image_size, read_image
    from caffe_mlic.fileio import refuse_overwriting
    from caffe_mlic.inference.settings import find_settings
    from caffe_mlic.inference import model_and_images, printable
    from caffe_mlic.inference.segmenter import Segmenter, overlay
    from caffe_mlic.inference.settings import load_settings
    from caffe_mlic.data.labelmaps import index_to_colour, load_palette, write_colour_png, write_label_png
    from caffe_mlic.progress import progress
    import cv2
    images = model_and_images((args.net, args.weights), args.images)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise UsageError('two images would write the same outputs: %s' % ', '.join(map(printable, twice)))
    outputs = [args.out] + [os.path.join(args.out, folder, stem + ext) for stem in stems
                            for folder, ext in (('labels', '.png'), ('color', '.png'), ('overlay', '.jpg'))]
    refuse_overwriting(outputs, images + [args.net, args.weights, args.settings or find_settings(args.net),
                                          args.palette], 'out')
    palette = load_palette(args.palette)
    model = Segmenter(args.net, args.weights, load_settings(args.net, args.settings), args.tile,
                      palette=palette, palette_name=args.palette)
    stride = max(1, round(model.tile * 2 / 3)) if args.stride is None else args.stride
    if not 1 <= stride <= model.tile:
        raise UsageError('argument --stride: must be 1 to the tile (%d), got %d' % (model.tile, stride))
    total = 0
    for path in images:
        try:
            w, h = image_size(path)
        except Exception as e:
            raise InputError('%s: cannot read image (%s)' % (path, e))
        total += len(model.tiles(h, w, stride)) * (3 if args.flip else 1)
    bar = progress(total=total, desc='scasnet infer', unit='tile')
    for path, stem in zip(images, stems):
        image = read_image(path)
        probabilities = model.probabilities(image, stride, args.flip,
                                            on_tile=lambda: bar.update(3 if args.flip else 1))
        labels = probabilities.argmax(axis=0).astype('uint8')
        write_label_png(os.path.join(args.out, 'labels', stem + '.png'), labels)
        write_colour_png(os.path.join(args.out, 'color', stem + '.png'), labels, palette)
        blended = overlay(image, index_to_colour(labels, palette))
        ok, jpg = cv2.imencode('.jpg', blended, [cv2.IMWRITE_JPEG_QUALITY, 90])
        with atomic_write(os.path.join(args.out, 'overlay', stem + '.jpg'), 'wb') as f:
            f.write(jpg.tobytes())
    bar.close()
    print('labelled %d images (%d tiles of %d px, stride %d%s) -> %s' % (
        len(images), total, model.tile, stride, ', flipped too' if args.flip else '', printable(args.out)))


def run_netgen(args):
    from caffe_mlic.commands.netgen import deploy_class_names
    from caffe_mlic.netspec.config import config_from_args
    from caffe_mlic.netspec.netgen import generate_scasnet
    from caffe_mlic.netspec.scasnet import ScasConfig
    variants = ('vgg', 'resnet') if args.variant == 'both' else (args.variant,)
    configs = [config_from_args(ScasConfig, args, variant=variant) for variant in variants]
    classes = deploy_class_names(args, configs[0], ('train_list', 'val_list'))
    for path in generate_scasnet(args.out, configs, args.max_iter, args.base_lr, args.solver_type,
                                 args.random_seed, classes=classes, inputs={'classes_file': args.classes_file}):
        print(path)
    for cfg in configs:     # the rates chosen for this input size
        print(cfg.describe_context())
