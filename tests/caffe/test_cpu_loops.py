"""The stock layers whose CPU loops our build rewrites for speed
(tools/caffe-patches/0004-cpu-speed.patch): max pooling, ReLU, and the
im2col / col2im under every convolution. Each is compared with a numpy
reference: bit for bit where the arithmetic is the same (pooling picks,
ReLU), to float32 rounding for the convolutions (BLAS sums in its own
order), over the edge cases the new code paths split on: ties, NaN, -0,
windows and dilated taps partly or wholly in the padding, stride 1 and 2."""
import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings('ignore:invalid value encountered in multiply:RuntimeWarning')

FLT_MAX = np.float32(3.4028234663852886e38)


def build(caffe, tmp_path, layers, shape):
    path = tmp_path / 'net.prototxt'
    path.write_text('force_backward: true\ninput: "x"\ninput_shape { %s }\n%s'
                    % (' '.join('dim: %d' % d for d in shape), layers))
    return caffe.Net(str(path), caffe.TEST)


def pool_reference(x, kernel, stride, pad, out_h, out_w):
    """Caffe's max pooling as its original loop reads: each window clipped
    to the image, scanned row by row, the first element greater than the
    running maximum (from -FLT_MAX) wins."""
    n, c, h, w = x.shape
    top = np.full((n, c, out_h, out_w), -FLT_MAX, np.float32)
    mask = np.full((n, c, out_h, out_w), -1, np.int64)
    for ph in range(out_h):
        for pw in range(out_w):
            h0, w0 = ph * stride - pad, pw * stride - pad
            for y in range(max(h0, 0), min(h0 + kernel, h)):
                for xx in range(max(w0, 0), min(w0 + kernel, w)):
                    v = x[:, :, y, xx]
                    greater = v > top[:, :, ph, pw]
                    top[:, :, ph, pw] = np.where(greater, v, top[:, :, ph, pw])
                    mask[:, :, ph, pw] = np.where(greater, y * w + xx, mask[:, :, ph, pw])
    return top, mask


@pytest.mark.parametrize('kernel, stride, pad, size', [(3, 2, 1, (13, 10)), (2, 2, 0, (9, 8)),
                                                       (3, 1, 1, (7, 6)), (5, 3, 2, (11, 17))])
def test_max_pooling_picks_the_first_maximum_of_each_window_bit_for_bit(caffe, tmp_path, kernel, stride, pad,
                                                                         size):
    rng = np.random.RandomState(kernel * 10 + stride)
    x = (np.round(rng.randn(2, 3, *size) * 2) / 2).astype(np.float32)      # many ties
    x[0, 0, 1, 1] = np.nan          # skipped: never greater
    x[1, 2, 0, :] = -FLT_MAX        # equal to the start value: never greater either
    net = build(caffe, tmp_path, 'layer { name: "p" type: "Pooling" bottom: "x" top: "p" top: "m" pooling_param '
                '{ pool: MAX kernel_size: %d stride: %d pad: %d } }' % (kernel, stride, pad), x.shape)
    net.blobs['x'].data[...] = x
    net.forward()
    top, mask = pool_reference(x, kernel, stride, pad, *net.blobs['p'].data.shape[2:])
    assert net.blobs['p'].data.tobytes() == top.tobytes()
    assert np.array_equal(net.blobs['m'].data, mask)
    diff = rng.randn(*top.shape).astype(np.float32)
    net.blobs['p'].diff[...] = diff
    net.backward()
    expected = np.zeros(x.shape, np.float32).reshape(2, 3, -1)
    flat_mask, flat_diff = mask.reshape(2, 3, -1), diff.reshape(2, 3, -1)
    assert (flat_mask >= 0).all()
    for i in range(2):
        for ch in range(3):
            np.add.at(expected[i, ch], flat_mask[i, ch], flat_diff[i, ch])     # in output order, as Caffe
    assert net.blobs['x'].diff.tobytes() == expected.reshape(x.shape).tobytes()


