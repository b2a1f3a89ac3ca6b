"""Where Caffe is, and the environment its binary needs for our Python layers.

Resolution order for the Caffe root:
1. ``$CAFFE_ROOT`` (a user's own build; we build nothing then);
2. the pycaffe that ``import caffe`` finds (``make install`` puts a ``.pth``
   file for the cached build into the venv), whose root is three levels up.

Which build that is (CPU-only or CUDA: ``build_kind``), which GPUs the NVIDIA
driver shows (``visible_gpus``), and the check that a GPU device can be used
before Caffe would abort on it (``check_gpu``).
"""
import ctypes
import glob
import mmap
import os
import re
import sys

import caffe_mlic
from caffe_mlic.errors import RunError

# `caffe-mlic caffe train -snapshot S` sets it to the TRAIN batch S's iteration
# reached; our data layers then continue their batch plan there.
START_BATCH_ENV = 'CAFFE_MLIC_START_BATCH'

# Places where Caffe builds keep their binaries and libcaffe, in the order we
# look: our cached sdist build links build -> .temp_release; BVLC's Makefile
# build links build -> .build_release; `make distribute` gives distribute/.
_BIN_CANDIDATES = ('build/tools/caffe.bin', 'build/tools/caffe', '.build_release/tools/caffe.bin',
                   '.temp_release/tools/caffe.bin', 'distribute/bin/caffe.bin',
                   'build/install/bin/caffe', 'bin/caffe')
_LIB_CANDIDATES = ('build/lib', '.build_release/lib', '.temp_release/lib', 'distribute/lib',
                   'build/install/lib', 'lib')


class CaffeNotFound(RunError):
    pass


def caffe_root():
    root = os.environ.get('CAFFE_ROOT')
    if root:
        if not os.path.isdir(root):
            raise CaffeNotFound('CAFFE_ROOT=%s is not a directory' % root)
        return os.path.abspath(root)
    try:
        import caffe
    except ImportError as e:
        raise CaffeNotFound('pycaffe cannot be imported (%s); run `make install`, '
                            'or set CAFFE_ROOT to an existing Caffe build' % e)
    return os.path.abspath(os.path.join(os.path.dirname(caffe.__file__), os.pardir, os.pardir))


def _first_existing(root, candidates, what):
    for rel in candidates:
        path = os.path.join(root, rel)
        if os.path.exists(path):
            return path
    raise CaffeNotFound('no %s under %s (looked for %s)' % (what, root, ', '.join(candidates)))


def caffe_binary(root=None):
    return _first_existing(root or caffe_root(), _BIN_CANDIDATES, 'caffe binary')


def caffe_libdir(root=None):
    root = root or caffe_root()
    for rel in _LIB_CANDIDATES:
        path = os.path.join(root, rel)
        if glob.glob(os.path.join(path, 'libcaffe*.so*')):
            return path
    raise CaffeNotFound('no libcaffe*.so under %s' % root)


