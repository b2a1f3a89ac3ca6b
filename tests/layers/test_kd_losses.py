"""SoftSigmoidCrossEntropyLoss and FeatureMimicLoss: hand values, stock-Caffe equality,
gradients and errors, all on real caffe.Nets."""
import textwrap

import numpy as np
import pytest

from caffe_mlic.caffe.params import LayerError
from tests import netutil


def loss_net(layer_net, layer, params, shapes, **kw):
    kw.setdefault('loss_weight', 1)
    return layer_net(layer, params, shapes, **kw)


def run(net, *arrays):
    netutil.set_inputs(net, *arrays)
    net.forward()
    return float(net.blobs['t0'].data)


def gradient_net(net_from_text, layer, params, shapes):
    """The loss layer alone (loss_weight 1) with its top named 'loss'."""
    bottoms = ['b%d' % i for i in range(len(shapes))]
    text = '\n'.join(['name: "grad"', 'force_backward: true',
                      netutil.input_layers_text(shapes, bottoms),
                      netutil.python_layer_text('layer', layer, params, bottoms, ['loss'],
                                                loss_weight=1)])
    return net_from_text(text)


# ---------------------------------------------------------------- soft sigmoid CE

def test_soft_sigmoid_hand_computed(layer_net):
    net = loss_net(layer_net, 'SoftSigmoidCrossEntropyLoss', {}, [(2, 2), (2, 2)])
    x = np.array([[0, 2], [-1, 3]], np.float32)
    t = np.array([[0.5, 1], [0.25, 0]], np.float32)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected = -sum(ti * np.log(sig(xi)) + (1 - ti) * np.log(1 - sig(xi))
                    for xi, ti in zip(x.ravel().astype(float), t.ravel().astype(float))) / 2
    assert run(net, x, t) == pytest.approx(expected, rel=1e-6)
    net.backward()
    np.testing.assert_allclose(net.blobs['b0'].diff, (sig(x.astype(float)) - t) / 2, rtol=1e-5, atol=1e-7)


def test_soft_sigmoid_temperature(layer_net):
    x = np.array([[0, 4], [-2, 6]], np.float32)
    t = np.array([[0.5, 1], [0.25, 0]], np.float32)
    hot = loss_net(layer_net, 'SoftSigmoidCrossEntropyLoss', {'temperature': 2}, [(2, 2), (2, 2)])
    cold = loss_net(layer_net, 'SoftSigmoidCrossEntropyLoss', {}, [(2, 2), (2, 2)])
    assert run(hot, x, t) == pytest.approx(run(cold, x / 2, t), rel=1e-6)
    hot.backward()
    cold.backward()
    # d/dx of f(x/T) = f'(x/T) / T
    np.testing.assert_allclose(hot.blobs['b0'].diff, cold.blobs['b0'].diff / 2, rtol=1e-5)


def test_soft_sigmoid_equals_stock_for_hard_targets(net_from_text):
    n, c = 4, 5
    text = 'name: "sce"\nforce_backward: true\n' + netutil.input_layers_text(
        [(n, c)] * 3, ['x', 'x2', 'label']) + textwrap.dedent('''
        layer { name: "stock" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "label"
                top: "stock_loss" propagate_down: true propagate_down: false loss_weight: 1
                loss_param { normalization: BATCH_SIZE } }
        ''') + netutil.python_layer_text('ours', 'SoftSigmoidCrossEntropyLoss', {}, ['x2', 'label'],
                                         ['our_loss'], loss_weight=1, propagate_down=[True, False])
    net = net_from_text(text)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((n, c)) * 4).astype(np.float32)
    x[0, :2] = [40, -40]  # saturated logits
    label = (rng.random((n, c)) > 0.5).astype(np.float32)
    net.blobs['x'].data[...] = x
    net.blobs['x2'].data[...] = x
    net.blobs['label'].data[...] = label
    net.forward()
    assert float(net.blobs['our_loss'].data) == pytest.approx(float(net.blobs['stock_loss'].data), rel=1e-5)
    net.backward()
    assert np.abs(net.blobs['x'].diff).max() > 1e-3
    np.testing.assert_allclose(net.blobs['x2'].diff, net.blobs['x'].diff, rtol=1e-5, atol=1e-7)
    assert (net.blobs['label'].diff == 0).all()


