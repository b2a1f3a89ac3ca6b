"""ROIPooling (max pooling with proposal-score weighting), in real caffe.Nets."""
import numpy as np
import pytest

from caffe_mlic.benchmarks.roi_pooling import naive_backward, naive_forward, random_rois
from caffe_mlic.caffe.params import LayerError
from tests import netutil

F32 = np.float32


def pooled_net(layer_net, feats, rois, **params):
    """A net around ROIPooling, inputs set and forward run; spatial_scale 1 unless given."""
    params.setdefault('spatial_scale', 1.0)
    params.setdefault('pooled_h', 1)
    params.setdefault('pooled_w', 1)
    feats, rois = np.asarray(feats, F32), np.asarray(rois, F32)
    net = layer_net('ROIPooling', params, [feats.shape, rois.shape])
    netutil.set_inputs(net, feats, rois)
    net.forward()
    return net


def backward(net, top_diff=None):
    """Bottom gradient for a top gradient (default: all ones)."""
    top = net.blobs['t0']
    net.backward(t0=np.ones(top.data.shape, F32) if top_diff is None else top_diff)
    return net.blobs['b0'].diff.copy()


def row_map(h, w, channels=1, images=1):
    """Features whose value at (n, c, y, x) is 1000n + 100c + 10y + x: a value names its place."""
    n, c, y, x = np.meshgrid(np.arange(images), np.arange(channels), np.arange(h), np.arange(w),
                             indexing='ij')
    return (1000 * n + 100 * c + 10 * y + x).astype(F32)


# ---- hand-computed forward cases -------------------------------------------------------------

def test_half_way_rounds_away_from_zero(layer_net):
    # x1 = 8, x2 = 40 at 1/16: 0.5 -> 1 and 2.5 -> 3 (numpy's half-to-even: 0 and 2).
    feats = row_map(1, 6)
    net = pooled_net(layer_net, feats, [[0, 8, 0, 40, 0, 1]], pooled_w=3, spatial_scale=1 / 16)
    np.testing.assert_array_equal(net.blobs['t0'].data.ravel(), [1, 2, 3])


def test_negative_half_way_rounds_away_from_zero(layer_net):
    # x1 = -8 -> round(-0.5) = -1, x2 = 8 -> 1: roi_w 3, the first bin is column -1: empty.
    # (Half-to-even would give start 0, end 0: all three bins column 0.)
    net = pooled_net(layer_net, row_map(1, 6) + 1, [[0, -8, 0, 8, 0, 1]],
                     pooled_w=3, spatial_scale=1 / 16)
    np.testing.assert_array_equal(net.blobs['t0'].data.ravel(), [0, 1, 2])


def test_scaled_corner_is_rounded_in_float32(layer_net):
    # float32(5 * float32(0.7)) is exactly 3.5 -> 4; in float64 it is 3.49999994 -> 3.
    net = pooled_net(layer_net, row_map(1, 8), [[0, 5, 0, 5, 0, 1]], spatial_scale=0.7)
    assert net.blobs['t0'].data.ravel().tolist() == [4]


def test_bins_overlap_and_cover_the_roi(layer_net):
    # roi rows 0..4 (roi_h 5) in 2 bins: bin_size 2.5 -> rows [0, 3) and [2, 5).
    # Columns 1..3 in 3 bins of 1.
    feats = row_map(5, 5)
    net = pooled_net(layer_net, feats, [[0, 1, 0, 3, 4, 1]], pooled_h=2, pooled_w=3)
    np.testing.assert_array_equal(net.blobs['t0'].data[0, 0], [[21, 22, 23], [41, 42, 43]])
    # Make row 2 the maximum: both bins of a column pick it, so its gradient is 2.
    feats[0, 0, 2] += 100
    netutil.set_inputs(net, feats)
    net.forward()
    np.testing.assert_array_equal(net.blobs['t0'].data[0, 0], [[121, 122, 123]] * 2)
    grad = backward(net)
    expected = np.zeros((5, 5), F32)
    expected[2, 1:4] = 2
    np.testing.assert_array_equal(grad[0, 0], expected)


