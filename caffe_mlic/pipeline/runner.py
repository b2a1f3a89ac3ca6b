"""`caffe-mlic run CONFIG`: read and check the config, then run the stages
that are not done; the stages of each seed and head in a process of their
own (their output in its log.txt), ``run.jobs`` of them side by side, the
stages that gather them (the report) at the end."""
import contextlib
import os
import signal
import sys

from caffe_mlic.errors import InputError, MlicError, RunError, UsageError
from caffe_mlic.pipeline import stages as st
from caffe_mlic.pipeline.config import read_config
from caffe_mlic.processes import handling, start_without_sigint

LOG = 'log.txt'


def _system(data, path):
    from caffe_mlic.errors import Problem
    system = data.get('run', {}).get('system') if isinstance(data.get('run'), dict) else None
    if system == 'scasnet':
        from caffe_mlic.pipeline import scasnet
        return scasnet
    if system == 'mlic':
        from caffe_mlic.pipeline import mlic
        return mlic
    from caffe_mlic.pipeline.config import toml_text
    raise InputError(problems=[Problem(path, None, 'run.system', "must be 'mlic' or 'scasnet', got %s"
                                       % ('nothing' if system is None else toml_text(system)))])


NAMES = {'mlic': 'an MLIC-KD-WSD', 'scasnet': 'a ScasNet'}
SYSTEM_FILE = 'system'      # in the folder's .stages: the system whose run it holds


def folder_system(folder):
    """'mlic' or 'scasnet': the system whose run ``folder`` holds, as its
    first `run` recorded it (or, for a folder of before that record, as its
    layout shows); None for a folder of neither."""
    from caffe_mlic.report.layout import recorded_system
    text = recorded_system(folder)
    if text in NAMES:
        return text
    # a folder of before the record: by its stages' records (a ScasNet run's
    # are seed<S>/<head>/<stage>, an MLIC run's seed<S>/<stage> and data/list_*)
    import glob
    from caffe_mlic.report.layout import SCAS_HEAD_LABELS
    records = os.path.join(glob.escape(folder), st.RECORDS)
    if any(os.path.basename(p) in SCAS_HEAD_LABELS for p in glob.glob(os.path.join(records, 'seed*', '*'))
           if os.path.isdir(p)):
        return 'scasnet'
    if glob.glob(os.path.join(records, 'seed*', '*.json')) or glob.glob(os.path.join(records, 'data', 'list_*')):
        return 'mlic'
    return None


def _record_system(folder, system):
    path = os.path.join(folder, st.RECORDS, SYSTEM_FILE)
    if not os.path.isfile(path):
        from caffe_mlic.fileio import atomic_write
        with atomic_write(path) as f:
            f.write(system + '\n')


def _unmakeable_folder(folder):
    """Why the run folder ``folder`` cannot be there or be made, or None:
    it, or a folder above it, exists and is not a folder; a name in it is
    longer than the file system takes."""
    if os.path.lexists(folder) and not os.path.isdir(folder):
        return '%s exists and is not a folder' % folder
    above = os.path.dirname(os.path.abspath(folder))
    while not os.path.lexists(above) and os.path.dirname(above) != above:
        above = os.path.dirname(above)
    if not os.path.isdir(above):
        return '%s cannot be made: %s is not a folder' % (folder, above)
    try:
        os.path.abspath(folder).encode('utf-8')
    except UnicodeEncodeError:      # (a name in another encoding, here or above: bytes as surrogate escapes)
        return ('%s is not UTF-8 (a folder name in another encoding, it or one above it): the run writes '
                'its path into its solvers, whose text is UTF-8; give a folder whose path is UTF-8'
                % os.path.abspath(folder))
    longest = max(len(os.fsencode(part)) for part in os.path.abspath(folder).split(os.sep))
    if longest > 255:
        return '%s cannot be made: a name in it has %d bytes, and a file system takes 255' % (folder[:80] + '...',
                                                                                               longest)
    return None


