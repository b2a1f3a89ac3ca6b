"""Starting our helper processes (the data layers' workers, `proposals
--jobs`): one place for what a spawned child needs at its start; folders
named after the process that owns them."""
import contextlib
import os
import signal
import time


def start_without_sigint(proc):
    """Start ``proc`` (a multiprocessing Process) with SIGINT blocked across
    its fork and exec: the child keeps it blocked until it ignores SIGINT
    itself (a Ctrl-C while it imports would print a KeyboardInterrupt
    traceback), and ours stays pending, delivered when unblocked here.
    Multiprocessing's resource tracker is started first: starting it
    unblocks SIGINT."""
    from multiprocessing import resource_tracker
    resource_tracker.ensure_running()
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    try:
        proc.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def start_time(pid):
    """Process ``pid``'s start time (clock ticks after boot, /proc/PID/stat's
    22nd field: with the pid, it names one process even where pids are
    reused), or None if there is no such process (a zombie counts as gone)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in 'ZX':
        return None
    return int(fields[19])


def owned_folder(parent, prefix, suffix=''):
    """A new folder in ``parent`` named after this process (``prefix``, our
    pid and start time, a random part, ``suffix``) and locked (flock, held
    until the returned fd is closed or we exit), once the folders of that
    naming whose process is gone are swept (sweep_owned_folders): (path, fd).
    For temp and staging folders that a SIGKILL leaves behind."""
    import fcntl
    import tempfile
    sweep_owned_folders(parent, prefix, suffix)
    folder = tempfile.mkdtemp(prefix=owned_name_prefix(prefix), suffix=suffix, dir=parent)
    lock = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(lock, fcntl.LOCK_SH)
    return folder, lock


MULTIPROCESSING_TEMP_PREFIX = 'pymp-cm-'
# The longest socket path the kernel takes (sockaddr_un's sun_path, its NUL
# included), and what multiprocessing adds to the folder for its socket.
SOCKET_PATH_MAX, SOCKET_NAME_LENGTH = 108, len('/listener-xxxxxxxx')


def own_multiprocessing_temp():
    """Point multiprocessing's temp folder at one of ours (owned_folder),
    before worker processes are spawned. Under spawn, multiprocessing hands
    the workers their pipes and descriptors through a socket in a pymp-*
    folder, which only a normal exit removes: each SIGKILL left one in the
    temp folder. Ours is swept by the next process that spawns workers once
    its process is gone. Once per process; removed at exit. Where our longer
    name would make the socket's path too long for the kernel (a deep
    TMPDIR), multiprocessing's own folder is left to it."""
    import shutil
    import tempfile
    from multiprocessing import process, util
    config = process.current_process()._config
    if config.get('tempdir') is not None:       # (made already, ours or multiprocessing's own)
        return
    parent = tempfile.gettempdir()
    longest = os.path.join(parent, owned_name_prefix(MULTIPROCESSING_TEMP_PREFIX)) + 'x' * 8    # (mkdtemp's part)
    if len(os.fsencode(longest)) + SOCKET_NAME_LENGTH >= SOCKET_PATH_MAX:
        return
    folder, _lock = owned_folder(parent, MULTIPROCESSING_TEMP_PREFIX)    # (held until exit)
    config['tempdir'] = folder
    util.Finalize(None, shutil.rmtree, args=(folder, True), exitpriority=-100)


def _left_by_the_dead(directory, prefix, suffix):
    """The paths in ``directory`` named ``prefix`` + pid and start time + a
    random part + ``suffix`` (owned_name_prefix, then mkstemp's or
    mkdtemp's part) whose process is gone; a name without a start time (0)
    or of a process we cannot tell about is left out."""
    import re
    # prefix None: any hidden name's (.NAME.<pid>-<start>-XXXX + suffix)
    head = re.escape(prefix) if prefix is not None else r'\..+\.'
    name_pattern = re.compile(head + r'(\d+)-(\d+)-[A-Za-z0-9_]+' + re.escape(suffix))
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = name.startswith(prefix or '.') and name_pattern.fullmatch(name)
        if match and int(match.group(2)) != 0 and start_time(int(match.group(1))) != int(match.group(2)):
            yield os.path.join(directory, name)


