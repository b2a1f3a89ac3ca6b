"""Label maps for semantic labeling: the one place that reads, checks and
writes them, and the colour palettes.

A label map is a (H, W) uint8 array of class indices 0..K-1, with
IGNORE_LABEL (255) where a pixel is not scored or trained on. On disk it is
either

- an index image: a single-channel 8-bit PNG (or TIFF) of those indices, or
- a colour-coded image (the ISPRS benchmarks' references): each class a
  colour of a palette; black (0, 0, 0), the eroded class boundaries of the
  benchmark's "noBoundary" references, means IGNORE_LABEL unless the palette
  itself uses black. A colour outside the palette is an error by default
  (``unknown='error'``; a misnamed file or a JPEG-compressed reference gives
  thousands of them), or IGNORE_LABEL with ``unknown='ignore'``.

Palette files: one class per line, ``name R G B`` (0-255), ``#`` comments.
"""

import math

import numpy as np

from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.fileio import open_regular, text_integer, text_lines, unprintable_in

IGNORE_LABEL = 255
# A pixel farther than HARD_DISTANCE px from any other label is "hard" (synth's
# hard/ masks and eval seg's computed ones share the default and the bound).
HARD_DISTANCE = 24
MAX_HARD_DISTANCE = 256

# ISPRS 2D semantic labeling (Vaihingen, Potsdam), RGB.
ISPRS_PALETTE = (
    ('impervious_surfaces', (255, 255, 255)),
    ('building', (0, 0, 255)),
    ('low_vegetation', (0, 255, 255)),
    ('tree', (0, 255, 0)),
    ('car', (255, 255, 0)),
    ('clutter', (255, 0, 0)),
)
UNKNOWN_POLICIES = ('error', 'ignore')
LABEL_FORMATS = ('auto', 'index', 'color')


class LabelMapError(InputError):
    """A label map or palette that cannot be used; the message names the file."""


class Palette:
    """Class names and their RGB colours (K, 3) uint8, in class-index order."""

    def __init__(self, names, colours, source='isprs'):
        self.names = list(names)
        self.colours = np.asarray(colours, np.uint8).reshape(-1, 3)
        self.source = source
        codes = _codes(self.colours)
        if len(set(codes.tolist())) != len(codes):
            raise LabelMapError('%s: two classes share a colour' % source)
        if len(self.names) > IGNORE_LABEL:
            raise LabelMapError('%s: at most %d classes, got %d' % (source, IGNORE_LABEL, len(self.names)))
        self._order = np.argsort(codes)
        self._sorted_codes = codes[self._order]
        self.black_is_class = bool((codes == 0).any())

    def __len__(self):
        return len(self.names)

    def __repr__(self):
        return 'Palette(%s: %s)' % (self.source, ', '.join(self.names))


