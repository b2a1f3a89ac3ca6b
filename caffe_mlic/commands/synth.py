"""Write a synthetic data set.

--task detection (the default): a multi-label detection set in Pascal VOC
layout: textured shapes with random colours, clutter and occlusion (see
`caffe_mlic.data.synth` for what is drawn and the files written).

--task seg: aerial semantic-labelling tiles in the ISPRS Vaihingen layout:
roads, buildings, low vegetation, trees, cars and clutter, with shadows and
overlapping colours (see `caffe_mlic.data.synth_aerial`): top/, gts_for_participants/,
gts_eroded_for_participants/, hard/ (per tile, a PNG mask of the impervious
and building pixels farther than --hard-distance px from any other label),
classes.txt, palette.txt, synth.json (the settings, class shares and hard-pixel
shares per split) and the datalists train.txt / val.txt / test.txt
(`top/<tile> gts_for_participants/<tile>`). --scene suburb (the default): a
suburb whose classes are mostly told apart by local texture; --scene context:
most roofs are flat and paved like the streets, parking lots of the same
paving hold rows of cars, so inside a roof or a lot only the surroundings
(the parapet, the shadow, the layout) tell the class.

The set is written into a hidden folder beside OUT_DIR (.OUT_DIR.partial) and
renamed into place once complete: an interrupted run leaves no partial set
(its leftovers are removed at the next start), and --force replaces an
older set only then; a run stopped by Ctrl-C, SIGTERM or SIGHUP removes its
unfinished set and exits 130, 143 or 129. OUT_DIR must be new, empty or hold
a synthetic set.

--split takes three fractions >= 0 that sum to 1 (within 0.01).

Options that belong to the other task are refused, not ignored.
"""
import argparse
import re
import signal
import sys

from caffe_mlic.commands.argtypes import float_list, image_size, int_in, number_range, plain_float, plain_int
from caffe_mlic.errors import UsageError

HELP = 'write a synthetic detection set (VOC layout) or aerial segmentation set (ISPRS layout)'
TASKS = ('detection', 'seg')
# options of one task only: library parameter -> its default
DETECTION_DEFAULTS = {'n_classes': 6, 'objects_per_image': (1, 4), 'size_range': (0.15, 0.45),
                      'image_size': (384, 288), 'clutter': 4}
SEG_DEFAULTS = {'tile_size': (1000, 1000), 'scene': 'suburb', 'hard_distance': 24}  # = labelmaps.HARD_DISTANCE
IMAGES_DEFAULT = {'detection': 100, 'seg': 12}


