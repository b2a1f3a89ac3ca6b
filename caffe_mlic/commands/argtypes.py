"""argparse ``type=`` converters shared by the subcommands; a bad value
becomes argparse's one-line "argument --opt: ..." error."""
import argparse

from caffe_mlic.fileio import text_integer, text_number


def plain_int(text):
    """An integer as our inputs write one (fileio.text_integer: int() also
    takes '1_0' and other scripts' digits); argparse says "invalid int
    value" for anything else."""
    return text_integer(text)


def plain_float(text):
    """A number as our inputs write one (fileio.text_number; NaN and inf as
    float() reads them, for the option's own check)."""
    return text_number(text)


plain_int.__name__, plain_float.__name__ = 'int', 'float'


# The largest values of Caffe's int32 fields (max_iter, stepsize, ...) and of
# its int64 random_seed: protobuf refuses larger ones (a ValueError).
INT32_MAX, INT64_MAX = 2 ** 31 - 1, 2 ** 63 - 1


def image_size(text):
    """'S' (square) or 'WxH' -> (W, H), both positive."""
    parts = str(text).lower().split('x')
    try:
        w, h = (text_integer(parts[0]), text_integer(parts[-1])) if len(parts) <= 2 else (0, 0)
    except ValueError:
        w = h = 0
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError('expected S or WxH with positive integers, e.g. 672 or '
                                         '384x288, got %r' % text)
    return w, h


def number_range(cast):
    """'LO-HI' (or one number: LO = HI) -> (LO, HI) of cast."""
    def convert(text):
        parts = text.replace(',', '-').split('-')
        if len(parts) == 1:
            parts = parts * 2
        try:
            if len(parts) != 2:
                raise ValueError(text)
            return cast(parts[0]), cast(parts[1])
        except ValueError:
            raise argparse.ArgumentTypeError('expected LO-HI, e.g. 1-4, got %r' % text)
    return convert


def float_list(text):
    """'a,b,c' -> [a, b, c]"""
    try:
        return [text_number(x) for x in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated numbers, got %r' % text)


def _bounds_text(lo, hi, lo_open=False, hi_open=False):
    if hi is None:
        return '%s %s' % ('>' if lo_open else '>=', lo)
    if lo is None:
        return '%s %s' % ('<' if hi_open else '<=', hi)
    if not (lo_open or hi_open):
        return 'from %s to %s' % (lo, hi)
    return 'in %s%s, %s%s' % ('(' if lo_open else '[', lo, hi, ')' if hi_open else ']')


def int_in(lo=None, hi=None, multiple_of=None):
    """An integer option bounded by lo <= N <= hi (None: unbounded), and a
    multiple of ``multiple_of`` when given: 'argument --top: must be an
    integer >= 1, got '0''."""
    what = 'an integer %s' % _bounds_text(lo, hi)
    if multiple_of:
        what = 'a multiple of %d %s' % (multiple_of, _bounds_text(lo, hi))

    def convert(text):
        try:
            value = text_integer(text)
        except (TypeError, ValueError):
            value = None
        if value is None or (lo is not None and value < lo) or (hi is not None and value > hi) or (
                multiple_of and value % multiple_of):
            raise argparse.ArgumentTypeError('must be %s, got %r' % (what, text))
        return value
    convert.__name__ = 'int'
    return convert


def float_in(lo=None, hi=None, lo_open=False, hi_open=False):
    """A finite number option bounded by lo and hi (None: unbounded; *_open:
    that end excluded): 'argument --nms: must be a number in (0, 1], got '2''.
    NaN and infinities are refused."""
    import math
    what = 'a finite number %s' % _bounds_text(lo, hi, lo_open, hi_open) if lo is not None or hi is not None \
        else 'a finite number'

    def convert(text):
        try:
            value = text_number(text)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo)) or (
                hi is not None and (value >= hi if hi_open else value > hi)):
            raise argparse.ArgumentTypeError('must be %s, got %r' % (what, text))
        return value
    convert.__name__ = 'float'
    return convert


_BLOB_VALUES = 2 ** 31 - 1     # values a Caffe blob holds


def net_image_size(text):
    """image_size, and small enough that one image (3 x W x H values) fits a Caffe blob."""
    w, h = image_size(text)
    if 3 * w * h > _BLOB_VALUES:
        raise argparse.ArgumentTypeError('%dx%d is too large: one image would be 3 x %d x %d = %d values, '
                                         'more than a Caffe blob holds (2^31 - 1)' % (w, h, w, h, 3 * w * h))
    return w, h
