"""Checks of the JSON files the reports read, shared by the MLIC and the
ScasNet reports: a problem names the file, the key and what was found."""
import json

from caffe_mlic.errors import Problem
from caffe_mlic.report import is_number

PERCENT = 'a percentage (0 to 100) or null'


def is_percent(value):
    """A percentage our evaluations write (0..100), or null where it is undefined."""
    return value is None or (is_number(value) and 0 <= value <= 100 + 1e-9)   # 1e-9: rounding


def shown(value):
    """``value`` as JSON, cut to 40 characters, for a message."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + '...'


def key_problems(path, data, rules):
    """Problems of ``data`` (a JSON object) against rules [(key, test,
    'what it must be')]: each key missing, or whose value fails its test."""
    problems = []
    for key, test, expected in rules:
        if key not in data:
            problems.append(Problem(path, None, '"%s"' % key, 'missing'))
        elif not test(data[key]):
            problems.append(Problem(path, None, '"%s"' % key, 'must be %s, got %s' % (expected, shown(data[key]))))
    return problems
