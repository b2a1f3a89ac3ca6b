"""Synthetic multi-label detection data in Pascal VOC layout (`caffe-mlic synth`).

Each class is a shape drawn with its own texture family; the two colours of
every object are random, so colour alone never identifies the class. Objects
vary in scale, position and rotation and may occlude each other (at most half
of an object is hidden); distractor strokes and jagged blobs that belong to
no class clutter a textured, noisy background.

Layout written under OUT_DIR (as Pascal VOC):
    JPEGImages/<id>.jpg
    Annotations/<id>.xml           <object><name>, <difficult>, <bndbox> 1-based
    ImageSets/Main/{train,val,trainval,test}.txt
    ImageSets/Main/<cls>_{train,val,trainval,test}.txt   flags 1 / 0 / -1
    classes.txt                    one class name per line
A box is the extent of the object's *visible* pixels (VOC convention).
`difficult` is 1 when less than 60% of the object is visible; `occluded` is 1
when any part of it is hidden.
"""
import contextlib
import math
import os
import sys
import xml.etree.ElementTree as ET

import numpy as np

from caffe_mlic.errors import RunError, UsageError
from caffe_mlic.fileio import atomic_write
from caffe_mlic.progress import progress

# shape -> texture family. Order = class order.
SHAPES = (
    ('circle', 'stripes'),
    ('triangle', 'checks'),
    ('square', 'dots'),
    ('star', 'noise'),
    ('cross', 'gradient'),
    ('ring', 'diagonal'),
    ('ellipse', 'grid'),
    ('hexagon', 'waves'),
)
SHAPE_NAMES = tuple(s for s, _ in SHAPES)
SPLITS = ('train', 'val', 'test')
MIN_VISIBLE = 0.5     # a placement that hides more of an earlier object is retried
DIFFICULT_BELOW = 0.6  # visible fraction under which an object is "difficult"




# ----------------------------------------------------------------- drawing

# Bounds of the options (a synthetic set is a miniature: past these it only
# fills the disk or the memory).
MAX_IMAGES, MAX_SIDE, MAX_CLUTTER, MAX_OBJECTS = 100000, 4096, 100, 50

def _rot(points, angle):
    c, s = math.cos(angle), math.sin(angle)
    pts = np.asarray(points, np.float64)
    return np.stack([pts[:, 0] * c - pts[:, 1] * s, pts[:, 0] * s + pts[:, 1] * c], 1)


def _regular(n, r, phase=0.0):
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([r * np.cos(a), r * np.sin(a)], 1)


def _shape_mask(kind, shape_hw, cx, cy, r, angle, rng):
    """Anti-aliased uint8 mask of one shape of radius ~r centred at (cx, cy)."""
    import cv2
    h, w = shape_hw
    mask = np.zeros((h, w), np.uint8)
    sh = 4  # sub-pixel bits for cv2 drawing
    f = 1 << sh

    def poly(pts):
        pts = _rot(pts, angle) + (cx, cy)
        cv2.fillPoly(mask, [np.round(pts * f).astype(np.int32)], 255, cv2.LINE_AA, sh)

    centre = (int(round(cx * f)), int(round(cy * f)))
    if kind == 'circle':
        cv2.circle(mask, centre, int(round(r * f)), 255, -1, cv2.LINE_AA, sh)
    elif kind == 'ring':
        cv2.circle(mask, centre, int(round(r * f)), 255, -1, cv2.LINE_AA, sh)
        cv2.circle(mask, centre, int(round(r * rng.uniform(0.45, 0.6) * f)), 0, -1, cv2.LINE_AA, sh)
    elif kind == 'ellipse':
        axes = (int(round(r * f)), int(round(r * rng.uniform(0.4, 0.65) * f)))
        cv2.ellipse(mask, centre, axes, math.degrees(angle), 0, 360, 255, -1, cv2.LINE_AA, sh)
    elif kind == 'triangle':
        pts = _regular(3, r, -math.pi / 2)
        pts[:, 0] *= rng.uniform(0.85, 1.15)  # not always equilateral
        poly(pts)
    elif kind == 'square':
        a = r / math.sqrt(2)
        poly([(-a, -a), (a, -a), (a, a), (-a, a)])
    elif kind == 'hexagon':
        poly(_regular(6, r))
    elif kind == 'star':
        outer = _regular(5, r, -math.pi / 2)
        inner = _regular(5, r * rng.uniform(0.38, 0.5), -math.pi / 2 + math.pi / 5)
        poly(np.stack([outer, inner], 1).reshape(-1, 2))
    elif kind == 'cross':
        t = r * rng.uniform(0.28, 0.4)
        poly([(-r, -t), (r, -t), (r, t), (-r, t)])
        poly([(-t, -r), (t, -r), (t, r), (-t, r)])
    else:
        raise ValueError(kind)
    return mask


