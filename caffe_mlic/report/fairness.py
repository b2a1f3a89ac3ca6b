"""The rules that keep the demo's comparison fair, checked on the files of one
seed (not taken on trust from the script that ran it):

- baseline_budget: the baseline student trained for at least as many
  iterations as stage 1 and stage 2 together;
- same_training_data: stage 1, stage 2 and the baseline read the same TRAIN
  datalist with the same batch size, input size, augmentation, mean, scale
  and data seed;
- same_solver: the stage-2 and baseline solvers agree on everything but the
  length (type, learning rate and its policy, step at the same fraction of
  the run, momentum, weight decay, random seed); stage 1 trains the mimic,
  which is the distillation itself, and may differ;
- same_student: the baseline's layers are the distilled student's layers
  (same names, types and parameters);
- same_initialisation: every student layer the baseline loads starts from
  the same values in stage 1 (both come from the pretrained backbone);
- test_split_unused: no training net reads the test datalist (TRAIN or TEST
  phase), and no test image is in the training or validation datalists;
- baseline_converged: the baseline's validation mAP over the last quarter
  of its run is on average at most 1 point above its best point before
  that quarter (more iterations would not help it);
- teacher_frozen: every teacher weight (conv_wsd_*, fc_wsd_*) in the last
  snapshot of stage 1 and of stage 2 equals, bit for bit, the one that stage
  started from: each stage distils the teacher that was trained, not a
  teacher its solver moved.
"""
import os

import numpy as np

from caffe_mlic.caffe import prototxt
from caffe_mlic.engine.logs import start_weights
from caffe_mlic.report import layout

DATA_FIELDS = ('source', 'root_folder', 'batch_size', 'new_width', 'new_height', 'mirror',
               'mean_value', 'scale', 'scale_factors', 'shuffle', 'seed', 'att_num', 'bbox_num')
SOLVER_FIELDS = ('type', 'base_lr', 'lr_policy', 'gamma', 'momentum', 'momentum2', 'weight_decay',
                 'random_seed', 'iter_size', 'delta')
STUDENT_STAGES = ('stage1', 'stage2', 'baseline')
CONVERGED_RISE = 1.0   # mAP points over the last quarter
# The baseline's layers that feed it data rather than make the student: the
# data layers (checked by same_training_data), the label/proposal Slice and
# the Silence of the proposals it does not use.
DATA_PLUMBING = ('data', 'slice_label_roi', 'silence')


def _check(name, ok, detail):
    return dict(name=name, ok=bool(ok), detail=detail)


def _run_files(seed_dir, stage):
    """(run.json content, NetParameter, SolverParameter) of a stage's run."""
    from caffe_mlic.engine import logs
    folder = layout.stage_run(seed_dir, stage)
    info = logs.read_run_json(folder)
    net = prototxt.read_net(os.path.join(folder, 'net.prototxt'))
    solver = prototxt.read_solver(os.path.join(folder, 'solver.prototxt'))
    return info, net, solver


def _data_params(net, phase):
    layer = prototxt.data_layer(net, phase)
    params = prototxt.python_params(layer)
    return {k: params.get(k) for k in DATA_FIELDS}


def _solver_fields(solver):
    out = {k: getattr(solver, k) for k in SOLVER_FIELDS}
    out['step_fraction'] = round(solver.stepsize / solver.max_iter, 3) if solver.max_iter else None
    return out


def _diff(a, b):
    return ', '.join('%s %r vs %r' % (k, a[k], b[k]) for k in a if a[k] != b[k])


def _datalist_images(params):
    """The absolute image paths of the datalist a data layer's ``params`` read."""
    from caffe_mlic.data.datalist import read_datalist
    datalist = read_datalist(params['source'], params['att_num'], params['bbox_num'],
                             root_folder=params.get('root_folder') or '', check_images=False)
    return {os.path.abspath(p) for p in datalist.image_paths}


