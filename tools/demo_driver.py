"""What the demo drivers (tools/demo.py, tools/demo_scasnet.py) share: running
`caffe-mlic` commands as a user types them, in a folder, with their output on
the terminal or in a seed's log, one after another or side by side. A command
that fails stops the demo with its exit status and its output's last lines.

A SIGTERM, SIGHUP or SIGINT to the demo stops its running commands too: the
signal is passed on to each (a Ctrl-C, which the terminal sends to the whole
foreground group, is not sent twice), no new command starts, and the demo
exits 128 + N once they have ended; a command still running STOP_WAIT
seconds later, or at a second signal, is killed."""
import os
import shutil
import signal
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(os.path.dirname(sys.executable), 'caffe-mlic')


def env_ints(name, default, low=0, high=10 ** 6, count=None):
    """The whole numbers in environment variable ``name`` (``default``, a
    string, when unset), each in low..high, ``count`` of them when given
    (None: at least one); a one-line exit naming the variable otherwise,
    before the demo removes or writes anything."""
    text = os.environ.get(name, default)
    words = text.split()
    values = [int(w) for w in words] if all(w.lstrip('+-').isdigit() and w.isascii() for w in words) else None
    if not values or any(not low <= v <= high for v in values) or (count is not None and len(values) != count):
        sys.exit('demo: %s must be %s in %d..%d, got %r' % (
            name, 'a whole number' if count == 1 else 'whole numbers', low, high, text))
    return values


def env_number(name, default, low, high):
    """The number in environment variable ``name`` (``default`` when unset),
    as given (its text), if it is a finite number in low..high."""
    text = os.environ.get(name, default).strip()
    try:
        ok = low <= float(text) <= high
    except ValueError:
        ok = False
    if not ok:
        sys.exit('demo: %s must be a number in %g..%g, got %r' % (name, low, high, text))
    return text


RUN_MARK = '.caffe-mlic-demo'   # in every folder a demo made: the one it may remove again


def fresh_run_folder(run):
    """Empty folder ``run`` for a new demo run: removed first only if a demo
    made it (its RUN_MARK file) or it is empty; any other folder (DEMO_DIR=.,
    a home folder, a user's data, a `caffe-mlic train` or `run` of the
    user's in the checkout's runs/, such as the demo config's own folder run
    by hand) is refused in one line, untouched."""
    if os.path.lexists(run):
        if not os.path.isdir(run) or os.path.islink(run):
            sys.exit('demo: DEMO_DIR %s is not a folder; name a new folder or one an earlier demo made' % run)
        if os.listdir(run) and not os.path.isfile(os.path.join(run, RUN_MARK)):
            sys.exit('demo: DEMO_DIR %s holds files no demo wrote (no %s in it; a `caffe-mlic run` or `train` of '
                     'yours?): not removing it; move it away, or give DEMO_DIR a new folder or one an earlier '
                     'demo made' % (run, RUN_MARK))
        shutil.rmtree(run)
    os.makedirs(run)
    with open(os.path.join(run, RUN_MARK), 'w') as f:
        f.write('made by a caffe-mlic demo: the demo removes this folder when it runs here again\n')


_HELD = []      # the open lock file of the DEMO_DIR this demo works in


def hold_demo_folder(run):
    """One demo at a time in a DEMO_DIR: the lock (processes.lock_file) on
    ``.NAME.demo-lock`` beside it, held until this process exits (the
    descriptor is not inherited: the commands a stopped demo leaves do not
    hold it). A second demo there would remove the first one's folder under
    it: it stops in one line."""
    from caffe_mlic.errors import RunError
    from caffe_mlic.processes import lock_file
    parent, name = os.path.split(run)
    os.makedirs(parent, exist_ok=True)
    try:
        _HELD.append(lock_file(os.path.join(parent, '.%s.demo-lock' % name),
                               'demo: another demo is running in DEMO_DIR %s (%%s); wait for it to end, or give '
                               'DEMO_DIR another folder' % run))
    except RunError as e:
        sys.exit(str(e))


