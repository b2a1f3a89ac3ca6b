"""Reading caffemodels (weights.read_layers reads protobuf's wire format
itself) and the 2 GB limit of one protobuf message."""
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from caffe_mlic.caffe import weights
from caffe_mlic.errors import InputError
from tests import netutil

CLI = [sys.executable, '-m', 'caffe_mlic.cli']


def by_protobuf(data):
    """read_layers' answer the slow way: protobuf's own parser, value by value
    (None where protobuf cannot parse the bytes)."""
    from caffe.proto import caffe_pb2
    from google.protobuf.message import DecodeError
    net = caffe_pb2.NetParameter()
    try:
        net.ParseFromString(data)
    except DecodeError:
        return None
    v1 = not len(net.layer)
    out = []
    for layer in net.layers if v1 else net.layer:
        if len(layer.blobs):
            kind = caffe_pb2.V1LayerParameter.LayerType.Name(layer.type) if v1 else layer.type
            out.append((layer.name, kind, [
                np.asarray(b.data if len(b.data) else b.double_data, np.float32).reshape(
                    weights.blob_shape(b)) for b in layer.blobs]))
    return out


def same_layers(a, b):
    return ([(n, k, [x.shape for x in xs]) for n, k, xs in a] == [(n, k, [x.shape for x in xs]) for n, k, xs in b]
            and all(np.array_equal(x, y) for (_, _, xs), (_, _, ys) in zip(a, b) for x, y in zip(xs, ys)))


def mixed_model():
    """Every kind of blob a caffemodel holds: N-d shapes, V1's legacy
    num/channels/height/width, double_data, an empty shape, a layer without
    blobs, a name that is not ASCII."""
    from caffe.proto import caffe_pb2
    rng = np.random.default_rng(0)
    net = caffe_pb2.NetParameter(name='mixed')
    conv = net.layer.add(name='conv1', type='Convolution', bottom=['data'], top=['conv1'])
    conv.convolution_param.num_output = 4
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    for array in (w, b):
        blob = conv.blobs.add()
        blob.shape.dim.extend(array.shape)
        blob.data.extend(array.ravel().astype(np.float32).tolist())
    net.layer.add(name='relu1', type='ReLU')
    fc = net.layer.add(name='fc_é', type='InnerProduct')
    legacy = fc.blobs.add()
    legacy.num, legacy.channels, legacy.height, legacy.width = 1, 1, 5, 6
    legacy.data.extend(rng.standard_normal(30).astype(np.float32).tolist())
    double = fc.blobs.add()
    double.shape.dim.append(5)
    double.double_data.extend((rng.standard_normal(5) * 1e3).tolist())
    scalar = net.layer.add(name='scale', type='Scale').blobs.add()
    scalar.shape.SetInParent()
    scalar.data.append(0.25)
    return net.SerializeToString()


def v1_model():
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter(name='old')
    layer = net.layers.add(name='conv1_1', type=caffe_pb2.V1LayerParameter.CONVOLUTION)
    blob = layer.blobs.add()
    blob.num, blob.channels, blob.height, blob.width = 2, 3, 1, 1
    blob.data.extend([1, 2, 3, 4, 5, 6])
    net.layers.add(name='relu', type=caffe_pb2.V1LayerParameter.RELU)
    return net.SerializeToString()


@pytest.mark.parametrize('model', [mixed_model, v1_model])
def test_read_layers_equals_protobuf_value_by_value(tmp_path, model):
    data = model()
    path = tmp_path / 'm.caffemodel'
    path.write_bytes(data)
    got, want = weights.read_layers(str(path)), by_protobuf(data)
    assert [n for n, _, _ in got] == ([u'conv1', u'fc_é', u'scale'] if model is mixed_model else ['conv1_1'])
    assert same_layers(got, want)
    assert got[0][2][0].dtype == np.float32 and not got[0][2][0].flags.writeable