def test_roi_partly_outside_is_clipped_and_empty_bins_give_zero(layer_net):
    # Columns 4..7 of a 6-wide map in 4 bins: columns 4, 5, then two empty bins.
    feats = row_map(2, 6) + 1
    net = pooled_net(layer_net, feats, [[0, 4, -1, 7, 1, 1]], pooled_h=1, pooled_w=4)
    np.testing.assert_array_equal(net.blobs['t0'].data.ravel(), [15, 16, 0, 0])
    grad = backward(net)
    expected = np.zeros((2, 6), F32)
    expected[1, 4:6] = 1
    np.testing.assert_array_equal(grad[0, 0], expected)


def test_roi_wholly_outside_gives_zeros_and_no_gradient(layer_net):
    net = pooled_net(layer_net, row_map(3, 4) + 1, [[0, 100, 100, 120, 130, 1]],
                     pooled_h=2, pooled_w=2)
    np.testing.assert_array_equal(net.blobs['t0'].data, np.zeros((1, 1, 2, 2)))
    assert not backward(net).any()


def test_ties_first_maximum_in_row_major_order_gets_the_gradient(layer_net):
    feats = np.array([[1, 3, 0],
                      [3, 2, 3],
                      [5, 5, 5]], F32)[None, None]
    rois = [[0, 0, 0, 2, 1, 1],   # rows 0..1: max 3 at (0,1), (1,0) and (1,2)
            [0, 0, 2, 2, 2, 1],   # row 2: all 5
            [0, 0, 0, 2, 2, 1]]   # whole map: 5 first at (2,0)
    net = pooled_net(layer_net, feats, rois)
    np.testing.assert_array_equal(net.blobs['t0'].data.ravel(), [3, 5, 5])
    grad = backward(net, np.array([1, 10, 100], F32).reshape(3, 1, 1, 1))
    np.testing.assert_array_equal(grad[0, 0], [[0, 1, 0], [0, 0, 0], [110, 0, 0]])


def test_all_equal_bin_routes_gradient_to_its_top_left(layer_net):
    net = pooled_net(layer_net, np.full((1, 2, 4, 4), 7, F32), [[0, 0, 0, 3, 3, 1]],
                     pooled_h=2, pooled_w=2)
    assert (net.blobs['t0'].data == 7).all()
    grad = backward(net)
    expected = np.zeros((4, 4), F32)
    expected[::2, ::2] = 1
    for c in range(2):
        np.testing.assert_array_equal(grad[0, c], expected)


def test_score_weighting_scales_outputs_and_gradients(layer_net):
    # WSDDN's 1 + 10 s: s = 0.5 -> 6; s = -0.25 -> -1.5.
    feats = row_map(2, 2, channels=2)
    rois = [[0, 0, 0, 1, 1, 0.5], [0, 0, 0, 0, 0, -0.25]]
    net = pooled_net(layer_net, feats, rois, score_scale=10, score_bias=1)
    np.testing.assert_array_equal(net.blobs['t0'].data.ravel(), [6 * 11, 6 * 111, -0.0, -1.5 * 100])
    grad = backward(net)
    np.testing.assert_array_equal(grad[0, :, 1, 1], [6, 6])
    np.testing.assert_array_equal(grad[0, :, 0, 0], [-1.5, -1.5])
    assert np.count_nonzero(grad) == 4


def test_default_weighting_is_the_score_itself(layer_net):
    net = pooled_net(layer_net, row_map(2, 2), [[0, 0, 0, 1, 1, 0.25]])
    assert net.blobs['t0'].data.item() == 11 * 0.25


