"""Readers of image-level ground truth: Pascal VOC, MS-COCO and plain label files.

Each reader returns the class list and one ImageRecord per image, with the
image's absolute path, its size, its ground-truth objects (boxes 0-based
inclusive in original pixels) and, for plain label files, its label set.
Every problem found is collected and raised together as AnnotationError; each
message names the file and the line, XML element or JSON id at fault.

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
  annotations (iscrowd=1) are kept as objects marked difficult.
- Plain label file (NUS-WIDE style): `image_path label label ...` per line;
  labels are class names from the class file, or, when a line's labels are
  exactly C tokens all 0 or 1 (and no class is named "0" or "1"), a 0/1 vector
  in class-file order. A line with only a path is an image with no labels.
  Blank lines and lines starting with '#' are skipped. Relative image paths
  are resolved against --images DIR when given, else against the label
  file's folder.
"""
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.ppm', '.webp')
MAX_LISTED = 20  # problems shown in one error message


class AnnotationError(ValueError):
    """Bad ground truth; .problems lists every message."""

    def __init__(self, problems):
        self.problems = list(problems)
        shown = self.problems[:MAX_LISTED]
        more = len(self.problems) - len(shown)
        msg = '\n  '.join(shown)
        if len(self.problems) > 1:
            msg = '%d problems:\n  %s' % (len(self.problems), msg)
        if more > 0:
            msg += '\n  ... and %d more' % more
        super().__init__(msg)


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
    source: str               # where it came from, for messages
    objects: List[GtObject] = field(default_factory=list)
    labels: Optional[set] = None  # class names (plain label files); None: from objects

    def label_names(self, difficult='include'):
        if self.labels is not None:
            return set(self.labels)
        return {o.name for o in self.objects if difficult == 'include' or not o.difficult}


def label_vector(record, classes, difficult='include'):
    names = record.label_names(difficult)
    return np.array([1 if c in names else 0 for c in classes], np.uint8)


class _Problems(list):
    def raise_if_any(self):
        if self:
            raise AnnotationError(self)


# ------------------------------------------------------------------ helpers

def _read_text_lines(path, what):
    """The lines of a UTF-8 text file; AnnotationError naming ``what`` otherwise."""
    try:
        with open(path, encoding='utf-8') as f:
            return f.read().splitlines()
    except OSError as e:
        raise AnnotationError(['%s: cannot read %s: %s' % (path, what, e.strerror or e)])
    except UnicodeDecodeError as e:
        raise AnnotationError(['%s: %s is not UTF-8 text: %s' % (path, what, e)])


def read_class_list(path):
    """One class name per line (blank lines ignored)."""
    lines = _read_text_lines(path, 'class list')
    problems = _Problems()
    classes, seen = [], {}
    for no, line in enumerate(lines, 1):
        name = line.strip()
        if not name:
            continue
        if len(name.split()) != 1:
            problems.append('%s:%d: class name %r contains whitespace' % (path, no, name))
        elif name in seen:
            problems.append('%s:%d: class %r repeats line %d' % (path, no, name, seen[name]))
        else:
            seen[name] = no
            classes.append(name)
    if not classes and not problems:
        problems.append('%s: class list is empty' % path)
    problems.raise_if_any()
    return classes


def image_size(path):
    """(width, height) from the image header; OSError/ValueError if unreadable."""
    from PIL import Image
    with Image.open(path) as im:
        return im.size


def _check_image(path, where, problems, expect=None):
    """Absolute path of an existing, readable image of the expected size, or None."""
    if not os.path.isfile(path):
        problems.append('%s: image not found: %s' % (where, path))
        return None
    try:
        size = image_size(path)
    except Exception as e:  # noqa: BLE001  PIL raises several types for bad files
        problems.append('%s: cannot read image %s: %s' % (where, path, e))
        return None
    if expect is not None and tuple(size) != tuple(expect):
        problems.append('%s: says the image is %dx%d but %s is %dx%d'
                        % (where, expect[0], expect[1], path, size[0], size[1]))
        return None
    return size


# ------------------------------------------------------------------ VOC

def _xml_text(el, tag, where, problems, cast=str, required=True, default=None):
    child = el.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            problems.append('%s: <%s> missing' % (where, tag))
        return default
    text = child.text.strip()
    try:
        return cast(text)
    except ValueError:
        problems.append('%s: <%s> is %r, not a number' % (where, tag, text))
        return default


def _find_voc_image(root, image_id, filename):
    jpeg = os.path.join(root, 'JPEGImages')
    if filename:
        return os.path.join(jpeg, filename)
    for ext in IMAGE_EXTENSIONS:
        p = os.path.join(jpeg, image_id + ext)
        if os.path.isfile(p):
            return p
    return os.path.join(jpeg, image_id + '.jpg')


