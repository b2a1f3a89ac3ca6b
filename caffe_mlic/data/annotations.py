"""Readers of image-level ground truth: Pascal VOC, MS-COCO and plain label files.

Each reader returns the class list and one ImageRecord per image, with the
image's absolute path, its size, its ground-truth objects (boxes 0-based
inclusive in original pixels) and, for plain label files, its label set.
Every problem found is collected and raised together as one InputError whose
problems name the file, the line and the XML element or JSON id at fault.

Conventions
- VOC: ROOT/ImageSets/Main/<set>.txt lists one image id per line;
  ROOT/Annotations/<id>.xml; the image is ROOT/JPEGImages/<filename> (the
  XML's <filename>, else <id> with any image extension). Boxes are 1-based
  inclusive in the XML; we subtract 1. Class list: --classes FILE, else
  ROOT/classes.txt, else the 20 Pascal VOC classes.
- COCO: instances JSON (images, annotations, categories); classes are the
  category names in category-id order unless a class file is given (then
  every category must be in it). bbox [x, y, w, h] becomes
  x1=x, y1=y, x2=x+w-1, y2=y+h-1 (at least x1/y1), clipped to the image;
  a box reaching more than 1 px outside the image is an error. Crowd
  annotations (iscrowd=1) are kept as objects marked difficult; "iscrowd"
  must be 0 or 1 (absent: 0, as pycocotools reads it). A category name's
  whitespace becomes '_' ("traffic light" is the class traffic_light); it
  must then be a class name (non-empty, no "/" or NUL, no two alike); two
  images of one file are an error.
- Plain label file (NUS-WIDE style): `image_path label label ...` per line;
  labels are class names from the class file, or, when a line's labels are
  exactly C tokens all 0 or 1 (and no class is named "0" or "1"), a 0/1 vector
  in class-file order. A line with only a path is an image with no labels.
  Blank lines and lines starting with '#' are skipped; an image on two lines
  is an error. Relative image paths
  are resolved against --images DIR when given, else against the label
  file's folder. An image path may hold spaces: it runs up to the last word
  that makes an existing file with only labels after it.
"""
import json
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from caffe_mlic.errors import InputError, Problem
from caffe_mlic.fileio import open_regular, read_json, text_lines, unprintable_in
from caffe_mlic.data.imageio import IMAGE_EXTENSIONS, image_size
from caffe_mlic.inference.settings import class_name_problem

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')


@dataclass
class GtObject:
    name: str
    box: Tuple[float, float, float, float]  # x1 y1 x2 y2, 0-based inclusive, original pixels
    difficult: bool = False


@dataclass
class ImageRecord:
    path: str                 # absolute image path
    width: int
    height: int
    source: str               # the annotation file it came from, for messages
    objects: List[GtObject] = field(default_factory=list)
    labels: Optional[set] = None  # class names (plain label files); None: from objects
    source_line: Optional[int] = None   # its line in source (plain label files)
    source_field: Optional[str] = None  # its element in source (COCO: 'image id 7')
    coco_id: Optional[int] = None       # its COCO image id (COCO files)

    def problem(self, message):
        return Problem(self.source, self.source_line, self.source_field, message)

    def label_names(self, difficult='include'):
        if self.labels is not None:
            return set(self.labels)
        return {o.name for o in self.objects if difficult == 'include' or not o.difficult}


def label_vector(record, classes, difficult='include'):
    names = record.label_names(difficult)
    return np.array([1 if c in names else 0 for c in classes], np.uint8)


class ProblemList(list):
    """The Problems found in annotation files, collected to be raised
    together (raise_if_any: one InputError, 'annotations'). Also used by
    evaluation.detection's VOC reader."""

    def add(self, path, line, field, message):
        self.append(Problem(path, line, field, message))

    def raise_if_any(self, what='annotations'):
        if self:
            raise InputError(problems=self, what=what)


def _fail(path, message):
    raise InputError(problems=[Problem(path, None, None, message)])


# ------------------------------------------------------------------ helpers

