"""Where Caffe is, and the environment its binary needs for our Python layers.

Resolution order for the Caffe root:
1. ``$CAFFE_ROOT`` (a user's own build; we build nothing then);
2. the pycaffe that ``import caffe`` finds (``make install`` puts a ``.pth``
   file for the cached build into the venv), whose root is three levels up.
"""
import glob
import os
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
