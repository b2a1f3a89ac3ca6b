"""eval seg's detail metrics (issue 25), on hand-computed tiny maps: the
distance to the nearest cue and hard pixels (labelmaps), hard-pixel
accuracy, accuracy by distance, boundary F1 and object recall
(segmentation.DetailMetrics), their bad inputs, and `caffe-mlic eval seg`
writing and printing them."""
import json
import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.data.labelmaps import IGNORE_LABEL, distance_to_cue, hard_pixel_mask, write_label_png
from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.evaluation import segmentation
from caffe_mlic.evaluation.segmentation import (DetailMetrics, SegmentationEvaluator, boundary_counts,
                                                boundary_mask, boundary_scores, class_names, evaluate_dirs,
                                                object_counts)

ISPRS = class_names('isprs', 6)     # impervious_surfaces, building, low_vegetation, tree, car, clutter
CAR = 4


# ---------------------------------------------------------------- distance to the cue, hard pixels


def test_distance_to_cue_is_the_distance_to_the_nearest_other_label():
    a = np.zeros((3, 6), np.uint8)
    a[:, 4:] = 1
    # cols 0-3 are 4, 3, 2, 1 px from col 4; cols 4, 5 are 1, 2 px from col 3
    assert distance_to_cue(a).tolist() == [[4, 3, 2, 1, 1, 2]] * 3
    b = np.zeros((5, 5), np.uint8)
    b[2, 2] = 1
    d = distance_to_cue(b)
    assert d.dtype == np.float32
    assert d[2, 2] == 1 and d[2, 0] == 2 and d[1, 1] == pytest.approx(math.sqrt(2))
    assert d[0, 0] == pytest.approx(math.sqrt(8)) and d[0, 1] == pytest.approx(math.sqrt(5))
    # IGNORE_LABEL is another label; the image border is not a cue; one label: inf
    c = np.zeros((1, 5), np.uint8)
    c[0, 4] = IGNORE_LABEL
    assert distance_to_cue(c).tolist() == [[4, 3, 2, 1, 1]]
    assert np.isinf(distance_to_cue(np.full((4, 4), 3, np.uint8))).all()


def test_hard_pixel_mask_a_disc_of_radius_d_holds_one_label():
    a = np.zeros((3, 6), np.uint8)
    a[:, 4:] = 1
    # distances 4 3 2 1 | 1 2: > 2 are cols 0, 1; > 1 also col 2 and col 5
    assert hard_pixel_mask(a, 2)[0].tolist() == [True, True, False, False, False, False]
    assert hard_pixel_mask(a, 1)[0].tolist() == [True, True, True, False, False, True]
    assert hard_pixel_mask(a, 1, classes=[1])[0].tolist() == [False] * 5 + [True]
    d = distance_to_cue(a)
    assert (hard_pixel_mask(a, 1, cue_distance=d) == hard_pixel_mask(a, 1)).all()
    ignored = a.copy()
    ignored[:, 0] = IGNORE_LABEL          # never hard, though far from class 1
    assert not hard_pixel_mask(ignored, 0)[:, 0].any()


# ---------------------------------------------------------------- hard pixels and distance bins


def _column_map():
    """10 x 10: class 0, column 9 class 1. Distances per column: 9 8 ... 1 | 1."""
    gt = np.zeros((10, 10), np.uint8)
    gt[:, 9] = 1
    pred = gt.copy()
    pred[0, 0] = 1          # distance 9
    pred[0:5, 8] = 1        # distance 1, 5 px
    pred[0, 5] = 1          # distance 4
    return gt, pred


