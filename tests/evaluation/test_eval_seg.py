"""Semantic labeling metrics (hand-computed confusions), folder pairing and
its errors, and `caffe-mlic eval seg` end to end."""
import csv
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.evaluation.segmentation import (MAX_ERODE_RADIUS, confusion, evaluate_dirs, metrics, pair_files,
                                                row_percentages, write_confusion_csv)
from caffe_mlic.plotting import plot_confusion
from caffe_mlic.data.labelmaps import IGNORE_LABEL, write_colour_png, write_label_png

# 3 classes; the 255 at (row 2, col 1) is not scored, so the 7 predicted there is no error.
GT3 = np.array([[0, 0, 0, 1],
                [1, 1, 2, 2],
                [2, IGNORE_LABEL, 0, 1]], np.uint8)
PRED3 = np.array([[0, 0, 1, 1],
                  [1, 2, 2, 2],
                  [0, 7, 0, 1]], np.uint8)
# By hand, (gt, pred) over the 11 scored pixels:
#   gt 0: (0,0) (0,0) (0,1) (0,0)  -> row [3, 1, 0]
#   gt 1: (1,1) (1,1) (1,2) (1,1)  -> row [0, 3, 1]
#   gt 2: (2,2) (2,2) (2,0)        -> row [1, 0, 2]
CONF3 = [[3, 1, 0], [0, 3, 1], [1, 0, 2]]
# OA = 8/11. Classes 0 and 1: TP 3, FP 1, FN 1: P = R = F1 = 75, IoU = 3/5 = 60.
# Class 2: TP 2, FP 1, FN 1: P = R = F1 = 200/3, IoU = 2/4 = 50.


def test_confusion_hand_computed_and_ignore_label_skipped():
    conf = confusion(GT3, PRED3, 3)
    assert conf.dtype == np.int64
    assert conf.tolist() == CONF3
    assert conf.sum() == 11        # 12 pixels, one ignored


def test_metrics_hand_computed():
    m = metrics(confusion(GT3, PRED3, 3), ['a', 'b', 'clutter'])
    assert m['pixels'] == 11
    assert m['OA'] == pytest.approx(800 / 11)
    assert m['precision'] == pytest.approx([75, 75, 200 / 3])
    assert m['recall'] == pytest.approx([75, 75, 200 / 3])
    assert m['F1'] == pytest.approx([75, 75, 200 / 3])
    assert m['IoU'] == pytest.approx([60, 60, 50])
    # mF1 leaves clutter out (the ISPRS benchmark's five classes); mF1_all and mIoU do not
    assert m['mF1'] == pytest.approx(75)
    assert m['mF1_all'] == pytest.approx((75 + 75 + 200 / 3) / 3)
    assert m['mIoU'] == pytest.approx((60 + 60 + 50) / 3)
    assert m['means']['mF1'].startswith('2 classes: a, b (clutter left out')
    assert m['means']['mF1_all'].startswith('3 classes: a, b, clutter')
    assert m['gt_pixels'] == [4, 4, 3] and m['predicted_pixels'] == [4, 4, 3]


def test_metrics_undefined_classes():
    # class 2 only predicted (recall undefined, F1 = IoU = 0), class 3 nowhere (all undefined)
    conf = np.array([[4, 0, 1, 0],
                     [1, 2, 0, 0],
                     [0, 0, 0, 0],
                     [0, 0, 0, 0]])
    m = metrics(conf, ['a', 'b', 'c', 'd'])
    assert m['OA'] == pytest.approx(600 / 8)
    # a: TP 4 FP 1 FN 1 -> P = R = F1 = 80, IoU 4/6; b: TP 2 FP 0 FN 1 -> P 100, R 200/3, F1 80, IoU 200/3
    assert m['precision'][:2] == pytest.approx([80, 100]) and m['precision'][2:] == [0.0, None]
    assert m['recall'][:2] == pytest.approx([80, 200 / 3]) and m['recall'][2:] == [None, None]
    assert m['F1'][:3] == pytest.approx([80, 80, 0]) and m['F1'][3] is None
    assert m['IoU'][:3] == pytest.approx([400 / 6, 200 / 3, 0]) and m['IoU'][3] is None
    assert m['mF1'] == m['mF1_all'] == pytest.approx(160 / 3)   # over a, b, c; d left out
    assert m['mIoU'] == pytest.approx((400 / 6 + 200 / 3) / 3)
    assert m['means']['mIoU'].endswith('undefined, left out: d')
    json.dumps(m, allow_nan=False)
    empty = metrics(np.zeros((2, 2), int), ['a', 'b'])
    assert empty['OA'] is None and empty['mF1'] is None and empty['pixels'] == 0


