"""Running the demo drivers (tools/demo.py, tools/demo_scasnet.py) from tests."""
import os
import subprocess
import sys

from tests import REPO


def run_demo(script, folder, timeout, **env):
    """Run tools/<script> in its miniature form (DEMO_MINI=1) into ``folder``;
    returns its output, failing the test with the output's tail if it fails."""
    env = dict(os.environ, DEMO_MINI='1', DEMO_DIR=str(folder), CAFFE_MLIC_PROGRESS='never', **env)
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'tools', script)], env=env, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


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
