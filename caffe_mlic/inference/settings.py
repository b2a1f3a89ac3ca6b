"""The deploy settings a net needs beyond its prototxt: input sizes, proposals
per image, the preprocessing its data layer used in training and, when the
generator knew them, the class names (and, for ScasNet nets whose context
dilations are not the release's, those).

`caffe-mlic netgen` and `caffe-mlic scasnet netgen` write them as deploy.json
at the top of their output folder; they are looked up beside the deploy
prototxt and one folder above (`nets/wsddn/wsddn_deploy.prototxt` ->
`nets/deploy.json`). Without the file the release's preprocessing applies
(BGR mean 103.52 116.28 123.675, scale 1) and the sizes are read from the
prototxt's inputs.

``read_settings`` is the one reader of a deploy.json: every field is checked
(type, length, finite, range) and each problem names the file and the field.
``DeploySettings.check_net`` then checks the values against the deploy net
they are used with (its class count, proposals, input size).
"""
import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import numpy as np

from caffe_mlic.errors import InputError, Problem

RELEASE_MEAN = [103.52, 116.28, 123.675]
# The largest input side a deploy net can have: its 1 x 3 x S x S input blob
# within Caffe's 2^31 - 1 values (the release's nets take 224 and 672).
MAX_INPUT_SIZE = 26754
# Bounds of the preprocessing, (pixel - mean) * input_scale in float32: a mean
# of 1e308 or a scale of 1e300 is finite in JSON but inf (then NaN) in the
# net's float32 input. Images are read as 8-bit (pixels 0 to 255): a mean
# past 1e4 is no pixel's; the release's scale is 1, a [0, 1] normalisation's
# 1/255, so (0, 1e4] holds every real one.
MAX_MEAN = 1e4
MAX_INPUT_SCALE = 1e4


@dataclass
class DeploySettings:
    mean: List[float] = field(default_factory=lambda: list(RELEASE_MEAN))  # BGR
    input_scale: float = 1.0
    num_classes: Optional[int] = None
    bbox_num: Optional[int] = None
    teacher_size: Optional[int] = None
    student_size: Optional[int] = None
    classes: Optional[List[str]] = None   # the class names, in score order
    # ScasNet's context dilations: a list, or {variant: list} when the variants
    # written together differ; None: the release's 6 12 18 24
    dilations: Optional[Union[List[int], Dict[str, List[int]]]] = None
    source: Optional[str] = None  # the deploy.json read, if any

    def check_net(self, net_path, **net):
        """InputError when a value read from deploy.json disagrees with the deploy
        net's: ``net`` maps a field (num_classes, bbox_num, teacher_size,
        student_size) to (the net's value, what and where it is: "classes in its
        'prob' blob")."""
        if self.source is None:
            return self
        problems = []
        for name, (value, where) in net.items():
            mine = getattr(self, name)
            if name == 'num_classes' and mine is None and self.classes is not None:
                mine, name = len(self.classes), 'classes'
            if mine is not None and mine != value:
                problems.append(Problem(self.source, None, name, '%s%s, but the net %s has %s %s: '
                                        'the deploy settings of another net?'
                                        % (mine, ' names' if name == 'classes' else '', net_path, value,
                                           where)))
        if problems:
            raise InputError(problems=problems)
        return self


KNOWN = ('mean', 'input_scale', 'num_classes', 'bbox_num', 'teacher_size', 'student_size', 'classes',
         'dilations')


def find_settings(net_path):
    here = os.path.dirname(os.path.abspath(net_path))
    for folder in (here, os.path.dirname(here)):
        path = os.path.join(folder, 'deploy.json')
        # anything there by that name is read (a folder or a link loop is an
        # error naming it, not the release's defaults applied in silence)
        if os.path.lexists(path):
            return path
    return None


def load_settings(net_path, path=None):
    """DeploySettings for the deploy net at net_path (from ``path`` when given,
    else the deploy.json found beside it; the release's defaults without one)."""
    path = path or find_settings(net_path)
    if path is None:
        return DeploySettings()
    return read_settings(path)


def _shown(value):
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + '...'


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def class_name_problem(name):
    """Why ``name`` cannot be a class name (None if it can): class files hold
    one token a line, and devkit result files are named after the classes."""
    if not isinstance(name, str) or not name:
        return 'must be non-empty text'
    if '\0' in name:
        return 'has a NUL character'
    if any(c.isspace() for c in name):
        return 'has whitespace'
    if '/' in name:
        return 'has "/"'
    if not name.isprintable():      # (a BOM, a zero-width space: two names that look alike, or one a file drops)
        return 'has a character that does not print (a control or format character)'
    return None