def test_prediction_outside_classes_at_scored_pixel():
    pred = PRED3.copy()
    pred[2, 0] = 3
    with pytest.raises(InputError, match=r'^p\.png: 1 scored pixels are predicted outside the 3 '
                                         r'classes \(0-2\), first at x=0 y=2; values 3$'):
        confusion(GT3, pred, 3, 'p.png')
    pred[2, 0] = IGNORE_LABEL
    with pytest.raises(InputError, match='values 255'):
        confusion(GT3, pred, 3, 'p.png')


def _halves(shift=0, size=20):
    """gt: columns < 10 class 0, the rest class 1; pred the same with its boundary ``shift`` right."""
    gt = np.zeros((size, size), np.uint8)
    gt[:, 10:] = 1
    pred = np.zeros((size, size), np.uint8)
    pred[:, 10 + shift:] = 1
    return gt, pred


def test_erosion_ignores_the_boundary_band(tmp_path):
    gt, pred = _halves(shift=1)      # column 10 wrong: 20 of 400 pixels
    (tmp_path / 'p').mkdir()
    (tmp_path / 'g').mkdir()
    write_label_png(str(tmp_path / 'p' / 'a.png'), pred)
    write_label_png(str(tmp_path / 'g' / 'a.png'), gt)
    conf, images, _ = evaluate_dirs(str(tmp_path / 'p'), str(tmp_path / 'g'), num_classes=2, progress=False)
    assert conf.tolist() == [[200, 0], [20, 180]]
    assert images[0]['OA'] == pytest.approx(95.0)
    # radius 3: columns 7-12 lie within 3 px of the other class: 6 x 20 pixels ignored
    conf, images, _ = evaluate_dirs(str(tmp_path / 'p'), str(tmp_path / 'g'), num_classes=2, eroded=True,
                                 progress=False)
    assert conf.tolist() == [[140, 0], [0, 140]]
    assert images[0]['pixels'] == 280 and images[0]['OA'] == 100.0
    conf, _, _ = evaluate_dirs(str(tmp_path / 'p'), str(tmp_path / 'g'), num_classes=2, eroded=True,
                            radius=1, progress=False)
    assert conf.tolist() == [[180, 0], [0, 180]]    # columns 9 and 10 ignored


def _folders(tmp_path, preds, gts):
    """Write index PNGs {name: array} into tmp_path/pred and tmp_path/gt."""
    for sub, files in (('pred', preds), ('gt', gts)):
        (tmp_path / sub).mkdir(exist_ok=True)
        for name, labels in files.items():
            write_label_png(str(tmp_path / sub / name), labels)
    return str(tmp_path / 'pred'), str(tmp_path / 'gt')


