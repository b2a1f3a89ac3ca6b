"""Proposal files of other tools, read into our convention (`caffe-mlic
proposals import`).

Every reader returns Entries: one image's boxes as x1 y1 x2 y2, 0-based
inclusive pixels (ours), with their scores, the image's id in the file (None
when the file has none: the images are then those of the image list, in its
order) and where in the file they came from, for messages. A reader checks
the file's layout (variables, keys, shapes) and raises an InputError naming
the file and the place; the boxes themselves are checked against the images
later (caffe_mlic.data.proposal_import).

Formats and their conventions
  fast-rcnn-ss   Fast R-CNN / py-faster-rcnn selective search .mat (as the
                 SelectiveSearchVOC2007*.mat files): ``boxes``, a cell
                 array with one (K, 4) matrix per image, 1-based inclusive
                 [y1 x1 y2 x2] (py-faster-rcnn's loader swaps the columns to
                 x1 y1 x2 y2 and subtracts 1); ``images``, when present, a
                 cell array of the image ids (strings). No scores: every box
                 gets score 1, as the MLIC-KD-WSD authors advise for these.
                 MATLAB v5 or v7.3.
  edgeboxes-mat  EdgeBoxes .mat as WSDDN (MatConvNet) distributes them
                 (EdgeBoxesVOC2007*.mat): ``boxes`` as above (WSDDN's setup
                 code warns they are [y1 x1 y2 x2] and checks them against the
                 1-based image size), ``boxScores`` a cell array of (K, 1)
                 scores, ``images`` the ids. MATLAB v5 or v7.3.
  mcg-mat        MCG's per-image .mat files (one FILE, or a folder of them,
                 per image; the image id is the file's stem): ``bboxes``
                 (K, 4) 1-based [y1 x1 y2 x2] and ``bboxes_scores`` (K, 1),
                 as Detectron's and wetectron's MCG conversion reads them.
  wetectron      wetectron / PCL / Detectron proposal pickles, e.g. the
                 MCG-coco_2014_*-boxes.pkl wetectron gives for COCO and its
                 selective-search pickles for VOC: a dict with ``boxes`` (one
                 (K, 4) array per image, 0-based x1 y1 x2 y2, as the datasets'
                 loaders use them), ``indexes`` (or ``ids``) the image ids
                 (COCO: the COCO image id; VOC: the image id as an integer,
                 int('000005') = 5) and, optionally, ``scores`` (one (K,) or
                 (K, 1) array per image; score 1 when absent). Only numpy
                 arrays and Python containers are unpickled: a pickle naming
                 any other class is refused.
  json           {"<image>": [[x1, y1, x2, y2, score], ...], ...}, ours
                 (0-based inclusive); <image> is the image's file stem or
                 file name.
  csv            a header line naming the columns image, x1, y1, x2, y2 and
                 score (any order, other columns ignored), then one box a
                 line, ours; an image's lines need not be together.
"""
import csv
import io
import json
import os
import pickle
from typing import NamedTuple, Optional

import numpy as np

from caffe_mlic.errors import InputError, Problem
from caffe_mlic.fileio import open_regular, read_json as read_json_file, text_number
from caffe_mlic.data.matfile import read_mat

FORMATS = ('fast-rcnn-ss', 'edgeboxes-mat', 'mcg-mat', 'wetectron', 'json', 'csv')
CSV_COLUMNS = ('image', 'x1', 'y1', 'x2', 'y2', 'score')


class Entry(NamedTuple):
    """One image's proposals as a file gives them, converted to ours."""
    source: str                  # the file
    where: str                   # the place in it: 'boxes{3}', '"000005"'
    image_id: object             # str or int; None: the next image of the list
    boxes: np.ndarray            # (K, 4) float64, x1 y1 x2 y2, 0-based inclusive
    scores: np.ndarray           # (K,) float64
    lines: Optional[np.ndarray] = None   # (K,) line of each box (text formats)


def _fail(path, message, field=None, line=None):
    raise InputError(problems=[Problem(path, line, field, message)])


