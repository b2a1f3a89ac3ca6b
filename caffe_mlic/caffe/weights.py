"""Caffemodels: read them, and check one against a net before Caffe sees it.

Caffe's own loader aborts the process (a CHECK) on a truncated file or a
blob of the wrong shape, and silently keeps the fillers' values for every
layer a caffemodel does not name. ``check_weights`` turns both into an
InputError naming the file and the layers.

Release-size files (VGG16: 540 MB caffemodels, solverstates up to twice that)
are read at about the speed the disk gives them: ``read_layers`` reads
protobuf's wire format itself, each blob's values one numpy view of the
file's bytes, never a Python object per value. One
protobuf message cannot exceed 2 GB; a larger file is refused here
(``check_proto_size``) before Caffe would abort on it.
"""
import os

import numpy as np

from caffe_mlic.errors import InputError, Problem


def read_weights(path, error=InputError):
    """{layer name: [numpy arrays]} from a .caffemodel, without building its net."""
    return {name: arrays for name, _, arrays in read_layers(path, error)}


def read_layers(path, error=InputError):
    """[(name, type, [numpy arrays])] of a .caffemodel's layers with weights,
    in file order. Layers of another fork keep their type (PSPNet's "BN");
    old V1 ``layers`` entries (DeepLab v1) have their enum's name ("CONVOLUTION").
    The arrays are read-only float32 views of the file's bytes."""
    raw = read_proto_bytes(path, error)
    try:
        layers = _scan_layers(raw)
    except _Unpacked:       # a file from before caffe.proto packed its values
        layers = _parsed_layers(path, error)
    except _Malformed:
        raise error('%s: truncated or not a NetParameter (protobuf cannot parse it)' % path)
    out = []
    for name, kind, blobs in layers:
        arrays = []
        for i, (shape, values) in enumerate(blobs):
            if values.size != int(np.prod(shape)):
                raise error('%s: layer %s blob %d holds %d values, its shape %s needs %d'
                            % (path, name, i, values.size, 'x'.join(map(str, shape)),
                               int(np.prod(shape))))
            values.flags.writeable = False
            arrays.append(values.reshape(shape))
        out.append((name, kind, arrays))
    return out


def _parsed_layers(path, error):
    """read_layers' layers through protobuf, value by value (slow: old files only)."""
    from caffe.proto import caffe_pb2
    net = parse_message(caffe_pb2.NetParameter(), path, error)
    if len(net.layer):
        layers = [(layer.name, layer.type, layer.blobs) for layer in net.layer]
    else:
        layers = [(layer.name, _v1_type_name(layer.type), layer.blobs) for layer in net.layers]
    return [(name, kind, [(blob_shape(b), np.asarray(b.data if len(b.data) else b.double_data,
                                                       np.float32)) for b in blobs])
            for name, kind, blobs in layers if len(blobs)]


def _v1_type_name(number):
    from caffe.proto import caffe_pb2
    return caffe_pb2.V1LayerParameter.LayerType.Name(number)


# A caffemodel read straight from protobuf's wire format, so that a blob's
# values become one numpy view of the file's bytes: protobuf's Python objects
# cost ~0.2 s per million values (26 s for VGG16's 138 M), this costs what
# reading the file does. Field numbers are caffe.proto's.
_NET_LAYER, _NET_V1_LAYERS = 100, 2
_LAYER_FIELDS = {'layer': (1, 2, 7), 'v1': (4, 5, 6)}       # name, type, blobs
_NUM, _CHANNELS, _HEIGHT, _WIDTH, _DATA, _SHAPE, _DOUBLE_DATA = 1, 2, 3, 4, 5, 7, 8
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class _Malformed(Exception):
    pass


class _Unpacked(Exception):
    pass


def _varint(raw, pos, end):
    value = shift = 0
    while shift < 70:
        if pos >= end:
            raise _Malformed()
        byte = raw[pos]
        pos += 1
        value |= (byte & 0x7f) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Malformed()


