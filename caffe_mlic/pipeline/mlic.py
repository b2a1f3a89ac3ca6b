"""The MLIC-KD-WSD pipeline of `caffe-mlic run`: from a VOC or COCO dataset,
proposals and ImageNet-style backbone weights to the distilled student,
evaluated, in the layout `make demo` writes (report.layout):

    data/proposals     proposals of every image (computed or imported; or a folder given)
    data/lists         the train / val / test datalists (`datalist build`)
    seed<S>/           per seed: nets, the teacher (WSDDN), stage 1 (features),
                       stage 2 (predictions), the label-only baseline, their
                       evaluation on the test split (eval cls at 0.5 and at
                       thresholds fitted on val), detection by the teacher and
                       by the random control (eval det), the student's deploy
                       weights; with [ablation] the paper's ablation rows, with
                       [study.NAME] stage 2 (or stages 1 and 2) with settings changed
    speed, report      the seeds' speed on idle cores, then results.json and report.html

Each stage runs the `caffe-mlic` command a user would type for it, in this
process, with the arguments the config gives (pipeline.invoke). The
stages of a seed run in a process of their own, as do the ablation rows
and each study variant of a seed once the seed's stages they start from
are done; ``run.jobs`` of them side by side.
"""
import contextlib
import os
import re

from caffe_mlic.fileio import file_kind_problem
from caffe_mlic.pipeline.config import (Field, check_net_table, check_table, distinct_ints, not_a_file, not_a_folder,
                                        run_table)
from caffe_mlic.pipeline.invoke import command, working_folder
from caffe_mlic.pipeline.scasnet import SOLVER_TYPES, _names
from caffe_mlic.pipeline.stages import Files, Stage, remover

# config stage -> (netgen's solver name, solver file, snapshot prefix under the seed folder)
STAGES = {'teacher': ('wsddn', 'nets/wsddn/solver.prototxt', 'snapshots/wsddn/wsddn'),
          'stage1': ('stage1', 'nets/kd/solver_stage1.prototxt', 'snapshots/kd/stage1'),
          'stage2': ('stage2', 'nets/kd/solver_stage2.prototxt', 'snapshots/kd/stage2'),
          'baseline': ('baseline', 'nets/kd/solver_baseline.prototxt', 'snapshots/kd/baseline')}
SPLITS = ('train', 'val', 'test')
# [net] fields the pipeline sets itself: the datalists it builds, and the seed
PIPELINE_FIELDS = ('train_list', 'test_list', 'root_folder', 'data_seed')


def _solver_table():
    return {'set': Field((dict,), 'a table of solver fields for its trainings (`train --set FIELD=VALUE`), e.g. '
                                  '{ momentum = 0.95 }', lambda v: all(isinstance(x, (str, int, float))
                                                                        for x in v.values())),
            'max_iter': Field((int,), 'an integer from 1 to 100000000', lambda v: 1 <= v <= 10 ** 8),
            'base_lr': Field((float,), 'a number from 1e-20 to 1000 (Caffe keeps it as a float)',
                                    lambda v: 1e-20 <= v <= 1e3)}


def _detect_scales(v):
    from caffe_mlic.inference.detector import MAX_SCALE, MIN_SCALE
    return distinct_ints(MIN_SCALE)(v) and all(x <= MAX_SCALE and x % 16 == 0 for x in v)


def schema():
    from caffe_mlic.data.proposals import METHODS
    from caffe_mlic.data.proposal_formats import FORMATS
    data = {'voc': Field((str,), 'a Pascal VOC folder (Annotations, ImageSets/Main, JPEGImages)', bool),
            'voc_difficult': Field((str,), "'include' or 'ignore'", lambda v: v in ('include', 'ignore'))}
    for split in SPLITS:
        data[split + '_list'] = Field((str,), 'a datalist of `datalist build` (with its .classes.txt and '
                                              '.gt.json beside it; absolute image paths)', bool)
        data[split + '_set'] = Field((str,), 'a VOC image set name (ImageSets/Main/<name>.txt)', bool)
        data[split + '_coco'] = Field((str,), 'a COCO instances JSON file', bool)
        data[split + '_images'] = Field((str,), "the folder of the COCO file's images", bool)
    return {
        'run': run_table('mlic'),
        'data': data,
        'proposals': {'folder': Field((str,), 'a folder of <image stem>.npz proposals', bool),
                      'compute': Field((bool,), 'true or false'),
                      'method': Field((str,), 'one of %s' % ', '.join(METHODS), lambda v: v in METHODS),
                      'max_boxes': Field((int,), 'an integer >= 1', lambda v: v >= 1),
                      'min_size': Field((int,), 'an integer >= 1', lambda v: v >= 1),
                      'jobs': Field((int,), 'an integer from 1 to 64', lambda v: 1 <= v <= 64),
                      'import_format': Field((str,), 'one of %s' % ', '.join(FORMATS), lambda v: v in FORMATS),
                      'import_files': Field((list,), "a list of the peer's proposal files", lambda v: _names(v)
                                            and bool(v))},
        'weights': {'pretrained': Field((str,), "the backbone's pretrained weights (.caffemodel)", bool, True)},
        'net': {},      # MlicConfig's fields (check_net_table)
        'train': dict(solver_type=Field((str,), 'one of %s' % ', '.join(SOLVER_TYPES),
                                        lambda v: v in SOLVER_TYPES),
                      **{stage: _solver_table() for stage in STAGES}),
        # (the report reads every evaluation: the teacher's detections and the control's always run)
        'evaluate': {'scales': Field((list,), 'a list of distinct image sizes, multiples of 16 from 16 to 4096 '
                                              '(`detect --scales`)', _detect_scales),
                     'flip': Field((bool,), 'true or false'),
                     'speed_images': Field((int,), 'an integer from 1 to 100000 (the test images timed)',
                                           lambda v: 1 <= v <= 100000)},
        'ablation': {'rows': Field((bool,), 'true or false')},
        'study': None,  # {NAME: {...}} (check_study)
        'report': {'strict': Field((bool,), 'true or false (exit 1 when a fairness check fails)')},
    }


STUDY_FIELDS = {'net': Field((dict,), 'a table of MlicConfig fields'),
                'stage1_iters': Field((int,), 'an integer from 1 to 100000000', lambda v: 1 <= v <= 10 ** 8),
                'stage2_iters': Field((int,), 'an integer from 1 to 100000000', lambda v: 1 <= v <= 10 ** 8),
                'with_stage1': Field((bool,), 'true or false (train its own stage 1 first)')}


