"""Errors name the layer instance when a net has two of a type; solver
overrides are checked; GPU flags on the CPU build are one-line errors."""
import os
import subprocess
import sys

import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.caffe.params import LayerError
from tests import netutil
from tests.faults import tiny  # noqa: F401 (a fixture)


def _two_roi_poolings(second_rois_shape):
    text = netutil.input_layers_text([(1, 2, 8, 8), (2, 6), second_rois_shape], ['f', 'r1', 'r2'])
    for name, rois in (('pool_a', 'r1'), ('pool_b', 'r2')):
        text += '\n' + netutil.python_layer_text(name, 'ROIPooling', {'pooled_h': 2, 'pooled_w': 2},
                                                 ['f', rois], [name])
    return text


def test_errors_name_the_instance_when_a_net_has_two_layers_of_a_type(net_from_text):
    with pytest.raises(LayerError, match=r"ROIPooling: rois must be .* \(layer 'pool_b' of the net\)"):
        net_from_text(_two_roi_poolings((2, 5)))
    net = net_from_text(_two_roi_poolings((2, 6)))
    net.blobs['f'].data[...] = 1
    net.blobs['r1'].data[...] = [0, 0, 0, 3, 3, 1]
    net.blobs['r2'].data[...] = [0, 0, 0, 3, 3, 1]
    net.blobs['f'].data[0, 1, 2, 2] = np.nan
    with pytest.raises(LayerError, match=r"ROIPooling: the features contain NaN .*\(layer 'pool_a'\)"):
        net.forward()


@pytest.mark.parametrize('item, fragment', [
    ('nope=1', "expected FIELD=VALUE with a scalar SolverParameter field"),
    ('max_iter', "expected FIELD=VALUE"),
    ('test_iter=3', "expected FIELD=VALUE with a scalar"),          # repeated
    ('max_iter=abc', "max_iter: 'abc' is not a valid number"),
    ('base_lr=nan', "base_lr: 'nan' is not a valid number"),
    ('snapshot_format=TEXT', 'snapshot_format: \'TEXT\' is not a valid one of HDF5, BINARYPROTO'),
])
def test_train_solver_overrides_are_checked(tiny, capsys, item, fragment):
    solver = str(tiny / 'nets' / 'kd' / 'solver_baseline.prototxt')
    assert cli.main(['train', solver, '--set', item]) == 2
    err = capsys.readouterr().err
    assert 'argument --set' in err and fragment in err, err


def test_train_solver_overrides_apply(tiny):
    from caffe_mlic.engine.solver_file import SolverFile
    sf = SolverFile(str(tiny / 'nets' / 'kd' / 'solver_baseline.prototxt'), str(tiny / 'r'),
                    ['max_iter=7', 'snapshot_prefix=elsewhere/s', 'base_lr=0.5', 'snapshot_after_train=false'])
    assert (sf.param.max_iter, sf.snapshot_prefix, sf.param.base_lr) == (7, 'elsewhere/s', 0.5)
    assert sf.param.snapshot_after_train is False


def test_gpu_flags_on_the_cpu_build_are_one_line_errors(tmp_path):
    """--gpu / -gpu never reach Caffe's CHECK abort: a CPU-only build, a bad
    id and several GPUs for training are refused first."""
    from caffe_mlic.caffe import env as caffe_env
    if caffe_env.build_kind() != caffe_env.CPU:
        pytest.skip('the active Caffe is not the CPU build')
    cli = os.path.join(os.path.dirname(sys.executable), 'caffe-mlic')
    solver = tmp_path / 'solver.prototxt'
    net = tmp_path / 'net.prototxt'
    net.write_text('name: "n" layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1 } } }\n')
    solver.write_text('net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 1\n' % net)
    for argv, code, message in (
            (['train', str(solver), '--gpu', '0'], 1, 'is a CPU-only build, it cannot use a GPU'),
            (['train', str(solver), '--gpu', 'x'], 2, "--gpu: expected GPU ids (0 or 0,1) or 'all', got 'x'"),
            (['train', str(solver), '--gpu', '0,1'], 2, '--gpu 0,1: this Caffe has no multi-GPU training'),
            (['caffe', 'train', '-solver', str(solver), '-gpu', '0'], 1, 'is a CPU-only build')):
        res = subprocess.run([cli] + argv, capture_output=True, text=True, timeout=120)
        assert res.returncode == code and message in res.stderr, (argv, res.stderr)
        assert 'Check failure' not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
