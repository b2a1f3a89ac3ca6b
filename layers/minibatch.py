"""One batch of MultiLabelProposalData: which images it holds, and how they
and their labels and proposals are transformed.

Planning (main process; cheap): BatchPlanner turns ``seed`` into the sequence
of batches, each (image indices, scale factor, mirror flags).

- TRAIN: the image order is shuffled at the start and at every epoch end when
  ``shuffle``; each batch draws one factor f from ``scale_factors``, and each
  image one coin when ``mirror``.
- TEST: file order, f = 1, no flips, whatever those parameters say.
- Batches wrap around the list: the last one of an epoch is completed with
  the first images of the next.

Transforms. Images (load_image, fill_batch; in the workers, or in-process
with ``workers: 0``): read as BGR, resized bilinearly to
int(new_height * f) x int(new_width * f), flipped left-right where the coin
says so, then (pixel - mean_value) * scale, as (3, H, W) float32. Boxes
(label_and_rois; main process): TRAIN: each coordinate becomes int(coord * f),
kept inside the scaled image, then x1' = W-1-x2, x2' = W-1-x1 where flipped;
TEST: unchanged.
"""
import cv2
import numpy as np

from caffe_mlic.errors import InputError
from caffe_mlic.data.imageio import decode_file, why_undecodable


class DataLoadError(InputError):
    """An image could not be loaded, or a data worker died."""


# ---------------------------------------------------------------- planning


class BatchPlanner:
    """The deterministic sequence of batches: (indices, factor, flips).

    TRAIN: shuffled at the start and at every epoch end when shuffle, one
    factor per batch drawn from scale_factors, a coin per image when mirror.
    TEST: file order, factor 1, no flips. Batches wrap around the list.
    """

    def __init__(self, n_images, batch_size, train, shuffle, scale_factors, mirror, seed):
        self.n, self.batch_size = n_images, batch_size
        self.train = train
        self.shuffle = train and shuffle
        self.factors = list(scale_factors) if train else [1.0]
        self.mirror = train and mirror
        self.rng = np.random.default_rng(seed)
        self.order = self._new_order()
        self.cursor = 0

    def _new_order(self):
        return self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)

    def next(self):
        picked, count = [], 0
        while count < self.batch_size:
            if self.cursor == self.n:
                self.order = self._new_order()
                self.cursor = 0
            take = min(self.batch_size - count, self.n - self.cursor)
            picked.append(self.order[self.cursor:self.cursor + take])
            self.cursor += take
            count += take
        indices = np.concatenate(picked)
        factor = self.factors[self.rng.integers(len(self.factors))] if self.train else 1.0
        flips = (self.rng.random(self.batch_size) < 0.5) if self.mirror else np.zeros(self.batch_size, bool)
        return indices, factor, flips

    def skip(self, count):
        """Move on by ``count`` batches, as ``count`` calls of next() would:
        the random draws are replayed, so the batches that follow are the
        ones an uninterrupted sequence gives."""
        for _ in range(count):
            self.next()


def scaled_size(new_height, new_width, factor):
    """The (height, width) images are resized to for scale factor f:
    int(new_height * f), int(new_width * f)."""
    return int(new_height * factor), int(new_width * factor)


# ---------------------------------------------------------------- images


def load_image(path, height, width, flip, mean, scale, out):
    """Read ``path`` as BGR, resize (bilinear) to height x width, flip
    left-right if asked, write (pixel - mean) * scale into out (3, H, W)."""
    img = decode_file(path)
    if img is None:
        raise DataLoadError('cannot read image %s (%s)' % (path, why_undecodable(path)))
    if img.shape[:2] != (height, width):
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    if flip:
        img = cv2.flip(img, 1)
    # HWC uint8 -> CHW float32. Contiguous planes make each step a plain SIMD
    # loop (a strided, casting np.subtract is twice as slow); with images this
    # large the workers are bound by memory bandwidth, so every pass counts.
    for c, plane in enumerate(cv2.split(img)):
        np.copyto(out[c], plane, casting='unsafe')
        out[c] -= mean[c]
        if scale != 1:
            out[c] *= np.float32(scale)


def fill_batch(paths, flips, height, width, mean, scale, out):
    """load_image for each image into out (n, 3, H, W); any failure becomes
    a DataLoadError that names the image."""
    for i, (path, flip) in enumerate(zip(paths, flips)):
        try:
            load_image(path, height, width, flip, mean, scale, out[i])
        except DataLoadError:
            raise
        except Exception as e:          # cv2.error, MemoryError, ...: name the image
            raise DataLoadError('cannot load image %s: %s: %s' % (path, type(e).__name__, e)) from e


# ---------------------------------------------------------------- labels and boxes


def transform_boxes(boxes, factor, flips, height, width, train):
    """Boxes (N, B, 4) as they go with the images: TRAIN int(coord * f),
    kept inside the scaled image, then x1' = W-1-x2, x2' = W-1-x1 where
    flipped. TEST: unchanged."""
    if not train:
        return boxes.astype(np.float32)
    out = np.floor(boxes.astype(np.float64) * factor)      # coords are >= 0: floor == int()
    # Some factors would put a corner one pixel outside the scaled image
    # (W=10, f=0.35: int(9 * f) = 3, but int(10 * f) = 3 columns): clamp.
    np.minimum(out, [width - 1, height - 1, width - 1, height - 1], out=out)
    if flips.any():
        f = flips[:, None]
        x1, x2 = out[..., 0].copy(), out[..., 2].copy()
        out[..., 0] = np.where(f, width - 1 - x2, x1)
        out[..., 2] = np.where(f, width - 1 - x1, x2)
    return out.astype(np.float32)


def label_and_rois(datalist, indices, factor, flips, height, width, train):
    """The batch's labels (N, C) and rois (N, 5B): for each image its B
    proposals (x1, y1, x2, y2, s), the boxes transformed with the image
    (transform_boxes), the scores as they are. All float32."""
    labels = datalist.labels[indices].astype(np.float32)
    boxes = transform_boxes(datalist.boxes[indices], factor, flips, height, width, train)
    rois = np.concatenate([boxes, datalist.scores[indices][..., None]], axis=2).reshape(len(indices), -1)
    return labels, rois
