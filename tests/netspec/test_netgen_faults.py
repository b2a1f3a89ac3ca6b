"""netgen refuses impossible values naming the option, and a failure part way writes nothing."""
import argparse
import dataclasses
import os

import pytest

from caffe_mlic import cli
from caffe_mlic.errors import UsageError
from caffe_mlic.netspec import netgen


@pytest.mark.parametrize('args, fragment', [
    (['--base-lrs', '1', '1', 'nan', '1'], 'argument --base-lrs: base_lr must be a positive number up to 1e6, got nan'),
    (['--base-lr', '-1'], 'base_lr must be a positive number'),
    (['--base-lr', '1e300'], 'base_lr must be a positive number up to 1e6, got 1e+300'),
    (['--teacher-temperature', '-1'], 'teacher_temperature must be a positive number'),
    (['--student-temperature', '0'], 'student_temperature must be a positive number'),
    (['--input-scale', '0'], 'input_scale must be a positive number'),
    (['--input-scale', '1e-300'], 'input_scale must be a positive number (as float32'),
    (['--input-scale', '1e39'], 'input_scale must be a positive number within float32 (at most 3.4e38)'),
    (['--workers', '-1'], 'workers must be an integer >= 0'),
    (['--max-iter', '0'], "argument --max-iter: must be an integer from 1 to 2147483647, got '0'"),
    (['--max-iter', '2147483648'], "argument --max-iter: must be an integer from 1 to 2147483647, got '2147483648'"),
    (['--iters', '1', '0', '1', '1'], "argument --iters: must be an integer from 1 to 2147483647, got '0'"),
    (['--iters', '1', '1', '1', '3000000000'], "argument --iters: must be an integer from 1 to 2147483647"),
    (['--random-seed', '9223372036854775808'], 'argument --random-seed: must be an integer from 0 to '
                                               '9223372036854775807'),
    (['--wsddn-batch', '0', '1'], 'wsddn_batch must be two positive integers'),
    (['--scales', '0'], 'scale_factors must be positive numbers'),
    (['--set', 'dropout_ratio=1' + '0' * 400], 'dropout_ratio must be in [0, 1)'),     # (OverflowError: pass 38b S2)
])
def test_netgen_refuses_impossible_values_and_writes_nothing(tmp_path, capsys, args, fragment):
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets')] + args) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / 'nets').exists()


@pytest.mark.parametrize('argv, fragment', [
    # (nets written with exit 0 that Caffe would abort building, far from the setting: pass 36b M10)
    (['scasnet', 'netgen', '--input-size', '26000'], "vgg_scasnet_deploy.prototxt: layer 'conv1_1': top 'conv1_1' "
                                                     "would be 1 x 64 x 26000 x 26000 = 43264000000 values"),
    (['scasnet', 'netgen', '--input-size', '2048', '--variant', 'vgg'], "vgg_scasnet_deploy.prototxt: layer "
                                                                        "'conv1_2': its im2col buffer"),
    (['netgen', '--set', 'teacher_size=20000'], "wsddn_train.prototxt: layer 'data' (TRAIN): top 'data' would be"),
])
def test_settings_that_give_nets_caffe_cannot_build_are_refused(tmp_path, capsys, argv, fragment):
    assert cli.main(argv + ['-o', str(tmp_path / 'nets')]) == 2
    err = capsys.readouterr().err
    assert 'these settings give nets Caffe cannot build (nothing was written): ' in err and fragment in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / 'nets').exists()


@pytest.mark.parametrize('argv, fragment', [
    (['netgen', '--teacher-size', str(2 ** 31)], 'teacher_size must be at most 26754'),
    (['netgen', '--student-size', str(2 ** 62)], 'student_size must be at most 26754'),
    (['scasnet', 'netgen', '--input-size', str(2 ** 31)], 'input_size must be at most 26754'),
    (['scasnet', 'netgen', '--input-size', '100000'], 'input_size must be at most 26754'),
])
def test_an_input_size_past_what_a_caffe_blob_holds_is_refused_by_its_flag(tmp_path, capsys, argv, fragment):
    """2^31 px or more overflowed protobuf's int32 while the net was made: a
    "ValueError: Value out of range" traceback (pass 54b S2)."""
    assert cli.main(argv + ['-o', str(tmp_path / 'nets')]) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.splitlines()) == 1, err
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


# ---------------------------------------------------------------- --set values of the wrong kind


def _sequence_fields(cls):
    from caffe_mlic.netspec.config import default_of, element_type
    return [(f.name, default_of(f), f.metadata) for f in dataclasses.fields(cls)
            if element_type(default_of(f), f.metadata)]


def _configs():
    from caffe_mlic.netspec import MlicConfig
    from caffe_mlic.netspec.scasnet import ScasConfig
    return [(MlicConfig, None), (ScasConfig, 'vgg'), (ScasConfig, 'resnet')]


