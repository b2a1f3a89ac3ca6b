"""Python layers' share of one training iteration (forward + backward) of WSDDN.

Each layer is timed on its own (pycaffe's _forward(i, i) / _backward(i, i)),
in one net, so the ratio is independent of machine speed. The data layer is
replaced by Input blobs holding a random batch (it prefetches in other
processes; its cost in the solver's thread is a copy, measured in data_layer).
Target: <= 3 % for the tiny net and for the release VGG16 net (batch 1, 672 px,
500 proposals).
"""
import os
import tempfile
import time

import numpy as np


def _random_batch(net, cfg, rng):
    size = cfg.teacher_size
    net.blobs['data'].data[...] = rng.standard_normal(net.blobs['data'].data.shape) * 50
    n = net.blobs['data'].data.shape[0]
    labels = (rng.random((n, cfg.num_classes)) < 0.3).astype(np.float32)
    xy = rng.integers(0, size - 32, size=(n, cfg.bbox_num, 2))
    wh = rng.integers(16, size // 2, size=(n, cfg.bbox_num, 2))
    x2y2 = np.minimum(xy + wh, size - 1)
    boxes = np.concatenate([xy, x2y2, rng.random((n, cfg.bbox_num, 1))], axis=2)
    net.blobs['label_roi'].data[...] = np.concatenate([labels, boxes.reshape(n, -1)], axis=1)


def measure(cfg, repeats=2, seed=0):
    """(python seconds, total seconds, {layer: seconds}) for one fwd+bwd, best of repeats."""
    import caffe
    from caffe_mlic.netspec import netgen
    from caffe_mlic.caffe.surgery import shape_only_net
    caffe.set_mode_cpu()
    with tempfile.TemporaryDirectory() as tmp:
        netgen.generate(tmp, cfg)
        net = shape_only_net(os.path.join(tmp, 'wsddn', 'wsddn_train.prototxt'), phase='TRAIN')
    _random_batch(net, cfg, np.random.default_rng(seed))
    names = list(net._layer_names)
    types = [layer.type for layer in net.layers]
    best = None
    for _ in range(repeats + 1):  # the first pass warms up (numba compiles, buffers grow)
        times = np.zeros(len(names))
        for i in range(len(names)):
            t = time.perf_counter()
            net._forward(i, i)
            times[i] += time.perf_counter() - t
        for i in reversed(range(len(names))):
            t = time.perf_counter()
            net._backward(i, i)
            times[i] += time.perf_counter() - t
        best = times if best is None else np.minimum(best, times)
    python = sum(t for t, kind in zip(best, types) if kind == 'Python')
    per_layer = {n: t for n, t, kind in zip(names, best, types) if kind == 'Python'}
    return python, float(best.sum()), per_layer


def run(report, quick):
    from caffe_mlic.netspec import MlicConfig
    tiny = MlicConfig.release(num_classes=20, bbox_num=100, teacher_size=224, student_size=224,
                              backbone='tiny', wsddn_batch=(2, 2), workers=0)
    py, total, per_layer = measure(tiny, repeats=3)
    report('tiny WSDDN net (224 px, 100 rois, batch 2): Python layers share', 100 * py / total,
           '<= 3', '%')
    if quick:
        return
    release = MlicConfig.release(wsddn_batch=(1, 1), workers=0)
    py, total, per_layer = measure(release, repeats=1)
    report('release VGG16 WSDDN (672 px, 500 rois, batch 1): Python layers share',
           100 * py / total, '<= 3', '%')
    report('  release iteration time (fwd+bwd, this machine)', total, None, 's')
    for name, t in sorted(per_layer.items(), key=lambda kv: -kv[1]):
        report('  %s' % name, 1000 * t, None, 'ms')
