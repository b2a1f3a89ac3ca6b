"""Blob shapes of a net worked out before Caffe builds it, to refuse a net
whose blobs Caffe cannot hold: Blob::Reshape CHECKs count <= INT_MAX and
aborts the process, often in a layer far from the setting at fault (a data
layer's new_width of 1e6 passes its own top, then conv1_1 is 64 x larger).

Shapes follow Caffe's own Reshape rules for the layer types our nets use;
our Python layers give theirs with a ``top_shapes`` class method. A layer of
another type makes its tops unknown, and what depends on them is skipped.
Besides the tops, a convolution's im2col buffer is a blob too."""
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


def _conv(layer, bottom, deconv=False):
    p = layer.convolution_param
    kh, kw = _hw(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField('kernel_h'), 1)
    ph, pw = _hw(p.pad, p.pad_h, p.pad_w, p.HasField('pad_h'), 0)
    sh, sw = _hw(p.stride, p.stride_h, p.stride_w, p.HasField('stride_h'), 1)
    dh, dw = _hw(p.dilation, 0, 0, False, 1)
    n, c, h, w = bottom
    if deconv:
        out = [s * (i - 1) + d * (k - 1) + 1 - 2 * q
               for i, k, q, s, d in ((h, kh, ph, sh, dh), (w, kw, pw, sw, dw))]
    else:
        out = [(i + 2 * q - (d * (k - 1) + 1)) // s + 1
               for i, k, q, s, d in ((h, kh, ph, sh, dh), (w, kw, pw, sw, dw))]
    top = (n, p.num_output, out[0], out[1])
    # im2col: (channels x kernel) x output positions of one image
    columns = (c * kh * kw, out[0], out[1]) if not deconv else (p.num_output * kh * kw, h, w)
    return [top], [('its im2col buffer', columns)]