@pytest.mark.parametrize('slope', [0.0, 0.1, -0.3])
@pytest.mark.parametrize('in_place', [True, False])
def test_relu_forward_and_backward_bit_for_bit(caffe, tmp_path, slope, in_place):
    rng = np.random.RandomState(7)
    x = rng.randn(2, 3, 9, 11).astype(np.float32)
    x.flat[:6] = [np.nan, -0.0, 0.0, np.inf, -np.inf, 1e-45]
    top = 'x' if in_place else 'r'
    net = build(caffe, tmp_path, 'layer { name: "r" type: "ReLU" bottom: "x" top: "%s" relu_param '
                '{ negative_slope: %r } }\nlayer { name: "s" type: "Scale" bottom: "%s" top: "s" '
                'scale_param { bias_term: false } }' % (top, slope, top), x.shape)
    net.params['s'][0].data[...] = 1
    net.blobs['x'].data[...] = x
    net.forward()
    s = np.float32(slope)
    # std::max(v, 0) and std::min(v, 0) as the C++ library defines them (NaN and -0 kept)
    expected = np.where(x < 0, np.float32(0), x) + s * np.where(np.float32(0) < x, np.float32(0), x)
    assert net.blobs[top].data.tobytes() == expected.astype(np.float32).tobytes()
    diff = rng.randn(*x.shape).astype(np.float32)
    diff.flat[6:8] = [np.inf, np.nan]
    net.blobs['s'].diff[...] = diff
    net.backward()
    seen = expected if in_place else x      # (in place, backward reads the forward's output)
    gate = (seen > 0).astype(np.float32) + s * (seen <= 0).astype(np.float32)
    assert net.blobs['x'].diff.tobytes() == (diff * gate).astype(np.float32).tobytes()


def conv_reference(x, weight, bias, stride, pad, dilation, top_diff):
    """Forward output, bottom diff and weight diff of a convolution, in
    float64 from shifted views of the zero-padded input."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, pad, dilation
    xp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + w] = x
    out_h = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    out_w = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    top = np.zeros((n, o, out_h, out_w)) + bias.reshape(1, -1, 1, 1)
    dxp = np.zeros_like(xp)
    dweight = np.zeros(weight.shape)
    for ky in range(kh):
        for kx in range(kw):
            ys = slice(ky * dh, ky * dh + sh * (out_h - 1) + 1, sh)
            xs = slice(kx * dw, kx * dw + sw * (out_w - 1) + 1, sw)
            patch = xp[:, :, ys, xs]
            top += np.einsum('ncyx,oc->noyx', patch, weight[:, :, ky, kx])
            dxp[:, :, ys, xs] += np.einsum('noyx,oc->ncyx', top_diff, weight[:, :, ky, kx])
            dweight[:, :, ky, kx] = np.einsum('noyx,ncyx->oc', top_diff, patch)
    return top, dxp[:, :, ph:ph + h, pw:pw + w], dweight


@pytest.mark.parametrize('kernel, pad, dilation, stride', [
    ((3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 3), (2, 2), (2, 2), (1, 1)),
    ((3, 3), (0, 0), (1, 1), (1, 1)),
    ((3, 3), (6, 6), (6, 6), (1, 1)),         # taps past both edges of a 13 x 11 map
    ((3, 3), (30, 30), (24, 24), (1, 1)),     # every off-centre tap in the padding
    ((1, 3), (0, 4), (1, 3), (1, 1)),
    ((3, 3), (1, 1), (1, 1), (2, 2)),         # stride 2: the per-element loop
    ((3, 3), (3, 1), (2, 1), (1, 2)),
])
def test_convolution_im2col_and_col2im_over_paddings_dilations_and_strides(caffe, tmp_path, kernel, pad, dilation,
                                                                            stride):
    rng = np.random.RandomState(sum(kernel + pad + dilation + stride))
    x = rng.randn(2, 3, 13, 11).astype(np.float32)
    net = build(caffe, tmp_path, 'layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param '
                '{ num_output: 4 kernel_h: %d kernel_w: %d pad_h: %d pad_w: %d dilation: %d dilation: %d '
                'stride_h: %d stride_w: %d } }' % (kernel + pad + dilation + stride), x.shape)
    weight = rng.randn(4, 3, *kernel).astype(np.float32)
    bias = rng.randn(4).astype(np.float32)
    net.params['c'][0].data[...] = weight
    net.params['c'][1].data[...] = bias
    net.blobs['x'].data[...] = x
    net.forward()
    diff = rng.randn(*net.blobs['c'].data.shape).astype(np.float32)
    top, dx, dweight = conv_reference(x.astype(np.float64), weight.astype(np.float64), bias, stride, pad, dilation,
                                      diff.astype(np.float64))
    assert net.blobs['c'].data.shape == top.shape
    np.testing.assert_allclose(net.blobs['c'].data, top, rtol=1e-5, atol=1e-4)
    net.blobs['c'].diff[...] = diff
    net.backward()
    np.testing.assert_allclose(net.blobs['x'].diff, dx, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(net.params['c'][0].diff, dweight, rtol=1e-5, atol=1e-4)
