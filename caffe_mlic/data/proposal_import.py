"""Import proposals made by other tools (`caffe-mlic proposals import FORMAT FILE... -o DIR`).

The files (formats: caffe_mlic.data.proposal_formats) become the per-image files
`caffe-mlic proposals` writes (DIR/<image stem>.npz: boxes 0-based inclusive
x1 y1 x2 y2, scores, image_shape, method "imported <format>"), which
`datalist build --proposals DIR` and `detect --proposals DIR` read.

The image list (--images): image files, folders (their image files, sorted
by name) and text files listing image paths, one a line (relative to the
list's folder; blank lines and lines starting with # skipped), in the order
given. Every image of the list must get proposals, and every image of the
files must be in the list:
- a file with image ids: a string id is the image's file stem or file name;
  an integer id (wetectron, numbers in a .mat) is, with --coco JSON, the
  COCO image id of that file's "images" (matched by file name), else the
  number the file stem reads as: its digits when it has only digits and
  underscores (as wetectron reads VOC ids: 000005 -> 5, 2008_000008 ->
  2008000008), else the digits after its last underscore
  (COCO_val2014_000000000042 -> 42);
- a file without ids (a .mat with no "images"): its images are the list's,
  in order, so the counts must be equal.

Every box is checked against its image (read from the image's header):
finite coordinates and scores, x1 <= x2, y1 <= y2, and inside the image
(0 <= x1, x2 <= width - 1, same for y): a box outside is a convention
mistake (axes swapped, 1-based read as 0-based, another image) more often
than a tool's rounding, so it is refused, not clipped. Then the hygiene of
`proposals` (caffe_mlic.data.proposals.clean_boxes: drop boxes with a side under
--min-size, exact duplicates, keep the top --max-boxes by score), and a
report of what it dropped and of images left with no box.

All or nothing: every problem of every file is listed in one error and
nothing is written; the files are written into a hidden folder inside DIR
first and moved into place only when all are written. A DIR holding
proposals of another method or other settings is refused (--replace
replaces them), as `proposals` does.
"""
import os
import re
import shutil
import tempfile
from typing import NamedTuple

import numpy as np

from caffe_mlic.data import proposals
from caffe_mlic.errors import InputError, Problem
from caffe_mlic.fileio import file_kind_problem, open_regular, text_lines
from caffe_mlic.data.imageio import image_size, is_image_file
from caffe_mlic.data.proposal_formats import read_entries


class Matched(NamedTuple):
    entry: object    # proposal_formats.Entry
    image: str       # the image's path
    label: str       # the entry and image, for messages


# ------------------------------------------------------------------ the image list

def _list_file(path, problems):
    """The image paths a list file names, relative ones against its folder."""
    try:
        with open_regular(path, encoding='utf-8-sig') as f:     # -sig: a BOM is no part of the first path
            lines = text_lines(f.read())
    except (OSError, UnicodeDecodeError) as e:
        problems.append(Problem(path, None, None, 'cannot read the image list: %s'
                                % (getattr(e, 'strerror', None) or e)))
        return []
    base = os.path.dirname(os.path.abspath(path))
    out = []
    for no, line in enumerate(lines, 1):
        name = line.strip()
        if not name or name.startswith('#'):
            continue
        full = os.path.join(base, name)
        if not os.path.isfile(full):
            from caffe_mlic.errors import not_a_file_text
            problems.append(Problem(path, no, None, not_a_file_text(full)))
        out.append(full)
    return out