def check(path, data):
    """[Problem] of a MLIC-KD-WSD run config read from ``path`` (pipeline.config)."""
    from caffe_mlic.errors import Problem
    from caffe_mlic.netspec import MlicConfig
    spec = schema()
    top = {k: v for k, v in data.items() if k not in ('net', 'study')}
    problems = check_table(path, top, {k: v for k, v in spec.items() if k not in ('net', 'study')})
    net = data.get('net', {})
    if not isinstance(net, dict):
        return problems + [Problem(path, None, 'net', 'must be a table ([net]), got %r' % (net,))]
    problems += [Problem(path, None, 'net.' + key, 'is set by the pipeline (the datalists it builds, the '
                                                   'seed)') for key in PIPELINE_FIELDS if key in net]
    base = {k: v for k, v in net.items() if k not in PIPELINE_FIELDS}
    problems += check_net_table(path, base, MlicConfig)
    study = data.get('study', {})
    if not isinstance(study, dict):
        problems.append(Problem(path, None, 'study', 'must be a table of variants ([study.NAME]), got %r'
                                % (study,)))
        study = {}
    for name, variant in study.items():
        where = 'study.%s' % name
        if not re.fullmatch(r'[A-Za-z0-9_-]{1,64}', name):
            problems.append(Problem(path, None, where, 'a variant name is letters, digits, _ and - (it names '
                                                       'folders and stages), got %r' % name))
            continue
        if not isinstance(variant, dict):
            problems.append(Problem(path, None, where, 'must be a table ([%s]), got %r' % (where, variant)))
            continue
        problems += check_table(path, variant, STUDY_FIELDS, where + '.')
        if isinstance(variant.get('net'), dict):
            problems += check_net_table(path, dict(base, **variant['net']), MlicConfig, where + '.net.')
    train = data.get('train') if isinstance(data.get('train'), dict) else {}
    for stage in STAGES:
        fields = train.get(stage, {}).get('set') if isinstance(train.get(stage), dict) else None
        if isinstance(fields, dict):
            solver_type = train.get('solver_type') if train.get('solver_type') in SOLVER_TYPES else 'SGD'
            problems += _solver_set_problems(path, 'train.%s.set' % stage, fields, solver_type)
    tables = {k: data.get(k) if isinstance(data.get(k), dict) else {} for k in ('data', 'proposals', 'weights')}
    problems += _data_problems(path, tables['data'])
    if not problems:
        problems += _shared_images_problems(path, tables['data'])
    problems += _proposal_problems(path, tables['proposals'],
                                   any(tables['data'].get(split + '_list') for split in SPLITS))
    if not problems and isinstance(net.get('num_classes'), int):
        problems += _class_count_problems(path, tables['data'], net['num_classes'])
    pretrained = tables['weights'].get('pretrained')
    if isinstance(pretrained, str) and pretrained and not os.path.isfile(pretrained):
        problems.append(Problem(path, None, 'weights.pretrained', '%s: %s' % (not_a_file(pretrained), pretrained)))
    return problems


# solver fields the pipeline sets itself (the net, the length, where the snapshots go, the seed)
OWNED_SOLVER_FIELDS = ('net', 'net_param', 'train_net', 'train_net_param', 'test_net', 'test_net_param',
                       'max_iter', 'snapshot', 'snapshot_prefix', 'random_seed', 'base_lr', 'type', 'solver_type')


def _solver_set_problems(path, key, fields, solver_type='SGD'):
    """[Problem] of a train.STAGE.set table: each field as `train --set`
    reads it, within the solver's bounds, and none the pipeline sets; and
    the fields together on the solver the pipeline writes (its schedule,
    ``solver_type`` and the momentum netgen gives it)."""
    from caffe.proto import caffe_pb2
    from caffe_mlic.engine.solver_file import apply_overrides, check_values, type_problems, NO_MOMENTUM
    from caffe_mlic.errors import MlicError, Problem
    from caffe_mlic.engine.lr import lr_policy_problems
    from caffe_mlic.engine.solver_file import MAX_ITER_SIZE
    problems = []
    # the fields together, on the pipeline's schedule (lr_policy "step", unless the table sets one): what
    # `train` refuses in combination (lr_policy "step" with stepsize <= 0, momentum with AdaGrad, delta 0
    # with Adam, ...), and the counts it bounds
    together = caffe_pb2.SolverParameter(lr_policy='step', stepsize=1, max_iter=1,
                                         momentum=0.0 if solver_type in NO_MOMENTUM else 0.9)
    for name, value in fields.items():
        if name not in OWNED_SOLVER_FIELDS:
            try:
                apply_overrides(together, ['%s=%s' % (name, value)])
            except MlicError:
                pass        # (said below, field by field)
    combined = list(lr_policy_problems(together)) + type_problems(together, solver_type)
    if 'iter_size' in fields and not 1 <= together.iter_size <= MAX_ITER_SIZE:
        combined.append(('iter_size', 'iter_size must be from 1 to %d, got %d' % (MAX_ITER_SIZE,
                                                                                together.iter_size)))
    problems += [Problem(path, None, '%s.%s' % (key, field), message) for field, message in combined
                 if field in fields]
    for name, value in fields.items():
        where = '%s.%s' % (key, name)
        if name in OWNED_SOLVER_FIELDS:
            problems.append(Problem(path, None, where, 'is set by the pipeline (%s)' % (
                'train.STAGE.max_iter / base_lr, train.solver_type' if name in ('max_iter', 'base_lr', 'type',
                                                                                   'solver_type')
                else 'the nets, snapshots and seed are its own')))
            continue
        param = caffe_pb2.SolverParameter()
        try:
            apply_overrides(param, ['%s=%s' % (name, value)])
        except MlicError as e:
            problems.append(Problem(path, None, where, str(e)))
            continue
        check_values(param, lambda field, message: problems.append(Problem(path, None, where, message))
                     if field == name else None)
    return problems