def test_soft_sigmoid_extreme_logits_are_finite(layer_net):
    net = loss_net(layer_net, 'SoftSigmoidCrossEntropyLoss', {'temperature': 0.01}, [(1, 4), (1, 4)])
    x = np.array([[1000, -1000, 1000, -1000]], np.float32)
    t = np.array([[1, 0, 0, 1]], np.float32)
    # z = +-1e5: the correct entries cost 0, the wrong ones |z| each
    assert run(net, x, t) == pytest.approx(2e5, rel=1e-6)
    net.backward()
    np.testing.assert_allclose(net.blobs['b0'].diff, [[0, 0, 100, -100]], atol=1e-3)


def test_soft_sigmoid_gradient_and_loss_weight(layer_net, net_from_text):
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((3, 4)) * 2, rng.random((3, 4))
    net = gradient_net(net_from_text, 'SoftSigmoidCrossEntropyLoss', {'temperature': 0.7}, [(3, 4), (3, 4)])
    netutil.set_inputs(net, x, t)
    netutil.check_gradient(net, ['b0'], ['loss'], loss=True)
    assert (net.blobs['b1'].diff == 0).all()  # targets: zeros, although force_backward asks
    net3 = loss_net(layer_net, 'SoftSigmoidCrossEntropyLoss', {'temperature': 0.7}, [(3, 4), (3, 4)],
                    loss_weight=3)
    run(net3, x, t)
    net3.backward()
    np.testing.assert_allclose(net3.blobs['b0'].diff, 3 * net.blobs['b0'].diff, rtol=1e-5)


@pytest.mark.parametrize('bad, shown', [(1.5, '1.5'), (-0.1, '-0.1'), (np.nan, 'nan')])
def test_soft_sigmoid_rejects_targets_outside_unit_interval(layer_net, bad, shown):
    net = loss_net(layer_net, 'SoftSigmoidCrossEntropyLoss', {}, [(2, 3), (2, 3)])
    t = np.full((2, 3), 0.5, np.float32)
    t[1, 2] = bad
    with pytest.raises(LayerError) as info:
        run(net, np.zeros((2, 3)), t)
    msg = str(info.value)
    assert 'SoftSigmoidCrossEntropyLoss' in msg and 'targets must lie in [0, 1]' in msg
    assert 'index 5' in msg and shown in msg


def test_soft_sigmoid_clips_targets_a_rounding_error_past_the_interval(layer_net):
    """A teacher's image score (a float32 sum of softmax products) can be
    1.0000001: taken as 1, not an error; the loss and gradient are those of 1."""
    net = loss_net(layer_net, 'SoftSigmoidCrossEntropyLoss', {}, [(1, 2), (1, 2)])
    x = np.array([[0.3, -0.4]])
    past = run(net, x, np.array([[np.float32(1) + np.float32(1.2e-7), -np.float32(1e-6)]], np.float32))
    net.backward()
    grad_past = net.blobs['b0'].diff.copy()
    assert run(net, x, np.array([[1, 0]], np.float32)) == pytest.approx(past, rel=1e-7)
    net.backward()
    np.testing.assert_allclose(net.blobs['b0'].diff, grad_past, rtol=1e-7)
    # by hand: -log(sigmoid(0.3)) - log(1 - sigmoid(-0.4))
    assert past == pytest.approx(np.log1p(np.exp(-0.3)) + np.log1p(np.exp(-0.4)), rel=1e-6)


@pytest.mark.parametrize('params, shapes, fragment', [
    ({'temprature': 2}, [(2, 3), (2, 3)], "unknown parameter 'temprature'"),
    ({'temperature': 0}, [(2, 3), (2, 3)], "'temperature'"),
    ({}, [(2, 3), (2, 4)], 'logits have 6 values (2, 3) but targets have 8 (2, 4)'),
    ({}, [(2, 3)], 'expected 2 bottom(s)'),
    ({}, [(2, 3)] * 3, 'expected 2 bottom(s)'),
])
def test_soft_sigmoid_errors(layer_net, params, shapes, fragment):
    _assert_layer_error(layer_net, 'SoftSigmoidCrossEntropyLoss', params, shapes, fragment)


