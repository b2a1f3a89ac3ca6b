"""Data-parallel `caffe-mlic train` over MPI: real `mpirun`, 2 ranks on this machine.

The heart of it: 2 ranks of batch B reach the weights 1 process of batch 2B
reaches on the same data (the WSDDN teacher, a KD stage, a ScasNet net).
Tolerance: the two runs compute the same sums in another order (each rank's
half batch, then the mean of the halves, against one sum over the whole
batch), a few float32 roundings per iteration (~1e-7 relative each); over
a few iterations with momentum that stays below 1e-5 of the weights' scale,
so rtol 1e-4 with atol 1e-6 would fail on a wrong batch or a missing
average (those change weights by 1e-3 and more) and pass on rounding.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from caffe_mlic.engine import distributed, logs
from caffe_mlic.errors import RunError
from caffe_mlic.layers.minibatch import BatchPlanner
from caffe_mlic.layers.pipeline import RankSlice
from caffe_mlic.layers.seg_batch import SegBatchPlanner
from caffe_mlic.netspec import netgen
from tests import REPO, netutil
from tests.netutil import weights_of
from tests.tinydata import tiny_mlic_config, write_tiny_dataset

CLI = [sys.executable, '-m', 'caffe_mlic.cli']
MPI_ENV = dict(OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1',
               OMPI_MCA_rmaps_base_oversubscribe='1',      # 2 ranks on 2 cores, workers beside them
               OMPI_MCA_mpi_yield_when_idle='1', OMPI_MCA_btl='self,vader',
               OMPI_MCA_btl_vader_single_copy_mechanism='none',   # (no ptrace between processes in a sandbox)
               OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1', PYTHONPATH=REPO)
ITERS = 6
RTOL, ATOL = 1e-4, 1e-6


def mpirun(args, cwd, np_=2, timeout=300, **env):
    assert shutil.which('mpirun'), 'mpirun is missing: make install puts in openmpi-bin'
    return subprocess.run(['mpirun', '-np', str(np_)] + CLI + [str(a) for a in args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **{**MPI_ENV, **env}))


def run_one(args, cwd, timeout=300):
    return subprocess.run(CLI + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1'))


def assert_same_weights(a, b, rtol=RTOL, atol=ATOL):
    wa, wb = weights_of(a), weights_of(b)
    assert wa.keys() == wb.keys()
    worst = max(float(np.max(np.abs(wa[k] - wb[k]) / (atol + rtol * np.abs(wb[k])))) for k in wa if wa[k].size)
    assert worst <= 1, 'weights differ by %.3g of the tolerance' % worst


def moved(a, b):
    """The largest change of any weight between two caffemodels."""
    wa, wb = weights_of(a), weights_of(b)
    return max(float(np.max(np.abs(wa[k] - wb[k]))) for k in wa if wa[k].size)


# ---------------------------------------------------------------- the plan, without MPI


@pytest.mark.parametrize('kind', ['images', 'crops'])
def test_the_ranks_slices_of_a_global_plan_are_the_one_process_batches(kind):
    def planner(batch):
        if kind == 'images':
            return BatchPlanner(7, batch, True, True, [0.5, 1.0], True, seed=3)
        return SegBatchPlanner(7, batch, True, True, [0.5, 1.0, 2.0], True, True, seed=3)
    one = planner(6)
    ranks = [RankSlice(planner(6), r, 2) for r in range(3)]
    for r in ranks:
        r.skip(2)
    one.skip(2)
    for _ in range(5):
        whole = one.next()
        parts = [r.next() for r in ranks]
        for i, item in enumerate(whole):
            if isinstance(item, np.ndarray):
                assert np.array_equal(np.concatenate([p[i] for p in parts]), item)
            else:                   # the batch's scale factor: one for all ranks
                assert all(p[i] == item for p in parts)


def test_one_process_is_a_group_of_one():
    grp = distributed.group()
    assert isinstance(grp, distributed.Single) and grp.size == 1 and grp.leader
    assert distributed.local_gpu([3], grp) == 3


@pytest.mark.parametrize('value, seconds', [('', 120), ('7', 7), ('0', None), ('\u00b2', None), ('\u0663', None),
                                            ('1_0', None), ('-3', None)])
def test_the_start_timeout_is_a_whole_number_of_seconds(monkeypatch, value, seconds):
    monkeypatch.setenv(distributed.START_TIMEOUT_ENV, value)
    if seconds is not None:
        assert distributed.start_timeout() == seconds
    else:
        with pytest.raises(RunError, match='expected a whole number of seconds, 1 or more'):
            distributed.start_timeout()


class _Ranks(distributed.Single):
    """Rank ``rank`` of a job of ``size`` on one machine, without MPI (for the messages)."""

    def __init__(self, rank, size, said=None):
        self.rank, self.size, self.leader = rank, size, rank == 0
        self.local_rank, self.local_size, self.hosts = rank, size, ['node%d' % (r // 2) for r in range(size)]
        self.said = said

    def where(self, rank=None):
        rank = self.rank if rank is None else rank
        return 'rank %d of %d (%s)' % (rank, self.size, self.hosts[rank])

    def allgather(self, value):
        return [value if r == self.rank else self.said[r] for r in range(self.size)]


def test_gpu_ids_are_dealt_by_local_rank():
    assert distributed.local_gpu([4, 5], _Ranks(1, 2)) == 5
    with pytest.raises(Exception, match=r'2 ranks run on .* but --gpu names 1 GPU \(0\): give one id per rank '
                                        r'on a machine, e.g. --gpu 0,1'):
        distributed.local_gpu([0], _Ranks(0, 2))


def test_a_setup_failure_is_one_message_from_rank_0_naming_the_ranks():
    from caffe_mlic.errors import RunError
    grp = _Ranks(0, 3, said=[None, 'no such file: a.caffemodel', 'no such file: a.caffemodel'])
    with pytest.raises(RunError) as e:
        distributed.agree(grp, None)
    assert str(e.value) == ('setting up the training failed on ranks 1, 2 of 3\n'
                            '  ranks 1, 2 of 3: no such file: a.caffemodel')
    assert e.value.everywhere
    with pytest.raises(distributed.FollowerStopped):
        distributed.agree(_Ranks(1, 3, said=['x', None, None]), None)
    distributed.agree(_Ranks(0, 2, said=[None, None]), None)        # all fine: nothing raised


# ---------------------------------------------------------------- equivalence, over real MPI


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Tiny nets without dropout (dropout draws differ between one batch and
    two halves) at batch 2 (per rank) and batch 4 (one process)."""
    root = tmp_path_factory.mktemp('mpi')
    listing = write_tiny_dataset(str(root / 'images'), n_images=8, num_classes=3, bbox_num=8, size=96)
    for batch in (2, 4):
        cfg = tiny_mlic_config(listing, dropout_ratio=0, wsddn_batch=(batch, 2), stage1_batch=(batch, 2),
                               stage2_batch=(batch, 2), baseline_batch=(batch, 2))
        netgen.generate(str(root / ('nets%d' % batch)), cfg)
    return root