def read_image_list(paths):
    """Absolute image paths of --images, in order; InputError for a missing
    path, an image listed twice, or two images of the same file stem (their
    proposal files would collide)."""
    problems, images = [], []
    for p in paths:
        if os.path.isdir(p):
            for f in sorted(os.listdir(p)):
                full = os.path.join(p, f)
                if is_image_file(f) and not os.path.isfile(full):   # a FIFO would block its reader
                    problems.append(Problem(full, None, None, file_kind_problem(full)))
                elif is_image_file(f):
                    images.append(full)
        elif not os.path.isfile(p):
            problems.append(Problem(p, None, None, file_kind_problem(p, 'file or folder')))
        elif is_image_file(p):
            images.append(p)
        else:
            images += _list_file(p, problems)
    images = [os.path.abspath(p) for p in images]
    problems += _repeats(images)
    if not images and not problems:
        problems.append('no image files in %s' % ', '.join(paths))
    if problems:
        raise InputError(problems=problems, what='the image list')
    return images


def _repeats(images):
    """Problems of an image listed twice, and of images of one file stem
    (their proposal files would collide)."""
    problems, stems, seen = [], {}, set()
    for p in images:
        if p in seen:
            problems.append('the image list has the same image twice: %s' % p)
            continue
        seen.add(p)
        stems.setdefault(os.path.splitext(os.path.basename(p))[0], []).append(p)
    for stem, same in stems.items():
        if len(same) > 1:
            problems.append('the image list has images of the same file stem: %s (their proposal files '
                            'would both be %s.npz)' % (', '.join(same), stem))
    return problems


def stem_number(stem):
    """The integer id an image's file stem reads as, or None (module docstring)."""
    if re.fullmatch(r'\d+(_\d+)*', stem):
        return int(stem.replace('_', ''))
    found = re.fullmatch(r'.*_(\d+)', stem)
    return int(found.group(1)) if found else None


def read_coco_ids(path):
    """{COCO image id: file name} of a COCO instances / image-info JSON."""
    from caffe_mlic.fileio import read_json
    data = read_json(path)
    images = data.get('images') if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise InputError(problems=[Problem(path, None, None, 'expected a COCO file with "images"')])
    out = {}
    for k, im in enumerate(images):
        ok = isinstance(im, dict) and isinstance(im.get('id'), int) and not isinstance(im.get('id'), bool) \
            and isinstance(im.get('file_name'), str)
        if not ok:
            raise InputError(problems=[Problem(path, None, 'images[%d]' % k,
                                               'needs an integer "id" and a string "file_name"')])
        out[im['id']] = os.path.basename(im['file_name'])
    return out


class ImageIndex:
    """Finds an image of the list by the id a proposal file gives it."""

    def __init__(self, images, coco_ids=None):
        self.by_name = {}
        for p in images:
            name = os.path.basename(p)
            self.by_name[name] = p
            self.by_name.setdefault(os.path.splitext(name)[0], p)
        self.coco_ids = coco_ids
        self.by_number = {}
        for p in images:
            number = stem_number(os.path.splitext(os.path.basename(p))[0])
            if number is not None:
                self.by_number.setdefault(number, []).append(p)

    def find(self, image_id):
        """(path, None) or (None, why not)."""
        if isinstance(image_id, str):
            found = self.by_name.get(image_id)
            return (found, None) if found else (None, 'image id %r is not in the image list' % image_id)
        if self.coco_ids is not None:
            name = self.coco_ids.get(image_id)
            if name is None:
                return None, 'image id %d is not a COCO image id of --coco' % image_id
            found = self.by_name.get(name)
            return (found, None) if found else (None, 'image id %d (%s) is not in the image list'
                                                % (image_id, name))
        found = self.by_number.get(image_id, [])
        if len(found) > 1:
            return None, ('image id %d matches several images (%s): give --coco JSON to map ids'
                          % (image_id, ', '.join(os.path.basename(p) for p in found[:3])))
        if not found:
            return None, ('image id %d: no image of the list has a file stem that reads as %d'
                          % (image_id, image_id))
        return found[0], None


# ------------------------------------------------------------------ matching

def _label(entry, image):
    return '%s, image %s' % (entry.where, os.path.basename(image) if image else entry.image_id)