def test_batch_index_selects_the_image_and_gradients_accumulate(layer_net):
    feats = row_map(3, 3, channels=2, images=3)
    rois = [[2, 0, 0, 1, 1, 1], [0, 1, 1, 2, 2, 1], [2, 0, 0, 1, 1, 1], [1, 0, 0, 0, 0, 1]]
    net = pooled_net(layer_net, feats, rois)
    np.testing.assert_array_equal(net.blobs['t0'].data[:, :, 0, 0],
                                  [[2011, 2111], [22, 122], [2011, 2111], [1000, 1100]])
    grad = backward(net)
    expected = np.zeros(feats.shape, F32)
    expected[2, :, 1, 1] = 2   # two rois on image 2
    expected[0, :, 2, 2] = 1
    expected[1, :, 0, 0] = 1
    np.testing.assert_array_equal(grad, expected)


def test_single_bin_is_the_roi_maximum(layer_net):
    rng = np.random.default_rng(3)
    feats = rng.standard_normal((1, 4, 6, 7)).astype(F32)
    net = pooled_net(layer_net, feats, [[0, 16, 32, 80, 64, 1]], spatial_scale=1 / 16)
    # columns round(1)=1 .. round(5)=5, rows 2 .. 4
    np.testing.assert_array_equal(net.blobs['t0'].data[0, :, 0, 0],
                                  feats[0, :, 2:5, 1:6].max(axis=(1, 2)))


def test_rois_as_4d_blob_and_zero_gradient_to_rois(layer_net):
    feats = row_map(3, 3)
    rois = np.array([[0, 0, 0, 2, 2, 1]], F32).reshape(1, 6, 1, 1)
    net = pooled_net(layer_net, feats, rois, pooled_h=2, pooled_w=2)
    assert net.blobs['t0'].data.shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(net.blobs['t0'].data[0, 0], [[11, 12], [21, 22]])
    net.blobs['b1'].diff[...] = 5
    backward(net)
    assert not net.blobs['b1'].diff.any()


# ---- against the naive reference, and numerically --------------------------------------------

def naive(feats, rois, ph, pw, scale, score_scale, score_bias, top_diff):
    out = np.empty((len(rois), feats.shape[1], ph, pw), F32)
    arg = np.empty((len(rois), feats.shape[1], ph * pw), np.int32)
    naive_forward(feats, rois, ph, pw, scale, score_scale, score_bias, out, arg)
    grad = np.empty_like(feats)
    naive_backward(top_diff, arg, rois, score_scale, score_bias, grad)
    return out, grad


