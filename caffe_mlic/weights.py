"""Caffemodels: read them, and check one against a net before Caffe sees it.

Caffe's own loader aborts the process (a CHECK) on a truncated file or a
blob of the wrong shape, and silently keeps the fillers' values for every
layer a caffemodel does not name. ``check_weights`` turns both into an
InputError naming the file and the layers.
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
    old V1 ``layers`` entries (DeepLab v1) have their enum's name ("CONVOLUTION")."""
    from caffe.proto import caffe_pb2
    net = parse_message(caffe_pb2.NetParameter(), path, error)
    if len(net.layer):
        layers = [(layer.name, layer.type, layer.blobs) for layer in net.layer]
    else:
        v1_type = caffe_pb2.V1LayerParameter.LayerType.Name
        layers = [(layer.name, v1_type(layer.type), layer.blobs) for layer in net.layers]
    return [(name, kind, [np.asarray(blob.data, dtype=np.float32).reshape(blob_shape(blob))
                          for blob in blobs])
            for name, kind, blobs in layers if len(blobs)]


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


def parse_message(message, path, error=InputError):
    from google.protobuf.message import DecodeError
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise error('%s: cannot read it: %s' % (path, e.strerror or e))
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
