"""caffe-mlic datalist build / check, on VOC, COCO and plain label files written here."""
import json
import os
import re
import shutil

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.data.datalist import read_datalist

CLASSES = ['cat', 'dog', 'bird']


def _image(path, w, h, seed):
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def _npz(path, boxes, scores, hw=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    arrays = dict(boxes=np.array(boxes, np.float32).reshape(-1, 4), scores=np.array(scores, np.float32))
    if hw is not None:
        arrays['image_shape'] = np.array(hw, np.int32)
    np.savez(path, **arrays)


def _voc_xml(filename, w, h, objects):
    objs = ''.join(
        '<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%s</xmin><ymin>%s</ymin>'
        '<xmax>%s</xmax><ymax>%s</ymax></bndbox></object>' % ((name, diff) + tuple(box))
        for name, diff, box in objects)
    return ('<annotation><filename>%s</filename><size><width>%d</width><height>%d</height>'
            '<depth>3</depth></size>%s</annotation>' % (filename, w, h, objs))


# VOC set: (id, file name, width, height, objects (name, difficult, 1-based box))
VOC_IMAGES = [
    ('a1', 'a1.jpg', 333, 251, [('cat', 0, (11, 21, 100, 200)), ('dog', 1, (50, 60, 333, 251))]),
    ('a2', 'a2.png', 200, 150, [('bird', 0, (1, 1, 200, 150))]),
    ('a3', 'a3.jpg', 500, 375, [('cat', 0, (1, 1, 10, 10)), ('bird', 0, (100, 100, 200, 300)),
                                ('cat', 1, (5, 5, 50, 50))]),
]
# proposals, original pixels (0-based inclusive), deliberately not sorted
VOC_PROPOSALS = {
    'a1': ([[0, 0, 332, 250], [10, 20, 99, 199], [50, 60, 300, 200]], [0.5, 0.9, 0.1]),
    'a2': ([[0, 0, 199, 149]], [1.0]),
    'a3': ([[0, 0, 499, 374], [10, 10, 100, 100], [250, 0, 499, 374], [0, 187, 249, 374],
            [1, 2, 3, 4]], [0.1, 0.2, 0.3, 0.4, 0.5]),
}


@pytest.fixture
def voc(tmp_path):
    root = str(tmp_path / 'VOC')
    for image_id, fname, w, h, objects in VOC_IMAGES:
        _image(os.path.join(root, 'JPEGImages', fname), w, h, seed=w)
        os.makedirs(os.path.join(root, 'Annotations'), exist_ok=True)
        with open(os.path.join(root, 'Annotations', image_id + '.xml'), 'w') as f:
            f.write(_voc_xml(fname, w, h, objects))
        boxes, scores = VOC_PROPOSALS[image_id]
        _npz(str(tmp_path / 'props' / (image_id + '.npz')), boxes, scores, (h, w))
    os.makedirs(os.path.join(root, 'ImageSets', 'Main'))
    with open(os.path.join(root, 'ImageSets', 'Main', 'train.txt'), 'w') as f:
        f.write('a1\na2\na3\n')
    with open(os.path.join(root, 'classes.txt'), 'w') as f:
        f.write('\n'.join(CLASSES) + '\n')
    return tmp_path, root


def _build_voc(tmp_path, root, *extra):
    out = str(tmp_path / 'out' / 'train.txt')
    rc = cli.main(['datalist', 'build', '--voc', root, '--set', 'train', '--proposals',
                   str(tmp_path / 'props'), '-o', out, '--bbox-num', '4'] + list(extra))
    return rc, out


def test_voc_build_exact(voc, capsys):
    tmp_path, root = voc
    rc, out = _build_voc(tmp_path, root)
    assert rc == 0, capsys.readouterr().err
    dl = read_datalist(out, 3, 4, 672, 672)
    assert dl.image_paths == [os.path.join(root, 'JPEGImages', f) for f in ('a1.jpg', 'a2.png', 'a3.jpg')]
    # a1: cat + dog (difficult only: counts by default); a2: bird; a3: cat, bird
    np.testing.assert_array_equal(dl.labels, [[1, 1, 0], [0, 0, 1], [1, 0, 1]])
    # a1 is 333x251: x * 672/333, y * 672/251, floored; sorted by score 0.9, 0.5, 0.1;
    # only three proposals, so the 4th repeats the first
    np.testing.assert_array_equal(dl.boxes[0], [[20, 53, 199, 532], [0, 0, 669, 669],
                                                [100, 160, 605, 535], [20, 53, 199, 532]])
    np.testing.assert_allclose(dl.scores[0], [0.9, 0.5, 0.1, 0.9], rtol=1e-6)
    # a2 (PNG, 200x150): one proposal, repeated; 199*3.36 = 668.6, 149*4.48 = 667.5
    np.testing.assert_array_equal(dl.boxes[1], [[0, 0, 668, 667]] * 4)
    # a3 (500x375): top 4 of 5 by score; scale 1.344 / 1.792
    np.testing.assert_array_equal(dl.boxes[2], [[1, 3, 4, 7], [0, 335, 334, 670],
                                                [336, 0, 670, 670], [13, 17, 134, 179]])
    np.testing.assert_allclose(dl.scores[2], [0.5, 0.4, 0.3, 0.2], rtol=1e-6)

    with open(out[:-4] + '.classes.txt') as f:
        assert f.read().split() == CLASSES
    with open(out[:-4] + '.gt.json') as f:
        gt = json.load(f)
    assert gt['classes'] == CLASSES and gt['size'] == [672, 672]
    a1 = gt['images'][0]
    assert (a1['path'], a1['width'], a1['height']) == (dl.image_paths[0], 333, 251)
    assert a1['labels'] == ['cat', 'dog']
    assert a1['objects'] == [{'class': 'cat', 'box': [10, 20, 99, 199], 'difficult': False},
                             {'class': 'dog', 'box': [49, 59, 332, 250], 'difficult': True}]
    assert len(gt['images'][2]['objects']) == 3

    # datalist check accepts it and reports per-class counts with names
    capsys.readouterr()
    assert cli.main(['datalist', 'check', out, '--att-num', '3', '--bbox-num', '4']) == 0
    report = capsys.readouterr().out
    assert 'train.txt: 3 image lines: 3 valid, 0 with problems\n' in report
    counts = re.findall(r'^  (\w+) +(\d+)$', report, re.M)
    assert counts == [('cat', '2'), ('dog', '1'), ('bird', '2')]  # names from train.classes.txt
    assert 'distinct boxes per image: min 1, mean 2.7, max 4 (of 4)' in report  # 3, 1, 4
    assert 'scores: min 0.1, max 1' in report


def test_voc_difficult_ignore_and_root(voc, capsys):
    tmp_path, root = voc
    rc, out = _build_voc(tmp_path, root, '--voc-difficult', 'ignore', '--root', str(tmp_path))
    assert rc == 0
    dl = read_datalist(out, 3, 4, 672, 672, root_folder=str(tmp_path))
    np.testing.assert_array_equal(dl.labels, [[1, 0, 0], [0, 0, 1], [1, 0, 1]])
    with open(out) as f:
        assert f.readline().startswith('VOC/JPEGImages/a1.jpg 1 0 0 20 53 199 532 0.9 ')
    # a root that is no folder: refused before anything is written (pass 20 M11)
    (tmp_path / 'a_file').write_text('')
    for bad, said in ((str(tmp_path / 'none'), 'is not a folder;'), (str(tmp_path / 'a_file'), 'not a folder (a file)'),
                      ('', "'' is not a folder")):
        if os.path.exists(out):
            os.remove(out)
        rc, _ = _build_voc(tmp_path, root, '--root', bad)
        assert rc == 2 and said in capsys.readouterr().err and not os.path.exists(out)


def test_coco_build_exact(tmp_path, capsys):
    images = tmp_path / 'images'
    _image(str(images / 'x' / '000010.jpg'), 320, 240, 1)
    _image(str(images / '000011.png'), 64, 48, 2)
    data = {
        'images': [{'id': 10, 'file_name': 'x/000010.jpg', 'width': 320, 'height': 240},
                   {'id': 11, 'file_name': '000011.png', 'width': 64, 'height': 48}],
        # ids out of order: classes come in id order (person, bike, car)
        'categories': [{'id': 3, 'name': 'car'}, {'id': 1, 'name': 'person'}, {'id': 2, 'name': 'bike'}],
        'annotations': [
            {'id': 1, 'image_id': 10, 'category_id': 1, 'bbox': [10, 20, 30, 40], 'iscrowd': 0},
            {'id': 2, 'image_id': 10, 'category_id': 3, 'bbox': [0.5, 0, 319.5, 240.4], 'iscrowd': 1}],
    }
    ann = tmp_path / 'instances.json'
    ann.write_text(json.dumps(data))
    _npz(str(tmp_path / 'props' / '000010.npz'), [[0, 0, 319, 239], [40, 30, 79, 59]], [0.3, 0.7], (240, 320))
    _npz(str(tmp_path / 'props' / '000011.npz'), [[0, 0, 63, 47]], [0.25])
    out = str(tmp_path / 'coco.txt')
    rc = cli.main(['datalist', 'build', '--coco', str(ann), '--images', str(images), '--proposals',
                   str(tmp_path / 'props'), '-o', out, '--bbox-num', '3', '--size', '224'])
    assert rc == 0, capsys.readouterr().err
    dl = read_datalist(out, 3, 3, 224, 224)
    np.testing.assert_array_equal(dl.labels, [[1, 0, 1], [0, 0, 0]])  # no annotation: all zeros
    # 320x240 -> 224: x * 0.7, y * 0.9333
    np.testing.assert_array_equal(dl.boxes[0], [[28, 28, 55, 55], [0, 0, 223, 223], [28, 28, 55, 55]])
    np.testing.assert_allclose(dl.scores[0], [0.7, 0.3, 0.7], rtol=1e-6)
    np.testing.assert_array_equal(dl.boxes[1], [[0, 0, 220, 219]] * 3)  # 63*3.5, 47*4.667
    with open(out[:-4] + '.gt.json') as f:
        gt = json.load(f)
    assert gt['classes'] == ['person', 'bike', 'car']
    objs = gt['images'][0]['objects']
    assert objs[0] == {'class': 'person', 'box': [10, 20, 39, 59], 'difficult': False}
    assert objs[1] == {'class': 'car', 'box': [0.5, 0, 319, 239], 'difficult': True}  # crowd, clipped
    assert cli.main(['datalist', 'check', out, '--att-num', '3', '--bbox-num', '3', '--size', '224']) == 0
    # crowd treated like difficult
    out2 = str(tmp_path / 'coco2.txt')
    assert cli.main(['datalist', 'build', '--coco', str(ann), '--images', str(images), '--proposals',
                     str(tmp_path / 'props'), '-o', out2, '--bbox-num', '3', '--voc-difficult', 'ignore']) == 0
    np.testing.assert_array_equal(read_datalist(out2, 3, 3).labels, [[1, 0, 0], [0, 0, 0]])


def test_plain_labels(tmp_path, capsys):
    _image(str(tmp_path / 'imgs' / 'p.jpg'), 100, 80, 1)
    _image(str(tmp_path / 'imgs' / 'q.jpg'), 90, 70, 2)
    _image(str(tmp_path / 'imgs' / 'r.jpg'), 50, 50, 3)
    (tmp_path / 'classes.txt').write_text('cat\ndog\nbird\n')
    (tmp_path / 'labels.txt').write_text('# names or 0/1 vectors\np.jpg bird cat\nq.jpg 0 1 1\n\nr.jpg\n')
    for n in 'pqr':
        _npz(str(tmp_path / 'props' / (n + '.npz')), [[0, 0, 40, 40]], [0.5])
    out = str(tmp_path / 'plain.txt')
    rc = cli.main(['datalist', 'build', '--labels', str(tmp_path / 'labels.txt'), '--classes',
                   str(tmp_path / 'classes.txt'), '--images', str(tmp_path / 'imgs'),
                   '--proposals', str(tmp_path / 'props'), '-o', out, '--bbox-num', '2'])
    assert rc == 0, capsys.readouterr().err
    dl = read_datalist(out, 3, 2, 672, 672)
    np.testing.assert_array_equal(dl.labels, [[1, 0, 1], [0, 1, 1], [0, 0, 0]])
    np.testing.assert_array_equal(dl.boxes[0], [[0, 0, 268, 336]] * 2)  # 40*6.72, 40*8.4 exactly


def test_check_rejects_corrupted_copy(voc, capsys):
    tmp_path, root = voc
    rc, out = _build_voc(tmp_path, root)
    assert rc == 0
    with open(out) as f:
        lines = f.read().splitlines()
    bad = str(tmp_path / 'bad.txt')
    fields = lines[2].split()
    fields[2] = '7'  # a label that is not 0/1
    with open(bad, 'w') as f:
        f.write('\n'.join([lines[0], lines[1].rsplit(' ', 1)[0], ' '.join(fields)]) + '\n')
    capsys.readouterr()
    assert cli.main(['datalist', 'check', bad, '--att-num', '3', '--bbox-num', '4']) == 1
    report = capsys.readouterr().out
    assert 'bad.txt: 3 image lines: 1 valid, 2 with problems\n' in report
    assert bad + ':2: expected 24 fields' in report
    assert bad + ':3: field 3 (label 1): 7 is not 0 or 1' in report
    # a box beyond the resized size is caught when --size is smaller
    assert cli.main(['datalist', 'check', out, '--att-num', '3', '--bbox-num', '4', '--size', '600']) == 1


# ------------------------------------------------------------------ bad input

def _assert_fails(tmp_path, capsys, argv, *needles):
    out_dir = tmp_path / 'out'
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.startswith('caffe-mlic datalist build: ')
    for n in needles:
        assert n in err, (n, err)
    # nothing written, not even a temp file or the output folder
    assert not out_dir.exists()
    return err


def _voc_argv(tmp_path, root, image_set='train'):
    return ['datalist', 'build', '--voc', root, '--set', image_set, '--proposals',
            str(tmp_path / 'props'), '-o', str(tmp_path / 'out' / 'train.txt'), '--bbox-num', '4']


def _rewrite_xml(root, image_id, **change):
    spec = {i[0]: i for i in VOC_IMAGES}[image_id]
    _, fname, w, h, objects = spec
    objects = change.get('objects', objects)
    with open(os.path.join(root, 'Annotations', image_id + '.xml'), 'w') as f:
        f.write(_voc_xml(fname, w, h, objects))
    return os.path.join(root, 'Annotations', image_id + '.xml')


def test_voc_missing_image(voc, capsys):
    tmp_path, root = voc
    os.unlink(os.path.join(root, 'JPEGImages', 'a2.png'))
    xml = os.path.join(root, 'Annotations', 'a2.xml')
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), xml, 'image not found',
                  os.path.join(root, 'JPEGImages', 'a2.png'))
    os.mkdir(os.path.join(root, 'JPEGImages', 'a2.png'))      # a folder of the image's name: said so
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), xml, 'image is a folder, not a file',
                  os.path.join(root, 'JPEGImages', 'a2.png'))


