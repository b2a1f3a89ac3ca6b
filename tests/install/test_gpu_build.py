"""The CUDA build of Caffe (`make caffe GPU=1`: CUDA 13 with cuDNN 9), checked
where there is no GPU: it compiles and links (cuDNN's layers patched for
cuDNN 8+), its libraries resolve without LD_LIBRARY_PATH, and in CPU mode
(where the cuDNN engines are not chosen) it computes exactly what the CPU build
does (a net's blobs and gradients, the layer tests, `caffe train` and
`caffe-mlic train` on the tiny WSDDN net).

Not part of `make test`: each GPU build takes 15-25 minutes on 2 cores.
These run with CAFFE_MLIC_GPU_BUILD_TESTS=1 and a finished GPU build in the
cache (CAFFE_MLIC_GPU_ROOT overrides where); `make test-gpu-build` builds
both Caffes and runs them. Each build runs in its own process, chosen with
CAFFE_ROOT and PYTHONPATH, so the venv's active build does not matter.
"""
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from caffe_mlic.caffe import env as caffe_env

from tests import REPO
CACHE = os.environ.get('CAFFE_MLIC_CACHE') or os.path.expanduser('~/.cache/caffe-mlic')
# The Python layer tests, run again against the GPU build (in CPU mode).
LAYER_TESTS = ['tests/layers/test_roi_pooling.py', 'tests/layers/test_wsddn_score.py', 'tests/layers/test_interp.py',
               'tests/layers/test_kd_losses.py']
CUDA_LIBS = ('libcudart.so', 'libcublas.so', 'libcublasLt.so', 'libcurand.so')


def _caffe_version():
    with open(os.path.join(REPO, 'tools', 'build_caffe.sh')) as f:
        return re.search(r'^CAFFE_VERSION=(\S+)$', f.read(), re.M).group(1)


def _built(root):
    return root if root and os.path.isfile(os.path.join(root, '.caffe-mlic-stamp')) else None


# The default GPU build (CUDA 13 with cuDNN) and the one without cuDNN.
GPU_ROOT = _built(os.environ.get('CAFFE_MLIC_GPU_ROOT')
                  or os.path.join(CACHE, 'caffe-%s-gpu' % _caffe_version()))
NOCUDNN_ROOT = _built(os.path.join(CACHE, 'caffe-%s-gpu-nocudnn' % _caffe_version()))
CPU_ROOT = _built(os.path.join(CACHE, 'caffe-%s' % _caffe_version()))

pytestmark = [
    pytest.mark.skipif(os.environ.get('CAFFE_MLIC_GPU_BUILD_TESTS') != '1',
                       reason='the GPU build checks run with CAFFE_MLIC_GPU_BUILD_TESTS=1 '
                              '(make test-gpu-build)'),
    pytest.mark.skipif(GPU_ROOT is None, reason='no GPU build in %s (make caffe GPU=1)' % CACHE),
    pytest.mark.skipif(CPU_ROOT is None, reason='no CPU build in %s (make caffe)' % CACHE),
]


