"""Weights that do not fit a net, nets Caffe would abort on, bad Python layers:
refused in one line naming the layer, before Caffe CHECKs or a silent
result."""
import os
import subprocess

import numpy as np
import pytest

from caffe_mlic.caffe import prototxt
from tests import netutil
from tests.faults import CLI, run_cli, tiny  # noqa: F401 (a fixture)


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
    (('module: "caffe_mlic.layers"', 'module: ".layers"'),     # not an ImportError: TypeError
     "layer 'data': MultiLabelProposalData: python_param module '.layers' cannot be imported: TypeError"),
    (('module: "caffe_mlic.layers"\n    layer: "Interp"', 'module: "collections"\n    layer: "OrderedDict"'),
     "layer 'data_size224': OrderedDict: python_param layer 'OrderedDict' of module 'collections' is not a "
     "caffe.Layer class"),
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


# ---------------------------------------------------------------- HDF5 weights and states; shapes first

STUDENT = 'nets/kd/student_deploy.prototxt'


def _net_text(path, **num_outputs):
    """The prototxt at ``path`` with some layers' num_output changed."""
    net = prototxt.read_net(str(path))
    for layer in net.layer:
        if layer.name in num_outputs:
            param = layer.inner_product_param if layer.type == 'InnerProduct' else layer.convolution_param
            param.num_output = num_outputs[layer.name]
    return prototxt.to_text(net)


@pytest.fixture(scope='module')
def h5(tiny):
    """HDF5 caffemodels as Caffe writes them (net.save_hdf5): the student's
    own, the teacher's (no fc8_mscoco), a 5-class student's and a ScasNet's;
    and unreadable ones."""
    from caffe_mlic.netspec.scasnet import ScasConfig, scasnet_deploy
    folder = tiny / 'h5'
    folder.mkdir()
    nets = {'student': str(tiny / STUDENT), 'teacher': str(tiny / 'nets/wsddn/wsddn_deploy.prototxt'),
            'five': _net_text(tiny / STUDENT, fc8_mscoco=5),
            'scasnet': prototxt.to_text(scasnet_deploy(ScasConfig.release(backbone='small', input_size=64)))}
    for name, net in nets.items():
        prototxt.caffe_net(net, 'TEST', seed=0).save_hdf5(str(folder / ('%s.caffemodel.h5' % name)))
    good = (folder / 'student.caffemodel.h5').read_bytes()
    (folder / 'truncated.caffemodel.h5').write_bytes(good[:500])
    (folder / 'empty.caffemodel.h5').write_bytes(b'')
    (folder / 'text.caffemodel.h5').write_text('not weights\n')
    return folder


def _classify(tiny, weights):
    return run_cli(['classify', '--net', STUDENT, '--weights', weights, 'images/img000.png'], tiny)


@pytest.mark.parametrize('name, fragment', [
    ('truncated', 'truncated.caffemodel.h5: not an HDF5 file, or truncated: HDF5 cannot open it (truncated file'),
    ('empty', 'empty.caffemodel.h5: not an HDF5 file, or truncated: HDF5 cannot open it (file signature not found)'),
    ('text', 'text.caffemodel.h5: not an HDF5 file, or truncated: HDF5 cannot open it (file signature not found)'),
    # (Caffe reshaped the net's blobs to the file's: "malloc(): corrupted top size")
    ('five', 'five.caffemodel.h5: layer fc8_mscoco blob 0 is 5x32 (160 values), the net needs 3x32'),
    # (fc8_mscoco kept its fillers' values: plausible probabilities, exit 0)
    ('teacher', "teacher.caffemodel.h5: has no weights for 1 of the net's 16 layers with weights: fc8_mscoco"),
    # (every class at 0.500)
    ('scasnet', 'scasnet.caffemodel.h5: layer conv1_1 blob 0 is '),
])
def test_hdf5_weights_are_checked_as_binary_ones(tiny, h5, name, fragment):
    """Caffe aborted (an HDF5-DIAG dump, then a Check failed, rc 134) on the
    unreadable ones, corrupted its heap on another net's, and filled part or
    none of the net silently."""
    path = 'h5/%s.caffemodel.h5' % name
    for res in (_classify(tiny, path),
                run_cli(['eval', 'cls', '--net', 'nets/kd/student_baseline.prototxt', '--blob', 'fc8_mscoco',
                         '--sigmoid', '--weights', path], tiny)):
        assert res.returncode == 1 and fragment in res.stderr, res.stderr[-3000:]
        assert 'HDF5-DIAG' not in res.stderr and 'Check failed' not in res.stderr and res.stdout == ''


