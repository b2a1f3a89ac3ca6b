"""The CUDA kernels (caffe_mlic/gpu/kernels.py) in numba's CUDA simulator:
no GPU needed. On a GPU machine `python -m caffe_mlic.gpu.check --time`
runs the same checks on the card (tools/gpu_check.sh)."""
import os
import subprocess
import sys

from tests import REPO

SIM = dict(os.environ, NUMBA_ENABLE_CUDASIM='1', PYTHONPATH=REPO)


def test_the_kernels_match_numpy_references_in_the_simulator():
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.gpu.check'], capture_output=True, text=True,
                         env=SIM, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.startswith('kernels on the CUDA simulator\n')
    assert res.stdout.count(' OK\n') == 18 and 'MISMATCH' not in res.stdout


def test_the_kernels_match_the_cpu_layers_on_their_own_inputs():
    res = subprocess.run([sys.executable, '-m', 'tests.gpu.sim_against_cpu'], capture_output=True, text=True,
                         env=SIM, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert 'MISMATCH' not in res.stdout and res.stdout.count(' OK\n') == 20, res.stdout


def test_the_checks_can_fail():
    """A kernel that is off by one somewhere is caught (the references are not the kernels)."""
    code = ('import numpy as np\n'
            'from caffe_mlic.gpu import check, kernels\n'
            'real = kernels.roi_pool_forward\n'
            'def off(features, bins, out, argmax):\n'
            '    real(features, bins, out, argmax)\n'
            '    h = out.copy_to_host(); h[0, 0, 0, 0] += 1; out.copy_to_device(h)\n'
            'kernels.roi_pool_forward = off\n'
            'results = []\n'
            'check.check_roi(np.random.default_rng(0), lambda what, ok: results.append(ok))\n'
            'print(results)\n')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=SIM, timeout=300,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == '[False, True]'