def load(path, overrides=()):
    """(system module, its Plan, [Stage]) of the config at ``path``, checked."""
    data = read_config(path, overrides)
    system = _system(data, path)
    problems = system.check(path, data)
    folder = data['run'].get('folder') if isinstance(data.get('run'), dict) else None
    unmakeable = _unmakeable_folder(folder) if isinstance(folder, str) and folder and '\0' not in folder else None
    if unmakeable:
        from caffe_mlic.errors import Problem
        problems.append(Problem(path, None, 'run.folder', unmakeable))
    if isinstance(folder, str) and folder and os.path.isdir(folder):
        held = folder_system(folder)
        if held is not None and held != data['run']['system']:
            from caffe_mlic.errors import Problem
            problems.append(Problem(path, None, 'run.folder', '%s holds %s run, and this config is %s\'s: give '
                                    'it another run.folder (the two would write over each other\'s results)'
                                    % (folder, NAMES[held], NAMES[data['run']['system']])))
    gpu = data['run'].get('gpu') if isinstance(data.get('run'), dict) else None
    if isinstance(gpu, int) and not isinstance(gpu, bool) and gpu >= 0 and not problems:
        from caffe_mlic.caffe.env import check_gpu
        from caffe_mlic.errors import Problem
        try:
            check_gpu([gpu])        # a CPU build, or no such GPU: said before anything runs
        except MlicError as e:
            problems.append(Problem(path, None, 'run.gpu', str(e)))
    if problems:
        raise InputError(problems=problems)
    plan = system.Plan(data)
    try:
        stages = system.stages(plan)
    except UsageError as e:     # a value the config class refuses only in combination (a head's refine taps)
        from caffe_mlic.errors import Problem
        key = getattr(system, 'CONFIG_KEYS', {}).get(getattr(e, 'param', None), 'net.%s' % e.param
                                                     if getattr(e, 'param', None) else 'net')
        raise InputError(problems=[Problem(path, None, key, str(e))]) from None
    _refuse_foreign_folder(path, plan.folder, stages)
    return system, plan, stages


def _refuse_foreign_folder(path, folder, stages):
    """InputError when ``folder`` holds no record of a run (.stages) but
    files of the names the stages write at its top (results.json,
    report.html, ...): someone's files, which the run would write over. (A
    folder of inputs made before the first run, such as a demo's data/, is
    fine.)"""
    if not os.path.isdir(folder) or os.path.isdir(os.path.join(folder, st.RECORDS)):
        return
    real = os.path.realpath(folder)
    names = set()
    for stage in stages:
        for output in stage.outputs:
            rel = os.path.relpath(os.path.realpath(output), real)
            if not rel.startswith(os.pardir):
                names.add(rel.split(os.sep, 1)[0])
    names.add('settings.json')      # (the report's record of the run's settings, written with results.json)
    found = sorted(name for name in names if os.path.lexists(os.path.join(folder, name))
                   and not os.path.isdir(os.path.join(folder, name)))
    if found:
        from caffe_mlic.errors import Problem
        raise InputError(problems=[Problem(path, None, 'run.folder', '%s holds %s but no record of a run (%s/): '
                                           'files a run would write over; give run.folder a new folder, or one a '
                                           'run made' % (folder, ', '.join(found[:4]) + (' ...' if len(found) > 4
                                                                                      else ''), st.RECORDS))])


def _runner_pid(folder):
    """The pid of the process that holds ``folder``'s lock (flock) now, or
    None; read from /proc/locks, which takes no lock (a probe by flock
    could make a `run` starting at that moment think the folder taken)."""
    from caffe_mlic.engine.trainer import LOCK_FILE
    try:
        info = os.stat(os.path.join(folder, LOCK_FILE))
        with open('/proc/locks') as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == 'FLOCK' and fields[5].count(':') == 2:
            inode = fields[5].rsplit(':', 1)[1]
            if inode.isdigit() and int(inode) == info.st_ino and fields[4].isdigit():
                return int(fields[4])
    return None


def status_lines(plan, stages, start=None, only=None):
    """A line per stage: done, running (a `run` holds the folder and the
    stage has started), stale (why: a change, or a stage before it that
    will run again) or to do. With ``start`` or ``only`` (--from, --only),
    what `run` with them would run is said on each line, and ``only``
    gives its stage's line alone."""
    lines, runner = [], _runner_pid(plan.folder)
    follows = {stage.name: why for stage, why in st.plan(plan.folder, stages) if why.startswith('follows')}
    asked = {} if start is None and only is None else dict(
        (stage.name, why) for stage, why in st.plan(plan.folder, stages, start, only))
    if only is not None:
        try:
            _refuse_stale_inputs(plan.folder, stages, only)
        except UsageError as e:     # (what `run --only` would say)
            asked[only] = 'refused, %s' % e
    for stage in stages:
        if only is not None and stage.name != only:
            continue
        status = st.status(plan.folder, stage)
        if status.state == 'to do' and runner is not None and os.path.exists(st.started_path(plan.folder,
                                                                                              stage.name)):
            status = st.Status('running', 'pid %d' % runner)
        elif status.state == 'done' and stage.name in follows:
            status = st.Status('stale', follows[stage.name])
        lines.append('%-28s %s%s%s' % (stage.name, status.state, ' (%s)' % status.why if status.why else '',
                                       '; runs: %s' % asked[stage.name] if stage.name in asked else ''))
    return lines


