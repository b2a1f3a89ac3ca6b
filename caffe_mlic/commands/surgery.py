"""Copy trained weights into another net, by layer name."""
import argparse
import os

from caffe_mlic.commands.argtypes import int_in
from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.caffe.surgery import MAPPINGS, MAX_SEED, __doc__ as DESCRIPTION  # noqa: F401  (--help text)

HELP = 'copy trained weights into another net by layer name'


def source(spec):
    """'MAPPING:MODEL' -> (mapping, path)."""
    mapping, sep, path = spec.partition(':')
    if not sep or not path or mapping not in MAPPINGS:
        raise argparse.ArgumentTypeError('expected MAPPING:MODEL with MAPPING one of %s, got %r'
                                         % (', '.join(MAPPINGS), spec))
    return mapping, path


def add_arguments(p):
    p.add_argument('--net', required=True, help='target net prototxt')
    p.add_argument('--from', dest='sources', type=source, action='append', required=True,
                   metavar='MAPPING:MODEL',
                   help='source caffemodel (binary, or HDF5 .caffemodel.h5) with its mapping (%s); '
                        'repeatable' % ', '.join(MAPPINGS))
    p.add_argument('-o', '--out', required=True,
                   help='output caffemodel (HDF5 when it ends in .h5, as Caffe reads it)')
    p.add_argument('--skip-mismatched', action='store_true',
                   help='keep target layers whose shapes differ instead of stopping')
    p.add_argument('--seed', type=int_in(0, MAX_SEED), default=0,
                   help='seed for the fillers of layers no source provides, 0 to 2^32 - 1 (default 0)')


def run(args):
    from caffe_mlic.fileio import refuse_folders, refuse_overwriting, save_weights
    from caffe_mlic.caffe.surgery import shape_only_net, transplant
    from caffe_mlic.caffe.weights import is_hdf5, name_list
    from caffe_mlic.fileio import input_file_problem
    for _, path in args.sources:
        if input_file_problem(path):
            raise InputError(input_file_problem(path))
    refuse_overwriting([args.out], [args.net] + [p for _, p in args.sources], 'out')
    refuse_folders([args.out], 'out')
    net = shape_only_net(args.net, seed=args.seed)
    if is_hdf5(args.out):
        # Caffe makes an HDF5 group per layer, named as the layer: a '/' in the
        # name asks for a group inside another and Caffe aborts writing.
        # A name given twice asks for a group that exists already: the same abort.
        names = list(net._layer_names)
        slashed = [name for name in names if '/' in name]
        repeated = [name for name in dict.fromkeys(names) if names.count(name) > 1]
        problems = (['layer names with "/" (%s)' % name_list(slashed)] if slashed else []) + \
            (['a layer name more than once (%s)' % name_list(repeated)] if repeated else [])
        if problems:
            raise UsageError('%s: an HDF5 caffemodel cannot hold %s: Caffe would abort writing '
                             'it; write a binary .caffemodel' % (args.out, ', nor '.join(problems)), 'out')
    report = transplant(net, args.sources, args.skip_mismatched)
    save_weights(net, args.out)
    print('%d copied, %d kept, %d mismatched, %d source layers unused -> %s'
          % (len(report['copied']), len(report['kept']), len(report['mismatched']),
             len(report['unused']), args.out))
