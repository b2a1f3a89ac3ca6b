"""`caffe-mlic doctor`: is everything in place to run our nets?"""
import importlib
import os
import subprocess
import sys

from caffe_mlic.caffe import env as caffe_env


def _version(module):
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # report, don't crash: that is the doctor's job
        return None, str(e)
    return getattr(mod, '__version__', 'unknown'), None


# What a worker process of our data layers imports (layers/prefetch.py).
WORKER_MODULES = ('numpy', 'caffe', 'cv2', 'caffe_mlic.layers.prefetch')


def _check_worker_python(line, problems):
    """CAFFE_MLIC_PYTHON, when set: an executable Python that imports what
    the data workers import, with numpy 1.x, in the binary's environment
    (its PYTHONPATH). Run bounded, in a process group that is killed after."""
    exe = os.environ.get(caffe_env.PYTHON_ENV)
    if not exe:
        line('workers python', '%s (%s is not set)' % (sys.executable, caffe_env.PYTHON_ENV))
        return
    try:
        env = caffe_env.binary_environment()
    except caffe_env.CaffeNotFound:
        env = None          # (said above)
    problem = caffe_env.python_problem(exe, WORKER_MODULES, env=env)
    if problem:
        line('workers python', '%s=%s: %s' % (caffe_env.PYTHON_ENV, exe, problem))
        problems.append('%s=%s: %s' % (caffe_env.PYTHON_ENV, exe, problem))
    else:
        line('workers python', '%s (from %s; imports %s)' % (exe, caffe_env.PYTHON_ENV, ', '.join(WORKER_MODULES)))


def run(out=sys.stdout):
    problems = []

    def line(label, value):
        out.write('%-22s %s\n' % (label + ':', value))

    line('python', '%s (%s)' % (sys.executable, sys.version.split()[0]))
    try:
        root = caffe_env.caffe_root()
        line('caffe root', root + (' (from $CAFFE_ROOT)' if os.environ.get('CAFFE_ROOT') else ''))
        kind = caffe_env.build_kind(root)
        line('caffe build', {caffe_env.CPU: 'CPU-only (`make install GPU=1` switches to the CUDA build)',
                             caffe_env.GPU: 'GPU (CUDA); CPU mode works too (`make install` '
                                            'switches back to the CPU build)'}.get(kind, 'unknown'))
        if kind == caffe_env.GPU:
            linked, version = caffe_env.build_cudnn(root)
            line('cudnn', ('cuDNN %s' % version if version else 'cuDNN (version unknown)') + (
                ' for the convolutions, pooling and activations (workspace bound %s MB a layer: %s)'
                % (os.environ.get(caffe_env.CUDNN_WORKSPACE_ENV) or '8', caffe_env.CUDNN_WORKSPACE_ENV))
                if linked else 'not in this build (CAFFE_MLIC_CUDNN=0): Caffe\'s own CUDA convolutions')
        names, why = caffe_env.visible_gpus()
        line('gpus', ', '.join('%d: %s' % item for item in enumerate(names)) if names
             else 'none visible: %s' % why)
        import caffe
        line('pycaffe', caffe.__file__)
        line('caffe version', getattr(caffe, '__version__', 'unknown'))
        caffe.set_mode_cpu()
        line('mode', 'CPU or GPU (caffe-mlic train --gpu ID; caffe-mlic caffe train -gpu ID)'
             if kind == caffe_env.GPU and names else
             'CPU (a GPU build, but no GPU visible: Caffe logs "Cannot create Cublas handle" '
             'and runs on the CPU)' if kind == caffe_env.GPU else 'CPU')
        if 'Python' in caffe.layer_type_list():
            line('python layers', 'supported')
        else:
            line('python layers', 'NOT supported')
            problems.append('this Caffe was built without WITH_PYTHON_LAYER := 1')
        binary = caffe_env.caffe_binary(root)
        env = caffe_env.binary_environment(root=root)
        res = subprocess.run([binary, '--version'], env=env, capture_output=True, text=True)
        if res.returncode == 0:
            line('caffe binary', '%s (%s)' % (binary, res.stdout.strip() or res.stderr.strip()))
        else:
            line('caffe binary', '%s FAILS: %s' % (binary, (res.stderr or res.stdout).strip()[-300:]))
            problems.append('the caffe binary does not run')
    except Exception as e:
        line('caffe', 'NOT FOUND: %s' % e)
        problems.append(str(e))

    for module, label in (('numpy', 'numpy'), ('google.protobuf', 'protobuf'),
                          ('cv2', 'opencv'), ('scipy', 'scipy'), ('numba', 'numba')):
        ver, err = _version(module)
        if err:
            line(label, 'MISSING (%s)' % err)
            problems.append('%s cannot be imported: %s' % (label, err))
        else:
            line(label, ver)
    ver, _ = _version('numpy')
    if ver and ver != 'unknown' and int(ver.split('.')[0]) >= 2:
        problems.append('numpy %s is loaded; pycaffe is built for numpy 1.x '
                        '(the venv pins numpy<2; remove the numpy 2 install)' % ver)
    try:
        import cv2
        cv2.ximgproc  # noqa: B018 - proposals need opencv-contrib
        line('opencv contrib', 'ximgproc available')
    except Exception:
        line('opencv contrib', 'ximgproc MISSING (proposals need opencv-contrib)')
        problems.append('OpenCV without the contrib ximgproc module')
    _check_worker_python(line, problems)
    try:
        import caffe_mlic.layers as layers
        line('caffe_mlic.layers', ', '.join(sorted(layers.__all__)))
    except Exception as e:
        line('caffe_mlic.layers', 'IMPORT FAILS: %s' % e)
        problems.append('caffe_mlic.layers does not import: %s' % e)

    if problems:
        out.write('\nProblems:\n' + ''.join('  - %s\n' % p for p in problems))
        return 1
    out.write('\nAll good.\n')
    return 0