def test_voc_unreadable_xml(voc, capsys):
    tmp_path, root = voc
    xml = os.path.join(root, 'Annotations', 'a3.xml')
    with open(xml, 'w') as f:
        f.write('<annotation><size><width>5</width></size>')  # truncated
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), xml, 'unreadable XML', 'line 1')


def test_voc_unknown_class(voc, capsys):
    tmp_path, root = voc
    xml = _rewrite_xml(root, 'a1', objects=[('cat', 0, (1, 1, 5, 5)), ('horse', 0, (1, 1, 5, 5))])
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), xml,
                  '<object> #2 <name>horse</name>: class not in', 'classes.txt')


def test_voc_box_out_of_image(voc, capsys):
    tmp_path, root = voc
    xml = _rewrite_xml(root, 'a1', objects=[('cat', 0, (11, 21, 334, 200))])  # width is 333
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), xml, '<object> #1 <name>cat</name>',
                  'not inside the 333x251 image')


@pytest.mark.parametrize('old, new, needle', [
    # one of two boxes, one of two <xmin>s and <difficult>2 were taken in silence
    ('</bndbox>', '</bndbox><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>',
     '<object> #1 <name>cat</name> <bndbox>: appears 2 times'),
    ('<ymin>', '<xmin>2</xmin><ymin>', '<object> #1 <name>cat</name> <bndbox> <xmin>: appears 2 times'),
    ('<difficult>0</difficult>', '<difficult>2</difficult>',
     '<object> #1 <name>cat</name> <difficult>: must be 0 or 1, got 2'),
])
def test_voc_repeated_elements_and_bad_difficult_are_refused(voc, capsys, old, new, needle):
    tmp_path, root = voc
    xml = _rewrite_xml(root, 'a1', objects=[('cat', 0, (11, 21, 100, 200))])
    with open(xml) as f:
        text = f.read()
    with open(xml, 'w') as f:
        f.write(text.replace(old, new, 1))
    err = _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), '%s: %s' % (xml, needle))
    assert len(err.splitlines()) == 2, err


