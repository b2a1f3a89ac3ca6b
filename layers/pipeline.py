"""PrefetchingDataLayer: what our data layers share (MultiLabelProposalData,
SegmentationData): batches planned ahead from ``seed``, filled by the
prefetch workers (or in-process with ``workers: 0``) and delivered in batch
order, resumable at any batch.

A subclass sets ``self.planner`` (an object with next() and skip(count))
in configure, then calls start_pipeline(slot_bytes, filler, context), and
implements

    batch_shape(plan)            the float32 array a batch fills (one slot)
    chunk_task(plan)             (n items, chunk(start, stop) -> (payload, names))
    fill_inprocess(plan, top)    workers: 0: load the batch straight into the tops
    deliver(plan, batch, top)    copy a worker-filled batch (batch_shape) into the tops
    new_planner(batch_size)      a fresh planner of batches of batch_size at batch 0

Under data-parallel training (engine/distributed.py) the TRAIN plan is the
global one, of ranks x batch_size images a batch, and each rank takes its
slice of every batch (DATA_SHARD, RankSlice): together the ranks' batches
are the batch one process with ranks x batch_size gets from the same seed.
"""
import os
import sys

import numpy as np

from caffe_mlic.caffe.env import START_BATCH_ENV
from .base import BEFORE_EXIT, MlicLayer
from .minibatch import DataLoadError
from .prefetch import start_workers, stop_all_workers, stop_workers

if stop_all_workers not in BEFORE_EXIT:
    BEFORE_EXIT.append(stop_all_workers)     # (os._exit runs no finalizer)

TRAIN = 0          # caffe.TRAIN; Caffe sets self.phase to this int

# (rank, ranks) of data-parallel training; set by the trainer before the nets are built.
DATA_SHARD = [0, 1]


def set_data_shard(rank, ranks):
    DATA_SHARD[:] = [rank, ranks]


class RankSlice:
    """A planner of global batches (ranks x batch images), each cut to one
    rank's part: the per-image parts of a plan (arrays as long as the global
    batch) sliced, the rest (a batch's scale factor) as it is."""

    def __init__(self, planner, rank, batch_size):
        self.planner, self.batch_size = planner, batch_size
        self.part = slice(rank * batch_size, (rank + 1) * batch_size)

    def next(self):
        whole = self.planner.batch_size
        return tuple(item[self.part] if isinstance(item, np.ndarray) and len(item) == whole else item
                     for item in self.planner.next())

    def skip(self, count):
        self.planner.skip(count)


def info(kind, message):
    """Info line on stderr when Caffe's own INFO log is on (GLOG_minloglevel 0)."""
    try:
        level = int(os.environ.get('GLOG_minloglevel', '0'))
    except ValueError:
        level = 0
    if level <= 0:
        sys.stderr.write('%s: %s\n' % (kind, message))
        sys.stderr.flush()


class PrefetchingDataLayer(MlicLayer):
    workers = _stop_workers = None       # until start_pipeline
    closed = False

    def start_pipeline(self, slot_bytes, filler, context):
        """After self.planner is made: resume where `caffe-mlic caffe train
        -snapshot` says, start the workers (``workers`` > 0) and plan ahead."""
        self.plans = {}            # batch_no -> plan, for planned but unconsumed batches
        self.next_plan = 0         # the next batch number to plan
        self.next_batch = 0        # the next batch number forward delivers
        self.workers = None
        self._stop_workers = None
        self.closed = False
        self.planner = self.sharded_planner()
        start = os.environ.get(START_BATCH_ENV) if self.phase == TRAIN else None
        if start:
            # The binary resumes at the snapshot's iteration; the plan goes
            # on where the interrupted run was.
            if not start.isdigit():
                raise self.error('%s=%r: expected the batch number to start at (set by `caffe-mlic caffe '
                                 'train -snapshot`)' % (START_BATCH_ENV, start))
            self.planner.skip(int(start))
            self.next_plan = self.next_batch = int(start)
        p = self.params
        if p.workers > 0:
            self.workers, self._stop_workers = start_workers(self, p.workers, slot_bytes, filler, context,
                                                             p.timeout)
            info(self.kind, '%s: %d images, %d worker processes (pids %s)'
                 % (p.source, len(self.datalist), p.workers, ' '.join(map(str, self.workers.pids))))
            self._fill_pipeline()

    def sharded_planner(self):
        """new_planner at batch 0, for this rank's part of the global batches in TRAIN."""
        rank, ranks = DATA_SHARD if self.phase == TRAIN else (0, 1)
        batch = self.params.batch_size
        if ranks == 1:
            return self.new_planner(batch)
        if ranks > len(self.datalist):
            raise self.error('%d ranks share the %d images of %s: each rank needs one image of an '
                             'epoch at least (fewer ranks, or more images)'
                             % (ranks, len(self.datalist), self.params.source))
        return RankSlice(self.new_planner(batch * ranks), rank, batch)

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
        self.planner = self.sharded_planner()
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
        while self.workers.free:
            batch_no, plan = self._plan()
            self.workers.submit(batch_no, *self.chunk_task(plan))

    def reshape(self, bottom, top):
        pass  # the shapes may depend on the batch (its scale): set in forward

    def forward(self, bottom, top):
        if self.closed:
            raise DataLoadError('%s: the layer was closed' % self.kind)
        batch_no = self.next_batch
        if batch_no not in self.plans:
            self._plan()               # workers: 0 plans on demand
        plan = self.plans[batch_no]
        if self.workers is None:
            self.fill_inprocess(plan, top)
        else:
            self.deliver(plan, self.workers.wait(batch_no, self.batch_shape(plan)), top)
            self.workers.release(batch_no)
        self.plans.pop(batch_no, None)
        self.next_batch = batch_no + 1
        if self.workers is not None:
            self._fill_pipeline()
