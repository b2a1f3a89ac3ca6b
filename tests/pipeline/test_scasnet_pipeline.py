"""`caffe-mlic run` on the ScasNet pipeline, in miniature (64-px crops, 12
iterations, one head): the numbers of `make demo-scasnet`'s script to the
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
from tests.demos import run_demo
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


def test_the_pipeline_gives_the_demo_scripts_numbers_to_the_digit(first, tmp_path):
    """The script makes its own set, with the same synth settings."""
    cwd, _ = first
    run_demo('demo_scasnet.py', tmp_path / 'demo', 600, VARIANTS='fcn', SEEDS='1')
    with open(tmp_path / 'demo' / 'results.json') as f:
        demo = json.load(f)['runs'][0]['variants']
    ours = metrics(cwd)
    assert ours['fcn']['mF1'] > 0
    for key, value in ours['fcn'].items():
        assert demo['fcn'][key] == value, key


def test_a_second_run_runs_nothing_and_status_says_done(first):
    cwd, out = first
    assert 'stage seed1/fcn/train: follows seed1/fcn/nets, running it' in out
    res = run(cwd)
    assert res.returncode == 0 and 'running it' not in res.stdout, res.stdout
    assert res.stdout.strip().endswith('nothing to run: every stage is done (%s)' % (cwd / 'runs' / 'scasnet'))
    res = run(cwd, '--status')
    assert [line.split()[-1] for line in res.stdout.splitlines()] == ['done'] * 5, res.stdout


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


@pytest.mark.parametrize('stage, sig', [('seed1/fcn/train', signal.SIGKILL), ('seed1/fcn/train', signal.SIGINT),
                                        ('seed1/fcn/infer', signal.SIGKILL)])
def test_killed_at_any_stage_a_rerun_ends_with_the_uninterrupted_numbers(data, first, tmp_path, stage, sig):
    cwd = fresh(data, tmp_path)
    started = cwd / 'runs' / 'scasnet' / '.stages' / (stage + '.started.json')
    proc = subprocess.Popen(CLI + ['run', CONFIG] + MINI, cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ, GLOG_minloglevel='2', CAFFE_MLIC_PROGRESS='never'))
    deadline = time.time() + 300
    while not started.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, sig)
    proc.wait(timeout=120)
    assert proc.returncode != 0
    res = run(cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    assert metrics(cwd) == metrics(first[0])


@pytest.mark.parametrize('override, message', [
    ('train.base_lr="fast"', "train.base_lr: must be a number > 0, got 'fast'"),
    ('net.contxt=parallel', 'net.contxt: not a ScasConfig field'),
    ('net.input_size=-5', 'net.input_size: '),
    ('data.test_list=none.txt', 'data.test_list: no such file: none.txt'),
    ('heads.names=["fcn","fcm"]', 'heads.names: must be a list of heads among '),
    ('run.system=mlic', "run.system 'mlic': the MLIC-KD-WSD pipeline is not built yet"),
])
def test_a_bad_config_is_refused_naming_the_key_before_anything_runs(data, tmp_path, override, message):
    cwd = fresh(data, tmp_path)
    res = run(cwd, '--set', override)
    assert res.returncode in (1, 2) and message in res.stderr and res.stderr.count('\n') <= 2, res.stderr
    assert 'Traceback' not in res.stderr
    assert sorted(os.listdir(cwd / 'runs' / 'scasnet')) == ['data']
