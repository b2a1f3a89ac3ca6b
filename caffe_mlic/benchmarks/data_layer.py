"""MultiLabelProposalData throughput: images per second it delivers in a
caffe.Net (2 worker processes, forward only, after warm-up) against decoding
and resizing the same JPEGs in a plain loop in one process (cv2.imread +
cv2.resize + mean subtraction), at the release size (672 x 672).

Also reported, for information: the layer run in-process (workers=0, the same
decoding code in the solver's thread), and the time one forward costs the
solver's own thread when the workers are ahead (copying the batch out of shared
memory, labels and boxes): what training waits for per batch. On a machine
with few cores and little memory bandwidth the in-process layer comes close
in images/s, but it spends all of that time in the solver's thread.
"""
import os
import tempfile
import time

import numpy as np

MEAN = (103.52, 116.28, 123.675)
SIZE = 672
ATT_NUM, BBOX_NUM = 80, 500


def _write_images(folder, n, rng):
    """n 500 x 375 JPEGs with smooth random content (decodes like a photo,
    not like noise), and a datalist with release-sized labels and proposals."""
    import cv2
    from caffe_mlic.data.datalist import write_datalist
    rows = []
    for i in range(n):
        small = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        img = cv2.resize(small, (500, 375), interpolation=cv2.INTER_CUBIC)
        img = cv2.add(img, rng.integers(0, 24, img.shape, dtype=np.uint8))
        path = os.path.join(folder, 'img%03d.jpg' % i)
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        xy = rng.integers(0, SIZE - 100, (BBOX_NUM, 2))
        boxes = np.concatenate([xy, xy + rng.integers(0, 100, (BBOX_NUM, 2))], axis=1)
        rows.append((path, rng.integers(0, 2, ATT_NUM), boxes, np.round(rng.random(BBOX_NUM), 4)))
    write_datalist(os.path.join(folder, 'list.txt'), rows)
    return [r[0] for r in rows]


def plain_loop(paths):
    import cv2
    mean = np.array(MEAN, np.float32)
    start = time.perf_counter()
    for p in paths:
        img = cv2.resize(cv2.imread(p, cv2.IMREAD_COLOR), (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
        out = img.astype(np.float32)
        out -= mean
    return len(paths) / (time.perf_counter() - start)


def _layer_net(folder, batch_size, workers):
    import json

    import caffe
    caffe.set_mode_cpu()
    params = dict(source=os.path.join(folder, 'list.txt'), batch_size=batch_size, new_width=SIZE,
                  new_height=SIZE, att_num=ATT_NUM, bbox_num=BBOX_NUM, mean_value=list(MEAN),
                  workers=workers)
    text = ('layer { name: "data" type: "Python" top: "data" top: "label_roi"\n'
            '  python_param { module: "caffe_mlic.layers" layer: "MultiLabelProposalData"\n'
            '                 param_str: %s } }\n' % json.dumps(json.dumps(params)))
    path = os.path.join(folder, 'net.prototxt')
    with open(path, 'w') as f:
        f.write(text)
    return caffe.Net(path, caffe.TEST)


def _layer_pass(net, batches, batch_size):
    for _ in range(3):                      # drain what was prefetched while we were away
        net.forward()
    start = time.perf_counter()
    for _ in range(batches):
        net.forward()
    return batches * batch_size / (time.perf_counter() - start)


def _consumer_cost(net, rate, batch_size):
    """Seconds per image one forward costs this thread when the batch is ready."""
    costs = []
    for _ in range(3):
        time.sleep(2.0 * 3 * batch_size / rate)  # let the workers fill every slot
        t = time.perf_counter()
        net.forward()
        costs.append((time.perf_counter() - t) / batch_size)
    return min(costs)


def run(report, quick):
    n = 48 if quick else 200
    batch_size = 8 if quick else 16
    repeats = 2 if quick else 3
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix='mlic_bench_data_') as folder:
        paths = _write_images(folder, n, rng)
        plain_loop(paths[:8])               # warm the page cache and OpenCV
        batches = n // batch_size
        net = _layer_net(folder, batch_size, workers=2)
        # Interleaved, best of `repeats` each: a busy machine slows both alike.
        # (The workers idle while the plain loop runs: their slots are full.)
        base = rate = 0.0
        for _ in range(repeats):
            base = max(base, plain_loop(paths))
            rate = max(rate, _layer_pass(net, batches, batch_size))
        consumer = _consumer_cost(net, rate, batch_size)
        net.layers[0].close()
        del net
        in_process_net = _layer_net(folder, batch_size, workers=0)
        in_process = max(_layer_pass(in_process_net, batches, batch_size) for _ in range(repeats))
        del in_process_net
    cores = os.cpu_count()
    report('data layer, %d px, 2 workers (%d cores): images/s vs one-process loop' % (SIZE, cores),
           rate / base, '>= 1.6', 'x')
    report('  layer images/s', rate, None, 'img/s')
    report('  plain loop images/s', base, None, 'img/s')
    report('  same layer in-process (workers=0) images/s', in_process, None, 'img/s')
    report('  solver-thread cost per image when prefetched', 1000 * consumer, None, 'ms')
