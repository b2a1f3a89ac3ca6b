"""Check the CUDA kernels (kernels.py) against plain numpy references, on a
GPU or in numba's CUDA simulator:

    NUMBA_ENABLE_CUDASIM=1 python -m caffe_mlic.gpu.check      # no GPU: the simulator
    python -m caffe_mlic.gpu.check --time                      # a GPU: also time release sizes

Small shapes with the cases the CPU layers' tests cover: ties (the first
maximum in row-major order wins), empty bins and rois outside the map (0,
no argmax), zero score factors, rois sharing cells (the backward's atomic
adds), one-tap interpolation rows. Needs neither Caffe nor a GPU; the test
suite runs it in the simulator and checks the references against the CPU
layers themselves. Prints one line per check and exits 1 on a mismatch.
"""
import argparse
import sys
import time

import numpy as np

# Tolerances: ROI pooling's forward is a max and one product, the same on
# both sides: exact. The backward adds in another order (atomics) and the
# interpolation multiplies in another order: float32 rounding, a few ulps.
RTOL, ATOL = 1e-5, 1e-6


def random_bins(rng, R, PH, PW, H, W, N):
    """Bins as roi_pooling._prepare gives them: clipped to the map, some empty."""
    def edges(P, limit):
        lo = rng.integers(-2, limit + 1, size=(R, P))
        hi = lo + rng.integers(0, 4, size=(R, P))
        return np.clip(lo, 0, limit).astype(np.int32), np.clip(hi, 0, limit).astype(np.int32)
    hs, he = edges(PH, H)
    ws, we = edges(PW, W)
    bidx = rng.integers(0, N, size=R).astype(np.int64)
    factors = rng.choice(np.array([0.0, 0.5, 1.0, 2.5], np.float32), size=R)
    return bidx, hs, he, ws, we, factors


def roi_reference(features, bins, PH, PW):
    bidx, hs, he, ws, we, factors = bins
    N, C, H, W = features.shape
    R = bidx.shape[0]
    out = np.zeros((R, C, PH, PW), np.float32)
    arg = np.full((R, C, PH, PW), -1, np.int32)
    for r in range(R):
        for ph in range(PH):
            for pw in range(PW):
                cells = features[bidx[r], :, hs[r, ph]:he[r, ph], ws[r, pw]:we[r, pw]].reshape(C, -1)
                if cells.shape[1] == 0:
                    continue
                best = np.argmax(cells, axis=1)        # the first maximum in row-major order
                rows = hs[r, ph] + best // (we[r, pw] - ws[r, pw])
                cols = ws[r, pw] + best % (we[r, pw] - ws[r, pw])
                out[r, :, ph, pw] = cells[np.arange(C), best] * factors[r]
                arg[r, :, ph, pw] = rows * W + cols
    return out, arg