def _random_colour(rng):
    return rng.uniform(0, 255, 3)


def _colour_pair(rng):
    """Two random colours that differ enough for the texture to show."""
    while True:
        a, b = _random_colour(rng), _random_colour(rng)
        if np.abs(a - b).sum() > 150:
            return a, b


def _value_noise(rng, h, w, cells):
    """Smooth random field in [0,1]: a coarse random grid upsampled bicubically."""
    import cv2
    gh, gw = max(2, int(round(h / cells))), max(2, int(round(w / cells)))
    grid = rng.uniform(0, 1, (gh, gw)).astype(np.float32)
    field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, 0, 1)


def _texture(family, shape_hw, cx, cy, r, angle, rng):
    """(h,w) blend weights in [0,1] of the object's texture, in its own rotated frame."""
    h, w = shape_hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    u = ((xx - cx) * c + (yy - cy) * s) / r  # object coordinates, radius 1
    v = (-(xx - cx) * s + (yy - cy) * c) / r
    period = rng.uniform(0.25, 0.5)
    if family == 'stripes':
        t = np.sin(2 * np.pi * u / period) > 0
    elif family == 'diagonal':
        t = np.sin(2 * np.pi * (u + v) / (period * 1.4)) > 0
    elif family == 'checks':
        t = (np.floor(u / period) + np.floor(v / period)) % 2
    elif family == 'dots':
        du = u / period - np.round(u / period)
        dv = v / period - np.round(v / period)
        t = du * du + dv * dv < rng.uniform(0.06, 0.12)
    elif family == 'grid':
        du = np.abs(u / period - np.round(u / period))
        dv = np.abs(v / period - np.round(v / period))
        t = np.minimum(du, dv) < 0.12
    elif family == 'waves':
        t = np.sin(2 * np.pi * (u + 0.15 * np.sin(2 * np.pi * v / period)) / (period * 0.8)) > 0
    elif family == 'gradient':
        t = np.clip((u + 1) / 2, 0, 1)
    elif family == 'noise':
        # blotchy: high-contrast value noise at the object's scale
        t = _value_noise(rng, h, w, max(2.0, r * 0.25)) > 0.5
    else:
        raise ValueError(family)
    return t.astype(np.float32)


def _blend(img, alpha, colour_img):
    a = alpha[..., None]
    img *= 1 - a
    img += a * colour_img


