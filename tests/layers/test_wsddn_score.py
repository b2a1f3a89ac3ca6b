"""WSDDNScore against hand-computed values and the original stock-Caffe composition."""
import textwrap

import numpy as np
import pytest

from caffe_mlic.caffe.params import LayerError
from tests import netutil

LN3 = float(np.log(3))


def forward(layer_net, params, c, d):
    net = layer_net('WSDDNScore', params, [c.shape, d.shape], n_tops=2)
    netutil.set_inputs(net, c, d)
    net.forward()
    return net, net.blobs['t0'].data.copy(), net.blobs['t1'].data.copy()


def test_hand_computed(layer_net):
    # one image, 2 rois, 2 classes
    c = np.array([[0, LN3], [0, 0]], np.float32)   # class softmax: [.25 .75], [.5 .5]
    d = np.array([[LN3, 0], [0, 0]], np.float32)   # roi softmax: class 0 [.75 .25], class 1 [.5 .5]
    _, region, image = forward(layer_net, {'bbox_num': 2}, c, d)
    np.testing.assert_allclose(region, [[[0.1875, 0.375], [0.125, 0.25]]], rtol=1e-6)
    np.testing.assert_allclose(image, [[0.3125, 0.625]], rtol=1e-6)


def test_temperatures_divide_the_logits(layer_net):
    c = np.array([[0, 2 * LN3], [0, 0]], np.float32)
    d = np.array([[LN3 / 2, 0], [0, 0]], np.float32)
    _, region, image = forward(layer_net, {'bbox_num': 2, 'class_temperature': 2,
                                           'det_temperature': 0.5}, c, d)
    np.testing.assert_allclose(region, [[[0.1875, 0.375], [0.125, 0.25]]], rtol=1e-6)
    np.testing.assert_allclose(image, [[0.3125, 0.625]], rtol=1e-6)


def test_images_are_independent_and_4d_bottoms_accepted(layer_net):
    rng = np.random.default_rng(0)
    c, d = (rng.standard_normal((2, 6, 5)).astype(np.float32) for _ in range(2))
    _, region, image = forward(layer_net, {'bbox_num': 3}, c.reshape(12, 5, 1, 1), d.reshape(12, 5, 1, 1))
    assert region.shape == (4, 3, 5) and image.shape == (4, 5)
    _, region0, image0 = forward(layer_net, {'bbox_num': 3}, c[0, :3], d[0, :3])
    np.testing.assert_allclose(region[0], region0[0], rtol=1e-6)
    np.testing.assert_allclose(image[0], image0[0], rtol=1e-6)
    assert ((image > 0) & (image < 1)).all()


def test_large_logits_are_stable(layer_net):
    c = np.array([[1000, -1000, 0], [-1000, 1000, 0]], np.float32)
    d = np.array([[1000, 0, -1000], [-1000, 0, 1000]], np.float32)
    _, region, image = forward(layer_net, {'bbox_num': 2}, c, d)
    assert np.isfinite(region).all() and np.isfinite(image).all()
    np.testing.assert_allclose(region[0], [[1, 0, 0], [0, 0.5, 0]], atol=1e-6)
    np.testing.assert_allclose(image[0], [1, 0.5, 0], atol=1e-6)


def composed_text(n, b, c, tc, td):
    """The original head from stock layers (inputs fc8_c/fc8_d), plus the fused
    layer on separate copies (fc8_c2/fc8_d2) so the gradients stay apart."""
    inputs = netutil.input_layers_text([(n * b, c)] * 4, ['fc8_c', 'fc8_d', 'fc8_c2', 'fc8_d2'])
    stock = textwrap.dedent('''\
        layer { name: "rc" type: "Reshape" bottom: "fc8_c" top: "rc"
                reshape_param { shape { dim: -1 dim: %(b)d dim: %(c)d dim: 1 } } }
        layer { name: "rd" type: "Reshape" bottom: "fc8_d" top: "rd"
                reshape_param { shape { dim: -1 dim: %(b)d dim: %(c)d dim: 1 } } }
        layer { name: "tc" type: "Scale" bottom: "rc" top: "tc"
                param { lr_mult: 0 decay_mult: 0 }
                scale_param { axis: 2 bias_term: false filler { type: "constant" value: %(sc)r } } }
        layer { name: "td" type: "Power" bottom: "rd" top: "td" power_param { scale: %(sd)r } }
        layer { name: "class_score" type: "Softmax" bottom: "tc" top: "class_score"
                softmax_param { axis: 2 } }
        layer { name: "proposal_score" type: "Softmax" bottom: "td" top: "proposal_score"
                softmax_param { axis: 1 } }
        layer { name: "prod" type: "Eltwise" bottom: "class_score" bottom: "proposal_score"
                top: "prod" eltwise_param { operation: PROD } }
        layer { name: "split" type: "Split" bottom: "prod" top: "prod_sum" top: "region_ref" }
        layer { name: "image_level_score" type: "Convolution" bottom: "prod_sum" top: "image_ref"
                param { lr_mult: 0 decay_mult: 0 }
                convolution_param { num_output: 1 kernel_size: 1 bias_term: false
                                    weight_filler { type: "constant" value: 1 } } }
        ''') % {'b': b, 'c': c, 'sc': 1.0 / tc, 'sd': 1.0 / td}
    fused = netutil.python_layer_text('fused', 'WSDDNScore',
                                      {'bbox_num': b, 'class_temperature': tc, 'det_temperature': td},
                                      ['fc8_c2', 'fc8_d2'], ['region', 'image'])
    return 'name: "wsddn_head"\nforce_backward: true\n' + inputs + '\n' + stock + fused


