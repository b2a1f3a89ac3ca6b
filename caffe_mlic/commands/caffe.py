"""Run the real `caffe` binary with PYTHONPATH and LD_LIBRARY_PATH set so that
it finds our Python layers: `caffe-mlic caffe train -solver S [-weights W]`.

What the binary would abort on (rc 134, a glog FATAL) is checked first and
said in one line, as `caffe-mlic train` says it: for `train`, the solver
(given, a SolverParameter, its net present and a NetParameter, values in
range; the folder of its snapshot_prefix, relative to the current directory
as Caffe reads it, created and writable), not both -weights and -snapshot;
for `test` and `time`, -model (present, a NetParameter) and for `test`
-weights; every -weights file present and a NetParameter within protobuf's
2 GB. With `-snapshot STATE` the state is checked (a truncated one would
abort Caffe with a misleading message; its caffemodel must exist), and the
TRAIN data layers continue their batch plan at the state's iteration, as
`caffe-mlic train --resume` does.

`-gpu ID` (or a solver with solver_mode: GPU) is checked first: the binary
aborts in a CHECK with a CPU-only build or a missing GPU, and on several GPUs
`train` aborts on our Python layers (and this build has no NCCL), so those
are refused with a plain message."""
import argparse
import os

from caffe_mlic.errors import UsageError

HELP = 'run the caffe binary with our Python layers importable'
ACTIONS = ('train', 'test', 'time', 'device_query')


def add_arguments(parser):
    parser.add_argument('caffe_args', nargs=argparse.REMAINDER,
                        help='action (%s) and flags, as for the binary' % ', '.join(ACTIONS))


def run_argv(argv):
    from caffe_mlic.caffe import env as caffe_env
    first = argv[0] if argv else None
    # The binary answers an unknown action with its whole flag list; say it in one line.
    if first is None or (not first.startswith('-') and first not in ACTIONS):
        raise UsageError('expected an action, one of %s, got %s (flags as for the caffe binary)'
                         % (', '.join(ACTIONS), repr(first) if first else 'nothing'))
    env = caffe_env.binary_environment()
    gpu = _flag_value(argv, 'gpu')
    if not gpu and first == 'train':
        gpu = _solver_gpu(_flag_value(argv, 'solver'))
    if gpu:
        _check_gpus(gpu, first)
    weights, state = _flag_value(argv, 'weights'), _flag_value(argv, 'snapshot')
    if first == 'train':
        solver = _flag_value(argv, 'solver')
        if not solver:
            raise UsageError('train needs -solver SOLVER.prototxt')
        if weights and state:
            raise UsageError('give -snapshot STATE to resume or -weights W to fine-tune, not both')
        _check_solver(solver)
    elif first in ('test', 'time'):
        _check_model(_flag_value(argv, 'model'), first)
        if first == 'test' and not weights:
            raise UsageError('test needs -weights W.caffemodel (the weights it scores)')
    if weights:
        _check_weight_files(weights)
    if first == 'train' and state:
        env[caffe_env.START_BATCH_ENV] = str(_resume_batch(state, solver))
    binary = caffe_env.caffe_binary()
    os.execve(binary, [binary] + list(argv), env)


def _check_weight_files(value):
    """InputError for a -weights file the binary would abort on: missing, or
    over protobuf's 2 GB (the binary's reader stops there)."""
    from caffe_mlic.errors import InputError
    from caffe_mlic.caffe.weights import check_proto_size
    from caffe.proto import caffe_pb2
    from caffe_mlic.caffe.weights import parse_message
    for path in value.split(','):
        if not os.path.isfile(path):
            raise InputError('%s: no such weights file (-weights)' % path)
        if not path.endswith('.h5'):
            check_proto_size(path)
            parse_message(caffe_pb2.NetParameter(), path)


def _resume_batch(state_path, solver_path):
    """The TRAIN batch a run resumed from ``state_path`` starts at (its
    iteration x the solver's iter_size), for our data layers to continue
    their batch plan there; InputError for a state Caffe would abort on."""
    from caffe.proto import caffe_pb2
    from caffe_mlic.caffe import prototxt
    from caffe_mlic.errors import InputError
    from caffe_mlic.caffe.weights import check_proto_size, parse_message
    if not os.path.isfile(state_path):
        raise InputError('%s: no such solver state' % state_path)
    if state_path.endswith('.h5'):
        return 0      # (HDF5 states: the plan restarts; the binary reads the iteration itself)
    state = parse_message(caffe_pb2.SolverState(), state_path)
    if not state.learned_net or not os.path.isfile(state.learned_net):
        # The binary reads it relative to the current directory, and aborts.
        raise InputError('%s: its caffemodel %s is missing (Caffe reads it relative to the current '
                         'directory)' % (state_path, state.learned_net or '(none named)'))
    check_proto_size(state.learned_net)
    iter_size = 1
    if solver_path and os.path.isfile(solver_path):
        iter_size = max(1, prototxt.read_solver(solver_path).iter_size)
    return state.iter * iter_size


def _check_gpus(value, action):
    """UsageError / RunError for a -gpu value the binary would abort on."""
    from caffe_mlic.caffe import env as caffe_env
    caffe_env.check_gpu([])                     # a CPU-only build is refused here
    ids = caffe_env.gpu_ids(value, '-gpu')
    if action == 'train' and len(ids) > 1:
        raise UsageError('-gpu %s: %s' % (value, caffe_env.MULTI_GPU))
    caffe_env.check_gpu(ids)


def _solver_gpu(solver_path):
    """The device the binary picks for a solver with solver_mode: GPU and no
    -gpu flag (its device_id), or None."""
    from caffe.proto import caffe_pb2
    from caffe_mlic.caffe import prototxt
    from caffe_mlic.errors import InputError
    if not solver_path or not os.path.isfile(solver_path):
        return None
    try:
        solver = prototxt.read_solver(solver_path)
    except InputError:
        return None
    if solver.solver_mode == caffe_pb2.SolverParameter.GPU:
        return str(solver.device_id)
    return None


def _flag_value(argv, name):
    """The value of gflags flag ``name`` in argv (-name V, -name=V, --name ...), or None."""
    for i, arg in enumerate(argv):
        for dashes in ('-', '--'):
            if arg == dashes + name and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith(dashes + name + '='):
                return arg.split('=', 1)[1]
    return None


def _check_solver(solver_path):
    """The solver as `caffe-mlic train` checks it (engine.solver_file), and
    its snapshot folder created and writable."""
    from caffe_mlic.engine.snapshots import check_snapshot_folder
    from caffe_mlic.engine.solver_file import SolverFile
    from caffe_mlic.errors import InputError
    solver = SolverFile(solver_path, run_dir='.')
    if solver.param.snapshot and not solver.param.snapshot_prefix:
        raise InputError('%s: snapshot is %d but there is no snapshot_prefix (the binary aborts)'
                         % (solver_path, solver.param.snapshot))
    if solver.param.snapshot_prefix:
        check_snapshot_folder(solver)


def _check_model(model, action):
    from caffe_mlic.caffe import prototxt
    if not model:
        raise UsageError('%s needs -model NET.prototxt' % action)
    prototxt.check_net(prototxt.read_net(model), model)


def run(args):
    return run_argv(args.caffe_args)
