"""Caffemodels: read them, and check one against a net before Caffe sees it.

Caffe's own loader aborts the process (a CHECK) on a truncated file or a
blob of the wrong shape, and silently keeps the fillers' values for every
layer a caffemodel does not name. ``check_weights`` turns both into an
InputError naming the file and the layers. The same checks take HDF5 files
(``.h5``, read with h5py: Caffe's HDF5 loader aborts on what HDF5 cannot
open and reshapes the net's blobs to a dataset's, corrupting memory), the
parameter shapes of a built net or ones inferred from its prototxt
(``check_weight_layers``), and solver states (``read_state``,
``check_history``).

Release-size files (VGG16: 540 MB caffemodels, solverstates up to twice that)
are read at about the speed the disk gives them: ``read_layers`` reads
protobuf's wire format itself, each blob's values one numpy view of the
file's bytes, never a Python object per value. One
protobuf message cannot exceed 2 GB; a larger file is refused here
(``check_proto_size``) before Caffe would abort on it.
"""
import os
from typing import NamedTuple, Optional

import numpy as np

from caffe_mlic.errors import InputError, Problem


def read_weights(path, error=InputError):
    """{layer name: [numpy arrays]} from a .caffemodel, without building its net."""
    return {name: arrays for name, _, arrays in read_layers(path, error)}


def read_layers(path, error=InputError):
    """[(name, type, [numpy arrays])] of a .caffemodel's layers with weights,
    in file order. Layers of another fork keep their type (PSPNet's "BN");
    old V1 ``layers`` entries (DeepLab v1) have their enum's name ("CONVOLUTION").
    The arrays are read-only float32 views of the file's bytes. A
    ``.caffemodel.h5`` (Caffe's snapshot_format: HDF5) is read with h5py:
    its type is None (the file does not keep it). A name given to two
    layers with weights is an error: which one a net would get is not
    defined (a dict, and Caffe's copy, keep the last without a word)."""
    if is_hdf5(path):
        return _hdf5_layers(path, error)
    out, named = [], set()
    for name, kind, blobs in _read_model(path, error):
        if not blobs:
            continue
        if name in named:
            raise error('%s: two layers with weights are named %s' % (path, name))
        named.add(name)
        arrays = []
        for i, (shape, values, _) in enumerate(blobs):
            if values.size != int(np.prod(shape)):
                raise error('%s: layer %s blob %d holds %d values, its shape %s needs %d'
                            % (path, name, i, values.size, 'x'.join(map(str, shape)),
                               int(np.prod(shape))))
            values.flags.writeable = False
            arrays.append(values.reshape(shape))
        out.append((name, kind, arrays))
    return out


def _read_model(path, error):
    """[(name, type, [(shape, float32 values, legacy)])] of every layer of a
    binary caffemodel, with or without blobs (see _scan_blob)."""
    raw = read_proto_bytes(path, error)
    try:
        return _scan_layers(raw)
    except _Unpacked:       # a file from before caffe.proto packed its values
        return _parsed_layers(path, error)
    except _Malformed:
        raise error('%s: truncated or not a NetParameter (protobuf cannot parse it)' % path)
    except _TooManyLayers:
        raise error('%s: more than %d layers, blobs or chunks of values, more than any net has: a '
                    'damaged or made-up file (reading it would take about 150 bytes of memory per entry)'
                    % (path, MAX_LAYERS))


def _parsed_layers(path, error):
    """_read_model's layers through protobuf, value by value (slow: old files only)."""
    from caffe.proto import caffe_pb2
    net = parse_message(caffe_pb2.NetParameter(), path, error)
    if len(net.layer):
        layers = [(layer.name, layer.type, layer.blobs) for layer in net.layer]
    else:
        layers = [(layer.name, _v1_type_name(layer.type), layer.blobs) for layer in net.layers]
    return [(name, kind, [_parsed_blob(b) for b in blobs]) for name, kind, blobs in layers]


def _parsed_blob(proto):
    return (blob_shape(proto), np.asarray(proto.data if len(proto.data) else proto.double_data,
                                          np.float32), _legacy(proto))


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


