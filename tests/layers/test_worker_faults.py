"""The data layers' workers: a stalled worker times out naming it and its
images; shared memory is unlinked whatever ends the run; bad images
mid-epoch are named."""
import contextlib
import glob
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest

from caffe_mlic.caffe import prototxt
from caffe_mlic.data.datalist import write_datalist
from caffe_mlic.layers.data import DataLoadError
from tests import netutil
from tests.faults import CLI, shm_segments


def _worker_net(tmp_path, net_from_text, n=8, **kw):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = str(tmp_path / ('w%d.png' % i))
        cv2.imwrite(path, rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        rows.append((path, [1, 0, 1], [[0, 0, 5, 5]], [1.0]))
    write_datalist(tmp_path / 'list.txt', rows)
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=2, new_width=16, new_height=12,
                  att_num=3, bbox_num=1, workers=2)
    params.update(kw)
    return net_from_text(netutil.python_layer_text('data', 'MultiLabelProposalData', params, [],
                                                   ['data', 'label_roi']), 'TEST')


def test_a_stalled_worker_times_out_naming_it_and_its_images(tmp_path, net_from_text):
    net = _worker_net(tmp_path, net_from_text, timeout=2)
    net.forward()
    pids = net.layers[0].worker_pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)         # as a process blocked on a dead network mount
    try:
        started = time.monotonic()
        with pytest.raises(DataLoadError, match=r'no data worker answered for 2 s .*worker process '
                                                r'(%s) was reading .*w\d\.png' % '|'.join(map(str, pids))):
            for batch in range(4):           # past the (up to 3) batches loaded ahead
                net.forward()
        assert time.monotonic() - started < 30
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        net.layers[0].close()


def test_the_slots_are_anonymous_memory_shared_with_the_workers(tmp_path, net_from_text):
    """The slots are memfds: no name in /dev/shm, and each worker maps the
    same memory (it has them open as /memfd:caffe-mlic-batch)."""
    before = shm_segments()
    net = _worker_net(tmp_path, net_from_text)
    layer = net.layers[0]
    assert shm_segments() <= before
    for pid in layer.worker_pids:
        with open('/proc/%d/maps' % pid) as f:
            assert sum('/memfd:caffe-mlic-batch' in line for line in f) >= len(layer.workers.slots)
    net.forward()
    assert net.blobs['data'].data.any()
    layer.close()


def test_killing_the_group_while_workers_start_leaves_nothing(tmp_path):
    """SIGKILL to the whole process group at several moments of the net's
    setup (workers being spawned, mapping, ready): /dev/shm is unchanged and
    no worker survives."""
    _worker_net(tmp_path, lambda text, phase: (tmp_path / 'net.prototxt').write_text(text), workers=3)
    script = textwrap.dedent('''
        import sys
        print('building', flush=True)
        from caffe_mlic.caffe import prototxt
        net = prototxt.caffe_net(%r, 'TRAIN')
        print('built', flush=True)
        import time; time.sleep(60)
        ''' % str(tmp_path / 'net.prototxt'))
    before = shm_segments()
    for delay in (0.3, 0.8, 1.5, 3.0):
        marker = 'CAFFE_MLIC_GROUPKILL_%d_%d' % (os.getpid(), int(delay * 10))
        env = dict(os.environ, GLOG_minloglevel='2', **{marker: '1'})
        proc = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, text=True,
                                env=env, start_new_session=True)
        assert proc.stdout.readline() == 'building\n'
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.time() + 10
        while _processes_of(marker) and time.time() < deadline:
            time.sleep(0.05)
        assert _processes_of(marker) == []
        assert shm_segments() <= before


def test_a_killed_worker_is_named(tmp_path, net_from_text):
    net = _worker_net(tmp_path, net_from_text, n=40)
    net.forward()
    pids = net.layers[0].worker_pids
    os.kill(pids[1], signal.SIGKILL)
    try:
        with pytest.raises(DataLoadError, match=r'data worker 2 of 2 \(process %d, .*\) was killed by '
                                                r'SIGKILL' % pids[1]):
            for _ in range(20):
                net.forward()
    finally:
        net.layers[0].close()