# Never a list of numbers or names: a dict, a set, nested lists, bools, NaN, bytes.
NEVER_A_LIST = ['{}', '{"a": 1}', '{1, 2, 3}', '[[1, 2, 3]]', '[[1], [2], [3], [4], [5]]', 'True', 'False',
                '[True, True, True, True, True]', '[True, 1]', 'nan', '[nan, 1, 1]', '[1e999]', 'b"x"', '1j',
                '[None]', '[1, [2]]']


def _set(cls, variant, item):
    from caffe_mlic.netspec.config import config_from_args
    args = argparse.Namespace(set=[item], variant=variant)
    return config_from_args(cls, args, **({'variant': variant} if variant else {}))


@pytest.mark.parametrize('cls, variant', _configs())
def test_set_refuses_a_list_field_of_another_kind_naming_it(cls, variant):
    """Every list or tuple field of both configs, given through --set a
    scalar (fixed-length fields), None (a field whose default is not None),
    a dict, a set, nested lists, bools or NaN: a UsageError naming the field,
    never a TypeError from validate() (S3: vgg_blocks=5, mean=None ...)."""
    fields = _sequence_fields(cls)
    assert fields
    for name, default, meta in fields:
        bad = list(NEVER_A_LIST)
        if default is not None:
            bad.append('None')
        if not meta.get('nargs'):      # a fixed count: one number is not a list
            bad += ['5', '0', '-1', '1.5', '"abc"', 'abc']
        for value in bad:
            with pytest.raises(UsageError) as e:
                _set(cls, variant, '%s=%s' % (name, value))
            assert e.value.param == name, (name, value, str(e.value))
            assert name in str(e.value), (name, value, str(e.value))


@pytest.mark.parametrize('argv, message', [
    (['scasnet', 'netgen', '--set', 'vgg_blocks=5'], 'argument --vgg-blocks: vgg_blocks must be a list of 5'),
    (['scasnet', 'netgen', '--set', 'vgg_blocks=None'], 'argument --vgg-blocks: vgg_blocks must be a list of 5'),
    (['scasnet', 'netgen', '--set', 'resnet_blocks=5'], 'argument --resnet-blocks: resnet_blocks must be'),
    (['scasnet', 'netgen', '--set', 'resnet_blocks=None'], 'argument --resnet-blocks: resnet_blocks must be'),
    (['scasnet', 'netgen', '--set', 'mean=None'], 'argument --mean: mean must be a list of one or more numbers'),
    (['scasnet', 'netgen', '--set', 'scale_factors={}'], 'argument --scales: scale_factors must be a list'),
    (['scasnet', 'netgen', '--set', 'resnet_blocks=[True, True, True, True]'], 'resnet_blocks must be a list'),
    (['netgen', '--set', 'mean=5'], 'argument --mean: mean must be a list of 3 numbers, got 5'),
    (['netgen', '--set', 'mean=None'], 'argument --mean: mean must be a list of 3 numbers, got None'),
    (['netgen', '--set', 'scale_factors=None'], 'argument --scales: scale_factors must be a list'),
    (['netgen', '--set', 'wsddn_batch=5'], 'argument --wsddn-batch: wsddn_batch must be a list of 2 integers'),
    (['netgen', '--set', 'stage2_batch=[True, 1]'], 'argument --stage2-batch: stage2_batch must be a list'),
    (['netgen', '--set', 'baseline_batch={1, 2}'], 'argument --baseline-batch: baseline_batch must be a list'),
])
def test_netgen_set_of_the_wrong_kind_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    assert cli.main(argv + ['-o', str(tmp_path / 'nets')]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'nets').exists()


@pytest.mark.parametrize('cls, variant, item, value', [
    ('scas', 'vgg', 'mean=5', (5.0,)),                 # words as on the command line: --mean 5
    ('scas', 'vgg', 'mean=1 2 3', (1.0, 2.0, 3.0)),
    ('scas', 'vgg', 'scale_factors=1', (1.0,)),
    ('mlic', None, 'scale_factors=1', [1.0]),
    ('mlic', None, 'mean=[1, 2, 3]', [1.0, 2.0, 3.0]),
    ('mlic', None, 'mean=1 2 3', [1.0, 2.0, 3.0]),
    ('scas', 'vgg', 'vgg_blocks=1 1 1 0 0', (1, 1, 1, 0, 0)),
    ('scas', 'vgg', 'dilations=None', None),            # None: the release's rates, scaled
    ('scas', 'vgg', 'refine=None', None),
    ('scas', 'vgg', 'refine=()', ()),
    ('scas', 'vgg', 'refine="conv4_3"', ('conv4_3',)),  # quoted: the name, not '"conv4_3"'
    ('scas', 'vgg', 'dilations=2', (2,)),
    ('scas', 'resnet', 'bn_trainable=true', True),
    ('scas', 'resnet', 'bn_trainable=False', False),
    ('scas', 'vgg', 'residual_correction=false', False),
])
def test_set_reads_words_and_bools_as_the_command_line_does(cls, variant, item, value):
    from caffe_mlic.netspec import MlicConfig
    from caffe_mlic.netspec.scasnet import ScasConfig
    cfg = _set({'scas': ScasConfig, 'mlic': MlicConfig}[cls], variant, item)
    assert getattr(cfg, item.partition('=')[0]) == value


