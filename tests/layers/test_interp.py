"""Interp (bilinear, corner aligned) on real caffe.Nets: sizes, values, gradients, errors."""
import numpy as np
import pytest

from caffe_mlic.caffe.params import LayerError
from tests import netutil


def reference_pixel(x, h2, w2, out_h, out_w, pad_beg=0, pad_end=0):
    """One output pixel, transcribed from the original C++ loop (float32 math).

    x is one (H, W) plane; the crop starts at -pad_beg.
    """
    h1_n, w1_n = x.shape[0] + pad_beg + pad_end, x.shape[1] + pad_beg + pad_end
    y0 = x0 = -pad_beg
    f = np.float32
    rh = f(h1_n - 1) / f(out_h - 1) if out_h > 1 else f(0)
    rw = f(w1_n - 1) / f(out_w - 1) if out_w > 1 else f(0)
    h1r = f(rh * f(h2))
    h1 = int(h1r)
    h1p = 1 if h1 < h1_n - 1 else 0
    hl1 = f(h1r - f(h1))
    hl0 = f(1) - hl1
    w1r = f(rw * f(w2))
    w1 = int(w1r)
    w1p = 1 if w1 < w1_n - 1 else 0
    wl1 = f(w1r - f(w1))
    wl0 = f(1) - wl1
    p = lambda dy, dx: f(x[y0 + h1 + dy, x0 + w1 + dx])  # noqa: E731
    return hl0 * (wl0 * p(0, 0) + wl1 * p(0, w1p)) + hl1 * (wl0 * p(h1p, 0) + wl1 * p(h1p, w1p))


def reference(x, out_h, out_w, pad_beg=0, pad_end=0):
    """Whole (N, C, H, W) reference, for small sizes only (Python loops)."""
    n, c = x.shape[:2]
    out = np.zeros((n, c, out_h, out_w), np.float32)
    for i in range(n):
        for j in range(c):
            for h2 in range(out_h):
                for w2 in range(out_w):
                    out[i, j, h2, w2] = reference_pixel(x[i, j], h2, w2, out_h, out_w, pad_beg, pad_end)
    return out


def run(layer_net, params, x, ref_shape=None):
    shapes = [x.shape] + ([ref_shape] if ref_shape else [])
    net = layer_net('Interp', params, shapes)
    netutil.set_inputs(net, x)
    net.forward()
    return net, net.blobs['t0'].data.copy()


def rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize('h, w, params, out_hw', [
    (5, 5, {'zoom_factor': 2}, (9, 9)),
    (9, 9, {'shrink_factor': 2}, (5, 5)),
    (9, 9, {'shrink_factor': 2, 'zoom_factor': 2}, (9, 9)),
    (10, 8, {'shrink_factor': 3}, (4, 3)),            # (9)//3+1, (7)//3+1
    (4, 3, {'zoom_factor': 3}, (10, 7)),
    (10, 10, {'shrink_factor': 4, 'zoom_factor': 3}, (7, 7)),   # 9//4+1 = 3 -> 3+2*2
    (7, 7, {'pad_beg': -1, 'pad_end': -1, 'zoom_factor': 1}, (5, 5)),
    (7, 6, {'pad_beg': -1, 'pad_end': -1, 'zoom_factor': 2}, (9, 7)),  # 5 -> 9, 4 -> 7
    (9, 9, {'pad_beg': -1, 'shrink_factor': 2}, (4, 4)),              # 8 -> 7//2+1
    (6, 5, {'height': 3, 'width': 8}, (3, 8)),
    (1, 4, {'height': 4, 'width': 1}, (4, 1)),         # 1 -> 4 replicates, 4 -> 1 takes the first
])
def test_size_rules_and_values_match_original_loop(layer_net, h, w, params, out_hw):
    x = rand((2, 3, h, w))
    _, y = run(layer_net, params, x)
    assert y.shape == (2, 3) + out_hw
    expected = reference(x, *out_hw, pad_beg=params.get('pad_beg', 0), pad_end=params.get('pad_end', 0))
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_two_by_two_to_three_by_three_by_hand(layer_net):
    x = np.array([[[[0, 1], [2, 3]]]], np.float32)
    _, y = run(layer_net, {'zoom_factor': 2}, x)
    np.testing.assert_array_equal(y[0, 0], [[0, 0.5, 1], [1, 1.5, 2], [2, 2.5, 3]])
    _, y = run(layer_net, {'height': 3, 'width': 2}, x)
    np.testing.assert_array_equal(y[0, 0], [[0, 1], [1, 2], [2, 3]])


