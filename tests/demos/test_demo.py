"""The miniature demo (DEMO_MINI=1: 1 seed, few images and iterations) run
twice from scratch through tools/demo.py: well-formed results.json and
report, the same numbers on the second run, the report rendered by headless
Chromium, and the fairness checks failing when a rule is broken. It does
not assert the gain (the miniature is too small to show it)."""
import html
import json
import os
import shutil
import signal

import numpy as np
import pytest

from caffe_mlic.report import fairness, layout
from caffe_mlic.report.results import collect, summarise
from tests.demos import refused, start_demo, start_interrupted_demo
from tests.chromium import assert_not_blank, needs_chromium, referenced_images, screenshot

CLS_KEYS = {'mAP', 'AP', 'CP', 'CR', 'CF1', 'OP', 'OR', 'OF1', 'CP_top3', 'CR_top3', 'CF1_top3',
            'OP_top3', 'OR_top3', 'OF1_top3', 'classes', 'threshold'}


# Where the second demo is stopped, and how: the machine stopping while the
# seed trains stage 1, then a SIGTERM while the study's runs train beside the
# ablation rows; each time the demo is started again (DEMO_RESUME=1).
STOPS = [('.stages/seed1/stage1.started.json', signal.SIGKILL),
         ('.stages/seed1/study_teacher_T1/stage2.started.json', signal.SIGTERM)]


@pytest.fixture(scope='module')
def _demos(tmp_path_factory):
    """Both miniatures started at once, side by side (each runs on one core):
    the demo, and the same demo again with the ablation rows (ABLATION=1) and
    the stage-2 study (STUDY=1), stopped twice on its way (STOPS) and
    resumed: it must end with the numbers of the first."""
    folders = [tmp_path_factory.mktemp(name) / 'run' for name in ('demo', 'demo_again')]
    runs = [start_demo('demo.py', folders[0], SEEDS='1'),
            start_interrupted_demo('demo.py', folders[1], STOPS, SEEDS='1', ABLATION='1', STUDY='1')]
    yield list(zip(folders, runs))
    for run in runs:
        run.stop()


@pytest.fixture(scope='module')
def mini(_demos):
    folder, run = _demos[0]
    return folder, run.output(1200)


@pytest.fixture(scope='module')
def mini_again(_demos):
    folder, run = _demos[1]
    return folder, run.output(1200)


def _results(folder):
    with open(folder / 'results.json') as f:
        return json.load(f)


def test_results_json_is_well_formed(mini):
    folder, output = mini
    results = _results(folder)
    assert set(results) >= {'runs', 'summary', 'fair'}
    (run,) = results['runs']
    assert run['seed'] == 1
    assert set(run['teacher']) >= {'mAP', 'CorLoc', 'det_AP07', 'det_AP', 'control_det_AP'}
    for student in ('student_kd', 'student_baseline'):
        assert set(run[student]) == CLS_KEYS
        assert len(run[student]['AP']) == 6 and 0 <= run[student]['mAP'] <= 100
    assert set(run['speed']) == {'teacher_ms', 'student_ms', 'student_opencv_ms', 'speedup'}
    assert all(v > 0 for v in run['speed'].values())
    assert run['iterations'] == {'teacher': 24, 'stage1': 12, 'stage2': 12, 'baseline': 24}
    summary = results['summary']
    assert summary['seeds'] == [1]
    assert summary['student_kd.mAP'] == {'mean': run['student_kd']['mAP'], 'std': 0.0,
                                         'values': [run['student_kd']['mAP']]}
    assert summary['kd_gain']['values'] == [run['student_kd']['mAP'] - run['student_baseline']['mAP']]
    # the table printed at the end is the one in results.json
    assert 'student with KD' in output and ('%.1f' % run['student_kd']['mAP']) in output
    assert str(folder / 'report.html') in output


