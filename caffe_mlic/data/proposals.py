"""Object proposals with objectness scores (`caffe-mlic proposals`).

Methods
  edgeboxes (default)
      OpenCV ximgproc EdgeBoxes (Zitnick & Dollar 2014) on an edge map and an
      edge-orientation map. With --sed-model FILE the edges come from OpenCV's
      Structured Edge Detector with the model the user gives (the usual
      model.yml.gz), thinned by its edgesNms. Without a model we compute the
      edge map ourselves: the image in CIE Lab, Gaussian-smoothed, Scharr
      gradient magnitude taken as the largest over the three channels,
      divided by a high percentile of itself and clipped to [0, 1], then
      thinned by non-maximum suppression across the edge. The orientation
      map is the one StructuredEdgeDetection::computeOrientation defines,
      computed here: triangle-smooth the edge map (radius 4), take its first
      and second derivatives and set
      O = atan(Oyy * sign(-Oxy) / (Oxx + 1e-5)) mod pi.
      Scores are EdgeBoxes' own objectness scores.
  selective-search
      OpenCV ximgproc Selective Search in its fast mode. Selective Search has
      no objectness score, so the box at rank r (0-based, in OpenCV's output
      order) of the K it returns gets score 1 - r/K. OpenCV draws that order
      with C rand(), which we seed (srand(0)) per image for reproducibility.

Both run on the image scaled down, when it has more than PROPOSAL_MAX_PIXELS
(2^20, a 1024 x 1024 image), to that many (selective search also to a side
of SELECTIVE_SEARCH_MAX_SIDE, 2048 px: OpenCV's asks for about width^2 x 4
bytes, 13 GB for a 40 x 10^6 px image), and their boxes are scaled back:
their cost grows faster than the pixels (EdgeBoxes took 9 s at 2048 x 2048,
over 10 minutes at 4096 x 4096 in one OpenCV call no stop signal can cut,
and a 16384 x 16384 image ran out of memory at ~90 bytes a pixel).

Every method then applies the same hygiene (as WSDDN does): boxes are
clipped to the image, boxes with a side under --min-size pixels are dropped,
exact duplicates are removed (the best-scored copy stays), boxes are sorted by
score (descending, stable) and capped at --max-boxes.

Output: OUT_DIR/<image stem>.npz with
  boxes        (K, 4) float32  x1 y1 x2 y2, 0-based inclusive, original pixels
  scores       (K,)   float32  descending
  image_shape  (2,)   int32    height, width of the image the boxes belong to
  method       str
  settings     str      the settings.json it was computed with (JSON)
  image        str      the image file's bytes, mtime and SHA-1 (JSON)
  OUT_DIR/settings.json  the method and its settings, written first

Outputs that already exist are skipped, so a killed run resumes where it
stopped; every output is written atomically. An existing output that cannot
be read as such a file (truncated, not a .npz, arrays missing, boxes outside
its image), or that breaks it for this folder's settings (scores not
descending, duplicate boxes, more than max_boxes, a side under min_size,
another method, other recorded settings, a record of another image of the
name; no settings record once the folder's settings changed), is computed
again, and named on stderr; a kept output with
no box is reported as on the run that wrote it. A run whose settings differ
from the folder's settings.json stops before computing anything (boxes of
two methods would mix silently): choose another folder, or ``recompute``.
An output that is, through a link, one of the images is refused before
anything is written (writing it would replace the image).
Images that get no box are reported (a datalist cannot use them).
"""
import contextlib
import os
import sys

import numpy as np

from caffe_mlic.errors import MAX_LISTED, InputError, UsageError, in_the_way
from caffe_mlic.fileio import atomic_save_npz, open_regular, refuse_lost_outputs
from caffe_mlic.data.imageio import expand_images, image_size, opencv_words, read_image
from caffe_mlic.progress import progress

MIN_SIZE = 20    # px a side: the smallest box kept (and so the smallest image that can have a proposal)

METHODS = ('edgeboxes', 'selective-search')
PROPOSAL_MAX_PIXELS = 1 << 20   # the most pixels proposals are computed on (module docstring)
SELECTIVE_SEARCH_MAX_SIDE = 2048    # and selective search's longest side (its memory grows as width^2)
# EdgeBoxes is asked for twice max_boxes, a C int; no method gives an image
# anywhere near this many.
MAX_BOXES = 1000000


def check_limits(max_boxes, min_size):
    """UsageError unless 1 <= max_boxes <= MAX_BOXES and min_size >= 1."""
    if not 1 <= max_boxes <= MAX_BOXES:
        raise UsageError('max_boxes must be >= 1 and <= %d, got %d' % (MAX_BOXES, max_boxes), 'max_boxes')
    if min_size < 1:
        raise UsageError('min_size must be >= 1, got %d' % min_size, 'min_size')


# ------------------------------------------------------------ edge maps

def _conv_tri(img, r):
    """Separable triangle filter of radius r (weights 1..r+1..1, normalised)."""
    import cv2
    if r <= 0:
        return img
    k = np.concatenate([np.arange(1, r + 2), np.arange(r, 0, -1)]).astype(np.float32)
    k /= k.sum()
    return cv2.sepFilter2D(img, cv2.CV_32F, k, k, borderType=cv2.BORDER_REFLECT)


def edge_orientation(edges):
    """Edge-normal orientation in [0, pi), as StructuredEdgeDetection::computeOrientation
    (0: the edge runs vertically, pi/2: horizontally)."""
    e = _conv_tri(np.asarray(edges, np.float32), 4)
    oy, ox = np.gradient(e)
    _, oxx = np.gradient(ox)
    oyy, oxy = np.gradient(oy)
    # sign(-Oxy), but +1 where Oxy == 0 (axis-aligned edges), where a plain
    # sign would zero the numerator and call every such edge vertical
    sign = np.where(oxy > 0, -1.0, 1.0).astype(np.float32)
    o = np.arctan(oyy * sign / (oxx + 1e-5))
    return np.mod(o, np.pi).astype(np.float32)