@pytest.mark.parametrize('seed, ph, pw, scale', [(0, 3, 2, 1 / 16), (1, 7, 7, 0.25), (2, 1, 4, 1.0)])
def test_matches_naive_reference_exactly(layer_net, seed, ph, pw, scale):
    rng = np.random.default_rng(seed)
    N, C, H, W = 3, 5, 9, 11
    # Few distinct values (many ties) and -FLT_MAX. (NaN/inf stop the layer, see
    # test_non_finite_features_stop_the_net; the kernel-level tests cover them.)
    feats = rng.integers(-3, 4, (N, C, H, W)).astype(F32)
    lowest = np.finfo(F32).min
    feats.flat[rng.choice(feats.size, 6, replace=False)] = [lowest, lowest, -9, -9, 9, 9]
    R = 60
    span = int(max(H, W) / scale)
    corners = rng.integers(-span // 4, span + span // 4, (R, 4)).astype(F32)
    corners[::3] = np.round(corners[::3] / 8) * 8  # multiples of 8: half-way cases at 1/16
    corners[::7, 2:] = corners[::7, :2]            # one-cell (and reversed) rois
    rois = np.column_stack([rng.integers(0, N, R), corners, rng.random(R) - 0.2]).astype(F32)
    params = dict(pooled_h=ph, pooled_w=pw, spatial_scale=scale, score_scale=1.5, score_bias=0.5)
    net = pooled_net(layer_net, feats, rois, **params)
    top_diff = rng.standard_normal((R, C, ph, pw)).astype(F32)
    want_out, want_grad = naive(feats, rois, ph, pw, scale, 1.5, 0.5, top_diff)
    np.testing.assert_array_equal(net.blobs['t0'].data, want_out)
    np.testing.assert_array_equal(backward(net, top_diff), want_grad)


def test_matches_naive_reference_on_release_like_rois(layer_net):
    rng = np.random.default_rng(7)
    N, C, H, W = 2, 24, 42, 42
    feats = rng.standard_normal((N, C, H, W)).astype(F32)
    rois = random_rois(rng, N, 300, 672)
    net = pooled_net(layer_net, feats, rois, pooled_h=7, pooled_w=7, spatial_scale=1 / 16)
    top_diff = rng.standard_normal((len(rois), C, 7, 7)).astype(F32)
    want_out, want_grad = naive(feats, rois, 7, 7, 1 / 16, 1.0, 0.0, top_diff)
    np.testing.assert_array_equal(net.blobs['t0'].data, want_out)
    np.testing.assert_array_equal(backward(net, top_diff), want_grad)
    # A second pass (buffers reused) with new data gives the new answer.
    feats2 = -feats
    netutil.set_inputs(net, feats2)
    net.forward()
    want_out2, want_grad2 = naive(feats2, rois, 7, 7, 1 / 16, 1.0, 0.0, top_diff)
    np.testing.assert_array_equal(net.blobs['t0'].data, want_out2)
    np.testing.assert_array_equal(backward(net, top_diff), want_grad2)


def test_result_does_not_depend_on_the_thread_count():
    from caffe_mlic.layers.roi_pooling import RoiPoolingKernel
    rng = np.random.default_rng(11)
    feats = rng.standard_normal((2, 37, 13, 10)).astype(F32)
    rois = random_rois(rng, 2, 45, 224)
    top_diff = rng.standard_normal((len(rois), 37, 3, 3)).astype(F32)
    results = []
    for threads in (1, 2, 5):
        kernel = RoiPoolingKernel(3, 3, 1 / 16, 0.5, 0.25, threads=threads)
        out = kernel.forward(feats, rois, np.empty((len(rois), 37, 3, 3), F32))
        results.append((out, kernel.backward(top_diff, np.full_like(feats, np.nan))))
    for out, grad in results[1:]:
        np.testing.assert_array_equal(out, results[0][0])
        np.testing.assert_array_equal(grad, results[0][1])


def test_numerical_gradient(layer_net):
    rng = np.random.default_rng(5)
    shape = (2, 3, 8, 8)
    # Distinct values 0.1 apart: no tie or kink within the finite-difference step.
    feats = (rng.permutation(int(np.prod(shape))).reshape(shape) * 0.1).astype(F32)
    rois = np.array([[0, 0, 0, 7, 7, 0.9], [1, 8, 16, 100, 60, 0.3], [0, 20, 4, 40, 90, 0.6],
                     [1, -30, -20, 40, 40, 1.0], [0, 0, 0, 7, 7, 0.5]], F32)
    params = dict(pooled_h=3, pooled_w=2, spatial_scale=0.125, score_scale=2.0, score_bias=0.5)
    net = pooled_net(layer_net, feats, rois, **params)
    netutil.check_gradient(net, ['b0'], ['t0'])


# ---- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize('params, fragments', [
    ({'pooled_w': 7}, ["required parameter 'pooled_h' is missing"]),
    ({'pooled_h': 7}, ["required parameter 'pooled_w' is missing"]),
    ({'pooled_h': 7, 'pooled_w': 0}, ["'pooled_w'", '>= 1', 'got 0']),
    ({'pooled_h': 2.5, 'pooled_w': 7}, ["'pooled_h'", 'an integer']),
    ({'pooled_h': 7, 'pooled_w': 7, 'spatial_scale': 0}, ["'spatial_scale'", '> 0']),
    ({'pooled_h': 7, 'pooled_w': 7, 'spatial_scale': -0.0625}, ["'spatial_scale'", '> 0']),
    ({'pooled_h': 7, 'pooled_w': 7, 'pooled_size': 7}, ["unknown parameter 'pooled_size'"]),
])
def test_bad_params(layer_net, params, fragments):
    with pytest.raises(LayerError) as e:
        layer_net('ROIPooling', params, [(1, 2, 4, 4), (1, 6)])
    # the pre-check names the file and the layer instance, then the layer's own message
    assert "layer 'layer': ROIPooling: " in str(e.value)
    for f in fragments:
        assert f in str(e.value)


