"""The datalist format: the one parser of the project.

One image per line, whitespace separated::

    image_path  l_1 ... l_C  x1 y1 x2 y2 s  (B times)

so a line has exactly ``1 + C + 5B`` fields. Blank lines are skipped. Box
corners are 0-based inclusive pixels of the image *after* it is resized to
``new_width x new_height``.

Parsing is fast for release-size lists (100k lines x 500 boxes, ~1 GB of
text): a numba kernel reads blocks of lines into float64 rows, numpy checks
the rules on a whole block at once, and only lines that fail (or hold an
unusual number) are re-read field by field in Python, to say exactly which
field is wrong and why.
"""
import os

import numpy as np
from numba import njit

from caffe_mlic.caffe.params import FLOAT32_MAX
from caffe_mlic.errors import InputError, Problem, UsageError
from caffe_mlic.fileio import atomic_write, text_number

# Far above any real list (Open Images: ~20k classes; EdgeBoxes and selective
# search: a few thousand boxes an image), low enough that a row of a line's
# values stays a few megabytes.
MAX_ATT_NUM = 100000
MAX_BBOX_NUM = 100000
_BOX_FIELDS = ('x1', 'y1', 'x2', 'y2', 'score')


class DatalistError(InputError):
    """A datalist has problems; ``problems`` lists every one as a Problem."""

    def __init__(self, message=None, problems=(), what='datalist', max_listed=10):
        super().__init__(message, problems, what, max_listed)


class Datalist:
    """The parsed, validated content of a datalist (valid lines only).

    source: the datalist path; image_paths: with root_folder joined;
    line_numbers (M,) the 1-based line of each entry in the file;
    labels (M, C) uint8; boxes (M, B, 4) float32 x1 y1 x2 y2; scores (M, B) float32.
    """

    def __init__(self, source, image_paths, line_numbers, labels, boxes, scores,
                 att_num=None, bbox_num=None):
        self.source = source
        self.image_paths = image_paths
        self.line_numbers = line_numbers
        self.labels, self.boxes, self.scores = labels, boxes, scores
        self.att_num = labels.shape[1] if att_num is None else att_num
        self.bbox_num = boxes.shape[1] if bbox_num is None else bbox_num

    def __len__(self):
        return len(self.image_paths)

    def __repr__(self):
        return 'Datalist(%r, %d images, att_num=%d, bbox_num=%d)' % (
            self.source, len(self), self.att_num, self.bbox_num)


def _field_name(index, att_num):
    """Human name of value ``index`` (0-based, after the image path)."""
    if index < att_num:
        return 'label %d' % index
    b, k = divmod(index - att_num, 5)
    return 'box %d %s' % (b, _BOX_FIELDS[k])


def _field(index, att_num):
    """'field N (name)' with N 1-based over the whole line (the path is field 1)."""
    return 'field %d (%s)' % (index + 2, _field_name(index, att_num))


def _more(count):
    return '' if count <= 1 else ' (and %d more such field%s)' % (count - 1, '' if count == 2 else 's')


def _to_number(token):
    return text_number(token)


def _space_hint(tokens, expected):
    """A line with too many fields whose path may hold a space: say so."""
    if len(tokens) > expected and not _is_number_token(tokens[1]):
        return ' (an image path may not contain spaces)'
    return ''


def _is_number_token(token):
    try:
        _to_number(token)
    except ValueError:
        return False
    return True


def _size_text(new_width, new_height):
    return '%dx%d' % (new_width, new_height)