def test_good_hdf5_weights_classify_as_the_binary_ones(tiny, h5):
    binary = _classify(tiny, 'baseline.caffemodel')
    res = _classify(tiny, 'h5/student.caffemodel.h5')
    assert res.returncode == 0 and binary.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[1:] == binary.stdout.split()[1:]


def test_a_shape_mismatch_is_said_before_missing_layers(tiny):
    """A caffemodel whose conv layers do not fit (and that lacks the fc
    layers) was reported as having "no weights for fc6, fc7, fc8_mscoco"."""
    from caffe.proto import caffe_pb2
    model = caffe_pb2.NetParameter()
    model.ParseFromString((tiny / 'baseline.caffemodel').read_bytes())
    for name in ('fc6', 'fc7', 'fc8_mscoco'):
        del model.layer[[layer.name for layer in model.layer].index(name)]
    conv = model.layer[[layer.name for layer in model.layer].index('conv1_1')]
    del conv.blobs[0].shape.dim[:]
    conv.blobs[0].shape.dim.extend([2, 3, 3, 6])
    (tiny / 'convs.caffemodel').write_bytes(model.SerializeToString())
    for res in (_classify(tiny, 'convs.caffemodel'),
                run_cli(['eval', 'cls', '--net', 'nets/kd/student_baseline.prototxt', '--blob', 'fc8_mscoco',
                         '--sigmoid', '--weights', 'convs.caffemodel'], tiny)):
        assert res.returncode == 1, res.stderr
        assert 'convs.caffemodel: layer conv1_1 blob 0 is 2x3x3x6 (108 values), the net needs 4x3x3x3' \
            in res.stderr and 'has no weights' not in res.stderr, res.stderr


def test_train_checks_hdf5_weights_and_names_an_hdf5_state_it_cannot_resume(tiny, h5):
    """`train --weights` with another net's .h5 (Caffe reshaped the net's
    blobs: heap corruption); `--resume` a truncated .solverstate.h5 printed
    HDF5's message without the file's name; another net's state aborted."""
    solver = ['train', 'nets/kd/solver_baseline.prototxt', '--set', 'max_iter=1', '--set', 'snapshot=1',
              '--set', 'snapshot_format=HDF5', '--set', 'test_interval=0']
    res = run_cli(solver + ['--set', 'snapshot_prefix=h5run/five', '--run-dir', 'runs/h5five', '--weights',
                            'h5/five.caffemodel.h5'], tiny)
    assert res.returncode == 1 and 'five.caffemodel.h5: layer fc8_mscoco blob 0 is 5x32' in res.stderr, res.stderr
    res = run_cli(solver + ['--set', 'snapshot_prefix=h5run/w', '--run-dir', 'runs/h5'], tiny)
    assert res.returncode == 0, res.stderr[-2000:]
    state = tiny / 'h5run' / 'w_iter_1.solverstate.h5'
    (tiny / 'h5run' / 'cut.solverstate.h5').write_bytes(state.read_bytes()[:500])
    res = run_cli(solver + ['--resume', 'h5run/cut.solverstate.h5', '--run-dir', 'runs/h5cut'], tiny)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith(
        'caffe-mlic train: h5run/cut.solverstate.h5: not an HDF5 file, or truncated: HDF5 cannot open it '
        '(truncated file'), res.stderr
    res = run_cli(['train', 'nets/wsddn/solver.prototxt', '--set', 'max_iter=2', '--resume',
                   'h5run/w_iter_1.solverstate.h5', '--run-dir', 'runs/h5other'], tiny)
    assert res.returncode == 1, res.stderr
    assert 'h5run/w_iter_1.solverstate.h5: not a state of this solver (or truncated): 32 history blobs; ' \
           'this net with solver type SGD keeps 35' in res.stderr, res.stderr


def test_surgery_reads_and_writes_hdf5_caffemodels(tiny, h5):
    """`surgery --from same:X.caffemodel.h5` said the file was "truncated or
    not a NetParameter" (read as binary protobuf), and `-o X.caffemodel.h5`
    wrote binary protobuf that Caffe, going by the name, reads as HDF5 and
    aborts on. Both are HDF5 now, the weights unchanged either way."""
    from caffe_mlic.caffe.weights import read_layers, read_weights
    import numpy as np
    source = read_layers(str(h5 / 'student.caffemodel.h5'))
    assert [kind for _, kind, _ in source] == [None] * 16          # (HDF5 keeps no layer types)
    assert all(not a.flags.writeable and a.dtype == np.float32 for _, _, arrays in source for a in arrays)
    for out in ('h5/back.caffemodel', 'h5/again.caffemodel.h5'):
        res = run_cli(['surgery', '--net', STUDENT, '--from', 'same:h5/student.caffemodel.h5', '-o', out], tiny)
        assert res.returncode == 0 and '16 copied, 0 kept, 0 mismatched' in res.stdout, res.stderr[-2000:]
        is_hdf5 = (tiny / out).read_bytes()[:8] == b'\x89HDF\r\n\x1a\n'
        assert is_hdf5 == out.endswith('.h5'), out
        written = read_weights(str(tiny / out))
        assert list(written) == [name for name, _, _ in source]
        for name, _, arrays in source:
            assert all(np.array_equal(a, b) for a, b in zip(arrays, written[name])), name
    assert _classify(tiny, 'h5/again.caffemodel.h5').stdout == _classify(tiny, 'h5/student.caffemodel.h5').stdout