@pytest.mark.parametrize('rois_shape', [(3, 5), (3, 7), (18,), (3, 6, 2, 1), (1, 3, 6)])
def test_rois_of_the_wrong_shape(layer_net, rois_shape):
    with pytest.raises(LayerError, match=r'ROIPooling: rois must be \(R, 6\).*got shape'):
        layer_net('ROIPooling', {'pooled_h': 2, 'pooled_w': 2}, [(1, 2, 4, 4), rois_shape])


def test_features_not_4d(layer_net):
    with pytest.raises(LayerError, match=r'ROIPooling: features must be 4-D'):
        layer_net('ROIPooling', {'pooled_h': 2, 'pooled_w': 2}, [(2, 16), (3, 6)])


@pytest.mark.parametrize('bad_row, fragment', [
    ([2, 0, 0, 3, 3, 1], 'batch index 2.0 is not an integer in [0, 2)'),
    ([-1, 0, 0, 3, 3, 1], 'batch index -1.0 is not an integer in [0, 2)'),
    ([0.5, 0, 0, 3, 3, 1], 'batch index 0.5 is not an integer'),
    ([np.nan, 0, 0, 3, 3, 1], 'batch index nan'),
    ([1, 0, np.nan, 3, 3, 1], 'non-finite value'),
    ([1, 0, 0, np.inf, 3, 1], 'non-finite value'),
    ([1, 0, 0, 3, 3, np.nan], 'non-finite value'),
])
def test_bad_roi_rows_are_named(layer_net, bad_row, fragment):
    net = layer_net('ROIPooling', {'pooled_h': 2, 'pooled_w': 2, 'spatial_scale': 1.0},
                    [(2, 1, 4, 4), (3, 6)])
    rois = np.array([[0, 0, 0, 3, 3, 1], [1, 1, 1, 2, 2, 1], bad_row], F32)
    netutil.set_inputs(net, np.zeros((2, 1, 4, 4), F32), rois)
    with pytest.raises(LayerError) as e:
        net.forward()
    assert str(e.value).startswith('ROIPooling: roi row 2: ')
    assert fragment in str(e.value)


# ---- the kernel on its own: bins, channel blocks, threads, buffers ------------------------------

def numpy_bins(rois, ph, pw, scale, height, width):
    """The bin boundaries in plain numpy float32 (C round of coord * scale, floor/ceil of
    ph * roi_h / P): the reference for roi_bins."""
    scaled = rois[:, 1:5].astype(F32) * F32(scale)
    with np.errstate(invalid='ignore'):
        rounded = np.copysign(np.floor(np.abs(scaled.astype(np.float64)) + 0.5), scaled)
    corners = np.clip(rounded, -2.0 ** 30, 2.0 ** 30).astype(np.int64)
    x1, y1, x2, y2 = corners.T
    out = []
    for start, end, pooled, limit in ((y1, y2, ph, height), (x1, x2, pw, width)):
        size = np.maximum(end - start + 1, 1)
        bin_size = size.astype(F32) / F32(pooled)
        lo = np.floor(np.arange(pooled, dtype=F32)[None, :] * bin_size[:, None])
        hi = np.ceil(np.arange(1, pooled + 1, dtype=F32)[None, :] * bin_size[:, None])
        for b in (lo, hi):
            out.append(np.clip(b.astype(np.int64) + start[:, None], 0, limit).astype(np.int32))
    return out