def _read_text_lines(path, what):
    """The lines of a UTF-8 text file (a BOM at its start dropped: some
    editors write one), fileio.text_lines; InputError naming ``what``
    otherwise."""
    try:
        with open_regular(path, encoding='utf-8-sig') as f:
            return text_lines(f.read())
    except OSError as e:
        _fail(path, 'cannot read %s: %s' % (what, e.strerror or e))
    except UnicodeDecodeError as e:
        _fail(path, '%s is not UTF-8 text: %s' % (what, e))


def one_per_line(path, what, noun):
    """[(line number, token)] of a file with one token per line (blank lines
    skipped): InputError for a line of several tokens, a repeat or no token."""
    problems = ProblemList()
    out, seen = [], {}
    for no, line in enumerate(_read_text_lines(path, what), 1):
        unprintable = unprintable_in(line)
        if unprintable:
            problems.add(path, no, None, '%s, in %r: give one printable %s a line' % (unprintable, line, noun))
            continue
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1:
            problems.add(path, no, None, 'expected one %s, got %d fields (%r)' % (noun, len(parts), line))
        elif parts[0] in seen:
            problems.add(path, no, None, '%s %r repeats line %d' % (noun, parts[0], seen[parts[0]]))
        else:
            seen[parts[0]] = no
            out.append((no, parts[0]))
    if not out and not problems:
        problems.add(path, None, None, '%s is empty' % what)
    problems.raise_if_any(what)      # (headed by what the file is: a class list is no annotation)
    return out


def read_class_list(path):
    """One class name per line (blank lines ignored)."""
    return [name for _, name in one_per_line(path, 'class list', 'class')]


def _check_image(path, where, problems, expect=None):
    """(width, height) of an existing, readable image of the expected size, or
    None; where = (annotation path, line, field) of the problem."""
    if not os.path.isfile(path):
        from caffe_mlic.errors import not_a_file_text
        problems.add(*where, not_a_file_text(path))
        return None
    try:
        size = image_size(path)
    except Exception as e:  # noqa: BLE001  PIL raises several types for bad files
        problems.add(*where, 'cannot read image %s: %s' % (path, e))
        return None
    if expect is not None and tuple(size) != tuple(expect):
        problems.add(*where, 'says the image is %dx%d but %s is %dx%d'
                     % (expect[0], expect[1], path, size[0], size[1]))
        return None
    return size


# ------------------------------------------------------------------ VOC

def xml_text(el, tag, xml_path, element, problems, cast=str, required=True, default=None):
    """Text of child <tag> of el, cast; a problem added to ``problems`` (a
    ProblemList) at ``element`` (e.g. '<object> #2') of xml_path when missing
    or not a number, or given twice, and then ``default``."""
    field = ('%s <%s>' % (element, tag)) if element else '<%s>' % tag
    if len(el.findall(tag)) > 1:    # (one of them was taken in silence)
        problems.add(xml_path, None, field, 'appears %d times' % len(el.findall(tag)))
        return default
    child = el.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            problems.add(xml_path, None, field, 'missing')
        return default
    text = child.text.strip()
    try:
        value = cast(text)
    except ValueError:
        problems.add(xml_path, None, field, '%r is not a number' % text)
        return default
    if cast is float and not math.isfinite(value):
        problems.add(xml_path, None, field, '%r is not a finite number' % text)
        return default
    return value


def find_voc_image(root, image_id, filename):
    """The image of VOC annotation ``image_id``: ROOT/JPEGImages/<filename>
    when the XML gives one, else <image_id> with the first image extension
    present (.jpg when none is: the path to report as missing)."""
    jpeg = os.path.join(root, 'JPEGImages')
    if filename:
        return os.path.join(jpeg, filename)
    for ext in IMAGE_EXTENSIONS:
        p = os.path.join(jpeg, image_id + ext)
        if os.path.isfile(p):
            return p
    return os.path.join(jpeg, image_id + '.jpg')