def _refuse_stale_inputs(folder, stages, only):
    """UsageError when a stage that ``only`` (--only) needs, directly or
    through others, is not done (stale or to do): it would run on old or
    missing inputs."""
    by_name = {stage.name: stage for stage in stages}
    needed, queue = [], list(by_name[only].after)
    while queue:
        name = queue.pop(0)
        if name in by_name and name not in needed:
            needed.append(name)
            queue += by_name[name].after
    for stage in stages:        # (the earliest first)
        if stage.name in needed:
            status = st.status(folder, stage)
            if status.state != 'done':
                raise UsageError('%s needs %s, which is %s%s: run it first (`--from %s`, or a run '
                                 'without --only)' % (only, stage.name, status.state,
                                                      ' (%s)' % status.why if status.why else '', stage.name),
                                 'only')


def run(path, overrides=(), start=None, only=None, say=print):
    """Run the stages of the config at ``path`` that are not done; then the
    system's summary (the table, where the results are)."""
    from caffe_mlic.engine.trainer import lock_run_dir, unlock_run_dir
    system, plan, stages = load(path, overrides)
    todo = st.plan(plan.folder, stages, start, only)
    if only is not None:
        _refuse_stale_inputs(plan.folder, stages, only)
    say = _quiet_when_closed(say)
    if not todo:
        for stage in stages if only is None else ():
            say('stage %s: done' % stage.name)
        say('nothing to run: every stage is done (%s)' % plan.folder)
        return []
    os.makedirs(plan.folder, exist_ok=True)
    # (taken before a word is said: a second run at once is refused, nothing else)
    lock = lock_run_dir(plan.folder, 'caffe-mlic run', 'give this config another run.folder')
    try:
        _record_system(plan.folder, system.__name__.rsplit('.', 1)[-1])
        running = {stage.name for stage, _ in todo}
        for stage in stages if only is None else ():
            if stage.name not in running:
                say('stage %s: done' % stage.name)
        ran = _run_todo(path, overrides, system, plan, stages, todo, say)
        if stages[-1].name in ran:      # (the report: what the stages that gather the results say)
            for line in system.summary(plan):
                say(line)
        elif os.path.exists(os.path.join(plan.folder, 'results.json')):
            say('(results.json and the report are from before this run: the report stage did not run; '
                '`--status` says what is stale)')
    finally:
        unlock_run_dir(lock)
    return ran


def _quiet_when_closed(say):
    """``say``, with this process's standard output going quiet from the
    first write that finds its reader gone (`run ... | head -1`): the stages
    go on, as a training does, whichever line (ours or a command's) meets
    the closed pipe first."""
    if not isinstance(sys.stdout, _QuietWhenClosed):
        sys.stdout = _QuietWhenClosed(sys.stdout)
    return say


class _QuietWhenClosed:
    def __init__(self, stream):
        self._stream, self._closed = stream, False

    def _guard(self, call, *args):
        if self._closed:
            return None
        try:
            return call(*args)
        except BrokenPipeError:
            self._closed = True
            with contextlib.suppress(OSError, ValueError):
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, self._stream.fileno())    # (Python's own flush at exit must not fail either)
                os.close(null)
            return None

    def write(self, text):
        return self._guard(self._stream.write, text)

    def flush(self):
        return self._guard(self._stream.flush)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _run_todo(path, overrides, system, plan, stages, todo, say):
    # the stages of no chain before the first chained one (the data) run
    # first, the others (what gathers the chains' results) last
    first = next((i for i, s in enumerate(stages) if system.chain_of(s.name)), len(stages))
    prelude = {s.name for s in stages[:first]}
    chains, before, after = {}, [], []
    for stage, why in todo:
        key = system.chain_of(stage.name)
        if key is not None:
            chains.setdefault(key, []).append((stage.name, why))
        else:
            (before if stage.name in prelude else after).append((stage, why))
    st.run_planned(plan.folder, before, say)
    _run_chains(path, overrides, plan, chains, _chain_needs(system, stages, chains))
    st.run_planned(plan.folder, after, say)
    return [stage.name for stage, _ in todo]