def _data_problems(path, data):
    from caffe_mlic.errors import Problem
    problems = []
    voc = data.get('voc')
    coco = [split for split in SPLITS if data.get(split + '_coco') or data.get(split + '_images')]
    lists = [split for split in SPLITS if data.get(split + '_list')]
    if sum(map(bool, (voc, coco, lists))) > 1:
        problems.append(Problem(path, None, 'data', 'give one form: voc (with train_set, val_set, test_set), '
                                                    "the splits' COCO files, or the splits' datalists"))
    elif lists:
        for split in SPLITS:
            problems += _datalist_problems(path, 'data.%s_list' % split, data.get(split + '_list'))
    elif voc and not isinstance(voc, str):
        pass        # (its type is said with the others')
    elif voc:
        if not os.path.isdir(voc):
            problems.append(Problem(path, None, 'data.voc', '%s: %s' % (not_a_folder(voc), voc)))
        for split in SPLITS:
            name = data.get(split + '_set')
            if not name:
                problems.append(Problem(path, None, 'data.%s_set' % split, 'missing (the VOC image set of '
                                                                           'the %s split)' % split))
            elif isinstance(name, str) and os.path.isdir(voc):
                listed = os.path.join(voc, 'ImageSets', 'Main', name + '.txt')
                if not os.path.isfile(listed):
                    problems.append(Problem(path, None, 'data.%s_set' % split, 'no image set %s%s' % (
                        listed, '' if not os.path.lexists(listed) else ' (%s)' % file_kind_problem(listed))))
                elif not _names_an_image(listed):
                    problems.append(Problem(path, None, 'data.%s_set' % split, '%s lists no image' % listed))
    else:
        for split in SPLITS:
            for key, kind, test in (('_coco', 'file', os.path.isfile), ('_images', 'folder', os.path.isdir)):
                value = data.get(split + key)
                if not value:
                    problems.append(Problem(path, None, 'data.' + split + key, 'missing (give data.voc, or '
                                            "each split's COCO file and image folder)"))
                elif isinstance(value, str) and not test(value):
                    problems.append(Problem(path, None, 'data.' + split + key, 'no such %s: %s' % (kind, value)))
                elif key == '_coco' and isinstance(value, str) and _coco_without_images(value):
                    problems.append(Problem(path, None, 'data.' + split + key, '%s lists no image' % value))
    return problems


def _datalist_problems(path, key, datalist):
    """A datalist given as it is: it, its companions (the report and the
    evaluation read them) and absolute image paths (stages run in the seed's folder)."""
    from caffe_mlic.data.datalist_build import companion_paths
    from caffe_mlic.errors import Problem
    if not datalist:
        return [Problem(path, None, key, "missing (give each split's datalist)")]
    if not isinstance(datalist, str):
        return []
    for needed in [datalist] + list(companion_paths(datalist)):
        if not os.path.isfile(needed):
            return [Problem(path, None, key, '%s: %s%s' % (not_a_file(needed), needed, '' if needed == datalist else
                                                                      ' (`datalist build` writes it beside the '
                                                                      'datalist)'))]
    first, problem = _first_datalist_line(datalist)
    if problem:
        return [Problem(path, None, key, problem)]
    if first is None:
        return [Problem(path, None, key, '%s lists no image' % datalist)]
    name = first[0].decode('utf-8', 'backslashreplace')
    if not os.path.isabs(name):
        return [Problem(path, None, key, '%s names its images relative to a root folder (%s): build it '
                                         'without --root' % (datalist, name if len(name) < 200 else
                                                             name[:200] + '...'))]
    return []


DATALIST_LINE_BYTES = 1 << 16


def _first_datalist_line(datalist):
    """(the first non-blank line's fields as bytes, or None; a problem or
    None), reading at most a line's worth at a time and the first MB: a
    NUL-filled or UTF-16 file is not a text datalist (it was read whole
    as one line), a UTF-8 BOM is passed over."""
    read = 0
    with open(datalist, 'rb') as f:
        while read < (1 << 20):
            line = f.readline(DATALIST_LINE_BYTES)
            if not line:
                return None, None
            if read == 0 and line.startswith(b'\xef\xbb\xbf'):
                line = line[3:]
            read += len(line)
            if b'\0' in line or (len(line) == DATALIST_LINE_BYTES and not line.endswith(b'\n')):
                return None, ('%s is not a text datalist: %s near its start (a datalist is UTF-8 text, a line '
                              'per image)' % (datalist, 'NUL bytes (UTF-16, or a file of zeros?)' if b'\0' in line
                                              else 'a line over %d KB' % (DATALIST_LINE_BYTES >> 10)))
            if line.strip():
                return line.split(), None
    return None, None


COCO_CHECKED_BYTES = 64 << 20     # a bigger instances file is read by its datalist stage only


def _split_images(data, split):
    """({key: name} of the images of ``split`` as the config gives them, the
    config key they come from), or (None, key) where they are not read here:
    each image by its file (device, inode: a link is the same image; a
    missing one by its path), a VOC set's names as JPEGImages/NAME.jpg."""
    import json
    found = {}

    def add_file(path, shown=None):
        try:
            info = os.stat(path)
            found.setdefault((info.st_dev, info.st_ino), shown or path)
        except OSError:         # (not there: the same spelling is the same image)
            with contextlib.suppress(ValueError):
                found.setdefault(os.path.realpath(path), shown or path)
        except ValueError:      # (a NUL, a lone surrogate: no file has that name)
            pass
    if data.get(split + '_list'):
        if _first_datalist_line(data[split + '_list'])[1]:
            return None, 'data.%s_list' % split       # (not a text datalist: said by the checks before)
        with open(data[split + '_list'], 'rb') as f:
            for line in iter(lambda: f.readline(DATALIST_LINE_BYTES), b''):     # (lines of bounded length)
                if line.split():
                    add_file(os.fsdecode(line.split()[0].removeprefix(b'\xef\xbb\xbf')))
        return found, 'data.%s_list' % split
    if data.get('voc'):
        with open(os.path.join(data['voc'], 'ImageSets', 'Main', data[split + '_set'] + '.txt'), 'rb') as f:
            for line in iter(lambda: f.readline(DATALIST_LINE_BYTES), b''):
                if line.split():
                    name = os.fsdecode(line.split()[0].removeprefix(b'\xef\xbb\xbf'))   # (a BOM)
                    # its image file, as a datalist's (./000001, or a link to another's image: the same)
                    add_file(os.path.join(data['voc'], 'JPEGImages', name + '.jpg'), name)
        return found, 'data.%s_set' % split
    coco = data.get(split + '_coco')
    try:
        if os.path.getsize(coco) > COCO_CHECKED_BYTES:
            return None, 'data.%s_coco' % split
        with open(coco, 'rb') as f:
            images = json.load(f).get('images')
    except (OSError, ValueError, RecursionError, AttributeError, TypeError):
        return None, 'data.%s_coco' % split
    for image in images if isinstance(images, list) else []:
        if isinstance(image, dict) and isinstance(image.get('file_name'), str):
            add_file(os.path.join(data[split + '_images'], image['file_name']))
    return found, 'data.%s_coco' % split


