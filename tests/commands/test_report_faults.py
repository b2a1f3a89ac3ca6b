"""`caffe-mlic report RUN` on evaluation JSON files of the wrong shape (a
list, a key missing, a value of the wrong type): one error naming the file
and the key, not a traceback. (Here beside the data tests: the report reads
what the data and evaluation commands write.)"""
import json
import os
import shutil

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
    (dict(evaluation=dict(OA='90')), ['eval/scasnet.json: "OA": must be a percentage (0 to 100) or null, got "90"']),
    (dict(evaluation=dict(F1=[90.0])),
     ['eval/scasnet.json: "F1": must be a list of percentages (0 to 100) or null, one per class (2), got [90.0]']),
    (dict(evaluation=dict(classes='road')), ['eval/scasnet.json: "classes": must be a non-empty list']),
    (dict(evaluation=dict(images=[{'prediction': 'a.png'}])), ['eval/scasnet.json: "images": must be a list of '
                                                                'objects with "prediction" and "ground_truth"']),
    (dict(evaluation=dict(eroded=True, erode_radius=2.5)),
     ['eval/scasnet.json: "erode_radius": must be a radius in pixels (an integer from 0 to 64), got 2.5']),
    (dict(run_info=dict(start_time=5)), ['train/run.json: "start_time": must be a time in ISO 8601 format, got 5']),
    # "True iterations" and "-31536000 s" reached results.json and report.html
    (dict(run_info=dict(final_iteration=True)), ['train/run.json: "final_iteration": must be an integer >= 0, '
                                                 'got true']),
    (dict(run_info=dict(final_iteration=-1)), ['train/run.json: "final_iteration": must be an integer >= 0, '
                                               'got -1']),
    (dict(run_info=dict(final_iteration=1e300)), ['train/run.json: "final_iteration": must be an integer >= 0, '
                                                  'got 1e+300']),
    (dict(run_info=dict(end_time='2023-01-01T00:00:00+0000')),
     ['train/run.json: "end_time": must be a time not before "start_time" ("2024-01-01T00:00:00+0000"), '
      'got "2023-01-01T00:00:00+0000"']),
    (dict(run_info=dict(end_time='2024-01-01T00:02:00')),     # (a TypeError traceback before)
     ['train/run.json: "end_time": must be a time in the same time zone form as "start_time"']),
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
    cls = dict(mAP=60.0, AP=[50.0, 70.0], classes=CLASSES)
    det = dict(AP07=40.0, AP=41.0, CorLoc=50.0, AP_per_class=[40.0, 42.0], CorLoc_per_class=[50.0, None],
               classes=CLASSES)
    content = dict(teacher=cls, det=det, det_control=dict(AP07=3.0, AP=3.0, CorLoc=10.0, classes=CLASSES),
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
    (dict(teacher=dict(mAP='60', AP=[50.0])), ['seed1/eval/teacher.json: "mAP": must be a percentage (0 to 100), got "60"']),
    (dict(speed=dict(teacher_ms=20.0, student_ms=0, student_opencv_ms=0.5)),
     ['seed1/eval/speed.json: "student_ms": must be a positive number of ms, got 0']),
    (dict(student_kd_fitted=dict(threshold=0.5)), ['seed1/eval/student_kd_fitted.json: "threshold": must be an '
                                                   'object whose "values" are numbers or null, one per class (2)']),
])
def test_mlic_report_names_the_file_and_the_key(tmp_path, capsys, files, lines):
    run = _mlic_run(tmp_path, **files)
    err = _report_error(capsys, run)
    for line in lines:
        assert os.path.join(run, line) in err, err


def test_mlic_checks_pass_on_good_files_and_leave_missing_ones_to_the_report(tmp_path):
    from caffe_mlic.report.results import check_inputs
    run = _mlic_run(tmp_path)
    check_inputs(run)
    os.remove(os.path.join(run, 'seed1', 'eval', 'det.json'))
    check_inputs(run)


def test_mlic_report_of_a_run_cut_short_names_the_missing_run_json(tmp_path, capsys):
    """An interrupted `make demo`: the evaluations are there, a stage's
    run.json is not (a TypeError traceback before); then one with a
    final_iteration that is not a number."""
    run = _mlic_run(tmp_path)
    err = _report_error(capsys, run)
    assert os.path.join(run, 'seed1', 'runs', 'teacher', 'run.json') + ': missing (the training run of stage ' \
        'teacher; did it run?)' in err, err
    # what is wrong with one that is there is named ("missing or unreadable" before: pass 37b M3)
    os.makedirs(os.path.join(run, 'seed1', 'runs', 'teacher'))
    teacher_json = os.path.join(run, 'seed1', 'runs', 'teacher', 'run.json')
    for text, problem in (('{"final_iteration": 10, "final_iteration": 20}', "the key 'final_iteration' is given twice"),
                          ('[10]', 'run.json: not a JSON object (the training run of stage teacher')):
        with open(teacher_json, 'w') as f:
            f.write(text)
        err = _report_error(capsys, run)
        assert problem in err and 'unreadable' not in err, err
    os.remove(teacher_json)
    os.rmdir(os.path.dirname(teacher_json))
    for stage in ('teacher', 'stage1', 'stage2', 'baseline'):
        os.makedirs(os.path.join(run, 'seed1', 'runs', stage))
        with open(os.path.join(run, 'seed1', 'runs', stage, 'run.json'), 'w') as f:
            json.dump(dict(final_iteration='x' if stage == 'stage1' else 10, weights=[]), f)
    err = _report_error(capsys, run)
    assert 'stage1/run.json: final_iteration is not an integer' in err, err
    with open(os.path.join(run, 'seed1', 'runs', 'stage1', 'run.json'), 'w') as f:
        json.dump(dict(final_iteration=-1, weights=[]), f)      # (read as -1 iterations before)
    err = _report_error(capsys, run)
    assert "stage1/run.json: final_iteration is not an integer >= 0, got -1" in err, err


@pytest.mark.parametrize('edit, message', [
    (dict(weights=5), "weights must be a list of paths, got 5"),
    (dict(weights=[5]), "weights must be a list of paths, got [5]"),
    (dict(weights=['a\0b']), "weights must be a list of paths, got ['a\\x00b']"),
    (dict(last_snapshot=5), "last_snapshot must be a path or null, got 5"),
])
def test_mlic_report_names_a_stage_run_json_value_of_another_kind(tmp_path, capsys, edit, message):
    """A stage's run.json with `weights` or `last_snapshot` of another
    kind gave TypeError or ValueError tracebacks (pass 29 S5; one without
    `weights`, a KeyError: the fairness check now says it cannot compare)."""
    run = _mlic_run(tmp_path)
    for stage in ('teacher', 'stage1', 'stage2', 'baseline'):
        os.makedirs(os.path.join(run, 'seed1', 'runs', stage))
        info = dict(final_iteration=10, weights=[], last_snapshot=None)
        if stage == 'stage2':
            info.update(edit)
            info = {k: v for k, v in info.items() if v is not None or k == 'last_snapshot'}
        with open(os.path.join(run, 'seed1', 'runs', stage, 'run.json'), 'w') as f:
            json.dump(info, f)
    err = _report_error(capsys, run)
    assert 'stage2/run.json: %s (the training run of stage stage2)' % message in err, err
    assert 'Traceback' not in err


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