def _chain_needs(system, stages, chains):
    """{chain: the other chains to run whose stages it starts from} (a seed's
    ablation rows need the seed's stage 2 start)."""
    needs = {}
    for stage in stages:
        key = system.chain_of(stage.name)
        if key in chains:
            needs.setdefault(key, set()).update(
                system.chain_of(a) for a in stage.after if system.chain_of(a) not in (None, key)
                and system.chain_of(a) in chains)
    return needs


def _run_chains(path, overrides, plan, chains, needs=None):
    """Each chain (one seed and head) in a spawned process of its own,
    ``plan.jobs`` at once, a chain once the chains it needs have ended
    well. A chain that fails or dies (a Caffe abort, the
    OOM killer) is reported as its own, the others go on (but those that
    need it); Ctrl-C (which
    every process of the group receives: trainings snapshot) starts no
    further chain and waits for the running ones to stop."""
    import multiprocessing
    from multiprocessing.connection import wait
    from caffe_mlic.processes import own_multiprocessing_temp
    context = multiprocessing.get_context('spawn')
    own_multiprocessing_temp()
    import signal
    pending, running, failed = list(chains.items()), {}, []
    interrupted, stopped, ended = False, [], set()
    needs = needs or {}

    def ready_chain():
        """The first pending chain whose needs have ended well (None: none yet);
        those that need a failed chain are dropped as failed too."""
        lost = {key for key, _, _ in failed}
        for item in list(pending):
            blocked = needs.get(item[0], set()) & lost
            if blocked:
                pending.remove(item)
                failed.append((item[0], 1, ('%s: not run: it needs %s, which failed' % (
                    item[0], ', '.join(sorted(blocked))), 1)))
                lost.add(item[0])
        for item in pending:
            if needs.get(item[0], set()) <= ended:
                pending.remove(item)
                return item
        return None

    def stop(signum, frame):        # SIGTERM / SIGHUP to `run` alone: passed on, then as a Ctrl-C
        stopped.append(signum)
        for process, _, _ in list(running.values()):
            with contextlib.suppress(OSError):
                os.kill(process.pid, signum)
        raise KeyboardInterrupt
    # (SIGHUP under nohup stays ignored)
    with handling({signal.SIGTERM: stop, signal.SIGHUP: stop}):
        try:
            while pending or running:
                while pending and len(running) < plan.jobs and not interrupted:
                    item = ready_chain()
                    if item is None:
                        break
                    key, planned = item
                    receive, send = context.Pipe(duplex=False)
                    process = context.Process(target=_chain_main, args=(os.path.abspath(path), list(overrides), key,
                                                                       planned, send), daemon=False)
                    # (a Ctrl-C while it starts up printed a "Fatal Python error" traceback: held until it is set up)
                    start_without_sigint(process)
                    send.close()
                    running[process.sentinel] = (process, key, receive)
                if not running:
                    break
                try:
                    ready = wait(list(running))
                except KeyboardInterrupt:
                    interrupted = True
                    continue
                for sentinel in ready:
                    process, key, receive = running.pop(sentinel)
                    process.join()
                    try:
                        told = receive.recv() if receive.poll() else None
                    except (EOFError, OSError):     # it died before it could tell
                        told = None
                    receive.close()
                    if process.exitcode != 0:
                        failed.append((key, process.exitcode, told))
                    else:
                        ended.add(key)
        except KeyboardInterrupt:
            interrupted = True
            for process, _, _ in running.values():
                process.join()
    if stopped:
        error = RunError('stopped by %s: the seeds and heads that were running stopped with it (their '
                         'trainings snapshot); run the config again to go on' % signal.Signals(stopped[0]).name)
        error.exit_code = 128 + stopped[0]
        raise error
    if interrupted:
        raise KeyboardInterrupt
    if failed:
        key, code, told = failed[0]
        log = os.path.join(plan.folder, key, LOG)
        if told is None:
            signum = -code if code < 0 else None
            name = (signal.Signals(signum).name if signum in signal.Signals._value2member_map_
                    else 'signal %s' % signum)
            told = ('%s: its process %s' % (key, 'was killed by %s%s' % (
                name, ' (a crash: its log says what it was doing)' if signum in CRASH_SIGNALS else '')
                if signum else 'ended with exit status %d' % code), 1)
        message, exit_code = told
        error = RunError('%s (its log: %s)%s' % (message, log, '' if len(failed) == 1 else
                                                 '; %d other chains failed too' % (len(failed) - 1)))
        error.exit_code = exit_code
        raise error


CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT)


def _chain_main(path, overrides, key, planned, send):
    """A chain's process: one BLAS thread (as make demo-scasnet), a Caffe
    CHECK ending it in one line, and its error told to the parent as
    (message, exit status) before it exits with that status."""
    import ctypes
    import signal
    # SIGTERM when `run` dies, whatever kills it (a SIGKILL): no chain goes on alone
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))     # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(143)
    os.environ.update(OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1',
                      GLOG_minloglevel=os.environ.get('GLOG_minloglevel', '2'))
    from caffe_mlic.caffe.env import caffe_checks_end_cleanly
    from caffe_mlic.processes import Stopped, signals_remembered
    code = 1
    try:
        # SIGTERM and SIGHUP unwind a stage as a Ctrl-C does (its temp files removed: an evaluation's
        # half-written .tmp was left when SIGTERM ended the process at once, pass 60b S2)
        with signals_remembered():
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])    # (a Ctrl-C held since the start: now)
            with caffe_checks_end_cleanly(lambda: 'caffe-mlic run (%s)' % key):
                _run_chain(path, overrides, key, planned)
        code = 0
    except KeyboardInterrupt:
        code = 130
        send.send(('%s: interrupted; run the config again to go on' % key, code))
    except Stopped as e:
        code = 128 + e.signum
        send.send(('%s: stopped by %s; run the config again to go on' % (key, signal.Signals(e.signum).name), code))
    except BaseException as e:      # noqa: B902 (told to the parent, which reports it)
        code = getattr(e, 'exit_code', 1) if isinstance(e, (MlicError, SystemExit)) else 1
        code = code if isinstance(code, int) and code > 0 else 1
        text = str(e) if isinstance(e, MlicError) else '%s: %s' % (type(e).__name__, e)
        if getattr(e, 'signum', None):      # a training stopped by a signal, after its snapshot
            text = '%s: stopped by %s; its training snapshot; run the config again to go on' % (
                key, signal.Signals(e.signum).name)
        with contextlib.suppress(Exception):
            send.send((text, code))
        if not isinstance(e, MlicError):
            import traceback
            traceback.print_exc()       # (into the chain's log)
    finally:
        send.close()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


def _open_chain_log(path):
    """A chain's log.txt opened to append, if it is a regular file (or none
    is there yet); RunError naming what is there otherwise: opened without
    waiting, since a FIFO put there would block the open for ever."""
    import errno
    import stat
    from caffe_mlic.errors import in_the_way
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        # (a FIFO without a reader, or a socket: "No such device or address")
        if e.errno in (errno.ENXIO, errno.ELOOP, errno.EISDIR) and os.path.lexists(path):
            raise RunError(in_the_way(path, "the chain's log is kept")) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunError(in_the_way(path, "the chain's log is kept"))
    os.set_blocking(fd, True)
    return fd


def _run_chain(path, overrides, key, planned):
    """The planned [(name, why)] of one chain, its output in the chain's
    log.txt, a line per stage on the command's stdout too."""
    _, plan, stages = load(path, overrides)
    by_name = {s.name: s for s in stages}
    folder = os.path.join(plan.folder, key)
    os.makedirs(folder, exist_ok=True)
    log = _open_chain_log(os.path.join(folder, LOG))
    sys.stdout.flush(), sys.stderr.flush()
    out = os.dup(1)         # the command's stdout (a spawned process's is its parent's)
    if plan.jobs == 1 and os.isatty(2):
        # one chain at a time on a terminal: its progress bars (a training's)
        # draw there, its lines go to the log
        from caffe_mlic import progress
        progress.DEFAULT_STREAM = os.fdopen(os.dup(2), 'w', buffering=1)
    os.dup2(log, 1)
    os.dup2(log, 2)

    def say(line):
        print(line, flush=True)
        with contextlib.suppress(OSError):
            os.write(out, (line + '\n').encode('utf-8', 'replace'))
    st.run_planned(plan.folder, [(by_name[name], why) for name, why in planned], say)
