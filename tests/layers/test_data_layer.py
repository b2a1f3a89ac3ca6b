"""MultiLabelProposalData (the original HumanAttData) in real caffe.Nets, on real image files."""
import gc
import os
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest

from caffe_mlic.data.datalist import DatalistError, write_datalist
from caffe_mlic.layers.data import DataLoadError
from caffe_mlic.caffe.params import LayerError
from tests.caffe_binary import caffe_train
from tests import netutil
from tests.tinydata import forward_batches

C, B = 3, 2


def data_text(params, tops=('data', 'label_roi')):
    return netutil.python_layer_text('data', 'MultiLabelProposalData', params, [], list(tops))


def pid_alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            state = f.read().rsplit(')', 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ('Z', 'X')


def wait_gone(pids, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


def random_dataset(tmp_path, n=5, size=(30, 20)):
    """n PNG images (lossless: exact pixels) of random BGR content, and a datalist."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        path = str(tmp_path / ('img%d.png' % i))
        cv2.imwrite(path, img)
        labels = [(i >> k) & 1 for k in range(C)]
        boxes = [[i % 5, 1, 10 + i % 5, 10.5], [0, 0, 15, 11]]
        rows.append((path, labels, boxes, [0.25 * i, 1.0]))
    write_datalist(tmp_path / 'list.txt', rows)
    return rows


def params_for(tmp_path, **kw):
    p = dict(source=str(tmp_path / 'list.txt'), batch_size=2, new_width=16, new_height=12,
             att_num=C, bbox_num=B, workers=1)
    p.update(kw)
    return p


def expected_image(path, h, w, mean, scale, flip=False):
    img = cv2.resize(cv2.imread(path, cv2.IMREAD_COLOR), (w, h), interpolation=cv2.INTER_LINEAR)
    if flip:
        img = img[:, ::-1]
    return ((img.astype(np.float32) - np.float32(mean)) * np.float32(scale)).transpose(2, 0, 1)


def expected_label_roi(row):
    _, labels, boxes, scores = row
    rois = np.concatenate([np.float32(boxes), np.float32(scores)[:, None]], axis=1)
    return np.concatenate([np.float32(labels), rois.ravel()])


def test_test_phase_file_order_exact_pixels_and_boxes(tmp_path, net_from_text):
    rows = random_dataset(tmp_path)
    mean, scale = [10.5, 20.0, 30.25], 0.5
    # TEST ignores shuffle, mirror and scale jitter
    net = net_from_text(data_text(params_for(tmp_path, mean_value=mean, scale=scale, shuffle=True,
                                             mirror=True, scale_factors=[0.5, 2.0])), 'TEST')
    order = []
    for _ in range(3):
        net.forward()
        data, lr = net.blobs['data'].data, net.blobs['label_roi'].data
        assert data.shape == (2, 3, 12, 16) and lr.shape == (2, C + 5 * B)
        for k in range(2):
            i = int(round(lr[k, C + 4] / 0.25))      # box 0's score is 0.25 * i
            order.append(i)
            assert np.array_equal(data[k], expected_image(rows[i][0], 12, 16, mean, scale))
            assert np.array_equal(lr[k], expected_label_roi(rows[i]))
    assert order == [0, 1, 2, 3, 4, 0]          # file order, wrapping around


def test_bgr_channel_order(tmp_path, net_from_text):
    img = np.zeros((8, 8, 3), np.uint8)
    img[..., 2] = 200                           # pure red, as OpenCV stores it: B, G, R
    cv2.imwrite(str(tmp_path / 'red.png'), img)
    write_datalist(tmp_path / 'list.txt', [(str(tmp_path / 'red.png'), [1, 0, 0], [[0, 0, 3, 3]] * B, [1] * B)])
    net = net_from_text(data_text(params_for(tmp_path, batch_size=1, new_width=4, new_height=4,
                                             mean_value=[1, 2, 3], scale=2.0, workers=0)), 'TEST')
    net.forward()
    d = net.blobs['data'].data[0]
    assert np.all(d[0] == -2) and np.all(d[1] == -4) and np.all(d[2] == 394)


BRIGHT, DARK = 250, 10
# Boxes in the 48 x 40 resized image; the 96 x 80 files hold the rectangle at twice that.
# Even x1, y1 and odd x2, y2, so that at f = 0.5 the box is still exactly the rectangle.
RECTS = [(8, 6, 23, 17), (30, 20, 45, 37), (2, 24, 13, 35), (20, 0, 33, 11)]


def rectangle_dataset(tmp_path):
    rows = []
    for i, (x1, y1, x2, y2) in enumerate(RECTS):
        img = np.full((80, 96, 3), DARK, np.uint8)
        img[2 * y1:2 * y2 + 2, 2 * x1:2 * x2 + 2] = BRIGHT
        path = str(tmp_path / ('rect%d.png' % i))
        cv2.imwrite(path, img)
        rows.append((path, [1, 0, 1], [[x1, y1, x2, y2], [0, 0, 47, 39]], [i, 1]))
    write_datalist(tmp_path / 'list.txt', rows)


def test_train_scale_and_mirror_move_boxes_with_the_pixels(tmp_path, net_from_text):
    rectangle_dataset(tmp_path)
    factors = [0.5, 1.0, 1.5]
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=4, new_width=48, new_height=40,
                  att_num=C, bbox_num=B, scale_factors=factors, mirror=True, shuffle=True,
                  mean_value=[5, 5, 5], seed=1, workers=2)
    net = net_from_text(data_text(params), 'TRAIN')
    mid = (BRIGHT + DARK) / 2 - 5
    seen = set()
    for _ in range(10):
        net.forward()
        data, lr = net.blobs['data'].data, net.blobs['label_roi'].data
        n, _, h, w = data.shape
        f = {(int(40 * f), int(48 * f)): f for f in factors}[(h, w)]     # one scale per batch
        for k in range(n):
            i = int(lr[k, C + 4])
            x1, y1, x2, y2 = lr[k, C:C + 4]
            flipped = x1 != int(RECTS[i][0] * f)
            for box, got in ((RECTS[i], lr[k, C:C + 4]), ((0, 0, 47, 39), lr[k, C + 5:C + 9])):
                sx1, sy1, sx2, sy2 = (int(c * f) for c in box)
                if flipped:
                    sx1, sx2 = w - 1 - sx2, w - 1 - sx1
                assert got.tolist() == [sx1, sy1, sx2, sy2]
            assert lr[k, :C].tolist() == [1, 0, 1] and lr[k, C + 9] == 1
            seen.add((f, bool(flipped)))
            x1, y1, x2, y2 = int(x1), int(y1), int(x2), int(y2)
            bright = (data[k] > mid).all(axis=0)
            assert bright[y1:y2 + 1, x1:x2 + 1].all()
            # f <= 1: the box is exactly the bright pixels. Upscaled, int(x2 * f)
            # loses the rectangle's last partly covered pixels: allow that ring.
            ring = 0 if f <= 1 else 2
            inside = np.zeros_like(bright)
            inside[max(y1 - ring, 0):y2 + 1 + ring, max(x1 - ring, 0):x2 + 1 + ring] = True
            assert not bright[~inside].any()
    assert seen == {(f, m) for f in factors for m in (False, True)}


batches = forward_batches


def test_same_seed_same_batches_whatever_the_workers(tmp_path, net_from_text):
    rows = random_dataset(tmp_path, n=7)
    mean, scale = [100, 110, 120], 0.25
    base = params_for(tmp_path, batch_size=3, scale_factors=[0.5, 1.0, 1.25, 2.0], mirror=True,
                      shuffle=True, seed=5, mean_value=mean, scale=scale)
    a = batches(net_from_text(data_text(dict(base, workers=2)), 'TRAIN'), 6)
    b = batches(net_from_text(data_text(dict(base, workers=2)), 'TRAIN'), 6)
    c = batches(net_from_text(data_text(dict(base, workers=0)), 'TRAIN'), 6)
    d = batches(net_from_text(data_text(dict(base, workers=0, seed=6)), 'TRAIN'), 6)
    for (da, la), (db, lb), (dc, lc) in zip(a, b, c):
        assert np.array_equal(da, db) and np.array_equal(la, lb)
        assert np.array_equal(da, dc) and np.array_equal(la, lc)
    assert len({x[0].shape for x in a}) > 1           # the scale varies across batches
    flips = 0
    for data, lr in a:                                # exact pixels: resized, then flipped
        h, w = data.shape[2:]
        f = h / 12
        for k in range(3):
            i = int(round(lr[k, C + 4] / 0.25))
            flipped = np.array_equal(data[k], expected_image(rows[i][0], h, w, mean, scale, True))
            assert flipped or np.array_equal(data[k], expected_image(rows[i][0], h, w, mean, scale))
            box = [int(c * f) for c in rows[i][2][0]]
            if flipped:
                box = [w - 1 - box[2], box[1], w - 1 - box[0], box[3]]
            assert lr[k, C:C + 4].tolist() == box     # the box went with the pixels
            flips += flipped
    assert 0 < flips < 18
    assert any(x[0].shape != y[0].shape or not np.array_equal(x[1], y[1]) for x, y in zip(a, d))


def test_shuffle_reshuffles_every_epoch(tmp_path, net_from_text):
    random_dataset(tmp_path, n=6)
    net = net_from_text(data_text(params_for(tmp_path, batch_size=3, shuffle=True, workers=0)), 'TRAIN')
    ids = [int(round(x / 0.25)) for _, lr in batches(net, 8) for x in lr[:, C + 4]]
    epochs = [ids[i:i + 6] for i in range(0, 24, 6)]
    assert all(sorted(e) == list(range(6)) for e in epochs)
    assert len({tuple(e) for e in epochs}) > 1 and epochs[0] != list(range(6))


def test_split_tops_and_stock_slice(tmp_path, net_from_text):
    rows = random_dataset(tmp_path)
    split = net_from_text(data_text(params_for(tmp_path, split_tops=True, workers=0),
                                    tops=('data', 'labels', 'rois')), 'TEST')
    sliced = net_from_text(data_text(params_for(tmp_path, workers=0)) + textwrap.dedent('''
        layer { name: "slice" type: "Slice" bottom: "label_roi" top: "labels" top: "rois"
                slice_param { axis: 1 slice_point: %d } }''' % C), 'TEST')
    for _ in range(3):
        split.forward()
        sliced.forward()
        assert split.blobs['data'].data.shape == (2, 3, 12, 16)
        assert split.blobs['labels'].data.shape == (2, C)
        assert split.blobs['rois'].data.shape == (2, 5 * B)
        for name in ('data', 'labels', 'rois'):
            assert np.array_equal(split.blobs[name].data, sliced.blobs[name].data)
    # the third batch is images 4, 0
    assert sliced.blobs['labels'].data.tolist() == [list(map(float, rows[4][1])), list(map(float, rows[0][1]))]
    assert np.array_equal(sliced.blobs['rois'].data[1], expected_label_roi(rows[0])[C:])


def test_workers_stop_when_the_net_is_deleted(tmp_path, net_from_text):
    random_dataset(tmp_path)
    net = net_from_text(data_text(params_for(tmp_path, workers=2)), 'TRAIN')
    layer = net.layers[0]
    pids = layer.worker_pids
    del layer
    assert len(pids) == 2
    net.forward()
    gc.collect()
    assert all(pid_alive(p) for p in pids)            # a live net keeps its workers
    net.forward()
    del net
    gc.collect()
    assert not [p for p in pids if pid_alive(p)]


def test_workers_exit_when_the_main_process_dies(tmp_path):
    random_dataset(tmp_path)
    (tmp_path / 'net.prototxt').write_text(data_text(params_for(tmp_path, workers=2)))
    script = textwrap.dedent('''
        import os, signal, caffe
        net = caffe.Net(%r, caffe.TRAIN)
        net.forward()
        print(' '.join(map(str, net.layers[0].worker_pids)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        ''' % str(tmp_path / 'net.prototxt'))
    env = dict(os.environ, GLOG_minloglevel='2')
    # Wait for the process itself, not for EOF on its stdout: the workers hold that too.
    with subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True, env=env) as proc:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert proc.wait(timeout=60) == -signal.SIGKILL
        proc.stdout.close()
    assert len(pids) == 2
    assert not wait_gone(pids, timeout=5)


def test_bad_datalist_fails_at_net_construction(tmp_path, net_from_text):
    rows = random_dataset(tmp_path)
    lines = (tmp_path / 'list.txt').read_text().splitlines()
    fields = lines[1].split(' ')
    fields[2] = 'abc'
    lines[1] = ' '.join(fields)
    lines[3] = rows[3][0] + ' 1 0'
    (tmp_path / 'list.txt').write_text('\n'.join(lines) + '\n')
    src = str(tmp_path / 'list.txt')
    with pytest.raises(DatalistError) as e:
        net_from_text(data_text(params_for(tmp_path, workers=2)), 'TRAIN')
    text = str(e.value)
    assert "%s:2: field 3 (label 1): 'abc' is not a number" % src in text
    assert '%s:4: expected 14 fields' % src in text


def test_box_outside_the_resized_image_fails_at_net_construction(tmp_path, net_from_text):
    random_dataset(tmp_path)
    with pytest.raises(DatalistError, match=r'list.txt:1: field 7 \(box 0 x2\): 10 is outside the 8x12 image'):
        net_from_text(data_text(params_for(tmp_path, new_width=8)), 'TRAIN')


def test_corrupt_image_raises_from_forward_naming_it(tmp_path, net_from_text):
    rows = random_dataset(tmp_path, n=4)
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'\xff\xd8 this is not a JPEG' * 20)
    write_datalist(tmp_path / 'list.txt', rows[:3] + [(str(bad),) + rows[3][1:]])
    start = time.time()
    net = net_from_text(data_text(params_for(tmp_path, workers=2)), 'TEST')
    net.forward()                                   # images 0, 1
    with pytest.raises(DataLoadError, match='cannot read image %s' % bad):
        net.forward()                               # images 2, broken
    assert time.time() - start < 15
    with pytest.raises(DataLoadError, match='broken.jpg'):
        net.forward()                               # it stays failed


def test_corrupt_image_in_process(tmp_path, net_from_text):
    bad = tmp_path / 'broken.jpg'
    bad.write_bytes(b'garbage')
    write_datalist(tmp_path / 'list.txt', [(str(bad), [1, 0, 0], [[0, 0, 1, 1]] * B, [1] * B)])
    net = net_from_text(data_text(params_for(tmp_path, workers=0)), 'TEST')
    for _ in range(2):
        with pytest.raises(DataLoadError, match='cannot read image %s' % bad):
            net.forward()


@pytest.mark.parametrize('change, message', [
    ({'mirorr': True}, "unknown parameter 'mirorr'"),
    ({'batch_size': 0}, "'batch_size'"),
    ({'scale_factors': [1.0, 0]}, "'scale_factors'"),
    ({'mean_value': [1, 2]}, 'mean_value needs 1 or 3 values'),
    ({'workers': -1}, "'workers'"),
    ({'split_tops': True}, 'split_tops needs 3 tops'),
])
def test_bad_params(tmp_path, net_from_text, change, message):
    random_dataset(tmp_path)
    with pytest.raises(LayerError, match=message):
        net_from_text(data_text(params_for(tmp_path, **change)), 'TRAIN')


def test_missing_required_param(tmp_path, net_from_text):
    random_dataset(tmp_path)
    p = params_for(tmp_path)
    del p['att_num']
    with pytest.raises(LayerError, match="required parameter 'att_num' is missing"):
        net_from_text(data_text(p), 'TRAIN')


def test_caffe_binary_trains_with_spawned_workers(tmp_path):
    """`caffe train` (the C++ binary embedding Python) runs the layer; its
    workers start from the binary and are gone when it exits."""
    random_dataset(tmp_path, n=8)
    params = params_for(tmp_path, batch_size=4, scale_factors=[0.75, 1.0], mirror=True, shuffle=True,
                        mean_value=[128, 128, 128], scale=0.0078125, workers=2)
    net = data_text(params) + netutil.classifier_text(C) + \
        'layer { name: "prob" type: "Sigmoid" bottom: "fc" top: "prob" }\n' + \
        netutil.python_layer_text('loss', 'CrossEntropyLoss', {}, ['prob', 'labels'], ['loss'],
                                  loss_weight=1, propagate_down=[True, False])
    (tmp_path / 'net.prototxt').write_text(net)
    netutil.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', base_lr=0.1, max_iter=30,
                         display=10, snapshot_prefix='snap')
    losses, log = caffe_train(tmp_path / 'solver.prototxt', cwd=tmp_path, timeout=120)
    assert [it for it, _ in losses] == [0, 10, 20, 30], log[-2000:]
    assert all(np.isfinite(loss) for _, loss in losses)
    line = [l for l in log.splitlines() if '2 worker processes (pids' in l]
    assert len(line) == 1, log[-3000:]
    pids = [int(p) for p in line[0].split('(pids ')[1].rstrip(')').split()]
    assert not wait_gone(pids, timeout=5)
    assert 'leaked shared_memory' not in log