def test_explicit_224_from_672(layer_net):
    x = rand((1, 3, 672, 672), seed=1)
    _, y = run(layer_net, {'height': 224, 'width': 224}, x)
    assert y.shape == (1, 3, 224, 224)
    # corner alignment: the four corners are the input's corners
    for r, c in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        np.testing.assert_allclose(y[..., r, c], x[..., r, c], rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(2)
    for ch, h2, w2 in zip(rng.integers(0, 3, 60), rng.integers(0, 224, 60), rng.integers(0, 224, 60)):
        assert y[0, ch, h2, w2] == pytest.approx(reference_pixel(x[0, ch], h2, w2, 224, 224),
                                                 rel=1e-5, abs=1e-6)


def test_corners_align_when_zooming_and_shrinking(layer_net):
    x = rand((1, 2, 13, 8), seed=3)
    for params in ({'zoom_factor': 3}, {'shrink_factor': 3}, {'height': 50, 'width': 3}):
        _, y = run(layer_net, params, x)
        for r, c in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
            np.testing.assert_allclose(y[..., r, c], x[..., r, c], rtol=1e-5, atol=1e-6)


def test_same_size_copies_exactly(layer_net):
    x = rand((2, 3, 6, 5), seed=4) * np.float32(1e30)
    _, y = run(layer_net, {'height': 6, 'width': 5}, x)
    np.testing.assert_array_equal(y, x)
    _, y = run(layer_net, {'zoom_factor': 1, 'shrink_factor': 1}, x)
    np.testing.assert_array_equal(y, x)


def test_crop_only_copies_the_window(layer_net):
    x = rand((1, 2, 7, 7), seed=5)
    _, y = run(layer_net, {'pad_beg': -1, 'pad_end': -1, 'zoom_factor': 1}, x)
    np.testing.assert_array_equal(y, x[:, :, 1:6, 1:6])
    _, y = run(layer_net, {'pad_beg': -2, 'height': 5, 'width': 5}, x)
    np.testing.assert_array_equal(y, x[:, :, 2:, 2:])


def test_second_bottom_gives_the_size(layer_net):
    x = rand((2, 2, 5, 4), seed=6)
    net, y = run(layer_net, {}, x, ref_shape=(1, 7, 9, 3))
    assert y.shape == (2, 2, 9, 3)
    np.testing.assert_allclose(y, reference(x, 9, 3), rtol=1e-5, atol=1e-6)


def test_varying_input_size_between_forwards(layer_net):
    net = layer_net('Interp', {'zoom_factor': 2}, [(1, 1, 3, 3)])
    x = rand((1, 1, 4, 6), seed=7)
    net.blobs['b0'].reshape(*x.shape)
    net.blobs['b0'].data[...] = x
    net.forward()
    assert net.blobs['t0'].data.shape == (1, 1, 7, 11)
    np.testing.assert_allclose(net.blobs['t0'].data, reference(x, 7, 11), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('shape, params', [
    ((2, 2, 5, 4), {'height': 7, 'width': 6}),
    ((1, 2, 9, 8), {'shrink_factor': 2}),
    ((1, 2, 4, 3), {'zoom_factor': 3}),
    ((1, 2, 7, 8), {'pad_beg': -1, 'pad_end': -2, 'zoom_factor': 2}),
    ((1, 2, 6, 5), {'pad_beg': -1, 'height': 5, 'width': 4}),   # crop + copy
])
def test_gradient(layer_net, shape, params):
    net = layer_net('Interp', params, [shape])
    netutil.set_inputs(net, rand(shape, seed=8))
    netutil.check_gradient(net, ['b0'], ['t0'], max_checks=60)


def test_backward_is_the_adjoint_on_a_large_resize(layer_net):
    """<Interp(x), g> == <x, Interp^T(g)>: backward uses the same weights."""
    net = layer_net('Interp', {'height': 100, 'width': 90}, [(2, 3, 37, 61)])
    x, g = rand((2, 3, 37, 61), seed=9), rand((2, 3, 100, 90), seed=10)
    netutil.set_inputs(net, x)
    net.forward()
    net.backward(t0=g)
    lhs = float((net.blobs['t0'].data.astype(np.float64) * g).sum())
    rhs = float((x.astype(np.float64) * net.blobs['b0'].diff).sum())
    assert lhs == pytest.approx(rhs, rel=1e-4)


@pytest.mark.parametrize('params', [{'pad_beg': -1, 'pad_end': -2, 'zoom_factor': 2},
                                    {'pad_beg': -2, 'height': 5, 'width': 5}])
def test_cropped_pixels_get_zero_gradient(layer_net, params):
    net = layer_net('Interp', params, [(1, 2, 7, 7)])
    netutil.set_inputs(net, rand((1, 2, 7, 7), seed=11))
    net.forward()
    net.blobs['b0'].diff[...] = 7  # stale values must be overwritten
    net.backward(t0=np.ones(net.blobs['t0'].data.shape, np.float32))
    diff = net.blobs['b0'].diff
    beg, end = -params['pad_beg'], 7 + params.get('pad_end', 0)
    inside = np.zeros((7, 7), bool)
    inside[beg:end, beg:end] = True
    assert (diff[..., ~inside] == 0).all()
    # all-ones top gradient: the crop receives the output's total mass
    np.testing.assert_allclose(diff.sum(), net.blobs['t0'].data.size, rtol=1e-5)


def test_no_gradient_to_size_reference(layer_net):
    net = layer_net('Interp', {}, [(1, 1, 3, 3), (1, 1, 5, 5)])
    netutil.set_inputs(net, rand((1, 1, 3, 3)), rand((1, 1, 5, 5)))
    net.blobs['b1'].diff[...] = 7
    net.forward()
    net.backward(t0=np.ones((1, 1, 5, 5), np.float32))
    assert (net.blobs['b1'].diff == 0).all()
    # a 3x3 -> 5x5 resize: each input pixel's weights sum to the 1-D sums product
    np.testing.assert_allclose(net.blobs['b0'].diff[0, 0].sum(), 25, rtol=1e-6)


@pytest.mark.parametrize('params, shapes, fragment', [
    ({'height': 5, 'widht': 5}, [(1, 1, 3, 3)], "unknown parameter 'widht'"),
    ({'height': 5}, [(1, 1, 3, 3)], 'height and width must be given together'),
    ({'width': 5}, [(1, 1, 3, 3)], 'height and width must be given together'),
    ({'height': 5, 'width': 5, 'zoom_factor': 2}, [(1, 1, 3, 3)], 'not both'),
    ({'height': 5, 'width': 5, 'shrink_factor': 2}, [(1, 1, 3, 3)], 'not both'),
    ({}, [(1, 1, 3, 3)], 'no output size'),
    ({'pad_beg': -1}, [(1, 1, 3, 3)], 'no output size'),
    ({'zoom_factor': 2}, [(1, 1, 3, 3), (1, 1, 5, 5)], 'second bottom'),
    ({'height': 5, 'width': 5}, [(1, 1, 3, 3), (1, 1, 5, 5)], 'second bottom'),
    ({}, [(1, 1, 3, 3)] * 3, 'expected 1 to 2 bottom(s)'),
    ({'zoom_factor': 0}, [(1, 1, 3, 3)], "'zoom_factor'"),
    ({'shrink_factor': 1.5}, [(1, 1, 3, 3)], "'shrink_factor'"),
    ({'zoom_factor': 2, 'pad_beg': 1}, [(1, 1, 3, 3)], "'pad_beg'"),
    ({'zoom_factor': 2, 'pad_beg': -2, 'pad_end': -1}, [(1, 1, 3, 3)], 'crop the 3x3 input to nothing'),
    ({'zoom_factor': 2}, [(1, 3, 3)], 'must be 4-D'),
    ({}, [(1, 1, 3, 3), (5, 5)], 'size reference must be 4-D'),
])
def test_errors(layer_net, params, shapes, fragment):
    with pytest.raises(LayerError) as info:
        layer_net('Interp', params, shapes)
    assert 'Interp' in str(info.value) and fragment in str(info.value)


def test_two_tops_rejected(layer_net):
    with pytest.raises(LayerError, match='expected 1 top'):
        layer_net('Interp', {'zoom_factor': 2}, [(1, 1, 3, 3)], n_tops=2)


def test_nan_and_inf_pass_through_without_numpy_warnings(layer_net):
    """A diverged net's NaN reaches the loss, which names the divergence;
    numpy's "invalid value encountered in matmul" printed before that line."""
    import warnings
    x = rand((1, 2, 4, 4))
    x[0, 0, 1, 1], x[0, 1, 2, 2] = np.nan, np.inf
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)
        _, y = run(layer_net, {'zoom_factor': 2}, x)
    assert not np.isfinite(y[0, 0]).all() and not np.isfinite(y[0, 1]).all()   # (a GEMM spreads NaN along rows)
