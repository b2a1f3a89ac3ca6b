"""ROIPooling: Fast R-CNN max pooling with proposal-score weighting.

The arithmetic follows the original C++ exactly (float32 where it used Dtype),
so results match it bit for bit:

- start/end = C round (half away from zero) of float32(coord * spatial_scale);
- roi_h = max(end_h - start_h + 1, 1), bin_size_h = float32(roi_h) / float32(PH);
- bin rows [floor(ph * bin_size_h), ceil((ph + 1) * bin_size_h)) + start_h,
  clipped to [0, H]; columns likewise;
- max over the bin starting from -FLT_MAX with a strict `>` (so the first
  maximum in row-major order wins, NaNs are skipped); an empty bin gives 0;
- every output of roi r is then multiplied by score_scale * s_r + score_bias.

Speed. A forward is a few calls: one numba pass checks the rois and computes
every bin boundary and score factor (_prepare), numpy copies the features
into a channel-blocked layout (N, ceil(C/16), H, W, 16), one numba kernel
pools. It takes 16 (then 8, then 1) channels of one bin at a time, with the
running max and argmax in registers: written out as 16 scalar statements,
which LLVM's SLP vectoriser turns into two AVX instructions each (a loop over
channels keeps them in memory, and LLVM unrolls its vectorised version to 16
or 32 channels, running scalar code on fewer). A roi is pooled one 16-channel
block at a time: the block's features, outputs and argmax (kept in the same
blocked layout, (R, ceil(C/16), P, 16)) are then all within a few KB. Big
workloads are spread over threads: rois in the forward; 16-channel blocks in
the backward, so that no two threads ever add into the same bottom element
and every element accumulates in the order (roi, bin) of a plain serial loop.
Small ones run on the caller's thread, with the work buffers kept between
calls.
"""
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit, uintp

from caffe_mlic.caffe.params import LayerError, Param
from caffe_mlic.gpu import blobs as gpu_blobs
from .base import MlicLayer

FLT_MAX = np.float32(np.finfo(np.float32).max)
# Rounded corners are clamped here before going to integers: far outside any
# feature map, and small enough that end - start + 1 cannot overflow.
COORD_LIMIT = float(1 << 30)
LANES = 16  # channels per block, in the blocked features and argmax

# Array indices in the kernels are unsigned (uintp): numba wraps negative
# signed indices around, and that per-access select keeps LLVM from
# vectorising. These are the lane offsets.
U1, U2, U3, U4, U5, U6, U7, U8 = [uintp(i) for i in range(1, 9)]
U9, U10, U11, U12, U13, U14, U15 = [uintp(i) for i in range(9, 16)]
NO_ARG = np.int32(-1)


@njit(cache=True, nogil=True)
def _c_round(v):
    """C round() (half away from zero) of a float32, clamped to +-COORD_LIMIT, as int64.

    In float64, |x| + 0.5 is exact for every float32 x that matters (a float32
    just below .5 is at least 2**-25 below it), so floor gives C's answer.
    """
    x = np.float64(v)
    a = min(np.floor(abs(x) + 0.5), COORD_LIMIT)  # clamped as a float: no int overflow
    return np.int64(-a if x < 0 else a)


@njit(cache=True, nogil=True)
def _bin_edges(start, end, pooled, limit, lo, hi):
    """lo/hi[p] = clipped [floor(p * bin_size), ceil((p + 1) * bin_size)) + start."""
    size = max(end - start + 1, 1)
    bin_size = np.float32(size) / np.float32(pooled)  # float32 division, as Dtype
    for p in range(pooled):
        # float32 products, floor/ceil taken on them (not on a float64 product)
        b0 = math.floor(np.float32(p) * bin_size) + start
        b1 = math.ceil(np.float32(p + 1) * bin_size) + start
        lo[p] = min(max(b0, 0), limit)
        hi[p] = min(max(b1, 0), limit)


@njit(cache=True, nogil=True)
def _bad_roi(rois, r, num_images):
    """Whether roi_problem rejects roi r: batch index, corners and score as it checks them."""
    b = np.float64(rois[r, 0])
    if not (math.isfinite(b) and b == math.floor(b) and 0 <= b < num_images):
        return True
    for j in range(1, 6):
        if not math.isfinite(rois[r, j]):
            return True
    return False


