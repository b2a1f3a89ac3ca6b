"""ROIPooling forward+backward: ours against a straightforward numba version.

The naive reference below is the textbook port of the original loops (for
each roi, channel, bin: scan the bin in NCHW, track max and argmax; backward
scatters into the bottom gradient). It is the benchmark's baseline and the
tests' cross-check: it must agree with the layer exactly.

Both sides are timed on preallocated outputs, after a warm-up call (so JIT
compilation is excluded), as the best of several repeats. Ours includes all
its per-call work: roi validation, bin precomputation, the NCHW -> NHWC
transpose, zeroing.
"""
import math

import numpy as np
from numba import njit

from caffe_mlic.benchmarks import best_time

FLT_MAX = np.float32(np.finfo(np.float32).max)


@njit(cache=True, nogil=True)
def _c_round(v):
    # C round(): half away from zero (Python's round() is half-to-even).
    x = np.float64(v)
    a = math.floor(abs(x) + 0.5)
    a = min(a, float(1 << 30))  # the layer's clamp, see COORD_LIMIT
    return np.int64(-a if x < 0 else a)


@njit(cache=True, nogil=True)
def naive_forward(features, rois, pooled_h, pooled_w, spatial_scale, score_scale, score_bias,
                  out, argmax):
    """out (R,C,PH,PW) float32 and argmax (R,C,PH*PW) int32 (index in the H*W plane, -1 none)."""
    N, C, H, W = features.shape
    R = rois.shape[0]
    ss = np.float32(spatial_scale)
    for r in range(R):
        n = np.int64(rois[r, 0])
        start_w = _c_round(rois[r, 1] * ss)
        start_h = _c_round(rois[r, 2] * ss)
        end_w = _c_round(rois[r, 3] * ss)
        end_h = _c_round(rois[r, 4] * ss)
        roi_h = max(end_h - start_h + 1, 1)
        roi_w = max(end_w - start_w + 1, 1)
        bin_h = np.float32(roi_h) / np.float32(pooled_h)
        bin_w = np.float32(roi_w) / np.float32(pooled_w)
        f = rois[r, 5] * np.float32(score_scale) + np.float32(score_bias)
        for c in range(C):
            for ph in range(pooled_h):
                hs = min(max(math.floor(np.float32(ph) * bin_h) + start_h, 0), H)
                he = min(max(math.ceil(np.float32(ph + 1) * bin_h) + start_h, 0), H)
                for pw in range(pooled_w):
                    ws = min(max(math.floor(np.float32(pw) * bin_w) + start_w, 0), W)
                    we = min(max(math.ceil(np.float32(pw + 1) * bin_w) + start_w, 0), W)
                    best = np.float32(0) if (he <= hs or we <= ws) else -FLT_MAX
                    arg = -1
                    for h in range(hs, he):
                        for w in range(ws, we):
                            v = features[n, c, h, w]
                            if v > best:
                                best = v
                                arg = h * W + w
                    out[r, c, ph, pw] = best * f
                    argmax[r, c, ph * pooled_w + pw] = arg


@njit(cache=True, nogil=True)
def naive_backward(top_diff, argmax, rois, score_scale, score_bias, bottom_diff):
    """bottom_diff (N,C,H,W) = scatter of top_diff * factor onto the argmax elements."""
    N, C, H, W = bottom_diff.shape
    R = top_diff.shape[0]
    PH, PW = top_diff.shape[2], top_diff.shape[3]
    bottom_diff[...] = 0
    flat = bottom_diff.reshape(N, C, H * W)  # a view: argmax indexes the H*W plane
    for r in range(R):
        n = np.int64(rois[r, 0])
        f = rois[r, 5] * np.float32(score_scale) + np.float32(score_bias)
        for c in range(C):
            for ph in range(PH):
                for pw in range(PW):
                    i = argmax[r, c, ph * PW + pw]
                    if i >= 0:
                        flat[n, c, i] += top_diff[r, c, ph, pw] * f


def random_rois(rng, num_images, per_image, image_size, min_side=16):
    """Proposal-like boxes: corners in pixels, 0-based inclusive, inside the image."""
    R = num_images * per_image
    x1 = rng.integers(0, image_size - min_side, R)
    y1 = rng.integers(0, image_size - min_side, R)
    w = rng.integers(min_side, image_size, R)
    h = rng.integers(min_side, image_size, R)
    x2 = np.minimum(x1 + w, image_size - 1)
    y2 = np.minimum(y1 + h, image_size - 1)
    rois = np.stack([np.repeat(np.arange(num_images), per_image), x1, y1, x2, y2,
                     rng.random(R)], axis=1)
    return rois.astype(np.float32)




def run(report, quick):
    from caffe_mlic.layers.roi_pooling import RoiPoolingKernel, roi_problem

    if quick:
        N, C, H, W, per_image, image, repeats = 2, 64, 21, 21, 100, 336, 3
    else:  # the release: VGG16 conv5_3 of a 672 px image, 500 proposals per image
        N, C, H, W, per_image, image, repeats = 2, 512, 42, 42, 500, 672, 5
    P, scale = 7, 1.0 / 16
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((N, C, H, W)).astype(np.float32)
    rois = random_rois(rng, N, per_image, image)
    R = rois.shape[0]
    top_diff = rng.standard_normal((R, C, P, P)).astype(np.float32)

    naive_out = np.empty((R, C, P, P), np.float32)
    naive_arg = np.empty((R, C, P * P), np.int32)
    naive_diff = np.empty_like(feats)
    ours_out = np.empty_like(naive_out)
    ours_diff = np.empty_like(feats)
    kernel = RoiPoolingKernel(P, P, scale)

    def naive_fwd():
        naive_forward(feats, rois, P, P, scale, 1.0, 0.0, naive_out, naive_arg)

    def naive_bwd():
        naive_backward(top_diff, naive_arg, rois, 1.0, 0.0, naive_diff)

    def ours_fwd():  # as the layer's forward: validation included
        assert roi_problem(rois, N) is None
        kernel.forward(feats, rois, ours_out)

    def ours_bwd():
        kernel.backward(top_diff, ours_diff)

    t_nf, t_nb = best_time(naive_fwd, repeats), best_time(naive_bwd, repeats)
    t_of, t_ob = best_time(ours_fwd, repeats), best_time(ours_bwd, repeats)
    if not (np.array_equal(naive_out, ours_out) and np.array_equal(naive_diff, ours_diff)):
        raise AssertionError('ROIPooling disagrees with the naive reference')

    shape = '%dx%dx%dx%d, %d rois, %dx%d' % (N, C, H, W, R, P, P)
    report('roi_pooling fwd+bwd ours/naive (%s)' % shape, (t_of + t_ob) / (t_nf + t_nb), '<= 0.5')
    report('  forward ours/naive', t_of / t_nf)
    report('  backward ours/naive', t_ob / t_nb)
    report('  naive fwd+bwd', (t_nf + t_nb) * 1e3, unit='ms')
    report('  ours fwd+bwd (%d threads)' % kernel.threads, (t_of + t_ob) * 1e3, unit='ms')
    if kernel.threads > 1:
        single = RoiPoolingKernel(P, P, scale, threads=1)
        t1 = (best_time(lambda: single.forward(feats, rois, ours_out), repeats)
              + best_time(lambda: single.backward(top_diff, ours_diff), repeats))
        report('  ours/naive on 1 thread', t1 / (t_nf + t_nb))