def test_surgery_writes_weights_into_a_name_that_is_not_utf8(tiny, h5):
    """pycaffe's save takes only names that are UTF-8: `-o o\\xff.caffemodel`
    was refused with Python's codec words (pass 59b M1). Caffe writes by the
    temp file's own name (a digest), from within its folder."""
    from caffe_mlic.caffe.weights import read_weights
    import numpy as np
    folder = tiny / os.fsdecode(b'out\xff')
    folder.mkdir()
    expected = read_weights(str(h5 / 'student.caffemodel.h5'))
    for name in (b'o\xff.caffemodel', b'o\xff.h5'):
        out = str(folder / os.fsdecode(name))
        res = subprocess.run(CLI + ['surgery', '--net', STUDENT, '--from', 'same:h5/student.caffemodel.h5', '-o', out],
                             cwd=tiny, capture_output=True, timeout=300)     # (its line names the file in its bytes)
        assert res.returncode == 0, res.stderr[-2000:]
        written = read_weights(out)
        assert list(written) == list(expected)
        assert all(np.array_equal(a, b) for name in expected for a, b in zip(expected[name], written[name]))
    assert sorted(os.listdir(folder)) == sorted(os.fsdecode(n) for n in (b'o\xff.caffemodel', b'o\xff.h5'))


def test_surgery_refuses_an_hdf5_output_for_layer_names_with_a_slash(tiny, h5):
    """Caffe makes an HDF5 group per layer: for 'conv1/x' it aborted ("Check
    failed: layer_data_hid >= 0 ... Error saving weights")."""
    net = tiny / 'slash.prototxt'
    net.write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
        'layer { name: "conv1/x" type: "Convolution" bottom: "data" top: "c" '
        'convolution_param { num_output: 2 kernel_size: 3 } }\n')
    res = run_cli(['surgery', '--net', net, '--from', 'same:h5/student.caffemodel.h5', '-o', 'slash.caffemodel.h5'],
                  tiny)
    assert res.returncode == 2 and res.stderr == (
        'caffe-mlic surgery: argument -o/--out: slash.caffemodel.h5: an HDF5 caffemodel cannot hold layer '
        'names with "/" (conv1/x): Caffe would abort writing it; write a binary .caffemodel\n'), res.stderr
    assert not (tiny / 'slash.caffemodel.h5').exists()


def test_hdf5_layers_that_cannot_be_read_by_position_are_named(tmp_path):
    """read_layers of an .h5 (surgery, report): a layer whose blob 0 is
    missing but blob 1 is there, or a dataset of text, is refused naming it."""
    import h5py
    import numpy as np
    from caffe_mlic.caffe.weights import read_layers
    from caffe_mlic.errors import InputError
    path = tmp_path / 'w.caffemodel.h5'
    for fill, message in (
            (lambda g: g.create_dataset('1', data=np.zeros(2, np.float32)),
             'layer conv blob 0 (dataset data/conv/0) is missing while blob 1 is there (a blob shared with '
             'another layer?)'),
            (lambda g: g.create_dataset('0', data=np.array([b'text'])),
             'layer conv blob 0 (dataset data/conv/0) holds |S4 values, not numbers')):
        with h5py.File(path, 'w') as f:
            fill(f.create_group('data').create_group('conv'))
        with pytest.raises(InputError) as e:
            read_layers(str(path))
        assert str(e.value) == '%s: %s' % (path, message)


_DUP_NET = (
    'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
    'layer { name: "conv" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 3 } }\n'
    'layer { name: "relu" type: "ReLU" bottom: "c" top: "c" }\n'
    'layer { name: "conv2" type: "Convolution" bottom: "c" top: "d" convolution_param { num_output: 2 kernel_size: 3 } }\n'
    'layer { name: "relu" type: "ReLU" bottom: "d" top: "d" }\n')


