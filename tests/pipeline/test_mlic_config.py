"""The MLIC-KD-WSD run config (pipeline.mlic): what it must name, every
problem by its key path at once, and the stages it plans, in the layout the
report reads. (The pipeline runs, killed and rerun, in tests/demos/test_demo.py:
`make demo` is this pipeline on the synthetic sets.)"""
import os
import subprocess
import sys

import pytest

from caffe_mlic.errors import InputError
from caffe_mlic.pipeline import mlic, runner

CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'configs')


@pytest.fixture
def data(tmp_path):
    """A VOC folder's skeleton, a proposals folder and weights: what the checks look at."""
    voc = tmp_path / 'voc'
    (voc / 'ImageSets' / 'Main').mkdir(parents=True)
    for split in ('train', 'val', 'test'):
        (voc / 'ImageSets' / 'Main' / (split + '.txt')).write_text('%s_a\n' % split)
    (tmp_path / 'props').mkdir()
    (tmp_path / 'w.caffemodel').write_bytes(b'x')
    return tmp_path


def config(data, extra=''):
    text = ('[run]\nsystem = "mlic"\nfolder = "%s"\nseeds = [1, 2]\n[data]\nvoc = "%s"\ntrain_set = "train"\n'
            'val_set = "val"\ntest_set = "test"\n[proposals]\nfolder = "%s"\n[weights]\npretrained = "%s"\n'
            '[net]\nnum_classes = 6\nbbox_num = 96\nbackbone = "mini"\n%s'
            % (data / 'run', data / 'voc', data / 'props', data / 'w.caffemodel', extra))
    path = data / 'run.toml'
    path.write_text(text)
    return str(path)


def problems_of(path, overrides=()):
    with pytest.raises(InputError) as caught:
        runner.load(path, overrides)
    return str(caught.value)


def test_a_valid_config_plans_the_demos_stages_in_the_reports_layout(data):
    system, plan, stages = runner.load(config(data))
    assert system is mlic
    names = [s.name for s in stages]
    assert names[:3] == ['data/list_train', 'data/list_val', 'data/list_test']
    assert names[-2:] == ['speed', 'report']
    for seed in (1, 2):
        chain = [n.split('/', 1)[1] for n in names if n.startswith('seed%d/' % seed)]
        assert chain == ['nets', 'teacher', 'stage1_init', 'stage1', 'stage2_init', 'soft_targets', 'stage2',
                         'baseline', 'eval_teacher', 'eval_student_kd', 'eval_student_baseline', 'det',
                         'det_control', 'student_deploy']
    by_name = {s.name: s for s in stages}
    # the release's solvers where the config sets no iterations
    assert by_name['seed1/teacher'].outputs == [str(data / 'run/seed1/snapshots/wsddn/wsddn_iter_40000.caffemodel')]
    assert mlic.chain_of('seed1/teacher') == 'seed1' and mlic.chain_of('seed1/ablation/stage1_only') == \
        'seed1/ablation' and mlic.chain_of('data/list_val') is None and mlic.chain_of('report') is None
    # each seed's data layers and solver get the seed
    assert plan.config(2).data_seed == 2
    assert 'random_seed' not in by_name['seed2/nets'].settings and by_name['seed2/nets'].settings['seed'] == 2


