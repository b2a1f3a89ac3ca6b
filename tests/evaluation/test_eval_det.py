"""VOC detection AP, CorLoc, NMS, devkit result files (hand-computed cases) and `caffe-mlic eval det`."""
import json
import os
import shutil
import sys

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.errors import InputError, RunError
from caffe_mlic.evaluation.detection import (COCO_METRICS, ClassDetections, box_iou, evaluate_coco,
                                             evaluate_detections, ground_truth, is_coco, nms,
                                             read_coco_results, read_gt_json, read_voc_results,
                                             result_file_name, write_voc_results)


def _dets(rows):
    """ClassDetections of [(image id, score, x1, y1, x2, y2)]."""
    return ClassDetections([r[0] for r in rows], np.array([r[1] for r in rows], float),
                           np.array([r[2:] for r in rows], float).reshape(-1, 4))


def test_iou_uses_the_plus_one_pixel_convention():
    # 10x10 box and its top half, 10x5: 50 / 100 (without +1: 36 / 81)
    assert box_iou([0, 0, 9, 9], [0, 0, 9, 4]) == 0.5
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 1.0
    assert box_iou([0, 0, 9, 9], [10, 0, 19, 9]) == 0.0
    assert box_iou(np.zeros((3, 1, 4)), np.zeros((1, 2, 4))).shape == (3, 2)


def test_nms_hand_computed():
    boxes = [[0, 0, 9, 9],      # 0: 0.9
             [1, 1, 10, 10],    # 1: 0.8, IoU with 0 = 81 / 119 > 0.5: dropped
             [20, 20, 29, 29],  # 2: 0.7, apart: kept
             [0, 0, 9, 9],      # 3: 0.9, ties with 0 and comes later: dropped by 0
             [0, 0, 4, 9]]      # 4: 0.95, IoU with 0 and 3 = 50 / 100, not > 0.5: keeps them
    scores = [0.9, 0.8, 0.7, 0.9, 0.95]
    assert nms(boxes, scores, 0.5).tolist() == [4, 0, 2]
    # the +1 convention decides: IoU 0.5 > 0.45 drops box 1 (0.444 without it would keep it)
    assert nms([[0, 0, 9, 9], [0, 0, 9, 4]], [0.9, 0.8], 0.45).tolist() == [0]
    assert nms(np.zeros((0, 4)), [], 0.5).tolist() == []


# Class 'cat': image a holds G1 [0,0,9,9], G2 [20,20,29,29] and a difficult box D [40,40,49,49];
# image b holds G3 [0,0,9,9]: 3 non-difficult boxes.
AP_GT = ground_truth(['cat', 'dog'], ['a', 'b'],
                     [[('cat', (0, 0, 9, 9), False), ('cat', (20, 20, 29, 29), False),
                       ('cat', (40, 40, 49, 49), True)],
                      [('cat', (0, 0, 9, 9), False), ('dog', (30, 30, 39, 39), True)]], 'test gt')
AP_DETS = {'cat': _dets([('a', 0.9, 0, 0, 9, 9),        # TP, matches G1
                         ('a', 0.8, 1, 1, 9, 9),        # best match G1 (IoU 0.81), taken: duplicate, FP
                         ('a', 0.7, 40, 40, 49, 49),    # best match difficult D: ignored
                         ('b', 0.6, 0, 0, 9, 9),        # TP, G3
                         ('b', 0.6, 50, 50, 59, 59)])}  # FP
# Counted: TP FP TP FP -> precision 1, 1/2, 2/3, 2/4; recall 1/3, 1/3, 2/3, 2/3.
# AP07: t = 0 .. 0.3 reach recall 1/3 (max precision 1), t = 0.4 .. 0.6 only 2/3 (max
#   precision 2/3), t = 0.7 .. 1 none: (4 * 1 + 3 * 2/3) / 11 = 6/11.
# AP (area): envelope 1 up to recall 1/3, 2/3 up to 2/3, then 0: 1/3 * 1 + 1/3 * 2/3 = 5/9.
# Counting D's detection as a FP would give 5.5 / 11 = 1/2 instead.


def test_both_ap_variants_hand_computed():
    result = evaluate_detections(AP_GT, AP_DETS)
    assert result['AP07_per_class'][0] == pytest.approx(100 * 6 / 11)
    assert result['AP_per_class'][0] == pytest.approx(100 * 5 / 9)
    # dog has only a difficult box: no AP, left out of the means
    assert result['AP07_per_class'][1] is None and result['AP_per_class'][1] is None
    assert result['AP07'] == pytest.approx(100 * 6 / 11) and result['AP'] == pytest.approx(100 * 5 / 9)
    assert result['classes'] == ['cat', 'dog']


def test_area_ap_takes_the_precision_envelope():
    # TP FP FP TP TP over 3 boxes: precision 1, 1/2, 1/3, 1/2, 3/5; recall 1/3, 1/3, 1/3, 2/3, 1.
    # The envelope is 1 up to recall 1/3, then 3/5 (the later, higher precision):
    #   AP = 1/3 * 1 + 2/3 * 3/5 = 11/15 (the raw precision at each recall step: 7/10).
    # AP07: t <= 0.3 -> 1 (4 points), t >= 0.4 -> 3/5 (7 points): (4 + 4.2) / 11 = 41/55.
    gt = ground_truth(['cat'], ['a'], [[('cat', (0, 0, 9, 9), False), ('cat', (20, 0, 29, 9), False),
                                        ('cat', (40, 0, 49, 9), False)]], 'test gt')
    dets = {'cat': _dets([('a', 0.9, 0, 0, 9, 9), ('a', 0.8, 60, 0, 69, 9), ('a', 0.7, 80, 0, 89, 9),
                          ('a', 0.6, 20, 0, 29, 9), ('a', 0.5, 40, 0, 49, 9)])}
    result = evaluate_detections(gt, dets)
    assert result['AP'] == pytest.approx(100 * 11 / 15)
    assert result['AP07'] == pytest.approx(100 * 41 / 55)