def resumed_demo(run, complete, same_settings=lambda: True):
    """True when DEMO_RESUME=1 and ``run`` is a folder a demo made whose data
    step ended (``complete``, the file that step writes last, exists) with the
    settings asked for now (``same_settings()``): the demo then keeps what it
    made, and what it runs next goes on from the work that is done. Else the
    demo starts afresh (fresh_run_folder), saying why when resuming was asked.
    Either way the demo holds ``run`` from here on (hold_demo_folder)."""
    hold_demo_folder(run)
    if os.environ.get('DEMO_RESUME', '0') != '1':
        return False
    if not (os.path.isfile(os.path.join(run, RUN_MARK)) and os.path.isfile(complete)):
        step('DEMO_RESUME=1: %s holds no complete data of an earlier demo run: starting afresh' % run)
        return False
    if not same_settings():
        step('DEMO_RESUME=1: the data in %s were made with other settings: starting afresh' % run)
        return False
    step('DEMO_RESUME=1: the data of %s kept; the work done is not done again' % run)
    return True


def step(text):
    print('\n== ' + text, flush=True)


class DemoFailed(Exception):
    def __init__(self, command, status, output=''):
        super().__init__('%s exited with %d' % (' '.join(command[:3]), status))
        self.command, self.status, self.output = command, status, output


class DemoStopped(DemoFailed):
    """A signal stopped the demo: no command starts any more."""

    def __init__(self, signum):
        super().__init__(['(stopped by %s)' % signal.Signals(signum).name], 128 + signum)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
STOP_WAIT = 60      # seconds the demo's running commands get to end after a signal (a snapshot) before a kill


class _Children:
    """The demo's running commands (Popen objects) and the signal that
    stopped the demo, for the signal handler (main thread) and the threads
    that start commands."""

    def __init__(self):
        self.running = set()
        self.signalled = set()          # the ones the stop signal was passed on to
        self.stop = None                # the first stop signal, once one came
        self.lock = threading.RLock()   # (re-entered by the handler, which runs in the main thread)
        self.timer = None

    def popen(self, command, **kwargs):
        """Popen(command) as a command of the demo's, or DemoStopped once a
        signal stopped the demo."""
        with self.lock:
            if self.stop is not None:
                raise DemoStopped(self.stop)
        proc = subprocess.Popen(command, **kwargs)
        with self.lock:
            self.running.add(proc)
            if self.stop is not None:       # it came while the command started
                self._pass_on(proc, self.stop)
        return proc

    def done(self, proc):
        with self.lock:
            self.running.discard(proc)
            self.signalled.discard(proc)

    def _pass_on(self, proc, signum):
        with self.lock:
            if proc in self.signalled:
                return
            self.signalled.add(proc)
        if signum == signal.SIGINT and _foreground():
            return          # a Ctrl-C: the terminal sent it to the command as well
        try:
            proc.send_signal(signum)
        except OSError:
            pass

    def kill_all(self):
        with self.lock:
            procs = list(self.running)
        for proc in procs:
            try:
                proc.kill()
            except OSError:
                pass

    def handle(self, signum, frame):
        """A stop signal: passed on to the running commands, which are killed
        at a second one or STOP_WAIT seconds later."""
        with self.lock:
            first = self.stop is None
            if first:
                self.stop = signum
            procs = list(self.running)
        if not first:
            self.kill_all()
            return
        for proc in procs:
            self._pass_on(proc, signum)
        self.timer = threading.Timer(STOP_WAIT, self.kill_all)
        self.timer.daemon = True
        self.timer.start()

    def finish(self):
        """After a stop signal: wait for the commands (killed at STOP_WAIT)."""
        with self.lock:
            procs = list(self.running)
        for proc in procs:
            try:
                proc.wait()
            except OSError:
                pass


_children = _Children()