def test_every_truncation_is_an_error_or_what_protobuf_reads(tmp_path):
    """Cut anywhere: where protobuf rejects the bytes we say so in one line;
    where they still parse (a cut between fields) we read what protobuf reads."""
    data = mixed_model()
    path = tmp_path / 'cut.caffemodel'
    errors = 0
    for size in range(len(data)):
        path.write_bytes(data[:size])
        want = by_protobuf(data[:size])
        if want is None:
            with pytest.raises(InputError, match='cut.caffemodel: truncated or not a NetParameter'):
                weights.read_layers(str(path))
            errors += 1
        else:
            try:
                got = weights.read_layers(str(path))
            except InputError as e:     # a half blob that protobuf takes: its count is wrong
                assert 'values, its shape' in str(e)
                continue
            assert same_layers(got, want), size
    assert errors > len(data) // 2


def _varint(value):
    out = b''
    while value >= 0x80:
        out += bytes([value & 0x7f | 0x80])
        value >>= 7
    return out + bytes([value])


def _key(number, wire):
    return _varint((number << 3) | wire)


def _field(number, payload):
    return _key(number, 2) + _varint(len(payload)) + payload


def test_values_written_before_caffe_packed_them_are_read_too(tmp_path):
    """An old caffemodel stores each value as its own field: read through protobuf."""
    values = [1.5, -2.0, 3.25]
    blob = _field(7, _field(1, bytes([3])))                    # shape { dim: 3 } (packed)
    blob += b''.join(_key(5, 5) + struct.pack('<f', v) for v in values)     # data, unpacked
    layer = _field(1, b'fc') + _field(2, b'InnerProduct') + _field(7, blob)
    path = tmp_path / 'old.caffemodel'
    path.write_bytes(_field(100, layer))
    (name, kind, (array,)), = weights.read_layers(str(path))
    assert (name, kind) == ('fc', 'InnerProduct') and array.tolist() == values


def test_a_blob_whose_values_do_not_fill_its_shape_is_named(tmp_path):
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    blob = net.layer.add(name='fc7', type='InnerProduct').blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1, 2, 3, 4, 5])
    path = tmp_path / 'short.caffemodel'
    path.write_bytes(net.SerializeToString())
    with pytest.raises(InputError, match=r'short.caffemodel: layer fc7 blob 0 holds 5 values, '
                                         r'its shape 2x3 needs 6'):
        weights.read_layers(str(path))


# ---------------------------------------------------------------- over protobuf's 2 GB


def sparse_file(path, size):
    """A file of ``size`` bytes that takes no disk (the check reads only its size)."""
    with open(path, 'wb') as f:
        f.truncate(size)
    return str(path)


def test_the_limit_is_protobufs_own(tmp_path):
    weights.check_proto_size(sparse_file(tmp_path / 'at.caffemodel', weights.PROTO_LIMIT))
    big = sparse_file(tmp_path / 'over.caffemodel', weights.PROTO_LIMIT + 1)
    with pytest.raises(InputError) as e:
        weights.check_proto_size(big)
    assert str(e.value) == (
        "%s: 2.00 GB (2147483648 bytes) is over protobuf's limit of 2 GB (2147483647 bytes) for one "
        "message: Caffe cannot read it (write snapshots with snapshot_format: HDF5 for nets this "
        "large)" % big)


def test_python_readers_refuse_a_file_over_2gb(tmp_path, net_from_text):
    from caffe.proto import caffe_pb2
    big = sparse_file(tmp_path / 'big.caffemodel', 2 ** 31 + 5)
    net = net_from_text(netutil.input_layers_text([(1, 2)], ['data'])
                        + 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
                          'inner_product_param { num_output: 2 } }', 'TEST')
    for read in (lambda: weights.read_layers(big), lambda: weights.check_weights(big, net),
                 lambda: weights.parse_message(caffe_pb2.SolverState(), big)):
        with pytest.raises(InputError, match='big.caffemodel: 2.00 GB .* over protobuf'):
            read()


