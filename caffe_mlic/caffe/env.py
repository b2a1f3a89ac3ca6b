"""Where Caffe is, and the environment its binary needs for our Python layers.

Resolution order for the Caffe root:
1. ``$CAFFE_ROOT`` (a user's own build; we build nothing then);
2. the pycaffe that ``import caffe`` finds (``make install`` puts a ``.pth``
   file for the cached build into the venv), whose root is three levels up.

Which build that is (CPU-only or CUDA: ``build_kind``), which GPUs the NVIDIA
driver shows (``visible_gpus``), and the check that a GPU device can be used
before Caffe would abort on it (``check_gpu``).
"""
import contextlib
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


def caffe_tool(name, root=None):
    """One of the build's other tools beside the caffe binary (``name``:
    upgrade_net_proto_text, convert_imageset, ...), looked for where
    _BIN_CANDIDATES look for the binary."""
    candidates = tuple(os.path.join(os.path.dirname(rel), os.path.basename(rel).replace('caffe', name, 1))
                       for rel in _BIN_CANDIDATES)
    return _first_existing(root or caffe_root(), candidates, name)


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
    env.setdefault(PYTHON_ENV, sys.executable)
    return env


# ---------------------------------------------------------------- the workers' Python

# CAFFE_MLIC_PYTHON: the Python our data layers' worker processes run (inside
# the caffe binary sys.executable is the binary; binary_environment sets it to
# this interpreter unless the user did), and the one tools/build_caffe.sh
# builds pycaffe against. A user may point it at a wrapper script.
PYTHON_ENV = 'CAFFE_MLIC_PYTHON'
# Seconds a Python is given to answer (python_problem): one that starts and
# imports numpy, cv2 and pycaffe takes a second or two.
PYTHON_TIMEOUT = 30.0
_MARK = 'caffe-mlic-python'
# Runs under whatever Python it is given (Python 2 too, to say so): a line
# with its version, then one per module: "ok NAME VERSION" or "fail NAME WHY".
_PROBE = r"""
import sys
sys.stdout.write('%s %d.%d\n' % (sys.argv[1], sys.version_info[0], sys.version_info[1]))
for name in sys.argv[2:]:
    try:
        module = __import__(name, fromlist=['_'])
        sys.stdout.write('ok %s %s\n' % (name, getattr(module, '__version__', '?')))
    except BaseException as e:
        sys.stdout.write('fail %s %s: %s\n' % (name, type(e).__name__, str(e).replace('\n', ' ')))
    sys.stdout.flush()
"""


def run_bounded(argv, env=None, timeout=PYTHON_TIMEOUT):
    """Run ``argv`` (a program a user named: maybe a wrapper script) in a
    session of its own, stdin closed: (exit status, or None when it ran past
    ``timeout`` s; its stdout; its stderr). When it ends, or at the timeout,
    its whole process group is killed: a script that leaves children behind
    (`sleep 600 &`) or never ends costs at most ``timeout`` and leaves
    nothing running. Output goes to files: a child left holding a pipe
    would keep a reader waiting. OSError when it cannot be started."""
    import signal
    import subprocess
    import tempfile
    import time
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                                start_new_session=True)
        code = None
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                # WNOWAIT: it stays a zombie, so its process group id cannot be
                # reused by another process before the kill below
                if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    break
                time.sleep(0.01)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            code = proc.wait()
            timed_out = time.monotonic() >= deadline
        out.seek(0)
        err.seek(0)
        return (None if timed_out and code == -signal.SIGKILL else code,
                out.read().decode(errors='replace'), err.read().decode(errors='replace'))