# A bound on the entries of a caffemodel kept while it is read (layers,
# blobs, chunks of values: ResNet-152 has under a thousand layers and a few
# per blob): a file of millions of empty 3-byte entries would otherwise take
# ~100 times its size in memory. A blob has at most 32 axes (Caffe's
# kMaxBlobAxes).
MAX_LAYERS = 100000
MAX_AXES = 32


class _TooManyLayers(Exception):
    pass


def _count_entry(budget):
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooManyLayers()


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
        if number == 0:     # no message has field 0 (protobuf stops there): zero bytes
            raise _Malformed()
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
    """[(name, type, [(shape, values, legacy)])] of every layer, as _read_model."""
    # only the layers' spans are kept: a list of every top-level field
    # would cost ~70 bytes per field of a large malformed file
    by_field, budget = {_NET_LAYER: [], _NET_V1_LAYERS: []}, [MAX_LAYERS]
    for number, wire, value in _fields(raw, 0, len(raw)):
        if number in by_field and wire == _BYTES:
            by_field[number].append(value)
            _count_entry(budget)
    spans, kind = by_field[_NET_LAYER], 'layer'
    if not spans:
        spans, kind = by_field[_NET_V1_LAYERS], 'v1'
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
                _count_entry(budget)
                blobs.append(_scan_blob(raw, *value, budget))
        layers.append((name, layer_type, blobs))
    return layers


def _text(raw, span):
    try:
        return raw[span[0]:span[1]].decode('utf-8')
    except UnicodeDecodeError:
        raise _Malformed()


def _scan_blob(raw, start, end, budget):
    """(shape, float32 values, legacy) of the BlobProto raw[start:end]: its
    shape as Caffe reads it, the legacy 4-d num/channels/height/width when
    any of them is given (``legacy``), else its ``shape``'s dims."""
    legacy, given, shape, chunks = [0, 0, 0, 0], False, None, {_DATA: [], _DOUBLE_DATA: []}
    for number, wire, value in _fields(raw, start, end):
        if number in chunks:
            if wire != _BYTES:
                raise _Unpacked()
            chunks[number].append(value)
            _count_entry(budget)
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
                if len(shape) > MAX_AXES:       # Caffe CHECKs it too
                    raise _Malformed()
        elif _NUM <= number <= _WIDTH and wire == _VARINT:
            legacy[number - _NUM], given = value, True
    values = _values(raw, chunks[_DATA], '<f4')
    if not values.size and chunks[_DOUBLE_DATA]:
        values = _values(raw, chunks[_DOUBLE_DATA], '<f8').astype(np.float32)
    return (tuple(legacy), values, True) if given else (tuple(shape or ()), values, False)


