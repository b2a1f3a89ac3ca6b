"""Reading MATLAB .mat files: v5 (scipy.io) and v7.3 (HDF5, with h5py).

``read_mat(path, names)`` returns the variables asked for that the file has,
as plain Python values, the same for both versions:

- a numeric matrix: a numpy array in MATLAB's shape (rows x columns);
- a char array: a str (one row) or a list of str (one per row);
- a cell array: a list of its elements, in MATLAB's linear (column-major)
  order, each converted by these rules; empty matrices are empty arrays.

In a v7.3 file every variable is an HDF5 dataset holding the matrix
transposed (MATLAB is column-major), with the MATLAB type in its
``MATLAB_class`` attribute; a cell array is a dataset of object references
to datasets under ``#refs#``; an empty matrix is a dataset of its
dimensions with ``MATLAB_empty`` set; chars are UTF-16 code units.
Structs and other types are refused with a message naming the variable.
"""
import numpy as np

from caffe_mlic.errors import InputError, Problem

HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'


def _fail(path, message, field=None):
    raise InputError(problems=[Problem(path, None, field, message)])


def is_hdf5(path):
    """True for an HDF5 file (MATLAB v7.3 puts a 512-byte header before it)."""
    with open(path, 'rb') as f:
        head = f.read(2048 + len(HDF5_SIGNATURE))
    return any(head[k:k + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for k in (0, 512, 1024, 2048))


def read_mat(path, names):
    """({name: value} of the variables in ``names`` the file has, [every
    variable name in the file]); InputError naming the file otherwise."""
    try:
        hdf5 = is_hdf5(path)
    except OSError as e:
        _fail(path, 'cannot read: %s' % (e.strerror or e))
    return _read_v73(path, names) if hdf5 else _read_v5(path, names)


# ------------------------------------------------------------------ v5

def _v5_value(value):
    if isinstance(value, np.ndarray) and value.dtype == object:
        return [_v5_value(v) for v in value.ravel(order='F')]
    if isinstance(value, np.ndarray) and value.dtype.kind == 'U':
        rows = [str(s) for s in value.ravel(order='F')]
        return rows[0] if len(rows) == 1 else rows
    if isinstance(value, np.ndarray) and value.dtype.names:
        raise TypeError('a struct')
    return np.asarray(value)


def _read_v5(path, names):
    import scipy.io
    try:
        every = [name for name, _, _ in scipy.io.whosmat(path)]
        raw = scipy.io.loadmat(path, variable_names=[n for n in names if n in every],
                               chars_as_strings=True)
    except Exception as e:  # noqa: BLE001  scipy raises many types for a bad file
        _fail(path, 'not a readable MATLAB .mat file: %s' % (str(e) or type(e).__name__))
    out = {}
    for name in names:
        if name in raw:
            try:
                out[name] = _v5_value(raw[name])
            except TypeError as e:
                _fail(path, 'variable %r is %s, which this reader does not take' % (name, e))
    return out, every


# ------------------------------------------------------------------ v7.3

def _h5_class(obj):
    cls = obj.attrs.get('MATLAB_class', b'')
    return cls.decode('ascii', 'replace') if isinstance(cls, bytes) else str(cls)


def _h5_char(data):
    """str, or list of str, of a char matrix stored transposed as UTF-16 code units."""
    codes = np.asarray(data, np.uint16)
    rows = codes.reshape(1, -1) if codes.ndim < 2 else codes.T
    texts = [row.tobytes().decode('utf-16-le', 'replace') for row in rows]
    return texts[0] if len(texts) == 1 else texts


def _h5_value(f, obj, name):
    import h5py
    if not isinstance(obj, h5py.Dataset):
        raise TypeError('a struct or object (HDF5 group)')
    cls = _h5_class(obj)
    if obj.attrs.get('MATLAB_empty', 0):
        return '' if cls == 'char' else [] if cls == 'cell' else np.zeros((0, 0))
    data = obj[()]
    if cls == 'cell' or h5py.check_ref_dtype(data.dtype) is not None:
        return [_h5_value(f, f[ref], name) for ref in np.asarray(data).ravel()]
    if cls == 'char':
        return _h5_char(data)
    if data.dtype.names:
        raise TypeError('a complex or struct array')
    return np.asarray(data).T


def _read_v73(path, names):
    try:
        import h5py
    except ImportError:
        _fail(path, 'a MATLAB v7.3 (HDF5) file: reading it needs the h5py module '
                    '(Debian: apt-get install python3-h5py; or pip install h5py)')
    try:
        with h5py.File(path, 'r') as f:
            every = [k for k in f.keys() if not k.startswith('#')]
            out = {}
            for name in names:
                if name in every:
                    try:
                        out[name] = _h5_value(f, f[name], name)
                    except TypeError as e:
                        _fail(path, 'variable %r is %s, which this reader does not take' % (name, e))
            return out, every
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001  h5py raises OSError, KeyError, ValueError...
        _fail(path, 'not a readable MATLAB v7.3 (HDF5) file: %s' % (str(e) or type(e).__name__))
