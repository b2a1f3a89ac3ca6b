"""The run config: TOML read with KEY.PATH=VALUE overrides, every problem
named by file, line or key path, before anything runs."""
import pytest

from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.netspec import MlicConfig
from caffe_mlic.netspec.scasnet import ScasConfig
from caffe_mlic.pipeline.config import Field, check_net_table, check_table, parse_value, read_config

SCHEMA = {'run': {'system': Field((str,), "'scasnet' or 'mlic'", lambda v: v in ('scasnet', 'mlic'), True),
                  'seeds': Field((list,), 'a list of integers >= 0',
                                 lambda v: all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v))},
          'train': {'base_lr': Field((float,), 'a number > 0', lambda v: v > 0)}}


def write(tmp_path, text):
    (tmp_path / 'run.toml').write_text(text)
    return str(tmp_path / 'run.toml')


def test_overrides_set_nested_keys_as_toml_values_or_text(tmp_path):
    path = write(tmp_path, '[run]\nsystem = "scasnet"\nseeds = [1, 2]\n[train]\nbase_lr = 0.01\n')
    data = read_config(path, ['train.base_lr=1e-3', 'run.seeds=[3]', 'net.context=parallel', 'a.b.c=true'])
    assert data == {'run': {'system': 'scasnet', 'seeds': [3]}, 'train': {'base_lr': 0.001},
                    'net': {'context': 'parallel'}, 'a': {'b': {'c': True}}}
    assert parse_value('"x y"') == 'x y' and parse_value('x y') == 'x y' and parse_value('[1, 2.5]') == [1, 2.5]
    with pytest.raises(UsageError, match=r"expected KEY.PATH=VALUE .*got 'train.base_lr'"):
        read_config(path, ['train.base_lr'])
    with pytest.raises(UsageError, match=r"run.system is not a table in 'run.system.x=1'"):
        read_config(path, ['run.system.x=1'])


@pytest.mark.parametrize('text, message', [
    ('[run]\nsystem = "scasnet"\nseeds = [1, 2\n', r'run.toml:3: not valid TOML: '),
    ('[run]\nsystem = "a"\nsystem = "b"\n', r'run.toml:3: not valid TOML: '),
    (b'\xff\xfe[run]', r'run.toml: not UTF-8 text'),
    ('x = ' + '[' * 100000 + ']' * 100000, r'run.toml(:1)?: not valid TOML'),
])
def test_a_file_that_is_not_toml_is_named_with_its_line(tmp_path, text, message):
    if isinstance(text, bytes):
        (tmp_path / 'run.toml').write_bytes(text)
        path = str(tmp_path / 'run.toml')
    else:
        path = write(tmp_path, text)
    with pytest.raises(InputError, match=message):
        read_config(path)


def test_a_config_that_is_not_a_regular_file_or_is_huge_is_refused(tmp_path):
    with pytest.raises(InputError, match='no such config file'):
        read_config(tmp_path / 'none.toml')
    with pytest.raises(InputError, match='not a regular file'):
        read_config(tmp_path)
    (tmp_path / 'big.toml').write_text('# ' + 'x' * (1 << 20))
    with pytest.raises(InputError, match='over 1048576 bytes'):
        read_config(tmp_path / 'big.toml')


def test_every_schema_problem_is_named_by_its_key_path_at_once(tmp_path):
    data = {'run': {'system': 'caffe', 'seeds': [1, -2], 'sedes': [1]}, 'train': 5, 'extra': {}}
    problems = [str(p) for p in check_table('run.toml', data, SCHEMA)]
    assert problems == [
        'run.toml: run.system: must be \'scasnet\' or \'mlic\', got "caffe"',       # (as TOML writes it)
        'run.toml: run.seeds: must be a list of integers >= 0, got [1, -2]',
        'run.toml: run.sedes: unknown key (known here: seeds, system)',
        'run.toml: train: must be a table ([train]), got 5',
        'run.toml: extra: unknown key (known here: run, train)']
    assert [str(p) for p in check_table('run.toml', {'run': {}}, SCHEMA)] == [
        "run.toml: run.system: missing ('scasnet' or 'mlic')"]
    assert check_table('run.toml', {'run': {'system': 'mlic'}, 'train': {'base_lr': 1}}, SCHEMA) == []


