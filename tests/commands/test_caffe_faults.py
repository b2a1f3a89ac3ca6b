"""`caffe-mlic caffe`: what the stock binary would abort on (rc 134, a glog
FATAL) is checked before it starts and said in one line."""
import os
import re
import signal
import subprocess
import sys
import time
import types

import pytest

from caffe_mlic.caffe import prototxt
from tests import netutil
from tests.faults import CLI, child_pids, run_cli, shm_segments


@pytest.fixture
def files(tmp_path):
    net = netutil.input_layers_text([(2, 3), (2, 3)], ['x', 'labels'])
    net += ('layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" '
            'inner_product_param { num_output: 3 } }\n') + netutil.SIGMOID_LOSS_TEXT
    (tmp_path / 'net.prototxt').write_text(net)
    netutil.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', base_lr=0.1, max_iter=2,
                         snapshot=1, snapshot_prefix='snaps/w')
    (tmp_path / 'garbage.caffemodel').write_bytes(b'\xff' * 100)
    return tmp_path


def one_line(res, code, message):
    assert res.returncode == code, res.stderr
    assert 'Check failed' not in res.stderr and 'F1' not in res.stderr[:3]
    assert re.fullmatch(r'caffe-mlic caffe: %s\n' % message, res.stderr), res.stderr


@pytest.mark.parametrize('argv, code, message', [
    (['train'], 2, 'train needs -solver SOLVER.prototxt'),
    (['train', '-solver', 'missing.prototxt'], 1, 'missing.prototxt: no such solver prototxt'),
    (['train', '-solver', 'net.prototxt'], 1, r'net.prototxt: a net prototxt, not a solver; .*'),
    (['train', '-solver', 'nonet.prototxt'], 1, r'nonet.prototxt:\d+: net: gone.prototxt: no such net prototxt'),
    (['train', '-solver', 'solver.prototxt', '-weights', 'garbage.caffemodel', '-snapshot', 's'], 2,
     'give -snapshot STATE to resume or -weights W to fine-tune, not both'),
    (['train', '-solver', 'solver.prototxt', '-weights', 'gone.caffemodel'], 1,
     r'gone.caffemodel: no such weights file \(-weights\)'),
    (['train', '-solver', 'solver.prototxt', '-weights', 'garbage.caffemodel,'], 1,     # (pass 31 M6)
     r'-weights garbage.caffemodel, names an empty file name \(a comma at its start or end, or two together\)'),
    (['train', '-solver', 'solver.prototxt', '-weights', '/dev/zero'], 1,
     r'/dev/zero: not a regular file \(a device, FIFO or folder\), not weights \(-weights\)'),
    (['train', '-solver', 'solver.prototxt', '-weights', 'garbage.caffemodel'], 1,
     r'garbage.caffemodel: truncated or not a NetParameter .*'),
    (['train', '-solver', 'solver.prototxt', '-snapshot', 'gone.solverstate'], 1,
     'gone.solverstate: no such solver state'),
    (['train', '-solver', 'roprefix.prototxt'], 1,
     r'roprefix.prototxt:\d+: snapshot_prefix: cannot write snapshots into /proc/caffe_mlic_none: .*'),
    (['test', '-model', 'net.prototxt'], 2, r'test needs -weights W.caffemodel .*'),
    (['test', '-model', 'solver.prototxt', '-weights', 'garbage.caffemodel'], 1,
     r'solver.prototxt: a solver prototxt, not a net; .*'),
    (['time'], 2, 'time needs -model NET.prototxt'),
])
def test_what_the_binary_would_abort_on_is_one_line(files, argv, code, message):
    netutil.write_solver(files / 'nonet.prototxt', 'gone.prototxt', base_lr=0.1, max_iter=2)
    netutil.write_solver(files / 'roprefix.prototxt', 'net.prototxt', base_lr=0.1, max_iter=2, snapshot=1,
                         snapshot_prefix='/proc/caffe_mlic_none/w')
    one_line(run_cli(['caffe'] + argv, files), code, message)
    assert not (files / 'snaps').exists()       # (made for the binary, left empty when refused: pass 40c M3)


def test_a_state_whose_caffemodel_is_gone_is_named(files):
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt'], files)
    assert res.returncode == 0, res.stderr
    (files / 'snaps' / 'w_iter_1.caffemodel').unlink()
    one_line(run_cli(['caffe', 'train', '-solver', 'solver.prototxt', '-snapshot', 'snaps/w_iter_1.solverstate'],
                     files), 1,
             r'snaps/w_iter_1.solverstate: its caffemodel w_iter_1.caffemodel is missing \(beside it, where it was '
             r'written\)')
    # from the snapshot folder: the binary would look for snaps/snaps/w_iter_1.caffemodel (pass 37a F3)
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt'], files)
    assert res.returncode == 0, res.stderr
    os.rename(str(files / 'solver.prototxt'), str(files / 'snaps' / 'solver.prototxt'))
    (files / 'snaps' / 'solver.prototxt').write_text((files / 'snaps' / 'solver.prototxt').read_text().replace(
        'net.prototxt', '../net.prototxt'))
    one_line(run_cli(['caffe', 'train', '-solver', 'solver.prototxt', '-snapshot', 'w_iter_1.solverstate'],
                     files / 'snaps'), 1,
             r'w_iter_1.solverstate: its caffemodel snaps/w_iter_1.caffemodel, as Caffe reads it from the current '
             r'directory, is not there; it is w_iter_1.caffemodel beside it: run from the folder .*')


