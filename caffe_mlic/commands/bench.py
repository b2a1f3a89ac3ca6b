"""Run the benchmarks and print each measured ratio against its target
(`make bench`). Ratios, not seconds: both sides are measured in one run."""
from caffe_mlic.errors import UsageError

HELP = 'run the benchmarks and print measured ratios'


def add_arguments(parser):
    from caffe_mlic.benchmarks import BENCHMARKS
    parser.add_argument('names', nargs='*', metavar='NAME',
                        help='benchmarks to run (default: all of %s)' % ', '.join(BENCHMARKS))
    parser.add_argument('--quick', action='store_true', help='smaller sizes, for a smoke test')


def run(args):
    from caffe_mlic import benchmarks as bench
    unknown = [n for n in args.names if n not in bench.BENCHMARKS]
    if unknown:
        raise UsageError('unknown benchmark %s; choose from %s'
                         % (', '.join(unknown), ', '.join(bench.BENCHMARKS)))
    bench.run(list(dict.fromkeys(args.names)), args.quick)     # (a name given twice runs once)
