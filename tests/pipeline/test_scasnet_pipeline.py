"""`caffe-mlic run` on the ScasNet pipeline, in miniature (64-px crops, 12
iterations, one head): the numbers of the commands a user types to the
digit, a second run that runs nothing, a change that reruns what follows
it, kills at several points that end with the uninterrupted run's numbers,
and a bad config refused before anything runs."""
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests import REPO
from tests.faults import CLI, run_cli

CONFIG = os.path.join(REPO, 'configs', 'demo_scasnet.toml')
MINI = ['--set', 'net.input_size=64', '--set', 'net.batch_size=4', '--set', 'train.max_iter=12',
        '--set', 'run.seeds=[1]', '--set', 'heads.names=["fcn"]', '--set', 'run.jobs=1']


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """The demo miniature's synthetic set, in the config's place."""
    root = tmp_path_factory.mktemp('pipeline')
    res = run_cli(['synth', '--task', 'seg', '--scene', 'context', 'runs/scasnet/data', '--images', 6,
                   '--tile-size', '300x300', '--seed', 0], root)
    assert res.returncode == 0, res.stderr
    return root


def fresh(data, tmp_path):
    """A working folder holding the set (copied) and no run yet."""
    shutil.copytree(data / 'runs' / 'scasnet' / 'data', tmp_path / 'runs' / 'scasnet' / 'data')
    return tmp_path


def run(cwd, *extra, timeout=600):
    return run_cli(['run', CONFIG] + MINI + list(extra), cwd, timeout=timeout, CAFFE_MLIC_PROGRESS='never')


def start_until(cwd, stage, *extra):
    """`caffe-mlic run` of the miniature started in its own process group,
    once ``stage`` has started (its .started.json is there)."""
    started = cwd / 'runs' / 'scasnet' / '.stages' / (stage + '.started.json')
    proc = subprocess.Popen(CLI + ['run', CONFIG] + MINI + list(extra), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, GLOG_minloglevel='2', CAFFE_MLIC_PROGRESS='never'))
    deadline = time.time() + 300
    while not started.exists():
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError('the run ended or stalled before %s: %s' % (stage, proc.stderr.read()))
        time.sleep(0.01)
    return proc


def metrics(cwd):
    with open(cwd / 'runs' / 'scasnet' / 'results.json') as f:
        results = json.load(f)
    return {head: {k: v for k, v in m.items() if isinstance(v, (int, float, list))}
            for head, m in results['runs'][0]['variants'].items()}


