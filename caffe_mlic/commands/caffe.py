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
are refused with a plain message.

Signals. The binary runs as our child, in its own process group; a signal to
`caffe-mlic caffe` (or to its process group) is passed on as the binary
understands it (a SIGTERM reaching the binary itself makes glog print a
crash's stack dump):
  train        SIGINT and SIGHUP go on as they are: Caffe's solver does what
               -sigint_effect (default stop) and -sighup_effect (default
               snapshot) say. SIGTERM goes on as the one of the two whose
               effect is stop (SIGINT by default): Caffe ends training after
               the current iteration, snapshotting unless the solver sets
               snapshot_after_train: false; if neither is stop, the binary is
               killed (no snapshot).
  test, time,  SIGINT, SIGTERM and SIGHUP end the binary (there is nothing to
  device_query save).
A signal that comes before the binary starts (while we import pycaffe and
check the inputs) stops us there if it would have stopped the binary: the
binary is not started (128 + N, one line); a SIGINT or SIGHUP for `train`
that comes while the binary starts goes on once Caffe has hooked it up.
The binary dies with us if we are killed (SIGKILL included); the private
temp folder of such a run (/tmp/caffe-mlic-caffe-PID-...: glog's logs) is
removed by the next `caffe-mlic caffe` once that run is gone.

Errors of our Python layers inside the binary (a data worker that cannot
start or was killed, a bad param_str) are one line and exit status 1, its
data workers stopped first (caffe_mlic.layers.base.WRAPPER_ENV).

Exit status: the binary's own when it ends by itself; 128 + N when signal N
stopped it (130 SIGINT, 129 SIGHUP, 143 SIGTERM; one line says so), or
killed it (134: SIGABRT, a CHECK that failed); 2 and 1 for our own checks,
as every command."""
import argparse
import contextlib
import os
import signal
import time

from caffe_mlic.cli import GLOG_DEFAULT_MARK
from caffe_mlic.errors import InputError, RunError, UsageError

# = caffe_mlic.layers.base.WRAPPER_ENV (not imported: that imports every layer)
WRAPPER_ENV = 'CAFFE_MLIC_CAFFE_WRAPPER'
HELP = 'run the caffe binary with our Python layers importable'
ACTIONS = ('train', 'test', 'time', 'device_query')
# The binary's own flags (tools/caffe.cpp), with what a value must be; and the
# glog / gflags flags every such binary takes. Any other flag: gflags' error.
FLAGS = {'gpu': None, 'solver': None, 'model': None, 'snapshot': None, 'weights': None, 'stage': None,
         'phase': ('TRAIN', 'TEST'), 'level': int, 'iterations': int,
         'sigint_effect': ('stop', 'snapshot', 'none'), 'sighup_effect': ('stop', 'snapshot', 'none')}
GLOG_GFLAGS = {'logtostderr', 'alsologtostderr', 'colorlogtostderr', 'minloglevel', 'stderrthreshold',
               'log_dir', 'v', 'vmodule', 'logbuflevel', 'logbufsecs', 'max_log_size', 'log_prefix',
               'stop_logging_if_full_disk', 'flagfile', 'fromenv', 'tryfromenv', 'undefok', 'help',
               'helpfull', 'helpshort', 'helpon', 'helpmatch', 'helppackage', 'helpxml', 'version'}


def add_arguments(parser):
    parser.add_argument('caffe_args', nargs=argparse.REMAINDER,
                        help='action (%s) and flags, as for the binary' % ', '.join(ACTIONS))


def _mpi_ranks():
    """The number of ranks an MPI launcher started (1 without one)."""
    import os
    for name in ('OMPI_COMM_WORLD_SIZE', 'PMI_SIZE', 'PMIX_SIZE'):
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return 1


def run_argv(argv):
    # Signals are recorded from here on, never raised: a KeyboardInterrupt
    # inside the imports below (pycaffe's take most of a second) can be
    # swallowed by a library's catch-all, and the binary started anyway.
    with _Signals() as signals:
        try:
            return _run_argv(argv, signals)
        finally:
            if getattr(signals, 'prefix_lock', None) is not None:       # (held while the binary trains)
                from caffe_mlic.processes import unlock_file
                unlock_file(signals.prefix_lock)
            if not getattr(signals, 'binary_started', False):
                # refused or stopped before the binary: the snapshot folders made for it go (while empty)
                for folder in getattr(signals, 'made_dirs', []):
                    with contextlib.suppress(OSError):
                        os.rmdir(folder)


def _run_argv(argv, signals):
    from caffe_mlic.caffe import env as caffe_env
    first = argv[0] if argv else None
    if first in ('-h', '--help', '-help') and len(argv) == 1:
        # ours first (checks, signals, exit status); then the binary's own help
        print('usage: caffe-mlic caffe ACTION [FLAGS...]  (%s)\n\n%s\n' % (HELP, __doc__.strip()), flush=True)
        if first == '-h':       # (not a gflags flag)
            return 0
    # The binary answers an unknown action with its whole flag list; say it in one line.
    if first is None or (not first.startswith('-') and first not in ACTIONS):
        raise UsageError('expected an action, one of %s, got %s (flags as for the caffe binary)'
                         % (', '.join(ACTIONS), repr(first) if first else 'nothing'))
    _check_flags(argv[1:] if not first.startswith('-') else argv)
    if first == 'train' and _mpi_ranks() > 1:
        raise UsageError('the caffe binary does not train data-parallel over MPI: under mpirun each rank '
                         'would train alone into the same snapshots; run `mpirun -np N caffe-mlic train SOLVER` '
                         '(one rank per process, gradients averaged)')
    signals.action = first
    signals.effects = {signal.SIGINT: _flag_value(argv, 'sigint_effect') or 'stop',
                       signal.SIGHUP: _flag_value(argv, 'sighup_effect') or 'snapshot'}
    signals.check()
    env = caffe_env.binary_environment()
    # Our layers' errors in the binary: one line and exit 1 (layers.base.WRAPPER_ENV)
    env[WRAPPER_ENV] = str(os.getpid())
    # The binary's results (test scores, times, the training log plot-log
    # reads) are glog INFO lines: shown unless the user set a level.
    if os.environ.get(GLOG_DEFAULT_MARK):
        env['GLOG_minloglevel'] = '0'
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
        if state:
            from caffe_mlic.engine.snapshots import ranks_file, state_ranks
            ranks = state_ranks(state)
            if ranks > 1:
                raise UsageError('%s was written by a data-parallel run of %d ranks (%s): the caffe binary trains '
                                 'one process, with another batch; resume it with mpirun -np %d caffe-mlic train '
                                 'SOLVER --resume %s' % (state, ranks, ranks_file(state), ranks, state), 'snapshot')
        signals.check()
        signals.prefix_lock, signals.made_dirs = _check_solver(solver, argv)
    elif first in ('test', 'time'):
        _check_model(_flag_value(argv, 'model'), first, argv)
        if first == 'test' and not weights:
            raise UsageError('test needs -weights W.caffemodel (the weights it scores)')
    signals.check()
    if weights:
        _check_weight_files(weights, argv)
        if first == 'train':
            _refuse_own_snapshots(weights, solver, argv)
        signals.check()
    if first == 'train' and state:
        env[caffe_env.START_BATCH_ENV] = str(_resume_batch(state, solver, argv))
        _refuse_finished_state(state, solver, argv)
    if first == 'train' and not caffe_env.writes_replace_links():     # (ours replace them: patch 0005)
        _refuse_linked_snapshots(solver, state, argv)
    binary = caffe_env.caffe_binary()
    signals.check()
    # The binary's temp folder is ours, removed when it ends: glog writes its
    # log files there (TMPDIR), and multiprocessing its pymp-* folders, which
    # the embedded Python's exit never cleans up.
    # A run killed with SIGKILL cannot remove its own: the folders of runs
    # that are gone are swept here (processes.sweep_owned_folders).
    import shutil
    private, lock = _private_temp()
    env = dict(env, TMPDIR=private)
    started = time.time()
    try:
        signals.binary_started = True
        code = _run_binary(binary, argv, env, signals)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        os.close(lock)
        if first == 'train':        # the binary's snapshots are one process's: no .ranks beside them
            from caffe_mlic.engine.snapshots import drop_stale_ranks
            from caffe_mlic.engine.solver_file import SolverFile
            with contextlib.suppress(Exception):
                drop_stale_ranks(SolverFile(solver, run_dir='.', binary_state=_binary_state(argv)).snapshot_prefix,
                                 started)
    # gflags ends its help with exit status 1; help asked for is not a failure
    return 0 if first in ('--help', '-help') and len(argv) == 1 and code == 1 else code


TEMP_PREFIX = 'caffe-mlic-caffe-'


def _private_temp():
    """A new temp folder of this run's (processes.owned_folder: named after
    it and locked, once the stale ones are swept): (path, fd)."""
    import tempfile
    from caffe_mlic.processes import owned_folder
    return owned_folder(tempfile.gettempdir(), TEMP_PREFIX)


class BinaryStopped(RunError):
    """The binary ended because of a signal: exits 128 + the signal."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = 128 + signum


def _signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return 'signal %d' % signum


def _forwarded_signal(signum, action, effects):
    """The signal the binary gets for ``signum`` sent to us. ``effects``:
    {SIGINT: -sigint_effect, SIGHUP: -sighup_effect}, which only `train` acts
    on (tools/caffe.cpp hooks its SignalHandler up there alone)."""
    if action != 'train':
        # test and time save nothing; SIGTERM would print glog's stack dump, and
        # SIGINT raises KeyboardInterrupt inside a Python layer (Python's own
        # handler, installed when the first one loads): end it outright.
        return signal.SIGKILL
    if signum == signal.SIGTERM:
        for candidate in (signal.SIGINT, signal.SIGHUP):
            if effects[candidate] == 'stop':
                return candidate
        return signal.SIGKILL
    return signum


def _parent_death_signal():
    """A preexec_fn that makes the child die with us (PR_SET_PDEATHSIG): it
    is in its own process group, so a kill of ours would not reach it. The
    libc function is looked up here, before the fork: the child only calls it."""
    import ctypes
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):       # not Linux: no such guard
        return None
    parent = os.getpid()

    def setup():
        prctl(1, signal.SIGKILL, 0, 0, 0)   # 1: PR_SET_PDEATHSIG
        if os.getppid() != parent:          # we died before it was set
            os._exit(1)
    return setup