@pytest.mark.parametrize('scale', [1 / 16, 0.7, 0.125, 1.0, 2.0, 4.0])
def test_roi_bins_match_the_numpy_float32_arithmetic(scale):
    from caffe_mlic.layers.roi_pooling import roi_bins
    rng = np.random.default_rng(17)
    corners = np.concatenate([
        rng.integers(-200, 1000, (300, 4)).astype(F32),
        np.round(rng.integers(-400, 1000, (100, 4)) / 8) * 8,   # half-way cases at 1/16
        rng.uniform(-50, 900, (100, 4)).astype(F32),            # fractional corners
        np.array([[-3e38, -1e30, 3e38, 1e30], [1e9, 1e9, 1e9, 1e9], [-1e9, 0, 5, 5],
                  [0, 0, -8, -8], [2.5, 3.5, -2.5, -3.5]], F32),  # far out, reversed
    ]).astype(F32)
    rois = np.column_stack([np.zeros(len(corners)), corners, np.ones(len(corners))]).astype(F32)
    for ph, pw, height, width in [(7, 7, 14, 14), (3, 5, 42, 9), (1, 2, 1, 1)]:
        with np.errstate(over='ignore'):
            want = numpy_bins(rois, ph, pw, scale, height, width)
        for got, exp in zip(roi_bins(rois, ph, pw, scale, height, width), want):
            np.testing.assert_array_equal(got, exp)


def tricky_features(rng, shape):
    """Small integers (ties), and NaN, -inf, -FLT_MAX, -0.0 and +0.0 scattered about."""
    feats = rng.integers(-2, 3, shape).astype(F32)
    specials = np.array([np.nan, -np.inf, -np.finfo(F32).max, -0.0, 0.0, np.inf], F32)
    where = rng.choice(feats.size, min(feats.size, 4 * len(specials)), replace=False)
    feats.flat[where] = np.resize(specials, len(where))
    return feats


def kernel_vs_naive(kernel, feats, rois, ph, pw, scale, score_scale, score_bias, rng):
    out = np.full((len(rois), feats.shape[1], ph, pw), np.nan, F32)
    top_diff = rng.standard_normal(out.shape).astype(F32)
    kernel.forward(feats, rois, out)
    grad = kernel.backward(top_diff, np.full_like(feats, np.nan))
    want_out, want_grad = naive(feats, rois, ph, pw, scale, score_scale, score_bias, top_diff)
    # bit patterns: -0.0 and +0.0 (an empty bin's 0 * a negative factor) must match too
    np.testing.assert_array_equal(out.view(np.int32), want_out.view(np.int32))
    np.testing.assert_array_equal(grad.view(np.int32), want_grad.view(np.int32))


@pytest.mark.parametrize('channels', [1, 3, 7, 8, 9, 15, 16, 17, 24, 31, 33, 40])
def test_every_channel_count_matches_naive_reference_bitwise(channels):
    # 16 channels are pooled at a time, then 8, then one by one: every mix of those.
    from caffe_mlic.layers.roi_pooling import RoiPoolingKernel
    rng = np.random.default_rng(channels)
    N, H, W = 2, 7, 9
    feats = tricky_features(rng, (N, channels, H, W))
    R = 40
    corners = rng.integers(-40, 200, (R, 4)).astype(F32)   # partly outside: empty bins
    corners[::5, 2:] = corners[::5, :2] - 16                 # reversed: a one-cell roi
    scores = rng.random(R) * 2 - 0.5                         # some factors negative
    rois = np.column_stack([rng.integers(0, N, R), corners, scores]).astype(F32)
    kernel = RoiPoolingKernel(3, 4, 1 / 16, 1.5, -0.25)
    kernel_vs_naive(kernel, feats, rois, 3, 4, 1 / 16, 1.5, -0.25, rng)


