"""Faults in the layers and the loop: non-ASCII image names, divergence (the
guard, the driver, the binary), blobs over INT_MAX: each stops with a
one-line error naming the layer or file, never a Caffe abort or corrupt
memory."""
import glob
import os

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.netspec import netgen
from caffe_mlic.data.datalist import write_datalist
from caffe_mlic.caffe.params import LayerError
from caffe_mlic.errors import InputError
from tests import netutil
from tests.tinydata import tiny_mlic_config, write_tiny_dataset
from tests.faults import C, B, run_cli, shm_segments


@pytest.mark.parametrize('workers', [0, 2])
def test_a_latin1_image_name_is_read(tmp_path, net_from_text, workers):
    """A file name that is not UTF-8 (byte 0xE9) reaches OpenCV as bytes."""
    img = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    name = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b'caf\xe9.png'))
    ok, png = cv2.imencode('.png', img)
    with open(name, 'wb') as f:
        f.write(png.tobytes())
    write_datalist(tmp_path / 'list.txt', [(name, [1, 0, 1], [[0, 0, 5, 5]], [1.0])])
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=1, new_width=16, new_height=12,
                  att_num=3, bbox_num=1, workers=workers)
    net = net_from_text(netutil.python_layer_text('data', 'MultiLabelProposalData', params, [],
                                                  ['data', 'label_roi']), 'TEST')
    net.forward()
    assert np.array_equal(net.blobs['data'].data[0], img.transpose(2, 0, 1).astype(np.float32))
    assert cli.main(['datalist', 'check', str(tmp_path / 'list.txt'), '--att-num', '3',
                     '--bbox-num', '1', '--size', '16x12']) == 0


@pytest.mark.parametrize('solver', ['stage1', 'stage2', 'baseline'])
def test_every_student_net_stops_on_divergence_under_the_binary(tmp_path, solver):
    """Stage 2 and the baseline have stock losses only: their DivergenceGuard
    stops them (stage 1's ROIPooling or guard): exit 1, the message, no snapshot."""
    listing = write_tiny_dataset(str(tmp_path / 'images'), num_classes=C, bbox_num=B, size=96)
    netgen.generate(str(tmp_path / 'nets'), tiny_mlic_config(listing), max_iter=10, base_lr=1e6,
                    solver_type='SGD')
    res = run_cli(['caffe', 'train', '-solver', 'nets/kd/solver_%s.prototxt' % solver], tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    assert 'training diverged' in res.stderr
    assert 'double free' not in res.stderr and 'Aborted' not in res.stderr
    assert not glob.glob(str(tmp_path / 'snapshots' / '**' / '*.caffemodel'), recursive=True)


def test_the_driver_stops_a_diverging_baseline_without_corrupting_memory(tmp_path):
    listing = write_tiny_dataset(str(tmp_path / 'images'), num_classes=C, bbox_num=B, size=96)
    netgen.generate(str(tmp_path / 'nets'), tiny_mlic_config(listing), max_iter=10, base_lr=1e6,
                    solver_type='SGD')
    res = run_cli(['train', 'nets/kd/solver_baseline.prototxt', '--run-dir', 'run'], tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    assert 'DivergenceGuard' in res.stderr and 'training diverged' in res.stderr
    assert 'double free' not in res.stderr


FLT_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize('bad', [None, np.nan, np.inf, -np.inf, -FLT_MAX])
def test_divergence_guard_hand_cases(layer_net, bad):
    net = layer_net('DivergenceGuard', {}, [(2, 3), (1, 2, 2, 2)], n_tops=0)
    values = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    pooled = np.full((1, 2, 2, 2), 1e30, np.float32)      # large but finite: fine
    if bad is not None:
        pooled[0, 1, 1, 0] = bad
    netutil.set_inputs(net, values, pooled)
    if bad is None:
        net.forward()
        net.backward()
        assert not net.blobs['b0'].diff.any() and not net.blobs['b1'].diff.any()
    else:
        with pytest.raises(LayerError, match=r'DivergenceGuard: bottom 1 \(1x2x2x2\) holds 1 NaN, '
                                             r'inf or -FLT_MAX value\(s\): training diverged'):
            net.forward()


def test_divergence_guard_gradient_is_zero(layer_net):
    """It has no top: it adds nothing to any gradient (numerically: 0)."""
    net = layer_net('DivergenceGuard', {}, [(2, 3)], n_tops=0)
    netutil.set_inputs(net, np.ones((2, 3), np.float32))
    net.blobs['b0'].diff[...] = 7
    net.forward()
    net.backward()
    assert not net.blobs['b0'].diff.any()


@pytest.mark.parametrize('layer, params, shapes, fragment', [
    ('ROIPooling', {'pooled_h': 100000, 'pooled_w': 100000}, [(1, 2, 4, 4), (1, 6)], 'pooled_h / pooled_w'),
    ('Interp', {'height': 100000, 'width': 100000}, [(1, 1, 2, 2)], 'height / width'),
])
def test_blob_sizes_over_int_max_are_refused(layer_net, layer, params, shapes, fragment):
    """Before Caffe builds the net (caffe.shapes), naming the layer and its parameters."""
    with pytest.raises(InputError, match=r"layer 'layer' \(TRAIN\): top 't0' would be .* more than a "
                                         r"Caffe blob holds \(2\^31 - 1\): lower %s" % fragment):
        layer_net(layer, params, shapes)


def test_data_layer_sizes_over_int_max_are_refused(tmp_path, net_from_text):
    write_datalist(tmp_path / 'list.txt', [(str(tmp_path / 'a.png'), [1, 0, 1], [[0, 0, 5, 5]], [1.0])])
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=10 ** 6, new_width=672,
                  new_height=672, att_num=3, bbox_num=1, workers=2)
    before = shm_segments()
    with pytest.raises(InputError, match="layer 'data' \\(TRAIN\\): top 'data' would be .* more than a Caffe "
                                         "blob holds .*: lower batch_size, new_height"):
        net_from_text(netutil.python_layer_text('data', 'MultiLabelProposalData', params, [],
                                                ['data', 'label_roi']), 'TRAIN')
    assert shm_segments() <= before