def test_a_resumed_stage_is_compared_with_the_weights_its_run_started_from(tmp_path):
    """A run stopped and resumed records weights [] (it goes on from a
    state): teacher_frozen said "cannot compare (weights [] ...)" after a
    `run` was stopped in stage 1 and run again (pass 45c S2)."""
    from caffe_mlic.engine.logs import start_weights
    from caffe_mlic.report.fairness import teacher_frozen_check
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    start = _h5_caffemodel(tmp_path / 'init.caffemodel.h5', {'conv_wsd_1_1': [w, w[0]], 'fc8': [w]})
    (tmp_path / 'snap').mkdir()
    _h5_caffemodel(tmp_path / 'snap' / 's_iter_5.caffemodel.h5', {'conv_wsd_1_1': [w, w[0]], 'fc8': [w + 1]})
    fresh = dict(weights=[start], resumed_from=None, last_snapshot='snap/s_iter_2.solverstate.h5')
    resumed = dict(weights=[], resumed_from='snap/s_iter_2.solverstate.h5', previous=[fresh],
                   last_snapshot='snap/s_iter_5.solverstate.h5', final_iteration=5)
    assert start_weights(resumed) == [start] and start_weights(fresh) == [start]
    again = dict(resumed, resumed_from='snap/s_iter_4.solverstate.h5', previous=[fresh, dict(resumed, previous=None)])
    assert start_weights(again) == [start]
    # started over in the folder (a fresh start records no previous runs): its own weights
    assert start_weights(dict(weights=['other'], resumed_from=None, previous=[fresh])) == ['other']
    check = teacher_frozen_check(str(tmp_path), {'stage2': resumed})
    assert check['ok'], check


# ---------------------------------------------------------------- the comparison of ScasNet heads

ISPRS = ['impervious_surfaces', 'building', 'low_vegetation', 'tree', 'car', 'clutter']


def _heads_run(tmp_path, heads=('fcn', 'full'), seeds=(1,), eroded=False):
    """A `make demo-scasnet` comparison run without training: one 24 x 24
    test tile, its references and hard-pixel mask, and per seed and head a
    prediction scored by `eval seg --json` as the demo scores it (the eroded
    evaluation with the hard-pixel masks of a folder outside the run, as a
    copied run's are)."""
    run = tmp_path / 'heads'
    data = run / 'data'
    for folder in ('top', 'gts_for_participants', 'hard'):
        (data / folder).mkdir(parents=True)
    (tmp_path / 'masks').mkdir()
    gt = np.zeros((24, 24), np.uint8)
    gt[:, 12:] = 2
    gt[3:9, 3:9] = 4                                 # a car
    hard = np.zeros((24, 24), np.uint8)
    hard[14:20, 2:8] = 255
    rng = np.random.RandomState(0)
    cv2.imwrite(str(data / 'top' / 'a.png'), rng.randint(0, 255, (24, 24, 3)).astype(np.uint8))
    cv2.imwrite(str(data / 'gts_for_participants' / 'a.png'), gt)
    for folder in (data / 'hard', tmp_path / 'masks'):
        cv2.imwrite(str(folder / 'a.png'), hard)
    (data / 'train.txt').write_text('top/a.png gts_for_participants/a.png\n')
    (run / 'settings.json').write_text(json.dumps(dict(iters=2, mini=True, heads=list(heads), seeds=list(seeds))))
    for seed in seeds:
        for k, head in enumerate(heads):
            folder = run / ('seed%d' % seed) / head
            for sub in ('eval', 'pred/labels', 'pred/color'):
                (folder / sub).mkdir(parents=True)
            pred = gt.copy()
            pred[:k + 1] = 3
            cv2.imwrite(str(folder / 'pred' / 'labels' / 'a.png'), pred)
            cv2.imwrite(str(folder / 'pred' / 'color' / 'a.png'), cv2.cvtColor(pred * 40, cv2.COLOR_GRAY2BGR))
            common = ['eval', 'seg', '--pred', str(folder / 'pred' / 'labels'), '--gt',
                      str(data / 'gts_for_participants')]
            assert cli.main(common + ['--hard-masks', str(tmp_path / 'masks'), '--json',
                                      str(folder / 'eval' / 'scasnet.json')] + (['--eroded'] if eroded else [])) == 0
            assert cli.main(common + ['--json', str(folder / 'eval' / 'scasnet_full.json')]) == 0
    return str(run)


def _set(path, **values):
    with open(path) as f:
        data = json.load(f)
    data.update(values)
    with open(path, 'w') as f:
        json.dump(data, f)


def _eval(run, seed=1, head='fcn', full=False):
    return os.path.join(run, 'seed%d' % seed, head, 'eval', 'scasnet_full.json' if full else 'scasnet.json')


def test_a_good_comparison_of_heads_gives_its_report(tmp_path, capsys):
    run = _heads_run(tmp_path)
    capsys.readouterr()
    assert cli.main(['report', run]) == 0, capsys.readouterr().err
    results = json.loads(open(os.path.join(run, 'results.json')).read())
    assert results['classes'] == ISPRS and sorted(results['runs'][0]['variants']) == ['fcn', 'full']
    assert os.path.isfile(os.path.join(run, 'report', 'heads_a.png'))
    assert 'inputs' not in results