def sweep_owned_folders(parent, prefix, suffix=''):
    """Remove from ``parent`` the folders owned_folder made with ``prefix`` and
    ``suffix`` whose process is gone (no process of that pid and start
    time), owned by our user and locked by no process. Folders of the older
    naming without a pid, and another sweep at the same time, or a folder
    that goes away meanwhile, are no error: left alone or skipped."""
    import fcntl
    import shutil
    import stat
    uid = os.getuid()
    for path in _left_by_the_dead(parent, prefix, suffix):
        try:
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            # a live process holds its folder locked (a safeguard, e.g. a pid
            # of another pid namespace sharing this folder)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)


def owned_name_prefix(prefix):
    """``prefix`` followed by this process's pid and start time, for a temp
    name that sweep_owned_files can tell as ours, and as left by a dead one."""
    pid = os.getpid()
    return '%s%d-%d-' % (prefix, pid, start_time(pid) or 0)


def ofd_lock(fd, exclusive=False):
    """Take an open-file-description lock on all of ``fd``'s file, without
    waiting: True, or False when another description holds one that
    conflicts. Unlike flock (which HDF5 takes on the files it writes) it
    does not block HDF5; unlike a POSIX lock it stays when another
    descriptor of the file is closed (pycaffe and HDF5 write by path)."""
    import fcntl
    import struct
    kind = fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK
    request = struct.pack('hhqqi4x', kind, os.SEEK_SET, 0, 0, 0)   # struct flock, l_pid 0
    try:
        fcntl.fcntl(fd, getattr(fcntl, 'F_OFD_SETLK', 37), request)
    except OSError:
        return False
    return True


def sweep_owned_files(directory, prefix, suffix=''):
    """Remove from ``directory`` the regular files named ``prefix`` + pid and
    start time + a random part + ``suffix`` (owned_name_prefix, mkstemp's
    part) whose process is gone and that our user owns: the temp files a
    SIGKILL left between writing and renaming. Anything else is left."""
    import stat
    uid = os.getuid()
    for path in _left_by_the_dead(directory, prefix, suffix):
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_uid == uid:
                # a writer holds its temp locked (fileio.atomic_files): one of
                # another pid namespace, whose pid means nothing here, keeps it
                if not ofd_lock(fd, exclusive=True):
                    continue
                os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived inside stopped_cleanly: unwinds like
    KeyboardInterrupt, so that what the block was making is removed."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def stop_exception(signum):
    """What a stop signal unwinds a command with: KeyboardInterrupt for
    SIGINT (as Python's own handler), Stopped for SIGTERM and SIGHUP."""
    return KeyboardInterrupt() if signum == signal.SIGINT else Stopped(signum)


@contextlib.contextmanager
def handling(handlers):
    """The one way our commands take signals: ``handlers`` {signum:
    handler} inside the block, the previous handlers after it. A signal
    that is ignored stays ignored (SIGHUP under nohup: the command goes on
    when the terminal goes), as does one whose handler was not set from
    Python (it could not be put back); outside the main thread, signals
    stay as they are."""
    import threading
    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {s: signal.signal(s, h) for s, h in handlers.items()
               if signal.getsignal(s) not in (signal.SIG_IGN, None)}
    try:
        yield
    finally:
        for s, previous in old.items():
            signal.signal(s, previous)


@contextlib.contextmanager
def signals_held():
    """The stop signals recorded, not acted on, inside the block: yields
    the list they are appended to, in order (for a caller that acts on
    them later: at the block's end, or once it is set up)."""
    held = []
    with handling({s: lambda signum, frame: held.append(signum) for s in STOP_SIGNALS}):
        yield held


_RECEIVED = []      # the stop signals of this command: [(signum, time.monotonic() when raised, or None)]
AGAIN_AFTER = 2.0   # seconds after which a further stop signal raises again (the first was swallowed)
_in_handler = False
_ENDING = False     # the command's outcome is decided (ending): further stop signals are dropped
_DROPPED = 0        # ... how many were; the third ends the process at once (an exit that hangs)


def _received(signum, frame):
    """The stop-signal handler of signals_remembered and stopped_cleanly:
    remembered; raised (KeyboardInterrupt for SIGINT, Stopped for the
    others) where Python can raise it (not in a gc or ctypes callback,
    which prints and drops it: _in_swallowing_callback) unless one was raised less than AGAIN_AFTER s ago: a
    second Ctrl-C or SIGTERM while the first unwinds would cut its clean-up
    short (a temp file left); a later one means the first was swallowed."""
    global _in_handler, _DROPPED
    if _ENDING:
        # (what the command ends with is being said, or the interpreter exits: a KeyboardInterrupt there
        # was a traceback from the report line, a context manager's exit or an atexit hook)
        _DROPPED += 1
        if _DROPPED >= 3:
            os._exit(128 + signum)
        return
    if _in_handler:
        # A second signal at once: Python runs its handler inside one of this one's calls, where what it
        # raised would be a SystemError ("returned a result with an exception set"): recorded only.
        _RECEIVED.append((signum, None))
        return
    _in_handler = True
    try:
        now = time.monotonic()
        raised = [at for _, at in _RECEIVED if at is not None]
        if _in_swallowing_callback(frame) or (raised and now - raised[-1] < AGAIN_AFTER):
            _RECEIVED.append((signum, None))
            return
        _RECEIVED.append((signum, now))
        raise stop_exception(signum)
    finally:
        _in_handler = False


