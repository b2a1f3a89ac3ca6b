"""Running the demo drivers (tools/demo.py, tools/demo_scasnet.py) from tests."""
import os
import subprocess
import sys

from tests import REPO


def run_demo(script, folder, timeout, **env):
    """Run tools/<script> in its miniature form (DEMO_MINI=1) into ``folder``;
    returns its output, failing the test with the output's tail if it fails."""
    return start_demo(script, folder, **env).output(timeout)


class start_demo:
    """tools/<script> in its miniature form, started now (so that two demos
    of one core each can run side by side); output(timeout) waits for it."""

    def __init__(self, script, folder, **env):
        import tempfile
        env = dict(os.environ, DEMO_MINI='1', DEMO_DIR=str(folder), CAFFE_MLIC_PROGRESS='never', **env)
        self.log = tempfile.TemporaryFile('w+')     # not a pipe: nobody reads it while it runs
        self.proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'tools', script)], env=env, cwd=REPO,
                                     stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def output(self, timeout):
        try:
            self.proc.wait(timeout)
        finally:
            self.stop()
        self.log.seek(0)
        text = self.log.read()
        assert self.proc.returncode == 0, text[-4000:]
        return text

    def stop(self):
        if self.proc.poll() is None:      # a timeout, or the session ending first
            self.proc.kill()
            self.proc.wait()


class start_interrupted_demo(start_demo):
    """tools/<script> stopped at each of ``stops`` [(file, signal)]: once the
    file exists under ``folder`` (a stage's .started.json), the signal goes to
    the demo's whole process group (SIGKILL: the machine stopping) or to the
    demo alone (SIGTERM: passed on to what it runs); then it is started again
    with DEMO_RESUME=1. ``codes``: the exit status of each stopped start."""

    def __init__(self, script, folder, stops, **env):
        import tempfile
        import threading
        self.script, self.folder, self.env = script, folder, env
        self.log = tempfile.TemporaryFile('w+')
        self.codes, self.proc = [], None
        self._start(env)
        self.thread = threading.Thread(target=self._interrupt, args=(list(stops),), daemon=True)
        self.thread.start()

    def _start(self, env):
        env = dict(os.environ, DEMO_MINI='1', DEMO_DIR=str(self.folder), CAFFE_MLIC_PROGRESS='never', **env)
        self.proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'tools', self.script)], env=env,
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)

    def _interrupt(self, stops):
        import signal
        import time
        for marker, signum in stops:
            while not os.path.exists(os.path.join(self.folder, marker)) and self.proc.poll() is None:
                time.sleep(0.2)
            if self.proc.poll() is not None:    # it ended first: output() reports what it printed
                return
            if signum == signal.SIGKILL:
                os.killpg(self.proc.pid, signum)
            else:
                self.proc.send_signal(signum)
            self.codes.append(self.proc.wait())
            self._start(dict(self.env, DEMO_RESUME='1'))

    def output(self, timeout):
        import time
        deadline = time.monotonic() + timeout
        self.thread.join(timeout)
        return super().output(max(1, deadline - time.monotonic()))

    def stop(self):
        if self.proc.poll() is None:
            import signal
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def refused(script, folder, **env):
    """The one line tools/<script> exits with for ``env`` (it must fail
    before it touches ``folder``, which holds a marker file)."""
    folder.mkdir(exist_ok=True)
    (folder / 'keep').write_text('an earlier run')
    env = dict(os.environ, DEMO_MINI='1', DEMO_DIR=str(folder), CAFFE_MLIC_PROGRESS='never', **env)
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'tools', script)], env=env, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 1 and (folder / 'keep').exists(), proc.stdout[-2000:]
    assert 'Traceback' not in proc.stdout and len(proc.stdout.splitlines()) == 1, proc.stdout
    return proc.stdout.strip()
