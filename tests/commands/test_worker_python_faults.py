"""CAFFE_MLIC_PYTHON, the Python of the data layers' worker processes (and
the one tools/build_caffe.sh builds pycaffe against): `doctor` checks it
when set, and a wrapper script that never starts Python is refused before
any worker starts, leaving nothing of what it started running."""
import glob
import os
import sys
import time

import cv2
import numpy as np
import pytest

from caffe_mlic.caffe import env as caffe_env
from caffe_mlic.data.datalist import write_datalist
from tests import netutil
from tests.faults import run_cli


def _script(path, body, mark=''):
    path.write_text('#!/bin/sh\n' + ('export %s=1\n' % mark if mark else '') + body)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def pythons(tmp_path):
    """Wrapper scripts, the first two marking what they start with a variable
    in its environment that _running finds; and other non-Pythons."""
    mark = 'CAFFE_MLIC_TEST_MARK_%d' % os.getpid()
    numpy2 = tmp_path / 'numpy2'
    (numpy2 / 'numpy').mkdir(parents=True)
    (numpy2 / 'numpy' / '__init__.py').write_text("__version__ = '2.1.0'\n")
    return {
        # starts two long sleeps and exits: its children stay
        'spawns': _script(tmp_path / 'spawns.sh', 'sleep 300 &\nsleep 301 &\nexit 0\n', mark),
        # never ends
        'sleeps': _script(tmp_path / 'sleeps.sh', 'sleep 302\n', mark),
        'text': str(tmp_path / 'notes.txt'),
        # a Python whose numpy is 2.x (a stand-in package first on its path)
        'numpy2': _script(tmp_path / 'numpy2.sh', 'PYTHONPATH=%s exec %s "$@"\n' % (numpy2, sys.executable)),
        'good': _script(tmp_path / 'good.sh', 'exec %s "$@"\n' % sys.executable),
        'mark': mark,
    }