@pytest.mark.parametrize('python', [None, '/bin/false'])
def test_killed_or_misconfigured_runs_leave_no_shared_memory(tmp_path, python):
    """SIGKILL right after the net is built (before any batch); and a wrong
    CAFFE_MLIC_PYTHON, which fails the workers' start with a clear error."""
    _worker_net(tmp_path, lambda text, phase: (tmp_path / 'net.prototxt').write_text(text))
    script = textwrap.dedent('''
        import os, signal, sys
        from caffe_mlic.caffe import prototxt
        from caffe_mlic.errors import MlicError
        try:
            net = prototxt.caffe_net(%r, 'TRAIN')
        except MlicError as e:
            print('ERROR', e, flush=True)
            sys.exit(3)
        print(' '.join(map(str, net.layers[0].worker_pids)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        ''' % str(tmp_path / 'net.prototxt'))
    env = dict(os.environ, GLOG_minloglevel='2')
    if python:
        env['CAFFE_MLIC_PYTHON'] = python
    before = shm_segments()
    res = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env,
                         timeout=120)
    if python:
        # (refused before any worker starts: it is not a Python)
        assert res.returncode == 3 and 'cannot start data worker processes: CAFFE_MLIC_PYTHON=%s: not a ' \
            'Python' % python in res.stdout, res.stdout + res.stderr
        assert 'resource_tracker' not in res.stderr, res.stderr
    else:
        assert res.returncode == -signal.SIGKILL, res.stderr
    assert shm_segments() <= before


