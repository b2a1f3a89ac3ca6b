"""`make demo`: MLIC-KD-WSD in miniature, on the CPU, through the caffe-mlic
commands a user types. A synthetic single-label set stands in for ImageNet
(the backbone is pretrained on it once, shared by the seeds); a synthetic
multi-label detection set stands in for MS-COCO. For each seed: the WSDDN
teacher (192 px, 96 EdgeBoxes proposals), stage 1 (features), stage 2
(predictions), the label-only baseline student (64 px: a third of the
teacher's resolution, as 224 vs 672 in the paper), then evaluation on the
test split (eval cls, detect + eval det against a random control, speed),
and at the end `caffe-mlic report`: results.json, report.html, the table.
Where each file goes is caffe_mlic/report/layout.py, which the report reads.

    SEEDS=3 (default)    seeds 1..SEEDS, DEMO_JOBS (3) of them side by side; a
                         seed with job slots to spare (SEEDS=1) runs its
                         ABLATION / STUDY trainings side by side in them
    DEMO_DIR=runs/demo   where everything goes
    DEMO_MINI=1          a miniature (few images and iterations) for CI:
                         well-formed outputs, no claim about the gain
    ABLATION=1           also the paper's ablation rows for each seed: stage 1
                         only (then labels, stage 2's budget), stage 2 only, and
                         its control (labels only, stage 2's budget, same start)
    STUDY=1              also stage 2 with one setting changed at a time, and
                         the settings chosen before the teacher was frozen
                         (validation split only; README: "Why stage 2 ...")
"""
import os
import shutil
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_driver import Driver, env_ints, fresh_run_folder, main, step  # noqa: E402

from caffe_mlic.caffe.prototxt import read_solver  # noqa: E402
from caffe_mlic.report import layout  # noqa: E402

MINI = os.environ.get('DEMO_MINI', '0') == '1'
CLASSES, PROPOSALS, TEACHER, STUDENT, POOLED = 6, 96, 192, 64, 2
if MINI:
    IMAGES, PRE_IMAGES, PRE_ITERS, ITERS, STRICT = 60, 160, 30, (24, 12, 12, 24), []
else:
    IMAGES, PRE_IMAGES, PRE_ITERS, ITERS, STRICT = 1000, 7200, 2000, (1200, 600, 300, 900), ['--strict']
TEACHER_ITERS, STAGE1_ITERS, STAGE2_ITERS, BASELINE_ITERS = ITERS
# The preprocessing of the pretrained backbone, shared by every net after it.
PREPROCESS = ['--set', 'mean=[128,128,128]', '--input-scale', '0.017']
# Every solver: Adam, step (x0.1) at 70 %, a test every eighth of the run; base
# learning rates chosen on the validation split (README: "How the demo's
# settings were chosen"): 1e-3, except stage 1's mimic, 3e-3.
SOLVER = ['--solver-type', 'Adam']