def test_voc_empty_and_missing_set(voc, capsys):
    tmp_path, root = voc
    empty = os.path.join(root, 'ImageSets', 'Main', 'empty.txt')
    open(empty, 'w').close()
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root, 'empty'), empty, 'image set is empty')
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root, 'nope'),
                  os.path.join(root, 'ImageSets', 'Main', 'nope.txt'), 'cannot read image set')
    with open(os.path.join(root, 'ImageSets', 'Main', 'two.txt'), 'w') as f:
        f.write('a1\na2 1\n')
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root, 'two'), 'two.txt:2: expected one image id')


def test_voc_bad_proposals(voc, capsys):
    tmp_path, root = voc
    props = tmp_path / 'props'
    os.unlink(str(props / 'a2.npz'))
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), str(props / 'a2.npz'), 'not found')
    _npz(str(props / 'a2.npz'), [], [])
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), str(props / 'a2.npz'), 'no proposals')
    _npz(str(props / 'a2.npz'), [[0, 0, 200, 10]], [1.0])  # x2 = 200 in a 200-wide image
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), str(props / 'a2.npz'),
                  'box 0 (0, 0, 200, 10) is not inside the 200x150 image')
    _npz(str(props / 'a2.npz'), [[0, 0, 10, 10]], [1.0], (100, 100))  # from another image
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), str(props / 'a2.npz'),
                  'computed on a 100x100 image but the image is 200x150')


