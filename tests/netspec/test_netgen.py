"""The generated prototxt/ tree, netgen options, solvers."""
import os
import subprocess
import sys

import pytest

from caffe_mlic.netspec import netgen
from caffe_mlic.caffe import prototxt
from caffe_mlic.netspec import MlicConfig

from tests import REPO


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, fs in os.walk(root) for f in fs if f.endswith('.prototxt'))


def test_committed_prototxt_tree_is_what_the_generators_write(tmp_path):
    out = tmp_path / 'prototxt'
    netgen.generate(str(out), MlicConfig.release())
    from caffe_mlic import cli
    assert cli.main(['scasnet', 'netgen', '-o', str(out / 'scasnet')]) == 0
    committed = os.path.join(REPO, 'prototxt')
    assert _files(str(out)) == _files(committed)
    for rel in _files(str(out)):
        a, b = os.path.join(committed, rel), os.path.join(str(out), rel)
        # solver `net:` paths name the output folder, so compare those with it swapped
        got = open(b).read().replace(str(out), 'prototxt')
        assert open(a).read() == got, 'prototxt/%s is stale: run `make prototxt`' % rel


def _parse_net(path):
    return prototxt.read_net(path)


def _first_of_each_name(net):
    """{name: the first layer of that name} (for 'data': the TRAIN data layer)."""
    layers = {}
    for layer in net.layer:
        layers.setdefault(layer.name, layer)
    return layers


def test_netgen_cli_custom_configuration(caffe, tmp_path):
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'netgen', '-o', str(tmp_path),
                          '--classes', '20', '--proposals', '30', '--teacher-size', '96',
                          '--student-size', '64', '--pooled', '2', '--backbone', 'tiny', '--head', 'fused',
                          '--train-list', 'voc_train.txt', '--wsddn-batch', '2', '1',
                          '--max-iter', '50', '--base-lr', '0.01', '--solver-type', 'Adam',
                          '--input-scale', '0.017', '--random-seed', '3'],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    layers = _first_of_each_name(_parse_net(tmp_path / 'wsddn' / 'wsddn_train.prototxt'))
    assert layers['slice_label_roi'].slice_param.slice_point[0] == 20
    assert layers['conv1_1'].convolution_param.num_output == 4
    assert 'WSDDNScore' in layers['proposal_class_score'].python_param.layer
    assert '"bbox_num": 30' in layers['proposal_class_score'].python_param.param_str
    assert '"batch_size": 2' in layers['data'].python_param.param_str
    assert '"scale": 0.017' in layers['data'].python_param.param_str
    assert layers['conv1_1'].convolution_param.weight_filler.type == 'msra'
    assert '"source": "voc_train.txt"' in layers['data'].python_param.param_str
    stage2 = {l.name: l for l in _parse_net(tmp_path / 'kd' / 'train_stage2.prototxt').layer}
    assert stage2['fc8_mscoco'].inner_product_param.num_output == 20
    solver = open(tmp_path / 'kd' / 'solver_stage1.prototxt').read()
    assert 'random_seed: 3\n' in solver and 'type: "Adam"' in solver and 'momentum2: 0.999' in solver
    assert 'max_iter: 50\n' in solver and 'stepsize: 35\n' in solver and 'base_lr: 0.01\n' in solver
    assert 'weight_decay: 0' in solver and str(tmp_path / 'kd' / 'train_stage1.prototxt') in solver


@pytest.mark.parametrize('args, message', [
    (['--backbone', 'resnet'], 'invalid choice'),
    (['--teacher-size', '100'], 'multiple of 16'),
    (['--classes', '0'], 'positive integer'),
    (['--student-size', '64'], '32 x pooled'),
])
def test_netgen_rejects_bad_configuration(tmp_path, args, message):
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'netgen', '-o', str(tmp_path)] + args,
                         capture_output=True, text=True)
    assert res.returncode != 0
    assert message in res.stderr
    assert not (tmp_path / 'wsddn').exists()


def test_netgen_set_overrides_any_config_field(tmp_path):
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'netgen', '-o', str(tmp_path),
                          '--classes', '20', '--set', 'mean=[1, 2, 3]', '--set', 'teacher_temperature=0.25',
                          '--set', 'train_list=my_list.txt', '--set', 'wsddn_batch=(4, 2)'],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    net = _parse_net(tmp_path / 'kd' / 'train_stage2.prototxt')
    layers = _first_of_each_name(net)
    assert '"mean_value": [1.0, 2.0, 3.0]' in layers['data'].python_param.param_str
    assert '"source": "my_list.txt"' in layers['data'].python_param.param_str
    scale = [l for l in net.layer if l.type == 'Scale' and l.name.startswith('temp_branch')]
    assert scale and all(l.scale_param.filler.value == 4.0 for l in scale)  # 1 / 0.25
    assert layers['fc8_mscoco'].inner_product_param.num_output == 20
    train, test = [l for l in _parse_net(tmp_path / 'wsddn' / 'wsddn_train.prototxt').layer
                   if l.name == 'data']
    assert '"batch_size": 4' in train.python_param.param_str
    assert '"batch_size": 2' in test.python_param.param_str