def _line_reasons(tokens, att_num, bbox_num, new_width=None, new_height=None):
    """Check one line's tokens field by field: (values float64 or None,
    [(field or None, message), ...])."""
    expected = 1 + att_num + 5 * bbox_num
    if len(tokens) != expected:
        return None, [(None, 'expected %d fields (image path, %d labels, %d boxes of x1 y1 x2 y2 '
                              'score), got %d%s' % (expected, att_num, bbox_num, len(tokens),
                                                    _space_hint(tokens, expected)))]
    values = np.empty(expected - 1, np.float64)
    bad = []
    for i, tok in enumerate(tokens[1:]):
        try:
            values[i] = _to_number(tok)
        except ValueError:
            bad.append(i)
    if bad:
        return None, [(_field(bad[0], att_num), '%r is not a number%s'
                       % (tokens[bad[0] + 1], _more(len(bad))))]
    reasons = []
    nonfinite = np.flatnonzero(~(np.abs(values) <= FLOAT32_MAX))
    if nonfinite.size:
        i = nonfinite[0]
        reasons.append((_field(i, att_num), '%r is not a finite number%s'
                        % (tokens[i + 1], _more(nonfinite.size))))
    labels = values[:att_num]
    bad_labels = np.flatnonzero((labels != 0) & (labels != 1) & np.isfinite(labels))
    if bad_labels.size:
        i = bad_labels[0]
        reasons.append((_field(i, att_num), '%s is not 0 or 1%s' % (tokens[i + 1], _more(bad_labels.size))))
    boxes = values[att_num:].reshape(bbox_num, 5)
    coords = boxes[:, :4]
    coord_index = att_num + 5 * np.arange(bbox_num)[:, None] + np.arange(4)[None, :]
    negative = coord_index[coords < 0]
    if negative.size:
        i = negative[0]
        reasons.append((_field(i, att_num), '%s is negative%s' % (tokens[i + 1], _more(negative.size))))
    for lo, hi, axis in ((0, 2, 'x'), (1, 3, 'y')):
        flipped = np.flatnonzero(coords[:, hi] < coords[:, lo])
        if flipped.size:
            b = flipped[0]
            reasons.append(('box %d' % b, '%s2 = %s < %s1 = %s (fields %d, %d)%s'
                           % (axis, tokens[att_num + 5 * b + hi + 1], axis,
                              tokens[att_num + 5 * b + lo + 1], att_num + 5 * b + lo + 2,
                              att_num + 5 * b + hi + 2,
                              '' if flipped.size == 1 else ' (and %d more such boxes)' % (flipped.size - 1))))
    if new_width is not None and new_height is not None:
        limit = np.array([new_width - 1, new_height - 1] * 2, np.float64)
        outside = coord_index[coords > limit]
        if outside.size:
            i = outside[0]
            axis = 'x' if (i - att_num) % 5 in (0, 2) else 'y'
            reasons.append((_field(i, att_num), '%s is outside the %s image (max %s is %d)%s'
                            % (tokens[i + 1], _size_text(new_width, new_height), axis,
                               (new_width if axis == 'x' else new_height) - 1, _more(outside.size))))
    return values, reasons


def _split_values(values, att_num, bbox_num):
    labels = values[..., :att_num]
    rest = values[..., att_num:].reshape(values.shape[:-1] + (bbox_num, 5))
    return labels, rest[..., :4], rest[..., 4]


def parse_line(text, att_num, bbox_num):
    """One datalist line -> (image_path, labels (C,) uint8, boxes (B, 4) float32, scores (B,) float32).

    Raises ValueError whose message names the field and the problem, e.g.
    "field 83 (box 0 y1): 'abc' is not a number". Image bounds are not
    checked here (they need the resized size): scan_datalist does that.
    """
    # Split as the fast path does: on ASCII whitespace only.
    tokens = [_decode(t) for t in text.encode('utf-8', 'surrogateescape').split()]
    values, reasons = _line_reasons(tokens, att_num, bbox_num)
    if reasons:
        raise ValueError('; '.join('%s: %s' % r if r[0] else r[1] for r in reasons))
    labels, boxes, scores = _split_values(values, att_num, bbox_num)
    return tokens[0], labels.astype(np.uint8), boxes.astype(np.float32), scores.astype(np.float32)


def _format_numbers(values):
    """Numbers as text: integers without decimals, others in the shortest form
    that reads back to the same value in their own dtype (float32 stays short)."""
    arr = np.asarray(values).ravel()
    if arr.dtype.kind in 'biu':
        return list(map(str, arr.tolist()))
    if arr.dtype.kind != 'f':
        arr = arr.astype(np.float64)
    integral = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2 ** 53)
    if integral.all():
        return list(map(str, arr.astype(np.int64).tolist()))
    out = np.empty(arr.size, object)
    out[integral] = list(map(str, arr[integral].astype(np.int64).tolist()))
    rest = arr[~integral]
    if rest.dtype == np.float64:
        out[~integral] = list(map(repr, rest.tolist()))     # Python's shortest round trip
    else:
        out[~integral] = [str(v) for v in rest]              # numpy's, for its own dtype
    return out.tolist()