def _assert_layer_error(layer_net, layer, params, shapes, fragment):
    with pytest.raises(LayerError) as info:
        loss_net(layer_net, layer, params, shapes)
    assert layer in str(info.value) and fragment in str(info.value)


# ---------------------------------------------------------------- feature mimic

@pytest.mark.parametrize('shape', [(6, 4), (3, 2, 2, 2)])
def test_mimic_equals_stock_euclidean(net_from_text, shape):
    text = 'name: "mimic"\nforce_backward: true\n' + netutil.input_layers_text(
        [shape] * 4, ['a', 'b', 'a2', 'b2']) + textwrap.dedent('''
        layer { name: "stock" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "stock_loss"
                loss_weight: 1 }
        ''') + netutil.python_layer_text('ours', 'FeatureMimicLoss', {}, ['a2', 'b2'], ['our_loss'],
                                         loss_weight=1)
    net = net_from_text(text)
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(shape).astype(np.float32), rng.standard_normal(shape).astype(np.float32)
    for name, v in (('a', a), ('b', b), ('a2', a), ('b2', b)):
        net.blobs[name].data[...] = v
    net.forward()
    assert float(net.blobs['our_loss'].data) == pytest.approx(float(net.blobs['stock_loss'].data), rel=1e-5)
    net.backward()
    for stock, ours in (('a', 'a2'), ('b', 'b2')):
        assert np.abs(net.blobs[stock].diff).max() > 1e-3
        np.testing.assert_allclose(net.blobs[ours].diff, net.blobs[stock].diff, rtol=1e-5, atol=1e-7)


A = np.array([[1, 0], [0, 0], [2, 2], [0, 3], [1, 1], [0, 1]], np.float32)  # b = 0: ||a_r||^2 = 1 0 8 9 2 1
W = np.array([1, 5, 0.5, 0.2, 2, 2], np.float32)


@pytest.mark.parametrize('params, expected', [
    ({}, (1 * 1 + 5 * 0 + 0.5 * 8 + 0.2 * 9 + 2 * 2 + 2 * 1) / (2 * 6)),
    ({'weight_rows': False}, (1 + 0 + 8 + 9 + 2 + 1) / (2 * 6)),
    # images of 3 rows; top 1 per image: row 1 (w 5) and row 4 (w 2 ties row 5: the earlier wins)
    ({'top_k': 1, 'rows_per_image': 3}, (5 * 0 + 2 * 2) / (2 * 2)),
    ({'top_k': 2, 'rows_per_image': 3}, (1 * 1 + 5 * 0 + 2 * 2 + 2 * 1) / (2 * 4)),
    ({'top_k': 2, 'rows_per_image': 3, 'weight_rows': False}, (1 + 0 + 2 + 1) / (2 * 4)),
    ({'top_k': 5, 'rows_per_image': 3}, (1 * 1 + 5 * 0 + 0.5 * 8 + 0.2 * 9 + 2 * 2 + 2 * 1) / (2 * 6)),
    ({'top_k': 2, 'rows_per_image': 2}, (1 * 1 + 5 * 0 + 0.5 * 8 + 0.2 * 9 + 2 * 2 + 2 * 1) / (2 * 6)),
    ({'top_k': 1, 'rows_per_image': 2}, (5 * 0 + 0.5 * 8 + 2 * 2) / (2 * 3)),
])
def test_mimic_weighted_and_top_k_by_hand(layer_net, params, expected):
    net = loss_net(layer_net, 'FeatureMimicLoss', params, [(6, 2)] * 2 + [(6,)])
    assert run(net, A, np.zeros_like(A), W) == pytest.approx(expected, rel=1e-6)


def test_mimic_top_k_gradient_by_hand(layer_net):
    net = loss_net(layer_net, 'FeatureMimicLoss', {'top_k': 1, 'rows_per_image': 3}, [(6, 2)] * 2 + [(6,)])
    b = np.ones_like(A)
    run(net, A, b, W)
    net.backward()
    expected = np.zeros_like(A)
    expected[1] = 5 * (A[1] - 1) / 2   # kept rows 1 and 4, K = 2
    expected[4] = 2 * (A[4] - 1) / 2
    np.testing.assert_allclose(net.blobs['b0'].diff, expected, rtol=1e-6)
    np.testing.assert_allclose(net.blobs['b1'].diff, -expected, rtol=1e-6)
    assert (net.blobs['b2'].diff == 0).all()


