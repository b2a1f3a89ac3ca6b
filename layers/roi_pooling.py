"""ROIPooling: Fast R-CNN max pooling with proposal-score weighting (SPEC.md).

The arithmetic follows the original C++ exactly (float32 where it used Dtype),
so results match it bit for bit:

- start/end = C round (half away from zero) of float32(coord * spatial_scale);
- roi_h = max(end_h - start_h + 1, 1), bin_size_h = float32(roi_h) / float32(PH);
- bin rows [floor(ph * bin_size_h), ceil((ph + 1) * bin_size_h)) + start_h,
  clipped to [0, H]; columns likewise;
- max over the bin starting from -FLT_MAX with a strict `>` (so the first
  maximum in row-major order wins, NaNs are skipped); an empty bin gives 0;
- every output of roi r is then multiplied by score_scale * s_r + score_bias.

Speed: the bin boundaries are computed once for all rois with numpy, the
features are transposed to (N, H, W, C) so that the innermost loop runs over
contiguous channels (max + argmax as selects, which LLVM vectorises), and rois
are spread over the cores. Backward is split over channels, so that no two
threads ever add into the same bottom element and the accumulation order (roi
by roi, bin by bin) is the same as a plain serial loop.
"""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from caffe_mlic.params import Param
from .base import MlicLayer

FLT_MAX = np.float32(np.finfo(np.float32).max)
# Rounded corners are clamped here before going to integers: far outside any
# feature map, and small enough that end - start + 1 cannot overflow.
COORD_LIMIT = float(1 << 30)


def round_half_away(x):
    """C's round() of float32 values, as float64 (numpy's round is half-to-even).

    In float64, |x| + 0.5 is exact for every float32 x that matters (a float32
    just below .5 is at least 2**-25 below it), so floor gives C's answer.
    """
    x = np.asarray(x, np.float64)
    return np.copysign(np.floor(np.abs(x) + 0.5), x)


def roi_bins(rois, pooled_h, pooled_w, spatial_scale, height, width):
    """Clipped bin boundaries of every roi, vectorised over rois.

    rois: (R, >=5) float32 (batch index, x1, y1, x2, y2, ...).
    Returns hstart, hend (R, PH) and wstart, wend (R, PW), int32.
    """
    scaled = rois[:, 1:5].astype(np.float32) * np.float32(spatial_scale)  # float32, as Dtype
    corners = np.clip(round_half_away(scaled), -COORD_LIMIT, COORD_LIMIT).astype(np.int64)
    x1, y1, x2, y2 = corners.T
    out = []
    for start, end, pooled, limit in ((y1, y2, pooled_h, height), (x1, x2, pooled_w, width)):
        size = np.maximum(end - start + 1, 1)
        bin_size = size.astype(np.float32) / np.float32(pooled)
        lo = np.floor(np.arange(pooled, dtype=np.float32)[None, :] * bin_size[:, None])
        hi = np.ceil(np.arange(1, pooled + 1, dtype=np.float32)[None, :] * bin_size[:, None])
        for b in (lo, hi):
            out.append(np.clip(b.astype(np.int64) + start[:, None], 0, limit).astype(np.int32))
    return out


def roi_factors(rois, score_scale, score_bias):
    """score_scale * s + score_bias per roi, in float32."""
    return rois[:, 5].astype(np.float32) * np.float32(score_scale) + np.float32(score_bias)


def roi_problem(rois, num_images):
    """None, or (row, message) for the first roi the layer cannot pool."""
    b = rois[:, 0].astype(np.float64)
    bad = ~(np.isfinite(b) & (b == np.floor(b)) & (b >= 0) & (b < num_images))
    bad_values = ~np.isfinite(rois[:, 1:6]).all(axis=1)
    rows = np.flatnonzero(bad | bad_values)
    if rows.size == 0:
        return None
    r = int(rows[0])
    if bad[r]:
        return r, ('batch index %r is not an integer in [0, %d) (the features have %d image(s))'
                   % (float(rois[r, 0]), num_images, num_images))
    return r, ('non-finite value in (x1, y1, x2, y2, score) = %s'
               % (tuple(float(v) for v in rois[r, 1:6]),))