def parse_voc_xml(xml_path, problems):
    """The root element of the VOC annotation ``xml_path``, or None after
    adding its problem: unreadable, not XML, or XML whose root is not
    <annotation> (an error page saved as .xml; read as an image with no
    objects, it dropped out of every AP in silence)."""
    try:
        with open_regular(xml_path, 'rb') as f:     # a FIFO would block, a device never end
            root = ET.parse(f).getroot()
    except ET.ParseError as e:
        problems.add(xml_path, None, None, 'unreadable XML: %s' % e)
        return None
    except OSError as e:
        problems.add(xml_path, None, None, 'cannot read: %s' % (e.strerror or e))
        return None
    if root.tag != 'annotation':
        problems.add(xml_path, None, None, 'its root element is <%s>, not <annotation>: not a VOC annotation'
                     % root.tag[:40])
        return None
    return root


def voc_set_file(root, image_set):
    """ROOT/ImageSets/Main/<image_set>.txt; InputError when ROOT or a folder
    on the way is no folder (said as what it is: reading the set said "Not
    a directory")."""
    from caffe_mlic.errors import folder_problem
    for folder, what in ((root, 'VOC folder'), (os.path.join(root, 'ImageSets'), 'folder'),
                         (os.path.join(root, 'ImageSets', 'Main'), 'folder')):
        if not os.path.isdir(folder):
            _fail(folder, '%s (a VOC folder holds Annotations/ and ImageSets/Main/)' % folder_problem(folder, what))
    return os.path.join(root, 'ImageSets', 'Main', image_set + '.txt')


def read_voc(root, image_set, classes=None):
    """(classes, records) of ROOT/ImageSets/Main/<image_set>.txt."""
    root = os.path.abspath(root)
    if classes is None:
        own = os.path.join(root, 'classes.txt')
        # lexists: a classes.txt that is a folder, a FIFO or a broken link is an error of its reader
        classes = read_class_list(own) if os.path.lexists(own) else list(VOC_CLASSES)
        class_source = own if os.path.lexists(own) else 'the 20 Pascal VOC classes'
    else:
        class_source = 'the class list'
    class_set = set(classes)
    set_file = voc_set_file(root, image_set)
    ids = one_per_line(set_file, 'image set', 'image id')
    problems = ProblemList()

    records = []
    for no, image_id in ids:
        xml_path = os.path.join(root, 'Annotations', image_id + '.xml')
        if not os.path.lexists(xml_path):     # (one there but no regular file: parse_voc_xml says what)
            problems.add(set_file, no, None, 'annotation of image id %s not found: %s' % (image_id, xml_path))
            continue
        ann = parse_voc_xml(xml_path, problems)
        if ann is None:
            continue
        n_before = len(problems)
        size = ann.find('size')
        if size is None:
            problems.add(xml_path, None, '<size>', 'missing')
            continue
        w = xml_text(size, 'width', xml_path, '<size>', problems, int)
        h = xml_text(size, 'height', xml_path, '<size>', problems, int)
        if w is not None and h is not None and (w < 1 or h < 1):
            problems.add(xml_path, None, '<size>', '%dx%d is not a valid image size' % (w, h))
        filename = xml_text(ann, 'filename', xml_path, None, problems, required=False)
        objects = voc_objects(ann, xml_path, w, h, class_set, class_source, problems)
        if len(problems) > n_before:
            continue
        image_path = find_voc_image(root, image_id, filename)
        if _check_image(image_path, (xml_path, None, None), problems, (w, h)) is None:
            continue
        records.append(ImageRecord(image_path, w, h, xml_path, objects))
    problems.raise_if_any()
    return list(classes), records