def test_ap_perfect_and_no_detections():
    perfect = {'cat': _dets([('a', 0.9, 0, 0, 9, 9), ('a', 0.8, 20, 20, 29, 29), ('b', 0.7, 0, 0, 9, 9)])}
    result = evaluate_detections(AP_GT, perfect)
    assert result['AP07_per_class'][0] == pytest.approx(100) and result['AP_per_class'][0] == pytest.approx(100)
    result = evaluate_detections(AP_GT, {})
    assert result['AP07_per_class'][0] == 0 and result['AP_per_class'][0] == 0
    assert result['CorLoc_per_class'] == [0.0, 0.0]


# CorLoc: image a holds a cat and a difficult dog, b only a difficult cat, c a cat, d nothing.
CORLOC_GT = ground_truth(['cat', 'dog'], ['a', 'b', 'c', 'd'],
                         [[('cat', (0, 0, 9, 9), False), ('dog', (50, 50, 69, 69), True)],
                          [('cat', (0, 0, 9, 9), True)],
                          [('cat', (0, 0, 9, 9), False)],
                          []], 'test gt')
CORLOC_DETS = {
    'cat': _dets([('a', 0.3, 0, 0, 9, 9),        # right, but not a's top cat detection
                  ('a', 0.8, 30, 30, 39, 39),    # a's top: wrong
                  ('b', 0.5, 0, 0, 9, 9),        # b's top: right, on a difficult box
                  ('d', 0.99, 0, 0, 9, 9)]),     # d has no cat: not counted; c has no detection: wrong
    'dog': _dets([('a', 0.4, 50, 50, 69, 69),    # right, on a difficult box
                  ('c', 0.9, 0, 0, 9, 9)])}      # c has no dog: not counted
# CorLoc cat = 1 of a, b, c = 1/3; dog = 1 of a = 1; mean 2/3.
# AP cat (2 non-difficult boxes): d FP, a(0.8) FP, b ignored (difficult), a(0.3) TP
#   -> precision 0, 0, 1/3, recall 0, 0, 1/2: AP07 = 6 points (t <= 0.5) x 1/3 / 11 = 2/11,
#   area = 1/2 x 1/3 = 1/6.


def test_corloc_counts_difficult_boxes_and_images_without_detection():
    result = evaluate_detections(CORLOC_GT, CORLOC_DETS)
    assert result['CorLoc_per_class'] == pytest.approx([100 / 3, 100])
    assert result['CorLoc'] == pytest.approx(100 * 2 / 3)
    assert result['AP07_per_class'][0] == pytest.approx(100 * 2 / 11)
    assert result['AP_per_class'][0] == pytest.approx(100 / 6)
    assert result['AP_per_class'][1] is None


def test_unknown_image_or_class_in_detections():
    with pytest.raises(InputError, match="image id 'zz' is not an image of test gt"):
        evaluate_detections(AP_GT, {'cat': _dets([('zz', 0.9, 0, 0, 9, 9)])})
    with pytest.raises(InputError, match="'cow', not a class of test gt"):
        evaluate_detections(AP_GT, {'cow': _dets([('a', 0.9, 0, 0, 9, 9)])})


# ------------------------------------------------------------------ result files

def test_result_files_round_trip_in_devkit_coordinates(tmp_path):
    paths = write_voc_results(str(tmp_path), 'test', AP_DETS, ['cat', 'dog'])
    assert [os.path.basename(p) for p in paths] == ['comp4_det_test_cat.txt', 'comp4_det_test_dog.txt']
    lines = (tmp_path / 'comp4_det_test_cat.txt').read_text().splitlines()
    assert lines[0] == 'a 0.9 1 1 10 10' and len(lines) == 5
    assert (tmp_path / 'comp4_det_test_dog.txt').read_text() == ''
    back = read_voc_results(str(tmp_path), 'test', ['cat', 'dog'], ['a', 'b'])
    assert back['cat'].image_ids == AP_DETS['cat'].image_ids
    np.testing.assert_array_equal(back['cat'].boxes, AP_DETS['cat'].boxes)
    np.testing.assert_array_equal(back['cat'].scores, AP_DETS['cat'].scores)
    assert len(back['dog'].scores) == 0 and back['dog'].boxes.shape == (0, 4)
    with pytest.raises(InputError, match='has whitespace'):
        write_voc_results(str(tmp_path), 'test', {'cat': _dets([('a b', 0.9, 0, 0, 9, 9)])}, ['cat'])