@pytest.fixture(scope='module')
def first(data, tmp_path_factory):
    cwd = fresh(data, tmp_path_factory.mktemp('first'))
    res = run(cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    return cwd, res.stdout


def test_the_pipeline_gives_the_commands_numbers_to_the_digit(data, first, tmp_path):
    """The same head through the commands a user types (as make
    demo-scasnet's script did before it ran the config)."""
    cwd = fresh(data, tmp_path)
    head = cwd / 'head'
    head.mkdir()
    d = cwd / 'runs' / 'scasnet' / 'data'
    steps = [
        ['scasnet', 'netgen', '-o', 'nets', '--variant', 'vgg', '--backbone', 'small', '--vgg-blocks', 1, 1, 1, 0, 0,
         '--input-size', 64, '--train-list', d / 'train.txt', '--val-list', d / 'val.txt', '--root-folder',
         str(d) + '/', '--batch-size', 4, '--input-scale', '0.017', '--dropout', 0, '--workers', 0, '--max-iter', 12,
         '--solver-type', 'Adam', '--base-lr', '0.002', '--random-seed', 1, '--data-seed', 1,
         '--set', 'context=none', '--set', 'refine=()'],
        ['train', 'nets/vgg_scasnet_solver.prototxt', '--run-dir', 'train'],
        ['scasnet', 'infer', '--net', 'nets/vgg_scasnet_deploy.prototxt', '--weights',
         'snapshots/scasnet/vgg_scasnet_iter_12.caffemodel', d / 'top' / 'top_mosaic_09cm_area1.tif', '-o', 'pred'],
        ['eval', 'seg', '--pred', 'pred/labels', '--gt', d / 'gts_eroded_for_participants', '--gt-suffix',
         '_noBoundary', '--hard-masks', d / 'hard', '--json', 'eval.json']]
    for args in steps:
        res = run_cli(args, head, timeout=600, OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1')
        assert res.returncode == 0, (args, res.stderr)
    with open(d / 'test.txt') as f:
        assert [line.split()[0] for line in f if line.split()] == ['top/top_mosaic_09cm_area1.tif']
    with open(head / 'eval.json') as f:
        by_hand = json.load(f)
    with open(first[0] / 'runs' / 'scasnet' / 'seed1' / 'fcn' / 'eval' / 'scasnet.json') as f:
        ours = json.load(f)
    assert ours['mF1'] > 0 and ours['mF1'] == metrics(first[0])['fcn']['mF1']
    for key in ('OA', 'mF1', 'mIoU', 'F1', 'hard_accuracy', 'boundary_F1', 'confusion'):
        assert by_hand[key] == ours[key], key


def test_a_second_run_runs_nothing_and_status_says_done(first):
    cwd, out = first
    assert 'stage seed1/fcn/train: follows seed1/fcn/nets, running it' in out
    res = run(cwd)
    assert res.returncode == 0 and 'running it' not in res.stdout, res.stdout
    assert res.stdout.strip().endswith('nothing to run: every stage is done (%s)' % (cwd / 'runs' / 'scasnet'))
    res = run(cwd, '--status')
    assert [line.split()[-1] for line in res.stdout.splitlines()] == ['done'] * 5, res.stdout
    # with --only / --from: what that run would run, on the stages' lines
    res = run(cwd, '--status', '--only', 'seed1/fcn/infer')
    assert res.stdout.split() == ['seed1/fcn/infer', 'done;', 'runs:', 'asked', 'for', '(--only)'], res.stdout
    res = run(cwd, '--status', '--from', 'seed1/fcn/infer')
    asked = 'done; runs: asked for (--from seed1/fcn/infer)'
    assert [line.split(None, 1)[1] for line in res.stdout.splitlines()] == ['done', 'done'] + [asked] * 3, res.stdout


def test_a_changed_setting_reruns_its_stage_and_what_follows(data, tmp_path):
    cwd = fresh(data, tmp_path)
    assert run(cwd).returncode == 0
    res = run(cwd, '--set', 'infer.flip=true')
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if 'running it' in line]
    assert lines == ['stage seed1/fcn/infer: settings changed (infer), running it',
                     'stage seed1/fcn/eval: follows seed1/fcn/infer, running it',
                     'stage report: follows seed1/fcn/eval, running it'], res.stdout
    res = run(cwd, '--set', 'infer.flip=true', '--status')
    assert 'stale' not in res.stdout and 'to do' not in res.stdout


def _group_alive(pgid):
    for pid in os.listdir('/proc'):
        if pid.isdigit():
            try:
                if os.getpgid(int(pid)) == pgid:
                    with open('/proc/%s/stat' % pid) as f:
                        if f.read().rsplit(')', 1)[1].split()[0] not in 'ZX':
                            return True
            except OSError:
                continue
    return False


@pytest.mark.parametrize('stage, sig, whom', [
    ('seed1/fcn/train', signal.SIGKILL, 'group'), ('seed1/fcn/train', signal.SIGINT, 'group'),
    ('seed1/fcn/infer', signal.SIGKILL, 'group'),
    # `run` alone (a scheduler's kill): its chain stops too, never goes on unsupervised
    ('seed1/fcn/train', signal.SIGTERM, 'run'), ('seed1/fcn/train', signal.SIGKILL, 'run')])
def test_killed_at_any_stage_a_rerun_ends_with_the_uninterrupted_numbers(data, first, tmp_path, stage, sig, whom):
    cwd = fresh(data, tmp_path)
    proc = start_until(cwd, stage)
    if whom == 'group':
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and 'stopped by SIGTERM' in proc.stderr.read()
    deadline = time.time() + 120
    while _group_alive(proc.pid):       # every chain process ends with it
        assert time.time() < deadline, 'a chain outlived `run`'
        time.sleep(0.05)
    res = run(cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    assert metrics(cwd) == metrics(first[0])


def _spawned_child(pid):
    """Whether process ``pid`` has a child that multiprocessing spawned (a chain starting up)."""
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                spawned = b'multiprocessing' in f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and spawned:
            return True
    return False


@pytest.mark.parametrize('delay', [0.05, 0.15, 0.3])
def test_a_ctrl_c_while_a_chain_starts_up_prints_no_traceback(data, tmp_path, delay):
    """A chain's process hit by the group's Ctrl-C while its interpreter
    started printed "Fatal Python error" and a KeyboardInterrupt traceback
    before `run`'s one line (pass 40c S2): it holds SIGINT until set up."""
    cwd = fresh(data, tmp_path)
    proc = subprocess.Popen(CLI + ['run', CONFIG] + MINI, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True,
                            env=dict(os.environ, GLOG_minloglevel='2', CAFFE_MLIC_PROGRESS='never'))
    deadline = time.time() + 120
    while not _spawned_child(proc.pid):
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read()
        time.sleep(0.002)
    time.sleep(delay)       # (into the interpreter's start and the chain's imports)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert 'Traceback' not in err and 'Fatal Python error' not in err, err
    assert err.strip().splitlines()[-1] == 'caffe-mlic run: interrupted', err


@pytest.mark.parametrize('override, message', [
    ('train.base_lr="fast"', "train.base_lr: must be a number from 1e-20 to 1000 (Caffe keeps it as a float), "
                             'got "fast"'),
    ('train.base_lr=1e-300', 'train.base_lr: must be a number from 1e-20 to 1000'),
    ('run.folder="/dev/null"', 'run.folder: /dev/null exists and is not a folder'),
    ('run.folder="/dev/null/x/y"', 'run.folder: /dev/null/x/y cannot be made: /dev/null is not a folder'),
    ('run.folder="%s"' % ('r' * 300), 'run.folder: %s... cannot be made: a name in it has 300 bytes' % ('r' * 80)),
    ('data.test_list="/dev/null"', 'data.test_list: not a regular file (a device, FIFO or folder): /dev/null'),
    ('data.gt="/dev/null"', 'data.gt: a device, not a folder: /dev/null'),
    ('net.contxt=parallel', 'net.contxt: not a ScasConfig field'),
    ('net.input_size=-5', 'net.input_size: '),
    ('data.test_list=none.txt', 'data.test_list: no such file: none.txt'),
    ('heads.names=["fcn","fcm"]', 'heads.names: must be a list of heads among '),
    ('run.system="other"', 'run.system: must be \'mlic\' or \'scasnet\', got "other"'),
    ('data=5', 'data: must be a table ([data]), got 5'),
])
def test_a_bad_config_is_refused_naming_the_key_before_anything_runs(data, tmp_path, override, message):
    cwd = fresh(data, tmp_path)
    res = run(cwd, '--set', override)
    assert res.returncode in (1, 2) and message in res.stderr and res.stderr.count('\n') <= 2, res.stderr
    assert 'Traceback' not in res.stderr
    assert sorted(os.listdir(cwd / 'runs' / 'scasnet')) == ['data']


def test_a_run_folder_whose_path_is_not_utf8_is_refused_by_the_check(data, tmp_path):
    """The run writes its folder's path into its solvers (UTF-8 text): `run
    --check` called a config in a folder named in another encoding valid,
    and the nets stage failed as a bug, its traceback in its log (pass 59b S1)."""
    cwd = fresh(data, tmp_path / os.fsdecode(b'd\xff'))
    for extra in (['--check'], []):
        res = run(cwd, *extra)
        assert res.returncode == 1 and res.stderr.count('\n') == 1 and 'Traceback' not in res.stderr, res.stderr
        assert 'run.folder: %s/d\\xff/runs/scasnet is not UTF-8 (a folder name in another encoding' % tmp_path \
            in res.stderr, res.stderr
    assert sorted(os.listdir(cwd / 'runs' / 'scasnet')) == ['data']


def test_a_failing_stage_is_named_with_its_log_and_the_stages_before_it_stay_done(data, tmp_path):
    """A second run at once is refused (the lock); a stage that fails (here
    inference: its test image is unreadable) names itself and its log,
    and a rerun after the fix runs that stage on, not the training."""
    cwd = fresh(data, tmp_path)
    image = cwd / 'runs' / 'scasnet' / 'data' / 'top' / 'top_mosaic_09cm_area1.tif'
    good = image.read_bytes()
    image.write_bytes(b'not an image')
    res = run(cwd)
    log = cwd / 'runs' / 'scasnet' / 'seed1' / 'fcn' / 'log.txt'
    assert res.returncode == 1 and 'Traceback' not in res.stderr, res.stderr
    assert res.stderr.startswith('caffe-mlic run: stage seed1/fcn/infer: ') and \
        res.stderr.rstrip().endswith('(its log: %s)' % log), res.stderr
    image.write_bytes(good)
    res = run(cwd)
    assert res.returncode == 0, res.stderr
    ran = [line for line in res.stdout.splitlines() if 'running it' in line or 'resuming it' in line]
    # (the test tile was rewritten: known by its size and time, it is new to the stage, which starts over)
    assert ran[0] == 'stage seed1/fcn/infer: to do, running it', res.stdout
    assert 'stage seed1/fcn/train: done' in res.stdout


def test_a_second_run_on_the_same_folder_at_once_is_refused(data, tmp_path):
    cwd = fresh(data, tmp_path)
    long = ('--set', 'train.max_iter=100000')     # still training when the second run starts, however slow
    proc = start_until(cwd, 'seed1/fcn/train', *long)
    try:
        res = run(cwd, *long)
        assert res.returncode == 1 and 'another caffe-mlic run (pid %d) is writing' % proc.pid in res.stderr, \
            res.stdout + res.stderr
        assert res.stdout == '', res.stdout       # refused before a word about the stages
        res = run(cwd, '--status', *long)
        assert 'seed1/fcn/nets               done\n' in res.stdout, res.stdout
        assert 'seed1/fcn/train              running (pid %d)\n' % proc.pid in res.stdout, res.stdout
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)


def test_the_shipped_vaihingen_config_checks_clean_on_a_tree_of_its_layout(tmp_path):
    """configs/scasnet_vaihingen.toml against a miniature tree in the layout
    its comments describe: --check finds everything; a missing piece is
    named by its key."""
    config = os.path.join(REPO, 'configs', 'scasnet_vaihingen.toml')
    import cv2
    import numpy as np
    root = tmp_path / 'data' / 'vaihingen'
    for folder, suffix in (('top', ''), ('gts_for_participants', ''), ('gts_eroded_for_participants', '_noBoundary')):
        (root / folder).mkdir(parents=True)
        for area in (1, 2, 3):      # a tile per split (the splits share none)
            assert cv2.imwrite(str(root / folder / ('top_mosaic_09cm_area%d%s.tif' % (area, suffix))),
                               np.full((8, 8, 3), 255, np.uint8))
    for area, name in enumerate(('train', 'val', 'test'), 1):
        (root / (name + '.txt')).write_text('top/top_mosaic_09cm_area%d.tif '
                                            'gts_for_participants/top_mosaic_09cm_area%d.tif\n' % (area, area))
    (tmp_path / 'models').mkdir()
    (tmp_path / 'models' / 'deeplab_v2_vgg16.caffemodel').write_bytes(b'')
    res = run_cli(['run', config, '--check'], tmp_path)
    assert res.returncode == 0 and 'the config and its paths are valid: 6 stages' in res.stdout, res.stderr
    (tmp_path / 'models' / 'deeplab_v2_vgg16.caffemodel').unlink()
    (root / 'val.txt').unlink()
    res = run_cli(['run', config, '--check'], tmp_path)
    assert res.returncode == 1 and 'data.val_list: no such file: data/vaihingen/val.txt' in res.stderr and \
        'train.init_from: no such file: models/deeplab_v2_vgg16.caffemodel' in res.stderr, res.stderr


def test_init_from_adds_a_surgery_stage_whose_weights_training_starts_from(data, first, tmp_path):
    cwd = fresh(data, tmp_path)
    trained = first[0] / 'runs' / 'scasnet' / 'seed1' / 'fcn' / 'snapshots' / 'scasnet' / 'vgg_scasnet_iter_12.caffemodel'
    res = run(cwd, '--set', 'train.init_from=["same:%s"]' % trained)
    assert res.returncode == 0, res.stderr
    assert 'stage seed1/fcn/init: follows seed1/fcn/nets, running it' in res.stdout
    folder = cwd / 'runs' / 'scasnet' / 'seed1' / 'fcn'
    with open(folder / 'train' / 'run.json') as f:
        assert json.load(f)['weights'] == [str(folder / 'init.caffemodel')]
    # the first run's weights, copied layer by layer: the same file's blobs
    from caffe_mlic.caffe.prototxt import caffe_net
    a = caffe_net(str(folder / 'nets' / 'vgg_scasnet_deploy.prototxt'), weights=str(folder / 'init.caffemodel'))
    b = caffe_net(str(folder / 'nets' / 'vgg_scasnet_deploy.prototxt'), weights=str(trained))
    assert all((pa.data == pb.data).all() for name in a.params for pa, pb in zip(a.params[name], b.params[name]))


def _chain_process(run_pid, log):
    """The pid of the process of ``run_pid``'s group that writes ``log``."""
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            if os.getpgid(int(pid)) != run_pid:
                continue
            for fd in os.listdir('/proc/%s/fd' % pid):
                if os.readlink('/proc/%s/fd/%s' % (pid, fd)) == str(log):
                    return int(pid)
        except OSError:
            continue
    return None


def test_a_chain_killed_alone_is_named_and_the_others_finish(data, tmp_path):
    """Chains ran in a process pool: one killed worker broke the pool, the
    other chains were terminated and the error named the first chain
    submitted. Each chain now has its process; the others go on."""
    cwd = fresh(data, tmp_path)
    two = ['--set', 'heads.names=["fcn","full"]', '--set', 'run.jobs=2']
    full = cwd / 'runs' / 'scasnet' / 'seed1' / 'full'
    proc = start_until(cwd, 'seed1/full/train', *two)
    try:
        deadline = time.time() + 300
        victim = None
        while victim is None:
            victim = _chain_process(proc.pid, full / 'log.txt')
            assert time.time() < deadline
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    assert err == 'caffe-mlic run: seed1/full: its process was killed by SIGKILL (its log: %s)\n' % (
        full / 'log.txt'), err
    assert 'stage seed1/fcn/eval: done in' in out
    res = run(cwd, *two)
    assert res.returncode == 0, res.stderr
    ran = [line.split(':')[0] for line in res.stdout.splitlines() if 'running it' in line or 'resuming' in line]
    assert ran[0] == 'stage seed1/full/train' and not any('fcn' in line for line in ran), res.stdout


def test_from_reruns_a_stage_and_what_follows_from_it_only(first, tmp_path):
    cwd = tmp_path / 'from'
    shutil.copytree(first[0], cwd, symlinks=True)
    # (the copy's absolute paths differ: --from is judged on a fresh run here)
    res = run(cwd)
    assert res.returncode == 0
    res = run(cwd, '--from', 'seed1/fcn/infer')
    ran = [line for line in res.stdout.splitlines() if 'running it' in line]
    assert ran == ['stage seed1/fcn/infer: asked for (--from seed1/fcn/infer), running it',
                   'stage seed1/fcn/eval: asked for (--from seed1/fcn/infer), running it',
                   'stage report: asked for (--from seed1/fcn/infer), running it'], res.stdout


def test_data_outside_the_run_folder_reaches_the_report(data, first, tmp_path):
    """The report read RUN/data (the demo's layout), so a config whose data
    lives elsewhere failed at its last stage, after every training (pass 11,
    S3). It now reads the config's lists, given in settings.json."""
    shutil.copytree(data / 'runs' / 'scasnet' / 'data', tmp_path / 'set')
    moved = ['--set', 'data.train_list="set/train.txt"', '--set', 'data.val_list="set/val.txt"',
             '--set', 'data.root_folder="set"', '--set', 'data.test_list="set/test.txt"',
             '--set', 'data.gt="set/gts_for_participants"', '--set', 'data.gt_eroded="set/gts_eroded_for_participants"',
             '--set', 'data.hard_masks="set/hard"']
    res = run(tmp_path, *moved)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / 'runs' / 'scasnet' / 'data').exists()
    with open(tmp_path / 'runs' / 'scasnet' / 'results.json') as f:
        ours = json.load(f)
    with open(first[0] / 'runs' / 'scasnet' / 'results.json') as f:
        theirs = json.load(f)
    assert ours['majority'] == theirs['majority'] and (tmp_path / 'runs' / 'scasnet' / 'report.html').exists()


