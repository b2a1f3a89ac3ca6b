"""ScasNet (semantic labeling of aerial images): its nets.

    caffe-mlic scasnet netgen -o prototxt/scasnet                  # the released deploy nets
    caffe-mlic scasnet netgen -o nets --classes 5 --input-size 512 --variant resnet

Writes <variant>_scasnet_deploy.prototxt for each variant asked: with the
release's parameters these are the released VGG_ScasNet and ResNet_ScasNet
(BN as stock BatchNorm + Scale); the Interp sizes follow --input-size.
"""
from caffe_mlic.commands import subcommands

HELP = 'ScasNet: generate its deploy nets'


def add_arguments(p):
    add = subcommands(p)
    g = add('netgen', run_netgen, 'write the ScasNet deploy nets', __doc__)
    g.add_argument('-o', '--out', required=True, metavar='DIR', help='output folder')
    g.add_argument('--variant', choices=('vgg', 'resnet', 'both'), default='both')
    g.add_argument('--classes', type=int, default=6, help='number of classes (6)')
    g.add_argument('--input-size', type=int, default=400, help='input side in pixels (400)')
    g.add_argument('--dilations', type=int, nargs='+', default=[6, 12, 18, 24], metavar='D',
                   help='context branch dilations (6 12 18 24)')
    g.add_argument('--refine', nargs='+', metavar='LAYER',
                   help="shallow layers that refine, deepest first (the release's: VGG conv5_3 "
                        "conv4_3 conv3_3; ResNet conv5_3 conv4_23 conv3_4 conv2_3)")
    g.add_argument('--backbone', choices=('release', 'tiny'), default='release',
                   help='tiny: few channels, for CPU runs')
    g.add_argument('--resnet-blocks', type=int, nargs=4, default=[3, 4, 23, 3], metavar='N',
                   help='ResNet bottlenecks per block, conv2_x .. conv5_x (3 4 23 3)')


def run_netgen(args):
    import os
    from caffe_mlic import prototxt
    from caffe_mlic.fileio import write_files
    from caffe_mlic.netspec.scasnet import ScasConfig, scasnet_deploy
    variants = ('vgg', 'resnet') if args.variant == 'both' else (args.variant,)
    texts = {}
    for variant in variants:
        cfg = ScasConfig.release(variant=variant, num_classes=args.classes, input_size=args.input_size,
                                 dilations=tuple(args.dilations), backbone=args.backbone,
                                 refine=tuple(args.refine) if args.refine else None,
                                 resnet_blocks=tuple(args.resnet_blocks))
        path = os.path.join(args.out, '%s_scasnet_deploy.prototxt' % variant)
        texts[path] = prototxt.to_text(scasnet_deploy(cfg))
    for path in write_files(texts):
        print(path)