def roi_backward_reference(top_diff, arg, bins, shape):
    bidx, factors = bins[0], bins[5]
    diff = np.zeros(shape, np.float64)
    W = shape[3]
    R, C = top_diff.shape[:2]
    for r in range(R):
        for c in range(C):
            for k, a in enumerate(arg[r, c].ravel()):
                if a >= 0:
                    diff[bidx[r], c, a // W, a % W] += float(top_diff[r, c].ravel()[k]) * float(factors[r])
    return diff.astype(np.float32)


def random_taps(rng, n_out, n_in):
    """A bilinear-like matrix: two neighbouring taps a row, weights summing to 1, some rows one tap."""
    m = np.zeros((n_out, n_in), np.float32)
    for k in range(n_out):
        c = int(rng.integers(0, n_in))
        if c + 1 < n_in and rng.random() < 0.8:
            lam = np.float32(rng.random())
            m[k, c], m[k, c + 1] = np.float32(1) - lam, lam
        else:
            m[k, c] = 1
    return m


def check_roi(rng, say, N=2, C=5, H=7, W=6, R=9, PH=2, PW=3, features=None, bins=None):
    from caffe_mlic.gpu import kernels
    from numba import cuda
    if features is None:
        # small integers: many ties
        features = rng.integers(-3, 4, size=(N, C, H, W)).astype(np.float32)
    N, C, H, W = features.shape
    if bins is None:
        bins = random_bins(rng, R, PH, PW, H, W, N)
    R = bins[0].shape[0]
    out_ref, arg_ref = roi_reference(features, bins, PH, PW)
    d_feat, = kernels.to_device(features)
    d_bins = kernels.to_device(*bins)
    d_out = cuda.device_array((R, C, PH, PW), np.float32)
    d_arg = cuda.device_array((R, C, PH, PW), np.int32)
    kernels.roi_pool_forward(d_feat, d_bins, d_out, d_arg)
    out, arg = d_out.copy_to_host(), d_arg.copy_to_host()
    ok = np.array_equal(out, out_ref) and np.array_equal(arg, arg_ref)
    say('ROIPooling forward, %d rois x %d channels (ties, empty bins, zero factors)' % (R, C), ok)
    top_diff = rng.standard_normal((R, C, PH, PW)).astype(np.float32)
    d_top, = kernels.to_device(top_diff)
    d_diff = cuda.to_device(np.full(features.shape, 7, np.float32))       # overwritten, not added to
    kernels.roi_pool_backward(d_top, d_arg, d_bins, d_diff)
    diff_ref = roi_backward_reference(top_diff, arg_ref, bins, features.shape)
    ok_b = np.allclose(d_diff.copy_to_host(), diff_ref, rtol=RTOL, atol=ATOL)
    say('ROIPooling backward (atomic adds where rois share cells)', ok_b)
    return ok and ok_b, (out, arg, d_diff.copy_to_host())


def check_interp(rng, say, P=3, H=5, W=4, HO=9, WO=7, mh=None, mw=None, x=None):
    from caffe_mlic.gpu import kernels
    from numba import cuda
    mh = random_taps(rng, HO, H) if mh is None else mh
    mw = random_taps(rng, WO, W) if mw is None else mw
    x = rng.standard_normal((P, mh.shape[1], mw.shape[1])).astype(np.float32) if x is None else x
    y_ref = (mh.astype(np.float64) @ x.astype(np.float64) @ mw.T.astype(np.float64)).astype(np.float32)
    rows = kernels.to_device(*kernels.interp_taps(mh))
    cols = kernels.to_device(*kernels.interp_taps(mw))
    d_x, = kernels.to_device(x)
    d_y = cuda.device_array((x.shape[0], mh.shape[0], mw.shape[0]), np.float32)
    kernels.interp_forward(d_x, rows, cols, d_y)
    y = d_y.copy_to_host()
    ok = np.allclose(y, y_ref, rtol=RTOL, atol=ATOL)
    say('Interp forward %dx%d -> %dx%d' % (mh.shape[1], mw.shape[1], mh.shape[0], mw.shape[0]), ok)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx_ref = (mh.T.astype(np.float64) @ g.astype(np.float64) @ mw.astype(np.float64)).astype(np.float32)
    d_g, = kernels.to_device(g)
    d_dx = cuda.to_device(np.full(x.shape, 3, np.float32))
    kernels.interp_backward(d_g, rows, cols, d_dx)
    dx = d_dx.copy_to_host()
    ok_b = np.allclose(dx, dx_ref, rtol=RTOL, atol=ATOL)
    say('Interp backward', ok_b)
    return ok and ok_b, (y, dx)


def _softmax(z, axis):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def check_wsddn(rng, say, N=2, B=5, C=4, tc=1.0, td=0.5, zc=None, zd=None, g_region=None, g_image=None):
    """WSDDNScore forward and backward; returns the kernels' outputs (region, image, dzc, dzd)."""
    from numba import cuda
    from caffe_mlic.gpu import kernels
    zc = rng.standard_normal((N, B, C)).astype(np.float32) * 3 if zc is None else zc
    zd = rng.standard_normal((N, B, C)).astype(np.float32) * 3 if zd is None else zd
    N, B, C = zc.shape
    pc, pd = _softmax(zc.astype(np.float64) / tc, 2), _softmax(zd.astype(np.float64) / td, 1)
    region_ref, image_ref = pc * pd, (pc * pd).sum(axis=1)
    d_zc, d_zd = kernels.to_device(zc, zd)
    d_region, d_image = cuda.device_array((N, B, C), np.float32), cuda.device_array((N, C), np.float32)
    d_pc, d_pd = cuda.device_array((N, B, C), np.float64), cuda.device_array((N, B, C), np.float64)
    kernels.wsddn_forward(d_zc, d_zd, tc, td, d_region, d_image, d_pc, d_pd)
    region, image = d_region.copy_to_host(), d_image.copy_to_host()
    ok = np.allclose(region, region_ref, rtol=RTOL, atol=ATOL) and np.allclose(image, image_ref, rtol=RTOL, atol=ATOL)
    say('WSDDNScore forward (%d images x %d rois x %d classes, T %g / %g)' % (N, B, C, tc, td), ok)
    g_region = rng.standard_normal((N, B, C)).astype(np.float32) if g_region is None else g_region
    g_image = rng.standard_normal((N, C)).astype(np.float32) if g_image is None else g_image
    g = g_region.astype(np.float64) + g_image.astype(np.float64)[:, None, :]
    h, k = g * pd, g * pc
    dzc_ref = pc * (h - (h * pc).sum(axis=2, keepdims=True)) / tc
    dzd_ref = pd * (k - (k * pd).sum(axis=1, keepdims=True)) / td
    d_dzc, d_dzd = cuda.device_array((N, B, C), np.float32), cuda.device_array((N, B, C), np.float32)
    kernels.wsddn_backward(*kernels.to_device(g_region, g_image), d_pc, d_pd, tc, td, d_dzc, d_dzd)
    dzc, dzd = d_dzc.copy_to_host(), d_dzd.copy_to_host()
    ok_b = np.allclose(dzc, dzc_ref, rtol=RTOL, atol=ATOL) and np.allclose(dzd, dzd_ref, rtol=RTOL, atol=ATOL)
    say('WSDDNScore backward', ok_b)
    return ok and ok_b, (region, image, dzc, dzd)


def check_losses(rng, say, n=3, c=7):
    """CrossEntropyLoss, SoftSigmoidCrossEntropyLoss and FeatureMimicLoss's
    sums and gradients; DivergenceGuard's count."""
    from numba import cuda
    from caffe_mlic.gpu import kernels
    total = cuda.device_array(1, np.float64)
    # probabilities at and beyond the clamp (0, 1e-5, 1) and targets 0, 1 and soft
    p = rng.random(n * c).astype(np.float32)
    p[:3] = [0, 1e-5, 1]
    t = rng.choice(np.array([0, 1, 0.3], np.float32), n * c)
    d_p, d_t = kernels.to_device(p, t)
    kernels.cross_entropy_forward(d_p, d_t, total)
    p64, t64 = p.astype(np.float64), t.astype(np.float64)
    ce = -(t64 * np.log(np.maximum(p64, 1e-4)) + (1 - t64) * np.log(np.maximum(1 - p64, 1e-4))).sum()
    ok = np.isclose(total.copy_to_host()[0], ce, rtol=1e-12)
    d_dp = cuda.device_array(n * c, np.float32)
    kernels.cross_entropy_backward(d_p, d_t, 0.5, n, d_dp)
    grad = -(t64 / np.maximum(p64, 1e-4) - (1 - t64) / np.maximum(1 - p64, 1e-4)) * (0.5 / n)
    ok &= np.allclose(d_dp.copy_to_host(), grad, rtol=RTOL, atol=ATOL)
    say('CrossEntropyLoss sum and gradient (clamped at 1e-4)', ok)

    x = (rng.standard_normal(n * c) * 30).astype(np.float32)      # far into both tails
    t = rng.random(n * c).astype(np.float32)
    t[0], t[1] = 1.0000001, -1e-6                                   # the rounding slack, clipped
    temperature = 2.0
    d_x, d_t = kernels.to_device(x, t)
    kernels.sigmoid_ce_forward(d_x, d_t, temperature, total)
    z, tc = x.astype(np.float64) / temperature, np.clip(t.astype(np.float64), 0, 1)
    sce = (np.maximum(z, 0) - z * tc + np.log1p(np.exp(-np.abs(z)))).sum()
    ok = np.isclose(total.copy_to_host()[0], sce, rtol=1e-12)
    d_dx = cuda.device_array(n * c, np.float32)
    kernels.sigmoid_ce_backward(d_x, d_t, temperature, 1.0, n, d_dx)
    sig = 0.5 * (1 + np.tanh(0.5 * z))
    ok &= np.allclose(d_dx.copy_to_host(), (sig - tc) / (temperature * n), rtol=RTOL, atol=ATOL)
    say('SoftSigmoidCrossEntropyLoss sum and gradient (T 2, saturated logits)', ok)

    a = rng.standard_normal((n * 4, 6)).astype(np.float32)
    b = rng.standard_normal((n * 4, 6)).astype(np.float32)
    d_a, d_b = kernels.to_device(a, b)
    d_diff, d_sq = cuda.device_array(a.shape, np.float32), cuda.device_array(a.shape[0], np.float64)
    kernels.mimic_forward(d_a, d_b, d_diff, d_sq)
    diff = a - b
    ok = np.array_equal(d_diff.copy_to_host(), diff) and np.allclose(
        d_sq.copy_to_host(), (diff.astype(np.float64) ** 2).sum(axis=1), rtol=1e-12)
    factors = rng.random(a.shape[0])
    factors[::3] = 0                                                  # rows top-k left out
    d_out = cuda.device_array(a.shape, np.float32)
    kernels.mimic_backward(d_diff, kernels.to_device(factors)[0], -0.7, d_out)
    ok &= np.allclose(d_out.copy_to_host(), diff * factors[:, None] * -0.7, rtol=RTOL, atol=ATOL)
    say('FeatureMimicLoss row sums and gradient', ok)

    v = rng.standard_normal(1000).astype(np.float32)
    v[[3, 70, 500, 999]] = [np.nan, np.inf, -np.inf, -np.finfo(np.float32).max]
    count = cuda.device_array(1, np.int64)
    kernels.count_bad(kernels.to_device(v)[0], count)
    ok = count.copy_to_host()[0] == 4
    kernels.count_bad(kernels.to_device(v[:3])[0], count)
    say('DivergenceGuard count (NaN, inf, -inf, -FLT_MAX)', ok and count.copy_to_host()[0] == 0)


def time_release(say_line):
    """Release-size timings on a GPU: the teacher's ROI pooling (conv5_3 of a
    batch of 32 at 672 px, 500 proposals an image, 7 x 7 bins) and stage 1's
    672 -> 224 resize of a batch of 32 images."""
    from numba import cuda
    from caffe_mlic.gpu import kernels
    rng = np.random.default_rng(0)
    N, C, H, W, R, PH, PW = 32, 512, 42, 42, 16000, 7, 7
    bins = random_bins(rng, R, PH, PW, H, W, N)
    # bins of a realistic size (up to a fifth of the map), not the checks' tiny ones
    for lo, hi, limit in ((bins[1], bins[2], H), (bins[3], bins[4], W)):
        lo[...] = rng.integers(0, limit - 1, size=lo.shape)
        hi[...] = np.minimum(lo + rng.integers(1, limit // 5 + 1, size=lo.shape), limit)
    d_feat = cuda.to_device(rng.standard_normal((N, C, H, W)).astype(np.float32))
    d_bins = kernels.to_device(*bins)
    d_out = cuda.device_array((R, C, PH, PW), np.float32)
    d_arg = cuda.device_array((R, C, PH, PW), np.int32)
    d_diff = cuda.device_array((N, C, H, W), np.float32)

    def timed(fn, repeats=5):
        fn()
        cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        cuda.synchronize()
        return (time.perf_counter() - start) / repeats * 1e3
    say_line('ROIPooling forward, release size (%d rois x %d channels, %dx%d bins): %.2f ms'
             % (R, C, PH, PW, timed(lambda: kernels.roi_pool_forward(d_feat, d_bins, d_out, d_arg))))
    say_line('ROIPooling backward, release size: %.2f ms'
             % timed(lambda: kernels.roi_pool_backward(d_out, d_arg, d_bins, d_diff)))
    mh, mw = random_taps(rng, 224, 672), random_taps(rng, 224, 672)
    rows, cols = kernels.to_device(*kernels.interp_taps(mh)), kernels.to_device(*kernels.interp_taps(mw))
    d_x = cuda.to_device(rng.standard_normal((32 * 3, 672, 672)).astype(np.float32))
    d_y = cuda.device_array((32 * 3, 224, 224), np.float32)
    say_line('Interp forward, 32 x 3 x 672 x 672 -> 224 x 224: %.2f ms'
             % timed(lambda: kernels.interp_forward(d_x, rows, cols, d_y)))
    say_line('Interp backward: %.2f ms' % timed(lambda: kernels.interp_backward(d_y, rows, cols, d_x)))


def compile_ptx(say, archs=((7, 5), (8, 0), (9, 0))):
    """Every kernel compiled to PTX for each architecture, with the argument
    types the layers pass (kernels.signatures). Needs numba's CUDA target
    with NVVM (the GPU install), not a GPU."""
    from numba import cuda
    from caffe_mlic.gpu import kernels
    table = kernels.signatures()
    for cc in archs:
        targets = set()
        for dispatcher, signature in table.items():
            ptx, _ = cuda.compile_ptx(dispatcher.py_func, signature, cc=cc)
            targets.update(line.split()[1] for line in ptx.splitlines() if line.startswith('.target'))
        say('%d kernels compiled to PTX for sm_%d%d' % (len(table), cc[0], cc[1]),
            targets == {'sm_%d%d' % cc})


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m caffe_mlic.gpu.check', description=__doc__.split('\n\n')[0])
    parser.add_argument('--time', action='store_true', help='also time release sizes (a GPU only)')
    parser.add_argument('--ptx', action='store_true',
                        help='also compile every kernel to PTX for sm_75, sm_80 and sm_90 (CUDA 13 builds no older; numba-cuda, no GPU needed)')
    parser.add_argument('--ptx-only', action='store_true', help='only that (on a machine without a GPU)')
    parser.add_argument('--seed', type=lambda v: int(v) if v.isdigit() else parser.error(
        'argument --seed: expected an integer >= 0, got %r' % v), default=0)
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except Exception as e:      # no GPU, no numba-cuda, no NVVM: one line, not a traceback
        first = (str(e).strip().splitlines() or [''])[0]
        sys.stderr.write('%s: %s: %s\n%s\n' % (parser.prog, type(e).__name__, first, HINT))
        return 1


HINT = ('(the checks need a GPU with numba\'s CUDA target, or NUMBA_ENABLE_CUDASIM=1 for the simulator; '
        '--ptx-only needs numba-cuda and CUDA\'s NVVM: make install GPU=1)')


def _main(args):
    from caffe_mlic.gpu import kernels
    from numba import cuda
    results = []

    def say(what, ok):
        results.append(ok)
        print('%-70s %s' % (what, 'OK' if ok else 'MISMATCH'))
    if args.ptx_only:
        compile_ptx(say)
        return 0 if all(results) else 1
    where = 'the CUDA simulator' if kernels.simulated() else cuda.get_current_device().name
    if isinstance(where, bytes):
        where = where.decode()
    print('kernels on %s' % where)
    rng = np.random.default_rng(args.seed)
    for _ in range(2):
        check_roi(rng, say)
        check_interp(rng, say)
    check_interp(rng, say, H=1, W=1, HO=4, WO=3)        # one input pixel: every row one tap
    check_wsddn(rng, say)
    check_wsddn(rng, say, B=1, C=1, tc=1.0, td=1.0)      # one roi, one class: softmaxes of 1
    check_losses(rng, say)
    if args.ptx and not kernels.simulated():
        compile_ptx(say)
    if args.time and not kernels.simulated():
        time_release(print)
    sys.stdout.flush()
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main())
