"""caffe-mlic synth: a synthetic VOC-layout multi-label detection set."""
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.data.synth import SHAPE_NAMES, make_synthetic_voc
from tests.tinydata import tree_digest


def _objects(root, image_id):
    ann = ET.parse(os.path.join(root, 'Annotations', image_id + '.xml')).getroot()
    w = int(ann.find('size/width').text)
    h = int(ann.find('size/height').text)
    objs = []
    for o in ann.findall('object'):
        box = [int(o.find('bndbox/' + t).text) for t in ('xmin', 'ymin', 'xmax', 'ymax')]
        objs.append((o.find('name').text, int(o.find('difficult').text), box))
    return ann, w, h, objs


@pytest.fixture(scope='module')
def synth_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synth') / 'voc')
    classes = make_synthetic_voc(root, 36, n_classes=6, objects_per_image=(1, 4),
                                 image_size=(200, 150), clutter=3, seed=11)
    return root, classes


def test_layout_and_xml(synth_set):
    root, classes = synth_set
    assert classes == list(SHAPE_NAMES[:6])
    with open(os.path.join(root, 'classes.txt')) as f:
        assert f.read().split() == classes
    main = os.path.join(root, 'ImageSets', 'Main')
    sets = {}
    for name in ('train', 'val', 'test', 'trainval'):
        with open(os.path.join(main, name + '.txt')) as f:
            sets[name] = f.read().split()
    ids = sorted('%06d' % (i + 1) for i in range(36))
    # the three splits partition the images, 60/20/20
    assert sorted(sets['train'] + sets['val'] + sets['test']) == ids
    assert (len(sets['train']), len(sets['val']), len(sets['test'])) == (22, 7, 7)
    assert sorted(sets['trainval']) == sorted(sets['train'] + sets['val'])

    import cv2
    n_objects = 0
    for image_id in ids:
        ann, w, h, objs = _objects(root, image_id)
        assert ann.find('filename').text == image_id + '.jpg'
        img = cv2.imread(os.path.join(root, 'JPEGImages', image_id + '.jpg'))
        assert img.shape == (h, w, 3) == (150, 200, 3)
        assert 1 <= len(objs) <= 4
        for name, difficult, (x1, y1, x2, y2) in objs:
            assert name in classes and difficult in (0, 1)
            assert 1 <= x1 <= x2 <= w and 1 <= y1 <= y2 <= h  # VOC: 1-based, inside
            assert x2 - x1 >= 5 and y2 - y1 >= 5
        n_objects += len(objs)
    assert n_objects >= 36 * 2

    # per-class flag files agree with the annotations (1 / 0 difficult-only / -1)
    for cls in classes:
        with open(os.path.join(main, cls + '_train.txt')) as f:
            rows = [line.split() for line in f]
        assert [r[0] for r in rows] == sets['train']
        for image_id, flag in rows:
            objs = [o for o in _objects(root, image_id)[3] if o[0] == cls]
            expect = -1 if not objs else (1 if any(d == 0 for _, d, _ in objs) else 0)
            assert int(flag) == expect, (cls, image_id)


def test_balanced_and_varied(synth_set):
    root, classes = synth_set
    import cv2
    counts = dict.fromkeys(classes, 0)
    colours = {c: [] for c in classes}
    images = []
    for i in range(36):
        image_id = '%06d' % (i + 1)
        img = cv2.imread(os.path.join(root, 'JPEGImages', image_id + '.jpg')).astype(np.float32)
        images.append(img)
        for name, difficult, (x1, y1, x2, y2) in _objects(root, image_id)[3]:
            counts[name] += 1
            cx, cy = (x1 + x2) // 2 - 1, (y1 + y2) // 2 - 1
            colours[name].append(img[cy - 2:cy + 3, cx - 2:cx + 3].reshape(-1, 3).mean(0))
    mean = np.mean(list(counts.values()))
    print('objects per class', counts)
    assert min(counts.values()) >= 0.7 * mean and max(counts.values()) <= 1.3 * mean
    # colour does not identify the class: instances of one class vary widely
    for name, cs in colours.items():
        assert np.std(np.array(cs), axis=0).mean() > 25, name
    # images differ from one another
    for a in range(len(images)):
        for b in range(a + 1, len(images)):
            assert np.abs(images[a] - images[b]).mean() > 10


def test_deterministic_with_seed(tmp_path):
    kw = dict(n_classes=4, objects_per_image=(1, 3), image_size=(96, 80), clutter=2)
    make_synthetic_voc(str(tmp_path / 'a'), 5, seed=3, **kw)
    make_synthetic_voc(str(tmp_path / 'b'), 5, seed=3, **kw)
    make_synthetic_voc(str(tmp_path / 'c'), 5, seed=4, **kw)
    a, b, c = (tree_digest(str(tmp_path / d)) for d in 'abc')
    assert a == b
    assert set(a) == set(c)
    jpgs = [k for k in a if k.endswith('.jpg')]
    assert all(a[k] != c[k] for k in jpgs)
    # no temp files left behind by the atomic writes
    assert not [k for k in a if os.path.basename(k).startswith('.') and os.path.basename(k) != '.synth-files']


def test_cli(tmp_path, capsys):
    out = str(tmp_path / 'set')
    rc = cli.main(['synth', out, '--images', '4', '--classes', '8', '--image-size', '120x90',
                   '--objects-per-image', '2-2', '--size-range', '0.3-0.5', '--seed', '1',
                   '--split', '0.5,0.5,0', '-q'])
    assert rc == 0
    with open(os.path.join(out, 'classes.txt')) as f:
        assert f.read().split() == list(SHAPE_NAMES)
    with open(os.path.join(out, 'ImageSets', 'Main', 'test.txt')) as f:
        assert f.read() == ''
    ann, w, h, objs = _objects(out, '000001')
    assert (w, h) == (120, 90) and 1 <= len(objs) <= 2
    # an existing set is not overwritten without --force
    rc = cli.main(['synth', out, '--images', '2', '-q'])
    assert rc == 2
    assert 'already holds a data set' in capsys.readouterr().err
    assert cli.main(['synth', out, '--images', '2', '--force', '-q']) == 0
    for bad in (['--classes', '9'], ['--image-size', 'big'], ['--objects-per-image', '3-1'],
                ['--size-range', '0-2']):
        assert cli.main(['synth', str(tmp_path / 'x')] + bad + ['-q']) == 2
        err = capsys.readouterr().err
        assert err.startswith('caffe-mlic synth: ') and bad[0] in err
    assert not os.path.exists(str(tmp_path / 'x'))


def test_objects_without_room_are_counted_in_a_note(tmp_path, capsys):
    """50 objects an image at 64x64 px: about 33 fit; the note says how many
    were left out (pass 20 M10), and the annotations hold the rest."""
    out = str(tmp_path / 'set')
    assert cli.main(['synth', out, '--images', '3', '--objects-per-image', '50-50', '--image-size', '64x64',
                     '-q']) == 0
    err = capsys.readouterr().err
    placed = sum(len(_objects(out, '%06d' % i)[3]) for i in (1, 2, 3))
    assert 'note: %d of the 150 objects drawn (50-50 an image) found no room' % (150 - placed) in err
    assert 0 < placed < 150
    assert cli.main(['synth', str(tmp_path / 'roomy'), '--images', '3', '-q']) == 0
    assert 'note:' not in capsys.readouterr().err