def _running(mark, wait=5.0):
    """The live processes whose environment holds ``mark`` (after ``wait`` s
    for killed ones to go)."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for path in glob.glob('/proc/[0-9]*/environ'):
            try:
                with open(path, 'rb') as f:
                    if mark.encode() in f.read():
                        with open(path.replace('environ', 'stat')) as f:
                            if f.read().rsplit(')', 1)[1].split()[0] != 'Z':
                                found.append(int(path.split('/')[2]))
            except OSError:
                pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_python_problem_names_what_is_wrong_and_leaves_nothing_running(pythons, tmp_path):
    (tmp_path / 'notes.txt').write_text('not a program\n')
    started = time.monotonic()
    for name, fragment in (
            ('spawns', 'not a Python that runs `-c CODE`: it exited with status 0 and printed nothing'),
            ('sleeps', 'did not answer within 2 s: not a Python, or it hangs (what it started was killed)'),
            ('text', 'not executable')):
        assert caffe_env.python_problem(pythons[name], timeout=2) == fragment
    assert time.monotonic() - started < 20
    assert caffe_env.python_problem(str(tmp_path / 'none')) == 'no such file'
    assert caffe_env.python_problem(str(tmp_path)) == 'a folder, not a Python'
    assert caffe_env.python_problem(pythons['numpy2'], ['numpy']) == \
        'its numpy is 2.1.0; pycaffe is built for numpy 1.x'
    assert caffe_env.python_problem(pythons['good'], ['numpy', 'no_such_module_xyz']).startswith(
        'its Python %d.%d cannot import no_such_module_xyz: ' % sys.version_info[:2])
    assert caffe_env.python_problem(pythons['good'], ['numpy', 'cv2'], env=caffe_env.binary_environment()) is None
    assert _running(pythons['mark']) == []


@pytest.mark.parametrize('name, problem', [
    ('spawns', 'not a Python that runs `-c CODE`: it exited with status 0 and printed nothing'),
    ('text', 'not executable'),
    ('numpy2', 'its numpy is 2.1.0; pycaffe is built for numpy 1.x'),
])
def test_doctor_checks_caffe_mlic_python(pythons, tmp_path, name, problem):
    (tmp_path / 'notes.txt').write_text('not a program\n')
    res = run_cli(['doctor'], tmp_path, CAFFE_MLIC_PYTHON=pythons[name])
    assert res.returncode == 1, res.stdout + res.stderr
    assert '  - CAFFE_MLIC_PYTHON=%s: %s\n' % (pythons[name], problem) in res.stdout, res.stdout
    assert _running(pythons['mark']) == []


def test_doctor_accepts_a_wrapper_that_runs_python(pythons, tmp_path):
    res = run_cli(['doctor'], tmp_path, CAFFE_MLIC_PYTHON=pythons['good'])
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'workers python:' in res.stdout and pythons['good'] in res.stdout


def _worker_solver(root):
    """A solver whose net reads 8 tiny images with 2 data workers."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        path = str(root / ('w%d.png' % i))
        cv2.imwrite(path, rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        rows.append((path, [1, 0], [[0, 0, 5, 5]], [1.0]))
    write_datalist(root / 'list.txt', rows)
    params = dict(source=str(root / 'list.txt'), batch_size=2, new_width=16, new_height=12, att_num=2,
                  bbox_num=1, workers=2)
    net = netutil.python_layer_text('data', 'MultiLabelProposalData', params, [], ['data', 'label_roi'],
                                    phase='TRAIN')
    net += netutil.classifier_text(2, conv=False, std=0.01) + netutil.SIGMOID_LOSS_TEXT
    (root / 'net.prototxt').write_text(net)
    netutil.write_solver(root / 'solver.prototxt', 'net.prototxt', base_lr=0.01, max_iter=2,
                         snapshot_prefix='snap/s')


def test_doctor_and_train_say_the_same_of_a_missing_python_and_a_bare_name(tmp_path):
    """A bare `python3` was stat'ed in the working folder and called "no such
    file"; the workers are started with it as a path (multiprocessing execs
    it: PATH is not searched), so the message says to give a path, naming the
    one on PATH. `doctor` and `train` say the same (one function)."""
    import shutil
    bare = os.path.basename(sys.executable)
    on_path = shutil.which(bare)
    assert caffe_env.python_problem(str(tmp_path / 'none')) == 'no such file'
    assert caffe_env.python_problem('no-such-python-xyz') == \
        'a bare name, which is not looked up on PATH: give its path, none is on PATH either'
    if on_path:
        assert caffe_env.python_problem(bare) == \
            'a bare name, which is not looked up on PATH: give its path (on PATH: %s)' % on_path
    _worker_solver(tmp_path)
    for exe in (str(tmp_path / 'none'), 'no-such-python-xyz'):
        problem = caffe_env.python_problem(exe)
        doctor = run_cli(['doctor'], tmp_path, CAFFE_MLIC_PYTHON=exe)
        assert '  - CAFFE_MLIC_PYTHON=%s: %s\n' % (exe, problem) in doctor.stdout, doctor.stdout
        train = run_cli(['train', 'solver.prototxt', '--run-dir', 'run'], tmp_path, timeout=120,
                        CAFFE_MLIC_PYTHON=exe, CAFFE_MLIC_PROGRESS='never')
        assert train.returncode == 1 and train.stderr.splitlines()[-1].startswith(
            'caffe-mlic train: cannot start data worker processes: CAFFE_MLIC_PYTHON=%s: %s (' % (exe, problem)), \
            train.stderr[-2000:]


def test_a_wrapper_that_never_starts_python_is_refused_and_leaves_nothing(pythons, tmp_path):
    """Its children ran on after the command, and the workers' start waited
    for them (they held its pipes) for up to 300 s; one that never ends is
    given PYTHON_TIMEOUT s (test_python_problem_... above, with 2 s)."""
    _worker_solver(tmp_path)
    started = time.monotonic()
    res = run_cli(['train', 'solver.prototxt', '--run-dir', 'run'], tmp_path, timeout=120,
                  CAFFE_MLIC_PYTHON=pythons['spawns'], CAFFE_MLIC_PROGRESS='never')
    assert res.returncode == 1, res.stderr[-3000:]
    assert res.stderr.splitlines()[-1].startswith(
        'caffe-mlic train: cannot start data worker processes: CAFFE_MLIC_PYTHON=%s: not a Python that runs '
        '`-c CODE`' % pythons['spawns']), res.stderr[-3000:]
    assert 'Traceback' not in res.stderr
    assert time.monotonic() - started < 60
    assert _running(pythons['mark']) == []
