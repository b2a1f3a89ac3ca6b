"""`caffe-mlic report RUN` on evaluation JSON files of the wrong shape (a
list, a key missing, a value of the wrong type): one error naming the file
and the key, not a traceback. (Here beside the data tests: the report reads
what the data and evaluation commands write.)"""
import json
import os

import cv2
import numpy as np
import pytest

from caffe_mlic import cli

CLASSES = ['road', 'car']


def _scasnet_run(tmp_path, **changes):
    """A ScasNet run folder with what the report reads first: the evaluation,
    the training list (for the majority baseline) and run.json."""
    run = tmp_path / 'run'
    for folder in ('eval', 'data/top', 'data/gt', 'train'):
        (run / folder).mkdir(parents=True)
    labels = np.zeros((8, 8), np.uint8)
    labels[:2] = 1
    cv2.imwrite(str(run / 'data' / 'gt' / 'a.png'), labels)
    (run / 'data' / 'train.txt').write_text('top/a.png gt/a.png\n')
    evaluation = dict(classes=CLASSES, OA=90.0, mF1=80.0, mF1_all=80.0, mIoU=70.0, F1=[90.0, 70.0],
                      IoU=[80.0, None], means={'mF1': 'road, car'}, pixels=64,
                      ground_truth_dir=str(run / 'data' / 'gt'), palette=None, eroded=False,
                      erode_radius=None, images=[dict(prediction=str(run / 'pred' / 'a.png'),
                                                      ground_truth=str(run / 'data' / 'gt' / 'a.png'))])
    evaluation.update(changes.pop('evaluation', {}))
    text = changes.pop('text', None)
    (run / 'eval' / 'scasnet.json').write_text(text if text is not None else json.dumps(evaluation))
    info = dict(start_time='2024-01-01T00:00:00+0000', end_time='2024-01-01T00:01:00+0000', final_iteration=9)
    info.update(changes.pop('run_info', {}))
    (run / 'train' / 'run.json').write_text(json.dumps(info))
    assert not changes
    return str(run)


def _report_error(capsys, run):
    assert cli.main(['report', run]) == 1
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic report: ') and 'Traceback' not in err
    return err


@pytest.mark.parametrize('change, lines', [
    (dict(text='[1, 2]'), ['eval/scasnet.json: expected what `eval seg --json` writes (a JSON object), '
                           'got [1, 2]']),
    (dict(text='{}'), ['eval/scasnet.json: "classes": missing', 'eval/scasnet.json: "images": missing']),
    (dict(evaluation=dict(OA='90')), ['eval/scasnet.json: "OA": must be a number or null, got "90"']),
    (dict(evaluation=dict(F1=[90.0])),
     ['eval/scasnet.json: "F1": must be a list of numbers or null, one per class (2), got [90.0]']),
    (dict(evaluation=dict(classes='road')), ['eval/scasnet.json: "classes": must be a non-empty list']),
    (dict(evaluation=dict(images=[{'prediction': 'a.png'}])), ['eval/scasnet.json: "images": must be a list of '
                                                                'objects with "prediction" and "ground_truth"']),
    (dict(evaluation=dict(eroded=True, erode_radius=2.5)),
     ['eval/scasnet.json: "erode_radius": must be a radius in pixels (>= 0) or null, got 2.5']),
    (dict(run_info=dict(start_time=5)), ['train/run.json: "start_time": must be a time in ISO 8601 format, got 5']),
])
def test_scasnet_report_names_the_file_and_the_key(tmp_path, capsys, change, lines):
    run = _scasnet_run(tmp_path, **change)
    err = _report_error(capsys, run)
    for line in lines:
        assert os.path.join(run, line) in err, err


def test_a_good_scasnet_evaluation_passes_the_checks(tmp_path):
    from caffe_mlic.report.scasnet import read_evaluation, read_run_info
    run = _scasnet_run(tmp_path)
    assert read_evaluation(os.path.join(run, 'eval', 'scasnet.json'))['classes'] == CLASSES
    assert read_run_info(os.path.join(run, 'train', 'run.json'))['final_iteration'] == 9


def _mlic_run(tmp_path, **files):
    """An MLIC run folder: one seed with the evaluations the report reads first."""
    cls = dict(mAP=60.0, AP=[50.0, 70.0])
    det = dict(AP07=40.0, AP=41.0, CorLoc=50.0, AP_per_class=[40.0, 42.0], CorLoc_per_class=[50.0, None])
    content = dict(teacher=cls, det=det, det_control=dict(AP07=3.0, AP=3.0, CorLoc=10.0),
                   speed=dict(teacher_ms=20.0, student_ms=2.0, student_opencv_ms=0.5))
    content.update(files)
    (tmp_path / 'demo' / 'seed1' / 'eval').mkdir(parents=True)
    for name, value in content.items():
        (tmp_path / 'demo' / 'seed1' / 'eval' / (name + '.json')).write_text(json.dumps(value))
    return str(tmp_path / 'demo')


