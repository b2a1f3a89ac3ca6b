"""The ScasNet pipeline of `caffe-mlic run`: for each seed and head, the
nets (ScasConfig), training, sliding-window inference over the test images
and eval seg (on the eroded references, and on the references as read for
the detail metrics); then the comparison report. The layout is the one
`make demo-scasnet` writes (report.layout): RUN/seed<S>/<head>/.

Paths in the config are relative to the current directory, as for every
command. The stages of one seed and head run in one process; ``jobs`` of
them side by side (one core each).
"""
import os

from caffe_mlic.pipeline.config import Field, check_net_table, check_table, not_a_file, not_a_folder, run_table
from caffe_mlic.pipeline.stages import Files, Stage, listed_files, remover


def _names(v):
    return isinstance(v, list) and all(isinstance(x, str) and x for x in v)


def _sources(v):
    from caffe_mlic.caffe.surgery import MAPPINGS
    return _names(v) and bool(v) and all(x.partition(':')[0] in MAPPINGS and x.partition(':')[2] for x in v)


def sources(items):
    """[(mapping, path)] of init_from's 'MAPPING:PATH' items."""
    return [tuple(x.split(':', 1)) for x in items]


SOLVER_TYPES = ('SGD', 'Nesterov', 'AdaGrad', 'RMSProp', 'AdaDelta', 'Adam')


def schema():
    from caffe_mlic.netspec.scasnet import HEADS
    return {
        'run': run_table('scasnet'),
        'data': {'train_list': Field((str,), 'a datalist (image label lines)', bool, True),
                 'val_list': Field((str,), 'a datalist (image label lines)', bool, True),
                 'root_folder': Field((str,), "the datalists' path prefix"),
                 'test_list': Field((str,), 'a datalist whose images are labelled and scored', bool, True),
                 'gt': Field((str,), 'the folder of the test references (as read)', bool, True),
                 'gt_eroded': Field((str,), 'the folder of the eroded test references', bool),
                 'gt_suffix': Field((str,), "the eroded references' name suffix (_noBoundary)"),
                 'hard_masks': Field((str,), 'the folder of hard-pixel masks', bool)},
        'net': {},      # ScasConfig's fields (check_net_table)
        'train': {'init_from': Field((list,), 'a list of MAPPING:CAFFEMODEL (surgery --from: same, pspnet, '
                                              'deeplab...)', _sources),
                  'max_iter': Field((int,), 'an integer from 1 to 100000000', lambda v: 1 <= v <= 10 ** 8),
                  'base_lr': Field((float,), 'a number from 1e-20 to 1000 (Caffe keeps it as a float)',
                                    lambda v: 1e-20 <= v <= 1e3),
                  'solver_type': Field((str,), 'one of %s' % ', '.join(SOLVER_TYPES), lambda v: v in SOLVER_TYPES)},
        'heads': {'names': Field((list,), 'a list of heads among %s' % ', '.join(HEADS),
                                 lambda v: _names(v) and v and len(set(v)) == len(v) and set(v) <= set(HEADS)),
                  'refine': Field((list,), 'a list of layer names', _names)},
        'infer': {'stride': Field((int,), 'an integer >= 1', lambda v: v >= 1),
                  'flip': Field((bool,), 'true or false')},
        'report': {'miniature': Field((bool,), 'true or false (a miniature: the report makes no claim)'),
                   'notes': Field((dict,), 'a table of texts, numbers or booleans (kept in settings.json)',
                                  lambda v: all(isinstance(x, (str, int, float, bool)) for x in v.values()))},
    }


# ScasConfig fields set from other tables than [net], for messages
CONFIG_KEYS = {'refine': 'heads.refine'}
# [data] keys that are ScasConfig fields: given there, not in [net]
DATA_FIELDS = ('train_list', 'val_list', 'root_folder')