@pytest.mark.parametrize('value', ['"x"', 'x', 'yes', '1', '0', 'None', '[]', '"true "x'])
def test_a_bool_field_takes_only_true_or_false(value):
    """bn_trainable="x" was true, None false (S3 minor); every bool field alike."""
    from caffe_mlic.netspec.scasnet import ScasConfig
    for name in ('bn_trainable', 'allow_wide_dilations', 'residual_correction'):
        with pytest.raises(UsageError, match='%s must be true or false' % name) as e:
            _set(ScasConfig, 'resnet', '%s=%s' % (name, value))
        assert e.value.param == name


@pytest.mark.parametrize('args', [['--set', 'bn_trainable=true'], ['--set', 'bn_trainable=false'],
                                  ['--bn-trainable']])
def test_bn_trainable_with_only_vgg_nets_is_refused(tmp_path, capsys, args):
    """VGG ScasNet has no batch norm: like --resnet-blocks, it would change nothing."""
    assert cli.main(SCAS_SMALL + ['--variant', 'vgg'] + args + ['-o', str(tmp_path / 'nets')]) == 2
    err = capsys.readouterr().err
    assert 'argument --bn-trainable: bn_trainable is for the ResNet nets only' in err, err
    assert not (tmp_path / 'nets').exists()
    assert cli.main(SCAS_SMALL + ['--variant', 'both', '--set', 'vgg_blocks=(1,1,1,1,1)',
                                  '--set', 'resnet_blocks=(1,1,1,1)'] + args + ['-o', str(tmp_path / 'both')]) == 0


# ---------------------------------------------------------------- an output that is an input


MLIC_TINY = ['netgen', '--backbone', 'tiny', '--classes', '6']
SCAS_VGG = SCAS_SMALL + ['--variant', 'vgg']
CLASSES = ''.join('c%d\n' % i for i in range(6))


def _place(tmp_path, how, output, text):
    """The input file a command is given, at (or linked from) the output path
    ``output``: {plain, dot (given as ./d/../OUT), symlink, hardlink}.
    Returns the path to give."""
    src = tmp_path / 'src.txt'
    out = tmp_path / output
    out.parent.mkdir(parents=True, exist_ok=True)
    if how in ('plain', 'dot'):
        out.write_text(text)
        return output if how == 'plain' else './%s/../%s' % (output.split('/')[0], output)
    src.write_text(text)
    if how == 'symlink':
        out.symlink_to(src)
    else:
        os.link(str(src), str(out))
    return 'src.txt'


@pytest.mark.parametrize('how', ['plain', 'dot', 'symlink', 'hardlink'])
@pytest.mark.parametrize('command, option, output, text', [
    (SCAS_VGG, '--classes-file', 'nc/vgg_scasnet_deploy.prototxt', CLASSES),
    (SCAS_VGG, '--classes-file', 'nc/deploy.json', CLASSES),
    (SCAS_VGG, '--train-list', 'nc/vgg_scasnet_train.prototxt', 'a.png b.png\n'),
    (SCAS_VGG, '--val-list', 'nc/vgg_scasnet_solver.prototxt', 'a.png b.png\n'),
    (SCAS_VGG, '--palette', 'nc/vgg_scasnet_deploy.prototxt', ''.join('c%d 0 0 %d\n' % (i, i) for i in range(6))),
    (MLIC_TINY, '--classes-file', 'nc/deploy.json', CLASSES),
    (MLIC_TINY, '--train-list', 'nc/kd/solver_stage1.prototxt', 'a.jpg 1\n'),
    (MLIC_TINY, '--test-list', 'nc/wsddn/wsddn_train.prototxt', 'a.jpg 1\n'),
])
def test_netgen_refuses_an_output_that_is_an_input(tmp_path, capsys, monkeypatch, command, option, output, text,
                                                    how):
    """S6: `-o nc --classes-file nc/vgg_scasnet_deploy.prototxt` replaced the
    class list it had read by the deploy net (and a datalist likewise). Now:
    refused before anything is written, naming the option and the path,
    however the path is spelled or linked."""
    monkeypatch.chdir(tmp_path)
    given = _place(tmp_path, how, output, text)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob('*'))
    assert cli.main(command + ['-o', 'nc', option, given]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert 'argument %s: ' % option in err and 'is an input of this command' in err, err
    assert os.path.basename(output) in err, err
    assert (tmp_path / output).read_text() == text
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob('*')) == before