@njit(cache=True, nogil=True)
def _first_bad_roi(rois, num_images):
    """Index of the first roi roi_problem would reject, or -1 (rois (R, 6) float32)."""
    for r in range(rois.shape[0]):
        if _bad_roi(rois, r, num_images):
            return r
    return -1


@njit(cache=True, nogil=True)
def _prepare(rois, num_images, spatial_scale, score_scale, score_bias, height, width,
             hstart, hend, wstart, wend, bidx, factors):
    """Check every roi, then fill its bins, batch index and score factor.

    Returns the first bad roi (nothing is filled then), or -1.
    """
    R = rois.shape[0]
    for r in range(R):
        if _bad_roi(rois, r, num_images):
            return r
    ss = np.float32(spatial_scale)
    PH, PW = hstart.shape[1], wstart.shape[1]
    for r in range(R):
        x1 = _c_round(rois[r, 1] * ss)  # float32 product, as Dtype
        y1 = _c_round(rois[r, 2] * ss)
        x2 = _c_round(rois[r, 3] * ss)
        y2 = _c_round(rois[r, 4] * ss)
        _bin_edges(y1, y2, PH, height, hstart[r], hend[r])
        _bin_edges(x1, x2, PW, width, wstart[r], wend[r])
        bidx[r] = np.int64(rois[r, 0])
        factors[r] = rois[r, 5] * np.float32(score_scale) + np.float32(score_bias)
    return -1


def roi_bins(rois, pooled_h, pooled_w, spatial_scale, height, width):
    """Clipped bin boundaries of every roi.

    rois: (R, >=5) (batch index, x1, y1, x2, y2, ...), used as float32.
    Returns hstart, hend (R, PH) and wstart, wend (R, PW), int32.
    """
    R = rois.shape[0]
    hs, he = np.empty((R, pooled_h), np.int32), np.empty((R, pooled_h), np.int32)
    ws, we = np.empty((R, pooled_w), np.int32), np.empty((R, pooled_w), np.int32)
    corners = np.ascontiguousarray(rois[:, 1:5], np.float32)
    _fill_bins(corners, np.float32(spatial_scale), height, width, hs, he, ws, we)
    return [hs, he, ws, we]


@njit(cache=True, nogil=True)
def _fill_bins(corners, ss, height, width, hs, he, ws, we):
    PH, PW = hs.shape[1], ws.shape[1]
    for r in range(corners.shape[0]):
        _bin_edges(_c_round(corners[r, 1] * ss), _c_round(corners[r, 3] * ss), PH, height,
                   hs[r], he[r])
        _bin_edges(_c_round(corners[r, 0] * ss), _c_round(corners[r, 2] * ss), PW, width,
                   ws[r], we[r])


def roi_problem(rois, num_images):
    """None, or (row, message) for the first roi the layer cannot pool."""
    if rois.dtype == np.float32 and rois.ndim == 2 and rois.shape[1] == 6:
        if _first_bad_roi(rois, num_images) < 0:  # the usual case, without numpy temporaries
            return None
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


# ---- forward ------------------------------------------------------------------------------
# _pool16/8/1 pool one bin for 16, 8 or 1 channels (lanes) of a block.
# feat: the blocked features, flat; fo: offset of the first lane in the bin's
# first cell (h0, w0); rowstep, cellstep: steps to the next row, next cell
# (W * 16, 16); nh x nw cells; idx0 = h0 * W + w0. arg: the blocked argmax,
# flat, ao: offset of the first lane for (roi, block, bin). out: the (R, C, P)
# output, flat, oo: offset of (roi, first channel, bin), P the step between
# channels. A lane gets max * f (f the roi's score factor) and the argmax
# h * W + w, or -1; an empty bin (nh = nw = 0, empty) gives 0 * f and -1.

