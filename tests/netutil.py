"""Tiny-net builders and a numerical gradient checker for Python layers."""
import json

import numpy as np

from caffe_mlic import LAYER_MODULE
from caffe_mlic.caffe import prototxt
from caffe_mlic.caffe.prototxt import write_solver  # noqa: F401  (the one solver writer, for the tests)


def weights_of(path):
    """{(layer, blob index): values} of a binary caffemodel."""
    from caffe.proto import caffe_pb2
    model = caffe_pb2.NetParameter()
    with open(path, 'rb') as f:
        model.ParseFromString(f.read())
    return {(layer.name, i): np.array(b.data) for layer in model.layer for i, b in enumerate(layer.blobs)}


def proto_str(s):
    """A protobuf text-format string literal."""
    return '"' + s.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n') + '"'


def python_layer_text(name, layer, params, bottoms, tops, loss_weight=None, propagate_down=None,
                      phase=None):
    lines = ['layer {', '  name: %s type: "Python"' % proto_str(name)]
    if phase is not None:
        lines.append('  include { phase: %s }' % phase)
    lines += ['  bottom: %s' % proto_str(b) for b in bottoms]
    lines += ['  top: %s' % proto_str(t) for t in tops]
    if propagate_down is not None:
        lines += ['  propagate_down: %s' % ('true' if p else 'false') for p in propagate_down]
    if loss_weight is not None:
        lines.append('  loss_weight: %g' % loss_weight)
    lines.append('  python_param { module: %s layer: %s param_str: %s }'
                 % (proto_str(LAYER_MODULE), proto_str(layer), proto_str(json.dumps(params))))
    lines.append('}')
    return '\n'.join(lines)


def classifier_text(classes, conv=True, std=0.1):
    """After a data layer (tops data, label_roi): the labels sliced off, a
    conv + global average pooling (``conv``; else the data itself) and an fc
    of ``classes`` logits named fc; the caller adds the loss on fc, labels."""
    feature = 'data'
    text = ('layer { name: "slice" type: "Slice" bottom: "label_roi" top: "labels" top: "rois"\n'
            '        slice_param { axis: 1 slice_point: %d } }\n'
            'layer { name: "silence" type: "Silence" bottom: "rois" }\n' % classes)
    if conv:
        feature = 'pool'
        text += ('layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"\n'
                 '        convolution_param { num_output: 4 kernel_size: 3\n'
                 '                            weight_filler { type: "gaussian" std: %g } } }\n'
                 'layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"\n'
                 '        pooling_param { pool: AVE global_pooling: true } }\n' % std)
    return text + ('layer { name: "fc" type: "InnerProduct" bottom: "%s" top: "fc"\n'
                   '        inner_product_param { num_output: %d\n'
                   '                              weight_filler { type: "gaussian" std: %g } } }\n'
                   % (feature, classes, std))


SIGMOID_LOSS_TEXT = ('layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "fc" bottom: "labels" '
                     'top: "loss" }\n')


def input_layers_text(shapes, names):
    out = []
    for name, shape in zip(names, shapes):
        dims = ' '.join('dim: %d' % d for d in shape)
        out.append('layer { name: %s type: "Input" top: %s input_param { shape { %s } } }'
                   % (proto_str('in_' + name), proto_str(name), dims))
    return '\n'.join(out)


def net_from_text(caffe, tmpdir, text, phase='TRAIN', weights=None):
    return prototxt.caffe_net(text, phase, weights=weights)


def python_layer_net(caffe, tmpdir, layer, params, bottom_shapes, n_tops=1, loss_weight=None,
                     propagate_down=None, phase='TRAIN'):
    """A net of Input layers b0, b1, ... feeding one Python layer with tops t0, t1, ..."""
    bottoms = ['b%d' % i for i in range(len(bottom_shapes))]
    tops = ['t%d' % i for i in range(n_tops)]
    text = '\n'.join(['name: "single_%s"' % layer, 'force_backward: true',
                      input_layers_text(bottom_shapes, bottoms),
                      python_layer_text('layer', layer, params, bottoms, tops,
                                        loss_weight=loss_weight, propagate_down=propagate_down)])
    return net_from_text(caffe, tmpdir, text, phase)


def set_inputs(net, *arrays):
    for i, a in enumerate(arrays):
        net.blobs['b%d' % i].data[...] = a


def check_gradient(net, bottoms, tops, step=1e-2, rtol=2e-2, atol=2e-3, max_checks=150, seed=0,
                   loss=False):
    """Compare backward() with central differences of sum_t(w_t * top_t).

    bottoms: names of the input blobs to check; tops: names of the outputs.
    For a loss layer (loss=True) the objective is the loss itself (w = 1).
    Checks at most max_checks randomly chosen elements per bottom. Returns the
    largest relative error seen; raises AssertionError with the first bad element.
    """
    rng = np.random.default_rng(seed)
    weights = {t: (np.ones(net.blobs[t].data.shape) if loss else
                   rng.standard_normal(net.blobs[t].data.shape)) for t in tops}

    def objective():
        net.forward()
        return sum(float((net.blobs[t].data.astype(np.float64) * weights[t]).sum()) for t in tops)

    objective()
    for b in bottoms:
        net.blobs[b].diff[...] = 0
    if loss:
        # A loss top has no axes (pycaffe's backward(**diffs) cannot set it);
        # Caffe puts the loss weight (1) in its diff itself.
        net.backward()
    else:
        net.backward(**{t: weights[t].astype(np.float32) for t in tops})
    analytic = {b: net.blobs[b].diff.astype(np.float64).copy() for b in bottoms}
    worst = 0.0
    for b in bottoms:
        data = net.blobs[b].data
        flat_count = data.size
        picks = rng.choice(flat_count, size=min(max_checks, flat_count), replace=False)
        for flat in picks:
            idx = np.unravel_index(flat, data.shape)
            orig = float(data[idx])
            data[idx] = orig + step
            plus = objective()
            data[idx] = orig - step
            minus = objective()
            data[idx] = orig
            numeric = (plus - minus) / (2 * step)
            got = analytic[b][idx]
            scale = max(abs(numeric), abs(got), 1.0)
            err = abs(numeric - got)
            if err > atol + rtol * scale:
                raise AssertionError('gradient of %s%s: backward %.6g, numerical %.6g'
                                     % (b, tuple(int(i) for i in idx), got, numeric))
            worst = max(worst, err / scale)
    objective()
    return worst
