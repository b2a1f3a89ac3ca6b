"""WsdRoigen / WsdRoigenSingleScale, in real caffe.Nets."""
import textwrap

import numpy as np
import pytest

from caffe_mlic.caffe.params import LayerError
from tests import netutil

F32 = np.float32

# Two images, two proposals each: (x1, y1, x2, y2, s).
PROPOSALS = np.array([[0, 2, 3, 671, 0.5, 10, 20, 30, 40, 1],
                      [3, 5, 6, 8, 0.37, 335, 336, 669, 670, 0.0]], F32)


def run(layer_net, layer, params, proposals):
    net = layer_net(layer, params, [proposals.shape])
    netutil.set_inputs(net, proposals)
    net.forward()
    return net


@pytest.mark.parametrize('layer, params, expected', [
    # the image index goes in front of each proposal
    ('WsdRoigen', {}, [[0, 0, 2, 3, 671, 0.5], [0, 10, 20, 30, 40, 1],
                       [1, 3, 5, 6, 8, 0.37], [1, 335, 336, 669, 670, 0.0]]),
    # floor(224 * c / 672) = floor(c / 3): 671 -> 223, 2 -> 0, 3 -> 1; scores unchanged.
    ('WsdRoigenSingleScale', {'single_scale': 224, 'origin_scale': 672},
     [[0, 0, 0, 1, 223, 0.5], [0, 3, 6, 10, 13, 1], [1, 1, 1, 2, 2, 0.37], [1, 111, 112, 223, 223, 0.0]]),
], ids=['prefixes_the_image_index', 'single_scale_maps_672_to_224'])
def test_roigen_by_hand(layer_net, layer, params, expected):
    net = run(layer_net, layer, params, PROPOSALS)
    np.testing.assert_array_equal(net.blobs['t0'].data, np.array(expected, F32))


def test_single_scale_with_fractional_scales(layer_net):
    props = np.array([[10, 7, 99, 100, 0.25]], F32)
    net = run(layer_net, 'WsdRoigenSingleScale', {'single_scale': 1.5, 'origin_scale': 2}, props)
    # 0.75 * (10, 7, 99, 100) = 7.5, 5.25, 74.25, 75
    np.testing.assert_array_equal(net.blobs['t0'].data, [[0, 7, 5, 74, 75, 0.25]])


def test_rows_follow_new_data_and_no_gradient(layer_net):
    net = run(layer_net, 'WsdRoigen', {}, PROPOSALS)
    netutil.set_inputs(net, PROPOSALS + 1)
    net.forward()
    assert net.blobs['t0'].data[3].tolist() == [1, 336, 337, 670, 671, 1]
    net.blobs['b0'].diff[...] = 3
    net.backward(t0=np.ones((4, 6), F32))
    assert not net.blobs['b0'].diff.any()


@pytest.mark.parametrize('layer, params', [
    ('WsdRoigen', {}), ('WsdRoigenSingleScale', {'single_scale': 224, 'origin_scale': 672})])
@pytest.mark.parametrize('shape', [(2, 7), (2, 4), (10,), (2, 5, 2)])
def test_bottom_not_n_by_5b(layer_net, layer, params, shape):
    with pytest.raises(LayerError, match=r'%s: proposals must be \(N, 5B\).*multiple of 5.*got shape'
                       % layer):
        layer_net(layer, params, [shape])


@pytest.mark.parametrize('params, fragment', [
    ({}, "required parameter 'single_scale' is missing"),
    ({'single_scale': 224}, "required parameter 'origin_scale' is missing"),
    ({'origin_scale': 672}, "required parameter 'single_scale' is missing"),
    ({'single_scale': 224, 'origin_scale': 0}, "'origin_scale': expected a number (> 0, within float32"),
    ({'single_scale': -1, 'origin_scale': 672}, "'single_scale': expected a number (> 0, within float32"),
    ({'single_scale': 224, 'origin_scale': 672, 'scale': 1}, "unknown parameter 'scale'"),
])
def test_single_scale_bad_params(layer_net, params, fragment):
    with pytest.raises(LayerError) as e:
        layer_net('WsdRoigenSingleScale', params, [(2, 10)])
    assert "layer 'layer': WsdRoigenSingleScale: " in str(e.value) and fragment in str(e.value)


def test_wsd_roigen_takes_no_params(layer_net):
    with pytest.raises(LayerError, match="WsdRoigen: unknown parameter 'single_scale'"):
        layer_net('WsdRoigen', {'single_scale': 224}, [(2, 10)])


def test_label_roi_to_pooled_features(net_from_text):
    """The release wiring: slice label_roi, WsdRoigen, ROIPooling at 1/16."""
    text = textwrap.dedent('''\
        name: "roigen_pool"
        force_backward: true
        layer { name: "in_label_roi" type: "Input" top: "label_roi"
                input_param { shape { dim: 2 dim: 13 } } }
        layer { name: "in_feat" type: "Input" top: "feat"
                input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
        layer { name: "slice" type: "Slice" bottom: "label_roi" top: "label" top: "list_roi"
                slice_param { axis: 1 slice_point: 3 } }
        layer { name: "silence" type: "Silence" bottom: "label" }
        ''') + '\n'.join([
        netutil.python_layer_text('roi', 'WsdRoigen', {}, ['list_roi'], ['roi']),
        netutil.python_layer_text('pool', 'ROIPooling', {'pooled_h': 1, 'pooled_w': 1},
                                  ['feat', 'roi'], ['pooled'])])
    net = net_from_text(text)
    label_roi = np.array([[1, 0, 1, 0, 0, 15, 15, 0.5, 16, 16, 63, 63, 1],
                          [0, 1, 1, 32, 48, 63, 63, 1, 0, 0, 0, 0, 2]], F32)
    feat = np.arange(2 * 3 * 16, dtype=F32).reshape(2, 3, 4, 4)
    net.blobs['label_roi'].data[...] = label_roi
    net.blobs['feat'].data[...] = feat
    net.forward()
    assert net.blobs['roi'].data.shape == (4, 6)
    pooled = net.blobs['pooled'].data[:, :, 0, 0]
    np.testing.assert_array_equal(pooled, [
        0.5 * feat[0, :, 0:2, 0:2].max(axis=(1, 2)),   # corners 0..15 -> cells 0..1 (0.9375 rounds to 1)
        1.0 * feat[0, :, 1:5, 1:5].max(axis=(1, 2)),   # 16..63 -> 1..4, clipped to 3
        1.0 * feat[1, :, 3:4, 2:4].max(axis=(1, 2)),   # x 32..63 -> 2..4, y 48..63 -> 3..4
        2.0 * feat[1, :, 0, 0]])