def package_parent():
    """The directory that holds the caffe_mlic package (repo root or site-packages)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(caffe_mlic.__file__)))


def binary_environment(base=None, root=None):
    """os.environ plus what the caffe binary needs to import our layers."""
    root = root or caffe_root()
    env = dict(os.environ if base is None else base)

    def prepend(key, *paths):
        old = [p for p in env.get(key, '').split(os.pathsep) if p]
        env[key] = os.pathsep.join(list(paths) + [p for p in old if p not in paths])

    # site-packages of this interpreter come too: the binary embeds the system
    # libpython, which knows nothing of our venv.
    site = [p for p in sys.path if p.endswith(('site-packages', 'dist-packages')) and os.path.isdir(p)]
    prepend('PYTHONPATH', package_parent(), os.path.join(root, 'python'), *site)
    prepend('LD_LIBRARY_PATH', caffe_libdir(root))
    # Spawned data-layer workers must run a real Python, not the caffe binary.
    env.setdefault('CAFFE_MLIC_PYTHON', sys.executable)
    return env


# ---------------------------------------------------------------- CPU or GPU build

CPU, GPU = 'CPU', 'GPU'
_CPU_ONLY_LINE = re.compile(r'^\s*CPU_ONLY\s*[:?]?=\s*1\s*(#.*)?$', re.M)


def build_kind(root=None):
    """CPU or GPU: how the Caffe at ``root`` was built, or None when it cannot
    be told. The Makefile.config decides (ours say CPU_ONLY := 1 for the CPU
    build only); a build without one (CMake) is GPU when libcaffe needs
    libcudart."""
    root = root or caffe_root()
    config = os.path.join(root, 'Makefile.config')
    if os.path.isfile(config):
        with open(config) as f:
            return CPU if _CPU_ONLY_LINE.search(f.read()) else GPU
    try:
        libdir = caffe_libdir(root)
    except CaffeNotFound:
        return None
    for path in sorted(glob.glob(os.path.join(libdir, 'libcaffe*.so*'))):
        if os.path.isfile(path) and os.path.getsize(path):
            with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return GPU if m.find(b'libcudart.so') >= 0 else CPU
    return None


def visible_gpus():
    """(names of the GPUs the NVIDIA driver shows, in CUDA's order after
    CUDA_VISIBLE_DEVICES, or [], why none). Asks the driver library
    (libcuda.so.1) through ctypes: without a driver or a GPU this is ([],
    the reason), never a crash."""
    try:
        cuda = ctypes.CDLL('libcuda.so.1')
    except OSError:
        return [], 'no NVIDIA driver (libcuda.so.1 not found)'
    rc = cuda.cuInit(0)
    if rc != 0:
        return [], 'the NVIDIA driver finds no usable GPU (cuInit error %d%s)' % (
            rc, ': no CUDA-capable device' if rc == 100 else '')
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return [], 'the NVIDIA driver shows no GPU'
    names = []
    version = ctypes.c_int(0)
    if cuda.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value:
        driver = ' (driver for CUDA %d.%d)' % (version.value // 1000, version.value % 1000 // 10)
    else:
        driver = ''
    for i in range(count.value):
        dev, name = ctypes.c_int(0), ctypes.create_string_buffer(256)
        ok = cuda.cuDeviceGet(ctypes.byref(dev), i) == 0 and \
            cuda.cuDeviceGetName(name, len(name), dev) == 0
        names.append((name.value.decode(errors='replace') if ok else 'GPU %d' % i) + driver)
    return names, None


MULTI_GPU = ('this Caffe has no multi-GPU training for our nets: the binary refuses Python layers on '
             'several GPUs and this pycaffe has no NCCL bindings; train on one GPU')


def gpu_ids(value, flag):
    """Device ids of a --gpu / -gpu value: '0', '0,1' or 'all' (the GPUs the
    driver shows); UsageError naming ``flag`` for anything else."""
    from caffe_mlic.errors import UsageError
    if value == 'all':
        names, why = visible_gpus()
        if not names:
            raise RunError('%s all: no GPU is available: %s' % (flag, why))
        return list(range(len(names)))
    try:
        ids = [int(i) for i in value.split(',')]
    except ValueError:
        ids = [-1]
    if any(i < 0 for i in ids):
        raise UsageError("%s: expected GPU ids (0 or 0,1) or 'all', got %r" % (flag, value))
    return ids


def check_gpu(device_ids, root=None):
    """Raise RunError unless the active Caffe is a GPU build and every id in
    ``device_ids`` is a GPU the driver shows (Caffe itself would abort the
    process in a CHECK instead)."""
    kind = build_kind(root)
    root = root or caffe_root()
    if kind == CPU:
        raise RunError('the active Caffe (%s) is a CPU-only build, it cannot use a GPU: '
                       '`make install GPU=1` builds the CUDA one and makes it active '
                       '(README: "GPU build")' % root)
    names, why = visible_gpus()
    for i in device_ids:
        if i < 0 or i >= len(names):
            raise RunError('GPU %d is not available: %s' % (
                i, why or '%d GPU(s) visible (%s)' % (len(names), ', '.join(
                    '%d: %s' % (j, n) for j, n in enumerate(names)))))
    return names