def test_accuracy_by_distance_hand_computed():
    gt, pred = _column_map()
    detail = DetailMetrics(['a', 'b'])
    detail.add(gt, pred)
    bins = detail.evaluate()['accuracy_by_distance']
    assert [(b['from'], b['to']) for b in bins] == [(0, 2), (2, 4), (4, 8), (8, 16), (16, 32), (32, 64),
                                                    (64, None)]
    # [0,2): cols 8, 9 (20 px, 5 wrong); [2,4): cols 6, 7; [4,8): cols 2-5 (1 wrong); [8,16): cols 0, 1 (1 wrong)
    assert [b['pixels'] for b in bins] == [20, 20, 40, 20, 0, 0, 0]
    assert [b['accuracy'] for b in bins] == [75.0, 100.0, 97.5, 95.0, None, None, None]
    # a second image adds up: a map of one label is infinitely far from a cue (the last bin)
    detail.add(np.zeros((2, 2), np.uint8), np.array([[0, 1], [0, 0]], np.uint8))
    last = detail.evaluate()['accuracy_by_distance'][-1]
    assert last == {'from': 64.0, 'to': None, 'accuracy': 75.0, 'pixels': 4}


def test_hard_accuracy_from_the_reference():
    gt, pred = _column_map()
    detail = DetailMetrics(['a', 'b'])      # 24 px: no pixel of a 10 x 10 map is that far
    info = detail.add(gt, pred)
    assert info['hard_pixels'] == 0 and info['hard_accuracy'] is None
    m = detail.evaluate()
    assert m['hard_accuracy'] is None and m['hard_pixels'] == 0
    assert m['hard_mask'] == {'from': 'reference', 'distance': 24.0, 'classes': ['a', 'b']}
    # > 5 px: cols 0-3 (distances 9-6), 40 px, one wrong at (0, 0); col 4 (5 px) is not hard
    detail = DetailMetrics(['a', 'b'], hard_distance=5)
    info = detail.add(gt, pred)
    assert info['hard_pixels'] == 40 and info['hard_accuracy'] == 97.5
    assert detail.evaluate()['hard_accuracy'] == 97.5
    detail = DetailMetrics(['a', 'b'], hard_distance=5, hard_classes='b')
    detail.add(gt, pred)
    m = detail.evaluate()
    assert m['hard_pixels'] == 0 and m['hard_accuracy'] is None
    assert m['hard_mask'] == {'from': 'reference', 'distance': 5.0, 'classes': ['b']}


def test_given_hard_masks_count_only_scored_pixels():
    gt, pred = _column_map()
    gt[9, :] = IGNORE_LABEL
    mask = np.zeros((10, 10), np.uint8)
    mask[0, :] = 255      # row 0: 10 px, wrong at cols 0, 5, 8
    mask[9, :] = 1        # ignored in the gt: not counted
    detail = DetailMetrics(['a', 'b'], hard_masks='masks')
    assert detail.add(gt, pred, mask)['hard_pixels'] == 10
    m = detail.evaluate()
    assert m['hard_accuracy'] == 70.0 and m['hard_pixels'] == 10
    assert m['hard_mask'] == {'from': 'files', 'folder': os.path.abspath('masks')}


# ---------------------------------------------------------------- boundary F1


def _edge(shift=0):
    """10 x 10: gt columns < 5 class 0, the rest 1; pred the same with its edge ``shift`` px right."""
    gt = np.zeros((10, 10), np.uint8)
    gt[:, 5:] = 1
    pred = np.zeros((10, 10), np.uint8)
    pred[:, 5 + shift:] = 1
    return gt, pred


def test_boundary_pixels_are_both_sides_of_an_edge_not_the_ignore_band():
    gt, _ = _edge()
    assert boundary_mask(gt)[0].tolist() == [False] * 4 + [True, True] + [False] * 4
    band = gt.copy()
    band[:, 4:6] = IGNORE_LABEL
    assert not boundary_mask(band).any()


