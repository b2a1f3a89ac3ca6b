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
        (voc / 'ImageSets' / 'Main' / (split + '.txt')).write_text('a\n')
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
    (['data.train_coco=x.json'], ["data: give voc (with train_set, val_set, test_set) or the splits' COCO"]),
    (['data.test_set=nope'], ['data.test_set: no image set ', os.path.join('voc', 'ImageSets', 'Main', 'nope.txt')]),
    (['proposals.compute=true'], ['proposals: give exactly one of folder (computed already), compute = true or '
                                  'import_format with import_files, got folder, compute']),
    (['proposals.folder=""', 'proposals.import_format=mcg'], ['proposals.import_files: missing']),
    (['net.train_list="x.txt"', 'net.data_seed=3'], ['net.train_list: is set by the pipeline',
                                                     'net.data_seed: is set by the pipeline']),
    (['net.num_clases=5'], ['net.num_clases: not a MlicConfig field']),
    (['net.bbox_num=0'], ['net.bbox_num: ']),
    (['study.x.net.num_clases=1', 'study.y=3', 'study.z.stage2_iters=0'],
     ['study.x.net.num_clases: not a MlicConfig field', 'study.y: must be a table',
      'study.z.stage2_iters: must be an integer >= 1, got 0']),
    (['weights.pretrained="none.caffemodel"', 'evaluate.speed_images=0', 'train.stage3.max_iter=3'],
     ['weights.pretrained: no such file: none.caffemodel', 'evaluate.speed_images: must be an integer from 1',
      'train.stage3: unknown key']),
])
def test_every_problem_is_named_by_its_key_path(data, overrides, messages):
    found = problems_of(config(data), overrides)
    for message in messages:
        assert message in found, found


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
    assert done.returncode == 1 and "run.system: must be 'mlic' or 'scasnet', got 'other'" in done.stderr


def test_the_shipped_demo_config_is_valid_once_its_data_exist(data, monkeypatch):
    run = data / 'runs' / 'demo'
    for sub in ('data/voc/ImageSets/Main', 'data/proposals', 'pretrain'):
        (run / sub).mkdir(parents=True)
    for split in ('train', 'val', 'test'):
        (run / 'data/voc/ImageSets/Main' / (split + '.txt')).write_text('a\n')
    (run / 'pretrain' / 'pretrain.caffemodel').write_bytes(b'x')
    monkeypatch.chdir(data)
    _, plan, stages = runner.load(os.path.join(CONFIG, 'demo_mlic.toml'))
    assert plan.seeds == [1, 2, 3] and plan.iterations('stage2') == 300 and len(stages) == 3 + 3 * 14 + 2
    assert plan.config(1).teacher_size == 192 and plan.config(1).student_size == 64