@njit(cache=True, nogil=True)
def _pool16(feat, fo, rowstep, cellstep, nh, nw, idx0, W, arg, ao, out, oo, P, f, empty):
    L = -FLT_MAX if not empty else np.float32(0)
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = L
    m8 = m9 = m10 = m11 = m12 = m13 = m14 = m15 = L
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = NO_ARG
    a8 = a9 = a10 = a11 = a12 = a13 = a14 = a15 = NO_ARG
    for i in range(nh):
        o = fo + uintp(i) * rowstep
        idx = np.int32(idx0 + i * W)
        for j in range(nw):
            v0 = feat[o]; v1 = feat[o + U1]; v2 = feat[o + U2]; v3 = feat[o + U3]
            v4 = feat[o + U4]; v5 = feat[o + U5]; v6 = feat[o + U6]; v7 = feat[o + U7]
            v8 = feat[o + U8]; v9 = feat[o + U9]; v10 = feat[o + U10]; v11 = feat[o + U11]
            v12 = feat[o + U12]; v13 = feat[o + U13]; v14 = feat[o + U14]; v15 = feat[o + U15]
            g0 = v0 > m0; g1 = v1 > m1; g2 = v2 > m2; g3 = v3 > m3
            g4 = v4 > m4; g5 = v5 > m5; g6 = v6 > m6; g7 = v7 > m7
            g8 = v8 > m8; g9 = v9 > m9; g10 = v10 > m10; g11 = v11 > m11
            g12 = v12 > m12; g13 = v13 > m13; g14 = v14 > m14; g15 = v15 > m15
            m0 = v0 if g0 else m0; m1 = v1 if g1 else m1; m2 = v2 if g2 else m2
            m3 = v3 if g3 else m3; m4 = v4 if g4 else m4; m5 = v5 if g5 else m5
            m6 = v6 if g6 else m6; m7 = v7 if g7 else m7; m8 = v8 if g8 else m8
            m9 = v9 if g9 else m9; m10 = v10 if g10 else m10; m11 = v11 if g11 else m11
            m12 = v12 if g12 else m12; m13 = v13 if g13 else m13; m14 = v14 if g14 else m14
            m15 = v15 if g15 else m15
            a0 = idx if g0 else a0; a1 = idx if g1 else a1; a2 = idx if g2 else a2
            a3 = idx if g3 else a3; a4 = idx if g4 else a4; a5 = idx if g5 else a5
            a6 = idx if g6 else a6; a7 = idx if g7 else a7; a8 = idx if g8 else a8
            a9 = idx if g9 else a9; a10 = idx if g10 else a10; a11 = idx if g11 else a11
            a12 = idx if g12 else a12; a13 = idx if g13 else a13; a14 = idx if g14 else a14
            a15 = idx if g15 else a15
            o += cellstep
            idx = np.int32(idx + 1)
    arg[ao] = a0; arg[ao + U1] = a1; arg[ao + U2] = a2; arg[ao + U3] = a3
    arg[ao + U4] = a4; arg[ao + U5] = a5; arg[ao + U6] = a6; arg[ao + U7] = a7
    arg[ao + U8] = a8; arg[ao + U9] = a9; arg[ao + U10] = a10; arg[ao + U11] = a11
    arg[ao + U12] = a12; arg[ao + U13] = a13; arg[ao + U14] = a14; arg[ao + U15] = a15
    # oo stepped by P, rather than oo + j * P: LLVM kept those 15 offsets on the stack.
    out[oo] = m0 * f; oo += P; out[oo] = m1 * f; oo += P; out[oo] = m2 * f; oo += P
    out[oo] = m3 * f; oo += P; out[oo] = m4 * f; oo += P; out[oo] = m5 * f; oo += P
    out[oo] = m6 * f; oo += P; out[oo] = m7 * f; oo += P; out[oo] = m8 * f; oo += P
    out[oo] = m9 * f; oo += P; out[oo] = m10 * f; oo += P; out[oo] = m11 * f; oo += P
    out[oo] = m12 * f; oo += P; out[oo] = m13 * f; oo += P; out[oo] = m14 * f; oo += P
    out[oo] = m15 * f


