"""`caffe-mlic detect` and `classify` on real photographs and on a tiny trained
WSDDN, and `detect` + `eval det` round trip."""
import json
import os

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.netspec import netgen
from caffe_mlic.caffe import prototxt
from caffe_mlic.inference.speed import photos
from caffe_mlic.netspec import MlicConfig
from tests.caffe_binary import caffe_train
from tests import netutil
from tests.tinydata import write_tiny_dataset

C, B, SIZE = 3, 8, 96


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Tiny generated nets, the tiny dataset, a teacher trained on it, seeded random students."""
    root = tmp_path_factory.mktemp('inference')
    listing = write_tiny_dataset(str(root / 'images'), n_images=6, num_classes=C, bbox_num=B, size=SIZE)
    cfg = MlicConfig.release(num_classes=C, bbox_num=B, teacher_size=SIZE, student_size=64, pooled=2,
                             backbone='tiny', train_list=listing, test_list=listing, scale_factors=[1.0],
                             workers=0, input_scale=1 / 58., wsddn_batch=(2, 2))
    netgen.generate(str(root / 'nets'), cfg)
    solver = netutil.write_solver(root / 'solver.prototxt', root / 'nets' / 'wsddn' / 'wsddn_train.prototxt',
                                  type='Adam', base_lr=0.002, momentum=0.9, momentum2=0.999, max_iter=40,
                                  random_seed=0, snapshot=40, snapshot_prefix=str(root / 'teacher'))
    caffe_train(solver, cwd=str(root))
    student = root / 'nets' / 'kd' / 'student_deploy.prototxt'
    (root / 'student.caffemodel').write_bytes(
        prototxt.net_weights_bytes(prototxt.caffe_net(student, 'TEST', seed=3)))
    _write_ground_truth_and_proposals(root, listing)
    return root


def _write_ground_truth_and_proposals(root, listing):
    """gt.json (the squares of each present class, in image pixels) and one
    proposal file per image (the datalist's boxes, mapped back to the image)."""
    images = []
    os.makedirs(root / 'props')
    for line in open(listing).read().split('\n'):
        if not line:
            continue
        fields = line.split()
        path, labels = fields[0], [int(v) for v in fields[1:1 + C]]
        boxes = np.array(fields[1 + C:], np.float64).reshape(B, 5)
        h, w = cv2.imread(path).shape[:2]
        scale = np.array([w / SIZE, h / SIZE] * 2)
        image_boxes = np.minimum(np.floor(boxes[:, :4] * scale), [w - 1, h - 1, w - 1, h - 1])
        objects = [{'class': 'c%d' % c, 'box': image_boxes[k].tolist(), 'difficult': False}
                   for k, c in enumerate(np.flatnonzero(labels))]
        images.append({'path': path, 'file': path, 'width': w, 'height': h,
                       'labels': [o['class'] for o in objects], 'objects': objects})
        np.savez(root / 'props' / (os.path.splitext(os.path.basename(path))[0] + '.npz'),
                 boxes=image_boxes.astype(np.float32), scores=boxes[:, 4].astype(np.float32),
                 image_shape=np.array([h, w], np.int32), method=np.array('datalist'))
    (root / 'gt.json').write_text(json.dumps({'classes': ['c0', 'c1', 'c2'], 'size': [SIZE, SIZE],
                                              'images': images}))
    (root / 'classes.txt').write_text('c0\nc1\nc2\n')


def test_detect_then_eval_det_round_trip(tiny, capsys):
    out = tiny / 'det'
    assert cli.main(['detect', '--net', str(tiny / 'nets' / 'wsddn' / 'wsddn_deploy.prototxt'),
                     '--weights', str(tiny / 'teacher_iter_40.caffemodel'), str(tiny / 'images'),
                     '-o', str(out), '--proposals', str(tiny / 'props'), '--classes',
                     str(tiny / 'classes.txt'), '--flip', '-q']) == 0
    assert '6 images' in capsys.readouterr().out
    gt = json.loads((tiny / 'gt.json').read_text())
    for im in gt['images']:
        stem = os.path.splitext(os.path.basename(im['path']))[0]
        record = json.loads((out / 'json' / (stem + '.json')).read_text())
        assert sorted(record['scores']) == ['c0', 'c1', 'c2']
        assert all(0 < s < 1 for s in record['scores'].values())
        for d in record['detections']:
            x1, y1, x2, y2 = d['box']
            assert 0 <= x1 <= x2 <= im['width'] - 1 and 0 <= y1 <= y2 <= im['height'] - 1
            assert d['score'] > 1e-3
        assert cv2.imread(str(out / 'vis' / (stem + '.jpg'))).shape[:2] == (im['height'], im['width'])
    assert sorted(f for f in os.listdir(out) if f.endswith('.txt')) == [
        'comp4_det_test_c0.txt', 'comp4_det_test_c1.txt', 'comp4_det_test_c2.txt']
    assert cli.main(['eval', 'det', '--gt', str(tiny / 'gt.json'), '--results', str(out),
                     '--json', str(tiny / 'det.json')]) == 0
    metrics = json.loads((tiny / 'det.json').read_text())
    assert metrics['classes'] == ['c0', 'c1', 'c2']
    for key in ('AP', 'AP07', 'CorLoc'):
        assert 0 <= metrics[key] <= 100 and len(metrics[key + '_per_class']) == C


def test_detector_sums_passes_and_adds_back_repeated_proposals(caffe, tiny):
    from caffe_mlic.inference.detector import WsddnDetector
    from caffe_mlic.inference.settings import load_settings
    net = tiny / 'nets' / 'wsddn' / 'wsddn_deploy.prototxt'
    detector = WsddnDetector(str(net), str(tiny / 'teacher_iter_40.caffemodel'), load_settings(str(net)))
    image = cv2.imread(str(tiny / 'images' / 'img000.png'))
    with np.load(tiny / 'props' / 'img000.npz') as z:
        boxes, scores = z['boxes'], z['scores']
    full = detector.score(image, boxes, scores)
    # one pass: the region scores of the B proposals sum to the image-level scores
    np.testing.assert_allclose(full.region_scores.sum(0), full.image_scores, rtol=1e-5)
    # four proposals repeated twice each: their copies' scores add back onto them
    half = detector.score(image, boxes[:4], scores[:4])
    assert half.region_scores.shape == (4, C)
    np.testing.assert_allclose(half.region_scores.sum(0), half.image_scores, rtol=1e-5)
    two = detector.score(image, boxes, scores, scales=[SIZE, SIZE])
    np.testing.assert_allclose(two.region_scores, 2 * full.region_scores, rtol=1e-5)
    flipped = detector.score(image, boxes, scores, flip=True)
    assert not np.allclose(flipped.region_scores, 2 * full.region_scores)


@pytest.mark.parametrize('engine', ['caffe', 'opencv'])
def test_classify_photos_with_both_engines(tiny, tmp_path, capsys, engine):
    for i, img in enumerate(photos()):
        cv2.imwrite(str(tmp_path / ('photo%d.jpg' % i)), img)
    out = tmp_path / ('%s.json' % engine)
    assert cli.main(['classify', '--net', str(tiny / 'nets' / 'kd' / 'student_deploy.prototxt'),
                     '--weights', str(tiny / 'student.caffemodel'), str(tmp_path), '--top', '2',
                     '--engine', engine, '--classes', str(tiny / 'classes.txt'), '-o', str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 4 and all(line.count(' c') == 2 for line in printed)
    results = json.loads(out.read_text())['results']
    assert len(results) == 4
    for r in results:
        p = np.array(list(r['probabilities'].values()))
        assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
        assert [t['label'] for t in r['top']] == sorted(r['probabilities'], key=lambda c: -r['probabilities'][c])[:2]


def test_opencv_engine_gives_the_caffe_probabilities(caffe, tiny):
    from caffe_mlic.inference.classifier import StudentClassifier
    from caffe_mlic.inference.settings import load_settings
    net = str(tiny / 'nets' / 'kd' / 'student_deploy.prototxt')
    settings = load_settings(net)
    assert settings.input_scale == pytest.approx(1 / 58.) and settings.source
    models = [StudentClassifier(net, str(tiny / 'student.caffemodel'), settings, e) for e in ('caffe', 'opencv')]
    outs = [[m.probabilities(img) for img in photos()] for m in models]
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
    assert np.ptp(np.array(outs[0]), axis=0).max() > 1e-4  # different photos, different outputs


def test_detect_computes_proposals_for_photos(tiny, tmp_path, capsys):
    img = photos(1)[0]
    path = tmp_path / 'astronaut.png'
    cv2.imwrite(str(path), img)
    out = tmp_path / 'det'
    assert cli.main(['detect', '--net', str(tiny / 'nets' / 'wsddn' / 'wsddn_deploy.prototxt'),
                     '--weights', str(tiny / 'teacher_iter_40.caffemodel'), str(path), '-o', str(out),
                     '--scales', '96', '128', '-q']) == 0
    with np.load(out / 'proposals' / 'astronaut.npz') as z:
        assert len(z['boxes']) > B
    record = json.loads((out / 'json' / 'astronaut.json').read_text())
    assert (record['width'], record['height']) == (512, 512)
    for d in record['detections']:
        assert 0 <= d['box'][0] <= d['box'][2] <= 511 and 0 <= d['box'][1] <= d['box'][3] <= 511
    assert cv2.imread(str(out / 'vis' / 'astronaut.jpg')).shape == img.shape


@pytest.mark.parametrize('argv, code, needle', [
    (['--scales', '100'], 2, 'scales must be multiples of 16'),
    (['--classes', '{classes2}'], 1, '2 classes, but the net scores 3'),
])
def test_detect_bad_input(tiny, tmp_path, capsys, argv, code, needle):
    (tmp_path / 'two.txt').write_text('a\nb\n')
    argv = [a.replace('{classes2}', str(tmp_path / 'two.txt')) for a in argv]
    assert cli.main(['detect', '--net', str(tiny / 'nets' / 'wsddn' / 'wsddn_deploy.prototxt'),
                     '--weights', str(tiny / 'teacher_iter_40.caffemodel'), str(tiny / 'images'),
                     '-o', str(tmp_path / 'o'), '--proposals', str(tiny / 'props'), '-q'] + argv) == code
    assert needle in capsys.readouterr().err


def test_speed_measures_every_engine_and_prints_ratios(tiny):
    """bench speed's measurements on the tiny nets (values only checked for sanity:
    speed targets belong to `make bench`, not to tests)."""
    import io

    from caffe_mlic.benchmarks import Report
    from caffe_mlic.benchmarks import speed
    out = io.StringIO()
    speed.run(Report(out), quick=True)
    text = out.getvalue()
    for key in ('teacher_ms', 'proposals_ms', 'student_ms', 'student_opencv_ms'):
        line = next(l for l in text.splitlines() if l.strip().startswith(key[:-3] + ' per image'))
        assert float(line.split()[-2]) > 0, line
    assert 'student speed-up over the teacher, proposals excluded' in text
