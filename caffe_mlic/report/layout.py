"""Where each demo's run keeps its files: what `make demo` and `make
demo-scasnet` write and `caffe-mlic report` reads, in one place.

MLIC-KD-WSD (`make demo`), RUN = runs/demo:

    RUN/data/lists/{train,val,test}.txt     datalists (+ .gt.json, .classes.txt)
    RUN/pretrain/pretrain.caffemodel        the shared pretrained backbone
    RUN/seed<S>/nets/                       netgen output of seed S
    RUN/seed<S>/runs/<stage>/               `caffe-mlic train` run folders
                                            (run.json, log.jsonl, curves.png)
    RUN/seed<S>/init/stage{1,2}.caffemodel  the distillation nets' starting weights
    RUN/seed<S>/eval/<model>.json           `eval cls --json` on the test split
    RUN/seed<S>/eval/<model>.npy            the scores (+ .labels.npy)
    RUN/seed<S>/det/, det_control/          `detect` output: teacher, random control
    RUN/seed<S>/eval/det.json, det_control.json   `eval det --json`
    RUN/seed<S>/eval/speed.json             `caffe-mlic speed --json`

ScasNet (`make demo-scasnet`), RUN = runs/scasnet:

    RUN/data/                  `synth --task seg`: top/ (tiles), the references,
                               {train,val,test}.txt
    RUN/nets/                  `scasnet netgen` output
    RUN/train/                 `caffe-mlic train`'s run folder (run.json, curves.png)
    RUN/pred/{labels,color,overlay}/   `scasnet infer` on the test tiles
    RUN/eval/scasnet.json      `eval seg --json` against the eroded references
    RUN/eval/scasnet_full.json         ... and against the full ones
    RUN/settings.json          the demo's settings

  the comparison of heads (`make demo-scasnet`, the default): RUN/data/ as
  above (`synth --task seg --scene context`, with hard/ masks), then per seed S
  and head H (netspec.scasnet.HEADS: fcn, parallel, cascade, full, ...):

    RUN/seed<S>/<H>/{nets,train,pred}/   as nets/, train/, pred/ above
    RUN/seed<S>/<H>/eval/scasnet.json, scasnet_full.json
    RUN/seed<S>/<H>/log.txt              what its commands printed
    RUN/results.json                     `caffe-mlic report` (report/scasnet_heads.py)
"""
import glob
import os
import re

STAGES = ('teacher', 'stage1', 'stage2', 'baseline')
STUDENTS = ('student_kd', 'student_baseline')
# `make demo ABLATION=1`: RUN/seed<S>/eval/ablation_<name>.json, runs/ablation_<name>/
ABLATIONS = ('stage1_only', 'stage2_only', 'labels_short')
ABLATION_LABELS = {'stage1_only': "stage 1 only, then labels for stage 2's iterations",
                   'stage2_only': 'stage 2 only, from the pretrained backbone',
                   'labels_short': "labels only for stage 2's iterations, from the pretrained backbone"}
# Each row against its matched control (same data, solver and start; only the
# thing tested differs): (what is tested, row, control), as results.json keys.
COMPARISONS = (
    ('distillation (two stages) vs the baseline', 'student_kd', 'student_baseline'),
    ('stage 1 then labels vs the baseline (same total iterations)', 'ablation.stage1_only',
     'student_baseline'),
    ("stage 2 vs labels, after stage 1 (stage 2's iterations)", 'student_kd', 'ablation.stage1_only'),
    ("stage 2 vs labels, from the pretrained backbone (stage 2's iterations)", 'ablation.stage2_only',
     'ablation.labels_short'),
)
# `make demo STUDY=1`: stage 2 with one setting changed (runs/study_<name>/),
# from stage 2's own start, scored on the validation split; for stage1_half and
# kd_python, the variant's own stage 1 first (runs/stage1_of_<name>/)
STUDY_LABELS = {'release': "stage 2 as released (teacher T = 0.5, student scale 1/5 learned at "
                           "lr_mult 10, soft loss weight 1)",
                'teacher_T1': 'teacher temperature T = 1',
                'scale_lr1': "the student's logit scale learned at lr_mult 1",
                'scale_fixed': "the student's logit scale fixed at 1/5",
                'soft_weight_half': 'soft loss weight 0.5',
                'stage2_x2': 'stage 2 twice as long',
                'stage1_half': 'stage 1 half as long, then stage 2',
                'kd_python': "the python distillation losses (mimic on each image's top 16 proposals; "
                             "soft loss at the fixed student T = 5), stages 1 and 2",
                'labels_after_stage1': 'no soft loss: labels only (the ablation row stage 1 only)'}