def env_for(root, **extra):
    """The environment that makes ``root`` the Caffe of a child process: its
    pycaffe first on PYTHONPATH, CAFFE_ROOT for the binary; no LD_LIBRARY_PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ('LD_LIBRARY_PATH', 'CAFFE_ROOT')}
    env.update(PYTHONPATH=os.pathsep.join([os.path.join(root, 'python'), REPO]), CAFFE_ROOT=root,
               GLOG_minloglevel='2')
    env.pop('CAFFE_MLIC_GPU_BUILD_TESTS', None)
    env.update(extra)
    return env


def run_python(root, script, *args, timeout=600, cwd=None):
    res = subprocess.run([sys.executable, '-c', textwrap.dedent(script)] + [str(a) for a in args],
                         env=env_for(root), cwd=cwd or REPO, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, 'with %s:\n%s%s' % (root, res.stdout[-3000:], res.stderr[-3000:])
    return res.stdout


# ---------------------------------------------------------------- compiled and linked


def test_the_builds_are_told_apart():
    assert caffe_env.build_kind(GPU_ROOT) == caffe_env.GPU
    assert caffe_env.build_kind(CPU_ROOT) == caffe_env.CPU


def test_libcaffe_has_no_undefined_caffe_symbols():
    lib = os.path.realpath(os.path.join(caffe_env.caffe_libdir(GPU_ROOT), 'libcaffe.so'))
    res = subprocess.run(['nm', '-DC', '--undefined-only', lib], capture_output=True, text=True,
                         check=True)
    undefined = [line for line in res.stdout.splitlines() if 'caffe::' in line]
    assert not undefined, '\n'.join(undefined)
    # ... and it is the CUDA build: the GPU code is in it.
    res = subprocess.run(['nm', '-DC', '--defined-only', lib], capture_output=True, text=True,
                         check=True)
    assert 'caffe::ReLULayer<float>::Forward_gpu' in res.stdout


@pytest.mark.parametrize('rel', ['build/tools/caffe.bin', 'python/caffe/_caffe.so', 'build/lib/libcaffe.so'])
def test_the_cuda_libraries_resolve_without_ld_library_path(rel):
    env = {k: v for k, v in os.environ.items() if k != 'LD_LIBRARY_PATH'}
    out = subprocess.run(['ldd', os.path.join(GPU_ROOT, rel)], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert 'not found' not in out, out
    for lib in CUDA_LIBS:
        assert re.search(r'^\s*%s\.\d+ => /' % re.escape(lib), out, re.M), (lib, out)


def test_the_default_gpu_build_has_cudnn_9_and_the_other_none():
    linked, version = caffe_env.build_cudnn(GPU_ROOT)
    assert linked and version.startswith('9.'), (linked, version)
    out = subprocess.run(['ldd', os.path.join(GPU_ROOT, 'build/lib/libcaffe.so')], capture_output=True, text=True,
                         check=True, env={k: v for k, v in os.environ.items() if k != 'LD_LIBRARY_PATH'}).stdout
    assert re.search(r'^\s*libcudnn\.so\.9 => /', out, re.M), out
    # the patched layers: the _v7 algorithm ranking, not the calls cuDNN 8 removed
    lib = os.path.realpath(os.path.join(caffe_env.caffe_libdir(GPU_ROOT), 'libcaffe.so'))
    symbols = subprocess.run(['nm', '-D', '--undefined-only', lib], capture_output=True, text=True, check=True).stdout
    assert 'cudnnGetConvolutionForwardAlgorithm_v7' in symbols
    assert not re.search(r'cudnnGetConvolutionForwardAlgorithm$', symbols, re.M)
    defined = subprocess.run(['nm', '-DC', '--defined-only', lib], capture_output=True, text=True, check=True).stdout
    assert 'caffe::CuDNNConvolutionLayer<float>::Forward_gpu' in defined
    if NOCUDNN_ROOT:
        assert caffe_env.build_cudnn(NOCUDNN_ROOT) == (False, None)


def test_doctor_names_the_cudnn_of_the_build():
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'doctor'], env=env_for(GPU_ROOT),
                         capture_output=True, text=True, timeout=120)
    assert re.search(r'^cudnn: +cuDNN 9\.\d+\.\d+ for the convolutions', res.stdout, re.M), res.stdout


def test_the_binary_runs_and_needs_no_gpu_for_its_version():
    env = caffe_env.binary_environment(base=env_for(GPU_ROOT), root=GPU_ROOT)
    res = subprocess.run([caffe_env.caffe_binary(GPU_ROOT), '--version'], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and 'caffe' in res.stdout, res.stderr


# ---------------------------------------------------------------- CPU mode matches the CPU build


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """The tests' tiny dataset and generated nets (tiny backbone, no workers)."""
    from caffe_mlic.netspec import netgen
    from tests.tinydata import tiny_mlic_config, write_tiny_dataset
    root = tmp_path_factory.mktemp('gpu_build')
    listing = write_tiny_dataset(str(root / 'images'), num_classes=3, bbox_num=8, size=96)
    netgen.generate(str(root / 'nets'), tiny_mlic_config(listing))
    return root


