"""One batch of SegmentationData: which crops it holds and how an image and
its label map become one crop.

Planning (main process; SegBatchPlanner, from ``seed``): the image order as
MultiLabelProposalData's (shuffled every epoch with ``shuffle``, wrapping
around), and per image a scale factor drawn from ``scale_factors``, the
crop's relative position (u, v) in [0, 1), and flip coins (left-right with
``mirror``, up-down with ``vertical_flip``). TEST: file order, factor 1, the
centre crop, no flips.

Transform (load_pair; in the workers, or in-process with ``workers: 0``):

1. read the image (BGR) and the label map (labelmaps.read_label_map: indices
   or palette colours, checked against num_classes), same size or an error;
   kept decoded, per process, up to ``cache_mb`` (PairCache: a crop of an
   aerial tile would otherwise decode the whole tile, ~140 ms a megapixel);
2. resize by the factor: the image bilinearly, the labels by nearest neighbour
   (kept too: each factor of a tile is a PairCache entry, since resizing a
   1000-px tile takes 2-4 ms, most of a batch's time without it);
3. where the result is smaller than the crop, pad it at the bottom / right:
   the image with the mean (0 after subtraction), the labels with 255;
4. crop crop_size x crop_size at y0 = int(v * (H - crop + 1)), x0 likewise;
5. flip as planned; write (pixel - mean) * scale into channels 0-2 and the
   labels (as float) into channel 3 of the batch's (n, 4, crop, crop) slot.
"""
import cv2
import numpy as np

from caffe_mlic.data.imageio import decode_file, why_undecodable
from caffe_mlic.data.labelmaps import IGNORE_LABEL, LabelMapError, load_palette, read_label_map
from .minibatch import BatchPlanner, DataLoadError


class SegBatchPlanner(BatchPlanner):
    """BatchPlanner's image order; per image (factor, u, v, hflip, vflip).
    A plan is (indices, crops) with crops an (n, 5) float64 array."""

    def __init__(self, n_images, batch_size, train, shuffle, scale_factors, mirror, vertical_flip, seed):
        super().__init__(n_images, batch_size, train, shuffle, [1.0], mirror, seed)
        self.scale_factors = np.asarray(scale_factors if train else [1.0], np.float64)
        self.vertical_flip = train and vertical_flip

    def next(self):
        indices, _, hflips = super().next()
        n = len(indices)
        crops = np.empty((n, 5))
        if self.train:
            crops[:, 0] = self.scale_factors[self.rng.integers(len(self.scale_factors), size=n)]
            crops[:, 1:3] = self.rng.random((n, 2))
        else:
            crops[:, 0], crops[:, 1:3] = 1.0, 0.5
        crops[:, 3] = hflips
        crops[:, 4] = (self.rng.random(n) < 0.5) if self.vertical_flip else 0
        return indices, crops


def read_pair(image_path, label_path, where, labels):
    """The image (BGR uint8) and its label map (uint8), same size, or a
    DataLoadError naming ``where`` (datalist:line) and the file.
    ``labels``: (num_classes, palette, label_format, unknown_color)."""
    image = decode_file(image_path)
    if image is None:
        raise DataLoadError('%s: cannot read image %s (%s)' % (where, image_path, why_undecodable(image_path)))
    num_classes, palette, label_format, unknown = labels
    try:
        label = read_label_map(label_path, num_classes, palette, label_format, unknown, where + ': label')
    except LabelMapError as e:
        raise DataLoadError(str(e)) from None
    if label.shape != image.shape[:2]:
        raise DataLoadError('%s: the label map %s is %dx%d but the image %s is %dx%d'
                            % (where, label_path, label.shape[1], label.shape[0], image_path,
                               image.shape[1], image.shape[0]))
    return image, label


