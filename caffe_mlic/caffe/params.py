"""The one parameter validator for every Python layer.

A layer declares its parameters once, as a tuple of :class:`Param`, and calls
:func:`parse_params` on ``self.param_str`` in ``setup``. ``param_str`` is a
JSON object whose keys are the original Caffe message field names.
"""
import json
import math
from types import SimpleNamespace

import numpy as np

from caffe_mlic.errors import InputError
from caffe_mlic.fileio import no_repeated_keys

REQUIRED = object()
FLOAT32_MAX = 3.4028234663852886e38


class LayerError(InputError):
    """A layer cannot work with what it was given (shapes, inputs, values);
    the message starts with the layer's type."""


class ParamError(LayerError):
    """A layer's ``param_str`` is malformed; the message names layer and key."""


class Param:
    """One declared parameter.

    kind: 'int', 'float', 'bool', 'str', 'float_list' or 'int_list'.
    low/high: inclusive bounds (for lists, on every element);
    low_open: the lower bound itself is excluded (e.g. spatial_scale > 0).
    choices: the allowed values. min_len: shortest list allowed.
    """

    def __init__(self, name, kind, default=REQUIRED, low=None, high=None,
                 low_open=False, choices=None, min_len=0):
        self.name, self.kind, self.default = name, kind, default
        self.low, self.high, self.low_open = low, high, low_open
        self.choices, self.min_len = choices, min_len

    def expectation(self):
        base = {'int': 'an integer', 'float': 'a number', 'bool': 'true or false',
                'str': 'a string', 'float_list': 'a list of numbers',
                'int_list': 'a list of integers'}[self.kind]
        parts = [base]
        if self.low is not None:
            parts.append('%s %s' % ('>' if self.low_open else '>=', self.low))
        if self.high is not None:
            parts.append('<= %s' % self.high)
        if self.choices is not None:
            parts.append('one of %s' % ', '.join(json.dumps(c) for c in self.choices))
        if self.min_len:
            parts.append('with at least %d element(s)' % self.min_len)
        if self.kind.startswith('float'):
            parts.append('within float32, |x| <= 3.4e38')
        return ' '.join(parts[:1]) + ('' if len(parts) == 1 else ' (' + ', '.join(parts[1:]) + ')')

    def _scalar_ok(self, value, kind):
        if kind == 'int':
            return isinstance(value, int) and not isinstance(value, bool)
        if kind == 'float':     # (the layers compute in float32: a larger value would be inf there)
            return (isinstance(value, (int, float)) and not isinstance(value, bool)
                    and math.isfinite(value) and abs(value) <= FLOAT32_MAX)
        if kind == 'bool':
            return isinstance(value, bool)
        return isinstance(value, str)

    def _in_range(self, v):
        if self.kind.startswith('float'):     # as the layer computes with it: 1e-46 is 0 in float32
            v = float(np.float32(v))
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        return self.high is None or v <= self.high

    def check(self, value):
        """Return the converted value, or None when it does not fit."""
        if self.kind.endswith('_list'):
            elem = self.kind[:-5]
            if not isinstance(value, list) or len(value) < self.min_len:
                return None
            if not all(self._scalar_ok(v, elem) and self._in_range(v) for v in value):
                return None
            return [float(v) if elem == 'float' else v for v in value]
        if not self._scalar_ok(value, self.kind):
            return None
        if self.kind in ('int', 'float') and not self._in_range(value):
            return None
        if self.choices is not None and value not in self.choices:
            return None
        return float(value) if self.kind == 'float' else value


def parse_params(layer, param_str, spec):
    """Parse and validate ``param_str`` against ``spec`` (Params).

    Returns a SimpleNamespace with every declared key (defaults filled in).
    Raises ParamError naming ``layer``, the key and what was expected.
    """
    text = (param_str or '').strip()
    if text:
        try:
            given = json.loads(text, object_pairs_hook=no_repeated_keys)
        except (ValueError, RecursionError) as e:
            raise ParamError('%s: param_str is not valid JSON (%s): %r'
                             % (layer, 'nested too deeply' if isinstance(e, RecursionError) else e,
                                text[:200]))
        if not isinstance(given, dict):
            raise ParamError('%s: param_str must be a JSON object, got %r' % (layer, text))
    else:
        given = {}
    declared = {p.name: p for p in spec}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ParamError('%s: unknown parameter %s; known parameters: %s'
                         % (layer, ', '.join(repr(k) for k in unknown),
                            ', '.join(sorted(declared)) or '(none)'))
    out = {}
    for p in spec:
        if p.name not in given:
            if p.default is REQUIRED:
                raise ParamError('%s: required parameter %r is missing; expected %s'
                                 % (layer, p.name, p.expectation()))
            out[p.name] = p.default
            continue
        value = p.check(given[p.name])
        if value is None:
            raise ParamError('%s: parameter %r: expected %s, got %s'
                             % (layer, p.name, p.expectation(), json.dumps(given[p.name])))
        out[p.name] = value
    return SimpleNamespace(**out)


def layer_error(layer, message):
    """A LayerError in the same format (cross-field constraints, shapes, inputs)."""
    return LayerError('%s: %s' % (layer, message))
