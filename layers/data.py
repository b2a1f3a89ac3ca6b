"""MultiLabelProposalData: the original HumanAttData, with prefetching.

Tops: ``data`` (N, 3, H, W) float32 BGR, mean subtracted then scaled, and
``label_roi`` (N, C + 5B): the C labels, then B proposals (x1, y1, x2, y2, s)
transformed together with the image, so a stock Slice at C splits them. With
``split_tops`` the tops are data, labels (N, C) and rois (N, 5B) instead.

How the work is split:

- the main process plans every batch from ``seed`` (image indices, scale
  factor, mirror flags) and transforms labels and boxes itself (cheap):
  minibatch.py, which also states the rules of both;
- ``workers`` spawned processes decode, resize, flip and normalise the images
  into shared memory, up to 3 (PREFETCH) batches ahead of the solver: prefetch.py;
  with ``workers: 0`` forward loads each batch in-process instead;
- forward takes the results in batch order, so the same seed gives the same
  batches whatever the workers' timing.
"""
import numpy as np

from caffe_mlic.data.datalist import read_datalist
from caffe_mlic.caffe.params import Param
from caffe_mlic.gpu import blobs as gpu_blobs
from .minibatch import BatchPlanner, DataLoadError, fill_batch, label_and_rois, scaled_size
from .pipeline import TRAIN, PrefetchingDataLayer
from .prefetch import STALL_TIMEOUT, fill_images

__all__ = ['DataLoadError', 'MultiLabelProposalData']


