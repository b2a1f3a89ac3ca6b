"""`caffe-mlic caffe`: what the stock binary would abort on (rc 134, a glog
FATAL) is checked before it starts and said in one line."""
import re

import pytest

from caffe_mlic.caffe import prototxt
from tests import netutil
from tests.faults import run_cli


@pytest.fixture
def files(tmp_path):
    net = netutil.input_layers_text([(2, 3), (2, 3)], ['x', 'labels'])
    net += ('layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" '
            'inner_product_param { num_output: 3 } }\n') + netutil.SIGMOID_LOSS_TEXT
    (tmp_path / 'net.prototxt').write_text(net)
    netutil.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', base_lr=0.1, max_iter=2,
                         snapshot=1, snapshot_prefix='snaps/w')
    (tmp_path / 'garbage.caffemodel').write_bytes(b'\xff' * 100)
    return tmp_path


def one_line(res, code, message):
    assert res.returncode == code, res.stderr
    assert 'Check failed' not in res.stderr and 'F1' not in res.stderr[:3]
    assert re.fullmatch(r'caffe-mlic caffe: %s\n' % message, res.stderr), res.stderr


@pytest.mark.parametrize('argv, code, message', [
    (['train'], 2, 'train needs -solver SOLVER.prototxt'),
    (['train', '-solver', 'missing.prototxt'], 1, 'missing.prototxt: no such solver prototxt'),
    (['train', '-solver', 'net.prototxt'], 1, r'net.prototxt: a net prototxt, not a solver; .*'),
    (['train', '-solver', 'nonet.prototxt'], 1, r'nonet.prototxt:\d+: net: gone.prototxt: no such net prototxt'),
    (['train', '-solver', 'solver.prototxt', '-weights', 'garbage.caffemodel', '-snapshot', 's'], 2,
     'give -snapshot STATE to resume or -weights W to fine-tune, not both'),
    (['train', '-solver', 'solver.prototxt', '-weights', 'gone.caffemodel'], 1,
     r'gone.caffemodel: no such weights file \(-weights\)'),
    (['train', '-solver', 'solver.prototxt', '-weights', 'garbage.caffemodel'], 1,
     r'garbage.caffemodel: truncated or not a NetParameter .*'),
    (['train', '-solver', 'solver.prototxt', '-snapshot', 'gone.solverstate'], 1,
     'gone.solverstate: no such solver state'),
    (['train', '-solver', 'roprefix.prototxt'], 1,
     r'roprefix.prototxt:\d+: snapshot_prefix: cannot write snapshots into /proc/caffe_mlic_none: .*'),
    (['test', '-model', 'net.prototxt'], 2, r'test needs -weights W.caffemodel .*'),
    (['test', '-model', 'solver.prototxt', '-weights', 'garbage.caffemodel'], 1,
     r'solver.prototxt: a solver prototxt, not a net; .*'),
    (['time'], 2, 'time needs -model NET.prototxt'),
])
def test_what_the_binary_would_abort_on_is_one_line(files, argv, code, message):
    netutil.write_solver(files / 'nonet.prototxt', 'gone.prototxt', base_lr=0.1, max_iter=2)
    netutil.write_solver(files / 'roprefix.prototxt', 'net.prototxt', base_lr=0.1, max_iter=2, snapshot=1,
                         snapshot_prefix='/proc/caffe_mlic_none/w')
    one_line(run_cli(['caffe'] + argv, files), code, message)


def test_a_state_whose_caffemodel_is_gone_is_named(files):
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt'], files)
    assert res.returncode == 0, res.stderr
    (files / 'snaps' / 'w_iter_1.caffemodel').unlink()
    one_line(run_cli(['caffe', 'train', '-solver', 'solver.prototxt', '-snapshot', 'snaps/w_iter_1.solverstate'],
                     files), 1,
             r'snaps/w_iter_1.solverstate: its caffemodel snaps/w_iter_1.caffemodel is missing .*')


def test_a_good_solver_still_trains_and_the_folder_is_made(files):
    res = run_cli(['caffe', 'train', '-solver', 'solver.prototxt'], files)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (files / 'snaps').iterdir()) == [
        'w_iter_%d.%s' % (i, k) for i in (1, 2) for k in ('caffemodel', 'solverstate')]
    assert prototxt.read_net(files / 'net.prototxt').layer
