"""Object proposals with objectness scores, one .npz per image."""
import argparse

from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.proposals import METHODS, __doc__ as DESCRIPTION  # noqa: F401  (--help text)

HELP = 'object proposals with scores, one .npz per image'


def shard(text):
    """'I/N' -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split('/'))
    except ValueError:
        i, n = -1, 0
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError('expected I/N with 0 <= I < N, got %r' % text)
    return i, n


def add_arguments(p):
    p.add_argument('images', nargs='+', metavar='IMAGE',
                   help='image files, or folders whose image files are all taken')
    p.add_argument('-o', '--output', required=True, metavar='DIR', help='output folder')
    p.add_argument('--method', choices=METHODS, default='edgeboxes')
    p.add_argument('--sed-model', metavar='FILE',
                   help='Structured Edge Detection model (e.g. model.yml.gz) for edgeboxes; '
                        'default: our gradient edge map')
    p.add_argument('--alpha', type=float, default=0.65,
                   help='EdgeBoxes step size of the sliding window search (default 0.65)')
    p.add_argument('--beta', type=float, default=0.75,
                   help='EdgeBoxes NMS threshold on box IoU (default 0.75; 0.55 suits IoU-0.5 recall)')
    p.add_argument('--max-boxes', type=int, default=2000, help='at most this many per image (default 2000)')
    p.add_argument('--min-size', type=int, default=20, help='drop boxes with a side under this (px, default 20)')
    p.add_argument('--jobs', type=int, default=1, help='processes (default 1)')
    p.add_argument('--shard', type=shard, default='0/1', metavar='I/N',
                   help='process only shard I (0-based) of N: images I, I+N, ... of the sorted list')
    p.add_argument('--recompute', action='store_true',
                   help='replace the folder\'s proposals (needed when it holds ones computed with '
                        'another method or other settings)')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar or summary')


def run(args):
    from caffe_mlic import proposals
    for flag, value in (('--jobs', args.jobs), ('--max-boxes', args.max_boxes),
                        ('--min-size', args.min_size)):
        if value < 1:
            raise UsageError('argument %s: must be >= 1, got %d' % (flag, value))
    if args.sed_model and args.method != 'edgeboxes':
        raise UsageError('argument --sed-model: only applies to --method edgeboxes')
    if not (0 < args.alpha <= 1 and 0 < args.beta <= 1):
        raise UsageError('arguments --alpha and --beta must be in (0, 1]')
    done, skipped, failures, empty = proposals.run(
        args.images, args.output, args.method, args.max_boxes, args.min_size, args.sed_model,
        args.jobs, args.shard, show_progress=not args.quiet, alpha=args.alpha, beta=args.beta,
        recompute=args.recompute)
    if not args.quiet:
        print('proposals: %d written, %d already there (skipped), %d failed -> %s'
              % (done, skipped, len(failures), args.output))
    if empty:  # not a failure, but `datalist build` will refuse these images
        print('note: %d image(s) got no box (a datalist cannot use them): %s%s'
              % (len(empty), ', '.join(empty[:10]), ' ...' if len(empty) > 10 else ''))
    if failures:
        raise InputError('%d image(s) failed (the others were written):\n%s'
                       % (len(failures), '\n'.join('  %s' % err for _, err in failures)))