@pytest.fixture(scope='module')
def student(tmp_path_factory):
    """A tiny student deploy net (its folder has deploy.json) and one image."""
    import cv2
    from caffe_mlic.netspec import netgen
    from tests.tinydata import tiny_mlic_config, write_tiny_dataset
    root = tmp_path_factory.mktemp('weights_cli')
    listing = write_tiny_dataset(str(root / 'images'), n_images=1)
    netgen.generate(str(root / 'nets'), tiny_mlic_config(listing))
    cv2.imwrite(str(root / 'photo.png'), np.full((40, 50, 3), 90, np.uint8))
    return root


@pytest.mark.parametrize('args', [
    ['caffe', 'train', '-solver', 'nets/wsddn/solver.prototxt', '-weights', 'ok.caffemodel,big.caffemodel'],
    ['train', 'nets/wsddn/solver.prototxt', '--weights', 'big.caffemodel'],
    ['surgery', '--net', 'nets/kd/student_deploy.prototxt', '-o', 'out.caffemodel', '--from', 'same:big.caffemodel'],
    ['classify', '--net', 'nets/kd/student_deploy.prototxt', '--weights', 'big.caffemodel', 'photo.png',
     '--engine', 'opencv'],
    ['classify', '--net', 'nets/kd/student_deploy.prototxt', '--weights', 'big.caffemodel', 'photo.png'],
])
def test_commands_refuse_a_caffemodel_over_2gb_in_one_line(student, args):
    """Not a Caffe abort (rc 134) nor OpenCV's exception: our line, before either reads it."""
    sparse_file(student / 'big.caffemodel', 2 ** 31)
    (student / 'ok.caffemodel').write_bytes(b'')     # an empty net: read, then big refused
    res = subprocess.run(CLI + args, cwd=student, capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stderr
    line = res.stderr.strip().splitlines()[-1]    # (glog's warnings may come first)
    assert 'Traceback' not in res.stderr and 'Check failed' not in res.stderr
    assert line.startswith('caffe-mlic %s: ' % args[0]) and line.endswith(
        "big.caffemodel: 2.00 GB (2147483648 bytes) is over protobuf's limit of 2 GB (2147483647 "
        "bytes) for one message: Caffe cannot read it (write snapshots with snapshot_format: HDF5 "
        "for nets this large)"), line


def test_bench_weights_io_measures_each_ratio():
    """`make bench`'s weights_io on the tiny nets (its targets are for release size)."""
    import io

    from caffe_mlic.benchmarks import Report
    from caffe_mlic.benchmarks import weights_io
    out = io.StringIO()
    report = Report(out)
    weights_io.run(report, quick=True)
    ratios = {name: value for name, value, _, _ in report.rows}
    assert len(ratios) == 9 and all(value > 0 for value in ratios.values()), out.getvalue()
    assert 'surgery teacher -> stage 1 / Caffe loading stage 1' in out.getvalue()


# ---------------------------------------------------------------- shapes as Caffe compares them; HDF5; states

FC_NET = (netutil.input_layers_text([(1, 6)], ['data'])
          + '\nlayer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
            'inner_product_param { num_output: 5 } }\n')


def _fc_model(path, blobs):
    """A caffemodel of layer fc with ``blobs``: [(shape or None, legacy 4-d or None)]."""
    from caffe.proto import caffe_pb2
    net = caffe_pb2.NetParameter()
    layer = net.layer.add(name='fc', type='InnerProduct')
    for shape, legacy in blobs:
        blob = layer.blobs.add()
        if shape is not None:
            blob.shape.dim.extend(shape)
        if legacy is not None:
            blob.num, blob.channels, blob.height, blob.width = legacy
        blob.data.extend([0.5] * int(np.prod(legacy if legacy is not None else shape)))
    path.write_bytes(net.SerializeToString())
    return str(path)


def test_blob_shapes_compare_as_caffes_shape_equals(tmp_path, net_from_text):
    """Caffe's Blob::ShapeEquals: a legacy 4-d blob (num/channels/height/
    width, as old caffemodels store them) fits the net's blob padded with
    leading 1s (5x6 fits 1x1x5x6, 5 fits 1x1x1x5); when a blob gives both,
    the legacy dims win; a 4-d ``shape`` is compared as it is."""
    net = net_from_text(FC_NET, 'TEST')
    legacy = _fc_model(tmp_path / 'legacy.caffemodel', [(None, (1, 1, 5, 6)), (None, (1, 1, 1, 5))])
    weights.check_weights(legacy, net)
    net.copy_from(legacy)       # (Caffe takes it too)
    assert np.all(net.params['fc'][0].data == 0.5)
    both = _fc_model(tmp_path / 'both.caffemodel', [((5, 6), (1, 1, 6, 5)), ((5,), None)])
    with pytest.raises(InputError, match=r'both.caffemodel: layer fc blob 0 is 1x1x6x5 \(30 values\), '
                                         r'the net needs 5x6'):
        weights.check_weights(both, net)
    four = _fc_model(tmp_path / 'four.caffemodel', [((1, 1, 5, 6), None), ((5,), None)])
    with pytest.raises(InputError, match=r'four.caffemodel: layer fc blob 0 is 1x1x5x6 \(30 values\), '
                                         r'the net needs 5x6'):
        weights.check_weights(four, net)
    info = weights.BlobInfo
    assert weights.blob_fits((5,), info((1, 1, 1, 5), True, 5))
    assert not weights.blob_fits((5,), info((1, 1, 5, 1), True, 5))
    assert not weights.blob_fits((1, 2, 3, 4, 5), info((2, 3, 4, 5), True, 120))
    assert weights.blob_fits((), info((), False, 1)) and not weights.blob_fits((1,), info((), False, 1))


def test_a_layer_with_blobs_where_the_net_has_none_or_another_count_is_named(tmp_path, net_from_text):
    """Caffe CHECKs the blob count of every same-named layer ("Incompatible
    number of blobs"), a layer of the file without blobs included."""
    net = net_from_text(FC_NET, 'TEST')
    one = _fc_model(tmp_path / 'one.caffemodel', [((5, 6), None)])
    with pytest.raises(InputError, match='one.caffemodel: layer fc has 1 blobs, the net 2'):
        weights.check_weights(one, net)
    none = _fc_model(tmp_path / 'none.caffemodel', [])
    with pytest.raises(InputError, match="none.caffemodel: fills none of the net's 1 layers"):
        weights.check_weights(none, net)
    with pytest.raises(InputError, match='none.caffemodel: layer fc has 0 blobs, the net 2'):
        weights.check_weight_layers(none, weights.net_wants(net), fill=False)


SHARED_NET = (netutil.input_layers_text([(2, 3)], ['data'])
              + '\nlayer { name: "a" type: "InnerProduct" bottom: "data" top: "a" param { name: "w" } '
                'inner_product_param { num_output: 4 } }\n'
                'layer { name: "b" type: "InnerProduct" bottom: "data" top: "b" param { name: "w" } '
                'inner_product_param { num_output: 4 } }\n'
                'layer { name: "bn" type: "BatchNorm" bottom: "b" top: "bn" }\n')


def test_hdf5_caffemodels_are_read_as_caffe_writes_them(tmp_path, net_from_text):
    """Caffe's layout (group data, a group per layer, datasets 0, 1, ...);
    a blob shared with an earlier layer is left out, and that is no fault."""
    net = net_from_text(SHARED_NET, 'TEST')
    path = str(tmp_path / 'w.caffemodel.h5')
    net.save_hdf5(path)
    sources = {layer.name: layer for layer in weights.read_sources(path)}
    assert {name: {i: info.shape for i, info in layer.blobs.items()} for name, layer in sources.items()
            if layer.links} == {'a': {0: (4, 3), 1: (4,)}, 'b': {1: (4,)}, 'bn': {0: (4,), 1: (4,), 2: (1,)}}
    assert [w.shared for w in dict(weights.net_wants(net))['b']] == [True, False]
    weights.check_weights(path, net, complete=True)
    other = net_from_text(SHARED_NET.replace('num_output: 4', 'num_output: 2'), 'TEST')
    with pytest.raises(InputError) as e:
        weights.check_weights(path, other)
    assert 'w.caffemodel.h5: layer a blob 0 is 4x3 (12 values), the net needs 2x3' in str(e.value)
    assert 'layer bn blob 0 is 4 (4 values), the net needs 2' in str(e.value)
    net.copy_from(path)     # (Caffe reads it)


def test_hdf5_datasets_caffe_cannot_load_are_named(tmp_path, net_from_text):
    import h5py
    net = net_from_text(FC_NET, 'TEST')
    for name, make, fragment in [
            ('nodata', lambda f: f.create_group('weights'), 'an HDF5 file without a "data" group'),
            ('text', lambda f: (f.create_dataset('data/fc/0', data=np.zeros((5, 6), np.float32)),
                                f.create_dataset('data/fc/1', data=np.array([b'x'] * 5))),
             'layer fc blob 1 (dataset data/fc/1) holds |S1 values, not numbers'),
            ('missing', lambda f: f.create_dataset('data/fc/1', data=np.zeros(5, np.float32)),
             'layer fc has no blob 0 (dataset data/fc/0), the net needs 5x6'),
            ('many', lambda f: [f.create_dataset('data/fc/%d' % i, data=np.zeros(5, np.float32))
                                for i in range(3)], 'layer fc has 3 blobs, the net 2')]:
        path = str(tmp_path / ('%s.caffemodel.h5' % name))
        with h5py.File(path, 'w') as f:
            make(f)
        with pytest.raises(InputError, match=re.escape('%s.caffemodel.h5: ' % name) + '.*' + re.escape(fragment)):
            weights.check_weights(path, net)


def _solver_run(tmp_path, monkeypatch, **fields):
    """Snapshots of one SGD step of SHARED_NET (+ a loss) in tmp_path."""
    import caffe
    from caffe_mlic.caffe import prototxt
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'net.prototxt').write_text(SHARED_NET + 'layer { name: "loss" type: "Reduction" bottom: "bn" '
                                                        'top: "loss" loss_weight: 1 }\n')
    prototxt.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', base_lr=0.1, max_iter=1,
                          snapshot_prefix='s', **fields)
    solver = caffe.get_solver('solver.prototxt')
    solver.step(1)
    solver.snapshot()
    return solver