def edge_nms(edges, orientation, radius=1, border=5, multiplier=1.01):
    """Keep a pixel only where it is a maximum across the edge (along the
    normal given by orientation), sampling neighbours bilinearly at distances
    1..radius; the `border` pixels nearest the image edge are faded out."""
    e = np.asarray(edges, np.float32)
    h, w = e.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(orientation).astype(np.float32), np.sin(orientation).astype(np.float32)
    keep = np.ones((h, w), bool)
    scaled = e * multiplier
    for d in range(-radius, radius + 1):
        if d == 0:
            continue
        keep &= scaled >= _remap_in_tiles(e, xx + d * c, yy + d * s, halo=radius + 1)
    out = np.where(keep, e, 0).astype(np.float32)
    if border > 0:
        bx = np.minimum(np.arange(w), np.arange(w)[::-1]).astype(np.float32)
        by = np.minimum(np.arange(h), np.arange(h)[::-1]).astype(np.float32)
        fade = np.minimum(np.minimum(by[:, None], bx[None, :]) / border, 1)
        out *= fade
    return out


# OpenCV's remap takes images under SHRT_MAX (32767) px a side and throws
# past it (an assertion: a traceback, or an abort in a process that loaded
# Caffe); a 70000 x 40 px image is sampled in tiles of this side.
REMAP_TILE = 8192


def _remap_in_tiles(image, map_x, map_y, halo):
    """cv2.remap(image, map_x, map_y), bilinear with the border replicated,
    for a map that moves no pixel farther than ``halo`` - 1 px: tile by
    tile, each with ``halo`` px of its neighbours, so that any size works.
    Equal to one remap: a tile's maps are shifted by whole pixels, which
    leaves OpenCV's fixed-point fractions as they were."""
    import cv2
    h, w = image.shape
    if max(h, w) <= REMAP_TILE:
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = np.empty_like(image)
    for y0 in range(0, h, REMAP_TILE):
        for x0 in range(0, w, REMAP_TILE):
            y1, x1 = min(y0 + REMAP_TILE, h), min(x0 + REMAP_TILE, w)
            ya, xa = max(y0 - halo, 0), max(x0 - halo, 0)       # the tile with its halo
            yb, xb = min(y1 + halo, h), min(x1 + halo, w)
            out[y0:y1, x0:x1] = cv2.remap(
                image[ya:yb, xa:xb], map_x[y0:y1, x0:x1] - np.float32(xa), map_y[y0:y1, x0:x1] - np.float32(ya),
                cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def gradient_edges(image_bgr, sigma=1.5, percentile=99.0):
    """Our edge map when no SED model is given: (edges in [0,1], orientation)."""
    import cv2
    img = image_bgr.astype(np.float32) / 255
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2Lab)
    lab *= np.array([1 / 100, 1 / 128, 1 / 128], np.float32)  # comparable channel ranges
    lab = cv2.GaussianBlur(lab, (0, 0), sigma)
    mag = np.zeros(img.shape[:2], np.float32)
    for ch in cv2.split(lab):
        gx = cv2.Scharr(ch, cv2.CV_32F, 1, 0)
        gy = cv2.Scharr(ch, cv2.CV_32F, 0, 1)
        mag = np.maximum(mag, cv2.magnitude(gx, gy))
    top = float(np.percentile(mag, percentile))
    edges = np.clip(mag / top, 0, 1) if top > 0 else mag
    orientation = edge_orientation(edges)
    return edge_nms(edges, orientation), orientation


def sed_edges(image_bgr, detector):
    import cv2
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    edges = detector.detectEdges(rgb)
    orientation = detector.computeOrientation(edges)
    return detector.edgesNms(edges, orientation), orientation


_SED_CACHE = {}


def _sed_detector(path):
    import cv2
    if path not in _SED_CACHE:
        if not os.path.isfile(path):
            from caffe_mlic.fileio import input_file_problem
            raise InputError('%s: SED model not found' % path if not os.path.lexists(path) else
                             input_file_problem(path, 'SED model'))
        try:
            _SED_CACHE[path] = cv2.ximgproc.createStructuredEdgeDetection(path)
        except cv2.error as e:
            raise InputError('%s: cannot load SED model: %s' % (path, str(e).strip().splitlines()[-1]))
    return _SED_CACHE[path]


# What OpenCV's structured edge detector reads from a model file, trusting
# it: a YAML file without them divided by zero (SIGFPE), and its trees'
# indices are followed unchecked.
SED_OPTIONS = ('stride', 'shrinkNumber', 'patchSize', 'patchInnerSize', 'numberOfGradientOrientations',
               'gradientSmoothingRadius', 'regFeatureSmoothingRadius', 'ssFeatureSmoothingRadius',
               'gradientNormalizationRadius', 'selfsimilarityGridSize', 'numberOfTrees', 'numberOfTreesToEvaluate')
SED_TREES = ('childs', 'featureIds', 'thresholds', 'edgeBoundaries', 'edgeBins')
SED_PROBE_SECONDS = 120     # a model whose trees loop never ends on its first image