def _shared_images_problems(path, data):
    """[Problem] for splits that share images: the test numbers would
    measure memory, and val would choose thresholds on training images."""
    from caffe_mlic.errors import Problem
    problems, seen = [], {}
    for split in SPLITS:
        try:
            images, key = _split_images(data, split)
        except (OSError, TypeError):
            continue            # (what is wrong with the file is said by the checks before)
        if images is None:
            continue
        for other in [s for s in SPLITS[:SPLITS.index(split)] if s in seen]:
            shared = sorted(images[k] for k in images.keys() & seen[other].keys())
            if shared:
                shown = [name.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')
                         for name in shared[:3]]       # (a name in another encoding: \xff, not \udcff)
                problems.append(Problem(path, None, key, '%d of its images are in the %s split too (%s): the '
                                        'splits must not share images' % (len(shared), other, ', '.join(shown))))
        seen[split] = images
    return problems


def _class_count_problems(path, data, num_classes):
    """[Problem] where net.num_classes is not the number of classes of the
    training data (the nets stage would fail on it, long after --check), as
    far as it is read cheaply here: a datalist's .classes.txt, the VOC
    root's classes.txt, a COCO file's categories (up to
    COCO_CHECKED_BYTES)."""
    import json
    from caffe_mlic.data.annotations import read_class_list
    from caffe_mlic.errors import InputError, Problem
    try:
        if data.get('train_list'):
            source = data['train_list'][:-4] + '.classes.txt'
            count = len(read_class_list(source))
        elif data.get('voc'):
            # (none there yet: an earlier stage of the user's may write it; the datalist stage decides)
            source = os.path.join(data['voc'], 'classes.txt')
            count = len(read_class_list(source))
        else:
            source = data.get('train_coco')
            if os.path.getsize(source) > COCO_CHECKED_BYTES:
                return []
            with open(source, 'rb') as f:
                count = len(json.load(f)['categories'])
    except (InputError, OSError, ValueError, RecursionError, KeyError, TypeError):
        return []       # (what is wrong with the file is said by the stage that reads it)
    if count == num_classes:
        return []
    return [Problem(path, None, 'net.num_classes', 'is %d, but the training data has %d classes (%s)'
                    % (num_classes, count, source))]


def _coco_without_images(path):
    """Whether the COCO instances file at ``path`` lists no image (read here
    when it is small enough; a malformed one is left to `datalist build`,
    which names what is wrong)."""
    import json
    try:
        if os.path.getsize(path) > COCO_CHECKED_BYTES:
            return False
        with open(path, 'rb') as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and isinstance(data.get('images'), list) and not data['images']


def _names_an_image(image_set):
    with open(image_set, 'rb') as f:
        return any(line.strip() for line in f)


def _proposal_problems(path, proposals, given_lists=False):
    from caffe_mlic.errors import Problem
    given = [k for k in ('folder', 'compute', 'import_format') if proposals.get(k)]
    if given_lists and given and given != ['folder']:
        return [Problem(path, None, 'proposals', 'with datalists given as they are, give a folder of proposals '
                                                 '(for the detections), or none: detect then computes each '
                                                 "test image's")]
    if given_lists and not given:
        return []
    if len(given) != 1:
        return [Problem(path, None, 'proposals', 'give exactly one of folder (computed already), compute = true '
                                                 'or import_format with import_files, got %s'
                        % (', '.join(given) or 'none'))]
    if proposals.get('import_format') and not proposals.get('import_files'):
        return [Problem(path, None, 'proposals.import_files', 'missing (the files of import_format)')]
    folder = proposals.get('folder')
    if isinstance(folder, str) and not os.path.isdir(folder):
        return [Problem(path, None, 'proposals.folder', '%s: %s' % (not_a_folder(folder), folder))]
    return [Problem(path, None, 'proposals.import_files', '%s: %s' % (not_a_file(f), f))
            for f in proposals.get('import_files') or [] if isinstance(f, str) and not os.path.isfile(f)]


class Plan:
    """The settings of a checked config, with their defaults; every path absolute."""

    def __init__(self, data):
        from caffe_mlic.report import layout
        run = data['run']
        self.folder = os.path.abspath(run['folder'])
        self.seeds, self.jobs, self.gpu = run.get('seeds', [1]), run.get('jobs', 1), run.get('gpu')
        self.data = {k: os.path.abspath(v) if k.endswith(('voc', '_coco', '_images', '_list')) else v
                     for k, v in data.get('data', {}).items()}
        self.given_lists = {split: self.data[split + '_list'] for split in SPLITS if self.data.get(split + '_list')}
        self.proposals = dict(data.get('proposals', {}))
        if self.proposals.get('folder'):
            self.proposals_dir = os.path.abspath(self.proposals['folder'])
        elif self.given_lists:
            self.proposals_dir = None       # detect computes each test image's
        else:
            self.proposals_dir = os.path.join(self.folder, 'data', 'proposals')
        self.pretrained = os.path.abspath(data['weights']['pretrained'])
        self.net = {k: tuple(v) if isinstance(v, list) else v for k, v in data.get('net', {}).items()}
        self.train = dict(data.get('train', {}))
        self.evaluate = dict(data.get('evaluate', {}))
        self.ablation = data.get('ablation', {}).get('rows', False)
        self.study = dict(data.get('study', {}))
        self.strict = data.get('report', {}).get('strict', False)
        self.lists = {split: layout.list_file(self.folder, split + '.txt') for split in SPLITS}

    def config(self, seed, extra=None):
        """The MlicConfig of ``seed`` (the data layers' seed too), with ``extra`` fields."""
        from caffe_mlic.netspec import MlicConfig
        fields = dict(self.net, **{k: tuple(v) if isinstance(v, list) else v for k, v in (extra or {}).items()})
        fields.update(train_list=self.lists['train'], test_list=self.lists['val'], data_seed=seed)
        return MlicConfig.release(**fields).validate()

    def iterations(self, stage, study=None):
        """The iterations of ``stage`` (teacher, stage1, ...): the config's or the release solver's."""
        from caffe_mlic.netspec.solvers import SOLVERS
        if study is not None and self.study[study].get(stage + '_iters'):
            return self.study[study][stage + '_iters']
        given = self.train.get(stage, {}).get('max_iter')
        if given:
            return given
        solver = STAGES[stage][1][len('nets/'):-len('.prototxt')]
        return SOLVERS[solver][1].max_iter

    def solver_settings(self, study=None):
        """(max_iter, base_lr) for netgen's generate: per solver where given."""
        max_iter = {STAGES[s][0]: self.iterations(s, study) for s in STAGES
                    if self.train.get(s, {}).get('max_iter') or (study and self.study[study].get(s + '_iters'))}
        base_lr = {STAGES[s][0]: self.train[s]['base_lr'] for s in STAGES if self.train.get(s, {}).get('base_lr')}
        return max_iter or None, base_lr or None

    def test_images(self):
        """The test split's image files, in the datalist's order (its gt.json)."""
        from caffe_mlic.data.datalist_build import companion_paths
        from caffe_mlic.fileio import read_json
        gt = read_json(companion_paths(self.lists['test'])[1], 'ground truth')
        return [image['file'] for image in gt['images']]


