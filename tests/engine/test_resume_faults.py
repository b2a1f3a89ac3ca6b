"""Resuming under the caffe binary continues the batch plan; a truncated solver
state is named before Caffe reads it."""
import subprocess

import cv2
import numpy as np

from caffe_mlic.data.datalist import write_datalist
from tests import netutil
from tests.faults import run_cli


def _binary_resume_case(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        path = str(tmp_path / ('r%d.png' % i))
        cv2.imwrite(path, rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
        rows.append((path, [i % 2, (i // 2) % 2], [[0, 0, 9, 9]], [1.0]))
    write_datalist(tmp_path / 'list.txt', rows)
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=4, new_width=24, new_height=20,
                  att_num=2, bbox_num=1, workers=0, shuffle=True, mirror=True, seed=3,
                  scale_factors=[0.75, 1.0], mean_value=[128], scale=0.01)
    net = netutil.python_layer_text('data', 'MultiLabelProposalData', params, [], ['data', 'label_roi'],
                                    phase='TRAIN')
    net += netutil.classifier_text(2) + netutil.SIGMOID_LOSS_TEXT
    (tmp_path / 'net.prototxt').write_text(net)
    for name in ('a', 'b'):
        netutil.write_solver(tmp_path / ('solver_%s.prototxt' % name), 'net.prototxt', base_lr=0.5,
                             max_iter=20, snapshot=10, random_seed=1, snapshot_prefix='%s/s' % name,
                             lr_policy='fixed', momentum=0.9)


def test_the_binary_resumed_from_a_snapshot_continues_the_batch_plan(tmp_path):
    """`caffe-mlic caffe train -snapshot` ends on the weights of a run that was
    never interrupted; the bare binary, whose data plan restarts at batch 0,
    does not (so this test can tell)."""
    from caffe_mlic.caffe import env as caffe_env
    from caffe_mlic.caffe.weights import read_weights
    _binary_resume_case(tmp_path)
    assert run_cli(['caffe', 'train', '-solver', 'solver_a.prototxt'], tmp_path).returncode == 0
    res = run_cli(['caffe', 'train', '-solver', 'solver_b.prototxt', '-snapshot',
                   'a/s_iter_10.solverstate'], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    whole, resumed = read_weights(str(tmp_path / 'a/s_iter_20.caffemodel')), \
        read_weights(str(tmp_path / 'b/s_iter_20.caffemodel'))
    assert all(np.array_equal(whole[k][i], resumed[k][i]) for k in whole for i in range(len(whole[k])))
    env = caffe_env.binary_environment()
    env['GLOG_minloglevel'] = '2'
    subprocess.run([caffe_env.caffe_binary(), 'train', '-solver', 'solver_b.prototxt', '-snapshot',
                    'a/s_iter_10.solverstate'], cwd=tmp_path, env=env, capture_output=True, check=True)
    bare = read_weights(str(tmp_path / 'b/s_iter_20.caffemodel'))
    assert not np.array_equal(whole['fc'][0], bare['fc'][0])


def test_a_truncated_solver_state_is_named_before_caffe_reads_it(tmp_path):
    _binary_resume_case(tmp_path)
    assert run_cli(['caffe', 'train', '-solver', 'solver_a.prototxt'], tmp_path).returncode == 0
    state = tmp_path / 'a/s_iter_10.solverstate'
    state.write_bytes(state.read_bytes()[:len(state.read_bytes()) // 2])
    res = run_cli(['caffe', 'train', '-solver', 'solver_b.prototxt', '-snapshot', state], tmp_path)
    assert res.returncode == 1
    assert '%s: truncated or not a SolverState' % state in res.stderr