def test_check_names_an_unknown_stage_of_from_or_only(data, tmp_path):
    cwd = fresh(data, tmp_path)
    res = run(cwd, '--check', '--from', 'seed1/fcn/trian')
    assert res.returncode == 2 and "no stage 'seed1/fcn/trian'; the stages are " in res.stderr, res.stderr


def test_a_closed_stdout_makes_the_run_quiet_not_stopped():
    """`caffe-mlic run ... | head -1`: the reader gone, the lines go nowhere and the stages go on."""
    from caffe_mlic.pipeline.runner import _QuietWhenClosed
    read, write = os.pipe()
    os.close(read)
    stream = _QuietWhenClosed(os.fdopen(write, 'w', buffering=1))
    stream.write('stage a: done\n')          # EPIPE: from now on, quiet
    stream.write('stage b: done\n')
    stream.flush()
    assert stream._closed


def test_a_refine_tap_the_net_has_not_is_named_by_its_key(data, tmp_path):
    cwd = fresh(data, tmp_path)
    res = run(cwd, '--set', 'heads.names=["full"]', '--set', 'heads.refine=["nope"]', '--check')
    assert res.returncode == 1 and 'demo_scasnet.toml: heads.refine: refine must be ' in res.stderr, res.stderr


def test_one_chain_at_a_time_on_a_terminal_draws_its_training_bar_there(data, tmp_path):
    """run.jobs = 1 and stderr a terminal: the stage lines on stdout, the
    training's progress bar on the terminal, the chain's log without it."""
    import pty
    import threading
    cwd = fresh(data, tmp_path)
    master, slave = pty.openpty()
    env = dict(os.environ, GLOG_minloglevel='2')
    env.pop('CAFFE_MLIC_PROGRESS', None)
    proc = subprocess.Popen(CLI + ['run', CONFIG] + MINI, cwd=cwd, stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.DEVNULL, text=True, env=env)
    os.close(slave)
    shown = []

    def read():
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:         # the terminal's last writer is gone
                return
            if not chunk:
                return
            shown.append(chunk)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=600)
    reader.join(10)
    os.close(master)
    terminal = b''.join(shown).decode('utf-8', 'replace')
    assert proc.returncode == 0, terminal[-3000:]
    assert 'stage seed1/fcn/train: done in' in out
    assert 'vgg_scasnet_solver' in terminal and '12/12' in terminal, terminal[-2000:]
    log = (cwd / 'runs' / 'scasnet' / 'seed1' / 'fcn' / 'log.txt').read_text()
    assert '12/12' not in log and '\r' not in log