def resize_boxes(boxes, width, height, new_width, new_height):
    """Boxes (K, 4) 0-based inclusive in a width x height image -> the same
    boxes in the image resized to new_width x new_height, as datalists hold
    them: x' = floor(x * W' / W), y' = floor(y * H' / H), clipped to the image."""
    boxes = np.asarray(boxes, np.float64)
    # (x * S) / W, not x * (S / W): for whole-pixel x the product is exact,
    # so a quotient that is a whole number is never floored to one less
    out = np.floor(boxes * np.array([new_width, new_height] * 2) / np.array([width, height] * 2))
    return np.clip(out, 0, np.array([new_width - 1, new_height - 1] * 2))


def format_line(image_path, labels, boxes, scores):
    """The datalist line for one image (inverse of parse_line), without newline."""
    if not image_path or any(c.isspace() for c in image_path):
        raise ValueError('image path %r must be non-empty and contain no whitespace' % (image_path,))
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (boxes.shape[0],):
        raise ValueError('boxes must be (B, 4) and scores (B,), got %s and %s'
                         % (boxes.shape, scores.shape))
    rows = np.concatenate([boxes.astype(np.result_type(boxes, scores)),
                           scores.astype(np.result_type(boxes, scores))[:, None]], axis=1)
    return ' '.join([image_path] + _format_numbers(labels) + _format_numbers(rows))


def write_datalist(path, rows):
    """Write rows of (image_path, labels, boxes, scores) as a datalist, atomically.
    Paths are written back as the bytes they were read from (a name that is
    not UTF-8 comes and goes as surrogate escapes)."""
    with atomic_write(path, encoding='utf-8', errors='surrogateescape') as f:
        for row in rows:
            f.write(format_line(*row))
            f.write('\n')


@njit(cache=True, nogil=True)
def _is_space(c):
    return c == 32 or (c >= 9 and c <= 13)


@njit(cache=True, nogil=True)
def _parse_block(buf, n_values, pow10, values, line_start, line_end, path_end, status):
    """Parse the complete lines of ``buf`` (uint8 text, ends with a newline).

    Per line i: line_start/line_end (without the newline), path_end (the
    path is the first token, from the first non-space byte), status 0 blank,
    1 parsed into values[i], 2 anything unusual (wrong field count, not a plain
    decimal, more than 15 significant digits, ...): the caller re-reads that
    line field by field. Plain decimals with <= 15 digits and a power of ten
    <= 22 are exact in float64, so m * 10**e and m / 10**e are correctly
    rounded: the same value float() gives.
    """
    n = buf.size
    p = 0
    i = 0
    while p < n:
        e = p
        while e < n and buf[e] != 10:
            e += 1
        line_start[i] = p
        line_end[i] = e
        q = p
        while q < e and _is_space(buf[q]):
            q += 1
        if q >= e:
            status[i] = 0
            path_end[i] = q
            p = e + 1
            i += 1
            continue
        while q < e and not _is_space(buf[q]):
            q += 1
        path_end[i] = q
        k = 0
        good = True
        while True:
            while q < e and _is_space(buf[q]):
                q += 1
            if q >= e:
                break
            if k >= n_values:
                good = False
                break
            neg = buf[q] == 45
            if buf[q] == 45 or buf[q] == 43:
                q += 1
            m = 0
            nd = 0          # significant digits so far
            frac = 0        # digits after the point
            digits = 0
            dot = False
            while q < e and nd <= 15:
                c = buf[q]
                if c >= 48 and c <= 57:
                    if m != 0 or c != 48:
                        nd += 1
                    m = m * 10 + (c - 48)
                    digits += 1
                    if dot:
                        frac += 1
                elif c == 46 and not dot:
                    dot = True
                else:
                    break
                q += 1
            ex = 0
            if digits > 0 and q < e and (buf[q] == 101 or buf[q] == 69):
                q += 1
                eneg = False
                if q < e and (buf[q] == 45 or buf[q] == 43):
                    eneg = buf[q] == 45
                    q += 1
                ed = 0
                while q < e and buf[q] >= 48 and buf[q] <= 57 and ed < 4:
                    ex = ex * 10 + (buf[q] - 48)
                    ed += 1
                    q += 1
                if ed == 0:
                    digits = 0
                if eneg:
                    ex = -ex
            if digits == 0 or nd > 15 or (q < e and not _is_space(buf[q])):
                good = False
                break
            ex -= frac
            if m == 0 or ex == 0:
                v = float(m)
            elif 0 < ex <= 22:
                v = m * pow10[ex]
            elif -22 <= ex < 0:
                v = m / pow10[-ex]
            else:
                good = False
                break
            values[i, k] = -v if neg else v
            k += 1
        status[i] = 1 if (good and k == n_values) else 2
        p = e + 1
        i += 1
    return i