def voc_objects(ann, xml_path, w, h, class_set, class_source, problems):
    """[GtObject] of a VOC annotation's <object>s (0-based boxes), adding
    to ``problems`` an unknown class, a missing or bad <bndbox> and a box
    not inside the w x h image (boxes are not checked when w or h is None)."""
    objects = []
    for k, obj in enumerate(ann.findall('object'), 1):
        element = '<object> #%d' % k
        name = xml_text(obj, 'name', xml_path, element, problems)
        if name is None:
            continue
        element = '<object> #%d <name>%s</name>' % (k, name)
        if name not in class_set:
            problems.add(xml_path, None, element, 'class not in %s' % class_source)
            continue
        difficult = xml_text(obj, 'difficult', xml_path, element, problems, int,
                             required=False, default=0)
        if difficult not in (0, 1):
            problems.add(xml_path, None, element + ' <difficult>', 'must be 0 or 1, got %d' % difficult)
            continue
        bb = obj.find('bndbox')
        if bb is None:
            problems.add(xml_path, None, element + ' <bndbox>', 'missing')
            continue
        if len(obj.findall('bndbox')) > 1:
            problems.add(xml_path, None, element + ' <bndbox>', 'appears %d times (one box an <object>)'
                         % len(obj.findall('bndbox')))
            continue
        coords = [xml_text(bb, t, xml_path, element + ' <bndbox>', problems, float)
                  for t in ('xmin', 'ymin', 'xmax', 'ymax')]
        if None in coords or w is None or h is None:
            continue
        x1, y1, x2, y2 = coords
        if not (1 <= x1 <= x2 <= w and 1 <= y1 <= y2 <= h):
            problems.add(xml_path, None, element + ' <bndbox>',
                         'box (%g,%g,%g,%g) is not inside the %dx%d image (VOC boxes are '
                         '1-based: need 1 <= xmin <= xmax <= width, same for y)'
                         % (x1, y1, x2, y2, w, h))
            continue
        objects.append(GtObject(name, (x1 - 1, y1 - 1, x2 - 1, y2 - 1), bool(difficult)))
    return objects


# ------------------------------------------------------------------ COCO

def _number(value):
    """A finite JSON number (not true/false, not NaN or Infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(value)
    return value


def _is_id(value):
    """A JSON integer id: Python's bool is an int, but `true` is no id."""
    return isinstance(value, int) and not isinstance(value, bool)


class CocoSet(NamedTuple):
    """A COCO instances file: the class list, one ImageRecord per image (with
    its coco_id) and {class name: COCO category id}."""
    classes: List[str]
    records: List[ImageRecord]
    category_ids: Dict[str, int]


def coco_class_name(name):
    """The class name of a COCO category name: its inner whitespace as '_'
    (COCO's "traffic light" is traffic_light: a class file holds one name a
    line, and devkit result files are named after the classes)."""
    return re.sub(r'\s+', '_', name.strip())