def test_a_config_of_the_other_system_is_refused_on_a_folder_that_holds_a_run(first, tmp_path):
    """The ScasNet run records its system in .stages/system; an MLIC config
    given its folder is refused before anything runs (each would write over
    the other's results.json and report), naming the folder."""
    cwd, _ = first
    folder = cwd / 'runs' / 'scasnet'
    assert (folder / '.stages' / 'system').read_text() == 'scasnet\n'
    before = (folder / 'results.json').read_bytes()
    config = tmp_path / 'mlic.toml'
    config.write_text('[run]\nsystem = "mlic"\nfolder = "%s"\n[data]\nvoc = "%s"\ntrain_set = "train"\n'
                      'val_set = "val"\ntest_set = "test"\n[proposals]\nfolder = "%s"\n[weights]\n'
                      'pretrained = "%s"\n[net]\nnum_classes = 6\nbbox_num = 96\nbackbone = "mini"\n'
                      % (folder, tmp_path, tmp_path, config))
    for extra in ([], ['--check'], ['--status']):
        res = run_cli(['run', str(config)] + extra, cwd)
        assert res.returncode == 1, res.stdout + res.stderr
        assert ('run.folder: %s holds a ScasNet run, and this config is an MLIC-KD-WSD\'s: give it another '
                'run.folder' % folder) in res.stderr, res.stderr
    assert (folder / 'results.json').read_bytes() == before
    # a folder of before the record: told by its layout
    (folder / '.stages' / 'system').unlink()
    res = run_cli(['run', str(config), '--check'], cwd)
    assert res.returncode == 1 and 'holds a ScasNet run' in res.stderr, res.stderr
    res = run(cwd, '--check')   # its own config
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize('change, key, message', [
    ('empty_test_list', 'data.test_list', 'the datalist is empty (no image lines)'),
    ('missing_train_label', 'data.train_list', 'label file '),
    ('missing_hard_mask', 'data.hard_masks', 'no file in runs/scasnet/data/hard for 1 of the'),
    ('missing_eroded_reference', 'data.gt_eroded', 'no ground truth top_mosaic_09cm_area'),
])
def test_the_lists_and_references_are_checked_before_anything_runs(data, tmp_path, change, key, message):
    """What a stage would find only after every training (an empty test
    list, a label file gone, a test image without its mask or reference)
    is refused by --check and before the first stage."""
    cwd = fresh(data, tmp_path)
    folder = cwd / 'runs' / 'scasnet' / 'data'
    test_images = [line.split()[0] for line in (folder / 'test.txt').read_text().splitlines() if line.split()]
    stem = os.path.splitext(os.path.basename(test_images[0]))[0]
    if change == 'empty_test_list':
        (folder / 'test.txt').write_text('\n')
    elif change == 'missing_train_label':
        (folder / (folder / 'train.txt').read_text().split()[1]).unlink()
    elif change == 'missing_hard_mask':
        next((folder / 'hard').glob(stem + '.*')).unlink()
    else:
        next((folder / 'gts_eroded_for_participants').glob(stem + '*')).unlink()
    for extra in (['--check'], []):
        res = run(cwd, *extra)
        assert res.returncode == 1 and 'Traceback' not in res.stderr, res.stderr
        assert '%s: ' % key in res.stderr and message in res.stderr, res.stderr
    assert sorted(os.listdir(cwd / 'runs' / 'scasnet')) == ['data']