@contextlib.contextmanager
def stopped_cleanly():
    """SIGTERM and SIGHUP raise Stopped inside the block (a second one is
    only recorded while the first unwinds, and one a library swallowed is
    raised again at the next output: _received); the previous handlers
    after it."""
    with handling({signal.SIGTERM: _received, signal.SIGHUP: _received}):
        yield


def ending():
    """The command's outcome is decided: from here on (its one line, the
    interpreter's exit) a stop signal to signals_remembered's handler is
    dropped."""
    global _ENDING
    _ENDING = True


def stop_behind(error):
    """The stop signal's exception (KeyboardInterrupt, Stopped) behind
    ``error``, or None: two signals at once can make Python run the
    second's handler with the first's exception set, whose first call then
    fails as a SystemError ("returned a result with an exception set")
    caused by it, and a block that turns what it catches into an error of
    ours (a layer module that "cannot be imported") says that instead."""
    seen = 0
    while error is not None and seen < 16:
        if isinstance(error, SystemError):
            for behind in (error.__cause__, error.__context__):
                if isinstance(behind, (KeyboardInterrupt, Stopped)):
                    return behind
        error, seen = error.__cause__ or error.__context__, seen + 1
    return None


@contextlib.contextmanager
def signals_remembered(kept_after_ending=False):
    """Inside the block (a command's run) SIGINT raises KeyboardInterrupt,
    as Python's own handler does, and SIGTERM and SIGHUP raise Stopped
    (instead of ending the process at once, which left the temp files of
    the outputs being written and half a result set), a second one being
    only recorded while the first unwinds; each is remembered: where a
    library's catch-all swallowed it (pycaffe's bare excepts around its
    imports, a gc callback), raise_swallowed_signal raises it again at the
    next point where an output is committed, so the command ends stopped
    instead of going on. A signal whose handler is not the default
    (ignored, as under nohup, or a command's own) is left as it is.
    kept_after_ending: once ending() was called, the handler stays after
    the block (the process exits next: a signal while it does is dropped)."""
    global _ENDING, _DROPPED
    import threading
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                signal.SIGHUP: signal.SIG_DFL}
    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {s: signal.signal(s, _received) for s, default in defaults.items() if signal.getsignal(s) is default}
    try:
        yield
    finally:
        if not (kept_after_ending and _ENDING):
            for s, previous in old.items():
                signal.signal(s, previous)
            _RECEIVED.clear()
            _ENDING, _DROPPED = False, 0


# Python functions that C calls back where what they raise is printed and
# dropped ("Exception ignored on calling ctypes callback function"): llvmlite's
# object-cache hooks, which run while numba compiles (a first run's ROI pooling).
SWALLOWING_CALLBACKS = {('llvmlite', '_raw_object_cache_notify'), ('llvmlite', '_raw_object_cache_getbuffer')}


def _in_swallowing_callback(frame):
    """Whether ``frame`` runs inside a callback that drops what is raised in
    it: one of gc.callbacks (the data layers' reaping of orphaned workers)
    or a ctypes callback of SWALLOWING_CALLBACKS."""
    import gc
    codes = {getattr(callback, '__code__', None) for callback in gc.callbacks}
    for _ in range(64):
        if frame is None:
            return False
        code = frame.f_code
        if code in codes or any(package in code.co_filename and code.co_name == name
                                for package, name in SWALLOWING_CALLBACKS):
            return True
        frame = frame.f_back
    return False


def raise_swallowed_signal():
    """KeyboardInterrupt or Stopped when a stop signal came
    (signals_remembered) and the command is still going: a library
    swallowed what its handler raised."""
    if _RECEIVED:
        raise stop_exception(_RECEIVED[0][0])