# STUDY=1: stage 2 again from stage 2's start with one thing changed; each
# run's validation mAP is in runs/study_<name>/log.jsonl. Each variant gets its
# own init/study_<name>.caffemodel by the same surgery as init/stage2 (the same
# values, but for the teacher's temperature, which the caffemodel holds: a
# T = 1 net loaded from init/stage2 would run at T = 0.5).
STUDY_VARIANTS = {
    'teacher_T1': ['--set', 'teacher_temperature=1.0'],
    'scale_lr1': ['--set', 'student_scale_lr_mult=1'],
    'scale_fixed': ['--set', 'student_scale_lr_mult=0'],
    'soft_weight_half': ['--set', 'soft_loss_weight=0.5'],
    'stage2_x2': ['--iters', TEACHER_ITERS, STAGE1_ITERS, 2 * STAGE2_ITERS, BASELINE_ITERS],
}
# STUDY=1, settings chosen before the teacher was frozen (README: "How the
# demo's settings were chosen"), measured again: stage 1 half as long, and the
# python distillation losses; each variant runs its own stage 1 (from the same
# pretrained backbone and teacher; run folder runs/stage1_of_<name>), then its
# stage 2 into runs/study_<name>, scored on the validation split.
STAGE1_VARIANTS = {
    'stage1_half': ['--iters', TEACHER_ITERS, STAGE1_ITERS // 2, STAGE2_ITERS, BASELINE_ITERS],
    'kd_python': ['--set', 'kd_losses=python', '--set', 'mimic_top_k=16'],
}


def variant_iters(args, stage):
    """The iterations of stage 1 or 2 for a study variant's netgen ``args``."""
    return args[1 + stage] if args[:1] == ['--iters'] else ITERS[stage]


class Demo(Driver):
    def __init__(self, run):
        super().__init__()
        self.run = run
        self.pretrain = layout.pretrain_weights(run)

    def list_file(self, name):
        return layout.list_file(self.run, name)

    def test_images(self):
        voc = os.path.join(self.run, 'data', 'voc')
        with open(os.path.join(voc, 'ImageSets', 'Main', 'test.txt')) as f:
            return [os.path.join(voc, 'JPEGImages', line.strip() + '.jpg') for line in f if line.strip()]

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

        step('datalists: train / val (carved from the training images, for curves and choices) / test')
        for split in ('train', 'val', 'test'):
            self.cli('datalist', 'build', '--voc', os.path.join(run, 'data', 'voc'), '--set', split,
                     '--proposals', os.path.join(run, 'data', 'proposals'),
                     '-o', self.list_file(split + '.txt'), '--size', TEACHER, '--bbox-num', PROPOSALS)
        self.cli('datalist', 'check', self.list_file('train.txt'), '--att-num', CLASSES,
                 '--bbox-num', PROPOSALS, '--size', TEACHER, tail=2)

    # ------------------------------------------------------------ a seed

    def netgen(self, out, seed, *args, cwd, log):
        """The nets and solvers of a seed (``args`` after the demo's override them)."""
        self.cli('netgen', '-o', out, '--classes', CLASSES, '--proposals', PROPOSALS,
                 '--teacher-size', TEACHER, '--student-size', STUDENT, '--pooled', POOLED,
                 '--backbone', 'mini', '--set', 'dropout_ratio=0',
                 '--scales', '0.75', '1.0', '1.25', *PREPROCESS, '--train-list', self.list_file('train.txt'),
                 '--test-list', self.list_file('val.txt'), '--wsddn-batch', 8, 8, '--stage1-batch', 8, 8,
                 '--stage2-batch', 8, 8, '--baseline-batch', 8, 8, '--iters', *ITERS, *SOLVER,
                 '--base-lrs', '0.001', '0.003', '0.001', '0.001', '--random-seed', seed,
                 '--set', 'data_seed=%d' % seed, *args, cwd=cwd, log=log, quiet=True)

    def eval_cls(self, name, net, weights, blob, *args, cwd, log):
        """A model on the test split, at 0.5 (eval/NAME.json, scores eval/NAME.npy) and at per-class
        thresholds fitted on the validation split (eval/NAME_thresholds.json), applied unchanged to
        the test scores (eval/NAME_fitted.json)."""
        common = ('eval', 'cls', '--net', net, '--weights', weights, '--blob', blob) + args
        thresholds, scores = layout.eval_file(cwd, name + '_thresholds'), layout.eval_file(cwd, name, '.npy')
        self.cli(*common, '--list', self.list_file('val.txt'), '--classes', self.list_file('val.classes.txt'),
                 '--fit-thresholds', thresholds, cwd=cwd, log=log, quiet=True)
        self.cli(*common, '--list', self.list_file('test.txt'), '--classes', self.list_file('test.classes.txt'),
                 '--json', layout.eval_file(cwd, name), '--save-scores', scores, cwd=cwd, log=log, tail=1)
        self.cli('eval', 'cls', '--scores', scores, '--labels', layout.eval_file(cwd, name, '.labels.npy'),
                 '--classes', self.list_file('test.classes.txt'), '--thresholds', thresholds,
                 '--json', layout.eval_file(cwd, name + '_fitted'), cwd=cwd, log=log, quiet=True)

    def seed_pipeline(self, seed, log, jobs=1):
        """Everything of one seed, in RUN/seed<S> (layout.py); ``jobs``: how
        many of its ABLATION / STUDY parts may run side by side."""
        folder = layout.seed_dir(self.run, seed)
        for sub in ('init', 'eval'):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        run = dict(cwd=folder, log=log)
        say = lambda text: self.say(text, log)  # noqa: E731
        self.netgen('nets', seed, **run)
        say('seed %d: teacher' % seed)
        self.cli('train', 'nets/wsddn/solver.prototxt', '--weights', self.pretrain,
                 '--run-dir', layout.stage_run(folder, 'teacher'), **run)
        teacher = 'snapshots/wsddn/wsddn_iter_%d.caffemodel' % TEACHER_ITERS
        say("seed %d: stage 1 (the student's region features regress the teacher's)" % seed)
        self.cli('surgery', '--net', 'nets/kd/train_stage1.prototxt', '--from', 'same:' + self.pretrain,
                 '--from', 'teacher:' + teacher, '-o', 'init/stage1.caffemodel', tail=1, **run)
        self.cli('train', 'nets/kd/solver_stage1.prototxt', '--weights', 'init/stage1.caffemodel',
                 '--run-dir', layout.stage_run(folder, 'stage1'), **run)
        say("seed %d: stage 2 (labels + the teacher's soft image scores)" % seed)
        self.cli('surgery', '--net', 'nets/kd/train_stage2.prototxt', '--from', 'teacher:' + teacher,
                 '--from', 'same:snapshots/kd/stage1_iter_%d.caffemodel' % STAGE1_ITERS,
                 '-o', 'init/stage2.caffemodel', tail=1, **run)
        # what stage 2 distils: the teacher's soft targets (as loaded, at stage 2's temperature) on val
        self.soft_targets('nets/kd/train_stage2.prototxt', 'init/stage2.caffemodel', layout.SOFT_TARGETS, run)
        self.cli('train', 'nets/kd/solver_stage2.prototxt', '--weights', 'init/stage2.caffemodel',
                 '--run-dir', layout.stage_run(folder, 'stage2'), **run)
        say('seed %d: baseline student (labels only, from the same pretrained backbone)' % seed)
        self.cli('train', 'nets/kd/solver_baseline.prototxt', '--weights', self.pretrain,
                 '--run-dir', layout.stage_run(folder, 'baseline'), **run)

        say('seed %d: evaluation on the test split' % seed)
        kd = 'snapshots/kd/stage2_iter_%d.caffemodel' % STAGE2_ITERS
        base = 'snapshots/kd/baseline_iter_%d.caffemodel' % BASELINE_ITERS
        self.eval_cls('teacher', 'nets/wsddn/wsddn_train.prototxt', teacher, 'image_level_score', **run)
        self.eval_cls('student_kd', 'nets/kd/train_stage2.prototxt', kd, 'fc8_mscoco', '--sigmoid', **run)
        self.eval_cls('student_baseline', 'nets/kd/student_baseline.prototxt', base, 'fc8_mscoco',
                      '--sigmoid', **run)
        detect = ('--proposals', os.path.join(self.run, 'data', 'proposals'),
                  '--classes', self.list_file('test.classes.txt'), '--scales', 144, 192, 240, '--flip')
        self.cli('detect', '--net', 'nets/wsddn/wsddn_deploy.prototxt', '--weights', teacher, *detect,
                 '-o', 'det', '-q', *self.test_images(), tail=1, **run)
        self.cli('detect', '--net', 'nets/wsddn/wsddn_deploy.prototxt', '--control', 'random', '--seed', seed,
                 *detect, '-o', 'det_control', '-q', *self.test_images(), tail=1, **run)
        self.cli('eval', 'det', '--gt', self.list_file('test.gt.json'), '--results', 'det',
                 '--json', layout.eval_file(folder, 'det'), tail=1, **run)
        self.cli('eval', 'det', '--gt', self.list_file('test.gt.json'), '--results', 'det_control',
                 '--json', layout.eval_file(folder, 'det_control'), tail=1, **run)
        # the student deploy net is the stage-2 student's layers alone
        self.cli('surgery', '--net', 'nets/kd/student_deploy.prototxt', '--from', 'same:' + kd,
                 '-o', 'student_deploy.caffemodel', tail=1, **run)
        self.extra_rows(seed, teacher, jobs, run)

    def extra_rows(self, seed, teacher, jobs, run):
        """ABLATION=1 / STUDY=1: parts that share nothing but the seed's
        pipeline above (each its own folders, init files and snapshot
        prefixes), up to ``jobs`` of them side by side."""
        parts = []      # (name, iterations trained, function(run))
        if os.environ.get('ABLATION', '0') == '1':
            parts.append(('ablation', 3 * STAGE2_ITERS, lambda run: self.ablation(seed, teacher, run)))
        if os.environ.get('STUDY', '0') == '1':
            parts += [('study_' + name, variant_iters(args, 2),
                       lambda run, n=name, a=args: self.study_stage2(seed, teacher, n, a, run))
                      for name, args in STUDY_VARIANTS.items()]
            parts += [('study_' + name, variant_iters(args, 1) + variant_iters(args, 2),
                       lambda run, n=name, a=args: self.study_stages(seed, teacher, n, a, run))
                      for name, args in STAGE1_VARIANTS.items()]
        self.run_parts(seed, parts, jobs, run)

    def run_parts(self, seed, parts, jobs, run):
        """Each part (name, iterations, function(run)) of a seed: one after
        another, or with ``jobs`` > 1 up to ``jobs`` side by side, those that
        train longest first, each with its output in the seed's folder,
        log_<name>.txt. The same commands on the same files either way; a
        part that fails stops the others from starting, and is raised once
        the running ones have ended."""
        if jobs <= 1 or len(parts) <= 1:
            for _, _, part in parts:
                part(run)
            return
        folder = run['cwd']
        logs = {name: os.path.join(folder, 'log_%s.txt' % name) for name, _, _ in parts}
        self.say('seed %d: %d runs of ablation / study, up to %d side by side; the output of each: %s'
                 % (seed, len(parts), jobs, os.path.join(folder, 'log_<name>.txt')), run['log'])
        pending = sorted(parts, key=lambda p: -p[1])        # (stable: the order above among equals)
        failed, lock = [], threading.Lock()

        def worker():
            while True:
                with lock:
                    if failed or not pending:
                        return
                    name, _, part = pending.pop(0)
                try:
                    part(dict(run, log=logs[name]))
                except BaseException as e:      # noqa: B902 -- raised below, in the seed's thread
                    with lock:
                        failed.append((name, e))
                    return
        threads = [self.in_thread(worker) for _ in range(min(jobs, len(parts)))]
        for thread in threads:
            thread.join()
        if failed:
            name, error = failed[0]
            with open(logs[name]) as f:
                self.say(''.join(f.readlines()[-30:]).rstrip('\n'), run['log'])
            raise error

    def study_stage2(self, seed, teacher, name, args, run):
        """STUDY=1: stage 2 again from stage 2's start with ``args`` changed."""
        folder = run['cwd']
        self.say('seed %d: study: stage 2 with %s' % (seed, ' '.join(map(str, args))), run['log'])
        self.netgen('study/' + name, seed, *args, **run)
        self.cli('surgery', '--net', 'study/%s/kd/train_stage2.prototxt' % name, '--from', 'teacher:' + teacher,
                 '--from', 'same:snapshots/kd/stage1_iter_%d.caffemodel' % STAGE1_ITERS,
                 '-o', 'init/study_%s.caffemodel' % name, tail=1, **run)
        self.cli('train', 'study/%s/kd/solver_stage2.prototxt' % name, '--weights',
                 'init/study_%s.caffemodel' % name, '--run-dir', layout.stage_run(folder, 'study_' + name),
                 '--set', 'snapshot_prefix=snapshots/study/' + name, **run)
        if name == 'teacher_T1':
            # the soft targets at T = 1, as at the release's T = 0.5 (eval/soft_targets_val)
            self.soft_targets('study/teacher_T1/kd/train_stage2.prototxt', 'init/study_teacher_T1.caffemodel',
                              layout.SOFT_TARGETS + '_T1', run)

    def study_stages(self, seed, teacher, name, args, run):
        """STUDY=1: stages 1 and 2 again with ``args`` changed."""
        folder = run['cwd']
        self.say('seed %d: study: stages 1 and 2 with %s' % (seed, ' '.join(map(str, args))), run['log'])
        self.netgen('study/' + name, seed, *args, **run)
        # the variant's own stage-1 length
        stage1_iters = read_solver(os.path.join(folder, 'study', name, 'kd', 'solver_stage1.prototxt')).max_iter
        self.cli('surgery', '--net', 'study/%s/kd/train_stage1.prototxt' % name,
                 '--from', 'same:' + self.pretrain, '--from', 'teacher:' + teacher,
                 '-o', 'init/study_%s_stage1.caffemodel' % name, tail=1, **run)
        self.cli('train', 'study/%s/kd/solver_stage1.prototxt' % name, '--weights',
                 'init/study_%s_stage1.caffemodel' % name,
                 '--run-dir', layout.stage_run(folder, 'stage1_of_' + name),
                 '--set', 'snapshot_prefix=snapshots/study/%s_stage1' % name, **run)
        self.cli('surgery', '--net', 'study/%s/kd/train_stage2.prototxt' % name, '--from', 'teacher:' + teacher,
                 '--from', 'same:snapshots/study/%s_stage1_iter_%d.caffemodel' % (name, stage1_iters),
                 '-o', 'init/study_%s.caffemodel' % name, tail=1, **run)
        self.cli('train', 'study/%s/kd/solver_stage2.prototxt' % name, '--weights',
                 'init/study_%s.caffemodel' % name, '--run-dir', layout.stage_run(folder, 'study_' + name),
                 '--set', 'snapshot_prefix=snapshots/study/' + name, **run)

    def soft_targets(self, net, weights, name, run):
        """What stage 2 distils: the teacher's image scores as loaded (at the net's
        temperature) on the validation split, eval/NAME.json and .npy."""
        self.cli('eval', 'cls', '--net', net, '--weights', weights, '--blob', 'image_level_score',
                 '--list', self.list_file('val.txt'), '--classes', self.list_file('val.classes.txt'),
                 '--json', layout.eval_file(run['cwd'], name),
                 '--save-scores', layout.eval_file(run['cwd'], name, '.npy'), tail=1, **run)

    def ablation(self, seed, teacher, run):
        """The paper's ablation rows: each trained from exactly the weights of the
        row it is compared with, for stage 2's iterations (README: the ablation)."""
        short = ['--max-iter', STAGE2_ITERS]     # netgen's schedule for stage 2's iterations
        self.say("seed %d: ablation: stage 1 only, then %d iterations on labels (stage 2's start and budget)"
                 % (seed, STAGE2_ITERS), run['log'])
        self.cli('train', 'nets/kd/solver_baseline.prototxt', '--weights', 'init/stage2.caffemodel',
                 '--run-dir', layout.stage_run(run['cwd'], 'ablation_stage1_only'), *short,
                 '--set', 'snapshot_prefix=snapshots/ablation/stage1_only', **run)
        self.say('seed %d: ablation: stage 2 only (from the pretrained backbone, no stage 1)' % seed,
                 run['log'])
        self.cli('surgery', '--net', 'nets/kd/train_stage2.prototxt', '--from', 'same:' + self.pretrain,
                 '--from', 'teacher:' + teacher, '-o', 'init/stage2_only.caffemodel', tail=1, **run)
        self.cli('train', 'nets/kd/solver_stage2.prototxt', '--weights', 'init/stage2_only.caffemodel',
                 '--run-dir', layout.stage_run(run['cwd'], 'ablation_stage2_only'), '--set',
                 'snapshot_prefix=snapshots/ablation/stage2_only', **run)
        self.say("seed %d: ablation: labels only for %d iterations from stage 2 only's start (its control)"
                 % (seed, STAGE2_ITERS), run['log'])
        self.cli('train', 'nets/kd/solver_baseline.prototxt', '--weights', 'init/stage2_only.caffemodel',
                 '--run-dir', layout.stage_run(run['cwd'], 'ablation_labels_short'), *short,
                 '--set', 'snapshot_prefix=snapshots/ablation/labels_short', **run)
        for name in layout.ABLATIONS:
            net = 'nets/kd/%s.prototxt' % ('train_stage2' if name == 'stage2_only' else 'student_baseline')
            weights = 'snapshots/ablation/%s_iter_%d.caffemodel' % (name, STAGE2_ITERS)
            self.eval_cls('ablation_' + name, net, weights, 'fc8_mscoco', '--sigmoid', **run)

    def seed_speed(self, seed):
        """Time a seed's teacher and student; run when no seed trains."""
        folder = layout.seed_dir(self.run, seed)
        print('seed %d: ' % seed, end='', flush=True)
        self.cli('speed', '--teacher', 'nets/wsddn/wsddn_deploy.prototxt',
                 'snapshots/wsddn/wsddn_iter_%d.caffemodel' % TEACHER_ITERS,
                 '--student', 'nets/kd/student_deploy.prototxt', 'student_deploy.caffemodel',
                 '--max-images', 20, '--json', layout.eval_file(folder, 'speed'), *self.test_images(), cwd=folder)

    def seeds(self, count, jobs):
        """Seeds 1..count, ``jobs`` side by side: each seed's stages one after
        another in one process with one BLAS thread; three side by side keep
        both cores busy while one of them is between stages."""
        step('seeds 1..%d: teacher, stage 1, stage 2, baseline, evaluation (up to %d seeds side by side)'
             % (count, jobs))
        for first in range(1, count + 1, jobs):
            others = range(first + 1, min(first + jobs - 1, count) + 1)
            # the job slots no seed takes go to the seeds' ABLATION / STUDY runs
            each = jobs // (1 + len(others))
            threads = {}
            for seed in others:
                log = os.path.join(layout.seed_dir(self.run, seed), 'log.txt')
                os.makedirs(os.path.dirname(log), exist_ok=True)
                print('(seed %d runs beside seed %d; its output: %s)' % (seed, first, log), flush=True)
                threads[seed] = self.in_thread(self.seed_pipeline, seed, log, each)
            self.seed_pipeline(first, None, each)
            for seed, thread in threads.items():
                log = os.path.join(layout.seed_dir(self.run, seed), 'log.txt')
                self.join(thread, log)
                print('seed %d done:' % seed, flush=True)
                with open(log) as f:
                    for line in f:
                        if line.startswith(('mAP', 'AP07')):
                            print(line, end='')


def demo():
    run = os.path.realpath(os.environ.get('DEMO_DIR') or 'runs/demo')
    (count,), (jobs,) = env_ints('SEEDS', '3', 1, 100, count=1), env_ints('DEMO_JOBS', '3', 1, 64, count=1)
    # One BLAS thread per process: these nets' matrices are too small for two
    # threads to help, and seeds then train side by side on the two cores.
    os.environ.update(OPENBLAS_NUM_THREADS='1', GLOG_minloglevel='2')
    fresh_run_folder(run)
    os.makedirs(os.path.join(run, 'data', 'lists'))
    demo = Demo(run)
    demo.data()
    demo.seeds(count, jobs)
    step("speed: each seed's teacher and student on the same 20 test images, one after another on idle cores")
    # Timed here, not in the seed's pipeline: there the other seeds' training
    # would share the cores and the ratio would depend on when it ran.
    for seed in range(1, count + 1):
        demo.seed_speed(seed)
    step('report')
    demo.cli('report', run, *STRICT)


if __name__ == '__main__':
    main(demo)