def read_voc(root, image_set, classes=None):
    """(classes, records) of ROOT/ImageSets/Main/<image_set>.txt."""
    root = os.path.abspath(root)
    if classes is None:
        own = os.path.join(root, 'classes.txt')
        classes = read_class_list(own) if os.path.isfile(own) else list(VOC_CLASSES)
        class_source = own if os.path.isfile(own) else 'the 20 Pascal VOC classes'
    else:
        class_source = 'the class list'
    class_set = set(classes)
    set_file = os.path.join(root, 'ImageSets', 'Main', image_set + '.txt')
    try:
        with open(set_file, encoding='utf-8') as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise AnnotationError(['%s: cannot read image set: %s' % (set_file, e.strerror or e)])
    problems = _Problems()
    ids, seen = [], {}
    for no, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1:
            problems.append('%s:%d: expected one image id, got %d fields' % (set_file, no, len(parts)))
        elif parts[0] in seen:
            problems.append('%s:%d: image id %s repeats line %d' % (set_file, no, parts[0], seen[parts[0]]))
        else:
            seen[parts[0]] = no
            ids.append((no, parts[0]))
    if not ids and not problems:
        problems.append('%s: image set is empty' % set_file)
    problems.raise_if_any()

    records = []
    for no, image_id in ids:
        xml_path = os.path.join(root, 'Annotations', image_id + '.xml')
        if not os.path.isfile(xml_path):
            problems.append('%s: not found (image id %s, %s line %d)' % (xml_path, image_id, set_file, no))
            continue
        try:
            ann = ET.parse(xml_path).getroot()
        except ET.ParseError as e:
            problems.append('%s: unreadable XML: %s' % (xml_path, e))
            continue
        except OSError as e:
            problems.append('%s: cannot read: %s' % (xml_path, e.strerror or e))
            continue
        n_before = len(problems)
        size = ann.find('size')
        if size is None:
            problems.append('%s: <size> missing' % xml_path)
            continue
        w = _xml_text(size, 'width', xml_path + ': <size>', problems, int)
        h = _xml_text(size, 'height', xml_path + ': <size>', problems, int)
        if w is not None and h is not None and (w < 1 or h < 1):
            problems.append('%s: <size> %dx%d is not a valid image size' % (xml_path, w, h))
        filename = _xml_text(ann, 'filename', xml_path, problems, required=False)
        objects = []
        for k, obj in enumerate(ann.findall('object'), 1):
            where = '%s: <object> #%d' % (xml_path, k)
            name = _xml_text(obj, 'name', where, problems)
            if name is None:
                continue
            where = '%s: <object> #%d <name>%s</name>' % (xml_path, k, name)
            if name not in class_set:
                problems.append('%s: class not in %s' % (where, class_source))
                continue
            difficult = _xml_text(obj, 'difficult', where, problems, int, required=False, default=0)
            bb = obj.find('bndbox')
            if bb is None:
                problems.append('%s: <bndbox> missing' % where)
                continue
            coords = [_xml_text(bb, t, where + ' <bndbox>', problems, float)
                      for t in ('xmin', 'ymin', 'xmax', 'ymax')]
            if None in coords or w is None or h is None:
                continue
            x1, y1, x2, y2 = coords
            if not (1 <= x1 <= x2 <= w and 1 <= y1 <= y2 <= h):
                problems.append('%s <bndbox>: box (%g,%g,%g,%g) is not inside the %dx%d image '
                                '(VOC boxes are 1-based: need 1 <= xmin <= xmax <= width, same for y)'
                                % (where, x1, y1, x2, y2, w, h))
                continue
            objects.append(GtObject(name, (x1 - 1, y1 - 1, x2 - 1, y2 - 1), bool(difficult)))
        if len(problems) > n_before:
            continue
        image_path = _find_voc_image(root, image_id, filename)
        if _check_image(image_path, xml_path, problems, (w, h)) is None:
            continue
        records.append(ImageRecord(image_path, w, h, xml_path, objects))
    problems.raise_if_any()
    return list(classes), records


# ------------------------------------------------------------------ COCO

def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(value)
    return value