def _trained(run_dir):
    def headline():
        from caffe_mlic.engine.logs import read_run_json, test_points
        info = read_run_json(run_dir)
        info = info if isinstance(info, dict) else {}
        tests = test_points(os.path.join(run_dir, 'log.jsonl'))
        return 'iteration %s%s' % (info.get('final_iteration'),
                                   ', val mAP %.1f' % tests[-1][1] if tests and tests[-1][1] is not None else '')
    return headline


def _map_of(path):
    def headline():
        from caffe_mlic.fileio import read_json
        result = read_json(path)
        value = result.get('mAP', result.get('AP'))
        return ('mAP %.1f' % value if 'mAP' in result else 'AP %.1f, CorLoc %.1f' % (value, result['CorLoc'])) \
            if value is not None else 'no score'
    return headline


# ---------------------------------------------------------------- data


def data_stages(plan):
    """The proposals (unless a folder of them is given) and the datalists."""
    from caffe_mlic.data.datalist_build import companion_paths
    if plan.given_lists:
        return [_copied_list(plan, split) for split in SPLITS]
    out = []
    images = _image_folders(plan)
    if plan.proposals.get('compute') or plan.proposals.get('import_format'):
        p = plan.proposals
        if p.get('compute'):
            argv = ['proposals', *images, '-o', plan.proposals_dir, '--method', p.get('method', 'edgeboxes'),
                    '--max-boxes', p.get('max_boxes', 2000), '--min-size', p.get('min_size', 20),
                    '--jobs', p.get('jobs', 1), '-q']
            inputs = [Files('images', images)]
        else:
            argv = ['proposals', 'import', p['import_format'], *[os.path.abspath(f) for f in p['import_files']],
                    '-o', plan.proposals_dir, '--images', *images, '--max-boxes', p.get('max_boxes', 2000),
                    '--min-size', p.get('min_size', 20), '-q']
            inputs = [os.path.abspath(f) for f in p['import_files']] + [Files('images', images)]
        out.append(Stage('data/proposals', lambda argv=argv: command(*argv), dict(proposals=p), inputs,
                         [plan.proposals_dir], clean=remover(plan.proposals_dir)))
    size = plan.config(plan.seeds[0]).teacher_size
    bbox_num = plan.config(plan.seeds[0]).bbox_num
    for split in SPLITS:
        source = (['--voc', plan.data['voc'], '--set', plan.data[split + '_set'],
                   '--voc-difficult', plan.data.get('voc_difficult', 'include')] if plan.data.get('voc') else
                  ['--coco', plan.data[split + '_coco'], '--images', plan.data[split + '_images']])
        target = plan.lists[split]
        argv = ['datalist', 'build', *source, '--proposals', plan.proposals_dir, '-o', target,
                '--size', size, '--bbox-num', bbox_num]
        outputs = [target] + [p for p in companion_paths(target) if p]
        annotations = ([os.path.join(plan.data['voc'], 'ImageSets', 'Main', plan.data[split + '_set'] + '.txt'),
                        os.path.join(plan.data['voc'], 'Annotations')] if plan.data.get('voc')
                       else [plan.data[split + '_coco']])
        out.append(Stage('data/list_' + split, lambda argv=argv: command(*argv),
                         dict(source=source[:4], size=size, bbox_num=bbox_num),
                         annotations + [Files('proposals', [plan.proposals_dir]), Files('images', images)],
                         outputs, after=[s.name for s in out if s.name == 'data/proposals'],
                         clean=remover(*outputs)))
    return out


def _copied_list(plan, split):
    """A datalist given as it is, with its companions, copied into
    RUN/data/lists/ where the stages and the report read it."""
    import shutil
    from caffe_mlic.data.datalist_build import companion_paths
    from caffe_mlic.fileio import atomic_files
    from caffe_mlic.pipeline.stages import listed_files
    given = plan.given_lists[split]
    sources = [given] + list(companion_paths(given))
    targets = [plan.lists[split]] + list(companion_paths(plan.lists[split]))

    def copy():
        os.makedirs(os.path.dirname(targets[0]), exist_ok=True)
        with atomic_files(targets, 'wb') as files:
            for source, f in zip(sources, files):
                with open(source, 'rb') as src:
                    shutil.copyfileobj(src, f)
    return Stage('data/list_' + split, copy, {}, sources + [Files('images', listed_files(given))], targets,
                 clean=remover(*targets))


def _image_folders(plan):
    if plan.data.get('voc'):
        return [os.path.join(plan.data['voc'], 'JPEGImages')]
    return list(dict.fromkeys(plan.data[split + '_images'] for split in SPLITS))


# ---------------------------------------------------------------- a seed


def _eval_cls(plan, name, net, weights, blob, *extra):
    """A model on the test split at 0.5 (eval/NAME.json, scores eval/NAME.npy)
    and at per-class thresholds fitted on val (eval/NAME_thresholds.json),
    applied unchanged to the test scores (eval/NAME_fitted.json): `make
    demo`'s evaluation. Relative paths: from the seed folder."""
    from caffe_mlic.report import layout
    lists = plan.lists
    thresholds, scores = layout.eval_file('.', name + '_thresholds'), layout.eval_file('.', name, '.npy')
    common = ('eval', 'cls', '--net', net, '--weights', weights, '--blob', blob) + extra
    command(*common, '--list', lists['val'], '--classes', lists['val'][:-4] + '.classes.txt',
            '--fit-thresholds', thresholds)
    command(*common, '--list', lists['test'], '--classes', lists['test'][:-4] + '.classes.txt',
            '--json', layout.eval_file('.', name), '--save-scores', scores)
    command('eval', 'cls', '--scores', scores, '--labels', layout.eval_file('.', name, '.labels.npy'),
            '--classes', lists['test'][:-4] + '.classes.txt', '--thresholds', thresholds,
            '--json', layout.eval_file('.', name + '_fitted'))