def test_coco_bad_input(tmp_path, capsys):
    _image(str(tmp_path / 'images' / 'a.jpg'), 40, 30, 1)
    _npz(str(tmp_path / 'props' / 'a.npz'), [[0, 0, 39, 29]], [1.0])
    good = {'images': [{'id': 5, 'file_name': 'a.jpg', 'width': 40, 'height': 30}],
            'categories': [{'id': 1, 'name': 'cat'}],
            'annotations': [{'id': 9, 'image_id': 5, 'category_id': 1, 'bbox': [1, 1, 10, 10]}]}
    ann = tmp_path / 'instances.json'
    argv = ['datalist', 'build', '--coco', str(ann), '--images', str(tmp_path / 'images'),
            '--proposals', str(tmp_path / 'props'), '-o', str(tmp_path / 'out' / 'c.txt'), '--bbox-num', '2']

    def case(data, *needles):
        ann.write_text(data if isinstance(data, str) else json.dumps(data))
        _assert_fails(tmp_path, capsys, argv, str(ann), *needles)

    case(json.dumps(good)[:-30], 'not valid JSON')
    bad = json.loads(json.dumps(good))
    bad['annotations'][0]['category_id'] = 4
    case(bad, 'annotation id 9 (image id 5)', 'category_id 4 not in "categories"')
    bad = json.loads(json.dumps(good))
    bad['annotations'][0]['bbox'] = [30, 1, 15, 10]
    case(bad, 'annotation id 9 (image id 5)', 'outside the 40x30 image')
    bad = json.loads(json.dumps(good))
    bad['images'][0]['file_name'] = 'b.jpg'
    case(bad, 'image id 5 (b.jpg)', 'image not found')
    bad = json.loads(json.dumps(good))
    bad['images'][0]['width'] = 41
    case(bad, 'image id 5 (a.jpg)', 'says the image is 41x30')
    bad = json.loads(json.dumps(good))
    bad['images'] = []
    case(bad, '"images" is empty')
    # a class list that lacks one of the categories
    (tmp_path / 'cls.txt').write_text('dog\n')
    ann.write_text(json.dumps(good))
    _assert_fails(tmp_path, capsys, argv + ['--classes', str(tmp_path / 'cls.txt')], str(ann),
                  'category id 1 (cat): class not in the class list')