def _stress_dataset(root, n=240):
    """n PNGs (image 10 huge, 2500 x 2000); the datalist in file order."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        size = (2000, 2500) if i == 10 else (100, 120)
        img = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        path = str(root / ('s%03d.png' % i))
        cv2.imwrite(path, img)
        rows.append((path, [i % 2, 1 - i % 2], [[0, 0, 9, 9]], [1.0]))
    write_datalist(root / 'list.txt', rows)
    return [r[0] for r in rows]


def _processes_of(marker):
    """pids of live processes whose environment holds ``marker``."""
    found = []
    for env_path in glob.glob('/proc/[0-9]*/environ'):
        try:
            with open(env_path, 'rb') as f:
                if marker.encode() in f.read():
                    found.append(int(env_path.split('/')[2]))
        except OSError:
            pass
    return found


def test_stress_bad_images_mid_epoch_with_workers(tmp_path):
    """A few hundred images, one huge, one deleted while the run goes and a
    corrupt one after it: `caffe-mlic train` with workers stops at the first
    bad one, naming it, and leaves no shared memory and no process behind."""
    paths = _stress_dataset(tmp_path)
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=8, new_width=120, new_height=100,
                  att_num=2, bbox_num=1, workers=2, shuffle=False)
    net = netutil.python_layer_text('data', 'MultiLabelProposalData', params, [], ['data', 'label_roi'],
                                    phase='TRAIN')
    net += netutil.classifier_text(2, conv=False, std=0.01) + netutil.SIGMOID_LOSS_TEXT
    (tmp_path / 'net.prototxt').write_text(net)
    netutil.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', base_lr=0.01, max_iter=60,
                         snapshot_prefix='snap/s')
    (tmp_path / paths[232]).write_bytes(b'corrupt')       # batch 29: after the missing one
    marker = 'CAFFE_MLIC_STRESS_%d' % os.getpid()
    before = shm_segments()
    env = dict(os.environ, GLOG_minloglevel='2', CAFFE_MLIC_PROGRESS='never', **{marker: '1'})
    proc = subprocess.Popen(CLI + ['train', 'solver.prototxt', '--run-dir', 'run'], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # Freeze the run as soon as it starts, delete image 200 (batch 25,
        # far past the 3 batches loaded ahead), and let it go on.
        deadline = time.time() + 120
        while not (tmp_path / 'run' / 'run.json').exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGSTOP)
        os.remove(paths[200])
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    assert 'cannot read image %s (cannot open it: No such file' % paths[200] in err, err[-3000:]
    assert paths[232] not in err and 'Traceback' not in err
    assert shm_segments() <= before
    deadline = time.time() + 10
    while _processes_of(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert _processes_of(marker) == []
    run = json.load(open(tmp_path / 'run' / 'run.json'))
    assert run['status'] == 'failed' and run['final_iteration'] == 25


def test_the_resource_sharers_tracebacks_of_a_worker_that_died_starting_are_dropped(capsys):
    """A stop signal while 64 workers started: the resource-sharer thread
    printed ConnectionResetError / BrokenPipeError tracebacks before our one
    line (pass 19 S5). Such tracebacks are dropped; any other still shows."""
    import sys
    from multiprocessing import resource_sharer
    from caffe_mlic.layers import prefetch
    saved = sys.excepthook
    try:
        prefetch._quiet_resource_sharer()
        hook = sys.excepthook
        prefetch._quiet_resource_sharer()           # (once: not a chain of wrappers)
        assert sys.excepthook is hook and hook.quiet_resource_sharer

        def served():
            raise ConnectionResetError(104, 'Connection reset by peer')
        served.__code__ = served.__code__.replace(co_filename=resource_sharer.__file__)
        for error in (served, lambda: 1 / 0):
            try:
                error()
            except Exception:
                sys.excepthook(*sys.exc_info())
        err = capsys.readouterr().err
        assert 'ConnectionResetError' not in err and 'ZeroDivisionError' in err
    finally:
        sys.excepthook = saved


@pytest.mark.parametrize('workers,kind', [(0, 'fifo'), (2, 'fifo'), (0, 'socket'), (2, 'zero')])
def test_images_renamed_over_by_special_files_mid_run_are_named_not_waited_on(tmp_path, workers, kind):
    """Every image renamed over by a FIFO while `train` ran: the reader
    blocked in open() and stop signals did nothing (with workers, the
    workers blocked, and outlived a SIGKILLed main process); a socket or a
    link to /dev/zero was "the file is empty (0 bytes)" (pass 47c S2, M1).
    Now the first one read is named as what it is, in one line."""
    import socket
    marker = 'CAFFE_MLIC_SPECIAL_%d_%s_%d' % (os.getpid(), kind, workers)
    proc, images = _small_run(tmp_path, workers, marker, 0)
    sockets = []
    try:
        _wait_for(tmp_path / 'run' / 'run.json', proc)
        for path in images:
            planted = path + '.planted'
            if kind == 'fifo':
                os.mkfifo(planted)
            elif kind == 'zero':
                os.symlink('/dev/zero', planted)
            else:
                sockets.append(socket.socket(socket.AF_UNIX))
                sockets[-1].bind(planted)
            os.replace(planted, path)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for s in sockets:
            s.close()
    what = {'fifo': 'a FIFO', 'socket': 'a socket', 'zero': 'a device'}[kind]
    assert proc.returncode == 1, err[-3000:]
    assert re.search(r'cannot read image %s/k\d\d\.png \(it is %s, not a file\)' % (re.escape(str(tmp_path)), what),
                     err), err[-3000:]
    assert 'Traceback' not in err
    deadline = time.time() + 10
    while _processes_of(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert _processes_of(marker) == []


@pytest.mark.parametrize('workers', [0, 2])
def test_an_image_opencv_throws_on_mid_run_is_one_line_not_an_abort(tmp_path, workers):
    """A truncated TIFF (PIL's, cut in half) renamed over the images while
    `train` ran: OpenCV throws inside imdecode and catches it there, but
    glog's library had been made global (to install its failure function)
    and its libunwind then unwound OpenCV's cleanups: std::terminate,
    SIGABRT, nothing said, run.json "running" (pass 54c S1). Now the
    error OpenCV catches is the reason in our one line."""
    from PIL import Image
    import io
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(buffer, 'TIFF')
    cut = buffer.getvalue()[:len(buffer.getvalue()) // 2]
    marker = 'CAFFE_MLIC_CUT_TIFF_%d_%d' % (os.getpid(), workers)
    proc, images = _small_run(tmp_path, workers, marker, 0)
    try:
        _wait_for(tmp_path / 'run' / 'run.json', proc)
        for path in images:
            with open(path + '.cut', 'wb') as f:
                f.write(cut)
            os.replace(path + '.cut', path)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err[-3000:]
    assert re.fullmatch(r'caffe-mlic train: cannot read image %s/k\d\d\.png \(OpenCV cannot decode it: libtiff: '
                        r'TIFFFillStrip: Read error at scanline .*\)' % re.escape(str(tmp_path)),
                        err.strip().splitlines()[-1]), err[-3000:]
    assert 'imdecode_' not in err and 'terminate' not in err, err[-3000:]
    assert json.loads((tmp_path / 'run' / 'run.json').read_text())['status'] == 'failed'


def _small_run(tmp_path, workers, marker, snapshot):
    """`train` on 24 small images with ``workers`` and ``marker`` in its
    environment, started: (process, image paths)."""
    rng = np.random.default_rng(1)
    rows = []
    for i in range(24):
        path = str(tmp_path / ('k%02d.png' % i))
        cv2.imwrite(path, rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
        rows.append((path, [i % 2, 1 - i % 2], [[0, 0, 9, 9]], [1.0]))
    write_datalist(tmp_path / 'list.txt', rows)
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=2, new_width=32, new_height=24,
                  att_num=2, bbox_num=1, workers=workers, shuffle=False)
    net = netutil.python_layer_text('data', 'MultiLabelProposalData', params, [], ['data', 'label_roi'],
                                    phase='TRAIN')
    net += netutil.classifier_text(2, conv=False, std=0.01) + netutil.SIGMOID_LOSS_TEXT
    (tmp_path / 'net.prototxt').write_text(net)
    netutil.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', base_lr=0.01, max_iter=100000,
                         snapshot=snapshot, snapshot_prefix='snap/s')
    env = dict(os.environ, GLOG_minloglevel='2', CAFFE_MLIC_PROGRESS='never', **{marker: '1'})
    proc = subprocess.Popen(CLI + ['train', 'solver.prototxt', '--run-dir', 'run'], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return proc, [r[0] for r in rows]


def _wait_for(path, proc):
    deadline = time.time() + 120
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.002)


def _waiting_workers_run(tmp_path, marker):
    """`train` with 2 workers, started and past its first snapshot (10)."""
    proc, _ = _small_run(tmp_path, 2, marker, 10)
    _wait_for(tmp_path / 'snap' / 's_iter_10.solverstate', proc)
    return proc


def _worker_pids(pid):
    return [int(p) for p in subprocess.run(['pgrep', '-P', str(pid), '-f', 'spawn_main'], capture_output=True,
                                           text=True).stdout.split()]


def test_a_signal_to_the_group_that_ends_the_workers_mid_step_is_said_as_the_stop(tmp_path):
    """SIGTERM to the whole process group while the run waited on its
    workers' batch: the workers die of it first, and the run said "data
    worker 1 of 3 ... was killed by SIGTERM", exit 1 (pass 47c M4). It is
    the stop (exit 143), resumed from the last snapshot."""
    marker = 'CAFFE_MLIC_GROUP_TERM_%d' % os.getpid()
    proc = _waiting_workers_run(tmp_path, marker)
    try:
        workers = _worker_pids(proc.pid)
        assert len(workers) == 2
        for pid in workers:         # (the run then waits on a batch, as on a stalled file system)
            os.kill(pid, signal.SIGSTOP)
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        for pid in workers:
            os.kill(pid, signal.SIGTERM)
            os.kill(pid, signal.SIGCONT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert re.search(r'\ncaffe-mlic train: stopped by SIGTERM at iteration \d+, in a step it cut short \(it ended '
                     r'a data worker too\); the last snapshot is (snap/s_iter_\d+0\.solverstate); resume with: '
                     r'caffe-mlic train solver.prototxt --resume \1 --run-dir run\n$', err), err
    info = json.load(open(tmp_path / 'run' / 'run.json'))
    assert info['status'] == 'interrupted by SIGTERM'
    res = subprocess.run(CLI + ['train', 'solver.prototxt', '--run-dir', 'run', '--resume', 'auto',
                                '--set', 'max_iter=%d' % (int(info['last_snapshot'].split('_iter_')[1].split('.')[0]) + 2)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, GLOG_minloglevel='2', CAFFE_MLIC_PROGRESS='never'))
    assert res.returncode == 0, res.stderr


def test_workers_blocked_in_a_read_end_with_a_sigkilled_run(tmp_path):
    """Workers blocked in open() (images renamed over by FIFOs) outlived a
    SIGKILLed main process for ever (pass 47c S2): the kernel ends them
    with it now (here: workers stopped, as in a read that never returns)."""
    marker = 'CAFFE_MLIC_ORPHANS_%d' % os.getpid()
    proc = _waiting_workers_run(tmp_path, marker)
    try:
        workers = _worker_pids(proc.pid)
        assert len(workers) == 2
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        proc.kill()
        proc.communicate(timeout=60)
        deadline = time.time() + 10
        while any(os.path.exists('/proc/%d' % pid) and 'Z' not in open('/proc/%d/stat' % pid).read().split()[2]
                  for pid in workers) and time.time() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if os.path.exists('/proc/%d' % pid)
                    and 'Z' not in open('/proc/%d/stat' % pid).read().split()[2]]
    finally:
        for pid in _processes_of(marker):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
