"""The one progress bar for long commands (proposals, synth, training, inference).

A tqdm bar on stderr when stderr is a terminal, and silent otherwise, so
logs and pipes get no carriage-return noise. ``CAFFE_MLIC_PROGRESS=always``
forces the bar on (e.g. to watch a run through ``tee``), ``never`` turns it
off everywhere.
"""
import os
import sys

# Where bars draw when no stream is given (None: stderr); a `run` chain whose
# output goes to its log sets the terminal here.
DEFAULT_STREAM = None


def progress_enabled(stream=None, enabled=True):
    if not enabled:
        return False
    mode = os.environ.get('CAFFE_MLIC_PROGRESS', '').lower()
    if mode == 'always':
        return True
    if mode == 'never':
        return False
    stream = stream or DEFAULT_STREAM or sys.stderr
    return bool(getattr(stream, 'isatty', lambda: False)())


def progress(iterable=None, total=None, desc=None, unit='it', enabled=True, stream=None, **kw):
    """A tqdm bar over ``iterable`` (or a manual one with ``total``: call
    ``.update(n)``, ``.set_postfix(...)``, ``.write(line)``). When disabled
    it is a tqdm that prints nothing, so callers never branch on it."""
    from tqdm import tqdm
    if not getattr(tqdm, '_caffe_mlic_thread_lock', False):
        # tqdm's default lock holds a multiprocessing semaphore: a process
        # killed with one (a `run` chain) leaves the resource tracker warning
        # of a leak on its parent's stderr. Our bars never cross processes.
        import threading
        tqdm.set_lock(threading.RLock())
        tqdm._caffe_mlic_thread_lock = True
    stream = stream or DEFAULT_STREAM or sys.stderr
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, dynamic_ncols=True,
                disable=not progress_enabled(stream, enabled), **kw)
