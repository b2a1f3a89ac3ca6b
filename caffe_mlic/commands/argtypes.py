"""argparse ``type=`` converters shared by the subcommands; a bad value
becomes argparse's one-line "argument --opt: ..." error."""
import argparse


def image_size(text):
    """'S' (square) or 'WxH' -> (W, H), both positive."""
    parts = str(text).lower().split('x')
    try:
        w, h = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, 0)
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
        return [float(x) for x in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated numbers, got %r' % text)