class _Signals:
    """SIGINT, SIGTERM and SIGHUP to us, from the start of run_argv to the
    binary's end: recorded by the handler (which raises nothing), acted on
    by check() before the binary starts and passed on once it runs."""
    HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.action, self.effects = None, {}
        self.received = []      # (signal to us, what the binary gets), in order
        self.arrived = []       # signals to us not yet acted on
        self.queued = []        # what the binary gets once its handlers are up
        self.proc = None
        self.old = {}
        self.flushing = False   # (the handler runs between any two bytecodes)

    def __enter__(self):
        import threading
        if threading.current_thread() is threading.main_thread():
            self.old = {s: signal.signal(s, self._handle) for s in self.HANDLED}
        return self

    def __exit__(self, *exc):
        proc = self.proc
        if proc is not None and proc.returncode is None:     # (an error of ours while waiting)
            proc.kill()
            proc.wait()
        for s, handler in self.old.items():
            signal.signal(s, handler)

    def _handle(self, signum, frame):
        self.arrived.append(signum)
        if self.proc is not None and not self.flushing:
            self.flush()

    def stopping(self, target):
        """Whether the binary getting ``target`` ends it (or would, were it running)."""
        return target == signal.SIGKILL or (self.action == 'train' and self.effects.get(target) == 'stop')

    def check(self):
        """Before the binary starts: BinaryStopped (128 + N) for a signal N
        that would have stopped it; one that would not (SIGHUP with
        -sighup_effect snapshot: there is nothing to save yet) is dropped."""
        while self.arrived:
            signum = self.arrived.pop(0)
            target = _forwarded_signal(signum, self.action, self.effects) if self.action else signal.SIGKILL
            if self.stopping(target):
                raise BinaryStopped('stopped by %s before the caffe binary started (nothing was run)'
                                    % _signal_name(signum), signum)

    def _ready(self, target):
        """Whether the binary can take ``target`` now: Caffe's train hooks
        SIGINT and SIGHUP up (tools/caffe.cpp's SignalHandler) only once it
        has read the solver; one sent before would kill it (the default
        action) whatever -sigint_effect / -sighup_effect say. Read from
        /proc (SigCgt: the signals the process catches)."""
        if self.action != 'train' or target not in (signal.SIGINT, signal.SIGHUP):
            return True
        try:
            with open('/proc/%d/status' % self.proc.pid) as f:
                for line in f:
                    if line.startswith('SigCgt:'):
                        return bool(int(line.split()[1], 16) & (1 << (target - 1)))
        except (OSError, ValueError):
            return True             # gone (it ends by itself), or no /proc
        return True

    def flush(self):
        """Pass on what came, as soon as the binary can take it."""
        proc = self.proc
        self.flushing = True
        try:
            while self.arrived:
                signum = self.arrived.pop(0)
                target = _forwarded_signal(signum, self.action, self.effects)
                self.received.append((signum, target))
                self.queued.append(target)
            while self.queued and proc.returncode is None and self._ready(self.queued[0]):
                try:
                    os.kill(proc.pid, self.queued.pop(0))
                except ProcessLookupError:
                    pass
        finally:
            self.flushing = False

    def send(self, target):
        if self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, target)
            except ProcessLookupError:
                pass