def write_solver(root, name, net, **fields):
    spec = dict(base_lr=0.01, momentum=0.9, weight_decay=0.0005, max_iter=ITERS, lr_policy='fixed',
                test_iter=[1], test_interval=3, test_initialization=False, snapshot=3,
                snapshot_prefix='snap_%s/w' % name, random_seed=1, average_loss=1)
    spec.update(fields)
    return str(netutil.write_solver(root / ('%s.prototxt' % name), str(root / net), **spec))


@pytest.fixture(scope='module')
def teacher_weights(tiny):
    """A trained tiny teacher, for the KD stage's frozen teacher."""
    write_solver(tiny, 'teacher', 'nets4/wsddn/wsddn_train.prototxt', max_iter=4)
    res = run_one(['train', 'teacher.prototxt'], tiny)
    assert res.returncode == 0, res.stderr
    return tiny / 'snap_teacher' / 'w_iter_4.caffemodel'


@pytest.mark.parametrize('net', ['wsddn/wsddn_train', 'kd/train_stage2'])
def test_two_ranks_of_b_reach_the_weights_of_one_process_of_2b(tiny, teacher_weights, net):
    name = net.split('/')[1]
    weights = ['--weights', teacher_weights] if 'kd' in net else []
    write_solver(tiny, name + '_one', 'nets4/%s.prototxt' % net)
    write_solver(tiny, name + '_two', 'nets2/%s.prototxt' % net)
    one = run_one(['train', name + '_one.prototxt'] + weights, tiny)
    assert one.returncode == 0, one.stderr
    two = mpirun(['train', name + '_two.prototxt'] + weights, tiny)
    assert two.returncode == 0, two.stdout + two.stderr
    assert '2 ranks on' in two.stderr and 'MB of gradients averaged each' in two.stderr
    assert two.stdout.count('trained to iteration %d' % ITERS) == 1       # rank 0 speaks
    final = 'w_iter_%d.caffemodel' % ITERS
    assert_same_weights(tiny / ('snap_%s_two' % name) / final, tiny / ('snap_%s_one' % name) / final)
    # ... and the comparison can fail: the training moved the weights far more than the tolerance
    half = tiny / ('snap_%s_one' % name) / 'w_iter_3.caffemodel'
    assert moved(tiny / ('snap_%s_one' % name) / final, half) > 1e-3
    # Rank 0 alone wrote the run folder; its losses are the ranks' mean, near the one process's.
    rows_one = logs.read_records(tiny / 'runs' / (name + '_one') / 'log.jsonl')
    rows_two = logs.read_records(tiny / 'runs' / (name + '_two') / 'log.jsonl')
    assert [(r['phase'], r['iteration']) for r in rows_two] == [(r['phase'], r['iteration']) for r in rows_one]
    for a, b in zip(rows_one, rows_two):
        if a['phase'] == 'train':
            assert b['loss'] == pytest.approx(a['loss'], rel=1e-4, abs=1e-6)
    # What lr_mult 0 freezes (the KD stage's teacher) did not move on rank 0, whose weights were saved.
    from caffe_mlic.caffe import prototxt
    frozen = {layer.name for layer in prototxt.read_net(str(tiny / 'nets2' / (net + '.prototxt'))).layer
              if layer.param and all(spec.lr_mult == 0 for spec in layer.param)}
    assert frozen or 'kd' not in net
    before = weights_of(tiny / ('snap_%s_two' % name) / 'w_iter_3.caffemodel')
    after = weights_of(tiny / ('snap_%s_two' % name) / final)
    for key in before:
        if key[0] in frozen:
            assert np.array_equal(before[key], after[key]), key


