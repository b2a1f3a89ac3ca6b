"""RUN/results.json: every number of a demo run, gathered from the files the
commands wrote (see caffe_mlic.report.layout), nothing recomputed:

    {"runs": [{"seed", "teacher": {"mAP", "CorLoc", "det_AP07", "det_AP",
               "control_det_AP", "control_CorLoc"},
               "student_kd": {every key of `eval cls --json`},
               "student_baseline": {...}, "ablation": {"stage1_only", "stage2_only":
               {...}} (with ABLATION=1), "speed": {"teacher_ms", "student_ms",
               "student_opencv_ms", "speedup"}, "iterations": {stage: n},
               "fairness": [{"name", "ok", "detail"}]}, ...],
     "summary": {"seeds": [...], "<path.to.number>": {"mean", "std", "values"}},
     "fair": true when every check of every seed passed}

"std" is the sample standard deviation (ddof 1; 0 with one seed). Per-class
lists (AP, ...) are summarised element by element.
"""
import json
import math
import os

from caffe_mlic.errors import InputError
from caffe_mlic.report import fairness, layout

TEACHER_DET_KEYS = (('det_AP07', 'AP07'), ('det_AP', 'AP'), ('CorLoc', 'CorLoc'))


def _read(path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError('%s: missing (the demo step that writes it did not run)' % path)
    except (OSError, ValueError) as e:
        raise InputError('%s: unreadable: %s' % (path, e))


def seed_result(seed, seed_dir, test_list):
    from caffe_mlic.engine import logs
    teacher_cls = _read(layout.eval_file(seed_dir, 'teacher'))
    det = _read(layout.eval_file(seed_dir, 'det'))
    control = _read(layout.eval_file(seed_dir, 'det_control'))
    speed = _read(layout.eval_file(seed_dir, 'speed'))
    teacher = dict(mAP=teacher_cls['mAP'], AP=teacher_cls['AP'])
    teacher.update((key, det[src]) for key, src in TEACHER_DET_KEYS)
    teacher.update(control_det_AP=control['AP'], control_det_AP07=control['AP07'],
                   control_CorLoc=control['CorLoc'], det_AP_per_class=det['AP_per_class'],
                   CorLoc_per_class=det['CorLoc_per_class'])
    iterations = {stage: logs.read_run_json(layout.stage_run(seed_dir, stage))['final_iteration']
                  for stage in layout.STAGES}
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
    return result


def _numbers(value, prefix, out):
    """Flatten numbers (and lists of numbers) of nested dicts into out[path]."""
    if isinstance(value, dict):
        for k, v in value.items():
            _numbers(v, prefix + (k,), out)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out['.'.join(prefix)] = value
    elif isinstance(value, list) and value and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value):
        out['.'.join(prefix)] = value


def _mean_std(values):
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def summarise(runs):
    flat = []
    for run in runs:
        out = {}
        _numbers({k: v for k, v in run.items() if k not in ('seed', 'fairness')}, (), out)
        flat.append(out)
    summary = {'seeds': [run['seed'] for run in runs]}
    for key in flat[0] if flat else ():
        values = [f.get(key) for f in flat]
        if isinstance(values[0], list):
            columns = list(zip(*[v for v in values if isinstance(v, list)]))
            stats = [_mean_std(c) for c in columns]
            summary[key] = dict(mean=[m for m, _ in stats], std=[s for _, s in stats])
        else:
            mean, std = _mean_std(values)
            summary[key] = dict(mean=mean, std=std, values=values)
    if runs:
        gains = [r['student_kd']['mAP'] - r['student_baseline']['mAP'] for r in runs]
        mean, std = _mean_std(gains)
        summary['kd_gain'] = dict(mean=mean, std=std, values=gains,
                                  every_seed=all(g > 0 for g in gains))
    return summary


def collect(run):
    """The results.json content of demo run folder ``run``."""
    seeds = layout.seed_dirs(run)
    if not seeds:
        raise InputError('%s: no seed<S> folders: not a demo run (run `make demo`)' % run)
    test_list = layout.lists(run, 'test')
    runs = [seed_result(seed, folder, test_list) for seed, folder in seeds.items()]
    return dict(runs=runs, summary=summarise(runs),
                fair=all(c['ok'] for r in runs for c in r['fairness']),
                run=os.path.abspath(run))
