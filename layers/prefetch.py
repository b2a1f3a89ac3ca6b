"""Prefetching for our data layers: worker processes that decode, resize,
flip and normalise the images of batches planned ahead by the layer
(MultiLabelProposalData, SegmentationData).

- ``workers`` spawned processes write into shared-memory slots, one batch
  per slot, each sized for the largest batch; PREFETCH slots keep up to that
  many batches in flight ahead of the solver. The slots are anonymous memory
  files (memfd) handed to the workers as file descriptors: they have no name
  in /dev/shm at any moment, so no kill can leave one behind;
- what a worker does with its part of a batch is the layer's ``filler``, a
  module-level function ``filler(buffer, start, payload, context)`` (payload:
  the chunk's task; context: fixed at start, e.g. the mean);
- each batch is split evenly between the workers (contiguous chunks);
- the layer takes the results in batch order, so the same seed gives the
  same batches whatever the workers' timing.

Tasks and results go through one duplex Pipe per worker, written directly by
the calling thread: inside the ``caffe`` binary the main thread holds the GIL
while C++ runs, so a multiprocessing.Queue's feeder thread would only get to
send tasks during our own forward.

start_workers also ties the workers' lifetime to their layer (see the notes
above _LifetimeProbe): they stop when the layer is freed, when only Caffe's
own reference to it is left (its net was deleted), at interpreter exit, or
by themselves when the main process dies.
"""
import contextlib
import gc
import mmap
import os
import re
import signal
import sys
import threading
import time
import traceback
import types
import warnings
import weakref
from multiprocessing import connection, get_context, reduction

import caffe
import cv2
import numpy as np

from caffe_mlic import processes
from caffe_mlic.processes import own_multiprocessing_temp, start_without_sigint
from .minibatch import DataLoadError, fill_batch

# Batches in flight (shared-memory slots) with the workers, as Caffe's own
# prefetching data layers keep.
PREFETCH = 3
# Seconds without an answer from any worker after which a batch is given up
# (the layer's `timeout` parameter).
STALL_TIMEOUT = 300.0


# ---------------------------------------------------------------- the worker process


def fill_images(buffer, start, payload, context):
    """MultiLabelProposalData's filler: images start... of the slot's
    (n, 3, h, w) batch. payload (n, paths, flips, h, w); context (mean, scale)."""
    n, paths, flips, height, width = payload
    mean, scale = context
    out = np.ndarray((n, 3, height, width), np.float32, buffer=buffer)
    try:
        fill_batch(paths, flips, height, width, np.asarray(mean, np.float32), scale,
                   out[start:start + len(paths)])
    finally:
        del out        # a live view would keep the slot from closing


def _worker_main(conn, slot_fds, slot_bytes, filler, context, parent_pid, die_with_parent=False):
    """A data worker. In: tasks (batch_no, slot, start, payload), done by
    filler(slot buffer, start, payload, context). Out: (batch_no, start, error or None).
    die_with_parent: started from the parent's main thread (the kernel's
    death signal follows the thread that started the worker)."""
    if die_with_parent:
        processes.die_with_parent(parent_pid)
    # A Ctrl-C in the terminal reaches the whole process group: the main
    # process stops between iterations and needs its workers until then. The
    # worker was started with SIGINT blocked (PrefetchWorkers), so one that
    # came while it imported is pending: ignored now, then discarded.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    cv2.setNumThreads(1)            # the workers are the parallelism
    try:
        slots = [Segment.attach(fd.detach(), slot_bytes) for fd in slot_fds]
        conn.send(('ready',))
    except (ConnectionError, EOFError, OSError):
        # the main process died while this worker started (its descriptors
        # can no longer be fetched from it): nothing to do, nothing to say
        os._exit(0)
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
            batch_no, slot, start, payload = task
            error = None
            try:
                filler(slots[slot].buf, start, payload, context)
            except Exception as e:
                error = str(e) if isinstance(e, DataLoadError) else '%s: %s' % (type(e).__name__, e)
            try:
                conn.send((batch_no, start, error))
            except (BrokenPipeError, OSError):
                return
    finally:
        for segment in slots:
            segment.close()


