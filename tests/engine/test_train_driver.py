"""`caffe-mlic train` (the pycaffe loop) and `caffe-mlic plot-log`, on tiny generated nets."""
import json
import math
import os
import re
import shlex
import signal
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.netspec import netgen
from caffe_mlic.caffe import prototxt
from caffe_mlic.engine import logs, lr, nets, snapshots, trainer
from caffe_mlic.errors import InputError
from caffe_mlic.evaluation.evaluator import label_blob
from tests.caffe_binary import caffe_train, parse_losses
from tests import netutil
from tests.netutil import weights_of
from tests.tinydata import forward_batches, tiny_mlic_config, write_tiny_dataset

CLI = [sys.executable, '-m', 'caffe_mlic.cli']
C, B = 3, 8
MAX_ITER = 200          # long enough to be stopped part way, ~10 ms an iteration


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('train_driver')
    listing = write_tiny_dataset(str(root / 'images'), num_classes=C, bbox_num=B, size=96)
    cfg = tiny_mlic_config(listing)
    netgen.generate(str(root / 'nets'), cfg)
    return root


def write_solver(root, name, net='wsddn/wsddn_train', nets=None, **fields):
    """A seeded solver ``root/name.prototxt`` of ``(nets or root)/nets/<net>``
    with a snapshot prefix relative to root."""
    spec = dict(base_lr=0.001, momentum=0.9, weight_decay=0.0005, max_iter=MAX_ITER, lr_policy='step',
                stepsize=100, gamma=0.1, test_iter=[1], test_interval=50, test_initialization=False,
                snapshot=40, snapshot_prefix='snap_%s/w' % name, random_seed=1, average_loss=5)
    spec.update(fields)
    return str(netutil.write_solver(root / ('%s.prototxt' % name),
                                    str((nets or root) / 'nets' / (net + '.prototxt')), **spec))


def run_cli(args, cwd, **env):
    return subprocess.run(CLI + list(args), cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, **env))


def records(run_dir):
    """log.jsonl without the timings (which differ between runs)."""
    return [{k: v for k, v in r.items() if k != 'elapsed'}
            for r in logs.read_records(os.path.join(run_dir, 'log.jsonl'))]


def wait_for(predicate, proc, timeout=60):
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, 'the run ended before it could be stopped: %s' % proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.01)


def train_rows(run_dir):
    return sum(r['phase'] == 'train' for r in logs.read_records(os.path.join(run_dir, 'log.jsonl')))


# ---------------------------------------------------------------- learning rate


def solver_param(**fields):
    return prototxt.solver('net.prototxt', **fields)


@pytest.mark.parametrize('fields, iteration, expected', [
    (dict(base_lr=0.01, lr_policy='fixed'), 12345, 0.01),
    (dict(base_lr=0.01, lr_policy='step', gamma=0.1, stepsize=100), 99, 0.01),
    (dict(base_lr=0.01, lr_policy='step', gamma=0.1, stepsize=100), 100, 0.001),
    (dict(base_lr=0.01, lr_policy='step', gamma=0.1, stepsize=100), 250, 0.0001),
    (dict(base_lr=0.01, lr_policy='exp', gamma=0.99), 10, 0.01 * 0.99 ** 10),
    (dict(base_lr=0.01, lr_policy='inv', gamma=0.0001, power=0.75), 1000, 0.01 * 1.1 ** -0.75),
    (dict(base_lr=0.01, lr_policy='multistep', gamma=0.5, stepvalue=[10, 20]), 9, 0.01),
    (dict(base_lr=0.01, lr_policy='multistep', gamma=0.5, stepvalue=[10, 20]), 10, 0.005),
    (dict(base_lr=0.01, lr_policy='multistep', gamma=0.5, stepvalue=[10, 20]), 25, 0.0025),
    (dict(base_lr=0.01, lr_policy='poly', power=2, max_iter=100), 50, 0.0025),
    (dict(base_lr=0.01, lr_policy='poly', power=2, max_iter=100), 100, 0.0),
    (dict(base_lr=0.01, lr_policy='sigmoid', gamma=0.1, stepsize=50), 50, 0.005),
    (dict(base_lr=0.01, lr_policy='sigmoid', gamma=-0.1, stepsize=50), 60, 0.01 / (1 + math.e)),
])
def test_lr_policies_match_hand_computed_values(fields, iteration, expected):
    # Proto fields are float32: compare at that precision.
    assert lr.learning_rate(solver_param(**fields), iteration) == pytest.approx(expected, rel=1e-6)


def test_multistep_takes_one_step_an_iteration_as_caffe_does():
    # Caffe compares with the next stepvalue once per iteration: repeated and
    # out-of-order values are taken one iteration apart.
    assert [lr.multistep_count([5, 5, 3], it) for it in range(3, 9)] == [0, 0, 1, 2, 3, 3]
    p = solver_param(base_lr=1.0, lr_policy='multistep', gamma=0.1, stepvalue=[5, 5])
    assert lr.learning_rate(p, 5) == pytest.approx(0.1) and lr.learning_rate(p, 6) == pytest.approx(0.01)


@pytest.mark.parametrize('fields, message', [
    (dict(lr_policy='steps'), "unknown lr_policy 'steps'"),
    (dict(lr_policy='step'), 'needs stepsize > 0'),
    (dict(lr_policy='exp', gamma=-1), 'needs gamma >= 0'),
])
def test_lr_policy_errors_are_input_errors(fields, message):
    from caffe_mlic.errors import InputError
    with pytest.raises(InputError, match=message):
        lr.check_lr_policy(solver_param(**fields), 's.prototxt')