@pytest.mark.parametrize('shift, tolerance, counts, f1', [
    (0, 2, (20, 20, 20, 20), 100.0),
    # pred edge cols 5, 6 against 4, 5: all within 1 px
    (1, 2, (20, 20, 20, 20), 100.0),
    # pred edge cols 7, 8: col 7 is 2 px from col 5, col 8 is 3; gt col 5 is 2 px from col 7, col 4 is 3
    (3, 2, (20, 10, 20, 10), 50.0),
    (3, 3, (20, 20, 20, 20), 100.0),
    (1, 0, (20, 10, 20, 10), 50.0),
])
def test_boundary_f1_shifted_edge(shift, tolerance, counts, f1):
    gt, pred = _edge(shift)
    assert boundary_counts(gt, pred, tolerance) == counts
    precision, recall, score = boundary_scores(*counts)
    assert score == pytest.approx(f1)
    detail = DetailMetrics(['a', 'b'], boundary_tolerance=tolerance)
    assert detail.add(gt, pred)['boundary_F1'] == pytest.approx(f1)
    b = detail.evaluate()['boundary']
    assert (b['predicted_pixels'], b['predicted_matched'], b['reference_pixels'], b['reference_matched']) == counts
    assert b['tolerance'] == tolerance and b['F1'] == pytest.approx(f1)


def test_boundary_f1_sums_the_counts_over_images():
    detail = DetailMetrics(['a', 'b'])
    detail.add(*_edge(1))       # 20/20, 20/20
    detail.add(*_edge(3))       # 10/20, 10/20
    m = detail.evaluate()
    assert m['boundary']['precision'] == 75.0 and m['boundary']['recall'] == 75.0
    assert m['boundary_F1'] == 75.0


def test_boundary_f1_undefined_parts():
    gt, _ = _edge()
    # nothing predicted as an edge: precision undefined, recall 0, F1 0
    assert boundary_scores(*boundary_counts(gt, np.zeros_like(gt))) == (None, 0.0, 0.0)
    # no edge in the reference: F1 undefined whatever is predicted
    assert boundary_scores(*boundary_counts(np.zeros_like(gt), gt)) == (0.0, None, None)
    assert boundary_scores(0, 0, 0, 0) == (None, None, None)


def test_boundary_f1_with_ignored_pixels():
    # an eroded reference: classes 0 | 255 255 | 1 never touch, so it has no boundary, and the
    # predicted edge, inside the ignored band, is not counted
    gt, pred = _edge()
    eroded = gt.copy()
    eroded[:, 4:6] = IGNORE_LABEL
    assert boundary_counts(eroded, pred) == (0, 0, 0, 0)
    detail = DetailMetrics(['a', 'b'])
    detail.add(eroded, pred)
    assert detail.evaluate()['boundary_F1'] is None
    # a full reference with ignored rows 0-1: its boundary is cols 4, 5 of rows 2-9 (16 px; nothing
    # with the ignored rows). The prediction puts class 2 in rows 0-1: its edge with rows 2 makes
    # row 2 boundary (counted, the gt is scored there) and row 1 too (not counted, ignored).
    gt[:2] = IGNORE_LABEL
    pred[:2] = 2
    # counted: cols 4, 5 of rows 2-9 (16) + row 2's other 8; matched: those 16 + row 2 cols 2, 3, 6, 7
    assert boundary_counts(gt, pred, 2) == (24, 20, 16, 16)
    precision, recall, f1 = boundary_scores(24, 20, 16, 16)
    assert precision == pytest.approx(250 / 3) and recall == 100.0 and f1 == pytest.approx(4000 / 44)


@pytest.mark.parametrize('dilate_up_to', [segmentation.DILATE_UP_TO, -1])
def test_tolerance_is_euclidean_by_dilation_and_by_distance_transform(monkeypatch, dilate_up_to):
    monkeypatch.setattr(segmentation, 'DILATE_UP_TO', dilate_up_to)
    target = np.zeros((11, 11), bool)
    target[5, 5] = True
    probes = np.zeros((11, 11), bool)
    probes[5, 7] = probes[6, 7] = probes[7, 7] = True        # 2, sqrt(5) = 2.24, sqrt(8) = 2.83 px away
    assert segmentation._within(probes, target, 2) == 1
    assert segmentation._within(probes, target, 2.3) == 2
    assert segmentation._within(probes, target, 3) == 3
    assert segmentation._within(probes, target, 1.9) == 0
    # on random maps the two ways agree with a brute-force count
    rng = np.random.default_rng(0)
    for tolerance in (0, 1, 1.5, 2, 3.7):
        a, b = rng.random((30, 40)) < 0.02, rng.random((30, 40)) < 0.3
        ya, xa = np.nonzero(a)
        yb, xb = np.nonzero(b)
        d2 = (yb[:, None] - ya[None]) ** 2 + (xb[:, None] - xa[None]) ** 2
        assert segmentation._within(b, a, tolerance) == int((d2.min(axis=1) <= tolerance ** 2).sum())