def _layer_signature(layer):
    """What makes two layers the same layer: everything but the phase rules and bottoms."""
    copy = type(layer)()
    copy.CopyFrom(layer)
    copy.ClearField('include')
    copy.ClearField('propagate_down')
    return copy.SerializeToString(deterministic=True)


def _weights(path):
    from caffe_mlic.caffe.weights import read_weights
    return read_weights(path)


def check_seed(seed_dir, test_list):
    """The list of checks (dicts name, ok, detail) for one seed folder."""
    runs = {stage: _run_files(seed_dir, stage) for stage in layout.STAGES}
    checks = []

    iters = {stage: runs[stage][0]['final_iteration'] for stage in layout.STAGES}
    need = iters['stage1'] + iters['stage2']
    checks.append(_check('baseline_budget', iters['baseline'] >= need,
                         'baseline %d iterations, stage 1 + stage 2 = %d + %d = %d'
                         % (iters['baseline'], iters['stage1'], iters['stage2'], need)))

    data = {stage: _data_params(runs[stage][1], 'TRAIN') for stage in STUDENT_STAGES}
    bad = ['%s: %s' % (s, _diff(data[s], data['baseline'])) for s in ('stage1', 'stage2')
           if data[s] != data['baseline']]
    checks.append(_check('same_training_data', not bad, '; '.join(bad) or
                         'TRAIN data of stage 1, stage 2 and the baseline: %s'
                         % os.path.basename(data['baseline']['source'])))

    solvers = {stage: _solver_fields(runs[stage][2]) for stage in ('stage2', 'baseline')}
    bad = ['stage2: %s' % _diff(solvers['stage2'], solvers['baseline'])] \
        if solvers['stage2'] != solvers['baseline'] else []
    checks.append(_check('same_solver', not bad, '; '.join(bad) or
                         '%(type)s, base_lr %(base_lr)g, %(lr_policy)s, random_seed %(random_seed)d'
                         % solvers['baseline']))

    stage2 = {layer.name: _layer_signature(layer) for layer in runs['stage2'][1].layer}
    differ, missing = [], []
    for layer in runs['baseline'][1].layer:
        if layer.name in DATA_PLUMBING:
            continue
        if layer.name not in stage2:
            missing.append(layer.name)
        elif stage2[layer.name] != _layer_signature(layer):
            differ.append(layer.name)
    checks.append(_check('same_student', not differ and not missing,
                         'differ: %s; not in stage 2: %s' % (differ, missing) if differ or missing
                         else 'every student layer of the baseline is identical in stage 2'))

    base_w, stage1_w = start_weights(runs['baseline'][0]), start_weights(runs['stage1'][0])
    if len(base_w) != 1 or len(stage1_w) != 1:
        checks.append(_check('same_initialisation', False, 'baseline weights %s, stage 1 weights %s'
                             % (base_w, stage1_w)))
    else:
        a, b = _weights(base_w[0]), _weights(stage1_w[0])
        baseline_layers = {layer.name for layer in runs['baseline'][1].layer}
        shared = sorted(n for n in a if n in baseline_layers)
        differ = [n for n in shared if n not in b or len(a[n]) != len(b[n]) or
                  not all(np.array_equal(x, y) for x, y in zip(a[n], b[n]))]
        checks.append(_check('same_initialisation', shared and not differ,
                             'differ: %s' % differ if differ else
                             '%d student layers start equal (%s)' % (len(shared), ', '.join(shared))))

    test_abs = os.path.abspath(test_list)
    sources = {(stage, phase): _data_params(runs[stage][1], phase)
               for stage in layout.STAGES for phase in ('TRAIN', 'TEST')}
    readers = [key for key, params in sources.items() if os.path.abspath(params['source']) == test_abs]
    # the test list holds the classes and proposals of the training lists
    test_images = _datalist_images(dict(data['baseline'], source=test_list, root_folder=''))
    seen, read = set(), set()
    for params in sources.values():
        if params['source'] not in read:          # each list once
            read.add(params['source'])
            seen |= _datalist_images(params)
    overlap = test_images & seen
    checks.append(_check('test_split_unused', not readers and not overlap,
                         'read by %s; %d test images in training lists' % (readers, len(overlap))
                         if readers or overlap else
                         'no net reads %s; its %d images are in no training or validation list'
                         % (os.path.basename(test_list), len(test_images))))

    checks.append(converged_check(os.path.join(layout.stage_run(seed_dir, 'baseline'), 'log.jsonl'),
                                  iters['baseline']))
    checks.append(teacher_frozen_check(seed_dir, {stage: runs[stage][0] for stage in ('stage1', 'stage2')}))
    return checks