def _describe(value):
    """A short description of a value read from a file, for messages."""
    if isinstance(value, np.ndarray):
        return 'a %s %s array' % ('x'.join(map(str, value.shape)) or 'scalar', value.dtype)
    if isinstance(value, (list, tuple)):
        return 'a list of %d' % len(value)
    return 'a %s' % type(value).__name__


def _matrix(path, field, value, columns):
    """value as a float64 (K, columns) array; an empty matrix is K = 0."""
    if isinstance(value, (list, tuple)) and not value:
        return np.zeros((0, columns))
    try:
        array = np.asarray(value) if not isinstance(value, str) else None
    except (ValueError, RecursionError):      # ragged rows, or nested past numpy's depth
        array = None
    if array is None or array.dtype.kind not in 'iuf':
        _fail(path, 'expected a numeric (K, %d) matrix, got %s' % (columns, _describe(value)), field)
    if array.size == 0:
        return np.zeros((0, columns))
    if columns == 1 and (array.ndim == 1 or array.ndim == 2 and 1 in array.shape):
        return array.astype(np.float64).reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != columns:
        _fail(path, 'expected a (K, %d) matrix, got %s' % (columns, _describe(array)), field)
    return array.astype(np.float64)


def from_matlab_yx(boxes):
    """1-based inclusive [y1 x1 y2 x2] rows -> ours (0-based x1 y1 x2 y2)."""
    return boxes[:, [1, 0, 3, 2]] - 1


def _image_ids(path, value, count, name='images'):
    """The ids of a .mat ``images`` variable: count strings or numbers."""
    if value is None:
        return [None] * count
    if isinstance(value, np.ndarray):   # a numeric matrix of ids
        value = list(value.ravel(order='F'))
    ids = [value] if isinstance(value, str) else value if isinstance(value, list) else None
    if ids is None or len(ids) != count:
        _fail(path, 'expected %d image ids (one per cell of "boxes"), got %s' % (count, _describe(value)),
              '"%s"' % name)
    return [_scalar_id(path, '%s{%d}' % (name, k + 1), v) for k, v in enumerate(ids)]


def _scalar_id(path, field, value):
    """An image id: a str, or an integer (numbers that are whole)."""
    if isinstance(value, np.ndarray):
        if value.size != 1:
            _fail(path, 'an image id must be a string or one number, got %s' % _describe(value), field)
        value = value.reshape(-1)[0].item()
    if isinstance(value, bytes):
        value = value.decode('utf-8', 'surrogateescape')
    if isinstance(value, (np.integer, np.floating)):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == '':
        _fail(path, 'an image id must be a string or an integer, got %r' % (value,), field)
    return value


# ------------------------------------------------------------------ .mat

def _mat_cells(path, variables, name, every):
    value = variables.get(name)
    if value is None:
        _fail(path, 'no variable %r (the file has %s): not a file of this format'
              % (name, ', '.join(every) or 'none'))
    if not isinstance(value, list):
        _fail(path, 'expected a cell array with one matrix per image, got %s' % _describe(value),
              '"%s"' % name)
    return value


def read_mat_boxes(path, score_name=None):
    """Entries of a fast-rcnn-ss (score_name None) or edgeboxes-mat file."""
    names = ['boxes', 'images'] + ([score_name] if score_name else [])
    variables, every = read_mat(path, names)
    cells = _mat_cells(path, variables, 'boxes', every)
    ids = _image_ids(path, variables.get('images'), len(cells))
    score_cells = _mat_cells(path, variables, score_name, every) if score_name else None
    if score_cells is not None and len(score_cells) != len(cells):
        _fail(path, '%d cells of scores for %d cells of boxes' % (len(score_cells), len(cells)),
              '"%s"' % score_name)
    entries = []
    for k, cell in enumerate(cells):
        where = 'boxes{%d}' % (k + 1)
        boxes = from_matlab_yx(_matrix(path, where, cell, 4))
        if score_cells is None:
            scores = np.ones(len(boxes))
        else:
            scores = _matrix(path, '%s{%d}' % (score_name, k + 1), score_cells[k], 1).ravel()
            if len(scores) != len(boxes):
                _fail(path, '%d scores for %d boxes' % (len(scores), len(boxes)),
                      '%s{%d}' % (score_name, k + 1))
        entries.append(Entry(path, where, ids[k], boxes, scores))
    return entries


