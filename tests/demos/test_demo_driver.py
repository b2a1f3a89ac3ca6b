"""tools/demo_driver.py: a demo stopped by a signal stops its commands (none
is left running under init) and exits 128 + N."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests import REPO

# A demo whose "caffe-mlic" (demo_driver.CLI) is a fake that records its pid
# and sleeps: one command in the main thread, one in a thread, one started in
# the background, as the demos run them.
DEMO = textwrap.dedent('''
    import os, sys, time
    sys.path.insert(0, os.path.join(%(repo)r, 'tools'))
    import demo_driver
    demo_driver.CLI = %(fake)r
    demo_driver.STOP_WAIT = %(wait)s

    def demo():
        d = demo_driver.Driver()
        back = d.start('background', log=os.path.join(%(folder)r, 'background.log'))
        thread = d.in_thread(d.cli, 'thread', None, os.path.join(%(folder)r, 'thread.log'))
        d.cli('main', tail=3)
        d.join(thread, os.path.join(%(folder)r, 'thread.log'))
        d.wait(back)
        d.cli('never')      # a stopped demo starts nothing more
    demo_driver.main(demo)
''')

FAKE = textwrap.dedent('''\
    #!%(python)s
    import os, signal, sys, time
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if %(ignore)s:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(os.path.join(%(folder)r, sys.argv[1] + '.pid'), 'w') as f:
        f.write(str(os.getpid()))
    time.sleep(600)
''')


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] not in 'ZX'
    except OSError:
        return False


def _demo(tmp_path, ignore=False, wait=60):
    fake = tmp_path / 'fake-caffe-mlic'
    fake.write_text(FAKE % dict(python=sys.executable, folder=str(tmp_path), ignore=ignore))
    fake.chmod(0o755)
    script = tmp_path / 'demo.py'
    script.write_text(DEMO % dict(repo=REPO, fake=str(fake), folder=str(tmp_path), wait=wait))
    # its own session: no terminal, as under timeout, kill or a CI cancel
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    pids = {}
    deadline = time.monotonic() + 30
    while len(pids) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        for name in ('main', 'thread', 'background'):
            path = tmp_path / (name + '.pid')
            if path.exists() and path.read_text():
                pids[name] = int(path.read_text())
        time.sleep(0.05)
    return proc, pids


def _stop(proc, pids, signals, within):
    try:
        for signum in signals:
            os.kill(proc.pid, signum)
            time.sleep(0.2)
        _, err = proc.communicate(timeout=within)
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in pids.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return err
    finally:
        if proc.poll() is None:
            proc.kill()
        left = [name for name, pid in pids.items() if _alive(pid)]
        for name in left:
            os.kill(pids[name], signal.SIGKILL)
        assert not left, 'commands that outlived the demo: %s' % left


@pytest.mark.parametrize('sent', [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=['term', 'hup', 'int'])
def test_a_signal_to_the_demo_stops_its_commands(tmp_path, sent):
    proc, pids = _demo(tmp_path)
    err = _stop(proc, pids, [sent], within=10)
    assert proc.returncode == 128 + sent, err
    assert err.endswith('demo: stopped by %s\n' % signal.Signals(sent).name), err
    assert 'Traceback' not in err, err
    assert not (tmp_path / 'never.pid').exists()


def test_a_command_that_ignores_sigterm_is_killed_after_stop_wait(tmp_path):
    proc, pids = _demo(tmp_path, ignore=True, wait=1)
    start = time.monotonic()
    err = _stop(proc, pids, [signal.SIGTERM], within=20)
    assert proc.returncode == 143, err
    assert time.monotonic() - start < 10


def test_a_second_signal_kills_the_commands_at_once(tmp_path):
    proc, pids = _demo(tmp_path, ignore=True, wait=600)
    err = _stop(proc, pids, [signal.SIGTERM, signal.SIGTERM], within=10)
    assert proc.returncode == 143, err


@pytest.mark.parametrize('script', ['demo.py', 'demo_scasnet.py'])
def test_a_second_demo_in_the_same_folder_stops_before_touching_it(tmp_path, script):
    """The first demo holds DEMO_DIR (a lock beside it) while it runs; a
    second one there would remove the folder under it."""
    import fcntl
    run = tmp_path / 'run'
    run.mkdir()
    (run / '.caffe-mlic-demo').write_text('made by a demo\n')
    (run / 'work.txt').write_text('the first demo is writing here')
    with open(str(tmp_path / '.run.demo-lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)      # as the first demo holds it
        lock.write('4242\n')
        lock.flush()
        env = dict(os.environ, DEMO_DIR=str(run), DEMO_MINI='1')
        done = subprocess.run([sys.executable, os.path.join(REPO, 'tools', script)], env=env,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        'demo: another demo is running in DEMO_DIR %s (pid 4242); wait for it to end, or give DEMO_DIR another '
        'folder' % run)
    assert sorted(os.listdir(str(run))) == ['.caffe-mlic-demo', 'work.txt']
    done = subprocess.run([sys.executable, '-c', 'import sys; sys.path.insert(0, %r); import demo_driver; '
                           'demo_driver.hold_demo_folder(%r); print(open(%r).read().strip())'
                           % (os.path.join(REPO, 'tools'), str(run), str(tmp_path / '.run.demo-lock'))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip().isdigit()     # free again: the next demo takes it