def test_a_state_whose_caffemodel_name_leads_to_another_file_is_refused(files):
    """The binary reads a state's learned_net from the current directory:
    once the state's folder was renamed and another run wrote at the old
    name, it would load that run's weights with this run's history (pass 36
    S1). Refused, naming both files."""
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt'], files)
    assert res.returncode == 0, res.stderr
    os.rename(str(files / 'snaps'), str(files / 'mine'))
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt'], files)     # (another run, at the old name)
    assert res.returncode == 0, res.stderr
    (files / 'mine' / 'w_iter_2.caffemodel').unlink()       # (and none beside: never the other run's, pass 37a F1)
    one_line(run_cli(['caffe', 'train', '-solver', 'solver.prototxt', '-snapshot', 'mine/w_iter_2.solverstate'],
                     files), 1, r'mine/w_iter_2.solverstate: its caffemodel w_iter_2.caffemodel is missing .*')
    one_line(run_cli(['caffe', 'train', '-solver', 'solver.prototxt', '-snapshot', 'mine/w_iter_1.solverstate'],
                     files), 1,
             r'mine/w_iter_1.solverstate: its caffemodel snaps/w_iter_1.caffemodel, as Caffe reads it from the '
             r'current directory, is not mine/w_iter_1.caffemodel beside it: .*--resume mine/w_iter_1.solverstate')


def test_a_good_solver_still_trains_and_the_folder_is_made(files):
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt'], files)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (files / 'snaps').iterdir()) == [
        'w_iter_%d.%s' % (i, k) for i in (1, 2) for k in ('caffemodel', 'solverstate')]
    assert prototxt.read_net(files / 'net.prototxt').layer


def test_a_prefix_a_run_folder_claimed_and_a_finished_state_are_refused(files):
    """The binary has no run folder: a prefix that a `caffe-mlic train` run
    claimed is refused (it wrote over that run's snapshots), and a state at
    or past max_iter is refused as `train --resume` refuses it (the binary
    trained nothing and exited 0) (pass 23 M1, M2)."""
    res = run_cli(['train', 'solver.prototxt', '--run-dir', 'runs/mine'], files)
    assert res.returncode == 0, res.stderr
    before = (files / 'snaps' / 'w_iter_2.caffemodel').read_bytes()
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt'], files)
    assert res.returncode == 1 and 'snaps/w is the snapshot prefix of the run in %s' % (
        files / 'runs' / 'mine') in res.stderr, res.stderr
    # (the binary has no --set: pass 31 M5)
    assert 'give another snapshot_prefix in the solver;' in res.stderr and '--set' not in res.stderr
    assert (files / 'snaps' / 'w_iter_2.caffemodel').read_bytes() == before
    (files / 'snaps' / '.w.run').unlink()          # (the way out the message gives)
    for state, word in (('snaps/w_iter_2.solverstate', 'at'), ):
        one_line(run_cli(['caffe', 'train', '-solver', 'solver.prototxt', '-snapshot', state], files), 2,
                 r'%s is at iteration 2, %s max_iter 2 of solver.prototxt: nothing to train \(raise max_iter in '
                 r'the solver\)' % (re.escape(state), word))
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt', '-snapshot', 'snaps/w_iter_1.solverstate'], files)
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------- weights and states of another net

def refused(res, *fragments):
    """rc 1 with our message (its lines naming the file, the layer and both
    shapes), not the binary's abort (rc 134, "Check failed" / "Cannot copy")."""
    assert res.returncode == 1, res.stderr[-3000:]
    assert 'Check failed' not in res.stderr and 'Cannot copy' not in res.stderr, res.stderr[-3000:]
    assert res.stderr.startswith('caffe-mlic caffe: '), res.stderr[-3000:]
    for fragment in fragments:
        assert fragment in res.stderr, res.stderr


@pytest.fixture
def other(files):
    """``files`` plus: snapshots of the same net with Adam (binary) and SGD
    (HDF5), and of another net (fc of 4 outputs, not 3; binary and HDF5)."""
    net = netutil.input_layers_text([(2, 3), (2, 4)], ['x', 'labels'])
    net += ('layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" '
            'inner_product_param { num_output: 4 } }\n') + netutil.SIGMOID_LOSS_TEXT
    (files / 'net4.prototxt').write_text(net)
    common = dict(base_lr=0.1, max_iter=1, snapshot=1)
    for name, net_file, extra in (('adam', 'net.prototxt', dict(type='Adam')),
                                  ('h5', 'net.prototxt', dict(snapshot_format=0)),   # HDF5
                                  ('four', 'net4.prototxt', {}),
                                  ('four_h5', 'net4.prototxt', dict(snapshot_format=0))):
        netutil.write_solver(files / ('solver_%s.prototxt' % name), net_file, snapshot_prefix='%s/w' % name,
                             **dict(common, **extra))
        res = run_cli(['caffe', 'train', '-solver', 'solver_%s.prototxt' % name], files)
        assert res.returncode == 0, res.stderr[-2000:]
    return files


def test_weights_of_another_shape_are_named_not_a_caffe_abort(other):
    """The binary copies by layer name and CHECKs each blob's shape (rc 134,
    "Cannot copy param 0 weights from layer 'fc'; shape mismatch"); the
    shapes are worked out from the prototxt, without building the net."""
    for argv in (['train', '-solver', 'solver.prototxt'], ['test', '-model', 'net.prototxt', '-iterations', '1']):
        for model in ('four/w_iter_1.caffemodel', 'four_h5/w_iter_1.caffemodel.h5'):
            refused(run_cli(['caffe'] + argv + ['-weights', model], other),
                    '%s: layer fc blob 0 is 4x3 (12 values), the net needs 3x3' % model,
                    '%s: layer fc blob 1 is 4 (4 values), the net needs 3' % model)
    for model in ('w_iter_1.caffemodel', 'w_iter_1.caffemodel.h5'):     # the net's own: fine
        res = run_cli(['caffe', 'test', '-model', 'net.prototxt', '-iterations', '1', '-weights',
                       ('h5/' if model.endswith('.h5') else 'adam/') + model], other)
        assert res.returncode == 0, res.stderr[-2000:]