def _sed_model_problem(path):
    """Why the SED model at ``path`` is not one OpenCV's detector can use
    (its options, its trees), or None; read with OpenCV's reader."""
    import cv2
    try:
        store = cv2.FileStorage(path, cv2.FILE_STORAGE_READ)
    except Exception as e:      # noqa: BLE001 (cv2.error, raised as the cause of a SystemError)
        return 'OpenCV cannot read it (%s)' % opencv_words(e.__cause__ or e)
    if not store.isOpened():
        return 'not a file OpenCV reads (YAML, XML or JSON)'
    options = store.getNode('options')
    if not options.isMap():
        return 'it has no "options" (OpenCV\'s model.yml.gz has them)'
    values = {}
    for name in SED_OPTIONS:
        node = options.getNode(name)
        if not node.isInt():
            return 'options.%s is %s, not a whole number' % (name, 'missing' if node.empty() else 'given')
        values[name] = int(node.real())
    radii = [name for name in SED_OPTIONS if name.endswith('Radius')]
    for name in SED_OPTIONS:
        low = 0 if name in radii else 1
        if not low <= values[name] <= 1024:
            return 'options.%s is not in [%d, 1024] (OpenCV reads it, as a 32-bit integer, as %d)' % (
                name, low, values[name])
    if values['numberOfTreesToEvaluate'] > values['numberOfTrees']:
        return 'options.numberOfTreesToEvaluate (%d) is more than options.numberOfTrees (%d)' % (
            values['numberOfTreesToEvaluate'], values['numberOfTrees'])
    if not values['shrinkNumber'] <= values['patchInnerSize'] <= values['patchSize']:
        return 'options.patchInnerSize (%d) is not between options.shrinkNumber (%d) and options.patchSize (%d)' % (
            values['patchInnerSize'], values['shrinkNumber'], values['patchSize'])
    for name in SED_TREES:
        node = store.getNode(name)
        if not node.isSeq() or node.size() == 0:
            return 'its "%s" is %s, not a list of trees' % (name, 'missing' if node.empty() else 'empty or not a list')
    return None


def check_sed_model(path):
    """InputError unless the SED model at ``path`` is one OpenCV's
    structured edge detector takes (_sed_model_problem) and finds edges
    with on a small image: tried in a forked child, since OpenCV trusts
    the file (a crash, a C++ exception where libunwind is loaded, or a loop
    past SED_PROBE_SECONDS end the child only)."""
    import signal
    from caffe_mlic.processes import in_fork
    if not os.path.isfile(path):
        _sed_detector(path)     # (what is there instead, in its words)

    def probe():
        import cv2
        signal.alarm(SED_PROBE_SECONDS)      # (default action: the child ends)
        why = _sed_model_problem(path)
        if why:
            raise ValueError(why)
        detector = cv2.ximgproc.createStructuredEdgeDetection(path)
        image = np.random.default_rng(0).random((48, 64, 3), dtype=np.float32)
        edges = detector.detectEdges(image)
        detector.edgesNms(edges, detector.computeOrientation(edges))

    def said(error):
        import cv2
        return (opencv_words(error) if isinstance(error, cv2.error) else str(error)).encode('utf-8', 'surrogateescape')
    status, told = in_fork(probe, said, stderr_into_pipe=False)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return
    if told:
        raise InputError('%s: not a SED model OpenCV can use: %s' % (path, told.decode('utf-8', 'replace')))
    signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    if signum == signal.SIGALRM:
        raise InputError('%s: not a SED model OpenCV can use: it found no edges in a 64 x 48 px image in %d s '
                         '(its trees loop?)' % (path, SED_PROBE_SECONDS))
    how = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else 'status %d' % status
    raise InputError('%s: not a SED model OpenCV can use: its structured edge detector crashed on it (%s)'
                     % (path, how))


# ------------------------------------------------------------ proposals

def clean_boxes(boxes, scores, width, height, min_size=MIN_SIZE, max_boxes=2000):
    """WSDDN hygiene on (K,4) x1,y1,x2,y2 inclusive boxes: clip, drop small,
    dedupe (best score wins), sort by score descending (stable), cap."""
    return clean_boxes_counted(boxes, scores, width, height, min_size, max_boxes)[:2]


