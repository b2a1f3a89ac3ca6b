"""ROIPooling (SPEC.md "ROIPooling with proposal-score weighting"), in real caffe.Nets."""
import numpy as np
import pytest

from caffe_mlic.benchmarks.roi_pooling import naive_backward, naive_forward, random_rois
from caffe_mlic.params import ParamError
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
    # Few distinct values (many ties), a NaN (never the maximum) and -inf.
    feats = rng.integers(-3, 4, (N, C, H, W)).astype(F32)
    feats.flat[rng.choice(feats.size, 6, replace=False)] = [np.nan, np.nan, -np.inf, -np.inf, 9, 9]
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
    with pytest.raises(ParamError) as e:
        layer_net('ROIPooling', params, [(1, 2, 4, 4), (1, 6)])
    assert str(e.value).startswith('ROIPooling: ')
    for f in fragments:
        assert f in str(e.value)


@pytest.mark.parametrize('rois_shape', [(3, 5), (3, 7), (18,), (3, 6, 2, 1), (1, 3, 6)])
def test_rois_of_the_wrong_shape(layer_net, rois_shape):
    with pytest.raises(ParamError, match=r'ROIPooling: rois must be \(R, 6\).*got shape'):
        layer_net('ROIPooling', {'pooled_h': 2, 'pooled_w': 2}, [(1, 2, 4, 4), rois_shape])


def test_features_not_4d(layer_net):
    with pytest.raises(ParamError, match=r'ROIPooling: features must be 4-D'):
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
    with pytest.raises(ParamError) as e:
        net.forward()
    assert str(e.value).startswith('ROIPooling: roi row 2: ')
    assert fragment in str(e.value)
