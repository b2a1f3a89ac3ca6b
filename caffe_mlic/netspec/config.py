"""The one config mechanism of both systems' nets (MlicConfig, ScasConfig).

A config is a dataclass whose fields are made with ``option``: its default,
its help line and how the command line spells it. From that metadata alone
``add_config_flags`` gives a command (`netgen`, `scasnet netgen`) an option
per field and ``--set FIELD=VALUE`` for every field, and
``config_from_args`` builds the validated config. ``Checks`` holds the
validation helpers both configs' ``validate()`` use: the first impossible
value raises UsageError naming its field.
"""
import ast
import dataclasses
import math
import unicodedata

from caffe_mlic.errors import UsageError


def option(default, help, flag=None, choices=None, metavar=None, nargs=None, type=None, cli=True,
           aliases=None):
    """A config field. flag: its option (default: the field name with dashes);
    nargs / type: for a list or tuple field of any length, or a default of
    None; cli=False: --set only (a field the command sets itself); aliases:
    {old spelling: choice}, still accepted on the command line. A bool field
    that defaults to False is a switch (--flag sets it)."""
    meta = dict(help=help, flag=flag, choices=choices, metavar=metavar, nargs=nargs, type=type, cli=cli,
                aliases=aliases or {})
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def default_of(f):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    """An int or a float, NaN and infinities included; a bool is not one."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def element_type(default, meta):
    """None for a field that is not a sequence; for one that is (a list or
    tuple default, or nargs: a list of any length, whose default may be
    None), the type of its items: its ``type``, else its default's first
    item's (float for an empty or None default)."""
    if not (isinstance(default, (tuple, list)) or meta.get('nargs')):
        return None
    return meta.get('type') or (type(default[0]) if default else float)


_KINDS = {int: 'integers', float: 'numbers', str: 'names'}


MAX_WORKERS = 64      # data workers of one layer: each is a Python process with its own memory