def check(path, data):
    """[Problem] of a ScasNet run config read from ``path`` (pipeline.config)."""
    from caffe_mlic.errors import Problem
    from caffe_mlic.netspec.scasnet import ScasConfig
    spec = schema()
    problems = check_table(path, {k: v for k, v in data.items() if k != 'net'}, spec)
    net = data.get('net', {})
    if not isinstance(net, dict):
        return problems + [Problem(path, None, 'net', 'must be a table ([net]), got %r' % (net,))]
    problems += [Problem(path, None, 'net.' + key, 'is set by data.%s' % key) for key in DATA_FIELDS if key in net]
    problems += check_net_table(path, {k: v for k, v in net.items() if k not in DATA_FIELDS}, ScasConfig)
    tables = {k: data.get(k) if isinstance(data.get(k), dict) else {} for k in ('data', 'train')}
    for item in tables['train'].get('init_from', []) if isinstance(tables['train'].get('init_from'), list) else []:
        found = isinstance(item, str) and item.partition(':')[2]
        if found and not os.path.isfile(found):
            problems.append(Problem(path, None, 'train.init_from', '%s: %s' % (not_a_file(found), found)))
    for key in ('train_list', 'val_list', 'test_list'):
        value = tables['data'].get(key)
        if isinstance(value, str) and value and not os.path.isfile(value):
            problems.append(Problem(path, None, 'data.' + key, '%s: %s' % (not_a_file(value), value)))
    for key in ('gt', 'gt_eroded', 'hard_masks'):
        value = tables['data'].get(key)
        if isinstance(value, str) and value and not os.path.isdir(value):
            problems.append(Problem(path, None, 'data.' + key, '%s: %s' % (not_a_folder(value), value)))
    if not problems:        # (what a stage would find only after the trainings)
        problems += _data_problems(path, tables['data'])
    return problems


def _data_problems(path, data):
    """[Problem] of the lists' lines and the references: each list's
    images (and train/val labels) exist, and every test image has its
    reference, eroded reference and hard-pixel mask."""
    from caffe_mlic.data.datalist import DatalistError, read_seg_datalist
    from caffe_mlic.errors import InputError, Problem
    from caffe_mlic.evaluation.segmentation import _gt_stem, _label_files
    root = data.get('root_folder') if isinstance(data.get('root_folder'), str) else ''
    problems, test_stems, images = [], [], {}
    for key in ('train_list', 'val_list', 'test_list'):
        try:
            listed = read_seg_datalist(data[key], root, check_files=key != 'test_list', max_listed=3)
        except DatalistError as e:
            problems += [Problem(path, None, 'data.' + key, str(p)) for p in e.problems[:3]]
            continue
        # each image by its file (device, inode): a link, hard or symbolic, is the same image
        images[key] = {}
        for p in listed.image_paths:
            try:
                info = os.stat(p)
            except OSError:
                continue
            images[key].setdefault((info.st_dev, info.st_ino), p)
        for other in ('train_list', 'val_list'):
            shared = sorted(images[key][k] for k in images[key].keys() & images.get(other, {}).keys()) \
                if other != key else []
            if shared:      # (the test numbers would measure memory; val would choose settings on training data)
                problems.append(Problem(path, None, 'data.' + key, '%d of its images are in data.%s too (%s): '
                                        'the splits must not share images' % (len(shared), other,
                                                                              ', '.join(shared[:3]))))
        if key == 'test_list':
            missing = [p for p in listed.image_paths if not os.path.isfile(p)]
            if missing:
                problems.append(Problem(path, None, 'data.test_list', '%d of its %d images do not exist: %s'
                                        % (len(missing), len(listed.image_paths), ', '.join(missing[:3]))))
            test_stems = [os.path.splitext(os.path.basename(p))[0] for p in listed.image_paths]
    for key, suffix in (('gt', None), ('gt_eroded', data.get('gt_suffix')), ('hard_masks', None)):
        if not data.get(key) or not test_stems:
            continue
        try:
            stems = _label_files(data[key], 'reference')
        except InputError as e:
            problems.append(Problem(path, None, 'data.' + key, str(e)))
            continue
        lacking = [(stem, why) for stem, why in ((t, _gt_stem(t, stems, suffix)[1]) for t in test_stems) if why]
        if lacking:
            problems.append(Problem(path, None, 'data.' + key, 'no file in %s for %d of the %d test images: %s'
                                    % (data[key], len(lacking), len(test_stems),
                                       '; '.join('%s (%s)' % item for item in lacking[:3]))))
    return problems