# ---------------------------------------------------------------- objects


def _cars():
    """20 x 20 of class 0 with cars (class 4): A 3x4 (12 px) with 6 px predicted car (half: found);
    B 4x3 (12 px) with 5 (not found); C 2x2 (4 px: not an object); D two pieces of 6 and 4 px
    touching diagonally, one 8-connected object of 10 px, all predicted (found)."""
    gt = np.zeros((20, 20), np.uint8)
    pred = np.zeros((20, 20), np.uint8)
    gt[2:5, 2:6] = CAR
    pred[2:4, 2:5] = CAR
    gt[10:14, 10:13] = CAR
    pred[10:14, 10] = CAR
    pred[10, 11] = CAR
    gt[17:19, 17:19] = CAR
    gt[6:8, 14:17] = CAR
    gt[8:10, 17:19] = CAR
    pred[6:10, 14:19] = CAR     # D, and 6 px around it: false positives do not matter
    return gt, pred


def test_object_recall_hand_computed():
    gt, pred = _cars()
    assert object_counts(gt, pred, CAR) == (2, 3)
    assert object_counts(gt, pred, CAR, min_pixels=4) == (2, 4)     # C counts, not found
    assert object_counts(gt, pred, CAR, min_pixels=11) == (1, 2)    # D is too small
    assert object_counts(gt, pred, 1) == (0, 0)
    detail = DetailMetrics(ISPRS)                                   # car by default
    detail.add(gt, pred)
    detail.add(gt, np.zeros_like(pred))                             # nothing found: 3 more objects
    m = detail.evaluate()
    assert m['objects'] == {'car': {'found': 2, 'total': 6, 'recall': pytest.approx(100 / 3)}}
    assert m['car_recall'] == pytest.approx(100 / 3) and m['object_min_pixels'] == 10
    detail = DetailMetrics(ISPRS, object_classes='building,car', min_object_pixels=4)
    detail.add(gt, pred)
    m = detail.evaluate()
    assert m['objects'] == {'building': {'found': 0, 'total': 0, 'recall': None},
                            'car': {'found': 2, 'total': 4, 'recall': 50.0}}
    assert m['car_recall'] == 50.0
    detail = DetailMetrics(ISPRS, object_classes=['building'])
    detail.add(gt, pred)
    assert detail.evaluate()['car_recall'] is None
    no_car = DetailMetrics(['a', 'b'])
    no_car.add(gt > 0, pred > 0)
    assert no_car.evaluate()['objects'] == {} and no_car.evaluate()['car_recall'] is None


# ---------------------------------------------------------------- bad settings


@pytest.mark.parametrize('kwargs, param, needle', [
    (dict(boundary_tolerance=-1), 'boundary_tolerance',
     'the boundary tolerance (px) must be a finite number >= 0'),
    (dict(boundary_tolerance=float('nan')), 'boundary_tolerance', 'finite number'),
    (dict(hard_distance=-0.5), 'hard_distance', 'the hard-pixel distance (px) must be a whole number of px in '
                                                '1..256, got -0.5'),
    (dict(hard_distance=float('inf')), 'hard_distance', 'whole number of px in 1..256'),
    (dict(hard_distance=0), 'hard_distance', 'whole number of px in 1..256, got 0'),      # every pixel hard
    (dict(hard_distance=2.5), 'hard_distance', 'whole number of px in 1..256, got 2.5'),
    (dict(hard_distance=257), 'hard_distance', 'whole number of px in 1..256, got 257'),
    (dict(hard_classes='building,cat'), 'hard_classes', "unknown class 'cat': the classes are "
                                                        "impervious_surfaces, building, low_vegetation"),
    (dict(hard_classes=' , '), 'hard_classes', 'no class named: the classes are'),
    (dict(object_classes=['cat', 'dog']), 'object_classes', "unknown classes 'cat', 'dog'"),
    (dict(min_object_pixels=0), 'min_object_pixels', 'the smallest object must be an integer >= 1 px'),
    (dict(min_object_pixels=2.5), 'min_object_pixels', 'integer'),
    (dict(hard_masks='m', hard_distance=3), 'hard_masks', 'do not go with masks given as files'),
    (dict(hard_masks='m', hard_classes='car'), 'hard_masks', 'do not go with masks given as files'),
])
def test_bad_settings_are_usage_errors(kwargs, param, needle):
    with pytest.raises(UsageError) as e:
        DetailMetrics(ISPRS, **kwargs)
    assert needle in str(e.value) and e.value.param == param