def test_a_scasnet_net_trains_the_same_on_two_ranks(tmp_path):
    res = run_one(['synth', '--task', 'seg', 'data', '--images', 4, '--tile-size', '160x160', '--seed', 0],
                  tmp_path)
    assert res.returncode == 0, res.stderr
    d = tmp_path / 'data'
    for batch in (2, 4):
        res = run_one(['scasnet', 'netgen', '-o', 'nets%d' % batch, '--variant', 'vgg', '--backbone', 'small',
                       '--vgg-blocks', 1, 1, 1, 0, 0, '--input-size', 64, '--train-list', d / 'train.txt',
                       '--val-list', d / 'val.txt', '--root-folder', str(d) + '/', '--batch-size', batch,
                       '--input-scale', '0.017', '--dropout', 0, '--workers', 0, '--max-iter', ITERS,
                       '--solver-type', 'SGD', '--base-lr', '0.001', '--random-seed', 1, '--data-seed', 1],
                      tmp_path)
        assert res.returncode == 0, res.stderr
    one = run_one(['train', 'nets4/vgg_scasnet_solver.prototxt', '--run-dir', 'one',
                   '--set', 'snapshot_prefix=snap_one/w', '--set', 'snapshot=3'], tmp_path)
    assert one.returncode == 0, one.stderr
    two = mpirun(['train', 'nets2/vgg_scasnet_solver.prototxt', '--run-dir', 'two',
                  '--set', 'snapshot_prefix=snap_two/w', '--set', 'snapshot=3'], tmp_path)
    assert two.returncode == 0, two.stdout + two.stderr
    final = 'w_iter_%d.caffemodel' % ITERS
    assert_same_weights(tmp_path / 'snap_two' / final, tmp_path / 'snap_one' / final)
    assert moved(tmp_path / 'snap_one' / final, tmp_path / 'snap_one' / 'w_iter_3.caffemodel') > 1e-4