@pytest.mark.parametrize('where, values, line', [
    # S4a: a finite number no metric can be (OverflowError in mean_std before)
    ('eroded', dict(OA=1e308), '"OA": must be a percentage (0 to 100) or null, got 1e+308'),
    ('eroded', dict(mF1=-1e308), '"mF1": must be a percentage (0 to 100) or null, got -1e+308'),
    ('full', dict(boundary_F1=1e308), '"boundary_F1": must be a percentage (0 to 100) or null, got 1e+308'),
    ('full', dict(car_recall=-1e308), '"car_recall": must be a percentage (0 to 100) or null, got -1e+308'),
    # S8: the detail metrics are checked (shown as "-", or as 150 %, before)
    ('eroded', dict(hard_accuracy='x'), '"hard_accuracy": must be a percentage (0 to 100) or null, got "x"'),
    ('eroded', dict(hard_accuracy=150), '"hard_accuracy": must be a percentage (0 to 100) or null, got 150'),
    ('eroded', dict(hard_accuracy=-5), '"hard_accuracy": must be a percentage'),
    ('eroded', dict(hard_pixels='x'), '"hard_pixels": must be a number of pixels (an integer >= 0), got "x"'),
    ('eroded', dict(hard_pixels=-3), '"hard_pixels": must be a number of pixels (an integer >= 0), got -3'),
    ('eroded', dict(hard_pixels=2.5), '"hard_pixels": must be a number of pixels'),
    ('eroded', dict(F1=[100.0, None, 101.0, 50.0, 50.0, 50.0]), '"F1": must be a list of percentages'),
    ('eroded', dict(precision=[100.0, None, -1.0, 50.0, 50.0, 50.0]), '"precision": must be a list of percentages'),
    ('full', dict(boundary_F1='x'), '"boundary_F1": must be a percentage (0 to 100) or null, got "x"'),
    ('full', dict(boundary_F1=[1]), '"boundary_F1": must be a percentage (0 to 100) or null, got [1]'),
    ('full', dict(car_recall={}), '"car_recall": must be a percentage (0 to 100) or null, got {}'),
    ('full', dict(accuracy_by_distance={'a': 1}), '"accuracy_by_distance": must be a list of objects'),
    ('full', dict(accuracy_by_distance=[1, 2]), '"accuracy_by_distance": must be a list of objects'),
    ('full', dict(accuracy_by_distance=[{'from': 0, 'to': 2, 'accuracy': 200.0, 'pixels': 5}]),
     '"accuracy_by_distance": must be a list of objects'),
    ('full', dict(objects=[1]), '"objects": must be an object {class (names among the "classes"): {"found", '
                                '"total"'),
    ('full', dict(objects={'car': {'found': 3, 'total': 2, 'recall': 150.0}}), '"objects": must be an object'),
    ('eroded', dict(hard_mask={'from': 'reference', 'distance': 10 ** 9, 'classes': ['car']}),
     '"hard_mask": must be an object with "from": "files" and a "folder", or "from": "reference", a "distance" '
     '(px, 1 to 256)'),
    ('eroded', dict(objects={'auto': {'found': 1, 'total': 1, 'recall': 100.0}}), '"objects": must be an object'),
    ('eroded', dict(hard_accuracy='DEL'), '"hard_accuracy": missing'),
    # S4d: the erosion radius has eval seg's bound (a cv2 allocation error or a hang before)
    ('eroded', dict(eroded=True, erode_radius=10 ** 9),
     '"erode_radius": must be a radius in pixels (an integer from 0 to 64), got 1000000000'),
    ('eroded', dict(eroded=True, erode_radius=65), '"erode_radius": must be a radius in pixels'),
    ('eroded', dict(eroded=True, erode_radius=None), '"erode_radius": must be a radius in pixels'),
])
def test_heads_report_checks_every_value_it_reads(tmp_path, capsys, where, values, line):
    run = _heads_run(tmp_path)
    path = _eval(run, head='fcn', full=where == 'full')
    if values == dict(hard_accuracy='DEL'):
        data = json.loads(open(path).read())
        del data['hard_accuracy']
        open(path, 'w').write(json.dumps(data))
    else:
        _set(path, **values)
    before = open(os.path.join(run, 'settings.json')).read()
    err = _report_error(capsys, run)
    assert '%s: %s' % (path, line) in err, err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(run, 'results.json'))       # nothing written
    assert open(os.path.join(run, 'settings.json')).read() == before


def test_heads_report_takes_null_where_eval_seg_writes_it(tmp_path, capsys):
    run = _heads_run(tmp_path)
    _set(_eval(run), hard_accuracy=None, mF1=None, car_recall=None, F1=[None] * 6)
    _set(_eval(run, full=True), boundary_F1=None)
    capsys.readouterr()
    assert cli.main(['report', run]) == 0, capsys.readouterr().err


def test_heads_report_runs_an_evaluation_eroded_by_the_largest_radius(tmp_path, capsys):
    run = _heads_run(tmp_path, eroded=True)
    _set(_eval(run), erode_radius=64)
    assert cli.main(['report', run]) == 0, capsys.readouterr().err


def test_heads_report_names_two_files_whose_classes_differ(tmp_path, capsys):
    """A class renamed in one file only (the hard pixels from mask files,
    no object of that class): its numbers would be taken for another class's
    (exit 0 before)."""
    run = _heads_run(tmp_path, seeds=(1, 2))
    renamed = ISPRS[:5] + ['other']
    _set(_eval(run, seed=2, head='fcn'), classes=renamed)
    err = _report_error(capsys, run)
    assert '%s: "classes": %s... differ from those of %s' % (_eval(run, 2, 'fcn'), json.dumps(renamed)[:37],
                                                             _eval(run, 1, 'fcn')) in err, err
    assert len(err.strip().splitlines()) == 1


def test_heads_report_names_the_file_of_a_class_renamed_everywhere(tmp_path, capsys):
    """Every file's classes renamed alike, but its hard-pixel classes and
    objects still name 'car': exit 2 and no file named before ('unknown
    class car: the classes are ...')."""
    run = _heads_run(tmp_path)
    renamed = ISPRS[:4] + ['auto', 'clutter']
    for head in ('fcn', 'full'):
        for full in (False, True):
            _set(_eval(run, head=head, full=full), classes=renamed)
    err = _report_error(capsys, run)
    assert '%s: "objects": must be an object {class (names among the "classes")' % _eval(run, head='fcn') in err, err


@pytest.mark.parametrize('text, line', [
    ('[1]', "settings.json: expected the demo's settings (a JSON object), got [1]"),
    ('{"iters": "<b>600</b>"}', 'settings.json: "iters": must be an integer >= 1, got "<b>600</b>"'),
    ('{"mini": 1}', 'settings.json: "mini": must be true or false, got 1'),
])
def test_heads_report_checks_the_demo_settings(tmp_path, capsys, text, line):
    run = _heads_run(tmp_path)
    with open(os.path.join(run, 'settings.json'), 'w') as f:
        f.write(text)
    err = _report_error(capsys, run)
    assert os.path.join(run, line) in err, err


def test_single_net_report_checks_the_demo_settings(tmp_path, capsys):
    run = _scasnet_run(tmp_path)
    with open(os.path.join(run, 'settings.json'), 'w') as f:
        f.write('[1]')
    err = _report_error(capsys, run)
    assert os.path.join(run, "settings.json: expected the demo's settings (a JSON object), got [1]") in err, err