# ---------------------------------------------------------------- folders and the command line


def _folders(tmp_path, preds, gts, masks=None):
    for sub, files in (('pred', preds), ('gt', gts), ('hard', masks or {})):
        (tmp_path / sub).mkdir(exist_ok=True)
        for name, image in files.items():
            cv2.imwrite(str(tmp_path / sub / name), image) if image.ndim == 3 else \
                write_label_png(str(tmp_path / sub / name), image)
    return str(tmp_path / 'pred'), str(tmp_path / 'gt'), str(tmp_path / 'hard')


def _evaluate(pred, gt, **kwargs):
    return evaluate_dirs(pred, gt, num_classes=6, progress=False, evaluator=SegmentationEvaluator(6),
                         detail=DetailMetrics(ISPRS, **kwargs))


def test_hard_masks_from_files_named_as_the_prediction_or_the_ground_truth(tmp_path):
    gt, pred = _column_map()
    mask = np.zeros((10, 10), np.uint8)
    mask[0, :] = 255
    p, g, h = _folders(tmp_path, {'t.png': pred, 'u.png': gt}, {'t.png': gt, 'u_noBoundary.png': gt},
                       {'t.png': mask, 'u_noBoundary.png': mask})
    _, images, _ = _evaluate(p, g, hard_masks=h)
    assert [(i['hard_pixels'], i['hard_accuracy']) for i in images] == [(10, 70.0), (10, 100.0)]
    os.remove(os.path.join(h, 'u_noBoundary.png'))
    write_label_png(os.path.join(h, 'u.png'), mask)         # the prediction's stem comes first
    assert _evaluate(p, g, hard_masks=h)[1][1]['hard_pixels'] == 10


