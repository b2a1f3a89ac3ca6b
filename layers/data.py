"""MultiLabelProposalData: the original HumanAttData (SPEC.md), with prefetching.

Tops: ``data`` (N, 3, H, W) float32 BGR, mean subtracted then scaled, and
``label_roi`` (N, C + 5B): the C labels, then B proposals (x1, y1, x2, y2, s)
transformed together with the image, so a stock Slice at C splits them. With
``split_tops`` the tops are data, labels (N, C) and rois (N, 5B) instead.

How the work is split:

- the main process plans every batch from ``seed`` (image indices, scale
  factor, mirror flags) and transforms labels and boxes itself (cheap);
- ``workers`` spawned processes decode, resize, flip and normalise the images
  into shared-memory slots (one batch per slot, sized for the largest scale),
  up to 3 batches ahead of the solver; each batch is split evenly between
  the workers;
- forward takes the results in batch order, so the same seed gives the same
  batches whatever the workers' timing.

Tasks and results go through one duplex Pipe per worker, written directly by
the calling thread: inside the ``caffe`` binary the main thread holds the GIL
while C++ runs, so a multiprocessing.Queue's feeder thread would only get to
send tasks during our own forward.
"""
import contextlib
import gc
import os
import re
import sys
import tempfile
import types
import weakref
from multiprocessing import connection, get_context, shared_memory

import caffe
import cv2
import numpy as np

from caffe_mlic.datalist import read_datalist
from caffe_mlic.params import Param
from .base import MlicLayer

TRAIN = 0          # caffe.TRAIN; Caffe sets self.phase to this int
PREFETCH = 3       # batches in flight (shared-memory slots) with workers


class DataLoadError(RuntimeError):
    """An image could not be loaded, or a data worker died."""


def _info(message):
    """Info line on stderr when Caffe's own INFO log is on (GLOG_minloglevel 0)."""
    try:
        level = int(os.environ.get('GLOG_minloglevel', '0'))
    except ValueError:
        level = 0
    if level <= 0:
        sys.stderr.write('MultiLabelProposalData: %s\n' % message)
        sys.stderr.flush()


# ---------------------------------------------------------------- images


def load_image(path, height, width, flip, mean, scale, out):
    """Read ``path`` as BGR, resize (bilinear) to height x width, flip
    left-right if asked, write (pixel - mean) * scale into out (3, H, W)."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataLoadError('cannot read image %s (missing, unreadable or not an image)' % path)
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
    for i, (path, flip) in enumerate(zip(paths, flips)):
        try:
            load_image(path, height, width, flip, mean, scale, out[i])
        except DataLoadError:
            raise
        except Exception as e:          # cv2.error, MemoryError, ...: name the image
            raise DataLoadError('cannot load image %s: %s: %s' % (path, type(e).__name__, e)) from e


def _worker_main(conn, slot_names, mean, scale, parent_pid):
    """A data worker. In: tasks (batch_no, slot, n, start, paths, flips, h, w), images
    start... of the slot's (n, 3, h, w) batch. Out: (batch_no, start, error or None)."""
    cv2.setNumThreads(1)            # the workers are the parallelism
    slots = [shared_memory.SharedMemory(name=name) for name in slot_names]
    mean = np.asarray(mean, np.float32)
    conn.send(('ready',))
    try:
        while True:
            # Exit if the main process is gone, however it died (EOF on the
            # pipe, or re-parenting when something else still holds it open).
            if not conn.poll(0.5):
                if os.getppid() != parent_pid:
                    return
                continue
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            batch_no, slot, n, start, paths, flips, height, width = task
            error = out = None
            try:
                out = np.ndarray((n, 3, height, width), np.float32, buffer=slots[slot].buf)
                fill_batch(paths, flips, height, width, mean, scale, out[start:start + len(paths)])
            except Exception as e:
                error = str(e) if isinstance(e, DataLoadError) else '%s: %s' % (type(e).__name__, e)
            finally:
                del out        # a live view would keep the slot from closing
            try:
                conn.send((batch_no, start, error))
            except (BrokenPipeError, OSError):
                return
    finally:
        for shm in slots:
            try:
                shm.close()
            except BufferError:
                pass


