"""Blob shapes of a net worked out before Caffe builds it, to refuse a net
whose blobs Caffe cannot hold: Blob::Reshape CHECKs count <= INT_MAX and
aborts the process, often in a layer far from the setting at fault (a data
layer's new_width of 1e6 passes its own top, then conv1_1 is 64 x larger).

Shapes follow Caffe's own Reshape rules for the layer types our nets use;
our Python layers give theirs with a ``top_shapes`` class method. A layer of
another type makes its tops unknown, and what depends on them is skipped.
Besides the tops, a convolution's im2col buffer is a blob too.

The parameter blobs each layer learns follow from its bottoms' shapes too
(``infer_param_shapes``): what a caffemodel or a solver state must hold for
Caffe to load it into this net without aborting, checked without building it."""
from typing import NamedTuple, Optional

from caffe_mlic.errors import InputError

BLOB_LIMIT = 2 ** 31 - 1
SAME_SHAPE = {'ReLU', 'PReLU', 'ELU', 'Sigmoid', 'TanH', 'AbsVal', 'Power', 'Exp', 'Log', 'BNLL',
              'Threshold', 'Dropout', 'BatchNorm', 'Scale', 'Bias', 'Softmax', 'LRN', 'MVN',
              'Eltwise', 'Split'}
SCALAR = {'SoftmaxWithLoss', 'SigmoidCrossEntropyLoss', 'EuclideanLoss', 'HingeLoss',
          'InfogainLoss', 'MultinomialLogisticLoss', 'ContrastiveLoss'}


def _count(shape):
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _hw(repeated, h, w, has_h, default):
    """(h, w) of a ConvolutionParameter / PoolingParameter size field."""
    if has_h:
        return h, w
    values = list(repeated) if not isinstance(repeated, int) else [repeated]
    if not values:
        return default, default
    return (values[0], values[-1]) if len(values) > 1 else (values[0], values[0])


def _given_hw(p, name):
    return p.HasField(name + '_h') or p.HasField(name + '_w')


def _conv_sizes(p):
    """((kh, kw), (ph, pw), (sh, sw), (dh, dw)) of a 2-D ConvolutionParameter."""
    return (_hw(p.kernel_size, p.kernel_h, p.kernel_w, _given_hw(p, 'kernel'), 1),
            _hw(p.pad, p.pad_h, p.pad_w, _given_hw(p, 'pad'), 0),
            _hw(p.stride, p.stride_h, p.stride_w, _given_hw(p, 'stride'), 1),
            _hw(p.dilation, 0, 0, False, 1))