def test_ablation_and_study_chains_start_from_their_seeds_stages(data):
    path = config(data, '[ablation]\nrows = true\n[study.t1]\nnet = { teacher_temperature = 1.0 }\n'
                        '[study.half]\nstage1_iters = 5\nwith_stage1 = true\n[train]\nstage1 = { max_iter = 10 }\n')
    system, plan, stages = runner.load(path)
    by_name = {s.name: s for s in stages}
    assert by_name['seed1/ablation/stage1_only'].after == ['seed1/stage2_init']
    assert by_name['seed1/study_t1/stage2_init'].after == ['seed1/study_t1/nets', 'seed1/stage1', 'seed1/teacher']
    assert by_name['seed1/study_half/stage2_init'].after == ['seed1/study_half/stage1', 'seed1/teacher']
    assert by_name['seed1/study_half/stage1'].outputs[0].endswith('snapshots/study/half_stage1_iter_5.caffemodel')
    assert 'seed1/study_t1/soft_targets' in by_name and 'seed1/study_half/soft_targets' not in by_name
    chains = {mlic.chain_of(s.name): [] for s in stages if mlic.chain_of(s.name)}
    needs = runner._chain_needs(mlic, stages, chains)
    assert needs['seed1/ablation'] == {'seed1'} and needs['seed2/study_t1'] == {'seed2'} and needs['seed1'] == set()


@pytest.mark.parametrize('overrides, messages', [
    (['data.train_coco=x.json'], ["data: give one form: voc (with train_set, val_set, test_set), the splits' "
                                  "COCO files, or the splits' datalists"]),
    (['data.test_set=nope'], ['data.test_set: no image set ', os.path.join('voc', 'ImageSets', 'Main', 'nope.txt')]),
    (['proposals.compute=true'], ['proposals: give exactly one of folder (computed already), compute = true or '
                                  'import_format with import_files, got folder, compute']),
    (['proposals.folder=""', 'proposals.import_format="mcg-mat"'], ['proposals.import_files: missing']),
    (['net.train_list="x.txt"', 'net.data_seed=3'], ['net.train_list: is set by the pipeline',
                                                     'net.data_seed: is set by the pipeline']),
    (['net.num_clases=5'], ['net.num_clases: not a MlicConfig field']),
    (['net.bbox_num=0'], ['net.bbox_num: ']),
    (['study.x.net.num_clases=1', 'study.y=3', 'study.z.stage2_iters=0'],
     ['study.x.net.num_clases: not a MlicConfig field', 'study.y: must be a table',
      'study.z.stage2_iters: must be an integer from 1 to 100000000, got 0']),
    (['train.teacher.max_iter=3000000000'], ['train.teacher.max_iter: must be an integer from 1 to 100000000, '
                                             'got 3000000000']),
    (['evaluate.scales=[20000]'], ['evaluate.scales: must be a list of distinct image sizes, multiples of 16 '
                                   'from 16 to 4096']),
    (['evaluate.scales=[480, 500]'], ['evaluate.scales: must be a list']),
    (['weights.pretrained="none.caffemodel"', 'evaluate.speed_images=0', 'train.stage3.max_iter=3'],
     ['weights.pretrained: no such file: none.caffemodel', 'evaluate.speed_images: must be an integer from 1',
      'train.stage3: unknown key']),
    (['weights.pretrained="/dev/null"'], ['weights.pretrained: not a regular file (a device, FIFO or folder): '
                                          '/dev/null']),
])
def test_every_problem_is_named_by_its_key_path(data, overrides, messages):
    found = problems_of(config(data), overrides)
    for message in messages:
        assert message in found, found


def test_a_config_file_of_another_kind_is_called_that(data):
    """A symlink loop was "not a regular file (a device, FIFO or socket)",
    a folder or FIFO image set "no image set" (pass 39b m4)."""
    loop = data / 'loop.caffemodel'
    os.symlink(str(loop), str(loop))
    (data / 'voc' / 'ImageSets' / 'Main' / 'dirset.txt').mkdir()
    found = problems_of(config(data), ['weights.pretrained="%s"' % loop, 'data.test_set="dirset"'])
    assert 'weights.pretrained: a symlink loop, not a file: %s' % loop in found, found
    assert 'data.test_set: no image set %s (not a regular file (a device, FIFO or folder))' % (
        data / 'voc' / 'ImageSets' / 'Main' / 'dirset.txt') in found, found