def _match_by_order(entries, images):
    """Entries without ids: the images of the list, in order."""
    if len(entries) != len(images):
        counts = {}
        for e in entries:
            counts[e.source] = counts.get(e.source, 0) + 1
        raise InputError(problems=[Problem(source, None, None, 'has %d images and no image ids (no "images" '
                                           'variable) but the image list has %d images%s'
                                           % (n, len(images), '' if len(counts) == 1 else
                                              ' (all files: %d)' % len(entries)))
                                   for source, n in counts.items()], what='proposals')
    return [Matched(e, p, _label(e, p)) for e, p in zip(entries, images)]


def match(entries, images, coco_ids=None):
    """[Matched] of every entry; InputError listing every id not in the list,
    every image given twice and every listed image without proposals."""
    matched, problems = match_entries(entries, images, coco_ids)
    if problems:
        raise InputError(problems=problems, what='proposals')
    return matched


def match_entries(entries, images, coco_ids=None):
    """([Matched] of the entries that found their image, [Problem] of every
    id not in the list, image given twice and listed image without
    proposals). Files without ids must match the list by count: an
    InputError at once otherwise (no entry has an image then)."""
    with_ids = [e for e in entries if e.image_id is not None]
    if not with_ids:
        return _match_by_order(entries, images), []
    problems = [Problem(e.source, None, e.where, 'no image id, but other files have ids: import '
                        'files without ids separately') for e in entries if e.image_id is None][:1]
    index, out, first = ImageIndex(images, coco_ids), [], {}
    for e in with_ids:
        path, why = index.find(e.image_id)
        if path is None:
            problems.append(Problem(e.source, None, e.where, why))
        elif path in first:
            problems.append(Problem(e.source, None, e.where, 'image %s again: its proposals are also '
                                    'in %s, %s' % (os.path.basename(path), *first[path])))
        else:
            first[path] = (e.source, e.where)
            out.append(Matched(e, path, _label(e, path)))
    sources = ', '.join(sorted({e.source for e in entries}))
    problems += [Problem(p, None, None, 'in the image list but in none of the proposal files (%s)' % sources)
                 for p in images if p not in first]
    return out, problems


# ------------------------------------------------------------------ checks

def _first_bad(bad):
    k = np.flatnonzero(bad)
    return int(k[0]), ('' if k.size == 1 else ' (and %d more)' % (k.size - 1))


def box_problems(m, width, height):
    """Problems of one image's boxes and scores against its width x height."""
    e, problems = m.entry, []
    b, s = e.boxes, e.scores

    def add(bad, message):
        if bad.any():
            k, more = _first_bad(bad)
            line = int(e.lines[k]) if e.lines is not None else None
            problems.append(Problem(e.source, line, m.label, message(k) + more))
    finite = np.isfinite(b).all(axis=1)
    add(~finite, lambda k: 'box %d: a coordinate is not a finite number (%s)' % (k, _box_text(b[k])))
    add(~np.isfinite(s), lambda k: 'box %d: score %r is not a finite number' % (k, float(s[k])))
    # (the .npz holds float32: a larger score became inf there, which detect then refused)
    add(np.isfinite(s) & (np.abs(s) > np.finfo(np.float32).max),
        lambda k: 'box %d: score %g is beyond the float32 range (+-3.4e38) the proposal files hold' % (k, s[k]))
    ok = finite
    inverted = ok & ((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))
    add(inverted, lambda k: 'box %d (%s) has x2 < x1 or y2 < y1' % (k, _box_text(b[k])))
    outside = ok & ~inverted & ((b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > width - 1) | (b[:, 3] > height - 1))
    add(outside, lambda k: 'box %d (%s) is outside the %dx%d image %s'
        % (k, _box_text(b[k]), width, height, m.image))
    return problems


def _box_text(box):
    return 'x1 y1 x2 y2 = %s, 0-based' % ' '.join('%g' % v for v in box)