def test_plain_labels_bad_input(tmp_path, capsys):
    _image(str(tmp_path / 'p.jpg'), 30, 30, 1)
    (tmp_path / 'bad.jpg').write_bytes(b'garbage')
    _npz(str(tmp_path / 'props' / 'p.npz'), [[0, 0, 29, 29]], [1.0])
    (tmp_path / 'classes.txt').write_text('cat\ndog\n')
    labels = tmp_path / 'labels.txt'
    argv = ['datalist', 'build', '--labels', str(labels), '--classes', str(tmp_path / 'classes.txt'),
            '--proposals', str(tmp_path / 'props'), '-o', str(tmp_path / 'out' / 'l.txt'), '--bbox-num', '2']
    for text, needle in (('p.jpg cat\np.jpg cow\n', ':2: label \'cow\' is not in the class list'),
                         ('p.jpg 1 0 1\n', ":1: label '1' is not in the class list (a 0/1 vector needs exactly 2"),
                         ('p.jpg\nmissing.jpg cat\n', ':2: image not found'),
                         ('bad.jpg cat\n', ':1: cannot read image'),
                         ('\n# nothing\n', 'no images listed')):
        labels.write_text(text)
        _assert_fails(tmp_path, capsys, argv, str(labels), needle)
    (tmp_path / 'classes.txt').write_text('cat\ndog\ncat\n')
    labels.write_text('p.jpg cat\n')
    _assert_fails(tmp_path, capsys, argv, str(tmp_path / 'classes.txt') + ':3: class \'cat\' repeats line 1')