def _codes(rgb):
    """One int per RGB triple: r << 16 | g << 8 | b."""
    rgb = np.asarray(rgb, np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def isprs_palette():
    return Palette([n for n, _ in ISPRS_PALETTE], [c for _, c in ISPRS_PALETTE], 'isprs')


def load_palette(spec):
    """'isprs' (built in) or the path of a palette file (``name R G B`` lines)."""
    if spec in (None, '', 'isprs'):
        return isprs_palette()
    if isinstance(spec, Palette):
        return spec
    try:
        with open_regular(spec, encoding='utf-8-sig') as f:     # -sig: a BOM is not part of the first name
            lines = text_lines(f.read())
    except (OSError, UnicodeDecodeError) as e:
        raise LabelMapError('%s: cannot read palette file: %s' % (spec, getattr(e, 'strerror', None) or e))
    names, colours = [], []
    for number, line in enumerate(lines, 1):
        unprintable = unprintable_in(line.split('#', 1)[0])
        if unprintable:
            raise LabelMapError('%s:%d: %s, in %s' % (spec, number, unprintable, ascii(line)))
        text = line.split('#', 1)[0].split()
        if not text:
            continue
        if len(text) != 4:
            raise LabelMapError('%s:%d: expected "name R G B", got %r' % (spec, number, line.strip()))
        try:
            rgb = [text_integer(v) for v in text[1:]]
        except ValueError:
            rgb = None
        if rgb is None or not all(0 <= v <= 255 for v in rgb):
            raise LabelMapError('%s:%d: R G B must be integers 0-255, got %s' % (spec, number, ' '.join(text[1:])))
        if not text[0].isprintable():      # (a NUL, a control character: a name no report can show)
            raise LabelMapError('%s:%d: the class name %s has a character that does not print'
                                % (spec, number, ascii(text[0])))
        names.append(text[0])
        colours.append(rgb)
    if not names:
        raise LabelMapError('%s: the palette file names no class' % spec)
    return Palette(names, colours, spec)


# ---------------------------------------------------------------- conversions


CODE_BLOCK_PIXELS = 1 << 22


def colour_to_index(rgb, palette, unknown='error', where='label map'):
    """(H, W, 3) RGB uint8 -> (H, W) uint8 class indices; black -> IGNORE_LABEL
    (unless a class is black); other colours outside the palette raise a
    LabelMapError naming ``where`` and the first such pixel, or become
    IGNORE_LABEL with unknown='ignore'."""
    out = np.empty(rgb.shape[:2], np.uint8)
    known = np.empty(rgb.shape[:2], bool)
    # a block of rows at a time: the int64 intermediates of a whole 2^28-pixel map peaked at ~11 GB
    rows = max(1, CODE_BLOCK_PIXELS // max(1, rgb.shape[1]))
    for top in range(0, rgb.shape[0], rows):
        codes = _codes(rgb[top:top + rows])
        pos = np.minimum(np.searchsorted(palette._sorted_codes, codes), len(palette._sorted_codes) - 1)
        found = palette._sorted_codes[pos] == codes
        out[top:top + rows] = np.where(found, palette._order[pos], IGNORE_LABEL)
        known[top:top + rows] = found if palette.black_is_class else found | (codes == 0)
    if unknown == 'error' and not known.all():
        bad = ~known
        y, x = np.argwhere(bad)[0]
        colours = np.unique(_codes(rgb[bad]))
        shown = ', '.join('(%d, %d, %d)' % (c >> 16, (c >> 8) & 255, c & 255) for c in colours[:5])
        raise LabelMapError('%s: %d pixels have colours outside the %s palette, first at x=%d y=%d; '
                            'colours %s%s (label_format "index" reads class indices; '
                            'unknown "ignore" maps such pixels to %d)'
                            % (where, int(bad.sum()), palette.source, x, y, shown,
                               ' ...' if len(colours) > 5 else '', IGNORE_LABEL))
    return out


def index_to_colour(labels, palette):
    """(H, W) indices -> (H, W, 3) RGB uint8; IGNORE_LABEL (and anything
    outside the palette) black."""
    table = np.zeros((256, 3), np.uint8)
    table[:len(palette)] = palette.colours
    return table[labels]


def check_indices(labels, num_classes, where='label map'):
    """LabelMapError if a value is neither a class (< num_classes) nor IGNORE_LABEL."""
    bad = (labels >= num_classes) & (labels != IGNORE_LABEL)
    if bad.any():
        y, x = np.argwhere(bad)[0]
        values = np.unique(labels[bad])
        raise LabelMapError('%s: %d pixels have labels outside the %d classes (0-%d, or %d to ignore), '
                            'first at x=%d y=%d; values %s'
                            % (where, int(bad.sum()), num_classes, num_classes - 1, IGNORE_LABEL, x, y,
                               ', '.join(str(int(v)) for v in values[:10])))


def erode_boundaries(labels, radius=3):
    """The benchmark's eroded reference: every pixel within ``radius`` px
    (a disc) of a pixel of another label becomes IGNORE_LABEL."""
    import cv2
    if radius <= 0:
        return labels.copy()
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    high = cv2.dilate(labels, disc, borderType=cv2.BORDER_REPLICATE)
    low = cv2.erode(labels, disc, borderType=cv2.BORDER_REPLICATE)
    out = labels.copy()
    out[high != low] = IGNORE_LABEL
    return out


def distance_to_cue(labels):
    """Per pixel, the Euclidean distance (px, float32) to the nearest pixel
    of another label: how far a pixel is from anything that tells its class
    apart locally (an edge, a rim, a shadow's object, a car). A pixel with a
    4-neighbour of another label is 1 px from its cue, one with only a
    diagonal one 1.41 px; a disc of radius d around a pixel holds its label
    only exactly where the distance is > d. IGNORE_LABEL pixels count as
    another label (and get their distance to the nearest labelled pixel);
    the image border is not a cue; a map of one label is infinitely far
    from a cue (inf everywhere). One exact distance transform per label
    present (15-30 ms a megapixel each on one core)."""
    import cv2
    labels = np.ascontiguousarray(labels, np.uint8)
    if labels.ndim != 2:
        raise ValueError('a label map is 2-D, not %s' % (labels.shape,))
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=256))
    if len(present) < 2:
        return np.full(labels.shape, np.inf, np.float32)
    out = np.zeros(labels.shape, np.float32)
    for value in present:
        # distanceTransform measures each non-zero pixel's distance to the
        # nearest zero one: here, each pixel of ``value`` to the nearest
        # other, and 0 at the others, so the sum holds each pixel's own.
        inside = (labels == value).view(np.uint8)
        out += cv2.distanceTransform(inside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return out


def hard_pixel_mask(labels, distance, classes=None, cue_distance=None):
    """Pixels farther than ``distance`` px from any other label (see
    distance_to_cue), optionally only those of ``classes`` (indices): where
    a disc of radius ``distance`` around the pixel holds one label only, so
    a local classifier has nothing but the texture inside to go by.
    IGNORE_LABEL pixels are never hard. ``cue_distance``: distance_to_cue of
    ``labels`` when already computed."""
    labels = np.asarray(labels)
    if cue_distance is None:
        cue_distance = distance_to_cue(labels)
    hard = (cue_distance > distance) & (labels != IGNORE_LABEL)
    if classes is not None:
        hard &= np.isin(labels, list(classes))
    return hard


def check_hard_distance(value, what='hard_distance', param='hard_distance'):
    """``value`` as an int, or a UsageError naming ``param`` unless it is a
    whole number of px in 1..MAX_HARD_DISTANCE (24.0 is 24: a JSON file may
    keep a float). The one bound of synth's hard/ masks and eval seg's
    computed ones, so that both can be asked for the same masks: a pixel
    is hard when the nearest pixel of another label is farther than this;
    every pixel is at least 1 px from the next, so at 0 all would be hard."""
    whole = isinstance(value, (int, np.integer)) or (
        isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer())
    if isinstance(value, bool) or not whole or not 1 <= value <= MAX_HARD_DISTANCE:
        raise UsageError('%s must be a whole number of px in 1..%d, got %r'
                         % (what, MAX_HARD_DISTANCE, value), param)
    return int(value)


# ---------------------------------------------------------------- files


def read_label_map(path, num_classes=None, palette=None, label_format='auto', unknown='error', where=None):
    """The (H, W) uint8 label map in ``path``: a single-channel image holds
    indices, a colour image is decoded with ``palette`` (ISPRS by default);
    ``label_format`` 'index' / 'color' insists on one. Values are checked
    against ``num_classes`` (default: the palette's size for colour images).
    Errors name ``where`` (e.g. 'train.txt:12: label') and the file."""
    import cv2
    where = '%s: %s' % (where, path) if where else path
    from caffe_mlic.data.imageio import bytes_problem, file_bytes, imdecode, without_colour_profile
    try:
        data = file_bytes(path)
    except (OSError, ValueError) as e:
        raise LabelMapError('%s: cannot read label map: %s' % (where, getattr(e, 'strerror', None) or e))
    # (what images are refused for before decoding: cut short, past the pixel bound, a PNG libpng fails on)
    refused = bytes_problem(data)
    if refused:
        raise LabelMapError('%s: cannot read label map (%s)' % (where, refused))
    img, said = imdecode(without_colour_profile(data), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise LabelMapError('%s: cannot read label map (%s)' % (
            where, 'OpenCV cannot decode it: %s' % said if said else 'empty, corrupt or not an image'))
    if img.dtype != np.uint8:
        raise LabelMapError('%s: label maps must be 8-bit, got %s' % (where, img.dtype))
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        if label_format == 'color':
            raise LabelMapError('%s: a single-channel image, but label_format is "color"' % where)
        labels = img
    else:
        if label_format == 'index':
            raise LabelMapError('%s: a %d-channel image, but label_format is "index" (a single-channel '
                                'PNG of class indices)' % (where, img.shape[2]))
        palette = load_palette(palette)
        rgb = cv2.cvtColor(img[:, :, :3], cv2.COLOR_BGR2RGB)
        labels = colour_to_index(rgb, palette, unknown, where)
        if num_classes is None:
            num_classes = len(palette)
    if num_classes is not None:
        check_indices(labels, num_classes, where)
    return np.ascontiguousarray(labels)


def encode_png(image):
    import cv2
    ok, buf = cv2.imencode('.png', image)
    if not ok:
        raise OSError('cannot encode PNG')
    return buf.tobytes()


def label_png(labels):
    """The bytes of indices as a single-channel PNG."""
    return encode_png(np.ascontiguousarray(labels, np.uint8))


def colour_png(labels, palette=None):
    """The bytes of a colour-coded PNG (the palette's colours, black for
    IGNORE_LABEL; ``palette``: a Palette, or what load_palette reads)."""
    import cv2
    rgb = index_to_colour(labels, load_palette(palette))
    return encode_png(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_label_png(path, labels):
    """label_png, written atomically."""
    from caffe_mlic.fileio import atomic_write
    with atomic_write(path, 'wb') as f:
        f.write(label_png(labels))


def write_colour_png(path, labels, palette=None):
    """colour_png, written atomically."""
    from caffe_mlic.fileio import atomic_write
    with atomic_write(path, 'wb') as f:
        f.write(colour_png(labels, palette))

