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
