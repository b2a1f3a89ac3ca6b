"""The config file of `caffe-mlic run`: TOML (Python's tomllib), with
``KEY.PATH=VALUE`` overrides, checked against a schema before anything
runs. Every problem names the file, the key path (``train.base_lr``) and
what was expected; all of them at once.

A schema is a dict: key -> Field, or a dict (a table of its own). The net
table takes the fields of the system's config class (MlicConfig,
ScasConfig), checked by that class's own validate() (check_net_table).
"""
import dataclasses
import os
import re
import tomllib
from typing import Any, Callable, NamedTuple, Optional

from caffe_mlic.errors import InputError, Problem, UsageError
from caffe_mlic.fileio import input_file_problem

MAX_CONFIG_BYTES = 1 << 20      # a config is a page of settings, not data


class Field(NamedTuple):
    """One key: the TOML kinds it takes (str, int, float, bool, list), what it
    must be (for the message), an extra test, and whether it must be given."""
    kinds: tuple
    what: str
    test: Optional[Callable[[Any], bool]] = None
    required: bool = False


def not_a_file(path):
    """Why a config's ``path`` that is not a regular file is none: 'no such
    file', or what it is instead."""
    from caffe_mlic.fileio import file_kind_problem
    return 'a folder, not a file' if os.path.isdir(path) else file_kind_problem(path) or 'no such file'


def not_a_folder(path):
    """Why a config's ``path`` that is not a folder is none ('no such
    folder', 'a FIFO, not a folder': errors.folder_problem)."""
    from caffe_mlic.errors import folder_problem
    return folder_problem(path)


def distinct_ints(low, high=2 ** 63 - 1):
    """A test: a non-empty list of distinct integers from ``low`` to ``high``
    (int64's largest by default: a seed is Caffe's int64 random_seed)."""
    return lambda v: isinstance(v, list) and bool(v) and len(set(v)) == len(v) and all(
        isinstance(x, int) and not isinstance(x, bool) and low <= x <= high for x in v)


def run_table(system):
    """The [run] table every pipeline's config has."""
    return {'system': Field((str,), repr(system), lambda v: v == system, True),
            'folder': Field((str,), 'the run folder', bool, True),
            'seeds': Field((list,), 'a list of distinct integers from 0 to 2^63 - 1 (Caffe\'s int64 random_seed)',
                           distinct_ints(0)),
            'jobs': Field((int,), 'an integer from 1 to 64', lambda v: 1 <= v <= 64),
            'gpu': Field((int,), 'a GPU id (an integer >= 0; the trainings run there, with a CUDA build)',
                         lambda v: v >= 0)}


def _kind_ok(value, kinds):
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int) and float in kinds:
        return True
    return isinstance(value, kinds)


def toml_text(value):
    """``value`` (as tomllib reads it) written as TOML writes it: true, not
    True; 1979-05-27, not datetime.date(1979, 5, 27); "x" for text."""
    import datetime
    import json
    import math
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float) and not math.isfinite(value):
        return 'nan' if math.isnan(value) else ('inf' if value > 0 else '-inf')
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (datetime.date, datetime.time)):     # (datetime is a date)
        return value.isoformat()
    if isinstance(value, list):
        return '[%s]' % ', '.join(toml_text(v) for v in value)
    if isinstance(value, dict):
        return '{%s}' % ', '.join('%s = %s' % (k, toml_text(v)) for k, v in value.items())
    return json.dumps(str(value))


