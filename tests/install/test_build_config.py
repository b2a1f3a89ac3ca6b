"""What `make caffe GPU=1` would build with, for the toolkit it finds: the
CUDA major (12 or 13) decides the folder, the default architectures and the
library wheels; cuDNN is on unless CAFFE_MLIC_CUDNN=0, from the system when
it has cuDNN 8+. Checked with `tools/build_caffe.sh --config-only` against
stand-in toolkits (an nvcc that only tells its version, empty libraries), so
it runs anywhere and downloads nothing. The real builds are
`make test-gpu-build`'s (CUDA 13 here; no CUDA 12 nvcc exists on this
machine's package sources)."""
import os
import re
import subprocess

import pytest

from tests import REPO

SCRIPT = os.path.join(REPO, 'tools', 'build_caffe.sh')


def stand_in_toolkit(root, release, cudnn_major=None, cccl=False):
    """A CUDA_HOME whose nvcc says ``release`` and which holds cuBLAS and
    cuRAND (so no wheel is fetched), and cuDNN ``cudnn_major`` if given."""
    (root / 'bin').mkdir(parents=True)
    nvcc = root / 'bin' / 'nvcc'
    nvcc.write_text('#!/bin/sh\necho "Cuda compilation tools, release %s, V%s.0"\n' % (release, release))
    nvcc.chmod(0o755)
    (root / 'include').mkdir()
    (root / 'lib64').mkdir()
    for name in ('include/cublas_v2.h', 'include/curand.h', 'lib64/libcublas.so', 'lib64/libcurand.so'):
        (root / name).write_text('')
    if cudnn_major is not None:
        (root / 'include' / 'cudnn_version.h').write_text(
            '#define CUDNN_MAJOR %d\n#define CUDNN_MINOR 1\n' % cudnn_major)
        (root / 'lib64' / 'libcudnn.so').write_text('')
    if cccl:
        (root / 'include' / 'cccl' / 'thrust').mkdir(parents=True)
    return root


def config(tmp_path, toolkit, **env):
    res = subprocess.run(['bash', SCRIPT, '--gpu', '--config-only', str(tmp_path / 'cache')],
                         env=dict(os.environ, CUDA_HOME=str(toolkit), **env), capture_output=True, text=True,
                         timeout=120)
    return res


def fields(text):
    return {m.group(1): m.group(2) for m in re.finditer(r'^(\w+) :?= (.*)$', text, re.M)}


def test_cuda_12_builds_for_pascal_and_volta_too_with_cudnn(tmp_path):
    toolkit = stand_in_toolkit(tmp_path / 'cuda-12.9', '12.9', cudnn_major=9)
    res = config(tmp_path, toolkit)
    assert res.returncode == 0, res.stderr
    root, text = res.stdout.split('\n', 1)
    assert root == str(tmp_path / 'cache' / 'caffe-9.0.2-gpu-cuda12')
    f = fields(text)
    assert f['CUDA_DIR'] == str(toolkit) and f['USE_CUDNN'] == '1' and 'CPU_ONLY' not in f
    arches = re.findall(r'code=sm_(\d+)', f['CUDA_ARCH'])
    assert arches == ['60', '70', '75', '80', '90'] and 'code=compute_90' in f['CUDA_ARCH']
    assert 'cuDNN 9 from %s' % (toolkit / 'include') in res.stderr
    assert 'cccl' not in text


def test_cuda_13_starts_at_turing_and_finds_thrust_under_cccl(tmp_path):
    toolkit = stand_in_toolkit(tmp_path / 'cuda-13.0', '13.0', cudnn_major=9, cccl=True)
    res = config(tmp_path, toolkit)
    assert res.returncode == 0, res.stderr
    root, text = res.stdout.split('\n', 1)
    assert root == str(tmp_path / 'cache' / 'caffe-9.0.2-gpu')
    assert re.findall(r'code=sm_(\d+)', fields(text)['CUDA_ARCH']) == ['80', '90']
    assert 'INCLUDE_DIRS += %s' % (toolkit / 'include' / 'cccl') in text


@pytest.mark.parametrize('release, folder', [('12.4', 'caffe-9.0.2-gpu-cuda12-nocudnn'),
                                             ('13.0', 'caffe-9.0.2-gpu-nocudnn')])