NET_SCRIPT = '''
    import os, sys
    import numpy as np
    import caffe
    root, net_path, out = sys.argv[1:]
    assert os.path.realpath(caffe.__file__).startswith(os.path.realpath(root)), caffe.__file__
    caffe.set_mode_cpu()
    caffe.set_random_seed(7)
    net = caffe.Net(net_path, caffe.TRAIN)
    arrays = {}
    for it in range(2):
        net.forward()
        net.backward()
        for name, blob in net.blobs.items():
            arrays['%d/data/%s' % (it, name)] = blob.data.copy()
        for name, params in net.params.items():
            for i, p in enumerate(params):
                arrays['%d/param/%s/%d' % (it, name, i)] = p.data.copy()
                arrays['%d/grad/%s/%d' % (it, name, i)] = p.diff.copy()
    np.savez(out, **arrays)
'''


def test_pycaffe_imports_and_a_cpu_mode_net_matches_the_cpu_build(tiny):
    net = tiny / 'nets' / 'wsddn' / 'wsddn_train.prototxt'
    for kind, root in (('gpu', GPU_ROOT), ('cpu', CPU_ROOT)):
        run_python(root, NET_SCRIPT, root, net, tiny / ('net_%s.npz' % kind))
    gpu, cpu = np.load(tiny / 'net_gpu.npz'), np.load(tiny / 'net_cpu.npz')
    assert sorted(gpu.files) == sorted(cpu.files) and len(cpu.files) > 20
    differ = [k for k in cpu.files if not np.array_equal(gpu[k], cpu[k])]
    assert not differ, differ
    assert any(np.abs(cpu[k]).sum() > 0 for k in cpu.files if '/grad/' in k)


def test_the_layer_tests_pass_with_the_gpu_build():
    res = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider'] + LAYER_TESTS,
                         env=env_for(GPU_ROOT), cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-2000:]
    assert re.search(r'\d+ passed', res.stdout), res.stdout[-2000:]


TRAIN_SCRIPT = '''
    import json, os, sys
    from caffe_mlic.engine import logs
    from tests.caffe_binary import caffe_train
    solver, out = sys.argv[1:]
    _, log = caffe_train(solver, timeout=600)
    from caffe.proto import caffe_pb2
    model = caffe_pb2.NetParameter()
    with open(os.path.join(os.path.dirname(solver), 'snap', 'w_iter_4.caffemodel'), 'rb') as f:
        model.ParseFromString(f.read())
    weights = {'%s/%d' % (l.name, i): list(b.data) for l in model.layer for i, b in enumerate(l.blobs)}
    with open(out, 'w') as f:
        json.dump(dict(rows=logs.read_caffe_log(log), weights=weights), f)
'''


def _solver(tiny, name):
    from caffe_mlic.caffe import prototxt
    folder = tiny / name
    (folder / 'snap').mkdir(parents=True)
    return prototxt.write_solver(
        folder / 'solver.prototxt', str(tiny / 'nets' / 'wsddn' / 'wsddn_train.prototxt'),
        base_lr=0.001, momentum=0.9, weight_decay=0.0005, max_iter=4, lr_policy='fixed',
        test_iter=[1], test_interval=2, test_initialization=True, snapshot=0,
        snapshot_prefix=str(folder / 'snap' / 'w'), random_seed=1, display=1)