def _run_binary(binary, argv, env, signals):
    """Run the binary as our child and wait for it, passing signals on as
    the module docstring says; its exit status, or BinaryStopped."""
    import subprocess
    action = signals.action

    def suspend(signum, frame):
        # Ctrl-Z: the binary is not in the terminal's foreground group; stop
        # it with us, and continue it when we are continued.
        if signals.proc is not None:
            signals.send(signal.SIGSTOP)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        signal.signal(signal.SIGTSTP, suspend)
        if signals.proc is not None:
            signals.send(signal.SIGCONT)

    old_tstp = signal.signal(signal.SIGTSTP, suspend)
    try:
        signals.check()
        signals.proc = subprocess.Popen([binary] + list(argv), env=env, process_group=0,
                                        preexec_fn=_parent_death_signal())
        while True:
            signals.flush()
            try:
                # (polled: a signal held back until Caffe's handlers are up
                # goes on within 50 ms of them)
                code = signals.proc.wait(timeout=0.05 if signals.queued else 1.0)
                break
            except subprocess.TimeoutExpired:
                pass
    finally:
        signal.signal(signal.SIGTSTP, old_tstp)
    signals.flush()
    return _exit_status(code, signals.received, action, signals.effects)


def _exit_status(code, received, action, effects):
    """The binary's exit status ``code`` (Popen's: -N for signal N), or
    BinaryStopped when a signal to us (``received``) stopped it or a signal
    killed it."""
    # a signal to us stopped it when the binary got SIGKILL, or one its solver
    # stops on, or died of the one it got (before Caffe's handlers were up)
    stops = [(s, t) for s, t in received if t == signal.SIGKILL or -code == t
             or (action == 'train' and effects.get(t) == 'stop')]
    if stops:
        signum, target = stops[0]
        name = _signal_name(signum)
        if code == 0 and target != signal.SIGKILL:
            how = ('Caffe ended training after its current iteration (sent %s, -%s_effect stop), with a '
                   'snapshot unless the solver sets snapshot_after_train: false'
                   % (_signal_name(target), 'sigint' if target == signal.SIGINT else 'sighup'))
        elif code < 0:
            how = 'the caffe binary was ended by %s%s' % (
                _signal_name(-code), ', without a snapshot (neither -sigint_effect nor -sighup_effect is stop)'
                if action == 'train' and -code == signal.SIGKILL else '')
        else:
            how = 'the caffe binary exited with status %d' % code
        raise BinaryStopped('stopped by %s: %s' % (name, how), signum)
    if code < 0:
        raise BinaryStopped('the caffe binary was killed by %s' % _signal_name(-code), -code)
    return code