def test_a_stopped_two_rank_run_resumes_to_the_uninterrupted_weights(tiny):
    """SIGTERM reaches one rank: all stop at one iteration, rank 0 snapshots,
    and `--resume auto` on 2 ranks ends where the uninterrupted run ends."""
    net = 'nets2/wsddn/wsddn_train.prototxt'
    write_solver(tiny, 'whole', net, max_iter=30, snapshot=0)
    write_solver(tiny, 'cut', net, max_iter=30, snapshot=0)
    whole = mpirun(['train', 'whole.prototxt'], tiny)
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen(['mpirun', '-np', '2'] + CLI + ['train', 'cut.prototxt'], cwd=tiny,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **MPI_ENV), start_new_session=True)
    log = tiny / 'runs' / 'cut' / 'log.jsonl'
    deadline = time.time() + 120
    while not (log.exists() and len(logs.read_records(log)) >= 6):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    ranks = subprocess.run(['pgrep', '-f', 'caffe_mlic.cli train cut.prototxt'], capture_output=True,
                           text=True).stdout.split()
    ranks = [int(p) for p in ranks if int(p) != proc.pid]
    assert len(ranks) == 2
    os.kill(max(ranks), signal.SIGTERM)      # one rank only: the other learns it at the next iteration
    out, err = proc.communicate(timeout=120)
    m = re.search(r'stopped by SIGTERM at iteration (\d+), snapshot (\S+); resume with: (.+)', err)
    assert m, err
    assert err.count('stopped by SIGTERM') == 1
    assert m.group(3) == 'mpirun -np 2 caffe-mlic train cut.prototxt --resume ' + m.group(2)
    # resuming with another number of ranks would change every batch: refused, naming the right one
    alone = run_one(['train', 'cut.prototxt', '--resume', m.group(2), '--run-dir', 'runs/cut'], tiny)
    assert alone.returncode == 2 and ('was written by a run of 2 ranks (%s); resuming it with 1 would change '
                                      'the batch of every iteration (batch_size is per rank): run it under '
                                      'mpirun -np 2' % m.group(2).replace('.solverstate', '.ranks')
                                      ) in alone.stderr, alone.stderr
    # into another run folder: its snapshots would go over runs/cut's (one run per prefix, pass 22 S4)
    alone = run_one(['train', 'cut.prototxt', '--resume', m.group(2), '--run-dir', 'runs/elsewhere'], tiny)
    assert alone.returncode == 1 and 'snap_cut/w is the snapshot prefix of the run in' in alone.stderr, alone.stderr
    os.symlink(os.path.basename(m.group(2)), tiny / 'snap_cut' / 'latest.solverstate')      # a link to it: the same
    alone = run_one(['train', 'cut.prototxt', '--resume', 'snap_cut/latest.solverstate'], tiny)
    assert alone.returncode == 2 and 'resuming it with 1 would change' in alone.stderr, alone.stderr
    os.unlink(tiny / 'snap_cut' / 'latest.solverstate')
    binary = run_one(['caffe', 'train', '-solver', 'cut.prototxt', '-snapshot', m.group(2)], tiny)
    assert binary.returncode == 2 and 'the caffe binary trains one process' in binary.stderr, binary.stderr
    (tiny / 'bad.ranks').mkdir()
    os.symlink('/dev/zero', tiny / 'zero.ranks')
    from caffe_mlic.engine.snapshots import state_ranks
    from caffe_mlic.errors import InputError
    for name in ('bad', 'zero'):        # a folder, a device: refused, never read
        with pytest.raises(InputError, match='not a regular file'):
            state_ranks(str(tiny / (name + '.solverstate')))
    resumed = mpirun(['train', 'cut.prototxt', '--resume', 'auto'], tiny)
    assert resumed.returncode == 0, resumed.stderr
    assert 'resuming from %s at iteration %s' % (m.group(2), m.group(1)) in resumed.stderr
    final = 'w_iter_30.caffemodel'
    a, b = weights_of(tiny / 'snap_cut' / final), weights_of(tiny / 'snap_whole' / final)
    assert all(np.array_equal(a[k], b[k]) for k in a)        # bit for bit: the same sums in the same order