def test_pairing_rules(tmp_path):
    a = np.zeros((2, 2), np.uint8)
    pred, gt = _folders(tmp_path, {'area1.png': a, 'area11.png': a, 'b.png': a},
                        {'area1_noBoundary.png': a, 'area11.png': a, 'b.png': a, 'b_noBoundary.png': a})
    # an exact stem wins over a suffixed one, which then is not scored
    pairs, unscored = pair_files(pred, gt)
    assert [os.path.basename(g) for _, g in pairs] == ['area1_noBoundary.png', 'area11.png', 'b.png']
    assert unscored == [os.path.join(gt, 'b_noBoundary.png')]
    os.remove(os.path.join(gt, 'b.png'))
    names = [(os.path.basename(p), os.path.basename(g)) for p, g in pair_files(pred, gt)[0]]
    # area1_ is not a prefix of area11
    assert names == [('area1.png', 'area1_noBoundary.png'), ('area11.png', 'area11.png'),
                     ('b.png', 'b_noBoundary.png')]
    os.remove(os.path.join(gt, 'area11.png'))
    write_label_png(os.path.join(gt, 'area11_x.png'), a)
    write_label_png(os.path.join(gt, 'area11_y.png'), a)
    with pytest.raises(InputError, match=r'area11\.png: prediction with no ground truth .*several '
                                         r'ground truths could be its own: area11_x, area11_y'):
        pair_files(pred, gt)
    os.remove(os.path.join(gt, 'area11_y.png'))
    with pytest.raises(InputError, match=r'no ground truth area11_noBoundary\.<ext>'):
        pair_files(pred, gt, gt_suffix='_noBoundary')


def test_missing_ground_truths_in_one_error_unpredicted_ones_not_scored(tmp_path):
    a = np.zeros((2, 2), np.uint8)
    pred, gt = _folders(tmp_path, {'a.png': a, 'b.png': a, 'd.png': a}, {'a.png': a, 'c.tif': a})
    with pytest.raises(InputError) as e:
        evaluate_dirs(pred, gt, progress=False)
    text = str(e.value)
    assert text.startswith('2 problems in ')
    assert '%s: prediction with no ground truth in %s' % (os.path.join(pred, 'b.png'), gt) in text
    assert '%s: prediction with no ground truth in %s' % (os.path.join(pred, 'd.png'), gt) in text
    os.remove(os.path.join(pred, 'b.png'))
    os.remove(os.path.join(pred, 'd.png'))
    conf, images, unscored = evaluate_dirs(pred, gt, progress=False)
    assert len(images) == 1 and conf.sum() == 4
    assert unscored == [os.path.join(gt, 'c.tif')]


@pytest.mark.parametrize('side', ['pred', 'gt'])
def test_an_entry_at_a_maps_name_that_is_no_regular_file_is_named(tmp_path, side):
    """A FIFO, folder or symlink loop at a map's name in --pred was passed
    over: its ground truth "not scored: ... have no prediction", exit 0 (in
    --gt: "prediction with no ground truth"). Each is now an error naming it."""
    a = np.zeros((2, 2), np.uint8)
    pred, gt = _folders(tmp_path, {'a.png': a, 'b.png': a}, {'a.png': a, 'b.png': a})
    folder = pred if side == 'pred' else gt
    os.remove(os.path.join(folder, 'b.png'))
    for name, make, why in (('b.png', os.mkfifo, 'not a regular file (a device, FIFO or folder)'),
                            ('b.png', os.mkdir, 'not a regular file (a device, FIFO or folder)'),
                            ('b.png', lambda p: os.symlink('b.png', p), 'a symlink loop, not a file')):
        path = os.path.join(folder, name)
        make(path)
        with pytest.raises(InputError) as e:
            pair_files(pred, gt)
        assert str(e.value) == '%s: %s' % (path, why)
        os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)


def test_size_mismatch_names_both_files(tmp_path):
    pred, gt = _folders(tmp_path, {'a.png': np.zeros((3, 4), np.uint8)}, {'a.png': np.zeros((3, 5), np.uint8)})
    with pytest.raises(InputError) as e:
        evaluate_dirs(pred, gt, progress=False)
    assert str(e.value) == ('%s: prediction is 4x3 (WxH) but its ground truth %s is 5x3'
                            % (os.path.join(pred, 'a.png'), os.path.join(gt, 'a.png')))


