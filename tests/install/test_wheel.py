"""A wheel built from the tree works outside an editable install: installed
into a fresh venv, `caffe-mlic netgen` writes the release nets and a
prototxt naming "caffe_mlic.layers" loads the layers from the wheel."""
import math
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from caffe_mlic.caffe import env as caffe_env

from tests import REPO


def _tracked_tree(dest):
    """Copy the files git tracks (links kept as links), so the build leaves the checkout clean."""
    files = subprocess.run(['git', 'ls-files', '-z'], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split('\0')
    for rel in filter(None, files):
        src, dst = os.path.join(REPO, rel), os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
        elif os.path.isfile(src):
            shutil.copy2(src, dst)
    return dest


@pytest.fixture(scope='module')
def wheel_venv(tmp_path_factory):
    if shutil.which('git') is None or not os.path.isdir(os.path.join(REPO, '.git')):
        pytest.skip('needs the git checkout to know which files to package')
    tmp = tmp_path_factory.mktemp('wheel')
    src = _tracked_tree(str(tmp / 'src'))
    env = dict(os.environ, PIP_NO_INDEX='1', PIP_DISABLE_PIP_VERSION_CHECK='1')
    env.pop('PYTHONPATH', None)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                    '-q', '-w', str(tmp / 'dist'), src], check=True, env=env, cwd=str(tmp))
    wheel = [os.path.join(tmp / 'dist', f) for f in os.listdir(tmp / 'dist') if f.endswith('.whl')]
    assert len(wheel) == 1, wheel
    venv = tmp / 'venv'
    subprocess.run(['/usr/bin/python3', '-m', 'venv', '--system-site-packages', str(venv)], check=True)
    python = str(venv / 'bin' / 'python')
    site = subprocess.run([python, '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(site, 'caffe.pth'), 'w') as f:  # pycaffe, as `make install` does
        f.write(os.path.join(caffe_env.caffe_root(), 'python') + '\n')
    subprocess.run([python, '-m', 'pip', 'install', '-q', '--no-deps', wheel[0]], check=True, env=env)
    run_env = {k: v for k, v in env.items() if k not in ('CAFFE_ROOT', 'VIRTUAL_ENV')}
    return wheel[0], venv, site, run_env


def test_wheel_holds_every_module_of_every_package(wheel_venv):
    """Every .py of every package setup.py's find_packages() finds in the
    checkout (the layers through the link included) is in the wheel, and
    nothing else of ours."""
    from setuptools import find_packages
    wheel = wheel_venv[0]
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith('.py')}
    packages = find_packages(REPO, include=['caffe_mlic', 'caffe_mlic.*'])
    assert {'caffe_mlic.data', 'caffe_mlic.caffe', 'caffe_mlic.layers', 'caffe_mlic.evaluation'} <= set(packages)
    tracked = set(subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True,
                                 check=True).stdout.split())
    expected = set()
    for package in packages:
        folder = package.replace('.', '/')
        real = os.path.relpath(os.path.realpath(os.path.join(REPO, folder)), REPO)
        for name in os.listdir(os.path.join(REPO, folder)):
            if name.endswith('.py') and os.path.join(real, name) in tracked:
                expected.add(folder + '/' + name)
    assert in_wheel == expected


def test_installed_wheel_writes_the_release_nets(wheel_venv, tmp_path):
    _, venv, site, env = wheel_venv
    out = tmp_path / 'nets'
    res = subprocess.run([str(venv / 'bin' / 'caffe-mlic'), 'netgen', '--release', '-o', str(out)],
                         capture_output=True, text=True, env=env, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    written = sorted(os.path.relpath(p, str(out)) for p in res.stdout.split())
    committed = sorted(os.path.relpath(os.path.join(d, f), os.path.join(REPO, 'prototxt'))
                       for d, _, fs in os.walk(os.path.join(REPO, 'prototxt')) for f in fs
                       if not os.path.relpath(d, REPO).startswith(os.path.join('prototxt', 'scasnet')))
    assert written == committed
    for rel in written:
        with open(os.path.join(REPO, 'prototxt', rel)) as f:
            want = f.read()
        with open(out / rel) as f:
            assert f.read().replace(str(out), 'prototxt') == want, rel


def test_installed_wheel_runs_a_python_layer_from_the_wheel(wheel_venv, tmp_path):
    _, venv, site, env = wheel_venv
    script = '''
import caffe, caffe_mlic.layers, numpy as np
from caffe_mlic.caffe import prototxt
net = prototxt.caffe_net("""
layer { name: "p" type: "Input" top: "p" input_param { shape { dim: 2 dim: 2 } } }
layer { name: "t" type: "Input" top: "t" input_param { shape { dim: 2 dim: 2 } } }
layer { name: "loss" type: "Python" bottom: "p" bottom: "t" top: "loss" loss_weight: 1
        python_param { module: "caffe_mlic.layers" layer: "CrossEntropyLoss" } }""", "TEST")
net.blobs["p"].data[...] = 0.5
net.blobs["t"].data[...] = 1
print(caffe_mlic.layers.__file__)
print(float(net.forward()["loss"]))
'''
    res = subprocess.run([str(venv / 'bin' / 'python'), '-c', script], capture_output=True, text=True,
                         env=env, cwd=str(tmp_path))
    assert res.returncode == 0, res.stderr
    layers_file, loss = res.stdout.split()
    assert os.path.realpath(layers_file).startswith(os.path.realpath(site))
    assert float(loss) == pytest.approx(2 * math.log(2), rel=1e-5)  # -(1/2) * 4 * log 0.5