def _background(rng, h, w):
    """Low-frequency colour field + mid-frequency blotches + per-pixel noise."""
    import cv2
    coarse = rng.uniform(0, 255, (3, 3, 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    for cells in (rng.uniform(6, 14), rng.uniform(20, 40)):
        blot = _value_noise(rng, h, w, cells) - 0.5
        img += blot[..., None] * rng.uniform(20, 70, 3).astype(np.float32)
    img += rng.normal(0, 6, (h, w, 3)).astype(np.float32)
    return img


def _distractor(img, owner, rng, max_side, thin):
    """A stroke (polyline) or a jagged blob: shapes of no class."""
    import cv2
    h, w = owner.shape
    colour = tuple(float(c) for c in _random_colour(rng))
    mask = np.zeros((h, w), np.uint8)
    if thin or rng.uniform() < 0.5:
        n = int(rng.integers(2, 6))
        start = rng.uniform((0, 0), (w, h))
        steps = rng.normal(0, max_side * 0.25, (n, 2))
        pts = np.cumsum(np.vstack([start, steps]), 0)
        thickness = int(rng.integers(1, 3 if thin else 6))
        cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 255, thickness, cv2.LINE_AA)
    else:
        n = int(rng.integers(7, 13))
        rad = rng.uniform(0.05, 0.15) * max_side
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = rad * rng.uniform(0.35, 1.0, n)
        c = rng.uniform((0, 0), (w, h))
        pts = c + np.stack([radii * np.cos(ang), radii * np.sin(ang)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 255, cv2.LINE_AA)
    alpha = mask.astype(np.float32) / 255
    _blend(img, alpha, np.array(colour, np.float32))
    owner[mask >= 128] = -1


def render_image(rng, classes, width, height, size_range, n_clutter):
    """Draw one image. Returns (bgr uint8, objects): objects are dicts with
    name, box (0-based inclusive x1,y1,x2,y2 of visible pixels), visible, difficult."""
    h, w = height, width
    img = _background(rng, h, w)
    owner = np.full((h, w), -1, np.int32)
    short = min(w, h)
    n_before = int(rng.integers(0, n_clutter + 1)) if n_clutter else 0
    for _ in range(n_before):
        _distractor(img, owner, rng, short, thin=False)
    owner[:] = -1  # clutter drawn before objects hides nothing

    placed = []  # (name, full_area)
    for name in classes:
        kind, family = name, dict(SHAPES)[name]
        for _attempt in range(30):
            r = rng.uniform(*size_range) * short / 2
            cx = rng.uniform(r, w - r)
            cy = rng.uniform(r, h - r)
            angle = rng.uniform(0, 2 * math.pi)
            # the shape's own randomness is drawn from a child rng so a retried
            # placement does not shift the rest of the image's random stream
            shape_rng = np.random.default_rng(rng.integers(1 << 63))
            mask = _shape_mask(kind, (h, w), cx, cy, r, angle, shape_rng)
            solid = mask >= 128
            area = int(solid.sum())
            if area < 16:
                continue
            ok = True
            for k, (_, full) in enumerate(placed):
                left = np.count_nonzero((owner == k) & ~solid)
                if left < MIN_VISIBLE * full:
                    ok = False
                    break
            if ok:
                break
        else:
            continue  # no room left for this object
        c1, c2 = _colour_pair(rng)
        t = _texture(family, (h, w), cx, cy, r, angle, shape_rng)
        colour_img = c1 + t[..., None] * (c2 - c1)
        colour_img += rng.normal(0, 8, (h, w, 3)).astype(np.float32)
        _blend(img, mask.astype(np.float32) / 255, colour_img.astype(np.float32))
        owner[solid] = len(placed)
        placed.append((name, area))

    for _ in range(n_clutter - n_before):
        _distractor(img, owner, rng, short, thin=True)  # thin strokes over objects

    img += rng.normal(0, 4, (h, w, 3)).astype(np.float32)
    bgr = np.clip(np.round(img), 0, 255).astype(np.uint8)
    objects = []
    for k, (name, full) in enumerate(placed):
        ys, xs = np.nonzero(owner == k)
        if len(xs) == 0:
            continue
        visible = len(xs) / full
        objects.append({
            'name': name,
            'box': (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())),
            'visible': round(float(visible), 3),
            'occluded': int(visible < 0.999),
            'difficult': int(visible < DIFFICULT_BELOW),
        })
    return bgr, objects


# ----------------------------------------------------------------- VOC files

def voc_xml(filename, width, height, objects):
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'JPEGImages'
    ET.SubElement(root, 'filename').text = filename
    src = ET.SubElement(root, 'source')
    ET.SubElement(src, 'database').text = 'caffe-mlic synthetic'
    size = ET.SubElement(root, 'size')
    for tag, val in (('width', width), ('height', height), ('depth', 3)):
        ET.SubElement(size, tag).text = str(val)
    ET.SubElement(root, 'segmented').text = '0'
    for o in objects:
        el = ET.SubElement(root, 'object')
        ET.SubElement(el, 'name').text = o['name']
        ET.SubElement(el, 'pose').text = 'Unspecified'
        ET.SubElement(el, 'truncated').text = '0'
        ET.SubElement(el, 'occluded').text = str(o['occluded'])
        ET.SubElement(el, 'difficult').text = str(o['difficult'])
        bb = ET.SubElement(el, 'bndbox')
        x1, y1, x2, y2 = o['box']
        for tag, val in zip(('xmin', 'ymin', 'xmax', 'ymax'), (x1, y1, x2, y2)):
            ET.SubElement(bb, tag).text = str(val + 1)  # VOC is 1-based
    ET.indent(root)
    return ET.tostring(root, encoding='unicode') + '\n'


SPLIT_TOLERANCE = 0.01    # 0.33,0.33,0.33 is thirds; 0.5,0.5,0.5 is a mistake


def check_split(split):
    """UsageError unless ``split`` is three finite fractions >= 0 (train,
    val, test) whose sum is 1 within SPLIT_TOLERANCE (then rescaled to 1)."""
    text = ','.join('%g' % f if isinstance(f, (int, float)) else repr(f) for f in split)
    if len(split) != 3 or not all(isinstance(f, (int, float)) and math.isfinite(f) and f >= 0 for f in split):
        raise UsageError('split needs three non-negative fractions train,val,test, got %s' % text, 'split')
    if abs(sum(split) - 1) > SPLIT_TOLERANCE + 1e-9:
        raise UsageError('split needs three non-negative fractions train,val,test that sum to 1, got %s '
                         '(sum %g)' % (text, sum(split)), 'split')


def _split_counts(n, fractions):
    fr = np.asarray(fractions, np.float64)
    fr = fr / fr.sum()
    counts = np.floor(fr * n).astype(int)
    # largest remainders get the leftover images
    for i in np.argsort(-(fr * n - counts), kind='stable')[: n - counts.sum()]:
        counts[i] += 1
    return counts


def make_synthetic_voc(out_dir, n_images, n_classes=6, objects_per_image=(1, 4),
                       size_range=(0.15, 0.45), image_size=(384, 288), clutter=4,
                       seed=0, split=(0.6, 0.2, 0.2), force=False, show_progress=True, log=None):
    """Write a synthetic VOC-layout data set; returns the class-name list.

    Deterministic given ``seed`` (and the other arguments). Written into a
    hidden folder beside ``out_dir`` and moved into place once complete
    (staged_set): an interrupted run leaves no partial set, and ``force``
    replaces an older set only then."""
    import cv2
    if not 2 <= n_classes <= len(SHAPES):
        raise UsageError('n_classes must be in 2..%d (a multi-label set needs two; shape types: %s), '
                         'got %d' % (len(SHAPES), ', '.join(SHAPE_NAMES), n_classes), 'n_classes')
    if not 1 <= n_images <= MAX_IMAGES:
        raise UsageError('n_images must be in 1..%d, got %d' % (MAX_IMAGES, n_images), 'n_images')
    if not 0 <= seed < 2 ** 63:
        raise UsageError('seed must be in 0..2^63-1, got %d' % seed, 'seed')
    lo, hi = objects_per_image
    if not 1 <= lo <= hi:
        raise UsageError('objects_per_image must be (LO, HI) with 1 <= LO <= HI, got %d-%d'
                         % (lo, hi), 'objects_per_image')
    smin, smax = size_range
    if not 0 < smin <= smax <= 1:
        raise UsageError('size_range must be (A, B) with 0 < A <= B <= 1, got %g-%g'
                         % (smin, smax), 'size_range')
    width, height = image_size
    if not (32 <= width <= MAX_SIDE and 32 <= height <= MAX_SIDE):
        raise UsageError('image_size must be between 32x32 and %dx%d, got %dx%d'
                         % (MAX_SIDE, MAX_SIDE, width, height), 'image_size')
    check_split(split)
    if not 0 <= clutter <= MAX_CLUTTER:
        raise UsageError('clutter must be in 0..%d, got %d' % (MAX_CLUTTER, clutter), 'clutter')
    if hi > MAX_OBJECTS:
        raise UsageError('objects_per_image must be at most %d, got %d' % (MAX_OBJECTS, hi),
                         'objects_per_image')

    classes = list(SHAPE_NAMES[:n_classes])
    rng = np.random.default_rng(seed)
    # Classes are drawn from a stream of shuffled "bags" of all classes, so
    # class counts stay balanced while co-occurrence is random.
    counts = rng.integers(lo, hi + 1, n_images)
    n_obj = int(counts.sum())
    bags = [rng.permutation(n_classes) for _ in range(n_obj // n_classes + 1)]
    stream = np.concatenate(bags)[:n_obj]
    order = rng.permutation(n_images)
    split_counts = _split_counts(n_images, split)
    image_seeds = rng.integers(1 << 63, size=n_images)

    with staged_set(out_dir, force, log) as stage:
        ids = ['%06d' % (i + 1) for i in range(n_images)]
        present = {}  # id -> {class: flag}
        pos = placed = 0
        for i, image_id in enumerate(progress(ids, desc='synth', unit='img', enabled=show_progress)):
            names = [classes[k] for k in stream[pos:pos + counts[i]]]
            pos += counts[i]
            img_rng = np.random.default_rng(image_seeds[i])
            bgr, objects = render_image(img_rng, names, width, height, (smin, smax), clutter)
            placed += len(objects)
            ok, buf = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
            with atomic_write(os.path.join(stage, 'JPEGImages', image_id + '.jpg'), 'wb') as f:
                f.write(buf.tobytes())
            with atomic_write(os.path.join(stage, 'Annotations', image_id + '.xml')) as f:
                f.write(voc_xml(image_id + '.jpg', width, height, objects))
            flags = {}
            for o in objects:
                flag = 0 if o['difficult'] else 1
                flags[o['name']] = max(flags.get(o['name'], flag), flag)
            present[image_id] = flags

        sets = {}
        start = 0
        for name, c in zip(SPLITS, split_counts):
            sets[name] = sorted(ids[j] for j in order[start:start + c])
            start += c
        sets['trainval'] = sorted(sets['train'] + sets['val'])
        main = os.path.join(stage, 'ImageSets', 'Main')
        for name, members in sets.items():
            with atomic_write(os.path.join(main, name + '.txt')) as f:
                f.write(''.join(m + '\n' for m in members))
            for cls in classes:
                with atomic_write(os.path.join(main, '%s_%s.txt' % (cls, name))) as f:
                    f.write(''.join('%s %2d\n' % (m, present[m].get(cls, -1)) for m in members))
        with atomic_write(os.path.join(stage, 'classes.txt')) as f:
            f.write(''.join(c + '\n' for c in classes))
    if placed < n_obj:      # (an object that finds no room in its image is left out, by design)
        (log or sys.stderr).write('note: %d of the %d objects drawn (%d-%d an image) found no room in their '
                                  '%dx%d image and were left out: %.1f an image on average; larger images or a '
                                  'smaller --size-range hold more\n' % (n_obj - placed, n_obj, lo, hi, width,
                                                                        height, placed / n_images))
    return classes


# ----------------------------------------------------------------- staging

# Everything a synthetic set of either task puts in its folder. A folder
# that holds nothing else is a set (or a set's remains) and may be
# replaced; anything else in it is someone's file, and synth refuses.
SET_ENTRIES = frozenset({
    'JPEGImages', 'Annotations', 'ImageSets', 'classes.txt',                       # detection
    'top', 'gts_for_participants', 'gts_eroded_for_participants', 'hard',         # seg
    'palette.txt', 'train.txt', 'val.txt', 'test.txt', 'synth.json', '.synth-files'})


MANIFEST = '.synth-files'     # in a set: the files synth wrote there, one relative path a line


def write_manifest(folder):
    """List every file under ``folder`` (a finished set) in its MANIFEST."""
    from caffe_mlic.fileio import atomic_write
    names = sorted(os.path.relpath(os.path.join(top, f), folder)
                   for top, _, files in os.walk(folder) for f in files if f != MANIFEST or top != folder)
    with atomic_write(os.path.join(folder, MANIFEST)) as f:
        f.write(''.join(name + '\n' for name in names))


def foreign_in_set(target):
    """The paths (relative to ``target``) inside its set that synth did not
    write there (not in its MANIFEST), sorted; a set without a MANIFEST (of
    an older version, or no set) cannot tell its files from others: None."""
    try:
        with open(os.path.join(target, MANIFEST), encoding='utf-8', errors='surrogateescape') as f:
            listed = set(f.read().splitlines())
    except OSError:
        return None
    parents = {os.path.dirname(name) for name in listed}
    parents |= {p for name in parents for p in _ancestors(name)}
    foreign = []
    for top, dirs, files in os.walk(target):
        rel = os.path.relpath(top, target)
        for d in dirs:
            path = os.path.normpath(os.path.join(rel, d))
            if os.path.islink(os.path.join(top, d)) or path not in parents:
                foreign.append(path)
        dirs[:] = [d for d in dirs if os.path.normpath(os.path.join(rel, d)) in parents
                   and not os.path.islink(os.path.join(top, d))]
        foreign += [p for p in (os.path.normpath(os.path.join(rel, f)) for f in files)
                    if p not in listed and p != MANIFEST]
    return sorted(foreign)


def _ancestors(path):
    while path:
        yield path
        path = os.path.dirname(path)


def staging_paths(out_dir):
    """(target, staging folder, previous set's folder) for ``out_dir``: the
    target with symlinks resolved, and two hidden folders beside it in the
    same parent, so that moving one into place is a rename."""
    target = os.path.realpath(out_dir)
    parent, name = os.path.split(target)
    if not name:
        raise UsageError('%s cannot be a data set\'s folder: it is the root' % out_dir, 'out_dir')
    return target, os.path.join(parent, '.%s.partial' % name), os.path.join(parent, '.%s.old' % name)


def _locked_elsewhere(path):
    """True if another process holds the lock on folder ``path`` (a synth
    writing its set there now)."""
    import fcntl
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def _remove(path):
    import shutil
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _clear_leftovers(out_dir, target, stage, old, log):
    """Undo what an interrupted run left beside ``target``: its unfinished
    set is removed; a previous set it had moved aside is put back when the
    new one never arrived, else removed. Each said on ``log``."""
    if os.path.lexists(stage):
        if _locked_elsewhere(stage):
            raise RunError('%s is being written by another synth now (its unfinished set: %s)'
                           % (out_dir, stage))
        _remove(stage)
        log.write('synth: removed %s, the unfinished set of an interrupted run\n' % stage)
    if os.path.lexists(old):
        if os.path.lexists(target):
            _drop_old_set(old, target, log)
            log.write('synth: removed %s, the set an interrupted run had just replaced\n' % old)
        else:
            os.rename(old, target)
            log.write('synth: restored %s from %s, where an interrupted run had moved it\n' % (target, old))
    log.flush()


def _exchange(a, b):
    """Swap folders ``a`` and ``b`` in one step (Linux renameat2 with
    RENAME_EXCHANGE); False where the system or file system cannot."""
    import ctypes
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _sync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(stage, target, old, log):
    """Move the finished set in ``stage`` to ``target``: a rename when
    ``target`` is absent or an empty folder; over an older set, an atomic
    exchange (or, where there is none, two renames that _clear_leftovers can
    undo), then the older set is dropped (_drop_old_set)."""
    if not os.path.lexists(target):
        os.rename(stage, target)
    elif not os.listdir(target) and _try_rename(stage, target):
        pass
    elif _exchange(stage, target):
        _drop_old_set(stage, target, log)     # (stage now holds the older set)
    else:
        os.rename(target, old)
        try:
            os.rename(stage, target)
        except OSError:
            os.rename(old, target)
            raise
        _drop_old_set(old, target, log)
    _sync_dir(os.path.dirname(target))


def _drop_old_set(path, target, log):
    """Remove the older set at ``path`` (moved out of ``target``'s place)
    file by file, as its MANIFEST lists them, never through a link to a
    folder: a file someone put into the set while the new one was written
    is not listed, and is kept. Whatever is left is given a visible name
    beside ``target`` (said on ``log``)."""
    listed = None
    with contextlib.suppress(OSError):
        with open(os.path.join(path, MANIFEST), encoding='utf-8', errors='surrogateescape') as f:
            listed = set(f.read().splitlines()) | {MANIFEST}
    for top, dirs, files in os.walk(path, topdown=False):      # (links to folders are not entered)
        for name in files:
            if listed is not None and os.path.relpath(os.path.join(top, name), path) in listed:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(top, name))
        for name in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join(top, name))      # (only an emptied one; never a link)
    with contextlib.suppress(OSError):
        os.rmdir(path)
    if not os.path.lexists(path):
        return
    kept, n = target + '.kept', 1
    while os.path.lexists(kept):
        n += 1
        kept = '%s.kept%d' % (target, n)
    os.rename(path, kept)
    left = sorted(os.path.relpath(os.path.join(top, name), kept) for top, dirs, files in os.walk(kept)
                  for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))])
    log.write('synth: kept %s: the older set held files synth had not written there (%s%s), put there while the '
              'new set was written; the rest of the older set was removed\n'
              % (kept, ', '.join(left[:3]) or 'folders', ' ...' if len(left) > 3 else ''))
    log.flush()