def test_malformed_result_lines_are_reported_with_file_and_line(tmp_path):
    path = tmp_path / result_file_name('test', 'cat')
    path.write_text('a 0.9 1 1 10 10\n'          # 1: fine
                    'a 0.9 1 1 10\n'             # 2: five fields
                    'a high 1 1 10 10\n'         # 3: not a number
                    '\n'                         # 4: blank, skipped
                    'a nan 1 1 10 10\n'          # 5: NaN
                    'b 0.5 10 1 5 10\n'          # 6: x2 < x1
                    'zz 0.5 1 1 10 10\n')        # 7: unknown image
    with pytest.raises(InputError) as err:
        read_voc_results(str(tmp_path), 'test', ['cat', 'dog'], ['a', 'b'])
    text = str(err.value)
    assert text.splitlines()[0].startswith('6 problems in detection results')
    for needle in ('%s:2: expected 6 fields (image_id score x1 y1 x2 y2), got 5' % path,
                   "%s:3: score: 'high' is not a number" % path,
                   "%s:5: score: 'nan' is not a finite number" % path,
                   '%s:6: x2 = 5 < x1 = 10' % path,
                   "%s:7: image_id: 'zz' is not an image of the ground truth" % path,
                   "%s: no result file for class 'dog'" % (tmp_path / 'comp4_det_test_dog.txt')):
        assert needle in text, text
    assert ':1:' not in text and ':4:' not in text


def test_result_numbers_with_underscores_foreign_classes_and_a_bom(tmp_path):
    """float() read the coordinate '1_0' as 10; a result file of a class not
    in the class list (comp4_det_test_bird.txt) was ignored silently; a file
    starting with a UTF-8 BOM gave "image_id: '\\ufeffa' is not an image"."""
    cat = tmp_path / result_file_name('test', 'cat')
    cat.write_text('a 0.9 1 1 1_0 10\nb 0.5 1 1 10 \uff11\uff10\n', encoding='utf-8')
    (tmp_path / result_file_name('test', 'dog')).write_text('')
    (tmp_path / result_file_name('test', 'bird')).write_text('a 0.9 1 1 10 10\n')
    (tmp_path / result_file_name('val', 'bird')).write_text('')            # another set: not ours
    (tmp_path / result_file_name('test_2', 'dog')).write_text('')          # another set, a known class
    with pytest.raises(InputError) as err:
        read_voc_results(str(tmp_path), 'test', ['cat', 'dog'], ['a', 'b'])
    text = str(err.value)
    assert text.splitlines()[0].startswith('3 problems in detection results'), text
    assert "%s:1: x2: '1_0' is not a number (digit separators '_' are not allowed)" % cat in text
    assert "%s:2: y2: '\uff11\uff10' is not a number" % cat in text
    assert ("%s: results of class 'bird', which is not in the class list (cat, dog)"
            % (tmp_path / 'comp4_det_test_bird.txt')) in text
    assert 'val_bird' not in text and 'test_2' not in text
    os.remove(str(tmp_path / result_file_name('test', 'bird')))
    cat.write_bytes(b'\xef\xbb\xbfa 0.9 1 1 10 10\nb 0.5 1e1 1 1.5E+1 10\n')
    back = read_voc_results(str(tmp_path), 'test', ['cat', 'dog'], ['a', 'b'])
    assert back['cat'].image_ids == ['a', 'b']
    np.testing.assert_array_equal(back['cat'].boxes, [[0, 0, 9, 9], [9, 0, 14, 9]])


# ------------------------------------------------------------------ ground truth files and the command

def _write_gt_json(path, gt):
    images = [{'path': 'images/%s.jpg' % image_id, 'file': '/x/%s.jpg' % image_id, 'width': 100,
               'height': 100, 'labels': [],
               'objects': [{'class': gt.classes[c], 'box': list(map(float, box)), 'difficult': bool(d)}
                           for i2, c, box, d in zip(gt.image, gt.label, gt.boxes, gt.difficult) if i2 == i]}
              for i, image_id in enumerate(gt.image_ids)]
    path.write_text(json.dumps({'classes': gt.classes, 'size': [64, 64], 'images': images}))
    return str(path)


def test_gt_json_reader(tmp_path):
    gt = read_gt_json(_write_gt_json(tmp_path / 'gt.json', CORLOC_GT))
    assert gt.image_ids == ['a', 'b', 'c', 'd'] and gt.classes == ['cat', 'dog']
    np.testing.assert_array_equal(gt.difficult, CORLOC_GT.difficult)
    np.testing.assert_array_equal(gt.boxes, CORLOC_GT.boxes)
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps({'classes': ['cat'], 'images': [
        {'path': 'x/a.jpg', 'objects': [{'class': 'cow', 'box': [0, 0, 1, 1]}]},
        {'path': 'y/a.png', 'objects': []},
        {'path': 'b.jpg', 'objects': [{'class': 'cat', 'box': [5, 0, 1, 1]}]}]}))
    with pytest.raises(InputError) as err:
        read_gt_json(str(bad))
    text = str(err.value)
    assert 'images[0].objects[0]: needs a "class" from "classes"' in text
    assert "images[1]: image id 'a' (the file stem of \"path\") repeats images[0]" in text
    assert 'images[2].objects[0]: "box" must be [x1, y1, x2, y2]' in text


