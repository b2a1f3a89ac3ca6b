"""RUN/results.json: every number of a demo run, gathered from the files the
commands wrote (see caffe_mlic.report.layout), nothing recomputed:

    {"runs": [{"seed", "teacher": {"mAP", "CorLoc", "det_AP07", "det_AP",
               "control_det_AP", "control_CorLoc"},
               "student_kd": {every key of `eval cls --json`},
               "student_baseline": {...}, "ablation": {"stage1_only", "stage2_only":
               {...}} (with ABLATION=1), "speed": {"teacher_ms", "student_ms",
               "student_opencv_ms", "speedup"}, "iterations": {stage: n},
               "student_temperature_scale": {"min", "mean", "max", "per_class"}
               (the stage-2 student's learned 1/T on its logits, at the end),
               "soft_targets": {"mAP", "AP", "mean_with", "mean_without"} (per class,
               the teacher's soft targets on the validation split),
               "fitted": {model: {"CP" .. "OF1_top3", "thresholds"}} (the test split
               at per-class thresholds chosen on the validation split),
               "fairness": [{"name", "ok", "detail"}]}, ...],
     "summary": {"seeds": [...], "<path.to.number>": {"mean", "std", "values"},
                 "paired": [{"name", "row", "control", "mean", "std", "values"}]},
     "fair": true when every check of every seed passed}

"std" is the sample standard deviation (ddof 1; 0 with one seed). Per-class
lists (AP, ...) are summarised element by element.
"""
import math
import os

from caffe_mlic.errors import InputError, Problem, raise_if_problems
from caffe_mlic.fileio import read_json
from caffe_mlic.evaluation.classification import OVERALL_KEYS as COUNT_KEYS  # and their _top3 forms
from caffe_mlic.report import fairness, is_number, layout
from caffe_mlic.report.checks import PERCENT, is_percent, key_problems, shown

TEACHER_DET_KEYS = (('det_AP07', 'AP07'), ('det_AP', 'AP'), ('CorLoc', 'CorLoc'))


def _read(path):
    if not os.path.exists(path):
        raise InputError('%s: missing (the demo step that writes it did not run)' % path)
    return read_json(path)


def seed_result(seed, seed_dir, test_list):
    from caffe_mlic.engine import logs
    teacher_cls = _read(layout.eval_file(seed_dir, 'teacher'))
    det = _read(layout.eval_file(seed_dir, 'det'))
    control = _read(layout.eval_file(seed_dir, 'det_control'))
    speed = _read(layout.eval_file(seed_dir, 'speed'))
    teacher = dict(mAP=teacher_cls['mAP'], AP=teacher_cls['AP'])
    teacher.update((k, v) for k, v in teacher_cls.items() if k.startswith(COUNT_KEYS))
    teacher.update((key, det[src]) for key, src in TEACHER_DET_KEYS)
    teacher.update(control_det_AP=control['AP'], control_det_AP07=control['AP07'],
                   control_CorLoc=control['CorLoc'], det_AP_per_class=det['AP_per_class'],
                   CorLoc_per_class=det['CorLoc_per_class'])
    iterations = {}
    for stage in layout.STAGES:
        run_json = os.path.join(layout.stage_run(seed_dir, stage), logs.RUN_JSON)
        if not os.path.lexists(run_json):
            raise InputError('%s: missing (the training run of stage %s; did it run?)' % (run_json, stage))
        info = read_json(run_json)      # (what is wrong with it named: a repeated key, not JSON, ...)
        final = info.get('final_iteration') if isinstance(info, dict) else None
        if not isinstance(final, int) or isinstance(final, bool) or final < 0:
            raise InputError('%s: %s (the training run of stage %s; did it finish?)' % (
                run_json, 'not a JSON object' if not isinstance(info, dict) else
                'final_iteration is not an integer >= 0, got %s' % _shown(final), stage))
        wrong = _run_json_kind_problems(info)
        if wrong:
            raise InputError('%s: %s (the training run of stage %s)' % (
                os.path.join(layout.stage_run(seed_dir, stage), logs.RUN_JSON), '; '.join(wrong), stage))
        iterations[stage] = final
    result = dict(
        seed=seed, teacher=teacher,
        student_kd=_read(layout.eval_file(seed_dir, 'student_kd')),
        student_baseline=_read(layout.eval_file(seed_dir, 'student_baseline')),
        speed=dict(teacher_ms=speed['teacher_ms'], student_ms=speed['student_ms'],
                   student_opencv_ms=speed['student_opencv_ms'],
                   speedup=speed['teacher_ms'] / speed['student_ms']),
        iterations=iterations,
        fairness=fairness.check_seed(seed_dir, test_list))
    # `make demo ABLATION=1`: the students of the paper's ablation rows
    ablation = {name: _read(path) for name, path in
                ((name, layout.eval_file(seed_dir, 'ablation_' + name)) for name in layout.ABLATIONS)
                if os.path.isfile(path)}
    if ablation:
        result['ablation'] = ablation
    fitted = {name: _fitted(path) for name, path in
              ((name, layout.eval_file(seed_dir, name + '_fitted')) for name in layout.FITTED)
              if os.path.isfile(path)}
    if fitted:
        result['fitted'] = fitted
    scale = student_temperature_scale(seed_dir)
    if scale:
        result['student_temperature_scale'] = scale
    soft = soft_targets(seed_dir)
    if soft:
        result['soft_targets'] = soft
    study = stage2_study(seed_dir)
    if study:
        result['study'] = study
    return result


