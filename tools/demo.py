"""`make demo`: MLIC-KD-WSD in miniature, on the CPU, through the caffe-mlic
commands a user types. A synthetic single-label set stands in for ImageNet
(the backbone is pretrained on it once, shared by the seeds); a synthetic
multi-label detection set in the VOC layout stands in for MS-COCO, with its
EdgeBoxes proposals. Then `caffe-mlic run configs/demo_mlic.toml` on them:
for each seed the WSDDN teacher (192 px, 96 proposals), stage 1 (features),
stage 2 (predictions), the label-only baseline student (64 px: a third of the
teacher's resolution, as 224 vs 672 in the paper), evaluation on the test
split (eval cls, detect + eval det against a random control), then speed on
idle cores and the report: results.json, report.html, the table. Where each
file goes is caffe_mlic/report/layout.py, which the report reads.

    SEEDS=3 (default)    seeds 1..SEEDS; DEMO_JOBS (3) of the seeds' runs side
                         by side (a seed's ABLATION / STUDY runs are runs of their own)
    DEMO_DIR=runs/demo   where everything goes
    DEMO_MINI=1          a miniature (few images and iterations) for CI:
                         well-formed outputs, no claim about the gain
    ABLATION=1           also the paper's ablation rows for each seed: stage 1
                         only (then labels, stage 2's budget), stage 2 only, and
                         its control (labels only, stage 2's budget, same start)
    STUDY=1              also stage 2 with one setting changed at a time, and
                         the settings chosen before the teacher was frozen
                         (validation split only; README: "Why stage 2 ...")

Run again with the same settings into the same DEMO_DIR after an interruption
(DEMO_RESUME=1), the demo keeps its data and `caffe-mlic run` goes on from the
stages that are done.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_driver import Driver, env_ints, fresh_run_folder, main, resumed_demo, step  # noqa: E402

from caffe_mlic.report import layout  # noqa: E402

MINI = os.environ.get('DEMO_MINI', '0') == '1'
CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'demo_mlic.toml')
CLASSES = 6        # as in the config
if MINI:
    IMAGES, PRE_IMAGES, PRE_ITERS, ITERS = 60, 160, 30, (24, 12, 12, 24)
else:
    IMAGES, PRE_IMAGES, PRE_ITERS, ITERS = 1000, 7200, 2000, (1200, 600, 300, 900)
STAGE1_ITERS, STAGE2_ITERS = ITERS[1:3]
# The preprocessing of the pretrained backbone, shared by every net after it.
PREPROCESS = ['--set', 'mean=[128,128,128]', '--input-scale', '0.017']
SOLVER = ['--solver-type', 'Adam']

# STUDY=1: [study.NAME] tables of the config (pipeline.mlic.study_stages):
# stage 2 again from stage 2's start with one thing changed, scored on the
# validation split (runs/study_<name>/log.jsonl); the last two with their own
# stage 1 first (settings chosen before the teacher was frozen, measured again).
STUDY = {
    'teacher_T1': dict(net=dict(teacher_temperature=1.0)),
    'scale_lr1': dict(net=dict(student_scale_lr_mult=1)),
    'scale_fixed': dict(net=dict(student_scale_lr_mult=0)),
    'soft_weight_half': dict(net=dict(soft_loss_weight=0.5)),
    'stage2_x2': dict(stage2_iters=2 * STAGE2_ITERS),
    'stage1_half': dict(stage1_iters=STAGE1_ITERS // 2, with_stage1=True),
    'kd_python': dict(net=dict(kd_losses='python', mimic_top_k=16), with_stage1=True),
}


def toml_value(value):
    """``value`` as TOML (JSON's numbers, strings, booleans and lists are TOML's)."""
    if isinstance(value, dict):
        return '{%s}' % ', '.join('%s = %s' % (k, toml_value(v)) for k, v in value.items())
    return json.dumps(value)


class Demo(Driver):
    def __init__(self, run):
        super().__init__()
        self.run = run
        self.pretrain = layout.pretrain_weights(run)

    def list_file(self, name):
        return layout.list_file(self.run, name)

    # ------------------------------------------------------------ shared data

    def data(self):
        run = self.run
        step('caffe-mlic doctor')
        self.cli('doctor')
        step('synthetic data: %d single-object images of 8 shapes (pretraining, 64 px), %d multi-label '
             'images of %d shapes (192 px)' % (PRE_IMAGES, IMAGES, CLASSES))
        # the two sets are drawn side by side, one a core
        voc = self.start('synth', os.path.join(run, 'data', 'voc'), '--images', IMAGES, '--classes', CLASSES,
                         '--objects-per-image', '1-3', '--size-range', '0.2-0.45', '--image-size', '192x192',
                         '--clutter', '1', '--seed', '0', '--split', '0.4,0.15,0.45', '-q')
        self.cli('synth', os.path.join(run, 'data', 'pretrain'), '--images', PRE_IMAGES, '--classes', 8,
                 '--objects-per-image', '1-1', '--size-range', '0.4-0.85', '--image-size', '64x64',
                 '--clutter', '2', '--seed', '100', '--split', '0.9,0.1,0', '-q')
        self.wait(voc)
        for split in ('train', 'val'):
            self.cli('datalist', 'build', '--voc', os.path.join(run, 'data', 'pretrain'), '--set', split,
                     '--whole-image', '-o', self.list_file('pretrain_%s.txt' % split), '--size', 64,
                     '--bbox-num', 1, quiet=True)

        step('pretraining the backbone on the single-object set (the demo\'s ImageNet), while EdgeBoxes '
             'runs on the detection set')
        proposals_log = os.path.join(run, 'data', 'proposals.log')
        proposals = self.start('proposals', os.path.join(run, 'data', 'voc', 'JPEGImages'), '-o',
                               os.path.join(run, 'data', 'proposals'), '--jobs', 1, '--max-boxes', 200,
                               log=proposals_log, env=dict(CAFFE_MLIC_PROGRESS='never'))
        pretrain = os.path.join(run, 'pretrain')
        self.cli('netgen', '-o', os.path.join(pretrain, 'nets'), '--classes', 8, '--proposals', 1,
                 '--teacher-size', 64, '--student-size', 64, '--pooled', 2, '--backbone', 'mini', '--set',
                 'dropout_ratio=0', '--student-fc8', 'fc8_pretrain', *PREPROCESS,
                 '--train-list', self.list_file('pretrain_train.txt'),
                 '--test-list', self.list_file('pretrain_val.txt'), '--baseline-batch', 32, 32,
                 '--max-iter', PRE_ITERS, *SOLVER, '--base-lr', '0.001', '--random-seed', 0, quiet=True)
        self.cli('train', 'nets/kd/solver_baseline.prototxt', '--run-dir', 'run', cwd=pretrain)
        shutil.copy(os.path.join(pretrain, 'snapshots', 'kd', 'baseline_iter_%d.caffemodel' % PRE_ITERS),
                    self.pretrain)
        self.wait(proposals, log=proposals_log)
        with open(proposals_log) as f:
            print(f.read().splitlines()[-1], flush=True)


def overrides(run, count, jobs):
    """The config's settings for this demo run (`caffe-mlic run --set`)."""
    found = {'run.folder': run, 'run.seeds': list(range(1, count + 1)), 'run.jobs': jobs,
             'data.voc': os.path.join(run, 'data', 'voc'), 'proposals.folder': os.path.join(run, 'data', 'proposals'),
             'weights.pretrained': layout.pretrain_weights(run), 'report.strict': not MINI,
             'ablation.rows': os.environ.get('ABLATION', '0') == '1'}
    for stage, iters in zip(('teacher', 'stage1', 'stage2', 'baseline'), ITERS):
        found['train.%s.max_iter' % stage] = iters
    if os.environ.get('STUDY', '0') == '1':
        found.update(('study.%s.%s' % (name, key), value) for name, variant in STUDY.items()
                     for key, value in variant.items())
    return [item for key, value in found.items() for item in ('--set', '%s=%s' % (key, toml_value(value)))]


def demo():
    run = os.path.realpath(os.environ.get('DEMO_DIR') or 'runs/demo')
    (count,), (jobs,) = env_ints('SEEDS', '3', 1, 100, count=1), env_ints('DEMO_JOBS', '3', 1, 64, count=1)
    # One BLAS thread per process: these nets' matrices are too small for two
    # threads to help, and seeds then train side by side on the two cores.
    os.environ.update(OPENBLAS_NUM_THREADS='1', GLOG_minloglevel='2')
    demo = Demo(run)
    if not resumed_demo(run, demo.pretrain):
        fresh_run_folder(run)
        os.makedirs(os.path.join(run, 'data', 'lists'))
        demo.data()
    step('caffe-mlic run configs/demo_mlic.toml: for each seed (%d) the teacher, stage 1, stage 2, the baseline '
         'and their evaluation on the test split, %d runs side by side (the output of each: seed<S>/log.txt); '
         "then speed on idle cores and the report" % (count, jobs))
    demo.cli('run', CONFIG, *overrides(run, count, jobs), cwd=run)


if __name__ == '__main__':
    main(demo)