def test_threads_give_the_same_bits_as_one(monkeypatch):
    from caffe_mlic.layers import roi_pooling
    monkeypatch.setattr(roi_pooling, 'MIN_PARALLEL_OUTPUTS', 0)  # threads even for this size
    rng = np.random.default_rng(23)
    feats = tricky_features(rng, (3, 37, 11, 10))
    rois = np.concatenate([random_rois(rng, 3, 30, 176), random_rois(rng, 3, 5, 60)])
    for threads in (1, 2, 3, 7):
        kernel = roi_pooling.RoiPoolingKernel(4, 3, 1 / 16, 2.0, 0.5, threads=threads)
        kernel_vs_naive(kernel, feats, rois, 4, 3, 1 / 16, 2.0, 0.5, rng)


def test_one_kernel_follows_changing_shapes():
    # The kernel keeps its buffers between calls; they must follow every shape change.
    from caffe_mlic.layers.roi_pooling import RoiPoolingKernel
    rng = np.random.default_rng(29)
    kernel = RoiPoolingKernel(2, 3, 0.25)
    for N, C, H, W, per_image in [(2, 16, 6, 7, 20), (2, 16, 6, 7, 3), (1, 21, 5, 5, 9),
                                  (3, 8, 9, 4, 4), (2, 16, 6, 7, 20)]:
        feats = tricky_features(rng, (N, C, H, W))
        rois = random_rois(rng, N, per_image, 4 * max(H, W), min_side=2)
        kernel_vs_naive(kernel, feats, rois, 2, 3, 0.25, 1.0, 0.0, rng)


def test_roi_check_is_the_same_on_every_path():
    # roi_problem has a numba fast path for float32 (R, 6) rois, and the kernel checks the
    # rois in its first pass: both must agree with the numpy check on other dtypes.
    from caffe_mlic.layers.roi_pooling import RoiError, RoiPoolingKernel, roi_problem
    good = np.array([[0, 0, 0, 3, 3, 1], [1, 1, 1, 2, 2, 0.5]], F32)
    assert roi_problem(good, 2) is None and roi_problem(good.astype(np.float64), 2) is None
    kernel = RoiPoolingKernel(2, 2, 1.0)
    for bad_row in ([2, 0, 0, 3, 3, 1], [-1, 0, 0, 3, 3, 1], [0.5, 0, 0, 3, 3, 1],
                    [np.nan, 0, 0, 3, 3, 1], [np.inf, 0, 0, 3, 3, 1], [1, np.nan, 0, 3, 3, 1],
                    [1, 0, 0, 3, -np.inf, 1], [1, 0, 0, 3, 3, np.inf]):
        rois = np.vstack([good, [bad_row], good]).astype(F32)
        problem = roi_problem(rois, 2)
        assert problem is not None and problem[0] == 2
        assert roi_problem(rois.astype(np.float64), 2) == problem
        out = np.full((5, 1, 2, 2), 7, F32)
        with pytest.raises(RoiError) as e:
            kernel.forward(np.zeros((2, 1, 4, 4), F32), rois, out)
        assert (e.value.row, e.value.message) == problem
        assert (out == 7).all()  # nothing written


@pytest.mark.parametrize('bad', [np.nan, np.inf])
def test_non_finite_features_stop_the_net(layer_net, bad):
    feats = np.ones((1, 2, 4, 4), F32)
    feats[0, 1, 2, 3] = bad
    net = layer_net('ROIPooling', dict(pooled_h=2, pooled_w=2, spatial_scale=1.0), [feats.shape, (1, 6)])
    netutil.set_inputs(net, feats, np.array([[0, 0, 0, 3, 3, 1]], F32))
    with pytest.raises(LayerError, match='ROIPooling: the features contain NaN or inf: training diverged'):
        net.forward()
