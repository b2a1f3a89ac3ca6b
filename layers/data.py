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
import os
import sys

import numpy as np

from caffe_mlic.caffe_env import START_BATCH_ENV
from caffe_mlic.datalist import read_datalist
from caffe_mlic.params import Param
from .base import MlicLayer
from .minibatch import BatchPlanner, DataLoadError, fill_batch, label_and_rois, scaled_size
from .prefetch import STALL_TIMEOUT, start_workers, stop_workers

TRAIN = 0          # caffe.TRAIN; Caffe sets self.phase to this int

__all__ = ['DataLoadError', 'MultiLabelProposalData']


def _info(message):
    """Info line on stderr when Caffe's own INFO log is on (GLOG_minloglevel 0)."""
    try:
        level = int(os.environ.get('GLOG_minloglevel', '0'))
    except ValueError:
        level = 0
    if level <= 0:
        sys.stderr.write('MultiLabelProposalData: %s\n' % message)
        sys.stderr.flush()


class MultiLabelProposalData(MlicLayer):
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
        Param('source', 'str', doc='datalist path'),
        Param('root_folder', 'str', ''),
        Param('batch_size', 'int', low=1),
        Param('shuffle', 'bool', False),
        Param('new_width', 'int', low=1),
        Param('new_height', 'int', low=1),
        Param('scale_factors', 'float_list', [1.0], low=0, low_open=True, min_len=1),
        Param('att_num', 'int', low=1),
        Param('bbox_num', 'int', low=0),
        Param('mirror', 'bool', False),
        Param('mean_value', 'float_list', [0.0, 0.0, 0.0], min_len=1),
        Param('scale', 'float', 1.0),
        Param('seed', 'int', 0, low=0),
        Param('workers', 'int', 2, low=0),
        Param('split_tops', 'bool', False),
        Param('timeout', 'float', STALL_TIMEOUT, low=0, low_open=True,
              doc='seconds without an answer from the workers before a batch is given up'),
    )
    TOPS = ('data', 'label_roi')
    OPTIONAL_TOPS = ('rois',)

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
        self.planner = BatchPlanner(len(self.datalist), p.batch_size, self.train, p.shuffle,
                                    p.scale_factors, p.mirror, p.seed)
        self.plans = {}            # batch_no -> plan, for planned but unconsumed batches
        self.next_plan = 0         # the next batch number to plan
        self.next_batch = 0        # the next batch number forward delivers
        start = os.environ.get(START_BATCH_ENV) if self.train else None
        if start:
            # `caffe-mlic caffe train -snapshot S`: the binary resumes at S's
            # iteration; the plan goes on where the interrupted run was.
            self.planner.skip(int(start))
            self.next_plan = self.next_batch = int(start)
        self.workers = None
        self._stop_workers = None
        self.closed = False
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
        if p.workers > 0:
            # Each shared-memory slot holds one batch at the largest scale.
            self.workers, self._stop_workers = start_workers(self, p.workers, n * 3 * max_h * max_w * 4,
                                                             self.mean, p.scale, p.timeout)
            _info('%s: %d images, %d worker processes (pids %s)'
                  % (p.source, len(self.datalist), p.workers, ' '.join(map(str, self.workers.pids))))
            self._fill_pipeline()

    @property
    def worker_pids(self):
        return [] if self.workers is None else self.workers.pids

    def close(self):
        """Stop the workers and drop the datalist (the layer cannot forward
        any more). Done for you when the net is deleted."""
        if self._stop_workers is not None:
            stop_workers(self, self._stop_workers)
        self.closed = True
        self.datalist = self.plans = None

    def seek(self, batch_no):
        """Make ``batch_no`` the next batch forward delivers, with the plan an
        uninterrupted run has there (a resumed run continues the sequence
        instead of starting at batch 0). Batches already handed to the
        workers are collected and dropped first."""
        if self.closed:
            raise DataLoadError('%s: the layer was closed' % self.kind)
        if batch_no < 0:
            raise ValueError('batch_no must be >= 0, got %d' % batch_no)
        if self.workers is not None:
            for planned in sorted(self.plans):
                try:
                    self.workers.wait(planned, (0,))
                except DataLoadError:
                    if planned not in self.workers.errors:
                        raise           # a worker died
                # A bad image in a dropped batch fails again once it is planned again.
                self.workers.errors.pop(planned, None)
                self.workers.release(planned)
        p = self.params
        self.planner = BatchPlanner(len(self.datalist), p.batch_size, self.train, p.shuffle,
                                    p.scale_factors, p.mirror, p.seed)
        self.planner.skip(batch_no)
        self.plans = {}
        self.next_plan = self.next_batch = batch_no
        if self.workers is not None:
            self._fill_pipeline()

    def _plan(self):
        """Plan the next batch; a failed batch stays planned, so forward fails
        on it again rather than skip it."""
        plan = self.planner.next()
        self.plans[self.next_plan] = plan
        self.next_plan += 1
        return self.next_plan - 1, plan

    def _fill_pipeline(self):
        """Plan batches and hand them to the workers while a slot is free."""
        p = self.params
        while self.workers.free:
            batch_no, (indices, factor, flips) = self._plan()
            h, w = scaled_size(p.new_height, p.new_width, factor)
            self.workers.submit(batch_no, [self.datalist.image_paths[i] for i in indices], flips, h, w)

    def reshape(self, bottom, top):
        pass  # the shape depends on the batch's scale: set in forward

    def forward(self, bottom, top):
        p = self.params
        if self.closed:
            raise DataLoadError('%s: the layer was closed' % self.kind)
        batch_no = self.next_batch
        if batch_no not in self.plans:
            self._plan()               # workers: 0 plans on demand
        indices, factor, flips = self.plans[batch_no]
        h, w = scaled_size(p.new_height, p.new_width, factor)
        n = p.batch_size
        top[0].reshape(n, 3, h, w)
        if self.workers is None:
            fill_batch([self.datalist.image_paths[i] for i in indices], flips, h, w,
                       self.mean, p.scale, top[0].data)
        else:
            top[0].data[...] = self.workers.wait(batch_no, (n, 3, h, w))
            self.workers.release(batch_no)
        self.plans.pop(batch_no, None)
        self.next_batch = batch_no + 1
        if self.workers is not None:
            self._fill_pipeline()

        labels, rois = label_and_rois(self.datalist, indices, factor, flips, h, w, self.train)
        if p.split_tops:
            top[1].reshape(*labels.shape)
            top[1].data[...] = labels
            top[2].reshape(*rois.shape)
            top[2].data[...] = rois
        else:
            top[1].reshape(n, labels.shape[1] + rois.shape[1])
            top[1].data[:, :labels.shape[1]] = labels
            top[1].data[:, labels.shape[1]:] = rois
