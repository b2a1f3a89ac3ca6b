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


def test_detect_rerun_on_fewer_images_names_the_earlier_runs_files(tiny, tmp_path, capsys):
    """A rerun into the folder of a run on more images left the others'
    json/ and vis/ files beside its own without a word (pass 38b m3): they
    are left as they were and counted."""
    import shutil
    out = tmp_path / 'det'
    some = tmp_path / 'some'
    some.mkdir()
    for name in sorted(os.listdir(str(tiny / 'images')))[:2]:
        shutil.copyfile(str(tiny / 'images' / name), str(some / name))
    base = ['detect', '--net', str(tiny / 'nets' / 'wsddn' / 'wsddn_deploy.prototxt'),
            '--weights', str(tiny / 'teacher_iter_40.caffemodel'), '-o', str(out), '--proposals',
            str(tiny / 'props'), '--classes', str(tiny / 'classes.txt'), '-q']
    assert cli.main(base + [str(tiny / 'images')]) == 0
    assert 'not in this run' not in capsys.readouterr().err
    first = len(os.listdir(str(out / 'json')))
    assert cli.main(base + [str(some)]) == 0
    err = capsys.readouterr().err
    assert 'json/ and vis/ also hold %d file(s) of images not in this run' % (2 * (first - 2)) in err, err
    assert len(os.listdir(str(out / 'json'))) == first


def test_detect_refuses_an_output_subfolder_of_another_kind_before_any_output(tiny, tmp_path, capsys):
    """OUT/vis a file: the first image's json was written, then it failed (pass 41b M1)."""
    out = tmp_path / 'det'
    out.mkdir()
    (out / 'vis').write_text('x')
    assert cli.main(['detect', '--net', str(tiny / 'nets' / 'wsddn' / 'wsddn_deploy.prototxt'),
                     '--weights', str(tiny / 'teacher_iter_40.caffemodel'), str(tiny / 'images'),
                     '-o', str(out), '--proposals', str(tiny / 'props'), '--classes',
                     str(tiny / 'classes.txt'), '-q']) == 2
    assert '%s is a file, where the output folder would be' % (out / 'vis') in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ['vis']
    # an output file that is a folder: the earlier images were written, then it failed (pass 42 M1)
    (out / 'vis').unlink()
    (out / 'json' / 'img001.json').mkdir(parents=True)
    assert cli.main(['detect', '--net', str(tiny / 'nets' / 'wsddn' / 'wsddn_deploy.prototxt'),
                     '--weights', str(tiny / 'teacher_iter_40.caffemodel'), str(tiny / 'images'),
                     '-o', str(out), '--proposals', str(tiny / 'props'), '--classes',
                     str(tiny / 'classes.txt'), '-q']) == 2
    assert '%s is a folder: give a file path to write' % (out / 'json' / 'img001.json') in capsys.readouterr().err
    assert sorted(str(p.relative_to(out)) for p in out.rglob('*')) == ['json', 'json/img001.json']


def test_detect_whose_output_folder_is_removed_mid_run_fails(tiny, tmp_path, capsys, monkeypatch):
    """The per-image writer made the removed folder again: detect ended
    with exit 0 and a summary counting every image, while json/ held only
    the images after the removal (pass 37b S5)."""
    import shutil
    from caffe_mlic import fileio
    out = tmp_path / 'det'
    write_json, written = fileio.atomic_write_json, []

    def removed_after_the_second(path, data, **kw):
        written.append(path)
        if len(written) == 2:
            shutil.rmtree(str(out))
        return write_json(path, data, **kw)
    monkeypatch.setattr(fileio, 'atomic_write_json', removed_after_the_second)
    assert cli.main(['detect', '--net', str(tiny / 'nets' / 'wsddn' / 'wsddn_deploy.prototxt'),
                     '--weights', str(tiny / 'teacher_iter_40.caffemodel'), str(tiny / 'images'),
                     '-o', str(out), '--proposals', str(tiny / 'props'), '--classes',
                     str(tiny / 'classes.txt'), '-q']) == 1
    err = capsys.readouterr().err
    assert 'of the 15 files detect wrote are not there any more (' in err and 'run it again' in err, err


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


def test_classify_refuses_an_output_folder_before_it_classifies(tiny, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'photo.jpg'), photos()[0])
    (tmp_path / 'out').mkdir()
    assert cli.main(['classify', '--net', str(tiny / 'nets' / 'kd' / 'student_deploy.prototxt'),
                     '--weights', str(tiny / 'student.caffemodel'), str(tmp_path / 'photo.jpg'),
                     '-o', str(tmp_path / 'out')]) == 2
    captured = capsys.readouterr()
    assert captured.out == '' and captured.err == ('caffe-mlic classify: argument -o/--output: %s is a folder: give '
                                                   'a file path to write\n' % (tmp_path / 'out'))


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
    (['--scales', '100'], 2, 'argument --scales: must be a multiple of 16 from 16 to 4096'),
    (['--scales', '96', '128', '96'], 2, 'argument --scales: scales must be distinct (the passes\' scores are '
                                         'summed, so a repeated scale would count twice), got 96 more than once'),
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


# ---------------------------------------------------------------- deploy.json, bounds, outputs (issue 24)

def _deploy(tiny, rel):
    return str(tiny / 'nets' / rel)


STUDENT, TEACHER = 'kd/student_deploy.prototxt', 'wsddn/wsddn_deploy.prototxt'


