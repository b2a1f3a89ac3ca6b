"""Helpers of the bad-input and fault tests (tests/*/test_*_faults.py): the CLI
as a user runs it, the shared-memory segments, a tiny trained set-up."""
import glob
import os
import subprocess
import sys

import pytest

from caffe_mlic.caffe import prototxt
from caffe_mlic.netspec import netgen
from tests.tinydata import tiny_mlic_config, write_tiny_dataset

CLI = [sys.executable, '-m', 'caffe_mlic.cli']
C, B = 3, 8


def run_cli(args, cwd, timeout=180, **env):
    return subprocess.run(CLI + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, GLOG_minloglevel='2', **env))


def child_pids(pid):
    """The pids of process ``pid``'s children (every thread's), from /proc."""
    kids = []
    for task in os.listdir('/proc/%d/task' % pid):
        with open('/proc/%d/task/%s/children' % (pid, task)) as f:
            kids += [int(k) for k in f.read().split()]
    return kids


def shm_segments():
    """Everything in /dev/shm (the data layers' slots must never appear
    there) but Open MPI's shared-memory transport files, which any MPI job
    on the machine makes and removes (one beside a test is not the test's)."""
    return {path for path in glob.glob('/dev/shm/*')
            if not os.path.basename(path).startswith(('vader_segment.', 'sm_segment.', 'pmix'))}


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny dataset, its generated nets (no workers) and a caffemodel of the
    baseline student."""
    root = tmp_path_factory.mktemp('hardening')
    listing = write_tiny_dataset(str(root / 'images'), num_classes=C, bbox_num=B, size=96)
    netgen.generate(str(root / 'nets'), tiny_mlic_config(listing))
    net = prototxt.caffe_net(str(root / 'nets' / 'kd' / 'student_baseline.prototxt'), 'TEST', seed=0)
    (root / 'baseline.caffemodel').write_bytes(prototxt.net_weights_bytes(net))
    return root


def input_errors_beside_a_fifo(fifo, call, timeout=30):
    """The InputError (or OSError) messages of ``call()``, run while ``fifo``
    (a FIFO it may read) has no writer; a test failure, not a hang, when the
    call blocks on it (the FIFO is then opened for writing to free the
    thread)."""
    import threading
    from caffe_mlic.errors import InputError
    found = []

    def read():
        try:
            call()
        except (InputError, OSError) as e:
            found.append(str(e))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        os.close(os.open(str(fifo), os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail('%s blocked on the FIFO %s' % (getattr(call, '__name__', call), fifo))
    return found
