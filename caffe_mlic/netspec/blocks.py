"""Small NetSpec helpers every net is composed of (in the style of fcn's net.py).

Layer names default to their first top, as in Caffe's NetSpec; ``name=``
overrides that (NetSpec assigns unknown keywords to LayerParameter itself).
"""
import json

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

from caffe_mlic import LAYER_MODULE
from caffe_mlic.caffe import prototxt

# (lr_mult, decay_mult) pairs for weights and biases.
LEARN = [dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)]
LEARN_10X = [dict(lr_mult=10, decay_mult=10), dict(lr_mult=20, decay_mult=0)]
FROZEN = [dict(lr_mult=0, decay_mult=0)]
# The teacher copy inside the distillation nets. The release gave it LEARN's
# multipliers and relied on propagate_down: 0, which stops the gradient but
# not the solver's weight decay (Caffe adds weight_decay x decay_mult x w to
# every learnable blob): under Adam the teacher then moves by about lr x
# lr_mult each iteration and its soft targets decay to a constant. Our one
# deliberate deviation from the released nets: weights and biases get 0 / 0.
FROZEN_TEACHER = [dict(lr_mult=0, decay_mult=0), dict(lr_mult=0, decay_mult=0)]
XAVIER = dict(type='xavier')
ZERO = dict(type='constant', value=0)


def frozen_input(kwargs, freeze):
    """Teacher layers inside the KD nets stop gradients at their bottom, and
    the solver changes none of their weights (FROZEN_TEACHER)."""
    if freeze:
        kwargs['propagate_down'] = [False]
        kwargs['param'] = FROZEN_TEACHER
    return kwargs


def conv_relu(bottom, nout, relu_name, freeze=False, filler=None, learn=LEARN, dilation=1, **name):
    """3x3 conv (pad = dilation: the size is kept) + in-place ReLU. ``learn``
    None: no param blocks (the ScasNet deploy nets have none)."""
    extra = dict(name, weight_filler=filler, bias_filler=ZERO) if filler else dict(name)
    if learn is not None:
        extra['param'] = learn
    if dilation != 1:
        extra['dilation'] = dilation
    conv = L.Convolution(bottom, num_output=nout, pad=dilation, kernel_size=3,
                         **frozen_input(extra, freeze))
    return conv, L.ReLU(conv, in_place=True, name=relu_name)


def max_pool(bottom, kernel=2, stride=2, pad=0, **name):
    extra = dict(name, pad=pad) if pad else dict(name)
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=kernel, stride=stride, **extra)


def fc(bottom, nout, learn=LEARN, freeze=False, **name):
    return L.InnerProduct(bottom, num_output=nout, weight_filler=XAVIER, bias_filler=ZERO,
                          **frozen_input(dict(name, param=learn), freeze))


def fc_relu_drop(bottom, nout, index, freeze=False, dropout=0.5, **name):
    """fc -> ReLU -> Dropout, the ReLU/Dropout named relu<i>/drop<i> in place;
    with dropout 0 there is no Dropout layer (drop is None)."""
    layer = fc(bottom, nout, freeze=freeze, **name)
    relu = L.ReLU(layer, in_place=True, name='relu%d' % index)
    drop = (L.Dropout(relu, dropout_ratio=dropout, in_place=True, name='drop%d' % index)
            if dropout else None)
    return layer, relu, drop


def python_layer(layer, bottoms, params, ntop=1, **kwargs):
    """One of our Python layers; ``params`` become the JSON param_str."""
    return L.Python(*bottoms, ntop=ntop,
                    python_param=dict(module=LAYER_MODULE, layer=layer,
                                      param_str=json.dumps(params, sort_keys=True)),
                    **kwargs)


def netspec_to_proto(n, name, inputs=()):
    """NetParameter from NetSpec ``n``; ``inputs`` are (name, shape) declared with
    the old-style `input:`/`input_dim:` fields the released deploy nets use."""
    proto = n.to_proto()
    proto.name = name
    for blob, shape in inputs:
        proto.input.append(blob)
        proto.input_dim.extend(shape)
    return proto


def insert_after(proto, after_name, layer):
    """Insert LayerParameter ``layer`` after the first layer named ``after_name``."""
    inserted = []

    def after_first(current):
        if current.name == after_name and not inserted:
            inserted.append(layer)
            return [current, layer]
        return current
    prototxt.rewrite_layers(proto, after_first)
    if not inserted:
        raise ValueError('no layer named %r' % after_name)


def layer_proto(top_fn, tops):
    """The LayerParameter of a lone NetSpec function, with its tops renamed."""
    from caffe.net_spec import to_proto
    proto = to_proto(*top_fn) if isinstance(top_fn, tuple) else to_proto(top_fn)
    layer = caffe_pb2.LayerParameter()
    layer.CopyFrom(proto.layer[-1])
    del layer.top[:]
    layer.top.extend(tops)
    return layer


def train_test_data(n, layer, params, tops):
    """Our data layer ``layer`` for both phases: in NetSpec ``n`` the TRAIN one
    (``params(True)``), its tops named ``tops``; returned, its TEST twin
    (``params(False)``, the same tops) as a LayerParameter, to put after it
    with ``insert_after(proto, 'data', twin)`` once the net is a proto."""
    blobs = python_layer(layer, [], params(True), ntop=len(tops), include=dict(phase=caffe.TRAIN))
    for name, blob in zip(tops, blobs):
        setattr(n, name, blob)
    return layer_proto(python_layer(layer, [], params(False), ntop=len(tops), include=dict(phase=caffe.TEST),
                                    name='data'), list(tops))


def drop_input_layers(proto):
    """A deploy net's Input layers only name the blobs its ``input:`` fields
    give: drop them (the released deploy nets have none)."""
    return prototxt.rewrite_layers(proto, lambda layer: None if layer.type == 'Input' else layer)
