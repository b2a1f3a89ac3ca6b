"""Real Caffe with Python layers, the CLI, and `caffe train` through it."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from caffe_mlic.caffe import env as caffe_env
from caffe_mlic.caffe.params import LayerError
from tests.caffe_binary import caffe_train, parse_losses
from tests import netutil
from tests import REPO

CLI = [sys.executable, '-m', 'caffe_mlic.cli']


def test_pycaffe_imports_with_python_layers(caffe):
    assert 'Python' in caffe.layer_type_list()
    assert 'InnerProduct' in caffe.layer_type_list()


def test_numpy_is_1x():
    assert int(np.__version__.split('.')[0]) == 1


def test_python_layer_forward_backward(layer_net):
    net = layer_net('CrossEntropyLoss', {}, [(2, 2), (2, 2)], loss_weight=1,
                    propagate_down=[True, False])
    p = np.array([[0.9, 0.2], [0.5, 0.00001]], np.float32)
    t = np.array([[1, 0], [1, 0]], np.float32)
    netutil.set_inputs(net, p, t)
    net.forward()
    # -(1/2) [log .9 + log .8 + log .5 + log(1 - 1e-5)]
    expected = -(np.log(0.9) + np.log(0.8) + np.log(0.5) + np.log(1 - 1e-5)) / 2
    assert net.blobs['t0'].data == pytest.approx(expected, rel=1e-5)
    net.backward()
    grad = net.blobs['b0'].diff
    assert grad[0, 0] == pytest.approx(-1 / 0.9 / 2, rel=1e-5)
    assert grad[0, 1] == pytest.approx(1 / 0.8 / 2, rel=1e-5)


def test_bad_param_str_raises_from_caffe_net(layer_net):
    with pytest.raises(LayerError, match="CrossEntropyLoss: unknown parameter 'weight'"):
        layer_net('CrossEntropyLoss', {'weight': 2}, [(2, 2), (2, 2)], loss_weight=1)


def test_caffe_binary_trains_net_with_python_layer(tmp_path):
    """`caffe train -solver` (the real binary) on HDF5 data, with our Python loss."""
    h5py = pytest.importorskip('h5py')
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    w = rng.standard_normal((8, 3)).astype(np.float32)
    y = (x @ w > 0).astype(np.float32)
    with h5py.File(tmp_path / 'train.h5', 'w') as f:
        f['data'], f['label'] = x, y
    (tmp_path / 'train.txt').write_text(str(tmp_path / 'train.h5') + '\n')
    net = textwrap.dedent('''\
        name: "tiny_multilabel"
        layer { name: "data" type: "HDF5Data" top: "data" top: "label"
                hdf5_data_param { source: "train.txt" batch_size: 16 } }
        layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
                inner_product_param { num_output: 3 weight_filler { type: "gaussian" std: 0.01 } } }
        layer { name: "prob" type: "Sigmoid" bottom: "fc" top: "prob" }
        ''') + netutil.python_layer_text('loss', 'CrossEntropyLoss', {}, ['prob', 'label'], ['loss'],
                                        loss_weight=1, propagate_down=[True, False])
    (tmp_path / 'net.prototxt').write_text(net)
    solver = dict(base_lr=0.5, momentum=0.9, display=10, snapshot_prefix='snap/tiny')
    netutil.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', max_iter=60, **solver)
    (tmp_path / 'snap').mkdir()
    losses, log = caffe_train(tmp_path / 'solver.prototxt', cwd=tmp_path)
    assert [it for it, _ in losses] == [0, 10, 20, 30, 40, 50, 60], log[-2000:]
    assert losses[-1][1] < 0.6 * losses[0][1], losses
    weights = tmp_path / 'snap' / 'tiny_iter_60.caffemodel'
    assert weights.exists()

    # `-weights` must initialise the net (our patch to the sdist's caffe.cpp):
    # the first loss of a fine-tuning run is the trained net's, not a fresh one's.
    netutil.write_solver(tmp_path / 'finetune.prototxt', 'net.prototxt', max_iter=1, **solver)
    again, log = caffe_train(tmp_path / 'finetune.prototxt', cwd=tmp_path,
                             extra_args=['-weights', str(weights)])
    assert 'Finetuning from' in log
    assert again[0][1] < 0.5 * losses[0][1], (again, losses)

    # An interrupted run resumes from its solver state: iterations go on from 60.
    netutil.write_solver(tmp_path / 'resume.prototxt', 'net.prototxt', max_iter=80, **solver)
    resumed, log = caffe_train(tmp_path / 'resume.prototxt', cwd=tmp_path,
                               extra_args=['-snapshot', 'snap/tiny_iter_60.solverstate'])
    assert 'Resuming from' in log
    assert [it for it, _ in resumed] == [60, 70, 80], log[-2000:]
    assert resumed[0][1] < 0.5 * losses[0][1], (resumed, losses)


def test_cli_caffe_train_creates_the_snapshot_folder(tmp_path):
    """The solver's snapshot folder need not exist: `caffe-mlic caffe train`
    makes it (the bare binary aborts at its first snapshot)."""
    (tmp_path / 'net.prototxt').write_text(textwrap.dedent('''\
        name: "tiny"
        layer { name: "data" type: "DummyData" top: "data" top: "label"
                dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
                                   data_filler { type: "gaussian" } } }
        layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc"
                inner_product_param { num_output: 2 weight_filler { type: "gaussian" std: 0.1 } } }
        layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "label" top: "loss" }
        '''))
    netutil.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', max_iter=2, base_lr=0.01,
                         snapshot_prefix='snapshots/deep/tiny')
    res = subprocess.run(CLI + ['caffe', 'train', '-solver=solver.prototxt'], cwd=tmp_path,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / 'snapshots' / 'deep' / 'tiny_iter_2.caffemodel').exists()


def test_parse_losses():
    log = ('I1122 solver.cpp:218] Iteration 0 (0 iter/s, 0.01s/10 iters), loss = 0.693\n'
           'I1122 solver.cpp:218] Iteration 10 (12.5 iter/s, 0.8s/10 iters), loss = 0.5\n'
           'I1122 solver.cpp:218] Iteration 20, loss = 1e-3\n')
    assert parse_losses(log) == [(0, 0.693), (10, 0.5), (20, 0.001)]


def test_cli_caffe_passes_arguments_to_binary():
    res = subprocess.run(CLI + ['caffe', '--version'], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'version 1.0' in res.stdout + res.stderr


def test_doctor_is_green_and_names_caffe():
    res = subprocess.run(CLI + ['doctor'], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert caffe_env.caffe_root() in res.stdout
    assert 'python layers:' in res.stdout and 'supported' in res.stdout


def test_doctor_fails_plainly_without_caffe(tmp_path):
    env = dict(os.environ, CAFFE_ROOT=str(tmp_path / 'nowhere'))
    res = subprocess.run(CLI + ['doctor'], capture_output=True, text=True, env=env)
    assert res.returncode == 1
    assert 'CAFFE_ROOT' in res.stdout and 'Problems' in res.stdout


def test_binary_environment_makes_layers_importable():
    env = caffe_env.binary_environment()
    res = subprocess.run(['/usr/bin/python3', '-c', 'import caffe_mlic.layers, caffe'],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize('layer, params, shapes', [
    ('CrossEntropyLoss', {}, [(2, 3), (2, 3)]),
    ('SoftSigmoidCrossEntropyLoss', {}, [(2, 3), (2, 3)]),
    ('FeatureMimicLoss', {}, [(2, 3), (2, 3)]),
])
def test_loss_layers_stop_on_divergence(layer_net, layer, params, shapes):
    net = layer_net(layer, params, shapes, loss_weight=1)
    x = np.full(shapes[0], 0.5, np.float32)
    x[1, 2] = np.nan
    netutil.set_inputs(net, x, np.zeros(shapes[1], np.float32))
    with pytest.raises(LayerError, match='%s: the loss is nan: training diverged' % layer):
        net.forward()
    # the same in a TEST net (`caffe test`, validation): no training to have diverged
    net = layer_net(layer, params, shapes, loss_weight=1, phase='TEST')
    netutil.set_inputs(net, x, np.zeros(shapes[1], np.float32))
    with pytest.raises(LayerError, match='%s: the loss is nan in the TEST net: the weights it was given' % layer):
        net.forward()


def test_env_sh_sets_up_the_plain_caffe_binary(tmp_path):
    repo = REPO
    script = ('source %s/tools/env.sh && command -v caffe && caffe --version '
              '&& /usr/bin/python3 -c "import caffe_mlic.layers"' % repo)
    res = subprocess.run(['bash', '-c', script], cwd=tmp_path, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'LD_LIBRARY_PATH')})
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].endswith('/caffe')
    assert 'version 1.0' in res.stdout


def test_install_with_caffe_root_builds_nothing(tmp_path):
    """`CAFFE_ROOT=... make install` uses that Caffe: no download, no build."""
    repo = REPO
    root = caffe_env.caffe_root()
    env = dict(os.environ, CAFFE_ROOT=root, VENV=str(tmp_path / 'venv'),
               CAFFE_MLIC_CACHE=str(tmp_path / 'cache'))
    res = subprocess.run([os.path.join(repo, 'tools', 'install.sh')], env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert 'building nothing' in res.stderr
    assert not (tmp_path / 'cache').exists()
    check = subprocess.run([str(tmp_path / 'venv' / 'bin' / 'python'), '-c',
                            'import caffe, caffe_mlic, numpy; print(caffe.__file__, numpy.__version__)'],
                           capture_output=True, text=True, env={'PATH': os.environ['PATH']})
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(root) and check.stdout.split()[1].startswith('1.')


def test_a_fresh_tree_generates_caffe_pb_h_before_compiling_anything(tmp_path):
    """The race a first parallel build could lose: the sdist ships a stale
    include/caffe/proto/caffe.pb.h, and its Makefile let objects compile before
    protoc wrote the current one. With our patches, building any one object of
    a fresh tree (here, with more jobs than cores) runs protoc first; without
    them this compile fails ("generated by an older version of protoc")."""
    import glob
    import tarfile
    repo = REPO
    root = caffe_env.caffe_root()
    sdists = glob.glob(os.path.join(os.path.dirname(root), 'brocolli-caffe-*.tar.gz'))
    if not sdists or not os.path.isfile(os.path.join(root, 'Makefile.config')):
        pytest.skip('no cached sdist beside %s (a CAFFE_ROOT of your own)' % root)
    with tarfile.open(sdists[0]) as tar:
        tar.extractall(tmp_path)
    tree, = [p for p in tmp_path.iterdir() if p.is_dir()]
    (tree / 'Makefile.config').write_text(open(os.path.join(root, 'Makefile.config')).read())
    for patch in sorted(glob.glob(os.path.join(repo, 'tools', 'caffe-patches', '*.patch'))):
        subprocess.run(['patch', '-p1', '-s', '-f', '-i', patch], cwd=tree, check=True)
    res = subprocess.run(['make', '-j8', '.temp_release/src/caffe/util/upgrade_proto.o'], cwd=tree,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    steps = [line.split()[0] for line in res.stdout.splitlines() if line.startswith(('PROTOC', 'CXX'))]
    assert steps == ['PROTOC', 'CXX'], res.stdout