def test_netgen_per_solver_iterations_and_rates_mini_backbone_no_dropout_data_seed(caffe, tmp_path):
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'netgen', '-o', str(tmp_path),
                          '--classes', '6', '--proposals', '8', '--teacher-size', '96',
                          '--student-size', '32', '--pooled', '1', '--backbone', 'mini',
                          '--set', 'dropout_ratio=0', '--set', 'data_seed=7',
                          '--iters', '80', '40', '16', '56', '--base-lrs', '1e-3', '3e-3', '2e-3', '2e-3'],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    expect = {'wsddn/solver': (80, 56, 10, 0.001), 'kd/solver_stage1': (40, 28, 5, 0.003),
              'kd/solver_stage2': (16, 11, 2, 0.002), 'kd/solver_baseline': (56, 39, 7, 0.002)}
    for rel, (iters, step, every, lr) in expect.items():
        s = prototxt.read_solver(str(tmp_path / (rel + '.prototxt')))
        assert (s.max_iter, s.stepsize, s.test_interval, s.snapshot) == (iters, step, every, iters)
        assert s.base_lr == pytest.approx(lr)
    wsddn = _parse_net(tmp_path / 'wsddn' / 'wsddn_train.prototxt')
    convs = [l.name for l in wsddn.layer if l.type == 'Convolution' and l.name.startswith('conv')]
    assert convs == ['conv1_1', 'conv2_1', 'conv3_1', 'conv4_1', 'conv5_1']
    for rel in ('wsddn/wsddn_train', 'kd/train_stage1', 'kd/train_stage2', 'kd/student_baseline'):
        net = _parse_net(tmp_path / (rel + '.prototxt'))
        assert not [l for l in net.layer if l.type == 'Dropout'], rel
        train, test = [l for l in net.layer if l.name == 'data']
        assert '"seed": 7' in train.python_param.param_str
        assert '"seed"' not in test.python_param.param_str
    stage1 = {l.name: l for l in _parse_net(tmp_path / 'kd' / 'train_stage1.prototxt').layer}
    assert stage1['conv_wsd_5_1'].propagate_down == [False]      # the teacher copy stays frozen
    # the nets build and run in Caffe with these sizes
    net = prototxt.caffe_net(str(tmp_path / 'kd' / 'student_deploy.prototxt'))
    net.forward()
    assert net.blobs['prob'].data.shape == (1, 6)


@pytest.mark.parametrize('args, message', [
    (['--iters', '10', '10', '10', '10', '--max-iter', '10'], 'not both'),
    (['--iters', '10', '0', '10', '10'], "must be an integer from 1 to 2147483647, got '0'"),
    (['--base-lrs', '1e-3', '-1', '1e-3', '1e-3'], 'base_lr must be a positive number'),
    (['--set', 'dropout_ratio=1.0'], 'dropout_ratio must be in [0, 1)'),
    (['--set', 'data_seed=-1'], 'data_seed must be an integer >= 0'),
    (['--set', 'soft_loss_weight=-0.5'], 'soft_loss_weight must be a number >= 0'),
    (['--student-scale-lr-mult', 'nan'], 'student_scale_lr_mult must be a number >= 0'),
    (['--set', 'soft_loss_weight=1e-46'], 'soft_loss_weight must be 0 or a number that float32 holds (at least '
                                          '1.4e-45): 1e-46 reads as 0'),
])
def test_netgen_rejects_bad_solver_and_config_values(tmp_path, args, message):
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'netgen', '-o', str(tmp_path)] + args,
                         capture_output=True, text=True)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert not (tmp_path / 'wsddn').exists()


@pytest.mark.parametrize('kd_losses', ['stock', 'python'])
def test_stage2_soft_loss_weight_and_student_scale_rate(tmp_path, kd_losses):
    """The two stage-2 knobs beside the temperatures: the soft loss's weight
    and the rate of the student's learnable logit scale (released: 1, 10)."""
    cfg = MlicConfig.release(soft_loss_weight=0.25, student_scale_lr_mult=1.0, kd_losses=kd_losses)
    netgen.generate(str(tmp_path), cfg)
    layers = {l.name: l for l in _parse_net(tmp_path / 'kd' / 'train_stage2.prototxt').layer}
    assert list(layers['loss_soft'].loss_weight) == [0.25] and list(layers['loss_sig'].loss_weight) == [1]
    if kd_losses == 'stock':
        assert [(p.lr_mult, p.decay_mult) for p in layers['fc8_mscoco_soft'].param] == [(1, 0)]
    released = {l.name: l for l in _parse_net(os.path.join(REPO, 'prototxt',
                                                           'kd', 'train_stage2.prototxt')).layer}
    assert list(released['loss_soft'].loss_weight) == [1]
    assert [p.lr_mult for p in released['fc8_mscoco_soft'].param] == [10]


