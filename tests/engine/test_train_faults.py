"""`caffe-mlic train` under faults: no run lost, no partial snapshot, no
Caffe abort. A full disk, a snapshot folder that cannot be written, SIGHUP,
a closed stdout, a signal while the nets are built, two runs in one folder,
a state at max_iter, HDF5 snapshots, solver values out of range."""
import contextlib
import json
import os
import pathlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from caffe_mlic.caffe import prototxt
from caffe_mlic.engine import snapshots, trainer
from caffe_mlic.netspec import netgen
from tests import netutil
from tests.netutil import weights_of
from tests.caffe_binary import fate_in_child
from tests.tinydata import tiny_mlic_config, write_tiny_dataset

CLI = [sys.executable, '-m', 'caffe_mlic.cli']
ENV = dict(os.environ, GLOG_minloglevel='2', CAFFE_MLIC_PROGRESS='never')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('train_faults')
    listing = write_tiny_dataset(str(root / 'images'), num_classes=3, bbox_num=8, size=96)
    netgen.generate(str(root / 'nets'), tiny_mlic_config(listing))
    net = prototxt.read_net(str(root / 'nets' / 'kd' / 'student_baseline.prototxt'))
    data = prototxt.data_layer(net, 'TRAIN')
    data.python_param.param_str = json.dumps(dict(prototxt.python_params(data), workers=3))
    prototxt.write(root / 'nets' / 'kd' / 'student_workers.prototxt', net)
    return root


def solver(root, name, net='kd/student_baseline', **fields):
    spec = dict(base_lr=0.001, momentum=0.9, weight_decay=0.0005, max_iter=2000, lr_policy='fixed',
                test_iter=[1], test_interval=10, test_initialization=False, snapshot=0,
                snapshot_prefix='snap_%s/w' % name, random_seed=1)
    spec.update(fields)
    return str(netutil.write_solver(root / ('%s.prototxt' % name),
                                    str(root / 'nets' / (net + '.prototxt')), **spec))


def run(args, cwd, timeout=300):
    return subprocess.run(CLI + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=ENV)


def start(args, cwd, **kw):
    return subprocess.Popen(CLI + [str(a) for a in args], cwd=cwd, text=True, env=ENV, **kw)


def wait_for(predicate, proc, timeout=120):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, 'the run ended first'
        assert time.time() < deadline
        time.sleep(0.005)


def train_rows(run_dir):
    try:
        with open(os.path.join(run_dir, 'log.jsonl')) as f:
            return sum('"phase": "train"' in line for line in f)
    except FileNotFoundError:
        return 0


def run_json(run_dir):
    return json.loads((run_dir / 'run.json').read_text())


@contextlib.contextmanager
def small_disk(path, megabytes):
    """A tmpfs of ``megabytes`` at ``path`` (root only)."""
    path.mkdir()
    res = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%dm' % megabytes, 'tmpfs', str(path)],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip('cannot mount a small tmpfs here (needs root): %s' % res.stderr.strip())
    try:
        yield path
    finally:
        subprocess.run(['umount', '-l', str(path)])


# ---------------------------------------------------------------- snapshots