def _pool(layer, bottom):
    p = layer.pooling_param
    n, c, h, w = bottom
    if p.global_pooling:
        return [(n, c, 1, 1)], []
    kh, kw = _hw(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField('kernel_h'), 1)
    ph, pw = _hw(p.pad, p.pad_h, p.pad_w, p.HasField('pad_h'), 0)
    sh, sw = _hw(p.stride, p.stride_h, p.stride_w, p.HasField('stride_h'), 1)
    out = []
    for i, k, q, s in ((h, kh, ph, sh), (w, kw, pw, sw)):
        o = -(-(i + 2 * q - k) // s) + 1          # Caffe rounds up
        if q and (o - 1) * s >= i + q:
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


def _layer_shapes(layer, bottoms, phase):
    """([top shape or None], [(what, extra blob shape)]) of one layer."""
    kind = layer.type
    if kind == 'Input':
        shapes = [tuple(s.dim) for s in layer.input_param.shape]
        shapes += [shapes[-1]] * (len(layer.top) - len(shapes)) if shapes else []
        return shapes, []
    if kind == 'Python':
        return _python_shapes(layer, bottoms, phase)
    if any(b is None for b in bottoms):
        return [None] * len(layer.top), []
    if kind in SAME_SHAPE and bottoms:
        return [bottoms[0]] * len(layer.top), []
    if kind in SCALAR or kind == 'Accuracy':
        return [()] * len(layer.top), []
    if kind in ('Convolution', 'Deconvolution') and len(bottoms[0]) == 4:
        tops, extra = _conv(layer, bottoms[0], kind == 'Deconvolution')
        return tops * len(layer.top), extra
    if kind == 'Pooling' and len(bottoms[0]) == 4:
        return _pool(layer, bottoms[0])
    if kind == 'InnerProduct':
        axis = _axis(layer.inner_product_param.axis, len(bottoms[0]))
        return [tuple(bottoms[0][:axis]) + (layer.inner_product_param.num_output,)], []
    if kind == 'Concat':
        axis = _axis(layer.concat_param.axis, len(bottoms[0]))
        shape = list(bottoms[0])
        shape[axis] = sum(b[axis] for b in bottoms)
        return [tuple(shape)], []
    if kind == 'Slice':
        axis = _axis(layer.slice_param.axis, len(bottoms[0]))
        points = [0] + list(layer.slice_param.slice_point) + [bottoms[0][axis]]
        if len(points) == 2:
            step = bottoms[0][axis] // max(1, len(layer.top))
            points = [i * step for i in range(len(layer.top) + 1)]
        return [tuple(bottoms[0][:axis]) + (b - a,) + tuple(bottoms[0][axis + 1:])
                for a, b in zip(points, points[1:])], []
    if kind == 'Flatten':
        return [(bottoms[0][0], _count(bottoms[0][1:]))], []
    if kind == 'Reshape':
        return _reshape(layer, bottoms[0])
    if kind == 'Crop' and len(bottoms) == 2:
        axis = _axis(layer.crop_param.axis, len(bottoms[0]))
        return [tuple(bottoms[0][:axis]) + tuple(bottoms[1][axis:])], []
    return [None] * len(layer.top), []


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


def infer_shapes(net, phase, in_phase):
    """({blob: shape or None}, [(layer, what, shape, what to lower)] of every
    blob and im2col buffer) of NetParameter ``net`` in ``phase`` ('TRAIN' /
    'TEST'); ``in_phase(layer, phase)``: whether the layer is in that net
    (prototxt.in_phase, passed in: prototxt calls this module)."""
    blobs, found = {}, []
    # the net-level inputs of deploy prototxts: input + input_shape (or input_dim, 4 a blob)
    dims = [tuple(s.dim) for s in net.input_shape] or [
        tuple(net.input_dim[i:i + 4]) for i in range(0, len(net.input_dim), 4)]
    for name, shape in zip(net.input, dims):
        blobs[name] = tuple(int(d) for d in shape)
        found.append(('input', 'input %r' % name, blobs[name], 'the input shape'))
    for layer in net.layer:
        if not in_phase(layer, phase):
            continue
        bottoms = [blobs.get(name) for name in layer.bottom]
        try:
            tops, extra = _layer_shapes(layer, bottoms, phase)
        except (ArithmeticError, IndexError, TypeError, ValueError, InputError):
            tops, extra = [None] * len(layer.top), []   # what Caffe itself would refuse: check_net's
        for name, shape in zip(layer.top, tops):
            if shape is not None and None in shape:
                shape = None
            blobs[name] = tuple(int(d) for d in shape) if shape is not None else None
        hint = dict(extra).pop('hint', None) or 'the input size or batch_size'
        for name, shape in zip(layer.top, tops):
            if blobs[name] is not None:
                found.append((layer.name, 'top %r' % name, blobs[name], hint))
        found.extend((layer.name, what, shape, hint) for what, shape in extra if what != 'hint')
    return blobs, found


def oversized(net, phase, in_phase):
    """[(layer, what, shape, what to lower)] of the blobs of ``net`` in
    ``phase`` that would hold more than INT_MAX values."""
    return [item for item in infer_shapes(net, phase, in_phase)[1] if _count(item[2]) > BLOB_LIMIT]


def check_sizes(net, where, in_phase, phase=None):
    """InputError naming each layer of ``net`` (read from ``where``) whose
    blobs Caffe could not hold, in ``phase`` or both."""
    problems = []
    for ph in [phase] if phase else ['TRAIN', 'TEST']:
        for layer, what, shape, hint in oversized(net, ph, in_phase):
            line = "%s: layer '%s' (%s): %s would be %s = %d values, more than a Caffe blob holds " \
                   '(2^31 - 1): lower %s' % (where, layer, ph, what, ' x '.join(map(str, shape)),
                                             _count(shape), hint)
            if line not in problems:
                problems.append(line)
    if problems:
        raise InputError(problems[0] if len(problems) == 1 else '%d problems in %s:\n  %s' % (
            len(problems), where, '\n  '.join(problems)))