def test_values_outside_the_classes_name_the_file(tmp_path):
    bad = np.zeros((3, 4), np.uint8)
    bad[1, 2] = 6
    pred, gt = _folders(tmp_path, {'a.png': bad}, {'a.png': np.zeros((3, 4), np.uint8)})
    with pytest.raises(InputError, match=r'^%s: 1 scored pixels are predicted outside the 6 classes '
                                         r'\(0-5\), first at x=2 y=1; values 6$' % os.path.join(pred, 'a.png')):
        evaluate_dirs(pred, gt, progress=False)
    # in the ground truth, a value that is neither a class nor 255 is an error anywhere
    write_label_png(os.path.join(gt, 'a.png'), bad)
    write_label_png(os.path.join(pred, 'a.png'), np.zeros((3, 4), np.uint8))
    with pytest.raises(InputError, match=r'^%s: 1 pixels have labels outside the 6 classes.*x=2 y=1'
                                         % os.path.join(gt, 'a.png')):
        evaluate_dirs(pred, gt, progress=False)
    write_label_png(os.path.join(gt, 'a.png'), np.zeros((3, 4), np.uint8))
    # 255 predicted where the gt is scored: the prediction's file is named
    bad[1, 2] = IGNORE_LABEL
    write_label_png(os.path.join(pred, 'a.png'), bad)
    with pytest.raises(InputError, match=r'^%s: 1 scored pixels are predicted outside the 6 classes'
                                         % os.path.join(pred, 'a.png')):
        evaluate_dirs(pred, gt, progress=False)
    # with --classes 7 the 6 is a class
    write_label_png(os.path.join(pred, 'a.png'), np.full((3, 4), 6, np.uint8))
    conf, _, _ = evaluate_dirs(pred, gt, num_classes=7, progress=False)
    assert conf[0, 6] == 12 and conf.sum() == 12


def test_colour_ground_truth_and_unknown_colour(tmp_path):
    labels = np.array([[0, 1, 2], [3, 4, 5]], np.uint8)
    (tmp_path / 'gt').mkdir()
    (tmp_path / 'pred').mkdir()
    gt_path = str(tmp_path / 'gt' / 'a_noBoundary.tif')
    write_colour_png(gt_path, np.where(labels == 5, IGNORE_LABEL, labels))  # clutter as black: ignored
    write_colour_png(str(tmp_path / 'pred' / 'a.png'), labels)              # colour prediction
    conf, images, _ = evaluate_dirs(str(tmp_path / 'pred'), str(tmp_path / 'gt'), progress=False)
    assert conf.tolist() == np.diag([1, 1, 1, 1, 1, 0]).tolist()
    assert images[0]['ground_truth'] == gt_path
    bgr = cv2.imread(gt_path, cv2.IMREAD_COLOR)
    bgr[0, 1] = (30, 20, 10)
    cv2.imwrite(gt_path, bgr)
    with pytest.raises(InputError, match=r'^%s: 1 pixels have colours outside the isprs palette, first '
                                         r'at x=1 y=0; colours \(10, 20, 30\)' % gt_path):
        evaluate_dirs(str(tmp_path / 'pred'), str(tmp_path / 'gt'), progress=False)


def test_empty_and_missing_folders(tmp_path):
    (tmp_path / 'pred').mkdir()
    (tmp_path / 'pred' / 'notes.txt').write_text('x')
    with pytest.raises(InputError, match=r'pred: no prediction label maps \(\.png \.tif \.tiff \.bmp\)'):
        evaluate_dirs(str(tmp_path / 'pred'), str(tmp_path), progress=False)
    with pytest.raises(InputError, match=r'nowhere: no such ground truth folder'):
        write_label_png(str(tmp_path / 'pred' / 'a.png'), np.zeros((2, 2), np.uint8))
        evaluate_dirs(str(tmp_path / 'pred'), str(tmp_path / 'nowhere'), progress=False)
    # a FIFO or a symlink loop was "folder not found" too (pass 45b M3)
    os.mkfifo(str(tmp_path / 'fifo'))
    os.symlink('loop', str(tmp_path / 'loop'))
    for name, kind in (('fifo', 'a FIFO'), ('loop', 'a symlink loop')):
        with pytest.raises(InputError, match=r'%s: %s, not a ground truth folder$' % (name, kind)):
            evaluate_dirs(str(tmp_path / 'pred'), str(tmp_path / name), progress=False)