def test_hard_mask_problems_name_the_file(tmp_path):
    gt, pred = _column_map()
    p, g, h = _folders(tmp_path, {'t.png': pred}, {'t.png': gt}, {'x.png': gt})
    with pytest.raises(InputError) as e:
        _evaluate(p, g, hard_masks=h)
    assert str(e.value) == ('%s: no hard-pixel mask for 1 of 1 predictions (t.png; a mask is named as its '
                            'prediction, else its ground truth, with one of .png .tif .tiff .bmp)' % h)
    write_label_png(os.path.join(h, 't.png'), np.zeros((10, 9), np.uint8))
    with pytest.raises(InputError) as e:
        _evaluate(p, g, hard_masks=h)
    assert str(e.value) == ('%s: hard-pixel mask is 9x10 (WxH) but the prediction %s is 10x10'
                            % (os.path.join(h, 't.png'), os.path.join(p, 't.png')))
    cv2.imwrite(os.path.join(h, 't.png'), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(InputError, match=r'hard-pixel mask is a 3-channel image; a mask is a single-channel'):
        _evaluate(p, g, hard_masks=h)
    with open(os.path.join(h, 't.png'), 'wb') as f:
        f.write(b'not a png')
    with pytest.raises(InputError, match=r't\.png: hard-pixel mask cannot be read \(not an image of a format read here'):
        _evaluate(p, g, hard_masks=h)
    with pytest.raises(InputError, match=r'^%s: no such hard-pixel mask folder$' % os.path.join(h, 'no')):
        _evaluate(p, g, hard_masks=os.path.join(h, 'no'))


def test_eroded_metrics_beside_detail_metrics_on_the_reference_as_read(tmp_path):
    gt = np.zeros((20, 20), np.uint8)
    gt[:, 10:] = 1
    pred = np.zeros((20, 20), np.uint8)
    pred[:, 11:] = 1                   # column 10 wrong
    p, g, _ = _folders(tmp_path, {'t.png': pred}, {'t.png': gt})
    detail = DetailMetrics(ISPRS)
    conf, _, _ = evaluate_dirs(p, g, num_classes=6, eroded=True, progress=False,
                               evaluator=SegmentationEvaluator(6), detail=detail)
    assert np.trace(conf) == conf.sum() == 280           # eroded: all right
    m = detail.evaluate()
    # distances: cols 9, 10 are 1 px; 7, 8, 11, 12 2-3; 3-6, 13-16 4-7; 0-2, 17-19 8-10
    assert [b['pixels'] for b in m['accuracy_by_distance']] == [40, 80, 160, 120, 0, 0, 0]
    assert [b['accuracy'] for b in m['accuracy_by_distance']][:4] == [50.0, 100.0, 100.0, 100.0]
    assert m['boundary_F1'] == 100.0
    assert m['objects'] == {'car': {'found': 0, 'total': 0, 'recall': None}} and m['car_recall'] is None


def test_cli_writes_and_prints_the_detail_metrics(tmp_path):
    cars_gt, cars_pred = _cars()
    edge_gt, edge_pred = _edge(3)
    p, g, _ = _folders(tmp_path, {'cars.png': cars_pred, 'edge.png': edge_pred},
                       {'cars.png': cars_gt, 'edge.png': edge_gt})
    out = tmp_path / 'out' / 'seg.json'
    exe = os.path.join(os.path.dirname(sys.executable), 'caffe-mlic')
    command = [exe] if os.path.exists(exe) else [sys.executable, '-m', 'caffe_mlic.cli']
    res = subprocess.run(command + ['eval', 'seg', '--pred', p, '--gt', g, '--json', str(out),
                                    '--hard-distance', '5'],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS='1'))
    assert res.returncode == 0, res.stderr
    m = json.loads(out.read_text())
    for key in ('OA', 'mF1', 'mF1_all', 'mIoU', 'F1', 'IoU', 'confusion', 'images'):      # as before
        assert key in m
    assert m['objects'] == {'car': {'found': 2, 'total': 3, 'recall': pytest.approx(200 / 3)}}
    assert m['car_recall'] == pytest.approx(200 / 3) and m['object_min_pixels'] == 10
    assert m['hard_mask'] == {'from': 'reference', 'distance': 5.0, 'classes': ISPRS}
    assert m['detail_reference'] == 'the ground truth as read (not eroded)'
    # edge.png: 10 x 10, cols 0-4 | 5-9, the prediction's edge 3 px right: boundary 10/20, 10/20
    edge = [i for i in m['images'] if i['prediction'].endswith('edge.png')][0]
    assert edge['boundary_F1'] == 50.0 and edge['hard_pixels'] == 0      # no pixel is > 5 px from the edge
    # cars.png: the hard pixels are class-0 pixels > 5 px from every car (and from nothing else)
    cars = [i for i in m['images'] if i['prediction'].endswith('cars.png')][0]
    d = distance_to_cue(cars_gt)
    hard = (d > 5) & (cars_gt == 0)
    assert cars['hard_pixels'] == m['hard_pixels'] == int(hard.sum()) > 0
    assert m['hard_accuracy'] == pytest.approx(100.0 * (cars_pred[hard] == 0).sum() / hard.sum())
    assert sum(b['pixels'] for b in m['accuracy_by_distance']) == m['pixels'] == 500
    assert m['boundary']['tolerance'] == 2.0
    lines = res.stdout.splitlines()
    start = [k for k, line in enumerate(lines) if line.startswith('mIoU')][0] + 1
    assert lines[start].startswith('hard    %6.1f %% over %d hard pixels (farther than 5 px from another label '
                                   'in the ground truth, all classes)' % (m['hard_accuracy'], m['hard_pixels']))
    assert lines[start + 1].startswith('accuracy by distance to the nearest other label')
    assert lines[start + 2].split() == ['px', '0-2', '2-4', '4-8', '8-16', '16-32', '32-64', '64+']
    assert lines[start + 3].split()[:2] == ['acc', '%'] and len(lines[start + 3].split()) == 9
    assert lines[start + 4].split()[0] == 'pixels'
    assert lines[start + 5].startswith('bF1     %6.1f %% boundary F1 within 2 px' % m['boundary_F1'])
    assert lines[start + 6].startswith('objects   66.7 % of the car objects found: 2 of 3 (8-connected, >= 10 px')
    # what the ScasNet report reads from it still reads
    from caffe_mlic.report.scasnet import read_evaluation
    assert read_evaluation(str(out))['car_recall'] == m['car_recall']