# ---------------------------------------------------------------- the data layer's seek


@pytest.mark.parametrize('workers', [0, 1])
def test_data_layer_seek_continues_the_batch_plan(caffe, tiny, workers):
    text = netutil.python_layer_text('data', 'MultiLabelProposalData', dict(
        source=str(tiny / 'images' / 'list.txt'), batch_size=4, new_width=96, new_height=96,
        att_num=C, bbox_num=B, shuffle=True, mirror=True, scale_factors=[0.5, 0.75, 1.0], seed=3,
        workers=workers), [], ['data', 'label_roi'])

    straight = forward_batches(prototxt.caffe_net(text, 'TRAIN'), 7)
    net = prototxt.caffe_net(text, 'TRAIN')
    forward_batches(net, 2)                       # some batches planned (and prefetched) already
    net.layers[0].seek(5)
    resumed = forward_batches(net, 2)
    net.layers[0].seek(0)
    again = forward_batches(net, 1)
    for (d1, l1), (d2, l2) in zip(straight[5:] + straight[:1], resumed + again):
        assert d1.shape == d2.shape and np.array_equal(d1, d2) and np.array_equal(l1, l2)
    assert not np.array_equal(straight[5][1], straight[0][1])


# ---------------------------------------------------------------- a run and its files


@pytest.fixture(scope='module')
def student_run(tiny):
    """A student (baseline) run with the default run dir, the bar forced on."""
    solver = write_solver(tiny, 'student', net='kd/student_baseline', max_iter=12, test_interval=6,
                          snapshot=6)
    res = run_cli(['train', 'student.prototxt'], tiny, CAFFE_MLIC_PROGRESS='always')
    return solver, res


def test_run_shows_progress_and_writes_logs_run_json_and_curves(tiny, student_run):
    solver, res = student_run
    assert res.returncode == 0, res.stderr
    assert re.search(r'12/12 .*loss [0-9.e+-]+, lr 0\.001, mAP [0-9.]+', res.stderr), res.stderr[-2000:]
    assert 'iteration 12: test mAP' in res.stdout
    run_dir = tiny / 'runs' / 'student'
    assert sorted(os.listdir(run_dir)) == ['curves.png', 'log.csv', 'log.jsonl', 'net.prototxt',
                                           'run.json', 'solver.prototxt']
    assert (run_dir / 'solver.prototxt').read_text() == open(solver).read()

    rows = logs.read_records(run_dir / 'log.jsonl')
    train = [r for r in rows if r['phase'] == 'train']
    tests = [r for r in rows if r['phase'] == 'test']
    assert [r['iteration'] for r in train] == list(range(12))
    assert [r['iteration'] for r in tests] == [6, 12]
    for r in train:
        assert r['loss'] == r['train_loss_sig'] and math.isfinite(r['loss'])
        assert r['lr'] == pytest.approx(0.001) and r['elapsed'] > 0
    for r in tests:
        assert 0 <= r['test_mAP'] <= 100 and math.isfinite(r['test_loss_sig'])
    with open(run_dir / 'log.csv') as f:
        header, *lines = f.read().splitlines()
    assert header.split(',') == ['phase', 'iteration', 'elapsed', 'lr', 'loss', 'smoothed_loss',
                                 'train_loss_sig', 'test_loss_sig', 'test_mAP']
    assert len(lines) == len(rows)

    info = json.loads((run_dir / 'run.json').read_text())
    assert info['command'] == 'caffe-mlic train student.prototxt'
    assert info['seed'] == 1 and info['final_iteration'] == 12 and info['status'] == 'finished'
    assert info['test']['score_blob'] == 'fc8_mscoco' and info['test']['label_blob'] == 'label'
    assert set(info['versions']) >= {'caffe', 'numpy', 'opencv'} and info['end_time']
    # The relative prefix is Caffe's: against the current directory.
    assert (tiny / 'snap_student' / 'w_iter_6.solverstate').exists()
    assert (tiny / 'snap_student' / 'w_iter_12.caffemodel').exists()

    image = cv2.imread(str(run_dir / 'curves.png'))
    assert image is not None and image.shape[0] > 300 and image.std() > 10


def test_score_blob_is_found_from_the_loss_on_the_labels(tiny):
    def found(rel):
        net = prototxt.read_net(str(tiny / 'nets' / (rel + '.prototxt')))
        data = prototxt.data_layer(net, 'TEST')
        labels = label_blob(net, data)
        return labels, nets.find_score_blob(net, labels)
    assert found('wsddn/wsddn_train') == ('labels', 'image_level_score')
    assert found('kd/train_stage2') == ('label', 'fc8_mscoco')
    assert found('kd/student_baseline') == ('label', 'fc8_mscoco')
    assert found('kd/train_stage1') == ('label', None)      # feature mimicking only: no mAP


# ---------------------------------------------------------------- stop and resume


@pytest.fixture(scope='module')
def reference(tiny):
    """An uninterrupted seeded teacher run: (records, final weights)."""
    write_solver(tiny, 'ref')
    res = run_cli(['train', 'ref.prototxt'], tiny)
    assert res.returncode == 0, res.stderr
    return records(tiny / 'runs' / 'ref'), tiny / 'snap_ref' / ('w_iter_%d.caffemodel' % MAX_ITER)