# ---------------------------------------------------------------- bad input and faults


def test_ranks_given_different_solvers_are_refused_naming_the_rank(tiny):
    """The same command in two folders (as on two machines) whose solver.prototxt differ."""
    net = str(tiny / 'nets2/wsddn/wsddn_train.prototxt')
    for name, lr in (('host_a', 0.01), ('host_b', 0.02)):
        (tiny / name).mkdir()
        netutil.write_solver(tiny / name / 'solver.prototxt', net, base_lr=lr, max_iter=4, snapshot_prefix='s/w')
    res = subprocess.run(['mpirun', '-np', '1', '--wdir', str(tiny / 'host_a')] + CLI + ['train', 'solver.prototxt'] +
                         [':', '-np', '1', '--wdir', str(tiny / 'host_b')] + CLI + ['train', 'solver.prototxt'],
                         cwd=tiny, capture_output=True, text=True, timeout=300, env=dict(os.environ, **MPI_ENV))
    assert res.returncode == 1
    assert 'caffe-mlic train: every rank must train the same thing: the solver and net of rank 1 of 2' in \
        res.stderr, res.stderr
    assert res.stderr.count('every rank must train') == 1
    assert not (tiny / 'host_a' / 'runs').exists()


def test_more_ranks_than_images_is_refused_before_training(tmp_path):
    listing = write_tiny_dataset(str(tmp_path / 'images'), n_images=2, num_classes=3, bbox_num=8, size=96)
    netgen.generate(str(tmp_path / 'nets'), tiny_mlic_config(listing, dropout_ratio=0, wsddn_batch=(1, 1)))
    write_solver(tmp_path, 's', 'nets/wsddn/wsddn_train.prototxt')
    res = mpirun(['train', 's.prototxt'], tmp_path, np_=3)
    assert res.returncode == 1
    assert re.search(r'3 ranks share the 2 images of \S+list.txt: each rank needs one image of an epoch at '
                     r'least', res.stderr), res.stderr
    assert res.stderr.count('3 ranks share') == 1 and 'Traceback' not in res.stderr


LAYER = '''
import os
import caffe

class FailOnRank(caffe.Layer):
    """Passes its bottom through; on rank RANK at iteration AT: WHAT."""
    def setup(self, bottom, top):
        self.rank, self.at, self.what = [int(v) if v.isdigit() else v for v in self.param_str.split()]
        self.calls = 0
        self.blobs.add_blob(1)
        self.blobs[0].data[...] = 0
    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)
    def forward(self, bottom, top):
        self.calls += 1
        mine = int(os.environ.get('OMPI_COMM_WORLD_RANK', 0)) == self.rank
        if mine and self.calls == self.at and self.what == 'fail':
            raise ValueError('a fault planted on purpose')
        if mine and self.calls == self.at and self.what == 'perturb':
            self.blobs[0].data[...] += 1        # (no gradient: only this rank's copy moves)
        top[0].data[...] = bottom[0].data
    def backward(self, top, propagate_down, bottom):
        bottom[0].diff[...] = top[0].diff
        self.blobs[0].diff[...] = 0
'''


def _with_layer(tiny, tmp_path, what):
    """The tiny teacher with FailOnRank on its scores (before the loss); the solver's path."""
    (tmp_path / 'fault_layer.py').write_text(LAYER)
    text = (tiny / 'nets2' / 'wsddn' / 'wsddn_train.prototxt').read_text()
    extra = ('layer {\n  name: "fault"\n  type: "Python"\n  bottom: "image_level_score"\n'
             '  top: "image_level_score"\n  include { phase: TRAIN }\n'
             '  python_param { module: "fault_layer" layer: "FailOnRank" param_str: "1 4 %s" }\n}\n' % what)
    at = text.index('layer {\n  name: "loss')
    net = tmp_path / 'net.prototxt'
    net.write_text(text[:at] + extra + text[at:])
    return str(netutil.write_solver(tmp_path / 's.prototxt', str(net), base_lr=0.01, max_iter=20, snapshot=2,
                                    snapshot_prefix='snap/w', random_seed=1, lr_policy='fixed'))