def python_problem(exe, modules=(), env=None, timeout=PYTHON_TIMEOUT, numpy_major=1):
    """Why ``exe`` cannot be the Python of our worker processes, or None (one
    function for `doctor` and the data layers, so both say the same): no such
    file, a bare name (workers are started with it as a path: exec looks in
    the working folder, not on PATH, so the message names the PATH match to
    give), not an executable file, not a Python 3 that runs `-c CODE` (a wrapper script
    that does something else, hangs or exits), or one that cannot import
    ``modules`` (numpy must be ``numpy_major``.x: pycaffe is built for 1.x).
    ``env``: the environment it runs in (the binary's, for its PYTHONPATH)."""
    if not os.path.exists(exe):
        if os.sep not in exe:   # (multiprocessing execs it as a path: PATH is not searched)
            import shutil
            found = shutil.which(exe, path=(env or os.environ).get('PATH'))
            return ('a bare name, which is not looked up on PATH: give its path%s'
                    % (' (on PATH: %s)' % found if found else ', none is on PATH either'))
        return 'no such file'
    if os.path.isdir(exe):
        return 'a folder, not a Python'
    if not os.access(exe, os.X_OK):
        return 'not executable'
    try:
        code, out, err = run_bounded([exe, '-c', _PROBE, _MARK] + list(modules), env, timeout)
    except OSError as e:
        return 'cannot be run: %s' % (e.strerror or e)
    lines = out.splitlines()
    if code is None and not lines:
        return ('did not answer within %.0f s: not a Python, or it hangs (what it started was killed)'
                % timeout)
    if not lines or not lines[0].startswith(_MARK + ' '):
        said = (err.strip() or out.strip()).splitlines()
        return ('not a Python that runs `-c CODE`: it exited with status %s%s' % (
            code, ', saying: %s' % said[-1][:200] if said else ' and printed nothing'))
    version = lines[0].split()[1]
    if not version.startswith('3.'):
        return 'Python %s; caffe-mlic needs Python 3' % version
    results = {}
    for line in lines[1:]:
        status, name, rest = (line.split(' ', 2) + ['', ''])[:3]
        results[name] = (status, rest)
    for name in modules:
        status, rest = results.get(name, ('fail', 'it stopped before importing it (exit status %s%s)'
                                          % (code, ', timed out' if code is None else '')))
        if status != 'ok':
            return 'its Python %s cannot import %s: %s' % (version, name, rest)
        if name == 'numpy' and numpy_major is not None and not rest.startswith('%d.' % numpy_major):
            return 'its numpy is %s; pycaffe is built for numpy %d.x' % (rest, numpy_major)
    return None


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
    needs_cudart = _libcaffe_holds(b'libcudart.so', root)
    return None if needs_cudart is None else GPU if needs_cudart else CPU


def _libcaffe_holds(text, root=None):
    """Whether the libcaffe of the Caffe at ``root`` holds the bytes
    ``text`` (a library it needs, a symbol); None without one."""
    try:
        libdir = caffe_libdir(root)
    except CaffeNotFound:
        return None
    for path in sorted(glob.glob(os.path.join(libdir, 'libcaffe*.so*'))):
        if os.path.isfile(path) and os.path.getsize(path):
            with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                return m.find(text) >= 0
    return None


# The function tools/caffe-patches/0005 adds (C++ name): a build with it never writes a
# snapshot or saved weights through a link.
_OPEN_FOR_WRITING = b'_ZN5caffe14OpenForWritingEPKc'


def writes_replace_links(root=None):
    """Whether the Caffe at ``root`` replaces a link at a snapshot's name
    instead of writing through it (our patch 0005; a user's own build does
    not)."""
    return bool(_libcaffe_holds(_OPEN_FOR_WRITING, root))


# The cuDNN convolution's workspace bound a layer, in MB (tools/caffe-patches/gpu/0005-cudnn8.patch).
CUDNN_WORKSPACE_ENV = 'CAFFE_MLIC_CUDNN_WORKSPACE_MB'


def build_cudnn(root=None):
    """(whether the Caffe at ``root`` links cuDNN, its version as its
    Makefile.config's include folders tell, or None)."""
    root = root or caffe_root()
    try:
        libdir = caffe_libdir(root)
    except CaffeNotFound:
        return False, None
    linked = False
    for path in sorted(glob.glob(os.path.join(libdir, 'libcaffe*.so*'))):
        if os.path.isfile(path) and os.path.getsize(path):
            with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                linked = m.find(b'libcudnn.so') >= 0
            break
    version = None
    config = os.path.join(root, 'Makefile.config')
    if linked and os.path.isfile(config):
        with open(config) as f:
            folders = [d for line in f if line.startswith('INCLUDE_DIRS') for d in line.split()[2:]]
        for folder in folders:
            try:
                with open(os.path.join(folder, 'cudnn_version.h')) as f:
                    found = dict(re.findall(r'^#define CUDNN_(MAJOR|MINOR|PATCHLEVEL)\s+(\d+)', f.read(), re.M))
            except OSError:
                continue
            if 'MAJOR' in found:
                version = '.'.join(found.get(k, '0') for k in ('MAJOR', 'MINOR', 'PATCHLEVEL'))
                break
    return linked, version


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