@pytest.mark.parametrize('params, n_bottoms', [
    ({}, 2), ({}, 3), ({'weight_rows': False}, 3), ({'top_k': 2, 'rows_per_image': 4}, 3),
])
def test_mimic_gradient(net_from_text, params, n_bottoms):
    rng = np.random.default_rng(3)
    shapes = [(8, 3, 1, 2)] * 2 + [(8, 1)][:n_bottoms - 2]
    net = gradient_net(net_from_text, 'FeatureMimicLoss', params, shapes)
    arrays = [rng.standard_normal(shapes[0]), rng.standard_normal(shapes[0]),
              rng.random((8, 1)) + 0.1][:n_bottoms]
    netutil.set_inputs(net, *arrays)
    netutil.check_gradient(net, ['b0', 'b1'], ['loss'], loss=True, max_checks=30)


@pytest.mark.parametrize('params, shapes, fragment', [
    ({'topk': 1}, [(4, 2)] * 2, "unknown parameter 'topk'"),
    ({'top_k': -1}, [(4, 2)] * 2, "'top_k'"),
    ({'top_k': 1}, [(4, 2), (4, 2), (4,)], 'top_k > 0 needs rows_per_image'),
    ({'top_k': 1, 'rows_per_image': 2}, [(4, 2)] * 2, 'top_k > 0 needs the weights bottom'),
    ({'top_k': 1, 'rows_per_image': 3}, [(4, 2), (4, 2), (4,)],
     '4 rows is not a multiple of rows_per_image 3'),
    ({'rows_per_image': 0}, [(4, 2)] * 2, "'rows_per_image'"),
    ({}, [(4, 2), (4, 3)], 'student features have shape (4, 2) but teacher features (4, 3)'),
    ({}, [(4, 2), (4, 2), (3,)], 'weights have 3 values (3,) but features have 4 rows'),
    ({}, [(4, 2)], 'expected 2 to 3 bottom(s)'),
    ({}, [(4, 2)] * 4, 'expected 2 to 3 bottom(s)'),
])
def test_mimic_errors(layer_net, params, shapes, fragment):
    _assert_layer_error(layer_net, 'FeatureMimicLoss', params, shapes, fragment)


@pytest.mark.parametrize('bad', [-1.0, np.nan, np.inf])
def test_mimic_rejects_bad_weights(layer_net, bad):
    net = loss_net(layer_net, 'FeatureMimicLoss', {}, [(4, 2), (4, 2), (4,)])
    w = np.ones(4, np.float32)
    w[2] = bad
    with pytest.raises(LayerError, match='FeatureMimicLoss: weights must be finite and >= 0; row 2'):
        run(net, np.zeros((4, 2)), np.zeros((4, 2)), w)


@pytest.mark.parametrize('which, bad', [('probabilities', 1.5), ('probabilities', -3.0), ('targets', 2.0),
                                        ('targets', -1.0), ('targets', np.nan)])
def test_cross_entropy_refuses_values_outside_the_unit_interval(layer_net, which, bad):
    """Logits fed as probabilities, or class indices / -1 "ignore" labels as
    targets, trained to the end on a clamped loss of no meaning (pass 19 S3):
    refused naming the bottom and the first value, as the sibling loss does."""
    net = loss_net(layer_net, 'CrossEntropyLoss', {}, [(2, 3), (2, 3)])
    p, t = np.full((2, 3), 0.5, np.float32), np.full((2, 3), 1.0, np.float32)
    (p if which == 'probabilities' else t)[1, 2] = bad
    with pytest.raises(LayerError) as info:
        run(net, p, t)
    assert 'CrossEntropyLoss' in str(info.value) and ('%s must lie in [0, 1]: 1 value(s) do not, first at flat '
                                                      'index 5: %r' % (which, float(np.float32(bad)))) in str(info.value)
    p[1, 2], t[1, 2] = 1 + 1e-6, 0.0         # a float32 sum of softmax products just past 1: within the slack
    run(net, p, t)