def clean_boxes_counted(boxes, scores, width, height, min_size=MIN_SIZE, max_boxes=2000):
    """clean_boxes, and what it dropped: (boxes, scores, {'small': boxes with a
    side under min_size or a score that is not finite, 'duplicate': copies of
    a better-scored box, 'over_max': beyond the top max_boxes})."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError('%d boxes but %d scores' % (len(boxes), len(scores)))
    boxes = boxes.copy()
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width - 1)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height - 1)
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    ok = (w >= min_size) & (h >= min_size) & np.isfinite(scores)
    boxes, scores = boxes[ok], scores[ok]
    order = np.argsort(-scores, kind='stable')
    boxes, scores = boxes[order], scores[order]
    # np.unique's first index of each distinct row = its best-scored copy
    _, first = np.unique(boxes, axis=0, return_index=True)
    first.sort()
    dropped = {'small': int((~ok).sum()), 'duplicate': len(boxes) - len(first),
               'over_max': max(len(first) - max_boxes, 0)}
    boxes, scores = boxes[first][:max_boxes], scores[first][:max_boxes]
    return boxes.astype(np.float32), scores.astype(np.float32), dropped


EDGEBOXES_MIN_AREA = 9


def _edgeboxes(image_bgr, sed_model, max_raw, min_size, alpha, beta, name=None, size=None):
    """EdgeBoxes' rects and scores on ``image_bgr`` (the image, maybe scaled
    down from ``size``, its own (width, height), which messages give)."""
    import cv2
    if sed_model:
        try:
            edges, orientation = sed_edges(image_bgr, _sed_detector(sed_model))
        except cv2.error as e:      # (an image of 2 or 3 px a side: its patches do not fit)
            width, height = size or (image_bgr.shape[1], image_bgr.shape[0])
            raise InputError('%sthe SED model finds no edges in a %dx%d px image%s (OpenCV: %s)' % (
                '%s: ' % name if name else '', width, height,
                '' if size is None or size == (image_bgr.shape[1], image_bgr.shape[0]) else
                ' (scaled to %dx%d)' % (image_bgr.shape[1], image_bgr.shape[0]), opencv_words(e))) from None
    else:
        edges, orientation = gradient_edges(image_bgr)
    # (asked for boxes of at least EDGEBOXES_MIN_AREA px: below it OpenCV gives 1 x 1 boxes scored +inf,
    # which took the whole budget at --min-size 1, every one then dropped by the hygiene)
    eb = cv2.ximgproc.createEdgeBoxes(alpha=alpha, beta=beta, maxBoxes=max_raw, minScore=0.0,
                                      minBoxArea=float(max(min_size * min_size, EDGEBOXES_MIN_AREA)))
    result = eb.getBoundingBoxes(edges, orientation)
    rects, scores = result if isinstance(result, tuple) else (result, None)
    rects = np.asarray(rects, np.float64).reshape(-1, 4)
    if scores is None or len(scores) != len(rects):  # very old OpenCV: no scores
        scores = 1 - np.arange(len(rects)) / max(len(rects), 1)
    return rects, np.asarray(scores, np.float64).reshape(-1)


def _seed_libc_rand(seed):
    """OpenCV's Selective Search ranks regions with C rand(): seed it so the
    output order (hence our scores) is reproducible."""
    import ctypes
    try:
        ctypes.CDLL(None).srand(ctypes.c_uint(seed))
    except (OSError, AttributeError):  # not a libc platform: stay non-deterministic
        pass


def _selective_search(image_bgr, strategy='fast', seed=0):
    import cv2
    _seed_libc_rand(seed)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(image_bgr)
    if strategy == 'quality':
        ss.switchToSelectiveSearchQuality()
    else:
        ss.switchToSelectiveSearchFast()
    rects = np.asarray(ss.process(), np.float64).reshape(-1, 4)
    k = len(rects)
    return rects, 1 - np.arange(k) / max(k, 1)


def compute_proposals(image_bgr, method='edgeboxes', max_boxes=2000, min_size=MIN_SIZE,
                      sed_model=None, alpha=0.65, beta=0.75, name=None):
    """Proposals for one BGR uint8 image: (boxes (K,4) float32 x1,y1,x2,y2
    0-based inclusive, scores (K,) float32 descending). See the module docstring.
    ``name`` (the image's file) begins the message of an image it refuses."""
    image_bgr = np.asarray(image_bgr)
    where = '%s: ' % name if name else ''
    if image_bgr.ndim == 2:
        image_bgr = np.repeat(image_bgr[..., None], 3, 2)
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise InputError('%sexpected an HxWx3 BGR image, got shape %s' % (where, image_bgr.shape,))
    image_bgr = np.ascontiguousarray(image_bgr, dtype=np.uint8)
    h, w = image_bgr.shape[:2]
    if min(h, w) < max(min_size, 2):
        raise InputError('%sthe image is %dx%d px: smaller than the smallest box kept (%s), so it can have '
                         'no proposal' % (where, w, h, 'min_size %d px a side' % min_size if min_size >= 2 else
                                          '2 px a side: a box has two corners'))
    if method not in METHODS:
        raise UsageError('unknown method %r; choose from %s' % (method, ', '.join(METHODS)), 'method')
    scale = min(1.0, (PROPOSAL_MAX_PIXELS / float(h * w)) ** 0.5)
    if method == 'selective-search':        # (OpenCV's asks for about width^2 x 4 bytes: 13 GB at 40 x 10^6 px)
        scale = min(scale, SELECTIVE_SEARCH_MAX_SIDE / float(max(h, w)))
    if scale < 1:
        import cv2
        size = (max(2, int(w * scale)), max(2, int(h * scale)))     # (2 px a side at least: gradients need two)
        scaled = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        sx, sy = w / float(size[0]), h / float(size[1])
    else:
        scaled, sx, sy = image_bgr, 1.0, 1.0
    if method == 'edgeboxes':
        # ask for more than max_boxes: hygiene removes some; the smallest box, as it is in the scaled image
        rects, scores = _edgeboxes(scaled, sed_model, max(2 * max_boxes, 100), max(1, int(min_size / max(sx, sy))),
                                   alpha, beta, name=name, size=(w, h))
    else:
        import cv2
        try:
            rects, scores = _selective_search(scaled)
        except cv2.error as e:
            raise InputError('%sselective search failed on the %dx%d px image (OpenCV: %s)' % (
                where, w, h, opencv_words(e))) from None
    # OpenCV rects are x, y, w, h; ours are inclusive corners, in the image's own pixels
    boxes = np.stack([rects[:, 0] * sx, rects[:, 1] * sy,
                      (rects[:, 0] + rects[:, 2]) * sx - 1, (rects[:, 1] + rects[:, 3]) * sy - 1], 1)
    return clean_boxes(np.round(boxes) if scale < 1 else boxes, scores, w, h, min_size, max_boxes)


def output_path(out_dir, image_path):
    return os.path.join(out_dir, os.path.splitext(os.path.basename(image_path))[0] + '.npz')


def read_proposal_file(path, image_shape=None, image=None, allow_empty=False):
    """(boxes (K, 4) float64, scores (K,) float64) of one proposal file (the
    format of the module docstring), checked: an InputError naming ``path``
    for a file np.load cannot read (not a .npz, truncated, object arrays,
    which would need pickle), missing arrays, shapes other than (K, 4) and
    (K,) with K >= 1 (K = 0 too with ``allow_empty``: what `proposals`
    writes for an image with no box), values that are not finite, and, given the image's
    ``image_shape`` (height, width; ``image`` names it), proposals of an image
    of another size or boxes outside it."""
    def bad(message):
        return InputError('%s: %s' % (path, message))

    try:
        with open_regular(path, 'rb') as f:      # a FIFO would block, a device never end
            magic = f.read(4)
    except OSError as e:
        raise bad('cannot read it: %s' % (e.strerror or e))
    if magic not in (b'PK\x03\x04', b'PK\x05\x06'):     # a zip (of .npy files), or an empty one
        raise bad('unreadable: not a .npz (numpy\'s zip of arrays "boxes" and "scores")')
    try:
        with np.load(path, allow_pickle=False) as z:
            if 'boxes' not in z.files or 'scores' not in z.files:
                raise bad('needs arrays "boxes" and "scores", has %s' % (', '.join(z.files) or 'none'))
            arrays = {name: z[name] for name in ('boxes', 'scores', 'image_shape') if name in z.files}
    except InputError:
        raise
    except ValueError as e:
        if 'allow_pickle' in str(e) or 'Object arrays' in str(e):
            raise bad('holds object arrays (Python objects, read only with pickle), not numbers')
        raise bad('unreadable: %s' % e)
    except Exception as e:  # noqa: BLE001  zip / format / OS errors of many types
        raise bad('unreadable: %s' % (getattr(e, 'strerror', None) or e))
    for name, values in arrays.items():
        if values.dtype.kind not in 'iuf':
            raise bad('"%s" must hold numbers, got %s values' % (name, values.dtype))
    boxes, scores = arrays['boxes'].astype(np.float64), arrays['scores'].astype(np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (len(boxes),):
        raise bad('boxes must be (K, 4) and scores (K,), got %s and %s' % (boxes.shape, scores.shape))
    if len(boxes) == 0 and not allow_empty:
        raise bad('no proposals (0 boxes): need K >= 1')
    if not (np.isfinite(boxes).all() and np.isfinite(scores).all()):
        raise bad('boxes or scores are not finite')
    if image_shape is None:
        return boxes, scores
    height, width = (int(v) for v in image_shape[:2])
    shape = arrays.get('image_shape')
    if shape is not None:
        if shape.shape != (2,):
            raise bad('image_shape must be (height, width), got %s' % (shape.tolist(),))
        if tuple(int(v) for v in shape) != (height, width):
            raise bad('proposals of a %dx%d image, but %s is %dx%d'
                      % (int(shape[1]), int(shape[0]), image or 'the image', width, height))
    outside = np.flatnonzero((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width - 1)
                             | (boxes[:, 3] > height - 1) | (boxes[:, 2] < boxes[:, 0])
                             | (boxes[:, 3] < boxes[:, 1]))
    if outside.size:
        b = boxes[outside[0]]
        raise bad('box %d (%g, %g, %g, %g) is not inside the %dx%d image%s%s'
                  % (outside[0], b[0], b[1], b[2], b[3], width, height, ' %s' % image if image else '',
                     '' if outside.size == 1 else ' (and %d more)' % (outside.size - 1)))
    return boxes, scores


def save_proposals(out_path, boxes, scores, image_shape, method, settings=None, image=None):
    """Write one image's proposal file (the format of the module docstring),
    atomically. ``settings`` (the folder's, as settings.json holds them)
    and ``image`` (image_record of the image file) are recorded in it too:
    a file of other settings, or of another image of the same name, is
    told apart whatever settings.json says later (record_problem)."""
    import json
    extra = {name: np.array(json.dumps(value, sort_keys=True))
             for name, value in (('settings', settings), ('image', image)) if value is not None}
    atomic_save_npz(out_path, boxes=np.asarray(boxes, np.float32), scores=np.asarray(scores, np.float32),
                    image_shape=np.array(image_shape[:2], np.int32), method=np.array(method), **extra)


def image_record(path):
    """What tells an image file's contents apart: its size, modification
    time and SHA-1 (the digest decides when the others differ, as after a
    copy)."""
    import hashlib
    from caffe_mlic.data.imageio import open_image_file     # (a FIFO put there since: named, not waited on)
    with open_image_file(path) as f:
        info = os.fstat(f.fileno())
        digest = hashlib.sha1(f.read()).hexdigest()
    return {'bytes': info.st_size, 'mtime_ns': info.st_mtime_ns, 'sha1': digest}


def record_problem(npz_path, image_path=None, settings=None, strict=False):
    """Why the proposal file ``npz_path`` is not the one for ``image_path``
    (its image record) and ``settings`` (its settings record), or None. A
    file without a settings record (of an older version, or a foreign tool)
    is one only when ``strict`` (its folder's settings.json was written
    since files carry the record)."""
    import hashlib
    import json
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            recorded = {name: json.loads(str(z[name])) for name in ('settings', 'image') if name in z.files}
    except Exception:  # noqa: BLE001  (zip, JSON or array errors of many types)
        return '%s: its "settings" or "image" record is unreadable' % npz_path
    if settings:
        mine = recorded.get('settings')
        if isinstance(mine, dict):
            differ = sorted(k for k in settings if k in mine and mine[k] != settings[k])
            if differ:
                return '%s: computed with %s; this folder\'s settings are %s' % (
                    npz_path, ', '.join('%s %s' % (k, json.dumps(mine[k])) for k in differ),
                    ', '.join('%s %s' % (k, json.dumps(settings[k])) for k in differ))
        elif strict:
            return '%s: holds no record of the settings it was computed with (an older file), in a folder ' \
                   'whose settings changed since' % npz_path
    image = recorded.get('image')
    if image_path is not None and isinstance(image, dict):
        try:
            # the SHA-1 decides whenever the size matches: a copy with cp -p, tar or rsync -t keeps the
            # mtime, and BMP, PPM or TIFF files of one size have one byte count
            same = (os.stat(image_path).st_size == image.get('bytes') and
                    image_record(image_path)['sha1'] == image.get('sha1'))
        except OSError:
            return None         # (an unreadable image: said by its reader)
        if not same:
            return '%s: computed for another image of the name %s (its contents differ)' % (
                npz_path, os.path.basename(image_path))
    return None


# `proposals`' default settings, as settings.json holds them (what detect computes its cache with)
DEFAULT_SETTINGS = dict(method='edgeboxes', max_boxes=2000, min_size=MIN_SIZE, sed_model=None, alpha=0.65, beta=0.75)


def process_image(image_path, out_path, method='edgeboxes', max_boxes=2000, min_size=MIN_SIZE,
                  sed_model=None, alpha=0.65, beta=0.75, settings=None):
    """Compute and atomically save one image's proposals (``settings``: the
    folder's; recorded in the file with the image's record); returns the
    box count."""
    img = read_image(image_path)
    boxes, scores = compute_proposals(img, method, max_boxes, min_size, sed_model, alpha, beta,
                                      name=image_path)
    save_proposals(out_path, boxes, scores, img.shape, method, settings, image_record(image_path))
    return len(boxes)


def _worker_init():
    import cv2
    cv2.setNumThreads(1)  # the processes are the parallelism


def _pool_worker(conn, work, parent_pid):
    """A --jobs process: does ``work`` (_worker) on each job it is sent (None:
    stop) and sends the result; ends when the main process is gone (EOF),
    at once if that is SIGKILLed mid-image (it went on computing, and wrote
    its output into a folder the user may have removed since)."""
    import signal
    from caffe_mlic.processes import die_with_parent
    die_with_parent(parent_pid)
    # A Ctrl-C in the terminal reaches the whole process group: the main
    # process stops the run. SIGINT was blocked across the start (_JobPool),
    # so one that came while this process imported is ignored, not a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    _worker_init()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        try:
            conn.send(work(job))
        except (BrokenPipeError, OSError):
            return


class _JobPool:
    """``jobs`` spawned processes, one job in flight each, fed and read through
    one Pipe per process (multiprocessing.connection.wait); results come in
    any order.

    Not multiprocessing.Pool: its queues' locks are named POSIX semaphores
    (/dev/shm/sem.mp-*) that spawned children open by name, so with spawn
    they are unlinked only by multiprocessing's resource tracker, which dies
    with the rest when the process group is SIGKILLed: every such kill left
    them in /dev/shm. A fork context unlinks them at creation, but OpenCV's
    thread pools do not survive a fork reliably. Pipes have no name: nothing
    is left, whatever ends the run. A process that dies fails only its image
    (the Pool would wait for it forever) and a new one takes its place."""

    def __init__(self, jobs, work=None):
        import multiprocessing
        self.ctx = multiprocessing.get_context('spawn')
        self.size, self.work = jobs, work or _worker
        self.workers = []           # [process, connection, job in flight or None]

    def _start(self):
        from caffe_mlic.processes import own_multiprocessing_temp, start_without_sigint
        own_multiprocessing_temp()
        ours, theirs = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(target=_pool_worker, args=(theirs, self.work, os.getpid()), name='proposals job',
                                daemon=True)
        start_without_sigint(proc)
        theirs.close()
        self.workers.append([proc, ours, None])

    def results(self, job_list):
        """Run every job of ``job_list``; yields the work's result for each:
        (image path, box count or None, error or None)."""
        from multiprocessing import connection
        todo = list(reversed(job_list))
        try:
            while todo or any(w[2] is not None for w in self.workers):
                for w in [w for w in self.workers if w[2] is None and not w[0].is_alive()]:
                    w[1].close()            # died idle, after its last result: replaced
                    self.workers.remove(w)
                while todo and len(self.workers) < self.size:
                    self._start()
                for w in self.workers:
                    if w[2] is None and todo:
                        w[2] = todo.pop()
                        try:
                            w[1].send(w[2])
                        except OSError:     # gone: found dead below
                            pass
                busy = [w for w in self.workers if w[2] is not None]
                ready = connection.wait([w[1] for w in busy] + [w[0].sentinel for w in busy])
                for w in busy:
                    proc, conn, job = w
                    if conn not in ready and proc.sentinel not in ready:
                        continue
                    try:
                        # (a result sent just before dying is still read)
                        result = conn.recv() if conn.poll() else None
                    except (EOFError, OSError):     # it died
                        result = None
                    if result is not None:
                        w[2] = None
                        yield result
                    elif conn in ready or not proc.is_alive():
                        yield job[0], None, '%s: %s' % (job[0], self._death(proc))
                        conn.close()
                        self.workers.remove(w)
        finally:
            self.close()

    @staticmethod
    def _death(proc):
        import signal
        proc.join(5)
        code = proc.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = 'signal %d' % -code
            return 'its worker process (%d) was killed by %s while computing it' % (proc.pid, name)
        return 'its worker process (%d) exited with code %s while computing it' % (proc.pid, code)

    def close(self):
        for proc, conn, _ in self.workers:
            try:
                conn.send(None)
            except OSError:
                pass
        for proc, conn, job in self.workers:
            proc.join(1 if job is None else 0)
            if proc.is_alive():         # (stopped in the middle of an image: a Ctrl-C, an error)
                proc.kill()
                proc.join(5)
            conn.close()
        self.workers = []


def _worker(job):
    image_path, out_path, kw = job
    try:
        return image_path, process_image(image_path, out_path, **kw), None
    except InputError as e:
        message = str(e)
        return image_path, None, message if message.startswith(image_path) else '%s: %s' % (
            image_path, message)
    except OSError as e:   # writing the output: a folder in the way, a full disk
        return image_path, None, '%s: cannot write %s: %s' % (
            image_path, out_path, e.strerror or e)
    except Exception as e:  # noqa: BLE001  (report and continue with the others)
        return image_path, None, '%s: %s: %s' % (image_path, type(e).__name__, e)


# ------------------------------------------------------------ many images

SETTINGS_FILE = 'settings.json'
RECORDS = 'files_record_settings'       # in settings.json: see claim_folder


def _output_problem(out_path, image_path, settings=None, strict=False):
    """(why the existing output ``out_path`` of ``image_path`` cannot be kept,
    or None; its box count, or None). Cannot be kept: what read_proposal_file
    refuses (truncated, not a .npz, not ours, boxes of an image of another
    size), and, given the folder's ``settings``, what breaks the format this
    run writes: scores not descending, duplicate boxes, more boxes than
    max_boxes, a side under min_size, another method recorded. We write
    outputs atomically, but an interrupted copy or another tool can leave such
    a file; skipped, it would fail `datalist build` later, or mix silently."""
    try:
        width, height = image_size(image_path)
    except (OSError, ValueError):   # an unreadable image: its output is checked without its size
        shapes = [None]
    else:
        # the header's size is before a JPEG's EXIF rotation, which OpenCV applies
        shapes = [(height, width)] + ([(width, height)] if width != height else [])
    first = None
    for shape in shapes:
        try:
            boxes, scores = read_proposal_file(out_path, shape, image_path if shape else None,
                                               allow_empty=True)
            break
        except InputError as e:
            first = first or e
    else:
        return str(first), None
    why = _format_problem(out_path, boxes, scores, settings) or record_problem(out_path, image_path, settings,
                                                                              strict)
    return why, len(boxes)


def _format_problem(out_path, boxes, scores, settings):
    """Why readable proposals break the format `proposals` writes with
    ``settings`` (see _output_problem), or None."""
    if not settings:
        return None
    if len(boxes) > settings.get('max_boxes', len(boxes)):
        return '%s: holds %d boxes, over this folder\'s max_boxes %d' % (
            out_path, len(boxes), settings['max_boxes'])
    if np.any(np.diff(scores) > 0):
        i = int(np.flatnonzero(np.diff(scores) > 0)[0])
        return '%s: scores are not in descending order (score %d is %g, score %d is %g)' % (
            out_path, i, scores[i], i + 1, scores[i + 1])
    if len(boxes) and len(np.unique(boxes, axis=0)) < len(boxes):
        return '%s: holds %d duplicate boxes' % (out_path, len(boxes) - len(np.unique(boxes, axis=0)))
    min_size = settings.get('min_size')
    if min_size and len(boxes):
        small = np.flatnonzero((boxes[:, 2] - boxes[:, 0] + 1 < min_size)
                               | (boxes[:, 3] - boxes[:, 1] + 1 < min_size))
        if small.size:
            return '%s: box %d has a side under this folder\'s min_size %d px' % (
                out_path, small[0], min_size)
    try:
        with np.load(out_path, allow_pickle=False) as z:
            method = str(z['method']) if 'method' in z.files else None
    except Exception:  # noqa: BLE001  (read once already: a method array np.load cannot take)
        return '%s: its "method" array is unreadable' % out_path
    if settings.get('method') and method is not None and method != settings['method']:
        return '%s: records method %r, but this folder\'s settings.json says %r' % (
            out_path, method, settings['method'])
    return None


def _folder_settings(out_dir):
    """The settings of the proposals in out_dir: its settings.json, else (a
    folder of an older version) the method its first file records, else None."""
    import glob
    import json
    path = os.path.join(out_dir, SETTINGS_FILE)
    if os.path.isfile(path):
        from caffe_mlic.fileio import read_json
        try:
            return read_json(path)
        except InputError as e:
            raise InputError('%s; remove it, or the folder' % e)
    # regular files only: a FIFO would block np.load (what it is, is said where it is read)
    existing = sorted(p for p in glob.glob(os.path.join(glob.escape(out_dir), '*.npz')) if os.path.isfile(p))
    if existing:
        try:
            with np.load(existing[0]) as npz:
                return {'method': str(npz['method'])} if 'method' in npz.files else None
        except (OSError, ValueError):
            return None
    return None


def check_folder(out_dir, settings, recompute, flag='--recompute'):
    """UsageError when out_dir is a file, or holds proposals made with other
    ``settings`` (unless ``recompute``); writes nothing."""
    import json
    from caffe_mlic.fileio import refuse_non_folders
    refuse_non_folders([out_dir], 'output')
    kept = os.path.join(out_dir, SETTINGS_FILE)
    if os.path.lexists(kept) and not os.path.isfile(kept):     # (a FIFO there: the write of the settings hung)
        raise UsageError(in_the_way(kept, 'the settings of the folder\'s proposals are kept'), 'output')
    old = _folder_settings(out_dir) if os.path.isdir(out_dir) else None
    differ = {k: (old[k], settings[k]) for k in settings if old and k in old and old[k] != settings[k]}
    if differ and not recompute:
        raise UsageError('%s holds proposals computed with %s; this run asks for %s. Their boxes '
                         'would mix: choose another output folder, or pass %s to replace them'
                         % (out_dir, ', '.join('%s %s' % (k, json.dumps(a)) for k, (a, b) in differ.items()),
                            ', '.join('%s %s' % (k, json.dumps(b)) for k, (a, b) in differ.items()), flag),
                         'output')


def claim_folder(out_dir, settings, recompute, flag='--recompute', images=None):
    """Make out_dir the folder of ``settings`` (check_folder first); with
    ``recompute`` its proposal files go: all of them, or given ``images``
    (a shard's) only theirs, so that shards run one after another or side
    by side never remove each other's."""
    import glob
    from caffe_mlic.fileio import atomic_write_json
    check_folder(out_dir, settings, recompute, flag)
    old = _folder_settings(out_dir) if os.path.isfile(os.path.join(out_dir, SETTINGS_FILE)) else None
    os.makedirs(out_dir, exist_ok=True)
    if recompute:
        for npz in (glob.glob(os.path.join(glob.escape(out_dir), '*.npz')) if images is None
                    else [output_path(out_dir, p) for p in images]):
            with contextlib.suppress(FileNotFoundError):
                os.remove(npz)
    # RECORDS: the files of these settings carry their settings record (a new folder, or settings
    # changed since an older version wrote it): one without is then not taken as of these settings
    same = old is not None and all(old.get(k) == v for k, v in settings.items())
    records = not same or bool(old.get(RECORDS))
    atomic_write_json(os.path.join(out_dir, SETTINGS_FILE), dict(settings, **{RECORDS: True} if records else {}),
                      sort_keys=True)


def recorded_settings(npz_path):
    """The settings record of a proposal file (a dict), or None (none, or
    unreadable: record_problem says which)."""
    import json
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            found = json.loads(str(z['settings'])) if 'settings' in z.files else None
    except Exception:  # noqa: BLE001  (zip, JSON or array errors of many types)
        return None
    return found if isinstance(found, dict) else None


def folder_settings(out_dir):
    """(settings, strict) of a proposals folder: its settings.json less the
    records flag (None without one), and whether a file without a settings
    record is one of another run (record_problem)."""
    path = os.path.join(out_dir, SETTINGS_FILE)
    if not os.path.isfile(path):
        return None, False
    found = _folder_settings(out_dir)
    if not isinstance(found, dict):
        return None, False
    return {k: v for k, v in found.items() if k != RECORDS}, bool(found.get(RECORDS))


def _check_output_places(out_dir, images, mine, sed_model=None):
    """UsageError, before anything is written, when out_dir is a folder the
    images are in (the .npz files and settings.json would go among them; a
    folder below theirs is fine: folders are not read recursively), when
    an image's output path is a folder (nothing could be written there), or
    when an output (an image's .npz or settings.json) already is, through a
    link (symbolic or hard), one of the images or the SED model: outputs are written
    atomically, which follows a link and replaces its target, and an output
    that is not a proposal file is computed again, so the input would go."""
    from caffe_mlic.fileio import refuse_overwriting
    real_out = os.path.realpath(out_dir)
    shared = sorted(d for d in {os.path.dirname(p) or '.' for p in images} if os.path.realpath(d) == real_out)
    if shared:
        raise UsageError('%s is the folder of the input images%s: their .npz files and %s would go '
                         'among them; choose another output folder'
                         % (out_dir, '' if shared == [out_dir] else ' (%s)' % ', '.join(shared),
                            SETTINGS_FILE), 'output')
    folders = [(output_path(out_dir, p), p) for p in mine if os.path.isdir(output_path(out_dir, p))]
    if folders:
        raise UsageError('%s is a folder, where the proposals of %s go: remove or rename it%s'
                         % (folders[0][0], folders[0][1], '' if len(folders) == 1 else
                            ' (and %d more such folders)' % (len(folders) - 1)), 'output')
    # a FIFO or device there: reading it would block (or never end), writing it too
    others = [(output_path(out_dir, p), p) for p in mine
              if os.path.exists(output_path(out_dir, p)) and not os.path.isfile(output_path(out_dir, p))]
    if others:
        raise InputError(in_the_way(others[0][0], 'the proposals of %s go' % others[0][1], 'remove or rename it%s'
                                    % ('' if len(others) == 1 else ' (and %d more)' % (len(others) - 1))))
    refuse_overwriting([os.path.join(out_dir, SETTINGS_FILE)] + [output_path(out_dir, p) for p in mine],
                       list(images) + [sed_model], 'output')


def run(images, out_dir, method='edgeboxes', max_boxes=2000, min_size=MIN_SIZE, sed_model=None,
        jobs=1, shard=(0, 1), show_progress=True, log=None, alpha=0.65, beta=0.75,
        recompute=False):
    """Process a list of images; returns (n_done, n_skipped, failures [(path, msg)],
    empty [paths that got no box]). A failed image is written to ``log`` as it
    happens and the others go on."""
    log = log or sys.stderr
    check_limits(max_boxes, min_size)
    if jobs < 1:
        raise UsageError('jobs must be >= 1, got %d' % jobs, 'jobs')
    given = images
    images = expand_images(images)
    if not images:
        raise InputError('no image files in %s' % ', '.join(given))
    stems = {}
    for p in images:
        stems.setdefault(output_path(out_dir, p), []).append(p)
    clashes = [v for v in stems.values() if len(v) > 1]
    if clashes:
        raise InputError('images share a file stem, so their outputs would collide: %s'
                         % '; '.join(', '.join(v) for v in clashes[:5]))
    if sed_model:
        check_sed_model(sed_model)  # fail once, up front, on a bad model
    kw = dict(method=method, max_boxes=max_boxes, min_size=min_size, sed_model=sed_model,
              alpha=alpha, beta=beta)
    i, n = shard
    mine = images[i::n]  # strided: every shard gets a similar mix
    _check_output_places(out_dir, images, mine, sed_model)
    settings = dict(kw, sed_model=os.path.abspath(sed_model) if sed_model else None)
    claim_folder(out_dir, settings, recompute, images=mine if n > 1 else None)
    strict = folder_settings(out_dir)[1]
    todo, bad, kept_empty = [], [], []
    for p in mine:
        out = output_path(out_dir, p)
        if not os.path.lexists(out):
            todo.append(p)
            continue
        why, count = _output_problem(out, p, settings, strict)
        if why:
            todo.append(p)
            bad.append(why)
        elif count == 0:   # kept: reported as on the run that wrote it
            kept_empty.append(p)
    for why in bad[:MAX_LISTED]:
        log.write('%s; computing it again\n' % why)
    if len(bad) > MAX_LISTED:
        log.write('... and %d more unreadable or foreign outputs; computing them again\n'
                  % (len(bad) - MAX_LISTED))
    skipped = len(mine) - len(todo)
    job_list = [(p, output_path(out_dir, p), dict(kw, settings=settings)) for p in todo]
    bar = progress(total=len(job_list), desc='proposals', unit='img', enabled=show_progress)
    failures, empty = [], list(kept_empty)
    done = 0

    def handle(result):
        nonlocal done
        path, count, err = result
        if err is not None:
            failures.append((path, err))
            if show_progress:   # else the error at the end lists it, once
                bar.write(err, file=log)
        else:
            done += 1
            if count == 0:
                empty.append(path)
        bar.update()

    # Selective search runs in a job process even with one job: one OpenCV
    # call takes up to 20 s on a 1-Mpx image, deaf to stop signals in the
    # process that makes it; this one waits on the pipe and stops at once.
    if job_list and (method == 'selective-search' or (jobs > 1 and len(job_list) > 1)):
        import contextlib
        # (closed at once, its processes ended, also when handle raises)
        with contextlib.closing(_JobPool(min(jobs, len(job_list))).results(job_list)) as results:
            for result in results:
                handle(result)
    else:
        for job in job_list:
            handle(_worker(job))
    bar.close()
    failed = {path for path, _ in failures}
    refuse_lost_outputs([out for path, out, _ in job_list if path not in failed], 'proposals')
    return done, skipped, failures, empty
