"""One config mechanism for both systems: every field of MlicConfig and
ScasConfig is an option of its netgen and settable with --set, both configs
validate through the same checks, and an old spelling keeps working."""
import argparse
import dataclasses

import pytest

from caffe_mlic import cli
from caffe_mlic.caffe import prototxt
from caffe_mlic.errors import UsageError
from caffe_mlic.netspec import MlicConfig
from caffe_mlic.netspec.config import add_config_flags, cli_fields, config_from_args, flag_of
from caffe_mlic.netspec.scasnet import ScasConfig


@pytest.mark.parametrize('cls', [MlicConfig, ScasConfig])
def test_every_field_has_help_and_an_option(cls):
    parser = argparse.ArgumentParser()
    add_config_flags(parser, cls, 'config')
    options = {o for action in parser._actions for o in action.option_strings}
    for f in dataclasses.fields(cls):
        assert f.metadata.get('help'), f.name
        if f.metadata.get('cli', True):
            assert flag_of(f) in options, f.name
    assert '--set' in options


@pytest.mark.parametrize('cls', [MlicConfig, ScasConfig])
def test_no_options_give_the_release(cls):
    parser = argparse.ArgumentParser()
    add_config_flags(parser, cls, 'config')
    assert config_from_args(cls, parser.parse_args([])) == cls.release()


def test_scasnet_flags_and_set_reach_the_nets(tmp_path, monkeypatch):
    out = tmp_path / 'nets'
    monkeypatch.chdir(tmp_path)     # (netgen reads the palette, relative to here)
    (tmp_path / 'my_palette.txt').write_text(''.join('c%d %d 0 0\n' % (i, 40 * i) for i in range(6)))
    assert cli.main(['scasnet', 'netgen', '-o', str(out), '--variant', 'vgg', '--backbone', 'tiny',
                     '--input-size', '64', '--val-batch-size', '3', '--mean', '1', '2', '3',
                     '--set', 'scale_factors=[0.5,1]', '--set', 'palette=my_palette.txt',
                     '--set', 'dilations=(1,2)']) == 0
    net = prototxt.read_net(str(out / 'vgg_scasnet_train.prototxt'))
    train, test = (prototxt.python_params(prototxt.data_layer(net, phase, python_layer='SegmentationData'))
                   for phase in ('TRAIN', 'TEST'))
    assert test['batch_size'] == 3 and train['batch_size'] == 4
    assert train['mean_value'] == [1.0, 2.0, 3.0] and train['scale_factors'] == [0.5, 1.0]
    assert train['palette'] == 'my_palette.txt'
    dilated = [layer.convolution_param.dilation[0] for layer in net.layer
               if layer.type == 'Convolution' and layer.convolution_param.dilation]
    assert sorted(set(dilated)) == [1, 2]
    # 'tiny', the old name of the small backbone, gives the small backbone
    small = ScasConfig.release(backbone='small', input_size=64)
    assert cli_fields(ScasConfig) and config_from_args(
        ScasConfig, argparse.Namespace(set=['backbone=tiny'], input_size=64)).backbone == small.backbone


@pytest.mark.parametrize('cls, field, value, message', [
    (MlicConfig, 'workers', -1, 'workers must be an integer >= 0, got -1'),
    (ScasConfig, 'workers', -1, 'workers must be an integer >= 0, got -1'),
    (MlicConfig, 'dropout_ratio', 1.0, r'dropout_ratio must be in \[0, 1\), got 1.0'),
    (ScasConfig, 'dropout_ratio', float('nan'), r'dropout_ratio must be in \[0, 1\), got nan'),
    (ScasConfig, 'input_scale', 0.0, 'input_scale must be a positive number, got 0.0'),
    (ScasConfig, 'val_list', 'a b', 'val_list must be non-empty with no whitespace'),
    (ScasConfig, 'backbone', 'tiny', 'backbone must be one of release, small'),
])
def test_both_configs_refuse_alike_naming_the_field(cls, field, value, message):
    with pytest.raises(UsageError, match=message) as e:
        cls.release(**{field: value}).validate()
    assert e.value.param == field


@pytest.mark.parametrize('text, value', [
    # a quoted string is its content: 'student_fc8=""' kept the two quotes as the name (pass 37b M5)
    ('""', ''), ("'fc x'", 'fc x'), ('"fc8"', 'fc8'),
    # anything else as given
    ('fc8', 'fc8'), ('"unclosed', '"unclosed'), ('1e5', '1e5'), ('None', 'None'), ('[1]', '[1]'), ('a "b"', 'a "b"'),
])
def test_a_text_field_set_to_a_quoted_string_takes_its_content(text, value):
    from caffe_mlic.netspec.config import coerce
    assert coerce('default', text) == value