# RUN/seed<S>/eval/<model>_fitted.json: the test split at per-class thresholds
# fitted on the validation split (eval/<model>_thresholds.json)
FITTED = ('teacher',) + STUDENTS + tuple('ablation_' + name for name in ABLATIONS)
# RUN/seed<S>/eval/soft_targets_val.{json,npy,labels.npy}: the teacher's image
# scores as stage 2 reads them (its temperature), on the validation split.
SOFT_TARGETS = 'soft_targets_val'


def seed_dirs(run):
    """{seed: folder} of the seed<S> folders of ``run``, by seed. A folder
    seed01 or seed001 (seed 1 under another spelling, which would take
    seed1's place) is an InputError naming it."""
    from caffe_mlic.errors import InputError
    found = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(run), 'seed*'))):
        m = re.fullmatch(r'seed(\d+)', os.path.basename(path))
        if m and os.path.isdir(path):
            if m.group(1) != str(int(m.group(1))):
                raise InputError('%s: the folder %s is not a seed folder the runs write (seed%d is): it would stand '
                                 'for that seed; rename or move it' % (run, os.path.basename(path), int(m.group(1))))
            found[int(m.group(1))] = path
    return dict(sorted(found.items()))


def stage_run(seed_dir, stage):
    return os.path.join(seed_dir, 'runs', stage)


def eval_file(seed_dir, name, ext='.json'):
    return os.path.join(seed_dir, 'eval', name + ext)


def lists(run, split):
    return list_file(run, split + '.txt')


def list_file(run, name):
    """RUN/data/lists/<name>: a datalist and its companions (.classes.txt, .gt.json)."""
    return os.path.join(run, 'data', 'lists', name)


def seed_dir(run, seed):
    return os.path.join(run, 'seed%d' % seed)


def pretrain_weights(run):
    return os.path.join(run, 'pretrain', 'pretrain.caffemodel')


# ---------------------------------------------------------------- ScasNet


def scasnet_eval(run, full=False):
    return os.path.join(run, 'eval', 'scasnet_full.json' if full else 'scasnet.json')


def scasnet_path(run, *parts):
    """RUN/<parts>: 'train' (the run folder), 'pred', 'data', 'settings.json', ..."""
    return os.path.join(run, *parts)


# the heads in the order the comparison shows them, and their names there
SCAS_HEAD_LABELS = {'fcn': 'plain FCN head', 'parallel': 'parallel context (ASPP-like) + refinement',
                    'cascade': 'self-cascaded context, no refinement', 'full': 'ScasNet (full)',
                    'norc': 'ScasNet without residual correction'}


def scasnet_head_dir(run, seed, head):
    return os.path.join(seed_dir(run, seed), head)


def scasnet_heads(run):
    """{seed: {head: folder}} of a comparison run's scored heads (those with
    eval/scasnet.json), seeds and heads in order."""
    found = {}
    for seed, folder in seed_dirs(run).items():
        heads = {h: os.path.join(folder, h) for h in SCAS_HEAD_LABELS
                 if os.path.isfile(scasnet_eval(os.path.join(folder, h)))}
        if heads:
            found[seed] = heads
    return found


def recorded_system(run):
    """The text of the run folder's .stages/system (where `caffe-mlic run`
    records whose run it holds; read here, as the pipeline imports this
    module), or None where it cannot be read (a FIFO, which would block,
    and a device, which never ends, included)."""
    from caffe_mlic.fileio import open_regular
    try:
        with open_regular(os.path.join(run, '.stages', 'system'), 'rb') as f:
            return f.read(64).decode('ascii', errors='replace').strip()
    except OSError:
        return None


def system_of(run):
    """'scasnet' for a `make demo-scasnet` run (one net, or the comparison of
    heads), 'mlic' for a `make demo` one, None for neither: as a `caffe-mlic
    run` recorded it in the folder, else as its files show."""
    recorded = recorded_system(run)
    if recorded in ('mlic', 'scasnet'):
        return recorded
    if os.path.isfile(scasnet_eval(run)) or scasnet_heads(run):
        return 'scasnet'
    if seed_dirs(run):
        return 'mlic'
    return None