def test_a_rank_failing_alone_ends_the_job_naming_the_rank(tiny, tmp_path):
    _with_layer(tiny, tmp_path, 'fail')
    res = mpirun(['train', 's.prototxt'], tmp_path, timeout=120, PYTHONPATH='%s:%s' % (REPO, tmp_path))
    assert res.returncode != 0
    assert re.search(r'caffe-mlic train: rank 1 of 2 \(\S+\): ValueError: a fault planted on purpose',
                     res.stderr), res.stderr
    # no partial snapshot: the snapshots there are whole (iteration 2), --resume auto takes the last
    snaps = sorted(os.listdir(tmp_path / 'snap'))
    assert snaps == ['.w.run', 'w_iter_2.caffemodel', 'w_iter_2.ranks', 'w_iter_2.solverstate'], snaps
    assert (tmp_path / 'snap' / 'w_iter_2.ranks').read_text() == '2\n'     # (what a resume checks)


def test_a_rank_killed_mid_run_ends_the_job_and_resume_auto_goes_on(tiny, tmp_path):
    net = 'nets2/wsddn/wsddn_train.prototxt'
    write_solver(tmp_path, 'k', str(tiny / net), max_iter=40, snapshot=5)
    proc = subprocess.Popen(['mpirun', '-np', '2'] + CLI + ['train', 'k.prototxt'], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **MPI_ENV), start_new_session=True)
    deadline = time.time() + 120
    while not (tmp_path / 'snap_k' / 'w_iter_5.caffemodel').exists():
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.05)
    ranks = [int(p) for p in subprocess.run(['pgrep', '-f', 'caffe_mlic.cli train k.prototxt'],
                                            capture_output=True, text=True).stdout.split() if int(p) != proc.pid]
    os.kill(max(ranks), signal.SIGKILL)
    out, err = proc.communicate(timeout=60)     # the others stop too: never a hang
    assert proc.returncode != 0
    assert re.search(r'rank 1 .*exited on signal 9|exited on signal 9.*rank 1', err, re.S), err
    assert not [f for f in os.listdir(tmp_path / 'snap_k') if f.startswith('.') and f != '.w.run'], \
        'a partial snapshot was left'
    res = mpirun(['train', 'k.prototxt', '--resume', 'auto'], tmp_path)
    assert res.returncode == 0, res.stderr
    assert re.search(r'resuming from snap_k/w_iter_\d+\.solverstate at iteration \d+', res.stderr), res.stderr


def test_ranks_whose_weights_drift_apart_are_stopped_naming_the_rank(tiny, tmp_path):
    _with_layer(tiny, tmp_path, 'perturb')      # rank 1 moves its own copy of a weight at its 4th forward
    res = mpirun(['train', 's.prototxt', '--set', 'max_iter=120'], tmp_path, timeout=120,
                 PYTHONPATH='%s:%s' % (REPO, tmp_path))
    assert res.returncode == 1, res.stderr
    assert re.search(r"caffe-mlic train: at iteration 100 the weights of rank 1 of 2 \(\S+\) differ from rank "
                     r"0's \(CRC-32 [0-9a-f]{8}, rank 0 [0-9a-f]{8}\): the ranks no longer train one net",
                     res.stderr), res.stderr
    assert res.stderr.count('differ from rank') == 1
    assert json.loads((tmp_path / 'runs' / 's' / 'run.json').read_text())['status'] == 'failed'


def test_bench_data_parallel_measures_one_and_two_ranks():
    """`make bench`'s data_parallel in its quick form (values only checked for sense)."""
    from caffe_mlic.benchmarks import Report, data_parallel
    import io
    report = Report(io.StringIO())
    data_parallel.run(report, quick=True)
    rows = {name.split(':')[1].strip().split(' (')[0].split(',')[0]: value for name, value, _, _ in report.rows}
    # (the ratio of two timings: a loaded machine makes it anything, so only its sign is checked)
    assert rows['iteration'] > 0 and 0 < rows['throughput'] < float('inf')
    assert any('VGG16' in name for name, *_ in report.rows)