def test_only_an_earlier_stage_does_not_print_the_old_results_as_current(first, tmp_path):
    """`--only seed1/fcn/infer` after a change printed the old results.json
    table as this run's result (pass 20 S2): the table comes only with the
    report stage; otherwise a line says the results are from before."""
    cwd = tmp_path / 'copy'
    shutil.copytree(first[0], cwd, symlinks=True)
    assert run(cwd).returncode == 0         # (the copy's paths differ: its stages run again first)
    res = run(cwd, '--set', 'infer.flip=true', '--only', 'seed1/fcn/infer')
    assert res.returncode == 0, res.stderr
    assert 'results:' not in res.stdout and 'mean F1' not in res.stdout, res.stdout
    assert res.stdout.rstrip().endswith('(results.json and the report are from before this run: the report stage '
                                        'did not run; `--status` says what is stale)'), res.stdout
    res = run(cwd, '--set', 'infer.flip=true')
    assert res.returncode == 0 and 'results: ' in res.stdout and 'stage report: ' in res.stdout, res.stdout


def test_only_a_stage_whose_inputs_are_stale_is_refused(first, tmp_path):
    """`--set train.max_iter=... --only seed1/fcn/infer` ran inference with
    the old training's weights, or failed naming a file (pass 20 M4): the
    stale stage it needs is named, nothing runs."""
    cwd = tmp_path / 'copy'
    shutil.copytree(first[0], cwd, symlinks=True)
    assert run(cwd).returncode == 0         # (the copy's paths differ: its stages run again first)
    before = sorted(p.name for p in (cwd / 'runs' / 'scasnet' / '.stages' / 'seed1' / 'fcn').iterdir())
    res = run(cwd, '--set', 'train.max_iter=7', '--only', 'seed1/fcn/infer')
    assert res.returncode == 2, res.stdout + res.stderr
    assert ('argument --only: seed1/fcn/infer needs seed1/fcn/nets, which is stale (settings changed (train)): '
            'run it first '
            '(`--from seed1/fcn/nets`, or a run without --only)') in res.stderr, res.stderr
    assert sorted(p.name for p in (cwd / 'runs' / 'scasnet' / '.stages' / 'seed1' / 'fcn').iterdir()) == before
    res = run(cwd, '--set', 'train.max_iter=7', '--status', '--only', 'seed1/fcn/infer')     # (pass 22 M3)
    assert res.returncode == 0 and 'runs: refused, seed1/fcn/infer needs seed1/fcn/nets, which is stale' \
        in res.stdout, res.stdout