def test_numbers_come_from_the_files_the_commands_wrote(mini):
    folder, _ = mini
    from caffe_mlic.evaluation.classification import multilabel_metrics
    run = _results(folder)['runs'][0]
    seed_dir = layout.seed_dirs(str(folder))[1]
    for name in layout.STUDENTS:
        scores = np.load(layout.eval_file(seed_dir, name, '.npy'))
        labels = np.load(layout.eval_file(seed_dir, name, '.labels.npy'))
        assert scores.shape == (27, 6)                          # the test split of the miniature
        assert multilabel_metrics(scores, labels)['mAP'] == pytest.approx(run[name]['mAP'])
    with open(os.path.join(seed_dir, 'eval', 'det_control.json')) as f:
        assert json.load(f)['AP'] == run['teacher']['control_det_AP']
    # detect writes the teacher's top regions, best first
    any_json = sorted(os.listdir(os.path.join(seed_dir, 'det', 'json')))[0]
    with open(os.path.join(seed_dir, 'det', 'json', any_json)) as f:
        regions = json.load(f)['top_regions']
    assert 1 <= len(regions) <= 10
    assert [r['score'] for r in regions] == sorted((r['score'] for r in regions), reverse=True)


def test_stopped_twice_and_resumed_it_ends_with_the_uninterrupted_numbers(mini, mini_again, _demos):
    """The second demo was killed (its whole process group) while stage 1
    trained and stopped by SIGTERM while the study trained; each time run
    again, `caffe-mlic run` went on from the stages that were done."""
    assert _demos[1][1].codes == [-signal.SIGKILL, 128 + signal.SIGTERM]
    output = mini_again[1]
    assert 'stage seed1/stage1: cut short, resuming it' in output
    assert 'stage seed1/teacher: done\n' in output      # not trained again
    assert 'stage seed1/study_teacher_T1/stage2: cut short, resuming it' in output
    first, second = _results(mini[0]), _results(mini_again[0])
    for a, b in zip(first['runs'], second['runs']):
        a.pop('speed'), b.pop('speed')                # times differ; everything measured does not
        b.pop('ablation'), b.pop('study')             # only the second run has these
        b['fitted'] = {k: v for k, v in b['fitted'].items() if not k.startswith('ablation_')}
        for run in (a, b):
            for check in run['fairness']:
                check['detail'] = check['detail'].replace(str(mini[0]), '').replace(str(mini_again[0]), '')
        assert a == b


def test_ablation_rows(mini_again):
    """ABLATION=1: stage 1 only (then labels for stage 2's iterations) and
    stage 2 only, each evaluated on the test split and in the table."""
    folder, output = mini_again
    results = _results(folder)
    (run,) = results['runs']
    assert set(run['ablation']) == set(layout.ABLATIONS)
    seed_dir = layout.seed_dirs(str(folder))[1]
    for name in layout.ABLATIONS:
        assert set(run['ablation'][name]) == CLS_KEYS
        with open(os.path.join(seed_dir, 'runs', 'ablation_' + name, 'run.json')) as f:
            assert json.load(f)['final_iteration'] == run['iterations']['stage2']
        stat = results['summary']['ablation.%s.mAP' % name]
        assert stat['values'] == [run['ablation'][name]['mAP']]
        label = layout.ABLATION_LABELS[name]
        assert ('%s' % label) in output and ('%.1f' % stat['mean']) in output
        with open(folder / 'report.html') as f:
            assert 'ablation: ' + html.escape(label) in f.read()
    with open(os.path.join(seed_dir, 'runs', 'ablation_stage1_only', 'solver.prototxt')) as f:
        text = f.read()
    assert '--set max_iter=12' in text and 'max_iter: 12' in text