def test_the_coco_form_names_each_splits_file_and_folder(data):
    path = config(data)
    found = problems_of(path, ['data.voc=""', 'data.train_coco="%s"' % (data / 'w.caffemodel'),
                               'data.train_images="%s"' % data])
    assert 'data.val_coco: missing' in found and 'data.test_images: missing' in found
    assert 'data.train_coco' not in found and 'data.train_images' not in found


def test_run_check_and_status_from_the_command_line(data):
    path = config(data)
    cli = [sys.executable, '-m', 'caffe_mlic.cli', 'run', path]
    done = subprocess.run(cli + ['--check'], capture_output=True, text=True)
    assert done.returncode == 0 and '33 stages into %s' % (data / 'run') in done.stdout, done.stderr
    done = subprocess.run(cli + ['--status'], capture_output=True, text=True)
    assert done.returncode == 0 and 'seed2/student_deploy' in done.stdout and 'to do' in done.stdout
    done = subprocess.run(cli + ['--set', 'run.system="other"'], capture_output=True, text=True)
    assert done.returncode == 1 and 'run.system: must be \'mlic\' or \'scasnet\', got "other"' in done.stderr


def test_the_shipped_demo_config_is_valid_once_its_data_exist(data, monkeypatch):
    run = data / 'runs' / 'demo'
    for sub in ('data/voc/ImageSets/Main', 'data/proposals', 'pretrain'):
        (run / sub).mkdir(parents=True)
    for split in ('train', 'val', 'test'):
        (run / 'data/voc/ImageSets/Main' / (split + '.txt')).write_text('%s_a\n' % split)
    (run / 'pretrain' / 'pretrain.caffemodel').write_bytes(b'x')
    monkeypatch.chdir(data)
    _, plan, stages = runner.load(os.path.join(CONFIG, 'demo_mlic.toml'))
    assert plan.seeds == [1, 2, 3] and plan.iterations('stage2') == 300 and len(stages) == 3 + 3 * 14 + 2
    assert plan.config(1).teacher_size == 192 and plan.config(1).student_size == 64


def _coco_split(tmp_path, images, name='instances.json'):
    """A COCO instances file of ``images`` (two classes)."""
    import json
    data = dict(images=[dict(id=i, file_name=name, width=96, height=72) for i, name in enumerate(images)],
                categories=[dict(id=1, name='box'), dict(id=2, name='disc')],
                annotations=[dict(id=i, image_id=i, category_id=1 + i % 2, bbox=[10, 10, 40, 30], iscrowd=0)
                             for i in range(len(images))])
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_coco_data_with_proposals_computed_here_stage_by_stage(tmp_path, capsys):
    """The data stages on a COCO set with proposals computed by the pipeline
    (EdgeBoxes): --only one stage, the status, and a changed proposal
    setting that makes the proposals and the datalists stale."""
    import cv2
    import numpy as np
    from caffe_mlic import cli
    folder = tmp_path / 'images'
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = []
    for i in range(4):
        image = np.full((72, 96, 3), 200, np.uint8)
        cv2.rectangle(image, (10 + i, 10), (50, 40), (20, 40, 200), -1)
        cv2.circle(image, (70, 50), 12, (200, 30, 30), -1)
        image = np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)
        names.append('im%d.jpg' % i)
        cv2.imwrite(str(folder / names[-1]), image)
    coco = {'train': _coco_split(tmp_path, names[:2], 'train.json'),
            'val': _coco_split(tmp_path, names[2:3], 'val.json'), 'test': _coco_split(tmp_path, names[3:], 'test.json')}
    (tmp_path / 'w.caffemodel').write_bytes(b'x')
    splits = ''.join('%s_coco = "%s"\n%s_images = "%s"\n' % (s, coco[s], s, folder) for s in ('train', 'val', 'test'))
    path = tmp_path / 'coco.toml'
    path.write_text('[run]\nsystem = "mlic"\nfolder = "%s"\n[data]\n%s[proposals]\ncompute = true\nmax_boxes = 20\n'
                    'min_size = 5\n[weights]\npretrained = "%s"\n[net]\nnum_classes = 2\nbbox_num = 20\n'
                    'teacher_size = 64\nbackbone = "mini"\n' % (tmp_path / 'run', splits, tmp_path / 'w.caffemodel'))
    assert cli.main(['run', str(path), '--only', 'data/proposals']) == 0, capsys.readouterr().err
    assert sorted(n for n in os.listdir(tmp_path / 'run' / 'data' / 'proposals') if n.endswith('.npz')) == \
        ['im%d.npz' % i for i in range(4)]
    assert 'stage seed1/teacher: done' not in capsys.readouterr().out     # (not asked for, and not done)
    assert cli.main(['run', str(path), '--only', 'data/list_train']) == 0, capsys.readouterr().err
    with open(tmp_path / 'run' / 'data' / 'lists' / 'train.classes.txt') as f:
        assert f.read().split() == ['box', 'disc']
    capsys.readouterr()
    assert cli.main(['run', str(path), '--status']) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines['data/proposals'] == 'done' and lines['data/list_train'] == 'done'
    assert lines['data/list_val'] == 'to do'
    assert cli.main(['run', str(path), '--set', 'proposals.max_boxes=10', '--status']) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines['data/proposals'] == 'stale (settings changed (proposals))'
    assert lines['data/list_train'] == 'stale (follows data/proposals)'