def test_a_full_disk_at_a_snapshot_is_one_line_and_leaves_the_previous_one(tiny, tmp_path):
    """The first snapshot fits, the second does not: rc 1 with one line, the
    first snapshot whole, no staged file, run.json 'failed' with the reason."""
    solver(tiny, 'full', max_iter=30, snapshot=10)
    res = run(['train', 'full.prototxt', '--max-iter', '10', '--set', 'snapshot=10', '--run-dir', 'runs/m'],
              tiny)
    assert res.returncode == 0, res.stderr
    one = sum(os.path.getsize(p) for p in (tiny / 'snap_full').iterdir())
    with small_disk(tmp_path / 'disk', 4) as disk:
        prefix = disk / 'w'
        # Leave room for one snapshot and its slack, not two.
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        (disk / 'filler').write_bytes(b'\0' * (free - one - snapshots.SNAPSHOT_SLACK - one // 2))
        res = run(['train', 'full.prototxt', '--set', 'snapshot_prefix=%s' % prefix,
                   '--run-dir', 'runs/full'], tiny)
        assert res.returncode == 1, res.stderr
        assert re.fullmatch(r'caffe-mlic train: cannot write the snapshot at iteration 20: it needs about '
                            r'[0-9.]+ MB and the disk of %s has [0-9.]+ MB free; the last snapshot is '
                            r'\S+w_iter_10.solverstate\n' % re.escape(str(disk)), res.stderr), res.stderr
        files = sorted(p.name for p in disk.iterdir() if p.name != '.w.run')      # (the prefix's run)
        assert files == ['filler', 'w_iter_10.caffemodel', 'w_iter_10.solverstate']
        net = prototxt.caffe_net(tiny / 'nets' / 'kd' / 'student_baseline.prototxt', 'TEST')
        assert snapshots.check_snapshot(str(disk / 'w_iter_10.solverstate'), net,
                                        prototxt.read_net(tiny / 'nets' / 'kd' / 'student_baseline.prototxt'),
                                        'SGD')[0] == 10
        info = run_json(tiny / 'runs' / 'full')
        assert info['status'] == 'failed' and 'cannot write the snapshot at iteration 20' in info['error']
        assert info['last_snapshot'] == str(disk / 'w_iter_10.solverstate')


@pytest.mark.parametrize('prefix, message', [
    ('snaps/', r"snapshot_prefix: 'snaps/' names a folder: .*give a file prefix such as \"snaps/bad\""),
    ('/proc/caffe_mlic_no_such/w', r'snapshot_prefix: cannot write snapshots into /proc/caffe_mlic_no_such'),
    # (a FIFO where the snapshot folder goes said only "File exists": pass 46c)
    ('fifo_snaps/w', r'snapshot_prefix: fifo_snaps is a FIFO, where the snapshots of this prefix go: move it away'),
])
def test_a_snapshot_prefix_that_cannot_be_written_is_named_before_caffe_starts(tiny, prefix, message):
    if prefix.startswith('fifo_snaps') and not (tiny / 'fifo_snaps').exists():
        os.mkfifo(str(tiny / 'fifo_snaps'))
    solver(tiny, 'bad', snapshot_prefix=prefix)
    res = run(['train', 'bad.prototxt', '--run-dir', 'runs/bad'], tiny)
    assert res.returncode == 1 and 'F1205' not in res.stderr, res.stderr
    assert re.fullmatch(r'caffe-mlic train: bad.prototxt:\d+: %s.*\n' % message, res.stderr), res.stderr


def test_hdf5_snapshots_are_renamed_into_place_and_resume(tiny):
    """Caffe's HDF5 state names its caffemodel; after the rename it names
    the final one, and Caffe resumes from it to the uninterrupted weights."""
    import h5py
    solver(tiny, 'h5', max_iter=20, snapshot=10, snapshot_format=0)  # HDF5
    res = run(['train', 'h5.prototxt', '--run-dir', 'runs/h5'], tiny)
    assert res.returncode == 0, res.stderr
    snaps = tiny / 'snap_h5'
    assert sorted(p.name for p in snaps.iterdir()) == ['.w.run'] + [
        'w_iter_%d.%s.h5' % (i, kind) for i in (10, 20) for kind in ('caffemodel', 'solverstate')]
    with h5py.File(snaps / 'w_iter_10.solverstate.h5', 'r') as f:
        assert f['learned_net'][()].decode() == 'snap_h5/w_iter_10.caffemodel.h5'
    res = run(['train', 'h5.prototxt', '--run-dir', 'runs/h5b', '--resume',
               'snap_h5/w_iter_10.solverstate.h5', '--set', 'snapshot_prefix=snap_h5b/w'], tiny)
    assert res.returncode == 0, res.stderr
    with h5py.File(snaps / 'w_iter_20.caffemodel.h5', 'r') as a, \
            h5py.File(tiny / 'snap_h5b' / 'w_iter_20.caffemodel.h5', 'r') as b:
        names = []
        a['data'].visit(lambda n: names.append(n) if isinstance(a['data'][n], h5py.Dataset) else None)
        assert names and all(np.array_equal(a['data'][n][()], b['data'][n][()]) for n in names)


def test_hdf5_snapshots_of_a_net_with_a_slash_in_a_layer_name_are_refused_first(tiny):
    net = prototxt.read_net(str(tiny / 'nets' / 'kd' / 'student_baseline.prototxt'))
    relu = next(layer for layer in net.layer if layer.type == 'ReLU')
    relu.name = relu.name + '/relu'                  # as ScasNet names its ReLUs
    prototxt.write(tiny / 'nets' / 'kd' / 'student_slash.prototxt', net)
    solver(tiny, 'slash', net='kd/student_slash', max_iter=4, snapshot=2, snapshot_format=0)  # HDF5
    res = run(['train', 'slash.prototxt', '--run-dir', 'runs/slash'], tiny)
    assert res.returncode == 1 and 'Check failed' not in res.stderr, res.stderr
    assert "snapshot_format: HDF5 snapshots cannot be written for" in res.stderr
    assert "1 layer name(s) with '/'" in res.stderr
    assert relu.name in res.stderr and not list((tiny / 'snap_slash').glob('*'))
    assert not (tiny / 'runs' / 'slash').exists()          # refused before the run began
    solver(tiny, 'slash', net='kd/student_slash', max_iter=4, snapshot=2)     # binary: trains
    assert run(['train', 'slash.prototxt', '--run-dir', 'runs/slash'], tiny).returncode == 0


def test_a_state_at_or_past_max_iter(tiny):
    solver(tiny, 'done', max_iter=10, snapshot=5)
    res = run(['train', 'done.prototxt', '--run-dir', 'runs/done'], tiny)
    assert res.returncode == 0, res.stderr
    res = run(['train', 'done.prototxt', '--run-dir', 'runs/done', '--resume', 'auto'], tiny)
    assert res.returncode == 0, res.stderr
    assert 'snap_done/w_iter_10.solverstate is at max_iter 10 already: nothing to train' in res.stderr
    assert 'snapshot snap_done/w_iter_10.solverstate;' in res.stdout
    assert (tiny / 'snap_done' / 'w_iter_10.solverstate').exists()
    res = run(['train', 'done.prototxt', '--run-dir', 'runs/done', '--resume', 'snap_done/w_iter_10.solverstate',
               '--set', 'max_iter=8'], tiny)
    assert res.returncode == 2, res.stderr
    assert re.fullmatch(r'caffe-mlic train: argument --resume: snap_done/w_iter_10.solverstate is at '
                        r'iteration 10, past max_iter 8 of done.prototxt: nothing to train .*\n', res.stderr)


@pytest.mark.parametrize('override, message', [
    ('momentum=2', r'momentum must be in \[0, 1\), got 2'),
    ('snapshot=-1', r'snapshot must be >= 0 .*got -1'),
    ('base_lr=-0.1', r'base_lr must be >= 0, got -0.1'),
    ('max_iter=1000000000000', r'max_iter: 1000000000000 is out of the range of the field \(int32: -2147483648 to '
                               r'2147483647\)'),
    # (pass 21 M9: said as what they are)
    ('max_iter=1e3', r"max_iter: '1e3' is not a valid whole number"),
    ('base_lr=1e39', r"base_lr: 1e39 is beyond a float32 field's range \(\|x\| <= 3.4e38\)"),
    ('random_seed=9223372036854775808', r'random_seed: 9223372036854775808 is out of the range of the field '
                                        r'\(int64: -9223372036854775808 to 9223372036854775807\)'),
])
def test_solver_values_out_of_range_are_refused(tiny, override, message):
    solver(tiny, 'range')
    res = run(['train', 'range.prototxt', '--set', override], tiny)
    assert res.returncode == 2, res.stderr
    assert re.fullmatch(r'caffe-mlic train: argument --set: %s\n' % message, res.stderr), res.stderr


def test_a_solver_value_that_reads_as_0_is_refused_and_0_is_taken():
    """base_lr=1e-46 (float32) or 1e-400 (any float) was taken as 0: the run
    trained at learning rate 0, unsaid (pass 44c n3)."""
    from caffe.proto import caffe_pb2
    from caffe_mlic.engine.solver_file import apply_overrides
    from caffe_mlic.errors import UsageError
    for override, kind, least in (('base_lr=1e-46', 'float32', '1.4e-45'), ('weight_decay=-1E-400', 'float32',
                                                                           '1.4e-45'),
                                  ('delta=0.00001e-320', 'float32', '1.4e-45')):
        with pytest.raises(UsageError) as e:
            apply_overrides(caffe_pb2.SolverParameter(), [override])
        field, _, text = override.partition('=')
        assert str(e.value) == '%s: %s is not 0 but reads as 0 (a %s field holds |x| >= %s or 0): give 0, or a ' \
                               'larger value' % (field, text, kind, least)
    param = caffe_pb2.SolverParameter()
    apply_overrides(param, ['base_lr=0', 'weight_decay=0.0e-400', 'momentum=1.5e-45', 'delta=-0'])
    assert (param.base_lr, param.weight_decay, param.delta) == (0, 0, 0) and param.momentum > 0


def test_a_solver_file_value_that_reads_as_0_is_refused_naming_its_line(tiny):
    """base_lr: 1e-46 in the file trained at learning rate 0, unsaid, where
    --set base_lr=1e-46 was refused (pass 45c M1)."""
    path = solver(tiny, 'tiny_lr')
    text = open(path).read()
    assert 'base_lr: 0.001' in text
    open(path, 'w').write(text.replace('base_lr: 0.001', 'base_lr: 1e-46  # too small'))
    problems = solver_problems(path)
    assert problems is not None and re.search(r'tiny_lr.prototxt:\d+: base_lr: base_lr 1e-46 is not 0 but reads as 0 '
                                              r'\(a float32 field holds \|x\| >= 1.4e-45 or 0\): give 0, or a '
                                              r'larger value', problems[1]), problems
    open(path, 'w').write(text.replace('base_lr: 0.001', 'base_lr: 0.0e-3'))
    assert solver_problems(path) is None


def test_a_momentum_out_of_range_in_the_file_names_its_line(tiny):
    path = solver(tiny, 'range_file', momentum=1.0)
    res = run(['train', path], tiny)
    assert res.returncode == 1
    assert re.fullmatch(r'caffe-mlic train: .*range_file.prototxt:\d+: momentum: momentum must be in '
                        r'\[0, 1\), got 1\n', res.stderr), res.stderr
    # a value beyond float32 reads as inf: said so ("got inf" alone puzzled: pass 39b m3)
    text = open(path).read().replace('base_lr: 0.001', 'base_lr: 1e39')
    assert 'base_lr: 1e39' in text
    open(path, 'w').write(text.replace('momentum: 1.0', 'momentum: 0.9').replace('momentum: 1\n', 'momentum: 0.9\n'))
    res = run(['train', path], tiny)
    assert res.returncode == 1 and res.stderr.endswith(
        'base_lr: base_lr must be >= 0, got inf (a float field holds |x| <= 3.4e38: a larger value reads as inf)\n'), \
        res.stderr


def solver_problems(path, overrides=(), test_nets=False):
    """The problems SolverFile reports for ``path`` with ``overrides``: (the
    error's class name, its text), or None when it is accepted."""
    from caffe_mlic.engine.solver_file import SolverFile
    from caffe_mlic.errors import InputError, UsageError
    try:
        SolverFile(path, os.path.join(os.path.dirname(path), 'runs', 'x'), overrides, test_nets=test_nets)
    except (InputError, UsageError) as e:
        return type(e).__name__, str(e)
    return None


@pytest.mark.parametrize('overrides, expected', [
    (['regularization_type=L3'], ('UsageError', 'regularization_type must be "L1" or "L2" (Caffe aborts on any '
                                  'other: "Unknown regularization type"), got \'L3\'')),
    (['regularization_type=l2'], ('UsageError', 'regularization_type must be "L1" or "L2" (Caffe aborts on any '
                                  'other: "Unknown regularization type"), got \'l2\'')),
    (['type=RMSProp'], ('InputError', 'momentum must be 0 for RMSProp (Caffe: "Momentum cannot be used with '
                                      'RMSProp"; it aborts), got 0.9; the type is set by --set: add --set momentum=0')),
    (['type=AdaGrad'], ('InputError', 'momentum must be 0 for AdaGrad (Caffe: "Momentum cannot be used with '
                                      'AdaGrad"; it aborts), got 0.9; the type is set by --set')),
    (['solver_type=ADAGRAD'], ('InputError', 'momentum must be 0 for AdaGrad')),      # the deprecated enum
    (['solver_type=RMSPROP', 'momentum=0.5'], ('UsageError', 'momentum must be 0 for RMSProp (Caffe: '
                                                             '"Momentum cannot be used with RMSProp"; it '
                                                             'aborts), got 0.5')),
    (['type=Adam', 'solver_type=ADAGRAD'], ('UsageError', 'the solver gives both solver_type: ADAGRAD (the '
                                                          'deprecated enum) and type: "Adam": Caffe takes one '
                                                          '(it aborts); keep type')),
    (['type=RMSProp', 'momentum=0', 'rms_decay=1'], ('UsageError', 'rms_decay must be in [0, 1), got 1')),
    # float32, as Caffe reads it: 0.99999999 is 1 (its CHECK rms_decay < 1 fails)
    (['type=RMSProp', 'momentum=0', 'rms_decay=0.99999999'], ('UsageError', 'rms_decay must be in [0, 1), got 1')),
    (['type=RMSProp', 'momentum=0', 'rms_decay=-0.5'], ('UsageError', 'rms_decay must be in [0, 1), got -0.5')),
    (['type=Adam', 'delta=0'], ('UsageError', 'delta must be > 0 for Adam (it keeps the denominator of the '
                                              'update from 0: a weight whose gradient is 0 would get 0/0, '
                                              'NaN), got 0')),
    (['type=AdaDelta', 'delta=0'], ('UsageError', 'delta must be > 0 for AdaDelta')),
    (['iter_size=100000000'], ('UsageError', 'iter_size must be from 1 to 1024 (each iteration runs iter_size '
                                             'forward/backward passes inside Caffe, and Ctrl-C / SIGTERM wait '
                                             'for the iteration to end), got 100000000')),
    (['iter_size=2147483647'], ('UsageError', 'iter_size must be from 1 to 1024')),
    (['iter_size=1025'], ('UsageError', 'iter_size must be from 1 to 1024')),
    (['test_state=x'], ('UsageError', 'expected FIELD=VALUE with a scalar SolverParameter field')),
    # 0 in float32, as Caffe reads it: taken once, now said (a value meant as not 0: pass 44c n3)
    (['type=RMSProp', 'momentum=1e-50'], ('UsageError', 'momentum: 1e-50 is not 0 but reads as 0')),
    # what Caffe accepts is accepted
    (['regularization_type=L1'], None),
    (['iter_size=1024'], None),
    (['type=RMSProp', 'momentum=0', 'rms_decay=0.98'], None),
    (['type=AdaGrad', 'momentum=0', 'delta=1e-6'], None),
    (['type=SGD', 'delta=0'], None),                       # SGD never reads delta
    (['type=AdaDelta', 'momentum=0.95'], None),            # AdaDelta's decay rate
])
def test_solver_values_caffe_aborts_on_are_refused_before_it_starts(tiny, overrides, expected):
    """Caffe aborted (rc 134) on regularization_type L3 (at the first
    update, with run.json left "running"), on AdaGrad / RMSProp with a
    momentum (building the solver, a folder holding only .lock left), on
    rms_decay 1; iter_size 100000000 was taken and its first iteration never
    ended (signals wait for it)."""
    path = solver(tiny, 'caffe_values', max_iter=2)
    found = solver_problems(path, overrides)
    if expected is None:
        assert found is None, found
    else:
        assert found is not None and found[0] == expected[0] and expected[1] in found[1], found


def test_solver_values_in_the_file_that_caffe_aborts_on_name_their_lines(tiny):
    path = solver(tiny, 'caffe_values_file', max_iter=2, type='RMSProp', regularization_type='L3',
                  rms_decay=1.0, iter_size=5000)
    kind, text = solver_problems(path)
    assert kind == 'InputError'
    lines = text.splitlines()
    assert lines[0] == '4 problems in %s:' % path, text
    assert sorted(re.sub(r'^  .*caffe_values_file.prototxt:\d+: ', '', line) for line in lines[1:]) == sorted([
        'iter_size: iter_size must be from 1 to 1024 (each iteration runs iter_size forward/backward passes '
        'inside Caffe, and Ctrl-C / SIGTERM wait for the iteration to end), got 5000',
        'momentum: momentum must be 0 for RMSProp (Caffe: "Momentum cannot be used with RMSProp"; it aborts), '
        'got 0.9',
        'regularization_type: regularization_type must be "L1" or "L2" (Caffe aborts on any other: "Unknown '
        'regularization type"), got \'L3\'',
        'rms_decay: rms_decay must be in [0, 1), got 1']), text
    # both types given: Caffe's UpgradeSolverType aborts; nothing is checked against either
    path = solver(tiny, 'caffe_values_both', max_iter=2, type='Adam', solver_type=2)
    kind, text = solver_problems(path)
    assert kind == 'InputError' and re.fullmatch(
        r'.*caffe_values_both.prototxt:\d+: solver_type: the solver gives both solver_type: ADAGRAD \(the '
        r'deprecated enum\) and type: "Adam": Caffe takes one \(it aborts\); keep type', text), text


def test_the_binarys_testing_values_are_checked_only_for_the_binary(tiny):
    """caffe train CHECKs test_interval > 0 when the solver tests and one
    test_state per test net (rc 134); `train` tests on its own schedule (a
    test_interval of 0: no periodic tests) and builds one TEST net."""
    path = solver(tiny, 'binary_tests', max_iter=2, test_iter=[1], test_interval=0)
    assert solver_problems(path) is None
    kind, text = solver_problems(path, test_nets=True)
    assert kind == 'InputError' and re.fullmatch(
        r'.*binary_tests.prototxt:\d+: test_interval: the solver tests \(1 test_iter\) but test_interval '
        r'is 0: Caffe needs test_interval > 0 then \(it aborts\); give one, or remove test_iter', text), text
    assert solver_problems(path, ['test_interval=5'], test_nets=True) is None
    assert solver_problems(path, ['test_interval=5', 'eval_type=segmentation'], test_nets=True) == (
        'UsageError', "unknown eval_type 'segmentation'; Caffe knows classification, detection (it aborts at "
                      "the first test on another)")
    assert solver_problems(path, ['test_interval=5', 'eval_type=detection', 'ap_version=x'], test_nets=True)[1] \
        .startswith("unknown ap_version 'x'; Caffe knows 11point, MaxIntegral, Integral")
    with open(path, 'a') as f:
        f.write('test_state { stage: "a" }\ntest_state { stage: "b" }\n')
    kind, text = solver_problems(path, ['test_interval=5'], test_nets=True)
    assert kind == 'InputError' and 'test_state: the solver gives 2 test_state for 1 test net(s) (one per ' \
        'test_iter): Caffe needs one per test net, or none (it aborts)' in text, text
    kind, text = solver_problems(path)
    assert kind == 'InputError' and "test_state: train builds one TEST net (the net's TEST phase) but the " \
        'solver gives 2 test_state: Caffe needs one per test net (it aborts); keep one, or none' in text, text
    # one test_state: kept for train's TEST net, dropped when there is none to test
    from caffe_mlic.engine.solver_file import SolverFile
    path = solver(tiny, 'binary_tests_one', max_iter=2)
    with open(path, 'a') as f:
        f.write('test_state { stage: "a" }\n')
    sf = SolverFile(path, str(tiny / 'runs' / 'x'))
    assert len(sf.runtime_param(True).test_state) == 1
    assert len(sf.runtime_param(False).test_state) == 0 and len(sf.runtime_param(False).test_iter) == 0


def test_a_solver_caffe_would_abort_on_leaves_no_run_folder_nor_caffe_abort(tiny):
    """End to end: the abort left trx/run.json "running" with a .lock (--set
    regularization_type=L3, at the first update) or a folder holding only
    .lock (RMSProp with momentum in the file); the binary's wrapper aborted
    too. Now one line before anything is made; RMSProp with momentum 0 and
    L1 weight decay trains."""
    path = solver(tiny, 'rms', max_iter=2, type='RMSProp')
    res = run(['train', 'rms.prototxt', '--run-dir', 'runs/rms'], tiny)
    assert res.returncode == 1 and 'Check failed' not in res.stderr, res.stderr
    assert re.fullmatch(r'caffe-mlic train: rms.prototxt:\d+: momentum: momentum must be 0 for RMSProp '
                        r'\(Caffe: "Momentum cannot be used with RMSProp"; it aborts\), got 0.9\n',
                        res.stderr), res.stderr
    assert not (tiny / 'runs' / 'rms').exists()
    res = run(['caffe', 'train', '-solver', 'rms.prototxt'], tiny)
    assert res.returncode == 1 and 'Check failed' not in res.stderr, res.stderr
    assert 'momentum must be 0 for RMSProp' in res.stderr and res.stderr.count('\n') == 1, res.stderr
    for override in ('regularization_type=L3', 'iter_size=100000000'):
        res = run(['train', 'rms.prototxt', '--run-dir', 'runs/rms', '--set', 'type=SGD', '--set', override],
                  tiny)
        assert res.returncode == 2 and re.fullmatch(r'caffe-mlic train: argument --set: %s must be .*\n'
                                                    % override.split('=')[0], res.stderr), res.stderr
        assert not (tiny / 'runs' / 'rms').exists()
    res = run(['train', path, '--run-dir', 'runs/rms', '--set', 'momentum=0', '--set', 'regularization_type=L1'],
              tiny)
    assert res.returncode == 0, res.stderr
    assert run_json(tiny / 'runs' / 'rms')['status'] == 'finished'
    assert not (tiny / 'runs' / 'rms' / '.lock').exists()


# Caffe CHECKs that check_net does not make: MVN's legacy accessors on a
# 5-axis blob (at setup), BatchReindex's index bound (in the forward pass)
CHECKED_BY_CAFFE_ONLY = {
    'setup': """
layer { name: "in" type: "DummyData" top: "x" dummy_data_param { shape { dim: 2 dim: 2 dim: 2 dim: 3 dim: 3 } } }
layer { name: "m" type: "MVN" bottom: "x" top: "m" }
layer { name: "l" type: "Reduction" bottom: "m" top: "l" loss_weight: 1 }
""",
    'forward': """
layer { name: "in" type: "DummyData" top: "x" top: "i" dummy_data_param {
  shape { dim: 2 dim: 3 } shape { dim: 2 }
  data_filler { type: "constant" value: 1 } data_filler { type: "constant" value: 5 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "r" type: "BatchReindex" bottom: "fc" bottom: "i" top: "r" }
layer { name: "l" type: "Reduction" bottom: "r" top: "l" loss_weight: 1 }
"""}


@pytest.mark.parametrize('when', list(CHECKED_BY_CAFFE_ONLY))
def test_a_caffe_check_we_do_not_make_ends_the_run_in_one_line_not_an_abort(tiny, when):
    """Caffe aborted (rc 134, glog's stack trace), leaving a run folder with
    only .lock, or run.json "running". Now glog's "Check failed" line, then
    one line of ours, rc 1; no run folder when nothing was trained, else
    run.json "failed" and no lock."""
    (tiny / ('check_%s.prototxt' % when)).write_text(CHECKED_BY_CAFFE_ONLY[when])
    netutil.write_solver(tiny / ('check_%s_solver.prototxt' % when), str(tiny / ('check_%s.prototxt' % when)),
                         base_lr=0.1, max_iter=3, lr_policy='fixed', snapshot_prefix='snap_check/w')
    run_dir = tiny / 'runs' / ('check_%s' % when)
    res = run(['train', 'check_%s_solver.prototxt' % when, '--run-dir', run_dir], tiny)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == 'caffe-mlic train: Caffe stopped on the check above, a setting or input it refuses', lines
    assert 'Check failed' in lines[-3] and not any(line.startswith('    @ ') for line in lines), lines
    if when == 'setup':
        assert not run_dir.exists() and not (tiny / 'snap_check').exists()     # nor the snapshot folder made
    else:
        assert run_json(run_dir)['status'] == 'failed', run_json(run_dir)
        assert run_json(run_dir)['error'] == 'Caffe stopped on a check'
        assert not (run_dir / '.lock').exists()


def test_a_caffe_check_on_one_of_its_threads_ends_the_run_not_a_hang(tiny):
    """A Data layer whose LMDB cannot be opened fails its CHECK on Caffe's reader
    thread while the main thread, holding the GIL, waits for it: a Python
    failure function waited for the GIL for ever (SIGTERM did nothing; pass
    10, F2). Now the C failure function ends the process from that thread."""
    # a folder with a data.mdb that is no database: our check passes it, Caffe's reader thread CHECKs
    (tiny / 'empty_lmdb').mkdir(exist_ok=True)
    (tiny / 'empty_lmdb' / 'data.mdb').write_bytes(b'\0' * 16)
    (tiny / 'lmdb.prototxt').write_text(
        'layer { name: "d" type: "Data" top: "x" top: "y" data_param { source: "empty_lmdb" backend: LMDB '
        'batch_size: 2 } }\nlayer { name: "l" type: "Reduction" bottom: "x" top: "l" loss_weight: 1 }\n'
        'layer { name: "s" type: "Silence" bottom: "y" }\n')
    netutil.write_solver(tiny / 'lmdb_solver.prototxt', str(tiny / 'lmdb.prototxt'), base_lr=0.1, max_iter=2,
                         lr_policy='fixed', snapshot_prefix='snap_lmdb/w')
    res = run(['train', 'lmdb_solver.prototxt', '--run-dir', tiny / 'runs' / 'lmdb'], tiny, timeout=120)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines[-1] == ('caffe-mlic: Caffe stopped on the check above (on one of its threads), a setting or '
                         'input it refuses'), lines
    assert any('Check failed: mdb_status == 0' in line for line in lines), lines


def test_a_run_sweeps_the_partial_snapshots_of_dead_runs_only(tiny, monkeypatch):
    """Two runs may share a snapshot prefix: the second removed every
    .PREFIX.partial_iter_* while the first was writing its snapshot there,
    and the first ended with none (pass 10, F4). Staged snapshots are named
    after their run's process; a run sweeps those of runs that are gone."""
    from caffe_mlic.engine.solver_file import SolverFile
    from caffe_mlic.processes import owned_name_prefix
    path = solver(tiny, 'shared', max_iter=1, snapshot_prefix='snap_shared/w')
    monkeypatch.chdir(tiny)         # (a prefix is relative to the current folder)
    sf = SolverFile(path, str(tiny / 'runs' / 'shared'))
    folder = tiny / 'snap_shared'
    folder.mkdir(exist_ok=True)
    live = owned_name_prefix('.w.partial.') + 'run_iter_2.caffemodel'        # a live run's (ours)
    dead = '.w.partial.%d-5-run_iter_2.solverstate' % (2 ** 22 + 4321)      # a run that is gone
    old = '.w.partial_iter_3.caffemodel'                                   # the pid-less naming of before
    for name in (live, dead, old, 'w_iter_1.caffemodel'):
        (folder / name).write_text('')
    assert os.path.basename(sf.staging_prefix).startswith(owned_name_prefix('.w.partial.'))
    snapshots.check_snapshot_folder(sf)
    assert sorted(os.listdir(folder)) == sorted([live, 'w_iter_1.caffemodel'])


# ---------------------------------------------------------------- signals and locks


@pytest.mark.parametrize('signum, code', [(signal.SIGHUP, 129)])
def test_sighup_snapshots_like_sigterm(tiny, signum, code):
    solver(tiny, 'hup')
    run_dir = tiny / 'runs' / 'hup'
    proc = start(['train', 'hup.prototxt', '--run-dir', run_dir], tiny, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
    wait_for(lambda: train_rows(run_dir) >= 15, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    m = re.fullmatch(r'caffe-mlic train: stopped by SIGHUP at iteration (\d+), snapshot (\S+); '
                     r'resume with: .*\n', err)
    assert m and (tiny / m.group(2)).exists(), err
    assert run_json(run_dir)['status'] == 'interrupted by SIGHUP'


def test_a_closed_stdout_snapshots_like_sigterm(tiny):
    """`train ... | head -1`: the reader goes after the first test line."""
    solver(tiny, 'pipe')
    run_dir = tiny / 'runs' / 'pipe'
    proc = start(['train', 'pipe.prototxt', '--run-dir', run_dir], tiny, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith('iteration 10: test')
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGPIPE, err
    m = re.fullmatch(r'caffe-mlic train: stopped by a closed stdout at iteration (\d+), snapshot (\S+); '
                     r'resume with: .*\n', err)
    assert m and (tiny / m.group(2)).exists() and int(m.group(1)) < 2000, err
    assert run_json(run_dir)['status'] == 'interrupted by a closed stdout'


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_the_nets_are_built_is_acted_on(tiny, signum):
    """The signal arrives while the data workers spawn: the run stops once
    the nets are built, says so, and leaves no empty run folder; the group's
    Ctrl-C does not kill the workers under it (nor print their tracebacks)."""
    solver(tiny, 'setup', net='kd/student_workers')
    run_dir = tiny / 'runs' / ('setup_%d' % signum)
    proc = start(['train', 'setup.prototxt', '--run-dir', run_dir], tiny, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE, start_new_session=True)
    wait_for(lambda: (run_dir / '.lock').exists(), proc)
    os.killpg(proc.pid, signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert re.fullmatch(r'caffe-mlic train: stopped by %s while the nets were built, before training '
                        r'from iteration 0; nothing new to snapshot: run the same command again\n'
                        % signal.Signals(signum).name, err), err
    assert not run_dir.exists()


def test_a_ctrl_c_a_library_swallowed_before_train_set_up_is_acted_on(tiny, monkeypatch, capsys):
    """A Ctrl-C raised inside a library's catch-all before train records
    signals itself (pass 39b m1's class): the run stops once its nets are
    built, as for a Ctrl-C while they are built, not trained to the end."""
    from caffe_mlic import cli, processes
    from tests.commands.test_command_faults import _swallowed_ctrl_c
    solver(tiny, 'swallowed')
    hold = processes.signals_held

    def after_a_swallowed_ctrl_c():
        if sys._getframe(1).f_globals['__name__'] == 'caffe_mlic.commands.train':     # (as train starts)
            _swallowed_ctrl_c()
        return hold()
    monkeypatch.setattr(processes, 'signals_held', after_a_swallowed_ctrl_c)
    monkeypatch.chdir(tiny)
    run_dir = tiny / 'runs' / 'swallowed'
    assert cli.main(['train', 'swallowed.prototxt', '--run-dir', str(run_dir)]) == 130
    assert capsys.readouterr().err == ('caffe-mlic train: stopped by SIGINT while the nets were built, before '
                                       'training from iteration 0; nothing new to snapshot: run the same command '
                                       'again\n')
    assert not run_dir.exists()


def test_a_sigkill_while_the_nets_are_built_leaves_no_file_in_the_temp_folder(tiny, tmp_path):
    """The solver Caffe reads is an anonymous memory file: nothing of it
    outlives a SIGKILL (it was /tmp/caffe_mlic_*.prototxt)."""
    solver(tiny, 'kill9', net='kd/student_workers')
    run_dir = tiny / 'runs' / 'kill9'
    temp = tmp_path / 'temp'
    temp.mkdir()
    env = dict(ENV, TMPDIR=str(temp))
    proc = subprocess.Popen(CLI + ['train', 'kill9.prototxt', '--run-dir', str(run_dir)], cwd=tiny, text=True,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for(lambda: (run_dir / '.lock').exists(), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert not list(temp.iterdir())


def test_a_sigkill_after_the_workers_started_leaves_nothing_past_the_next_run(tiny, tmp_path):
    """multiprocessing's pymp-* folder (the socket that hands the workers
    their descriptors) stayed after a SIGKILL, and no later run removed it
    (pass 31 S4): it is one of our owned folders, swept by the next run."""
    solver(tiny, 'k9w', net='kd/student_workers', snapshot=5)
    # (a short temp folder: a socket's path has at most 107 bytes, and pytest's folders are deep)
    temp = pathlib.Path(tempfile.mkdtemp(prefix='k9w'))
    try:
        env = dict(ENV, TMPDIR=str(temp))
        proc = subprocess.Popen(CLI + ['train', 'k9w.prototxt', '--run-dir', 'runs/k9w'], cwd=tiny, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for((tiny / 'snap_k9w' / 'w_iter_5.solverstate').exists, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        left = [p.name for p in temp.iterdir()]
        assert len(left) == 1 and left[0].startswith('pymp-cm-%d-' % proc.pid), left
        res = subprocess.run(CLI + ['train', 'k9w.prototxt', '--run-dir', 'runs/k9w', '--set', 'max_iter=7',
                                    '--resume', 'auto'], cwd=tiny, env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, res.stderr
        assert not list(temp.iterdir())
        # a temp folder too deep for our longer name: multiprocessing's own, and the workers start
        deep = temp / ('d' * 45)
        deep.mkdir()
        res = subprocess.run(CLI + ['train', 'k9w.prototxt', '--run-dir', 'runs/k9w', '--set', 'max_iter=9',
                                    '--resume', 'auto'], cwd=tiny, env=dict(env, TMPDIR=str(deep)),
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        # too deep for multiprocessing's own socket too: TMPDIR named (it was "set CAFFE_MLIC_PYTHON ...")
        deeper = deep / ('d' * 40)
        deeper.mkdir()
        res = subprocess.run(CLI + ['train', 'k9w.prototxt', '--run-dir', 'runs/k9w', '--set', 'max_iter=11',
                                    '--resume', 'auto'], cwd=tiny, env=dict(env, TMPDIR=str(deeper)),
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 1 and 'the temp folder %s is too deep for the socket' % deeper in res.stderr \
            and 'set TMPDIR to a shorter folder' in res.stderr, res.stderr
    finally:
        shutil.rmtree(str(temp))


def test_a_signal_while_a_resumed_runs_nets_are_built_names_the_states_iteration(tiny):
    """It said "before training from iteration 0 (.../w_iter_5.solverstate)"
    (pass 31 M1): the solver's iteration before the state is restored."""
    solver(tiny, 'rsig', net='kd/student_workers', max_iter=5, snapshot=5)
    run_dir = tiny / 'runs' / 'rsig'
    assert run(['train', 'rsig.prototxt', '--run-dir', run_dir], tiny).returncode == 0
    proc = start(['train', 'rsig.prototxt', '--run-dir', run_dir, '--set', 'max_iter=2000', '--resume', 'auto'],
                 tiny, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    wait_for(lambda: (run_dir / '.lock').exists(), proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err == (
        'caffe-mlic train: stopped by SIGINT while the nets were built, before training from iteration 5 '
        '(snap_rsig/w_iter_5.solverstate); nothing new to snapshot: run the same command again\n'), err


def test_a_run_folder_renamed_while_the_nets_are_built_is_followed(tiny):
    """The rename was followed before run.json's fields existed: a
    traceback, and the run gone (pass 31 S2)."""
    solver(tiny, 'mvb', net='kd/student_workers', max_iter=5, snapshot=5)
    run_dir = tiny / 'runs' / 'mvb'
    proc = start(['train', 'mvb.prototxt', '--run-dir', run_dir], tiny, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
    wait_for(lambda: (run_dir / '.lock').exists(), proc)
    os.rename(str(run_dir), str(tiny / 'runs' / 'mvb2'))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and 'Traceback' not in err, err
    assert 'the run folder %s was moved to %s while this run trained' % (run_dir, tiny / 'runs' / 'mvb2') in err
    info = run_json(tiny / 'runs' / 'mvb2')
    assert info['status'] == 'finished' and info['run_dir'] == str(tiny / 'runs' / 'mvb2')
    assert not run_dir.exists() and (tiny / 'runs' / 'mvb2' / 'log.csv').is_file()


def test_a_closed_stdout_from_the_start_trains_quietly(tiny):
    """`train ... >&-`: no sys.stdout in Python; the run goes on, its
    output to nowhere (it was a traceback at the first line, the run lost)."""
    solver(tiny, 'closed', max_iter=4, snapshot=2)
    res = subprocess.run(['bash', '-c', 'exec "$@" >&-', 'train'] + CLI +
                         ['train', 'closed.prototxt', '--run-dir', 'runs/closed'], cwd=tiny, env=ENV,
                         capture_output=False, stderr=subprocess.PIPE, text=True, timeout=300)
    assert res.returncode == 0 and res.stderr == '', res.stderr
    assert (tiny / 'snap_closed' / 'w_iter_4.caffemodel').is_file()
    assert run_json(tiny / 'runs' / 'closed')['status'] == 'finished'


def test_one_run_at_a_time_in_a_run_folder(tiny):
    solver(tiny, 'lock')
    run_dir = tiny / 'runs' / 'lock'
    first = start(['train', 'lock.prototxt', '--run-dir', run_dir], tiny, stdout=subprocess.DEVNULL,
                  stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: train_rows(run_dir) >= 2, first)
        res = run(['train', 'lock.prototxt', '--run-dir', run_dir, '--set', 'snapshot_prefix=snap_lock2/w'],
                  tiny)
        assert res.returncode == 1
        assert res.stderr == ('caffe-mlic train: another training run (pid %d) is writing %s: wait for it '
                              'to end, or give this one another --run-dir\n' % (first.pid, run_dir))
        assert run_json(run_dir)['status'] == 'running'
    finally:
        first.terminate()
        first.wait(timeout=60)
    assert run_json(run_dir)['status'] == 'interrupted by SIGTERM'


def test_a_run_folder_that_holds_the_solver_never_overwrites_it(tiny):
    """The run folder keeps the solver as run; with --set that would replace
    the solver read (the next run would silently use the changed value)."""
    run_dir = tiny / 'runs' / 'own'
    run_dir.mkdir(parents=True)
    netutil.write_solver(run_dir / 'solver.prototxt', str(tiny / 'nets' / 'kd' / 'student_baseline.prototxt'),
                         base_lr=0.001, max_iter=2, snapshot_prefix=str(tiny / 'snap_own' / 'w'))
    before = (run_dir / 'solver.prototxt').read_text()
    res = run(['train', run_dir / 'solver.prototxt', '--run-dir', run_dir, '--set', 'base_lr=0.01'], tiny)
    assert res.returncode == 2 and 'is an input of this command' in res.stderr, res.stderr
    assert (run_dir / 'solver.prototxt').read_text() == before
    res = run(['train', run_dir / 'solver.prototxt', '--run-dir', run_dir], tiny)    # no --set: fine
    assert res.returncode == 0, res.stderr
    assert (run_dir / 'solver.prototxt').read_text() == before


def test_a_ctrl_c_while_workers_start_prints_no_worker_traceback(tiny):
    """SIGINT to the group while the data workers import (they start with
    SIGINT blocked, then ignore it): only the one-line message, at any moment."""
    solver(tiny, 'ctrlc_start', net='kd/student_workers')
    for k, delay in enumerate((0.6, 1.2, 1.8, 2.6, 3.5)):
        run_dir = tiny / 'runs' / ('ctrlc_start_%d' % k)
        proc = start(['train', 'ctrlc_start.prototxt', '--run-dir', run_dir,
                      '--set', 'snapshot_prefix=snap_ctrlc_start_%d/w' % k], tiny,
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        # (before the command has started: Python's own "interrupted", and
        # maybe the conventional death by SIGINT)
        assert proc.returncode == 130 or (proc.returncode == -signal.SIGINT and 'interrupted' in err), err
        assert re.fullmatch(r'caffe-mlic( train)?: (interrupted|stopped by SIGINT (while the nets were built|'
                            r'at iteration \d+).*)\n', err), (delay, err)


def test_a_scalar_score_blob_is_refused_in_one_line(tiny):
    solver(tiny, 'scalar', max_iter=2)
    res = run(['train', 'scalar.prototxt', '--run-dir', 'runs/scalar', '--score-blob', 'loss_sig'], tiny)
    assert res.returncode == 2, res.stderr
    assert re.fullmatch(r'caffe-mlic train: argument --score-blob: blob loss_sig is \(\) but the labels '
                        r'\w+ are .*: not scores of the classes\n', res.stderr), res.stderr


def test_a_gpu_solver_is_not_trained_on_the_cpu_in_silence(tiny):
    """solver_mode: GPU trains on its device_id, as the binary reads it: on
    the CPU build that is refused, not run on the CPU."""
    from caffe_mlic.caffe import env as caffe_env
    if caffe_env.build_kind() != caffe_env.CPU:
        pytest.skip('the active Caffe is not the CPU build')
    solver(tiny, 'gpu', max_iter=2, solver_mode='GPU')
    res = run(['train', 'gpu.prototxt', '--run-dir', 'runs/gpu'], tiny)
    assert res.returncode == 1 and 'is a CPU-only build, it cannot use a GPU' in res.stderr, res.stderr


def test_resume_auto_never_takes_another_runs_snapshot(tiny):
    """Run A leaves snapshots under a prefix; run B starts over in the same
    run folder and prefix and stops earlier: --resume auto continues B, not
    A's newer iteration (the log mixed the two runs)."""
    solver(tiny, 'chain', max_iter=30, snapshot=10)
    res = run(['train', 'chain.prototxt', '--run-dir', 'runs/chain', '--set', 'max_iter=20'], tiny)
    assert res.returncode == 0, res.stderr            # run A: snapshots 10 and 20
    time.sleep(3)
    res = run(['train', 'chain.prototxt', '--run-dir', 'runs/chain', '--set', 'max_iter=10'], tiny)
    assert res.returncode == 0, res.stderr            # run B, started over: its snapshot 10
    res = run(['train', 'chain.prototxt', '--run-dir', 'runs/chain', '--resume', 'auto'], tiny)
    assert res.returncode == 0, res.stderr
    assert "skipping snap_chain/w_iter_20.solverstate: written before this run folder's run began" in res.stderr
    assert 'resuming from snap_chain/w_iter_10.solverstate at iteration 10' in res.stderr, res.stderr
    iterations = [r['iteration'] for r in (json.loads(line) for line in
                                           (tiny / 'runs' / 'chain' / 'log.jsonl').read_text().splitlines())
                  if r['phase'] == 'train']
    assert iterations == list(range(30)), iterations


# ---------------------------------------------------------------- solver files Caffe aborts on


def test_hdf5_snapshots_of_a_distillation_net_with_repeated_layer_names_are_refused_first(tiny):
    """train_stage1 holds the teacher's and the student's layers, some under
    one name (relu1_1, ...): Caffe's HDF5 writer aborted ("Object already
    exists", layer_data_hid >= 0) leaving a partial .caffemodel.h5, run.json
    "running" and a .lock. Refused before the nets are built, naming them."""
    net = prototxt.read_net(str(tiny / 'nets' / 'kd' / 'train_stage1.prototxt'))
    names = [layer.name for layer in net.layer if prototxt.in_phase(layer, 'TRAIN')]
    repeated = [name for name in dict.fromkeys(names) if names.count(name) > 1]
    assert repeated, 'the tiny stage-1 net repeats no layer name'
    solver(tiny, 'dup', net='kd/train_stage1', max_iter=2, snapshot=1, snapshot_format=0)   # HDF5
    res = run(['train', 'dup.prototxt', '--run-dir', 'runs/dup'], tiny)
    assert res.returncode == 1 and 'Check failed' not in res.stderr, res.stderr
    line = res.stderr.strip()
    assert '\n' not in line and line.startswith('caffe-mlic train: dup.prototxt:'), line
    assert re.search(r'dup.prototxt:\d+: snapshot_format: HDF5 snapshots cannot be written', line), line
    assert 'given more than once in one phase, e.g. ' in line and repeated[0] in line, line
    assert not (tiny / 'runs' / 'dup').exists() and not (tiny / 'snap_dup').exists() or \
        not list((tiny / 'snap_dup').glob('*'))


def test_a_solver_with_two_train_nets_or_a_test_net_is_refused_in_one_line(tiny):
    """net: with net_param {} made Caffe CHECK num_train_nets <= 1 (rc 134, a
    run folder holding only .lock); net: with test_net: and no test_iter
    trained, ignoring test_net (and the caffe binary aborts on it)."""
    path = solver(tiny, 'twonets', max_iter=2)
    with open(path, 'a') as f:
        f.write('net_param { name: "x" }\n')
    res = run(['train', 'twonets.prototxt', '--run-dir', 'runs/twonets'], tiny)
    assert res.returncode == 1 and 'Check failed' not in res.stderr, res.stderr
    assert re.fullmatch(r'caffe-mlic train: twonets.prototxt:\d+: net_param: the solver gives net and '
                        r'net_param: Caffe takes exactly one train net \(it aborts\); keep one\n',
                        res.stderr), res.stderr
    assert not (tiny / 'runs' / 'twonets').exists()
    path = solver(tiny, 'testnet', max_iter=2, test_iter=[])
    with open(path, 'a') as f:
        f.write('test_net: "%s"\n' % (tiny / 'nets' / 'kd' / 'student_baseline.prototxt'))
    res = run(['train', 'testnet.prototxt', '--run-dir', 'runs/testnet'], tiny)
    assert res.returncode == 1 and res.stderr.count('\n') == 3, res.stderr       # heading + 2 problems
    assert re.search(r'testnet.prototxt:\d+: test_net: the solver gives 1 test net\(s\) .* but 0 test_iter',
                     res.stderr), res.stderr
    assert 'would ignore test_net / test_net_param' in res.stderr
    assert not (tiny / 'runs' / 'testnet').exists()
    # the caffe binary's wrapper reads the solver through the same checks
    res = run(['caffe', 'train', '-solver', 'twonets.prototxt'], tiny)
    assert res.returncode == 1 and 'keep one' in res.stderr and 'Check failed' not in res.stderr, res.stderr
    res = run(['caffe', 'train', '-solver', 'testnet.prototxt'], tiny)
    assert res.returncode == 1 and 'but 0 test_iter' in res.stderr, res.stderr
    assert 'would ignore' not in res.stderr           # the binary does use a test_net with its test_iter


def _pycaffe_solver_fate(folder, solver_file):
    """How pycaffe ends building ``solver_file`` (as `train` does) in a
    forked child: 'ok', or the signal's name (SIGABRT: a CHECK failed)."""
    import caffe

    def work():
        os.chdir(folder)
        caffe.set_mode_cpu()
        caffe.get_solver(solver_file).step(1)
    return fate_in_child(work)


def test_train_checks_the_nets_it_builds_with_the_solvers_states(tmp_path):
    """`train` builds the TRAIN net with the solver's train_state (pycaffe
    keeps its level, unlike the binary) and a TEST net only where the net
    has a data layer of ours to test: data layers of a train_state stage
    were refused (pass 12, S1), and a TEST-only Data layer whose LMDB does
    not exist yet (S3). A solver form it cannot run (train_net) is refused
    naming the command that runs it."""
    from tests.commands.test_caffe_faults import _DUMMY, _HEAD, _LRN4, _solver
    (tmp_path / 'stage.prototxt').write_text(_DUMMY % ('da', 'include { stage: "a" }') +
                                             _DUMMY % ('db', 'include { stage: "b" }') + _HEAD)
    (tmp_path / 'testonly.prototxt').write_text(
        _DUMMY % ('d', 'include { phase: TRAIN }') +
        'layer { name: "dt" type: "Data" top: "data" top: "label" include { phase: TEST }\n'
        '  data_param { source: "lmdb_not_yet" batch_size: 2 backend: LMDB } }\n' + _HEAD)
    (tmp_path / 'level.prototxt').write_text(_DUMMY % ('d', '') + _LRN4 % 'include { min_level: 1 }' + _HEAD)
    for name, net, extra in (('by_state', 'stage', ('train_state { stage: "a" }',)),
                             ('untested', 'testonly', ())):
        path = _solver(tmp_path / ('%s.prototxt' % name), 'net: "%s.prototxt"' % net, *extra,
                       prefix='snap_%s/w' % name)
        assert _pycaffe_solver_fate(tmp_path, path) == 'ok'
        res = run(['train', path, '--run-dir', 'runs/' + name], tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        assert run_json(tmp_path / 'runs' / name)['status'] == 'finished'
    level = _solver(tmp_path / 'level_1.prototxt', 'net: "level.prototxt"', 'train_state { level: 1 }')
    res = run(['train', level, '--run-dir', 'runs/level'], tmp_path)
    assert res.returncode == 1 and res.stderr == "caffe-mlic train: level.prototxt: layer 'lrn': LRN: lrn_param " \
        'local_size must be odd, got 4\n', res.stderr
    assert _pycaffe_solver_fate(tmp_path, level) == 'SIGABRT'
    assert not (tmp_path / 'runs' / 'level').exists()
    train_net = _solver(tmp_path / 'train_net.prototxt', 'train_net: "stage.prototxt"', 'train_state { stage: "a" }')
    res = run(['train', train_net, '--run-dir', 'runs/train_net'], tmp_path)
    assert res.returncode == 1 and res.stderr == (
        'caffe-mlic train: train_net.prototxt:1: train_net: caffe-mlic train takes one net, net: '
        '"train_val.prototxt" (or net_param), trains its TRAIN phase and tests its TEST phase: it does not '
        'take train_net; give net:, or run this solver as it is with caffe-mlic caffe train -solver '
        'train_net.prototxt\n'), res.stderr


def test_a_solver_without_solver_mode_trains_on_the_cpu(tiny):
    """caffe.proto's default solver_mode is GPU, but Caffe only uses it when
    set (has_solver_mode): an unset one is the CPU, not refused as a GPU run."""
    path = solver(tiny, 'nomode', max_iter=2)
    text = open(path).read()
    assert 'solver_mode' in text
    with open(path, 'w') as f:
        f.write(''.join(line for line in text.splitlines(True) if 'solver_mode' not in line))
    res = run(['train', 'nomode.prototxt', '--run-dir', 'runs/nomode'], tiny)
    assert res.returncode == 0, res.stderr
    assert run_json(tiny / 'runs' / 'nomode')['status'] == 'finished'


def test_a_run_that_fails_before_it_begins_leaves_no_run_folder_nor_lock(tiny):
    """A bad --weights file, a truncated --resume state: no folder holding a
    stale .lock (and no run.json) is left; an existing run folder is left as
    it was, without a .lock."""
    solver(tiny, 'early', max_iter=2, snapshot=1)
    (tiny / 'bad.caffemodel').write_bytes(b'\x0a\xff\xff')
    res = run(['train', 'early.prototxt', '--run-dir', 'runs/early', '--weights', 'bad.caffemodel'], tiny)
    assert res.returncode == 1 and 'bad.caffemodel' in res.stderr, res.stderr
    assert not (tiny / 'runs' / 'early').exists()
    res = run(['train', 'early.prototxt', '--run-dir', 'runs/early'], tiny)
    assert res.returncode == 0, res.stderr
    before = (tiny / 'runs' / 'early' / 'run.json').read_text()
    assert not (tiny / 'runs' / 'early' / '.lock').exists()
    state = tiny / 'snap_early' / 'w_iter_2.solverstate'
    (tiny / 'cut.solverstate').write_bytes(state.read_bytes()[:20])
    res = run(['train', 'early.prototxt', '--run-dir', 'runs/early', '--resume', 'cut.solverstate'], tiny)
    assert res.returncode == 1 and 'cut.solverstate' in res.stderr, res.stderr
    assert (tiny / 'runs' / 'early' / 'run.json').read_text() == before
    assert not (tiny / 'runs' / 'early' / '.lock').exists()
    res = run(['train', 'early.prototxt', '--run-dir', 'runs/early2', '--resume', 'cut.solverstate'], tiny)
    assert res.returncode == 1 and not (tiny / 'runs' / 'early2').exists(), res.stderr
    solver(tiny, 'early_workers', net='kd/student_workers', max_iter=2)
    res = subprocess.run(CLI + ['train', 'early_workers.prototxt', '--run-dir', 'new/runs/w'], cwd=tiny,
                         capture_output=True, text=True, timeout=300, env=dict(ENV, CAFFE_MLIC_PYTHON='/bin/false'))
    assert res.returncode == 1 and 'CAFFE_MLIC_PYTHON=/bin/false' in res.stderr, res.stderr
    assert not (tiny / 'new').exists()          # neither the run folder nor the parent made for it


def test_every_problem_of_a_solver_file_is_reported_at_once_with_its_line(tiny):
    """A missing lr_policy said "unknown lr_policy ''" with no line and hid
    the rest."""
    path = tiny / 'many.prototxt'
    path.write_text('net: "%s"\nbase_lr: nan\nmax_iter: 10\niter_size: 0\nsnapshot_prefix: "x/"\n'
                    'net_param { layer { name: "a" type: "Input" } }\n'
                    % (tiny / 'nets' / 'kd' / 'student_baseline.prototxt'))
    res = run(['train', 'many.prototxt', '--run-dir', 'runs/many'], tiny)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0] == 'caffe-mlic train: 5 problems in many.prototxt:', res.stderr
    assert set(lines[1:]) == {
        '  many.prototxt:6: net_param: the solver gives net and net_param: Caffe takes exactly one train '
        'net (it aborts); keep one',
        '  many.prototxt: lr_policy: no lr_policy given (Caffe aborts without one); give one of fixed, '
        'step, exp, inv, multistep, poly, sigmoid',
        '  many.prototxt:4: iter_size: iter_size must be from 1 to 1024 (each iteration runs iter_size '
        'forward/backward passes inside Caffe, and Ctrl-C / SIGTERM wait for the iteration to end), got 0',
        '  many.prototxt:2: base_lr: base_lr must be >= 0, got nan',
        '  many.prototxt:5: snapshot_prefix: \'x/\' names a folder: Caffe would name the files '
        '"_iter_N.caffemodel" in it; give a file prefix such as "x/many"'}, res.stderr
    assert not (tiny / 'runs' / 'many').exists()


def test_adam_over_2_gb_on_a_net_hdf5_cannot_hold_names_what_works(tiny):
    """The release distillation nets with Adam: the binary state is over 2 GB
    and HDF5 cannot hold their repeated layer names, so "set HDF5" would be
    wrong advice (checked here on the tiny stage-1 net with the release
    weight count, 268,521,088)."""
    import types
    from caffe_mlic.engine.solver_file import SolverFile
    from caffe_mlic.errors import InputError
    sf = SolverFile(solver(tiny, 'adam', net='kd/train_stage1', type='Adam', max_iter=1), str(tiny / 'runs' / 'adam'))
    net = types.SimpleNamespace(params={'fc6': [types.SimpleNamespace(data=np.broadcast_to(
        np.float32(0), (268521088,)))]})
    with pytest.raises(InputError) as e:
        snapshots.check_snapshot_size(sf, net)
    assert "solverstate would be 2.00 GB (537042176 values: Adam keeps 2" in str(e.value)
    assert 'HDF5 cannot hold this net either (' in str(e.value) and 'relu1_1' in str(e.value)
    assert str(e.value).endswith('use a solver type with one history blob per weight (SGD, Nesterov, '
                                 'AdaGrad, RMSProp), or give the layers distinct names and set '
                                 'snapshot_format: HDF5')
    sf = SolverFile(solver(tiny, 'adam', net='kd/train_stage1', type='SGD', max_iter=1), str(tiny / 'runs' / 'adam'))
    snapshots.check_snapshot_size(sf, net)          # SGD's state, 1.07 GB, fits


def test_a_quoted_text_in_set_is_read_as_the_solver_file_reads_it():
    """`--set snapshot_prefix=""` wrote files named '""_iter_2.caffemodel' and
    `--set lr_policy="step"` was refused (pass 10, minor): the quotes of the
    solver file's syntax are the text's, not part of it."""
    from caffe.proto import caffe_pb2
    from caffe_mlic.engine.solver_file import apply_overrides
    param = caffe_pb2.SolverParameter()
    apply_overrides(param, ['snapshot_prefix="runs/x/w"', 'lr_policy="step"', 'type=Adam', 'net=n.prototxt'])
    assert (param.snapshot_prefix, param.lr_policy, param.type, param.net) == ('runs/x/w', 'step', 'Adam',
                                                                              'n.prototxt')
    apply_overrides(param, ['snapshot_prefix=""'])
    assert param.snapshot_prefix == ''
    # single quotes too (the protobuf text format takes both): they were kept, "'x'_iter_4" (pass 40b M2)
    apply_overrides(param, ["snapshot_prefix='x'", "type='SGD'"])
    assert (param.snapshot_prefix, param.type) == ('x', 'SGD')


def test_weights_that_are_the_runs_own_snapshot_are_refused_not_overwritten(tiny):
    """`train SOLVER --weights snap/w_iter_6.caffemodel` with the solver that writes that snapshot."""
    solver(tiny, 'own', max_iter=6, snapshot=6)
    first = run(['train', 'own.prototxt'], tiny)
    assert first.returncode == 0, first.stderr
    weights = tiny / 'snap_own' / 'w_iter_6.caffemodel'
    before = weights.read_bytes()
    res = run(['train', 'own.prototxt', '--weights', 'snap_own/w_iter_6.caffemodel', '--run-dir', 'runs/own2'], tiny)
    assert res.returncode == 2
    assert res.stderr == (
        "caffe-mlic train: argument --weights: snap_own/w_iter_6.caffemodel is named like this run's snapshot at "
        'iteration 6 (snapshot_prefix snap_own/w): training would write over the weights it starts from; copy '
        'them elsewhere, give this run another snapshot_prefix (--set snapshot_prefix=...), or go on with that '
        'run: --resume snap_own/w_iter_6.solverstate\n'), res.stderr
    assert weights.read_bytes() == before and not (tiny / 'runs' / 'own2').exists()
    # through a link to the snapshot folder; and the caffe binary, which would write over it too
    os.symlink('snap_own', tiny / 'own_link')
    res = run(['train', 'own.prototxt', '--weights', 'snap_own/w_iter_6.caffemodel', '--run-dir', 'runs/own2',
               '--set', 'snapshot_prefix=own_link/w'], tiny)
    assert res.returncode == 2 and 'is named like this run' in res.stderr, res.stderr
    # (the binary, with no run folder, is refused a prefix a run folder claimed: unclaimed here, as the
    # message says, to reach the weights check)
    (tiny / 'snap_own' / '.w.run').unlink()
    res = run(['caffe', 'train', '-solver', 'own.prototxt', '-weights', 'snap_own/w_iter_6.caffemodel'], tiny)
    assert res.returncode == 2 and res.stderr.startswith(
        "caffe-mlic caffe: snap_own/w_iter_6.caffemodel is named like this run's snapshot at "
        'iteration 6'), res.stderr
    assert 'another snapshot_prefix in the solver, or go on with that run: -snapshot snap_own/w_iter_6.solverstate' \
        in res.stderr
    # a '..' after a link, a hard link to the snapshot (the binary writes in place), the last of two -weights
    (tiny / 'deep').mkdir(exist_ok=True)
    os.symlink(tiny / 'deep', tiny / 'deep_link')
    res = run(['train', 'own.prototxt', '--weights', 'snap_own/w_iter_6.caffemodel', '--run-dir', 'runs/own2',
               '--set', 'snapshot_prefix=deep_link/../snap_own/w'], tiny)
    assert res.returncode == 2 and 'is named like this run' in res.stderr, res.stderr
    os.link(weights, tiny / 'hard.caffemodel')
    res = run(['caffe', 'train', '-solver', 'own.prototxt', '-weights', 'hard.caffemodel'], tiny)
    assert res.returncode == 2 and 'hard.caffemodel is the same file as snap_own/w_iter_6.caffemodel' in res.stderr
    res = run(['caffe', 'train', '-solver', 'own.prototxt', '-weights', 'x.caffemodel', '-weights',
               'snap_own/w_iter_6.caffemodel'], tiny)
    assert res.returncode == 2 and 'is named like this run' in res.stderr, res.stderr
    res = run(['caffe', 'train', '-flagfile', 'flags.txt'], tiny)
    assert res.returncode == 2 and '-flagfile: give the flags on the command line' in res.stderr, res.stderr
    assert weights.read_bytes() == before
    # another prefix is fine
    res = run(['train', 'own.prototxt', '--weights', 'snap_own/w_iter_6.caffemodel', '--run-dir', 'runs/own3',
               '--set', 'snapshot_prefix=snap_own3/w'], tiny)
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------- hostile pass 17


@pytest.mark.parametrize('length', [250, 235])
def test_a_snapshot_prefix_too_long_for_a_file_name_is_refused_before_caffe_starts(tiny, length):
    """250: `w..._iter_20.solverstate` is over NAME_MAX (Caffe's write CHECK
    aborts at the first snapshot); 235: the longest name is 255 bytes, which
    the binary writes, and so must train (its staged name is shorter)."""
    base = 'p' * length
    solver(tiny, 'long%d' % length, max_iter=20, snapshot=10, snapshot_prefix='snap_long%d/%s' % (length, base))
    res = run(['train', 'long%d.prototxt' % length, '--run-dir', 'runs/long%d' % length], tiny)
    longest = '%s_iter_20.solverstate' % base
    if len(longest) > 255:
        assert res.returncode == 1 and 'Check failed' not in res.stderr, res.stderr
        assert re.fullmatch(r'caffe-mlic train: long250.prototxt:\d+: snapshot_prefix: the snapshots would be named '
                            r'up to 270 bytes long \(%s\), more than the 255 a file name can have in \S+: shorten '
                            r"the prefix's last part by 15 bytes or more\n" % longest, res.stderr), res.stderr
        assert not (tiny / 'runs' / 'long250').exists()
        assert not (tiny / 'snap_long250').exists()        # the folder made for the check is gone (pass 21 M12)
        res = run(['caffe', 'train', '-solver', 'long250.prototxt'], tiny)
        assert res.returncode == 1 and 'Check failed' not in res.stderr, res.stderr
        assert 'more than the 255 a file name can have' in res.stderr
    else:
        assert len(longest) == 255
        assert res.returncode == 0, res.stderr
        assert sorted(p.name for p in (tiny / 'snap_long235').iterdir() if not p.name.endswith('.run')) == sorted(
            '%s_iter_%d.%s' % (base, i, ext) for i in (10, 20) for ext in ('caffemodel', 'solverstate'))


def test_a_ranks_path_that_is_a_folder_is_refused_before_training(tiny):
    solver(tiny, 'rkdir', max_iter=20, snapshot=10)
    (tiny / 'snap_rkdir' / 'w_iter_10.ranks').mkdir(parents=True)
    res = run(['train', 'rkdir.prototxt', '--run-dir', 'runs/rkdir'], tiny)
    assert res.returncode == 1, res.stderr
    assert re.fullmatch(r'caffe-mlic train: rkdir.prototxt:\d+: snapshot_prefix: snap_rkdir/w_iter_10.ranks is '
                        r'a folder, where a snapshot of this prefix writes how many ranks '
                        r'wrote it: move it away\n', res.stderr), res.stderr
    assert sorted(p.name for p in (tiny / 'snap_rkdir').iterdir()) == ['w_iter_10.ranks']


@pytest.mark.parametrize('override', ['max_iter=1_0', 'base_lr=\u0663', 'max_iter=\uff11\uff10', 'base_lr=0x1'])
def test_set_takes_numbers_as_the_solver_file_writes_them(tiny, override):
    solver(tiny, 'spell')
    res = run(['train', 'spell.prototxt', '--set', override, '--run-dir', 'runs/spell'], tiny)
    name, text = override.split('=')
    assert res.returncode == 2, res.stderr
    assert res.stderr == 'caffe-mlic train: argument --set: %s: %r is not a valid %s\n' % (
        name, text, 'whole number' if name == 'max_iter' else 'number')


def test_a_closed_stdout_after_the_run_finished_is_quiet(tiny):
    """`train ... | head -1` where the first line is the final test's: the
    run is whole (run.json finished), and the line after it had no reader:
    SIGPIPE's status and nothing on stderr, as `seq 1 1000000 | head -1`."""
    solver(tiny, 'pipeend', max_iter=20, snapshot=0, test_interval=1000)
    run_dir = tiny / 'runs' / 'pipeend'
    proc = start(['train', 'pipeend.prototxt', '--run-dir', run_dir], tiny, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith('iteration 20: test')     # the final test; then "trained to ..."
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    # (0 when the last line reached the pipe before it was closed)
    assert proc.returncode in (0, 128 + signal.SIGPIPE) and err == '', (proc.returncode, err)
    assert run_json(run_dir)['status'] == 'finished'


def test_a_disk_that_fills_during_training_names_the_file_and_the_last_snapshot(tiny, tmp_path):
    """The run folder's disk fills after the snapshot at 10 (the log and
    curves cannot be written): one line naming what failed, at which
    iteration, and the snapshot to go on from; no traceback."""
    solver(tiny, 'fill', max_iter=2000, snapshot=10, test_interval=100000)
    with small_disk(tmp_path / 'disk', 1) as disk:
        proc = start(['train', 'fill.prototxt', '--run-dir', disk / 'r'], tiny, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)
        wait_for(lambda: (tiny / 'snap_fill' / 'w_iter_10.solverstate').exists(), proc)
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        with contextlib.suppress(OSError):
            (disk / 'filler').write_bytes(b'\0' * free)
        err = proc.stderr.read()
        proc.wait(timeout=120)
    assert proc.returncode == 1, err
    assert re.fullmatch(r'caffe-mlic train: (at iteration \d+: No space left on device: \S+|trained to iteration '
                        r'\d+, but No space left on device: \S+.*|cannot record the snapshot of iteration \d+ in '
                        r'\S+/r/run.json: No space left on device); the last snapshot is snap_fill/w_iter_\d+'
                        r'\.solverstate\n', err), err


def test_an_output_name_of_255_bytes_is_written(tiny, tmp_path):
    """The hidden temp file beside an output is named by a digest when the
    output's own name is long: a legal name is never refused."""
    from caffe_mlic.fileio import atomic_write
    path = tmp_path / ('o' * 255)
    with atomic_write(str(path)) as f:
        f.write('x')
    assert path.read_text() == 'x' and os.listdir(tmp_path) == [path.name]


def test_a_snapshot_folder_that_stops_taking_files_mid_run_fails_in_one_line_with_the_last_snapshot(tiny):
    """Made immutable (chattr +i; root ignores modes) after the first
    snapshot: Caffe's failed write was a FATAL (io.cpp) and "a setting or
    input it refuses", without the snapshot to resume from (pass 21 M6).
    (A folder moved away is followed now, one removed is its own error:
    test_a_snapshot_folder_removed_or_re_pointed_while_its_run_trains.)"""
    import shutil
    import subprocess as sp
    name = 'ro_immutable'
    solver(tiny, name, max_iter=2000, snapshot=10)
    folder = tiny / ('snap_%s' % name)
    proc = start(['train', '%s.prototxt' % name, '--run-dir', 'runs/%s' % name], tiny, stdout=sp.PIPE,
                 stderr=sp.PIPE)
    wait_for(lambda: (folder / 'w_iter_10.solverstate').exists(), proc)
    if sp.run(['chattr', '+i', str(folder)], capture_output=True).returncode != 0:
        proc.kill()
        proc.communicate()
        pytest.skip('chattr +i is not supported here')
    try:
        _, err = proc.communicate(timeout=120)
    finally:
        sp.run(['chattr', '-i', str(folder)], capture_output=True)
    assert proc.returncode == 1, err
    assert re.fullmatch(r'caffe-mlic train: cannot write the snapshot at iteration 20 into %s: [^\n]+; the last '
                        r'snapshot is %s\n' % (re.escape(str(folder)), re.escape('snap_%s/w_iter_10.solverstate' % name)),
                        err), err
    info = run_json(tiny / 'runs' / name)
    assert info['status'] == 'failed' and 'cannot write the snapshot at iteration 20' in info['error']
    assert sorted(p.name for p in folder.iterdir()) == ['.w.run', 'w_iter_10.caffemodel', 'w_iter_10.solverstate']
    shutil.rmtree(folder, ignore_errors=True)


def test_two_runs_of_one_snapshot_prefix_do_not_write_over_each_other(tiny):
    """Run B, another run folder with A's snapshot_prefix, wrote over A's
    snapshots, and A's --resume auto went on from B's weights (pass 22
    S4). B is refused before Caffe starts, naming A's folder; A resumes its
    own; with A's folder gone, the prefix is B's to take."""
    import shutil
    solver(tiny, 'shared', max_iter=10, snapshot=5)
    assert run(['train', 'shared.prototxt', '--run-dir', 'runs/shA', '--set', 'max_iter=5'], tiny).returncode == 0
    before = (tiny / 'snap_shared' / 'w_iter_5.caffemodel').read_bytes()
    res = run(['train', 'shared.prototxt', '--run-dir', 'runs/shB', '--set', 'base_lr=0.02'], tiny)
    assert res.returncode == 1, res.stderr
    assert ('snap_shared/w is the snapshot prefix of the run in %s' % (tiny / 'runs' / 'shA')) in res.stderr
    assert (tiny / 'snap_shared' / 'w_iter_5.caffemodel').read_bytes() == before
    assert not (tiny / 'runs' / 'shB').exists()
    res = run(['train', 'shared.prototxt', '--run-dir', 'runs/shA', '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'iteration 5' in res.stdout + res.stderr, res.stderr
    # A's folder gone (moved or removed) with its snapshots still there: they stay A's (pass 23 S1)
    shutil.rmtree(tiny / 'runs' / 'shA')
    res = run(['train', 'shared.prototxt', '--run-dir', 'runs/shB'], tiny)
    assert res.returncode == 1, res.stderr
    assert ('snap_shared/w holds the snapshots of the run that was in %s, which is not there any more (moved or '
            'removed?)' % (tiny / 'runs' / 'shA')) in res.stderr
    assert (tiny / 'snap_shared' / 'w_iter_5.caffemodel').read_bytes() == before
    for old in (tiny / 'snap_shared').iterdir():
        old.unlink()
    assert run(['train', 'shared.prototxt', '--run-dir', 'runs/shB'], tiny).returncode == 0
    assert (tiny / 'snap_shared' / '.w.run').read_text().strip() == '../runs/shB'     # (a copied tree: its own)


def test_a_moved_run_keeps_its_snapshot_prefix(tiny):
    """Run A renamed (mv runs/mvA runs/mvA2): the claim still names runs/mvA,
    and another run took the prefix and wrote over A's snapshots (pass 23
    S1). The moved run goes on from its own snapshots (its run.json names
    them) and claims the prefix again; another run stays refused."""
    solver(tiny, 'moved', max_iter=10, snapshot=5)
    assert run(['train', 'moved.prototxt', '--run-dir', 'runs/mvA', '--set', 'max_iter=5'], tiny).returncode == 0
    os.rename(str(tiny / 'runs' / 'mvA'), str(tiny / 'runs' / 'mvA2'))
    before = (tiny / 'snap_moved' / 'w_iter_5.caffemodel').read_bytes()
    res = run(['train', 'moved.prototxt', '--run-dir', 'runs/mvB', '--set', 'base_lr=0.02'], tiny)
    assert res.returncode == 1 and 'which is not there any more' in res.stderr, res.stderr
    assert (tiny / 'snap_moved' / 'w_iter_5.caffemodel').read_bytes() == before
    res = run(['train', 'moved.prototxt', '--run-dir', 'runs/mvA2', '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'iteration 5' in res.stdout + res.stderr, res.stderr
    assert (tiny / 'snap_moved' / '.w.run').read_text().strip() == '../runs/mvA2'
    res = run(['train', 'moved.prototxt', '--run-dir', 'runs/mvB'], tiny)
    assert res.returncode == 1 and 'snap_moved/w is the snapshot prefix of the run in %s' % (
        tiny / 'runs' / 'mvA2') in res.stderr, res.stderr


def test_the_prefix_of_a_renamed_run_is_kept_from_a_new_run_in_its_old_folder(tiny):
    """mv runs/nA runs/nA_old, then the same command line again: the claim
    names runs/nA, now a new run's folder, which wrote over the kept run's
    snapshots (pass 24 S5). Caffemodels kept without their states still
    hold the prefix (pass 24 S4)."""
    solver(tiny, 'renamed', max_iter=5, snapshot=5)
    assert run(['train', 'renamed.prototxt', '--run-dir', 'runs/nA'], tiny).returncode == 0
    os.rename(str(tiny / 'runs' / 'nA'), str(tiny / 'runs' / 'nA_old'))
    before = (tiny / 'snap_renamed' / 'w_iter_5.caffemodel').read_bytes()
    res = run(['train', 'renamed.prototxt', '--run-dir', 'runs/nA', '--set', 'base_lr=0.02'], tiny)
    assert res.returncode == 1 and 'snap_renamed/w holds the snapshots of the run that was in %s before this one' % (
        tiny / 'runs' / 'nA') in res.stderr, res.stderr
    assert (tiny / 'snap_renamed' / 'w_iter_5.caffemodel').read_bytes() == before
    (tiny / 'snap_renamed' / 'w_iter_5.solverstate').unlink()          # the weights kept, the state dropped
    shutil.rmtree(str(tiny / 'runs' / 'nA_old'))
    res = run(['train', 'renamed.prototxt', '--run-dir', 'runs/nB', '--set', 'base_lr=0.02'], tiny)
    assert res.returncode == 1 and 'which is not there any more' in res.stderr, res.stderr
    assert (tiny / 'snap_renamed' / 'w_iter_5.caffemodel').read_bytes() == before


def test_one_writer_of_a_prefix_at_a_time(tiny):
    """The caffe binary started a second before a `train` on the same prefix
    wrote over the run's snapshots, both exit 0 (pass 24 S3): each holds
    .<base>.lock while it may write; the other is refused at its start."""
    import fcntl
    from caffe_mlic.engine.snapshots import lock_prefix
    from caffe_mlic.processes import unlock_file
    solver(tiny, 'busy', max_iter=5, snapshot=5)
    (tiny / 'snap_busy').mkdir()
    held = lock_prefix(str(tiny / 'snap_busy' / 'w'))      # as a run writing that prefix holds it
    try:
        res = run(['train', 'busy.prototxt', '--run-dir', 'runs/busy'], tiny)
        assert res.returncode == 1 and 'another run (pid %d) is writing snapshots with the prefix snap_busy/w now' % (
            os.getpid()) in res.stderr, res.stderr
        assert not (tiny / 'runs' / 'busy').exists()
        res = run(['caffe', 'train', '-solver', 'busy.prototxt'], tiny)
        assert res.returncode == 1 and 'is writing snapshots with the prefix snap_busy/w now' in res.stderr, res.stderr
        with pytest.raises(BlockingIOError):
            fcntl.flock(open(held.name), fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        unlock_file(held)
    assert not os.path.exists(held.name)
    assert run(['caffe', 'train', '-solver', 'busy.prototxt'], tiny).returncode == 0
    assert run(['train', 'busy.prototxt', '--run-dir', 'runs/busy', '--set', 'snapshot_prefix=snap_busy/v'],
               tiny).returncode == 0
    assert sorted(p.name for p in (tiny / 'snap_busy').iterdir() if p.name.startswith('.')) == ['.v.run']


def test_the_binary_drops_only_the_ranks_files_of_states_it_wrote(tmp_path):
    """drop_stale_ranks took every data-parallel snapshot for stale (its
    .ranks is written just before its state) and other prefixes' (prefix w
    and w_iter_5_iter_N) (pass 24 S1)."""
    import time as clock
    from caffe_mlic.engine.snapshots import drop_stale_ranks
    names = ['w_iter_5_iter_10', 'w_iter_10', 'w_iter_20']
    for name in names:
        (tmp_path / (name + '.ranks')).write_text('2\n')
        (tmp_path / (name + '.solverstate')).write_bytes(b'')
    clock.sleep(0.05)
    since = clock.time()
    clock.sleep(0.05)
    (tmp_path / 'w_iter_20.solverstate').write_bytes(b'x')        # the binary wrote over iteration 20
    drop_stale_ranks(str(tmp_path / 'w'), since)
    assert sorted(p.name for p in tmp_path.glob('*.ranks')) == ['w_iter_10.ranks', 'w_iter_5_iter_10.ranks']


def test_resume_auto_takes_only_its_own_prefix_s_snapshots(tiny):
    """Prefix w and prefix w_iter_5 (another run's): w_iter_5_iter_10 is not
    w's snapshot at iteration 10 (pass 23 S4)."""
    from caffe_mlic.engine.snapshots import find_snapshots
    folder = tiny / 'snap_pfx'
    folder.mkdir()
    for name in ('w_iter_4.solverstate', 'w_iter_5_iter_10.solverstate', 'w_iter_5_iter_20.solverstate.h5',
                 'w_iter_x.solverstate', 'w_iter_7.solverstate.h5'):
        (folder / name).write_bytes(b'')
    assert find_snapshots(str(folder / 'w')) == [(7, str(folder / 'w_iter_7.solverstate.h5')),
                                                  (4, str(folder / 'w_iter_4.solverstate'))]
    assert find_snapshots(str(folder / 'w_iter_5')) == [(20, str(folder / 'w_iter_5_iter_20.solverstate.h5')),
                                                         (10, str(folder / 'w_iter_5_iter_10.solverstate'))]


def test_a_prefix_through_a_link_and_dotdot_is_claimed_where_caffe_writes(tiny):
    """lk/../w with lk a link into another run's snapshot folder: Caffe
    writes beside lk's target, so that is where the claim is read (pass 23
    S5); a folder where the claim file goes is named before training
    (pass 23 M3)."""
    solver(tiny, 'dd', max_iter=5, snapshot=5)
    assert run(['train', 'dd.prototxt', '--run-dir', 'runs/ddA'], tiny).returncode == 0
    (tiny / 'snap_dd' / 'sub').mkdir()
    os.symlink('snap_dd/sub', str(tiny / 'lk'))
    before = (tiny / 'snap_dd' / 'w_iter_5.caffemodel').read_bytes()
    res = run(['train', 'dd.prototxt', '--run-dir', 'runs/ddB', '--set', 'snapshot_prefix=lk/../w'], tiny)
    assert res.returncode == 1 and 'lk/../w is the snapshot prefix of the run in %s' % (
        tiny / 'runs' / 'ddA') in res.stderr, res.stderr
    assert (tiny / 'snap_dd' / 'w_iter_5.caffemodel').read_bytes() == before and not (tiny / '.w.run').exists()
    (tiny / 'snap_dir').mkdir()
    (tiny / 'snap_dir' / '.w.run').mkdir()
    res = run(['train', 'dd.prototxt', '--run-dir', 'runs/ddC', '--set', 'snapshot_prefix=snap_dir/w'], tiny)
    assert res.returncode == 1, res.stderr
    assert '%s is a folder, where the file recording which run folder the snapshots of this prefix belong to ' \
           'is kept: move it away' % (tiny / 'snap_dir' / '.w.run') in res.stderr, res.stderr
    assert not (tiny / 'runs' / 'ddC' / 'log.csv').exists()


def test_the_prefix_lock_never_writes_through_a_link(tmp_path):
    """The lock folder is the user's own (0700), and a link where a lock
    file goes is refused, not written through (pass 25 S3)."""
    import stat
    from caffe_mlic.engine import snapshots
    from caffe_mlic.processes import lock_file, unlock_file
    held = snapshots.lock_prefix(str(tmp_path / 'w'))
    folder = os.path.dirname(held.name)
    info = os.lstat(folder)
    assert stat.S_ISDIR(info.st_mode) and not info.st_mode & 0o077 and info.st_uid == os.getuid()
    unlock_file(held)
    victim = tmp_path / 'victim.txt'
    victim.write_text('keep')
    os.symlink(str(victim), str(tmp_path / 'planted.lock'))
    from caffe_mlic.errors import RunError
    with pytest.raises(RunError, match='planted.lock is a symbolic link, where the lock file is kept: move it away'):
        lock_file(str(tmp_path / 'planted.lock'), 'busy %s')
    assert victim.read_text() == 'keep'
    # a FIFO opened, then failed to seek, unnamed; a link to nothing was called a symlink loop (pass 40c M2)
    os.mkfifo(str(tmp_path / 'fifo.lock'))
    os.symlink(str(tmp_path / 'none'), str(tmp_path / 'dangling.lock'))
    for name, kind in (('fifo.lock', 'a FIFO'), ('dangling.lock', 'a symbolic link')):
        with pytest.raises(RunError) as e:
            lock_file(str(tmp_path / name), 'busy %s')
        assert str(e.value) == '%s is %s, where the lock file is kept: move it away' % (tmp_path / name, kind)
    assert not (tmp_path / 'none').exists()


def _link_snapshots_of(source, folder):
    """``folder`` with the caffemodels of ``source`` hard-linked and the
    states symlinked in under the same names."""
    folder.mkdir()
    for path in source.glob('w_iter_*'):
        if path.name.endswith('.caffemodel'):
            os.link(str(path), str(folder / path.name))
        else:
            os.symlink(os.path.relpath(str(path), str(folder)), str(folder / path.name))


def test_snapshot_names_that_link_into_another_prefix_are_never_written_through(tiny):
    """Snapshots linked in from another run's prefix (symlinks or hard
    links) were written through by `train` (the state) and by the binary
    (both files): the other run then resumed from this one's (pass 25 S1).
    `train` replaces such names; the binary is refused before it starts."""
    solver(tiny, 'lnA', max_iter=5, snapshot=5)
    assert run(['train', 'lnA.prototxt', '--run-dir', 'runs/lnA'], tiny).returncode == 0
    source = tiny / 'snap_lnA'
    before = {p.name: p.read_bytes() for p in source.glob('w_iter_*')}
    assert sorted(before) == ['w_iter_5.caffemodel', 'w_iter_5.solverstate']
    _link_snapshots_of(source, tiny / 'snap_lnB')
    solver(tiny, 'lnB', max_iter=5, snapshot=5, base_lr=0.003)
    res = run(['train', 'lnB.prototxt', '--run-dir', 'runs/lnB'], tiny)
    assert res.returncode == 0, res.stderr
    assert {p.name: p.read_bytes() for p in source.glob('w_iter_*')} == before
    for path in (tiny / 'snap_lnB').glob('w_iter_5.*'):
        assert not path.is_symlink() and path.stat().st_nlink == 1, path
    assert (tiny / 'snap_lnB' / 'w_iter_5.caffemodel').read_bytes() != before['w_iter_5.caffemodel']
    # The binary: our Caffe replaces such names too (patch 0005); a Caffe without that patch (a user's
    # own CAFFE_ROOT) would write through them, so there they are refused before it starts.
    from caffe_mlic.commands import caffe as caffe_command
    from caffe_mlic.errors import InputError
    _link_snapshots_of(source, tiny / 'snap_lnC')
    solver(tiny, 'lnC', max_iter=5, snapshot=5)
    cwd = os.getcwd()
    os.chdir(str(tiny))
    try:
        with pytest.raises(InputError, match=re.escape(
                'snap_lnC/w_iter_5.caffemodel, snap_lnC/w_iter_5.solverstate are links (a symlink, or a file with '
                'another hard link) where this training writes a snapshot')):
            caffe_command._refuse_linked_snapshots('lnC.prototxt', None)
        solver(tiny, 'lnC4', max_iter=4, snapshot=2, snapshot_prefix='snap_lnC/w')
        caffe_command._refuse_linked_snapshots('lnC4.prototxt', None)    # (links past max_iter: left alone)
    finally:
        os.chdir(cwd)
    res = run(['caffe', 'train', '-solver', 'lnC.prototxt'], tiny)
    assert res.returncode == 0, res.stderr
    assert {p.name: p.read_bytes() for p in source.glob('w_iter_*')} == before
    for path in (tiny / 'snap_lnC').glob('w_iter_5.*'):
        assert not path.is_symlink() and path.stat().st_nlink == 1, path


def test_a_bind_mount_of_a_snapshot_folder_shares_its_lock(tmp_path):
    """The lock was named by the path, so one folder under two mount paths
    had two locks and two writers (pass 25 S2): it is named by the folder's
    device and inode."""
    from caffe_mlic.errors import RunError
    from caffe_mlic.processes import unlock_file
    (tmp_path / 'snap').mkdir()
    (tmp_path / 'mnt').mkdir()
    res = subprocess.run(['mount', '--bind', str(tmp_path / 'snap'), str(tmp_path / 'mnt')],
                         capture_output=True, text=True)
    if res.returncode:
        pytest.skip('cannot bind-mount here (needs root): %s' % res.stderr.strip())
    try:
        held = snapshots.lock_prefix(str(tmp_path / 'snap' / 'w'))
        try:
            with pytest.raises(RunError, match='another run .pid %d. is writing snapshots with the prefix %s' % (
                    os.getpid(), re.escape(str(tmp_path / 'mnt' / 'w')))):
                snapshots.lock_prefix(str(tmp_path / 'mnt' / 'w'))
        finally:
            unlock_file(held)
        unlock_file(snapshots.lock_prefix(str(tmp_path / 'mnt' / 'v')))     # another base name: its own lock
    finally:
        subprocess.run(['umount', '-l', str(tmp_path / 'mnt')])


def test_two_binaries_without_a_snapshot_prefix_in_one_folder_are_refused(tiny, monkeypatch):
    """Without a snapshot_prefix the binary writes _iter_N.* into the current
    directory, and took no lock: two at once wrote the same files (pass 25
    S4)."""
    from caffe_mlic.processes import unlock_file
    folder = tiny / 'np'
    folder.mkdir()
    path = solver(tiny, 'np', max_iter=2)
    text = re.sub(r'snapshot_prefix: .*\n', '', open(path).read())
    (folder / 'np.prototxt').write_text(text)
    monkeypatch.chdir(folder)
    held = snapshots.lock_prefix('')
    try:
        res = run(['caffe', 'train', '-solver', 'np.prototxt'], folder)
        assert res.returncode == 1, res.stderr
        assert ('another run (pid %d) is writing snapshots with the prefix "" (the files _iter_N.* in %s) now'
                % (os.getpid(), folder)) in res.stderr, res.stderr
        assert not list(folder.glob('_iter_*'))
    finally:
        unlock_file(held)
    res = run(['caffe', 'train', '-solver', 'np.prototxt'], folder)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in folder.glob('_iter_*')) == ['_iter_2.caffemodel', '_iter_2.solverstate']


def _project(tiny, project, name):
    """A project folder: the tiny nets and images, and solver NAME with its
    paths relative to the folder (max_iter 10, a snapshot every 5)."""
    project.mkdir()
    for part in ('nets', 'images'):
        os.symlink(str(tiny / part), str(project / part))
    path = solver(project, name, max_iter=10, snapshot=5)
    text = open(path).read().replace(str(project) + '/', '')      # (the net, relative)
    open(path, 'w').write(text)
    return project


def test_a_project_folder_moved_as_a_whole_resumes_its_run(tiny, tmp_path):
    """A run with relative paths, its whole project folder moved: run.json's
    paths, read against the cwd it recorded, named the old place, and
    --resume auto was refused (pass 25 M1)."""
    project = _project(tiny, tmp_path / 'proj', 'pm')
    res = run(['train', 'pm.prototxt', '--run-dir', 'runs/a', '--set', 'max_iter=5'], project)
    assert res.returncode == 0, res.stderr
    moved = tmp_path / 'proj2'
    os.rename(str(project), str(moved))
    res = run(['train', 'pm.prototxt', '--run-dir', 'runs/a', '--resume', 'auto'], moved)
    assert res.returncode == 0 and 'iteration 5' in res.stdout + res.stderr, res.stderr
    assert (moved / 'snap_pm' / 'w_iter_10.caffemodel').exists()
    res = run(['train', 'pm.prototxt', '--run-dir', 'runs/b'], moved)
    assert res.returncode == 1 and 'snap_pm/w is the snapshot prefix of the run in %s' % (
        moved / 'runs' / 'a') in res.stderr, res.stderr
    # Another project with the same relative names, its run moved away: the moved project's run,
    # named from there (../proj2/runs/a), is not taken for that run's owner (pass 26 S1).
    other = tmp_path / 'projV'
    other.mkdir()
    for name in ('nets', 'images', 'pm.prototxt'):
        os.symlink(str(moved / name), str(other / name))
    res = run(['train', 'pm.prototxt', '--run-dir', 'runs/v', '--set', 'max_iter=20', '--set', 'base_lr=0.003'],
              other)
    assert res.returncode == 0, res.stderr
    os.rename(str(other / 'runs' / 'v'), str(tmp_path / 'v_archived'))
    _refused_a_gone_runs_prefix_that_resumes(other, 'pm', 'snap_pm', 20, '../proj2/runs/a', '../v_archived')


@pytest.mark.parametrize('how', ['mv', 'cp -a'])
def test_a_project_moved_and_then_its_run_folder_renamed_resumes(tiny, tmp_path, how):
    """A project moved (or copied) as a whole, then its run folder renamed:
    neither the recorded cwd nor the run folder led to the snapshots, and
    the run was refused as another's (pass 28 M2). Its states, recorded
    with their identities, are its own; another run of the same names is
    still refused."""
    project = _project(tiny, tmp_path / 'proj', 'pr')
    assert run(['train', 'pr.prototxt', '--run-dir', 'runs/a', '--set', 'max_iter=5'], project).returncode == 0
    moved = tmp_path / 'proj2'
    if how == 'mv':
        os.rename(str(project), str(moved))
    else:
        subprocess.run(['cp', '-a', str(project), str(moved)], check=True)
    os.rename(str(moved / 'runs' / 'a'), str(moved / 'runs' / 'a2'))
    res = run(['train', 'pr.prototxt', '--run-dir', 'runs/a2', '--resume', 'auto'], moved)
    assert res.returncode == 0 and 'iteration 5' in res.stdout + res.stderr, res.stderr
    assert (moved / 'snap_pr' / 'w_iter_10.caffemodel').exists()
    res = run(['train', 'pr.prototxt', '--run-dir', 'runs/b', '--resume', 'auto'], moved)
    assert res.returncode == 1 and 'snap_pr/w is the snapshot prefix of the run in %s' % (
        moved / 'runs' / 'a2') in res.stderr, res.stderr


def test_lock_files_of_killed_runs_are_swept_and_held_ones_kept(tmp_path):
    """A run killed with SIGKILL left its lock file in the lock folder for
    good (pass 25 M2): the next lock_prefix removes those no one holds."""
    from caffe_mlic.processes import unlock_file
    held = snapshots.lock_prefix(str(tmp_path / 'w'))
    folder = os.path.dirname(held.name)
    dead = os.path.join(folder, 'f' * 24 + '.lock')
    with open(dead, 'w') as f:
        f.write('999999\n')         # as a SIGKILLed run leaves it: no one holds it
    other = snapshots.lock_prefix(str(tmp_path / 'v'))
    try:
        assert not os.path.exists(dead) and os.path.exists(held.name) and os.path.exists(other.name)
    finally:
        unlock_file(other)
        unlock_file(held)


def test_a_link_made_at_a_snapshot_name_while_the_binary_trains_is_replaced(tiny):
    """The binary's check of its snapshot names runs before it starts; a
    link put at one of them while it trained was written through, into
    another run's snapshot (pass 26 S2). Our Caffe makes each snapshot a
    file of its own (tools/caffe-patches/0005)."""
    solver(tiny, 'lrA', max_iter=5, snapshot=5)
    assert run(['train', 'lrA.prototxt', '--run-dir', 'runs/lrA'], tiny).returncode == 0
    source = tiny / 'snap_lrA'
    before = {p.name: p.read_bytes() for p in source.glob('w_iter_5.*')}
    solver(tiny, 'lrB', max_iter=300, snapshot=5)

    def link_the_last_names():
        os.symlink(str(source / 'w_iter_5.caffemodel'), str(tiny / 'snap_lrB' / 'w_iter_300.caffemodel'))
        os.link(str(source / 'w_iter_5.solverstate'), str(tiny / 'snap_lrB' / 'w_iter_300.solverstate'))
    code, err = _after_the_first_snapshot(['caffe', 'train', '-solver', 'lrB.prototxt'], tiny,
                                          tiny / 'snap_lrB' / 'w_iter_5.solverstate', link_the_last_names)
    assert code == 0, err
    assert {p.name: p.read_bytes() for p in source.glob('w_iter_5.*')} == before
    for name in ('w_iter_300.caffemodel', 'w_iter_300.solverstate'):
        path = tiny / 'snap_lrB' / name
        assert not path.is_symlink() and path.stat().st_nlink == 1


def _after_the_first_snapshot(args, cwd, state, act):
    """Run the command ``args``, call ``act()`` once ``state`` (its first
    snapshot) exists; (exit status, stderr)."""
    proc = start(args, cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(state.exists, proc)
        act()
        err = proc.communicate(timeout=300)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def _stopped_after(args, cwd, ready, act):
    """Run the command ``args``; once ``ready()``, call ``act(process)``,
    then stop it with SIGTERM; (exit status, stderr)."""
    proc = start(args, cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(ready, proc)
        act(proc)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize('command', ['train', 'caffe'])
def test_a_folder_at_a_snapshot_name_is_refused_before_training(tiny, command):
    """A folder named like a snapshot was called a link by the binary, and
    `train` trained up to it, then failed naming the other file (pass 26
    M1)."""
    solver(tiny, 'fold', max_iter=10, snapshot=5)
    (tiny / 'snap_fold' / 'w_iter_5.caffemodel').mkdir(parents=True, exist_ok=True)
    args = (['train', 'fold.prototxt', '--run-dir', 'runs/fold'] if command == 'train'
            else ['caffe', 'train', '-solver', 'fold.prototxt'])
    res = run(args, tiny)
    assert res.returncode == 1 and 'snap_fold/w_iter_5.caffemodel is a folder, where a snapshot of this prefix ' \
        'goes: move it away' in res.stderr, res.stderr
    assert not (tiny / 'runs' / 'fold').exists()


def test_a_run_folder_renamed_while_it_trains_is_followed(tiny):
    """`mv runs/mv1 runs/mv2` during a run stopped it at its next snapshot,
    blamed on "the run that was in runs/mv1 before this one", and left it
    split between two folders (pass 26 M3): the run goes on in the new
    place, and says so."""
    solver(tiny, 'mvr', max_iter=80, snapshot=5)
    code, err = _after_the_first_snapshot(
        ['train', 'mvr.prototxt', '--run-dir', 'runs/mvr1'], tiny, tiny / 'snap_mvr' / 'w_iter_5.solverstate',
        lambda: os.rename(str(tiny / 'runs' / 'mvr1'), str(tiny / 'runs' / 'mvr2')))
    assert code == 0, err
    assert 'the run folder runs/mvr1 was moved to %s while this run trained: it goes on there' % (
        tiny / 'runs' / 'mvr2') in err, err
    assert not (tiny / 'runs' / 'mvr1').exists()
    info = run_json(tiny / 'runs' / 'mvr2')
    assert info['status'] == 'finished' and info['final_iteration'] == 80
    assert info['run_dir'] == str(tiny / 'runs' / 'mvr2')
    assert (tiny / 'snap_mvr' / '.w.run').read_text().strip() == '../runs/mvr2'
    assert not (tiny / 'runs' / 'mvr2' / '.lock').exists()
    assert train_rows(tiny / 'runs' / 'mvr2') == 80


@pytest.mark.parametrize('inside', ['default', 'given'])
def test_a_run_folder_holding_its_snapshots_renamed_while_it_trains_goes_on_there(tiny, inside):
    """Caffe's snapshot prefix is fixed when the solver is built: with the
    snapshots inside the run folder (the default prefix, or one given),
    `mv` of the folder mid-run stopped the run at its next snapshot, and
    the run could not be resumed (pass 28 M1). Caffe now writes into the
    folder by its descriptor: the run goes on there, to the weights of an
    uninterrupted run, and resumes there."""
    fields = dict(max_iter=25, snapshot=5)
    if inside == 'default':
        fields['snapshot_prefix'] = ''
    solver(tiny, 'inm', **fields)
    given = [] if inside == 'default' else ['--set', 'snapshot_prefix=runs/{}/snap/w']
    where = {'default': 'snapshots/inm', 'given': 'snap/w'}[inside]

    def args(run_dir, *more):
        return ['train', 'inm.prototxt', '--run-dir', 'runs/' + run_dir] + [
            a.format(run_dir) for a in given] + list(more)
    assert run(args('inm_ref_' + inside), tiny).returncode == 0
    code, err = _after_the_first_snapshot(
        args('inm1_' + inside), tiny, tiny / 'runs' / ('inm1_' + inside) / (where + '_iter_5.solverstate'),
        lambda: os.rename(str(tiny / 'runs' / ('inm1_' + inside)), str(tiny / 'runs' / ('inm2_' + inside))))
    assert code == 0, err
    moved = os.path.join('runs', 'inm2_' + inside, os.path.dirname(where))
    assert 'the snapshot folder %s was moved to %s while this run trained: its snapshots go on there' % (
        os.path.join('runs', 'inm1_' + inside, os.path.dirname(where)), moved) in err, err
    assert not (tiny / 'runs' / ('inm1_' + inside)).exists()
    info = run_json(tiny / 'runs' / ('inm2_' + inside))
    assert info['status'] == 'finished' and info['final_iteration'] == 25
    assert info['snapshot_prefix'] == os.path.join(moved, os.path.basename(where))
    a, b = (weights_of(tiny / 'runs' / r / (where + '_iter_25.caffemodel')) for r in ('inm2_' + inside, 'inm_ref_' + inside))
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert not [p.name for p in (tiny / 'runs' / ('inm2_' + inside)).rglob('*partial*')]
    res = run(args('inm2_' + inside, '--set', 'max_iter=27', '--resume', 'auto'), tiny)
    assert res.returncode == 0 and 'iteration 25' in res.stdout + res.stderr, res.stderr


def test_a_snapshot_folder_renamed_while_its_run_trains_is_followed(tiny):
    """The snapshot folder alone renamed mid-run: the run goes on writing
    into it, names it in run.json, and its claim names the run folder."""
    solver(tiny, 'smv', max_iter=20, snapshot=5)
    code, err = _after_the_first_snapshot(
        ['train', 'smv.prototxt', '--run-dir', 'runs/smv'], tiny, tiny / 'snap_smv' / 'w_iter_5.solverstate',
        lambda: os.renames(str(tiny / 'snap_smv'), str(tiny / 'deeper' / 'snap_smv2')))
    assert code == 0, err
    assert 'the snapshot folder snap_smv was moved to deeper/snap_smv2 while this run trained' in err, err
    assert (tiny / 'deeper' / 'snap_smv2' / 'w_iter_20.caffemodel').exists()
    assert run_json(tiny / 'runs' / 'smv')['snapshot_prefix'] == 'deeper/snap_smv2/w'
    assert (tiny / 'deeper' / 'snap_smv2' / '.w.run').read_text() == '../../runs/smv\n'
    assert not (tiny / 'snap_smv').exists()
    # the command as first given, with --resume auto: it started over, writing over the run's log and
    # run.json (pass 30 M3); it names the prefix to give
    res = run(['train', 'smv.prototxt', '--run-dir', 'runs/smv', '--set', 'max_iter=25', '--resume', 'auto'], tiny)
    assert res.returncode == 2 and 'the run in runs/smv wrote its snapshots with prefix deeper/snap_smv2/w (its ' \
        'run.json), and snap_smv/w holds none: resume with --set snapshot_prefix=deeper/snap_smv2/w' in res.stderr, \
        res.stderr
    assert run_json(tiny / 'runs' / 'smv')['final_iteration'] == 20


@pytest.mark.parametrize('moved', ['run folder', 'snapshot folder'])
def test_the_resume_command_of_a_followed_run_names_where_it_went(tiny, moved):
    """Stopped after its folder was followed, the run's resume command named
    the old run folder or prefix (pass 27 M6): it names the new ones, and
    it resumes."""
    fields = dict(max_iter=2000, snapshot=5)
    if moved == 'run folder':
        fields['snapshot_prefix'] = ''
    solver(tiny, 'rh', **fields)
    old, new = {'run folder': ('runs/rh1', 'runs/rh2'), 'snapshot folder': ('snap_rh', 'snap_rh2')}[moved]
    first = tiny / ('runs/rh1/snapshots/rh' if moved == 'run folder' else 'snap_rh/w')
    later = tiny / str(first).replace(str(tiny / old), str(tiny / new))

    def rename(proc):
        os.rename(str(tiny / old), str(tiny / new))
        wait_for(lambda: os.path.exists(str(later) + '_iter_10.solverstate'), proc)
    code, err = _stopped_after(['train', 'rh.prototxt', '--run-dir', 'runs/rh1'], tiny,
                               lambda: os.path.exists(str(first) + '_iter_5.solverstate'), rename)
    m = re.search(r'resume with: (.*)', err)
    assert code == 143 and m, err
    command = shlex.split(m.group(1))
    assert not re.search(re.escape(old) + r'(/|\s|$)', m.group(1)) and new in m.group(1), m.group(1)
    assert command[:2] == ['caffe-mlic', 'train']
    res = run(command[1:] + ['--set', 'max_iter=%d' % (int(re.search(r'at iteration (\d+)', err).group(1)) + 2)],
              tiny)
    assert res.returncode == 0, res.stderr
    info = run_json(tiny / 'runs' / ('rh2' if moved == 'run folder' else 'rh1'))
    assert info['snapshot_prefix'].startswith(new + '/') and not (tiny / old).exists()


def test_a_folder_made_mid_run_at_a_caffemodel_name_is_named_as_that(tiny):
    """The failure named the state for a folder at the caffemodel's name
    (pass 27 M8)."""
    solver(tiny, 'fmc', max_iter=2000, snapshot=5)
    code, err = _after_the_first_snapshot(
        ['train', 'fmc.prototxt', '--run-dir', 'runs/fmc'], tiny, tiny / 'snap_fmc' / 'w_iter_5.solverstate',
        lambda: (tiny / 'snap_fmc' / 'w_iter_60.caffemodel').mkdir())
    assert code == 1, err
    assert 'cannot write the snapshot at iteration 60 (snap_fmc/w_iter_60.caffemodel): Is a directory' in err, err
    assert not (tiny / 'snap_fmc' / 'w_iter_60.solverstate').exists()


def test_renames_at_any_moment_never_stop_the_run_nor_split_it(tiny):
    """A rename landing inside a snapshot's write (between Caffe's write,
    the rename into place and run.json) stopped the run, left run.json
    naming the old prefix and a stray folder at the old name (pass 30 S1):
    every file of the run is now written through the folders'
    descriptors. The folder is renamed back and forth every few ms while
    the run snapshots at every iteration."""
    import threading
    solver(tiny, 'rml', max_iter=120, snapshot=1, snapshot_prefix='')
    names = [tiny / 'runs' / 'rml_a', tiny / 'runs' / 'rml_b']
    proc = start(['train', 'rml.prototxt', '--run-dir', 'runs/rml_a'], tiny, stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE)
    done, renames = threading.Event(), [0]

    def rename_again_and_again():
        while not done.is_set():
            with contextlib.suppress(OSError):
                os.rename(str(names[renames[0] % 2]), str(names[(renames[0] + 1) % 2]))
                renames[0] += 1
            time.sleep(0.003)
    try:
        wait_for(lambda: (names[0] / 'snapshots' / 'rml_iter_1.solverstate').exists(), proc)
        mover = threading.Thread(target=rename_again_and_again)
        mover.start()
        err = proc.communicate(timeout=300)[1]
    finally:
        done.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    mover.join()
    assert renames[0] > 20 and proc.returncode == 0, err.strip().splitlines()[-1]
    here = names[renames[0] % 2]
    other = names[(renames[0] + 1) % 2]
    assert not other.exists(), [str(p) for p in other.rglob('*')]       # (nothing written at the other name)
    # run.json as the run left it (the folder may have moved on after it ended; its run_dir and prefix
    # are read a moment apart, and --resume auto knows the run's states by their identities anyway)
    info = run_json(here)
    assert info['status'] == 'finished' and info['snapshot_prefix'] in ('runs/rml_a/snapshots/rml',
                                                                         'runs/rml_b/snapshots/rml')
    assert info['last_snapshot'] == info['snapshot_prefix'] + '_iter_120.solverstate', info
    assert not [p.name for p in here.rglob('*') if 'partial' in p.name or p.name.endswith('tmp')]
    res = run(['train', 'rml.prototxt', '--run-dir', 'runs/' + here.name, '--set', 'max_iter=122',
               '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'iteration 120' in res.stdout + res.stderr, res.stderr


def test_a_new_run_at_a_running_runs_old_name_keeps_its_own_claim(tiny):
    """A running run folder renamed away and a new run started under its
    name: the older run rewrote the new one's claim (by the old name), and
    the new run died at its next snapshot (pass 30 S2)."""
    solver(tiny, 'clm', max_iter=2000, snapshot=5, snapshot_prefix='')
    def rename_and_start_another(_):
        os.rename(str(tiny / 'runs' / 'clm'), str(tiny / 'runs' / 'clm_old'))
        res = run(['train', 'clm.prototxt', '--run-dir', 'runs/clm', '--set', 'max_iter=30'], tiny)
        assert res.returncode == 0, res.stderr
        assert (tiny / 'runs' / 'clm' / 'snapshots' / '.clm.run').read_text() == '..\n'
    code, err = _stopped_after(['train', 'clm.prototxt', '--run-dir', 'runs/clm'], tiny,
                               (tiny / 'runs' / 'clm' / 'snapshots' / 'clm_iter_5.solverstate').exists,
                               rename_and_start_another)
    assert code == 143 and 'runs/clm_old' in err, err
    for folder in ('clm', 'clm_old'):       # (each names its own run folder: the one above)
        assert (tiny / 'runs' / folder / 'snapshots' / '.clm.run').read_text() == '..\n'
    res = run(['train', 'clm.prototxt', '--run-dir', 'runs/clm', '--set', 'max_iter=35', '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'iteration 30' in res.stdout + res.stderr, res.stderr


def test_a_finished_runs_snapshot_folder_renamed_after_resumes_in_its_folder(tiny):
    """The run's own folder was refused, as another run's, with "its
    run.json cannot be read" (pass 30 M4): the states run.json recorded
    writing are these."""
    solver(tiny, 'fra', max_iter=5, snapshot=5)
    assert run(['train', 'fra.prototxt', '--run-dir', 'runs/fra'], tiny).returncode == 0
    os.rename(str(tiny / 'snap_fra'), str(tiny / 'snap_fra2'))
    res = run(['train', 'fra.prototxt', '--run-dir', 'runs/fra', '--set', 'snapshot_prefix=snap_fra2/w',
               '--set', 'max_iter=8', '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'iteration 5' in res.stdout + res.stderr, res.stderr


def test_resume_auto_after_the_snapshot_folder_went_keeps_the_runs_record(tiny):
    """--resume auto started over at iteration 0, writing over the run's
    log and run.json, when its snapshot folder had been moved or removed
    (pass 31 S1)."""
    solver(tiny, 'gone', max_iter=10, snapshot=5)
    run_dir = tiny / 'runs' / 'gone'
    assert run(['train', 'gone.prototxt', '--run-dir', run_dir], tiny).returncode == 0
    before = [(run_dir / name).read_bytes() for name in ('run.json', 'log.csv')]
    os.rename(str(tiny / 'snap_gone'), str(tiny / 'snap_gone_kept'))
    res = run(['train', 'gone.prototxt', '--run-dir', run_dir, '--set', 'max_iter=15', '--resume', 'auto'], tiny)
    assert res.returncode == 2 and res.stderr == (
        'caffe-mlic train: argument --resume: auto: the run in %s last reached snap_gone/w_iter_10.solverstate (its run.json), '
        'and no snapshot with prefix snap_gone/w is there now (its snapshot folder moved or removed?): give the '
        'state where it is now with --resume, or run without --resume to start this run folder over\n' % run_dir)
    assert [(run_dir / name).read_bytes() for name in ('run.json', 'log.csv')] == before
    res = run(['train', 'gone.prototxt', '--run-dir', run_dir, '--set', 'max_iter=15', '--set',
               'snapshot_prefix=snap_gone_kept/w', '--resume', 'snap_gone_kept/w_iter_10.solverstate'], tiny)
    assert res.returncode == 0 and 'iteration 10' in res.stdout + res.stderr, res.stderr
    shutil.rmtree(str(tiny / 'snap_gone_kept'))     # (removed: the same refusal; without --resume, over)
    res = run(['train', 'gone.prototxt', '--run-dir', run_dir, '--set', 'max_iter=20', '--resume', 'auto'], tiny)
    assert res.returncode == 2 and 'last reached snap_gone_kept/w_iter_15.solverstate' in res.stderr, res.stderr
    assert run(['train', 'gone.prototxt', '--run-dir', run_dir, '--set', 'max_iter=5'], tiny).returncode == 0
    assert run_json(run_dir)['start_iteration'] == 0


def test_resume_auto_refuses_a_prefix_that_now_leads_to_another_runs_states(tiny):
    """The prefix's folder a symlink re-pointed at another run's snapshots,
    that run's claim removed: --resume auto went on from the other run's
    newest state, an iteration this run never reached (pass 31 S3)."""
    (tiny / 'fdA').mkdir()
    os.symlink('fdA', str(tiny / 'flnk'))
    solver(tiny, 'fy', max_iter=10, snapshot=5, snapshot_prefix='fdB/w', base_lr=0.003)
    assert run(['train', 'fy.prototxt', '--run-dir', 'runs/fy'], tiny).returncode == 0
    solver(tiny, 'fx', max_iter=5, snapshot=5, snapshot_prefix='flnk/w')
    assert run(['train', 'fx.prototxt', '--run-dir', 'runs/fx'], tiny).returncode == 0
    os.unlink(str(tiny / 'flnk'))
    os.symlink('fdB', str(tiny / 'flnk'))
    os.unlink(str(tiny / 'fdB' / '.w.run'))       # (as the refusal of the other run's prefix offers)
    res = run(['train', 'fx.prototxt', '--run-dir', 'runs/fx', '--set', 'max_iter=15', '--resume', 'auto'], tiny)
    assert res.returncode == 2 and res.stderr == (
        "caffe-mlic train: argument --resume: auto: flnk/w_iter_5.solverstate is not the state the run in runs/fx reached at "
        "iteration 5 (its run.json records another file): the prefix flnk/w holds another run's snapshots, or this "
        "one changed since; give "
        "the state to resume from with --resume, or start a new run elsewhere\n"), res.stderr
    # pointed back: its own state again
    os.unlink(str(tiny / 'flnk'))
    os.symlink('fdA', str(tiny / 'flnk'))
    res = run(['train', 'fx.prototxt', '--run-dir', 'runs/fx', '--set', 'max_iter=8', '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'resuming from flnk/w_iter_5.solverstate' in res.stdout + res.stderr, res.stderr


def test_resume_auto_after_a_resume_from_another_folders_state_is_not_refused(tiny):
    """The run last resumed from a state of another prefix (killed before
    its first snapshot): this prefix's state of that iteration is another
    file, and says nothing about whose snapshots the prefix holds; the run
    goes on from the state it reached, not from this prefix's state of that
    iteration (another weight history, pass 33 S1) nor from the states it
    left."""
    solver(tiny, 'ra', max_iter=10, snapshot=5)
    assert run(['train', 'ra.prototxt', '--run-dir', 'runs/ra'], tiny).returncode == 0
    solver(tiny, 'rb', max_iter=5, snapshot=5, base_lr=0.01)
    assert run(['train', 'rb.prototxt', '--run-dir', 'runs/rb'], tiny).returncode == 0
    proc = start(['train', 'ra.prototxt', '--run-dir', 'runs/ra', '--resume', 'snap_rb/w_iter_5.solverstate',
                  '--set', 'max_iter=2000', '--set', 'snapshot=1000'], tiny, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (tiny / 'runs' / 'ra' / 'run.json').exists() and
                 run_json(tiny / 'runs' / 'ra').get('resumed_from') == 'snap_rb/w_iter_5.solverstate', proc)
    finally:
        proc.kill()
        proc.wait()
    model = tiny / 'snap_rb' / 'w_iter_5.caffemodel'
    os.rename(str(model), str(model) + '.away')     # (that state unusable: never this prefix's of its iteration)
    res = run(['train', 'ra.prototxt', '--run-dir', 'runs/ra', '--set', 'max_iter=12', '--resume', 'auto'], tiny)
    assert res.returncode == 2 and 'skipping snap_ra/w_iter_5.solverstate: not the state this run reached at ' \
        'iteration 5 (snap_rb/w_iter_5.solverstate)' in res.stderr, res.stderr
    os.rename(str(model) + '.away', str(model))
    res = run(['train', 'ra.prototxt', '--run-dir', 'runs/ra', '--set', 'max_iter=12', '--resume', 'auto'], tiny)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and 'resuming from snap_rb/w_iter_5.solverstate' in out, res.stderr
    assert 'skipping snap_ra/w_iter_10.solverstate: this run left it' in out


KILLED_BEFORE_THE_STATE = """
import os, signal, sys
from caffe_mlic.engine import snapshots
write_state = snapshots._point_state_at

def killed_first(staged_state, state, model, hdf5):     # (SIGKILL between the two renames of a snapshot)
    if state.endswith(os.environ['KILL_AT']):
        os.kill(os.getpid(), signal.SIGKILL)
    return write_state(staged_state, state, model, hdf5)
snapshots._point_state_at = killed_first
from caffe_mlic.cli import main
sys.exit(main())
"""


def test_resume_auto_goes_on_from_an_explicit_resume_not_from_the_line_it_left(tiny, tmp_path):
    """A run resumed from an earlier state of its own (--resume PATH) goes
    on from there: --resume auto went back to the newer states it left
    (pass 32 S1). A kill between a snapshot's caffemodel and its state left
    the new weights beside the old state, and --resume auto took that mix
    (S3): the old state goes first."""
    solver(tiny, 'lft', max_iter=20, snapshot=5)
    run_dir = tiny / 'runs' / 'lft'
    assert run(['train', 'lft.prototxt', '--run-dir', run_dir], tiny).returncode == 0
    res = run(['train', 'lft.prototxt', '--run-dir', run_dir, '--set', 'base_lr=0.002', '--set', 'max_iter=12',
               '--resume', 'snap_lft/w_iter_5.solverstate'], tiny)
    assert res.returncode == 0, res.stderr
    res = run(['train', 'lft.prototxt', '--run-dir', run_dir, '--set', 'base_lr=0.002', '--set', 'max_iter=30',
               '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'resuming from snap_lft/w_iter_12.solverstate' in res.stdout + res.stderr, \
        res.stderr
    assert 'skipping snap_lft/w_iter_20.solverstate: this run left it' in res.stdout + res.stderr
    # killed between the renames of its snapshot at 10, where an earlier w_iter_10 was
    hook = tmp_path / 'killed_first.py'
    hook.write_text(KILLED_BEFORE_THE_STATE)
    res = subprocess.run([sys.executable, str(hook), 'train', 'lft.prototxt', '--run-dir', str(run_dir), '--set',
                          'base_lr=0.003', '--resume', 'snap_lft/w_iter_5.solverstate'], cwd=tiny, timeout=300,
                         env=dict(ENV, KILL_AT='w_iter_10.solverstate'), capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL, res.stderr
    assert (tiny / 'snap_lft' / 'w_iter_10.caffemodel').exists()
    assert not (tiny / 'snap_lft' / 'w_iter_10.solverstate').exists()
    res = run(['train', 'lft.prototxt', '--run-dir', run_dir, '--set', 'base_lr=0.003', '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'resuming from snap_lft/w_iter_5.solverstate' in res.stdout + res.stderr, \
        res.stderr


def test_resume_auto_with_only_incomplete_snapshots_left_keeps_the_runs_record(tiny):
    """The run's state gone, a state without its caffemodel left: --resume
    auto started over, writing over the run's log and run.json (pass 32 S2)."""
    solver(tiny, 'inc', max_iter=10, snapshot=5)
    run_dir = tiny / 'runs' / 'inc'
    assert run(['train', 'inc.prototxt', '--run-dir', run_dir], tiny).returncode == 0
    before = (run_dir / 'run.json').read_bytes()
    for name in ('w_iter_10.solverstate', 'w_iter_10.caffemodel', 'w_iter_5.caffemodel'):
        (tiny / 'snap_inc' / name).unlink()
    res = run(['train', 'inc.prototxt', '--run-dir', run_dir, '--set', 'max_iter=15', '--resume', 'auto'], tiny)
    assert res.returncode == 2 and res.stderr.endswith(
        'auto: the run in %s last reached snap_inc/w_iter_10.solverstate (its run.json), and the prefix snap_inc/w '
        'holds no complete snapshot of it now: give the state to resume from with --resume, or run without '
        '--resume to start this run folder over\n' % run_dir), res.stderr
    assert (run_dir / 'run.json').read_bytes() == before


def test_resume_auto_on_a_run_killed_after_its_last_snapshot_records_it_finished(tiny):
    """A SIGKILL right after the last snapshot left run.json "running", and
    --resume auto ("nothing to train") left it so (pass 32 M1)."""
    solver(tiny, 'kaf', max_iter=5, snapshot=5)
    run_dir = tiny / 'runs' / 'kaf'
    assert run(['train', 'kaf.prototxt', '--run-dir', run_dir], tiny).returncode == 0
    info = run_json(run_dir)
    killed = dict(info, status='running', final_iteration=0, last_snapshot=None, last_snapshot_id=None)
    (run_dir / 'run.json').write_text(json.dumps(killed))        # (as the kill leaves it)
    res = run(['train', 'kaf.prototxt', '--run-dir', run_dir, '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'at max_iter 5 already' in res.stderr, res.stderr
    after = run_json(run_dir)
    assert after['status'] == 'finished' and after['final_iteration'] == 5
    assert after['last_snapshot'] == 'snap_kaf/w_iter_5.solverstate' and after['last_snapshot_id'] == \
        info['last_snapshot_id']


def test_resume_auto_never_goes_on_from_another_line_of_this_prefix(tiny, tmp_path):
    """Pass 34: the state a run was resumed from, in another prefix, gone
    (S1), or that prefix named like this one's states (w_iter_5 beside w,
    S2): --resume auto went on from this prefix's state of that iteration,
    another weight history. A run whose last snapshot went to another
    prefix, run again with this one: it went on from the states of the line
    it had left (S3)."""
    solver(tiny, 'sa', max_iter=10, snapshot=5)
    assert run(['train', 'sa.prototxt', '--run-dir', 'runs/sa'], tiny).returncode == 0
    solver(tiny, 'sb', max_iter=5, snapshot=5, base_lr=0.01, snapshot_prefix='snap_sa/w_iter_5')
    assert run(['train', 'sb.prototxt', '--run-dir', 'runs/sb'], tiny).returncode == 0
    other = tiny / 'snap_sa' / 'w_iter_5_iter_5.solverstate'
    proc = start(['train', 'sa.prototxt', '--run-dir', 'runs/sa', '--resume', str(other.relative_to(tiny)),
                  '--set', 'max_iter=2000', '--set', 'snapshot=1000'], tiny, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: run_json(tiny / 'runs' / 'sa').get('resumed_from') == str(other.relative_to(tiny)), proc)
    finally:
        proc.kill()
        proc.wait()
    os.rename(str(other), str(other) + '.away')
    res = run(['train', 'sa.prototxt', '--run-dir', 'runs/sa', '--set', 'max_iter=7', '--resume', 'auto'], tiny)
    assert res.returncode == 2 and 'auto: the run in runs/sa was last resumed from snap_sa/w_iter_5_iter_5.' \
        'solverstate (its run.json), which is not there any more as it was' in res.stderr, res.stderr
    os.rename(str(other) + '.away', str(other))
    res = run(['train', 'sa.prototxt', '--run-dir', 'runs/sa', '--set', 'max_iter=7', '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'resuming from snap_sa/w_iter_5_iter_5.solverstate' in res.stderr, res.stderr
    res = run(['train', 'sa.prototxt', '--run-dir', 'runs/sa', '--set', 'snapshot_prefix=snap_sc/v', '--set',
               'max_iter=10', '--resume', 'snap_sa/w_iter_5.solverstate'], tiny)
    assert res.returncode == 0, res.stderr
    res = run(['train', 'sa.prototxt', '--run-dir', 'runs/sa', '--set', 'max_iter=12', '--resume', 'auto'], tiny)
    assert res.returncode == 2 and 'auto: the run in runs/sa last wrote snap_sc/v_iter_10.solverstate (its ' \
        'run.json), with prefix snap_sc/v, and snap_sa/w does not hold it: resume with --set ' \
        'snapshot_prefix=snap_sc/v' in res.stderr, res.stderr
    # the same move to a new prefix killed before its first snapshot was recorded: the line it left in
    # this prefix (w_iter_7, w_iter_10) is not gone back to (pass 35)
    hook = tmp_path / 'killed_first.py'
    hook.write_text(KILLED_BEFORE_THE_STATE)
    res = subprocess.run([sys.executable, str(hook), 'train', 'sa.prototxt', '--run-dir', 'runs/sa', '--set',
                          'snapshot_prefix=snap_sd/v', '--set', 'max_iter=10', '--resume',
                          'snap_sa/w_iter_5.solverstate'], cwd=tiny, timeout=300,
                         env=dict(ENV, KILL_AT='v_iter_10.solverstate'), capture_output=True, text=True)
    assert res.returncode == -signal.SIGKILL, res.stderr
    res = run(['train', 'sa.prototxt', '--run-dir', 'runs/sa', '--set', 'max_iter=12', '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'resuming from snap_sa/w_iter_5.solverstate' in res.stderr, res.stderr
    assert 'skipping snap_sa/w_iter_10.solverstate: this run left it' in res.stderr


def test_a_copied_projects_run_without_its_snapshots_is_not_sent_to_the_originals(tiny):
    """The copy's --resume auto was told to resume with --set
    snapshot_prefix=snap/w, its own prefix (the snapshots found were the
    original project's, another run folder's) (pass 33 M1)."""
    (tiny / 'proj').mkdir()
    solver(tiny / 'proj', 'cp', max_iter=5, snapshot=5, snapshot_prefix='snap/w')
    (tiny / 'proj' / 'cp.prototxt').write_text((tiny / 'proj' / 'cp.prototxt').read_text().replace(
        str(tiny / 'proj' / 'nets'), str(tiny / 'nets')))
    assert run(['train', 'cp.prototxt', '--run-dir', 'runs/r'], tiny / 'proj').returncode == 0
    shutil.copytree(str(tiny / 'proj'), str(tiny / 'proj_copy'), symlinks=True)
    shutil.rmtree(str(tiny / 'proj_copy' / 'snap'))
    res = run(['train', 'cp.prototxt', '--run-dir', 'runs/r', '--set', 'max_iter=8', '--resume', 'auto'],
              tiny / 'proj_copy')
    assert res.returncode == 2 and 'last reached snap/w_iter_5.solverstate (its run.json), and no snapshot with ' \
        'prefix snap/w is there now' in res.stderr and '--set snapshot_prefix' not in res.stderr, res.stderr
    assert run(['train', 'cp.prototxt', '--run-dir', 'runs/r', '--set', 'max_iter=8'], tiny / 'proj_copy').returncode \
        == 0


def test_a_snapshot_folder_removed_or_re_pointed_while_its_run_trains(tiny):
    """Caffe writes into the folder the run began with: one removed (and
    made again at its name) is a one-line error, not Caffe's abort on a
    write into a removed folder; a symlink re-pointed to another folder
    leaves the run writing where it began, and it says so."""
    solver(tiny, 'srm', max_iter=20, snapshot=5)

    def remove_and_make_again():
        shutil.rmtree(str(tiny / 'snap_srm'))
        (tiny / 'snap_srm').mkdir()
    code, err = _after_the_first_snapshot(['train', 'srm.prototxt', '--run-dir', 'runs/srm'], tiny,
                                          tiny / 'snap_srm' / 'w_iter_5.solverstate', remove_and_make_again)
    assert code == 1 and 'caffe-mlic train: the snapshot folder snap_srm was removed while this run trained' in err
    # (its last snapshot went with it: not named as if it were there, pass 31 M2)
    assert 'its last snapshot, snap_srm/w_iter_5.solverstate, is not there any more' in err, err
    info = run_json(tiny / 'runs' / 'srm')
    assert 'Check failed' not in err and info['status'] == 'failed'
    # (the identity recorded when the state was written is kept: pass 28 M1 found it nulled)
    assert info['last_snapshot'] == 'snap_srm/w_iter_5.solverstate' and len(info['last_snapshot_id']) == 2
    assert not list((tiny / 'snap_srm').iterdir())

    (tiny / 'real_a').mkdir()
    (tiny / 'real_b').mkdir()
    os.symlink('real_a', str(tiny / 'snap_lk'))
    solver(tiny, 'slk', max_iter=20, snapshot=5, snapshot_prefix='snap_lk/w')

    def re_point():
        os.unlink(str(tiny / 'snap_lk'))
        os.symlink('real_b', str(tiny / 'snap_lk'))
    code, err = _after_the_first_snapshot(['train', 'slk.prototxt', '--run-dir', 'runs/slk'], tiny,
                                          tiny / 'real_a' / 'w_iter_5.solverstate', re_point)
    assert code == 0, err
    assert "the snapshot folder snap_lk now leads to another folder: this run's snapshots go on in real_a" in err
    assert (tiny / 'real_a' / 'w_iter_20.caffemodel').exists() and not list((tiny / 'real_b').iterdir())


def test_a_run_folder_whose_name_is_not_utf8_snapshots_and_resumes(tiny):
    """The claim beside the snapshots was written as UTF-8 text: a run
    folder named in another encoding lost its run at the first snapshot
    (pass 29 S6)."""
    solver(tiny, 'nu', max_iter=10, snapshot=5)
    run_dir = os.fsdecode(b'runs/r\xff')

    def run_bytes(args):        # (the output names the folder in its own bytes)
        res = subprocess.run(CLI + args, cwd=tiny, capture_output=True, timeout=300, env=ENV)
        return res.returncode, (res.stdout + res.stderr).decode('utf-8', 'replace')
    code, out = run_bytes(['train', 'nu.prototxt', '--run-dir', run_dir, '--set', 'max_iter=5'])
    assert code == 0, out
    assert (tiny / 'snap_nu' / '.w.run').read_bytes() == b'../runs/r\xff\n'
    code, out = run_bytes(['train', 'nu.prototxt', '--run-dir', run_dir, '--resume', 'auto'])
    assert code == 0 and 'iteration 5' in out, out
    assert (tiny / 'snap_nu' / 'w_iter_10.caffemodel').exists()
    # the resume command a stopped run prints can be pasted: the name in bash's $'' form (pass 30 M5)
    solver(tiny, 'nus', max_iter=2000, snapshot=5)
    code, err = _stopped_after(['train', 'nus.prototxt', '--run-dir', os.fsdecode(b'runs/s\xff')], tiny,
                               (tiny / 'snap_nus' / 'w_iter_5.solverstate').exists, lambda proc: None)
    assert code == 143 and "--run-dir $'runs/s\\xff'\n" in err and 'udc' not in err, err


def test_a_printed_command_is_one_line_that_bash_reads_back():
    """A newline in a run folder's name spread the resume command over
    lines (pass 31 M7); bytes that are not UTF-8 were printed as \\udcff."""
    from caffe_mlic.engine.trainer import shell_join
    args = ['caffe-mlic', 'train', 'a b', os.fsdecode(b'runs/r\xff'), 'runs/nl\nx', "it's", '\u00e9', '-x']
    line = shell_join(args)
    assert '\n' not in line and 'udc' not in line
    out = subprocess.run(['bash', '-c', 'for a in %s; do printf "%%s\\0" "$a"; done' % line], capture_output=True,
                         check=True).stdout
    assert out.split(b'\0')[:-1] == [os.fsencode(a) for a in args]


def test_a_run_folder_symlink_re_pointed_while_it_trains_is_not_called_a_move(tiny):
    """It said "the run folder runs/L was moved to .../realL" (pass 31 M8)."""
    solver(tiny, 'rpl', max_iter=20, snapshot=5)
    for name in ('realL', 'realL2'):
        (tiny / 'runs' / name).mkdir(parents=True)
    os.symlink('realL', str(tiny / 'runs' / 'L'))

    def re_point():
        os.unlink(str(tiny / 'runs' / 'L'))
        os.symlink('realL2', str(tiny / 'runs' / 'L'))
    code, err = _after_the_first_snapshot(['train', 'rpl.prototxt', '--run-dir', 'runs/L'], tiny,
                                          tiny / 'snap_rpl' / 'w_iter_5.solverstate', re_point)
    assert code == 0 and 'the run folder runs/L now leads to another folder: this run goes on in %s, where it ' \
        'began' % (tiny / 'runs' / 'realL') in err and 'moved' not in err, err
    assert run_json(tiny / 'runs' / 'realL')['status'] == 'finished' and not list((tiny / 'runs' / 'realL2').iterdir())


def test_a_snapshot_prefix_that_is_not_utf8_is_named_as_such(tiny):
    """It was "out of the range of the field (type 9)" (pass 29 M5)."""
    path = solver(tiny, 'nu8', max_iter=5)
    assert solver_problems(path, [os.fsdecode(b'snapshot_prefix=h5n\xff/w')]) == (
        'UsageError', "snapshot_prefix: h5n\\xff/w is not UTF-8 text, and a solver's strings are (a path in "
                      "another encoding cannot be given to Caffe)")


def test_a_run_folder_whose_name_ends_in_a_space_keeps_its_prefix(tiny):
    """The claim was read back stripped: "runs/sp " became "runs/sp", and
    the run was refused at its own second snapshot (pass 26 M4)."""
    solver(tiny, 'sp', max_iter=10, snapshot=5)
    res = run(['train', 'sp.prototxt', '--run-dir', 'runs/sp '], tiny)
    assert res.returncode == 0, res.stderr
    assert (tiny / 'snap_sp' / '.w.run').read_text() == '../runs/sp \n'
    res = run(['train', 'sp.prototxt', '--run-dir', 'runs/sp'], tiny)
    assert res.returncode == 1 and 'is the snapshot prefix of the run in %s' % (tiny / 'runs' / 'sp ') in res.stderr


def test_a_lock_file_held_for_a_moment_by_a_sweep_is_not_taken_for_a_run(tmp_path):
    """Another process's sweep_lock_files holds an unheld lock file for a
    moment; a run starting then was told another run was writing its prefix
    (pass 26 M2): lock_file tries again for a while first."""
    import fcntl
    import threading
    from caffe_mlic.processes import lock_file, unlock_file
    path = str(tmp_path / 'x.lock')
    open(path, 'w').close()
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def sweep_ends():
        time.sleep(0.05)
        os.unlink(path)
        os.close(fd)
    sweeper = threading.Thread(target=sweep_ends)
    sweeper.start()
    held = lock_file(path, 'busy: %s')
    sweeper.join()
    assert open(path).read() == '%d\n' % os.getpid()
    unlock_file(held)
    assert not os.path.exists(path)


def test_resume_auto_never_takes_the_newer_state_of_the_run_this_folder_started_over_from(tiny):
    """A run folder started over within 2 s of its older run's last state
    (Ctrl-C, up-arrow, Enter): --resume auto went on from that run's newer
    iteration (pass 27 S1). The states the prefix held when the run began
    are recorded (size and digest) and passed over, whatever the clocks."""
    solver(tiny, 'so', max_iter=10, snapshot=5)
    assert run(['train', 'so.prototxt', '--run-dir', 'runs/so'], tiny).returncode == 0
    older = tiny / 'snap_so' / 'w_iter_10.solverstate'
    soon = time.time() + 30         # (as if written just before the next run began, on any clock)
    os.utime(str(older), (soon, soon))
    assert run(['train', 'so.prototxt', '--run-dir', 'runs/so', '--set', 'max_iter=7'], tiny).returncode == 0
    assert snapshots.file_identity(str(older)) in run_json(tiny / 'runs' / 'so')['prior_snapshots']
    later = time.time() + 60        # (a tar round trip or a touch: the older state's times change, not its bytes)
    os.utime(str(older), (later, later))
    res = run(['train', 'so.prototxt', '--run-dir', 'runs/so', '--set', 'max_iter=12', '--resume', 'auto'], tiny)
    assert res.returncode == 0, res.stderr
    assert 'resuming from snap_so/w_iter_7.solverstate at iteration 7' in res.stdout + res.stderr, res.stderr
    assert 'skipping snap_so/w_iter_10.solverstate' in res.stdout + res.stderr


def test_a_state_that_differs_only_in_its_middle_has_another_identity(tmp_path):
    """Two states of one size whose first and last 64 KB agree (a net whose
    first and last layers are frozen: their history is zeros in both) were
    one identity, so --resume auto could take the other run's state for
    this run's (pass 34 M2). The identity digests the whole file; the form
    versions up to 6110669 recorded is still read as it was written."""
    head, tail = os.urandom(1 << 16), os.urandom(1 << 16)
    mine, theirs = tmp_path / 'mine.solverstate', tmp_path / 'theirs.solverstate'
    mine.write_bytes(head + b'\1' * (1 << 20) + tail)
    theirs.write_bytes(head + b'\1' * (1 << 19) + b'\2' + b'\1' * ((1 << 19) - 1) + tail)
    identity = snapshots.file_identity(str(mine))
    assert identity[0] == mine.stat().st_size and identity[1].startswith('v2:')
    assert snapshots.file_identity(str(theirs)) != identity
    assert snapshots.identity_in(str(mine), [identity]) and not snapshots.identity_in(str(theirs), [identity])
    older = snapshots._head_tail_identity(str(mine))
    assert older == snapshots._head_tail_identity(str(theirs))     # (what the older form could not tell)
    assert snapshots.has_digest(older) and snapshots.identity_in(str(mine), [older])
    with open(str(mine), 'r+b') as f:       # (written over in place: the digest is not taken from the cache)
        f.seek(1 << 17)
        f.write(b'\3')
    assert snapshots.file_identity(str(mine)) != identity
    assert not snapshots.identity_in(str(mine), [identity])


def test_a_state_past_the_snapshot_after_the_last_recorded_one_is_not_the_runs(tiny):
    """Another run's state copied by hand into the prefix, two snapshots past
    the last one run.json records: --resume auto went on from it (pass 36
    M1). A SIGKILL between a state and run.json loses one snapshot, never
    two: the run goes on from its own last state."""
    solver(tiny, 'past', max_iter=20, snapshot=10)
    assert run(['train', 'past.prototxt', '--run-dir', 'runs/past'], tiny).returncode == 0
    assert run(['train', 'past.prototxt', '--run-dir', 'runs/other', '--set', 'snapshot_prefix=snap_other/w',
                '--set', 'max_iter=40', '--set', 'base_lr=0.003'], tiny).returncode == 0
    for kind in ('caffemodel', 'solverstate'):
        shutil.copyfile(str(tiny / 'snap_other' / ('w_iter_40.' + kind)), str(tiny / 'snap_past' / ('w_iter_40.' + kind)))
    assert run_json(tiny / 'runs' / 'past')['snapshot'] == 10
    res = run(['train', 'past.prototxt', '--run-dir', 'runs/past', '--set', 'max_iter=50', '--resume', 'auto'], tiny)
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert ('skipping snap_past/w_iter_40.solverstate: not a state this run wrote (newer than iteration 20, its '
            'last recorded state, where its schedule ended)') in out, out
    assert 'resuming from snap_past/w_iter_20.solverstate at iteration 20' in out, out


RUN_JSON_FULL_AFTER = """
import errno, os, sys
from caffe_mlic.engine import logs
write = logs.write_run_json

def full_disk(run_dir, info):      # (the run folder's disk full once the snapshot of KILL_AT is taken)
    if info.get('status') == 'running' and str(info.get('last_snapshot') or '').endswith(os.environ['FULL_AT']):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(run_dir, 'run.json'))
    return write(run_dir, info)
logs.write_run_json = full_disk
from caffe_mlic.cli import main
sys.exit(main())
"""


def test_a_run_that_cannot_record_its_snapshot_stops(tiny, tmp_path):
    """The run folder's disk full (another file system than the snapshots'):
    the run trained on, writing snapshots run.json never recorded, and
    --resume auto, which takes at most one such state, went back past them
    (pass 37a F2). The run stops at the first; auto goes on from it."""
    solver(tiny, 'fullrec', max_iter=20, snapshot=5)
    hook = tmp_path / 'full.py'
    hook.write_text(RUN_JSON_FULL_AFTER)
    res = subprocess.run([sys.executable, str(hook), 'train', 'fullrec.prototxt', '--run-dir', 'runs/fullrec'],
                         cwd=tiny, timeout=300, env=dict(ENV, FULL_AT='w_iter_10.solverstate'), capture_output=True,
                         text=True)
    assert res.returncode == 1 and res.stderr == (
        'caffe-mlic train: cannot record the snapshot of iteration 10 in runs/fullrec/run.json: No space left on '
        'device; the last snapshot is snap_fullrec/w_iter_10.solverstate\n'), res.stderr
    assert not (tiny / 'snap_fullrec' / 'w_iter_15.solverstate').exists()
    res = run(['train', 'fullrec.prototxt', '--run-dir', 'runs/fullrec', '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'resuming from snap_fullrec/w_iter_10.solverstate at iteration 10' in res.stderr, \
        res.stderr


@pytest.mark.parametrize('info, last, expected', [
    (dict(snapshot=10, max_iter=50), ('w_iter_20.solverstate', 20, None), (20, 30)),   # (killed before 30 was recorded)
    (dict(snapshot=10, max_iter=25), ('w_iter_20.solverstate', 20, None), (20, 25)),   # (the final snapshot)
    (dict(snapshot=10, max_iter=20), ('w_iter_20.solverstate', 20, None), (20, 20)),
    (dict(snapshot=10, max_iter=50), ('w_iter_37.solverstate', 37, None), (37, 40)),   # (a stop's snapshot)
    (dict(snapshot=0, max_iter=50), ('w_iter_20.solverstate', 20, None), (20, 50)),
    (dict(snapshot=10, max_iter=50, start_iteration=0), None, (0, 10)),                # (a fresh start)
    (dict(max_iter=50), ('w_iter_20.solverstate', 20, None), None),                     # (an older run.json)
    (dict(snapshot=True, max_iter=50), ('w_iter_20.solverstate', 20, None), None),
])
def test_the_newest_iteration_a_run_can_have_left_unrecorded(info, last, expected):
    assert trainer.Trainer._last_unrecorded_iteration(info, last) == expected


def _as_an_older_version_recorded(run_dir, prefix_folder, form='mtime'):
    """Rewrite run.json's state identities as an older version recorded
    them: 'mtime', [size, mtime in ns] (versions 3aa4ef9 to 03a70e4), or
    'head_tail', [size, digest of the first and last 64 KB] (up to
    6110669)."""
    older = {}
    for path in prefix_folder.glob('*_iter_*'):
        info = path.stat()
        older[json.dumps(snapshots.file_identity(str(path)))] = (
            [info.st_size, info.st_mtime_ns] if form == 'mtime' else snapshots._head_tail_identity(str(path)))

    def convert(value):
        if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str):
            return older.get(json.dumps(value), value)
        if isinstance(value, list):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value
    info = convert(run_json(run_dir))
    (run_dir / 'run.json').write_text(json.dumps(info))
    return info


@pytest.mark.parametrize('form', ['mtime', 'head_tail'])
def test_state_identities_an_older_version_recorded_still_decide(tiny, form):
    """After an upgrade, identities recorded as [size, mtime] matched none:
    --resume auto went on from the older run's newer state (pass 29 S1).
    The head-and-tail digests of versions up to 6110669 decide too."""
    solver(tiny, 'oldid', max_iter=10, snapshot=5)
    assert run(['train', 'oldid.prototxt', '--run-dir', 'runs/oldid'], tiny).returncode == 0
    res = run(['train', 'oldid.prototxt', '--run-dir', 'runs/oldid', '--set', 'max_iter=5', '--set', 'base_lr=0.003'],
              tiny)                 # started over in the folder: the older run's 10 is not its own
    assert res.returncode == 0, res.stderr
    info = _as_an_older_version_recorded(tiny / 'runs' / 'oldid', tiny / 'snap_oldid', form)
    older = tiny / 'snap_oldid' / 'w_iter_10.solverstate'
    if form == 'mtime':
        assert [older.stat().st_size, older.stat().st_mtime_ns] in info['prior_snapshots']
        assert isinstance(info['last_snapshot_id'][1], int)
    else:
        assert snapshots._head_tail_identity(str(older)) in info['prior_snapshots']
        assert not info['last_snapshot_id'][1].startswith('v2:')
    res = run(['train', 'oldid.prototxt', '--run-dir', 'runs/oldid', '--set', 'max_iter=7', '--set', 'base_lr=0.003',
               '--resume', 'auto'], tiny)
    assert res.returncode == 0, res.stderr
    assert 'skipping snap_oldid/w_iter_10.solverstate' in res.stdout + res.stderr, res.stderr
    assert 'resuming from snap_oldid/w_iter_5.solverstate at iteration 5' in res.stdout + res.stderr, res.stderr


def test_a_run_whose_snapshots_were_removed_never_takes_another_runs_of_the_same_names(tiny):
    """a's snapshots removed, b trains with the same prefix and schedule and
    is archived: a's --resume auto went on from b's state, named like its
    own (pass 27 S2). run.json records each state's size and digest."""
    solver(tiny, 'idn', max_iter=10, snapshot=5)
    assert run(['train', 'idn.prototxt', '--run-dir', 'runs/idnA'], tiny).returncode == 0
    shutil.rmtree(str(tiny / 'snap_idn'))
    res = run(['train', 'idn.prototxt', '--run-dir', 'runs/idnB', '--set', 'max_iter=15', '--set', 'base_lr=0.003'],
              tiny)
    assert res.returncode == 0, res.stderr
    info = run_json(tiny / 'runs' / 'idnB')
    assert info['last_snapshot_id'] == snapshots.file_identity(str(tiny / 'snap_idn' / 'w_iter_15.solverstate'))
    os.rename(str(tiny / 'runs' / 'idnB'), str(tiny / 'idnB_archived'))
    _refused_a_gone_runs_prefix_that_resumes(tiny, 'idn', 'snap_idn', 15, 'runs/idnA', 'idnB_archived')


def _refused_a_gone_runs_prefix_that_resumes(cwd, name, folder, iteration, claimant, owner):
    """``claimant`` (a run folder) is refused the snapshots of the run now in
    ``owner`` (moved away), which leaves them whole, and ``owner`` resumes
    them at ``iteration``."""
    last = cwd / folder / ('w_iter_%d.caffemodel' % iteration)
    before = last.read_bytes()
    res = run(['train', name + '.prototxt', '--run-dir', claimant, '--set', 'max_iter=%d' % (iteration + 10),
               '--resume', 'auto'], cwd)
    assert res.returncode == 1 and 'which is not there any more' in res.stderr, res.stderr
    assert last.read_bytes() == before
    res = run(['train', name + '.prototxt', '--run-dir', owner, '--set', 'max_iter=%d' % (iteration + 5),
               '--resume', 'auto'], cwd)
    assert res.returncode == 0 and 'iteration %d' % iteration in res.stdout + res.stderr, res.stderr


def test_a_renamed_run_folder_holding_its_snapshots_resumes(tiny):
    """Snapshots inside the run folder (runs/j1/snap/w): renamed to runs/j2,
    the run.json's paths named runs/j1, and the run could not be resumed,
    even from an explicit state (pass 27 M4)."""
    solver(tiny, 'inner', max_iter=10, snapshot=5)
    res = run(['train', 'inner.prototxt', '--run-dir', 'runs/j1', '--set', 'snapshot_prefix=runs/j1/snap/w'], tiny)
    assert res.returncode == 0, res.stderr
    os.rename(str(tiny / 'runs' / 'j1'), str(tiny / 'runs' / 'j2'))
    res = run(['train', 'inner.prototxt', '--run-dir', 'runs/j2', '--set', 'snapshot_prefix=runs/j2/snap/w',
               '--set', 'max_iter=15', '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'iteration 10' in res.stdout + res.stderr, res.stderr
    assert (tiny / 'runs' / 'j2' / 'snap' / 'w_iter_15.caffemodel').exists()


def test_an_hdf5_state_whose_folder_was_renamed_resumes_from_the_caffemodel_beside_it(tiny):
    """An HDF5 state names its caffemodel by the old folder: the state was
    refused as missing its caffemodel (pass 28 M3); it now resumes from
    the one beside it, to the uninterrupted run's weights."""
    import h5py
    solver(tiny, 'h5m', max_iter=10, snapshot=5, snapshot_format=0)  # HDF5
    assert run(['train', 'h5m.prototxt', '--run-dir', 'runs/h5m_ref'], tiny).returncode == 0
    reference = h5py.File(str(tiny / 'snap_h5m' / 'w_iter_10.caffemodel.h5'), 'r')
    os.rename(str(tiny / 'snap_h5m'), str(tiny / 'snap_h5m_moved'))
    res = run(['train', 'h5m.prototxt', '--run-dir', 'runs/h5m_again', '--set', 'snapshot_prefix=snap_h5m2/w',
               '--resume', 'snap_h5m_moved/w_iter_5.solverstate.h5'], tiny)
    assert res.returncode == 0 and 'iteration 5' in res.stdout + res.stderr, res.stderr
    with reference as a, h5py.File(str(tiny / 'snap_h5m2' / 'w_iter_10.caffemodel.h5'), 'r') as b:
        names = []
        a['data'].visit(lambda n: names.append(n) if isinstance(a['data'][n], h5py.Dataset) else None)
        assert names and all(np.array_equal(a['data'][n][()], b['data'][n][()]) for n in names)
    with h5py.File(str(tiny / 'snap_h5m_moved' / 'w_iter_5.solverstate.h5'), 'r') as f:   # read, not rewritten
        assert f['learned_net'][()].rstrip(b'\0') == b'snap_h5m/w_iter_5.caffemodel.h5'


@pytest.mark.parametrize('prefix', ['snap_h5a/ww', 'snap_h5bbbbbbbbb/ww'])
def test_an_hdf5_state_names_its_caffemodel_with_a_terminating_nul(tiny, prefix):
    """The state's learned_net was written without its NUL: where the name
    filled the dataset (32, 40 bytes...), Caffe read on past it and looked
    for "...caffemodel.h50" (pass 28 S1)."""
    import h5py
    solver(tiny, 'h5n', max_iter=5, snapshot=5, snapshot_format=0, snapshot_prefix=prefix)  # HDF5
    assert run(['train', 'h5n.prototxt', '--run-dir', 'runs/h5n_' + prefix[-4:]], tiny).returncode == 0
    state = tiny / (prefix + '_iter_5.solverstate.h5')
    with h5py.File(str(state), 'r') as f:
        stored = f['learned_net'][()]
    assert stored == (prefix + '_iter_5.caffemodel.h5').encode() and len((prefix + '_iter_5.caffemodel.h5')) in (32, 40)
    with h5py.File(str(state), 'r') as f:
        assert f['learned_net'].dtype.itemsize == len(stored) + 1
    res = run(['train', 'h5n.prototxt', '--run-dir', 'runs/h5n_' + prefix[-4:], '--set', 'max_iter=8',
               '--resume', 'auto'], tiny)
    assert res.returncode == 0 and 'iteration 5' in res.stdout + res.stderr, res.stderr
    res = run(['caffe', 'train', '-solver', 'h5n.prototxt', '-snapshot', str(state)], tiny)
    assert res.returncode == 1 and 'is the snapshot prefix of the run in' in res.stderr, res.stderr


@pytest.mark.parametrize('previous', [5, True, {}, 'abc', None])
def test_a_hand_edited_run_json_is_no_traceback(tiny, previous):
    """run.json's `previous` of another kind, or a NUL in its cwd, gave a
    traceback on --resume auto (pass 28 S3)."""
    name = 'hand%s' % type(previous).__name__
    solver(tiny, name, max_iter=5, snapshot=5)
    assert run(['train', name + '.prototxt', '--run-dir', 'runs/' + name], tiny).returncode == 0
    info = run_json(tiny / 'runs' / name)
    info['previous'], info['cwd'] = previous, 'a\u0000b'
    (tiny / 'runs' / name / 'run.json').write_text(json.dumps(info))
    res = run(['train', name + '.prototxt', '--run-dir', 'runs/' + name, '--set', 'max_iter=8', '--resume', 'auto'],
              tiny)
    assert 'Traceback' not in res.stderr and res.returncode in (0, 1), res.stderr


@pytest.mark.parametrize('edit', ['cwd', 'snapshot_prefix', 'nested'])
def test_a_run_json_with_a_lone_surrogate_or_deep_nesting_is_no_traceback(tiny, edit):
    """A lone surrogate (valid JSON, no file name) in cwd or snapshot_prefix
    gave UnicodeEncodeError; a value nested 900 deep, which Python's parser
    reads, a RecursionError when written back (pass 29 S4). The first are
    passed over; the last is a run.json that cannot be read, said so."""
    name = 'sur_' + edit
    solver(tiny, name, max_iter=5, snapshot=5)
    assert run(['train', name + '.prototxt', '--run-dir', 'runs/' + name], tiny).returncode == 0
    path = tiny / 'runs' / name / 'run.json'
    info = run_json(tiny / 'runs' / name)
    if edit == 'nested':
        path.write_text(json.dumps(info)[:-1] + ', "x": ' + '[' * 900 + ']' * 900 + '}')
    else:
        info[edit] = info[edit].replace('snap', '\ud800') if edit == 'snapshot_prefix' else '/tmp/\ud800'
        path.write_text(json.dumps(info))
    res = run(['train', name + '.prototxt', '--run-dir', 'runs/' + name, '--set', 'max_iter=8', '--resume', 'auto'],
              tiny)
    assert 'Traceback' not in res.stderr and res.returncode in (0, 1), res.stderr
    if edit == 'nested':
        assert res.returncode == 1 and '(its run.json cannot be read)' in res.stderr


@pytest.mark.parametrize('name', ['log.csv', 'solver.prototxt', 'net.prototxt', 'curves.png', 'run.json'])
@pytest.mark.parametrize('kind', ['fifo', 'folder'])
def test_a_run_folder_file_of_another_kind_is_refused_before_the_run(tiny, name, kind):
    """A FIFO at runs/r/log.csv (or the solver's and net's copies, the
    curves) hung `train --resume auto` with its stop signals deferred: only
    opening the FIFO's other end ended it (pass 39c S2); a folder at
    curves.png was named by the folder's descriptor (/proc/self/fd/N, M1)."""
    path = solver(tiny, 'odd_files', max_iter=4, snapshot=2, test_interval=2)
    run_dir = tiny / 'runs' / ('odd_%s_%s' % (kind, name))
    own = ['--run-dir', run_dir, '--set', 'snapshot_prefix=snap_odd_%s_%s/w' % (kind, name)]
    res = run(['train', path, '--set', 'max_iter=2'] + own, tiny)
    assert res.returncode == 0, res.stderr
    target = run_dir / name
    if target.is_dir():
        shutil.rmtree(str(target))
    elif target.exists():
        target.unlink()
    os.mkfifo(str(target)) if kind == 'fifo' else target.mkdir()
    res = run(['train', path, '--resume', 'auto'] + own, tiny, timeout=120)
    assert res.returncode == 1, res.stderr
    assert res.stderr == 'caffe-mlic train: %s is %s, where the run writes its %s: move it away\n' % (
        target, 'a FIFO' if kind == 'fifo' else 'a folder', name), res.stderr


@pytest.mark.parametrize('name, target, how', [('log.csv', 'solver', 'link'), ('log.jsonl', 'datalist', 'link'),
                                               ('curves.png', 'net', 'hard link')])
def test_a_run_file_that_is_one_of_the_runs_inputs_is_refused_before_the_run(tiny, name, target, how):
    """A link at runs/r/log.csv to the solver being trained: the run wrote
    its CSV log over the solver (exit 0) and the resume failed on it; a
    log.jsonl linked to the datalist filled it with log lines (pass 44c S1)."""
    from caffe_mlic.caffe import prototxt
    from caffe_mlic.engine.nets import data_layers
    tag = name.replace('.', '_')
    path = solver(tiny, 'over_' + tag, max_iter=2)
    net = tiny / 'nets' / 'kd' / 'student_baseline.prototxt'
    source = prototxt.python_params(data_layers(prototxt.read_net(str(net)), 'TRAIN')[0])['source']
    victim = {'solver': tiny / path, 'net': net, 'datalist': tiny / source}[target]
    run_dir = tiny / 'runs' / ('over_' + tag)
    run_dir.mkdir(parents=True)
    (os.symlink if how == 'link' else os.link)(str(victim), str(run_dir / name))
    before = victim.read_bytes()
    res = run(['train', path, '--run-dir', run_dir], tiny)
    assert res.returncode == 1, res.stderr
    named = {'solver': path, 'net': str(net), 'datalist': source}[target]
    assert res.stderr == ('caffe-mlic train: %s is %s %s, an input of this run, where the run writes its %s: '
                          'move it away\n' % (run_dir / name, 'a link to' if how == 'link' else 'the same file as',
                                              named, name)), res.stderr
    assert victim.read_bytes() == before
    assert sorted(p.name for p in run_dir.iterdir()) == [name]


def test_the_run_folders_own_solver_and_net_may_be_what_it_trains(tiny):
    """Training the run folder's copies again (no --set) is not a run file
    over an input: the copies are what the run reads."""
    path = solver(tiny, 'own_copy', max_iter=2)
    first = run(['train', path, '--run-dir', 'runs/own_copy'], tiny)
    assert first.returncode == 0, first.stderr
    again = run(['train', 'runs/own_copy/solver.prototxt', '--run-dir', 'runs/own_copy', '--set', 'max_iter=4',
                 '--resume', 'auto'], tiny)
    assert again.returncode == 2 and 'is an input of this command' in again.stderr, again.stderr
    again = run(['train', 'runs/own_copy/solver.prototxt', '--run-dir', 'runs/own_copy'], tiny)
    assert again.returncode == 0, again.stderr


def test_a_states_caffemodel_that_is_not_a_file_is_said_as_what_it_is(tmp_path):
    """A link to /dev/zero at a state's caffemodel was passed over as
    'missing' (pass 44c M1)."""
    from caffe_mlic.engine.snapshots import _model_not_there
    state = str(tmp_path / 'w_iter_20.solverstate')
    os.symlink('/dev/zero', str(tmp_path / 'w_iter_20.caffemodel'))
    os.symlink('gone', str(tmp_path / 'w_iter_30.caffemodel'))
    said = {n: _model_not_there(state, 'elsewhere/w_iter_%d.caffemodel' % n) for n in (20, 30, 40)}
    assert said == {20: '%s: its caffemodel w_iter_20.caffemodel is a device, not a file (beside it, where it was '
                        'written)' % state,
                    30: '%s: its caffemodel w_iter_30.caffemodel is a link to nothing, not a file (beside it, where '
                        'it was written)' % state,
                    40: '%s: its caffemodel w_iter_40.caffemodel is missing (beside it, where it was written)' % state}


def test_the_identity_of_a_device_or_fifo_is_none_at_once(tmp_path):
    """A state name linked to /dev/zero: file_identity hashed it for ever
    at 100% CPU while the run was set up, with its stop signals held
    (pass 45c S1); a FIFO would block the open."""
    import threading
    from caffe_mlic.engine.snapshots import file_identity
    os.mkfifo(str(tmp_path / 'fifo'))
    os.symlink('/dev/zero', str(tmp_path / 'w_iter_5.solverstate'))
    found = []
    worker = threading.Thread(target=lambda: found.extend(
        file_identity(str(p)) for p in (tmp_path / 'fifo', tmp_path / 'w_iter_5.solverstate')), daemon=True)
    worker.start()
    worker.join(10)
    assert found == [None, None]
    (tmp_path / 'real').write_bytes(b'abc')
    assert file_identity(str(tmp_path / 'real'))[0] == 3


def test_a_fifo_among_the_lock_files_is_left_and_never_waited_on(tmp_path):
    """A FIFO named *.lock in the lock folder: the sweep opened it for
    reading and waited for a writer for good, in a run's setup (seen in a
    `run` of the demo while a hostile pass planted one)."""
    import threading
    from caffe_mlic.processes import sweep_lock_files
    os.mkfifo(str(tmp_path / 'a.lock'))
    (tmp_path / 'b.lock').write_text('123\n')       # held by no one: swept
    worker = threading.Thread(target=sweep_lock_files, args=(str(tmp_path),), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive()
    assert sorted(os.listdir(str(tmp_path))) == ['a.lock']


@pytest.mark.parametrize('kind,name', [('fifo', 'run.json'), ('fifo', 'curves.png'), ('zero', 'run.json')])
def test_a_run_file_replaced_mid_run_by_a_fifo_or_device_link_is_replaced_not_written_through(tiny, kind, name):
    """Renamed over run.json or curves.png after the run began (setup
    refuses them): the next write blocked in open() on the FIFO, stop
    signals held, until SIGKILL; run.json linked to /dev/zero swallowed the
    run's record, rc 0 (pass 47c S1, M3). Our own run files are replaced."""
    tag = 'mid_%s_%s' % (kind, name.replace('.', '_'))
    solver(tiny, tag, max_iter=40, snapshot=10)
    run_dir = tiny / 'runs' / tag
    proc = start(['train', '%s.prototxt' % tag, '--run-dir', run_dir], tiny, stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (tiny / ('snap_%s' % tag) / 'w_iter_10.solverstate').exists(), proc)
        planted = run_dir / (name + '.planted')
        os.mkfifo(str(planted)) if kind == 'fifo' else os.symlink('/dev/zero', str(planted))
        os.replace(str(planted), str(run_dir / name))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    for own in ('run.json', 'curves.png'):
        assert (run_dir / own).is_file() and not (run_dir / own).is_symlink(), own
    assert run_json(run_dir)['status'] == 'finished' and run_json(run_dir)['final_iteration'] == 40
    assert (run_dir / 'curves.png').read_bytes().startswith(b'\x89PNG')


def test_a_fifo_at_matplotlibs_font_cache_is_refused_before_the_run_and_named_after_it(tiny, tmp_path):
    """A FIFO at $MPLCONFIGDIR/fontlist-v330.json hung `train` while it drew
    curves.png, stop signals held, until SIGKILL; a socket there was "No
    such device or address" with run.json saying finished (pass 47c S3,
    M2). Found before the run: refused in one line; put there while it
    trains: the run ends saying so, run.json recording what it could not
    write."""
    tag = 'mplfifo'
    solver(tiny, tag, max_iter=20, snapshot=10)
    config = tmp_path / 'mpl'
    config.mkdir()
    os.mkfifo(str(config / 'fontlist-v330.json'))
    env = dict(ENV, MPLCONFIGDIR=str(config))
    res = subprocess.run(CLI + ['train', '%s.prototxt' % tag, '--run-dir', 'runs/%s' % tag], cwd=tiny,
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 1, res.stderr
    assert res.stderr == ('caffe-mlic train: %s is a FIFO, where matplotlib keeps its font cache: move it away '
                          '(curves.png is drawn with it)\n' % (config / 'fontlist-v330.json')), res.stderr
    assert not (tiny / 'runs' / tag).exists()
    (config / 'fontlist-v330.json').unlink()
    proc = subprocess.Popen(CLI + ['train', '%s.prototxt' % tag, '--run-dir', 'runs/%s' % tag], cwd=tiny,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: (tiny / 'runs' / tag / 'run.json').exists(), proc)
        for old in config.glob('fontlist-*.json'):      # (a cache another process wrote meanwhile)
            old.unlink()
        os.mkfifo(str(config / 'fontlist-v330.json'))
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    said = '%s is a FIFO, where matplotlib keeps its font cache: move it away' % (config / 'fontlist-v330.json')
    assert proc.returncode == 1, err
    assert err == 'caffe-mlic train: trained to iteration 20, but %s; the last snapshot is snap_%s/w_iter_20.solverstate\n' \
        % (said, tag), err
    info = run_json(tiny / 'runs' / tag)
    assert info['status'] == 'finished' and info['unwritten'] == [said]
    assert not (tiny / 'runs' / tag / 'curves.png').exists()


def test_a_chart_that_crashes_matplotlib_in_the_training_process_loses_the_chart_not_the_run(tiny, tmp_path):
    """font.size 1e9 in a matplotlibrc: matplotlib's C++ code throws, and
    in `train` (Caffe's glog loads libunwind, which takes over unwinding)
    the process died of SIGSEGV or SIGABRT at its curves, nothing said,
    run.json "running", a temp file left (pass 49c S1). Charts are drawn in
    a child process there: the run ends naming the chart."""
    tag = 'fontsize'
    solver(tiny, tag, max_iter=20, snapshot=10)
    (tmp_path / 'matplotlibrc').write_text('font.size: 1e9\n')
    res = subprocess.run(CLI + ['train', str(tiny / ('%s.prototxt' % tag)), '--run-dir', 'run'], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env=ENV)
    assert res.returncode == 1, res.stderr
    assert re.search(r'^caffe-mlic train: trained to iteration 20, but matplotlib could not draw run/curves.png \(('
                     r'it crashed: SIG(SEGV|ABRT)|RuntimeError: In set_size: [^\n]*); its settings, matplotlibrc, or '
                     r'fonts\?\); the last snapshot is '
                     r'snap_fontsize/w_iter_20.solverstate\n$', res.stderr), res.stderr
    info = json.loads((tmp_path / 'run' / 'run.json').read_text())
    assert info['status'] == 'finished' and len(info['unwritten']) == 1
    assert sorted(p.name for p in (tmp_path / 'run').iterdir()) == ['log.csv', 'log.jsonl', 'net.prototxt',
                                                                     'run.json', 'solver.prototxt']