@pytest.mark.parametrize('value', ['no', 1, None])
def test_gt_json_difficult_must_be_true_or_false(tmp_path, value):
    """"difficult": "no" counted as difficult (bool of a non-empty string), so
    AP became n/a in silence."""
    data = json.loads(open(_write_gt_json(tmp_path / 'gt.json', CORLOC_GT)).read())
    data['images'][2]['objects'][0]['difficult'] = value
    (tmp_path / 'gt.json').write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        read_gt_json(str(tmp_path / 'gt.json'))
    assert str(err.value).splitlines()[1:] == ['  %s: images[2].objects[0]: "difficult" must be true or '
                                               'false, got %s' % (tmp_path / 'gt.json', json.dumps(value))]


@pytest.mark.parametrize('change, message', [
    # a box beyond the image and "width": 0 were scored (datalist build refuses such boxes)
    (dict(box=[20.0, 20.0, 100.0, 29.0]), 'images[0].objects[1]: "box" [20.0, 20.0, 100.0, 29.0] is not '
                                          'inside the 100x100 image'),
    (dict(box=[-1, 20.0, 29.0, 29.0]), 'images[0].objects[1]: "box" [-1, 20.0, 29.0, 29.0] is not inside'),
    (dict(width=0), 'images[0]: "width" and "height" must be positive integers, got 0 and 100'),
    (dict(width='100'), 'images[0]: "width" and "height" must be positive integers, got "100" and 100'),
])
def test_gt_json_boxes_must_lie_in_the_image(tmp_path, change, message):
    data = json.loads(open(_write_gt_json(tmp_path / 'gt.json', CORLOC_GT)).read())
    if 'box' in change:
        data['images'][0]['objects'][1]['box'] = change['box']
    else:
        data['images'][0].update(change)
    (tmp_path / 'gt.json').write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        read_gt_json(str(tmp_path / 'gt.json'))
    lines = str(err.value).splitlines()
    assert len(lines) == 2 and lines[1].startswith('  %s: %s' % (tmp_path / 'gt.json', message)), lines