@pytest.mark.parametrize('content', [b'', b'\x89PNG\r\n\x1a\nnot a png at all', 'colour', 'size'])
def test_heads_report_names_a_bad_hard_pixel_mask(tmp_path, capsys, content):
    """RUN/data/hard/<tile>.png, read for the crop pictures: empty, corrupt, in
    colour or of another size is one line naming it (a cv2.error before)."""
    run = _heads_run(tmp_path)
    mask = os.path.join(run, 'data', 'hard', 'a.png')
    if content == 'colour':
        cv2.imwrite(mask, np.zeros((24, 24, 3), np.uint8))
    elif content == 'size':
        cv2.imwrite(mask, np.zeros((12, 24), np.uint8))
    else:
        with open(mask, 'wb') as f:
            f.write(content)
    err = _report_error(capsys, run)
    assert err.startswith('caffe-mlic report: %s: hard-pixel mask ' % mask), err
    assert len(err.strip().splitlines()) == 1


def test_heads_report_names_a_prediction_of_another_size(tmp_path, capsys):
    run = _heads_run(tmp_path)
    pred = os.path.join(run, 'seed1', 'full', 'pred', 'color', 'a.png')
    cv2.imwrite(pred, np.zeros((10, 24, 3), np.uint8))
    err = _report_error(capsys, run)
    assert '%s: is 24x10 (WxH) but its test tile' % pred in err, err


def test_mean_std_of_huge_finite_values_does_not_overflow():
    from caffe_mlic.report.results import mean_std
    mean, std = mean_std([1e308, 0.0])
    assert mean == pytest.approx(5e307) and std == pytest.approx(2 ** 0.5 * 5e307)
    mean, std = mean_std([-1.7e308, 1.7e308, None])
    assert mean == pytest.approx(0.0) and std == float('inf')        # beyond floats: inf, not an error
    assert mean_std([84.0, 85.0, 86.0]) == (85.0, 1.0)
    assert mean_std([None, float('nan')]) == (None, None)


# ---------------------------------------------------------------- outputs onto inputs

@pytest.mark.parametrize('output, target', [
    ('report.html', 'seed1/full/eval/scasnet.json'),
    ('results.json', 'settings.json'),
    ('report.html', 'data/train.txt'),
    ('report/heads_a.png', 'data/top/a.png'),
    ('report/heads_a.png', '../masks/a.png'),           # the hard-pixel masks the evaluation read
])
def test_heads_report_refuses_to_write_through_a_link_onto_an_input(tmp_path, capsys, output, target):
    run = _heads_run(tmp_path)
    os.makedirs(os.path.join(run, 'report'), exist_ok=True)
    link = os.path.join(run, output)
    os.symlink(os.path.relpath(os.path.join(run, target), os.path.dirname(link)), link)
    before = open(os.path.join(run, output), 'rb').read()
    assert cli.main(['report', run]) == 2
    err = capsys.readouterr().err
    assert '%s is an input of this command: writing it would overwrite it' % os.path.join(run, output) in err, err
    assert open(os.path.join(run, output), 'rb').read() == before
    assert not os.path.exists(os.path.join(run, 'results.json')) or output == 'results.json'


def test_heads_report_refuses_a_hard_link_onto_an_input_and_one_output_onto_another(tmp_path, capsys):
    run = _heads_run(tmp_path)
    os.link(_eval(run, head='fcn', full=True), os.path.join(run, 'results.json'))
    assert cli.main(['report', run]) == 2
    assert 'is an input of this command' in capsys.readouterr().err
    os.remove(os.path.join(run, 'results.json'))
    open(os.path.join(run, 'results.json'), 'w').close()
    os.symlink('results.json', os.path.join(run, 'report.html'))
    assert cli.main(['report', run]) == 2
    assert 'one output of the report would overwrite the other' in capsys.readouterr().err


def test_heads_report_rerun_and_a_linked_pictures_folder_are_not_refused(tmp_path, capsys):
    run = _heads_run(tmp_path)
    assert cli.main(['report', run]) == 0
    assert cli.main(['report', run]) == 0                   # its own outputs are not inputs
    os.rename(os.path.join(run, 'report'), os.path.join(run, 'pictures'))
    os.symlink('pictures', os.path.join(run, 'report'))
    assert cli.main(['report', run]) == 0, capsys.readouterr().err


def test_single_net_report_refuses_to_write_through_a_link_onto_an_input(tmp_path, capsys):
    run = _scasnet_run(tmp_path)
    os.symlink('eval/scasnet.json', os.path.join(run, 'report.html'))
    before = open(os.path.join(run, 'eval', 'scasnet.json')).read()
    assert cli.main(['report', run]) == 2
    assert 'report.html is an input of this command' in capsys.readouterr().err
    assert open(os.path.join(run, 'eval', 'scasnet.json')).read() == before


# ---------------------------------------------------------------- a comparison must be matched (N7)

def _move(run, old, new):
    os.rename(os.path.join(run, old), os.path.join(run, new))


@pytest.mark.parametrize('change, parts', [
    # a head renamed in one seed (the full column and its claims vanished, exit 0, before)
    (lambda run: _move(run, 'seed1/full', 'seed1/fulx'),
     ['seed 1 lacks head full (no seed1/full/eval/scasnet.json)',
      'every seed (1, 2) must hold every head (fcn, full) (the seeds and heads']),
    (lambda run: shutil.rmtree(os.path.join(run, 'seed2', 'fcn')), ['seed 2 lacks head fcn']),
    (lambda run: shutil.rmtree(os.path.join(run, 'seed2')), ['no folder for seed 2']),
    # no settings.json: every seed folder and every head scored in any seed
    (lambda run: (os.remove(os.path.join(run, 'settings.json')),
                  shutil.rmtree(os.path.join(run, 'seed2', 'full'))),
     ['seed 2 lacks head full', 'every seed (1, 2) must hold every head (fcn, full)']),
    (lambda run: (os.remove(os.path.join(run, 'settings.json')), os.mkdir(os.path.join(run, 'seed3'))),
     ['seed 3 lacks heads fcn, full']),
    (lambda run: (os.remove(os.path.join(run, 'settings.json')),
                  shutil.copytree(os.path.join(run, 'seed1', 'fcn'), os.path.join(run, 'seed2', 'cascade'))),
     ['seed 1 lacks head cascade (no seed1/cascade/eval/scasnet.json)', 'every head (fcn, cascade, full)']),
])
def test_heads_report_refuses_a_comparison_that_is_not_matched(tmp_path, capsys, change, parts):
    run = _heads_run(tmp_path, seeds=(1, 2))
    change(run)
    err = _report_error(capsys, run)
    assert err.startswith('caffe-mlic report: %s: not a matched comparison: ' % run), err
    for part in parts:
        assert part in err, err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.exists(os.path.join(run, 'results.json'))