def test_cli_hard_masks_and_object_classes(tmp_path, capsys):
    cars_gt, cars_pred = _cars()
    mask = np.zeros((20, 20), np.uint8)
    mask[2:5, 2:6] = 255      # car A: 12 px, 6 right
    p, g, h = _folders(tmp_path, {'t.png': cars_pred}, {'t.png': cars_gt}, {'t.png': mask})
    out = tmp_path / 'seg.json'
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--json', str(out), '--hard-masks', h,
                     '--object-classes', 'car,building', '--min-object-pixels', '4',
                     '--boundary-tolerance', '1.5']) == 0
    text = capsys.readouterr().out
    m = json.loads(out.read_text())
    assert m['hard_pixels'] == 12 and m['hard_accuracy'] == 50.0
    assert m['hard_mask'] == {'from': 'files', 'folder': os.path.abspath(h)}
    assert list(m['objects']) == ['building', 'car'] and m['objects']['car']['total'] == 4
    assert m['boundary']['tolerance'] == 1.5
    assert 'hard      50.0 %% over 12 hard pixels (masks in %s)' % os.path.abspath(h) in text
    assert 'objects    n/a % of the building objects found: 0 of 0' in text
    # a reference without boundaries says so
    write_label_png(os.path.join(g, 't.png'), np.zeros((20, 20), np.uint8))
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--hard-masks', h, '--classes', '3',
                     '--palette', str(_palette(tmp_path))]) == 1      # car (4) is not among 3 classes
    capsys.readouterr()
    write_label_png(os.path.join(p, 't.png'), np.zeros((20, 20), np.uint8))
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--hard-masks', h, '--classes', '3',
                     '--palette', str(_palette(tmp_path))]) == 0
    text = capsys.readouterr().out
    assert 'no boundary pixel in the ground truth (an eroded reference has none' in text
    assert 'objects: none scored (no class named car; see --object-classes)' in text


def _palette(tmp_path):
    path = tmp_path / 'three.txt'
    path.write_text('ground 255 255 255\nroof 0 0 255\ngrass 0 255 255\n')
    return path


@pytest.mark.parametrize('extra, code, needle', [
    (['--boundary-tolerance', '-1'], 2, "argument --boundary-tolerance: must be a finite number >= 0, got '-1'"),
    (['--boundary-tolerance', 'nan'], 2, 'argument --boundary-tolerance: must be a finite number >= 0'),
    (['--hard-distance', '-2'], 2, "argument --hard-distance: must be an integer from 1 to 256, got '-2'"),
    (['--hard-distance', '0'], 2, "argument --hard-distance: must be an integer from 1 to 256, got '0'"),
    (['--hard-distance', '2.5'], 2, "argument --hard-distance: must be an integer from 1 to 256, got '2.5'"),
    (['--min-object-pixels', '0'], 2, "argument --min-object-pixels: must be an integer >= 1, got '0'"),
    (['--hard-classes', 'roof'], 2, "argument --hard-classes: unknown class 'roof': the classes are "
                                    "impervious_surfaces, building, low_vegetation, tree, car, clutter"),
    (['--object-classes', 'car,lorry'], 2, "argument --object-classes: unknown class 'lorry'"),
    (['--hard-masks', 'm', '--hard-distance', '3'], 2, '--hard-distance and --hard-classes compute the '
                                                       'hard-pixel masks from the ground truth; they do not '
                                                       'go with --hard-masks'),
])
def test_cli_bad_detail_options(tmp_path, capsys, extra, code, needle):
    a = np.zeros((4, 4), np.uint8)
    p, g, _ = _folders(tmp_path, {'a.png': a}, {'a.png': a})
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g] + extra) == code
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic eval seg: ') and needle in err and err.count('\n') == 1, err