def test_ablation_rows_start_where_their_controls_start(mini_again):
    """Matched controls: stage 1 only trains on labels from stage 2's own
    start; labels only (short) from stage 2 only's start; both with the
    solver of stage 2 (its learning rate, length, step and seed)."""
    folder, _ = mini_again
    seed_dir = layout.seed_dirs(str(folder))[1]

    def run_json(name):
        with open(os.path.join(seed_dir, 'runs', name, 'run.json')) as f:
            return json.load(f)
    for row, start in (('ablation_stage1_only', 'stage2'), ('ablation_labels_short', 'stage2_only')):
        assert run_json(row)['weights'] == [os.path.join(seed_dir, 'init', start + '.caffemodel')]
    assert run_json('ablation_stage2_only')['weights'] == [os.path.join(seed_dir, 'init',
                                                                        'stage2_only.caffemodel')]
    from caffe_mlic.caffe import prototxt
    solver = lambda name: fairness._solver_fields(  # noqa: E731
        prototxt.read_solver(os.path.join(seed_dir, 'runs', name, 'solver.prototxt')))
    for row in ('ablation_stage1_only', 'ablation_labels_short'):
        assert solver(row) == solver('stage2') == solver('ablation_stage2_only')
        assert run_json(row)['max_iter'] == run_json('stage2')['max_iter']


def test_paired_differences_are_the_per_seed_differences(mini_again):
    folder, output = mini_again
    results = _results(folder)
    (run,) = results['runs']
    paired = {p['name']: p for p in results['summary']['paired']}
    assert len(paired) == len(layout.COMPARISONS)
    for name, row, control in layout.COMPARISONS:
        get = lambda key: (run[key] if '.' not in key else run['ablation'][key.split('.')[1]])['mAP']  # noqa
        assert paired[name]['values'] == [pytest.approx(get(row) - get(control))]
        assert '  %s: %+.1f' % (name, paired[name]['mean']) in output
    with open(folder / 'report.html') as f:
        page = f.read()
    assert 'matched control' in page and html.escape(layout.COMPARISONS[-1][0]) in page


def test_soft_targets_and_student_scale_are_reported(mini):
    folder, _ = mini
    (run,) = _results(folder)['runs']
    seed_dir = layout.seed_dirs(str(folder))[1]
    soft = run['soft_targets']
    scores = np.load(layout.eval_file(seed_dir, layout.SOFT_TARGETS, '.npy'))
    labels = np.load(layout.eval_file(seed_dir, layout.SOFT_TARGETS, '.labels.npy'))
    assert scores.shape[1] == 6 and ((scores >= 0) & (scores <= 1)).all()
    for c in range(6):
        if (labels[:, c] > 0).any():
            assert soft['mean_with'][c] == pytest.approx(scores[labels[:, c] > 0, c].mean())
        if (labels[:, c] == 0).any():
            assert soft['mean_without'][c] == pytest.approx(scores[labels[:, c] == 0, c].mean())
    scale = run['student_temperature_scale']
    assert len(scale['per_class']) == 6 and scale['min'] <= scale['mean'] <= scale['max']
    assert scale['per_class'] != [0.2] * 6           # it is learned (lr_mult 10) from 1/T = 0.2
    with open(folder / 'report.html') as f:
        assert 'What stage 2 distils' in f.read()


def test_fairness_fails_when_the_teacher_moved(mini, tmp_path):
    """The check that would have caught stage 2 erasing the teacher."""
    from caffe.proto import caffe_pb2
    seed = _tampered(mini, tmp_path)
    model = seed / 'snapshots' / 'kd' / 'stage2_iter_12.caffemodel'
    net = caffe_pb2.NetParameter()
    net.ParseFromString(model.read_bytes())
    layer, = [l for l in net.layer if l.name == 'conv_wsd_1_1']
    layer.blobs[0].data[0] += 1e-3
    model.write_bytes(net.SerializeToString())
    check = _check(seed, mini, 'teacher_frozen')
    assert not check['ok'] and 'stage2: 1 of 9 teacher layers moved: conv_wsd_1_1' in check['detail']
    assert 'stage1: 7 teacher layers at iteration 12 equal init/stage1.caffemodel' in check['detail']


def test_fairness_checks_pass_on_the_demo_except_convergence(mini):
    folder, _ = mini
    checks = {c['name']: c for c in _results(folder)['runs'][0]['fairness']}
    assert set(checks) == {'baseline_budget', 'same_training_data', 'same_solver', 'same_student',
                           'same_initialisation', 'test_split_unused', 'baseline_converged',
                           'teacher_frozen'}
    # 24 iterations do not converge; everything else holds by construction
    assert all(c['ok'] for name, c in checks.items() if name != 'baseline_converged'), checks