@pytest.mark.parametrize('text, fragment', [
    ('{"mean": null}', 'mean: must be 3 finite numbers (B, G, R) or 1 for all channels, got null'),
    ('{"mean": [1, 2]}', 'mean: must be 3 finite numbers'),
    ('{"mean": [1, 2, "a"]}', 'mean: must be 3 finite numbers'),
    ('{"mean": [1, 2, true]}', 'mean: must be 3 finite numbers'),
    ('{"input_scale": "x"}', 'input_scale: must be a finite number > 0, got "x"'),
    ('{"input_scale": null}', 'input_scale: must be a finite number > 0, got null'),
    ('{"input_scale": 0}', 'input_scale: must be a finite number > 0, got 0'),
    ('{"input_scale": 1e400}', 'input_scale: must be a finite number > 0'),
    # 0 in float32, in which the net computes: constant scores for every image (pass 23 M6)
    ('{"input_scale": 1e-300}', 'input_scale: must be a finite number > 0 (as float32, in which the net computes: '
                                'at least 1.4e-45), got 1e-300'),
    # json keeps the last of a key given twice (pass 23 M5)
    ('{"input_scale": 1.0, "input_scale": 0.5}', "not valid JSON: the key 'input_scale' is given twice in one object"),
    ('{"input_scale": NaN}', 'not valid JSON: NaN is not JSON'),
    ('{"num_classes": 1}', 'num_classes: must be an integer >= 2, got 1'),
    ('{"num_classes": 3.0}', 'num_classes: must be an integer >= 2, got 3.0'),
    ('{"bbox_num": true}', 'bbox_num: must be an integer >= 1, got true'),
    ('{"teacher_size": 100000}', 'teacher_size: must be an integer from 1 to 26754, got 100000'),
    ('{"student_size": -64}', 'student_size: must be an integer from 1 to 26754'),
    ('{"classes": "c0 c1 c2"}', 'classes: must be a list of class names, got "c0 c1 c2"'),
    ('{"classes": ["c0", "", "c2"]}', 'classes: name 2 must be non-empty text, got ""'),
    ('{"classes": ["c0", "a b", "c2"]}', 'classes: name 2 has whitespace'),
    ('{"classes": ["c0", "c0", "c2"]}', 'classes: names must be distinct: "c0" repeats'),
    ('{"num_classes": 3, "classes": ["a", "b"]}', 'classes: 2 names, but num_classes is 3'),
    ('{"means": [1, 2, 3]}', "unknown key 'means'"),
    ('[1, 2, 3]', 'expected a JSON object with keys among mean, input_scale'),
    ('{"mean": [1, 2, 3', 'not valid JSON'),
])
def test_deploy_json_is_validated_field_by_field(tiny, tmp_path, capsys, text, fragment):
    """One reader for every command: a bad field is one line naming the file
    and the field (a null or text mean / input_scale was a traceback)."""
    from caffe_mlic.errors import InputError
    from caffe_mlic.inference.settings import load_settings
    path = tmp_path / 'deploy.json'
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_settings(_deploy(tiny, STUDENT), str(path))
    assert str(path) in str(err.value) and fragment in str(err.value)
    assert cli.main(['classify', '--net', _deploy(tiny, STUDENT), '--weights', str(tiny / 'student.caffemodel'),
                     str(tiny / 'images' / 'img000.png'), '--settings', str(path)]) == 1
    captured = capsys.readouterr()
    assert fragment in captured.err and 'Traceback' not in captured.err and captured.out == ''


def test_deploy_json_reads_what_the_generators_write(tmp_path):
    """Both generators' deploy.json (one mean value for ScasNet too), a BOM."""
    from caffe_mlic.inference.settings import read_settings
    from caffe_mlic.netspec.scasnet import ScasConfig
    netgen.generate(str(tmp_path / 'mlic'), MlicConfig.release(num_classes=3), classes=['a', 'b', 'c'])
    s = read_settings(str(tmp_path / 'mlic' / 'deploy.json'))
    assert (s.num_classes, s.bbox_num, s.teacher_size, s.student_size, s.classes) == (3, 500, 672, 224, ['a', 'b', 'c'])
    netgen.generate_scasnet(str(tmp_path / 'scas'), [ScasConfig.release(mean=(100.0,), input_scale=0.5)])
    s = read_settings(str(tmp_path / 'scas' / 'deploy.json'))
    assert (s.mean, s.input_scale, s.num_classes, s.classes) == ([100.0] * 3, 0.5, 6, None)
    (tmp_path / 'bom.json').write_bytes(b'\xef\xbb\xbf{"input_scale": 2}')
    assert read_settings(str(tmp_path / 'bom.json')).input_scale == 2


def _settings_file(tiny, tmp_path, **changes):
    data = json.loads((tiny / 'nets' / 'deploy.json').read_text())
    data.update(changes)
    path = tmp_path / 'deploy.json'
    path.write_text(json.dumps(data))
    return str(path)


@pytest.mark.parametrize('command, changes, fragment', [
    ('classify', dict(num_classes=5), "num_classes: 5, but the net {net} has 3 classes in its 'prob' blob"),
    ('classify', dict(student_size=96), 'student_size: 96, but the net {net} has 64 px inputs'),
    ('classify', dict(num_classes=None, classes=['a', 'b']), 'classes: 2 names, but the net {net} has 3 classes'),
    ('detect', dict(num_classes=4), "num_classes: 4, but the net {net} has 3 classes in its 'image_level_score'"),
    ('detect', dict(bbox_num=9), 'bbox_num: 9, but the net {net} has 8 proposals'),
    ('detect', dict(teacher_size=128), 'teacher_size: 128, but the net {net} has 96 px inputs'),
])
def test_deploy_json_disagreeing_with_the_net_is_refused(tiny, tmp_path, capsys, command, changes, fragment):
    net = _deploy(tiny, STUDENT if command == 'classify' else TEACHER)
    settings = _settings_file(tiny, tmp_path, **changes)
    if changes.get('num_classes', 0) is None:
        data = json.loads(open(settings).read())
        del data['num_classes']
        open(settings, 'w').write(json.dumps(data))
    weights = str(tiny / ('student.caffemodel' if command == 'classify' else 'teacher_iter_40.caffemodel'))
    extra = ['-o', str(tmp_path / 'out'), '--proposals', str(tiny / 'props'), '-q'] if command == 'detect' else []
    assert cli.main([command, '--net', net, '--weights', weights, str(tiny / 'images' / 'img000.png'),
                     '--settings', settings] + extra) == 1
    err = capsys.readouterr().err
    assert settings in err and fragment.format(net=net) in err, err
    assert not (tmp_path / 'out').exists()


