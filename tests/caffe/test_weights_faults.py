"""Weights that do not fit a net, nets Caffe would abort on, bad Python layers:
refused in one line naming the layer, before Caffe CHECKs or a silent
result."""
import os

import pytest

from caffe_mlic.caffe import prototxt
from tests import netutil
from tests.faults import run_cli, tiny  # noqa: F401 (a fixture)


def _bad_weights(tiny, kind):
    from caffe.proto import caffe_pb2
    path = tiny / ('%s.caffemodel' % kind)
    if kind == 'truncated':
        path.write_bytes((tiny / 'baseline.caffemodel').read_bytes()[:3000])
    elif kind == 'empty':
        path.write_bytes(b'')
    else:  # foreign: another net's layer
        model = caffe_pb2.NetParameter()
        blob = model.layer.add(name='foo').blobs.add()
        blob.shape.dim.append(2)
        blob.data.extend([1, 2])
        path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize('kind, fragment', [
    ('truncated', 'truncated or not a NetParameter'),
    ('empty', "fills none of the net's 16 layers with weights"),
    ('foreign', "fills none of the net's 16 layers with weights (conv1_1"),
])
def test_eval_refuses_weights_that_do_not_fill_the_net(tiny, kind, fragment):
    path = _bad_weights(tiny, kind)
    args = ['eval', 'cls', '--net', tiny / 'nets/kd/student_baseline.prototxt', '--blob', 'fc8_mscoco',
            '--sigmoid', '--weights']
    res = run_cli(args + [path], tiny)
    assert res.returncode == 1 and fragment in res.stderr and str(path.name) in res.stderr, res.stderr
    assert 'mAP' not in res.stdout
    assert run_cli(args + [tiny / 'baseline.caffemodel'], tiny).returncode == 0


def test_weights_of_part_of_the_net_are_refused_for_evaluation(tiny, caffe):
    """A caffemodel missing some of the net's layers would leave their
    fillers' values: a plausible, wrong result."""
    from caffe_mlic.caffe.weights import check_weights
    from caffe.proto import caffe_pb2
    model = caffe_pb2.NetParameter()
    model.ParseFromString((tiny / 'baseline.caffemodel').read_bytes())
    fc8 = [i for i, l in enumerate(model.layer) if l.name == 'fc8_mscoco']
    del model.layer[fc8[0]]
    kept = [l for l in model.layer if l.blobs]
    (tiny / 'part.caffemodel').write_bytes(model.SerializeToString())
    with pytest.raises(Exception, match="has no weights for 1 of the net's 16 layers"):
        prototxt.caffe_net(str(tiny / 'nets/kd/student_baseline.prototxt'), 'TEST',
                           weights=str(tiny / 'part.caffemodel'))
    net = prototxt.caffe_net(str(tiny / 'nets/kd/student_baseline.prototxt'), 'TEST')
    check_weights(str(tiny / 'part.caffemodel'), net)   # for fine-tuning, part is fine
    assert len(kept) == 15


@pytest.mark.parametrize('kind', ['empty', 'foreign'])
def test_surgery_refuses_a_source_that_fills_no_layer(tiny, kind):
    path = _bad_weights(tiny, kind)
    res = run_cli(['surgery', '--net', tiny / 'nets/kd/train_stage2.prototxt', '--from',
                   'teacher:%s' % path, '-o', tiny / 'out.caffemodel'], tiny)
    assert res.returncode == 1 and 'fills no layer of the net' in res.stderr, res.stderr
    assert not (tiny / 'out.caffemodel').exists()


def test_a_net_caffe_would_abort_on_is_refused_naming_the_layer(tiny, tmp_path):
    text = (tiny / 'nets/kd/student_baseline.prototxt').read_text()
    text = text.replace('num_output: 4', 'num_output: 0', 1)        # conv1_1
    (tmp_path / 'net.prototxt').write_text(text)
    temp = tmp_path / 'tmp'
    temp.mkdir()
    res = run_cli(['surgery', '--net', tmp_path / 'net.prototxt', '--from',
                   'same:%s' % (tiny / 'baseline.caffemodel'), '-o', tmp_path / 'out.caffemodel'],
                  tmp_path, TMPDIR=str(temp))
    assert res.returncode == 1, res.stderr
    assert "net.prototxt: layer 'conv1_1': Convolution: num_output must be >= 1, got 0" in res.stderr
    assert not os.listdir(temp)               # no temporary prototxt left behind


@pytest.mark.parametrize('edit, fragment', [
    (('module: "caffe_mlic.layers"', 'module: "caffe_mlic.nolayers"'),
     "layer 'data': MultiLabelProposalData: python_param module 'caffe_mlic.nolayers' cannot be imported"),
    (('layer: "Interp"', 'layer: "Interpx"'),
     "layer 'data_size224': Interpx: python_param module 'caffe_mlic.layers' has no layer 'Interpx'"),
    (('"att_num": 3', '"att_num": 3, "atnum": 1'),
     "layer 'data': MultiLabelProposalData: unknown parameter 'atnum'"),
])
def test_bad_python_layers_are_named_not_systemerror(tiny, tmp_path, edit, fragment):
    text = (tiny / 'nets/kd/student_baseline.prototxt').read_text()
    assert edit[0] in text
    (tmp_path / 'net.prototxt').write_text(text.replace(edit[0], edit[1]))
    netutil.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', max_iter=2)
    res = run_cli(['eval', 'cls', '--net', 'net.prototxt', '--weights', tiny / 'baseline.caffemodel',
                   '--blob', 'fc8_mscoco', '--sigmoid'], tmp_path)
    assert res.returncode == 1 and fragment in res.stderr and 'SystemError' not in res.stderr, res.stderr
    res = run_cli(['train', 'solver.prototxt'], tmp_path)
    assert res.returncode == 1 and fragment in res.stderr and 'SystemError' not in res.stderr, res.stderr


def test_a_solver_given_as_the_net_is_named(tiny):
    res = run_cli(['eval', 'cls', '--net', 'nets/kd/solver_baseline.prototxt', '--weights',
                   'baseline.caffemodel', '--blob', 'fc8_mscoco'], tiny)
    assert res.returncode == 1
    assert 'solver_baseline.prototxt: a solver prototxt, not a net' in res.stderr