def received_stop():
    """The exception of the first stop signal this command received
    (signals_remembered), or None. A command that says what a signal
    stopped itself takes them (take_signals) or has its own handler."""
    return stop_exception(_RECEIVED[0][0]) if _RECEIVED else None


def take_signals():
    """The stop signals remembered so far, forgotten here: for a command
    that acts on signals itself from now on (train)."""
    taken = [signum for signum, _ in _RECEIVED]
    _RECEIVED.clear()
    return taken


@contextlib.contextmanager
def signals_deferred():
    """SIGINT, SIGTERM and SIGHUP held back inside the block (a few renames
    that must land together) and raised again after it, for the handlers
    that were in place. (Recorded by a handler, not blocked with
    pthread_sigmask: that holds only this thread, and another of ours would
    take the signal.) Outside the main thread: nothing is held back."""
    held = []
    try:
        with signals_held() as held:
            yield
    finally:
        if held:
            signal.raise_signal(held[0])


@contextlib.contextmanager
def signals_raised_after():
    """The stop signals held inside the block (the imports, where a
    library's own catch-all could swallow what a handler raised, and the
    command would start as if nothing had been sent) and the first one
    raised when it ends, as stop_exception: as an exception, not again as
    a signal, because SIGTERM's default would end the process without a
    word."""
    with signals_held() as held:
        try:
            yield
        except BaseException:
            if held:        # (a usage error as the signal came: said as the signal, as any error after one)
                raise stop_exception(held[0])
            raise
    if held:
        raise stop_exception(held[0])


def run_stoppable(args, write):
    """write(args), SIGTERM and SIGHUP unwinding it as Ctrl-C does (the
    staging folder goes); the signal's exit status when one came."""
    import sys
    try:
        with stopped_cleanly():
            return write(args)
    except Stopped as e:
        take_signals()      # (said here; not again by the command line)
        sys.stderr.write('%s: stopped by %s (no half-written file or staging folder is left)\n' % (
            getattr(getattr(args, 'parser', None), 'prog', 'caffe-mlic report'), signal.Signals(e.signum).name))
        return 128 + e.signum


def lock_file(path, busy):
    """Hold an exclusive lock on the file ``path`` (made, holding our pid)
    until unlock_file; RunError ``busy % 'pid N'`` when another process
    holds it. unlock_file removes the file, so a lock taken on a file that
    was removed meanwhile (by the process that held it) is taken again on
    the new one."""
    import fcntl
    import stat
    from caffe_mlic.errors import RunError
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        # (never through a link: the pid would be written over its target; a FIFO opens, then cannot seek)
        from caffe_mlic.errors import in_the_way
        raise RunError(in_the_way(path, 'the lock file is kept', follow_links=False))
    while True:
        # (never through a link: the pid would be written over its target)
        f = open(path, 'a+', opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW, 0o644))
        # A few tries: another process's sweep_lock_files holds an unheld lock file for a moment.
        for attempt in range(20):
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                time.sleep(0.01)
        else:
            f.seek(0)
            holder = f.read().strip()
            f.close()
            raise RunError(busy % ('pid ' + holder if holder else 'a process'))
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(current, os.fstat(f.fileno())):
            break
        f.close()       # the holder removed it as it ended: lock the new one
    f.seek(0)
    f.truncate()
    f.write('%d\n' % os.getpid())
    f.flush()
    return f


def sweep_lock_files(folder):
    """Remove the *.lock files in ``folder`` that no process holds (a run
    killed with SIGKILL cannot remove its own). Taken before removed, as
    unlock_file does: a process opening one meanwhile finds it gone
    (lock_file's check) and makes it again."""
    import fcntl
    try:
        names = [n for n in os.listdir(folder) if n.endswith('.lock')]
    except OSError:
        return
    import stat
    for name in names:
        path = os.path.join(folder, name)
        try:
            # (not blocking: a FIFO of that name hung the run that swept, in its setup)
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):      # (none of ours: left as it is)
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)
        except OSError:
            pass
        finally:
            os.close(fd)


def open_file_path(f, path):
    """Where the open file ``f`` (a file object or descriptor), opened as
    ``path``, is now: ``path`` while that name is still the file, else the
    kernel's path of it (a folder renamed while it was open); it ends in
    " (deleted)" when it is gone."""
    fd = f if isinstance(f, int) else f.fileno()
    with contextlib.suppress(OSError):
        if os.path.samestat(os.stat(path), os.fstat(fd)):
            return path
    try:
        return os.readlink('/proc/self/fd/%d' % fd)
    except OSError:
        return path


GONE = object()