def test_confusion_csv_and_png(tmp_path):
    conf = np.array([[3, 1], [0, 0]])
    write_confusion_csv(str(tmp_path / 'c.csv'), conf, ['a', 'b'])
    with open(tmp_path / 'c.csv', newline='') as f:
        assert list(csv.reader(f)) == [['gt\\pred', 'a', 'b'], ['a', '3', '1'], ['b', '0', '0']]
    pct = row_percentages(conf)
    assert pct[0].tolist() == [75.0, 25.0] and np.isnan(pct[1]).all()
    plot_confusion(str(tmp_path / 'c.png'), conf, ['a', 'b'])
    img = cv2.imread(str(tmp_path / 'c.png'))
    assert img is not None and img.shape[0] > 100
    assert not [n for n in os.listdir(tmp_path) if n.endswith('.tmp')]


def _caffe_mlic():
    exe = os.path.join(os.path.dirname(sys.executable), 'caffe-mlic')
    return [exe] if os.path.exists(exe) else [sys.executable, '-m', 'caffe_mlic.cli']


def test_cli_end_to_end(tmp_path):
    # two images; ISPRS classes 0-5. Image a is GT3/PRED3 with the 7 at an ignored pixel,
    # image b (2x2) is all correct impervious surfaces (class 0): 4 more TP for class 0.
    pred, gt = _folders(tmp_path, {'a.png': PRED3, 'b.png': np.zeros((2, 2), np.uint8)},
                        {'a.png': GT3, 'b.png': np.zeros((2, 2), np.uint8)})
    out = tmp_path / 'out' / 'seg.json'
    res = subprocess.run(_caffe_mlic() + ['eval', 'seg', '--pred', pred, '--gt', gt, '--json', str(out)],
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, OPENBLAS_NUM_THREADS='1'))
    assert res.returncode == 0, res.stderr
    m = json.loads(out.read_text())
    assert m['pixels'] == 15 and m['OA'] == pytest.approx(1200 / 15)
    # class 0: TP 7 FP 1 FN 1 -> F1 87.5, IoU 7/9; building 75 / 60; low_vegetation 200/3 / 50
    assert m['F1'][:3] == pytest.approx([87.5, 75, 200 / 3])
    assert m['F1'][3:] == [None, None, None]
    assert m['IoU'][:3] == pytest.approx([700 / 9, 60, 50])
    assert m['mF1'] == m['mF1_all'] == pytest.approx((87.5 + 75 + 200 / 3) / 3)
    assert m['mIoU'] == pytest.approx((700 / 9 + 110) / 3)
    assert m['classes'][0] == 'impervious_surfaces' and m['eroded'] is False
    assert [os.path.basename(i['prediction']) for i in m['images']] == ['a.png', 'b.png']
    with open(tmp_path / 'out' / 'seg.confusion.csv', newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0][1] == 'impervious_surfaces' and rows[1][1:] == ['7', '1', '0', '0', '0', '0']
    img = cv2.imread(str(tmp_path / 'out' / 'seg.confusion.png'))
    assert img is not None and img.ndim == 3
    lines = res.stdout.splitlines()
    assert lines[0].split() == ['class', 'P', 'R', 'F1', 'IoU', 'gt', 'pixels']
    assert lines[1].split() == ['impervious_surfaces', '87.5', '87.5', '87.5', '77.8', '8']
    assert lines[5].split()[1:] == ['n/a', 'n/a', 'n/a', 'n/a', '0']
    assert lines[7] == 'OA        80.0 % over 15 pixels of 2 images'
    assert lines[8].startswith('mF1       76.4 % over 3 classes: impervious_surfaces, building, '
                               'low_vegetation (clutter left out, as the ISPRS benchmark reports); '
                               'undefined, left out: tree, car')
    assert lines[10].startswith('mIoU      62.6 % over 3 classes')