@pytest.mark.parametrize('hdf5', [False, True])
def test_solver_states_are_read_as_caffe_writes_them(tmp_path, monkeypatch, hdf5):
    """Binary (read from protobuf's wire format, as caffemodels) and HDF5;
    the history is one blob per learnable blob: a shared blob once."""
    from caffe.proto import caffe_pb2
    from caffe_mlic.engine.snapshots import learnable_shapes
    from caffe_mlic.caffe import prototxt
    solver = _solver_run(tmp_path, monkeypatch, **({'snapshot_format': 0} if hdf5 else {}))
    path = 's_iter_1.solverstate' + ('.h5' if hdf5 else '')
    state = weights.read_state(path)
    assert state.iteration == 1 and state.learned_net == 's_iter_1.caffemodel' + ('.h5' if hdf5 else '')
    shapes = learnable_shapes(solver.net, prototxt.read_net('net.prototxt'))
    assert [info.shape for info in state.history] == [tuple(s) for s in shapes] == [
        (4, 3), (4,), (4,), (4,), (4,), (1,)]
    weights.check_history(path, state, shapes, 'SGD')
    if not hdf5:
        proto = weights.parse_message(caffe_pb2.SolverState(), path)
        assert [weights.blob_shape(b) for b in proto.history] == [info.shape for info in state.history]
        assert [weights.stored_values(b) for b in proto.history] == [info.values for info in state.history]
    with pytest.raises(InputError, match=re.escape(path) + r': not a state of this solver \(or truncated\): 6 '
                                                           r'history blobs; this net with solver type Adam keeps 12'):
        weights.check_history(path, state, shapes * 2, 'Adam')
    with pytest.raises(InputError, match=re.escape(path) + r': not a state of this solver: history blob 0 is 4x3 '
                                                           r'\(12 values\), the net needs 2x3'):
        weights.check_history(path, state, [(2, 3)] + list(shapes[1:]), 'SGD')