def test_usage_errors(voc, capsys):
    tmp_path, root = voc
    argv = ['datalist', 'build', '--proposals', str(tmp_path / 'props'), '-o', str(tmp_path / 'out' / 'x.txt')]
    assert cli.main(argv) == 2
    assert 'give exactly one of' in capsys.readouterr().err
    assert cli.main(argv + ['--voc', root]) == 2
    assert cli.main(argv + ['--voc', root, '--set', 'train', '--size', 'abc']) == 2
    assert cli.main(argv + ['--voc', root, '--set', 'train', '--bbox-num', '0']) == 2
    assert not (tmp_path / 'out').exists()


def test_existing_output_untouched_on_error(voc, capsys):
    tmp_path, root = voc
    rc, out = _build_voc(tmp_path, root)
    assert rc == 0
    before = {f: open(os.path.join(os.path.dirname(out), f), 'rb').read()
              for f in os.listdir(os.path.dirname(out))}
    assert sorted(before) == ['train.classes.txt', 'train.gt.json', 'train.txt']
    shutil.rmtree(os.path.join(root, 'JPEGImages'))
    assert _build_voc(tmp_path, root)[0] == 1
    after = {f: open(os.path.join(os.path.dirname(out), f), 'rb').read()
             for f in os.listdir(os.path.dirname(out))}
    assert after == before


def test_voc_build_whole_image_without_proposals(voc, capsys):
    tmp_path, root = voc
    shutil.rmtree(tmp_path / 'props')            # not needed: each image is its own one box
    out = str(tmp_path / 'out' / 'whole.txt')
    rc = cli.main(['datalist', 'build', '--voc', root, '--set', 'train', '--whole-image', '-o', out,
                   '--size', '64', '--bbox-num', '2'])
    assert rc == 0, capsys.readouterr().err
    dl = read_datalist(out, 3, 2, 64, 64)
    np.testing.assert_array_equal(dl.labels, [[1, 1, 0], [0, 0, 1], [1, 0, 1]])
    # x2 = floor((W-1) * 64 / W): 332*64/333 = 63.8, 199*64/200 = 63.7; repeated to bbox_num 2
    np.testing.assert_array_equal(dl.boxes[:, 0], [[0, 0, 63, 63]] * 3)
    np.testing.assert_array_equal(dl.boxes[:, 1], dl.boxes[:, 0])
    np.testing.assert_array_equal(dl.scores, np.ones((3, 2)))


def test_build_needs_proposals_or_whole_image(voc, capsys):
    tmp_path, root = voc
    for extra in ([], ['--proposals', str(tmp_path / 'props'), '--whole-image']):
        rc = cli.main(['datalist', 'build', '--voc', root, '--set', 'train', '-o',
                       str(tmp_path / 'x.txt')] + extra)
        assert rc == 2
        assert '--proposals' in capsys.readouterr().err
    assert not (tmp_path / 'x.txt').exists()


def test_build_refuses_to_write_over_an_input(voc, capsys):
    tmp_path, root = voc
    own = os.path.join(root, 'classes.txt')
    before = open(own).read()
    rc = cli.main(['datalist', 'build', '--voc', root, '--set', 'train', '--proposals',
                   str(tmp_path / 'props'), '-o', own, '--bbox-num', '4'])
    assert rc == 2
    err = capsys.readouterr().err
    assert 'would write' in err and 'over the input' in err and own in err
    assert open(own).read() == before
    assert not os.path.exists(os.path.join(root, 'classes.classes.txt'))
    # an output whose companion is the class list given with --classes
    given = tmp_path / 'mine.classes.txt'
    given.write_text(before)
    rc = cli.main(['datalist', 'build', '--voc', root, '--set', 'train', '--classes', str(given),
                   '--proposals', str(tmp_path / 'props'), '-o', str(tmp_path / 'mine.txt'), '--bbox-num', '4'])
    assert rc == 2 and 'over the input' in capsys.readouterr().err
    assert given.read_text() == before