def check_boxes(matched):
    """{image: (width, height)}; InputError listing every box problem of every image."""
    sizes, problems = sizes_and_box_problems(matched)
    if problems:
        raise InputError(problems=problems, what='proposals')
    return sizes


def sizes_and_box_problems(matched):
    """({image: (width, height)}, [Problem] of every box of every image)."""
    problems, sizes = [], {}
    for m in matched:
        try:
            w, h = image_size(m.image)
        except Exception as e:  # noqa: BLE001  PIL raises several types for bad files
            problems.append(Problem(m.image, None, None, 'cannot read the image size: %s' % e))
            continue
        sizes[m.image] = (w, h)
        problems += box_problems(m, w, h)
    return sizes, problems


# ------------------------------------------------------------------ writing

def _write_staged(out_dir, matched, sizes, method, min_size, max_boxes, show_progress):
    """Clean and write every image's file into a hidden folder of out_dir;
    returns (that folder, report)."""
    from caffe_mlic.progress import progress
    staging = tempfile.mkdtemp(prefix='.import-', dir=out_dir)
    report = {'images': len(matched), 'boxes_read': 0, 'boxes_kept': 0,
              'dropped': {'small': 0, 'duplicate': 0, 'over_max': 0}, 'empty': []}
    for m in progress(matched, desc='import', unit='img', enabled=show_progress):
        w, h = sizes[m.image]
        boxes, scores, dropped = proposals.clean_boxes_counted(m.entry.boxes, m.entry.scores, w, h,
                                                               min_size, max_boxes)
        proposals.save_proposals(proposals.output_path(staging, m.image), boxes, scores, (h, w), method,
                                 settings={'method': method, 'min_size': min_size, 'max_boxes': max_boxes})
        report['boxes_read'] += len(m.entry.boxes)
        report['boxes_kept'] += len(boxes)
        for k, v in dropped.items():
            report['dropped'][k] += v
        if len(boxes) == 0:
            report['empty'].append(m.image)
    return staging, report


def _publish(out_dir, staging, settings, replace):
    """Move the staged files into out_dir (claiming it first)."""
    proposals.claim_folder(out_dir, settings, replace, '--replace')
    for name in sorted(os.listdir(staging)):
        os.replace(os.path.join(staging, name), os.path.join(out_dir, name))


def import_proposals(fmt, files, images, out_dir, min_size=20, max_boxes=2000, coco=None, replace=False,
                     show_progress=False):
    """Import ``files`` of format ``fmt`` for the image list ``images`` into
    out_dir (module docstring); returns the report {'images', 'boxes_read',
    'boxes_kept', 'dropped': {'small', 'duplicate', 'over_max'}, 'empty':
    [images left with no box], 'output'}."""
    proposals.check_limits(max_boxes, min_size)
    settings = {'method': 'imported %s' % fmt, 'min_size': min_size, 'max_boxes': max_boxes}
    proposals.check_folder(out_dir, settings, replace, '--replace')
    image_paths = read_image_list(images)
    proposals._check_output_places(out_dir, image_paths, [])     # (not among the images they describe)
    coco_ids = read_coco_ids(coco) if coco else None
    # Every problem in one error: the boxes of the entries that found their
    # image are checked even when others did not.
    matched, problems = match_entries(read_entries(fmt, files), image_paths, coco_ids)
    sizes, bad_boxes = sizes_and_box_problems(matched)
    if problems or bad_boxes:
        raise InputError(problems=problems + bad_boxes, what='proposals')
    # a folder or FIFO where an image's .npz goes: refused before anything is written (it failed at the
    # rename, naming the staging file and leaving settings.json)
    proposals._check_output_places(out_dir, image_paths, [m.image for m in matched])
    made = not os.path.isdir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    staging = None
    try:
        staging, report = _write_staged(out_dir, matched, sizes, settings['method'], min_size, max_boxes,
                                        show_progress)
        _publish(out_dir, staging, settings, replace)
    except BaseException:
        if made:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    report['output'] = out_dir
    return report