@pytest.mark.parametrize('name', ['voc2007_mlic.toml', 'coco2014_mlic.toml'])
def test_the_example_configs_miss_only_their_data(name, tmp_path, monkeypatch):
    """Shipped for users' datasets: in an empty folder, their only problems
    are the files and folders they name."""
    monkeypatch.chdir(tmp_path)
    found = problems_of(os.path.join(CONFIG, name))
    lines = found.splitlines()[1:]
    assert lines and all(('no such ' in line) for line in lines), found


def test_the_shipped_paper_configs_check_clean_on_trees_of_their_layouts(tmp_path, monkeypatch):
    """configs/voc2007_mlic.toml and coco2014_mlic.toml against miniature
    trees in the layouts their comments describe: --check finds everything;
    a split with no image is named by its key."""
    monkeypatch.chdir(tmp_path)
    voc = tmp_path / 'data' / 'VOCdevkit' / 'VOC2007'
    for folder in ('Annotations', 'JPEGImages', 'ImageSets/Main'):
        (voc / folder).mkdir(parents=True)
    for split in ('train', 'val', 'test'):
        (voc / 'ImageSets' / 'Main' / (split + '.txt')).write_text('00000%d\n' % len(split))
    (tmp_path / 'models').mkdir()
    (tmp_path / 'models' / 'VGG_ILSVRC_16_layers.caffemodel').write_bytes(b'')
    coco = tmp_path / 'data' / 'coco'
    for folder in ('annotations', 'train2014', 'val2014'):
        (coco / folder).mkdir(parents=True)
    for name in ('instances_train2014', 'instances_minival_from_train2014', 'instances_val2014'):
        (coco / 'annotations' / (name + '.json')).write_text('{}')
    for name, stages in (('voc2007_mlic.toml', 4 + 14 + 2), ('coco2014_mlic.toml', 4 + 14 + 2)):
        _, plan, found = runner.load(os.path.join(CONFIG, name))
        assert len(found) == stages and plan.config(1).teacher_size == 672 and plan.config(1).bbox_num == 500
    assert plan.config(1).num_classes == 80 and plan.config(1).wsddn_batch == (32, 16)
    (voc / 'ImageSets' / 'Main' / 'val.txt').write_text('\n')
    found = problems_of(os.path.join(CONFIG, 'voc2007_mlic.toml'))
    assert 'data.val_set: %s lists no image' % os.path.join('data', 'VOCdevkit', 'VOC2007', 'ImageSets', 'Main',
                                                           'val.txt') in found.replace(str(tmp_path) + '/', '')


