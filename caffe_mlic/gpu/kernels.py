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
import numpy as np
from numba import cuda, float32, int32

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
        pw = i % PW
        t = i // PW
        ph = t % PH
        t //= PH
        c = t % C
        r = t // C
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
        pw = i % PW
        t = i // PW
        ph = t % PH
        t //= PH
        c = t % C
        r = t // C
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
        j = k % WO
        t = k // WO
        i = t % HO
        p = t // HO
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
        j = k % WO
        t = k // WO
        i = t % HO
        p = t // HO
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


def to_device(*arrays):
    return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in arrays)


def simulated():
    """Whether these kernels run in numba's CUDA simulator."""
    from numba import config
    return bool(config.ENABLE_CUDASIM)


__all__ = ['interp_backward', 'interp_forward', 'interp_taps', 'roi_pool_backward', 'roi_pool_forward',
           'simulated', 'to_device', 'zero']
