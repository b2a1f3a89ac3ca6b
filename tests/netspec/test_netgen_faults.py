"""netgen refuses impossible values naming the option, and a failure part way writes nothing."""
import os

import pytest

from caffe_mlic import cli
from caffe_mlic.netspec import netgen


@pytest.mark.parametrize('args, fragment', [
    (['--base-lrs', '1', '1', 'nan', '1'], 'argument --base-lrs: base_lr must be a positive number, got nan'),
    (['--base-lr', '-1'], 'base_lr must be a positive number'),
    (['--teacher-temperature', '-1'], 'teacher_temperature must be a positive number'),
    (['--student-temperature', '0'], 'student_temperature must be a positive number'),
    (['--input-scale', '0'], 'input_scale must be a positive number'),
    (['--workers', '-1'], 'workers must be an integer >= 0'),
    (['--max-iter', '0'], 'max_iter must be >= 1'),
    (['--iters', '1', '0', '1', '1'], 'argument --iters: max_iter must be >= 1'),
    (['--wsddn-batch', '0', '1'], 'wsddn_batch must be two positive integers'),
    (['--scales', '0'], 'scale_factors must be positive numbers'),
])
def test_netgen_refuses_impossible_values_and_writes_nothing(tmp_path, capsys, args, fragment):
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets')] + args) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / 'nets').exists()


def test_netgen_failing_part_way_writes_nothing(tmp_path, capsys):
    (tmp_path / 'nets' / 'kd' / 'train_stage2.prototxt').mkdir(parents=True)
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets'), '--classes', '3']) == 1
    assert 'train_stage2.prototxt' in capsys.readouterr().err
    written = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files]
    assert written == []


@pytest.mark.parametrize('command', [['netgen'], ['scasnet', 'netgen']])
def test_a_net_needs_two_classes(tmp_path, capsys, command):
    """One class: WSDDN's class softmax and ScasNet's are constant, nothing to learn."""
    assert cli.main(command + ['-o', str(tmp_path / 'nets'), '--classes', '1']) == 2
    assert 'argument --classes: num_classes must be at least 2, got 1' in capsys.readouterr().err
    assert not (tmp_path / 'nets').exists()


@pytest.mark.parametrize('argv, message', [
    (['netgen', '--classes', '1000000000000'], "argument --classes: num_classes must be at most 100000 (the "
                                                "datalist's bound)"),
    (['netgen', '--workers', '1000000'], 'argument --workers: workers must be at most 64'),
    (['scasnet', 'netgen', '--workers', '1000000000'], 'argument --workers: workers must be at most 64'),
    (['scasnet', 'netgen', '--classes', '100000000'], 'argument --classes: num_classes must be at most 255'),
    (['scasnet', 'netgen', '--variant', 'resnet', '--backbone', 'small', '--resnet-blocks', '1000000', '1', '1',
      '1'], 'argument --resnet-blocks: resnet_blocks must be at most 100'),
])
def test_sizes_that_only_exhaust_memory_are_refused(tmp_path, capsys, argv, message):
    """A netgen traceback (protobuf's int32), a generator that never ends
    (a million ResNet blocks), a million data worker processes."""
    assert cli.main(argv + ['-o', str(tmp_path / 'nets')]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'nets').exists()


SCAS_SMALL = ['scasnet', 'netgen', '--backbone', 'small', '--input-size', '64', '--workers', '0']


@pytest.mark.parametrize('args, message', [
    (['--variant', 'vgg', '--dilations', '2', '100000000000', '--allow-wide-dilations'],
     'argument --dilations: dilations must be at most 1024'),
    (['--variant', 'vgg', '--dilations', '2', '2147483647', '--allow-wide-dilations'],
     'argument --dilations: dilations must be at most 1024'),
    (['--variant', 'vgg', '--set', 'refine=(1,2)'], 'argument --refine: refine must be layer names'),
    (['--variant', 'vgg', '--set', 'refine=conv9_9'], 'refine must be block outputs among'),
    (['--variant', 'vgg', '--refine', 'conv4_3', 'conv4_3'],
     'argument --refine: refine names conv4_3 more than once'),
    (['--variant', 'resnet', '--vgg-blocks', '1', '1', '1', '1', '1'],
     'argument --vgg-blocks: vgg_blocks is for the VGG nets only; with variant resnet it would change nothing'),
    (['--variant', 'resnet', '--set', 'vgg_blocks=(1,1,1,1,1)'], 'argument --vgg-blocks: vgg_blocks is for'),
    (['--variant', 'vgg', '--resnet-blocks', '1', '1', '1', '1'],
     'argument --resnet-blocks: resnet_blocks is for the ResNet nets only'),
    (['--variant', 'vgg', '--context', 'none', '--dilations', '2', '4'],
     "argument --dilations: dilations are the context branches' rates: they do not go with context none"),
    (['--variant', 'vgg', '--set', 'context=none', '--set', 'dilations=2'], 'do not go with context none'),
])
def test_scasnet_netgen_refuses_meaningless_settings_in_one_line(tmp_path, capsys, args, message):
    assert cli.main(SCAS_SMALL + args + ['-o', str(tmp_path / 'nets')]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'nets').exists()


@pytest.mark.parametrize('args, refine', [
    (['--variant', 'vgg', '--set', 'refine=conv4_3'], ['conv4_3']),        # one name as text: one layer
    (['--variant', 'vgg', '--set', 'refine=conv5_3 conv4_3'], ['conv5_3', 'conv4_3']),
    (['--vgg-blocks', '2', '2', '2', '2', '2'], ['conv5_2', 'conv4_2', 'conv3_2']),   # both: VGG uses it
])
def test_scasnet_netgen_accepts_refine_as_text_and_blocks_beside_vgg(tmp_path, capsys, args, refine):
    out = tmp_path / 'nets'
    assert cli.main(SCAS_SMALL + args + ['-o', str(out)]) == 0
    text = (out / 'vgg_scasnet_deploy.prototxt').read_text()
    refined = sorted({n for n in ('conv%d_%d' % (b, c) for b in range(1, 6) for c in range(1, 4))
                      if 'name: "%s_merge1"' % n in text})
    assert refined == sorted(refine)