@pytest.mark.parametrize('files, lines', [
    (dict(teacher=[60.0]), ['seed1/eval/teacher.json: expected a JSON object, got [60.0]']),
    (dict(det=dict(AP07=40.0, AP=41.0)), ['seed1/eval/det.json: "CorLoc": missing',
                                          'seed1/eval/det.json: "AP_per_class": missing']),
    (dict(teacher=dict(mAP='60', AP=[50.0])), ['seed1/eval/teacher.json: "mAP": must be a number, got "60"']),
    (dict(speed=dict(teacher_ms=20.0, student_ms=0, student_opencv_ms=0.5)),
     ['seed1/eval/speed.json: "student_ms": must be a positive number, got 0']),
    (dict(student_kd_fitted=dict(threshold=0.5)), ['seed1/eval/student_kd_fitted.json: "threshold": missing, or '
                                                   'without a list of "values"']),
])
def test_mlic_report_names_the_file_and_the_key(tmp_path, capsys, files, lines):
    run = _mlic_run(tmp_path, **files)
    err = _report_error(capsys, run)
    for line in lines:
        assert os.path.join(run, line) in err, err


def test_mlic_checks_pass_on_good_files_and_leave_missing_ones_to_the_report(tmp_path):
    from caffe_mlic.commands.report import check_eval_files
    run = _mlic_run(tmp_path)
    check_eval_files(run)
    os.remove(os.path.join(run, 'seed1', 'eval', 'det.json'))
    check_eval_files(run)


def test_mlic_report_of_a_run_cut_short_names_the_missing_run_json(tmp_path, capsys):
    """An interrupted `make demo`: the evaluations are there, a stage's
    run.json is not (a TypeError traceback before); then one with a
    final_iteration that is not a number."""
    run = _mlic_run(tmp_path)
    err = _report_error(capsys, run)
    assert os.path.join(run, 'seed1', 'runs', 'teacher', 'run.json') + ': missing or unreadable' in err, err
    for stage in ('teacher', 'stage1', 'stage2', 'baseline'):
        os.makedirs(os.path.join(run, 'seed1', 'runs', stage))
        with open(os.path.join(run, 'seed1', 'runs', stage, 'run.json'), 'w') as f:
            json.dump(dict(final_iteration='x' if stage == 'stage1' else 10), f)
    err = _report_error(capsys, run)
    assert 'stage1/run.json: final_iteration is not an integer' in err, err


def _h5_caffemodel(path, layers):
    """A caffemodel.h5 as Caffe's Net::ToHDF5 writes one: /data/<layer>/<i>."""
    import h5py
    with h5py.File(path, 'w') as f:
        data = f.create_group('data')
        for name, arrays in layers.items():
            group = data.create_group(name)
            for i, a in enumerate(arrays):
                group.create_dataset(str(i), data=np.asarray(a, np.float32))
    return str(path)


def test_the_report_reads_hdf5_snapshots(tmp_path):
    """A run with snapshot_format: HDF5 (X.solverstate.h5 beside
    X.caffemodel.h5): the report looked for X.solverstate.h5's caffemodel at
    no path, and read .h5 weights as binary protobuf ("truncated or not a
    NetParameter")."""
    from caffe_mlic.report.fairness import last_caffemodel, teacher_frozen_check
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    start = _h5_caffemodel(tmp_path / 'init.caffemodel.h5', {'conv_wsd_1_1': [w, w[0]], 'fc8': [w]})
    (tmp_path / 'snap').mkdir()
    _h5_caffemodel(tmp_path / 'snap' / 's_iter_5.caffemodel.h5', {'conv_wsd_1_1': [w, w[0]], 'fc8': [w + 1]})
    info = dict(weights=[start], last_snapshot='snap/s_iter_5.solverstate.h5', final_iteration=5)
    assert last_caffemodel(str(tmp_path), info) == str(tmp_path / 'snap' / 's_iter_5.caffemodel.h5')
    assert last_caffemodel(str(tmp_path), dict(last_snapshot='s_iter_5.solverstate')) == \
        str(tmp_path / 's_iter_5.caffemodel')
    check = teacher_frozen_check(str(tmp_path), {'stage2': info})
    assert check['ok'] and check['detail'] == ('stage2: 1 teacher layers at iteration 5 equal %s/init.caffemodel.h5'
                                               % tmp_path.name), check
    _h5_caffemodel(tmp_path / 'snap' / 's_iter_5.caffemodel.h5', {'conv_wsd_1_1': [w * 2, w[0]]})
    check = teacher_frozen_check(str(tmp_path), {'stage2': info})
    assert not check['ok'] and '1 of 1 teacher layers moved: conv_wsd_1_1 (mean |w| after / before 2.000)' \
        in check['detail'], check
