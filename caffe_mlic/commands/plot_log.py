"""Draw the curves of a caffe binary's training log (the GLOG output of
`caffe-mlic caffe train ...`), as `caffe-mlic train` draws curves.png:

    caffe-mlic caffe train -solver s.prototxt 2> train.log
    caffe-mlic plot-log train.log -o curves.png

Read from the log: "Iteration N ..., loss = X" (the smoothed loss), "Train
net output #k: NAME = V", "Iteration N, lr = X" and, after "Iteration N,
Testing net (#0)", "Test net output #k: NAME = V". The binary logs these at
INFO level: run it with GLOG_minloglevel=0 (the default) and GLOG_logtostderr=1.
"""
from caffe_mlic.errors import InputError
from caffe_mlic.fileio import open_regular

HELP = "draw a caffe binary's training log as curves (PNG, PDF or SVG)"


def add_arguments(p):
    from caffe_mlic.plotting import FORMATS
    p.add_argument('log', metavar='CAFFE_LOG', help="the binary's log (text)")
    p.add_argument('-o', '--out', required=True, metavar='IMAGE',
                   help='the image to write: .png, .pdf or .svg (by its extension, or --format); '
                        'a device or FIFO such as /dev/stdout is written through (PNG unless --format)')
    p.add_argument('--format', choices=FORMATS,
                   help="the image format, where -o's extension does not say it (a device, a FIFO)")
    p.add_argument('--title', help='title above the curves (default: the log file name)')


def shown(path):
    """``path`` on one line: bytes that are not UTF-8 as \\xNN, a newline or
    another character that does not print as its escape (\\n)."""
    from caffe_mlic.inference import printable
    return ''.join(c if c.isprintable() else ascii(c)[1:-1] for c in printable(path))


def output_format(out, fmt):
    """The format to write ``out`` in: --format, else its extension; a device
    or FIFO (what is written through, not replaced) without one gets PNG.
    UsageError for a file whose extension names no format, or another one."""
    import os
    import stat
    from caffe_mlic.errors import UsageError
    from caffe_mlic.plotting import FORMATS
    ext = os.path.splitext(out)[1][1:].lower()
    if fmt and ext in FORMATS and ext != fmt:
        raise UsageError('%s: the extension says %s, --format says %s' % (shown(out), ext, fmt), 'format')
    if fmt or ext in FORMATS:
        return fmt or ext
    try:
        special = not stat.S_ISREG(os.stat(out).st_mode) and not stat.S_ISDIR(os.stat(out).st_mode)
    except OSError:
        special = False
    if special:
        return 'png'
    raise UsageError('%s: the image format comes from the extension: .png, .pdf or .svg (or --format)'
                     % shown(out), 'out')


def run(args):
    import math
    import os

    from caffe_mlic.engine.logs import read_caffe_log
    from caffe_mlic.fileio import refuse_folders, refuse_overwriting
    from caffe_mlic.plotting import PLOTTABLE, draw_curves, plottable
    refuse_overwriting([args.out], [args.log], 'out')   # before the log is read: -o LOG would destroy it
    refuse_folders([args.out], 'out')
    fmt = output_format(args.out, getattr(args, 'format', None))
    try:
        with open_regular(args.log, encoding='utf-8', errors='replace') as f:
            text = f.read()
    except OSError as e:
        raise InputError('%s: cannot read the log: %s' % (shown(args.log), e.strerror or e))
    records = read_caffe_log(text, shown(args.log))
    if not records:
        raise InputError('%s: no "Iteration N ..., loss = X" or "Test net output" lines: not a '
                         'caffe training log at INFO level' % shown(args.log))
    draw_curves(records, args.out, title=args.title or os.path.basename(args.log), fmt=fmt)
    train = sum(r['phase'] == 'train' for r in records)
    values = [v for r in records for k, v in r.items() if k not in ('phase', 'iteration') and isinstance(v, float)]
    left_out = sum(not plottable(v) for v in values)
    huge = sum(math.isfinite(v) and not plottable(v) for v in values)
    kinds = 'NaN or infinite' if not huge else 'NaN, infinite or beyond +-%g' % PLOTTABLE
    note = ('' if not left_out else '; every value is %s (a diverged run?): the chart has no curve' % kinds
            if left_out == len(values) else '; %d %s value%s not drawn (a diverged run?)'
            % (left_out, kinds, 's' if left_out > 1 else ''))
    print('%s: %d train and %d test records%s' % (shown(args.out), train, len(records) - train, note))