def _foreground():
    """Whether the demo is in its terminal's foreground process group (a
    Ctrl-C reached its commands too)."""
    try:
        fd = os.open('/dev/tty', os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _run(command, **kwargs):
    """Run ``command`` as a command of the demo's: (returncode, its
    standard output when ``stdout`` is PIPE)."""
    proc = _children.popen(command, **kwargs)
    try:
        out, _ = proc.communicate()
    finally:
        if proc.returncode is None:      # (an error of ours while waiting)
            proc.kill()
            proc.wait()
        _children.done(proc)
    return proc.returncode, out


class Driver:
    @staticmethod
    def _env(log, extra=None):
        env = dict(os.environ, **(extra or {}))
        if log is not None:                  # no progress bars in a log file
            env['CAFFE_MLIC_PROGRESS'] = 'never'
        return env

    def say(self, text, log=None):
        """A line on the terminal, or in ``log``."""
        if log is None:
            print(text, flush=True)
        else:
            with open(log, 'a') as f:
                f.write(text + '\n')

    def cli(self, *args, cwd=None, log=None, tail=None, quiet=False, env=None):
        """`caffe-mlic ARGS` in ``cwd``; its output on the terminal or appended
        to ``log``; with ``tail`` only its last lines of standard output, with
        ``quiet`` none of it."""
        command = [CLI] + [str(a) for a in args]
        run_env = self._env(log, env)
        if tail is None and not quiet:
            if log is None:
                status, _ = _run(command, cwd=cwd, env=run_env)
            else:
                with open(log, 'a') as f:
                    status, _ = _run(command, cwd=cwd, env=run_env, stdout=f, stderr=subprocess.STDOUT)
            if status:
                output = ''
                if log is not None:    # the reason is in the log: show its end, and where it is
                    with open(log, errors='replace') as f:
                        output = ''.join(f.readlines()[-30:]) + '(the whole output: %s)\n' % log
                raise DemoFailed(command, status, output)
            return
        sink = open(log, 'a') if log is not None else None
        try:
            # standard error as a shell pipe leaves it: on the terminal, or in the log
            returncode, stdout = _run(command, cwd=cwd, env=run_env, stdout=subprocess.PIPE, stderr=sink,
                                      text=True)
            lines = stdout.splitlines()
            shown = lines[-30:] if returncode else [] if quiet else lines[-tail:]
            if shown and sink is not None:
                sink.write('\n'.join(shown) + '\n')
            elif shown:
                print('\n'.join(shown), flush=True)
        finally:
            if sink is not None:
                sink.close()
        if returncode:
            raise DemoFailed(command, returncode, stdout)

    def start(self, *args, log=None, env=None):
        """`caffe-mlic ARGS` in the background, its output in ``log`` (or on the terminal)."""
        command = [CLI] + [str(a) for a in args]
        out = open(log, 'w') if log is not None else None
        try:
            proc = _children.popen(command, env=dict(os.environ, **(env or {})), stdout=out,
                                   stderr=subprocess.STDOUT if out else None)
        except BaseException:
            if out is not None:
                out.close()
            raise
        proc.command, proc.log_file = command, out
        return proc

    @staticmethod
    def wait(proc, log=None):
        status = proc.wait()
        _children.done(proc)
        if proc.log_file:
            proc.log_file.close()
        if status:
            output = open(log).read() if log else ''
            print(output, end='')
            raise DemoFailed(proc.command, status, output)

    @staticmethod
    def in_thread(function, *args):
        """Run ``function(*args)`` beside this one; join() it."""
        def target():
            try:
                function(*args)
            except BaseException as e:      # noqa: B902 -- kept for join()
                thread.error = e
        thread = threading.Thread(target=target, daemon=True)
        thread.error = None
        thread.start()
        return thread

    @staticmethod
    def join(thread, log):
        thread.join()
        if thread.error is not None:
            with open(log) as f:
                print(''.join(f.readlines()[-30:]), end='')
            raise thread.error


def main(function):
    """Run a demo from the checkout's root; a failed command ends it with
    its status, a stop signal N (STOP_SIGNALS) with 128 + N once its
    running commands have ended."""
    import time
    if os.environ.get('DEMO_DIR'):      # (relative to where the demo was started, not to the checkout)
        os.environ['DEMO_DIR'] = os.path.abspath(os.environ['DEMO_DIR'])
    os.chdir(REPO)
    for signum in STOP_SIGNALS:
        signal.signal(signum, _children.handle)
    began = time.monotonic()
    try:
        function()
        if _children.stop is None:
            step('the demo took %.1f minutes (after set-up)' % ((time.monotonic() - began) / 60))
    except BaseException as e:
        if _children.stop is None:
            if not isinstance(e, DemoFailed):
                raise
            print('demo: %s' % e, file=sys.stderr)
            sys.exit(e.status)
    if _children.stop is not None:
        _children.finish()
        print('demo: stopped by %s' % signal.Signals(_children.stop).name, file=sys.stderr)
        sys.exit(128 + _children.stop)