def _check_flags(argv):
    """UsageError for a flag the binary does not know, or a value it would
    abort on (gflags prints its own error, the binary CHECKs the enums)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith('-') or arg in ('-', '--'):
            raise UsageError('unexpected argument %r: flags are -name value or -name=value' % arg)
        name, sep, value = arg.lstrip('-').partition('=')
        if name in ('flagfile', 'fromenv', 'tryfromenv'):
            raise UsageError('-%s: give the flags on the command line, where they are checked before the '
                             'binary starts (flags read from a file or the environment are not)' % name)
        if name not in FLAGS:
            if name in GLOG_GFLAGS or (name.startswith('no') and name[2:] in GLOG_GFLAGS):
                if not sep and name not in ('logtostderr', 'alsologtostderr', 'colorlogtostderr',
                                            'stop_logging_if_full_disk', 'help', 'helpfull',
                                            'helpshort', 'helpxml', 'version') and not name.startswith('no'):
                    i += 1      # its value
                continue
            raise UsageError('unknown flag -%s; the binary takes %s (and glog\'s)'
                             % (name, ', '.join('-' + f for f in sorted(FLAGS))))
        if not sep:
            if i >= len(argv):
                raise UsageError('-%s needs a value' % name)
            value, i = argv[i], i + 1
        kind = FLAGS[name]
        if value == '' and name in ('solver', 'model', 'weights', 'snapshot'):
            raise UsageError('-%s needs a file, got an empty value' % name)
        if isinstance(kind, tuple) and value not in kind:
            raise UsageError('-%s must be one of %s, got %r' % (name, ', '.join(kind), value))
        if kind is int:     # (gflags int32 flags: the binary's own check of a larger value is one line too)
            from caffe_mlic.fileio import text_integer
            try:
                number = text_integer(value)
            except ValueError:
                number = None
            low = 1 if name == 'iterations' else -2 ** 31
            if number is None or not low <= number <= 2 ** 31 - 1:
                raise UsageError('-%s must be an integer from %d to 2147483647, got %r' % (name, low, value))


def _refuse_own_snapshots(value, solver_path, argv):
    """UsageError for a -weights file named like a snapshot this training
    writes (the binary would write over it)."""
    from caffe_mlic.engine.snapshots import own_snapshot_problem
    from caffe_mlic.engine.solver_file import SolverFile
    solver = SolverFile(solver_path, run_dir='.', binary_state=_binary_state(argv))
    for path in value.split(','):
        problem = own_snapshot_problem(path, solver.snapshot_prefix, solver.param.max_iter, solver.hdf5,
                                       binary=True)
        if problem:
            raise UsageError(problem, 'weights')


def _check_weight_files(value, argv=()):
    """InputError for a -weights file the binary would abort on: missing,
    over protobuf's 2 GB (the binary's reader stops there), unreadable (a
    truncated caffemodel, a .h5 HDF5 cannot open), or, for `train` (the
    nets the solver builds: TRAIN, and its TEST nets) and `test` (-model, TEST),
    a layer of the net's name whose blobs differ in number or shape (the
    binary CHECKs them; with HDF5 it reshapes the net's blob and corrupts
    memory), from the parameter shapes inferred without building the net.
    `train` needs each file to fill some layer (as `caffe-mlic train
    --weights`), `test` every one (a layer left with its fillers' values
    scores plausibly and wrongly)."""
    from caffe_mlic.caffe import prototxt
    from caffe_mlic.caffe.shapes import infer_param_shapes
    from caffe_mlic.caffe.weights import check_weight_layers, read_sources
    from caffe_mlic.engine.solver_file import SolverFile
    from caffe_mlic.errors import InputError
    action = argv[0] if argv and not argv[0].startswith('-') else None
    # (`test` reads -weights as one file; `train` splits it at commas)
    paths = [value] if action == 'test' else value.split(',')
    from caffe_mlic.caffe.weights import weights_file_problem
    if '' in paths:
        raise InputError('-weights %s names an empty file name (a comma at its start or end, or two together)'
                         % (value or "''"))
    for path in paths:
        if weights_file_problem(path):
            raise InputError('%s (-weights%s)' % (weights_file_problem(path), '; test takes one file, not a list'
                                                   if action == 'test' and ',' in path else ''))
    # the nets the binary copies the weights into: [(label, [(layer, [ParamBlob] or None)])]
    nets = []
    if action == 'train':
        solver = SolverFile(_flag_value(argv, 'solver'), run_dir='.', binary_state=_binary_state(argv))
        nets = [(label, infer_param_shapes(net, prototxt.phase_name(state.phase),
                                           lambda layer, ph, state=state: prototxt.state_keeps(state, layer)))
                for label, net, _, state in solver.nets]
    elif action == 'test':
        nets = [('TEST', infer_param_shapes(prototxt.read_net(_flag_value(argv, 'model')), 'TEST',
                                            prototxt.in_phase))]
    sources = [read_sources(path) for path in paths]     # each reads (within protobuf's 2 GB)
    for path, layers in zip(paths, sources):
        for i, (_, params) in enumerate(nets):
            check_weight_layers(path, params, complete=action == 'test', fill=i == 0, sources=layers)


def _refuse_linked_snapshots(solver_path, state_path, argv=()):
    """InputError for a snapshot name this training writes (an iteration
    after the state's, up to max_iter) that is a symlink or hard link: the
    binary writes through it, into the file it shares (another run's
    snapshot). (`train` replaces such names instead.)"""
    from caffe_mlic.caffe.weights import read_state
    from caffe_mlic.engine.snapshots import linked_snapshots
    from caffe_mlic.engine.solver_file import SolverFile
    from caffe_mlic.errors import InputError
    param = SolverFile(solver_path, run_dir='.', binary_state=_binary_state(argv)).param
    start = read_state(state_path).iteration if state_path else 0
    linked = linked_snapshots(param.snapshot_prefix, start, param.max_iter)
    if linked:
        one = len(linked) == 1
        raise InputError('%s %s (a symlink, or a file with another hard link) where this training writes a '
                         'snapshot: the caffe binary would write through %s into the file shared; remove %s '
                         'first, or train with caffe-mlic train, which replaces such names' % (
                             ', '.join(linked[:3]) + (' ...' if len(linked) > 3 else ''),
                             'is a link' if one else 'are links', 'it' if one else 'them', 'it' if one else 'them'))


def _refuse_finished_state(state_path, solver_path, argv=()):
    """UsageError for a state at or past the solver's max_iter: the binary
    would train nothing and exit 0 (as `train --resume STATE` refuses it)."""
    from caffe_mlic.caffe.weights import read_state
    from caffe_mlic.engine.solver_file import SolverFile
    iteration = read_state(state_path).iteration
    max_iter = SolverFile(solver_path, run_dir='.', binary_state=_binary_state(argv)).param.max_iter
    if iteration >= max_iter:
        raise UsageError('%s is at iteration %d, %s max_iter %d of %s: nothing to train (raise max_iter in the '
                         'solver)' % (state_path, iteration, 'past' if iteration > max_iter else 'at', max_iter,
                                      solver_path), 'snapshot')


def _resume_batch(state_path, solver_path, argv=()):
    """The TRAIN batch a run resumed from ``state_path`` starts at (its
    iteration x the solver's iter_size), for our data layers to continue
    their batch plan there; InputError for a state Caffe would abort on: one
    it cannot read (binary, or .h5 read with h5py), whose history blobs
    differ in number or shape from the learnable blobs of the solver's net
    (inferred without building it; two per blob for Adam and AdaDelta), or
    whose caffemodel is missing, unreadable or of another net."""
    from caffe_mlic.caffe import prototxt
    from caffe_mlic.caffe.shapes import infer_param_shapes, learnable_shapes
    from caffe_mlic.caffe.weights import check_history, check_weight_layers, read_state
    from caffe_mlic.engine.solver_file import HISTORY_PER_PARAM, SolverFile
    from caffe_mlic.errors import InputError
    state = read_state(state_path)
    solver = SolverFile(solver_path, run_dir='.', binary_state=_binary_state(argv))
    _, net, _, train_state = solver.nets[0]
    params = infer_param_shapes(net, prototxt.phase_name(train_state.phase),
                                lambda layer, ph: prototxt.state_keeps(train_state, layer))
    learnable = learnable_shapes(params)
    if learnable is not None:       # (unknown where a layer's number of blobs is)
        check_history(state_path, state, learnable * HISTORY_PER_PARAM[solver.type], solver.type)
    # The caffemodel written with the state is the one beside it; the binary
    # reads the name from the current directory (and aborts where nothing is
    # there): from another directory, or once the state's folder was renamed,
    # that may be another run's weights, taken in silence.
    beside = os.path.join(os.path.dirname(state_path), os.path.basename(state.learned_net))
    if not state.learned_net or not os.path.isfile(beside):
        raise InputError('%s: its caffemodel %s is missing (beside it, where it was written)'
                         % (state_path, os.path.basename(state.learned_net) or '(none named)'))
    if not _same_file(beside, state.learned_net):
        raise InputError('%s: its caffemodel %s, as Caffe reads it from the current directory, %s %s beside '
                         'it: run from the folder the state was written from, or resume with caffe-mlic train '
                         'SOLVER --resume %s' % (state_path, state.learned_net, 'is not' if os.path.lexists(
                             state.learned_net) else 'is not there; it is', beside, state_path))
    check_weight_layers(state.learned_net, params, complete=True)
    return state.iteration * max(1, solver.param.iter_size)


def _same_file(a, b):
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


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
    # the binary reads solver_mode only when it is set (its default, GPU, is not used)
    if solver.HasField('solver_mode') and solver.solver_mode == caffe_pb2.SolverParameter.GPU:
        return str(solver.device_id)
    return None


def _flag_value(argv, name):
    """The value of gflags flag ``name`` in argv (-name V, -name=V, --name ...),
    or None; given twice, the last one, as gflags reads it."""
    found = None
    for i, arg in enumerate(argv):
        for dashes in ('-', '--'):
            if arg == dashes + name and i + 1 < len(argv):
                found = argv[i + 1]
            elif arg.startswith(dashes + name + '='):
                found = arg.split('=', 1)[1]
    return found


def _binary_state(argv):
    """(stages, level) of -stage and -level, as the binary reads them
    (boost::split at commas: no -stage is one empty stage; -level 0 by
    default): `train` adds them to the solver's train_state, `test` and
    `time` build -model with them."""
    level = _flag_value(argv, 'level')
    return (_flag_value(argv, 'stage') or '').split(','), int(level) if level else 0


def _check_solver(solver_path, argv=()):
    """The solver as `caffe-mlic train` checks it (engine.solver_file), in
    every form the binary takes (train_net, test_net...), the nets built as
    the binary builds them (train_state with -stage and -level, each
    test_state; TEST nets only where test_iter gives them); and its snapshot
    folder created and writable. Returns the lock on the prefix (snapshots.
    lock_prefix; without a snapshot_prefix, that of the current
    directory's _iter_N files), and the folders made for the snapshots."""
    from caffe_mlic.engine.snapshots import check_hdf5_snapshots, check_snapshot_folder, lock_prefix
    from caffe_mlic.engine.solver_file import SolverFile
    from caffe_mlic.errors import InputError
    solver = SolverFile(solver_path, run_dir='.', binary_state=_binary_state(argv))
    check_hdf5_snapshots(solver)          # names HDF5 cannot hold: Caffe aborts at the first snapshot
    if solver.param.snapshot and not solver.param.snapshot_prefix:
        raise InputError('%s: snapshot is %d but there is no snapshot_prefix (the binary aborts)'
                         % (solver_path, solver.param.snapshot))
    # one writer of a prefix at a time, the binary or a `train` run; held until the binary ends (run_argv)
    if solver.param.snapshot_prefix:
        made = check_snapshot_folder(solver)
        try:
            return lock_prefix(solver.snapshot_prefix), made
        except BaseException:
            for folder in made:         # (deepest first, while empty)
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
            raise
    # Without a prefix this Caffe writes _iter_N.caffemodel / .solverstate into the current directory
    # (after training, and on SIGHUP): two binaries there would write the same files.
    return lock_prefix('', shown='"" (the files _iter_N.* in %s)' % os.getcwd()), []




def _check_model(model, action, argv):
    """The -model net as the binary builds it: `test` in the TEST phase
    (always), `time` in -phase's (default TRAIN); layers of the other phase
    are not checked (a TRAIN data layer's problem does not stop `test`)."""
    from caffe_mlic.caffe import prototxt
    if not model:
        raise UsageError('%s needs -model NET.prototxt' % action)
    phase = 'TEST' if action == 'test' else _flag_value(argv, 'phase') or 'TRAIN'
    # -stage a,b and -level N select layers as the binary's net state does
    stages, level = _binary_state(argv)
    net = prototxt.read_net(model)
    prototxt.check_net(net, model, phase, stages, level)
    if action == 'time':
        # `time` runs every layer's backward pass; these have none (Caffe aborts)
        from caffe_mlic.caffe.shapes import NO_BACKWARD
        rule = prototxt.state_rule(net, stages, level)
        without = [layer.name for layer in net.layer if layer.type in NO_BACKWARD and rule(layer, phase)]
        if without:
            raise InputError("%s: caffe time runs every layer's backward pass, and %s (%s) %s none (Caffe "
                             "aborts): time a net without %s, or use caffe-mlic speed"
                             % (model, ', '.join("'%s'" % n for n in without),
                                ', '.join(sorted({l.type for l in net.layer if l.name in without})),
                                'has' if len(without) == 1 else 'have', 'it' if len(without) == 1 else 'them'))


def run(args):
    return run_argv(args.caffe_args)