def _eval_outputs(folder, name):
    from caffe_mlic.report import layout
    return [layout.eval_file(folder, n, ext) for n, ext in (
        (name, '.json'), (name, '.npy'), (name, '.labels.npy'), (name + '_thresholds', '.json'),
        (name + '_fitted', '.json'))]


class SeedStages:
    """Builds the stages of one seed: ``add(name, run, ...)`` runs ``run`` in
    the seed's folder (commands' relative paths: nets/, snapshots/, as
    `make demo` types them)."""

    def __init__(self, plan, seed):
        from caffe_mlic.report import layout
        self.plan, self.seed = plan, seed
        self.folder = layout.seed_dir(plan.folder, seed)
        self.stages = []

    def path(self, rel):
        return rel if isinstance(rel, Files) else os.path.join(self.folder, rel)

    def snapshot(self, stage, study=None, prefix=None):
        return '%s_iter_%d.caffemodel' % (prefix or STAGES[stage][2], self.plan.iterations(stage, study))

    def add(self, name, run, settings, inputs, outputs, after=(), clean=None, headline=None):
        folder = self.folder

        def in_folder():
            os.makedirs(folder, exist_ok=True)
            with working_folder(folder):
                run()
        stage = Stage('seed%d/%s' % (self.seed, name), in_folder, settings, [self.path(p) for p in inputs],
                      [self.path(p) for p in outputs], ['seed%d/%s' % (self.seed, a) if not a.startswith('data/')
                                                         else a for a in after], clean, headline)
        self.stages.append(stage)
        return stage

    def surgery(self, name, net, sources, out, after):
        """`surgery --net NET --from MAPPING:WEIGHTS ... -o OUT`: a net's starting weights."""
        argv = ['surgery', '--net', net] + [w for source in sources for w in ('--from', source)] + ['-o', out]
        return self.add(name, lambda: command(*argv), {}, [net] + [src.split(':', 1)[1] for src in sources], [out],
                        after, clean=remover(self.path(out)))

    def train(self, name, solver, weights, run_name, after, settings, extra=(), snapshot=None, prefix=None):
        """`train SOLVER --weights W --run-dir runs/RUN_NAME --resume auto`: resumes a run cut short."""
        from caffe_mlic.report import layout
        run_dir = layout.stage_run(self.folder, run_name)
        gpu = ['--gpu', self.plan.gpu] if self.plan.gpu is not None else []
        # [train.STAGE] set: for every training of that stage's solver (its ablation rows and study variants too)
        stage = next(key for key, (_, path, _) in STAGES.items() if os.path.basename(path) == os.path.basename(solver))
        fields = self.plan.train.get(stage, {}).get('set', {})
        extra = tuple(w for k, v in fields.items() for w in ('--set', '%s=%s' % (k, v))) + tuple(extra)
        argv = ['train', solver, '--weights', weights, '--run-dir', run_dir, '--resume', 'auto', *gpu, *extra]
        return self.add(name, lambda: command(*argv), dict(settings, extra=list(map(str, extra))),
                        [solver, weights], [snapshot], after,
                        clean=remover(run_dir, self.path(prefix + '_iter_*')), headline=_trained(run_dir))