def test_a_seed_folder_under_another_spelling_is_refused(tmp_path, capsys):
    """seed001 stood for seed 1, and whichever came first in directory order
    was reported (pass 24 S6)."""
    run = _heads_run(tmp_path, seeds=(1, 2))
    shutil.copytree(os.path.join(run, 'seed1'), os.path.join(run, 'seed001'))
    err = _report_error(capsys, run)
    assert err == ('caffe-mlic report: %s: the folder seed001 is not a seed folder the runs write (seed1 is): it would '
                   'stand for that seed; rename or move it\n' % run), err
    assert not os.path.exists(os.path.join(run, 'results.json'))


def test_heads_report_leaves_out_folders_of_seeds_and_heads_the_run_does_not_list(tmp_path, capsys):
    """An earlier run into the folder with more seeds or heads, resumed with
    fewer (DEMO_RESUME=1 VARIANTS=...): settings.json says what this run
    compares; the other folders are named as left out, not reported."""
    run = _heads_run(tmp_path, seeds=(1, 2))
    assert cli.main(['report', run]) == 0
    with open(os.path.join(run, 'results.json')) as f:
        before = json.load(f)
    shutil.copytree(os.path.join(run, 'seed2'), os.path.join(run, 'seed7'))
    shutil.copytree(os.path.join(run, 'seed1', 'fcn'), os.path.join(run, 'seed1', 'cascade'))
    capsys.readouterr()
    assert cli.main(['report', run]) == 0
    out = capsys.readouterr().out
    assert 'left out (folders of seeds or heads this run does not list): seed1/cascade, seed7' in out
    with open(os.path.join(run, 'results.json')) as f:
        after = json.load(f)
    assert after.pop('left_out') == ['seed1/cascade', 'seed7']
    assert after == before
    with open(os.path.join(run, 'report.html')) as f:
        assert 'Left out (folders of seeds or heads this run does not list): seed1/cascade, seed7.' in f.read()



@pytest.mark.parametrize('values, line', [
    (dict(seeds=[1, 1]), '"seeds": must be a non-empty list of distinct integers >= 0, got [1, 1]'),
    (dict(seeds='1 2'), '"seeds": must be a non-empty list of distinct integers >= 0'),
    (dict(heads=['fcn', 'bogus']), '"heads": must be a non-empty list of distinct heads among fcn, parallel'),
    (dict(heads=[]), '"heads": must be a non-empty list'),
])
def test_heads_report_checks_the_seeds_and_heads_of_the_settings(tmp_path, capsys, values, line):
    run = _heads_run(tmp_path)
    _set(os.path.join(run, 'settings.json'), **values)
    err = _report_error(capsys, run)
    assert os.path.join(run, 'settings.json') + ': ' + line in err, err


def test_heads_report_of_a_matched_run_without_settings(tmp_path, capsys):
    run = _heads_run(tmp_path, seeds=(1, 2))
    os.remove(os.path.join(run, 'settings.json'))
    assert cli.main(['report', run]) == 0, capsys.readouterr().err
    results = json.loads(open(os.path.join(run, 'results.json')).read())
    assert [r['seed'] for r in results['runs']] == [1, 2] and results['summary']['heads'] == ['fcn', 'full']


# ---------------------------------------------------------------- all or nothing (N8)

def _snapshot(run):
    """{path relative to RUN: bytes} of the report's outputs, and every hidden entry of RUN."""
    out = {}
    for base, dirs, files in os.walk(run):
        for name in files + dirs:
            path = os.path.join(base, name)
            rel = os.path.relpath(path, run)
            if name.startswith('.') or rel in ('results.json', 'report.html', 'report') \
                    or rel.startswith('report' + os.sep):
                out[rel] = open(path, 'rb').read() if os.path.isfile(path) else None
    return out


def test_heads_report_with_a_folder_at_an_output_writes_nothing(tmp_path, capsys):
    """A folder at report.html: exit 1 but results.json and report/*.png
    written before."""
    run = _heads_run(tmp_path)
    os.mkdir(os.path.join(run, 'report.html'))
    err = _report_error(capsys, run)
    assert '%s is a folder, where the report writes this file: move it away' % (
        os.path.join(run, 'report.html')) in err, err
    assert _snapshot(run) == {'report.html': None}


def test_heads_report_with_a_fifo_at_an_output_writes_nothing(tmp_path, capsys):
    """A FIFO at results.json: the report blocked opening it, with its stop
    signals deferred until the report was whole, so only SIGKILL ended it
    (pass 37b S3). Refused before anything is written."""
    run = _heads_run(tmp_path)
    os.mkfifo(os.path.join(run, 'results.json'))
    err = _report_error(capsys, run)
    assert '%s is a FIFO, where the report writes this file: move it away' % (
        os.path.join(run, 'results.json')) in err, err
    assert _snapshot(run) == {'results.json': None}


def _full_disk_at(monkeypatch, name):
    """Writing the output ``name`` fails as on a full disk (ENOSPC), however it is written."""
    import errno
    from caffe_mlic import fileio, report
    real = fileio.atomic_files

    def atomic_files(paths, *args, **kwargs):
        if any(os.path.basename(p) == name for p in paths):
            raise OSError(errno.ENOSPC, 'No space left on device', [p for p in paths if p.endswith(name)][0])
        return real(paths, *args, **kwargs)
    monkeypatch.setattr(fileio, 'atomic_files', atomic_files)
    monkeypatch.setattr(report, 'atomic_files', atomic_files, raising=False)


@pytest.mark.parametrize('name', ['report.html', 'results.json', 'heads_a.png'])
def test_heads_report_keeps_the_previous_report_after_an_error(tmp_path, capsys, monkeypatch, name):
    """A full disk while writing one output: the previous report stays as
    it was (new pictures and results.json beside the old page before), no
    temp file or staging folder is left."""
    run = _heads_run(tmp_path)
    assert cli.main(['report', run]) == 0
    before = _snapshot(run)
    assert set(before) == {'results.json', 'report.html', 'report', os.path.join('report', 'heads_a.png')}
    _set(_eval(run, head='fcn'), mF1=12.5)                                 # a new report would differ
    pred = os.path.join(run, 'seed1', 'fcn', 'pred', 'color', 'a.png')
    cv2.imwrite(pred, np.full((24, 24, 3), 200, np.uint8))
    _full_disk_at(monkeypatch, name)
    err = _report_error(capsys, run)
    assert 'No space left on device' in err, err
    assert _snapshot(run) == before
    monkeypatch.undo()
    assert cli.main(['report', run]) == 0
    assert _snapshot(run) != before and set(_snapshot(run)) == set(before)