def test_check_counts_lines_and_problems_apart(tmp_path, capsys):
    """A hand-made list of 10 lines: 7 good, one with 4 problems, and two lines
    of one image that does not decode. The summary counted 9 valid lines
    (those that parsed, the undecodable ones included) and 5 problems (the
    image on its first line only): lines and problems are now told apart."""
    good = str(tmp_path / 'good.png')
    _image(good, 40, 40, 1)
    (tmp_path / 'text.png').write_text('not an image\n')
    lines = ['%s 1 0 0 0 9 9 1' % good] * 7
    lines.append('%s 7 0 -1 5 50 3 1' % good)   # label 7; x1 < 0; x2 outside; y2 < y1
    lines += ['%s 0 1 0 0 9 9 1' % (tmp_path / 'text.png')] * 2
    listing = tmp_path / 'hand.txt'
    listing.write_text('\n'.join(lines) + '\n\n')   # a blank line is no image line
    assert cli.main(['datalist', 'check', str(listing), '--att-num', '2', '--bbox-num', '1',
                     '--size', '40']) == 1
    captured = capsys.readouterr()
    summary = '10 image lines: 7 valid, 3 with problems (6 problems on those lines)'
    assert '%s: %s\n' % (listing, summary) in captured.out
    assert captured.err == 'caffe-mlic datalist check: %s: %s\n' % (listing, summary)
    assert len(re.findall(r'hand\.txt:8: ', captured.out)) == 4
    for line in (9, 10):
        assert 'hand.txt:%d: image: cannot decode %s' % (line, tmp_path / 'text.png') in captured.out


def test_a_problem_with_the_whole_file_is_the_one_line(tmp_path, capsys):
    """An empty datalist, or a folder: no report to print, the problem is the message (on stderr)."""
    listing = tmp_path / 'empty.txt'
    listing.write_text('\n')
    assert cli.main(['datalist', 'check', str(listing), '--att-num', '2', '--bbox-num', '1']) == 1
    captured = capsys.readouterr()
    assert captured.out == ''
    assert captured.err == 'caffe-mlic datalist check: %s: the datalist is empty (no image lines)\n' % listing
    assert cli.main(['datalist', 'check', str(tmp_path), '--att-num', '2', '--bbox-num', '1']) == 1
    captured = capsys.readouterr()
    assert captured.out == '' and captured.err == (
        'caffe-mlic datalist check: %s: cannot read the datalist: not a regular file (a device, FIFO or '
        'folder)\n' % tmp_path)
    # a file of zeros was read whole as one line: 4.3 GB of memory for 1 GB (pass 30 M1)
    zeros = tmp_path / 'zeros.txt'
    zeros.write_bytes(b'')
    os.truncate(str(zeros), 256 << 20)          # (sparse: no disk used)
    assert cli.main(['datalist', 'check', str(zeros), '--att-num', '2', '--bbox-num', '1']) == 1
    assert capsys.readouterr().err == (
        'caffe-mlic datalist check: %s: cannot read the datalist: a line over 32 MB: not a text datalist (a line '
        'per image; UTF-16 or a file of zeros?)\n' % zeros)


