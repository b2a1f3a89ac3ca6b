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

HELP = "draw a caffe binary's training log as curves (PNG)"


def add_arguments(p):
    p.add_argument('log', metavar='CAFFE_LOG', help="the binary's log (text)")
    p.add_argument('-o', '--out', required=True, metavar='IMAGE',
                   help='the image to write: .png, .pdf or .svg (by its extension)')
    p.add_argument('--title', help='title above the curves (default: the log file name)')


def run(args):
    import os

    from caffe_mlic.engine.logs import read_caffe_log
    from caffe_mlic.fileio import refuse_overwriting
    from caffe_mlic.plotting import draw_curves
    refuse_overwriting([args.out], [args.log], 'out')   # before the log is read: -o LOG would destroy it
    from caffe_mlic.errors import UsageError
    from caffe_mlic.plotting import FORMATS
    if os.path.splitext(args.out)[1][1:].lower() not in FORMATS:
        raise UsageError('%s: the image format comes from the extension: .png, .pdf or .svg' % args.out, 'out')
    try:
        with open(args.log, encoding='utf-8', errors='replace') as f:
            text = f.read()
    except OSError as e:
        raise InputError('%s: cannot read the log: %s' % (args.log, e.strerror or e))
    records = read_caffe_log(text)
    if not records:
        raise InputError('%s: no "Iteration N ..., loss = X" or "Test net output" lines: not a '
                         'caffe training log at INFO level' % args.log)
    draw_curves(records, args.out, title=args.title or os.path.basename(args.log))
    train = sum(r['phase'] == 'train' for r in records)
    print('%s: %d train and %d test records' % (args.out, train, len(records) - train))