def last_caffemodel(seed_dir, info):
    """The caffemodel of a run's last snapshot (run.json names its solverstate,
    relative to the folder the run started in: the seed's), or None. An HDF5
    snapshot's (snapshot_format: HDF5) is X.caffemodel.h5 beside X.solverstate.h5."""
    state = info.get('last_snapshot')
    if not state:
        return None
    model = None
    for ext in ('.solverstate', '.solverstate.h5'):
        if state.endswith(ext):
            model = state[:-len(ext)] + '.caffemodel' + ext[len('.solverstate'):]
    return model if model is None or os.path.isabs(model) else os.path.join(seed_dir, model)


def teacher_frozen_check(seed_dir, infos):
    """teacher_frozen: ``infos`` {stage: run.json} of the distillation stages."""
    from caffe_mlic.netspec.vgg import TEACHER
    lines, ok = [], True
    for stage, info in infos.items():
        start, end = start_weights(info), last_caffemodel(seed_dir, info)
        if len(start) != 1 or not end or not os.path.isfile(end):
            lines.append('%s: cannot compare (weights %s, last snapshot %s)' % (stage, start, end))
            ok = False
            continue
        before, after = _weights(start[0]), _weights(end)
        teacher = [name for name in before if TEACHER.learnable(name)]
        changed = ['%s (mean |w| after / before %.3f)' % (
            name, float(np.abs(after[name][0]).mean() / max(np.abs(before[name][0]).mean(), 1e-30)))
            for name in teacher if name in after and not all(
                np.array_equal(x, y) for x, y in zip(before[name], after[name]))]
        changed += ['%s (not in the snapshot)' % name for name in teacher if name not in after]
        if not teacher or changed:
            ok = False
            lines.append('%s: no teacher layer in %s' % (stage, os.path.basename(start[0])) if not teacher
                         else '%s: %d of %d teacher layers moved: %s' % (stage, len(changed), len(teacher),
                                                                        ', '.join(changed)))
        else:
            lines.append('%s: %d teacher layers at iteration %d equal %s' % (
                stage, len(teacher), info['final_iteration'],
                os.path.join(os.path.basename(os.path.dirname(start[0])), os.path.basename(start[0]))))
    return _check('teacher_frozen', ok, '; '.join(lines))


def converged_check(log_path, final_iteration):
    """The baseline has converged when the mean of its validation mAP over
    the last quarter of the run is at most CONVERGED_RISE above the best
    point before it: the end of the run adds nothing beyond validation noise
    (single points move by 1-2 mAP on 150 images, so two points alone
    cannot say)."""
    from caffe_mlic.engine.logs import test_points
    tests = test_points(log_path)
    start = 0.75 * final_iteration
    window = [v for i, v in tests if i >= start]
    before = [(i, v) for i, v in tests if i < start]
    if not window or not before:
        return _check('baseline_converged', False, 'too few validation points (%d)' % len(tests))
    end = sum(window) / len(window)
    best_iter, best = max(before, key=lambda t: t[1])
    rise = end - best
    return _check('baseline_converged', rise <= CONVERGED_RISE,
                  'validation mAP over the last quarter %.1f (mean of %d points) against %.1f, the best '
                  'before it (iteration %d): %+.1f; the curve: %s'
                  % (end, len(window), best, best_iter, rise,
                     ' '.join('%.1f' % v for _, v in tests)))