def _worker_python():
    """The interpreter for spawned workers: inside the `caffe` binary
    sys.executable is the binary itself, which cannot run them."""
    exe = os.environ.get('CAFFE_MLIC_PYTHON')
    if exe:
        return exe
    if re.fullmatch(r'python[0-9.]*', os.path.basename(sys.executable or '')):
        return sys.executable
    return '/usr/bin/python3'


@contextlib.contextmanager
def _main_module_hidden():
    """A spawned child re-imports the parent's __main__ (for functions pickled
    from it). Ours need nothing from it, and a script that builds its net at
    top level, without `if __name__ == '__main__'`, would build it again in
    every worker. Show an empty __main__ while the workers start."""
    main = sys.modules.get('__main__')
    sys.modules['__main__'] = types.ModuleType('__main__')   # no __file__, __spec__ None
    try:
        yield
    finally:
        if main is None:
            del sys.modules['__main__']
        else:
            sys.modules['__main__'] = main


def _check_shm_space(needed, where='/dev/shm'):
    """Fail at setup, not with a SIGBUS in a worker: shared memory is only
    allocated when written, and containers often get a small /dev/shm."""
    try:
        st = os.statvfs(where)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < needed:
        raise DataLoadError('the data workers need %.0f MiB of shared memory (%d batches at the '
                            'largest scale) but %s has %.0f MiB free: enlarge it (docker: --shm-size), '
                            'or lower batch_size (workers: 0 loads in-process)'
                            % (needed / 2 ** 20, PREFETCH, where, free / 2 ** 20))