def check_table(path, data, schema, prefix=''):
    """[Problem] of ``data`` (a dict read from ``path``) against ``schema``."""
    problems = []
    for key, value in data.items():
        name = prefix + key
        if key not in schema:
            problems.append(Problem(path, None, name, 'unknown key (known here: %s)' % ', '.join(sorted(schema))))
        elif isinstance(schema[key], dict):
            if not isinstance(value, dict):
                problems.append(Problem(path, None, name, 'must be a table ([%s]), got %s' % (name, toml_text(value))))
            else:
                problems += check_table(path, value, schema[key], name + '.')
        elif any(isinstance(v, str) and '\0' in v for v in (value if isinstance(value, list) else [value])):
            # (TOML allows \u0000; no path, name or value of ours can hold one: os calls raise on it)
            problems.append(Problem(path, None, name, 'holds a NUL character (\\u0000), which no file name or '
                                                      'value can: %s' % toml_text(value)))
        elif not _kind_ok(value, schema[key].kinds) or (schema[key].test and not schema[key].test(value)):
            problems.append(Problem(path, None, name, 'must be %s, got %s' % (schema[key].what, toml_text(value))))
    for key, field in schema.items():
        if isinstance(field, Field) and field.required and key not in data:
            problems.append(Problem(path, None, prefix + key, 'missing (%s)' % field.what))
        elif isinstance(field, dict) and key not in data:     # a table left out: its required keys
            problems += check_table(path, {}, field, prefix + key + '.')
    return problems


def check_net_table(path, table, cls, prefix='net.'):
    """[Problem] of the net table: keys that are not fields of config class
    ``cls``, then the first value its validate() refuses, then the first
    problem of the nets netgen would build from it (a blob over Caffe's
    bound, a layer setting refused)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - fields)
    if unknown:
        return [Problem(path, None, prefix + key, 'not a %s field (see `caffe-mlic %snetgen --help`)'
                        % (cls.__name__, 'scasnet ' if cls.__name__ == 'ScasConfig' else '')) for key in unknown]
    values = {k: tuple(v) if isinstance(v, list) and isinstance(getattr(cls.release(), k), tuple) else v
              for k, v in table.items()}
    try:
        cfg = cls.release(**values).validate()
    except UsageError as e:
        field = getattr(e, 'param', None)
        return [Problem(path, None, prefix + field if field else prefix.rstrip('.'), str(e))]
    from caffe_mlic.netspec.netgen import config_unbuildable
    why = config_unbuildable(cfg)
    return [Problem(path, None, prefix.rstrip('.'), 'these settings give nets Caffe cannot build: ' + why)] if why else []


def _set(data, key_path, value, item):
    node = data
    parts = key_path.split('.')
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UsageError('argument --set: %s is not a table in %r' % ('.'.join(parts[:i + 1]), item))
    node[parts[-1]] = value


def parse_value(text):
    """``text`` as a TOML value (1e-3, true, [1, 2], "x"); else the text itself."""
    try:
        return tomllib.loads('value = ' + text)['value']
    except tomllib.TOMLDecodeError:
        return text


def read_config(path, overrides=()):
    """The dict of TOML file ``path`` with ``overrides`` ('a.b=VALUE') applied;
    InputError naming the file (and line) when it cannot be read as TOML."""
    path = os.fspath(path)
    problem = input_file_problem(path, 'config file')
    if problem:
        raise InputError(problem)
    if os.path.getsize(path) > MAX_CONFIG_BYTES:
        raise InputError(problems=[Problem(path, None, None, 'over %d bytes: not a config file'
                                           % MAX_CONFIG_BYTES)])
    with open(path, 'rb') as f:
        raw = f.read()
    try:
        text = raw.decode('utf-8').lstrip('\ufeff')
        data = tomllib.loads(text)
    except UnicodeDecodeError as e:
        raise InputError(problems=[Problem(path, None, None, 'not UTF-8 text: %s' % e)])
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        found = re.search(r'line (\d+)', str(e))
        line = int(found.group(1)) if found else len(text.rstrip().splitlines()) or None   # (end of document)
        message = re.sub(r'\s*\(at (line \d+, column \d+|end of document)\)', '', str(e))
        raise InputError(problems=[Problem(path, line, None, 'not valid TOML: %s'
                                           % (message or 'nested too deeply'))])
    for item in overrides:
        key_path, sep, text = item.partition('=')
        if not sep or not re.fullmatch(r'[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*', key_path):
            raise UsageError('argument --set: expected KEY.PATH=VALUE (train.base_lr=0.001), got %r' % item)
        _set(data, key_path, parse_value(text), item)
    return data