def _a_path(value):
    return isinstance(value, str) and value != '' and '\0' not in value


def _run_json_kind_problems(info):
    """What in a stage's run.json the report reads is missing or of another
    kind: `weights` (a list of paths) and `last_snapshot` (a path or null)."""
    problems = []     # (no `weights` at all: the fairness check says it cannot compare)
    if 'weights' in info and (not isinstance(info['weights'], list) or not all(_a_path(w) for w in info['weights'])):
        problems.append('weights must be a list of paths, got %s' % _shown(info['weights']))
    if info.get('last_snapshot') is not None and not _a_path(info['last_snapshot']):
        problems.append('last_snapshot must be a path or null, got %s' % _shown(info['last_snapshot']))
    return problems


def _shown(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + '...'


def _last_val_map(folder):
    from caffe_mlic.engine.logs import test_points
    path = os.path.join(folder, 'log.jsonl')
    tests = test_points(path) if os.path.isfile(path) else []
    return tests[-1][1] if tests else None


def stage2_study(seed_dir):
    """`make demo STUDY=1`: {variant: {"val_mAP", "scale"}} of the stage-2
    variants, beside the release's stage 2 ("release") and, with ABLATION=1,
    stage 1 then labels ("labels_after_stage1"), all from the same start and
    scored on the validation split at their last iteration; the soft targets
    at T = 1 ("soft_targets_T1"). None without STUDY=1."""
    runs = os.path.join(seed_dir, 'runs')
    names = sorted(d[len('study_'):] for d in os.listdir(runs) if d.startswith('study_')) \
        if os.path.isdir(runs) else []
    if not names:
        return None
    out = {name: dict(val_mAP=_last_val_map(os.path.join(runs, 'study_' + name)),
                      scale=student_temperature_scale(seed_dir, 'study_' + name))
           for name in names}
    out['release'] = dict(val_mAP=_last_val_map(layout.stage_run(seed_dir, 'stage2')),
                          scale=student_temperature_scale(seed_dir))
    labels = os.path.join(runs, 'ablation_stage1_only')
    if os.path.isdir(labels):
        out['labels_after_stage1'] = dict(val_mAP=_last_val_map(labels))
    soft = soft_targets(seed_dir, layout.SOFT_TARGETS + '_T1')
    if soft:
        out['soft_targets_T1'] = soft
    return out


def _fitted(path):
    """The counting metrics of an eval at per-class thresholds fitted on the
    validation split (eval/<model>_fitted.json), and the thresholds."""
    metrics = _read(path)
    keep = [k for k in metrics if k.startswith(COUNT_KEYS)]
    return dict({k: metrics[k] for k in keep}, thresholds=metrics['threshold']['values'])


def student_temperature_scale(seed_dir, run='stage2'):
    """The stage-2 student's learnable Scale on its logits (the release's
    1/T, init 1 / student_temperature) at the last snapshot of ``run``: min,
    mean, max and per class; None when the net has none (kd_losses 'python')."""
    import numpy as np
    from caffe_mlic.caffe import prototxt
    from caffe_mlic.engine import logs
    from caffe_mlic.caffe.weights import read_weights
    folder = os.path.join(seed_dir, 'runs', run)
    net = prototxt.read_net(os.path.join(folder, 'net.prototxt'))
    names = [layer.name for layer in net.layer if layer.type == 'Scale' and layer.name.endswith('_soft')]
    model = fairness.last_caffemodel(seed_dir, logs.read_run_json(folder))
    if len(names) != 1 or not model or not os.path.isfile(model):
        return None
    values = np.asarray(read_weights(model)[names[0]][0], np.float64).ravel()
    return dict(min=float(values.min()), mean=float(values.mean()), max=float(values.max()),
                per_class=values.tolist())


def soft_targets(seed_dir, name=layout.SOFT_TARGETS):
    """What stage 2 distils, per class on the validation split: the teacher's
    soft target's mean over the images with the class and over those
    without, and its AP as a classifier; None if the demo did not save it."""
    import numpy as np
    path = layout.eval_file(seed_dir, name)
    if not os.path.isfile(path):
        return None
    metrics = _read(path)
    scores = read_array(layout.eval_file(seed_dir, name, '.npy'))
    labels = read_array(layout.eval_file(seed_dir, name, '.labels.npy'))

    def mean_where(mask):
        return [float(scores[mask[:, c], c].mean()) if mask[:, c].any() else None
                for c in range(scores.shape[1])]
    return dict(mAP=metrics['mAP'], AP=metrics['AP'], mean_with=mean_where(labels > 0),
                mean_without=mean_where(labels == 0))


def flatten_numbers(value, prefix, out):
    """Flatten numbers (and lists of numbers) of nested dicts into out[path]."""
    if isinstance(value, dict):
        for k, v in value.items():
            flatten_numbers(v, prefix + (k,), out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out['.'.join(prefix)] = value
    elif isinstance(value, list) and value and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value):
        out['.'.join(prefix)] = value


def mean_std(values):
    """(mean, sample std) of the finite numbers of ``values`` ((None, None)
    when there is none). Values beyond 1e150 are scaled first, so that no
    finite value overflows the squares (an OverflowError); the spread of
    values near the float limit can still be inf."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    scale = max(abs(v) for v in vals)
    scale = scale if scale > 1e150 else 1.0
    vals = [v / scale for v in vals]
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean * scale, std * scale


def summarise(runs):
    flat = []
    for run in runs:
        out = {}
        flatten_numbers({k: v for k, v in run.items() if k not in ('seed', 'fairness')}, (), out)
        flat.append(out)
    summary = {'seeds': [run['seed'] for run in runs]}
    for key in flat[0] if flat else ():
        values = [f.get(key) for f in flat]
        if isinstance(values[0], list):
            columns = list(zip(*[v for v in values if isinstance(v, list)]))
            stats = [mean_std(c) for c in columns]
            summary[key] = dict(mean=[m for m, _ in stats], std=[s for _, s in stats])
        else:
            mean, std = mean_std(values)
            summary[key] = dict(mean=mean, std=std, values=values)
    if runs:
        gains = [r['student_kd']['mAP'] - r['student_baseline']['mAP'] for r in runs]
        mean, std = mean_std(gains)
        summary['kd_gain'] = dict(mean=mean, std=std, values=gains,
                                  every_seed=all(g > 0 for g in gains))
        summary['paired'] = paired_differences(runs)
        study = study_differences(runs)
        if study:
            summary['study_paired'] = study
    return summary


def study_differences(runs):
    """STUDY=1: {variant: [its validation mAP - the release stage 2's, a value
    a seed]} for the variants every seed has."""
    if not all(r.get('study') for r in runs):
        return {}
    names = set.intersection(*(set(r['study']) for r in runs)) - {'release', 'soft_targets_T1'}
    out = {}
    for name in sorted(names):
        pairs = [(r['study'][name].get('val_mAP'), r['study']['release'].get('val_mAP')) for r in runs]
        if all(a is not None and b is not None for a, b in pairs):
            out[name] = [a - b for a, b in pairs]
    return out


def _map_of(run, key):
    value = run
    for part in key.split('.'):
        value = value.get(part) if isinstance(value, dict) else None
    return value.get('mAP') if isinstance(value, dict) else None


def paired_differences(runs):
    """Each of layout.COMPARISONS whose two rows every seed has: the per-seed
    test mAP difference row - control, its mean and spread."""
    out = []
    for name, row, control in layout.COMPARISONS:
        pairs = [(_map_of(r, row), _map_of(r, control)) for r in runs]
        if any(a is None or b is None for a, b in pairs):
            continue
        values = [a - b for a, b in pairs]
        mean, std = mean_std(values)
        out.append(dict(name=name, row=row, control=control, mean=mean, std=std, values=values))
    return out


def collect(run):
    """The results.json content of demo run folder ``run``, its inputs checked first (check_inputs)."""
    seeds = layout.seed_dirs(run)
    if not seeds:
        raise InputError('%s: no seed<S> folders: not a demo run (run `make demo`)' % run)
    check_inputs(run)
    test_list = layout.lists(run, 'test')
    runs = [seed_result(seed, folder, test_list) for seed, folder in seeds.items()]
    return dict(runs=runs, summary=summarise(runs),
                fair=all(c['ok'] for r in runs for c in r['fairness']),
                run=os.path.abspath(run))


# ---------------------------------------------------------------- the inputs, checked before anything is written

# What the report reads from each seed's eval/<name>.json: the keys and their
# kinds (_kinds); the counting metrics (CP .. OF1_top3) are checked where present.
_CLS = (('classes', 'classes'), ('mAP', 'percent'), ('AP', 'per_class'))
_DET = (('classes', 'classes'), ('AP07', 'percent'), ('AP', 'percent'), ('CorLoc', 'percent'))
EVAL_KEYS = dict(
    {name: _CLS for name in ('teacher',) + layout.STUDENTS + (layout.SOFT_TARGETS, layout.SOFT_TARGETS + '_T1')
     + tuple('ablation_' + a for a in layout.ABLATIONS)},
    **{name + '_fitted': (('classes', 'classes'), ('threshold', 'thresholds')) for name in layout.FITTED},
    det=_DET + (('AP_per_class', 'per_class'), ('CorLoc_per_class', 'per_class')), det_control=_DET,
    speed=(('teacher_ms', 'time'), ('student_ms', 'time'), ('student_opencv_ms', 'time')))


def _is_classes(value):
    return isinstance(value, list) and bool(value) and all(isinstance(c, str) and c for c in value) \
        and len(set(value)) == len(value)


def _kinds(n):
    """{kind: (test, what a value must be)} for ``n`` classes (None: not known)."""
    def per_class(test):
        return lambda v: isinstance(v, list) and n in (None, len(v)) and all(x is None or test(x) for x in v)
    one_each = ', one per class' + (' (%d)' % n if n else '')
    return dict(classes=(_is_classes, 'a non-empty list of distinct class names'),
                percent=(lambda v: v is not None and is_percent(v), 'a percentage (0 to 100)'),
                count=(is_percent, PERCENT),
                per_class=(per_class(is_percent), 'a list of percentages (0 to 100) or null' + one_each),
                thresholds=(lambda v: isinstance(v, dict) and per_class(is_number)(v.get('values')),
                            'an object whose "values" are numbers or null' + one_each),
                time=(lambda v: is_number(v) and v > 0, 'a positive number of ms'))


def read_array(path):
    """The array of numbers of the .npy file ``path``; an InputError naming
    it when it is not a regular file (a FIFO would block, a device never
    end) or not numpy.save's array of numbers (a pickle is never loaded)."""
    import numpy as np
    from caffe_mlic.fileio import read_npy
    try:
        return read_npy(path).astype(np.float64, copy=False)     # bools too: the figures negate scores
    except OSError as e:
        problem = 'cannot read it: %s' % (e.strerror or e)
    except ValueError as e:
        problem = "%s (expected a .npy array of numbers, numpy.save's format)" % e
    raise InputError(problems=[Problem(path, None, None, problem)])


def _array_problems(path, n, rows=None, like=None):
    """(problems, shape) of the .npy file ``path`` as images x classes:
    ``rows`` images (else at least one), ``n`` classes (when known), finite
    numbers; ``like``: (path, shape) of the scores it must match (labels).
    Missing: no problem, left to the report, which names it."""
    import numpy as np
    if not os.path.lexists(path):
        return [], None
    try:
        a = read_array(path)
    except InputError as e:
        return e.problems, None
    want = like[1] if like else (rows or 'N', n or 'C')
    if a.ndim != 2 or min(a.shape) < 1 or a.shape[0] != want[0] != 'N' or a.shape[1] != want[1] != 'C':
        return [Problem(path, None, None, 'must be an array of %s x %s %s, got shape %s' % (
            want + ('(as the scores %s)' % like[0] if like else '(images x classes)', a.shape)))], None
    if not np.isfinite(a).all():
        return [Problem(path, None, None, 'holds numbers that are not finite (nan, inf)')], None
    return [], a.shape


def _gt_problems(run):
    """(problems, (path, classes, images) of the test split's gt.json or
    None) of the two gt.json files the report reads (the test split's and
    the training split's: the same classes; images with "labels" among them,
    the test images with a "file")."""
    from caffe_mlic.data.datalist_build import companion_paths
    problems, found = [], {}
    for split in ('test', 'train'):
        path = companion_paths(layout.lists(run, split))[1]
        if not os.path.lexists(path):
            continue                   # left to the report, which names it
        try:
            data = read_json(path, 'ground truth')
        except InputError as e:
            problems += e.problems
            continue
        classes = data.get('classes') if isinstance(data, dict) else None
        images = data.get('images') if isinstance(data, dict) else None
        if not _is_classes(classes) or not isinstance(images, list):
            problems.append(Problem(path, None, None, 'expected {"classes": [distinct names], "images": [...]}'))
            continue
        for k, image in enumerate(images):
            if not (isinstance(image, dict) and isinstance(image.get('labels'), list)
                    and all(isinstance(c, str) and c in classes for c in image['labels'])
                    and (split == 'train' or isinstance(image.get('file'), str))):
                problems.append(Problem(path, None, 'images[%d]' % k, 'needs "labels" (names among "classes")%s'
                                        % ('' if split == 'train' else ' and a "file"')))
                break
        found[split] = (path, classes, images)
    if len(found) == 2 and found['train'][1] != found['test'][1]:
        problems.append(Problem(found['train'][0], None, '"classes"', '%s differ from those of %s (%s)' % (
            shown(found['train'][1]), found['test'][0], shown(found['test'][1]))))
    return problems, found.get('test')


def check_inputs(run):
    """Before the report of MLIC run ``run`` writes anything: an InputError
    naming each file (and key) it reads that is bad: every seed's eval JSON
    not an object, or a key missing or of the wrong kind (EVAL_KEYS: a
    percentage outside 0..100, a per-class list not one per class, a time
    not > 0, a speed-up not finite), or "classes" other than the test
    split's gt.json's (else the first eval file's); the gt.json files; the
    scores (.npy) the report reads: not images x classes of finite numbers,
    the labels not the scores' shape. Missing files are left to the report,
    which names them."""
    problems, gt = _gt_problems(run)
    files = []
    for seed_dir in layout.seed_dirs(run).values():
        folder = os.path.join(seed_dir, 'eval')
        for name in sorted(n[:-len('.json')] for n in (os.listdir(folder) if os.path.isdir(folder) else [])
                           if n.endswith('.json') and n[:-len('.json')] in EVAL_KEYS):
            path = layout.eval_file(seed_dir, name)
            try:
                data = read_json(path)
            except InputError as e:
                problems += e.problems
                continue
            if isinstance(data, dict):
                files.append((path, name, data))
            else:
                problems.append(Problem(path, None, None, 'expected a JSON object, got %s' % shown(data)))
    reference = gt[:2] if gt else next(((path, data['classes']) for path, _, data in files
                                        if _is_classes(data.get('classes'))), None)
    n = len(reference[1]) if reference else None
    kinds = _kinds(n)
    for path, name, data in files:
        rules = [(key,) + kinds[kind] for key, kind in EVAL_KEYS[name]]
        if name not in ('det', 'det_control', 'speed'):
            rules += [(key,) + kinds['count'] for key in data if key.startswith(COUNT_KEYS)]
        problems += key_problems(path, data, rules)
        if _is_classes(data.get('classes')) and path != reference[0] and data['classes'] != reference[1]:
            problems.append(Problem(path, None, '"classes"', '%s differ from those of %s (%s)' % (
                shown(data['classes']), reference[0], shown(reference[1]))))
        if name == 'speed' and all(kinds['time'][0](data.get(k)) for k in ('teacher_ms', 'student_ms')) \
                and not (0 < data['teacher_ms'] / data['student_ms'] < math.inf):
            problems.append(Problem(path, None, '"teacher_ms" / "student_ms"', 'the speed-up %g / %g is not a '
                                    'finite number > 0' % (data['teacher_ms'], data['student_ms'])))
    seeds = list(layout.seed_dirs(run).values())
    for name in layout.STUDENTS:        # the first seed's, for the test images shown
        problems += _array_problems(layout.eval_file(seeds[0], name, '.npy'), n, gt and len(gt[2]))[0]
    for seed_dir in seeds:
        for name in (layout.SOFT_TARGETS, layout.SOFT_TARGETS + '_T1'):
            if os.path.isfile(layout.eval_file(seed_dir, name)):
                scores = layout.eval_file(seed_dir, name, '.npy')
                found, shape = _array_problems(scores, n)
                problems += found
                if shape:
                    problems += _array_problems(layout.eval_file(seed_dir, name, '.labels.npy'), n,
                                                like=(scores, shape))[0]
    raise_if_problems(problems)