def _tampered(mini, tmp_path):
    folder = tmp_path / 'run'
    shutil.copytree(mini[0] / 'seed1', folder / 'seed1', symlinks=True)
    return folder / 'seed1'


def _check(seed_dir, mini, name):
    test_list = layout.lists(str(mini[0]), 'test')
    return {c['name']: c for c in fairness.check_seed(str(seed_dir), test_list)}[name]


def _edit(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text
    with open(path, 'w') as f:
        f.write(text.replace(old, new, 1))


def test_fairness_fails_on_a_shorter_baseline(mini, tmp_path):
    seed = _tampered(mini, tmp_path)
    run_json = seed / 'runs' / 'baseline' / 'run.json'
    info = json.loads(run_json.read_text())
    info['final_iteration'] = 23
    run_json.write_text(json.dumps(info))
    check = _check(seed, mini, 'baseline_budget')
    assert not check['ok'] and 'stage 1 + stage 2 = 12 + 12 = 24' in check['detail']


def test_fairness_fails_on_other_training_data(mini, tmp_path):
    seed = _tampered(mini, tmp_path)
    _edit(seed / 'runs' / 'baseline' / 'net.prototxt', '"batch_size": 8', '"batch_size": 4')
    check = _check(seed, mini, 'same_training_data')
    assert not check['ok'] and 'batch_size' in check['detail']


def test_fairness_fails_on_another_learning_rate(mini, tmp_path):
    seed = _tampered(mini, tmp_path)
    _edit(seed / 'runs' / 'baseline' / 'solver.prototxt', 'base_lr: 0.001', 'base_lr: 0.0001')
    assert not _check(seed, mini, 'same_solver')['ok']


def test_fairness_fails_when_the_test_split_is_read(mini, tmp_path):
    seed = _tampered(mini, tmp_path)
    val = layout.lists(str(mini[0]), 'val')
    _edit(seed / 'runs' / 'baseline' / 'net.prototxt', val, layout.lists(str(mini[0]), 'test'))
    assert not _check(seed, mini, 'test_split_unused')['ok']


def test_fairness_fails_on_other_initial_weights(mini, tmp_path):
    seed = _tampered(mini, tmp_path)
    run_json = seed / 'runs' / 'baseline' / 'run.json'
    info = json.loads(run_json.read_text())
    info['weights'] = [str(seed / 'snapshots' / 'kd' / 'baseline_iter_24.caffemodel')]
    run_json.write_text(json.dumps(info))
    check = _check(seed, mini, 'same_initialisation')
    assert not check['ok'] and 'conv1_1' in check['detail']


def test_convergence_check_by_hand(tmp_path):
    log = tmp_path / 'log.jsonl'

    def curve(points):
        log.write_text(''.join(json.dumps(dict(phase='test', iteration=i, test_mAP=m)) + '\n'
                               for i, m in points))
        return fairness.converged_check(str(log), points[-1][0])
    # last quarter (75, 100): mean 44.5 against the best before it, 44.0 at 50
    ok = curve([(0, 10.0), (25, 40.0), (50, 44.0), (75, 45.5), (100, 43.5)])
    assert ok['ok'] and '44.5 (mean of 2 points) against 44.0' in ok['detail'] and '+0.5' in ok['detail']
    # still rising: mean 47.5 against 44.0
    assert not curve([(0, 10.0), (25, 40.0), (50, 44.0), (75, 46.0), (100, 49.0)])['ok']
    assert not curve([(100, 44.0)])['ok']                               # no point before the window


def test_summary_mean_and_std_by_hand():
    runs = [dict(seed=s, student_kd=dict(mAP=kd, AP=[kd, None]), student_baseline=dict(mAP=b, AP=[b, 1.0]))
            for s, kd, b in ((1, 50.0, 45.0), (2, 54.0, 47.0), (3, 52.0, 43.0))]
    summary = summarise(runs)
    assert summary['student_kd.mAP']['mean'] == pytest.approx(52.0)
    assert summary['student_kd.mAP']['std'] == pytest.approx(2.0)      # sample std of 50, 54, 52
    assert summary['kd_gain']['values'] == [5.0, 7.0, 9.0] and summary['kd_gain']['every_seed']
    assert summary['kd_gain']['std'] == pytest.approx(2.0)
    assert summary['student_kd.AP']['mean'] == [pytest.approx(52.0), None]


def test_report_of_a_folder_without_seeds_is_an_error(tmp_path):
    from caffe_mlic.errors import InputError
    with pytest.raises(InputError, match='no seed<S> folders'):
        collect(str(tmp_path))


@needs_chromium
def test_report_renders_in_chromium(mini, tmp_path):
    import cv2
    folder, _ = mini
    page = (folder / 'report.html').read_text()
    images = referenced_images(page)
    assert len(images) >= 8                      # gain chart, curves, six test images
    for rel in images:
        img = cv2.imread(str(folder / rel))
        assert img is not None and img.size > 0, rel
    assert_not_blank(screenshot(folder / 'report.html', tmp_path))


def test_report_strict_fails_on_a_failed_check(mini, tmp_path, capsys):
    from caffe_mlic import cli
    folder = tmp_path / 'run'
    shutil.copytree(mini[0], folder, symlinks=True)
    # a baseline still rising at its end (whether the miniature's own curve
    # looks flat depends on the machine's floating point)
    log = folder / 'seed1' / 'runs' / 'baseline' / 'log.jsonl'
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    for r in records:
        if r.get('phase') == 'test':
            r['test_mAP'] = 10.0 + r['iteration']
    log.write_text(''.join(json.dumps(r) + '\n' for r in records))
    assert cli.main(['report', str(folder)]) == 0
    out = capsys.readouterr().out
    assert 'fairness check failed: seed 1: baseline_converged' in out
    assert cli.main(['report', str(folder), '--strict']) == 1
    assert 'fairness check(s) failed' in capsys.readouterr().err


def test_fairness_fails_on_another_student_layer(mini, tmp_path):
    seed = _tampered(mini, tmp_path)
    _edit(seed / 'runs' / 'baseline' / 'net.prototxt', 'num_output: 64', 'num_output: 32')
    check = _check(seed, mini, 'same_student')
    assert not check['ok'] and 'conv4_1' in check['detail']


def test_thresholds_are_fitted_on_val_and_applied_to_test(mini):
    """Every model's CP .. OF1 at per-class thresholds chosen on the
    validation split and applied unchanged to the test scores."""
    from caffe_mlic.evaluation.classification import fit_thresholds, multilabel_metrics
    folder, _ = mini
    (run,) = _results(folder)['runs']
    seed_dir = layout.seed_dirs(str(folder))[1]
    assert set(run['fitted']) == {'teacher', 'student_kd', 'student_baseline'}
    for name in run['fitted']:
        with open(layout.eval_file(seed_dir, name + '_thresholds')) as f:
            fitted = json.load(f)
        assert fitted['fitted_on'].endswith('blob %s' % ('image_level_score' if name == 'teacher'
                                                           else 'fc8_mscoco'))
        scores = np.load(layout.eval_file(seed_dir, name, '.npy'))
        labels = np.load(layout.eval_file(seed_dir, name, '.labels.npy'))
        expected = multilabel_metrics(scores, labels, threshold=np.array(fitted['thresholds']))
        assert run['fitted'][name]['CF1'] == pytest.approx(expected['CF1'])
        assert run['fitted'][name]['thresholds'] == fitted['thresholds']
        # chosen on val, not on test: fitting on the test scores gives other thresholds
        assert fitted['thresholds'] != fit_thresholds(scores, labels).tolist()
    assert run['teacher']['CF1'] is not None
    with open(folder / 'report.html') as f:
        assert 'per class (val)' in f.read()


def test_stage2_study_runs_each_variant_from_stage2s_start(mini_again):
    """STUDY=1: stage 2 again with one setting changed, from init/stage2, scored on val."""
    folder, output = mini_again
    (run,) = _results(folder)['runs']
    seed_dir = layout.seed_dirs(str(folder))[1]
    study = run['study']
    variants = {'teacher_T1', 'scale_lr1', 'scale_fixed', 'soft_weight_half', 'stage2_x2'}
    stage1_variants = {'stage1_half', 'kd_python'}
    assert set(study) == variants | stage1_variants | {'release', 'labels_after_stage1', 'soft_targets_T1'}
    from caffe_mlic.caffe.weights import read_weights
    stage2 = read_weights(os.path.join(seed_dir, 'init', 'stage2.caffemodel'))
    for name in variants:
        with open(os.path.join(seed_dir, 'runs', 'study_' + name, 'run.json')) as f:
            info = json.load(f)
        init = os.path.join(seed_dir, 'init', 'study_%s.caffemodel' % name)
        assert info['weights'] == [init]
        assert info['final_iteration'] == (24 if name == 'stage2_x2' else 12)
        assert 0 <= study[name]['val_mAP'] <= 100
        # stage 2's start, but for the teacher's temperature (held in the caffemodel)
        start = read_weights(init)
        assert set(start) == set(stage2)
        for layer in stage2:
            same = all(np.array_equal(a, b) for a, b in zip(stage2[layer], start[layer]))
            assert same == (name != 'teacher_T1' or not layer.startswith('temp_branch')), (name, layer)
        if name == 'teacher_T1':
            assert all((start[layer][0] == 1.0).all() for layer in start if layer.startswith('temp_branch'))
    # the settings chosen before the teacher was frozen: each variant's own stage 1, then stage 2
    for name, stage1_iters in (('stage1_half', 6), ('kd_python', 12)):
        with open(os.path.join(seed_dir, 'runs', 'stage1_of_' + name, 'run.json')) as f:
            assert json.load(f)['final_iteration'] == stage1_iters
        with open(os.path.join(seed_dir, 'runs', 'study_' + name, 'run.json')) as f:
            assert json.load(f)['final_iteration'] == 12
        assert 0 <= study[name]['val_mAP'] <= 100
    python_net = open(os.path.join(seed_dir, 'study', 'kd_python', 'kd', 'train_stage1.prototxt')).read()
    assert 'FeatureMimicLoss' in python_net and '"top_k": 16' in python_net
    assert study['kd_python']['scale'] is None           # the fixed-T soft loss has no learned scale
    assert study['soft_targets_T1']['mean_with'] != run['soft_targets']['mean_with']
    # the fixed scale stays at 1/5; the learned ones move
    assert study['scale_fixed']['scale']['per_class'] == [pytest.approx(0.2)] * 6
    assert study['release']['scale']['per_class'] != study['scale_fixed']['scale']['per_class']
    net = open(os.path.join(seed_dir, 'study', 'teacher_T1', 'kd', 'train_stage2.prototxt')).read()
    assert 'value: 1.0' in net and 'value: 2.0' not in net         # the teacher's 1/T scales
    assert 'stage 2 study' in output and '  scale_fixed' in output
    with open(folder / 'report.html') as f:
        page = f.read()
    assert html.escape(layout.STUDY_LABELS['teacher_T1']) in page and 'T = 1' in page


@pytest.mark.parametrize('env, message', [
    (dict(SEEDS='x'), "demo: SEEDS must be a whole number in 1..100, got 'x'"),
    (dict(SEEDS='1 2'), "demo: SEEDS must be a whole number in 1..100, got '1 2'"),
    (dict(DEMO_JOBS='0'), "demo: DEMO_JOBS must be a whole number in 1..64, got '0'"),
])
def test_bad_settings_stop_the_demo_in_one_line_before_it_removes_a_run(tmp_path, env, message):
    assert refused('demo.py', tmp_path / 'run', **env) == message
