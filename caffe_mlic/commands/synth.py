"""Write a synthetic multi-label detection data set in Pascal VOC layout:
textured shapes with random colours, clutter and occlusion (see
`caffe_mlic.synth` for what is drawn and the files written)."""
import argparse

from caffe_mlic.commands.argtypes import float_list, image_size, number_range

HELP = 'write a synthetic multi-label detection set (VOC layout)'


class FORMATTER(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def add_arguments(p):
    from caffe_mlic.synth import SHAPE_NAMES, SHAPES
    p.add_argument('out_dir', metavar='OUT_DIR')
    p.add_argument('--images', type=int, default=100, dest='n_images', help='number of images')
    p.add_argument('--classes', type=int, default=6, dest='n_classes',
                   help='number of classes, at most %d: %s' % (len(SHAPES), ', '.join(SHAPE_NAMES)))
    p.add_argument('--objects-per-image', type=number_range(int), default='1-4', metavar='LO-HI')
    p.add_argument('--size-range', type=number_range(float), default='0.15-0.45', metavar='A-B',
                   help='object diameter as a fraction of the shorter image side')
    p.add_argument('--image-size', type=image_size, default='384x288', metavar='WxH')
    p.add_argument('--clutter', type=int, default=4, help='distractor strokes/blobs per image (at most)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--split', type=float_list, default='0.6,0.2,0.2', metavar='TRAIN,VAL,TEST',
                   help='fractions of images per split')
    p.add_argument('--force', action='store_true', help='overwrite a data set already in OUT_DIR')
    p.add_argument('-q', '--quiet', action='store_true')


def run(args):
    from caffe_mlic.synth import make_synthetic_voc
    classes = make_synthetic_voc(args.out_dir, args.n_images, args.n_classes, args.objects_per_image,
                                 args.size_range, args.image_size, args.clutter, args.seed,
                                 tuple(args.split), force=args.force, show_progress=not args.quiet)
    if not args.quiet:
        print('wrote %d images of %d classes (%s) to %s'
              % (args.n_images, len(classes), ', '.join(classes), args.out_dir))
