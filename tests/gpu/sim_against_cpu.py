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
    _layers_against_cpu(rng, say)
    _layers_take_the_kernel_path(say)
    return 1 if failures else 0


def _layers_take_the_kernel_path(say):
    """With CAFFE_MLIC_GPU_LAYERS=sim the layers run their GPU code (what
    test_kernels runs the layer tests through): each keeps its device work."""
    import os
    import caffe
    from tests import netutil
    os.environ['CAFFE_MLIC_GPU_LAYERS'] = 'sim'
    net = netutil.python_layer_net(caffe, None, 'ROIPooling', dict(pooled_h=2, pooled_w=2), [(1, 2, 5, 5), (1, 6)])
    netutil.set_inputs(net, np.ones((1, 2, 5, 5), np.float32), np.array([[0, 0, 0, 40, 40, 1]], np.float32))
    net.forward()
    net.backward()
    say('the layers run their kernels with CAFFE_MLIC_GPU_LAYERS=sim', hasattr(net.layers[-1], '_gpu_last'))
    os.environ['CAFFE_MLIC_GPU_LAYERS'] = 'host'
    net.forward()
    del net.layers[-1]._gpu_last
    net.forward()
    say('... and their host code with CAFFE_MLIC_GPU_LAYERS=host', not hasattr(net.layers[-1], '_gpu_last'))


def _run_layer(layer, params, inputs, n_tops=1, loss=False, top_diffs=None):
    """The CPU layer in a one-layer net: (its tops, its bottoms' gradients)."""
    import caffe
    from tests import netutil
    net = netutil.python_layer_net(caffe, None, layer, params, [a.shape for a in inputs], n_tops=n_tops,
                                   loss_weight=1 if loss else None)
    netutil.set_inputs(net, *inputs)
    net.forward()
    tops = [net.blobs['t%d' % i].data.copy() for i in range(n_tops)]
    for i, g in enumerate(top_diffs or []):
        net.blobs['t%d' % i].diff[...] = g
    if loss:
        net.blobs['t0'].diff[...] = 1
    net.backward()
    return tops, [net.blobs['b%d' % i].diff.copy() for i in range(len(inputs))]


def _layers_against_cpu(rng, say):
    """The kernels against the CPU layers themselves (Caffe nets), on the same inputs."""
    from numba import cuda
    N, B, C = 2, 6, 5
    zc = rng.standard_normal((N * B, C)).astype(np.float32) * 2
    zd = rng.standard_normal((N * B, C)).astype(np.float32) * 2
    g_region = rng.standard_normal((N, B, C)).astype(np.float32)
    g_image = rng.standard_normal((N, C)).astype(np.float32)
    (region, image), (dzc, dzd) = _run_layer('WSDDNScore', dict(bbox_num=B, det_temperature=0.5), [zc, zd], 2,
                                             top_diffs=[g_region, g_image])
    ok, (k_region, k_image, k_dzc, k_dzd) = check.check_wsddn(
        rng, say, zc=zc.reshape(N, B, C), zd=zd.reshape(N, B, C), tc=1.0, td=0.5, g_region=g_region,
        g_image=g_image)
    close = lambda a, b: np.allclose(a, b, rtol=check.RTOL, atol=check.ATOL)       # noqa: E731
    say('GPU WSDDNScore == the CPU layer (forward and backward)',
        close(k_region, region) and close(k_image, image) and close(k_dzc, dzc.reshape(N, B, C))
        and close(k_dzd, dzd.reshape(N, B, C)))

    total = cuda.device_array(1, np.float64)
    p = rng.random((3, 4)).astype(np.float32)
    t = (rng.random((3, 4)) < 0.5).astype(np.float32)
    (loss,), (dp, _) = _run_layer('CrossEntropyLoss', {}, [p, t], loss=True)
    d_p, d_t = kernels.to_device(p.ravel(), t.ravel())
    kernels.cross_entropy_forward(d_p, d_t, total)
    d_dp = cuda.device_array(p.size, np.float32)
    kernels.cross_entropy_backward(d_p, d_t, 1.0, 3, d_dp)
    say('GPU CrossEntropyLoss == the CPU layer',
        np.isclose(total.copy_to_host()[0] / 3, loss.item(), rtol=1e-6) and close(d_dp.copy_to_host(), dp.ravel()))

    x = (rng.standard_normal((3, 4)) * 5).astype(np.float32)
    t = rng.random((3, 4)).astype(np.float32)
    (loss,), (dx, _) = _run_layer('SoftSigmoidCrossEntropyLoss', dict(temperature=2.0), [x, t], loss=True)
    d_x, d_t = kernels.to_device(x.ravel(), t.ravel())
    kernels.sigmoid_ce_forward(d_x, d_t, 2.0, total)
    d_dx = cuda.device_array(x.size, np.float32)
    kernels.sigmoid_ce_backward(d_x, d_t, 2.0, 1.0, 3, d_dx)
    say('GPU SoftSigmoidCrossEntropyLoss == the CPU layer',
        np.isclose(total.copy_to_host()[0] / 3, loss.item(), rtol=1e-6) and close(d_dx.copy_to_host(), dx.ravel()))

    a = rng.standard_normal((8, 5)).astype(np.float32)
    b = rng.standard_normal((8, 5)).astype(np.float32)
    (loss,), (da, db) = _run_layer('FeatureMimicLoss', {}, [a, b], loss=True)
    d_a, d_b = kernels.to_device(a, b)
    d_diff, d_sq = cuda.device_array(a.shape, np.float32), cuda.device_array(8, np.float64)
    kernels.mimic_forward(d_a, d_b, d_diff, d_sq)
    factors = np.full(8, 1 / 8)              # no weights: every row, K = R
    d_f, = kernels.to_device(factors)
    d_da, d_db = cuda.device_array(a.shape, np.float32), cuda.device_array(a.shape, np.float32)
    kernels.mimic_backward(d_diff, d_f, 1.0, d_da)
    kernels.mimic_backward(d_diff, d_f, -1.0, d_db)
    say('GPU FeatureMimicLoss == the CPU layer',
        np.isclose(0.5 * (factors * d_sq.copy_to_host()).sum(), loss.item(), rtol=1e-6)
        and close(d_da.copy_to_host(), da) and close(d_db.copy_to_host(), db))


if __name__ == '__main__':
    sys.exit(main())