@njit(cache=True, nogil=True)
def _pool8(feat, fo, rowstep, cellstep, nh, nw, idx0, W, arg, ao, out, oo, P, f, empty):
    L = -FLT_MAX if not empty else np.float32(0)
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = L
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = NO_ARG
    for i in range(nh):
        o = fo + uintp(i) * rowstep
        idx = np.int32(idx0 + i * W)
        for j in range(nw):
            v0 = feat[o]; v1 = feat[o + U1]; v2 = feat[o + U2]; v3 = feat[o + U3]
            v4 = feat[o + U4]; v5 = feat[o + U5]; v6 = feat[o + U6]; v7 = feat[o + U7]
            g0 = v0 > m0; g1 = v1 > m1; g2 = v2 > m2; g3 = v3 > m3
            g4 = v4 > m4; g5 = v5 > m5; g6 = v6 > m6; g7 = v7 > m7
            m0 = v0 if g0 else m0; m1 = v1 if g1 else m1; m2 = v2 if g2 else m2
            m3 = v3 if g3 else m3; m4 = v4 if g4 else m4; m5 = v5 if g5 else m5
            m6 = v6 if g6 else m6; m7 = v7 if g7 else m7
            a0 = idx if g0 else a0; a1 = idx if g1 else a1; a2 = idx if g2 else a2
            a3 = idx if g3 else a3; a4 = idx if g4 else a4; a5 = idx if g5 else a5
            a6 = idx if g6 else a6; a7 = idx if g7 else a7
            o += cellstep
            idx = np.int32(idx + 1)
    arg[ao] = a0; arg[ao + U1] = a1; arg[ao + U2] = a2; arg[ao + U3] = a3
    arg[ao + U4] = a4; arg[ao + U5] = a5; arg[ao + U6] = a6; arg[ao + U7] = a7
    out[oo] = m0 * f; oo += P; out[oo] = m1 * f; oo += P; out[oo] = m2 * f; oo += P
    out[oo] = m3 * f; oo += P; out[oo] = m4 * f; oo += P; out[oo] = m5 * f; oo += P
    out[oo] = m6 * f; oo += P; out[oo] = m7 * f


@njit(cache=True, nogil=True)
def _pool1(feat, fo, rowstep, cellstep, nh, nw, idx0, W, arg, ao, out, oo, P, f, empty):
    m = -FLT_MAX if not empty else np.float32(0)
    a = NO_ARG
    for i in range(nh):
        o = fo + uintp(i) * rowstep
        idx = np.int32(idx0 + i * W)
        for j in range(nw):
            v = feat[o]
            g = v > m
            m = v if g else m
            a = idx if g else a
            o += cellstep
            idx = np.int32(idx + 1)
    arg[ao] = a
    out[oo] = m * f


@njit(cache=True, nogil=True)
def _forward_kernel(feat_blocked, C, bidx, hstart, hend, wstart, wend, factors, out, arg, r0, r1):
    """Rois r0..r1-1 of out (R, C, P) and arg (R, NB, P, 16), both flat.

    feat_blocked: the C channels of the features as (N, NB, H, W, 16), NB = ceil(C / 16).
    """
    N, NB, H, W, _ = feat_blocked.shape
    PH, PW = hstart.shape[1], wstart.shape[1]
    P = PH * PW
    feat = feat_blocked.reshape(N * NB * H * W * LANES)
    UL, UP, rowstep = uintp(LANES), uintp(P), uintp(W * LANES)
    for r in range(r0, r1):
        n, f = bidx[r], factors[r]
        for b in range(NB):
            c, c_end = b * LANES, min(C, (b + 1) * LANES)
            while c < c_end:
                # The same width for the whole bin loop: LLVM compiles one
                # loop per width (with the bins loop outside, the channel loop
                # inside, the per-bin overhead was 15 % more for C = 16).
                width = 16 if c + 16 <= c_end else (8 if c + 8 <= c_end else 1)
                lane = c - b * LANES
                for ph in range(PH):
                    h0 = hstart[r, ph]
                    nh = hend[r, ph] - h0
                    for pw in range(PW):
                        w0 = wstart[r, pw]
                        nw = wend[r, pw] - w0
                        empty = nh <= 0 or nw <= 0
                        if empty:  # h0 or w0 may be H or W: no offset from them
                            rows, cols, fo = 0, 0, uintp(0)
                        else:
                            rows, cols = nh, nw
                            fo = uintp((((n * NB + b) * H + h0) * W + w0) * LANES + lane)
                        idx0 = np.int32(h0 * W + w0)
                        k = ph * PW + pw
                        ao = uintp(((r * NB + b) * P + k) * LANES + lane)
                        oo = uintp((r * C + c) * P + k)
                        if width == 16:
                            _pool16(feat, fo, rowstep, UL, rows, cols, idx0, W,
                                    arg, ao, out, oo, UP, f, empty)
                        elif width == 8:
                            _pool8(feat, fo, rowstep, UL, rows, cols, idx0, W,
                                   arg, ao, out, oo, UP, f, empty)
                        else:
                            _pool1(feat, fo, rowstep, UL, rows, cols, idx0, W,
                                   arg, ao, out, oo, UP, f, empty)
                c += width