def read_coco_set(instances_json, images_dir, classes=None):
    """CocoSet of a COCO instances file; images under images_dir."""
    src = instances_json
    images_dir = os.path.abspath(images_dir)
    data = read_json(src)
    problems = ProblemList()
    if not isinstance(data, dict):
        _fail(src, 'expected a JSON object with images, annotations, categories')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            problems.add(src, None, None, '"%s" missing or not a list' % key)
    problems.raise_if_any()

    cats = {}
    for k, cat in enumerate(data['categories']):
        if not isinstance(cat, dict) or not _is_id(cat.get('id')) or not isinstance(cat.get('name'), str):
            problems.add(src, None, 'categories[%d]' % k, 'needs an integer "id" and a string "name"')
            continue
        if cat['id'] in cats:
            problems.add(src, None, 'category id %d' % cat['id'], 'appears twice')
            continue
        name = coco_class_name(cat['name'])
        why = class_name_problem(name)      # (OUT.classes.txt holds one name a line)
        if why:
            problems.add(src, None, 'category id %d' % cat['id'], '"name" %s is no class name: it %s'
                         % (json.dumps(cat['name']), why))
            continue
        cats[cat['id']] = name
    problems.raise_if_any()
    if classes is None:
        classes = [cats[i] for i in sorted(cats)]
        repeated = sorted({c for c in classes if classes.count(c) > 1})
        if repeated:
            problems.add(src, None, '"categories"', 'category names are not unique: %s'
                         % ', '.join(json.dumps(c) for c in repeated[:5]))
    else:
        for cid, name in sorted(cats.items()):
            if name not in classes:
                problems.add(src, None, 'category id %d (%s)' % (cid, name), 'class not in the class list')
    if not data['images']:
        problems.add(src, None, None, '"images" is empty')
    problems.raise_if_any()

    records, by_id, by_file = [], {}, {}
    for k, img in enumerate(data['images']):
        if not isinstance(img, dict) or not _is_id(img.get('id')):
            problems.add(src, None, 'images[%d]' % k, 'needs an integer "id"')
            continue
        iid = img['id']
        field = 'image id %d' % iid
        if iid in by_id:
            problems.add(src, None, field, 'appears twice in "images"')
            continue
        fname, w, h = img.get('file_name'), img.get('width'), img.get('height')
        if not isinstance(fname, str) or not fname:
            problems.add(src, None, field, '"file_name" missing')
            continue
        field = 'image id %d (%s)' % (iid, fname)
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            problems.add(src, None, field, '"width"/"height" must be positive integers')
            continue
        path = os.path.join(images_dir, fname)
        if os.path.normpath(path) in by_file:
            problems.add(src, None, field, 'image %s repeats image id %d (one image, two label sets)'
                         % (path, by_file[os.path.normpath(path)]))
            continue
        by_file[os.path.normpath(path)] = iid
        if _check_image(path, (src, None, field), problems, (w, h)) is None:
            continue
        rec = ImageRecord(path, w, h, src, source_field='image id %d' % iid, coco_id=iid)
        by_id[iid] = rec
        records.append(rec)

    for k, ann in enumerate(data['annotations']):
        if not isinstance(ann, dict):
            problems.add(src, None, 'annotations[%d]' % k, 'is not an object')
            continue
        aid = ann.get('id', 'annotations[%d]' % k)
        iid, cid, bbox = ann.get('image_id'), ann.get('category_id'), ann.get('bbox')
        field = 'annotation id %s (image id %s)' % (aid, json.dumps(iid))
        if not _is_id(iid):
            problems.add(src, None, field, '"image_id" must be an integer, got %s' % json.dumps(iid))
            continue
        if not _is_id(cid):
            problems.add(src, None, field, '"category_id" must be an integer, got %s' % json.dumps(cid))
            continue
        if iid not in by_id:
            if not any(isinstance(i, dict) and i.get('id') == iid for i in data['images']):
                problems.add(src, None, field, 'image_id not in "images"')
            continue  # else the image itself was bad and is already reported
        if cid not in cats:
            problems.add(src, None, field, 'category_id %s not in "categories"' % cid)
            continue
        crowd = ann.get('iscrowd', 0)    # (absent: not crowd, as pycocotools reads it)
        if not _is_id(crowd) or crowd not in (0, 1):
            problems.add(src, None, field, '"iscrowd" must be 0 or 1, got %s' % json.dumps(crowd))
            continue
        rec = by_id[iid]
        try:
            x, y, bw, bh = (float(_number(v)) for v in bbox)
        except (TypeError, ValueError):
            problems.add(src, None, field, '"bbox" must be 4 finite numbers [x, y, w, h], got %s'
                         % json.dumps(bbox))
            continue
        if bw < 0 or bh < 0 or x < -1 or y < -1 or x + bw > rec.width + 1 or y + bh > rec.height + 1:
            problems.add(src, None, field, 'bbox [%g, %g, %g, %g] is outside the %dx%d image'
                         % (x, y, bw, bh, rec.width, rec.height))
            continue
        x1 = min(max(x, 0.0), rec.width - 1)
        y1 = min(max(y, 0.0), rec.height - 1)
        x2 = min(max(x + bw - 1, x1), rec.width - 1)
        y2 = min(max(y + bh - 1, y1), rec.height - 1)
        rec.objects.append(GtObject(cats[cid], (x1, y1, x2, y2), crowd == 1))
    problems.raise_if_any()
    return CocoSet(list(classes), records, {name: cid for cid, name in cats.items()})


# ------------------------------------------------------------------ plain labels