def test_cli_eroded_and_explicit_outputs(tmp_path, capsys):
    gt, pred = _halves(shift=1)
    p, g = _folders(tmp_path, {'t.png': pred}, {'t_noBoundary.png': gt})
    csv_path = tmp_path / 'c.csv'
    assert cli.main(['eval', 'seg', '--pred', p, '--gt', g, '--eroded', '--classes', '2',
                     '--confusion-csv', str(csv_path)]) == 0
    out = capsys.readouterr().out
    assert 'OA       100.0 % over 280 pixels of 1 images, class boundaries eroded (radius 3 px)' in out
    assert csv_path.read_text().splitlines()[1:] == ['impervious_surfaces,140,0', 'building,0,140']
    assert not (tmp_path / 'c.png').exists()


@pytest.mark.parametrize('extra, needle', [
    (['--erode-radius', '2'], '--erode-radius goes with --eroded'),
    (['--eroded', '--erode-radius', '-1'], "argument --erode-radius: must be an integer from 0 to 64, got '-1'"),
    # (2 r + 1)^2 bytes of kernel: 40 GB, refused before any work (the folders are empty)
    (['--eroded', '--erode-radius', '100000'], "argument --erode-radius: must be an integer from 0 to 64"),
    (['--eroded', '--erode-radius', '65'], "argument --erode-radius: must be an integer from 0 to 64"),
    (['--eroded', '--erode-radius', '2.5'], "argument --erode-radius: must be an integer from 0 to 64"),
    (['--eroded', '--erode-radius', 'nan'], "argument --erode-radius: must be an integer from 0 to 64"),
    (['--classes', '300'], "argument --classes: must be an integer from 1 to 255, got '300'"),
    (['--classes', '0'], "argument --classes: must be an integer from 1 to 255, got '0'"),
    (['--classes', '-3'], "argument --classes: must be an integer from 1 to 255, got '-3'"),
])
def test_cli_bad_options_exit_2(tmp_path, capsys, extra, needle):
    assert cli.main(['eval', 'seg', '--pred', str(tmp_path), '--gt', str(tmp_path)] + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic eval seg: ') and needle in err, err


@pytest.mark.parametrize('radius', [100000, 65, -1, 2.5, True, None])
def test_erode_radius_is_bounded_before_any_work(radius):
    with pytest.raises(UsageError, match='the erosion radius must be an integer from 0 to 64 px'):
        evaluate_dirs('no/such/pred', 'no/such/gt', eroded=True, radius=radius)
    assert MAX_ERODE_RADIUS == 64


def test_cli_help_states_the_bounds(capsys):
    with pytest.raises(SystemExit):
        cli.main(['eval', 'seg', '--help'])
    help_text = ' '.join(capsys.readouterr().out.split())
    assert 'radius of the disc, 0-64 (default 3' in help_text
    assert 'number of classes, 1-255' in help_text


def test_cli_outputs_that_name_an_input_are_refused(tmp_path, capsys):
    a = np.zeros((2, 2), np.uint8)
    pred, gt = _folders(tmp_path, {'a.png': a, 'x.confusion.png': a}, {'a.png': a, 'x.confusion.png': a})
    palette = tmp_path / 'palette.txt'
    palette.write_text('ground 0 0 0\nthing 255 255 255\n')
    argv = ['eval', 'seg', '--pred', pred, '--gt', gt, '--palette', str(palette)]
    cases = [(['--confusion-csv', os.path.join(pred, 'a.png')], '--confusion-csv', os.path.join(pred, 'a.png')),
             (['--json', os.path.join(gt, 'a.png')], '--json', os.path.join(gt, 'a.png')),
             (['--confusion-png', os.path.join(gt, 'a.png')], '--confusion-png', os.path.join(gt, 'a.png')),
             (['--json', str(palette)], '--json', str(palette)),
             # the plot beside --json would replace the prediction x.confusion.png
             (['--json', os.path.join(tmp_path, 'x.json'), '--confusion-png', os.path.join(pred, 'x.confusion.png')],
              '--confusion-png', os.path.join(pred, 'x.confusion.png'))]
    for extra, flag, path in cases:
        before = open(path, 'rb').read()
        assert cli.main(argv + extra) == 2, extra
        assert capsys.readouterr().err == ('caffe-mlic eval seg: argument %s: %s is an input of this command: '
                                           'writing it would overwrite it; choose another output path\n'
                                           % (flag, path))
        assert open(path, 'rb').read() == before
    # beside the maps, under names that are none of them: the confusion plot beside the JSON was a
    # "prediction with no ground truth" to the next eval (pass 23 M8): no output goes into the folders
    for folder in (pred, gt):
        assert cli.main(argv + ['--json', os.path.join(folder, 'seg.json')]) == 2
        assert capsys.readouterr().err == (
            'caffe-mlic eval seg: argument --json: %s would be written into %s, a folder eval reads as a whole (the '
            'next eval would take it for one of its files): write it elsewhere\n' % (os.path.join(folder, 'seg.json'),
                                                                                    folder))
    assert sorted(os.listdir(pred)) == ['a.png', 'x.confusion.png']
    assert cli.main(argv + ['--json', os.path.join(tmp_path, 'seg.json')]) == 0


def test_cli_input_error_exit_1(tmp_path, capsys):
    a = np.zeros((2, 2), np.uint8)
    pred, gt = _folders(tmp_path, {'a.png': a}, {'b.png': a})
    assert cli.main(['eval', 'seg', '--pred', pred, '--gt', gt]) == 1
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic eval seg: %s: prediction with no ground truth' % os.path.join(pred, 'a.png'))


def _bomb_png(path):
    """254 bytes whose header says 60000 x 60000 px: OpenCV raised cv2.error
    (a traceback) reading it as a prediction."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 60000, 60000, 8, 2, 0, 0, 0))
                     + chunk(b'IDAT', zlib.compress(b'\0' * 180001)) + chunk(b'IEND', b''))


@pytest.mark.parametrize('which', ['pred', 'gt'])
def test_a_decompression_bomb_label_map_is_one_line_naming_it(tmp_path, capfd, which):
    a = np.zeros((2, 2), np.uint8)
    pred, gt = _folders(tmp_path, {'a.png': a}, {'a.png': a})
    bomb = os.path.join(pred if which == 'pred' else gt, 'a.png')
    _bomb_png(tmp_path / which / 'a.png')
    assert cli.main(['eval', 'seg', '--pred', pred, '--gt', gt]) == 1
    err = capfd.readouterr().err
    assert err == ('caffe-mlic eval seg: %s: %s: cannot read label map (the image is 60000x60000 px (3600000000 '
                   'pixels), over the limit of 268435456 (2^28) pixels for one image: a decompression bomb, or '
                   'an image to tile first)\n' % (bomb, 'prediction' if which == 'pred' else 'ground truth')), err


def test_a_confusion_image_whose_extension_names_no_format_is_refused_first(tmp_path):
    """`--confusion-png c.jpg` wrote PNG bytes under a .jpg name."""
    pred, gt = _folders(tmp_path, {'a.png': PRED3}, {'a.png': GT3})
    res = subprocess.run(_caffe_mlic() + ['eval', 'seg', '--pred', pred, '--gt', gt, '--confusion-png',
                                          str(tmp_path / 'c.jpg')], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.endswith('c.jpg: the image format comes from the extension: .png, .pdf or .svg\n'), res.stderr
    assert not (tmp_path / 'c.jpg').exists()
