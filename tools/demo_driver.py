"""What the demo drivers (tools/demo.py, tools/demo_scasnet.py) share: running
`caffe-mlic` commands as a user types them, in a folder, with their output on
the terminal or in a seed's log, one after another or side by side. A command
that fails stops the demo with its exit status and its output's last lines."""
import os
import shutil
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
    made it (its RUN_MARK file), it is empty, or it is in the checkout's
    runs/; any other folder (DEMO_DIR=., a home folder, a user's data) is
    refused in one line, untouched."""
    if os.path.lexists(run):
        if not os.path.isdir(run) or os.path.islink(run):
            sys.exit('demo: DEMO_DIR %s is not a folder; name a new folder or one an earlier demo made' % run)
        # the checkout's own runs/<name> (ignored by git) held demos before the mark existed
        in_runs = os.path.dirname(os.path.realpath(run)) == os.path.join(os.path.realpath(REPO), 'runs')
        if os.listdir(run) and not os.path.isfile(os.path.join(run, RUN_MARK)) and not in_runs:
            sys.exit('demo: DEMO_DIR %s holds files no demo wrote (no %s in it): not removing it; name a new '
                     'folder, or one an earlier demo made' % (run, RUN_MARK))
        shutil.rmtree(run)
    os.makedirs(run)
    with open(os.path.join(run, RUN_MARK), 'w') as f:
        f.write('made by a caffe-mlic demo: the demo removes this folder when it runs here again\n')


def step(text):
    print('\n== ' + text, flush=True)


class DemoFailed(Exception):
    def __init__(self, command, status, output=''):
        super().__init__('%s exited with %d' % (' '.join(command[:3]), status))
        self.command, self.status, self.output = command, status, output


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
                status = subprocess.run(command, cwd=cwd, env=run_env).returncode
            else:
                with open(log, 'a') as f:
                    status = subprocess.run(command, cwd=cwd, env=run_env, stdout=f,
                                            stderr=subprocess.STDOUT).returncode
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
            proc = subprocess.run(command, cwd=cwd, env=run_env, stdout=subprocess.PIPE, stderr=sink, text=True)
            lines = proc.stdout.splitlines()
            shown = lines[-30:] if proc.returncode else [] if quiet else lines[-tail:]
            if shown and sink is not None:
                sink.write('\n'.join(shown) + '\n')
            elif shown:
                print('\n'.join(shown), flush=True)
        finally:
            if sink is not None:
                sink.close()
        if proc.returncode:
            raise DemoFailed(command, proc.returncode, proc.stdout)

    def start(self, *args, log=None, env=None):
        """`caffe-mlic ARGS` in the background, its output in ``log`` (or on the terminal)."""
        command = [CLI] + [str(a) for a in args]
        out = open(log, 'w') if log is not None else None
        proc = subprocess.Popen(command, env=dict(os.environ, **(env or {})), stdout=out,
                                stderr=subprocess.STDOUT if out else None)
        proc.command, proc.log_file = command, out
        return proc

    @staticmethod
    def wait(proc, log=None):
        status = proc.wait()
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
    """Run a demo from the checkout's root; a failed command ends it with its status."""
    os.chdir(REPO)
    try:
        function()
    except DemoFailed as e:
        print('demo: %s' % e, file=sys.stderr)
        sys.exit(e.status)
