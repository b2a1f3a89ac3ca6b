"""`caffe-mlic run CONFIG`: read and check the config, then run the stages
that are not done; the stages of each seed and head in a process of their
own (their output in its log.txt), ``run.jobs`` of them side by side, the
stages that gather them (the report) at the end."""
import contextlib
import os
import sys

from caffe_mlic.errors import InputError, MlicError, RunError, UsageError
from caffe_mlic.pipeline import stages as st
from caffe_mlic.pipeline.config import read_config

LOG = 'log.txt'


def _system(data, path):
    from caffe_mlic.errors import Problem
    system = data.get('run', {}).get('system') if isinstance(data.get('run'), dict) else None
    if system == 'scasnet':
        from caffe_mlic.pipeline import scasnet
        return scasnet
    if system == 'mlic':
        raise UsageError("%s: run.system 'mlic': the MLIC-KD-WSD pipeline is not built yet (make demo runs "
                         "it; see the README)" % path)
    raise InputError(problems=[Problem(path, None, 'run.system', "must be 'scasnet', got %r" % (system,))])


def load(path, overrides=()):
    """(system module, its Plan, [Stage]) of the config at ``path``, checked."""
    data = read_config(path, overrides)
    system = _system(data, path)
    problems = system.check(path, data)
    if problems:
        raise InputError(problems=problems)
    plan = system.Plan(data)
    return system, plan, system.stages(plan)


def _runner_pid(folder):
    """The pid of the `run` that holds ``folder``'s lock now, or None."""
    import fcntl
    from caffe_mlic.engine.trainer import LOCK_FILE
    try:
        with open(os.path.join(folder, LOCK_FILE)) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = f.read().strip()
                return int(holder) if holder.isdigit() else -1
    except OSError:
        pass
    return None


def status_lines(plan, stages):
    """A line per stage: done, running (a `run` holds the folder and the
    stage has started), stale (why) or to do."""
    lines, runner = [], _runner_pid(plan.folder)
    for stage in stages:
        status = st.status(plan.folder, stage)
        if status.state == 'to do' and runner is not None and os.path.exists(st.started_path(plan.folder,
                                                                                              stage.name)):
            status = st.Status('running', 'pid %d' % runner if runner > 0 else None)
        lines.append('%-28s %s%s' % (stage.name, status.state, ' (%s)' % status.why if status.why else ''))
    return lines


def run(path, overrides=(), start=None, only=None, say=print):
    """Run the stages of the config at ``path`` that are not done; then the
    system's summary (the table, where the results are)."""
    system, plan, stages = load(path, overrides)
    todo = st.plan(plan.folder, stages, start, only)
    running = {stage.name for stage, _ in todo}
    for stage in stages:
        if stage.name not in running:
            say('stage %s: done' % stage.name)
    if not todo:
        say('nothing to run: every stage is done (%s)' % plan.folder)
        return []
    ran = _run_todo(path, overrides, system, plan, stages, todo, say)
    for line in system.summary(plan):
        say(line)
    return ran


def _run_todo(path, overrides, system, plan, stages, todo, say):
    from caffe_mlic.engine.trainer import lock_run_dir, unlock_run_dir
    os.makedirs(plan.folder, exist_ok=True)
    lock = lock_run_dir(plan.folder, 'caffe-mlic run', 'give this config another run.folder')
    try:
        chains = {}
        for stage, why in todo:
            chains.setdefault(system.chain_of(stage.name), []).append((stage.name, why))
        gather = chains.pop(None, [])
        _run_chains(path, overrides, plan, chains)
        by_name = {s.name: s for s in stages}
        st.run_planned(plan.folder, [(by_name[name], why) for name, why in gather], say)
    finally:
        unlock_run_dir(lock)
    return [stage.name for stage, _ in todo]


def _run_chains(path, overrides, plan, chains):
    """Each chain (one seed and head) in a spawned process, ``plan.jobs`` at once."""
    if not chains:
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    context = multiprocessing.get_context('spawn')
    errors = []
    with ProcessPoolExecutor(max_workers=min(plan.jobs, len(chains)), mp_context=context,
                             initializer=_one_thread) as pool:
        futures = [(key, pool.submit(_run_chain, os.path.abspath(path), list(overrides), key, planned))
                   for key, planned in chains.items()]
        for key, future in futures:
            try:
                future.result()
            except BaseException as e:      # noqa: B902 (every chain is waited for, then the first error)
                errors.append((key, e))
    if errors:
        key, error = errors[0]
        log = os.path.join(plan.folder, key, LOG)
        if isinstance(error, KeyboardInterrupt):
            raise error
        if isinstance(error, MlicError):
            raise type(error)('%s (its log: %s)' % (error, log)) from error
        raise RunError('%s failed: %s: %s (its log: %s)' % (key, type(error).__name__, error, log)) from error


def _one_thread():
    """One BLAS thread per training side by side (as make demo-scasnet)."""
    os.environ.update(OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1', GLOG_minloglevel=os.environ.get(
        'GLOG_minloglevel', '2'))


def _run_chain(path, overrides, key, planned):
    """In a worker: the planned [(name, why)] of one chain, its output in
    the chain's log.txt, a line per stage on the command's stdout too."""
    _, plan, stages = load(path, overrides)
    by_name = {s.name: s for s in stages}
    folder = os.path.join(plan.folder, key)
    os.makedirs(folder, exist_ok=True)
    log = os.open(os.path.join(folder, LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush(), sys.stderr.flush()
    out = os.dup(1)         # the command's stdout (a spawned worker's is its parent's)
    os.dup2(log, 1)
    os.dup2(log, 2)

    def say(line):
        print(line, flush=True)
        with contextlib.suppress(OSError):
            os.write(out, (line + '\n').encode('utf-8', 'replace'))
    st.run_planned(plan.folder, [(by_name[name], why) for name, why in planned], say)
