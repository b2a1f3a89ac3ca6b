"""CUDA kernels of our layers on the training paths, in numba's CUDA target.

The same source runs on a GPU and in numba's CUDA simulator
(NUMBA_ENABLE_CUDASIM=1), where the tests check it against the CPU layers on
a machine without a GPU. Nothing here imports Caffe: the kernels take device
arrays (numba's, or any object with __cuda_array_interface__, such as the
blobs' device memory) and the small per-call tables the CPU code computes
on the host (ROI bins, interpolation taps).

Streams: Caffe launches its own kernels on the legacy default stream; these
launch there too (numba's default stream is the legacy one), so a kernel of
ours runs after the Caffe kernels before it and before the ones after it
without any synchronisation.

Not wired into the layers yet: that needs the blobs' device pointers from
pycaffe (a patch of the GPU build); until then the layers run on the host in
GPU mode, as the README says.
"""
import math

import numpy as np
from numba import cuda, float32, float64, int32

FLT_MAX = float32(np.finfo(np.float32).max)
THREADS = 256


def _blocks(total):
    return max(1, min(65535, -(-total // THREADS)))


# ---------------------------------------------------------------- ROIPooling


@cuda.jit
def _roi_forward(features, bidx, hstart, hend, wstart, wend, factors, out, argmax):
    """One thread per output (r, c, ph, pw): the max over the bin, strict '>'
    from -FLT_MAX in row-major order (the first maximum wins, NaN skipped),
    0 for an empty bin; times the roi's score factor. argmax h * W + w, -1 none."""
    R, C, PH, PW = out.shape
    W = features.shape[3]
    total = R * C * PH * PW
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < total:
        # (r, c, ph, pw) of flat index i, written out: the kernels call no
        # device functions, so they compile to PTX without a GPU (check --ptx-only)
        r, c, ph, pw = i // (C * PH * PW), (i // (PH * PW)) % C, (i // PW) % PH, i % PW
        h0, h1 = hstart[r, ph], hend[r, ph]
        w0, w1 = wstart[r, pw], wend[r, pw]
        b = bidx[r]
        best = float32(0) if (h1 <= h0 or w1 <= w0) else -FLT_MAX
        arg = int32(-1)
        for h in range(h0, h1):
            for w in range(w0, w1):
                v = features[b, c, h, w]
                if v > best:
                    best = v
                    arg = h * W + w
        out[r, c, ph, pw] = best * factors[r]
        argmax[r, c, ph, pw] = arg
        i += step


@cuda.jit
def _roi_backward(top_diff, argmax, bidx, factors, bottom_diff):
    """One thread per output: its gradient times the roi's factor added at
    its argmax (atomically: bins of several rois share cells)."""
    R, C, PH, PW = top_diff.shape
    W = bottom_diff.shape[3]
    total = R * C * PH * PW
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < total:
        # (r, c, ph, pw) of flat index i, written out: the kernels call no
        # device functions, so they compile to PTX without a GPU (check --ptx-only)
        r, c, ph, pw = i // (C * PH * PW), (i // (PH * PW)) % C, (i // PW) % PH, i % PW
        a = argmax[r, c, ph, pw]
        if a >= 0:
            cuda.atomic.add(bottom_diff, (bidx[r], c, a // W, a % W), top_diff[r, c, ph, pw] * factors[r])
        i += step


@cuda.jit
def _fill(flat, value):
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < flat.size:
        flat[i] = value
        i += step


def zero(array):
    """array[...] = 0 on the device (contiguous)."""
    _fill[_blocks(array.size), THREADS](array.reshape(array.size), float32(0))


def roi_pool_forward(features, bins, out, argmax):
    """features (N, C, H, W), out and argmax (R, C, PH, PW) on the device;
    bins: (bidx, hstart, hend, wstart, wend, factors) on the device, as the
    CPU layer's first pass computes them (roi_pooling._prepare)."""
    _roi_forward[_blocks(out.size), THREADS](features, *bins[:5], bins[5], out, argmax)


def roi_pool_backward(top_diff, argmax, bins, bottom_diff):
    """bottom_diff := 0, then the gradient of the last forward added in."""
    zero(bottom_diff)
    _roi_backward[_blocks(top_diff.size), THREADS](top_diff, argmax, bins[0], bins[5], bottom_diff)


# ---------------------------------------------------------------- Interp


def interp_taps(matrix):
    """The two taps of each row of an Interp matrix (interp.interp_weights):
    (first column, second column, first weight, second weight), int32 and
    float32; a row with one tap gets it twice, the second weight 0."""
    rows = matrix.shape[0]
    lo, hi = np.zeros(rows, np.int32), np.zeros(rows, np.int32)
    wlo, whi = np.zeros(rows, np.float32), np.zeros(rows, np.float32)
    for k in range(rows):
        cols = np.flatnonzero(matrix[k])
        if cols.size == 0:
            continue
        lo[k], wlo[k] = cols[0], matrix[k, cols[0]]
        hi[k], whi[k] = (cols[1], matrix[k, cols[1]]) if cols.size > 1 else (cols[0], 0)
    return lo, hi, wlo, whi


@cuda.jit
def _interp_forward(x, h0, h1, a0, a1, w0, w1, b0, b1, y):
    """y[p, i, j] = a0[i] (b0[j] x[p, h0, w0] + b1[j] x[p, h0, w1]) + a1[i] (...h1...):
    the width pass, then the height pass, as the CPU layer's two products."""
    P, HO, WO = y.shape
    total = P * HO * WO
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    while k < total:
        p, i, j = k // (HO * WO), (k // WO) % HO, k % WO
        top = x[p, h0[i], w0[j]] * b0[j] + x[p, h0[i], w1[j]] * b1[j]
        bottom = x[p, h1[i], w0[j]] * b0[j] + x[p, h1[i], w1[j]] * b1[j]
        y[p, i, j] = a0[i] * top + a1[i] * bottom
        k += step


@cuda.jit
def _interp_backward(g, h0, h1, a0, a1, w0, w1, b0, b1, dx):
    P, HO, WO = g.shape
    total = P * HO * WO
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    while k < total:
        p, i, j = k // (HO * WO), (k // WO) % HO, k % WO
        v = g[p, i, j]
        cuda.atomic.add(dx, (p, h0[i], w0[j]), v * a0[i] * b0[j])
        cuda.atomic.add(dx, (p, h0[i], w1[j]), v * a0[i] * b1[j])
        cuda.atomic.add(dx, (p, h1[i], w0[j]), v * a1[i] * b0[j])
        cuda.atomic.add(dx, (p, h1[i], w1[j]), v * a1[i] * b1[j])
        k += step


def interp_forward(x, rows, cols, y):
    """x (P, H, W) and y (P, HO, WO) on the device; rows and cols: the
    device copies of interp_taps of the height and width matrices."""
    _interp_forward[_blocks(y.size), THREADS](x, rows[0], rows[1], rows[2], rows[3],
                                              cols[0], cols[1], cols[2], cols[3], y)


def interp_backward(g, rows, cols, dx):
    """dx := 0, then the gradient of y = interp(x) for y's gradient g."""
    zero(dx)
    _interp_backward[_blocks(g.size), THREADS](g, rows[0], rows[1], rows[2], rows[3],
                                               cols[0], cols[1], cols[2], cols[3], dx)


# ---------------------------------------------------------------- WSDDNScore
# In float64, as the CPU layer: per (image, roi) a softmax over the classes,
# per (image, class) a softmax over the rois; region = the product, image =
# its sum over the rois. The softmaxes are kept for the backward.


@cuda.jit
def _softmax(z, temperature, over_rois, p):
    """A softmax of z / T along one axis: over the classes, p[n, b, :], one
    thread per (n, b); over_rois: over the rois, p[n, :, c], one per (n, c)."""
    N, B, C = z.shape
    across, along = (C, B) if over_rois else (B, C)
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    while k < N * across:
        n, i = k // across, k % across
        top = -1e308
        for j in range(along):
            b, c = (j, i) if over_rois else (i, j)
            top = max(top, float64(z[n, b, c]) / temperature)
        total = 0.0
        for j in range(along):
            b, c = (j, i) if over_rois else (i, j)
            e = math.exp(float64(z[n, b, c]) / temperature - top)
            p[n, b, c] = e
            total += e
        for j in range(along):
            b, c = (j, i) if over_rois else (i, j)
            p[n, b, c] /= total
        k += step


@cuda.jit
def _wsddn_combine(pc, pd, region, image):
    """region = pc * pd; image[n, c] = the sum over the rois; one thread per (n, c)."""
    N, B, C = pc.shape
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    while k < N * C:
        n, c = k // C, k % C
        total = 0.0
        for b in range(B):
            v = pc[n, b, c] * pd[n, b, c]
            region[n, b, c] = v
            total += v
        image[n, c] = total
        k += step


@cuda.jit
def _wsddn_backward(g_region, g_image, own, other, temperature, over_rois, dz):
    """The gradient of one stream's logits: dz = own * (h - sum(h * own)) / T
    along its softmax's axis, h = g * other, g = the region's gradient plus
    the image's (image = sum over the rois). own: that stream's softmax."""
    N, B, C = own.shape
    across, along = (C, B) if over_rois else (B, C)
    k = cuda.grid(1)
    step = cuda.gridsize(1)
    while k < N * across:
        n, i = k // across, k % across
        dot = 0.0
        for j in range(along):
            b, c = (j, i) if over_rois else (i, j)
            h = (float64(g_region[n, b, c]) + float64(g_image[n, c])) * other[n, b, c]
            dot += h * own[n, b, c]
        for j in range(along):
            b, c = (j, i) if over_rois else (i, j)
            h = (float64(g_region[n, b, c]) + float64(g_image[n, c])) * other[n, b, c]
            dz[n, b, c] = own[n, b, c] * (h - dot) / temperature
        k += step


def wsddn_forward(zc, zd, class_temperature, det_temperature, region, image, pc, pd):
    """zc, zd (N, B, C) float32; region (N, B, C), image (N, C) float32 outputs;
    pc, pd (N, B, C) float64 work arrays, kept for wsddn_backward."""
    N, B, C = zc.shape
    _softmax[_blocks(N * B), THREADS](zc, float64(class_temperature), False, pc)
    _softmax[_blocks(N * C), THREADS](zd, float64(det_temperature), True, pd)
    _wsddn_combine[_blocks(N * C), THREADS](pc, pd, region, image)


def wsddn_backward(g_region, g_image, pc, pd, class_temperature, det_temperature, dzc, dzd):
    N, B, C = pc.shape
    if dzc is not None:
        _wsddn_backward[_blocks(N * B), THREADS](g_region, g_image, pc, pd, float64(class_temperature), False, dzc)
    if dzd is not None:
        _wsddn_backward[_blocks(N * C), THREADS](g_region, g_image, pd, pc, float64(det_temperature), True, dzd)


# ---------------------------------------------------------------- losses
# Sums in float64 with atomic adds into a one-element float64 array (zeroed
# first): the order differs from the CPU's, the value agrees within rounding.

CLAMP = 1e-4


@cuda.jit
def _cross_entropy_sum(p, t, total):
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    part = 0.0
    while i < p.size:
        pv, tv = float64(p[i]), float64(t[i])
        part -= tv * math.log(max(pv, CLAMP)) + (1.0 - tv) * math.log(max(1.0 - pv, CLAMP))
        i += step
    cuda.atomic.add(total, 0, part)


@cuda.jit
def _cross_entropy_grad(p, t, scale, dp):
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < p.size:
        pv, tv = float64(p[i]), float64(t[i])
        dp[i] = -(tv / max(pv, CLAMP) - (1.0 - tv) / max(1.0 - pv, CLAMP)) * scale
        i += step


def cross_entropy_forward(p, t, total):
    """The WSDDN loss's sum -sum[t log max(p, 1e-4) + (1-t) log max(1-p, 1e-4)]
    of flat p, t into total[0] (float64, one element; the layer divides by N)."""
    _fill[1, 1](total, float64(0))
    _cross_entropy_sum[_blocks(p.size), THREADS](p, t, total)


def cross_entropy_backward(p, t, loss_diff, n, dp):
    _cross_entropy_grad[_blocks(p.size), THREADS](p, t, float64(loss_diff) / n, dp)


@cuda.jit
def _sigmoid_ce_sum(x, t, temperature, total):
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    part = 0.0
    while i < x.size:
        z = float64(x[i]) / temperature
        tv = min(max(float64(t[i]), 0.0), 1.0)
        part += max(z, 0.0) - z * tv + math.log1p(math.exp(-abs(z)))
        i += step
    cuda.atomic.add(total, 0, part)


@cuda.jit
def _sigmoid_ce_grad(x, t, temperature, scale, dx):
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < x.size:
        z = float64(x[i]) / temperature
        tv = min(max(float64(t[i]), 0.0), 1.0)
        dx[i] = (0.5 * (1.0 + math.tanh(0.5 * z)) - tv) * scale
        i += step


def sigmoid_ce_forward(x, t, temperature, total):
    """SoftSigmoidCrossEntropyLoss's sum (not yet divided by N) into total[0]."""
    _fill[1, 1](total, float64(0))
    _sigmoid_ce_sum[_blocks(x.size), THREADS](x, t, float64(temperature), total)


def sigmoid_ce_backward(x, t, temperature, loss_diff, n, dx):
    _sigmoid_ce_grad[_blocks(x.size), THREADS](x, t, float64(temperature),
                                                float64(loss_diff) / (temperature * n), dx)


@cuda.jit
def _mimic_rows(a, b, diff, sq):
    """diff = a - b (float32, rows x D); sq[r] = its squared norm in float64, one thread per element."""
    R, D = a.shape
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < R * D:
        r, d = i // D, i % D
        v = a[r, d] - b[r, d]
        diff[r, d] = v
        cuda.atomic.add(sq, r, float64(v) * float64(v))
        i += step


@cuda.jit
def _mimic_grad(diff, factors, scale, out):
    R, D = diff.shape
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    while i < R * D:
        r, d = i // D, i % D
        out[r, d] = float64(diff[r, d]) * factors[r] * scale
        i += step


def mimic_forward(a, b, diff, sq):
    """FeatureMimicLoss: diff = a - b, sq[r] = ||a_r - b_r||^2 (sq zeroed here).
    The loss is 0.5 * sum(factors * sq), the factors (weights, top-k, 1/K)
    computed on the host from the small weights bottom, as the CPU layer does."""
    _fill[_blocks(sq.size), THREADS](sq, float64(0))
    _mimic_rows[_blocks(a.size), THREADS](a, b, diff, sq)


def mimic_backward(diff, factors, scale, out):
    """out = diff * factors[r] * scale (scale: the loss's gradient, negated for the teacher)."""
    _mimic_grad[_blocks(diff.size), THREADS](diff, factors, float64(scale), out)


# ---------------------------------------------------------------- DivergenceGuard


@cuda.jit
def _count_bad(values, lowest_too, count):
    """count[0] += the values that are NaN or inf (or <= -FLT_MAX with lowest_too)."""
    i = cuda.grid(1)
    step = cuda.gridsize(1)
    bad = 0
    while i < values.size:
        v = values[i]
        if not math.isfinite(v) or (lowest_too and v <= -FLT_MAX):
            bad += 1
        i += step
    if bad:
        cuda.atomic.add(count, 0, bad)


def count_bad(values, count, lowest_too=True):
    """How many of flat ``values`` are NaN or inf, and with ``lowest_too``
    -FLT_MAX (what DivergenceGuard refuses), into count[0] (int64, zeroed here)."""
    _fill[1, 1](count, 0)
    _count_bad[_blocks(values.size), THREADS](values, bool(lowest_too), count)


def signatures():
    """{kernel: its argument types}, the arrays as the layers pass them (any
    layout), for compiling every kernel ahead of a GPU (check.compile_ptx)."""
    from numba import types
    from numba.types import boolean

    def a(dtype, ndim):
        return types.Array(dtype, ndim, 'A')
    f4, f8, i4, i8 = types.float32, types.float64, types.int32, types.int64
    return {
        _roi_forward: (a(f4, 4), a(i8, 1), a(i4, 2), a(i4, 2), a(i4, 2), a(i4, 2), a(f4, 1), a(f4, 4), a(i4, 4)),
        _roi_backward: (a(f4, 4), a(i4, 4), a(i8, 1), a(f4, 1), a(f4, 4)),
        _fill: (a(f4, 1), f4),
        _interp_forward: (a(f4, 3),) + (a(i4, 1),) * 2 + (a(f4, 1),) * 2 + (a(i4, 1),) * 2 + (a(f4, 1),) * 2
        + (a(f4, 3),),
        _interp_backward: (a(f4, 3),) + (a(i4, 1),) * 2 + (a(f4, 1),) * 2 + (a(i4, 1),) * 2 + (a(f4, 1),) * 2
        + (a(f4, 3),),
        _softmax: (a(f4, 3), f8, boolean, a(f8, 3)),
        _wsddn_combine: (a(f8, 3), a(f8, 3), a(f4, 3), a(f4, 2)),
        _wsddn_backward: (a(f4, 3), a(f4, 2), a(f8, 3), a(f8, 3), f8, boolean, a(f4, 3)),
        _cross_entropy_sum: (a(f4, 1), a(f4, 1), a(f8, 1)),
        _cross_entropy_grad: (a(f4, 1), a(f4, 1), f8, a(f4, 1)),
        _sigmoid_ce_sum: (a(f4, 1), a(f4, 1), f8, a(f8, 1)),
        _sigmoid_ce_grad: (a(f4, 1), a(f4, 1), f8, f8, a(f4, 1)),
        _mimic_rows: (a(f4, 2), a(f4, 2), a(f4, 2), a(f8, 1)),
        _mimic_grad: (a(f4, 2), a(f8, 1), f8, a(f4, 2)),
        _count_bad: (a(f4, 1), boolean, a(i8, 1)),
    }


def to_device(*arrays):
    return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


def simulated():
    """Whether these kernels run in numba's CUDA simulator."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


__all__ = ['count_bad', 'cross_entropy_backward', 'cross_entropy_forward', 'interp_backward', 'interp_forward',
           'interp_taps', 'mimic_backward', 'mimic_forward', 'roi_pool_backward', 'roi_pool_forward',
           'sigmoid_ce_backward', 'sigmoid_ce_forward', 'simulated', 'to_device', 'wsddn_backward',
           'wsddn_forward', 'zero']