class Plan:
    """The settings of a checked config, with their defaults."""

    def __init__(self, data):
        run, self.data = data['run'], dict(data.get('data', {}))
        self.folder = os.path.abspath(run['folder'])
        self.seeds, self.jobs, self.gpu = run.get('seeds', [1]), run.get('jobs', 1), run.get('gpu')
        self.net = dict(data.get('net', {}))
        self.train = dict(data.get('train', {}))
        heads = data.get('heads', {})
        self.heads, self.refine = heads.get('names', ['full']), heads.get('refine')
        self.infer = dict(data.get('infer', {}))
        self.report = dict(data.get('report', {}))

    def config(self, head, seed):
        """The ScasConfig of ``head`` for ``seed`` (the data layer's seed too)."""
        from caffe_mlic.netspec.scasnet import HEADS, ScasConfig
        fields = dict(data_seed=seed)
        fields.update({k: tuple(v) if isinstance(v, list) else v for k, v in self.net.items()})
        fields.update(HEADS[head])
        if self.refine is not None and 'refine' not in HEADS[head]:
            fields['refine'] = tuple(self.refine)
        fields.update(train_list=os.path.abspath(self.data['train_list']),
                      val_list=os.path.abspath(self.data['val_list']),
                      root_folder=os.path.join(os.path.abspath(self.data.get('root_folder') or '.'), ''))
        return ScasConfig.release(**fields).validate()

    def test_images(self):
        root = self.data.get('root_folder') or ''
        with open(self.data['test_list']) as f:
            return [os.path.abspath(os.path.join(root, line.split()[0])) for line in f if line.split()]


def head_stages(plan, seed, head):
    """The stages of one seed and head, in order."""
    from caffe_mlic.report import layout
    folder = layout.scasnet_head_dir(plan.folder, seed, head)
    cfg = plan.config(head, seed)
    nets = os.path.join(folder, 'nets')
    base = os.path.join(nets, '%s_scasnet_' % cfg.variant)
    max_iter = plan.train.get('max_iter')
    snapshots = os.path.join(folder, 'snapshots', 'scasnet')
    from caffe_mlic.netspec.solvers import SCASNET_SOLVERS
    iters = max_iter or SCASNET_SOLVERS[cfg.variant].max_iter
    weights = os.path.join(snapshots, '%s_scasnet_iter_%d.caffemodel' % (cfg.variant, iters))
    pred = os.path.join(folder, 'pred')
    name = 'seed%d/%s/' % (seed, head)
    data = plan.data

    def make_nets():
        from caffe_mlic.netspec.netgen import generate_scasnet
        generate_scasnet(nets, [cfg], max_iter, plan.train.get('base_lr'), plan.train.get('solver_type'), seed,
                         snapshot_dir=snapshots)

    init = os.path.join(folder, 'init.caffemodel')
    init_from = sources(plan.train.get('init_from', []))

    def make_init():
        from caffe_mlic.caffe.surgery import shape_only_net, transplant
        from caffe_mlic.fileio import save_weights
        net = shape_only_net(base + 'train.prototxt', seed=seed)
        transplant(net, init_from)
        save_weights(net, init)

    def train():
        from caffe_mlic.engine import train as train_solver
        train_solver(base + 'solver.prototxt', run_dir=os.path.join(folder, 'train'), resume='auto',
                     weights=[init] if init_from else (), gpu=plan.gpu)

    def infer():
        from caffe_mlic.inference.segmenter import label_images
        label_images(base + 'deploy.prototxt', weights, plan.test_images(), pred, stride=plan.infer.get('stride'),
                     flip=plan.infer.get('flip', False))

    def evaluate():
        from caffe_mlic.evaluation.seg_eval import evaluate_seg
        hard = data.get('hard_masks')
        if data.get('gt_eroded'):
            evaluate_seg(os.path.join(pred, 'labels'), data['gt_eroded'], gt_suffix=data.get('gt_suffix'),
                         hard_masks=hard, json_path=layout.scasnet_eval(folder))
            evaluate_seg(os.path.join(pred, 'labels'), data['gt'], hard_masks=hard,
                         json_path=layout.scasnet_eval(folder, full=True))
        else:
            evaluate_seg(os.path.join(pred, 'labels'), data['gt'], eroded=True, hard_masks=hard,
                         json_path=layout.scasnet_eval(folder))
            evaluate_seg(os.path.join(pred, 'labels'), data['gt'], hard_masks=hard,
                         json_path=layout.scasnet_eval(folder, full=True))
    def scores():
        from caffe_mlic.fileio import read_json
        result = read_json(layout.scasnet_eval(folder))
        return ', '.join('%s %s' % (key, '-' if result.get(key) is None else '%.1f' % result[key])
                         for key in ('OA', 'mF1', 'mIoU'))

    def trained():
        from caffe_mlic.engine.logs import read_run_json
        info = read_run_json(os.path.join(folder, 'train'))
        return 'iteration %s' % (info.get('final_iteration') if isinstance(info, dict) else '?')
    lists = [os.path.abspath(data['train_list']), os.path.abspath(data['val_list'])]
    root = os.path.abspath(data.get('root_folder') or '.')
    # the tiles and labels the lists name, by size and time (a tile replaced in place reruns what reads it)
    training_files = Files('training tiles', listed_files(lists[0], root) + listed_files(lists[1], root))
    test_files = Files('test tiles', listed_files(os.path.abspath(data['test_list']), root))
    # the references and hard masks, by content (a folder changed in place reruns eval)
    references = [os.path.abspath(data[k]) for k in ('gt', 'gt_eroded', 'hard_masks') if data.get(k)]
    nets_stage = Stage(name + 'nets', make_nets, dict(net=repr(cfg), train=plan.train, seed=seed), lists,
                       [base + 'deploy.prototxt', base + 'train.prototxt', base + 'solver.prototxt'])
    init_stages = [Stage(name + 'init', make_init, dict(init_from=plan.train['init_from']),
                         [base + 'train.prototxt'] + [path for _, path in init_from], [init],
                         after=[name + 'nets'])] if init_from else []
    return [nets_stage] + init_stages + [
        Stage(name + 'train', train, {}, [base + 'train.prototxt', base + 'solver.prototxt', training_files] + (
              [init] if init_from else []), [weights], after=[name + ('init' if init_from else 'nets')],
              clean=remover(os.path.dirname(snapshots), os.path.join(folder, 'train')), headline=trained),
        Stage(name + 'infer', infer, dict(infer=plan.infer), [base + 'deploy.prototxt', weights,
                                                               os.path.abspath(data['test_list']), test_files],
              [os.path.join(pred, 'labels')], after=[name + 'train'], clean=remover(pred)),
        Stage(name + 'eval', evaluate, {k: data.get(k) for k in ('gt_suffix',)},
              [os.path.join(pred, 'labels')] + references, [layout.scasnet_eval(folder),
                                                            layout.scasnet_eval(folder, True)],
              after=[name + 'infer'], clean=remover(os.path.dirname(layout.scasnet_eval(folder))),
              headline=scores)]