class Checks:
    """Validation of one config: each check raises UsageError('<field>
    <what it must be>, got <value>') for the first field that fails."""

    def __init__(self, cfg):
        self.cfg = cfg

    def bad(self, name, message):
        raise UsageError('%s %s, got %r' % (name, message, getattr(self.cfg, name)), name)

    def kinds(self, *own):
        """Every field of the kind its default has, before any check looks
        inside one: a bool field true or false; a sequence field (element_type)
        a list or tuple of numbers (of names for a str one), or None where
        its default is None. A value of another kind (5, None, a dict, a set,
        nested lists, bools) would be a TypeError in the checks that follow,
        or reach a net. ``own``: sequence fields that validate() checks
        whole itself, with a message of their own."""
        for f in dataclasses.fields(self.cfg):
            if f.name in own:
                continue
            value, default = getattr(self.cfg, f.name), default_of(f)
            texts = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] \
                if isinstance(value, (list, tuple)) else []
            if any(unicodedata.category(c) in ('Cc', 'Zl', 'Zp') for text in texts for c in text):
                # (no path, layer or class name holds one: a NUL was a traceback, a newline went into the nets)
                self.bad(f.name, 'must be text without a NUL, line break or other control character')
                continue
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    self.bad(f.name, 'must be true or false')
                continue
            element = element_type(default, f.metadata)
            if element is None or (value is None and default is None):
                continue
            scalar = (lambda v: isinstance(v, str)) if element is str else _is_number
            if not isinstance(value, (tuple, list)) or not all(scalar(v) for v in value):
                count = 'one or more' if f.metadata.get('nargs') else str(len(default))
                self.bad(f.name, 'must be a list of %s %s%s' % (
                    count, _KINDS.get(element, 'values'), ' (or None)' if default is None else ''))

    def choices(self):
        for f in dataclasses.fields(self.cfg):
            allowed = f.metadata.get('choices')
            if allowed and getattr(self.cfg, f.name) not in allowed:
                self.bad(f.name, 'must be one of %s' % ', '.join(allowed))

    def positive_ints(self, *names):
        for name in names:
            value = getattr(self.cfg, name)
            if not _is_int(value) or value < 1:
                self.bad(name, 'must be a positive integer')

    def nonnegative_ints(self, *names):
        for name in names:
            value = getattr(self.cfg, name)
            if not _is_int(value) or value < 0:
                self.bad(name, 'must be an integer >= 0')

    def positive_numbers(self, *names):
        import numpy as np
        from caffe_mlic.caffe.params import FLOAT32_MAX
        for name in names:
            value = getattr(self.cfg, name)
            if not (finite(value) and value > 0):
                self.bad(name, 'must be a positive number')
            # the layers compute in float32, where 1e-46 is 0 and 1e39 is inf
            elif value > FLOAT32_MAX:
                self.bad(name, 'must be a positive number within float32 (at most 3.4e38), in which the layers '
                               'compute')
            elif not np.float32(value) > 0:
                self.bad(name, 'must be a positive number (as float32, in which the layers compute: at least '
                               '1.4e-45)')

    def nonnegative_numbers(self, *names):
        import numpy as np
        for name in names:
            value = getattr(self.cfg, name)
            if not (finite(value) and value >= 0):
                self.bad(name, 'must be a number >= 0')
            elif value > 0 and not np.float32(value) > 0:       # (a loss weight of 1e-46 is none)
                self.bad(name, 'must be 0 or a number that float32 holds (at least 1.4e-45): %s reads as 0'
                         % value)

    def finite_numbers(self, *names):
        for name in names:
            if not finite(getattr(self.cfg, name)):
                self.bad(name, 'must be a finite number')

    def at_most(self, name, high, why):
        """An integer field (or each of a tuple's) <= high."""
        value = getattr(self.cfg, name)
        if any(v > high for v in (value if isinstance(value, (tuple, list)) else [value])):
            self.bad(name, 'must be at most %d (%s)' % (high, why))

    def fraction(self, name):
        value = getattr(self.cfg, name)
        if not (finite(value) and 0 <= value < 1):
            self.bad(name, 'must be in [0, 1)')

    def scale_factors(self, name='scale_factors'):
        value = getattr(self.cfg, name)
        if not value or not all(finite(v) and v > 0 for v in value):
            self.bad(name, 'must be positive numbers')

    def words(self, *names):
        """Paths and names written into prototxts: non-empty, no whitespace."""
        for name in names:
            value = getattr(self.cfg, name)
            if not value or any(c.isspace() for c in value):
                self.bad(name, 'must be non-empty with no whitespace')


# ---------------------------------------------------------------- the command line


def cli_fields(cls):
    return [f for f in dataclasses.fields(cls) if f.metadata.get('cli', True)]


def flag_of(f):
    return '--' + (f.metadata.get('flag') or f.name.replace('_', '-'))


def add_config_flags(parser, cls, title):
    """An option per field of config class ``cls`` (its default in the help)
    and --set FIELD=VALUE, in an argument group ``title``. Every option
    defaults to None: a field not given keeps the config's default."""
    group = parser.add_argument_group(title)
    for f in cli_fields(cls):
        meta, default = f.metadata, default_of(f)
        shown = ' '.join(map(str, default)) if isinstance(default, (tuple, list)) else default
        kw = dict(dest=f.name, default=None, help='%s (%s)' % (meta['help'], shown))
        if isinstance(default, bool):
            kw.update(action='store_true' if not default else 'store_false', default=None,
                      help=meta['help'])
        elif meta.get('choices'):
            kw.update(choices=list(meta['choices']) + sorted(meta['aliases']))
        elif element_type(default, meta):
            element = element_type(default, meta)
            kw.update(type=_argparse_type(element), nargs=meta.get('nargs') or len(default),
                      metavar=meta.get('metavar') or {int: 'N', float: 'X'}.get(element, 'TEXT'))
        else:
            element = meta.get('type') or type(default)
            kw.update(type=_argparse_type(element), metavar=meta.get('metavar') or {int: 'N', float: 'X'}.get(element, 'TEXT'))
        group.add_argument(flag_of(f), **kw)
    group.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                       help='set any %s field (VALUE as a Python literal; text as is)' % cls.__name__)
    return group