def _fields(raw, start, end):
    """(number, wire type, value) of each field of the message raw[start:end]:
    value is the integer of a varint, (start, end) of a length-delimited
    field, and the position of a fixed-size one."""
    pos = start
    while pos < end:
        key, pos = _varint(raw, pos, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(raw, pos, end)
        elif wire == _BYTES:
            length, pos = _varint(raw, pos, end)
            value, pos = (pos, pos + length), pos + length
        elif wire in (_FIXED64, _FIXED32):
            value, pos = pos, pos + (8 if wire == _FIXED64 else 4)
        else:               # groups: caffe.proto has none
            raise _Malformed()
        if pos > end:
            raise _Malformed()
        yield number, wire, value


def _scan_layers(raw):
    """[(name, type, [(shape, values)])] of the layers with blobs, as read_layers."""
    top = list(_fields(raw, 0, len(raw)))
    spans, kind = [v for n, w, v in top if n == _NET_LAYER and w == _BYTES], 'layer'
    if not spans:
        spans, kind = [v for n, w, v in top if n == _NET_V1_LAYERS and w == _BYTES], 'v1'
    name_field, type_field, blobs_field = _LAYER_FIELDS[kind]
    layers = []
    for start, end in spans:
        name, layer_type, blobs = '', '', []
        for number, wire, value in _fields(raw, start, end):
            if number == name_field and wire == _BYTES:
                name = _text(raw, value)
            elif number == type_field:
                layer_type = (_text(raw, value) if wire == _BYTES else _v1_type_name(value))
            elif number == blobs_field and wire == _BYTES:
                blobs.append(_scan_blob(raw, *value))
        if blobs:
            layers.append((name, layer_type, blobs))
    return layers


def _text(raw, span):
    try:
        return raw[span[0]:span[1]].decode('utf-8')
    except UnicodeDecodeError:
        raise _Malformed()


def _scan_blob(raw, start, end):
    """(shape, float32 values) of the BlobProto raw[start:end]."""
    legacy, shape, chunks = [0, 0, 0, 0], None, {_DATA: [], _DOUBLE_DATA: []}
    for number, wire, value in _fields(raw, start, end):
        if number in chunks:
            if wire != _BYTES:
                raise _Unpacked()
            chunks[number].append(value)
        elif number == _SHAPE and wire == _BYTES:
            shape = []
            for dim_number, dim_wire, dims in _fields(raw, *value):
                if dim_wire == _BYTES:          # BlobShape.dim, packed
                    pos, dims_end = dims
                    while pos < dims_end:
                        dim, pos = _varint(raw, pos, dims_end)
                        shape.append(dim)
                elif dim_wire == _VARINT:
                    shape.append(dims)
        elif _NUM <= number <= _WIDTH and wire == _VARINT:
            legacy[number - _NUM] = value
    values = _values(raw, chunks[_DATA], '<f4')
    if not values.size and chunks[_DOUBLE_DATA]:
        values = _values(raw, chunks[_DOUBLE_DATA], '<f8').astype(np.float32)
    return tuple(shape) if shape is not None else tuple(legacy), values


def _values(raw, spans, dtype):
    size = np.dtype(dtype).itemsize
    if any((end - start) % size for start, end in spans):
        raise _Malformed()
    arrays = [np.frombuffer(raw, dtype, (end - start) // size, start) for start, end in spans]
    if not arrays:
        return np.zeros(0, np.float32)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def blob_shape(proto):
    if proto.HasField('shape'):
        return tuple(proto.shape.dim)
    return tuple(d for d in (proto.num, proto.channels, proto.height, proto.width))


def shape_fits(shape, proto):
    """Caffe's Blob::ShapeEquals: the shape, or the legacy 4-d num/channels/height/width."""
    if proto.HasField('shape'):
        return tuple(proto.shape.dim) == tuple(shape)
    return len(shape) <= 4 and (1,) * (4 - len(shape)) + tuple(shape) == blob_shape(proto)


def stored_values(proto):
    return len(proto.data) or len(proto.double_data)


# protobuf's limit for one message (a caffemodel or a solverstate is one).
PROTO_LIMIT = 2 ** 31 - 1


def check_proto_size(path, error=InputError):
    """Raise ``error`` if ``path`` is larger than one protobuf message can be:
    neither Caffe (which would abort) nor Python's protobuf can read it."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return      # (a missing file is reported by whoever opens it)
    if size > PROTO_LIMIT:
        raise error('%s: %.2f GB (%d bytes) is over protobuf\'s limit of 2 GB (%d bytes) for '
                    'one message: Caffe cannot read it (write snapshots with '
                    'snapshot_format: HDF5 for nets this large)'
                    % (path, size / 2 ** 30, size, PROTO_LIMIT))


def read_proto_bytes(path, error=InputError):
    """The bytes of a binary proto file, refused over protobuf's limit."""
    check_proto_size(path, error)
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as e:
        raise error('%s: cannot read it: %s' % (path, e.strerror or e))


def parse_message(message, path, error=InputError):
    from google.protobuf.message import DecodeError
    data = read_proto_bytes(path, error)
    try:
        message.ParseFromString(data)
    except DecodeError:
        raise error('%s: truncated or not a %s (protobuf cannot parse it)'
                    % (path, type(message).__name__))
    return message


def name_list(names, most=8):
    """'a, b, c' of at most ``most`` names, then 'and N more'."""
    names = list(names)
    return ', '.join(names[:most]) + (' and %d more' % (len(names) - most) if len(names) > most else '')


def check_weights(path, net, complete=False, error=InputError):
    """Raise ``error`` unless caffemodel ``path`` can be copied into caffe.Net
    ``net`` without Caffe aborting and fills some of it: it parses, at least
    one of the net's layers with weights is in it, and every layer of it that
    the net has gives as many blobs, each of the net's shape with all its
    values. ``complete``: every layer of the net with weights must be in it
    (a snapshot of this net; what evaluation and inference need)."""
    from caffe.proto import caffe_pb2
    if not os.path.isfile(path):
        raise error('%s: no such weights file' % path)
    if path.endswith('.h5'):
        return
    model = parse_message(caffe_pb2.NetParameter(), path, error)
    source = {layer.name: layer.blobs for layer in list(model.layer) + list(model.layers)
              if len(layer.blobs)}
    wanted = [name for name, blobs in net.params.items() if len(blobs)]
    missing = [name for name in wanted if name not in source]
    if wanted and len(missing) == len(wanted):
        raise error('%s: fills none of the net\'s %d layers with weights (%s); it has %s: '
                    'the weights of another net?'
                    % (path, len(wanted), name_list(wanted),
                       'layers %s' % name_list(source) if source else 'no weights at all'))
    if complete and missing:
        raise error('%s: has no weights for %d of the net\'s %d layers with weights: %s (the '
                    'weights of another net, or of a part of it?)'
                    % (path, len(missing), len(wanted), name_list(missing)))
    problems = []
    for name, blobs in net.params.items():
        given = source.get(name)
        if given is None:
            continue
        if len(given) != len(blobs):
            problems.append('layer %s has %d blobs, the net %d' % (name, len(given), len(blobs)))
            continue
        for i, (blob, proto) in enumerate(zip(blobs, given)):
            if not shape_fits(blob.data.shape, proto) or stored_values(proto) != blob.data.size:
                problems.append('layer %s blob %d is %s (%d values), the net needs %s'
                                % (name, i, 'x'.join(map(str, blob_shape(proto))) or 'empty',
                                   stored_values(proto), 'x'.join(map(str, blob.data.shape))))
    if problems:
        raise error(problems=[Problem(path, None, None, p) for p in problems],
                    what=None if len(problems) == 1 else 'weights')