def test_a_folder_of_someone_elses_results_is_refused_untouched(data, tmp_path):
    """run.folder naming a folder with the user's own results.json and no
    record of a run: the report would have written over it, rc 0 (pass 21
    M4). Refused by `run` and `--check`, naming the file; the data folder a
    demo makes before its first run is no such file."""
    cwd = fresh(data, tmp_path)
    mine = cwd / 'runs' / 'scasnet' / 'results.json'
    mine.write_text('{"my": "thesis numbers"}')
    (cwd / 'runs' / 'scasnet' / 'settings.json').write_text('{"mine": 1}')
    for extra in ([], ['--check']):
        res = run(cwd, *extra)
        assert res.returncode == 1, res.stdout + res.stderr
        assert 'run.folder: %s holds results.json, settings.json but no record of a run (.stages/)' % (
            cwd / 'runs' / 'scasnet') in res.stderr, res.stderr
    assert mine.read_text() == '{"my": "thesis numbers"}'
    assert sorted(p.name for p in (cwd / 'runs' / 'scasnet').iterdir()) == ['data', 'results.json', 'settings.json']


def test_splits_that_share_images_are_refused(data, tmp_path):
    """Training on the test tiles was accepted without a word (pass 21 M14)."""
    cwd = fresh(data, tmp_path)
    test_list = cwd / 'runs' / 'scasnet' / 'data' / 'test.txt'
    res = run(cwd, '--set', 'data.train_list="%s"' % test_list, '--check')
    assert res.returncode == 1, res.stdout
    assert 'data.test_list: ' in res.stderr and 'of its images are in data.train_list too' in res.stderr, res.stderr
    # a test tile hard-linked under another name into the training list (pass 22 M8)
    d = cwd / 'runs' / 'scasnet' / 'data'
    train_lines = (d / 'train.txt').read_text().splitlines()
    test_image = (d / 'test.txt').read_text().split()[0]
    os.link(d / test_image, d / 'top' / 'linked.tif')
    label = train_lines[0].split()[1]
    (d / 'train2.txt').write_text('\n'.join(train_lines + ['top/linked.tif %s' % label]) + '\n')
    res = run(cwd, '--set', 'data.train_list="%s"' % (d / 'train2.txt'), '--check')
    assert res.returncode == 1 and 'of its images are in data.train_list too' in res.stderr, res.stdout + res.stderr