def class_names_problems(names, count=None):
    """[message] of what is wrong with the class names ``names`` (a list of
    ``count`` distinct names when count is given)."""
    if not isinstance(names, list):
        return ['must be a list of class names, got %s' % _shown(names)]
    out = []
    for i, name in enumerate(names):
        why = class_name_problem(name)
        if why:
            out.append('name %d %s, got %s' % (i + 1, why, _shown(name)))
    seen = set()
    twice = [n for n in names if isinstance(n, str) and (n in seen or seen.add(n))]
    if twice:
        out.append('names must be distinct: %s repeats' % _shown(twice[0]))
    if count is not None and len(names) != count:
        out.append('%d names, but num_classes is %d' % (len(names), count))
    return out


def read_settings(path):
    """The validated DeploySettings of the deploy.json at ``path``: one
    InputError naming the file and each bad field."""
    from caffe_mlic.fileio import read_json
    data = read_json(path, 'deploy settings')
    if not isinstance(data, dict):
        raise InputError(problems=[Problem(path, None, None, 'expected a JSON object with keys among %s, '
                                           'got %s' % (', '.join(KNOWN), _shown(data)))])
    problems = []

    def bad(name, message):
        problems.append(Problem(path, None, name, '%s, got %s' % (message, _shown(data[name]))))

    unknown = sorted(set(data) - set(KNOWN))
    if unknown:
        problems.append(Problem(path, None, None, 'unknown key%s %s (known: %s)' % (
            's' if len(unknown) > 1 else '', ', '.join(map(repr, unknown)), ', '.join(KNOWN))))
    values = {}
    if 'mean' in data:
        mean = data['mean']
        if not (isinstance(mean, list) and len(mean) in (1, 3) and all(map(_is_number, mean))):
            bad('mean', 'must be 3 finite numbers (B, G, R) or 1 for all channels')
        elif not all(abs(v) <= MAX_MEAN for v in mean):
            bad('mean', 'must be pixel values from -%g to %g (B, G, R, or 1 for all channels)'
                % (MAX_MEAN, MAX_MEAN))
        else:
            values['mean'] = [float(v) for v in (mean * 3 if len(mean) == 1 else mean)]
    if 'input_scale' in data:
        scale = data['input_scale']
        if not (_is_number(scale) and scale > 0):
            bad('input_scale', 'must be a finite number > 0')
        elif scale > MAX_INPUT_SCALE:
            bad('input_scale', 'must be a number > 0 and at most %g' % MAX_INPUT_SCALE)
        elif not np.float32(scale) > 0:
            bad('input_scale', 'must be a finite number > 0 (as float32, in which the net computes: at least '
                               '1.4e-45)')
        else:
            values['input_scale'] = float(scale)
    sizes = 'an integer from 1 to %d' % MAX_INPUT_SIZE
    for name, low, high, what in (('num_classes', 2, None, 'an integer >= 2'),
                                  ('bbox_num', 1, None, 'an integer >= 1'),
                                  ('teacher_size', 1, MAX_INPUT_SIZE, sizes),
                                  ('student_size', 1, MAX_INPUT_SIZE, sizes)):
        if name in data:
            value = data[name]
            if not (_is_int(value) and value >= low and (high is None or value <= high)):
                bad(name, 'must be %s' % what)
            else:
                values[name] = value
    if 'classes' in data:
        count = values.get('num_classes') if 'num_classes' in data else None
        for message in class_names_problems(data['classes'], count):
            problems.append(Problem(path, None, 'classes', message))
        if not problems:
            values['classes'] = list(data['classes'])
    if 'dilations' in data:
        rates = data['dilations']
        lists = rates.values() if isinstance(rates, dict) and rates and all(rates) else [rates]
        if all(map(_are_rates, lists)):
            values['dilations'] = rates
        else:
            bad('dilations', 'must be a list of positive integers, or an object of one such list per variant')
    if problems:
        raise InputError(problems=problems)
    return DeploySettings(**values, source=path)


def _are_rates(value):
    return isinstance(value, list) and bool(value) and all(_is_int(d) and d >= 1 for d in value)