def _split_label_line(line, spans, base, label_names, num_classes):
    """(image path, class names) of a label-file line whose tokens are at
    ``spans``, or a message. Class names hold no whitespace (the class list
    has one token per line), but an image path may: the path is the first
    token, or the first several with the whitespace between them, whichever
    names an existing file with only labels after it; two such readings
    that both name files are ambiguous (a message naming both). A line whose
    first token alone is followed by labels keeps that reading when no file
    fits (then "image not found" names that path)."""
    def path_of(k):   # the first k tokens, as written
        return line[spans[0][0]:spans[k - 1][1]]

    def is_file(k):
        return os.path.isfile(os.path.join(base, path_of(k)))

    def labels_after(k):
        return label_names([line[a:b] for a, b in spans[k:]])

    splits = [k for k in range(1, len(spans) + 1) if labels_after(k) is not None]
    found = [k for k in splits if is_file(k)]
    if len(found) > 1:   # ('a.jpg' and 'a.jpg circle' both files, labels after each)
        return 'ambiguous image path: %s are all files, each followed by labels (%s); ' \
               'rename the file whose name holds whitespace' % (
                   ', '.join(repr(path_of(k)) for k in found),
                   '; '.join('%r with %s' % (path_of(k), ', '.join(sorted(labels_after(k))) or 'no label')
                             for k in found))
    if found or splits and splits[0] == 1:
        k = (found or splits)[0]
        return path_of(k), labels_after(k)
    # no reading fits: name the labels after the longest path that exists
    k = max([k for k in range(1, len(spans) + 1) if is_file(k)] or [1])
    tokens = [line[a:b] for a, b in spans[k:]]
    bad = [t for t in tokens if label_names([t]) is None]
    if set(tokens) <= {'0', '1'}:
        return 'label %r is not in the class list (a 0/1 vector needs exactly %d values, got %d)' % (
            bad[0] if bad else tokens[0], num_classes, len(tokens))
    hint = ''
    if k == 1 and not is_file(1) and any(os.path.splitext(t)[1].lower() in IMAGE_EXTENSIONS
                                         for t in tokens):
        hint = ' (image path read as %r: no longer start of the line is an existing file)' % path_of(1)
    return 'label %r is not in the class list%s' % (bad[0], hint)


def read_label_file(labels_file, classes, images_dir=None):
    """Records of a plain label file (see the module docstring)."""
    lines = _read_text_lines(labels_file, 'label file')
    base = os.path.abspath(images_dir) if images_dir else os.path.dirname(os.path.abspath(labels_file))
    class_set = set(classes)
    vectors_allowed = not ({'0', '1'} & class_set)
    problems = ProblemList()
    records, seen = [], {}

    def label_names(tokens):
        """The class names of a line's label tokens, or None if they are not labels."""
        if vectors_allowed and len(tokens) == len(classes) and set(tokens) <= {'0', '1'}:
            return {c for c, t in zip(classes, tokens) if t == '1'}
        return set(tokens) if set(tokens) <= class_set else None

    for no, line in enumerate(lines, 1):
        spans = [m.span() for m in re.finditer(r'\S+', line)]
        if not spans or line[spans[0][0]] == '#':
            continue
        split = _split_label_line(line, spans, base, label_names, len(classes))
        if isinstance(split, str):
            problems.add(labels_file, no, None, split)
            continue
        path, names = split
        full = os.path.join(base, path)   # (an absolute path stays as it is)
        if os.path.abspath(full) in seen:
            problems.add(labels_file, no, None, 'image %r repeats line %d (one image, two label sets)'
                         % (path, seen[os.path.abspath(full)]))
            continue
        seen[os.path.abspath(full)] = no
        size = _check_image(full, (labels_file, no, None), problems)
        if size is None:
            continue
        records.append(ImageRecord(os.path.abspath(full), size[0], size[1], labels_file,
                                   labels=names, source_line=no))
    if not records and not problems:
        problems.add(labels_file, None, None, 'no images listed')
    problems.raise_if_any()
    return records