def test_cudnn_off_is_a_build_of_its_own(tmp_path, release, folder):
    toolkit = stand_in_toolkit(tmp_path / 'cuda', release, cudnn_major=9)
    res = config(tmp_path, toolkit, CAFFE_MLIC_CUDNN='0')
    assert res.returncode == 0, res.stderr
    root, text = res.stdout.split('\n', 1)
    assert root == str(tmp_path / 'cache' / folder)
    assert fields(text)['USE_CUDNN'] == '0'
    settings = [line.replace(str(tmp_path), 'TMP') for line in text.splitlines() if not line.startswith('#')]
    assert [line for line in settings if 'cudnn' in line.lower()] == ['USE_CUDNN := 0']


def test_an_older_system_cudnn_is_not_taken(tmp_path, monkeypatch):
    """cuDNN 7 lacks what the patched layers call: the pinned cuDNN 9 wheel
    would be fetched instead (here: refused before any download, by a pip
    that fails)."""
    toolkit = stand_in_toolkit(tmp_path / 'cuda', '13.0', cudnn_major=7)
    res = config(tmp_path, toolkit, CAFFE_MLIC_PIP='false')
    assert res.returncode != 0
    assert 'downloading cuDNN 9 for CUDA 13' in res.stderr


@pytest.mark.parametrize('release, env, message', [
    ('11.8', {}, 'nvcc in {toolkit} is CUDA 11: this build takes CUDA 12 or 13 (set CUDA_HOME)'),
    ('13.0', {'CAFFE_MLIC_CUDNN': 'yes'}, "CAFFE_MLIC_CUDNN must be 0 or 1, not 'yes'"),
])
def test_what_the_build_cannot_take_is_one_line(tmp_path, release, env, message):
    toolkit = stand_in_toolkit(tmp_path / 'cuda', release)
    res = config(tmp_path, toolkit, **env)
    assert res.returncode in (1, 2)
    assert res.stderr == '[caffe] %s\n' % message.format(toolkit=toolkit), res.stderr


def _stand_in_build(root, cudnn):
    """A build folder as build_caffe.sh leaves it: Makefile.config, a libcaffe
    that names its libraries (as the ELF's NEEDED strings do)."""
    inc = root / 'cudnn-include'
    inc.mkdir(parents=True)
    (inc / 'cudnn_version.h').write_text('#define CUDNN_MAJOR 9\n#define CUDNN_MINOR 27\n#define CUDNN_PATCHLEVEL 0\n')
    (root / 'Makefile.config').write_text('USE_CUDNN := %d\nINCLUDE_DIRS += /nowhere %s\n' % (cudnn, inc))
    (root / 'build' / 'lib').mkdir(parents=True)
    (root / 'build' / 'lib' / 'libcaffe.so.1.0.0').write_bytes(
        b'\x7fELF libcudart.so.13 libcublas.so.13' + (b' libcudnn.so.9' if cudnn else b''))
    return root


@pytest.mark.parametrize('cudnn', [1, 0])
def test_doctor_says_whether_the_build_has_cudnn(tmp_path, cudnn):
    from caffe_mlic.caffe import env as caffe_env
    root = str(_stand_in_build(tmp_path / 'caffe', cudnn))
    assert caffe_env.build_cudnn(root) == ((True, '9.27.0') if cudnn else (False, None))


@pytest.mark.parametrize('value', ['64x', '\u0663', '-1', '99999999'])
def test_a_cudnn_workspace_that_the_layer_would_abort_on_is_refused_first(tmp_path, monkeypatch, value):
    from caffe_mlic.caffe import env as caffe_env
    from caffe_mlic.errors import RunError
    root = str(_stand_in_build(tmp_path / 'caffe', 1))
    monkeypatch.setenv('CAFFE_MLIC_CUDNN_WORKSPACE_MB', value)
    monkeypatch.setattr(caffe_env, 'visible_gpus', lambda: (['Stand-in GPU'], None))
    with pytest.raises(RunError, match=r"CAFFE_MLIC_CUDNN_WORKSPACE_MB=.*: expected a whole number of MB \(at most "
                                       r"1048576\)"):
        caffe_env.check_gpu([0], root)
    monkeypatch.setenv('CAFFE_MLIC_CUDNN_WORKSPACE_MB', '64')
    assert caffe_env.check_gpu([0], root) == ['Stand-in GPU']