_POW10 = np.array([10.0 ** i for i in range(23)])
_BLOCK = 1 << 23                 # bytes of text parsed per kernel call
_LONGEST_LINE = 4 * _BLOCK       # no datalist line comes near it


_BOM = b'\xef\xbb\xbf'     # UTF-8's byte order mark, which some editors write first


def _blocks(f):
    """Yield byte blocks of whole lines (each ends with a newline); a BOM at
    the start of the file is dropped, not read as part of the first path."""
    rest = b''
    first = True
    while True:
        data = f.read(_BLOCK)
        if first and data.startswith(_BOM):
            data = data[len(_BOM):]
        first = False
        if not data:
            break
        data = rest + data
        cut = data.rfind(b'\n')
        if cut < 0:
            if len(data) > _LONGEST_LINE:     # (a file of zeros, UTF-16: read whole as one line before)
                raise OSError(0, 'a line over %d MB: not a text datalist (a line per image; UTF-16 or a '
                                 'file of zeros?)' % (_LONGEST_LINE >> 20), getattr(f, 'name', None))
            rest = data            # a line longer than the block: read on
            continue
        rest = data[cut + 1:]
        yield data[:cut + 1]
    if rest:
        yield rest + b'\n'


_VALUES_BUDGET = 1 << 25       # bytes of parsed values (float64) per kernel call


def _line_groups(blocks, rows):
    """The blocks cut into groups of at most ``rows`` whole lines. The kernel
    fills a row of values per line, blank or not: a file of short lines (an
    image list given for a datalist) would otherwise ask for rows x values
    of memory at once, gigabytes at release size."""
    for block in blocks:
        ends = np.flatnonzero(np.frombuffer(block, np.uint8) == 10)
        if len(ends) <= rows:
            yield block
            continue
        cuts = [0] + (ends[rows - 1::rows] + 1).tolist()
        if cuts[-1] != len(block):
            cuts.append(len(block))
        for a, b in zip(cuts[:-1], cuts[1:]):
            yield block[a:b]


def _not_a_file(path):
    """How a datalist's image (or label) path that is no regular file is
    said: 'does not exist', or what it is ('is a FIFO', 'is a link to
    nothing'; a FIFO, socket or device was "does not exist")."""
    from caffe_mlic.errors import path_kind
    kind = path_kind(path)
    if kind is None:
        return 'does not exist'
    return 'is a folder' if kind == 'a folder' else 'is %s, not a file' % kind


def _image_path(root_folder, path):
    return os.path.join(root_folder, path) if root_folder else path


def _decode(raw):
    return raw.decode('utf-8', 'surrogateescape')


@njit(cache=True, nogil=True)
def _count_newlines(buf):
    n = 0
    for c in buf:
        n += c == 10
    return n


class _Collector:
    """The output arrays of scan_datalist. A list can be gigabytes: they grow
    and shrink in place (ndarray.resize reallocates without a second copy)."""

    def __init__(self, att_num, bbox_num, capacity=1024):
        self.att_num, self.bbox_num = att_num, bbox_num
        self.labels = np.empty((capacity, att_num), np.uint8)
        self.boxes = np.empty((capacity, bbox_num, 4), np.float32)
        self.scores = np.empty((capacity, bbox_num), np.float32)
        self.paths, self.lines = [], []

    def add(self, paths, lines, labels, boxes, scores):
        k, m = len(self.paths), len(paths)
        if k + m > len(self.labels):
            self._resize(max(k + m, 2 * len(self.labels)))
        self.paths.extend(paths)
        self.lines.extend(lines)
        self.labels[k:k + m] = labels
        self.boxes[k:k + m] = boxes
        self.scores[k:k + m] = scores

    def _resize(self, m):
        c, b = self.att_num, self.bbox_num
        for arr, shape in ((self.labels, (m, c)), (self.boxes, (m, b, 4)), (self.scores, (m, b))):
            arr.resize(shape, refcheck=False)   # nobody else holds a view of these

    def result(self, source):
        self._resize(len(self.paths))
        c, b = self.att_num, self.bbox_num
        return Datalist(source, self.paths, np.array(self.lines, np.int64),
                        self.labels, self.boxes, self.scores, c, b)