def test_a_scalar_blob_as_caffe_writes_it_fits(tmp_path, net_from_text):
    """Caffe writes a 0-d blob (a channel-shared PReLU slope) with neither
    shape nor legacy dims; it was read as 0x0x0x0 ("holds 1 values, its
    shape 0x0x0x0 needs 0") and such a net's own caffemodel refused."""
    net = net_from_text(netutil.input_layers_text([(2, 3)], ['x']) + '\nlayer { name: "p" type: "PReLU" '
                        'bottom: "x" top: "y" prelu_param { channel_shared: true } }\n', 'TEST')
    for path in (str(tmp_path / 'p.caffemodel'), str(tmp_path / 'p.caffemodel.h5')):
        net.save_hdf5(path) if path.endswith('.h5') else net.save(path)
        weights.check_weights(path, net, complete=True)
    (name, _, (slope,)), = weights.read_layers(str(tmp_path / 'p.caffemodel'))
    assert name == 'p' and slope.shape == () and slope == np.float32(0.25)


def test_a_zero_filled_file_is_refused_at_its_first_bytes(tmp_path):
    """Zero bytes are field number 0, which no message has: protobuf stops
    there and reads an empty net, which Caffe would take without a word (a
    preallocated download of a caffemodel). We refuse it in one line, at
    its first bytes."""
    path = tmp_path / 'zero.caffemodel'
    path.write_bytes(bytes(4 << 20))
    assert by_protobuf(bytes(64)) == []
    with pytest.raises(InputError, match='zero.caffemodel: truncated or not a NetParameter'):
        weights.read_layers(str(path))


