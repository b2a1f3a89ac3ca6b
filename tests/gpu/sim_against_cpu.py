"""Run in numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set by the test):
the CUDA kernels on the CPU layers' own inputs (bins from real rois, the
Interp layer's matrices) against the CPU layers' outputs and gradients."""
import sys

import numpy as np

from caffe_mlic.gpu import check, kernels
from caffe_mlic.layers import interp, roi_pooling


def main():
    assert kernels.simulated(), 'run with NUMBA_ENABLE_CUDASIM=1'
    rng = np.random.default_rng(5)
    failures = []

    def say(what, ok):
        print(what, 'OK' if ok else 'MISMATCH')
        if not ok:
            failures.append(what)
    N, C, H, W, PH, PW = 2, 20, 9, 8, 3, 2        # 20 channels: a full 16-lane block and a part one
    features = rng.integers(-2, 3, size=(N, C, H, W)).astype(np.float32)      # ties
    R = 12
    rois = np.zeros((R, 6), np.float32)
    rois[:, 0] = rng.integers(0, N, R)
    corners = rng.uniform(-40, 200, size=(R, 4)).astype(np.float32)   # some beyond the map (16 px a cell)
    rois[:, 1:3] = np.minimum(corners[:, :2], corners[:, 2:])
    rois[:, 3:5] = np.maximum(corners[:, :2], corners[:, 2:])
    rois[:, 5] = rng.choice(np.array([0.0, 0.3, 1.0], np.float32), R)       # zero scores too
    rois[0, 1:5] = [300, 300, 400, 400]            # wholly outside: empty bins
    cpu = roi_pooling.RoiPoolingKernel(PH, PW, 1 / 16., score_scale=1.0, score_bias=0.0, threads=1)
    out_cpu = cpu.forward(features, rois, np.empty((R, C, PH, PW), np.float32))
    hs, he, ws, we, bidx, factors = cpu._rois_buffers       # the bins the CPU layer pooled with
    bins = (bidx, hs, he, ws, we, factors)
    top_diff = rng.standard_normal(out_cpu.shape).astype(np.float32)
    diff_cpu = cpu.backward(top_diff, np.empty_like(features))
    ok, (out, arg, _) = check.check_roi(rng, say, features=features, bins=bins, PH=PH, PW=PW)
    say('GPU ROIPooling forward == the CPU layer', np.array_equal(out, out_cpu))
    say('GPU ROIPooling argmax == the CPU layer', np.array_equal(arg.reshape(R, C, -1), cpu.argmax))
    from numba import cuda
    d_diff = cuda.device_array(features.shape, np.float32)
    kernels.roi_pool_backward(kernels.to_device(top_diff)[0], cuda.to_device(arg), kernels.to_device(*bins), d_diff)
    say('GPU ROIPooling backward == the CPU layer (float32 rounding)',
        np.allclose(d_diff.copy_to_host(), diff_cpu, rtol=check.RTOL, atol=check.ATOL))
    for (h, w, ho, wo) in ((5, 4, 9, 13), (6, 6, 3, 2), (1, 3, 4, 5)):
        mh, mw = interp.interp_weights(h, ho), interp.interp_weights(w, wo)
        x = rng.standard_normal((3, h, w)).astype(np.float32)
        ok, (y, dx) = check.check_interp(rng, say, mh=mh, mw=mw, x=x)
        y_cpu = mh @ (x.reshape(-1, w) @ mw.T).reshape(3, h, wo)        # the layer's two products
        say('GPU Interp forward == the CPU layer (%dx%d -> %dx%d)' % (h, w, ho, wo),
            np.allclose(y, y_cpu, rtol=check.RTOL, atol=check.ATOL))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