@pytest.mark.parametrize('args, message', [
    (['--att-num', '-1', '--bbox-num', '1'], 'argument --att-num: must be an integer from 0 to 100000'),
    (['--att-num', '2', '--bbox-num', '100001'], 'argument --bbox-num: must be an integer from 0 to 100000'),
    (['--att-num', '2', '--bbox-num', '1', '--size', '30000x30000'],
     'argument --size: 30000x30000 is too large: one image would be 3 x 30000 x 30000 = 2700000000 values'),
])
def test_check_refuses_impossible_numbers(tmp_path, capsys, args, message):
    (tmp_path / 'l.txt').write_text('a.jpg 1 0 0 0 1 1 1\n')
    assert cli.main(['datalist', 'check', str(tmp_path / 'l.txt')] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic datalist check: %s' % message) and err.count('\n') == 1, err


@pytest.mark.parametrize('args, message', [
    (['--bbox-num', '0'], 'argument --bbox-num: must be an integer from 1 to 100000'),
    (['--bbox-num', '1e9'], "argument --bbox-num: must be an integer from 1 to 100000, got '1e9'"),
    (['--size', '0'], 'argument --size: expected S or WxH with positive integers'),
])
def test_build_refuses_impossible_numbers(tmp_path, capsys, args, message):
    (tmp_path / 'classes.txt').write_text('cat\n')
    (tmp_path / 'labels.txt').write_text('a.jpg cat\n')
    assert cli.main(['datalist', 'build', '--labels', str(tmp_path / 'labels.txt'), '--classes',
                     str(tmp_path / 'classes.txt'), '--whole-image', '-o', str(tmp_path / 'o.txt')] + args) == 2
    assert capsys.readouterr().err.startswith('caffe-mlic datalist build: %s' % message)
    assert not (tmp_path / 'o.txt').exists()


def test_check_says_which_size_the_boxes_were_checked_against(voc, capsys):
    """The list does not record the size `datalist build` had: without
    --size, the report says that 672 was assumed."""
    rc, out = _build_voc(*voc)
    assert rc == 0
    capsys.readouterr()
    assert cli.main(['datalist', 'check', out, '--att-num', '3', '--bbox-num', '4']) == 0
    assert capsys.readouterr().out.endswith('note: the boxes were checked against 672x672 images (the default): '
                                            'give --size as `datalist build` had it\n')
    assert cli.main(['datalist', 'check', out, '--att-num', '3', '--bbox-num', '4', '--size', '672']) == 0
    assert 'note: the boxes' not in capsys.readouterr().out


def test_voc_xml_whose_root_is_not_annotation(voc, capsys):
    tmp_path, root = voc
    xml = os.path.join(root, 'Annotations', 'a3.xml')
    with open(xml, 'w') as f:
        f.write('<html><body>502 Bad Gateway</body></html>')
    _assert_fails(tmp_path, capsys, _voc_argv(tmp_path, root), xml, 'its root element is <html>, not <annotation>')


def test_a_proposal_file_that_is_no_regular_file_is_not_called_missing(tmp_path):
    """`datalist build --proposals DIR` with a FIFO (or folder) DIR/<stem>.npz
    said "not found; run caffe-mlic proposals": it is there, but not a file."""
    from caffe_mlic.data.datalist_build import load_proposals
    from caffe_mlic.errors import InputError

    class Record:
        path = 'a.jpg'
    os.mkfifo(str(tmp_path / 'a.npz'))
    (tmp_path / 'b.npz').mkdir()
    for name in ('a.npz', 'b.npz'):
        with pytest.raises(InputError) as e:
            load_proposals(str(tmp_path / name), Record)
        assert 'not a regular file (a device, FIFO or folder)' in str(e.value) and 'not found' not in str(e.value)
    with pytest.raises(InputError, match='not found; run `caffe-mlic proposals`'):
        load_proposals(str(tmp_path / 'c.npz'), Record)


def test_a_datalist_output_that_is_a_device_or_fifo_is_refused(voc, capsys, tmp_path):
    """-o /dev/null wrote /dev/null.classes.txt and /dev/null.gt.json into
    /dev (pass 45b): the datalist's companions are written beside it."""
    _, voc = voc
    os.mkfifo(str(tmp_path / 'fifo'))
    for out, kind in (('/dev/null', 'a device'), (str(tmp_path / 'fifo'), 'a FIFO')):
        assert cli.main(['datalist', 'build', '--voc', str(voc), '--set', 'trainval', '--whole-image',
                         '-o', out]) == 2
        assert capsys.readouterr().err == (
            "caffe-mlic datalist build: argument -o/--output: %s is %s: give a file path (the datalist's "
            ".classes.txt and .gt.json are written beside it)\n" % (out, kind))
    assert not os.path.exists('/dev/null.classes.txt') and sorted(os.listdir(str(tmp_path))) == ['VOC', 'fifo', 'props']


def test_a_fifo_at_a_datalist_companion_is_refused_not_waited_on(voc, tmp_path):
    """-o x.txt writes x.gt.json and x.classes.txt too: a FIFO there hung
    the build for good (pass 46b S1)."""
    import subprocess
    import sys
    _, root = voc
    out = tmp_path / 'dl'
    out.mkdir()
    os.mkfifo(str(out / 'x.gt.json'))
    done = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'datalist', 'build', '--voc', root, '--set',
                           'trainval', '--whole-image', '-o', str(out / 'x.txt')], capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode, done.stderr) == (2, "caffe-mlic datalist build: argument -o/--output: %s is a FIFO, "
                                                 "where datalist build writes the datalist's ground truth: move it "
                                                 "away\n" % (out / 'x.gt.json'))
    assert sorted(os.listdir(str(out))) == ['x.gt.json']


@pytest.mark.parametrize('part', ['ImageSets', 'ImageSets/Main'])
def test_a_voc_folder_part_of_another_kind_is_said_as_what_it_is(voc, capsys, part):
    """It was "trainval.txt: cannot read image set: Not a directory" (pass 46b M2)."""
    _, root = voc
    shutil.rmtree(os.path.join(root, part))
    os.mkfifo(os.path.join(root, part))
    assert cli.main(['datalist', 'build', '--voc', root, '--set', 'trainval', '--whole-image', '-o',
                     os.path.join(os.path.dirname(root), 'x.txt')]) == 1
    assert capsys.readouterr().err == ('caffe-mlic datalist build: %s: a FIFO, not a folder (a VOC folder holds '
                                       'Annotations/ and ImageSets/Main/)\n' % os.path.join(root, part))