def test_a_nul_in_any_string_is_refused_by_its_key(tmp_path):
    """run.folder = "a\\u0000b" passed the check, and `run` ended in a
    traceback from os.makedirs (pass 32 S4)."""
    path = write(tmp_path, '[run]\nsystem = "scasnet"\nfolder = "a\\u0000b"\n')
    data = read_config(path)
    schema = {'run': dict(SCHEMA['run'], folder=Field((str,), 'the run folder', bool))}
    assert [str(p) for p in check_table(path, data, schema)] == [
        "%s: run.folder: holds a NUL character (\\u0000), which no file name or value can: \"a\\u0000b\"" % path]
    assert [str(p) for p in check_table(path, {'run': {'system': 'mlic', 'seeds': ['\0']}}, SCHEMA)] == [
        "%s: run.seeds: holds a NUL character (\\u0000), which no file name or value can: [\"\\u0000\"]" % path]


def test_the_net_table_is_checked_by_the_systems_config_class():
    assert check_net_table('run.toml', {'context': 'parallel', 'input_size': 128, 'vgg_blocks': [1, 1, 1, 0, 0]},
                           ScasConfig) == []
    assert [str(p) for p in check_net_table('run.toml', {'contxt': 'parallel'}, ScasConfig)] == [
        'run.toml: net.contxt: not a ScasConfig field (see `caffe-mlic scasnet netgen --help`)']
    [problem] = check_net_table('run.toml', {'input_size': -5}, ScasConfig)
    assert str(problem).startswith('run.toml: net.input_size: ') and '-5' in str(problem)


@pytest.mark.parametrize('cls, table, fragment', [
    (MlicConfig, {'wsddn_batch': [100000000, 1]}, "top 'data' would be 100000000 x 3 x "),
    (MlicConfig, {'teacher_size': 20000}, "layer 'data' (TRAIN): top 'data' would be"),
    (MlicConfig, {'scale_factors': [1e300]}, "parameter 'scale_factors'"),
    (ScasConfig, {'input_size': 26000}, "top 'conv1_1' would be 1 x 64 x 26000 x 26000"),
])
def test_a_net_table_whose_nets_caffe_cannot_build_is_refused_as_netgen_refuses_it(cls, table, fragment):
    """`run --check` called a config valid whose nets netgen refuses (a
    batch of 10^8, a scale factor of 1e300): its stages failed hours into
    the run (pass 54b M2)."""
    [problem] = check_net_table('run.toml', table, cls)
    assert str(problem).startswith('run.toml: net: these settings give nets Caffe cannot build: ') and \
        fragment in str(problem), str(problem)


def test_a_table_left_out_is_named_by_its_required_keys():
    schema = dict(SCHEMA, data={'train_list': Field((str,), 'a datalist', bool, True), 'gt': Field((str,), 'x')})
    problems = [str(p) for p in check_table('run.toml', {'run': {'system': 'mlic'}}, schema)]
    assert problems == ['run.toml: data.train_list: missing (a datalist)']


def test_values_in_messages_are_written_as_toml_writes_them():
    """`got True`, `got datetime.date(1979, 5, 27)` (pass 40b M5)."""
    import datetime
    problems = [str(p) for p in check_table('run.toml', {'run': {'system': True, 'seeds': [datetime.date(1979, 5, 27),
                                                                                          float('inf')]}}, SCHEMA)]
    assert "run.toml: run.system: must be 'scasnet' or 'mlic', got true" in problems, problems
    assert 'run.toml: run.seeds: must be a list of integers >= 0, got [1979-05-27, inf]' in problems, problems