def moved_path(f, path):
    """Where the open file or folder ``f`` (a file object or descriptor),
    opened as ``path``, was moved while it was open: the kernel's absolute
    path of it, checked to be the same file there. None while ``path`` is
    still it, or where the kernel's path leads elsewhere (a detached mount);
    GONE where it was deleted."""
    fd = f if isinstance(f, int) else f.fileno()
    where = open_file_path(fd, path)
    if where == path:
        return None
    if where.endswith(' (deleted)') or not os.path.isabs(where):
        return GONE
    try:
        return where if os.path.samestat(os.stat(where), os.fstat(fd)) else None
    except OSError:
        return None


def unlock_file(lock):
    """Give the lock back and remove its file (while still holding it, so no
    other process holds a lock on the removed file alone), where it is now
    (a run folder renamed while it was held: the file went with it)."""
    with contextlib.suppress(OSError):
        os.unlink(open_file_path(lock, lock.name))
    lock.close()


def die_with_parent(parent_pid):
    """This process gets SIGKILL from the kernel when its parent (the thread
    that started it) ends, however it ends: a child blocked in a read never
    sees its pipe close, and one that outlives a SIGKILLed run keeps what it
    inherited (the run folder's lock). Linux; elsewhere a no-op past the
    parent check."""
    import ctypes
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:      # (it ended before the call)
        os._exit(0)


def in_fork(work, said, stderr_into_pipe, after_recorded_stop=False):
    """``work()`` in a forked child, which never returns into the caller's
    code (a crash there, Caffe's abort or a C++ exception under libunwind,
    ends only the child): (its wait status, the bytes it wrote back). On an
    exception the child writes ``said(exception)`` (bytes) back and exits 1.
    stderr_into_pipe: what it prints on stderr comes back too (Caffe's
    CHECK lines); else it goes to /dev/null (C++'s "terminate called ...").
    after_recorded_stop: a stop its caller recorded before (stop_recorded)
    counts for STOP_GRACE too (a chart; never Caffe's writes)."""
    import sys
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    read_end, write_end = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            die_with_parent(parent)     # (a SIGKILLed caller left it holding the run folder's lock)
            os.close(read_end)
            import faulthandler
            faulthandler.disable()      # (a crash is said by the parent, not dumped)
            os.dup2(write_end if stderr_into_pipe else os.open(os.devnull, os.O_WRONLY), 2)
            work()
            code = 0
        except BaseException as e:      # noqa: B902 (told to the parent)
            with contextlib.suppress(Exception):
                os.write(write_end, said(e))
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        data = _child_output(read_end, pid, after_recorded_stop)
    except BaseException:       # (a stop signal raised here: the child goes first, its temp file with it)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    _, status = os.waitpid(pid, 0)
    return status, data


_STOP_RECORDED = []     # when a caller that acts on stop signals later (train) recorded its first


def forget_recorded_stop():
    """A new run of a caller that records stop signals (one process may train twice: tests, `run`)."""
    _STOP_RECORDED.clear()


def stop_recorded():
    """Told by a caller that records a stop signal to act on it later: a
    forked child started after it (the curves drawn as a stopped run ends)
    gets STOP_GRACE from then, not from a signal of its own."""
    import time
    if not _STOP_RECORDED:
        _STOP_RECORDED.append(time.monotonic())


STOP_GRACE = 10.0   # seconds a forked child may go on after a stop signal the caller only records (train: a draw)


def _child_output(read_end, pid, after_recorded_stop):
    """What the child writes back, read until it closes its end. A stop
    signal reaches the caller's handler as before (it may raise, or record
    it for later); a child still running STOP_GRACE s after it is killed:
    one blocked on a FIFO nobody reads would hold a recorded stop for ever."""
    import select
    import time
    stopped = list(_STOP_RECORDED) if after_recorded_stop else []

    def chained(previous):
        def on_stop(signum, frame):
            stopped.append(time.monotonic())
            if callable(previous):
                previous(signum, frame)
            elif previous == signal.SIG_DFL:    # (the default: the process ends, the child first)
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
        return on_stop
    chunks = []
    with os.fdopen(read_end, 'rb', buffering=0) as r, \
            handling({s: chained(signal.getsignal(s)) for s in STOP_SIGNALS}):
        while True:
            if stopped and time.monotonic() - stopped[0] > STOP_GRACE:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if select.select([r], [], [], 0.2)[0]:
                chunk = r.read(65536)
                if not chunk:
                    return b''.join(chunks)
                chunks.append(chunk)
