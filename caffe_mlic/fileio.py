"""Atomic file writes: a reader never sees a half-written file."""
import contextlib
import json
import math
import os
import tempfile


@contextlib.contextmanager
def atomic_write(path, mode='w', **kwargs):
    """Write to a temp file beside ``path`` and rename it over ``path`` on success."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', suffix='.tmp', dir=directory)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file 0600; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_save_npz(path, **arrays):
    import numpy as np
    with atomic_write(path, 'wb') as f:
        np.savez_compressed(f, **arrays)


def atomic_save_npy(path, array):
    import numpy as np
    with atomic_write(path, 'wb') as f:
        np.save(f, array, allow_pickle=False)


def json_ready(value):
    """``value`` with NaN/inf floats as None (JSON has no NaN) and numpy
    scalars and arrays as Python numbers and lists."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, 'tolist') and not isinstance(value, (str, bytes)):
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path, data, indent=1, sort_keys=False):
    """Write ``data`` as JSON (non-finite numbers as null), atomically."""
    with atomic_write(path) as f:
        f.write(json.dumps(json_ready(data), indent=indent, sort_keys=sort_keys) + '\n')
    return path