def _worker_python():
    """The interpreter for spawned workers: inside the `caffe` binary
    sys.executable is the binary itself, which cannot run them."""
    exe = os.environ.get('CAFFE_MLIC_PYTHON')
    if exe:
        return exe
    if re.fullmatch(r'python[0-9.]*', os.path.basename(sys.executable or '')):
        return sys.executable
    return '/usr/bin/python3'


_PYTHONS_CHECKED = set()


def _check_worker_python(exe):
    """DataLoadError unless a CAFFE_MLIC_PYTHON the user set starts as a
    Python (once per process): a wrapper script that never does would leave
    whatever it started running and keep the workers' start waiting for
    minutes. Tried in a process group of its own that is killed after."""
    from caffe_mlic.caffe.env import PYTHON_ENV, python_problem
    if os.environ.get(PYTHON_ENV) != exe or exe in _PYTHONS_CHECKED:
        return
    problem = python_problem(exe)
    if problem:
        raise DataLoadError('cannot start data worker processes: %s=%s: %s (set it to a Python that can '
                            'import caffe_mlic, or use workers: 0)' % (PYTHON_ENV, exe, problem))
    _PYTHONS_CHECKED.add(exe)


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


def _check_memory(needed):
    """Fail at setup, not with the OOM killer in a worker: the slots are
    memory (shmem) whether or not they are written yet."""
    try:
        with open('/proc/meminfo') as f:
            info = dict(line.split(':', 1) for line in f)
        free = int(info['MemAvailable'].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return
    if free < needed:
        raise DataLoadError('the data workers need %.0f MiB of shared memory (%d batches at the '
                            'largest scale) but %.0f MiB of memory is available: lower batch_size '
                            '(workers: 0 loads in-process)' % (needed / 2 ** 20, PREFETCH, free / 2 ** 20))


class Segment:
    """One slot: an anonymous memory file (memfd_create), mapped. It never has
    a name in /dev/shm; its memory goes when the last process mapping it or
    holding its descriptor ends, however that process ends."""

    def __init__(self, fd, size):
        self.fd, self.size = fd, size
        self._map = mmap.mmap(fd, size)
        self.buf = memoryview(self._map)

    @classmethod
    def create(cls, size):
        fd = os.memfd_create('caffe-mlic-batch', os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            return cls(fd, size)
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def attach(cls, fd, size):
        """A worker's mapping of the descriptor it was handed (then closed:
        the mapping keeps the memory)."""
        try:
            segment = cls(fd, size)
        finally:
            os.close(fd)
        segment.fd = -1
        return segment

    def for_child(self):
        """The descriptor, pickled for a spawned worker: the child gets a copy
        of it (multiprocessing passes it at spawn) and calls .detach()."""
        return reduction.DupFd(self.fd)

    def close(self):
        """Unmap (a live numpy view of it keeps the mapping: then the memory
        goes with the process)."""
        if self.fd is not None and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1
        try:
            self.buf.release()
            self._map.close()
        except BufferError:
            pass


# ---------------------------------------------------------------- the main process's side


def _quiet_resource_sharer():
    """Under spawn, each worker's pipe end reaches it through
    multiprocessing's resource-sharer thread, which prints a traceback
    (sys.excepthook) when a worker dies before taking it: a stop signal
    while the workers start. That death is ours to report (or the stop is
    the report): such a traceback is dropped, any other goes to the hook
    that was there."""
    previous = sys.excepthook
    if getattr(previous, 'quiet_resource_sharer', False):
        return

    def hook(kind, value, tb):
        frames = traceback.extract_tb(tb) if tb is not None else []
        if issubclass(kind, (OSError, EOFError)) and any(
                f.filename.endswith(os.path.join('multiprocessing', 'resource_sharer.py')) for f in frames):
            return
        previous(kind, value, tb)
    hook.quiet_resource_sharer = True
    sys.excepthook = hook


class PrefetchWorkers:
    """The worker processes, their pipes and the shared-memory slots."""

    def __init__(self, n_workers, n_slots, slot_bytes, filler, context, timeout=STALL_TIMEOUT, name='data'):
        self.timeout = timeout
        self.procs, self.conns, self.slots = [], [], []
        self.closed = False
        self.ready = set()
        # spawn, not fork: the parent may be the caffe binary, or hold threads
        # and a BLAS state that fork would copy half-way. (The executable is a
        # process-wide multiprocessing setting.)
        ctx = get_context('spawn')
        own_multiprocessing_temp()
        _quiet_resource_sharer()
        self.python = _worker_python()
        _check_worker_python(self.python)
        ctx.set_executable(self.python)
        _check_memory(n_slots * slot_bytes)
        try:
            for _ in range(n_slots):
                self.slots.append(Segment.create(slot_bytes))
            for _ in range(n_workers):
                ours, theirs = ctx.Pipe(duplex=True)
                proc = ctx.Process(target=_worker_main, name='%s worker' % name,
                                   args=(theirs, [s.for_child() for s in self.slots], slot_bytes,
                                         filler, context, os.getpid(),
                                         threading.current_thread() is threading.main_thread()), daemon=True)
                with _main_module_hidden(), warnings.catch_warnings():
                    # spawn starts multiprocessing's resource tracker with the
                    # workers' executable; nothing of ours is registered with
                    # it, so its "died unexpectedly" (a CAFFE_MLIC_PYTHON that
                    # is not Python) is noise beside our own error.
                    warnings.filterwarnings('ignore', message='resource_tracker', category=UserWarning)
                    start_without_sigint(proc)        # _worker_main then ignores SIGINT
                theirs.close()
                self.procs.append(proc)
                self.conns.append(ours)
        except OSError as e:
            self.close()
            if 'AF_UNIX path too long' in str(e):       # (multiprocessing's socket lives in the temp folder)
                import tempfile
                raise DataLoadError('cannot start data worker processes: the temp folder %s is too deep for '
                                    'the socket multiprocessing hands them their descriptors through (a '
                                    'socket path has at most 107 bytes): set TMPDIR to a shorter folder'
                                    % tempfile.gettempdir()) from e
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
        self.inflight = [{} for _ in self.procs]   # per worker: (batch_no, start) -> paths
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self):
        """Wait until every worker has mapped the slots."""
        deadline = time.monotonic() + max(self.timeout, 60.0)
        while len(self.ready) < len(self.procs):
            left = deadline - time.monotonic()
            if left <= 0:
                raise DataLoadError('%d of %d data worker processes (%s) did not start within %.0f s'
                                    % (len(self.procs) - len(self.ready), len(self.procs), self.python,
                                       max(self.timeout, 60.0)))
            ready = connection.wait(self.conns + [p.sentinel for p in self.procs], timeout=left)
            for w, conn in enumerate(self.conns):
                if conn in ready and w not in self.ready:
                    try:
                        message = conn.recv()
                    except (EOFError, OSError):
                        self._died(w)
                    if message == ('ready',):
                        self._attached(w)
            for w, proc in enumerate(self.procs):
                if proc.sentinel in ready and w not in self.ready and not self.conns[w].poll():
                    self._died(w)

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def submit(self, batch_no, n, chunk):
        """Queue a batch of n items: every worker gets an equal contiguous
        chunk of it, so they all work on the oldest batch first and none waits
        behind another. chunk(start, stop) -> (payload, the chunk's file names)."""
        slot = self.free.pop(0)
        bounds = np.linspace(0, n, len(self.procs) + 1).astype(int)
        chunks = 0
        for w, (conn, start, stop) in enumerate(zip(self.conns, bounds[:-1], bounds[1:])):
            if stop > start:
                payload, names = chunk(int(start), int(stop))
                try:
                    conn.send((batch_no, slot, int(start), payload))
                except OSError:            # BrokenPipeError: the worker is gone
                    self._died(w)
                self.inflight[w][(batch_no, int(start))] = list(names)
                chunks += 1
        self.slot_of[batch_no] = slot
        self.pending[batch_no] = chunks

    def wait(self, batch_no, shape):
        """The finished batch as an array view of its slot; raises DataLoadError,
        also when no worker has answered for ``timeout`` seconds (a stalled
        network mount: the error names the worker and its images)."""
        last_answer = time.monotonic()
        while self.pending[batch_no]:
            if time.monotonic() - last_answer > self.timeout:
                self._stalled()
            ready = connection.wait(self.conns + [p.sentinel for p in self.procs],
                                    timeout=min(5.0, self.timeout))
            for w, conn in enumerate(self.conns):
                if conn not in ready:
                    continue
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    self._died(w)
                last_answer = time.monotonic()
                if message == ('ready',):
                    self._attached(w)
                    continue
                done, start, error = message
                self.inflight[w].pop((done, start), None)
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
        self.ready.add(w)

    def _stalled(self):
        """DataLoadError naming the workers that hold unfinished images."""
        stuck = ['worker process %d was reading %s' % (
            self.procs[w].pid, ', '.join(p for paths in tasks.values() for p in paths)[:2000])
            for w, tasks in enumerate(self.inflight) if tasks]
        raise DataLoadError('no data worker answered for %.0f s (a stalled file system?): %s. '
                            'Raise the layer\'s timeout if reading is just slow'
                            % (self.timeout, '; '.join(stuck) or 'no image in flight'))

    def _died(self, w):
        proc = self.procs[w]
        proc.join(1)
        code = proc.exitcode
        if code is not None and code < 0:
            try:
                how = 'was killed by %s' % signal.Signals(-code).name
            except ValueError:
                how = 'was killed by signal %d' % -code
        else:
            how = 'exited unexpectedly with exit code %s' % code
        raise DataLoadError('data worker %d of %d (process %d, %s) %s; its own error, if any, is on '
                            'stderr' % (w + 1, len(self.procs), proc.pid, self.python, how))

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
        for segment in self.slots:
            segment.close()


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

_WITH_WORKERS = weakref.WeakSet()   # the layers whose workers still run
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
    from caffe_mlic.caffe.prototxt import caffe_net
    net = caffe_net(_PROBE_NET, 'TEST')
    ref = _probes.pop()
    del net
    probe = ref()
    # getrefcount counts its argument and our local `probe`.
    return 0 if probe is None else sys.getrefcount(probe) - 2


def _reap_orphans(phase, info):
    if phase != 'start' or not _WITH_WORKERS or not _orphan_refs:
        return
    for layer in list(_WITH_WORKERS):
        # Ours: the list, `layer`, getrefcount's argument.
        if sys.getrefcount(layer) - 3 <= _orphan_refs:
            # (a stop signal here is only recorded, never raised: Python would print and drop it;
            # processes.signals_remembered raises it again at the command's next output)
            layer.close()


gc.callbacks.append(_reap_orphans)


def start_workers(layer, n_workers, slot_bytes, filler, context, timeout=STALL_TIMEOUT):
    """Start ``n_workers`` workers with PREFETCH slots of ``slot_bytes`` for
    ``layer``, and stop them when the layer goes: when Python frees it, when
    only Caffe's own reference to it is left (the gc callback calls
    ``layer.close()``), or at interpreter exit (finalize's atexit); the
    workers are daemons and also leave by themselves when this process dies.

    Returns (workers, stop): pass stop to stop_workers to stop them sooner."""
    global _orphan_refs
    if _orphan_refs is None:
        try:
            _orphan_refs = _measure_orphan_refs()
        except Exception:       # no probe: finalize, atexit and parent watching remain
            _orphan_refs = 0
    workers = PrefetchWorkers(n_workers, PREFETCH, slot_bytes, filler, context, timeout, type(layer).__name__)
    # The finalizer holds the workers, not the layer (that would keep it alive).
    stop = weakref.finalize(layer, workers.close)
    _WITH_WORKERS.add(layer)
    return workers, stop


def stop_workers(layer, stop):
    """Stop the workers start_workers gave ``layer`` now; safe to call twice."""
    _WITH_WORKERS.discard(layer)
    stop()


def stop_all_workers():
    """Stop every layer's workers now: before os._exit, which runs no
    finalizer (layers.base ends the caffe binary so on our errors)."""
    for layer in list(_WITH_WORKERS):
        try:
            layer.close()
        except Exception:       # (stopping the others matters more)
            pass