def read_coco(instances_json, images_dir, classes=None):
    """(classes, records) of a COCO instances file; images under images_dir."""
    src = instances_json
    images_dir = os.path.abspath(images_dir)
    try:
        with open(src, encoding='utf-8') as f:
            data = json.load(f)
    except OSError as e:
        raise AnnotationError(['%s: cannot read: %s' % (src, e.strerror or e)])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(['%s: not valid JSON: %s' % (src, e)])
    problems = _Problems()
    if not isinstance(data, dict):
        raise AnnotationError(['%s: expected a JSON object with images, annotations, categories' % src])
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            problems.append('%s: "%s" missing or not a list' % (src, key))
    problems.raise_if_any()

    cats = {}
    for k, cat in enumerate(data['categories']):
        if not isinstance(cat, dict) or not isinstance(cat.get('id'), int) or not isinstance(cat.get('name'), str):
            problems.append('%s: categories[%d]: needs an integer "id" and a string "name"' % (src, k))
            continue
        if cat['id'] in cats:
            problems.append('%s: category id %d appears twice' % (src, cat['id']))
            continue
        cats[cat['id']] = cat['name']
    problems.raise_if_any()
    if classes is None:
        classes = [cats[i] for i in sorted(cats)]
        if len(set(classes)) != len(classes):
            problems.append('%s: category names are not unique' % src)
    else:
        for cid, name in sorted(cats.items()):
            if name not in classes:
                problems.append('%s: category id %d (%s): class not in the class list' % (src, cid, name))
    if not data['images']:
        problems.append('%s: "images" is empty' % src)
    problems.raise_if_any()

    records, by_id = [], {}
    for k, img in enumerate(data['images']):
        if not isinstance(img, dict) or not isinstance(img.get('id'), int):
            problems.append('%s: images[%d]: needs an integer "id"' % (src, k))
            continue
        iid = img['id']
        where = '%s: image id %d' % (src, iid)
        if iid in by_id:
            problems.append('%s: appears twice in "images"' % where)
            continue
        fname, w, h = img.get('file_name'), img.get('width'), img.get('height')
        if not isinstance(fname, str) or not fname:
            problems.append('%s: "file_name" missing' % where)
            continue
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            problems.append('%s (%s): "width"/"height" must be positive integers' % (where, fname))
            continue
        path = os.path.join(images_dir, fname)
        if _check_image(path, '%s (%s)' % (where, fname), problems, (w, h)) is None:
            continue
        rec = ImageRecord(path, w, h, where)
        by_id[iid] = rec
        records.append(rec)

    for k, ann in enumerate(data['annotations']):
        if not isinstance(ann, dict):
            problems.append('%s: annotations[%d] is not an object' % (src, k))
            continue
        aid = ann.get('id', 'annotations[%d]' % k)
        iid, cid, bbox = ann.get('image_id'), ann.get('category_id'), ann.get('bbox')
        where = '%s: annotation id %s (image id %s)' % (src, aid, iid)
        if iid not in by_id:
            if not any(isinstance(i, dict) and i.get('id') == iid for i in data['images']):
                problems.append('%s: image_id not in "images"' % where)
            continue  # else the image itself was bad and is already reported
        if cid not in cats:
            problems.append('%s: category_id %s not in "categories"' % (where, cid))
            continue
        rec = by_id[iid]
        try:
            x, y, bw, bh = (float(_number(v)) for v in bbox)
        except (TypeError, ValueError):
            problems.append('%s: "bbox" must be 4 numbers [x, y, w, h], got %r' % (where, bbox))
            continue
        if bw < 0 or bh < 0 or x < -1 or y < -1 or x + bw > rec.width + 1 or y + bh > rec.height + 1:
            problems.append('%s: bbox [%g, %g, %g, %g] is outside the %dx%d image'
                            % (where, x, y, bw, bh, rec.width, rec.height))
            continue
        x1 = min(max(x, 0.0), rec.width - 1)
        y1 = min(max(y, 0.0), rec.height - 1)
        x2 = min(max(x + bw - 1, x1), rec.width - 1)
        y2 = min(max(y + bh - 1, y1), rec.height - 1)
        rec.objects.append(GtObject(cats[cid], (x1, y1, x2, y2), bool(ann.get('iscrowd', 0))))
    problems.raise_if_any()
    return list(classes), records


# ------------------------------------------------------------------ plain labels

def read_label_file(labels_file, classes, images_dir=None):
    """Records of a plain label file (see the module docstring)."""
    lines = _read_text_lines(labels_file, 'label file')
    base = os.path.abspath(images_dir) if images_dir else os.path.dirname(os.path.abspath(labels_file))
    class_set = set(classes)
    vectors_allowed = not ({'0', '1'} & class_set)
    problems = _Problems()
    records = []
    for no, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith('#'):
            continue
        where = '%s:%d' % (labels_file, no)
        path, tokens = parts[0], parts[1:]
        if vectors_allowed and len(tokens) == len(classes) and set(tokens) <= {'0', '1'}:
            names = {c for c, t in zip(classes, tokens) if t == '1'}
        else:
            bad = [t for t in tokens if t not in class_set]
            if bad:
                hint = ''
                if set(tokens) <= {'0', '1'}:
                    hint = ' (a 0/1 vector needs exactly %d values, got %d)' % (len(classes), len(tokens))
                problems.append('%s: label %r is not in the class list%s' % (where, bad[0], hint))
                continue
            names = set(tokens)
        full = path if os.path.isabs(path) else os.path.join(base, path)
        size = _check_image(full, where, problems)
        if size is None:
            continue
        records.append(ImageRecord(os.path.abspath(full), size[0], size[1], where, labels=names))
    if not records and not problems:
        problems.append('%s: no images listed' % labels_file)
    problems.raise_if_any()
    return records