def check_counts(att_num, bbox_num, min_bbox_num=0):
    """UsageError unless 0 <= att_num <= MAX_ATT_NUM and min_bbox_num <=
    bbox_num <= MAX_BBOX_NUM."""
    for name, value, low, high in (('att_num', att_num, 0, MAX_ATT_NUM),
                                   ('bbox_num', bbox_num, min_bbox_num, MAX_BBOX_NUM)):
        if not low <= value <= high:
            raise UsageError('%s must be >= %d and <= %d, got %d' % (name, low, high, value), name)


def scan_datalist(source, att_num, bbox_num, new_width=None, new_height=None, root_folder='',
                  check_images=True):
    """Parse and check a whole datalist; collect every problem.

    Returns (Datalist of the valid lines, problems) with problems a list of
    Problem(source, line_no, field, message) in file order (line_no None:
    about the whole file).
    Box bounds are checked when new_width and new_height are given; image
    files must exist when check_images.
    """
    source = os.fspath(source)
    check_counts(att_num, bbox_num)
    problems = []
    n_values = att_num + 5 * bbox_num
    limit = None
    if new_width is not None and new_height is not None:
        limit = np.array([new_width - 1, new_height - 1] * 2, np.float64)
    try:
        handle = _open_datalist(source)
    except OSError as e:
        return _empty(source, att_num, bbox_num), [Problem(source, None, None, 'cannot read the '
                                                           'datalist: %s' % (e.strerror or e))]
    out = _Collector(att_num, bbox_num)
    first_line = 1
    seen_any = False
    try:
        with handle:
            rows = max(1, _VALUES_BUDGET // (8 * max(n_values, 1)))
            for block in _line_groups(_blocks(handle), rows):
                buf = np.frombuffer(block, np.uint8)
                cap = _count_newlines(buf)
                values = np.empty((cap, n_values), np.float64)
                starts, ends, path_ends = (np.empty(cap, np.int64) for _ in range(3))
                status = np.zeros(cap, np.uint8)
                count = _parse_block(buf, n_values, _POW10, values, starts, ends, path_ends, status)
                values, status = values[:count], status[:count]
                labels, boxes, _ = _split_values(values, att_num, bbox_num)
                # Lines that parsed but break a rule go to the slow path too, for the message.
                bad = status != 1
                bad |= ~(np.abs(values) <= FLOAT32_MAX).all(axis=1)
                bad |= ((labels != 0) & (labels != 1)).any(axis=1)
                bad |= (boxes < 0).any(axis=(1, 2))
                bad |= ((boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])).any(axis=1)
                if limit is not None:
                    bad |= (boxes > limit).any(axis=(1, 2))
                keep = np.ones(count, bool)
                paths = []
                for j in range(count):
                    if status[j] == 0:
                        keep[j] = False
                        continue
                    seen_any = True
                    line_no = first_line + j
                    if bad[j]:
                        tokens = [_decode(t) for t in block[starts[j]:ends[j]].split()]
                        vals, reasons = _line_reasons(tokens, att_num, bbox_num, new_width, new_height)
                        if reasons:
                            problems.extend(Problem(source, line_no, f, m) for f, m in reasons)
                            keep[j] = False
                            continue
                        values[j] = vals
                    raw = block[starts[j]:path_ends[j]].lstrip()
                    full = _image_path(root_folder, _decode(raw))
                    if check_images and not os.path.isfile(full):
                        problems.append(Problem(source, line_no, None, 'image file %s %s' % (
                            full, _not_a_file(full))))
                        keep[j] = False
                        continue
                    paths.append(full)
                first_line += count
                rows = np.flatnonzero(keep)
                values = values[rows]
                out.add(paths, (rows + first_line - count).tolist(),
                        *_split_values(values, att_num, bbox_num))
    except OSError as e:
        return _empty(source, att_num, bbox_num), [Problem(source, None, None, 'cannot read the '
                                                           'datalist: %s' % (e.strerror or e))]
    if not seen_any and not problems:
        problems.append(Problem(source, None, None, 'the datalist is empty (no image lines)'))
    return out.result(source), problems


def _empty(source, att_num, bbox_num):
    return Datalist(source, [], np.empty(0, np.int64), np.empty((0, att_num), np.uint8),
                    np.empty((0, bbox_num, 4), np.float32), np.empty((0, bbox_num), np.float32),
                    att_num, bbox_num)