@njit(cache=True, nogil=True)
def _bin_update(row, m, a, idx):
    # One feature-map position, all channels: running max and its argmax as
    # selects. Kept as its own small loop over m's length so that LLVM
    # vectorises it (written inline in the kernel below, it did not).
    for c in range(m.shape[0]):
        v = row[c]
        gt = v > m[c]
        m[c] = v if gt else m[c]
        a[c] = idx if gt else a[c]


@njit(cache=True, nogil=True)
def _forward_kernel(feat_nhwc, bidx, hstart, hend, wstart, wend, factors, out, argmax, r0, r1):
    """Rois r0..r1-1 into out, argmax (R, C, PH*PW); argmax is h*W + w in the plane, -1 none."""
    C, P = out.shape[1], out.shape[2]
    PH, PW = hstart.shape[1], wstart.shape[1]
    W = feat_nhwc.shape[2]
    for r in range(r0, r1):
        n = bidx[r]
        # The roi's bins are built channel-last in these (L2-sized) buffers,
        # then transposed into out[r] in one go: far cheaper than writing
        # out[r, c, bin] with a stride of P for every bin.
        m = np.empty((P, C), np.float32)
        a = np.empty((P, C), np.int32)
        for ph in range(PH):
            h0, h1 = hstart[r, ph], hend[r, ph]
            for pw in range(PW):
                w0, w1 = wstart[r, pw], wend[r, pw]
                k = ph * PW + pw
                mk, ak = m[k], a[k]
                # As the original: an empty bin gives 0, otherwise start below
                # every real value except -FLT_MAX itself (and NaN).
                mk[:] = np.float32(0) if (h1 <= h0 or w1 <= w0) else -FLT_MAX
                ak[:] = -1
                for h in range(h0, h1):
                    for w in range(w0, w1):
                        _bin_update(feat_nhwc[n, h, w], mk, ak, np.int32(h * W + w))
        f = factors[r]
        out_r, arg_r = out[r], argmax[r]
        for c in range(C):
            for k in range(P):
                out_r[c, k] = m[k, c] * f
                arg_r[c, k] = a[k, c]


CHANNEL_BLOCK = 16


@njit(cache=True, nogil=True)
def _backward_kernel(top_diff, argmax, bidx, factors, bottom_diff, c0, c1):
    """Channels c0..c1-1 of bottom_diff (N, C, H*W): zero, then add top_diff * factor
    at the argmax of every roi and bin, in that order (roi, then bin).

    Sub-blocks of CHANNEL_BLOCK channels walk all rois in order: top_diff and
    argmax are read in contiguous runs while the block's planes stay in cache.
    """
    R, P = argmax.shape[0], argmax.shape[2]
    N = bottom_diff.shape[0]
    for b0 in range(c0, c1, CHANNEL_BLOCK):
        b1 = min(c1, b0 + CHANNEL_BLOCK)
        for n in range(N):
            bottom_diff[n, b0:b1, :] = 0
        for r in range(R):
            n = bidx[r]
            f = factors[r]
            for c in range(b0, b1):
                # 1-D views hoisted out of the bin loop (measurably faster
                # than indexing the 3-D arrays inside it).
                plane, g, a = bottom_diff[n, c], top_diff[r, c], argmax[r, c]
                for k in range(P):
                    i = a[k]
                    if i >= 0:
                        plane[i] += g[k] * f


# Work is spread over threads by hand rather than with numba's prange: the
# kernels release the GIL, and many small chunks handed out on demand keep
# both cores busy when they are free, yet cost little when another process
# holds one (prange's static split then waited on the slow thread, and was
# slower than one thread on a loaded 2-core machine).
CHUNKS_PER_THREAD = 8
_pool, _pool_key = None, None


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _run_chunks(threads, total, step, kernel, *args):
    """kernel(*args, lo, hi) over [0, total) in chunks of `step`, on `threads` threads."""
    global _pool, _pool_key
    bounds = [(lo, min(total, lo + step)) for lo in range(0, total, step)]
    if threads <= 1 or len(bounds) <= 1:
        kernel(*args, 0, total)
        return
    key = (os.getpid(), threads)  # a forked child must not use the parent's (dead) threads
    if _pool_key != key:
        _pool = ThreadPoolExecutor(threads, thread_name_prefix='roi_pooling')
        _pool_key = key
    for future in [_pool.submit(kernel, *args, lo, hi) for lo, hi in bounds]:
        future.result()


def _flat_view(array, shape):
    """A reshaped view of an output array; raises rather than copy (we write into it)."""
    view = array.view()
    view.shape = shape
    return view