def test_sigterm_snapshots_and_the_resumed_run_matches_an_uninterrupted_one(tiny, reference):
    write_solver(tiny, 'term')
    run_dir = tiny / 'runs' / 'term'
    proc = subprocess.Popen(CLI + ['train', 'term.prototxt'], cwd=tiny, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: train_rows(run_dir) >= 20, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    m = re.fullmatch(r'caffe-mlic train: stopped by SIGTERM at iteration (\d+), snapshot (\S+); '
                     r'resume with: (.+)\n', err)
    assert m, err
    stopped, state = int(m.group(1)), m.group(2)
    assert 20 <= stopped < MAX_ITER and state == 'snap_term/w_iter_%d.solverstate' % stopped
    assert (tiny / state).exists()
    assert m.group(3) == 'caffe-mlic train term.prototxt --resume ' + state
    assert json.loads((run_dir / 'run.json').read_text())['status'] == 'interrupted by SIGTERM'

    command = shlex.split(m.group(3))
    res = run_cli(command[1:], tiny)
    assert res.returncode == 0, res.stderr
    assert 'resuming from %s at iteration %d' % (state, stopped) in res.stderr
    ref_records, ref_weights = reference
    # Bit for bit: the losses of every iteration, the test mAPs, the weights.
    assert records(run_dir) == ref_records
    final = weights_of(tiny / 'snap_term' / ('w_iter_%d.caffemodel' % MAX_ITER))
    expected = weights_of(ref_weights)
    assert final.keys() == expected.keys()
    assert all(np.array_equal(final[k], expected[k]) for k in final)
    info = json.loads((run_dir / 'run.json').read_text())
    assert info['resumed_from'] == state and info['start_iteration'] == stopped
    assert [p['status'] for p in info['previous']] == ['interrupted by SIGTERM']


def test_sigkill_then_resume_auto_passes_over_truncated_snapshots(tiny, reference):
    write_solver(tiny, 'kill', snapshot=20)
    run_dir, snaps = tiny / 'runs' / 'kill', tiny / 'snap_kill'
    proc = subprocess.Popen(CLI + ['train', 'kill.prototxt'], cwd=tiny, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (snaps / 'w_iter_60.solverstate').exists() and train_rows(run_dir) > 62, proc)
    proc.kill()
    proc.communicate(timeout=30)
    states = [p for _, p in snapshots.find_snapshots(str(snaps / 'w'))]
    assert len(states) >= 3
    newest, second, third = states[:3]
    # A state cut short, and a complete state whose caffemodel was cut short.
    with open(newest, 'r+b') as f:
        f.truncate(os.path.getsize(newest) // 2)
    second_model = second.replace('.solverstate', '.caffemodel')
    with open(second_model, 'r+b') as f:
        f.truncate(os.path.getsize(second_model) - 100)

    res = run_cli(['train', 'kill.prototxt', '--resume', 'auto'], tiny)
    assert res.returncode == 0, res.stderr
    assert 'skipping %s: truncated or not a SolverState (protobuf cannot parse it)' \
        % os.path.relpath(newest, tiny) in res.stderr, res.stderr
    assert 'skipping %s: truncated or not a NetParameter' % os.path.relpath(second_model, tiny) \
        in res.stderr, res.stderr
    assert 'resuming from %s at iteration' % os.path.relpath(third, tiny) in res.stderr
    ref_records, ref_weights = reference
    assert records(run_dir) == ref_records          # the rows after the snapshot were not kept twice
    final, expected = weights_of(snaps / ('w_iter_%d.caffemodel' % MAX_ITER)), weights_of(ref_weights)
    assert all(np.array_equal(final[k], expected[k]) for k in expected)


def test_ctrl_c_to_the_process_group_stops_between_iterations(tiny):
    """SIGINT to the whole group, as a terminal sends it: the data workers
    (started with SIGINT ignored) keep serving, the loop snapshots, exit 130."""
    net = prototxt.read_net(str(tiny / 'nets' / 'kd' / 'student_baseline.prototxt'))
    data = prototxt.data_layer(net, 'TRAIN')
    data.python_param.param_str = json.dumps(dict(prototxt.python_params(data), workers=1))
    prototxt.write(tiny / 'nets' / 'kd' / 'student_workers.prototxt', net)
    write_solver(tiny, 'ctrlc', net='kd/student_workers', max_iter=2000)
    run_dir = tiny / 'runs' / 'ctrlc'
    proc = subprocess.Popen(CLI + ['train', 'ctrlc.prototxt'], cwd=tiny, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: train_rows(run_dir) >= 10, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    m = re.fullmatch(r'caffe-mlic train: stopped by SIGINT at iteration (\d+), snapshot (\S+); .*\n', err)
    assert m, err
    net_obj = prototxt.caffe_net(tiny / 'nets' / 'kd' / 'student_baseline.prototxt', 'TEST')
    assert snapshots.check_snapshot(str(tiny / m.group(2)), net_obj, net, 'SGD')[0] == int(m.group(1))


def test_resume_finds_the_caffemodel_beside_its_state(tiny, reference, tmp_path, monkeypatch):
    """A state names its caffemodel relative to where the run was started;
    from elsewhere the one beside the state is used, and the run goes on
    exactly where the uninterrupted run was, even where the current
    directory holds another run's caffemodel at that name (Caffe's reading
    took it: pass 36 S1)."""
    solver = write_solver(tmp_path, 'elsewhere', nets=tiny, max_iter=42, snapshot=0,
                          snapshot_prefix=str(tmp_path / 'snap' / 'w'))
    _, final = reference
    (tmp_path / 'snap_ref').mkdir()
    shutil.copyfile(str(final), str(tmp_path / 'snap_ref' / 'w_iter_40.caffemodel'))     # (of the same net)
    monkeypatch.chdir(tmp_path)
    state = str(tiny / 'snap_ref' / 'w_iter_40.solverstate')
    assert cli.main(['train', solver, '--resume', state]) == 0
    def losses(rows):       # smoothed_loss starts afresh: this run dir has no earlier rows
        return [(r['iteration'], r['lr'], r['loss']) for r in rows if r['phase'] == 'train']
    ref_records, _ = reference
    assert losses(records(tmp_path / 'runs' / 'elsewhere')) == \
        [x for x in losses(ref_records) if x[0] in (40, 41)]


def test_a_state_without_its_caffemodel_beside_it_never_takes_another_runs(tiny, reference, tmp_path, monkeypatch,
                                                                           capsys):
    """With no caffemodel beside the state, the one its learned_net names
    from the current directory was loaded: another run's weights, with
    this run's history (pass 37a F1). The state is refused."""
    solver = write_solver(tmp_path, 'nobeside', nets=tiny, max_iter=42, snapshot=0,
                          snapshot_prefix=str(tmp_path / 'snap' / 'w'))
    _, final = reference
    (tmp_path / 'snap_ref').mkdir()
    shutil.copyfile(str(final), str(tmp_path / 'snap_ref' / 'w_iter_40.caffemodel'))     # (another run's)
    (tmp_path / 'alone').mkdir()
    state = tmp_path / 'alone' / 'w_iter_40.solverstate'
    shutil.copyfile(str(tiny / 'snap_ref' / 'w_iter_40.solverstate'), str(state))
    monkeypatch.chdir(tmp_path)
    assert cli.main(['train', solver, '--resume', str(state)]) != 0
    err = capsys.readouterr().err
    assert 'its caffemodel w_iter_40.caffemodel is missing (beside it, where it was written)' in err, err
    assert not (tmp_path / 'snap' / 'w_iter_42.caffemodel').exists()


def test_a_state_whose_caffemodel_was_replaced_is_refused(tiny, tmp_path, monkeypatch, capsys):
    """run.json records the caffemodel written with each state (pass 38a
    N1): with one put at its name since (a copy of another snapshot of
    the same net), --resume PATH is refused and --resume auto passes over
    the state, as over a truncated one, and goes on from the one before,
    writing what the run wrote."""
    solver = write_solver(tmp_path, 'paired', nets=tiny, max_iter=4, snapshot=2, test_interval=0,
                          snapshot_prefix=str(tmp_path / 'snap' / 'w'))
    monkeypatch.chdir(tmp_path)
    assert cli.main(['train', solver]) == 0
    info = json.loads((tmp_path / 'runs' / 'paired' / 'run.json').read_text())
    model = tmp_path / 'snap' / 'w_iter_4.caffemodel'
    assert info['last_snapshot_model_id'] == snapshots.file_identity(str(model))
    written = model.read_bytes()
    shutil.copyfile(str(tmp_path / 'snap' / 'w_iter_2.caffemodel'), str(model))
    capsys.readouterr()
    state = str(tmp_path / 'snap' / 'w_iter_4.solverstate')
    assert cli.main(['train', solver, '--resume', state, '--set', 'max_iter=6']) != 0
    err = capsys.readouterr().err
    assert 'w_iter_4.caffemodel is not the one written with it' in err, err
    assert not (tmp_path / 'snap' / 'w_iter_6.caffemodel').exists()
    assert cli.main(['train', solver, '--resume', 'auto', '--set', 'max_iter=6']) == 0
    err = capsys.readouterr().err
    assert 'skipping %s: its caffemodel %s is not the one written with it' % (state, model) in err, err
    assert 'resuming from %s at iteration 2' % (tmp_path / 'snap' / 'w_iter_2.solverstate') in err, err
    assert model.read_bytes() == written
    info = json.loads((tmp_path / 'runs' / 'paired' / 'run.json').read_text())
    assert info['resumed_from_model_id'] == snapshots.file_identity(str(tmp_path / 'snap' / 'w_iter_2.caffemodel'))
    assert info['last_snapshot_model_id'] == snapshots.file_identity(str(tmp_path / 'snap' / 'w_iter_6.caffemodel'))
    # every state a run wrote, not only its last (an earlier one's caffemodel replaced was resumed with
    # other weights, exit 0: pass 40c M1)
    shutil.rmtree(str(tmp_path / 'runs'))
    shutil.rmtree(str(tmp_path / 'snap'))
    assert cli.main(['train', solver, '--set', 'max_iter=6']) == 0
    info = json.loads((tmp_path / 'runs' / 'paired' / 'run.json').read_text())
    assert [pair[1] for pair in info['snapshot_pairs']] == [
        snapshots.file_identity(str(tmp_path / 'snap' / ('w_iter_%d.caffemodel' % i))) for i in (2, 4, 6)]
    shutil.copyfile(str(tmp_path / 'snap' / 'w_iter_2.caffemodel'), str(model))
    capsys.readouterr()
    assert cli.main(['train', solver, '--resume', state, '--set', 'max_iter=8']) != 0
    assert 'w_iter_4.caffemodel is not the one written with it' in capsys.readouterr().err


def test_a_signal_during_the_final_test_stops_the_run_and_a_resume_runs_that_test(tiny, tmp_path, monkeypatch,
                                                                                  capsys):
    """A SIGINT during the final test (after the last snapshot) was
    swallowed: "trained to iteration N", exit 0, status finished, and no
    test at N; `--resume auto` then said "nothing to train" (pass 39c S1).
    The run stops interrupted, and its resume command (or --resume auto)
    runs that test alone, equal to an uninterrupted run's."""
    monkeypatch.chdir(tmp_path)
    solver = write_solver(tmp_path, 'final', nets=tiny, max_iter=4, snapshot=2, test_interval=0,
                          snapshot_prefix=str(tmp_path / 'snap' / 'w'))
    assert cli.main(['train', solver, '--run-dir', str(tmp_path / 'whole'), '--set',
                     'snapshot_prefix=%s' % (tmp_path / 'whole_snap' / 'w')]) == 0
    whole = [r for r in records(tmp_path / 'whole') if r['phase'] == 'test']
    assert [r['iteration'] for r in whole] == [4]
    test = trainer.Trainer.run_test

    def signalled_at_the_end(self):
        if self.solver.iter == self.solver_file.param.max_iter:
            self._signal(signal.SIGINT)
        return test(self)
    monkeypatch.setattr(trainer.Trainer, 'run_test', signalled_at_the_end)
    capsys.readouterr()
    for resume in ('explicit', 'auto'):
        shutil.rmtree(str(tmp_path / 'runs'), ignore_errors=True)
        shutil.rmtree(str(tmp_path / 'snap'), ignore_errors=True)
        monkeypatch.setattr(trainer.Trainer, 'run_test', signalled_at_the_end)
        assert cli.main(['train', solver]) == 130
        err = capsys.readouterr().err
        m = re.fullmatch(r'caffe-mlic train: stopped by SIGINT at iteration 4, snapshot (\S+); resume with: (.+)\n', err)
        assert m, err
        run_dir = tmp_path / 'runs' / 'final'
        assert json.loads((run_dir / 'run.json').read_text())['status'] == 'interrupted by SIGINT'
        assert not any(r['phase'] == 'test' for r in records(run_dir))
        monkeypatch.setattr(trainer.Trainer, 'run_test', test)
        args = shlex.split(m.group(2))[2:] if resume == 'explicit' else [solver, '--resume', 'auto']
        assert cli.main(['train'] + args) == 0
        err = capsys.readouterr().err
        assert 'is at max_iter 4, and the run stopped before its final test: testing it' in err, err
        info = json.loads((run_dir / 'run.json').read_text())
        assert info['status'] == 'finished' and info['final_iteration'] == 4
        assert [r for r in records(run_dir) if r['phase'] == 'test'] == whole
        # and now it is finished: nothing to train
        assert cli.main(['train', solver, '--resume', 'auto']) == 0
        assert 'at max_iter 4 already: nothing to train' in capsys.readouterr().err
    # a signal (or a closed stdout) once the final test is logged stops nothing: the run is whole (it was
    # left "interrupted by a closed stdout" for good, its resume command refused: pass 40c S1)
    shutil.rmtree(str(tmp_path / 'runs'))
    shutil.rmtree(str(tmp_path / 'snap'))
    log_test = trainer.Trainer._test_and_log

    def signalled_after_the_last_test(self, bar):
        log_test(self, bar)
        if self.solver.iter == self.solver_file.param.max_iter:
            self._signal(signal.SIGINT)
    monkeypatch.setattr(trainer.Trainer, '_test_and_log', signalled_after_the_last_test)
    assert cli.main(['train', solver]) == 0
    run_dir = tmp_path / 'runs' / 'final'
    assert json.loads((run_dir / 'run.json').read_text())['status'] == 'finished'
    assert [r for r in records(run_dir) if r['phase'] == 'test'] == whole
    # a whole run that an earlier version left "interrupted": --resume auto says it is finished
    monkeypatch.setattr(trainer.Trainer, '_test_and_log', log_test)
    info = json.loads((run_dir / 'run.json').read_text())
    (run_dir / 'run.json').write_text(json.dumps(dict(info, status='interrupted by a closed stdout')))
    capsys.readouterr()
    assert cli.main(['train', solver, '--resume', 'auto']) == 0
    assert 'at max_iter 4 already: nothing to train' in capsys.readouterr().err
    assert json.loads((run_dir / 'run.json').read_text())['status'] == 'finished'


def test_a_run_killed_before_recording_its_last_snapshot_gets_its_final_test_on_resume(tiny, tmp_path,
                                                                                          monkeypatch, capsys):
    """A SIGKILL after the last snapshot was written and before run.json
    recorded it (and before the final test): --resume auto said "nothing to
    train" and marked the run finished without its final test or curves
    (pass 41c S1, M1). It runs that test, as after a signal."""
    monkeypatch.chdir(tmp_path)
    solver = write_solver(tmp_path, 'killed', nets=tiny, max_iter=4, snapshot=2, test_interval=0,
                          snapshot_prefix=str(tmp_path / 'snap' / 'w'))
    assert cli.main(['train', solver]) == 0
    run_dir = tmp_path / 'runs' / 'killed'
    whole = [r for r in records(run_dir) if r['phase'] == 'test']
    # as the kill leaves it: run.json at the state before, running; no final test; no curves
    info = json.loads((run_dir / 'run.json').read_text())
    earlier = str(tmp_path / 'snap' / 'w_iter_2.solverstate')
    info.update(status='running', last_snapshot=earlier, last_snapshot_id=snapshots.file_identity(earlier),
                last_snapshot_model_id=info['snapshot_pairs'][0][1], snapshot_pairs=info['snapshot_pairs'][:1],
                final_iteration=2, end_time=None)
    (run_dir / 'run.json').write_text(json.dumps(info))
    kept = [line for line in (run_dir / 'log.jsonl').read_text().splitlines(True) if '"test"' not in line]
    (run_dir / 'log.jsonl').write_text(''.join(kept))
    (run_dir / 'curves.png').unlink()
    capsys.readouterr()
    # the last state given (run.json does not know it): refused, pointing at --resume auto (pass 44c n2)
    last = str(tmp_path / 'snap' / 'w_iter_4.solverstate')
    assert cli.main(['train', solver, '--resume', last]) == 2
    assert capsys.readouterr().err.endswith(
        'is at iteration 4, at max_iter 4 of %s: nothing to train (raise max_iter, e.g. --set max_iter=N; or, for '
        'the final test the run folder\'s log lacks, --resume auto)\n' % solver)
    assert cli.main(['train', solver, '--resume', 'auto']) == 0
    assert 'and the run stopped before its final test: testing it' in capsys.readouterr().err
    assert json.loads((run_dir / 'run.json').read_text())['status'] == 'finished'
    assert [r for r in records(run_dir) if r['phase'] == 'test'] == whole
    assert (run_dir / 'curves.png').exists()
    # a whole run whose curves a kill left undrawn: drawn by --resume auto's "nothing to train"
    (run_dir / 'curves.png').unlink()
    assert cli.main(['train', solver, '--resume', 'auto']) == 0
    assert 'nothing to train' in capsys.readouterr().err and (run_dir / 'curves.png').exists()


def test_sighup_under_nohup_stays_ignored(tiny, tmp_path, monkeypatch):
    """train took SIGHUP even when it started ignored (`nohup`), and a
    hang-up stopped it (pass 41c S2)."""
    monkeypatch.chdir(tmp_path)
    solver = write_solver(tmp_path, 'nohup', nets=tiny, max_iter=6, snapshot=0, test_interval=0,
                          snapshot_prefix=str(tmp_path / 'snap' / 'w'))
    step = trainer.Trainer._train_iteration

    def hung_up(self):
        if self.solver.iter == 2:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.2)
        return step(self)
    monkeypatch.setattr(trainer.Trainer, '_train_iteration', hung_up)
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert cli.main(['train', solver]) == 0
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert json.loads((tmp_path / 'runs' / 'nohup' / 'run.json').read_text())['final_iteration'] == 6


def test_weights_are_copied_in_order(tiny, reference, tmp_path):
    """--weights W1,W2: with base_lr 0 the net after one iteration is W2 (copied over W1)."""
    solver = write_solver(tmp_path, 'weights', nets=tiny, max_iter=1, base_lr=0, snapshot=0,
                          snapshot_prefix=str(tmp_path / 'w'))
    _, final = reference
    first = tiny / 'snap_ref' / 'w_iter_40.caffemodel'
    assert cli.main(['train', solver, '--weights', '%s,%s' % (first, final),
                     '--run-dir', str(tmp_path / 'run')]) == 0
    got, expected = weights_of(tmp_path / 'w_iter_1.caffemodel'), weights_of(final)
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    assert not all(np.array_equal(got[k], v) for k, v in weights_of(first).items())


# ---------------------------------------------------------------- bad input


def test_bad_input_gets_one_clear_line(tiny, student_run, capsys, monkeypatch):
    monkeypatch.chdir(tiny)     # the solvers' relative snapshot prefixes: never in the checkout
    (tiny / 'broken.prototxt').write_text('base_lr: 0.1\nmax_iter: 10\nnet: "x.prototxt\n')
    write_solver(tiny, 'nonet', net='missing/none')
    write_solver(tiny, 'badlr', lr_policy='step', stepsize=0)
    truncated = tiny / 'truncated.caffemodel'
    truncated.write_bytes((tiny / 'snap_student' / 'w_iter_6.caffemodel').read_bytes()[:500])
    teacher = write_solver(tiny, 'teacher', max_iter=2)
    student_state = str(tiny / 'snap_student' / 'w_iter_6.solverstate')
    cases = [
        (['train', str(tiny / 'none.prototxt')], 1, 'none.prototxt: no such solver prototxt'),
        (['train', str(tiny / 'broken.prototxt')], 1, 'broken.prototxt:3:'),
        (['train', str(tiny / 'nonet.prototxt')], 1, 'none.prototxt: no such net prototxt'),
        (['train', str(tiny / 'badlr.prototxt')], 1, 'lr_policy "step" needs stepsize > 0'),
        (['train', teacher, '--weights', '%s,%s' % (truncated, tiny / 'no.caffemodel')], 1,
         'no.caffemodel: no such weights file'),
        (['train', teacher, '--weights', str(tiny)], 1, 'not a regular file (a device, FIFO or folder), not weights'),
        (['train', teacher, '--weights', str(truncated)], 1,
         'truncated.caffemodel: truncated or not a NetParameter'),
        (['train', teacher, '--resume', str(tiny / 'no.solverstate')], 1,
         'no.solverstate: no such solver state'),
        (['train', teacher, '--resume', student_state], 1, 'not a state of this solver'),
        (['train', teacher, '--score-blob', 'nope'], 2,
         "argument --score-blob: the TEST net has no blob 'nope'"),
    ]
    for argv, code, needle in cases:
        assert cli.main(argv + ['--run-dir', str(tiny / 'runs' / 'bad')]) == code, argv
        err = capsys.readouterr().err
        assert err.startswith('caffe-mlic train: ') and needle in err, (argv, err)
        assert len(err.splitlines()) == 1 or 'problems' in err.splitlines()[0], err
        assert 'Traceback' not in err


# ---------------------------------------------------------------- plot-log


def test_read_caffe_log_reads_the_binary_lines():
    text = '\n'.join([
        'I1201 solver.cpp:330] Iteration 0, Testing net (#0)',
        'I1201 solver.cpp:397]     Test net output #0: loss = 0.7 (* 1 = 0.7 loss)',
        'I1201 solver.cpp:218] Iteration 0 (0 iter/s, 0.01s/1 iters), loss = 0.69',
        'I1201 solver.cpp:237]     Train net output #0: loss = 0.69 (* 1 = 0.69 loss)',
        'I1201 sgd_solver.cpp:105] Iteration 0, lr = 0.01',
        'I1201 solver.cpp:218] Iteration 1 (2 iter/s, 0.5s/1 iters), loss = 0.6',
        'I1201 solver.cpp:237]     Train net output #0: loss = -nan (* 1 = -nan loss)',
        'I1201 sgd_solver.cpp:105] Iteration 1, lr = 1e-03',
        'I1201 solver.cpp:330] Iteration 2, Testing net (#0)',
        'I1201 solver.cpp:397]     Test net output #0: accuracy = 0.5',
    ])
    rows = logs.read_caffe_log(text)
    assert rows[0] == dict(phase='test', iteration=0, test_loss=0.7)
    assert rows[1] == dict(phase='train', iteration=0, smoothed_loss=0.69, train_loss=0.69, lr=0.01)
    assert rows[2]['lr'] == 0.001 and math.isnan(rows[2]['train_loss'])
    assert rows[3] == dict(phase='test', iteration=2, test_accuracy=0.5)


def test_plot_log_draws_a_caffe_binary_log(tiny):
    solver = write_solver(tiny, 'binary', max_iter=6, test_interval=3, snapshot=0,
                          test_initialization=True, display=1)
    (tiny / 'snap_binary').mkdir()
    _, log = caffe_train(solver, cwd=tiny)
    (tiny / 'binary.log').write_text(log)
    rows = logs.read_caffe_log(log)
    train = [r for r in rows if r['phase'] == 'train']
    assert [(r['iteration'], r['smoothed_loss']) for r in train] == parse_losses(log)
    assert [r['iteration'] for r in train] == list(range(7))
    assert all('lr' in r and 'train_loss' in r for r in train[:-1])
    assert [r['iteration'] for r in rows if r['phase'] == 'test'] == [0, 3, 6]
    res = run_cli(['plot-log', 'binary.log', '-o', 'binary.png'], tiny)
    assert res.returncode == 0, res.stderr
    assert '7 train and 3 test records' in res.stdout
    image = cv2.imread(str(tiny / 'binary.png'))
    assert image is not None and image.std() > 10
    bad = run_cli(['plot-log', 'binary.prototxt', '-o', 'x.png'], tiny)
    assert bad.returncode == 1 and 'not a caffe training log' in bad.stderr
    assert not (tiny / 'x.png').exists()


def test_train_max_iter_is_netgens_schedule_and_a_set_wins(tiny, tmp_path):
    """`train --max-iter N` gives the solver netgen's schedule for N (the step
    at 70 %, a snapshot at the end, a test every eighth), as --set items the
    resume command repeats; a --set of the same field after it wins."""
    from caffe_mlic.netspec.netgen import solver_overrides
    from caffe_mlic.netspec.solvers import SOLVERS
    run_dir = tmp_path / 'r'
    assert cli.main(['train', str(tiny / 'nets' / 'kd' / 'solver_baseline.prototxt'), '--max-iter', '10',
                     '--set', 'snapshot=5', '--set', 'snapshot_prefix=%s' % (tmp_path / 's' / 'b'),
                     '--run-dir', str(run_dir)]) == 0
    info = json.loads((run_dir / 'run.json').read_text())
    assert info['final_iteration'] == 10
    solver = prototxt.read_solver(str(run_dir / 'solver.prototxt'))
    spec = solver_overrides(SOLVERS['kd/solver_baseline'][1], max_iter=10)
    assert (solver.max_iter, solver.stepsize, solver.test_interval) == (10, spec.stepsize, spec.test_interval) \
        == (10, 7, 2)
    assert solver.snapshot == 5
    assert '--set max_iter=10 --set stepsize=7 --set snapshot=1' in info['command']


@pytest.mark.parametrize('line, message', [
    # (report tracebacks on each: pass 37b S2)
    (b'{"phase": "test", "iteration": 3, "x": "\xff"}', ':2: not a JSON record'),
    (b'[1, 2]', ':2: not a record of caffe-mlic train: not a JSON object'),
    (b'{"phase": "test", "iteration": "1", "test_mAP": 50}', ':2: not a record of caffe-mlic train: "iteration" must '
                                                             'be an integer >= 0'),
    (b'{"phase": "test", "iteration": 1, "test_mAP": "x"}', ':2: not a record of caffe-mlic train: "test_mAP" must be '
                                                            'a number'),
    (b'{"phase": "valid", "iteration": 1}', ':2: not a record of caffe-mlic train: "phase" must be "train" or "test"'),
])
def test_a_log_record_of_another_kind_is_named_by_its_line(tmp_path, line, message):
    log = tmp_path / 'log.jsonl'
    log.write_bytes(b'{"phase": "train", "iteration": 0, "loss": 0.5}\n' + line + b'\n{"phase": "train", '
                    b'"iteration": 1, "loss": null}\n')
    with pytest.raises(InputError) as e:
        logs.test_points(str(log))
    assert str(e.value) == str(log) + message
    if message == ':2: not a JSON record':
        # the last line, torn by a kill (no newline after it: each record is written with its own): left out
        log.write_bytes(b'{"phase": "train", "iteration": 0, "loss": 0.5}\n' + line)
        assert [r['iteration'] for r in logs.read_records(str(log))] == [0]
        # a whole last line (its newline written) that is not a record was not torn: named (pass 38b m1)
        log.write_bytes(b'{"phase": "train", "iteration": 0, "loss": 0.5}\n' + line + b'\n')
        with pytest.raises(InputError) as e:
            logs.read_records(str(log))
        assert str(e.value) == str(log) + message


def test_a_log_that_is_a_fifo_is_an_error_not_a_hang(tmp_path):
    """report hung on a stage's log.jsonl that was a FIFO (pass 37b S1)."""
    from tests.faults import input_errors_beside_a_fifo
    log = tmp_path / 'log.jsonl'
    os.mkfifo(str(log))
    assert input_errors_beside_a_fifo(log, lambda: logs.read_records(str(log))) == [
        '%s: cannot read the log: not a regular file (a device, FIFO or folder)' % log]


def test_a_log_line_with_an_integer_beyond_a_float_is_named(tmp_path):
    """math.isfinite overflowed on it in report (pass 38b S2)."""
    log = tmp_path / 'log.jsonl'
    log.write_text('{"phase": "test", "iteration": 1%s, "test_mAP": 5}\n{"phase": "train", "iteration": 2}\n'
                   % ('0' * 400))
    with pytest.raises(InputError, match=':1: not a JSON record'):
        logs.read_records(str(log))


@pytest.mark.parametrize('setting,value,why', [
    ('savefig.dpi', 40000, r'ValueError: Image size of 320000x'),
    # (as a Python error or as the child's death: C++ exceptions under libunwind go either way)
    ('font.size', 1e9, r'(RuntimeError: In set_size: Could not set the fontsize|it crashed: SIG(SEGV|ABRT))')])
def test_curves_matplotlib_cannot_draw_end_nothing_mid_run_and_are_named_at_the_end(tiny, tmp_path, monkeypatch,
                                                                                     capsys, setting, value, why):
    """A matplotlibrc matplotlib fails on (savefig.dpi 40000: "Image size
    ... is too large"; text.usetex without LaTeX) ended a long run at its
    first mid-run redraw with two tracebacks, and a short one at its end
    with one, run.json left "running" (pass 48c S1; a FIFO font cache
    planted mid-run ended it as "failed": S2). The curves are a view of
    the log: mid-run the run says so once and goes on; its end names it.
    font.size 1e9 made matplotlib's C++ code throw, which aborts a process
    where Caffe's glog loaded libunwind: SIGABRT or SIGSEGV, nothing said,
    run.json "running" (pass 49c S1); charts are drawn in a child there.
    (In this process too: without the child, this test would abort pytest.)"""
    import matplotlib
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(trainer, 'CURVES_EVERY', 0)
    monkeypatch.setitem(matplotlib.rcParams, setting, value)
    solver = write_solver(tmp_path, 'dpi', nets=tiny, max_iter=6, snapshot=3, test_interval=2,
                          snapshot_prefix=str(tmp_path / 'snap' / 'w'))
    run_dir = tmp_path / 'runs' / 'dpi'
    capsys.readouterr()
    assert cli.main(['train', solver, '--run-dir', str(run_dir)]) == 1
    out, err = capsys.readouterr()
    why = r'matplotlib could not draw %s \(%s' % (re.escape(str(run_dir / 'curves.png')), why)
    said = [line for line in out.splitlines() if 'curves.png not drawn' in line]
    assert len(said) == 1 and re.match(r'curves.png not drawn \(' + why, said[0]), out
    assert said[0].endswith('; its settings, matplotlibrc, or fonts?)); the run goes on'), said
    assert re.match('caffe-mlic train: trained to iteration 6, but ' + why, err) and 'Traceback' not in err, err
    assert err.endswith('; the last snapshot is %s\n' % (tmp_path / 'snap' / 'w_iter_6.solverstate')), err
    info = json.loads((run_dir / 'run.json').read_text())
    assert info['status'] == 'finished' and info['final_iteration'] == 6
    assert len(info['unwritten']) == 1 and re.match(why, info['unwritten'][0])
    assert [r['iteration'] for r in records(run_dir) if r['phase'] == 'test'] == [2, 4, 6]
    assert not (run_dir / 'curves.png').exists()


def test_a_finished_run_whose_curves_cannot_be_drawn_says_so_when_run_again(tiny, tmp_path, monkeypatch, capsys):
    """curves.png missing from a finished run is drawn by `--resume auto`
    ("nothing to train"); when it could not be, nothing was said, exit 0
    (pass 50c M1). The run is whole: exit 0, a note naming why."""
    import matplotlib
    monkeypatch.chdir(tmp_path)
    solver = write_solver(tmp_path, 'again', nets=tiny, max_iter=2, snapshot=2, test_interval=0,
                          snapshot_prefix=str(tmp_path / 'snap' / 'w'))
    run_dir = tmp_path / 'runs' / 'again'
    assert cli.main(['train', solver, '--run-dir', str(run_dir)]) == 0
    (run_dir / 'curves.png').unlink()
    monkeypatch.setitem(matplotlib.rcParams, 'savefig.dpi', 40000)
    capsys.readouterr()
    assert cli.main(['train', solver, '--run-dir', str(run_dir), '--resume', 'auto']) == 0
    err = capsys.readouterr().err
    assert 'at max_iter 2 already: nothing to train' in err, err
    assert 'curves.png not drawn (matplotlib could not draw %s (ValueError: Image size of' % (run_dir / 'curves.png') \
        in err, err
    assert not (run_dir / 'curves.png').exists()