MULTI_GPU = ('one process trains on one GPU (the binary refuses Python layers on several GPUs, and this '
             'pycaffe has no NCCL bindings): for several, run one rank per GPU, e.g. '
             'mpirun -np 2 caffe-mlic train SOLVER --gpu 0,1')


def gpu_ids(value, flag):
    """Device ids of a --gpu / -gpu value: '0', '0,1' or 'all' (the GPUs the
    driver shows); UsageError naming ``flag`` for anything else."""
    from caffe_mlic.errors import UsageError
    if value == 'all':
        names, why = visible_gpus()
        if not names:
            raise RunError('%s all: no GPU is available: %s' % (flag, why))
        return list(range(len(names)))
    from caffe_mlic.fileio import text_integer
    try:
        ids = [text_integer(i) for i in value.split(',')]       # (int() reads 1_0 as 10)
    except ValueError:
        ids = [-1]
    if any(i < 0 or i > 1023 for i in ids):
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
    workspace = os.environ.get(CUDNN_WORKSPACE_ENV, '')
    if workspace and not (workspace.isascii() and workspace.isdigit() and int(workspace) <= 1 << 20):
        # (the patched cuDNN layer CHECKs it: an abort at the first convolution)
        raise RunError('%s=%r: expected a whole number of MB (at most %d)' % (CUDNN_WORKSPACE_ENV, workspace, 1 << 20))
    names, why = visible_gpus()
    for i in device_ids:
        if i < 0 or i >= len(names):
            raise RunError('GPU %d is not available: %s' % (
                i, why or '%d GPU(s) visible (%s)' % (len(names), ', '.join(
                    '%d: %s' % (j, n) for j, n in enumerate(names)))))
    return names


# glog's InstallFailureFunction(void (*)()), C++-mangled, in libglog
_INSTALL_FAILURE_FUNCTION = '_ZN6google22InstallFailureFunctionEPFvvE'
_failure_function = []      # the ctypes callback, kept alive for the process
_on_check_failure = []      # what to tidy first, innermost last (caffe_check_cleanup)
_programs = []              # the command names of the caffe_checks_end_cleanly blocks running


@contextlib.contextmanager
def caffe_check_cleanup(tidy):
    """Run ``tidy()`` should a Caffe CHECK end the process while the block
    runs (caffe_checks_end_cleanly): nothing unwinds then, no ``finally``
    runs, so what must not be left half done (a run folder, a run.json
    saying "running") is put right here."""
    entry = (os.getpid(), tidy)     # a forked child (fileio's writer) tidies nothing of its parent's
    _on_check_failure.append(entry)
    try:
        yield
    finally:
        _on_check_failure.remove(entry)


@contextlib.contextmanager
def caffe_checks_end_cleanly(program):
    """While the block runs, a failed CHECK of Caffe (glog's FATAL) in this
    process ends it with exit code 1 and one line from ``program()`` (the
    command's name) after glog's "Check failed" line, instead of a stack
    trace and an abort (rc 134, maybe a core dump): for the settings and
    inputs we do not check before Caffe does (check_net names most, with the
    layer). Outside such a block (pycaffe used as a library) a failed
    CHECK still aborts, with no stack trace. Either way the tidy functions
    of caffe_check_cleanup run first.
    glog's failure function is installed once pycaffe is imported: libglog
    must be the one pycaffe loaded (loaded ahead of pycaffe, it brings its
    libunwind in first, and then boost.python's exceptions abort). Without
    libglog (a user's static build), nothing changes."""
    if not _failure_function:
        if 'caffe' in sys.modules:
            _install_failure_function()
        elif not any(isinstance(finder, _AfterPycaffe) for finder in sys.meta_path):
            sys.meta_path.insert(0, _AfterPycaffe())
    _programs.append(program)
    _tell_cleanly()
    try:
        yield
    finally:
        _programs.remove(program)
        _tell_cleanly()


def _tell_cleanly():
    if len(_failure_function) == 2:
        _failure_function[1].glogfail_cleanly(1 if _programs else 0)


class _AfterPycaffe:
    """An import hook that installs glog's failure function right after
    pycaffe's first import, then leaves sys.meta_path."""

    def find_spec(self, name, path=None, target=None):
        if name != 'caffe' or self not in sys.meta_path:
            return None
        import importlib.util
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and hasattr(spec.loader, 'exec_module'):
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                _install_failure_function()
            spec.loader.exec_module = exec_module
        return spec