# ---- backward -----------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _backward_kernel(top, arg, bidx, factors, bottom, N, C, P, HW, b0, b1):
    """Channel blocks b0..b1-1 of bottom (N, C, HW), flat: zero, then add top * factor at
    the argmax of every roi and bin, in that order (roi, then bin). top (R, C, P) flat."""
    R = bidx.shape[0]
    NB = (C + LANES - 1) // LANES
    UL, UHW, UP = uintp(LANES), uintp(HW), uintp(P)
    for b in range(b0, b1):
        c0 = b * LANES
        nc = uintp(min(LANES, C - c0))
        for n in range(N):
            s = uintp((n * C + c0) * HW)
            for i in range(nc * UHW):
                bottom[s + i] = np.float32(0)
        for r in range(R):
            n, f = bidx[r], factors[r]
            ao = uintp((r * NB + b) * P * LANES)
            to = uintp((r * C + c0) * P)
            po = uintp((n * C + c0) * HW)
            if nc == UL:
                # Four channels at a time, bin by bin: the four adds go to four
                # planes and so never wait on each other (one channel at a time,
                # consecutive bins often share their argmax, and each add waits
                # for the previous one's store: twice as slow), while the four
                # planes stay in L1 (all 16 lanes at once was slower, most on big
                # maps).
                for g in range(uintp(0), UL, uintp(4)):
                    for k in range(UP):
                        a, t, p = ao + k * UL + g, to + g * UP + k, po + g * UHW
                        i = arg[a]
                        if i >= 0:
                            bottom[p + uintp(i)] += top[t] * f
                        p += UHW
                        t += UP
                        i = arg[a + U1]
                        if i >= 0:
                            bottom[p + uintp(i)] += top[t] * f
                        p += UHW
                        t += UP
                        i = arg[a + U2]
                        if i >= 0:
                            bottom[p + uintp(i)] += top[t] * f
                        p += UHW
                        t += UP
                        i = arg[a + U3]
                        if i >= 0:
                            bottom[p + uintp(i)] += top[t] * f
            else:
                for k in range(UP):
                    a, t, p = ao + k * UL, to + k, po
                    for j in range(nc):
                        i = arg[a + j]
                        if i >= 0:
                            bottom[p + uintp(i)] += top[t] * f
                        t += UP
                        p += UHW


# ---- threads ------------------------------------------------------------------------------
# Work is spread over threads by hand rather than with numba's prange: the
# kernels release the GIL, and many small chunks handed out on demand keep
# both cores busy when they are free, yet cost little when another process
# holds one (prange's static split then waited on the slow thread, and was
# slower than one thread on a loaded 2-core machine).
CHUNKS_PER_THREAD = 8
# Below this many pooled outputs (R * C * PH * PW) handing chunks to threads
# costs more than it saves: such calls run on the caller's thread.
MIN_PARALLEL_OUTPUTS = 1 << 20
_pool, _pool_key = None, None


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _run_chunks(threads, total, step, kernel, *args, outputs=None):
    """kernel(*args, lo, hi) over [0, total) in chunks of `step`, on `threads` threads."""
    global _pool, _pool_key
    if threads <= 1 or total <= step or (outputs is not None and outputs < MIN_PARALLEL_OUTPUTS):
        kernel(*args, 0, total)
        return
    key = (os.getpid(), threads)  # a forked child must not use the parent's (dead) threads
    if _pool_key != key:
        _pool = ThreadPoolExecutor(threads, thread_name_prefix='roi_pooling')
        _pool_key = key
    futures = [_pool.submit(kernel, *args, lo, min(total, lo + step))
               for lo in range(0, total, step)]
    for future in futures:
        future.result()