def test_cli_missing_and_wrong_size_masks_are_one_line(tmp_path, capsys):
    a = np.zeros((4, 4), np.uint8)
    p, g, h = _folders(tmp_path, {'a.png': a}, {'a.png': a}, {'b.png': a})
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--hard-masks', h]) == 1
    assert capsys.readouterr().err == ('caffe-mlic eval seg: %s: no hard-pixel mask for 1 of 1 predictions '
                                       '(a.png; a mask is named as its prediction, else its ground truth, with '
                                       'one of .png .tif .tiff .bmp)\n' % h)
    write_label_png(os.path.join(h, 'a.png'), np.zeros((5, 4), np.uint8))
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--hard-masks', h]) == 1
    assert capsys.readouterr().err == ('caffe-mlic eval seg: %s: hard-pixel mask is 4x5 (WxH) but the prediction '
                                       '%s is 4x4\n' % (os.path.join(h, 'a.png'), os.path.join(p, 'a.png')))
    # an output that would replace a mask is refused
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--hard-masks', h,
                     '--confusion-csv', os.path.join(h, 'a.png')]) == 2
    assert 'is an input of this command' in capsys.readouterr().err


def test_cli_hard_mask_folder_problems_name_the_folder_and_count(tmp_path, capsys):
    """An empty folder: one line naming it and the count, not one problem
    per prediction; two masks for one tile (X.png and X.tif) are refused
    as in --gt and --pred, not one of them used."""
    a = np.zeros((4, 4), np.uint8)
    names = ['a.png', 'b.png', 'c.png', 'd.png']
    p, g, h = _folders(tmp_path, {n: a for n in names}, {n: a for n in names})
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--hard-masks', h]) == 1
    err = capsys.readouterr().err
    assert err == ('caffe-mlic eval seg: %s: no hard-pixel mask for 4 of 4 predictions (a.png, b.png, c.png, '
                   'd.png; a mask is named as its prediction, else its ground truth, with one of .png .tif '
                   '.tiff .bmp)\n' % h), err
    for n in names[:3]:
        write_label_png(os.path.join(h, n), a)
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--hard-masks', h]) == 1
    assert 'no hard-pixel mask for 1 of 4 predictions (d.png;' in capsys.readouterr().err
    write_label_png(os.path.join(h, 'd.png'), a)
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--hard-masks', h]) == 0
    capsys.readouterr()
    cv2.imwrite(os.path.join(h, 'b.tif'), a)
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--hard-masks', h]) == 1
    err = capsys.readouterr().err
    assert err == ("caffe-mlic eval seg: %s: two files with the stem 'b': %s, %s\n"
                   % (os.path.join(h, 'b.tif'), os.path.join(h, 'b.png'), os.path.join(h, 'b.tif'))), err


@pytest.mark.parametrize('value', [1, 24, 256, 24.0])
def test_hard_distance_is_synths_bound(value):
    """eval seg and synth --task seg take the same whole px in 1..256
    (24.0, as a results.json kept it, is 24)."""
    from caffe_mlic.data.labelmaps import MAX_HARD_DISTANCE, check_hard_distance
    assert MAX_HARD_DISTANCE == 256
    assert DetailMetrics(ISPRS, hard_distance=value).hard_distance == check_hard_distance(value) == int(value)
    assert isinstance(DetailMetrics(ISPRS, hard_distance=value).hard_distance, int)