def test_scanning_keeps_only_the_layers_not_every_field(tmp_path):
    """A file of a million unknown top-level fields (valid protobuf) is
    scanned in memory bounded by the file, not ~70 bytes per field."""
    import tracemalloc
    field = _key(100, 0) + _varint(1)           # an unknown varint field
    data = field * (1 << 20)
    path = tmp_path / 'fields.caffemodel'
    path.write_bytes(data)
    tracemalloc.start()
    try:
        assert weights.read_layers(str(path)) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(data), peak


def test_a_file_of_countless_empty_layers_is_refused_in_bounded_memory(tmp_path):
    """Empty layer entries (3 bytes each) would each cost ~150 bytes kept:
    past MAX_LAYERS the file is refused while being scanned, in memory that
    does not grow with the file."""
    import tracemalloc
    data = _field(100, b'') * (4 * weights.MAX_LAYERS)
    path = tmp_path / 'empties.caffemodel'
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match='empties.caffemodel: more than 100000 layers'):
            weights.read_layers(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * weights.MAX_LAYERS < 20 * len(data), peak
    path.write_bytes(_field(100, b'') * 1000)
    assert weights.read_layers(str(path)) == []


@pytest.mark.parametrize('entries', ['blobs', 'chunks'])
def test_countless_empty_blobs_or_chunks_in_one_layer_are_refused_in_bounded_memory(tmp_path, entries):
    """The bound counts every entry kept: one layer of millions of empty
    blobs, or one blob of millions of empty data chunks, took ~130x the file."""
    import tracemalloc
    n = 3 * weights.MAX_LAYERS
    if entries == 'blobs':
        layer = _field(1, b'x') + _field(7, b'') * n                 # LayerParameter.blobs = 7
    else:
        layer = _field(1, b'x') + _field(7, _field(5, b'') * n)      # BlobProto.data = 5, packed
    path = tmp_path / 'e.caffemodel'
    path.write_bytes(_field(100, layer))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match='e.caffemodel: more than 100000 layers, blobs or chunks'):
            weights.read_layers(str(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200 * weights.MAX_LAYERS, peak