def test_surgery_refuses_an_hdf5_output_for_a_layer_name_given_twice(tiny, h5):
    """Two layers named 'relu' (as the distillation nets' teacher and student
    copies): Caffe's HDF5 writer aborted ("Object already exists") and left
    a hidden .tmp beside the output."""
    net = tiny / 'dup.prototxt'
    net.write_text(_DUP_NET)
    res = run_cli(['surgery', '--net', net, '--from', 'same:h5/student.caffemodel.h5', '-o', 'dup.caffemodel.h5'],
                  tiny)
    assert res.returncode == 2 and res.stderr == (
        'caffe-mlic surgery: argument -o/--out: dup.caffemodel.h5: an HDF5 caffemodel cannot hold a layer '
        'name more than once (relu): Caffe would abort writing it; write a binary .caffemodel\n'), res.stderr
    assert not [p for p in os.listdir(tiny) if p.startswith(('dup.caffemodel', '.dup.caffemodel'))]


def test_save_weights_leaves_no_temp_file_when_caffe_aborts(tmp_path, caffe):
    """Where Caffe aborts writing (here: an HDF5 file of repeated names, not
    refused at this level) the process lived on and no temp file is left."""
    from caffe_mlic.caffe.surgery import shape_only_net
    from caffe_mlic.errors import RunError
    from caffe_mlic.fileio import save_weights
    (tmp_path / 'dup.prototxt').write_text(_DUP_NET)
    net = shape_only_net(str(tmp_path / 'dup.prototxt'))
    out = tmp_path / 'out' / 'w.caffemodel.h5'
    with pytest.raises(RunError, match=r'cannot write .*w.caffemodel.h5: Caffe aborted writing it \(SIGABRT\): '
                                       r'.*Check failed: layer_data_hid >= 0'):
        save_weights(net, str(out))
    assert os.listdir(tmp_path) == ['dup.prototxt']          # no temp file, no folder made for it
    save_weights(net, str(tmp_path / 'w.caffemodel'))        # a binary one is written
    assert sorted(os.listdir(tmp_path)) == ['dup.prototxt', 'w.caffemodel']


def test_surgery_refuses_a_source_naming_two_layers_with_weights_alike(tmp_path):
    """The second of two 'conv' layers was copied and the first dropped,
    with "0 source layers unused" (pass 37b S4)."""
    from caffe.proto import caffe_pb2
    net = tmp_path / 'net.prototxt'
    net.write_text(_DUP_NET)
    model = caffe_pb2.NetParameter()
    for fill in (1.0, 7.0):
        layer = model.layer.add(name='conv', type='Convolution')
        for shape in ((2, 3, 3, 3), (2,)):
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend([fill] * (2 * 3 * 3 * 3 if len(shape) == 4 else 2))
    (tmp_path / 'dup.caffemodel').write_bytes(model.SerializeToString())
    res = run_cli(['surgery', '--net', net, '--from', 'same:dup.caffemodel', '-o', 'out.caffemodel'], tmp_path)
    assert res.returncode == 1 and res.stderr == (
        'caffe-mlic surgery: dup.caffemodel: two layers with weights are named conv\n'), res.stderr
    assert not (tmp_path / 'out.caffemodel').exists()


def test_weights_naming_one_layer_twice_are_refused_where_a_net_reads_them(tmp_path, caffe):
    """A caffemodel holding two layers with weights of one name: Caffe
    copies each into the net's layer of that name, the last over the
    first, and classify, detect and train used whichever came last with
    exit 0 (pass 38b: surgery alone refused it). Every reader of weights
    into a net refuses it (check_weights, in caffe_net)."""
    from caffe.proto import caffe_pb2
    from caffe_mlic.errors import InputError
    net = tmp_path / 'net.prototxt'
    net.write_text(_DUP_NET.replace('name: "relu" type: "ReLU" bottom: "d"', 'name: "relu2" type: "ReLU" bottom: "d"'))
    model = caffe_pb2.NetParameter()
    for name, fill in (('conv', 1.0), ('conv2', 2.0), ('conv', 7.0)):
        layer = model.layer.add(name=name, type='Convolution')
        channels = 3 if name == 'conv' else 2
        for shape in ((2, channels, 3, 3), (2,)):
            blob = layer.blobs.add()
            blob.shape.dim.extend(shape)
            blob.data.extend([fill] * int(np.prod(shape)))
    (tmp_path / 'dup.caffemodel').write_bytes(model.SerializeToString())
    with pytest.raises(InputError, match=r'dup.caffemodel: two layers with weights are named conv$'):
        prototxt.caffe_net(str(net), 'TEST', weights=str(tmp_path / 'dup.caffemodel'))
    del model.layer[2]
    (tmp_path / 'one.caffemodel').write_bytes(model.SerializeToString())
    built = prototxt.caffe_net(str(net), 'TEST', weights=str(tmp_path / 'one.caffemodel'))
    assert built.params['conv'][0].data.min() == built.params['conv'][0].data.max() == 1.0