def read_datalist(source, att_num, bbox_num, new_width=None, new_height=None, root_folder='',
                  check_images=True, max_listed=10):
    """scan_datalist, raising DatalistError (first ``max_listed`` problems
    with file:line and reason, plus a count of the rest) if there is any."""
    datalist, problems = scan_datalist(source, att_num, bbox_num, new_width, new_height,
                                       root_folder, check_images)
    if problems:
        raise DatalistError(problems=problems, max_listed=max_listed)
    return datalist


# ---------------------------------------------------------------- segmentation lists


class SegDatalist:
    """A semantic-labeling datalist: lines ``image label`` (two paths,
    whitespace separated; the label a map of class indices or colours).

    source; image_paths, label_paths (root_folder joined); line_numbers (M,) 1-based;
    sizes (M, 2) (height, width) when the headers were read, else None.
    """

    def __init__(self, source, image_paths, label_paths, line_numbers, sizes=None):
        self.source = source
        self.image_paths, self.label_paths = image_paths, label_paths
        self.line_numbers = line_numbers
        self.sizes = sizes

    def __len__(self):
        return len(self.image_paths)

    def where(self, i):
        """'source:line' of entry i, for messages."""
        return '%s:%d' % (self.source, self.line_numbers[i])

    def __repr__(self):
        return 'SegDatalist(%r, %d images)' % (self.source, len(self))


def _header_size(path):
    """(height, width) from the image header, or a reason it cannot be read."""
    from caffe_mlic.data.imageio import image_size
    try:
        width, height = image_size(path)
    except Exception as e:          # PIL raises several kinds for bad headers
        return None, 'cannot read its header (%s)' % (getattr(e, 'strerror', None) or e)
    return (height, width), None


def _open_datalist(source):
    """``source`` opened for reading if it is a regular file; OSError if not
    (a device such as /dev/zero never ends, a FIFO blocks: looked at before
    opening)."""
    import stat
    if not stat.S_ISREG(os.stat(source).st_mode):
        raise OSError(0, 'not a regular file (a device, FIFO or folder)', source)
    return open(source, 'rb')


def read_seg_datalist(source, root_folder='', check_files=True, max_listed=10):
    """Parse and check a segmentation datalist; DatalistError listing every
    bad line (file:line, field, why). With check_files, both files of each
    line must exist and their headers give the same size (read from the
    headers only: cheap for large tiles)."""
    source = os.fspath(source)
    try:
        with _open_datalist(source) as f:
            text = f.read()
        raw_lines = (text[len(_BOM):] if text.startswith(_BOM) else text).split(b'\n')
    except OSError as e:
        raise DatalistError(problems=[Problem(source, None, None, 'cannot read the datalist: %s'
                                              % (e.strerror or e))])
    problems, images, labels, numbers, sizes = [], [], [], [], []
    for number, raw in enumerate(raw_lines, 1):
        tokens = [_decode(t) for t in raw.split()]
        if not tokens:
            continue
        if len(tokens) != 2:
            problems.append(Problem(source, number, None, 'expected 2 fields (image label), got %d%s'
                                    % (len(tokens), _space_hint(tokens, 2))))
            continue
        paths = [_image_path(root_folder, t) for t in tokens]
        bad = False
        shapes = []
        for field, path in zip(('image', 'label'), paths):
            if check_files and not os.path.isfile(path):
                problems.append(Problem(source, number, field, '%s file %s %s' % (field, path, _not_a_file(path))))
                bad = True
            elif check_files:
                shape, why = _header_size(path)
                if why:
                    problems.append(Problem(source, number, field, '%s: %s' % (path, why)))
                    bad = True
                shapes.append(shape)
        if not bad and check_files and shapes[0] != shapes[1]:
            problems.append(Problem(source, number, 'label', 'the label map is %dx%d but the image is %dx%d '
                                    '(%s, %s)' % (shapes[1][1], shapes[1][0], shapes[0][1], shapes[0][0],
                                                  paths[1], paths[0])))
            bad = True
        if bad:
            continue
        images.append(paths[0])
        labels.append(paths[1])
        numbers.append(number)
        if check_files:
            sizes.append(shapes[0])
    if not numbers and not problems:
        problems.append(Problem(source, None, None, 'the datalist is empty (no image lines)'))
    if problems:
        raise DatalistError(problems=problems, max_listed=max_listed)
    return SegDatalist(source, images, labels, np.array(numbers, np.int64),
                       np.array(sizes, np.int64).reshape(-1, 2) if check_files else None)