class PairCache:
    """Decoded (image, label) pairs by their paths, the least recently used
    dropped past ``budget`` bytes (0: none kept). Files are read once per
    process: one changed during training is not read again."""

    def __init__(self, budget):
        from collections import OrderedDict
        self.budget, self.used, self.pairs = budget, 0, OrderedDict()

    def get(self, image_path, label_path, where, labels, factor=1.0):
        """The pair, resized by ``factor`` (resize_pair): each factor of a
        tile is kept as its own entry, so a crop at 0.75 or 1.25 does not
        resize the whole tile again (the same arrays as resizing it anew)."""
        key = (image_path, label_path, factor)
        pair = self.pairs.get(key)
        if pair is not None:
            self.pairs.move_to_end(key)
            return pair
        if factor == 1:
            pair = read_pair(image_path, label_path, where, labels)
        else:
            pair = resize_pair(*self.get(image_path, label_path, where, labels), factor)
        self._keep(key, pair)
        return pair

    def _keep(self, key, pair):
        size = pair[0].nbytes + pair[1].nbytes
        if size <= self.budget:
            for value in pair:
                value.flags.writeable = False        # a crop must never write into the cached tile
            self.pairs[key] = pair
            self.used += size
            while self.used > self.budget:
                _, (image, label) = self.pairs.popitem(last=False)
                self.used -= image.nbytes + label.nbytes


_CACHES = {}


def pair_cache(cache_mb):
    """This process's PairCache of ``cache_mb`` MiB."""
    if cache_mb not in _CACHES:
        _CACHES[cache_mb] = PairCache(int(cache_mb * 2 ** 20))
    return _CACHES[cache_mb]


def resize_pair(image, label, factor):
    """The pair resized by ``factor``: the image bilinearly, the labels by
    nearest neighbour, to int(side * factor) (at least 1)."""
    if factor == 1:
        return image, label
    h, w = max(1, int(image.shape[0] * factor)), max(1, int(image.shape[1] * factor))
    return (cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, (w, h), interpolation=cv2.INTER_NEAREST))


def crop_window(image, label, crop, u, v):
    """The crop x crop window of the (resized) pair, before padding (see the
    module notes): (image part, label part, rows, cols) where the real
    pixels fill rows x cols at the top left of the window; the rest is
    padding."""
    h, w = label.shape
    y0 = int(v * (max(h, crop) - crop + 1))
    x0 = int(u * (max(w, crop) - crop + 1))
    rows, cols = min(h - y0, crop), min(w - x0, crop)
    return image[y0:y0 + rows, x0:x0 + cols], label[y0:y0 + rows, x0:x0 + cols], rows, cols


def load_pair(image_path, label_path, where, crop_plan, crop, labels, mean, scale, out, cache):
    """The pair from ``cache`` (a PairCache) at its factor, crop_window, flips,
    normalisation into out (4, crop, crop)."""
    factor, u, v, hflip, vflip = crop_plan
    image, label = cache.get(image_path, label_path, where, labels, factor)
    image, label, rows, cols = crop_window(image, label, crop, u, v)
    # write through flipped views of out: the same values as flipping the
    # finished crop, without copying it
    if hflip:
        out = out[:, :, ::-1]
    if vflip:
        out = out[:, ::-1, :]
    out[:3] = 0
    out[3] = IGNORE_LABEL
    for c in range(3):
        window = out[c, :rows, :cols]
        np.copyto(window, image[:, :, c], casting='unsafe')
        window -= mean[c]
        if scale != 1:
            window *= np.float32(scale)
    out[3, :rows, :cols] = label


_PALETTES = {}


def fill_crops(buffer, start, payload, context):
    """SegmentationData's filler (prefetch): crops start... of the slot's
    (n, 4, crop, crop) batch. payload (n, crop, items) with items
    (image, label, where, crop plan); context (mean, scale, num_classes,
    palette, label_format, unknown_color, cache_mb)."""
    n, crop, items = payload
    mean, scale, num_classes, palette, label_format, unknown, cache_mb = context
    if palette not in _PALETTES:
        _PALETTES[palette] = load_palette(palette)
    labels = (num_classes, _PALETTES[palette], label_format, unknown)
    out = np.ndarray((n, 4, crop, crop), np.float32, buffer=buffer)
    try:
        fill_pairs(items, crop, labels, np.asarray(mean, np.float32), scale, out[start:start + len(items)],
                   pair_cache(cache_mb))
    finally:
        del out        # a live view would keep the slot from closing


def fill_pairs(items, crop, labels, mean, scale, out, cache):
    """load_pair for each item into out (m, 4, crop, crop); other failures
    become a DataLoadError naming the line and files."""
    for i, (image_path, label_path, where, crop_plan) in enumerate(items):
        try:
            load_pair(image_path, label_path, where, crop_plan, crop, labels, mean, scale, out[i], cache)
        except DataLoadError:
            raise
        except Exception as e:          # cv2.error, MemoryError, ...
            raise DataLoadError('%s: cannot load %s / %s: %s: %s'
                                % (where, image_path, label_path, type(e).__name__, e)) from e