def _flat_view(array, size):
    """A flat view of an output array; raises rather than copy (we write into it)."""
    view = array.view()
    view.shape = (size,)
    return view


class RoiError(LayerError):
    """A roi the layer cannot pool: .row and .message (as roi_problem gives them)."""

    def __init__(self, row, message):
        super().__init__('roi row %d: %s' % (row, message))
        self.row, self.message = row, message

    def __reduce__(self):
        return type(self), (self.row, self.message)


class RoiPoolingKernel:
    """Forward/backward on numpy arrays; keeps the work buffers between calls."""

    def __init__(self, pooled_h, pooled_w, spatial_scale, score_scale=1.0, score_bias=0.0,
                 threads=None):
        self.threads = available_cpus() if threads is None else threads
        self.pooled_h, self.pooled_w = pooled_h, pooled_w
        self.spatial_scale = spatial_scale
        self.score_scale, self.score_bias = score_scale, score_bias
        self._blocked = None
        self._rois_buffers = None
        self._argmax = None
        self._last = None

    def _buffers(self, R):
        if self._rois_buffers is None or self._rois_buffers[0].shape[0] != R:
            PH, PW = self.pooled_h, self.pooled_w
            self._rois_buffers = (np.empty((R, PH), np.int32), np.empty((R, PH), np.int32),
                                  np.empty((R, PW), np.int32), np.empty((R, PW), np.int32),
                                  np.empty(R, np.int64), np.empty(R, np.float32))
        return self._rois_buffers

    def _blocked_features(self, features):
        """features (N, C, H, W) as (N, ceil(C/16), H, W, 16), into a kept buffer."""
        N, C, H, W = features.shape
        NB, full, rest = -(-C // LANES), C // LANES, C % LANES
        if self._blocked is None or self._blocked.shape != (N, NB, H, W, LANES):
            self._blocked = np.empty((N, NB, H, W, LANES), np.float32)
        if full:
            self._blocked[:, :full] = features[:, :full * LANES].reshape(
                N, full, LANES, H, W).transpose(0, 1, 3, 4, 2)
        if rest:  # the last block's other lanes are never read
            self._blocked[:, full, :, :, :rest] = features[:, full * LANES:].transpose(0, 2, 3, 1)
        return self._blocked

    def bins(self, rois, N, H, W):
        """Every roi's clipped bins, batch index and score factor, in kept
        buffers: (hstart, hend, wstart, wend, bidx, factors). Raises RoiError
        for a roi roi_problem would reject."""
        rois = np.ascontiguousarray(rois, np.float32)
        hs, he, ws, we, bidx, factors = bufs = self._buffers(rois.shape[0])
        bad = _prepare(rois, N, self.spatial_scale, self.score_scale, self.score_bias, H, W,
                       hs, he, ws, we, bidx, factors)
        if bad >= 0:
            raise RoiError(*roi_problem(rois, N))
        return bufs

    def forward(self, features, rois, out):
        """features (N,C,H,W) float32, rois (R,6), out (R,C,PH,PW) float32.

        Raises RoiError for a roi roi_problem would reject (nothing is written then).
        """
        N, C, H, W = features.shape
        R = rois.shape[0]
        hs, he, ws, we, bidx, factors = bufs = self.bins(rois, N, H, W)
        blocked = self._blocked_features(features)
        P = self.pooled_h * self.pooled_w
        size = R * -(-C // LANES) * P * LANES
        if self._argmax is None or self._argmax.size != size:
            self._argmax = np.empty(size, np.int32)
        self._last = (bufs, C, P)
        step = max(1, math.ceil(R / (self.threads * CHUNKS_PER_THREAD)))
        _run_chunks(self.threads, R, step, _forward_kernel, blocked, C, bidx, hs, he, ws, we,
                    factors, _flat_view(out, R * C * P), self._argmax, outputs=R * C * P)
        return out

    @property
    def argmax(self):
        """(R, C, PH*PW) argmax of the last forward: h * W + w in the plane, -1 none."""
        (_, _, _, _, bidx, _), C, P = self._last
        NB = -(-C // LANES)
        blocked = self._argmax.reshape(bidx.shape[0], NB, P, LANES).transpose(0, 1, 3, 2)
        return blocked.reshape(bidx.shape[0], NB * LANES, P)[:, :C]

    def backward(self, top_diff, bottom_diff):
        """Gradient of the last forward(): top_diff (R,C,PH,PW) -> bottom_diff (N,C,H,W)."""
        (_, _, _, _, bidx, factors), C, P = self._last
        N, HW = bottom_diff.shape[0], bottom_diff.shape[2] * bottom_diff.shape[3]
        top = np.ascontiguousarray(top_diff, np.float32).reshape(-1)
        NB = -(-C // LANES)
        step = max(1, math.ceil(NB / (self.threads * CHUNKS_PER_THREAD)))
        _run_chunks(self.threads, NB, step, _backward_kernel, top, self._argmax, bidx, factors,
                    _flat_view(bottom_diff, bottom_diff.size), N, C, P, HW, outputs=top.size)
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
    SIZE_PARAMS = 'pooled_h / pooled_w'  # what sets the tops' sizes (for caffe.shapes' message)

    @staticmethod
    def top_shapes(p, bottoms, phase):
        if len(bottoms) != 2 or None in bottoms or len(bottoms[0]) != 4:
            return None
        return [(bottoms[1][0], bottoms[0][1], p.pooled_h, p.pooled_w)]

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
        self.reshape_top(top[0], (rshape[0], fshape[1], self.params.pooled_h, self.params.pooled_w),
                         'the output (rois x channels x pooled_h x pooled_w)', 'pooled_h / pooled_w')


    def forward(self, bottom, top):
        if gpu_blobs.use_kernels():
            return self._forward_gpu(bottom, top)
        # A diverged net: stop with a message here, before backward. (Caffe's own
        # max pooling, upstream of us, writes to index -1 in backward for an
        # all-NaN window and corrupts memory.) A float64 sum never overflows
        # for float32 data, so it is finite exactly when every feature is.
        if not np.isfinite(np.sum(bottom[0].data, dtype=np.float64)):
            raise self.error(self.not_finite('the features contain NaN or inf'))
        try:  # the rois are checked in the kernel's first pass over them
            self.kernel.forward(bottom[0].data, bottom[1].data.reshape(-1, 6), top[0].data)
        except RoiError as e:
            raise self.error('roi row %d: %s' % (e.row, e.message)) from None

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            bottom[1].diff[...] = 0  # no gradient to the rois
        if propagate_down[0]:
            if gpu_blobs.use_kernels():
                from caffe_mlic.gpu import kernels
                d_bins, argmax = self._gpu_last
                kernels.roi_pool_backward(gpu_blobs.view(top[0], 'diff'), argmax, d_bins,
                                          gpu_blobs.view(bottom[0], 'diff', write=True))
            else:
                self.kernel.backward(top[0].diff, bottom[0].diff)

    def _forward_gpu(self, bottom, top):
        """The CUDA kernels on the blobs' device memory; the rois (small) are
        read on the host, where their bins are computed as on the CPU."""
        from caffe_mlic.gpu import kernels
        cache = self.__dict__.setdefault('_gpu_cache', {})
        features = gpu_blobs.view(bottom[0])
        count = gpu_blobs.device_array((1,), np.int64, cache, 'count')
        kernels.count_bad(features.reshape(features.size), count, lowest_too=False)
        if count.copy_to_host()[0]:
            raise self.error(self.not_finite('the features contain NaN or inf'))
        N, _, H, W = features.shape
        try:
            bins = self.kernel.bins(bottom[1].data.reshape(-1, 6), N, H, W)
        except RoiError as e:
            raise self.error('roi row %d: %s' % (e.row, e.message)) from None
        hs, he, ws, we, bidx, factors = bins
        d_bins = kernels.to_device(bidx, hs, he, ws, we, factors)
        out = gpu_blobs.view(top[0], write=True)
        argmax = gpu_blobs.device_array(out.shape, np.int32, cache, 'argmax')
        kernels.roi_pool_forward(features, d_bins, out, argmax)
        self._gpu_last = (d_bins, argmax)