def test_class_names_from_deploy_json_and_an_explicit_list_wins(tiny, tmp_path, capsys):
    """netgen's class names reach detect and classify without --classes."""
    nets = tmp_path / 'named'
    netgen.generate(str(nets), _tiny_cfg(tiny), classes=['cat', 'dog', 'cow'])
    assert json.loads((nets / 'deploy.json').read_text())['classes'] == ['cat', 'dog', 'cow']
    image = str(tiny / 'images' / 'img000.png')
    assert cli.main(['classify', '--net', str(nets / 'kd' / 'student_deploy.prototxt'), '--weights',
                     str(tiny / 'student.caffemodel'), image, '--top', '3', '-o', str(tmp_path / 'c.json')]) == 0
    assert sorted(json.loads((tmp_path / 'c.json').read_text())['results'][0]['probabilities']) == ['cat', 'cow', 'dog']
    printed = capsys.readouterr().out
    assert all(name in printed for name in ('cat', 'dog', 'cow'))
    assert cli.main(['classify', '--net', str(nets / 'kd' / 'student_deploy.prototxt'), '--weights',
                     str(tiny / 'student.caffemodel'), image, '--classes', str(tiny / 'classes.txt')]) == 0
    assert ' c0 ' in capsys.readouterr().out
    assert cli.main(['detect', '--net', str(nets / 'wsddn' / 'wsddn_deploy.prototxt'), '--weights',
                     str(tiny / 'teacher_iter_40.caffemodel'), image, '-o', str(tmp_path / 'det'),
                     '--proposals', str(tiny / 'props'), '-q']) == 0
    assert sorted(os.listdir(tmp_path / 'det'))[:3] == [
        'comp4_det_test_cat.txt', 'comp4_det_test_cow.txt', 'comp4_det_test_dog.txt']
    assert sorted(json.loads((tmp_path / 'det' / 'json' / 'img000.json').read_text())['scores']) == ['cat', 'cow', 'dog']
    (tmp_path / 'two.txt').write_text('a\nb\n')
    assert cli.main(['classify', '--net', str(nets / 'kd' / 'student_deploy.prototxt'), '--weights',
                     str(tiny / 'student.caffemodel'), image, '--classes', str(tmp_path / 'two.txt')]) == 1
    assert '2 classes, but the net scores 3' in capsys.readouterr().err


def _tiny_cfg(tiny):
    """The MlicConfig of the module's nets (the tiny fixture's)."""
    listing = str(tiny / 'images' / 'list.txt')
    return MlicConfig.release(num_classes=C, bbox_num=B, teacher_size=SIZE, student_size=64, pooled=2,
                              backbone='tiny', train_list=listing, test_list=listing, scale_factors=[1.0],
                              workers=0, input_scale=1 / 58., wsddn_batch=(2, 2))


def test_classify_opencv_engine_checks_the_weights_like_caffe(tiny, capsys):
    """Another net's caffemodel (the teacher's: no fc8_mscoco) was an OpenCV
    traceback at the first image; now the same one line as the Caffe engine."""
    messages = []
    for engine in ('caffe', 'opencv'):
        assert cli.main(['classify', '--net', _deploy(tiny, STUDENT), '--weights',
                         str(tiny / 'teacher_iter_40.caffemodel'), str(tiny / 'images'), '--engine', engine]) == 1
        captured = capsys.readouterr()
        assert captured.out == '' and 'Traceback' not in captured.err
        messages.append(captured.err.strip().splitlines()[-1].split(': ', 1)[1])
    assert messages[0] == messages[1]
    assert 'teacher_iter_40.caffemodel: has no weights for 1 of the net' in messages[0] and 'fc8_mscoco' in messages[0]


@pytest.mark.parametrize('command, argv, fragment', [
    ('detect', ['--scales', '40000'], 'argument --scales: must be a multiple of 16 from 16 to 4096'),
    ('detect', ['--scales', '0'], 'argument --scales: must be a multiple of 16 from 16 to 4096'),
    ('detect', ['--nms', '2'], 'argument --nms: must be a finite number from 0 to 1'),
    ('detect', ['--nms', '-0.1'], 'argument --nms: must be a finite number from 0 to 1'),
    ('detect', ['--score-threshold', 'nan'], 'argument --score-threshold: must be a finite number >= 0'),
    ('detect', ['--score-threshold', '-1'], 'argument --score-threshold: must be a finite number >= 0'),
    ('detect', ['--score-threshold', '1'], 'argument --score-threshold: score_threshold must be below 1, '
                                           'the most a region scores summed over the 1 pass'),
    ('detect', ['--score-threshold', '4', '--scales', '96', '128', '--flip'],
     'score_threshold must be below 4, the most a region scores summed over the 4 passes'),
    ('detect', ['--top', '0'], 'argument --top: must be an integer >= 1'),
    ('classify', ['--top', '0'], 'argument --top: must be an integer >= 1'),
    ('classify', ['--top', 'x'], "argument --top: must be an integer >= 1, got 'x'"),
])
def test_impossible_values_are_usage_errors(tiny, tmp_path, capsys, command, argv, fragment):
    net, weights = ((STUDENT, 'student.caffemodel') if command == 'classify' else
                    (TEACHER, 'teacher_iter_40.caffemodel'))
    extra = ['-o', str(tmp_path / 'out'), '--proposals', str(tiny / 'props'), '-q'] if command == 'detect' else []
    assert cli.main([command, '--net', _deploy(tiny, net), '--weights', str(tiny / weights),
                     str(tiny / 'images')] + extra + argv) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_detect_control_seed_is_bounded(tiny, tmp_path, capsys):
    assert cli.main(['detect', '--net', _deploy(tiny, TEACHER), '--control', 'random', '--seed', '-1',
                     str(tiny / 'images'), '-o', str(tmp_path / 'o'), '-q']) == 2
    assert 'argument --seed: must be an integer >= 0' in capsys.readouterr().err