class _Workers:
    """The worker processes, their pipes and the shared-memory slots."""

    def __init__(self, n_workers, n_slots, slot_bytes, mean, scale):
        self.procs, self.conns, self.slots = [], [], []
        self.closed = False
        self.ready, self.unlinked = set(), False
        # spawn, not fork: the parent may be the caffe binary, or hold threads
        # and a BLAS state that fork would copy half-way. (The executable is a
        # process-wide multiprocessing setting.)
        ctx = get_context('spawn')
        self.python = _worker_python()
        ctx.set_executable(self.python)
        _check_shm_space(n_slots * slot_bytes)
        try:
            for _ in range(n_slots):
                self.slots.append(shared_memory.SharedMemory(create=True, size=slot_bytes))
            names = [s.name for s in self.slots]
            for _ in range(n_workers):
                ours, theirs = ctx.Pipe(duplex=True)
                proc = ctx.Process(target=_worker_main, name='MultiLabelProposalData worker',
                                   args=(theirs, names, list(mean), scale, os.getpid()), daemon=True)
                with _main_module_hidden():
                    proc.start()
                theirs.close()
                self.procs.append(proc)
                self.conns.append(ours)
        except OSError as e:
            self.close()
            raise DataLoadError('cannot start data worker processes with %s (set CAFFE_MLIC_PYTHON to a '
                                'Python that can import caffe_mlic, or use workers: 0): %s'
                                % (self.python, e)) from e
        except BaseException:
            self.close()
            raise
        self.free = list(range(n_slots))
        self.slot_of = {}            # batch_no -> slot
        self.pending = {}            # batch_no -> chunks not done yet
        self.errors = {}             # batch_no -> {chunk start: error}

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def submit(self, batch_no, paths, flips, height, width):
        """Queue a batch: every worker gets an equal contiguous chunk of it, so
        they all work on the oldest batch first and none waits behind another."""
        slot = self.free.pop(0)
        n = len(paths)
        bounds = np.linspace(0, n, len(self.procs) + 1).astype(int)
        chunks = 0
        for conn, start, stop in zip(self.conns, bounds[:-1], bounds[1:]):
            if stop > start:
                conn.send((batch_no, slot, n, int(start), list(paths[start:stop]),
                           [bool(f) for f in flips[start:stop]], height, width))
                chunks += 1
        self.slot_of[batch_no] = slot
        self.pending[batch_no] = chunks

    def wait(self, batch_no, shape):
        """The finished batch as an array view of its slot; raises DataLoadError."""
        while self.pending[batch_no]:
            ready = connection.wait(self.conns + [p.sentinel for p in self.procs], timeout=5.0)
            for w, conn in enumerate(self.conns):
                if conn not in ready:
                    continue
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    self._died(w)
                if message == ('ready',):
                    self._attached(w)
                    continue
                done, start, error = message
                self.pending[done] -= 1
                if error is not None:
                    self.errors.setdefault(done, {})[start] = error
            for w, proc in enumerate(self.procs):
                # A dead worker may still have sent results: read those first.
                if proc.sentinel in ready and not self.conns[w].poll():
                    self._died(w)
        if batch_no in self.errors:       # the first bad image of the batch, whoever finished first
            chunk_errors = self.errors[batch_no]
            raise DataLoadError(chunk_errors[min(chunk_errors)])
        return np.ndarray(shape, np.float32, buffer=self.slots[self.slot_of[batch_no]].buf)

    def _attached(self, w):
        """Once every worker has mapped the slots, their names can go: the
        memory lives on while mapped, and nothing is left behind in /dev/shm
        however the processes end (the caffe binary exits without running
        Python's atexit)."""
        self.ready.add(w)
        if len(self.ready) == len(self.procs) and not self.unlinked:
            self.unlinked = True
            for shm in self.slots:
                try:
                    shm.unlink()
                except FileNotFoundError:
                    pass

    def _died(self, w):
        proc = self.procs[w]
        proc.join(1)
        raise DataLoadError('data worker process %d (%s) exited unexpectedly with exit code %s; '
                            'its own error, if any, is on stderr' % (proc.pid, self.python, proc.exitcode))

    def release(self, batch_no):
        del self.pending[batch_no]
        self.free.append(self.slot_of.pop(batch_no))

    def close(self):
        """Stop the workers and free the slots. Safe to call twice, and at exit."""
        if self.closed:
            return
        self.closed = True
        for conn in self.conns:
            try:
                conn.send(None)
            except Exception:
                pass
        for proc in self.procs:
            try:
                proc.join(2)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(1)
                if proc.is_alive():
                    proc.kill()
                    proc.join(1)
            except Exception:
                pass
        for conn in self.conns:
            try:
                conn.close()
            except Exception:
                pass
        for shm in self.slots:
            try:
                shm.close()
                if not self.unlinked:
                    shm.unlink()
            except Exception:
                pass


# ---------------------------------------------------------------- lifetime
#
# Stock Caffe never frees a Python layer: PythonLayer keeps a strong reference
# (self_) to the Python object, which owns the C++ layer. After the net is
# deleted only that reference is left, so neither __del__ nor weakref.finalize
# ever runs. A gc callback therefore watches the refcount of each layer that
# has workers, and stops them once only Caffe's own reference is left. How many
# references Caffe keeps to a layer of a deleted net is measured once, with a
# probe layer in a throwaway net, so a Caffe that does free its layers (then
# finalize does the work) is never mistaken for a live net.

_WITH_WORKERS = weakref.WeakSet()
_orphan_refs = None             # refs Caffe keeps to a layer of a deleted net; 0: it frees them
_probes = []

_PROBE_NET = ('name: "MultiLabelProposalData_lifetime_probe"\n'
              'layer { name: "probe" type: "Python"\n'
              '        python_param { module: "%s" layer: "_LifetimeProbe" } }\n' % __name__)


class _LifetimeProbe(caffe.Layer):
    def setup(self, bottom, top):
        _probes.append(weakref.ref(self))

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass


def _measure_orphan_refs():
    fd, path = tempfile.mkstemp(suffix='.prototxt', prefix='mlic_probe_')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(_PROBE_NET)
        net = caffe.Net(path, caffe.TEST)
        ref = _probes.pop()
        del net
        probe = ref()
        # getrefcount counts its argument and our local `probe`.
        return 0 if probe is None else sys.getrefcount(probe) - 2
    finally:
        os.unlink(path)


def _reap_orphans(phase, info):
    if phase != 'start' or not _WITH_WORKERS or not _orphan_refs:
        return
    for layer in list(_WITH_WORKERS):
        # Ours: the list, `layer`, getrefcount's argument.
        if sys.getrefcount(layer) - 3 <= _orphan_refs:
            layer.close()


gc.callbacks.append(_reap_orphans)


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


def scaled_size(new_height, new_width, factor):
    return int(new_height * factor), int(new_width * factor)


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


# ---------------------------------------------------------------- the layer


class MultiLabelProposalData(MlicLayer):
    """Images, multi-labels and proposals from a datalist (SPEC.md `HumanAttData`)."""

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
        self.workers = None
        self._finalizer = None
        self.closed = False
        n = p.batch_size
        c, b = p.att_num, p.bbox_num
        top[0].reshape(n, 3, p.new_height, p.new_width)
        if p.split_tops:
            top[1].reshape(n, c)
            top[2].reshape(n, 5 * b)
        else:
            top[1].reshape(n, c + 5 * b)
        if p.workers > 0:
            max_h = max(scaled_size(p.new_height, p.new_width, f)[0] for f in factors)
            max_w = max(scaled_size(p.new_height, p.new_width, f)[1] for f in factors)
            # Batches in flight, as Caffe's own prefetching data layers keep.
            n_slots = PREFETCH
            global _orphan_refs
            if _orphan_refs is None:
                try:
                    _orphan_refs = _measure_orphan_refs()
                except Exception:       # no probe: finalize, atexit and parent watching remain
                    _orphan_refs = 0
            self.workers = _Workers(p.workers, n_slots, n * 3 * max_h * max_w * 4, self.mean, p.scale)
            # Stop the workers when the layer goes (the net is deleted) or at
            # interpreter exit (finalize's atexit); the workers are daemons
            # and also leave by themselves when this process dies.
            self._finalizer = weakref.finalize(self, self.workers.close)
            _WITH_WORKERS.add(self)
            _info('%s: %d images, %d worker processes (pids %s)'
                  % (p.source, len(self.datalist), p.workers, ' '.join(map(str, self.workers.pids))))
            self._fill_pipeline()

    @property
    def worker_pids(self):
        return [] if self.workers is None else self.workers.pids

    def close(self):
        """Stop the workers and drop the datalist (the layer cannot forward
        any more). Done for you when the net is deleted."""
        _WITH_WORKERS.discard(self)
        if self._finalizer is not None:
            self._finalizer()
        self.closed = True
        self.datalist = self.plans = None

    def _plan(self):
        """Plan the next batch; a failed batch stays planned, so forward fails
        on it again rather than skip it."""
        plan = self.planner.next()
        self.plans[self.next_plan] = plan
        self.next_plan += 1
        return self.next_plan - 1, plan

    def _fill_pipeline(self):
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

        labels = self.datalist.labels[indices].astype(np.float32)
        boxes = transform_boxes(self.datalist.boxes[indices], factor, flips, h, w, self.train)
        rois = np.concatenate([boxes, self.datalist.scores[indices][..., None]], axis=2).reshape(n, -1)
        if p.split_tops:
            top[1].reshape(*labels.shape)
            top[1].data[...] = labels
            top[2].reshape(*rois.shape)
            top[2].data[...] = rois
        else:
            top[1].reshape(n, labels.shape[1] + rois.shape[1])
            top[1].data[:, :labels.shape[1]] = labels
            top[1].data[:, labels.shape[1]:] = rois