def report_stage(plan):
    from caffe_mlic.fileio import atomic_write_json
    from caffe_mlic.netspec.solvers import SCASNET_SOLVERS
    from caffe_mlic.report import layout
    evals = [layout.scasnet_eval(layout.scasnet_head_dir(plan.folder, seed, head), full)
             for seed in plan.seeds for head in plan.heads for full in (False, True)]
    # what the report shows of the run (report.scasnet.read_demo_settings)
    cfg = plan.config(plan.heads[0], plan.seeds[0])
    settings = dict(plan.report.get('notes', {}), heads=plan.heads, seeds=plan.seeds, jobs=plan.jobs,
                    mini=plan.report.get('miniature', False), size=cfg.input_size, batch=cfg.batch_size,
                    vgg_blocks=list(cfg.vgg_blocks), refine=plan.refine, lr=plan.train.get('base_lr'),
                    iters=plan.train.get('max_iter') or SCASNET_SOLVERS[cfg.variant].max_iter,
                    data=dict(train_list=os.path.abspath(plan.data['train_list']),
                              root_folder=os.path.abspath(plan.data.get('root_folder') or '.'),
                              test_list=os.path.abspath(plan.data['test_list']),
                              hard_masks=os.path.abspath(plan.data['hard_masks']) if plan.data.get('hard_masks')
                              else None))

    def report():
        from caffe_mlic.report.scasnet_heads import write_report
        atomic_write_json(layout.scasnet_path(plan.folder, 'settings.json'), settings, replace_special=True)
        write_report(plan.folder)
    after = ['seed%d/%s/eval' % (seed, head) for seed in plan.seeds for head in plan.heads]
    return Stage('report', report, settings, evals, [os.path.join(plan.folder, 'results.json'),
                                                     os.path.join(plan.folder, 'report.html')], after=after)


def summary(plan):
    """The lines `run` ends with: the comparison's table and where the results are."""
    import json
    from caffe_mlic.report.scasnet_heads import table
    results = os.path.join(plan.folder, 'results.json')
    if not os.path.exists(results):     # (--only a stage before the report)
        return []
    with open(results) as f:
        return [table(json.load(f)), 'results: %s\nreport:  %s' % (results, os.path.join(plan.folder,
                                                                                      'report.html'))]


def stages(plan):
    """Every stage, chains of one seed and head first, the report last."""
    return [s for seed in plan.seeds for head in plan.heads for s in head_stages(plan, seed, head)] + \
        [report_stage(plan)]


def chain_of(stage_name):
    """The seed and head folder a stage belongs to ('seed1/full'), or None."""
    parts = stage_name.split('/')
    return '/'.join(parts[:2]) if len(parts) == 3 else None