def test_single_net_report_with_a_folder_at_an_output_writes_nothing(tmp_path, capsys):
    run = _scasnet_run(tmp_path)
    for folder in ('pred/color', 'pred/overlay'):
        os.makedirs(os.path.join(run, folder))
    image = np.zeros((8, 8, 3), np.uint8)
    for path in ('data/top/a.png', 'pred/color/a.png', 'pred/overlay/a.jpg'):
        cv2.imwrite(os.path.join(run, path), image)
    os.mkdir(os.path.join(run, 'report.html'))
    err = _report_error(capsys, run)
    assert '%s is a folder, where the report writes this file: move it away' % (
        os.path.join(run, 'report.html')) in err, err
    assert _snapshot(run) == {'report.html': None}
    os.rmdir(os.path.join(run, 'report.html'))
    assert cli.main(['report', run]) == 0, capsys.readouterr().err
    assert set(_snapshot(run)) == {'results.json', 'report.html', 'report', os.path.join('report', 'tile_a.png')}


# ---------------------------------------------------------------- an MLIC run, whole (R2, R3 of pass 7)

C3 = ['circle', 'triangle', 'square']


def _mlic_whole(tmp_path, monkeypatch):
    """A complete MLIC run folder of one seed and two test images, whose
    report is written: the fairness checks and the learned scale (which
    need trained nets) stubbed."""
    from caffe_mlic.report import results
    monkeypatch.setattr(results.fairness, 'check_seed', lambda *a: [dict(name='stub', ok=True, detail='')])
    monkeypatch.setattr(results, 'student_temperature_scale', lambda *a: None)
    run = tmp_path / 'whole'
    lists, seed = run / 'data' / 'lists', run / 'seed1'
    for folder in (lists, seed / 'eval', seed / 'det' / 'json', seed / 'nets', tmp_path / 'images'):
        folder.mkdir(parents=True, exist_ok=True)
    images = []
    for k in range(2):
        images.append(str(tmp_path / 'images' / ('%06d.png' % k)))
        cv2.imwrite(images[-1], np.full((32, 32, 3), 60 * k, np.uint8))
        region = dict(box=[2.0, 3.0, 20.0, 25.0], **{'class': 'circle'}, score=0.5)
        (seed / 'det' / 'json' / ('%06d.json' % k)).write_text(json.dumps(dict(top_regions=[region])))
    gt = dict(classes=C3, images=[dict(path=p, file=p, labels=C3[:k + 1]) for k, p in enumerate(images)])
    for split in ('train', 'test'):
        (lists / (split + '.gt.json')).write_text(json.dumps(gt))
        (lists / (split + '.txt')).write_text('')
    cls = dict(mAP=60.0, AP=[50.0, 70.0, 60.0], CP=50.0, classes=C3)
    det = dict(AP07=40.0, AP=41.0, CorLoc=50.0, AP_per_class=[40.0, 42.0, None], CorLoc_per_class=[50.0, None, 1.0],
               classes=C3)
    files = dict(teacher=cls, student_kd=cls, student_baseline=dict(cls, mAP=55.0), soft_targets_val=cls, det=det,
                 det_control=dict(AP07=3.0, AP=3.0, CorLoc=10.0, classes=C3),
                 speed=dict(teacher_ms=20.0, student_ms=2.0, student_opencv_ms=0.5))
    for name, value in files.items():
        (seed / 'eval' / (name + '.json')).write_text(json.dumps(value))
    scores = np.array([[0.9, 0.1, 0.2], [0.3, 0.8, 0.4]], np.float32)
    for name in ('student_kd', 'student_baseline', 'soft_targets_val'):
        np.save(str(seed / 'eval' / (name + '.npy')), scores)
    np.save(str(seed / 'eval' / 'soft_targets_val.labels.npy'), np.array([[1, 0, 0], [1, 1, 0]], np.int8))
    (seed / 'nets' / 'deploy.json').write_text(json.dumps(dict(teacher_size=96, student_size=64)))
    for stage in ('teacher', 'stage1', 'stage2', 'baseline'):
        (seed / 'runs' / stage).mkdir(parents=True)
        (seed / 'runs' / stage / 'run.json').write_text(json.dumps(dict(final_iteration=10)))
        (seed / 'runs' / stage / 'log.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in (
            dict(phase='train', iteration=i, loss=2.0 - i / 10, smoothed_loss=2.0 - i / 10) for i in range(10))))
    return str(run)


def test_a_whole_mlic_run_gives_its_report(tmp_path, capsys, monkeypatch):
    run = _mlic_whole(tmp_path, monkeypatch)
    assert cli.main(['report', run]) == 0, capsys.readouterr().err
    assert set(_snapshot(run)) == {'results.json', 'report.html', 'report'} | {
        os.path.join('report', name) for name in ('kd_gain_per_class.png', 'training_curves.png', 'example_0.png',
                                                  'example_1.png')}


def _eval_path(run, name):
    return os.path.join(run, 'seed1', 'eval', name)


def _edit_json(run, name, **values):
    _set(_eval_path(run, name), **values)


def _save(run, name, array, **kwargs):
    os.remove(_eval_path(run, name))
    with open(_eval_path(run, name), 'wb') as f:
        np.save(f, array, **kwargs)


def _replace(run, name, make):
    os.remove(_eval_path(run, name))
    make(_eval_path(run, name))


FIFO = lambda run: _replace(run, 'student_kd.npy', os.mkfifo)  # noqa: E731
NPY_NOT_READ = "cannot read it: not a regular file"
NOT_NPY = "(expected a .npy array of numbers, numpy.save's format)"


def _huge_header(path):
    """152 bytes whose header claims 10^9 x 3 float64 (np.load allocated 22 GB)."""
    import pathlib
    path = pathlib.Path(path)
    np.save(path, np.zeros((1, 3)))
    data = path.read_bytes().replace(b"(1, 3), }" + b" " * 9, b"(1000000000, 3), }")
    path.write_bytes(data)