@pytest.mark.parametrize('command, option', [(SCAS_VGG, 'train_list'), (MLIC_TINY, 'test_list')])
def test_a_datalists_companion_at_an_output_is_refused(tmp_path, capsys, monkeypatch, command, option):
    """The .classes.txt beside a datalist (read for deploy.json), symlinked from an output."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'list.txt').write_text('a.png b.png\n')
    (tmp_path / 'list.classes.txt').write_text(CLASSES)
    (tmp_path / 'nc').mkdir()
    (tmp_path / 'nc' / 'deploy.json').symlink_to(tmp_path / 'list.classes.txt')
    assert cli.main(command + ['-o', 'nc', '--set', '%s=list.txt' % option]) == 2
    assert 'is an input of this command' in capsys.readouterr().err
    assert (tmp_path / 'list.classes.txt').read_text() == CLASSES


def test_netgen_writes_beside_inputs_that_are_not_outputs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'nc').mkdir()
    (tmp_path / 'nc' / 'classes.txt').write_text(CLASSES)
    assert cli.main(SCAS_VGG + ['-o', 'nc', '--classes-file', 'nc/classes.txt']) == 0
    assert cli.main(MLIC_TINY + ['-o', 'nc', '--classes-file', 'nc/classes.txt']) == 0
    assert (tmp_path / 'nc' / 'classes.txt').read_text() == CLASSES


@pytest.mark.parametrize('argv, field', [
    # a NUL was a ValueError traceback (pass 40b S1); a newline went into every data layer (M4)
    (['netgen', '--set', "train_list='x\\x00y'"], 'train_list'),
    (['netgen', '--set', "root_folder='x\\ny'"], 'root_folder'),
    (['netgen', '--set', "refine=['conv4_3\\r']"], None),
    (['scasnet', 'netgen', '--set', "palette='x\\x00y'"], 'palette'),
    (['scasnet', 'netgen', '--set', "train_list='a\\nb'"], 'train_list'),
    (['netgen', '--set', "root_folder='x\\x1by'"], 'root_folder'),      # (ESC, tab: pass 41b M3)
    (['netgen', '--set', "root_folder='x\\ty'"], 'root_folder'),
    (['netgen', '--set', "root_folder='x\\x85y'"], 'root_folder'),       # (Python's line breaks: pass 42 M2)
    (['netgen', '--set', "root_folder='x\\u2028y'"], 'root_folder'),
    (['netgen', '--set', "root_folder='x\\x9by'"], 'root_folder'),       # (a C1 control: pass 43 M1)
])
def test_a_text_field_with_a_nul_or_line_break_is_refused(tmp_path, capsys, argv, field):
    code = cli.main(argv + ['-o', str(tmp_path / 'out')])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and 'Traceback' not in err, err
    if field:
        assert '%s must be text without a NUL, line break or other control character' % field in err, err
    assert not (tmp_path / 'out').exists()


def test_scasnet_netgen_refuses_a_palette_with_fewer_colours_than_classes(tmp_path, capsys):
    """The training's data layers refuse it: said before any net is written (pass 40b M4)."""
    (tmp_path / 'pal.txt').write_text('only 1 2 3\nother 4 5 6\n')
    assert cli.main(['scasnet', 'netgen', '-o', str(tmp_path / 'out'), '--palette', str(tmp_path / 'pal.txt')]) == 2
    assert 'the palette %s has 2 colours, fewer than the 6 classes' % (tmp_path / 'pal.txt') in \
        capsys.readouterr().err
    assert not (tmp_path / 'out').exists()
    assert cli.main(['scasnet', 'netgen', '-o', str(tmp_path / 'out'), '--palette', str(tmp_path / 'pal.txt'),
                     '--classes', '2']) == 0


@pytest.mark.parametrize('command', [['netgen'], ['scasnet', 'netgen']])
def test_an_output_folder_whose_name_is_not_utf8_is_refused_in_one_line(tmp_path, capsys, command):
    """A solver's net path is UTF-8 text: protobuf's UnicodeEncodeError was a
    23-line traceback (pass 59b S1)."""
    out = os.fsdecode(bytes(tmp_path) + b'/nets\xff')
    assert cli.main(command + ['-o', out, '--classes', '3']) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and 'Traceback' not in err, err
    assert 'nets\\xff/' in err and 'a solver names its net in UTF-8 text, and this path is not UTF-8' in err, err
    assert os.listdir(tmp_path) == []