@pytest.mark.parametrize('command', ['detect', 'classify'])
def test_help_states_the_bounds(command, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, '--help'])
    text = ' '.join(capsys.readouterr().out.split())
    wanted = {'detect': ['multiples of 16 from 16 to 4096', 'from 0 (suppress any overlap) to 1',
                         'a finite number >= 0 and below the number of passes', '>= 1 (default 10)',
                         'random, >= 0'],
              'classify': ['>= 1 (default 5)']}[command]
    for fragment in wanted:
        assert fragment in text, fragment


def test_outputs_that_name_an_input_are_refused_before_anything_is_written(tiny, tmp_path, capsys):
    images = tmp_path / 'imgs'
    (images / 'vis').mkdir(parents=True)
    for name in ('a.png', 'vis/b.jpg'):
        cv2.imwrite(str(images / name), photos(1)[0][:64, :80])
    before = {p: p.read_bytes() for p in images.rglob('*.*')}
    student = ['classify', '--net', _deploy(tiny, STUDENT), '--weights', str(tiny / 'student.caffemodel')]
    teacher = ['detect', '--net', _deploy(tiny, TEACHER), '--weights', str(tiny / 'teacher_iter_40.caffemodel'), '-q']
    a, b = str(images / 'a.png'), str(images / 'vis' / 'b.jpg')
    for argv, flag in ((student + [a, '-o', a], '-o/--output'),
                       (student + [a, b, '--csv', b], '--csv'),
                       (student + [a, '-o', str(tmp_path / 'x.json'), '--csv', a], '--csv'),
                       (teacher + [a, '-o', a], '-o/--output'),
                       # OUT/vis/b.jpg, the drawing of image b, is image b
                       (teacher + [b, '-o', str(images)], '-o/--output')):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        # (the last: OUT/vis, where the drawings go, holds image b: refused as a folder of inputs)
        assert 'argument %s: ' % flag in err and ('is an input of this command' in err or
                                                   '%s is the folder of inputs' % (images / 'vis') in err), err
    assert {p: p.read_bytes() for p in images.rglob('*.*')} == before
    assert not (tmp_path / 'x.json').exists() and not (images / 'json').exists()


def test_the_deploy_json_read_beside_the_net_is_an_input_too(tiny, tmp_path, capsys):
    """Not given with --settings, it is still read: -o, --csv or speed's
    --json naming it was written over with rc 0 (the next command failed)."""
    from caffe_mlic.inference.settings import find_settings
    image = tmp_path / 'a.png'
    cv2.imwrite(str(image), photos(1)[0][:64, :80])
    net = _deploy(tiny, STUDENT)
    deploy = find_settings(net)
    before = open(deploy, 'rb').read()
    student = ['classify', '--net', net, '--weights', str(tiny / 'student.caffemodel'), str(image)]
    speed = ['speed', '--teacher', _deploy(tiny, TEACHER), str(tiny / 'teacher_iter_40.caffemodel'),
             '--student', net, str(tiny / 'student.caffemodel'), str(image)]
    for argv, flag in ((student + ['-o', deploy], '-o/--output'), (student + ['--csv', deploy], '--csv'),
                       (speed + ['--json', deploy], '--json')):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert 'argument %s: ' % flag in err and 'is an input of this command' in err, err
    assert open(deploy, 'rb').read() == before


def test_classify_writes_json_and_csv_together_or_neither(tiny, tmp_path):
    (tmp_path / 'csv_is_a_folder').mkdir()
    assert cli.main(['classify', '--net', _deploy(tiny, STUDENT), '--weights', str(tiny / 'student.caffemodel'),
                     str(tiny / 'images' / 'img000.png'), '-o', str(tmp_path / 'r.json'),
                     '--csv', str(tmp_path / 'csv_is_a_folder')]) == 2      # (refused before the work)
    assert sorted(os.listdir(tmp_path)) == ['csv_is_a_folder']


def test_detect_refuses_an_output_folder_that_holds_its_inputs(tiny, tmp_path, capsys):
    """`detect -o IMAGES IMAGES/x.jpg` wrote the devkit files among the images,
    and `-o` equal to a run's --proposals folder made the run stale (pass 20 M1)."""
    (tmp_path / 'imgs').mkdir()
    cv2.imwrite(str(tmp_path / 'imgs' / 'a.png'), photos(1)[0][:64, :80])
    detect = ['detect', '--net', _deploy(tiny, TEACHER), '--weights', str(tiny / 'teacher_iter_40.caffemodel'), '-q']
    for extra in ([str(tmp_path / 'imgs' / 'a.png'), '-o', str(tmp_path / 'imgs')],
                  [str(tmp_path / 'imgs' / 'a.png'), '--proposals', str(tmp_path), '-o', str(tmp_path)]):
        assert cli.main(detect + extra) == 2
        assert 'is the folder of inputs of this command' in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / 'imgs')) == ['a.png']
    # one folder down: -o OUT with the images in OUT/vis (pass 21 M2)
    (tmp_path / 'out' / 'vis').mkdir(parents=True)
    cv2.imwrite(str(tmp_path / 'out' / 'vis' / 'b.png'), photos(1)[0][:64, :80])
    assert cli.main(detect + [str(tmp_path / 'out' / 'vis' / 'b.png'), '-o', str(tmp_path / 'out')]) == 2
    assert '%s is the folder of inputs of this command' % (tmp_path / 'out' / 'vis') in capsys.readouterr().err
    # OUT/proposals a folder of `caffe-mlic proposals` (a run's data/): detect would keep its cache there (M1)
    (tmp_path / 'data' / 'proposals').mkdir(parents=True)
    (tmp_path / 'data' / 'proposals' / 'settings.json').write_text('{}')
    assert cli.main(detect + [str(tmp_path / 'imgs' / 'a.png'), '-o', str(tmp_path / 'data')]) == 2
    assert 'is a folder of `caffe-mlic proposals` (it holds settings.json)' in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / 'data' / 'proposals')) == ['settings.json']