def test_caffe_train_on_the_tiny_wsddn_net_matches_the_cpu_build(tiny):
    results = {}
    for kind, root in (('gpu', GPU_ROOT), ('cpu', CPU_ROOT)):
        solver = _solver(tiny, 'binary_%s' % kind)
        run_python(root, TRAIN_SCRIPT, solver, tiny / ('binary_%s.json' % kind))
        with open(tiny / ('binary_%s.json' % kind)) as f:
            results[kind] = json.load(f)
    gpu, cpu = results['gpu'], results['cpu']
    assert [r['iteration'] for r in cpu['rows'] if r['phase'] == 'train'][:4] == [0, 1, 2, 3]
    assert [r['iteration'] for r in cpu['rows'] if r['phase'] == 'test'] == [0, 2, 4]
    assert gpu['rows'] == cpu['rows']
    assert gpu['weights'] == cpu['weights'] and cpu['weights']


def test_caffe_mlic_train_on_the_tiny_wsddn_net_matches_the_cpu_build(tiny):
    records = {}
    for kind, root in (('gpu', GPU_ROOT), ('cpu', CPU_ROOT)):
        solver = _solver(tiny, 'driver_%s' % kind)
        run_dir = tiny / ('driver_%s' % kind) / 'run'
        res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'train', solver, '--run-dir',
                              str(run_dir)], env=env_for(root), cwd=REPO, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        from caffe_mlic.engine import logs
        records[kind] = [{k: v for k, v in r.items() if k != 'elapsed'}
                         for r in logs.read_records(os.path.join(run_dir, 'log.jsonl'))]
    assert records['gpu'] == records['cpu']
    assert sum(r['phase'] == 'train' for r in records['cpu']) == 4


def test_train_gpu_with_no_gpu_is_a_clear_error(tiny):
    """--gpu on the GPU build here (no GPU): one line, no Caffe abort."""
    solver = _solver(tiny, 'nogpu')
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'train', solver, '--gpu', '0'],
                         env=env_for(GPU_ROOT), cwd=REPO, capture_output=True, text=True, timeout=120)
    names, _ = caffe_env.visible_gpus()
    if names:
        pytest.skip('a GPU is visible here')
    assert res.returncode == 1 and 'GPU 0 is not available' in res.stderr, res.stderr
    assert 'Check failure' not in res.stderr


def test_the_gpu_builds_pycaffe_gives_the_mode_and_device_pointers():
    """tools/caffe-patches/gpu/0004: caffe._caffe.get_mode() and the blobs'
    device pointer properties (not read here: with no GPU Caffe would abort);
    in CPU mode our layers keep their host code."""
    out = run_python(GPU_ROOT, '''
        import caffe
        from caffe_mlic.gpu import blobs
        names = sorted(a for a in dir(caffe._caffe.Blob) if 'gpu' in a)
        modes = [caffe._caffe.get_mode()]
        caffe.set_mode_gpu(); modes.append(caffe._caffe.get_mode())
        caffe.set_mode_cpu(); modes.append(caffe._caffe.get_mode())
        print(names, modes, blobs.use_kernels())
    ''')
    assert out.strip() == ("['_gpu_data_ptr', '_gpu_diff_ptr', '_mutable_gpu_data_ptr', '_mutable_gpu_diff_ptr'] "
                           "['CPU', 'GPU', 'CPU'] False")
    out = run_python(CPU_ROOT, 'import caffe; print(hasattr(caffe._caffe, "get_mode"))')
    assert out.strip() == 'False'       # the CPU build is unpatched: our layers never ask it for pointers


def test_our_cuda_kernels_compile_to_ptx_for_the_build_architectures():
    """Every kernel of caffe_mlic/gpu/ through NVVM for sm_75, sm_80 and sm_90
    (numba-cuda from tools/gpu-requirements.txt, which `make test-gpu-build`
    puts in the cache; the venv's numba is untouched)."""
    target = os.path.join(CACHE, 'gpu-python')
    if not os.path.isdir(os.path.join(target, 'numba_cuda')):
        pytest.skip('numba-cuda is not in %s (make test-gpu-build puts it there)' % target)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([target, REPO]))
    env.pop('NUMBA_ENABLE_CUDASIM', None)
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.gpu.check', '--ptx-only'], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert [line.split()[-2] for line in lines] == ['sm_75', 'sm_80', 'sm_90'] and all(
        line.endswith('OK') for line in lines), res.stdout