def test_a_gpu_on_a_cpu_build_is_refused_before_anything_runs(data):
    from caffe_mlic.caffe.env import CPU, build_kind
    if build_kind() != CPU:
        pytest.skip('a CUDA build: run.gpu is usable here')
    found = problems_of(config(data), ['run.gpu=0'])
    assert 'run.gpu: the active Caffe' in found and 'is a CPU-only build' in found


def _lists_config(tmp_path):
    """A config of datalists given as they are (one image each, with their
    companions): lists.toml."""
    for split in ('train', 'val', 'test'):
        image = tmp_path / (split + '.jpg')
        image.write_bytes(b'x')
        (tmp_path / (split + '.txt')).write_text('%s 1 0 0 0 9 9 1.0\n' % image)
        (tmp_path / (split + '.classes.txt')).write_text('box\ndisc\n')
        (tmp_path / (split + '.gt.json')).write_text('{}')
    (tmp_path / 'w.caffemodel').write_bytes(b'x')
    lists = ''.join('%s_list = "%s"\n' % (s, tmp_path / (s + '.txt')) for s in ('train', 'val', 'test'))
    path = tmp_path / 'lists.toml'
    path.write_text('[run]\nsystem = "mlic"\nfolder = "%s"\n[data]\n%s[weights]\npretrained = "%s"\n[net]\n'
                    'num_classes = 2\nbbox_num = 1\nbackbone = "mini"\n' % (tmp_path / 'run', lists,
                                                                           tmp_path / 'w.caffemodel'))
    return path


def test_datalists_given_as_they_are_are_copied_where_the_report_reads_them(tmp_path, capsys):
    from caffe_mlic import cli
    path = _lists_config(tmp_path)
    _, plan, stages = runner.load(str(path))
    names = [s.name for s in stages]
    assert names[:3] == ['data/list_train', 'data/list_val', 'data/list_test'] and plan.proposals_dir is None
    det = {s.name: s for s in stages}['seed1/det']
    assert det.settings == dict(scales=['672'], flip=True)
    assert cli.main(['run', str(path), '--only', 'data/list_val']) == 0, capsys.readouterr().err
    copied = tmp_path / 'run' / 'data' / 'lists'
    assert sorted(os.listdir(copied)) == ['val.classes.txt', 'val.gt.json', 'val.txt']
    assert (copied / 'val.txt').read_text() == (tmp_path / 'val.txt').read_text()
    # what is refused, by key
    (tmp_path / 'test.gt.json').unlink()
    (tmp_path / 'val.txt').write_text('rel/a.jpg 1 0 0 0 9 9 1.0\n')
    found = problems_of(str(path), ['proposals.compute=true'])
    assert 'data.test_list: no such file: %s (`datalist build` writes it beside' % (tmp_path / 'test.gt.json') \
        in found and 'data.val_list: %s names its images relative to a root folder' % (tmp_path / 'val.txt') \
        in found and 'proposals: with datalists given as they are, give a folder' in found, found
    found = problems_of(str(path), ['data.voc="%s"' % tmp_path])
    assert "data: give one form: voc (with train_set, val_set, test_set), the splits' COCO files" in found


@pytest.mark.parametrize('value', ['5', 'true', '[1]', '{a = 1}', '2026-12-07'])
def test_a_voc_folder_that_is_not_text_is_said_by_its_key(data, value):
    """data.voc = 5 was a TypeError traceback from os.path.isdir (pass 45b S1)."""
    found = problems_of(config(data), ['data.voc=%s' % value])
    assert 'data.voc: must be a Pascal VOC folder (Annotations, ImageSets/Main, JPEGImages), got ' in found, found