def _try_rename(a, b):
    try:
        os.rename(a, b)          # over an empty folder: allowed, and one step
        return True
    except OSError:
        return False


def holds_data_set(out_dir):
    """True if ``out_dir`` already holds a synthetic set (seg or detection)."""
    for sub in ('top', 'gts_for_participants', 'Annotations'):
        d = os.path.join(out_dir, sub)
        if os.path.isdir(d) and os.listdir(d):
            return True
    return False


@contextlib.contextmanager
def staged_set(out_dir, force=False, log=None):
    """Yield a hidden staging folder beside ``out_dir`` (``.NAME.partial``
    in the same parent) to write a whole data set into; when the block
    succeeds the set takes ``out_dir``'s place in one rename (an older set
    there is replaced only then), else the staging folder is removed.

    First, what a killed run left is cleared up (said on ``log``, default
    stderr): its staging folder is removed (one that another running synth
    holds is an error), an older set it had moved aside is put back. Then
    an older set in ``out_dir`` is refused unless ``force``; ``out_dir``
    must be absent, empty or hold nothing but a synthetic set
    (SET_ENTRIES): other files are refused, never replaced."""
    import fcntl
    log = sys.stderr if log is None else log
    target, stage, old = staging_paths(out_dir)
    if os.path.lexists(target) and not os.path.isdir(target):
        raise UsageError('%s exists and is not a folder' % out_dir, 'out_dir')
    os.makedirs(os.path.dirname(target), exist_ok=True)
    _clear_leftovers(out_dir, target, stage, old, log)
    if not force and holds_data_set(target):
        raise UsageError('%s already holds a data set; it is overwritten only with force' % out_dir, 'force')
    if os.path.isdir(target):
        foreign = sorted(set(os.listdir(target)) - SET_ENTRIES)
        if not foreign and os.listdir(target):
            foreign = foreign_in_set(target)
            if foreign is None:
                raise UsageError('%s holds no list of the files synth wrote there (%s: a set of an older version, '
                                 'or not a set): it cannot tell them from yours, so it replaces nothing; move '
                                 'your files out and remove the folder yourself' % (out_dir, MANIFEST), 'out_dir')
        if foreign:
            raise UsageError('%s holds %s%s, not part of a synthetic data set: synth writes a folder of '
                             'its own (a new or empty one)%s'
                             % (out_dir, foreign[0], ' and %d more' % (len(foreign) - 1) if len(foreign) > 1
                                else '', '; move them out before --force replaces the set' if force else ''),
                             'out_dir')
    os.mkdir(stage)
    fd = os.open(stage, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield stage
        write_manifest(stage)
        from caffe_mlic.processes import raise_swallowed_signal
        raise_swallowed_signal()        # (a stop signal a library swallowed: the set is not published)
        _commit(stage, target, old, log)
    except BaseException:
        if os.path.lexists(stage):
            import shutil
            shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        os.close(fd)