def seed_stages(plan, seed):
    """The stages of one seed, in order (`make demo`'s seed pipeline)."""
    from caffe_mlic.data.datalist_build import companion_paths
    from caffe_mlic.report import layout
    s = SeedStages(plan, seed)
    cfg = plan.config(seed)
    max_iter, base_lr = plan.solver_settings()
    lists = [plan.lists['train'], plan.lists['val']] + [p for p in companion_paths(plan.lists['train']) if p]
    nets = ['nets/deploy.json', 'nets/wsddn/solver.prototxt', 'nets/wsddn/wsddn_train.prototxt',
            'nets/wsddn/wsddn_deploy.prototxt'] + ['nets/kd/%s.prototxt' % n for n in (
                'solver_stage1', 'solver_stage2', 'solver_baseline', 'train_stage1', 'train_stage2',
                'student_baseline', 'student_deploy')]
    s.add('nets', lambda: _netgen('nets', cfg, max_iter, base_lr, plan.train.get('solver_type'), seed),
          dict(net=repr(cfg), max_iter=max_iter, base_lr=base_lr, solver_type=plan.train.get('solver_type'),
               seed=seed), lists, nets, after=['data/list_train', 'data/list_val'],
          clean=remover(s.path('nets')))
    teacher = s.snapshot('teacher')
    stage1, stage2, baseline = s.snapshot('stage1'), s.snapshot('stage2'), s.snapshot('baseline')
    pretrained = plan.pretrained
    s.train('teacher', 'nets/wsddn/solver.prototxt', pretrained, 'teacher', ['nets'], {},
            snapshot=teacher, prefix=STAGES['teacher'][2])
    s.surgery('stage1_init', 'nets/kd/train_stage1.prototxt', ['same:' + pretrained, 'teacher:' + teacher],
              'init/stage1.caffemodel', ['teacher'])
    s.train('stage1', 'nets/kd/solver_stage1.prototxt', 'init/stage1.caffemodel', 'stage1', ['stage1_init'], {},
            snapshot=stage1, prefix=STAGES['stage1'][2])
    s.surgery('stage2_init', 'nets/kd/train_stage2.prototxt', ['teacher:' + teacher, 'same:' + stage1],
              'init/stage2.caffemodel', ['stage1'])
    soft = layout.SOFT_TARGETS
    s.add('soft_targets', lambda: _soft_targets(plan, 'nets/kd/train_stage2.prototxt', 'init/stage2.caffemodel',
                                                soft),
          {}, ['nets/kd/train_stage2.prototxt', 'init/stage2.caffemodel', plan.lists['val']],
          _eval_outputs('.', soft)[:3], ['stage2_init'], clean=remover(s.path('eval/%s.*' % soft)),
          headline=_map_of(layout.eval_file(s.folder, soft)))
    s.train('stage2', 'nets/kd/solver_stage2.prototxt', 'init/stage2.caffemodel', 'stage2', ['stage2_init'], {},
            snapshot=stage2, prefix=STAGES['stage2'][2])
    s.train('baseline', 'nets/kd/solver_baseline.prototxt', pretrained, 'baseline', ['nets'], {},
            snapshot=baseline, prefix=STAGES['baseline'][2])
    for name, net, weights, blob, extra, after in (
            ('teacher', 'nets/wsddn/wsddn_train.prototxt', teacher, 'image_level_score', (), 'teacher'),
            ('student_kd', 'nets/kd/train_stage2.prototxt', stage2, 'fc8_mscoco', ('--sigmoid',), 'stage2'),
            ('student_baseline', 'nets/kd/student_baseline.prototxt', baseline, 'fc8_mscoco', ('--sigmoid',),
             'baseline')):
        s.add('eval_' + name, lambda a=(name, net, weights, blob) + extra: _eval_cls(plan, *a), {},
              [net, weights, plan.lists['val'], plan.lists['test']], _eval_outputs('.', name), [after, 'data/list_test'],
              clean=remover(*[s.path(p) for p in _eval_outputs('.', name)]),
              headline=_map_of(layout.eval_file(s.folder, name)))
    ev = plan.evaluate
    scales = ev.get('scales') or [cfg.teacher_size]
    detect = (('--proposals', plan.proposals_dir) if plan.proposals_dir else ()) + (
        '--classes', plan.lists['test'][:-4] + '.classes.txt', '--scales', *scales) + (
        ('--flip',) if ev.get('flip', True) else ())
    gt = plan.lists['test'][:-4] + '.gt.json'
    kinds = [('det', ('--weights', teacher), [teacher], 'teacher'),
             ('det_control', ('--control', 'random', '--seed', seed), [], 'nets')]
    for out, how, weights, after in kinds:
        def detect_and_eval(out=out, how=how):
            command('detect', '--net', 'nets/wsddn/wsddn_deploy.prototxt', *how, *detect, '-o', out, '-q',
                    *plan.test_images())
            command('eval', 'det', '--gt', gt, '--results', out, '--json', layout.eval_file('.', out))
        proposals = Files('proposals', [plan.proposals_dir] if plan.proposals_dir else [])
        s.add(out, detect_and_eval, dict(scales=[str(x) for x in scales], flip=ev.get('flip', True)),
              ['nets/wsddn/wsddn_deploy.prototxt', gt, proposals] + weights, [out, layout.eval_file('.', out)],
              [after, 'data/list_test'], clean=remover(s.path(out), layout.eval_file(s.folder, out)),
              headline=_map_of(layout.eval_file(s.folder, out)))
    s.surgery('student_deploy', 'nets/kd/student_deploy.prototxt', ['same:' + stage2], 'student_deploy.caffemodel',
              ['stage2'])
    return s.stages + (ablation_stages(plan, seed) if plan.ablation else []) + [
        st for name in plan.study for st in study_stages(plan, seed, name)]


def _netgen(out, cfg, max_iter, base_lr, solver_type, seed):
    """netgen's generate, with the class names of the datalists' .classes.txt in deploy.json."""
    import argparse
    from caffe_mlic.commands.netgen import deploy_class_names
    from caffe_mlic.netspec.netgen import generate
    given = argparse.Namespace(classes_file=None, set=[], train_list=cfg.train_list, test_list=cfg.test_list)
    generate(out, cfg, max_iter=max_iter, base_lr=base_lr, solver_type=solver_type, random_seed=seed,
             classes=deploy_class_names(given, cfg, ('train_list', 'test_list')))


def _soft_targets(plan, net, weights, name):
    """What stage 2 distils: the teacher's image scores as loaded (at the
    net's temperature) on the validation split, eval/NAME.json and .npy."""
    from caffe_mlic.report import layout
    command('eval', 'cls', '--net', net, '--weights', weights, '--blob', 'image_level_score',
            '--list', plan.lists['val'], '--classes', plan.lists['val'][:-4] + '.classes.txt',
            '--json', layout.eval_file('.', name), '--save-scores', layout.eval_file('.', name, '.npy'))


def ablation_stages(plan, seed):
    """The paper's ablation rows, each trained from exactly the weights of the
    row it is compared with, for stage 2's iterations (report.layout.COMPARISONS)."""
    from caffe_mlic.report import layout
    s = SeedStages(plan, seed)
    short = plan.iterations('stage2')
    pretrained = plan.pretrained
    teacher = s.snapshot('teacher')
    key = 'ablation/'
    s.train(key + 'stage1_only', 'nets/kd/solver_baseline.prototxt', 'init/stage2.caffemodel',
            'ablation_stage1_only', ['stage2_init'], {}, ('--max-iter', short, '--set',
                                                          'snapshot_prefix=snapshots/ablation/stage1_only'),
            snapshot='snapshots/ablation/stage1_only_iter_%d.caffemodel' % short,
            prefix='snapshots/ablation/stage1_only')
    s.surgery(key + 'stage2_only_init', 'nets/kd/train_stage2.prototxt', ['same:' + pretrained, 'teacher:' + teacher],
              'init/stage2_only.caffemodel', ['teacher'])
    s.train(key + 'stage2_only', 'nets/kd/solver_stage2.prototxt', 'init/stage2_only.caffemodel',
            'ablation_stage2_only', [key + 'stage2_only_init'], {},
            ('--set', 'snapshot_prefix=snapshots/ablation/stage2_only'),
            snapshot='snapshots/ablation/stage2_only_iter_%d.caffemodel' % short,
            prefix='snapshots/ablation/stage2_only')
    s.train(key + 'labels_short', 'nets/kd/solver_baseline.prototxt', 'init/stage2_only.caffemodel',
            'ablation_labels_short', [key + 'stage2_only_init'], {},
            ('--max-iter', short, '--set', 'snapshot_prefix=snapshots/ablation/labels_short'),
            snapshot='snapshots/ablation/labels_short_iter_%d.caffemodel' % short,
            prefix='snapshots/ablation/labels_short')
    for name in layout.ABLATIONS:
        net = 'nets/kd/%s.prototxt' % ('train_stage2' if name == 'stage2_only' else 'student_baseline')
        weights = 'snapshots/ablation/%s_iter_%d.caffemodel' % (name, short)
        s.add(key + 'eval_' + name, lambda a=('ablation_' + name, net, weights, 'fc8_mscoco', '--sigmoid'):
              _eval_cls(plan, *a), {}, [net, weights, plan.lists['val'], plan.lists['test']],
              _eval_outputs('.', 'ablation_' + name), [key + name, 'data/list_test'],
              clean=remover(*[s.path(p) for p in _eval_outputs('.', 'ablation_' + name)]),
              headline=_map_of(layout.eval_file(s.folder, 'ablation_' + name)))
    return s.stages