def test_detect_refuses_image_names_it_cannot_write_before_any_output(tiny, tmp_path, capsys):
    for sub, name in (('one', 'a.png'), ('two', 'a.jpg'), ('space', 'my photo.png')):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / name), photos(1)[0][:64, :80])
    detect = ['detect', '--net', _deploy(tiny, TEACHER), '--weights', str(tiny / 'teacher_iter_40.caffemodel'), '-q']
    assert cli.main(detect + [str(tmp_path / 'one'), str(tmp_path / 'two'), '-o', str(tmp_path / 'o')]) == 2
    assert 'two images would write the same outputs' in capsys.readouterr().err
    assert cli.main(detect + [str(tmp_path / 'one'), str(tmp_path / 'space'), '-o', str(tmp_path / 'o')]) == 1
    assert 'my photo.png: its name (without the extension) is empty or has whitespace' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()
    # one file spelled two ways is one image (pass 20 M9)
    one = str(tmp_path / 'one' / 'a.png')
    assert cli.main(detect + [one, os.path.join(str(tmp_path), '.', 'one', 'a.png'), '-o', str(tmp_path / 'o')]) == 0
    assert sorted(os.listdir(tmp_path / 'o' / 'json')) == ['a.json']


def test_detect_refuses_an_image_too_small_for_proposals_before_any_output(tiny, tmp_path, capsys):
    """Its json/ and vis/ files of the images before it were written, then
    the error (pass 20 M2); the header tells."""
    (tmp_path / 'imgs').mkdir()
    cv2.imwrite(str(tmp_path / 'imgs' / 'a.png'), photos(1)[0][:64, :80])
    cv2.imwrite(str(tmp_path / 'imgs' / 'b.png'), np.zeros((64, 12, 3), np.uint8))     # 12 px wide
    detect = ['detect', '--net', _deploy(tiny, TEACHER), '--weights', str(tiny / 'teacher_iter_40.caffemodel'), '-q']
    assert cli.main(detect + [str(tmp_path / 'imgs'), '-o', str(tmp_path / 'o')]) == 1
    assert ('%s: the image is 12x64 px: smaller than the smallest box EdgeBoxes keeps (min_size 20 px a side)'
            % (tmp_path / 'imgs' / 'b.png')) in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()


def test_expand_images_takes_each_file_once(tmp_path):
    from caffe_mlic.data.imageio import expand_images
    (tmp_path / 'd').mkdir()
    for name in ('b.png', 'a.jpg', 'notes.txt'):
        (tmp_path / 'd' / name).write_bytes(b'')
    d = str(tmp_path / 'd')
    assert expand_images([d, d + '/./a.jpg', d + '/../d/b.png', d + '/a.jpg']) == [d + '/a.jpg', d + '/b.png']


NOT_UTF8 = b'\xff\xfe'


def test_image_names_that_are_not_utf8(tiny, tmp_path, capsys):
    """detect writes such a name into the devkit files as its bytes; classify
    prints it escaped and writes it in -o's JSON; --csv (UTF-8 text) refuses
    it before anything is written."""
    images = tmp_path / 'imgs'
    images.mkdir()
    shutil_copy = __import__('shutil').copyfile
    shutil_copy(str(tiny / 'images' / 'img000.png'), os.path.join(os.fsencode(images), NOT_UTF8 + b'.png'))
    shutil_copy(str(tiny / 'images' / 'img001.png'), str(images / 'plain.png'))
    shutil_copy(str(tiny / 'props' / 'img000.npz'), os.path.join(os.fsencode(tmp_path), NOT_UTF8 + b'.npz'))
    shutil_copy(str(tiny / 'props' / 'img001.npz'), str(tmp_path / 'plain.npz'))
    out = tmp_path / 'det'
    assert cli.main(['detect', '--net', _deploy(tiny, TEACHER), '--weights', str(tiny / 'teacher_iter_40.caffemodel'),
                     str(images), '-o', str(out), '--proposals', str(tmp_path), '--classes',
                     str(tiny / 'classes.txt'), '--score-threshold', '0', '-q']) == 0
    ids = set()
    for c in ('c0', 'c1', 'c2'):
        ids |= {line.split(b' ')[0] for line in (out / ('comp4_det_test_%s.txt' % c)).read_bytes().splitlines()}
    assert ids == {NOT_UTF8, b'plain'}
    stem = os.fsdecode(NOT_UTF8)
    assert json.loads((out / 'json' / (stem + '.json')).read_text())['image'] == os.path.abspath(
        os.path.join(str(images), stem + '.png'))
    assert os.path.isfile(os.path.join(os.fsencode(out), b'vis', NOT_UTF8 + b'.jpg'))

    classify = ['classify', '--net', _deploy(tiny, STUDENT), '--weights', str(tiny / 'student.caffemodel'), str(images)]
    assert cli.main(classify + ['-o', str(tmp_path / 'c.json'), '--csv', str(tmp_path / 'c.csv')]) == 1
    err = capsys.readouterr().err
    assert '\\xff\\xfe.png: the name is not UTF-8, which the CSV (UTF-8 text) cannot hold' in err, err
    assert not (tmp_path / 'c.json').exists() and not (tmp_path / 'c.csv').exists()
    assert cli.main(classify + ['-o', str(tmp_path / 'c.json')]) == 0
    assert '\\xff\\xfe.png  c' in capsys.readouterr().out.replace('class_', 'c')
    names = [r['image'] for r in json.loads((tmp_path / 'c.json').read_text())['results']]
    assert any(os.fsencode(name).endswith(b'/' + NOT_UTF8 + b'.png') for name in names)


