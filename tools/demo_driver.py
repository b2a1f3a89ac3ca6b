"""What the demo drivers (tools/demo.py, tools/demo_scasnet.py) share: running
`caffe-mlic` commands as a user types them, in a folder, with their output on
the terminal or in a seed's log, one after another or side by side. A command
that fails stops the demo with its exit status and its output's last lines."""
import os
import subprocess
import sys
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(os.path.dirname(sys.executable), 'caffe-mlic')


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
                raise DemoFailed(command, status)
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