def _values(raw, spans, dtype):
    size = np.dtype(dtype).itemsize
    if any((end - start) % size for start, end in spans):
        raise _Malformed()
    arrays = [np.frombuffer(raw, dtype, (end - start) // size, start) for start, end in spans]
    if not arrays:
        return np.zeros(0, np.float32)
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _legacy(proto):
    return any(proto.HasField(f) for f in ('num', 'channels', 'height', 'width'))


def blob_shape(proto):
    """A BlobProto's shape as Caffe reads it: the legacy 4-d
    num/channels/height/width when any is given, else its shape's dims."""
    if _legacy(proto):
        return (proto.num, proto.channels, proto.height, proto.width)
    return tuple(proto.shape.dim)


def shape_fits(shape, proto):
    """Caffe's Blob::ShapeEquals: the shape, or the legacy 4-d num/channels/height/width."""
    return blob_fits(shape, BlobInfo(blob_shape(proto), _legacy(proto), stored_values(proto)))


def blob_fits(shape, info):
    """Caffe's Blob::ShapeEquals of a blob of ``shape`` and a stored blob
    (BlobInfo): the same dims, or, for a legacy 4-d blob, ``shape`` padded
    to 4 dims with leading 1s (a bias of 1x1x1xN fits N). HDF5 datasets are
    never legacy: their dims must be the same."""
    shape = tuple(int(d) for d in shape)
    if info.legacy:
        return len(shape) <= 4 and (1,) * (4 - len(shape)) + shape == tuple(info.shape)
    return shape == tuple(info.shape)


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
    from caffe_mlic.fileio import open_regular
    check_proto_size(path, error)
    try:
        with open_regular(path, 'rb') as f:
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


# ---------------------------------------------------------------- what a file holds, in shapes


class BlobInfo(NamedTuple):
    """One stored blob: its ``shape`` as Caffe reads it, whether that is the
    ``legacy`` 4-d num/channels/height/width (binary files only), and how
    many ``values`` the file holds for it."""
    shape: tuple
    legacy: bool
    values: int


class SourceLayer(NamedTuple):
    """One layer of a weights file: ``name``; ``links``, the entries the file
    has for it (blobs; HDF5: links in its group); ``blobs``, {index: BlobInfo,
    or a string saying why that blob cannot be read} (HDF5: a dataset absent
    from its group is absent here); ``problem``: why the layer itself cannot
    be read, or None."""
    name: str
    links: int
    blobs: dict
    problem: Optional[str] = None


def is_hdf5(path):
    """Whether Caffe reads ``path`` as HDF5 (by its name, as Caffe decides)."""
    return os.fspath(path).endswith('.h5')


def read_sources(path, error=InputError):
    """[SourceLayer] of every layer of a caffemodel (binary or ``.h5``), in
    file order, shapes and counts only; ``error`` when it cannot be read."""
    if is_hdf5(path):
        return _hdf5_sources(path, error)
    return [SourceLayer(name, len(blobs), {i: BlobInfo(shape, legacy, values.size)
                                           for i, (shape, values, legacy) in enumerate(blobs)})
            for name, _, blobs in _read_model(path, error)]


def _h5py(path, error):
    try:
        import h5py
    except ImportError:
        raise error('%s: an HDF5 file: reading it needs the h5py module (pip install h5py)' % path)
    return h5py


def open_hdf5(path, error=InputError, what='HDF5 file'):
    """An h5py.File of ``path`` for reading; ``error`` naming the file when
    HDF5 cannot open it (empty, text, truncated: Caffe would abort)."""
    h5py = _h5py(path, error)
    if not os.path.isfile(path):
        raise error('%s: no such %s' % (path, what))
    try:
        return h5py.File(path, 'r')
    except (OSError, ValueError) as e:
        reason = str(e)
        if '(' in reason and reason.endswith(')'):        # "Unable to open file (truncated file: ...)"
            reason = reason[reason.index('(') + 1:-1]
        raise error('%s: not an HDF5 file, or truncated: HDF5 cannot open it (%s)' % (path, reason))


def _hdf5_sources(path, error):
    """read_sources of a caffemodel.h5 as Caffe writes one: a group ``data``
    with a group per layer, its blobs datasets "0", "1", ..."""
    h5py = _h5py(path, error)
    size = os.path.getsize(path)
    with open_hdf5(path, error, 'weights file') as f:
        data = _h5_get(f, 'data')
        if not isinstance(data, h5py.Group):
            raise error('%s: an HDF5 file without a "data" group: not a caffemodel.h5 (Caffe keeps '
                        'a group per layer in /data)' % path)
        layers = []
        for name in _h5_names(data, path, error):
            group = _h5_get(data, name)
            if not isinstance(group, h5py.Group):
                layers.append(SourceLayer(name, 0, {}, 'data/%s is not a group' % name))
                continue
            keys = _h5_names(group, path, error)
            layers.append(SourceLayer(name, len(keys), {
                int(key): _h5_blob(h5py, group, key, size) for key in keys
                if key.isdigit() and str(int(key)) == key}))
        return layers


def _hdf5_layers(path, error):
    """read_layers of a caffemodel.h5: each layer's datasets "0", "1", ... as
    read-only float32 arrays (Caffe converts on loading), once read_sources
    found each one whole. A blob shared with another layer is left out of the
    file by Caffe: a layer missing one before its last is refused (its
    blobs could not be told apart by position)."""
    if weights_file_problem(path):
        raise error(weights_file_problem(path))
    sources = _hdf5_sources(path, error)
    out = []
    with open_hdf5(path, error, 'weights file') as f:
        for layer in sources:
            if layer.problem:
                raise error('%s: layer %s: %s' % (path, layer.name, layer.problem))
            arrays = []
            for i in range(max(layer.blobs, default=-1) + 1):
                where = '%s: layer %s blob %d (dataset data/%s/%d)' % (path, layer.name, i, layer.name, i)
                info = layer.blobs.get(i)
                if info is None:
                    raise error('%s is missing while blob %d is there (a blob shared with another layer?)'
                                % (where, max(layer.blobs)))
                if isinstance(info, str):
                    raise error('%s %s' % (where, info))
                if info.values != _count(info.shape):
                    raise error('%s is %s but holds %d values (truncated?)' % (where, _dims(info.shape),
                                                                               info.values))
                try:
                    values = np.asarray(f['data'][layer.name][str(i)][()], np.float32).reshape(info.shape)
                except (OSError, RuntimeError, ValueError, KeyError) as e:
                    raise error('%s: HDF5 cannot read it (%s)' % (where, e))
                values.flags.writeable = False
                arrays.append(values)
            if arrays:
                out.append((layer.name, None, arrays))
    return out


def _h5_names(group, path, error):
    try:
        return list(group.keys())
    except (OSError, RuntimeError, KeyError) as e:
        raise error('%s: HDF5 cannot read the group %s: %s' % (path, group.name, e))


def _h5_get(group, key):
    try:
        return group.get(key)
    except (OSError, RuntimeError, KeyError, ValueError):   # a broken link, a corrupt header
        return None


def _h5_blob(h5py, group, key, file_size):
    """BlobInfo of dataset ``key`` of ``group``, or what is wrong with it (as
    Caffe's hdf5_load_nd_dataset needs it: a dataset of numbers, at most 32
    axes, its values all in the file)."""
    dataset = _h5_get(group, key)
    if not isinstance(dataset, h5py.Dataset):
        return 'is not a dataset'
    if dataset.dtype.kind not in 'fiu':
        return 'holds %s values, not numbers' % dataset.dtype
    if dataset.shape is None or len(dataset.shape) > 32:
        return 'has %s axes (Caffe takes at most 32)' % ('no' if dataset.shape is None else len(dataset.shape))
    shape = tuple(int(d) for d in dataset.shape)
    count, item = _count(shape), dataset.dtype.itemsize
    try:
        offset = dataset.id.get_offset()
        stored = dataset.id.get_storage_size()
    except (OSError, RuntimeError, ValueError):
        offset, stored = None, 0
    if offset is not None:          # contiguous (as Caffe writes them): its bytes in the file?
        return BlobInfo(shape, False, min(count, min(stored, max(0, file_size - offset)) // item))
    try:                            # compact or chunked: read it
        dataset[()]
    except (OSError, RuntimeError, ValueError):
        return BlobInfo(shape, False, 0)
    return BlobInfo(shape, False, count)


def weights_file_problem(path):
    """Why ``path`` cannot be a weights file ('no such weights file', or not
    a regular one), or None."""
    from caffe_mlic.fileio import input_file_problem
    problem = input_file_problem(path, 'weights file')
    return problem + ', not weights' if problem and os.path.exists(path) else problem


def _count(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _dims(shape):
    return 'x'.join(map(str, shape)) or 'a scalar'


# ---------------------------------------------------------------- a caffemodel against a net


class Want(NamedTuple):
    """A parameter blob of a net: its ``shape`` (None: not known) and
    whether it is ``shared`` with an earlier blob that owns it."""
    shape: Optional[tuple]
    shared: bool = False


def net_wants(net):
    """[(layer name, [Want])] of every layer of caffe.Net ``net``."""
    owners, out = set(), []
    for name, layer in zip(net._layer_names, net.layers):
        wants = []
        for blob in layer.blobs:
            data = blob.data
            address = data.__array_interface__['data'][0] if data.size else None
            wants.append(Want(tuple(data.shape), address is not None and address in owners))
            owners.add(address)
        out.append((name, wants))
    return out


def check_weights(path, net, complete=False, error=InputError):
    """Raise ``error`` unless caffemodel ``path`` (binary or ``.h5``) can be
    copied into caffe.Net ``net`` without Caffe aborting and fills some of
    it: it reads, at least one of the net's layers with weights is in it,
    and every layer of it that the net has gives as many blobs, each of the
    net's shape with all its values. ``complete``: every layer of the net
    with weights must be in it (a snapshot of this net; what evaluation and
    inference need)."""
    check_weight_layers(path, net_wants(net), complete=complete, error=error)


def check_weight_layers(path, wants, complete=False, fill=True, error=InputError, sources=None):
    """check_weights against ``wants``: [(layer name, [Want] or None)] of
    every layer of a net (None: its number of blobs is not known; such a
    layer is not checked), as net_wants or the inferred shapes give them.
    ``fill``: at least one layer with weights must be in the file.
    ``sources``: the file's read_sources, when read already."""
    if sources is None:
        if weights_file_problem(path):
            raise error(weights_file_problem(path))
        sources = read_sources(path, error)
    hdf5 = is_hdf5(path)
    given = {}      # (a binary file may name a layer twice: Caffe copies, and checks, each)
    for layer in sources:
        given.setdefault(layer.name, []).append(layer)
    filled = list(dict.fromkeys(layer.name for layer in sources if layer.blobs or layer.problem))
    wanted = [name for name, blobs in wants if blobs is None or len(blobs)]
    if fill and wanted and not set(wanted) & set(filled):
        raise error('%s: fills none of the net\'s %d layers with weights (%s); it has %s: '
                    'the weights of another net?'
                    % (path, len(wanted), name_list(wanted),
                       'layers %s' % name_list(filled) if filled else 'no weights at all'))
    problems = []
    for name, blobs in wants:
        for layer in given.get(name, []) if blobs is not None else []:
            problems += _layer_problems(layer, blobs, hdf5)
        if blobs and sum(bool(layer.blobs) for layer in given.get(name, [])) > 1:
            # (Caffe copies each into the net's layer, the last over the others: which was meant?)
            problems.append('two layers with weights are named %s' % name)
    if problems:
        raise error(problems=[Problem(path, None, None, p) for p in problems],
                    what=None if len(problems) == 1 else 'weights')
    missing = [name for name, blobs in wants if blobs and name not in given]
    if complete and missing:
        known = [name for name, blobs in wants if blobs]
        raise error('%s: has no weights for %d of the net\'s %d layers with weights: %s (the '
                    'weights of another net, or of a part of it?)'
                    % (path, len(missing), len(known), name_list(missing)))


def _layer_problems(layer, wants, hdf5):
    """What Caffe would abort on (or, HDF5, reshape the net's blob to, and
    corrupt memory) copying SourceLayer ``layer`` into a layer of ``wants``."""
    name = layer.name
    if layer.problem:
        return ['layer %s: %s' % (name, layer.problem)]
    if (layer.links > len(wants)) if hdf5 else (layer.links != len(wants)):
        return ['layer %s has %d blobs, the net %d' % (name, layer.links, len(wants))]
    problems = []
    for i, want in enumerate(wants):
        info = layer.blobs.get(i)
        if info is None:
            if not want.shared:     # (HDF5 leaves out a blob another layer owns)
                problems.append('layer %s has no blob %d (dataset data/%s/%d), the net needs %s'
                                % (name, i, name, i, 'it' if want.shape is None else _dims(want.shape)))
            continue
        if isinstance(info, str):
            problems.append('layer %s blob %d (dataset data/%s/%d) %s' % (name, i, name, i, info))
            continue
        if want.shape is None:
            if info.values != _count(info.shape):
                problems.append('layer %s blob %d is %s but holds %d values (truncated?)'
                                % (name, i, _dims(info.shape), info.values))
            continue
        if not blob_fits(want.shape, info) or info.values != _count(want.shape):
            problems.append('layer %s blob %d is %s (%d values), the net needs %s'
                            % (name, i, _dims(info.shape), info.values, _dims(want.shape)))
    return problems


# ---------------------------------------------------------------- solver states


class StateInfo(NamedTuple):
    """What Caffe reads from a solver state before training on: its
    ``iteration``, ``learned_net`` (its caffemodel, '' if none) and
    ``history`` ([BlobInfo, or a string saying what is wrong], one per
    history blob; HDF5: one per link of its group)."""
    iteration: int
    learned_net: str
    history: list


_STATE_ITER, _STATE_LEARNED_NET, _STATE_HISTORY = 1, 2, 3


def read_state(path, error=InputError):
    """StateInfo of a solver state (binary or ``.h5``); ``error`` naming the
    file when Caffe could not read it (truncated, not a state)."""
    if not os.path.isfile(path):
        raise error('%s: no such solver state' % path)
    if is_hdf5(path):
        return _hdf5_state(path, error)
    raw = read_proto_bytes(path, error)
    try:
        iteration, learned_net, history, budget = 0, '', [], [MAX_LAYERS]
        for number, wire, value in _fields(raw, 0, len(raw)):
            if number == _STATE_ITER and wire == _VARINT:
                iteration = value - (1 << 64) if value >= 1 << 63 else value
            elif number == _STATE_LEARNED_NET and wire == _BYTES:
                learned_net = _text(raw, value)
            elif number == _STATE_HISTORY and wire == _BYTES:
                _count_entry(budget)
                shape, values, legacy = _scan_blob(raw, *value, budget)
                history.append(BlobInfo(shape, legacy, values.size))
        return StateInfo(iteration, learned_net, history)
    except _Unpacked:
        from caffe.proto import caffe_pb2
        state = parse_message(caffe_pb2.SolverState(), path, error)
        return StateInfo(state.iter, state.learned_net,
                         [BlobInfo(blob_shape(b), _legacy(b), stored_values(b)) for b in state.history])
    except _Malformed:
        raise error('%s: truncated or not a SolverState (protobuf cannot parse it)' % path)
    except _TooManyLayers:
        raise error('%s: more than %d blobs or chunks of values, more than any solver state has: a '
                    'damaged or made-up file' % (path, MAX_LAYERS))


def _hdf5_state(path, error):
    """read_state of a .solverstate.h5 as Caffe writes one: datasets iter,
    current_step and learned_net, and a group history of datasets "0", "1", ..."""
    h5py = _h5py(path, error)
    size = os.path.getsize(path)
    with open_hdf5(path, error, 'solver state') as f:
        numbers = {}
        for key in ('iter', 'current_step'):
            dataset = _h5_get(f, key)
            try:
                if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind not in 'fiu' \
                        or dataset.size != 1:
                    raise ValueError(key)
                numbers[key] = int(np.asarray(dataset[()]).ravel()[0])
            except (OSError, RuntimeError, ValueError, TypeError):
                raise error('%s: no readable "%s" (one integer): not a Caffe solver state, or '
                            'truncated' % (path, key))
        learned_net = ''
        if 'learned_net' in f:
            dataset = _h5_get(f, 'learned_net')
            try:
                if not isinstance(dataset, h5py.Dataset) or dataset.dtype.kind not in 'SO' \
                        or dataset.shape != ():
                    raise ValueError('learned_net')
                value = dataset[()]
                learned_net = value.decode('utf-8', 'surrogateescape') if isinstance(value, bytes) \
                    else str(value)
            except (OSError, RuntimeError, ValueError, TypeError):
                raise error('%s: its "learned_net" is not one string (the caffemodel\'s path)' % path)
            if not learned_net:
                raise error('%s: its "learned_net" is empty' % path)
        history = _h5_get(f, 'history')
        if not isinstance(history, h5py.Group):
            raise error('%s: no "history" group: not a Caffe solver state, or truncated' % path)
        keys = _h5_names(history, path, error)
        blobs = []
        for i in range(len(keys)):
            blobs.append(_h5_blob(h5py, history, str(i), size) if str(i) in keys
                         else 'is missing (the group has %s)' % name_list(sorted(keys)))
        return StateInfo(numbers['iter'], learned_net, blobs)


def check_history(path, state, shapes, solver_type, error=InputError):
    """Raise ``error`` unless StateInfo ``state``'s history fits ``shapes``
    (the net's learnable blobs, None where unknown, in the solver's order,
    already repeated for solvers keeping two per blob): as many blobs, each
    of its shape with all its values (Caffe would abort on the count, and
    reshape the history to a wrong shape, corrupting memory)."""
    if len(state.history) != len(shapes):
        raise error('%s: not a state of this solver (or truncated): %d history blobs; '
                    'this net with solver type %s keeps %d'
                    % (path, len(state.history), solver_type, len(shapes)))
    for i, (info, shape) in enumerate(zip(state.history, shapes)):
        if isinstance(info, str):
            raise error('%s: history blob %d %s' % (path, i, info))
        want = shape if shape is not None else info.shape
        if not blob_fits(want, info) or info.values != _count(want):
            raise error('%s: not a state of this solver%s: history blob %d is %s (%d values), the '
                        'net needs %s' % (path, '' if shape is not None else ' (or truncated)', i,
                                          _dims(info.shape), info.values, _dims(want)))