def read_mcg_mat(path):
    """The one Entry of an MCG per-image .mat (image id: the file stem)."""
    variables, every = read_mat(path, ['bboxes', 'bboxes_scores'])
    for name in ('bboxes', 'bboxes_scores'):
        if name not in variables:
            _fail(path, 'no variable %r (the file has %s): not an MCG file'
                  % (name, ', '.join(every) or 'none'))
    boxes = from_matlab_yx(_matrix(path, '"bboxes"', variables['bboxes'], 4))
    scores = _matrix(path, '"bboxes_scores"', variables['bboxes_scores'], 1).ravel()
    if len(scores) != len(boxes):
        _fail(path, '%d scores for %d boxes' % (len(scores), len(boxes)), '"bboxes_scores"')
    stem = os.path.splitext(os.path.basename(path))[0]
    return [Entry(path, 'the file', stem, boxes, scores)]


# ------------------------------------------------------------------ pickle

_PICKLE_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
    ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
    ('numpy', 'ndarray'), ('numpy', 'dtype'), ('collections', 'OrderedDict'),
    ('builtins', 'list'), ('builtins', 'dict'), ('builtins', 'tuple'), ('builtins', 'set'),
    ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),
    ('_codecs', 'encode'),   # bytes in protocol 2 pickles written by Python 3
    ('copy_reg', '_reconstructor'), ('copyreg', '_reconstructor'), ('builtins', 'object'),
    ('__builtin__', 'object'), ('__builtin__', 'list'), ('__builtin__', 'dict'),
    ('__builtin__', 'tuple'), ('__builtin__', 'set'),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and Python containers only."""

    def find_class(self, module, name):
        if (module, name) in _PICKLE_GLOBALS:
            try:
                return super().find_class(module, name)
            except ModuleNotFoundError:   # numpy 2's numpy._core, read by numpy 1
                return super().find_class(module.replace('numpy._core', 'numpy.core'), name)
        raise pickle.UnpicklingError('it names %s.%s, which is not a numpy array or a Python '
                                     'container; only those are unpickled' % (module, name))


def _load_pickle(path):
    try:
        with open(path, 'rb') as f:
            return _SafeUnpickler(f, encoding='latin1').load()
    except OSError as e:
        _fail(path, 'cannot read: %s' % (e.strerror or e))
    except Exception as e:  # noqa: BLE001  a damaged pickle raises many types
        _fail(path, 'not a readable pickle: %s' % (str(e) or type(e).__name__))


def read_wetectron(path):
    """Entries of a wetectron / PCL / Detectron proposal pickle."""
    data = _load_pickle(path)
    if not isinstance(data, dict):
        _fail(path, 'expected a dict with "boxes" and "indexes", got %s' % _describe(data))
    id_key = 'indexes' if 'indexes' in data else 'ids'
    if 'boxes' not in data or id_key not in data:
        _fail(path, 'needs "boxes" and "indexes" (or "ids"); the dict has %s: not a wetectron proposal file'
              % (', '.join(map(repr, data)) or 'nothing'))
    boxes, ids = list(data['boxes']), list(data[id_key])
    scores = list(data['scores']) if data.get('scores') is not None else None
    for name, values in (('"%s"' % id_key, ids), ('"scores"', scores)):
        if values is not None and len(values) != len(boxes):
            _fail(path, '%d entries for %d images in "boxes"' % (len(values), len(boxes)), name)
    entries = []
    for k, b in enumerate(boxes):
        where = 'boxes[%d]' % k
        image_id = _scalar_id(path, '%s[%d]' % (id_key, k), ids[k])
        b = _matrix(path, where, b, 4)
        s = np.ones(len(b)) if scores is None else _matrix(path, 'scores[%d]' % k, scores[k], 1).ravel()
        if len(s) != len(b):
            _fail(path, '%d scores for %d boxes' % (len(s), len(b)), 'scores[%d]' % k)
        entries.append(Entry(path, where, image_id, b, s))
    return entries


# ------------------------------------------------------------------ json, csv

def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(value)
    return float(value)


def read_json(path):
    """Entries of {"<image>": [[x1, y1, x2, y2, score], ...]}."""
    data = read_json_file(path)
    if not isinstance(data, dict):
        _fail(path, 'expected {"<image>": [[x1, y1, x2, y2, score], ...]}, got %s' % _describe(data))
    problems, entries = [], []
    for image, rows in data.items():
        where = json.dumps(image)
        try:
            if not isinstance(rows, list) or not all(isinstance(r, list) and len(r) == 5 for r in rows):
                raise ValueError
            values = np.array([[_number(v) for v in r] for r in rows], np.float64).reshape(-1, 5)
        except ValueError:
            problems.append(Problem(path, None, where, 'expected a list of [x1, y1, x2, y2, score] '
                                    '(5 numbers each)'))
            continue
        entries.append(Entry(path, where, image, values[:, :4], values[:, 4]))
    if problems:
        raise InputError(problems=problems, what='proposals')
    return entries


def _csv_rows(path):
    try:
        with open_regular(path, encoding='utf-8-sig', newline='') as f:    # -sig: a BOM is no part of "image"
            text = f.read()
    except OSError as e:
        _fail(path, 'cannot read: %s' % (e.strerror or e))
    except UnicodeDecodeError as e:
        _fail(path, 'not UTF-8 text: %s' % e)
    reader = csv.reader(io.StringIO(text))
    try:
        return list(reader)
    except csv.Error as e:      # (a field over csv's limit, 128 KB, or an unterminated quote)
        _fail(path, 'not CSV: %s' % e, line=reader.line_num)


def read_csv(path):
    """Entries of a CSV with the columns image, x1, y1, x2, y2, score."""
    rows = _csv_rows(path)
    header = [h.strip() for h in rows[0]] if rows else []
    missing = [c for c in CSV_COLUMNS if c not in header]
    if missing:
        _fail(path, 'the first line must name the columns %s; it lacks %s'
              % (', '.join(CSV_COLUMNS), ', '.join(missing)), line=1)
    col = [header.index(c) for c in CSV_COLUMNS]
    problems, by_image = [], {}
    for no, row in enumerate(rows[1:], 2):
        if not any(cell.strip() for cell in row):
            continue
        try:
            image = row[col[0]].strip()
            values = [text_number(row[c]) for c in col[1:]]
        except (IndexError, ValueError):
            problems.append(Problem(path, no, None, 'expected an image and 5 numbers (%s), got %r'
                                    % (', '.join(CSV_COLUMNS), ','.join(row))))
            continue
        by_image.setdefault(image, []).append(values + [no])
    if problems:
        raise InputError(problems=problems, what='proposals')
    entries = []
    for image, values in by_image.items():
        v = np.array(values, np.float64)
        entries.append(Entry(path, json.dumps(image), image, v[:, :4], v[:, 4], v[:, 5].astype(int)))
    return entries


def mcg_files(paths):
    """The .mat files of paths: files as given, folders' .mat files sorted."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += [os.path.join(p, f) for f in sorted(os.listdir(p)) if f.endswith('.mat')]
        else:
            out.append(p)
    return out


def read_entries(fmt, paths):
    """Entries of every file (in order); InputError listing every file's problems."""
    readers = {'fast-rcnn-ss': read_mat_boxes,
               'edgeboxes-mat': lambda p: read_mat_boxes(p, 'boxScores'),
               'mcg-mat': read_mcg_mat, 'wetectron': read_wetectron,
               'json': read_json, 'csv': read_csv}
    if fmt not in readers:
        raise ValueError('unknown format %r' % fmt)
    files = mcg_files(paths) if fmt == 'mcg-mat' else list(paths)
    problems, entries = [], []
    for path in files:
        if not os.path.isfile(path):
            from caffe_mlic.fileio import file_kind_problem
            problems.append(Problem(path, None, None, file_kind_problem(path)))
            continue
        try:
            entries += readers[fmt](path)
        except InputError as e:
            problems += e.problems
    if problems:
        raise InputError(problems=problems, what='proposals')
    return entries

