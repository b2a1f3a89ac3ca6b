"""A small reader for protobuf text format into nested (key, value) lists.

Used only to read the reference nets' custom-layer parameter blocks, which
stock caffe.proto does not define (so Caffe's own parser drops them).
"""
import re

_TOKEN = re.compile(r'\s*(?:#[^\n]*|("(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|([{}:])|([^\s{}:#]+))')


def _tokens(text):
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
        string, punct, word = m.groups()
        if string is not None:
            yield ('str', string[1:-1])
        elif punct is not None:
            yield ('punct', punct)
        elif word is not None:
            yield ('word', word)


def _value(kind, text):
    if kind == 'str':
        return text
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return {'true': True, 'false': False}.get(text, text)


def parse(text):
    """[(key, value)], value a scalar or a nested [(key, value)] list."""
    stack = [[]]
    toks = list(_tokens(text))
    i = 0
    while i < len(toks):
        kind, tok = toks[i]
        if kind == 'punct' and tok == '}':
            done = stack.pop()
            stack[-1][-1] = (stack[-1][-1][0], done)
            i += 1
            continue
        key = tok
        if toks[i + 1] == ('punct', ':'):
            i += 1
        if toks[i + 1] == ('punct', '{'):
            stack[-1].append((key, None))
            stack.append([])
            i += 2
            continue
        stack[-1].append((key, _value(*toks[i + 1])))
        i += 2
    return stack[0]


def block(pairs, key):
    """The first sub-block named key, as [(key, value)] (empty if absent)."""
    for k, v in pairs:
        if k == key:
            return v
    return []


def fields(pairs):
    """{key: value or [values]} for a flat block (repeated keys become lists)."""
    out = {}
    for k, v in pairs:
        if k in out:
            out[k] = (out[k] if isinstance(out[k], list) else [out[k]]) + [v]
        else:
            out[k] = v
    return out