@pytest.mark.parametrize('change, line', [
    # the scores and labels (.npy): tracebacks, and a hang on a FIFO, before
    (lambda run: _save(run, 'student_kd.npy', np.zeros((0, 3))),
     'student_kd.npy: must be an array of 2 x 3 (images x classes), got shape (0, 3)'),
    (lambda run: _save(run, 'student_kd.npy', np.zeros(1)),
     'student_kd.npy: must be an array of 2 x 3 (images x classes), got shape (1,)'),
    (lambda run: _save(run, 'student_kd.npy', np.zeros((1, 3))),
     'student_kd.npy: must be an array of 2 x 3 (images x classes), got shape (1, 3)'),
    (lambda run: _save(run, 'student_baseline.npy', np.zeros((2, 2))),
     'student_baseline.npy: must be an array of 2 x 3 (images x classes), got shape (2, 2)'),
    (lambda run: _save(run, 'student_kd.npy', np.array([[0.5, np.nan, 0.1]] * 2)),
     'student_kd.npy: holds numbers that are not finite'),
    (lambda run: _save(run, 'student_kd.npy', np.array([[None] * 3] * 2), allow_pickle=True),
     'student_kd.npy: a .npy array of Python objects, not numbers ' + NOT_NPY),
    (lambda run: _save(run, 'student_kd.npy', np.array([['a'] * 3] * 2)),
     'student_kd.npy: a .npy array of <U1, not numbers ' + NOT_NPY),
    (lambda run: _replace(run, 'student_kd.npy', lambda p: open(p, 'w').write('hello')),
     'student_kd.npy: not a .npy file (it is text) ' + NOT_NPY),
    (lambda run: _replace(run, 'student_kd.npy', _huge_header),
     'student_kd.npy: a truncated .npy file: its header says 1000000000x3 of float64 (24000000000 bytes), '
     'the file holds 24 ' + NOT_NPY),
    (lambda run: _replace(run, 'student_kd.npy', lambda p: os.symlink('/dev/zero', p)),
     'student_kd.npy: ' + NPY_NOT_READ),
    (FIFO, 'student_kd.npy: ' + NPY_NOT_READ),
    (lambda run: _save(run, 'soft_targets_val.labels.npy', np.zeros(5)),
     'soft_targets_val.labels.npy: must be an array of 2 x 3 (as the scores %s), got shape (5,)'),
    (lambda run: _save(run, 'soft_targets_val.npy', np.zeros((2, 4))),
     'soft_targets_val.npy: must be an array of N x 3 (images x classes), got shape (2, 4)'),
    # the eval JSONs: "classes", per-class lists, percentages
    (lambda run: _edit_json(run, 'student_kd.json', classes=None), 'student_kd.json: "classes": must be a non-empty'),
    (lambda run: _edit_json(run, 'student_kd.json', classes=['circle', 'square', 'triangle']),
     'student_kd.json: "classes": ["circle", "square", "triangle"] differ from those of %s'),
    (lambda run: _edit_json(run, 'det_control.json', classes=['0', '1', '2']),
     'det_control.json: "classes": ["0", "1", "2"] differ from those of %s'),
    (lambda run: _edit_json(run, 'student_kd.json', AP=[1.0]),
     'student_kd.json: "AP": must be a list of percentages (0 to 100) or null, one per class (3), got [1.0]'),
    (lambda run: _edit_json(run, 'student_baseline.json', AP=[1.0, 2.0, 3.0, 4.0, 5.0]),
     'student_baseline.json: "AP": must be a list of percentages (0 to 100) or null, one per class (3)'),
    (lambda run: _edit_json(run, 'det.json', CorLoc_per_class=[1.0, 2.0]), 'det.json: "CorLoc_per_class": must be'),
    (lambda run: _edit_json(run, 'teacher.json', mAP=150), 'teacher.json: "mAP": must be a percentage (0 to 100), '
                                                          'got 150'),
    (lambda run: _edit_json(run, 'teacher.json', CF1=-3), 'teacher.json: "CF1": must be a percentage'),
    (lambda run: _edit_json(run, 'det_control.json', CorLoc=100.5), 'det_control.json: "CorLoc": must be a percentage'),
    (lambda run: _edit_json(run, 'soft_targets_val.json', mAP=None), 'soft_targets_val.json: "mAP": must be a'),
    # speed: 1e-320 passed, then the report was written and table() failed on the infinite speed-up
    (lambda run: _edit_json(run, 'speed.json', student_ms=1e-320),
     'speed.json: "teacher_ms" / "student_ms": the speed-up 20 / 9.99989e-321 is not a finite number > 0'),
    (lambda run: _edit_json(run, 'speed.json', student_opencv_ms=-1), 'speed.json: "student_opencv_ms": must be a '
                                                                      'positive number of ms, got -1'),
    # the ground truth the classes are compared with
    (lambda run: _set(os.path.join(run, 'data', 'lists', 'train.gt.json'), classes=['circle', 'triangle', 'cube']),
     'train.gt.json: "classes": ["circle", "triangle", "cube"] differ from those of %s'),
])
def test_mlic_report_checks_every_input_before_writing(tmp_path, capsys, monkeypatch, change, line):
    """Pass 7, R2: a damaged MLIC run folder gave tracebacks, hung on a FIFO,
    wrote the report before failing, or was accepted with wrong numbers.
    Now: one line naming the file and the key, and the previous report as
    it was."""
    import signal
    run = _mlic_whole(tmp_path, monkeypatch)
    assert cli.main(['report', run]) == 0
    before = _snapshot(run)
    change(run)

    def hung(*_):
        raise AssertionError('the report hangs')
    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        err = _report_error(capsys, run)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    line = line % (_eval_path(run, 'soft_targets_val.npy') if 'as the scores' in line
                   else os.path.join(run, 'data', 'lists', 'test.gt.json')) if '%s' in line else line
    assert err.count('\n') == 1 and line in err, err
    assert _snapshot(run) == before


def test_mlic_report_names_a_bad_top_region(tmp_path, capsys, monkeypatch):
    run = _mlic_whole(tmp_path, monkeypatch)
    path = os.path.join(run, 'seed1', 'det', 'json', '000001.json')
    with open(path, 'w') as f:
        json.dump(dict(top_regions=[dict(box=[1, 2, 3], score=0.5, **{'class': 'circle'})]), f)
    err = _report_error(capsys, run)
    assert '%s: "top_regions": must be a list of objects' % path in err, err
    assert _snapshot(run) == {}


# ---------------------------------------------------------------- a report stopped or killed (R3 of pass 7)

# `caffe-mlic report RUN` in a child process, with _mlic_whole's stubs,
# that prints "staged" and waits once its staging folder holds a picture
CHILD = '''
import sys, time
from caffe_mlic import cli
from caffe_mlic.report import page, results
results.fairness.check_seed = lambda *a: [dict(name='stub', ok=True, detail='')]
results.student_temperature_scale = lambda *a: None
real = page.figures.training_curves

def stalled(*args):
    real(*args)
    print('staged', flush=True)
    time.sleep(120)
page.figures.training_curves = stalled
sys.exit(cli.main(['report', sys.argv[1]]))
'''


def _staging_folders(run):
    return [name for name in os.listdir(run) if name.startswith('.report.')]


def _stopped_child(run, signum):
    import signal
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, '-c', CHILD, run], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline() == 'staged\n', proc.communicate()
        (name,) = _staging_folders(run)
        assert name.startswith('.report.%d-' % proc.pid) and os.listdir(os.path.join(run, name)), name
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, err


