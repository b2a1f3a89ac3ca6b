"""A tiny on-disk dataset (real PNG files + a datalist) for net-level tests."""
import hashlib
import os

import cv2
import numpy as np


def write_tiny_dataset(root, n_images=6, num_classes=3, bbox_num=8, size=96, seed=0, name='list.txt'):
    """Images with one bright square per present class; proposals include the squares.

    Returns the datalist path. Lines are `path l_1 .. l_C (x1 y1 x2 y2 s) x B`, boxes in
    `size` x `size` space.
    """
    rng = np.random.default_rng(seed)
    os.makedirs(root, exist_ok=True)
    lines = []
    for i in range(n_images):
        h, w = rng.integers(size // 2, size * 2, size=2)
        img = rng.integers(0, 60, size=(h, w, 3)).astype(np.uint8)
        labels = (rng.random(num_classes) < 0.5).astype(int)
        labels[i % num_classes] = 1
        boxes = []
        for c in np.flatnonzero(labels):
            x1, y1 = rng.integers(0, size // 2, size=2)
            side = int(rng.integers(size // 6, size // 3))
            boxes.append((x1, y1, x1 + side, y1 + side))
            sx, sy = w / size, h / size
            color = [0, 0, 0]
            color[c % 3] = 255
            cv2.rectangle(img, (int(x1 * sx), int(y1 * sy)), (int((x1 + side) * sx), int((y1 + side) * sy)),
                          color, -1)
        while len(boxes) < bbox_num:
            x1, y1 = rng.integers(0, size - 10, size=2)
            x2, y2 = rng.integers(x1 + 4, size, ), rng.integers(y1 + 4, size)
            boxes.append((x1, y1, x2, y2))
        path = os.path.join(root, 'img%03d.png' % i)
        cv2.imwrite(path, img)
        fields = [path] + [str(v) for v in labels]
        for j, (x1, y1, x2, y2) in enumerate(boxes[:bbox_num]):
            fields += [str(int(x1)), str(int(y1)), str(int(x2)), str(int(y2)), '%.3f' % (1.0 - j / bbox_num)]
        lines.append(' '.join(fields))
    listing = os.path.join(root, name)
    with open(listing, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return listing


def tiny_mlic_config(listing, **overrides):
    """The MlicConfig of the tests' tiny generated nets over ``listing`` (3 classes,
    8 proposals, teacher 96 px, student 64 px, tiny backbone, batches of 2, no workers)."""
    from caffe_mlic.netspec import MlicConfig
    kw = dict(num_classes=3, bbox_num=8, teacher_size=96, student_size=64, pooled=2, backbone='tiny',
              train_list=listing, test_list=listing, scale_factors=[0.833333, 1.0], workers=0,
              input_scale=1 / 58., wsddn_batch=(2, 2), stage1_batch=(2, 2), stage2_batch=(2, 2),
              baseline_batch=(2, 2))
    kw.update(overrides)
    return MlicConfig.release(**kw)


def forward_batches(net, count):
    """(data, label_roi) copies of ``count`` forward passes of a data-layer net."""
    out = []
    for _ in range(count):
        net.forward()
        out.append((net.blobs['data'].data.copy(), net.blobs['label_roi'].data.copy()))
    return out


def tree_digest(root):
    """{relative path: sha1} of every file under root (byte-identical trees)."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, 'rb') as fh:
                out[os.path.relpath(p, root)] = hashlib.sha1(fh.read()).hexdigest()
    return out