@pytest.mark.parametrize('tc, td', [(1.0, 1.0), (0.5, 0.5), (2.0, 0.25)])
def test_equals_stock_caffe_composition(net_from_text, tc, td):
    n, b, c = 3, 5, 4
    net = net_from_text(composed_text(n, b, c, tc, td))
    rng = np.random.default_rng(1)
    fc8_c = rng.standard_normal((n * b, c)).astype(np.float32) * 2
    fc8_d = rng.standard_normal((n * b, c)).astype(np.float32) * 2
    for name, value in (('fc8_c', fc8_c), ('fc8_d', fc8_d), ('fc8_c2', fc8_c), ('fc8_d2', fc8_d)):
        net.blobs[name].data[...] = value
    net.forward()
    assert net.blobs['region_ref'].data.shape == (n, b, c, 1)
    assert net.blobs['image_ref'].data.shape == (n, 1, c, 1)
    np.testing.assert_allclose(net.blobs['region'].data, net.blobs['region_ref'].data[..., 0],
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(net.blobs['image'].data, net.blobs['image_ref'].data[:, 0, :, 0],
                               rtol=1e-5, atol=1e-7)
    g_region = rng.standard_normal((n, b, c)).astype(np.float32)
    g_image = rng.standard_normal((n, c)).astype(np.float32)
    net.backward(region=g_region, image=g_image,
                 region_ref=g_region[..., None], image_ref=g_image[:, None, :, None])
    for stock, fused in (('fc8_c', 'fc8_c2'), ('fc8_d', 'fc8_d2')):
        ref = net.blobs[stock].diff
        assert np.abs(ref).max() > 1e-3  # the comparison is not vacuous
        np.testing.assert_allclose(net.blobs[fused].diff, ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('params, shape', [
    ({'bbox_num': 3}, (6, 4)),
    ({'bbox_num': 4, 'class_temperature': 0.5, 'det_temperature': 2.0}, (8, 3, 1, 1)),
])
def test_gradient(layer_net, params, shape):
    net = layer_net('WSDDNScore', params, [shape, shape], n_tops=2)
    rng = np.random.default_rng(2)
    netutil.set_inputs(net, rng.standard_normal(shape), rng.standard_normal(shape))
    netutil.check_gradient(net, ['b0', 'b1'], ['t0', 't1'], step=1e-2, max_checks=40)


@pytest.mark.parametrize('params, shapes, n_tops, fragment', [
    ({}, [(4, 3), (4, 3)], 2, "required parameter 'bbox_num' is missing"),
    ({'bbox_num': 2, 'temperature': 1}, [(4, 3), (4, 3)], 2, "unknown parameter 'temperature'"),
    ({'bbox_num': 0}, [(4, 3), (4, 3)], 2, "'bbox_num'"),
    ({'bbox_num': 2, 'class_temperature': 0}, [(4, 3), (4, 3)], 2, "'class_temperature'"),
    ({'bbox_num': 2, 'det_temperature': -1}, [(4, 3), (4, 3)], 2, "'det_temperature'"),
    ({'bbox_num': 3}, [(4, 3), (4, 3)], 2, 'not a multiple of bbox_num 3'),
    ({'bbox_num': 2}, [(4, 3), (4, 2)], 2, 'fc8_c has shape (4, 3) but fc8_d has shape (4, 2)'),
    ({'bbox_num': 2}, [(4, 3), (2, 3)], 2, 'but fc8_d has shape'),
    ({'bbox_num': 2}, [(4, 3, 2, 1), (4, 3, 2, 1)], 2, 'must be (N*B, C) or (N*B, C, 1, 1)'),
    ({'bbox_num': 2}, [(4, 3)], 2, 'expected 2 bottom(s)'),
    ({'bbox_num': 2}, [(4, 3)] * 3, 2, 'expected 2 bottom(s)'),
    ({'bbox_num': 2}, [(4, 3), (4, 3)], 1, 'expected 2 top(s)'),
])
def test_errors(layer_net, params, shapes, n_tops, fragment):
    with pytest.raises(LayerError) as info:
        layer_net('WSDDNScore', params, shapes, n_tops=n_tops)
    assert 'WSDDNScore' in str(info.value) and fragment in str(info.value)
