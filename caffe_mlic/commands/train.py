"""Train a solver with pycaffe, one iteration at a time:

    caffe-mlic train prototxt/wsddn/solver.prototxt --weights vgg16.caffemodel
    caffe-mlic train prototxt/kd/solver_stage2.prototxt --resume auto

A progress bar (iteration, smoothed loss, learning rate, test mAP, ETA);
every test_interval and at the end, the mAP over the whole TEST datalist of
the score blob (found from the loss that takes the labels, or --score-blob).
The run directory (default runs/<solver stem>) gets copies of the solver and
net, log.csv and log.jsonl, curves.png and run.json. Snapshots follow the
solver; SIGINT / SIGTERM snapshot at the iteration reached and exit 130 / 143
with the command that resumes. --resume auto continues from the newest
complete snapshot (a truncated one is passed over), or starts at iteration 0
when there is none (then --weights apply).

Paths in the solver (net, snapshot_prefix) are relative to the current
directory, as for `caffe train`. With random_seed in the solver a resumed run
reaches the same weights as an uninterrupted one.

--gpu ID trains on one GPU (a GPU build of Caffe: `make install GPU=1`); our
Python layers run on the host as in CPU mode.

Data-parallel training over MPI: run N copies (ranks) under an MPI launcher.
batch_size in the net is per rank: one iteration learns from N x batch_size
images, and the ranks reach the weights one process with N x batch_size
reaches. Rank 0 writes the run folder and snapshots and runs the tests.

    mpirun -np 2 caffe-mlic train SOLVER                      # one machine, 2 ranks
    mpirun -np 4 -H host1:2,host2:2 caffe-mlic train SOLVER   # two machines
    mpirun -np 2 caffe-mlic train SOLVER --gpu 0,1            # rank k on GPU k

Every machine needs the same solver, net and datalists (a shared filesystem,
or copies), and resuming needs the snapshots where every rank reads them.
"""
import os

from caffe_mlic.commands.argtypes import int_in
from caffe_mlic.errors import UsageError

HELP = 'train a solver (progress, test mAP, logs, curves, resumable)'


def add_arguments(p):
    p.add_argument('solver', metavar='SOLVER', help='solver prototxt')
    p.add_argument('--weights', metavar='W[,W...]',
                   help='caffemodels copied into the net first, in order (as caffe train -weights)')
    p.add_argument('--resume', metavar='STATE',
                   help="a .solverstate to continue from, or 'auto': the newest complete snapshot")
    p.add_argument('--gpu', metavar='ID',
                   help='train on GPU ID (needs the GPU build: make install GPU=1); with several ranks on '
                        'a machine, one id per rank: ID,ID,... (local rank k takes the k-th); default: the CPU')
    p.add_argument('--run-dir', metavar='DIR', help='logs, curves and run.json (runs/<solver stem>)')
    p.add_argument('--score-blob', metavar='B',
                   help='TEST blob scored for mAP (default: the other bottom of the loss on the labels)')
    p.add_argument('--max-iter', type=int_in(1, 2 ** 31 - 1), metavar='N',
                   help="this many iterations (1 to 2^31-1), with netgen's schedule for it: the step at 70 %%, one "
                        'snapshot at the end, a test every eighth (as --set for each; a --set wins)')
    p.add_argument('--set', dest='overrides', action='append', default=[], metavar='FIELD=VALUE',
                   help='override a solver field for this run (repeatable), e.g. --set max_iter=300 '
                        '--set snapshot_prefix=snapshots/short; a resumed run needs the same ones')


def _commands(args):
    """(the command line, the command that resumes with '{state}')."""
    options = []
    if args.run_dir:
        options += ['--run-dir', args.run_dir]
    if args.score_blob:
        options += ['--score-blob', args.score_blob]
    if getattr(args, 'gpu', None) is not None:
        options += ['--gpu', str(args.gpu)]
    for item in args.overrides:
        options += ['--set', item]
    given = (['--weights', args.weights] if args.weights else []) + \
        (['--resume', args.resume] if args.resume else [])
    base = ['caffe-mlic', 'train', args.solver]
    return base + given + options, base + ['--resume', '{state}'] + options


def _gpu_id(value, grp):
    """--gpu's device id for this rank (None: the CPU)."""
    from caffe_mlic.caffe import env as caffe_env
    from caffe_mlic.engine import distributed
    if value is None:
        return None
    ids = caffe_env.gpu_ids(value, '--gpu')
    if len(ids) != 1 and grp.local_size <= 1:
        raise UsageError('--gpu %s: %s' % (value, caffe_env.MULTI_GPU))
    return distributed.local_gpu(ids, grp)


def run(args):
    # From here on a stop signal is held, not acted on at once: the imports
    # that follow (pycaffe, OpenCV, numba) take seconds, and a
    # KeyboardInterrupt raised inside them can be swallowed by their own
    # handlers, so the run would go on. The trainer acts on it once set up.
    from caffe_mlic.processes import signals_held, take_signals
    with signals_held() as received:
        received[:0] = take_signals()       # (one a library swallowed before: acted on too)
        return _run(args, received)


def _run(args, early_signals):
    from caffe_mlic.engine import distributed
    grp = distributed.group()
    try:
        if grp.size > 1:
            import sys
            distributed.agreed(grp, lambda: grp.start(sys.argv[1:]))
        trainer = distributed.agreed(grp, lambda: _trainer(args, early_signals, grp))
        info = trainer.run()
    except distributed.FollowerStopped as e:
        raise SystemExit(e.exit_code)
    except BaseException as e:
        # A rank that fails alone ends the job (the others may wait for it);
        # a failure every rank met at once is reported by rank 0 alone.
        if grp.size > 1 and not getattr(e, 'everywhere', False) and not isinstance(e, SystemExit):
            distributed.stop_job(grp, e, 'caffe-mlic train')
        raise
    if grp.leader:
        print('trained to iteration %d; snapshot %s; logs in %s'
              % (info['final_iteration'], info.get('last_snapshot'), info['run_dir']))


def _trainer(args, early_signals, grp):
    """The Trainer of the command line (nothing run yet)."""
    weights = [w for w in (args.weights or '').split(',') if w]
    if args.weights is not None and not weights:
        raise UsageError('expected W[,W...], got %r' % args.weights, 'weights')
    if args.resume is not None and not args.resume:
        raise UsageError("expected a .solverstate or 'auto'", 'resume')
    args.gpu = _gpu_id(args.gpu, grp)
    from caffe_mlic.fileio import refuse_non_folders
    refuse_non_folders([args.run_dir], 'run_dir')
    if args.max_iter is not None:
        from caffe_mlic.netspec.solvers import schedule
        args.overrides = ['%s=%s' % item for item in schedule(args.max_iter).items()] + args.overrides
        args.max_iter = None
    os.environ.setdefault('GLOG_minloglevel', '2')      # before caffe is imported: no INFO lines
    from caffe_mlic.engine import Trainer
    command, resume_command = _commands(args)
    return Trainer(args.solver, run_dir=args.run_dir, weights=weights, resume=args.resume,
                   score_blob=args.score_blob, command=command, resume_command=resume_command,
                   overrides=args.overrides, gpu=args.gpu, early_signals=early_signals)
