"""Object proposals with objectness scores, one .npz per image."""
import argparse
import os
import re

from caffe_mlic.commands.argtypes import float_in, int_in
from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.data.proposal_formats import FORMATS, __doc__ as FORMATS_DOC
from caffe_mlic.data.proposal_import import __doc__ as IMPORT_DOC
from caffe_mlic.data.proposals import MAX_BOXES, METHODS, __doc__ as PROPOSALS_DOC

# Each job is a process with its own OpenCV: more than a few per CPU only
# costs memory (a mistyped --jobs 1000 would start a thousand).
MAX_JOBS = 4 * (os.cpu_count() or 1)
MIN_SIZE_HELP = 'drop boxes with a side under this (px, >= 1, default 20)'

HELP = "object proposals with scores, one .npz per image (or `proposals import` other tools' files)"
DESCRIPTION = PROPOSALS_DOC + '''
Proposal files of other tools (selective search and EdgeBoxes .mat, MCG,
wetectron pickles, JSON, CSV) become the same files with
    caffe-mlic proposals import FORMAT FILE... -o DIR --images IMAGES...
(see `caffe-mlic proposals import --help`; to compute proposals for an image
file named "import", write it ./import).
'''


def shard(text):
    """'I/N' -> (I, N) with 0 <= I < N."""
    try:
        i, n = (int(x) for x in text.split('/'))
    except ValueError:
        why = 'not two integers I/N'
    else:
        why = 'N must be >= 1' if n < 1 else 'I is negative' if i < 0 else 'I must be under N' if i >= n else None
    if why:
        raise argparse.ArgumentTypeError('expected I/N with 0 <= I < N, got %r (%s)' % (text, why))
    return i, n


def add_arguments(p):
    p.add_argument('images', nargs='+', metavar='IMAGE',
                   help='image files, or folders whose image files are all taken')
    p.add_argument('-o', '--output', required=True, metavar='DIR', help='output folder')
    p.add_argument('--method', choices=METHODS, default='edgeboxes')
    p.add_argument('--sed-model', metavar='FILE',
                   help='Structured Edge Detection model (e.g. model.yml.gz) for edgeboxes; '
                        'default: our gradient edge map')
    p.add_argument('--alpha', type=float_in(0, 1, lo_open=True),
                   help='EdgeBoxes step size of the sliding window search, in (0, 1] (default 0.65)')
    p.add_argument('--beta', type=float_in(0, 1, lo_open=True),
                   help='EdgeBoxes NMS threshold on box IoU, in (0, 1] (default 0.75; 0.55 suits IoU-0.5 '
                        'recall)')
    p.add_argument('--max-boxes', type=int_in(1, MAX_BOXES), default=2000,
                   help='at most this many per image, 1 to %d (default 2000)' % MAX_BOXES)
    p.add_argument('--min-size', type=int_in(1), default=20, help=MIN_SIZE_HELP)
    p.add_argument('--jobs', type=int_in(1, MAX_JOBS), default=1,
                   help='processes, 1 to 4 per CPU (%d here; default 1)' % MAX_JOBS)
    # argparse takes '-1/3' for an option (it is no negative number to it) and
    # says "expected one argument": let it through to shard(), which says why
    p._negative_number_matcher = re.compile(r'^-\d+$|^-\d*\.\d+$|^-\d+/-?\d+$')
    p.add_argument('--shard', type=shard, default='0/1', metavar='I/N',
                   help='process only shard I (0-based) of N: images I, I+N, ... of the sorted list')
    p.add_argument('--recompute', action='store_true',
                   help='replace the folder\'s proposals (needed when it holds ones computed with '
                        'another method or other settings)')
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar or summary')


def run(args):
    from caffe_mlic.data import proposals
    for flag, value in (('--sed-model', args.sed_model), ('--alpha', args.alpha), ('--beta', args.beta)):
        if value is not None and args.method != 'edgeboxes':
            raise UsageError('argument %s: only applies to --method edgeboxes' % flag)
    args.alpha = 0.65 if args.alpha is None else args.alpha
    args.beta = 0.75 if args.beta is None else args.beta
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


# ------------------------------------------------------------------ proposals import

def add_import_arguments(p):
    p.add_argument('format', choices=FORMATS, metavar='FORMAT', help='one of: %s' % ', '.join(FORMATS))
    p.add_argument('files', nargs='+', metavar='FILE',
                   help='proposal files of that format (mcg-mat: per-image files or their folders)')
    p.add_argument('-o', '--output', required=True, metavar='DIR', help='output folder')
    p.add_argument('--images', nargs='+', required=True, metavar='PATH',
                   help='the images: files, folders of images, or text files listing image paths')
    p.add_argument('--coco', metavar='JSON',
                   help='COCO instances (or image info) file: integer ids are its image ids')
    p.add_argument('--max-boxes', type=int_in(1, MAX_BOXES), default=2000,
                   help='keep the top this many per image by score, 1 to %d (default 2000)' % MAX_BOXES)
    p.add_argument('--min-size', type=int_in(1), default=20, help=MIN_SIZE_HELP)
    p.add_argument('--replace', action='store_true',
                   help="replace the folder's proposals (needed when it holds other proposals or settings)")
    p.add_argument('-q', '--quiet', action='store_true', help='no progress bar or summary')


def run_import(args):
    from caffe_mlic.data.proposal_import import import_proposals
    report = import_proposals(args.format, args.files, args.images, args.output, args.min_size,
                              args.max_boxes, args.coco, args.replace, show_progress=not args.quiet)
    if not args.quiet:
        print(import_summary(report, args.min_size, args.max_boxes))
    if report['empty']:
        empty = report['empty']
        print('note: %d image(s) have no box left (a datalist cannot use them): %s%s'
              % (len(empty), ', '.join(empty[:10]), ' ...' if len(empty) > 10 else ''))


def import_summary(report, min_size, max_boxes):
    """What was imported and what the hygiene dropped, in two lines."""
    d = report['dropped']
    return ('proposals import: %d images, %d boxes read, %d kept -> %s\n'
            'dropped: %d with a side under %d px, %d duplicates, %d beyond the top %d by score'
            % (report['images'], report['boxes_read'], report['boxes_kept'], report['output'],
               d['small'], min_size, d['duplicate'], d['over_max'], max_boxes))


class ImportCommand:
    """`caffe-mlic proposals import`, a nested subcommand (commands.NESTED)."""
    DESCRIPTION = IMPORT_DOC + '\n' + FORMATS_DOC
    add_arguments = staticmethod(add_import_arguments)
    run = staticmethod(run_import)