# ---------------------------------------------------------------- hostile inputs (issue 26)

def _png_bytes(width, height, raw_rows):
    """A PNG whose IHDR says width x height (RGB, 8-bit) and whose IDAT holds
    ``raw_rows`` zero bytes, however many the size needs."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\0' * raw_rows)) + chunk(b'IEND', b''))


def _student(tiny):
    return ['--net', _deploy(tiny, STUDENT), '--weights', str(tiny / 'student.caffemodel')]


def _teacher(tiny):
    return ['--net', _deploy(tiny, TEACHER), '--weights', str(tiny / 'teacher_iter_40.caffemodel')]


def test_every_command_refuses_a_decompression_bomb_in_one_line(tiny, tmp_path, capfd):
    """A 254-byte PNG whose header says 60000 x 60000 px: cv2.error tracebacks
    (OpenCV's size assertion) from classify, detect and speed."""
    bomb = tmp_path / 'bomb.png'
    bomb.write_bytes(_png_bytes(60000, 60000, 180001))
    runs = [['classify'] + _student(tiny) + [str(bomb)],
            ['classify'] + _student(tiny) + [str(bomb), '--engine', 'opencv'],
            ['detect'] + _teacher(tiny) + [str(bomb), '-o', str(tmp_path / 'det'), '-q'],
            ['speed', '--teacher', _deploy(tiny, TEACHER), str(tiny / 'teacher_iter_40.caffemodel'), '--student',
             _deploy(tiny, STUDENT), str(tiny / 'student.caffemodel'), str(bomb), '--max-images', '1',
             '--repeats', '1']]
    for argv in runs:
        assert cli.main(argv) == 1, argv
        captured = capfd.readouterr()
        assert captured.err == ('caffe-mlic %s: %s: cannot read image (the image is 60000x60000 px (3600000000 '
                                'pixels), over the limit of 268435456 (2^28) pixels for one image: a '
                                'decompression bomb, or an image to tile first)\n' % (argv[0], bomb)), argv
    assert not (tmp_path / 'det' / 'json').exists()


def test_speed_names_an_image_too_small_for_any_proposal(tiny, tmp_path, capsys):
    tiny_image = tmp_path / 'one.png'
    cv2.imwrite(str(tiny_image), np.zeros((1, 1, 3), np.uint8))
    assert cli.main(['speed', '--teacher', _deploy(tiny, TEACHER), str(tiny / 'teacher_iter_40.caffemodel'),
                     '--student', _deploy(tiny, STUDENT), str(tiny / 'student.caffemodel'), str(tiny_image),
                     '--repeats', '1']) == 1
    assert capsys.readouterr().err.startswith('caffe-mlic speed: %s: the image is 1x1 px' % tiny_image)


def test_classify_refuses_a_png_short_of_data_without_libpng_errors(tiny, tmp_path, capfd):
    """'libpng error: Not enough image data' was printed above the error."""
    short = tmp_path / 'short.png'
    short.write_bytes(_png_bytes(300, 200, 1801))
    assert cli.main(['classify'] + _student(tiny) + [str(short)]) == 1
    assert capfd.readouterr().err == ('caffe-mlic classify: %s: cannot read image (a truncated PNG: its image '
                                      'data holds 1801 of the 180200 bytes its 300x200 header needs)\n' % short)


@pytest.mark.parametrize('changes, fragment', [
    (dict(mean=[1e308, 1, 1]), 'mean: must be pixel values from -10000 to 10000 (B, G, R, or 1 for all '
                               'channels), got [1e+308, 1, 1]'),
    (dict(mean=[-20000]), 'mean: must be pixel values from -10000 to 10000'),
    (dict(input_scale=1e300), 'input_scale: must be a number > 0 and at most 10000, got 1e+300'),
])
def test_deploy_json_values_that_overflow_float32_are_refused(tiny, tmp_path, capsys, changes, fragment):
    """Finite in JSON, inf in the float32 input: classify printed nan, detect
    said 'training diverged', scasnet infer labelled everything class 0."""
    settings = _settings_file(tiny, tmp_path, **changes)
    for command, net, extra in (('classify', _student(tiny), []),
                                ('detect', _teacher(tiny), ['-o', str(tmp_path / 'out'), '--proposals',
                                                            str(tiny / 'props'), '-q'])):
        assert cli.main([command] + net + [str(tiny / 'images' / 'img000.png'), '--settings', settings]
                        + extra) == 1
        captured = capsys.readouterr()
        assert captured.err.startswith('caffe-mlic %s: %s: %s' % (command, settings, fragment)), captured.err
        assert captured.err.count('\n') == 1 and captured.out == ''
    assert not (tmp_path / 'out').exists()
    from caffe_mlic.inference.settings import read_settings
    assert read_settings(_settings_file(tiny, tmp_path, mean=[1e4, -1e4, 0], input_scale=1e4)).input_scale == 1e4


def _with_weight(tiny, tmp_path, net_rel, weights, layer, value):
    """A copy of the caffemodel ``weights`` with one weight of ``layer`` set to value."""
    net = prototxt.caffe_net(_deploy(tiny, net_rel), 'TEST', weights=str(tiny / weights))
    net.params[layer][0].data.flat[1] = value
    path = tmp_path / ('%s_%s.caffemodel' % (layer, value))
    net.save(str(path))
    return str(path)


def test_weights_that_are_not_finite_are_refused_naming_the_file_and_layer(tiny, tmp_path, capsys):
    """A NaN in fc8: classify silently dropped that class from its labels; an
    inf in the teacher: detect said 'training diverged'."""
    bad = _with_weight(tiny, tmp_path, STUDENT, 'student.caffemodel', 'fc8_mscoco', float('nan'))
    fc8 = sum(b.count for b in prototxt.caffe_net(_deploy(tiny, STUDENT), 'TEST').params['fc8_mscoco'])
    for engine in ('caffe', 'opencv'):
        assert cli.main(['classify', '--net', _deploy(tiny, STUDENT), '--weights', bad,
                         str(tiny / 'images' / 'img000.png'), '--engine', engine]) == 1
        captured = capsys.readouterr()
        assert captured.out == '' and captured.err == (
            "caffe-mlic classify: %s: layer 'fc8_mscoco': 1 of its %d weights are NaN or infinite: the weights "
            "hold non-finite values (a snapshot of a diverged training run?)\n" % (bad, fc8))
    bad = _with_weight(tiny, tmp_path, TEACHER, 'teacher_iter_40.caffemodel', 'conv1_1', float('inf'))
    assert cli.main(['detect', '--net', _deploy(tiny, TEACHER), '--weights', bad, str(tiny / 'images' / 'img000.png'),
                     '-o', str(tmp_path / 'det'), '--proposals', str(tiny / 'props'), '-q']) == 1
    err = capsys.readouterr().err
    assert "%s: layer 'conv1_1': 1 of its" % bad in err and 'non-finite' in err and 'diverged training run' in err
    assert 'training diverged' not in err and not (tmp_path / 'det').exists()


SEGMENTER = '''name: "pointwise"
input: "data" input_dim: 1 input_dim: 3 input_dim: 16 input_dim: 16
layer { name: "conv6_interp" type: "Convolution" bottom: "data" top: "conv6_interp"
        convolution_param { num_output: 4 kernel_size: 1
                            weight_filler { type: "gaussian" std: 1 } bias_filler { type: "gaussian" std: 1 } } }
'''


def test_segmenter_refuses_non_finite_weights_and_a_palette_short_of_colours(tmp_path):
    """scasnet infer: a NaN weight labelled every pixel class 0; a palette of
    fewer colours than classes painted the others black (the ignore colour)."""
    from caffe_mlic.data.labelmaps import isprs_palette, load_palette
    from caffe_mlic.errors import InputError
    from caffe_mlic.inference.segmenter import Segmenter
    from caffe_mlic.inference.settings import DeploySettings
    path = tmp_path / 'pw.prototxt'
    path.write_text(SEGMENTER)
    net = prototxt.caffe_net(str(path), 'TEST', seed=7)
    net.save(str(tmp_path / 'good.caffemodel'))
    net.params['conv6_interp'][1].data[2] = np.nan
    net.save(str(tmp_path / 'nan.caffemodel'))
    with pytest.raises(InputError) as e:
        Segmenter(str(path), str(tmp_path / 'nan.caffemodel'), DeploySettings())
    assert str(e.value) == ("%s: layer 'conv6_interp': 1 of its 16 weights are NaN or infinite: the weights hold "
                            "non-finite values (a snapshot of a diverged training run?)"
                            % (tmp_path / 'nan.caffemodel'))
    (tmp_path / 'two.txt').write_text('road 255 255 255\nhouse 0 0 255\n')
    with pytest.raises(InputError) as e:
        Segmenter(str(path), str(tmp_path / 'good.caffemodel'), DeploySettings(),
                  palette=load_palette(str(tmp_path / 'two.txt')), palette_name=str(tmp_path / 'two.txt'))
    assert str(e.value) == ("num_classes is 4 (the net %s, its 'conv6_interp' blob) but the palette %s has 2 colours: "
                            "classes 2 to 3 would be painted black, the ignore colour" % (path, tmp_path / 'two.txt'))
    model = Segmenter(str(path), str(tmp_path / 'good.caffemodel'), DeploySettings(), palette=isprs_palette())
    assert model.probabilities(np.zeros((20, 20, 3), np.uint8), 16).shape == (4, 20, 20)


def test_detect_refuses_class_and_set_names_that_are_not_file_names_before_writing(tiny, tmp_path, capsys):
    """A class 'a/b' wrote comp4_det_test_a/b.txt (a folder a); --set-name
    '../x' failed only at the devkit files, after json/ and vis/ were written."""
    detect = ['detect'] + _teacher(tiny) + [str(tiny / 'images' / 'img000.png'), '--proposals', str(tiny / 'props'),
                                            '-o', str(tmp_path / 'o'), '-q']
    (tmp_path / 'slash.txt').write_text('c0\na/b\nc2\n')
    assert cli.main(detect + ['--classes', str(tmp_path / 'slash.txt')]) == 1
    assert capsys.readouterr().err == ('caffe-mlic detect: %s: class name 2 has "/", got "a/b" '
                                       '(class names name the devkit result files)\n' % (tmp_path / 'slash.txt'))
    for name in ('../x', 'a/b', '', ' '):
        assert cli.main(detect + ['--set-name', name]) == 2, name
        assert 'argument --set-name: set_name must be part of a file name' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()
    assert cli.main(detect + ['--set-name', 'val..2007']) == 0
    assert 'comp4_det_val..2007_class_0.txt' in os.listdir(tmp_path / 'o')


@pytest.mark.parametrize('arrays, fragment', [
    (dict(boxes=np.array([{}], dtype=object), scores=np.ones(1)),
     'holds object arrays (Python objects, read only with pickle), not numbers'),
    (dict(boxes=np.ones((3, 5)), scores=np.ones(3)), 'boxes must be (K, 4) and scores (K,), got (3, 5) and (3,)'),
    (dict(boxes=np.zeros((0, 4)), scores=np.zeros(0)), 'no proposals (0 boxes): need K >= 1'),
])
def test_detect_names_a_bad_proposal_file(tiny, tmp_path, capsys, arrays, fragment):
    """An object array was numpy's 'Object arrays cannot be loaded' traceback;
    a (3, 5) or empty file 'need K >= 1 proposals' without the file."""
    (tmp_path / 'props').mkdir()
    np.savez(str(tmp_path / 'props' / 'img000.npz'), **arrays)
    assert cli.main(['detect'] + _teacher(tiny) + [str(tiny / 'images' / 'img000.png'), '--proposals',
                                                   str(tmp_path / 'props'), '-o', str(tmp_path / 'o'), '-q']) == 1
    assert capsys.readouterr().err == 'caffe-mlic detect: %s: %s\n' % (tmp_path / 'props' / 'img000.npz', fragment)


@pytest.mark.parametrize('kind', ['folder', 'loop', 'fifo'])
def test_a_deploy_json_that_cannot_be_read_is_named_not_taken_for_absent(tmp_path, kind):
    """A deploy.json that was a folder or a link loop counted as absent:
    the release's preprocessing (input_scale 1) applied in silence to a net
    trained at 0.017, plausible wrong probabilities, exit 0."""
    from caffe_mlic.errors import InputError
    from caffe_mlic.inference.settings import load_settings
    net = tmp_path / 'deploy.prototxt'
    net.write_text('')
    settings = tmp_path / 'deploy.json'
    {'folder': lambda: settings.mkdir(), 'loop': lambda: settings.symlink_to(settings),
     'fifo': lambda: os.mkfifo(settings)}[kind]()
    with pytest.raises(InputError, match=r'deploy.json: cannot read'):
        load_settings(str(net))


def test_detect_refuses_a_proposals_folder_that_is_missing_or_not_a_folder(tiny, tmp_path, capsys):
    """`detect --proposals nosuchdir` (or /dev/null, or a file) was ignored in
    silence: every image got EdgeBoxes proposals instead, exit 0. Now one line
    naming the option and the path, before anything is written."""
    (tmp_path / 'a_file.npz').write_bytes(b'')
    detect = ['detect'] + _teacher(tiny) + [str(tiny / 'images' / 'img000.png'), '-o', str(tmp_path / 'o'), '-q']
    os.symlink('loop', str(tmp_path / 'loop'))     # (it was "no such folder": pass 45b M3)
    for path, why in ((str(tmp_path / 'nosuchdir'), 'no such folder'), ('', 'no such folder'),
                      (str(tmp_path / 'loop'), 'a symlink loop, not a folder'),
                      ('/dev/null', 'a device, not a folder'), (str(tmp_path / 'a_file.npz'), 'a file, not a folder')):
        assert cli.main(detect + ['--proposals', path]) == 2, path
        err = capsys.readouterr().err
        assert err.startswith('caffe-mlic detect: argument --proposals: %s: %s' % (path or "''", why)), err
        assert len(err.splitlines()) == 1
    assert not (tmp_path / 'o').exists()


def test_detect_says_which_images_its_proposals_folder_lacks(tiny, tmp_path, capsys):
    """An existing --proposals folder without some images' files: those get
    EdgeBoxes proposals (documented), with a line saying so on stderr; an
    entry there that is no file (a folder) is an error naming it, not
    replaced by EdgeBoxes in silence."""
    props = tmp_path / 'props'
    props.mkdir()
    (props / 'img001.npz').write_bytes((tiny / 'props' / 'img001.npz').read_bytes())
    images = [str(tiny / 'images' / n) for n in ('img000.png', 'img001.png')]
    detect = ['detect'] + _teacher(tiny) + images + ['--proposals', str(props), '-q']
    assert cli.main(detect + ['-o', str(tmp_path / 'o')]) == 0
    err = capsys.readouterr().err
    assert ('note: --proposals %s has no <stem>.npz for 1 of the 2 images (img000.png): they get EdgeBoxes '
            'proposals, saved in %s' % (props, tmp_path / 'o' / 'proposals')) in err, err
    assert os.listdir(tmp_path / 'o' / 'proposals') == ['img000.npz']
    (props / 'img000.npz').mkdir()
    assert cli.main(detect + ['-o', str(tmp_path / 'o2')]) == 1
    assert '%s: cannot read it' % (props / 'img000.npz') in capsys.readouterr().err


def test_detect_computes_its_cached_proposals_again_for_another_image_of_the_same_name(tiny, tmp_path):
    """OUT/proposals/<stem>.npz of an earlier image of the same name and size
    was reused: rc 0 and the other image's detections (pass 22 S3)."""
    first, second = photos(2)
    image = tmp_path / 'photo.png'
    detect = ['detect', '--net', _deploy(tiny, TEACHER), '--weights', str(tiny / 'teacher_iter_40.caffemodel'), '-q',
              str(image)]
    cv2.imwrite(str(image), first[:64, :80])
    assert cli.main(detect + ['-o', str(tmp_path / 'out')]) == 0
    cv2.imwrite(str(image), second[:64, :80])
    assert cli.main(detect + ['-o', str(tmp_path / 'out')]) == 0
    assert cli.main(detect + ['-o', str(tmp_path / 'fresh')]) == 0
    again, fresh = (json.loads((tmp_path / d / 'json' / 'photo.json').read_text()) for d in ('out', 'fresh'))
    assert again['detections'] == fresh['detections'] and again['scores'] == fresh['scores']
    assert (np.load(tmp_path / 'out' / 'proposals' / 'photo.npz')['boxes'] ==
            np.load(tmp_path / 'fresh' / 'proposals' / 'photo.npz')['boxes']).all()


@pytest.mark.parametrize('ext, shape, fitted', [('.jpg', (10, 70000), (9, 65500)), ('.webp', (20000, 30), (16383, 25)),
                                                ('.png', (10, 70000), (10, 70000))])
def test_a_picture_over_its_formats_largest_side_is_scaled_to_fit(tmp_path, ext, shape, fitted):
    """detect's boxes on a 70000 px wide image (under our bound) went to a
    JPEG, whose side libjpeg bounds at 65500: OpenCV threw (a traceback, or
    an abort where Caffe is loaded). Pictures are scaled down to fit."""
    from caffe_mlic.inference.draw import write_image
    image = np.full(shape + (3,), 90, np.uint8)
    path = write_image(str(tmp_path / ('wide' + ext)), image)
    assert cv2.imread(path).shape == fitted + (3,)