def conv_output(size, kernel, pad, stride, dilation):
    """ConvolutionLayer's output size: C++'s integer division truncates
    toward zero, so an input a little narrower than the kernel still gives 1."""
    n = size + 2 * pad - (dilation * (kernel - 1) + 1)
    return (n // stride if n >= 0 else -((-n) // stride)) + 1


def _nd_conv_sizes(p, spatial):
    """[(kernel, pad, stride, dilation)] per spatial axis of a
    ConvolutionParameter (BaseConvolutionLayer::LayerSetUp's reading: a
    repeated field given once or once per axis; the _h / _w fields in 2-D);
    None where the counts do not fit (check_net and shape_problems' to name)."""
    if spatial == 2:
        return list(zip(*_conv_sizes(p)))

    def per_axis(values, default):
        values = list(values)
        if len(values) not in (0, 1, spatial):
            raise ValueError(values)
        return [values[0 if len(values) == 1 else i] if values else default for i in range(spatial)]
    if _given_hw(p, 'kernel') or _given_hw(p, 'stride') or _given_hw(p, 'pad') or not len(p.kernel_size):
        return None
    return list(zip(per_axis(p.kernel_size, 1), per_axis(p.pad, 0), per_axis(p.stride, 1), per_axis(p.dilation, 1)))


def _conv(layer, bottom, deconv=False):
    """Convolution / Deconvolution of any number of spatial axes, along
    convolution_param axis."""
    p = layer.convolution_param
    axis = _axis(p.axis, len(bottom))
    spatial = bottom[axis + 1:]
    sizes = _nd_conv_sizes(p, len(spatial))
    if not spatial or sizes is None:
        return [None], []
    if deconv:
        out = [s * (i - 1) + d * (k - 1) + 1 - 2 * q for i, (k, q, s, d) in zip(spatial, sizes)]
    else:
        out = [conv_output(i, k, q, s, d) for i, (k, q, s, d) in zip(spatial, sizes)]
    top = tuple(bottom[:axis]) + (p.num_output,) + tuple(out)
    # im2col: (channels x kernel) x output positions of one image
    kernel = _count(k for k, _, _, _ in sizes)
    columns = (bottom[axis] * kernel,) + tuple(out) if not deconv else (p.num_output * kernel,) + tuple(spatial)
    return [top], [('its im2col buffer', columns)]


def _im2col(layer, bottom):
    """Im2colLayer::Reshape: the channels times the kernel, then the output positions."""
    p = layer.convolution_param
    axis = _axis(p.axis, len(bottom))
    sizes = _nd_conv_sizes(p, len(bottom) - axis - 1)
    if sizes is None:
        return None
    out = [conv_output(i, k, q, s, d) for i, (k, q, s, d) in zip(bottom[axis + 1:], sizes)]
    return tuple(bottom[:axis]) + (bottom[axis] * _count(k for k, _, _, _ in sizes),) + tuple(out)


def _pool(layer, bottom):
    p = layer.pooling_param
    n, c, h, w = bottom
    if p.global_pooling:
        return [(n, c, 1, 1)], []
    kh, kw = _hw(p.kernel_size, p.kernel_h, p.kernel_w, not p.HasField('kernel_size'), 1)
    ph, pw = _hw(p.pad, p.pad_h, p.pad_w, not p.HasField('pad') and _given_hw(p, 'pad'), 0)
    sh, sw = _hw(p.stride, p.stride_h, p.stride_w, not p.HasField('stride') and _given_hw(p, 'stride'), 1)
    out = []
    for i, k, q, s in ((h, kh, ph, sh), (w, kw, pw, sw)):
        # rounded up, or down with ceil_mode: false (this Caffe's option)
        o = (-(-(i + 2 * q - k) // s) if p.ceil_mode else (i + 2 * q - k) // s) + 1
        if (ph or pw) and (o - 1) * s >= i + q:     # (either pad: both axes clipped)
            o -= 1
        out.append(o)
    return [(n, c, out[0], out[1])], []


def _axis(axis, ndim):
    return axis + ndim if axis < 0 else axis


def _reshape(layer, bottom):
    p = layer.reshape_param
    start = _axis(p.axis, len(bottom) + 1) if p.axis < 0 else p.axis
    end = len(bottom) if p.num_axes == -1 else start + p.num_axes
    dims = list(p.shape.dim)
    new = [bottom[start + i] if d == 0 else d for i, d in enumerate(dims)]
    shape = list(bottom[:start]) + new + list(bottom[end:])
    if -1 in shape:
        known = _count([d for d in shape if d != -1])
        shape[shape.index(-1)] = _count(bottom) // known if known else 0
    return [tuple(shape)], []


def _one_or_each(values, count):
    """A repeated setting given once or once per top, for ``count`` tops."""
    values = list(values)
    return values * count if len(values) == 1 else values


def _data_shapes(layer):
    """The top shapes of the layers that take them from their settings
    (None: not one of them)."""
    kind, tops = layer.type, len(layer.top)
    if kind == 'Input':
        shapes = [tuple(s.dim) for s in layer.input_param.shape]
        return _one_or_each(shapes, tops) if shapes else []
    if kind == 'DummyData':
        p = layer.dummy_data_param
        if len(p.num) or len(p.channels) or len(p.height) or len(p.width):
            return list(zip(*(_one_or_each(getattr(p, name), tops)
                              for name in ('num', 'channels', 'height', 'width'))))
        return _one_or_each([tuple(s.dim) for s in p.shape], tops)
    if kind == 'Parameter':
        return [tuple(layer.parameter_param.shape.dim)]
    if kind == 'MemoryData':
        p = layer.memory_data_param
        return [(p.batch_size, p.channels, p.height, p.width), (p.batch_size,)]
    return None


def _layer_shapes(layer, bottoms, phase):
    """([top shape or None], [(what, extra blob shape)]) of one layer."""
    kind = layer.type
    data = _data_shapes(layer)
    if data is not None:
        return data[:len(layer.top)] + [None] * (len(layer.top) - len(data)), []
    if kind == 'Python':
        return _python_shapes(layer, bottoms, phase)
    if any(b is None for b in bottoms):
        return [None] * len(layer.top), []
    if kind in SAME_SHAPE and bottoms:
        return [bottoms[0]] * len(layer.top), []
    if kind in SCALAR:
        return [()] * len(layer.top), []
    if kind == 'Accuracy':      # the accuracy, then one per class
        axis = _axis(layer.accuracy_param.axis, len(bottoms[0]))
        return [(), (bottoms[0][axis],)][:len(layer.top)], []
    if kind in ('Convolution', 'Deconvolution'):
        tops, extra = _conv(layer, bottoms[0], kind == 'Deconvolution')
        return tops * len(layer.top), extra
    if kind == 'Im2col':
        return [_im2col(layer, bottoms[0])], []
    if kind == 'Tile':
        p = layer.tile_param
        shape = list(bottoms[0])
        shape[_axis(p.axis, len(shape))] *= p.tiles
        return [tuple(shape)], []
    if kind == 'Filter':       # (at set-up: every item; later, those selected)
        return list(bottoms[:len(layer.top)]), []
    if kind in ('RNN', 'LSTM'):     # T x N x num_output, then the last hidden state(s): 1 x N x num_output
        x, p = bottoms[0], layer.recurrent_param
        return [(x[0], x[1], p.num_output)] + [(1, x[1], p.num_output)] * (len(layer.top) - 1), []
    if kind in _FORK_SHAPES:
        return _FORK_SHAPES[kind](layer, bottoms), []
    if kind == 'Pooling' and len(bottoms[0]) == 4:
        return _pool(layer, bottoms[0])
    if kind == 'InnerProduct':
        axis = _axis(layer.inner_product_param.axis, len(bottoms[0]))
        return [tuple(bottoms[0][:axis]) + (layer.inner_product_param.num_output,)], []
    if kind == 'Concat':
        p = layer.concat_param
        axis = _axis(p.concat_dim if p.HasField('concat_dim') else p.axis, len(bottoms[0]))
        shape = list(bottoms[0])
        shape[axis] = sum(b[axis] for b in bottoms)
        return [tuple(shape)], []
    if kind == 'Slice':
        p = layer.slice_param
        axis = _axis(p.slice_dim if p.HasField('slice_dim') else p.axis, len(bottoms[0]))
        points = [0] + list(layer.slice_param.slice_point) + [bottoms[0][axis]]
        if len(points) == 2:
            step = bottoms[0][axis] // max(1, len(layer.top))
            points = [i * step for i in range(len(layer.top) + 1)]
        return [tuple(bottoms[0][:axis]) + (b - a,) + tuple(bottoms[0][axis + 1:])
                for a, b in zip(points, points[1:])], []
    if kind == 'Flatten':
        b = bottoms[0]
        start, end = _axis(layer.flatten_param.axis, len(b)), _axis(layer.flatten_param.end_axis, len(b))
        return [tuple(b[:start]) + (_count(b[start:end + 1]),) + tuple(b[end + 1:])], []
    if kind == 'Reshape':
        return _reshape(layer, bottoms[0])
    if kind == 'Crop' and len(bottoms) == 2:
        axis = _axis(layer.crop_param.axis, len(bottoms[0]))
        return [tuple(bottoms[0][:axis]) + tuple(bottoms[1][axis:])], []
    return [None] * len(layer.top), []


def _pad(layer, bottoms):
    """PadLayer::Reshape (this fork's): the last two axes of a bottom of 2 to
    4 axes padded (its forward pass aborts on 5 or more)."""
    p, shape = layer.pad_param, list(bottoms[0])
    if not 2 <= len(shape) <= 4:
        return [None]
    shape[-2] += p.pad_u + p.pad_d
    shape[-1] += p.pad_l + p.pad_r
    return [tuple(shape)]


def _permute(layer, bottoms):
    shape = bottoms[0]
    order = list(layer.permute_param.order)
    order += [i for i in range(len(shape)) if i not in order]
    return [tuple(shape[i] for i in order)]


def _resize(layer, bottoms):
    p, shape = layer.resize_param, bottoms[0]
    if p.is_pyramid_test:
        size = (int(p.out_height_scale * _legacy(shape, 2)), int(p.out_width_scale * _legacy(shape, 3)))
    else:
        size = (p.height, p.width)
    return [(_legacy(shape, 0), _legacy(shape, 1)) + size]


def _upsample(layer, bottoms):
    p, shape = layer.upsample_param, list(bottoms[0])
    for i in range(1 if p.dims_num == 3 else 2 if p.dims_num == 4 else 0):
        shape[-1 - i] *= p.scale
    return [tuple(shape)]


def _unsqueeze(layer, bottoms):
    shape = list(bottoms[0])
    index = layer.unsqueeze_param.dim
    index = index + len(shape) + 1 if index < 0 else index
    return [tuple(shape[:index]) + (1,) + tuple(shape[index:])]


# top shapes of this Caffe fork's own layers (their Reshape in its src/caffe/layers)
_FORK_SHAPES = {
    'Pad': _pad, 'Permute': _permute, 'Resize': _resize, 'Upsample': _upsample, 'Unsqueeze': _unsqueeze,
    'Normalize': lambda layer, bottoms: [bottoms[0]],
    'LSTMUnit': lambda layer, bottoms: [bottoms[0]] * 2,
    'SmoothL1Loss': lambda layer, bottoms: [()],
    'MaxUnPool': lambda layer, bottoms: [(bottoms[0][0], bottoms[0][1], layer.max_unpool_param.dst_h,
                                          layer.max_unpool_param.dst_w)],
}


def _python_shapes(layer, bottoms, phase):
    from caffe_mlic import LAYER_MODULE
    from caffe_mlic.caffe.params import parse_params
    unknown = [None] * len(layer.top), []
    if layer.python_param.module != LAYER_MODULE:
        return unknown
    import importlib
    cls = getattr(importlib.import_module(LAYER_MODULE), layer.python_param.layer, None)
    shapes = getattr(cls, 'top_shapes', None)
    if shapes is None:
        return unknown
    params = parse_params(layer.python_param.layer, layer.python_param.param_str, cls.PARAMS)
    found = shapes(params, bottoms, phase)
    if found is None:
        return unknown
    # (the parameters that set the sizes, for the message)
    return list(found) + [None] * (len(layer.top) - len(found)), [('hint', getattr(cls, 'SIZE_PARAMS', None))]


def _walk(net, phase, in_phase):
    """The net-level inputs' [(name, shape)] of deploy prototxts, then
    (layer, [bottom shape or None], tops, extra) of each layer of ``net`` in
    ``phase``, in order, each after ``blobs`` (the second item yielded
    first: {blob: shape or None}) has its tops."""
    blobs = {}
    # the net-level inputs of deploy prototxts: input + input_shape (or input_dim, 4 a blob)
    dims = [tuple(s.dim) for s in net.input_shape] or [
        tuple(net.input_dim[i:i + 4]) for i in range(0, len(net.input_dim), 4)]
    for name, shape in zip(net.input, dims):
        blobs[name] = tuple(int(d) for d in shape)
    yield [(name, blobs[name]) for name, _ in zip(net.input, dims)], blobs
    for layer in net.layer:
        if not in_phase(layer, phase):
            continue
        bottoms = [blobs.get(name) for name in layer.bottom]
        problems = shape_problems(layer, bottoms) if None not in bottoms else []
        try:
            tops, extra = _layer_shapes(layer, bottoms, phase)
        except (ArithmeticError, IndexError, TypeError, ValueError, InputError):
            tops, extra = [None] * len(layer.top), []   # what Caffe itself would refuse: check_net's
        if not problems and layer.type != 'Python':     # (our layers name their own impossible sizes)
            problems = [p for shape in tops if shape is not None and None not in shape
                        for p in _blob_problems(shape)][:1]
        if problems:        # Caffe would abort here: what follows is not known
            tops, extra = [None] * len(layer.top), [('problem', problem) for problem in problems]
        for name, shape in zip(layer.top, tops):
            if shape is not None and None in shape:
                shape = None
            blobs[name] = tuple(int(d) for d in shape) if shape is not None else None
        yield layer, bottoms, tops, extra


def infer_shapes(net, phase, in_phase):
    """({blob: shape or None}, [(layer, what, shape, what to lower)] of every
    blob and im2col buffer) of NetParameter ``net`` in ``phase`` ('TRAIN' /
    'TEST'); ``in_phase(layer, phase)``: whether the layer is in that net
    (prototxt.in_phase, passed in: prototxt calls this module)."""
    walk = _walk(net, phase, in_phase)
    inputs, blobs = next(walk)
    found = [('input', 'input %r' % name, shape, 'the input shape') for name, shape in inputs]
    for layer, _, tops, extra in walk:
        hint = dict(extra).pop('hint', None) or 'the input size or batch_size'
        for name, _ in zip(layer.top, tops):
            if blobs[name] is not None:
                found.append((layer.name, 'top %r' % name, blobs[name], hint))
        found.extend((layer.name, what, shape, hint) for what, shape in extra if what not in ('hint', 'problem'))
    return blobs, found


# ------------------------------------------------------------ parameter blobs
#
# The shapes of the blobs a layer learns, as its LayerSetUp makes them
# (Caffe's copy of a caffemodel into a net CHECKs them, blob by blob).

# Stock layer types that learn nothing (a type not here nor below: unknown).
NO_PARAMS = {'AbsVal', 'Accuracy', 'ArgMax', 'BNLL', 'BatchReindex', 'Concat', 'ContrastiveLoss', 'Crop',
             'Data', 'Dropout', 'DummyData', 'ELU', 'Eltwise', 'EuclideanLoss', 'Exp', 'Filter', 'Flatten',
             'HDF5Data', 'HDF5Output', 'HingeLoss', 'Im2col', 'ImageData', 'InfogainLoss', 'Input', 'LRN',
             'Log', 'MVN', 'MemoryData', 'MultinomialLogisticLoss', 'Pooling', 'Power', 'ReLU', 'Reduction',
             'Reshape', 'SPP', 'Sigmoid', 'SigmoidCrossEntropyLoss', 'Silence', 'Slice', 'Softmax',
             'SoftmaxWithLoss', 'Split', 'TanH', 'Threshold', 'Tile', 'WindowData'}


class ParamBlob(NamedTuple):
    """One parameter blob of a layer: its ``shape`` (None: not known here)
    and whether it is ``shared``: named (``param { name }``) as a blob of an
    earlier layer, which owns it (an HDF5 caffemodel leaves it out, a solver
    state keeps no history for it)."""
    shape: Optional[tuple]
    shared: bool


def _span(shape, axis, num_axes):
    """shape[axis:axis + num_axes] (num_axes -1: to the end), axis as Caffe's CanonicalAxisIndex."""
    start = _axis(axis, len(shape))
    if not 0 <= start < len(shape):
        raise IndexError(axis)
    end = len(shape) if num_axes == -1 else start + num_axes
    if num_axes < -1 or end > len(shape):
        raise IndexError(num_axes)
    return tuple(shape[start:end])


def _conv_params(layer, bottom):
    p = layer.convolution_param
    shapes = [None] + ([(p.num_output,)] if p.bias_term else [])
    if bottom is None:
        return shapes
    axis = _axis(p.axis, len(bottom))
    spatial = len(bottom) - axis - 1
    if p.HasField('kernel_h') or p.HasField('kernel_w'):
        kernel = (p.kernel_h, p.kernel_w) if spatial == 2 else None
    else:
        sizes = list(p.kernel_size)
        kernel = tuple(sizes[0 if len(sizes) == 1 else i] for i in range(spatial)) \
            if len(sizes) in (1, spatial) else None
    channels, group = bottom[axis], max(1, p.group)
    if kernel is not None:
        shapes[0] = ((channels, p.num_output // group) if layer.type == 'Deconvolution'
                     else (p.num_output, channels // group)) + kernel
    return shapes


def _param_shapes(layer, bottoms):
    """[shape or None] of the parameter blobs of one layer, given its
    bottoms' shapes (None where unknown); None when even their number is not
    known here (a type of a fork, another module's Python layer)."""
    from caffe_mlic import LAYER_MODULE
    kind = layer.type
    first = bottoms[0] if bottoms else None
    if kind in NO_PARAMS:
        return []
    if kind == 'Python':        # ours learn nothing; another module's may
        return [] if layer.python_param.module == LAYER_MODULE else None
    if kind in ('Convolution', 'Deconvolution'):
        return _conv_params(layer, first)
    if kind == 'InnerProduct':
        p = layer.inner_product_param
        weight = None
        if first is not None:
            k = _count(first[_axis(p.axis, len(first)):])
            weight = (k, p.num_output) if p.transpose else (p.num_output, k)
        return [weight] + ([(p.num_output,)] if p.bias_term else [])
    if kind == 'BatchNorm':
        channels = None if first is None else (1 if len(first) == 1 else first[1])
        return [None if channels is None else (channels,)] * 2 + [(1,)]
    if kind == 'Scale':
        p = layer.scale_param
        shapes = []
        if len(layer.bottom) == 1:
            shapes.append(None if first is None else _span(first, p.axis, p.num_axes))
        if p.bias_term:     # a Bias layer over bottom[0] (num_axes: bottom[1]'s, if given)
            if len(layer.bottom) > 1:
                num_axes = len(bottoms[1]) if bottoms[1] is not None else None
            else:
                num_axes = p.num_axes
            shapes.append(None if first is None or num_axes is None else _span(first, p.axis, num_axes))
        return shapes
    if kind == 'Bias':
        if len(layer.bottom) > 1:
            return []
        p = layer.bias_param
        return [None if first is None else _span(first, p.axis, p.num_axes)]
    if kind == 'PReLU':
        if layer.prelu_param.channel_shared:
            return [()]
        return [None if first is None or len(first) < 2 else (first[1],)]
    if kind == 'Embed':
        p = layer.embed_param
        return [(p.input_dim, p.num_output)] + ([(p.num_output,)] if p.bias_term else [])
    if kind == 'Parameter':
        return [tuple(int(d) for d in layer.parameter_param.shape.dim)]
    return None


def infer_param_shapes(net, phase, in_phase):
    """[(layer name, [ParamBlob] or None)] of every layer of NetParameter
    ``net`` in ``phase``, in order: the parameter blobs Caffe will give each
    (an empty list: none), shapes worked out from the inferred bottoms (see
    infer_shapes); None for a layer whose number of blobs is not known here.
    Equal to ``caffe.Net(...).params`` where known (tested)."""
    if len(net.layers) and not len(net.layer):     # a V1 net (Caffe upgrades it): not known here
        return [(layer.name, None) for layer in net.layers]
    def by_state(layer):
        return any(rule.stage or rule.not_stage or rule.HasField('min_level') or rule.HasField('max_level')
                   for rule in list(layer.include) + list(layer.exclude))
    out, owners = [], set()
    # a layer that stages or levels keep or drop (a solver's train_state may
    # name stages) is listed, as not known
    walk = _walk(net, phase, lambda layer, ph: by_state(layer) or in_phase(layer, ph))
    next(walk)
    for layer, bottoms, _, _ in walk:
        try:
            shapes = _param_shapes(layer, bottoms)
        except (ArithmeticError, IndexError, TypeError, ValueError):
            shapes = None       # what Caffe itself would refuse (a bad axis)
        if by_state(layer):
            shapes = None       # in the net or not by the net's stages and level: not known here
        if shapes is None:
            out.append((layer.name, None))
            continue
        blobs = []
        for i, shape in enumerate(shapes):
            if shape is not None and (None in shape or any(int(d) < 0 for d in shape)):
                shape = None
            name = layer.param[i].name if i < len(layer.param) else ''
            shared = bool(name) and name in owners
            owners.add(name)
            blobs.append(ParamBlob(None if shape is None else tuple(int(d) for d in shape), shared))
        out.append((layer.name, blobs))
    return out


def learnable_shapes(params):
    """The shapes (None: unknown) of the blobs a solver learns, in its order,
    from infer_param_shapes' answer: each blob once, where its owner is (what
    a solver state's history follows, one or two blobs each); None when a
    layer's number of blobs is unknown."""
    if any(blobs is None for _, blobs in params):
        return None
    return [blob.shape for _, blobs in params for blob in blobs if not blob.shared]


def unconnected_blobs(net, phase, in_phase):
    """[(layer, message)] of the layers of ``net`` in ``phase`` with a bottom
    that no earlier layer (nor the net's inputs) gives, or a top that an
    earlier layer gives already, other than in place (the bottom at the same
    position): "Unknown bottom blob" and "produced by multiple sources",
    aborts of Caffe's Net::Init (a misspelt blob name)."""
    found, given = [], set(net.input)
    for layer in net.layer:
        if not in_phase(layer, phase):
            continue
        for name in layer.bottom:
            if name not in given:
                found.append((layer.name, "bottom '%s' is not a top of an earlier layer" % name))
        for i, name in enumerate(layer.top):
            if name in given and not (i < len(layer.bottom) and layer.bottom[i] == name):
                found.append((layer.name, "top '%s' is already an earlier layer's (a layer may reuse a "
                                          "name only in place, as its bottom at the same position)" % name))
            given.add(name)
    return found


WEIGHTED_TYPES = {'Convolution', 'Deconvolution', 'InnerProduct', 'BatchNorm', 'Scale', 'Bias', 'PReLU', 'Embed'}


def repeated_weight_names(net, phase, in_phase):
    """[(layer, message)] for a name given in ``phase`` to a layer with
    weights and another layer: Caffe copies a caffemodel by layer name into
    the last of them, so another layer with weights keeps its fillers'
    values (a plausible, wrong result), and a last one without (a ReLU
    named as the convolution) aborts Caffe's copy."""
    layers = [layer for layer in net.layer if in_phase(layer, phase)]
    weighted = {layer.name for layer in layers if layer.type in WEIGHTED_TYPES}
    seen, found = {}, []
    for layer in layers:
        if layer.name in weighted and layer.name in seen:
            first = seen[layer.name]
            found.append((layer.name, 'another layer with weights has this name: weights from a caffemodel would '
                                      'reach only the last of them'
                          if first.type in WEIGHTED_TYPES and layer.type in WEIGHTED_TYPES else
                          'a layer with weights and a %s layer have this name: weights from a caffemodel are '
                          'copied by name, into the last of them' % (
                              layer.type if layer.type not in WEIGHTED_TYPES else first.type)))
        seen.setdefault(layer.name, layer)
    return found


def refused_layers(net, phase, in_phase):
    """[(layer, message)] of the layers of ``net`` in ``phase`` whose settings
    do not fit their bottoms' shapes (shape_problems), where Caffe would
    abort building the net, or read past a blob."""
    found = []
    walk = _walk(net, phase, in_phase)
    next(walk)
    for layer, _, _, extra in walk:
        found.extend((layer.name, '%s: %s' % (layer.type, message)) for what, message in extra if what == 'problem')
    return found


def shared_param_problems(net, phase, in_phase):
    """[(layer, message)]: Net::AppendParam's CHECKs on a parameter shared by
    name (``param { name }``): its blob's shape must equal the first
    sharer's (its count, with share_mode PERMISSIVE), and an lr_mult or
    decay_mult given must equal one given before."""
    found, owners = [], {}
    layers = {layer.name: layer for layer in net.layer if in_phase(layer, phase)}
    for name, blobs in infer_param_shapes(net, phase, in_phase):
        layer = layers.get(name)
        if layer is None or blobs is None:
            continue
        for spec, blob in zip(layer.param, blobs):
            if not spec.name:
                continue
            given = {field: getattr(spec, field) if spec.HasField(field) else None
                     for field in ('lr_mult', 'decay_mult')}
            if spec.name not in owners:
                owners[spec.name] = dict(given, shape=blob.shape, layer=name)
                continue
            owner = owners[spec.name]
            if blob.shape is not None and owner['shape'] is not None:
                permissive = spec.share_mode == spec.PERMISSIVE
                if (_count(blob.shape) != _count(owner['shape'])) if permissive else blob.shape != owner['shape']:
                    found.append((name, "%s: param '%s' is shared with layer '%s', whose blob is %s; here it is "
                                        "%s%s" % (layer.type, spec.name, owner['layer'], _shape_text(owner['shape']),
                                                  _shape_text(blob.shape), '' if permissive else
                                                  ' (share_mode PERMISSIVE compares counts only)')))
            for field, value in given.items():
                if value is None:
                    continue
                if owner[field] is None:
                    owner[field] = value
                elif owner[field] != value:
                    found.append((name, "%s: param '%s' has %s %g, and %g where it was given before (layer "
                                        "'%s'): a shared parameter has one" % (layer.type, spec.name, field, value,
                                                                                owner[field], owner['layer'])))
    return found


# Stock layers whose Backward is NOT_IMPLEMENTED: Caffe aborts where a
# gradient must pass through them.
NO_BACKWARD = ('ArgMax', 'Threshold')


def _loss_weights(layer):
    """The loss weight of each top, as Caffe gives them (a *Loss layer's
    first top 1 unless given)."""
    weights = list(layer.loss_weight) + [0.0] * (len(layer.top) - len(layer.loss_weight))
    if not layer.loss_weight and layer.type.endswith('Loss') and layer.top:
        weights[0] = 1.0
    return weights[:len(layer.top)]


def no_backward_problems(net, phase, in_phase):
    """[(layer, message)]: a layer without a backward pass (NO_BACKWARD)
    that a training net's backward pass would run, as Net::Init decides:
    a bottom needs a gradient (a learnable parameter below it, or
    force_backward) and its top leads to a loss, and propagate_down does
    not stop it."""
    layers = [layer for layer in net.layer if in_phase(layer, phase)]
    needs, blob_needs = [], set()
    for layer in layers:
        need = net.force_backward or any(name in blob_needs for name in layer.bottom)
        try:
            shapes = _param_shapes(layer, [None] * len(layer.bottom))
        except (ArithmeticError, IndexError, TypeError, ValueError):
            shapes = None
        for i in range(len(shapes or [])):
            if i >= len(layer.param) or layer.param[i].lr_mult != 0:
                need = True
        needs.append(need)
        if need:
            blob_needs.update(layer.top)
    # backwards, as Net::Init: which layers lead to a loss, and which tops
    # every reader skips (propagate_down: false, or a reader that runs no
    # backward pass): Caffe inserts a Split where several layers read a blob
    found, under_loss, read, wanted = [], set(), set(), set()
    for layer, need in reversed(list(zip(layers, needs))):
        contributes = any(w != 0 or top in under_loss for top, w in zip(layer.top, _loss_weights(layer)))
        skips = bool(layer.top) and all(top in read and top not in wanted for top in layer.top)
        # (force_backward: every layer runs its backward pass, whatever leads to a loss)
        runs = net.force_backward or (need and contributes and not skips)
        if runs and layer.type in NO_BACKWARD:
            found.append((layer.name, '%s: the backward pass reaches it (%s) and it has none (Caffe aborts): %s'
                          % (layer.type, 'force_backward: true runs every layer\'s' if net.force_backward else
                             'a learnable layer below, a loss above', 'leave force_backward out'
                             if net.force_backward else 'give the layer that reads its top propagate_down: false, '
                             'or lr_mult: 0 to the layers below')))
        for i, bottom in enumerate(layer.bottom):
            if contributes:
                under_loss.add(bottom)
            down = layer.propagate_down[i] if layer.propagate_down else bottom in blob_needs
            read.add(bottom)
            if down and contributes and not (need and skips):
                wanted.add(bottom)
    return found


# ------------------------------------------------- settings against shapes
#
# What the stock layers' LayerSetUp and Reshape CHECK against their bottoms'
# shapes (Caffe aborts the process), or do not check and then read past a
# blob (Eltwise's and Scale's shape CHECKs are commented out in this Caffe).

MAX_BLOB_AXES = 32      # Blob's kMaxBlobAxes


def _shape_text(shape):
    return ' x '.join(map(str, shape)) if shape else 'a scalar'


def _blob_problems(shape):
    """Blob::Reshape's CHECKs: at most 32 axes, no negative size."""
    if len(shape) > MAX_BLOB_AXES:
        return ['a top would have %d axes, more than a Caffe blob has (%d)' % (len(shape), MAX_BLOB_AXES)]
    if any(int(d) < 0 for d in shape):
        return ['a top would be %s: a negative size' % _shape_text(shape)]
    return []


class _Refused(Exception):
    pass


def _canonical(axis, shape, what):
    """Blob::CanonicalAxisIndex: -ndim <= axis < ndim, as a positive index."""
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        raise _Refused('%s %d is out of range for a bottom of shape %s (%d axes: %d to %d)'
                       % (what, axis, _shape_text(shape), ndim, -ndim, ndim - 1)
                       if ndim else '%s %d: the bottom is a scalar, it has no axis' % (what, axis))
    return axis + ndim if axis < 0 else axis


# the axis parameter of each stock layer that takes one: (message, field)
_AXIS_FIELDS = {'Softmax': ('softmax_param', 'axis'), 'SoftmaxWithLoss': ('softmax_param', 'axis'),
                'InnerProduct': ('inner_product_param', 'axis'), 'Reduction': ('reduction_param', 'axis'),
                'Tile': ('tile_param', 'axis'), 'Accuracy': ('accuracy_param', 'axis'),
                'Crop': ('crop_param', 'axis'), 'Scale': ('scale_param', 'axis'), 'Bias': ('bias_param', 'axis'),
                'Convolution': ('convolution_param', 'axis'), 'Deconvolution': ('convolution_param', 'axis'),
                'Im2col': ('convolution_param', 'axis'),
                'Flatten': ('flatten_param', 'axis')}


def shape_problems(layer, bottoms):
    """What Caffe would abort on, or read past a blob for, in one stock
    layer whose bottoms have ``bottoms`` shapes (all known): [message]."""
    try:
        return _shape_checks(layer, [tuple(b) for b in bottoms])
    except _Refused as e:
        return [str(e)]


def _shape_checks(layer, bottoms):
    kind = layer.type
    if kind == 'Input':
        for shape in layer.input_param.shape:
            problems = _blob_problems(tuple(shape.dim))
            if problems:
                return ['input_param shape %s: %s' % (list(shape.dim), problems[0].split(': ', 1)[-1])]
        return []
    if not bottoms or kind == 'Python':
        return []
    first = bottoms[0]
    axis_field = _AXIS_FIELDS.get(kind)
    if kind in ('Scale', 'Bias') and len(bottoms) > 1 and not bottoms[1]:
        axis_field = None       # a scalar second bottom applies everywhere: no axis read
    axis = _canonical(getattr(getattr(layer, axis_field[0]), axis_field[1]), first, '%s %s' % axis_field) \
        if axis_field else None
    problems = []
    if kind == 'Pad' and len(first) > 4:     # (its forward pass reads legacy N, C, H, W: Caffe aborts on 5+ axes)
        return ['takes a bottom of at most 4 axes, got %s' % _shape_text(first)]
    if kind in ('Pooling', 'LRN', 'SPP') and len(first) != 4:
        return ['takes a bottom of 4 axes (N x C x H x W), got %s' % _shape_text(first)]
    if kind == 'Upsample' and len(first) < layer.upsample_param.dims_num:     # (its forward reads that many)
        return ['upsample_param dims_num %d needs a bottom of %d axes, got %s'
                % (layer.upsample_param.dims_num, layer.upsample_param.dims_num, _shape_text(first))]
    if kind == 'BatchNorm' and len(first) < 2:
        return ['takes a bottom of 2 or more axes (N x C ...), got %s' % _shape_text(first)]
    if kind == 'PixelShuffle':
        factor = layer.pixelshuffle_param.upscale_factor
        if len(first) != 4:     # (its forward pass reads N x C x H x W)
            return ['takes a bottom of 4 axes (N x C x H x W), got %s' % _shape_text(first)]
        if factor >= 1 and first[1] % (factor * factor):
            # (Caffe CHECKs C % factor alone, then drops the channels left over from C / factor^2)
            return ['pixelshuffle_param upscale_factor %d: the bottom\'s %d channels must divide by %d '
                    '(the factor squared)' % (factor, first[1], factor * factor)]
    if kind == 'SPP':
        problems = _spp_problems(layer.spp_param.pyramid_height, first)
        if problems:
            return problems
    legacy = _legacy_problems(kind, layer.bottom, bottoms)
    if legacy:
        return legacy
    if kind == 'PReLU' and len(first) < 2:
        return ['takes a bottom of 2 or more axes, got %s' % _shape_text(first)]
    if kind == 'Eltwise' and len({_count(b) for b in bottoms}) > 1:
        # (equal counts in other shapes, N x C and N x C x 1 x 1, Caffe sums alike)
        problems.append('bottoms must hold as many values, got %s' % ', '.join(
            '%s %s' % (name, _shape_text(shape)) for name, shape in zip(layer.bottom, bottoms)))
    if kind in ('Convolution', 'Deconvolution', 'Im2col'):
        problems += _conv_problems(layer, bottoms, axis)
    if kind == 'Filter' and len(bottoms) > 1:
        problems += _filter_problems(layer, bottoms)
    if kind in ('RNN', 'LSTM') and len(bottoms) > 1:
        problems += _recurrent_problems(layer, bottoms)
    problems += _fork_shape_problems(layer, bottoms)
    if kind == 'Concat':
        p = layer.concat_param
        axis = _canonical(p.axis if not p.HasField('concat_dim') else p.concat_dim, first, 'concat_param axis')
        for name, shape in zip(layer.bottom[1:], bottoms[1:]):
            if len(shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis):
                problems.append("bottoms must agree on every axis but %d: '%s' is %s, '%s' is %s"
                                % (axis, layer.bottom[0], _shape_text(first), name, _shape_text(shape)))
                break
    if kind == 'Slice':
        p = layer.slice_param
        axis = _canonical(p.axis if not p.HasField('slice_dim') else p.slice_dim, first, 'slice_param axis')
        size, points = first[axis], list(p.slice_point)
        if points and points[-1] >= size:
            problems.append('slice_param slice_point %d is not below the size of axis %d (%d)'
                            % (points[-1], axis, size))
        elif not points and size % max(1, len(layer.top)):
            problems.append('%d tops do not divide axis %d of size %d evenly (give slice_point)'
                            % (len(layer.top), axis, size))
    if kind == 'Flatten':
        end = _canonical(layer.flatten_param.end_axis, first, 'flatten_param end_axis')
        if end + 1 < axis:      # (end_axis just before axis adds an axis of 1: Caffe takes it)
            problems.append('flatten_param end_axis (%d) is before axis (%d)' % (end, axis))
    if kind in ('SoftmaxWithLoss', 'Accuracy') and len(bottoms) > 1:
        outer_inner = _count(first[:axis]) * _count(first[axis + 1:])
        if outer_inner != _count(bottoms[1]):
            problems.append("takes one label per prediction: '%s' (%s, classes along axis %d) needs %d "
                            "labels, '%s' has %d" % (layer.bottom[0], _shape_text(first), axis, outer_inner,
                                                     layer.bottom[1], _count(bottoms[1])))
        if kind == 'Accuracy' and _count(bottoms[1]) and \
                layer.accuracy_param.top_k > _count(first) // _count(bottoms[1]):
            problems.append('accuracy_param top_k %d is more than the %d classes'
                            % (layer.accuracy_param.top_k, _count(first) // _count(bottoms[1])))
    if kind == 'ArgMax':
        p = layer.argmax_param
        if p.HasField('axis'):
            classes = first[_canonical(p.axis, first, 'argmax_param axis')]
        else:
            classes = _count(first[1:])
        if p.top_k > classes:
            problems.append('argmax_param top_k %d is more than the %d values it ranks' % (p.top_k, classes))
    if kind == 'EuclideanLoss' and len(bottoms) == 2 and _count(first[1:]) != _count(bottoms[1][1:]):
        problems.append('bottoms must hold as many values per item: %s and %s'
                        % (_shape_text(first), _shape_text(bottoms[1])))
    if kind == 'SigmoidCrossEntropyLoss' and len(bottoms) == 2 and _count(first) != _count(bottoms[1]):
        problems.append('bottoms must hold as many values: %s and %s'
                        % (_shape_text(first), _shape_text(bottoms[1])))
    if kind == 'BatchReindex' and len(bottoms) == 2 and len(bottoms[1]) != 1:
        problems.append('its second bottom (the indices) must have 1 axis, got %s' % _shape_text(bottoms[1]))
    if kind == 'Crop' and len(bottoms) == 2:
        problems += _crop_problems(layer.crop_param, first, bottoms[1], axis)
    if kind in ('Scale', 'Bias'):
        problems += _scale_problems(layer, bottoms, axis)
    if kind == 'Reshape':
        problems += _reshape_problems(layer.reshape_param, first)
    return problems


def _spp_problems(height, shape):
    """SPPLayer's pooling of each pyramid level must pad less than its kernel."""
    for level in range(height):
        bins = 2 ** level
        for size in shape[2:]:
            kernel = -(-size // bins)
            if kernel * bins - size and (kernel * bins - size + 1) // 2 >= kernel:
                return ['spp_param pyramid_height %d is too tall for a %s bottom (level %d: %d bins of %d px)'
                        % (height, _shape_text(shape), level, bins, size)]
    return []


def _legacy(shape, i):
    """Blob's legacy channels() / height() / width(): 1 past the last axis."""
    return shape[i] if i < len(shape) else 1


# the loss layers whose bottoms Caffe reads by num/channels/height/width:
# {type: [(bottom, (channels, height, width) that must be 1, or None: the same as bottom 0's)]}
_LEGACY_ONES = {'MultinomialLogisticLoss': [(1, (1, 2, 3))], 'InfogainLoss': [(1, (1, 2, 3))],
                'ContrastiveLoss': [(0, (2, 3)), (1, (2, 3)), (2, (1, 2, 3))]}


def _legacy_problems(kind, names, bottoms):
    if kind not in _LEGACY_ONES:
        return []
    if any(len(b) > 4 for b in bottoms):
        return ['its bottoms are read as N x C x H x W: none may have more than 4 axes']
    for index, axes in _LEGACY_ONES[kind]:
        if index < len(bottoms) and any(_legacy(bottoms[index], i) != 1 for i in axes):
            return ["bottom '%s' (%s) must be 1 along axes %s" % (names[index], _shape_text(bottoms[index]),
                                                                  ', '.join(map(str, axes)))]
    if kind == 'InfogainLoss' and len(bottoms) > 2:     # the matrix as a bottom: 1 x 1 x K x K
        k = _count(bottoms[0]) // max(1, bottoms[0][0] if bottoms[0] else 1)
        matrix = tuple(_legacy(bottoms[2], i) for i in range(4))
        if matrix != (1, 1, k, k):
            return ["its third bottom '%s' (%s), the infogain matrix, must be 1 x 1 x %d x %d"
                    % (names[2], _shape_text(bottoms[2]), k, k)]
    if kind == 'ContrastiveLoss' and len(bottoms) > 1 and _legacy(bottoms[0], 1) != _legacy(bottoms[1], 1):
        return ["bottoms '%s' and '%s' must have as many channels: %s and %s"
                % (names[0], names[1], _shape_text(bottoms[0]), _shape_text(bottoms[1]))]
    return []


def _conv_problems(layer, bottoms, axis):
    p, first, problems = layer.convolution_param, bottoms[0], []
    spatial = len(first) - axis - 1
    if p.HasField('kernel_h') and spatial != 2:
        return ['kernel_h and kernel_w are for 2-D convolution, the bottom %s has %d spatial axes'
                % (_shape_text(first), spatial)]
    for name, fewest in (('kernel_size', 1), ('stride', 0), ('pad', 0), ('dilation', 0)):
        count = len(getattr(p, name))
        if not (count in (fewest, 1, spatial) or (name == 'kernel_size' and p.HasField('kernel_h'))):
            problems.append('convolution_param has %d %s for %d spatial axes (%s or %d)'
                            % (count, name, spatial, '1' if fewest else 'none, 1', spatial))
    if spatial < 1 and layer.type == 'Im2col':      # (a convolution of no spatial axis is a 1 x 1 one)
        return ['convolution_param axis %d leaves no spatial axis in the bottom %s' % (axis, _shape_text(first))]
    channels, group = first[axis], max(1, p.group)
    if layer.type != 'Im2col' and (channels % group or p.num_output % group):
        problems.append('convolution_param group %d must divide the bottom channels (%d) and num_output (%d)'
                        % (group, channels, p.num_output))
    for name, shape in zip(layer.bottom[1:], bottoms[1:]):
        if shape != first:
            problems.append("bottoms must have one shape: '%s' is %s, '%s' is %s"
                            % (layer.bottom[0], _shape_text(first), name, _shape_text(shape)))
            break
    if problems or layer.type == 'Deconvolution':
        return problems
    sizes = _nd_conv_sizes(p, spatial)
    sides = ('height', 'width') if spatial == 2 else ['axis %d' % i for i in range(axis + 1, len(first))]
    for side, size, (k, q, st, d) in zip(sides, first[axis + 1:], sizes or ()):
        if conv_output(size, k, q, st, d) < 1:
            problems.append('its kernel (%d with dilation %d: %d px) is wider than the padded input %s '
                            '(%d + 2 x %d) by a stride (%d) or more: no output' % (k, d, d * (k - 1) + 1, side,
                                                                                 size, q, st))
            break
    return problems


def _filter_problems(layer, bottoms):
    """FilterLayer::Reshape: the selector (the last bottom) is N x 1 x 1...,
    and every other bottom has its N."""
    selector, name = bottoms[-1], layer.bottom[-1]
    if not selector or any(d != 1 for d in selector[1:]):
        return ["its selector '%s' (%s, the last bottom) must be N or N x 1 x ... x 1"
                % (name, _shape_text(selector))]
    for other, shape in zip(layer.bottom, bottoms[:-1]):
        if not shape or shape[0] != selector[0]:
            return ["bottom '%s' (%s) must have as many items (axis 0) as the selector '%s' (%s)"
                    % (other, _shape_text(shape), name, _shape_text(selector))]
    return []


def _recurrent_problems(layer, bottoms):
    """RecurrentLayer::LayerSetUp: x is T x N x ... (its unrolled net's
    InnerProduct reads axis 2 on), cont is T x N, a static input N x ...."""
    x, cont = bottoms[0], bottoms[1]
    if len(x) < 3:
        return ["its input '%s' (%s) must be T x N x ... (3 or more axes)" % (layer.bottom[0], _shape_text(x))]
    if tuple(cont) != tuple(x[:2]):
        return ["its sequence continuation '%s' (%s) must be T x N, %s as its input '%s' is %s"
                % (layer.bottom[1], _shape_text(cont), _shape_text(x[:2]), layer.bottom[0], _shape_text(x))]
    hidden = (1 if layer.type == 'RNN' else 2) if layer.recurrent_param.expose_hidden else 0
    static = len(bottoms) > 2 + hidden
    if static:
        if not bottoms[2] or bottoms[2][0] != x[1]:
            return ["its static input '%s' (%s) must have N = %d items (axis 0)"
                    % (layer.bottom[2], _shape_text(bottoms[2]), x[1])]
    # the hidden state given with expose_hidden (h0, and c0 of an LSTM): 1 x N x num_output, as its
    # unrolled net's own blobs (the copy into them CHECKs the shapes)
    wanted = (1, x[1], layer.recurrent_param.num_output)
    for i in range(2 + static, 2 + static + hidden):
        if i < len(bottoms) and bottoms[i] is not None and tuple(bottoms[i]) != wanted:
            return ["its hidden state '%s' (%s) must be 1 x N x num_output, %s"
                    % (layer.bottom[i], _shape_text(bottoms[i]), _shape_text(wanted))]
    return []


def _fork_shape_problems(layer, bottoms):
    """The shape CHECKs of this Caffe fork's own layers."""
    kind, first = layer.type, bottoms[0]
    if kind == 'Resize' and layer.resize_param.is_pyramid_test:
        rows, cols = _resize(layer, bottoms)[0][2:]
        if rows < 1 or cols < 1:      # (Caffe cannot fill an empty top)
            return ['resize_param scales %g x %g make a top of %d x %d from %s'
                    % (layer.resize_param.out_height_scale, layer.resize_param.out_width_scale, rows, cols,
                       _shape_text(first))]
    if kind == 'Permute':
        bad = [o for o in layer.permute_param.order if o >= len(first)]
        if bad:
            return ['permute_param order %d is not an axis of the bottom %s' % (bad[0], _shape_text(first))]
    if kind == 'Unsqueeze' and layer.unsqueeze_param.HasField('dim') and \
            not -len(first) - 1 <= layer.unsqueeze_param.dim <= len(first):
        return ['unsqueeze_param dim %d is out of range for a bottom of %d axes (%d to %d)'
                % (layer.unsqueeze_param.dim, len(first), -len(first) - 1, len(first))]
    if kind == 'Normalize' and not 2 <= len(first) <= 4:
        return ['takes a bottom of 2 to 4 axes, got %s' % _shape_text(first)]
    if kind == 'MaxUnPool' and len(first) != 4:
        return ['takes a bottom of 4 axes (N x C x H x W), got %s' % _shape_text(first)]
    if kind == 'PSROIPooling' and len(first) <= 4:
        p = layer.psroi_pooling_param
        if _legacy(first, 1) != p.output_dim * p.group_size ** 2:
            return ['its bottom %s must have output_dim x group_size^2 = %d channels'
                    % (_shape_text(first), p.output_dim * p.group_size ** 2)]
    if kind == 'LSTMUnit' and len(bottoms) == 3:
        # (the previous cell state 1 x N x D, the gates 1 x N x 4D, cont 1 x N)
        n, d = (first[1], first[2]) if len(first) == 3 else ('N', 'D')
        wanted = ('1 x %s x %s' % (n, d), '1 x %s x %s' % (n, 4 * d if d != 'D' else '4D'), '1 x %s' % n)
        for name, shape, text in zip(layer.bottom, bottoms, wanted):
            if ' x '.join(map(str, shape)) != text:
                return ["bottom '%s' (%s) must be %s (LSTMUnit: cell state, gates, continuation)"
                        % (name, _shape_text(shape), text)]
    if kind == 'SmoothL1Loss' and all(len(b) <= 4 for b in bottoms):
        for name, shape in zip(layer.bottom[1:], bottoms[1:]):
            if any(_legacy(shape, i) != _legacy(first, i) for i in (1, 2, 3)):
                return ["bottom '%s' (%s) must match '%s' (%s) in channels, height and width"
                        % (name, _shape_text(shape), layer.bottom[0], _shape_text(first))]
    return []


def _crop_problems(p, first, reference, axis):
    if len(reference) < len(first):
        return ['its second bottom (%s) has fewer axes than the first (%s)'
                % (_shape_text(reference), _shape_text(first))]
    offsets = list(p.offset)
    if len(offsets) > 1 and axis + len(offsets) != len(first):
        return ['crop_param has %d offsets for the %d axes from axis %d (one, or one per axis)'
                % (len(offsets), len(first) - axis, axis)]
    for i in range(axis, len(first)):
        offset = offsets[0] if len(offsets) == 1 else offsets[i - axis] if offsets else 0
        if first[i] - offset < reference[i]:
            return ['a crop of %d from offset %d does not fit axis %d of size %d'
                    % (reference[i], offset, i, first[i])]
    return []


def _scale_problems(layer, bottoms, axis):
    if axis is None:        # a scalar scale or bias
        return []
    first = bottoms[0]
    p = layer.scale_param if layer.type == 'Scale' else layer.bias_param
    if len(bottoms) > 1:
        other = bottoms[1]
        if not other:           # a scalar: applied everywhere
            return []
        if len(first) < axis + len(other) or tuple(first[axis:axis + len(other)]) != tuple(other):
            return ["its second bottom '%s' (%s) must match the first '%s' (%s) from axis %d"
                    % (layer.bottom[1], _shape_text(other), layer.bottom[0], _shape_text(first), axis)]
        return []
    if p.num_axes != -1 and len(first) < axis + p.num_axes:
        return ['%s num_axes %d from axis %d goes past the bottom %s'
                % (type(p).__name__.replace('Parameter', '').lower() + '_param', p.num_axes, axis,
                   _shape_text(first))]
    return []


def _reshape_problems(p, first):
    ndim = len(first)
    start = p.axis + ndim + 1 if p.axis < 0 else p.axis
    if not 0 <= start <= ndim:
        return ['reshape_param axis %d is out of range for a bottom of %d axes' % (p.axis, ndim)]
    end = ndim if p.num_axes == -1 else start + p.num_axes
    if end > ndim:
        return ['reshape_param num_axes %d from axis %d goes past the bottom %s'
                % (p.num_axes, start, _shape_text(first))]
    dims = list(p.shape.dim)
    if any(d == 0 and start + i >= ndim for i, d in enumerate(dims)):
        return ['reshape_param shape copies (0) an axis the bottom %s does not have' % _shape_text(first)]
    new = [first[start + i] if d == 0 else d for i, d in enumerate(dims)]
    shape = list(first[:start]) + new + list(first[end:])
    known = _count([d for d in shape if d != -1])
    total = _count(first)
    if (-1 in shape and (known == 0 or total % known)) or (-1 not in shape and known != total):
        return ['reshape_param shape %s cannot hold the %d values of the bottom %s'
                % (dims, total, _shape_text(first))]
    return []


def oversized(net, phase, in_phase):
    """[(layer, what, shape, what to lower)] of the blobs of ``net`` in
    ``phase`` that would hold more than INT_MAX values."""
    return [item for item in infer_shapes(net, phase, in_phase)[1] if _count(item[2]) > BLOB_LIMIT]


def check_sizes(net, where, in_phase, phase=None, nets=None):
    """InputError naming each layer of ``net`` (read from ``where``) whose
    blobs Caffe could not hold, whose bottoms Caffe would sum unchecked
    or whose settings do not fit their bottoms (refused_layers) or that no
    earlier layer gives (unconnected_blobs), in
    ``phase`` or both; or in each of ``nets``, [(label, phase, in_phase)]:
    the nets a solver builds of it, each with its own state."""
    # With both phases (not knowing which nets are built), a blob is
    # unconnected only where it is so in every phase that holds its layer: a
    # solver without test_iter never builds the TEST net, whose data layer may
    # well be TRAIN-only. The nets named are all built: each must connect.
    lenient = nets is None and not phase
    if nets is None:
        nets = [(ph, ph, in_phase) for ph in ([phase] if phase else ['TRAIN', 'TEST'])]
    unconnected = {label: unconnected_blobs(net, ph, keep) for label, ph, keep in nets}
    layers = {layer.name: layer for layer in net.layer}
    found = {}      # (layer, message): [label], in the order found
    for label, ph, keep in nets:
        refused = [(layer, message) for layer, message in unconnected[label] if not lenient or all(
            (layer, message) in unconnected[other] for other, other_phase, other_keep in nets
            if layer in layers and other_keep(layers[layer], other_phase))]
        refused += refused_layers(net, ph, keep) + shared_param_problems(net, ph, keep) + \
            repeated_weight_names(net, ph, keep)
        if ph == 'TRAIN':       # (only a solver's net runs the backward pass)
            refused += no_backward_problems(net, ph, keep)
        refused += [(layer, '%s would be %s = %d values, more than a Caffe blob holds (2^31 - 1): lower %s'
                     % (what, ' x '.join(map(str, shape)), _count(shape), hint))
                    for layer, what, shape, hint in oversized(net, ph, keep)]
        for key in refused:
            labels = found.setdefault(key, [])
            if label not in labels:
                labels.append(label)
    # a problem of every net is told once, without a phase
    problems = ["%s: layer '%s'%s: %s" % (where, layer, '' if len(nets) > 1 and len(found_in) == len(nets)
                                          else ' (%s)' % ', '.join(found_in), message)
                for (layer, message), found_in in found.items()]
    if problems:
        raise InputError(problems[0] if len(problems) == 1 else '%d problems in %s:\n  %s' % (
            len(problems), where, '\n  '.join(problems)))