def study_stages(plan, seed, name):
    """[study.NAME]: stage 2 again from stage 2's start with the variant's
    net settings (or, with_stage1, its own stage 1 first, from the same
    pretrained backbone and teacher), into runs/study_NAME, scored on the
    validation split by the training's tests. A variant that changes the
    teacher's temperature also gets its soft targets (eval/soft_targets_val_T<T>)."""
    from caffe_mlic.report import layout
    s = SeedStages(plan, seed)
    variant = plan.study[name]
    key, nets = 'study_%s/' % name, 'study/%s' % name
    cfg = plan.config(seed, variant.get('net'))
    max_iter, base_lr = plan.solver_settings(name)
    s.add(key + 'nets', lambda: _netgen(nets, cfg, max_iter, base_lr, plan.train.get('solver_type'), seed),
          dict(net=repr(cfg), max_iter=max_iter, base_lr=base_lr), [plan.lists['train'], plan.lists['val']],
          ['%s/kd/solver_stage2.prototxt' % nets, '%s/kd/train_stage2.prototxt' % nets], ['nets'],
          clean=remover(s.path(nets)))
    teacher = s.snapshot('teacher')
    stage1 = s.snapshot('stage1')
    after = [key + 'nets']
    if variant.get('with_stage1'):
        init1 = 'init/study_%s_stage1.caffemodel' % name
        s.surgery(key + 'stage1_init', '%s/kd/train_stage1.prototxt' % nets,
                  ['same:' + plan.pretrained, 'teacher:' + teacher], init1, [key + 'nets', 'teacher'])
        prefix1 = 'snapshots/study/%s_stage1' % name
        stage1 = s.snapshot('stage1', name, prefix1)
        s.train(key + 'stage1', '%s/kd/solver_stage1.prototxt' % nets, init1, 'stage1_of_' + name,
                [key + 'stage1_init'], {}, ('--set', 'snapshot_prefix=' + prefix1), snapshot=stage1, prefix=prefix1)
        after = [key + 'stage1']
    else:
        after = after + ['stage1']
    init2 = 'init/study_%s.caffemodel' % name
    s.surgery(key + 'stage2_init', '%s/kd/train_stage2.prototxt' % nets, ['teacher:' + teacher, 'same:' + stage1],
              init2, after + ['teacher'])
    prefix2 = 'snapshots/study/' + name
    s.train(key + 'stage2', '%s/kd/solver_stage2.prototxt' % nets, init2, 'study_' + name, [key + 'stage2_init'],
            {}, ('--set', 'snapshot_prefix=' + prefix2), snapshot=s.snapshot('stage2', name, prefix2),
            prefix=prefix2)
    if cfg.teacher_temperature != plan.config(seed).teacher_temperature:
        soft = layout.SOFT_TARGETS + '_T%g' % cfg.teacher_temperature
        s.add(key + 'soft_targets', lambda: _soft_targets(plan, '%s/kd/train_stage2.prototxt' % nets, init2, soft),
              {}, ['%s/kd/train_stage2.prototxt' % nets, init2, plan.lists['val']], _eval_outputs('.', soft)[:3],
              [key + 'stage2_init'], clean=remover(s.path('eval/%s.*' % soft)))
    return s.stages


# ---------------------------------------------------------------- gathered


def speed_stage(plan):
    """Each seed's teacher and student timed on the same test images, one
    seed after another once no seed trains (the ratio would otherwise
    depend on what ran beside it)."""
    from caffe_mlic.report import layout
    count = plan.evaluate.get('speed_images', 20)

    def speed():
        for seed in plan.seeds:
            folder = layout.seed_dir(plan.folder, seed)
            print('seed %d: ' % seed, end='', flush=True)
            with working_folder(folder):
                command('speed', '--teacher', 'nets/wsddn/wsddn_deploy.prototxt',
                        '%s_iter_%d.caffemodel' % (STAGES['teacher'][2], plan.iterations('teacher')),
                        '--student', 'nets/kd/student_deploy.prototxt', 'student_deploy.caffemodel',
                        '--max-images', count, '--json', layout.eval_file('.', 'speed'), *plan.test_images())
    folders = [layout.seed_dir(plan.folder, seed) for seed in plan.seeds]
    return Stage('speed', speed, dict(images=count), [os.path.join(f, 'student_deploy.caffemodel') for f in folders],
                 [layout.eval_file(f, 'speed') for f in folders],
                 after=['seed%d/student_deploy' % seed for seed in plan.seeds],
                 clean=remover(*[layout.eval_file(f, 'speed') for f in folders]))


def report_stage(plan, before):
    """`caffe-mlic report RUN` over every seed (after every other stage)."""
    from caffe_mlic.report import layout
    inputs = [path for stage in before if stage.name != 'speed' and stage.name.startswith('seed')
              for path in stage.outputs if path.startswith(os.path.join(plan.folder, 'seed')) and
              '/eval/' in path]
    inputs += [layout.eval_file(layout.seed_dir(plan.folder, seed), 'speed') for seed in plan.seeds]

    def report():
        command('report', plan.folder, *(['--strict'] if plan.strict else []))
    return Stage('report', report, dict(strict=plan.strict), inputs,
                 [os.path.join(plan.folder, 'results.json'), os.path.join(plan.folder, 'report.html')],
                 after=[stage.name for stage in before])


def stages(plan):
    """The data stages, then each seed's (its ablation and study chains
    after it), then speed and the report."""
    found = data_stages(plan)
    for seed in plan.seeds:
        found += seed_stages(plan, seed)
    found.append(speed_stage(plan))
    found.append(report_stage(plan, list(found)))
    return found


def chain_of(stage_name):
    """The process a stage runs in: 'seed1' (a seed's stages), 'seed1/ablation',
    'seed1/study_NAME'; None for the data stages, speed and the report."""
    parts = stage_name.split('/')
    if not parts[0].startswith('seed') or len(parts) < 2:
        return None
    return parts[0] if len(parts) == 2 else '/'.join(parts[:2])


def summary(plan):
    """The lines `run` ends with: none, the report stage printed its table and
    where the results are."""
    return []