def test_release_deploy_json_is_unchanged_and_has_no_class_names(tmp_path):
    """The class names are added only when known: the release nets know none."""
    from caffe_mlic import cli
    netgen.generate(str(tmp_path / 'p'), MlicConfig.release())
    assert cli.main(['scasnet', 'netgen', '-o', str(tmp_path / 'p' / 'scasnet')]) == 0
    for rel in ('deploy.json', 'scasnet/deploy.json'):
        assert (tmp_path / 'p' / rel).read_text() == open(os.path.join(REPO, 'prototxt', rel)).read(), rel


def _netgen(tmp_path, *args):
    return subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'netgen', '-o', str(tmp_path / 'nets'),
                           '--classes', '3'] + list(args), capture_output=True, text=True, cwd=str(tmp_path))


def test_netgen_writes_class_names_from_a_classes_file_or_the_datalists(tmp_path):
    import json
    (tmp_path / 'names.txt').write_text('cat\ndog\ncow\n')
    res = _netgen(tmp_path, '--classes-file', 'names.txt')
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / 'nets' / 'deploy.json').read_text())['classes'] == ['cat', 'dog', 'cow']
    # a datalist of `datalist build`: its companion list of names
    (tmp_path / 'train.txt').write_text('')
    (tmp_path / 'train.classes.txt').write_text('a\nb\nc\n')
    res = _netgen(tmp_path, '--train-list', 'train.txt')
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / 'nets' / 'deploy.json').read_text())['classes'] == ['a', 'b', 'c']
    res = _netgen(tmp_path, '--set', 'test_list=train.txt', '--classes-file', 'names.txt')   # the file wins
    assert json.loads((tmp_path / 'nets' / 'deploy.json').read_text())['classes'] == ['cat', 'dog', 'cow']
    res = _netgen(tmp_path, '--train-list', 'no_companion.txt')
    assert res.returncode == 0 and 'classes' not in json.loads((tmp_path / 'nets' / 'deploy.json').read_text())


@pytest.mark.parametrize('files, args, message', [
    ({'names.txt': 'a\nb\n'}, ['--classes-file', 'names.txt'], 'names.txt: 2 names, but num_classes is 3'),
    ({'names.txt': 'a\nb\na\n'}, ['--classes-file', 'names.txt'], "names.txt:3: class 'a' repeats line 1"),
    ({'names.txt': 'a\nb/c\nd\n'}, ['--classes-file', 'names.txt'], 'names.txt: name 2 has "/"'),
    ({'names.txt': '\n'}, ['--classes-file', 'names.txt'], 'names.txt: class list is empty'),
    ({}, ['--classes-file', 'missing.txt'], 'missing.txt'),
    ({'t.txt': '', 't.classes.txt': 'a\nb\nc\nd\n'}, ['--train-list', 't.txt'],
     't.classes.txt: 4 names, but num_classes is 3'),
    ({'t.txt': '', 't.classes.txt': 'a\nb\nc\n', 'v.txt': '', 'v.classes.txt': 'a\nc\nb\n'},
     ['--train-list', 't.txt', '--test-list', 'v.txt'], "the datalists' class names differ"),
])
def test_netgen_refuses_bad_class_names_and_writes_nothing(tmp_path, files, args, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    res = _netgen(tmp_path, *args)
    assert res.returncode == 1 and message in res.stderr, res.stderr
    assert 'Traceback' not in res.stderr and not (tmp_path / 'nets').exists()


def test_generate_checks_the_class_names_it_is_given(tmp_path):
    from caffe_mlic.errors import UsageError
    with pytest.raises(UsageError, match='classes: 2 names, but num_classes is 80'):
        netgen.generate(str(tmp_path), MlicConfig.release(), classes=['a', 'b'])
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize('solver_type, momentum', [('AdaGrad', 0.0), ('RMSProp', 0.0), ('Adam', 0.9),
                                                    ('AdaDelta', 0.9), ('SGD', 0.9)])
def test_a_solver_type_without_momentum_gets_none(tmp_path, solver_type, momentum):
    """Caffe aborts on AdaGrad or RMSProp with a momentum ("Momentum cannot
    be used with ..."): the solvers netgen writes for them have none, and
    `train` takes them."""
    from caffe_mlic.engine.solver_file import type_problems
    from caffe_mlic.netspec.netgen import solver_overrides
    from caffe_mlic.netspec.solvers import SOLVERS, SCASNET_SOLVERS
    for spec in [s for _, s, _ in SOLVERS.values()] + list(SCASNET_SOLVERS.values()):
        got = solver_overrides(spec, solver_type=solver_type)
        assert got.type == solver_type and got.momentum == momentum
        from caffe.proto import caffe_pb2
        param = caffe_pb2.SolverParameter(momentum=got.momentum, delta=1e-8, regularization_type='L2')
        assert type_problems(param, solver_type) == []