def _plain_numbers(text):
    """Whether every number in the Python literal ``text`` is written as
    our inputs write numbers (fileio.PLAIN_NUMBER)."""
    import io
    import tokenize
    from caffe_mlic.fileio import PLAIN_NUMBER
    try:
        return all(PLAIN_NUMBER.match(token.string) for token in tokenize.generate_tokens(io.StringIO(text).readline)
                   if token.type == tokenize.NUMBER)
    except (tokenize.TokenError, SyntaxError):
        return False


def _literal(text):
    """``text`` as a Python literal, else as text: also where it holds an
    integer beyond +-2^63, which no field takes and float() overflows on
    (validate() then names the field)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, RecursionError, MemoryError):
        return text
    if not _plain_numbers(text):
        return text     # (1_0 or 0x10: a literal to Python, no number our inputs write)

    def huge(v):
        if isinstance(v, (list, tuple)):
            return any(huge(x) for x in v)
        return isinstance(v, int) and not -2 ** 63 <= v < 2 ** 63
    return text if huge(value) else value


def coerce(default, text, meta=None):
    """``text`` read as a value of the kind of ``default`` (numbers stay
    numbers when they do not fit; validate() then says what is wrong).
    A bool field takes True / False, in any case ('true', 'False'). A list
    or tuple field takes a Python list or tuple, or words as on the command
    line: '1 2 3' is (1.0, 2.0, 3.0) of a float field; one of any length
    (``meta``'s nargs) also one word or number: 'conv4_3' is ('conv4_3',),
    5 of a float field (5.0,). Anything else (None, a dict, 1 or 'x' for a
    bool, 5 for a list of fixed length) is kept as read, for validate() to
    refuse naming the field (Checks.kinds)."""
    meta = meta or {}
    if isinstance(default, str):
        # a quoted string is its content ('""' is empty, as detectron2's overrides read it); else as given
        value = _literal(text)
        return value if isinstance(value, str) and text.strip()[:1] in ('"', "'") else text
    if isinstance(default, bool):
        word = text.strip().lower()
        return {'true': True, 'false': False}.get(word, _literal(text))
    value = _literal(text)
    element = element_type(default, meta)
    if element is None:
        return float(value) if isinstance(default, float) and _is_int(value) else value
    if isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, str) or (meta.get('nargs') and _is_number(value)):
        items = value.split() if isinstance(value, str) else [value]
        if element is not str:      # words read as argparse reads them; one that fails stays text
            items = [_word(w, element) for w in items]
    else:
        return value
    if element is float:
        items = [float(v) if _is_int(v) else v for v in items]
    return list(items) if isinstance(default, list) else tuple(items)


def _argparse_type(element):
    """The converter of an option of ``element`` values: integers and
    numbers as our inputs write them (int() and float() also take 1_0 and
    other scripts' digits)."""
    from caffe_mlic.commands.argtypes import plain_float, plain_int
    return {int: plain_int, float: plain_float}.get(element, element)


def _word(word, element):
    if not isinstance(word, str):
        return word
    try:
        return _argparse_type(element)(word)
    except ValueError:
        return word


def config_from_args(cls, args, **fixed):
    """``cls.release(**fixed)`` with the options given, then the --set
    overrides, validated."""
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    overrides = dict(fixed)
    for f in cli_fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            default = default_of(f)
            overrides[f.name] = tuple(value) if isinstance(default, tuple) or (
                default is None and isinstance(value, list)) else value
    given = set(overrides) - set(fixed)
    for item in args.set:
        name, sep, text = item.partition('=')
        if not sep or name not in by_name:
            raise UsageError('argument --set: expected FIELD=VALUE with FIELD one of %s, got %r'
                             % (', '.join(by_name), item))
        overrides[name] = coerce(default_of(by_name[name]), text, by_name[name].metadata)
        given.add(name)
    for name, value in overrides.items():
        aliases = by_name[name].metadata.get('aliases') or {} if name in by_name else {}
        if isinstance(value, str) and value in aliases:
            overrides[name] = aliases[value]
    cfg = cls.release(**overrides).validate()
    if hasattr(cfg, 'check_given'):     # a field given that no net written would use
        cfg.check_given(given, getattr(args, 'variant', None))
    return cfg