class FORMATTER(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    def _get_help_string(self, action):
        if action.default is None:  # task-dependent defaults are in the help text
            return action.help
        return super()._get_help_string(action)


def add_arguments(p):
    from caffe_mlic.data.synth import SHAPE_NAMES, SHAPES
    p.add_argument('out_dir', metavar='OUT_DIR')
    p.add_argument('--task', choices=TASKS, default='detection')
    p.add_argument('--images', type=plain_int, default=None, dest='n_images', metavar='N',
                   help='number of images (seg: tiles), 1 to 100000 (seg: 10000); default 100 '
                        '(detection), 12 (seg)')
    p.add_argument('--seed', type=plain_int, default=0, help='0 to 2^63-1')
    p.add_argument('--split', type=float_list, default='0.6,0.2,0.2', metavar='TRAIN,VAL,TEST',
                   help='fractions of images per split, each >= 0, summing to 1')
    # '-1,1,1' is --split's value, to be refused as negative, not an unknown
    # option (argparse takes only '-1' and '-0.5' for numbers)
    p._negative_number_matcher = re.compile(r'^-[0-9.][0-9.,eE+-]*$')
    p.add_argument('--force', action='store_true', help='overwrite a data set already in OUT_DIR')
    p.add_argument('-q', '--quiet', action='store_true')
    det = p.add_argument_group('detection only')
    det.add_argument('--classes', type=plain_int, default=None, dest='n_classes',
                     help='number of classes, 2 to %d: %s (default 6)'
                     % (len(SHAPES), ', '.join(SHAPE_NAMES)))
    det.add_argument('--objects-per-image', type=number_range(plain_int), default=None, metavar='LO-HI',
                     help='1 to 50 (default 1-4)')
    det.add_argument('--size-range', type=number_range(plain_float), default=None, metavar='A-B',
                     help='object diameter as a fraction of the shorter image side (default 0.15-0.45)')
    det.add_argument('--image-size', type=image_size, default=None, metavar='WxH',
                     help='32x32 to 4096x4096 (default 384x288)')
    det.add_argument('--clutter', type=plain_int, default=None,
                     help='distractor strokes/blobs per image, at most; 0 to 100 (default 4)')
    seg = p.add_argument_group('seg only')
    seg.add_argument('--tile-size', type=image_size, default=None, metavar='WxH',
                     help='tile size at ~9 cm ground resolution: larger tiles are larger areas, '
                          'between 64x64 and 4096x4096 (default 1000x1000)')
    seg.add_argument('--scene', choices=('suburb', 'context'), default=None,
                     help='suburb: classes mostly told apart by local texture; context: most roofs '
                          'paved like the streets and lots, so surroundings decide (default suburb)')
    seg.add_argument('--hard-distance', type=int_in(1, 256), default=None, metavar='PX',
                     help='hard/ masks: impervious and building pixels farther than PX from any other '
                          'label, 1 to 256 (default 24)')


def _resolve(args):
    """Refuse the other task's options; fill this task's defaults."""
    own, other = ((DETECTION_DEFAULTS, SEG_DEFAULTS) if args.task == 'detection'
                  else (SEG_DEFAULTS, DETECTION_DEFAULTS))
    for name in other:
        if getattr(args, name) is not None:
            raise UsageError('only for --task %s, not --task %s'
                             % ('seg' if args.task == 'detection' else 'detection', args.task), name)
    for name, default in own.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.n_images is None:
        args.n_images = IMAGES_DEFAULT[args.task]


def run(args):
    _resolve(args)
    from caffe_mlic.processes import Stopped, stopped_cleanly, take_signals
    try:
        with stopped_cleanly():     # staged_set removes the unfinished set as it unwinds
            return _run(args)
    except Stopped as e:
        take_signals()      # (said here; not again by the command line)
        name = signal.Signals(e.signum).name
        sys.stderr.write('%s: stopped by %s; the unfinished set was removed\n'
                         % (getattr(getattr(args, 'parser', None), 'prog', 'caffe-mlic synth'), name))
        sys.stderr.flush()
        return 128 + e.signum


def _run(args):
    if args.task == 'seg':
        return _run_seg(args)
    from caffe_mlic.data.synth import make_synthetic_voc
    classes = make_synthetic_voc(args.out_dir, args.n_images, args.n_classes, args.objects_per_image,
                                 args.size_range, args.image_size, args.clutter, args.seed,
                                 tuple(args.split), force=args.force, show_progress=not args.quiet)
    if not args.quiet:
        print('wrote %d images of %d classes (%s) to %s'
              % (args.n_images, len(classes), ', '.join(classes), args.out_dir))


def _run_seg(args):
    from caffe_mlic.data.synth_aerial import make_synthetic_aerial
    summary = make_synthetic_aerial(args.out_dir, args.n_images, args.tile_size, args.seed,
                                    tuple(args.split), force=args.force, show_progress=not args.quiet,
                                    scene=args.scene, hard_distance=args.hard_distance)
    if args.quiet:
        return
    sizes = ', '.join('%s %d' % (k, len(v)) for k, v in summary['splits'].items())
    print('wrote %d tiles of %dx%d px, scene %s (%s) to %s in %.1f s'
          % (args.n_images, args.tile_size[0], args.tile_size[1], args.scene, sizes, args.out_dir,
             summary['seconds']))
    print('class shares: ' + ', '.join('%s %.1f%%' % (name, 100 * share)
                                       for name, share in zip(summary['classes'], summary['shares'])))
    print('hard pixels (impervious and building pixels more than %d px from another label): %s'
          % (summary['hard_distance'], ', '.join(
              '%s %s' % (k, '-' if v['hard_share'] is None else '%.1f%%' % (100 * v['hard_share']))
              for k, v in summary['hard'].items())))