def test_bench_data_parallel_says_a_failed_training_in_one_line(tmp_path):
    """The training a benchmark runs failing (here: no solver) was a
    RuntimeError traceback around train's own line (pass 49b S1)."""
    from caffe_mlic.benchmarks import data_parallel
    from caffe_mlic.errors import RunError
    with pytest.raises(RunError) as e:
        data_parallel._train([sys.executable, '-m', 'caffe_mlic.cli'], str(tmp_path), 'one', dict(os.environ))
    assert str(e.value).startswith('data_parallel: its training (one process) failed: caffe-mlic train: ')
    assert '\n' not in str(e.value)


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_stopping_bench_while_mpirun_trains_leaves_nothing_of_open_mpi(tmp_path, signum):
    """Ctrl-C (or SIGTERM) to the group while `bench data_parallel` ran
    its mpirun: subprocess.run SIGKILLed mpirun, which left its shared-
    memory segments in /dev/shm and its session folder in TMPDIR (13 of
    20 trials, pass 49b S2). mpirun now ends on its own, or on SIGTERM."""
    (tmp_path / 'tmp').mkdir()
    before = set(os.listdir('/dev/shm'))
    proc = subprocess.Popen(CLI + ['bench', '--quick', 'data_parallel'], cwd=tmp_path, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, TMPDIR=str(tmp_path / 'tmp')), restore_signals=True)
    try:
        deadline = time.time() + 120
        while not subprocess.run(['pgrep', '-g', str(proc.pid), '-x', 'mpirun'], capture_output=True).stdout:
            assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(1.0)         # (its ranks started)
        os.killpg(proc.pid, signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode in (128 + signum, 1), err         # (1: mpirun ended first, saying how)
    assert 'Traceback' not in err and err.count('\n') == 1, err
    left = set(os.listdir('/dev/shm')) - before
    assert not [name for name in left if name.startswith('vader_segment')], left
    assert list((tmp_path / 'tmp').iterdir()) == []


def test_ranks_given_different_arguments_are_refused_naming_the_rank(tiny):
    net = 'nets2/wsddn/wsddn_train.prototxt'
    write_solver(tiny, 'args', net)
    res = subprocess.run(['mpirun', '-np', '1'] + CLI + ['train', 'args.prototxt', '--gpu', '0'] +
                         [':', '-np', '1'] + CLI + ['train', 'args.prototxt'],
                         cwd=tiny, capture_output=True, text=True, timeout=300, env=dict(os.environ, **MPI_ENV))
    assert res.returncode == 1
    assert ('caffe-mlic train: every rank must run the same command, but rank 1 of 2 (' in res.stderr
            and '`train args.prototxt` where rank 0 got `train args.prototxt --gpu 0`' in res.stderr), res.stderr
    assert res.stderr.count('every rank must run') == 1


def test_the_caffe_binary_is_not_run_once_per_rank(tiny):
    write_solver(tiny, 'binary', 'nets2/wsddn/wsddn_train.prototxt')
    res = mpirun(['caffe', 'train', '-solver', 'binary.prototxt'], tiny)
    assert res.returncode != 0
    assert 'caffe-mlic caffe: the caffe binary does not train data-parallel over MPI' in res.stderr, res.stderr
    assert not (tiny / 'snap_binary').exists()


def test_a_rank_that_never_joins_ends_the_job_instead_of_a_hang(tiny):
    """One rank runs another program that ends (after MPI_Init): the training
    ranks give up after the start timeout (5 s here), naming why. (A program
    that never calls MPI_Init at all leaves Open MPI's own MPI_Init waiting:
    not ours to end.)"""
    write_solver(tiny, 'join', 'nets2/wsddn/wsddn_train.prototxt')
    res = subprocess.run(['mpirun', '-np', '1'] + CLI + ['train', 'join.prototxt'] +
                         [':', '-np', '1', sys.executable, '-c', 'from mpi4py import MPI'],
                         cwd=tiny, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, **MPI_ENV, CAFFE_MLIC_MPI_START_TIMEOUT='5'))
    assert res.returncode != 0
    assert ('caffe-mlic train: rank 0 of 2 (' in res.stderr and 'not every one of the 2 ranks started training '
            'within 5 s' in res.stderr), res.stderr