@pytest.mark.parametrize('sent', ['SIGTERM', 'SIGINT', 'SIGHUP'])
def test_a_stopped_report_removes_its_staging_folder(tmp_path, capsys, monkeypatch, sent):
    """Pass 7, R3: SIGTERM left RUN/.report.*.tmp/ (with pictures) behind."""
    import signal
    run = _mlic_whole(tmp_path, monkeypatch)
    assert cli.main(['report', run]) == 0
    before = _snapshot(run)
    code, err = _stopped_child(run, getattr(signal, sent))
    assert code == 128 + getattr(signal, sent), err
    assert err == ('caffe-mlic report: interrupted\n' if sent == 'SIGINT' else
                   'caffe-mlic report: stopped by %s (no half-written file or staging folder is left)\n' % sent)
    assert _staging_folders(run) == [] and _snapshot(run) == before


def test_the_next_report_sweeps_the_staging_folder_of_a_killed_one(tmp_path, capsys, monkeypatch):
    """SIGKILL leaves the staging folder; the next report in the run folder
    removes it, and those of dead runs made by hand, but not one of a live
    run nor a folder it did not name."""
    import signal
    import subprocess
    from caffe_mlic.processes import start_time as _start_time
    run = _mlic_whole(tmp_path, monkeypatch)
    code, _ = _stopped_child(run, signal.SIGKILL)
    assert code == -signal.SIGKILL and len(_staging_folders(run)) == 1
    dead = subprocess.Popen(['true'])
    dead.wait()
    os.makedirs(os.path.join(run, '.report.%d-%d-abc_12.tmp' % (dead.pid, 12345), 'x.png'))
    live = '.report.%d-%d-live.tmp' % (os.getpid(), _start_time(os.getpid()))
    kept = [live, '.report.x.tmp', '.report.%d-0-nostart.tmp' % dead.pid]
    for name in kept:
        os.mkdir(os.path.join(run, name))
    assert cli.main(['report', run]) == 0, capsys.readouterr().err
    assert sorted(_staging_folders(run)) == sorted(kept)


def test_scasnet_report_is_stopped_as_report_is(tmp_path, capsys, monkeypatch):
    """`scasnet report` goes through the same stoppable runner: SIGTERM
    unwinds the report (its staging folder goes) and exits 143."""
    import signal
    import time
    from caffe_mlic.commands import scasnet

    def write(args):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        raise AssertionError('SIGTERM did not stop the report')
    monkeypatch.setattr(scasnet, 'write_report', write)
    assert cli.main(['scasnet', 'report', str(tmp_path)]) == 143
    assert 'stopped by SIGTERM' in capsys.readouterr().err


def test_a_signal_while_the_report_is_put_in_place_waits_for_the_end(tmp_path, capsys, monkeypatch):
    """SIGTERM while the pictures were being moved left new pictures beside
    the old page: now it is delivered once the page and results are in place."""
    import signal
    import caffe_mlic.report as report_module
    import pathlib
    run = pathlib.Path(_mlic_whole(tmp_path, monkeypatch))
    assert cli.main(['report', str(run)]) == 0
    capsys.readouterr()
    os.remove(run / 'results.json')
    os.remove(run / 'report.html')
    real_replace, sent = os.replace, []

    def replace(src, dst):
        if not sent and os.path.dirname(os.fspath(dst)) == str(run / 'report'):   # a picture put in place
            sent.append(dst)
            os.kill(os.getpid(), signal.SIGTERM)
        real_replace(src, dst)
    monkeypatch.setattr(report_module.os, 'replace', replace)
    assert cli.main(['report', str(run)]) == 143
    monkeypatch.setattr(report_module.os, 'replace', real_replace)
    err = capsys.readouterr().err
    assert sent and 'stopped by SIGTERM' in err, (sent, err)
    assert (run / 'results.json').exists() and (run / 'report.html').exists()
    assert _staging_folders(run) == []


def test_boolean_scores_are_read_as_numbers(tmp_path, capsys, monkeypatch):
    """A bool .npy (eval cls takes it) was a TypeError traceback in the figures."""
    run = _mlic_whole(tmp_path, monkeypatch)
    _save(run, 'student_kd.npy', np.array([[True, False, True], [False, True, False]]))
    assert cli.main(['report', str(run)]) == 0, capsys.readouterr().err


def test_the_report_goes_by_the_system_a_run_recorded(tmp_path, capsys):
    """A `run` folder says its system (.stages/system): `scasnet report` of an
    MLIC run and the report of a ScasNet run with nothing evaluated yet say
    so, not "eval/scasnet.json: cannot read" or an MLIC file missing."""
    from caffe_mlic.pipeline import runner
    mlic, scas = tmp_path / 'mlic', tmp_path / 'scas'
    for folder, system in ((mlic, 'mlic'), (scas, 'scasnet')):
        (folder / 'seed1').mkdir(parents=True)
        runner._record_system(str(folder), system)      # (as `run` writes it; report.layout reads it)
    assert cli.main(['scasnet', 'report', str(mlic)]) == 1
    assert ('%s: an MLIC-KD-WSD run, not a ScasNet one: its report is `caffe-mlic report %s`' % (mlic, mlic)
            in capsys.readouterr().err)
    for argv in (['report', str(scas)], ['scasnet', 'report', str(scas)]):
        assert cli.main(argv) == 1
        assert '%s: a ScasNet run with no evaluated net yet' % scas in capsys.readouterr().err


def test_a_picture_that_fails_is_named_where_it_would_go_not_in_the_staging_folder(tmp_path):
    """A chart matplotlib could not draw was named in RUN/.report.<pid>...tmp,
    a folder gone by the time the line is read (pass 50b M2)."""
    from caffe_mlic.errors import RunError
    from caffe_mlic.report import pictures_dir, staging
    with pytest.raises(RunError) as e:
        with staging(str(tmp_path)) as folder:
            raise RunError('matplotlib could not draw %s (ValueError: dpi must be positive)'
                           % os.path.join(folder, 'kd_gain_per_class.png'))
    assert str(e.value) == 'matplotlib could not draw %s (ValueError: dpi must be positive)' % os.path.join(
        pictures_dir(str(tmp_path)), 'kd_gain_per_class.png')


def test_an_example_of_an_image_far_wider_than_tall_is_drawn(tmp_path):
    """A 1 x 2000 px test image was scaled to 0 px high for its example
    picture: OpenCV's resize threw (a traceback in report)."""
    from caffe_mlic.report.figures import example
    cv2.imwrite(str(tmp_path / 'thin.png'), np.full((1, 2000, 3), 128, np.uint8))
    example(str(tmp_path / 'thin.png'), [{'box': [0, 0, 100, 0], 'class': 'cat', 'score': 0.9}], ['cat'],
            [('student', np.array([0.9, 0.1]))], ['cat', 'dog'], str(tmp_path / 'example.png'))
    assert cv2.imread(str(tmp_path / 'example.png')).shape[1] == 336