class RoiPoolingKernel:
    """Forward/backward on numpy arrays; keeps the work buffers between calls."""

    def __init__(self, pooled_h, pooled_w, spatial_scale, score_scale=1.0, score_bias=0.0,
                 threads=None):
        self.threads = available_cpus() if threads is None else threads
        self.pooled_h, self.pooled_w = pooled_h, pooled_w
        self.spatial_scale = spatial_scale
        self.score_scale, self.score_bias = score_scale, score_bias
        self._nhwc = None
        self.argmax = None

    def forward(self, features, rois, out):
        """features (N,C,H,W) float32, rois (R,6) (validated), out (R,C,PH,PW) float32."""
        N, C, H, W = features.shape
        R = rois.shape[0]
        if self._nhwc is None or self._nhwc.shape != (N, H, W, C):
            self._nhwc = np.empty((N, H, W, C), np.float32)
        self._nhwc[...] = features.transpose(0, 2, 3, 1)
        shape = (R, C, self.pooled_h * self.pooled_w)
        if self.argmax is None or self.argmax.shape != shape:
            self.argmax = np.empty(shape, np.int32)
        hs, he, ws, we = roi_bins(rois, self.pooled_h, self.pooled_w, self.spatial_scale, H, W)
        self.bidx = rois[:, 0].astype(np.int64)
        self.factors = roi_factors(rois, self.score_scale, self.score_bias)
        step = max(1, math.ceil(R / (self.threads * CHUNKS_PER_THREAD)))
        _run_chunks(self.threads, R, step, _forward_kernel, self._nhwc, self.bidx, hs, he, ws, we,
                    self.factors, _flat_view(out, shape), self.argmax)
        return out

    def backward(self, top_diff, bottom_diff):
        """Gradient of the last forward(): top_diff (R,C,PH,PW) -> bottom_diff (N,C,H,W)."""
        R, C = top_diff.shape[:2]
        step = max(1, math.ceil(C / (self.threads * CHUNKS_PER_THREAD)))
        _run_chunks(self.threads, C, step, _backward_kernel, top_diff.reshape(R, C, -1),
                    self.argmax, self.bidx, self.factors,
                    _flat_view(bottom_diff, (bottom_diff.shape[0], C, -1)))
        return bottom_diff


class ROIPooling(MlicLayer):
    """Max pooling of each roi into pooled_h x pooled_w bins, times the roi's score factor.

    Bottoms: features (N,C,H,W) and rois (R,6) = (batch index, x1, y1, x2, y2,
    score), corners in input-image pixels. Top: (R, C, pooled_h, pooled_w).
    Only the features get a gradient.
    """
    PARAMS = (
        Param('pooled_h', 'int', low=1),
        Param('pooled_w', 'int', low=1),
        Param('spatial_scale', 'float', 0.0625, low=0, low_open=True),
        Param('score_scale', 'float', 1.0),
        Param('score_bias', 'float', 0.0),
    )
    BOTTOMS = ('features', 'rois')
    TOPS = ('pooled',)

    def configure(self, bottom, top):
        p = self.params
        self.kernel = RoiPoolingKernel(p.pooled_h, p.pooled_w, p.spatial_scale,
                                       p.score_scale, p.score_bias)

    def reshape(self, bottom, top):
        fshape, rshape = tuple(bottom[0].shape), tuple(bottom[1].shape)
        if len(fshape) != 4:
            raise self.error('features must be 4-D (N, C, H, W), got shape %s' % (fshape,))
        if not (len(rshape) == 2 and rshape[1] == 6 or len(rshape) == 4 and rshape[1:] == (6, 1, 1)):
            raise self.error('rois must be (R, 6) = (batch index, x1, y1, x2, y2, score) '
                             'or (R, 6, 1, 1), got shape %s' % (rshape,))
        top[0].reshape(rshape[0], fshape[1], self.params.pooled_h, self.params.pooled_w)

    def forward(self, bottom, top):
        rois = bottom[1].data.reshape(-1, 6)
        problem = roi_problem(rois, bottom[0].shape[0])
        if problem is not None:
            raise self.error('roi row %d: %s' % problem)
        self.kernel.forward(bottom[0].data, rois, top[0].data)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            bottom[1].diff[...] = 0  # no gradient to the rois
        if propagate_down[0]:
            self.kernel.backward(top[0].diff, bottom[0].diff)