def test_a_datalist_of_zeros_utf16_or_with_a_bom(tmp_path):
    """A zero-filled datalist was read whole as one line (4.4 GB of memory
    for 1 GB) and echoed into the message; one with a BOM was taken for
    relative names; a UTF-16 one passed (pass 29 S7, M1, M2)."""
    path = _lists_config(tmp_path)
    val = tmp_path / 'val.txt'
    text = val.read_text()
    val.write_bytes(b'\xef\xbb\xbf' + text.encode())
    runner.load(str(path))      # (accepted)
    val.write_bytes(text.encode('utf-16-le'))
    assert 'data.val_list: %s is not a text datalist: NUL bytes (UTF-16, or a file of zeros?) near its start' % val \
        in problems_of(str(path))
    val.write_bytes(b'')
    os.truncate(str(val), 256 << 20)        # (sparse: no disk used)
    found = problems_of(str(path))
    assert 'data.val_list: %s is not a text datalist: NUL bytes' % val in found and len(found) < 2000, found[:3000]


def test_a_stages_solver_fields_go_to_every_training_of_its_solver(data):
    path = config(data, '[ablation]\nrows = true\n[train]\nstage2 = { set = { momentum = 0.95, '
                        'lr_policy = "fixed" } }\n')
    _, _, stages = runner.load(path)
    by_name = {s.name: s for s in stages}
    for name in ('seed1/stage2', 'seed1/ablation/stage2_only'):
        assert by_name[name].settings['extra'][:4] == ['--set', 'momentum=0.95', '--set', 'lr_policy=fixed']
    assert by_name['seed1/stage1'].settings['extra'] == []
    assert 'train.stage2.set: must be a table of solver fields' in problems_of(path, ['train.stage2.set=3'])


def test_a_study_variant_name_that_could_not_name_a_folder_is_refused(data):
    found = problems_of(config(data, '[study."a/b"]\nstage2_iters = 1\n'))
    assert "study.a/b: a variant name is letters, digits, _ and - (it names folders and stages), got 'a/b'" in found


def test_a_stages_solver_fields_are_checked_before_anything_runs(data):
    found = problems_of(config(data, '[train]\nstage2 = { set = { momentum = 2, nosuch = 1, max_iter = 5, '
                                     'net = "x", lr_policy = "fixed" } }\n'))
    assert 'train.stage2.set.momentum: momentum must be in [0, 1), got 2' in found, found
    assert 'train.stage2.set.nosuch: expected FIELD=VALUE with a scalar SolverParameter field' in found
    assert 'train.stage2.set.max_iter: is set by the pipeline (train.STAGE.max_iter' in found
    assert 'train.stage2.set.net: is set by the pipeline (the nets, snapshots and seed are its own)' in found
    assert 'lr_policy' not in found
    # refused in combination, as `train` refuses them (pass 21 M3)
    found = problems_of(config(data, '[train]\nteacher = { set = { stepsize = -3, lr_policy = "step", '
                                     'iter_size = 0 } }\n'))
    assert 'train.teacher.set.stepsize: lr_policy "step" needs stepsize > 0, got -3' in found, found
    assert 'train.teacher.set.iter_size: iter_size must be from 1 to 1024, got 0' in found, found
    runner.load(config(data, '[train]\nteacher = { set = { stepsize = -3, lr_policy = "fixed" } }\n'))   # (unused)
    # with the solver type the pipeline gives the solver (pass 22's minor)
    found = problems_of(config(data, '[train]\nsolver_type = "RMSProp"\nteacher = { set = { delta = 0, momentum = '
                                     '0.5, regularization_type = "L3" } }\n'))
    assert 'train.teacher.set.delta: delta must be > 0 for RMSProp' in found, found
    assert 'train.teacher.set.momentum: momentum must be 0 for RMSProp' in found, found
    assert 'train.teacher.set.regularization_type: regularization_type must be "L1" or "L2"' in found, found
    runner.load(config(data, '[train]\nsolver_type = "AdaGrad"\nteacher = { set = { delta = 1e-6 } }\n'))
    assert 'delta must be > 0 for Adam' in problems_of(config(data, '[train]\nsolver_type = "Adam"\n'
                                                                    'stage1 = { set = { delta = 0 } }\n'))
    runner.load(config(data, '[train]\nteacher = { set = { delta = 0 } }\n'))     # SGD: delta unused