def test_a_state_of_another_net_or_solver_is_named_not_a_caffe_abort(other):
    """-snapshot: Caffe CHECKs the history count ("history_size 4 vs 2") and
    reshapes a history blob of another shape (memory corruption later): the
    learnable blobs are worked out from the prototxt, two per blob for Adam."""
    refused(run_cli(['caffe', 'train', '-solver', 'solver.prototxt', '-snapshot', 'adam/w_iter_1.solverstate'],
                    other),
            'adam/w_iter_1.solverstate: not a state of this solver (or truncated): 4 history blobs; this net '
            'with solver type SGD keeps 2')
    refused(run_cli(['caffe', 'train', '-solver', 'solver_adam.prototxt', '-snapshot',
                     'h5/w_iter_1.solverstate.h5'], other),
            'h5/w_iter_1.solverstate.h5: not a state of this solver (or truncated): 2 history blobs; this net '
            'with solver type Adam keeps 4')
    for state in ('four/w_iter_1.solverstate', 'four_h5/w_iter_1.solverstate.h5'):
        refused(run_cli(['caffe', 'train', '-solver', 'solver.prototxt', '-snapshot', state], other),
                '%s: not a state of this solver: history blob 0 is 4x3 (12 values), the net needs 3x3' % state)


@pytest.mark.parametrize('kind', ['truncated', 'empty', 'text'])
def test_unreadable_hdf5_weights_and_states_are_named(other, kind):
    """Caffe printed HDF5's error stack and aborted (rc 134) on each."""
    for source in ('h5/w_iter_1.caffemodel.h5', 'h5/w_iter_1.solverstate.h5'):
        bad = other / ('bad_' + source.split('/')[1])
        data = (other / source).read_bytes()
        bad.write_bytes({'truncated': data[:500], 'empty': b'', 'text': b'weights\n'}[kind])
        flag = '-snapshot' if 'solverstate' in source else '-weights'
        res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt', flag, bad.name], other)
        refused(res, '%s: not an HDF5 file, or truncated: HDF5 cannot open it (' % bad.name)
        assert 'HDF5-DIAG' not in res.stderr and len(res.stderr.splitlines()) == 1


def test_an_hdf5_state_resumes_at_its_iteration(other, monkeypatch):
    """A good HDF5 state (and caffemodel) still works, and the data plan
    resumes at its iteration as with a binary state (it restarted at 0)."""
    from caffe_mlic.commands import caffe as command
    monkeypatch.chdir(other)
    netutil.write_solver(other / 'solver_h5b.prototxt', 'net.prototxt', base_lr=0.1, max_iter=3, snapshot=1,
                         snapshot_prefix='h5b/w', snapshot_format=0, iter_size=2)
    assert command._resume_batch('h5/w_iter_1.solverstate.h5', 'solver_h5b.prototxt') == 2
    assert command._resume_batch('adam/w_iter_1.solverstate', 'solver_adam.prototxt') == 1
    res = run_cli(['caffe', 'train', '-solver', 'solver_h5b.prototxt', '-snapshot', 'h5/w_iter_1.solverstate.h5'],
                  other)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (other / 'h5b').iterdir()) == [
        'w_iter_%d.%s.h5' % (i, k) for i in (2, 3) for k in ('caffemodel', 'solverstate')]
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt', '-weights', 'h5/w_iter_1.caffemodel.h5'], other)
    assert res.returncode == 0, res.stderr[-2000:]


# ---------------------------------------------------------------- signals to the wrapper

STACK_DUMP = ('SIGTERM received', '*** ', '@ 0x', 'Check failed', 'Traceback')




def _gone(pid, wait=10.0):
    """Whether process ``pid`` has ended (a zombie counts) within ``wait`` s."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with open('/proc/%d/stat' % pid) as f:
                if f.read().rsplit(')', 1)[1].split()[0] in 'ZX':
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def _start(files, argv, until, loglevel='2', **env):
    """`caffe-mlic caffe ARGV` in its own session, once ``until()`` is true
    (the binary is running): (wrapper, binary pid)."""
    proc = subprocess.Popen(CLI + ['caffe'] + argv, cwd=files, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, GLOG_minloglevel=loglevel, **env),
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not until(proc):
        assert proc.poll() is None, proc.communicate()
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail('the binary did not start: %s' % (proc.communicate(),))
        time.sleep(0.05)
    kids = child_pids(proc.pid)
    assert len(kids) <= 1, kids
    return proc, (kids or [proc.pid])[0]


@pytest.fixture
def long_run(files):
    """A solver that trains ~forever, a snapshot every 5000 iterations."""
    netutil.write_solver(files / 'long.prototxt', 'net.prototxt', base_lr=0.1, max_iter=2 ** 30, snapshot=5000,
                         snapshot_prefix='long/w')
    return files


@pytest.mark.parametrize('sent, flags, how', ids=['term', 'int', 'term-hup-stops', 'term-none-stops'], argvalues=[
    (signal.SIGTERM, [], r'Caffe ended training after its current iteration \(sent SIGINT, -sigint_effect stop\), '
                         r'with a snapshot unless the solver sets snapshot_after_train: false'),
    (signal.SIGINT, [], r'Caffe ended training after its current iteration \(sent SIGINT, -sigint_effect stop\), .*'),
    (signal.SIGTERM, ['-sigint_effect', 'none', '-sighup_effect', 'stop'],
     r'Caffe ended training after its current iteration \(sent SIGHUP, -sighup_effect stop\), .*'),
    (signal.SIGTERM, ['-sigint_effect=snapshot'],
     r'the caffe binary was ended by SIGKILL, without a snapshot \(neither -sigint_effect nor -sighup_effect is '
     r'stop\)'),
])
def test_a_signal_to_the_wrapper_stops_caffe_train_without_a_stack_dump(long_run, sent, flags, how):
    """SIGTERM reached the binary, whose glog failure handler (Caffe's
    GlobalInit) printed "*** SIGTERM received ..." and a stack trace; it goes
    on as the signal Caffe's solver stops on, which snapshots."""
    proc, binary = _start(long_run, ['train', '-solver', 'long.prototxt'] + flags,
                          lambda proc: (long_run / 'long' / 'w_iter_5000.caffemodel').exists())
    os.kill(proc.pid, sent)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sent, err
    assert re.fullmatch(r'caffe-mlic caffe: stopped by %s: %s\n' % (signal.Signals(sent).name, how), err), err
    assert not any(s in err for s in STACK_DUMP), err
    assert _gone(binary)
    iterations = {int(re.search(r'_iter_(\d+)\.', p.name).group(1)) for p in (long_run / 'long').iterdir()}
    if 'SIGKILL' in how:
        assert all(i % 5000 == 0 for i in iterations), iterations
    else:       # the snapshot Caffe takes when it stops
        assert any(i % 5000 for i in iterations), iterations