class MultiLabelProposalData(PrefetchingDataLayer):
    """Images, multi-labels and proposals from a datalist, as HumanAttData
    gave them.

    TRAIN: with shuffle, a new image order at the start and every epoch; one scale factor f
    per batch from scale_factors: the images are resized to
    int(new_height * f) x int(new_width * f) and each box coordinate becomes
    int(coord * f); with mirror, each image is flipped left-right on a coin,
    its boxes with it (x1' = W-1-x2, x2' = W-1-x1). TEST: file order at
    new_height x new_width, boxes unchanged. The rules in full: minibatch.py.
    """

    PARAMS = (
        Param('source', 'str'),  # datalist path
        Param('root_folder', 'str', ''),
        Param('batch_size', 'int', low=1),
        Param('shuffle', 'bool', False),
        Param('new_width', 'int', low=1),
        Param('new_height', 'int', low=1),
        Param('scale_factors', 'float_list', [1.0], low=0, low_open=True, min_len=1),
        Param('att_num', 'int', low=1, high=100000),      # the datalist's bounds (data.datalist)
        Param('bbox_num', 'int', low=0, high=100000),
        Param('mirror', 'bool', False),
        Param('mean_value', 'float_list', [0.0, 0.0, 0.0], min_len=1),
        Param('scale', 'float', 1.0),
        Param('seed', 'int', 0, low=0),
        Param('workers', 'int', 2, low=0, high=64),   # netspec.config.MAX_WORKERS
        Param('split_tops', 'bool', False),
        # seconds without an answer from the workers before a batch is given up
        Param('timeout', 'float', STALL_TIMEOUT, low=0, low_open=True),
    )
    TOPS = ('data', 'label_roi')
    OPTIONAL_TOPS = ('rois',)
    SIZE_PARAMS = 'batch_size, new_height, new_width or scale_factors'  # what sets the tops' sizes (for caffe.shapes' message)

    @staticmethod
    def top_shapes(p, bottoms, phase):
        """The tops at their largest (the largest TRAIN scale), for the size
        check before Caffe builds the net (caffe.shapes)."""
        factors = p.scale_factors if phase == 'TRAIN' else [1.0]
        sizes = [scaled_size(p.new_height, p.new_width, f) for f in factors]
        data = (p.batch_size, 3, max(h for h, _ in sizes), max(w for _, w in sizes))
        if p.split_tops:
            return [data, (p.batch_size, p.att_num), (p.batch_size, 5 * p.bbox_num)]
        return [data, (p.batch_size, p.att_num + 5 * p.bbox_num)]

    def configure(self, bottom, top):
        p = self.params
        if p.split_tops and len(top) != 3:
            raise self.error('split_tops needs 3 tops (data, labels, rois), got %d' % len(top))
        if not p.split_tops and len(top) != 2:
            raise self.error('expected 2 tops (data, label_roi), got %d; set split_tops for '
                             'three (data, labels, rois)' % len(top))
        if len(p.mean_value) not in (1, 3):
            raise self.error('mean_value needs 1 or 3 values (B, G, R), got %d' % len(p.mean_value))
        self.mean = np.array(p.mean_value * 3 if len(p.mean_value) == 1 else p.mean_value, np.float32)
        self.train = self.phase == TRAIN
        factors = p.scale_factors if self.train else [1.0]
        if min(scaled_size(p.new_height, p.new_width, f)[0] for f in factors) < 1 or \
                min(scaled_size(p.new_height, p.new_width, f)[1] for f in factors) < 1:
            raise self.error('a scale factor of %s makes the %dx%d image empty'
                             % (min(factors), p.new_width, p.new_height))
        # Every line is checked once, here: one error lists the bad lines.
        self.datalist = read_datalist(p.source, p.att_num, p.bbox_num, p.new_width, p.new_height,
                                      p.root_folder, check_images=True)
        n = p.batch_size
        c, b = p.att_num, p.bbox_num
        max_h = max(scaled_size(p.new_height, p.new_width, f)[0] for f in factors)
        max_w = max(scaled_size(p.new_height, p.new_width, f)[1] for f in factors)
        self.check_count('the data top (at the largest scale)', (n, 3, max_h, max_w),
                         'batch_size, new_height, new_width or scale_factors')
        self.check_count('the label_roi top', (n, c + 5 * b), 'batch_size, att_num or bbox_num')
        top[0].reshape(n, 3, p.new_height, p.new_width)
        if p.split_tops:
            top[1].reshape(n, c)
            top[2].reshape(n, 5 * b)
        else:
            top[1].reshape(n, c + 5 * b)
        # Each shared-memory slot holds one batch at the largest scale.
        self.start_pipeline(n * 3 * max_h * max_w * 4, fill_images, (list(self.mean), p.scale))

    def new_planner(self, batch_size):
        p = self.params
        return BatchPlanner(len(self.datalist), batch_size, self.train, p.shuffle,
                            p.scale_factors, p.mirror, p.seed)

    def _size(self, plan):
        return scaled_size(self.params.new_height, self.params.new_width, plan[1])

    def batch_shape(self, plan):
        return (self.params.batch_size, 3) + self._size(plan)

    def chunk_task(self, plan):
        indices, _, flips = plan
        h, w = self._size(plan)
        paths = [self.datalist.image_paths[i] for i in indices]
        return len(paths), lambda a, b: ((len(paths), paths[a:b], [bool(f) for f in flips[a:b]], h, w),
                                         paths[a:b])

    def fill_inprocess(self, plan, top):
        indices, _, flips = plan
        top[0].reshape(*self.batch_shape(plan))
        fill_batch([self.datalist.image_paths[i] for i in indices], flips, *self._size(plan),
                   self.mean, self.params.scale, top[0].data)
        self._labels(plan, top)

    def deliver(self, plan, batch, top):
        top[0].reshape(*batch.shape)
        gpu_blobs.fill(top[0], batch)
        self._labels(plan, top)

    def _labels(self, plan, top):
        p = self.params
        indices, factor, flips = plan
        labels, rois = label_and_rois(self.datalist, indices, factor, flips, *self._size(plan), self.train)
        if p.split_tops:
            top[1].reshape(*labels.shape)
            top[1].data[...] = labels
            top[2].reshape(*rois.shape)
            top[2].data[...] = rois
        else:
            top[1].reshape(p.batch_size, labels.shape[1] + rois.shape[1])
            top[1].data[:, :labels.shape[1]] = labels
            top[1].data[:, labels.shape[1]:] = rois