def test_a_num_classes_other_than_the_datas_is_refused_by_the_check(data):
    """run --check said "valid" and the nets stage failed later on
    "train.classes.txt: 3 names, but num_classes is 5" (pass 36b M6)."""
    runner.load(config(data))           # (no classes.txt yet: an earlier stage may write it)
    (data / 'voc' / 'classes.txt').write_text('a\nb\nc\n')
    found = problems_of(config(data))
    assert 'net.num_classes: is 6, but the training data has 3 classes (%s)' % (data / 'voc' / 'classes.txt') \
        in found, found
    runner.load(config(data), ['net.num_classes=3'])


def test_a_seed_beyond_caffe_s_int64_is_refused_by_the_check(data):
    """run --check said "valid" and the run stopped with a ValueError
    traceback in a stage log (pass 23 S6)."""
    found = problems_of(config(data), ['run.seeds=[%d]' % 2 ** 63])
    assert 'run.seeds: must be a list of distinct integers from 0 to 2^63 - 1' in found, found
    runner.load(config(data), ['run.seeds=[%d]' % (2 ** 63 - 1)])


def test_a_coco_split_with_no_image_is_named_by_its_key(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    (tmp_path / 'empty.json').write_text('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}')
    _coco_split(tmp_path, ['a.jpg'])
    (tmp_path / 'w.caffemodel').write_bytes(b'x')
    splits = ''.join('%s_coco = "%s"\n%s_images = "%s"\n' % (
        s, tmp_path / ('empty.json' if s == 'val' else 'instances.json'), s, images) for s in ('train', 'val', 'test'))
    path = tmp_path / 'coco.toml'
    path.write_text('[run]\nsystem = "mlic"\nfolder = "%s"\n[data]\n%s[proposals]\ncompute = true\n[weights]\n'
                    'pretrained = "%s"\n' % (tmp_path / 'run', splits, tmp_path / 'w.caffemodel'))
    found = problems_of(str(path))
    assert 'data.val_coco: %s lists no image' % (tmp_path / 'empty.json') in found and 'train_coco' not in found


def _form_config(tmp_path, data_lines):
    """A config of the data table ``data_lines`` (datalists or COCO splits)."""
    (tmp_path / 'w.caffemodel').write_bytes(b'x')
    path = tmp_path / 'form.toml'
    path.write_text('[run]\nsystem = "mlic"\nfolder = "%s"\n[data]\n%s[proposals]\nfolder = "%s"\n[weights]\n'
                    'pretrained = "%s"\n[net]\nnum_classes = 2\nbbox_num = 1\nbackbone = "mini"\n'
                    % (tmp_path / 'run', data_lines, tmp_path, tmp_path / 'w.caffemodel'))
    return str(path)


def test_splits_that_share_images_are_refused_in_every_form(data, tmp_path):
    """The test numbers would measure memory, and val would fit thresholds
    on training images: a VOC set, a datalist or a COCO split sharing an
    image with an earlier split is named by its key (a link to an image is
    the same image)."""
    (data / 'voc' / 'ImageSets' / 'Main' / 'test.txt').write_text('test_a\ntrain_a\n')
    found = problems_of(config(data))
    assert 'data.test_set: 1 of its images are in the train split too (train_a): the splits must not share ' \
        'images' in found, found
    (data / 'voc' / 'ImageSets' / 'Main' / 'test.txt').write_bytes(b'\xef\xbb\xbftrain_a\n')     # (a BOM)
    assert 'data.test_set: 1 of its images are in the train split too (train_a)' in problems_of(config(data))
    # the same image by another spelling, or a link to it under another name (pass 29 M3)
    (data / 'voc' / 'ImageSets' / 'Main' / 'test.txt').write_text('./train_a\n')
    assert 'data.test_set: 1 of its images are in the train split too (./train_a)' in problems_of(config(data))
    image = data / 'voc' / 'JPEGImages' / 'train_a.jpg'
    image.parent.mkdir(exist_ok=True)
    image.write_bytes(b'x')
    os.link(str(image), str(data / 'voc' / 'JPEGImages' / 'dupx.jpg'))
    (data / 'voc' / 'ImageSets' / 'Main' / 'test.txt').write_text('dupx\n')
    assert 'data.test_set: 1 of its images are in the train split too (dupx)' in problems_of(config(data))
    os.unlink(str(data / 'voc' / 'JPEGImages' / 'dupx.jpg'))
    (data / 'voc' / 'ImageSets' / 'Main' / 'test.txt').write_text('test_a\n')
    lists = tmp_path / 'lists'
    lists.mkdir()
    for split in ('train', 'val', 'test'):
        (lists / (split + '.jpg')).write_bytes(b'x')
        (lists / (split + '.txt')).write_text('%s 1 0 0 0 9 9 1.0\n' % (lists / (split + '.jpg')))
        (lists / (split + '.classes.txt')).write_text('box\ndisc\n')
        (lists / (split + '.gt.json')).write_text('{}')
    os.symlink(str(lists / 'train.jpg'), str(lists / 'linked.jpg'))
    (lists / 'val.txt').write_text('%s 1 0 0 0 9 9 1.0\n%s 1 0 0 0 9 9 1.0\n' % (lists / 'val.jpg',
                                                                               lists / 'linked.jpg'))
    path = _form_config(lists, ''.join('%s_list = "%s"\n' % (s, lists / (s + '.txt'))
                                       for s in ('train', 'val', 'test')))
    found = problems_of(path)
    assert 'data.val_list: 1 of its images are in the train split too (%s)' % (lists / 'linked.jpg') in found, found
    (lists / 'val.txt').write_text('%s 1 0 0 0 9 9 1.0\n' % (lists / 'val.jpg'))
    assert runner.load(path)[1].given_lists
    # names no file can have, a list in UTF-16: no traceback; missing images spelled alike are one image
    (lists / 'val.txt').write_bytes(b'/x\x00y.jpg 1 0 0 0 9 9 1.0\n' + '/v.jpg 1'.encode('utf-16-le'))
    assert 'is not a text datalist: NUL bytes' in problems_of(path)
    (lists / 'val.txt').write_bytes(os.fsencode(os.fsdecode(b'/x\xffy.jpg')) + b' 1 0 0 0 9 9 1.0\n')
    runner.load(path)
    (lists / 'val.txt').write_text('%s 1 0 0 0 9 9 1.0\n' % (lists / 'gone.jpg'))
    (lists / 'test.txt').write_text('%s 1 0 0 0 9 9 1.0\n' % (lists / 'x' / '..' / 'gone.jpg'))
    assert 'data.test_list: 1 of its images are in the val split too' in problems_of(path)
    for split in ('val', 'test'):
        (lists / (split + '.txt')).write_text('%s 1 0 0 0 9 9 1.0\n' % (lists / (split + '.jpg')))
    coco = tmp_path / 'coco'
    coco.mkdir()
    for split, names in (('train', ['a.jpg', 'b.jpg']), ('val', ['c.jpg']), ('test', ['d.jpg'])):
        (coco / split).mkdir()
        for name in names:
            (coco / split / name).write_bytes(b'x')
        _coco_split(coco, names, split + '.json')
    path = _form_config(coco, ''.join('%s_coco = "%s"\n%s_images = "%s"\n' % (s, coco / (s + '.json'), s, coco / s)
                                      for s in ('train', 'val', 'test')))
    runner.load(path)
    (coco / 'test' / 'd.jpg').unlink()
    os.link(str(coco / 'train' / 'b.jpg'), str(coco / 'test' / 'd.jpg'))      # (the same file by another name)
    found = problems_of(path)
    assert 'data.test_coco: 1 of its images are in the train split too (%s)' % (coco / 'test' / 'd.jpg') in found