# glog calls its failure function on the thread whose CHECK failed. On one of
# Caffe's own threads (a Data layer's reader, a prefetch thread) a Python
# callback would wait for the GIL that the main thread holds while it waits
# for that thread: a hang no signal ends. So glog gets this C function: on
# the main thread (which holds the GIL: every pycaffe call does) it calls
# the Python callback (tidy, our line, exit 1); on any other thread it
# writes its line and exits, without Python (exit 1 inside
# caffe_checks_end_cleanly, else abort, as glog would).
_GLOG_FAIL_C = r"""
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static void (*on_main)(void);
static pthread_t main_thread;
static volatile int cleanly;
static const char line[] = "caffe-mlic: Caffe stopped on the check above (on one of its threads), "
                           "a setting or input it refuses\n";
void glogfail_set(void (*callback)(void)) { on_main = callback; main_thread = pthread_self(); }
void glogfail_cleanly(int yes) { cleanly = yes; }
void glogfail_fail(void) {
    if (on_main && pthread_equal(pthread_self(), main_thread)) on_main();
    if (cleanly) {
        ssize_t written = write(2, line, sizeof line - 1);
        (void) written;
        _exit(1);
    }
    abort();
}
"""


def _glog_fail_library():
    """The C failure function above, compiled once per machine into the
    cache (~/.cache/caffe-mlic), or None where no C compiler works."""
    import hashlib
    import shutil
    import subprocess
    import tempfile
    digest = hashlib.sha256(_GLOG_FAIL_C.encode()).hexdigest()[:12]
    cache = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'caffe-mlic')
    path = os.path.join(cache, 'glogfail-%s.so' % digest)
    if not os.path.exists(path):
        compiler = shutil.which('cc') or shutil.which('gcc')
        if compiler is None:
            return None
        try:
            os.makedirs(cache, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=cache) as tmp:
                source = os.path.join(tmp, 'glogfail.c')
                with open(source, 'w') as f:
                    f.write(_GLOG_FAIL_C)
                built = os.path.join(tmp, 'glogfail.so')
                subprocess.run([compiler, '-shared', '-fPIC', '-O2', '-o', built, source, '-lpthread'],
                               check=True, capture_output=True, timeout=60)
                os.replace(built, path)
        except (OSError, subprocess.SubprocessError):
            return None
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


def _loaded_glog():
    """The path of the libglog this process has loaded (pycaffe's: .so.1 on
    Debian, .so.0 on older Ubuntu), from /proc/self/maps; else the usual name."""
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                path = line.rstrip('\n').split(None, 5)[-1] if len(line.split()) >= 6 else ''
                if os.path.basename(path).startswith('libglog.so'):
                    return path
    except OSError:
        pass
    return 'libglog.so.1'


def _install_failure_function():
    try:
        # (a handle, not made global: RTLD_GLOBAL put glog's libunwind ahead of libgcc's unwinder for
        # every library bound later, and an exception OpenCV throws and catches inside imdecode (a
        # truncated TIFF) then aborted the process, half unwound by each)
        glog = ctypes.CDLL(_loaded_glog(), mode=os.RTLD_NOLOAD)
        install = getattr(glog, _INSTALL_FAILURE_FUNCTION)
    except (OSError, AttributeError, TypeError):
        return False
    shim = _glog_fail_library()
    if shim is None:        # a Python callback alone could hang (above): glog's own abort stays
        return False

    @ctypes.CFUNCTYPE(None)
    def caffe_check_failed():       # on the main thread; glog has written its message
        try:
            for pid, tidy in reversed(_on_check_failure):
                if pid == os.getpid():
                    with contextlib.suppress(BaseException):
                        tidy()
            if _programs:
                os.write(2, ('%s: Caffe stopped on the check above, a setting or input it refuses\n'
                             % _programs[-1]()).encode('utf-8', 'replace'))
                os._exit(1)
        finally:
            os.abort()
    shim.glogfail_set.argtypes, shim.glogfail_set.restype = [ctypes.c_void_p], None
    shim.glogfail_cleanly.argtypes, shim.glogfail_cleanly.restype = [ctypes.c_int], None
    shim.glogfail_set(ctypes.cast(caffe_check_failed, ctypes.c_void_p))
    shim.glogfail_cleanly(1 if _programs else 0)
    install.argtypes, install.restype = [ctypes.c_void_p], None
    install(ctypes.cast(shim.glogfail_fail, ctypes.c_void_p))
    _failure_function[:] = [caffe_check_failed, shim]
    return True