def test_sighup_to_the_wrapper_is_caffe_trains_sighup(long_run):
    """-sighup_effect snapshot (the default): a snapshot, and training goes on."""
    proc, binary = _start(long_run, ['train', '-solver', 'long.prototxt'],
                          lambda proc: (long_run / 'long' / 'w_iter_5000.caffemodel').exists())
    os.kill(proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + 60
    while not [p for p in (long_run / 'long').glob('*.solverstate') if int(p.stem.split('_')[-1]) % 5000]:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    assert proc.poll() is None
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and err.startswith('caffe-mlic caffe: stopped by SIGTERM: Caffe ended'), err


@pytest.mark.parametrize('sent', [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=['term', 'hup', 'int'])
def test_a_signal_to_the_wrapper_ends_caffe_time_without_a_stack_dump(files, sent):
    seen = []

    def benchmarking(proc):     # glog's INFO line once the benchmark runs (its handler is up long before)
        line = proc.stderr.readline()
        seen.append(line)
        return 'Benchmark begins' in line
    proc, binary = _start(files, ['time', '-model', 'net.prototxt', '-iterations', '2000000000'], benchmarking,
                          loglevel='0')
    os.kill(proc.pid, sent)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sent, err
    assert err.endswith('caffe-mlic caffe: stopped by %s: the caffe binary was ended by SIGKILL\n'
                        % signal.Signals(sent).name), err
    assert not any(s in err for s in STACK_DUMP), err
    assert _gone(binary)


def test_the_binary_ends_with_a_killed_wrapper(long_run, tmp_path):
    """The binary is in its own process group (a group kill reaches only the
    wrapper, which passes it on): a SIGKILL of the wrapper ends it too. Its
    temp folder, left behind, is removed by the next run."""
    temp = tmp_path / 'temp'
    temp.mkdir()
    proc, binary = _start(long_run, ['train', '-solver', 'long.prototxt'],
                          lambda proc: (long_run / 'long' / 'w_iter_5000.caffemodel').exists(), TMPDIR=str(temp))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert _gone(binary)
    assert [p.name.startswith('caffe-mlic-caffe-%d-' % proc.pid) for p in temp.iterdir()] == [True]
    res = run_cli(['caffe', 'time', '-model', 'net.prototxt', '-iterations', '1'], long_run, TMPDIR=str(temp))
    assert res.returncode == 0, res.stderr
    assert not list(temp.iterdir())


def test_help_asked_for_is_not_a_failure():
    """--help: ours, then the binary's flags (gflags exits 1 after them: not a failure here)."""
    res = run_cli(['caffe', '--help'], '.')
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith('usage: caffe-mlic caffe ACTION') and '-solver' in res.stdout + res.stderr


def test_the_wrapper_help_says_what_signals_do():
    res = run_cli(['caffe', '-h'], '.')
    assert res.returncode == 0, res.stderr
    text = ' '.join(res.stdout.split())
    for fragment in ('SIGTERM goes on as the one of the two whose effect is stop', '143 SIGTERM',
                     'SIGINT, SIGTERM and SIGHUP end the binary', 'The binary dies with us'):
        assert fragment in text, text


# ---------------------------------------------------------------- a SIGINT at any moment

def _interrupted(res_code, err, files, prefix='long'):
    """Stopped by the SIGINT: 130, our one line, no snapshot at max_iter."""
    assert res_code == 130, err
    assert re.fullmatch(r'caffe-mlic caffe: stopped by SIGINT(: Caffe ended training .*| before the caffe binary '
                        r'started \(nothing was run\)|: the caffe binary was ended by SIGINT)\n', err), err
    assert not any(s in err for s in STACK_DUMP), err
    assert not list(files.glob('%s/*_iter_%d.*' % (prefix, 2 ** 30)))


def _group_sigint(files, argv, delay=None, until=None, env=None):
    """Start `caffe-mlic caffe ARGV` in a new session with SIGINT at its
    default (as a shell's job), SIGINT its process group after ``delay`` s
    or once ``until()``: (exit status, stderr)."""
    proc = subprocess.Popen(CLI + ['caffe'] + argv, cwd=files, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env=dict(os.environ, GLOG_minloglevel='2', **(env or {})))
    if delay is not None:
        time.sleep(delay)
    deadline = time.monotonic() + 60
    while until is not None and not until():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail('the SIGINT was lost: still training 60 s later: %s' % (proc.communicate(),))
    return proc.returncode, err


@pytest.mark.parametrize('delay', [0.2, 0.5, 0.8, 1.0, 1.2, 1.5, 2.0])
def test_a_sigint_at_any_moment_stops_caffe_train(long_run, delay):
    """While the wrapper imports pycaffe (most of its first second), starts
    the binary, or the binary reads its solver and builds its nets: the run
    stops (it trained on to max_iter when the SIGINT came inside an import)."""
    code, err = _group_sigint(long_run, ['train', '-solver', 'long.prototxt'], delay)
    _interrupted(code, err, long_run)


SWALLOWING_IMPORT = '''
import builtins, os, time
_import, _marker = builtins.__import__, os.environ['CAFFE_MLIC_TEST_MARKER']

def _slow_import(name, *args, **kwargs):
    # (once, in the wrapper: the binary's Python layers come after the marker)
    if name == 'caffe' and not os.path.exists(_marker):
        open(_marker, 'w').close()
        try:
            time.sleep(2)
        except BaseException:           # a library's catch-all around an import
            pass
    return _import(name, *args, **kwargs)

builtins.__import__ = _slow_import
'''


def test_a_sigint_inside_an_import_that_swallows_it_still_stops(long_run, tmp_path):
    """The race above made certain: `import caffe` in the wrapper sleeps in a
    catch-all (as some of pycaffe's imports have) and the SIGINT comes there.
    The binary is not started: 130, one line."""
    hook = tmp_path / 'hook'
    hook.mkdir()
    (hook / 'sitecustomize.py').write_text(SWALLOWING_IMPORT)
    marker = tmp_path / 'importing'
    path = os.pathsep.join([str(hook)] + [p for p in [os.environ.get('PYTHONPATH')] if p])
    code, err = _group_sigint(long_run, ['train', '-solver', 'long.prototxt'], until=marker.exists,
                              env={'PYTHONPATH': path, 'CAFFE_MLIC_TEST_MARKER': str(marker)})
    _interrupted(code, err, long_run)
    assert 'before the caffe binary started' in err, err
    assert not (long_run / 'long').exists() or not list((long_run / 'long').iterdir())


def test_a_signal_waits_for_caffes_handler():
    """A SIGINT / SIGHUP for `train` goes on once the binary catches it
    (SigCgt), not before: its default action would kill the binary whatever
    -sighup_effect says."""
    from caffe_mlic.commands import caffe as command
    sleeper = subprocess.Popen(['sleep', '30'])
    try:
        signals = command._Signals()
        signals.action, signals.proc = 'train', sleeper
        assert not signals._ready(signal.SIGINT) and not signals._ready(signal.SIGHUP)
        assert signals._ready(signal.SIGKILL)
        signals.arrived.append(signal.SIGHUP)
        signals.effects = {signal.SIGINT: 'stop', signal.SIGHUP: 'snapshot'}
        signals.flush()
        time.sleep(0.2)
        assert sleeper.poll() is None and signals.queued == [signal.SIGHUP]
        signals.proc = types.SimpleNamespace(pid=os.getpid(), returncode=None)   # Python catches SIGINT
        assert signals._ready(signal.SIGINT)
        signals.action = 'time'
        assert signals._ready(signal.SIGHUP)
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------- our layers' errors inside the binary

@pytest.fixture
def worker_run(tmp_path):
    """A net whose data layer (MultiLabelProposalData) has 2 workers, and a
    solver that trains it ~forever."""
    import cv2
    import numpy as np
    from caffe_mlic.data.datalist import write_datalist
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        path = str(tmp_path / ('w%d.png' % i))
        cv2.imwrite(path, rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        rows.append((path, [1, 0, 1], [[0, 0, 5, 5]], [1.0]))
    write_datalist(tmp_path / 'list.txt', rows)
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=2, new_width=16, new_height=12, att_num=3,
                  bbox_num=1, workers=2)
    net = netutil.python_layer_text('data', 'MultiLabelProposalData', params, [], ['data', 'label_roi'])
    net += ('\nlayer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
            'inner_product_param { num_output: 3 } }\n'
            'layer { name: "sil" type: "Silence" bottom: "label_roi" }\n'
            'layer { name: "loss" type: "Reduction" bottom: "fc" top: "loss" loss_weight: 1 }\n')
    (tmp_path / 'wnet.prototxt').write_text(net)
    netutil.write_solver(tmp_path / 'wsolver.prototxt', 'wnet.prototxt', base_lr=0.0, max_iter=2 ** 30,
                         snapshot=0, snapshot_prefix='ws/w')
    return tmp_path


def test_workers_that_cannot_start_are_one_line_under_the_binary(worker_run):
    """Was: Python's traceback through prefetch's _check_worker_python."""
    before = shm_segments()
    res = run_cli(['caffe', 'train', '-solver', 'wsolver.prototxt'], worker_run, CAFFE_MLIC_PYTHON='/bin/false')
    one_line(res, 1, r'cannot start data worker processes: CAFFE_MLIC_PYTHON=/bin/false: not a Python .*')
    assert shm_segments() <= before


def test_a_killed_worker_is_one_line_under_the_binary_and_the_other_stops(worker_run):
    """Was: a traceback ending in DataLoadError, then Caffe's abort."""
    before = shm_segments()

    def workers():
        kids = child_pids(proc.pid)
        found = [k for k in (child_pids(kids[0]) if kids else []) if _cmdline(k).count('spawn_main')]
        return len(found) == 2 and found
    proc = subprocess.Popen(CLI + ['caffe', 'train', '-solver', 'wsolver.prototxt'], cwd=worker_run,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, GLOG_minloglevel='2'))
    try:
        deadline = time.monotonic() + 120
        while not workers():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        pids = workers()
        binary = child_pids(proc.pid)[0]
        time.sleep(0.5)         # (training)
        os.kill(pids[1], signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert re.fullmatch(r'caffe-mlic caffe: data worker \d of 2 \(process %d, .*\) was killed by SIGKILL; .*\n'
                        % pids[1], err), err
    assert _gone(binary, 1) and _gone(pids[0], 1)       # (stopped by us: it would wait for its parent's death)
    assert shm_segments() <= before


def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid) as f:
            return f.read()
    except OSError:
        return ''


LAYER_SCRIPT = '''
import sys
from caffe_mlic.caffe import prototxt
from caffe_mlic.layers.base import MlicLayer

class Failing(MlicLayer):
    TOPS = ('out',)

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        raise self.error('boom')

sys.modules['failing_layer'] = sys.modules['__main__']
net = prototxt.caffe_net('layer { name: "f" type: "Python" top: "out" '
                         'python_param { module: "failing_layer" layer: "Failing" } }', 'TEST')
try:
    net.forward()
except Exception as e:
    print('RAISED', type(e).__name__, e, flush=True)
    sys.exit(3)
'''


@pytest.mark.parametrize('marker', ['parent', 'other', None])
def test_layer_errors_end_the_process_only_in_the_wrappers_binary(marker):
    """The wrapper's binary (the marker is its parent's pid): one line, exit
    1 (os._exit). Elsewhere (pycaffe, `caffe-mlic train`, a binary run by
    hand, with a marker of another process's) the error is raised."""
    from caffe_mlic.commands import caffe as command
    from caffe_mlic.layers import base
    assert command.WRAPPER_ENV == base.WRAPPER_ENV
    env = dict(os.environ, GLOG_minloglevel='2')
    env.pop(base.WRAPPER_ENV, None)
    if marker:
        env[base.WRAPPER_ENV] = str(os.getpid() if marker == 'parent' else os.getpid() + 1)
    res = subprocess.run([sys.executable, '-c', LAYER_SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    if marker == 'parent':
        assert res.returncode == 1 and res.stderr == "caffe-mlic caffe: Failing: boom (layer 'f')\n", res.stderr
        assert 'RAISED' not in res.stdout
    else:
        assert res.returncode == 3 and res.stdout.startswith('RAISED LayerError Failing: boom'), res.stderr


def test_a_test_net_without_test_iter_is_named_not_a_caffe_abort(files):
    """The binary CHECKs a test_iter for each test net (rc 134); the
    wrapper's solver check (engine.solver_file, as `caffe-mlic train`'s)
    names the field. With its test_iter it trains."""
    common = dict(base_lr=0.1, max_iter=2)
    netutil.write_solver(files / 'tn.prototxt', 'net.prototxt', test_net=['net.prototxt'], **common)
    one_line(run_cli(['caffe', 'train', '-solver', 'tn.prototxt'], files), 1,
             r'tn.prototxt:\d+: test_net: the solver gives 1 test net\(s\) .* but 0 test_iter: .*')
    netutil.write_solver(files / 'tn_ok.prototxt', 'net.prototxt', test_net=['net.prototxt'], test_iter=[1],
                         test_interval=1, **common)
    res = run_cli(['caffe', 'train', '-solver', 'tn_ok.prototxt'], files)
    assert res.returncode == 0, res.stderr


# Nets a solver selects layers of by its train_state / test_state (pass 12, S1 S2 S3 S8)
_DUMMY = ('layer { name: "%s" type: "DummyData" top: "data" top: "label" %s\n'
          '  dummy_data_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } shape { dim: 2 } } }\n')
_HEAD = ('layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
         'inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }\n'
         'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip" bottom: "label" top: "loss" }\n')
_LRN4 = 'layer { name: "lrn" type: "LRN" bottom: "data" top: "data" %s lrn_param { local_size: 4 } }\n'


def _solver(path, net_field, *lines, prefix='snap/s'):
    """A 2-iteration CPU solver naming its train net with ``net_field``
    (net: "..." / train_net: "..." / net_param { ... }), plus ``lines``."""
    path.write_text('\n'.join((net_field, 'base_lr: 0.01', 'lr_policy: "fixed"', 'max_iter: 2',
                               'snapshot_prefix: "%s"' % prefix, 'solver_mode: CPU') + lines) + '\n')
    return path.name


def _stock_train(folder, solver, *flags):
    """How the stock binary ends training ``solver``: 'ok', or the signal's
    name (SIGABRT: a CHECK that failed)."""
    from tests.caffe_binary import CaffeTrainError, caffe_train
    try:
        caffe_train(solver, cwd=folder, extra_args=flags, timeout=120)
    except CaffeTrainError as e:
        return signal.Signals(-e.returncode).name if e.returncode < 0 else 'exit %d' % e.returncode
    return 'ok'


def test_the_solvers_train_state_and_the_binarys_stage_and_level_select_the_layers_checked(tmp_path):
    """Caffe builds the TRAIN net with the net's state, then train_state
    merged in (Solver::InitTrainNet); the binary adds -stage to train_state
    and sets its level to -level (0 by default, whatever train_state says).
    Data layers selected by a stage were refused ("bottom 'data' is not a
    top of an earlier layer", S1); an even LRN selected by train_state's
    stage got through and Caffe aborted (S2). Each checked as built."""
    (tmp_path / 'snap').mkdir()
    (tmp_path / 'stage.prototxt').write_text(_DUMMY % ('da', 'include { stage: "a" }') +
                                             _DUMMY % ('db', 'include { stage: "b" }') + _HEAD)
    (tmp_path / 'lrn.prototxt').write_text(_DUMMY % ('d', '') + _LRN4 % 'include { stage: "a" }' + _HEAD)
    (tmp_path / 'level.prototxt').write_text(_DUMMY % ('d', '') + _LRN4 % 'include { min_level: 1 }' + _HEAD)
    by_state = _solver(tmp_path / 'by_state.prototxt', 'net: "stage.prototxt"', 'train_state { stage: "a" }')
    plain = _solver(tmp_path / 'plain.prototxt', 'net: "stage.prototxt"')
    for argv in (['-solver', by_state], ['-solver', plain, '-stage', 'b'], ['-solver', plain, '-stage', 'x,a']):
        res = run_cli(['caffe', 'train'] + argv, tmp_path)
        assert res.returncode == 0, (argv, res.stderr[-2000:])
        assert (tmp_path / 'snap' / 's_iter_2.caffemodel').is_file()
        (tmp_path / 'snap' / 's_iter_2.caffemodel').unlink()
    # no stage: neither data layer; the stock binary aborts ("Unknown bottom blob")
    res = run_cli(['caffe', 'train', '-solver', plain], tmp_path)
    assert res.returncode == 1 and 'Check failed' not in res.stderr, res.stderr
    assert "stage.prototxt: layer 'ip' (TRAIN): bottom 'data' is not a top of an earlier layer" in res.stderr
    assert _stock_train(tmp_path, plain) == 'SIGABRT'
    # an even LRN of stage a: refused with train_state a (or -stage a), as the binary aborts
    lrn = _solver(tmp_path / 'lrn_a.prototxt', 'net: "lrn.prototxt"', 'train_state { stage: "a" }')
    lrn_plain = _solver(tmp_path / 'lrn_plain.prototxt', 'net: "lrn.prototxt"')
    message = r"lrn.prototxt: layer 'lrn': LRN: lrn_param local_size must be odd, got 4"
    one_line(run_cli(['caffe', 'train', '-solver', lrn], tmp_path), 1, message)
    one_line(run_cli(['caffe', 'train', '-solver', lrn_plain, '-stage', 'a'], tmp_path), 1, message)
    assert _stock_train(tmp_path, lrn) == 'SIGABRT'
    assert run_cli(['caffe', 'train', '-solver', lrn_plain], tmp_path).returncode == 0
    assert _stock_train(tmp_path, lrn_plain) == 'ok'
    # train_state's level: the binary replaces it with -level (Caffe trains this one); pycaffe keeps it
    level = _solver(tmp_path / 'level_1.prototxt', 'net: "level.prototxt"', 'train_state { level: 1 }')
    assert _stock_train(tmp_path, level) == 'ok'
    assert run_cli(['caffe', 'train', '-solver', level], tmp_path).returncode == 0
    one_line(run_cli(['caffe', 'train', '-solver', level, '-level', '1'], tmp_path), 1,
             r"level.prototxt: layer 'lrn': LRN: lrn_param local_size must be odd, got 4")
    assert _stock_train(tmp_path, level, '-level', '1') == 'SIGABRT'


def test_only_the_test_nets_the_solver_builds_are_checked_each_with_its_test_state(tmp_path):
    """A TEST-only Data layer whose LMDB does not exist (yet) was refused
    though a solver without test_iter builds no TEST net (S3); the binary
    trains it. With a test_iter the TEST net is built: refused, as Caffe
    aborts. A TEST net's layers are the ones its test_state keeps."""
    (tmp_path / 'snap').mkdir()
    (tmp_path / 'testonly.prototxt').write_text(
        _DUMMY % ('d', 'include { phase: TRAIN }') +
        'layer { name: "dt" type: "Data" top: "data" top: "label" include { phase: TEST }\n'
        '  data_param { source: "lmdb_not_yet" batch_size: 2 backend: LMDB } }\n' + _HEAD)
    untested = _solver(tmp_path / 'untested.prototxt', 'net: "testonly.prototxt"')
    assert _stock_train(tmp_path, untested) == 'ok'
    res = run_cli(['caffe', 'train', '-solver', untested], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    tested = _solver(tmp_path / 'tested.prototxt', 'net: "testonly.prototxt"', 'test_iter: 1', 'test_interval: 1')
    one_line(run_cli(['caffe', 'train', '-solver', tested], tmp_path), 1,
             r"testonly.prototxt: layer 'dt': Data: data_param source 'lmdb_not_yet': no such database")
    assert _stock_train(tmp_path, tested) == 'SIGABRT'
    # an even LRN in stage a: in the TEST net of test_state a only
    (tmp_path / 'lrn.prototxt').write_text(_DUMMY % ('d', '') + _LRN4 % 'include { stage: "a" }' + _HEAD)
    fields = ('test_iter: 1', 'test_iter: 1', 'test_interval: 1')
    other = _solver(tmp_path / 'other.prototxt', 'net: "lrn.prototxt"', *fields,
                    'test_state { stage: "b" }', 'test_state { stage: "c" }')
    assert run_cli(['caffe', 'train', '-solver', other], tmp_path).returncode == 0
    assert _stock_train(tmp_path, other) == 'ok'
    second = _solver(tmp_path / 'second.prototxt', 'net: "lrn.prototxt"', *fields,
                     'test_state { stage: "b" }', 'test_state { stage: "a" }')
    one_line(run_cli(['caffe', 'train', '-solver', second], tmp_path), 1,
             r"lrn.prototxt: layer 'lrn': LRN: lrn_param local_size must be odd, got 4")
    assert _stock_train(tmp_path, second) == 'SIGABRT'
    # a test_state with no test net to apply it to (pass 13, S5): Caffe's count CHECK
    stateless = _solver(tmp_path / 'stateless.prototxt', 'net: "lrn.prototxt"', 'test_state { stage: "b" }')
    one_line(run_cli(['caffe', 'train', '-solver', stateless], tmp_path), 1,
             r'stateless.prototxt:\d+: test_state: the solver gives 1 test_state for 0 test net\(s\) .*')
    assert _stock_train(tmp_path, stateless) == 'SIGABRT'


def test_every_solver_form_the_binary_takes_is_taken_and_its_nets_checked(tmp_path):
    """`caffe train` takes train_net, train_net_param, test_net and
    test_net_param as the binary does (S8: train_net was refused, "not
    supported here"); the nets they name are checked as built: a test_net
    file's even LRN, a test_iter without a test net to test."""
    (tmp_path / 'snap').mkdir()
    good = _DUMMY % ('d', '') + _HEAD
    (tmp_path / 'good.prototxt').write_text(good)
    (tmp_path / 'lrn.prototxt').write_text(_DUMMY % ('d', '') + _LRN4 % '' + _HEAD)
    forms = {
        'train_net': ('train_net: "good.prototxt"',),
        'train_net_param': ('train_net_param { %s }' % good.replace('\n', ' '),),
        'train_net with test_net': ('train_net: "good.prototxt"', 'test_net: "good.prototxt"', 'test_iter: 1',
                                    'test_interval: 1'),
        'net with test_net_param': ('net: "good.prototxt"', 'test_net_param { %s }' % good.replace('\n', ' '),
                                    'test_iter: 1', 'test_iter: 1', 'test_interval: 1'),
    }
    for name, fields in forms.items():
        path = _solver(tmp_path / ('%s.prototxt' % name.replace(' ', '_')), *fields)
        assert _stock_train(tmp_path, path) == 'ok', name
        res = run_cli(['caffe', 'train', '-solver', path], tmp_path)
        assert res.returncode == 0, (name, res.stderr[-2000:])
    bad_test = _solver(tmp_path / 'bad_test.prototxt', 'train_net: "good.prototxt"', 'test_net: "lrn.prototxt"',
                       'test_iter: 1', 'test_interval: 1')
    one_line(run_cli(['caffe', 'train', '-solver', bad_test], tmp_path), 1,
             r"lrn.prototxt: layer 'lrn': LRN: lrn_param local_size must be odd, got 4")
    assert _stock_train(tmp_path, bad_test) == 'SIGABRT'
    gone = _solver(tmp_path / 'gone.prototxt', 'train_net: "good.prototxt"', 'test_net: "gone_test.prototxt"',
                   'test_iter: 1', 'test_interval: 1')
    one_line(run_cli(['caffe', 'train', '-solver', gone], tmp_path), 1,
             r'gone.prototxt:\d+: test_net: gone_test.prototxt: no such net prototxt')
    # only net / net_param is tested with the test_iter left over: the binary aborts on a train_net's
    untested = _solver(tmp_path / 'untested.prototxt', 'train_net: "good.prototxt"', 'test_iter: 1',
                       'test_interval: 1')
    one_line(run_cli(['caffe', 'train', '-solver', untested], tmp_path), 1,
             r'untested.prototxt:\d+: test_iter: the solver gives 1 test_iter but 0 test net\(s\) \(test_net / '
             r'test_net_param\), and its train_net is not tested: .*')
    assert _stock_train(tmp_path, untested) == 'SIGABRT'


def test_a_solver_without_solver_mode_trains_on_the_cpu_build(files):
    """The binary reads solver_mode only when set (its default GPU unused)."""
    text = (files / 'solver.prototxt').read_text()
    assert 'solver_mode: CPU' in text
    (files / 'nomode.prototxt').write_text(text.replace('solver_mode: CPU\n', '')
                                           .replace('snaps/w', 'nomode/w'))
    res = run_cli(['caffe', 'train', '-solver', 'nomode.prototxt'], files)
    assert res.returncode == 0, res.stderr
    assert (files / 'nomode' / 'w_iter_2.caffemodel').is_file()


def test_hdf5_snapshots_of_a_net_whose_names_hdf5_cannot_hold_are_refused_first(files):
    net = (files / 'net.prototxt').read_text().replace('name: "fc"', 'name: "fc/x"')
    (files / 'slash.prototxt').write_text(net)
    netutil.write_solver(files / 'h5.prototxt', 'slash.prototxt', base_lr=0.1, max_iter=2, snapshot=1,
                         snapshot_prefix='h5/w', snapshot_format=0)   # HDF5
    one_line(run_cli(['caffe', 'train', '-solver', 'h5.prototxt'], files), 1,
             r'h5.prototxt:\d+: snapshot_format: HDF5 snapshots cannot be written for slash.prototxt: .*')
    assert not (files / 'h5').exists() or not list((files / 'h5').glob('*'))


def test_the_binary_leaves_nothing_in_the_temp_folder(files, tmp_path):
    """glog's log files and multiprocessing's pymp-* folders go to a
    private temp folder of the binary's, removed when it ends."""
    temp = tmp_path / 'temp'
    temp.mkdir()
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt'], files, TMPDIR=str(temp))
    assert res.returncode == 0, res.stderr
    assert not list(temp.iterdir())


def test_temp_folders_of_killed_runs_are_swept_and_live_ones_kept(files, tmp_path):
    """A run killed with SIGKILL cannot remove its private temp folder; the
    next run removes it: a folder of ours whose run (pid and start time) is
    gone. A live run's folder, one of the older unnamed form, and other
    names are kept."""
    def _start_time(pid):       # /proc/PID/stat's 22nd field
        with open('/proc/%d/stat' % pid) as f:
            return int(f.read().rsplit(')', 1)[1].split()[19])
    temp = tmp_path / 'temp'
    temp.mkdir()
    dead = subprocess.Popen(['true'])
    dead_started = _start_time(dead.pid)
    dead.wait()
    me = os.getpid()
    stale = [temp / ('caffe-mlic-caffe-%d-%d-abc_123' % (dead.pid, dead_started)),
             # a reused pid: ours, another start time
             temp / ('caffe-mlic-caffe-%d-%d-x1y2z3w4' % (me, _start_time(me) + 1))]
    kept = [temp / ('caffe-mlic-caffe-%d-%d-livefold' % (me, _start_time(me))),
            temp / 'caffe-mlic-caffe-o2wxasb8', temp / 'other-99999999-1-abc']
    for folder in stale + kept:
        (folder / 'sub').mkdir(parents=True)
        (folder / 'sub' / 'caffe.INFO').write_text('log\n')
    res = run_cli(['caffe', 'time', '-model', 'net.prototxt', '-iterations', '1'], files, TMPDIR=str(temp))
    assert res.returncode == 0, res.stderr
    assert sorted(temp.iterdir()) == sorted(kept)
    assert all((folder / 'sub' / 'caffe.INFO').exists() for folder in kept)


def test_a_live_runs_temp_folder_is_not_swept(tmp_path, monkeypatch):
    """A run's own folder is locked: even with its pid unknown here (another
    pid namespace sharing the folder), it is not swept."""
    import tempfile
    from caffe_mlic import processes
    from caffe_mlic.commands import caffe
    parent = tmp_path / 'temp'
    parent.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(parent))
    private, lock = caffe._private_temp()
    try:
        assert os.path.dirname(private) == str(parent)
        disguised = parent / ('caffe-mlic-caffe-%d-1-abcdefgh' % 2 ** 22)   # no such process
        os.rename(private, disguised)
        processes.sweep_owned_folders(str(parent), caffe.TEMP_PREFIX)
        assert disguised.is_dir()
    finally:
        os.close(lock)
    processes.sweep_owned_folders(str(parent), caffe.TEMP_PREFIX)
    assert not list(parent.iterdir())