def _write_voc(root, gt):
    """A VOC folder of gt's images (black 100x100 JPEGs), set 'test'."""
    for sub in ('Annotations', 'ImageSets/Main', 'JPEGImages'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for i, image_id in enumerate(gt.image_ids):
        cv2.imwrite(os.path.join(root, 'JPEGImages', image_id + '.jpg'), np.zeros((100, 100, 3), np.uint8))
        objects = ''.join(
            '<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin>'
            '<xmax>%d</xmax><ymax>%d</ymax></bndbox></object>'
            % ((gt.classes[c], d) + tuple(int(v) + 1 for v in box))
            for i2, c, box, d in zip(gt.image, gt.label, gt.boxes, gt.difficult) if i2 == i)
        with open(os.path.join(root, 'Annotations', image_id + '.xml'), 'w') as f:
            f.write('<annotation><filename>%s.jpg</filename><size><width>100</width><height>100</height>'
                    '<depth>3</depth></size>%s</annotation>' % (image_id, objects))
    with open(os.path.join(root, 'ImageSets', 'Main', 'test.txt'), 'w') as f:
        f.write(''.join(i + '\n' for i in gt.image_ids))
    with open(os.path.join(root, 'classes.txt'), 'w') as f:
        f.write(''.join(c + '\n' for c in gt.classes))
    return root


EXPECTED_CORLOC_RUN = {'AP07': 100 * 2 / 11, 'AP': 100 / 6, 'CorLoc': 100 * 2 / 3}


@pytest.mark.parametrize('source', ['voc', 'gt'])
def test_cli_det_end_to_end(tmp_path, capsys, source):
    results = tmp_path / 'results'
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    if source == 'voc':
        argv = ['--voc', _write_voc(str(tmp_path / 'VOC'), CORLOC_GT), '--set', 'test']
    else:  # the set is the one the result files name
        argv = ['--gt', _write_gt_json(tmp_path / 'gt.json', CORLOC_GT)]
    out_json = tmp_path / 'det.json'
    assert cli.main(['eval', 'det'] + argv + ['--results', str(results), '--json', str(out_json)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == 'AP07 18.2 %, AP 16.7 %, CorLoc 66.7 % over 4 images'
    assert out[1].split() == ['cat', '18.2', '16.7', '33.3'] and out[2].split() == ['dog', 'n/a', 'n/a', '100.0']
    saved = json.loads(out_json.read_text())
    for key, value in EXPECTED_CORLOC_RUN.items():
        assert saved[key] == pytest.approx(value), key
    assert saved['AP_per_class'][1] is None and saved['classes'] == ['cat', 'dog']
    assert saved['CorLoc_per_class'] == pytest.approx([100 / 3, 100])
    assert set(saved) == {'AP07', 'AP', 'CorLoc', 'AP07_per_class', 'AP_per_class', 'CorLoc_per_class',
                          'classes'}


@pytest.mark.parametrize('argv, needle', [
    (['--results', 'r'], 'give exactly one of --voc ROOT'),
    (['--voc', 'v', '--gt', 'g.json', '--results', 'r'], 'give exactly one of --voc ROOT'),
    (['--voc', 'v', '--results', 'r'], '--voc needs --set'),
    (['--gt', 'g.json', '--classes', 'c.txt', '--results', 'r'], '--classes goes with --voc'),
    (['--gt', 'g.json'], 'the following arguments are required: --results'),
])
def test_cli_det_bad_arguments_exit_2(capsys, argv, needle):
    assert cli.main(['eval', 'det'] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic eval det: ') and needle in err, err


def test_cli_det_bad_input_files_exit_1(tmp_path, capsys):
    gt_json = _write_gt_json(tmp_path / 'gt.json', CORLOC_GT)
    results = tmp_path / 'results'
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    with open(results / 'comp4_det_test_dog.txt', 'a') as f:
        f.write('c 0.5 1 1 10\n')
    argv = ['eval', 'det', '--gt', gt_json, '--results', str(results)]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        'caffe-mlic eval det: 1 problem in detection results %s:' % (results / 'comp4_det_test_dog.txt'),
        '  %s:3: expected 6 fields (image_id score x1 y1 x2 y2), got 5' % (results / 'comp4_det_test_dog.txt')]
    assert cli.main(['eval', 'det', '--gt', gt_json, '--results', str(tmp_path / 'none')]) == 1
    assert 'none does not exist: give the results folder or a COCO results file' in capsys.readouterr().err
    # a device, FIFO or loop was "not found" too (pass 44b M1)
    os.mkfifo(str(tmp_path / 'fifo'))
    for path, kind in (('/dev/null', 'a device'), (str(tmp_path / 'fifo'), 'a FIFO')):
        assert cli.main(['eval', 'det', '--gt', gt_json, '--results', path]) == 1
        assert capsys.readouterr().err == ('caffe-mlic eval det: %s is %s: give the results folder or a COCO '
                                           'results file\n' % (path, kind))
    assert cli.main(['eval', 'det', '--gt', str(tmp_path / 'no.json'), '--results', str(results)]) == 1
    assert 'no.json: cannot read the ground truth' in capsys.readouterr().err
    # result files of two sets: --set must say which
    write_voc_results(str(results), 'val', CORLOC_DETS, CORLOC_GT.classes)
    assert cli.main(argv) == 2
    assert 'argument --set: %s holds result files of several image sets (test, val)' % results \
        in capsys.readouterr().err
    assert cli.main(argv + ['--set', 'val', '--json', str(tmp_path / 'o.json')]) == 0
    assert json.loads((tmp_path / 'o.json').read_text())['CorLoc'] == pytest.approx(100 * 2 / 3)


def test_boxes_beyond_any_image_are_refused_without_overflow_warnings(tmp_path, capsys):
    """A box at 1e308 made box_iou overflow (RuntimeWarning, then a NaN IoU
    counted as a miss); coordinates beyond 2^31 px, which no image has, are
    refused naming the file, line and field."""
    import warnings
    gt_json = _write_gt_json(tmp_path / 'gt.json', CORLOC_GT)
    results = tmp_path / 'results'
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    cat = results / 'comp4_det_test_cat.txt'
    n = len(cat.read_text().splitlines())
    with open(cat, 'a') as f:
        f.write('a 0.95 1 1 1e308 10\nb 0.9 -2147483649 1 10 10\nb 0.8 -2147483648 1 2147483648 10\n')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert cli.main(['eval', 'det', '--gt', gt_json, '--results', str(results)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        'caffe-mlic eval det: 2 problems in detection results %s:' % cat,
        "  %s:%d: x2: '1e308' is not a pixel coordinate (beyond +-2^31)" % (cat, n + 1),
        "  %s:%d: x1: '-2147483649' is not a pixel coordinate (beyond +-2^31)" % (cat, n + 2)]

    bad = json.loads(open(gt_json).read())
    bad['images'][0]['objects'][0]['box'] = [0, 0, 1e308, 9]
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    with pytest.raises(InputError, match=r'images\[0\]\.objects\[0\]: "box" must be \[x1, y1, x2, y2\] in '
                                         r'pixels \(within \+-2\^31\)'):
        read_gt_json(str(tmp_path / 'bad.json'))


# ------------------------------------------------------------------ COCO metrics (issue 24)

# A COCO set: three images, categories in no particular order, boxes of each area range
# (small < 32^2 <= medium <= 96^2 < large), one crowd region, area = w * h. Every
# coordinate is dyadic, so our inclusive boxes give back these [x, y, w, h] exactly.
COCO_IMAGES = [(101, 'i101.png', 320, 240), (205, 'i205.png', 200, 160), (37, 'i037.png', 160, 120)]
COCO_CATEGORIES = [{'id': 7, 'name': 'car'}, {'id': 3, 'name': 'person'}, {'id': 11, 'name': 'dog'}]
COCO_BOXES = [  # image id, category id, bbox, iscrowd
    (101, 3, [10, 20, 120, 150], 0), (101, 3, [200, 30, 40, 50], 0), (101, 7, [150, 180, 20, 12], 0),
    (205, 3, [5, 5, 12.5, 30], 0), (101, 7, [250, 100, 60.5, 40], 0), (205, 11, [40, 40, 100, 100], 0),
    (205, 7, [150, 10, 40, 30], 1), (37, 11, [20, 10, 30, 40], 0), (37, 3, [100, 60, 8, 8], 0)]
COCO_DETECTIONS = [  # image id, category id, bbox, score
    (101, 3, [12, 22, 118, 146], 0.9), (101, 3, [200, 30, 40, 50], 0.8), (101, 3, [205, 35, 40, 50], 0.75),
    (101, 3, [0, 0, 30, 30], 0.3), (205, 3, [6, 6, 12, 28], 0.6), (37, 3, [101, 61, 8, 8], 0.5),
    (37, 3, [100, 60, 8, 8], 0.5), (101, 7, [150, 180, 20, 12], 0.7), (101, 7, [255, 102, 55, 36], 0.65),
    (101, 7, [300, 200, 10, 10], 0.2), (205, 7, [150, 10, 40, 30], 0.55), (205, 11, [45, 45, 90, 95], 0.85),
    (37, 11, [20, 10, 30, 40], 0.4), (37, 11, [60, 60, 20, 20], 0.45), (37, 11, [21, 12, 28.5, 36], 0.45)]


@pytest.fixture
def coco_set(tmp_path):
    """The COCO files (instances.json, results.json) and the gt.json `datalist
    build --coco` makes of them, with a class file holding 'bike', which is
    no COCO category."""
    os.makedirs(tmp_path / 'images')
    for _, name, w, h in COCO_IMAGES:
        cv2.imwrite(str(tmp_path / 'images' / name), np.zeros((h, w), np.uint8))
    instances = {'info': {'description': 'test'},
                 'images': [{'id': i, 'file_name': n, 'width': w, 'height': h} for i, n, w, h in COCO_IMAGES],
                 'categories': COCO_CATEGORIES,
                 'annotations': [{'id': k + 1, 'image_id': i, 'category_id': c, 'bbox': b, 'iscrowd': crowd,
                                  'area': b[2] * b[3]} for k, (i, c, b, crowd) in enumerate(COCO_BOXES)]}
    (tmp_path / 'instances.json').write_text(json.dumps(instances))
    (tmp_path / 'results.json').write_text(json.dumps(
        [{'image_id': i, 'category_id': c, 'bbox': b, 'score': s} for i, c, b, s in COCO_DETECTIONS]))
    (tmp_path / 'classes.txt').write_text('person\nbike\ncar\ndog\n')
    assert cli.main(['datalist', 'build', '--coco', str(tmp_path / 'instances.json'), '--images',
                     str(tmp_path / 'images'), '--whole-image', '--classes', str(tmp_path / 'classes.txt'),
                     '-o', str(tmp_path / 'dl.txt')]) == 0
    return tmp_path


def _cocoeval_directly(root):
    """COCOeval's stats on the COCO files themselves, in percent, None for -1."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    coco_gt = COCO(str(root / 'instances.json'))
    evaluator = COCOeval(coco_gt, coco_gt.loadRes(str(root / 'results.json')), 'bbox')
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return {k: None if v == -1 else 100 * v for k, v in zip(COCO_METRICS, evaluator.stats)}


def test_coco_results_beyond_any_image_are_refused(coco_set):
    gt = read_gt_json(str(coco_set / 'dl.gt.json'))
    (coco_set / 'huge.json').write_text(json.dumps(
        [{'image_id': 101, 'category_id': 3, 'bbox': [0, 0, 1e308, 1e308], 'score': 0.5}]))
    with pytest.raises(InputError) as e:
        read_coco_results(str(coco_set / 'huge.json'), gt)
    assert str(e.value).splitlines()[1] == ('  %s: results[0]: "bbox" [0, 0, 1e+308, 1e+308] is not in '
                                            'pixels (a number beyond +-2^31)' % (coco_set / 'huge.json'))


def test_coco_metrics_are_cocoeval_on_the_coco_files(coco_set, capsys):
    expected = _cocoeval_directly(coco_set)
    assert 0 < expected['AP'] < 100 and None not in expected.values()   # every range has boxes
    gt = read_gt_json(str(coco_set / 'dl.gt.json'))
    assert is_coco(gt)
    detections = read_coco_results(str(coco_set / 'results.json'), gt)
    ours = evaluate_coco(gt, detections)
    assert ours.pop('classes') == ['person', 'car', 'dog']     # bike has no category
    assert ours == expected                                     # exactly, all twelve
    # the same detections from devkit files, with detections of bike, which COCO leaves out
    detections['bike'] = _dets([('i101', 0.99, 0, 0, 9, 9)])
    write_voc_results(str(coco_set / 'devkit'), 'test', detections, gt.classes)
    capsys.readouterr()
    for results in (coco_set / 'results.json', coco_set / 'devkit'):
        out_json = coco_set / 'det.json'
        assert cli.main(['eval', 'det', '--gt', str(coco_set / 'dl.gt.json'), '--results', str(results),
                         '--json', str(out_json)]) == 0
        saved = json.loads(out_json.read_text())['COCO']
        assert saved.pop('classes') == ['person', 'car', 'dog'] and saved == expected, results
        out = capsys.readouterr().out.splitlines()
        assert out[-3] == 'COCO (pycocotools, bbox) over 3 categories:'
        assert out[-2] == '  AP %.1f %% (IoU .50:.95), AP50 %.1f, AP75 %.1f, small %.1f, medium %.1f, large %.1f' \
            % tuple(expected[k] for k in COCO_METRICS[:6])
        assert out[-1].startswith('  AR %.1f %% (100 per image), AR1 %.1f' % (expected['AR100'], expected['AR1']))


def test_coco_metrics_without_detections(coco_set):
    gt = read_gt_json(str(coco_set / 'dl.gt.json'))
    result = evaluate_coco(gt, {})     # pycocotools' loadRes cannot take none
    assert {result[k] for k in COCO_METRICS} == {0.0}


def test_no_coco_metrics_for_a_ground_truth_not_from_coco(tmp_path, capsys):
    assert not is_coco(CORLOC_GT)
    results = tmp_path / 'results'
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    assert cli.main(['eval', 'det', '--gt', _write_gt_json(tmp_path / 'gt.json', CORLOC_GT), '--results',
                     str(results)]) == 0
    assert 'COCO' not in capsys.readouterr().out


def test_coco_metrics_without_pycocotools_say_how_to_install_it(coco_set, monkeypatch, capsys):
    for name in ('pycocotools', 'pycocotools.coco', 'pycocotools.cocoeval'):
        monkeypatch.setitem(sys.modules, name, None)     # `import` now fails as if not installed
    gt = read_gt_json(str(coco_set / 'dl.gt.json'))
    with pytest.raises(RunError, match=r'COCO metrics need pycocotools, which does not import \(.*\): '
                                       r'run `make install`'):
        evaluate_coco(gt, {})
    capsys.readouterr()
    out_json = coco_set / 'det.json'
    assert cli.main(['eval', 'det', '--gt', str(coco_set / 'dl.gt.json'), '--results',
                     str(coco_set / 'results.json'), '--json', str(out_json)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic eval det: COCO metrics need pycocotools') and err.count('\n') == 1, err
    assert 'run `make install`' in err and not out_json.exists()


# ------------------------------------------------------------------ VOC: only Annotations/ and ImageSets/

def _eval_voc(root, results, capsys):
    code = cli.main(['eval', 'det', '--voc', root, '--set', 'test', '--results', str(results)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_voc_needs_only_annotations_and_image_sets(tmp_path, capsys):
    results = tmp_path / 'results'
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    root = _write_voc(str(tmp_path / 'VOC'), CORLOC_GT)
    code, with_images, err = _eval_voc(root, results, capsys)
    assert code == 0, err
    shutil.rmtree(os.path.join(root, 'JPEGImages'))
    code, without, err = _eval_voc(root, results, capsys)
    assert code == 0, err
    assert without == with_images and without.splitlines()[-1].startswith('AP07 18.2 %, AP 16.7 %')


def test_voc_without_size_reads_the_image_else_names_the_file_and_field(tmp_path, capsys):
    results = tmp_path / 'results'
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    root = _write_voc(str(tmp_path / 'VOC'), CORLOC_GT)
    xml = os.path.join(root, 'Annotations', 'b.xml')
    with open(xml) as f:
        text = f.read()
    with open(xml, 'w') as f:
        f.write(text.replace('<size><width>100</width><height>100</height><depth>3</depth></size>', ''))
    code, out, err = _eval_voc(root, results, capsys)      # the size of JPEGImages/b.jpg
    assert code == 0, err
    assert out.splitlines()[-1].startswith('AP07 18.2 %, AP 16.7 %, CorLoc 66.7 %')
    shutil.rmtree(os.path.join(root, 'JPEGImages'))
    code, out, err = _eval_voc(root, results, capsys)
    assert code == 1
    assert err == 'caffe-mlic eval det: %s: <size>: missing, and no image to read the size from (%s not found)\n' \
        % (xml, os.path.join(root, 'JPEGImages', 'b.jpg'))


def test_voc_missing_files_are_counted_per_folder(tmp_path, capsys):
    results = tmp_path / 'results'
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    root = _write_voc(str(tmp_path / 'VOC'), CORLOC_GT)
    set_file = os.path.join(root, 'ImageSets', 'Main', 'test.txt')
    with open(set_file, 'a') as f:
        f.write(''.join('%06d\n' % k for k in range(1, 41)))
    code, _, err = _eval_voc(root, results, capsys)
    assert code == 1
    assert err == ('caffe-mlic eval det: %s: 40 annotation files missing (of the 44 that %s lists), '
                   'e.g. 000001.xml, 000002.xml, 000003.xml ...\n' % (os.path.join(root, 'Annotations'), set_file))
    # with another problem: one line each, the missing ones still counted on one
    with open(set_file, 'w') as f:
        f.write('a\nb\nc\nd\n000001\n000002\n')
    for name in ('a', 'b', 'c'):
        xml = os.path.join(root, 'Annotations', name + '.xml')
        with open(xml) as f:
            text = f.read()
        with open(xml, 'w') as f:
            f.write(text.replace('<size><width>100</width><height>100</height><depth>3</depth></size>', ''))
    shutil.rmtree(os.path.join(root, 'JPEGImages'))
    code, _, err = _eval_voc(root, results, capsys)
    lines = err.splitlines()
    assert code == 1 and len(lines) == 3, err
    assert lines[0].startswith('caffe-mlic eval det: 2 problems in annotations')
    assert lines[1] == '  %s: 2 annotation files missing (of the 6 that %s lists), e.g. 000001.xml, 000002.xml' \
        % (os.path.join(root, 'Annotations'), set_file)
    assert lines[2] == '  %s: 3 annotation files have no <size> and no image in %s to read it from, e.g. ' \
        'a.xml, b.xml, c.xml' % (os.path.join(root, 'Annotations'), os.path.join(root, 'JPEGImages'))


# ------------------------------------------------------------------ outputs never replace inputs

def test_det_outputs_that_name_an_input_are_refused(coco_set, tmp_path, capsys):
    voc_results = tmp_path / 'voc_results'
    write_voc_results(str(voc_results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    root = _write_voc(str(tmp_path / 'VOC'), CORLOC_GT)
    gt_json, coco_results = str(coco_set / 'dl.gt.json'), str(coco_set / 'results.json')
    voc = ['--voc', root, '--set', 'test', '--results', str(voc_results)]
    cases = [
        (['--gt', gt_json, '--results', coco_results, '--json', gt_json], '--json', gt_json),
        (['--gt', gt_json, '--results', coco_results, '--save-coco', coco_results], '--save-coco', coco_results),
        (voc + ['--json', str(voc_results / 'comp4_det_test_cat.txt')], '--json',
         str(voc_results / 'comp4_det_test_cat.txt')),
        (voc + ['--json', os.path.join(root, 'Annotations', 'a.xml')], '--json',
         os.path.join(root, 'Annotations', 'a.xml')),
        (voc + ['--json', os.path.join(root, 'ImageSets', 'Main', 'test.txt')], '--json',
         os.path.join(root, 'ImageSets', 'Main', 'test.txt')),
        (voc + ['--json', os.path.join(root, 'classes.txt')], '--json', os.path.join(root, 'classes.txt')),
    ]
    for argv, flag, path in cases:
        before = open(path, 'rb').read()
        assert cli.main(['eval', 'det'] + argv) == 2, argv
        err = capsys.readouterr().err
        assert err == 'caffe-mlic eval det: argument %s: %s is an input of this command: writing it would ' \
            'overwrite it; choose another output path\n' % (flag, path), err
        assert open(path, 'rb').read() == before
    # nor into the results folder, read as a whole (a name like a result file made the next eval fail,
    # pass 23 M8)
    for name in ('det.json', 'comp4_det_test_bogus.txt'):
        assert cli.main(['eval', 'det'] + voc + ['--json', str(voc_results / name)]) == 2
        assert 'argument --json: %s would be written into %s, a folder eval reads as a whole' % (
            voc_results / name, voc_results) in capsys.readouterr().err
    assert not (voc_results / 'det.json').exists()
    assert cli.main(['eval', 'det'] + voc + ['--json', str(tmp_path / 'det.json')]) == 0
    out = str(tmp_path / 'same.json')
    assert cli.main(['eval', 'det'] + voc + ['--json', out, '--save-coco', out]) == 2
    assert 'argument --save-coco: %s is also the output of another option' % out in capsys.readouterr().err


def test_voc_xml_whose_root_is_not_annotation_is_refused(tmp_path, capsys):
    """`<foo/>` (or an error page saved as .xml) was read as an image with
    no objects: its ground truth dropped out of AP in silence (pass 31 S5)."""
    results = tmp_path / 'results'
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    root = _write_voc(str(tmp_path / 'VOC'), CORLOC_GT)
    xml = os.path.join(root, 'Annotations', 'b.xml')
    for text, tag in (('<foo/>', 'foo'), ('<a>' * 5000 + '</a>' * 5000, 'a')):
        with open(xml, 'w') as f:
            f.write(text)
        code, _, err = _eval_voc(root, results, capsys)
        assert code == 1 and err == ('caffe-mlic eval det: %s: its root element is <%s>, not <annotation>: not a '
                                     'VOC annotation\n' % (xml, tag)), err


def _eval_voc_in_child(root, results):
    import subprocess
    done = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'eval', 'det', '--voc', root, '--set', 'test',
                           '--results', str(results)], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr


def test_a_result_file_or_annotation_that_is_a_fifo_is_an_error_not_a_hang(tmp_path):
    """A comp4_det_<set>_<class>.txt or an Annotations/<id>.xml that is a
    FIFO was opened with a plain open(): `eval det` hung. Each is now an
    error naming the file as not a regular file."""
    results = tmp_path / 'results'
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    root = _write_voc(str(tmp_path / 'VOC'), CORLOC_GT)
    result = results / os.listdir(str(results))[0]
    result.unlink()
    os.mkfifo(str(result))
    code, err = _eval_voc_in_child(root, results)
    assert code == 1 and '%s: cannot read: not a regular file (a device, FIFO or folder)' % result in err, err
    result.unlink()
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    xml = os.path.join(root, 'Annotations', 'b.xml')
    os.unlink(xml)
    os.mkfifo(xml)
    code, err = _eval_voc_in_child(root, results)
    assert code == 1 and err == ('caffe-mlic eval det: %s: cannot read: not a regular file (a device, FIFO or '
                                 'folder)\n' % xml), err


@pytest.mark.parametrize('kind', ['folder', 'fifo', 'dangling link'])
def test_a_classes_txt_that_is_no_regular_file_is_an_error_not_the_voc_classes(tmp_path, capsys, kind):
    """A VOC ROOT/classes.txt that was a folder, a FIFO or a broken link was
    passed over in silence, and the 20 Pascal VOC classes used instead."""
    results = tmp_path / 'results'
    write_voc_results(str(results), 'test', CORLOC_DETS, CORLOC_GT.classes)
    root = _write_voc(str(tmp_path / 'VOC'), CORLOC_GT)
    own = os.path.join(root, 'classes.txt')
    os.unlink(own)
    {'folder': os.mkdir, 'fifo': os.mkfifo, 'dangling link': lambda p: os.symlink('gone.txt', p)}[kind](own)
    code, _, err = _eval_voc(root, results, capsys)
    assert code == 1 and err.startswith('caffe-mlic eval det: %s: cannot read class list: ' % own), err
    assert len(err.strip().splitlines()) == 1
