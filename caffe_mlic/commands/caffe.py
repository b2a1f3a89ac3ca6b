"""Run the real `caffe` binary with PYTHONPATH and LD_LIBRARY_PATH set so that
it finds our Python layers: `caffe-mlic caffe train -solver S [-weights W]`."""
import argparse
import os

from caffe_mlic.errors import UsageError

HELP = 'run the caffe binary with our Python layers importable'
ACTIONS = ('train', 'test', 'time', 'device_query')


def add_arguments(parser):
    parser.add_argument('caffe_args', nargs=argparse.REMAINDER,
                        help='action (%s) and flags, as for the binary' % ', '.join(ACTIONS))


def run_argv(argv):
    from caffe_mlic import caffe_env
    first = argv[0] if argv else None
    # The binary answers an unknown action with its whole flag list; say it in one line.
    if first is None or (not first.startswith('-') and first not in ACTIONS):
        raise UsageError('expected an action, one of %s, got %s (flags as for the caffe binary)'
                         % (', '.join(ACTIONS), repr(first) if first else 'nothing'))
    binary = caffe_env.caffe_binary()
    os.execve(binary, [binary] + list(argv), caffe_env.binary_environment())


def run(args):
    return run_argv(args.caffe_args)
