"""Settings of stock layers that Caffe CHECKs when it builds a net (a
"Check failed" abort of the whole process, or a division by zero) are
refused before Caffe sees them, naming the file, the layer and the setting.

Each case comes with a twin that differs only in the setting at fault. Real
Caffe, in a forked child, is shown to die on the case and to build and run
the twin: the check is needed, and it refuses nothing Caffe takes."""
import os
import re

import pytest

from caffe_mlic.caffe import prototxt
from caffe_mlic.errors import InputError
from tests.caffe_binary import fate_in_child

INPUTS = '''name: "settings"
layer { name: "in" type: "Input" top: "data" top: "label" top: "score"
  input_param { shape { dim: 2 dim: 4 dim: 6 dim: 6 } shape { dim: 2 } shape { dim: 2 dim: 4 } } }
'''


def _layer(kind, bottoms, params, tops=('y',)):
    return 'layer { name: "x" type: "%s" %s %s %s }\n' % (
        kind, ' '.join('bottom: "%s"' % b for b in bottoms), ' '.join('top: "%s"' % t for t in tops), params)


# a sequence for the recurrent layers: T x N x D, its continuation T x N (and one of another N)
SEQ = ('layer { name: "seq" type: "Input" top: "x" top: "cont" top: "cont5" input_param { shape { dim: 3 dim: 2 '
       'dim: 4 } shape { dim: 3 dim: 2 } shape { dim: 3 dim: 5 } } }\n')


def _conv(params):
    return _layer('Convolution', ['data'], 'convolution_param { num_output: 4 kernel_size: 3 %s }' % params)


# id: (layer at fault, its twin, the message after "layer 'x': TYPE: ",
#      what Caffe does with it: 'abort', 'reads past' a blob unchecked, or
#      'reads unset' memory, so that its fate depends on what was there)
CASES = {
    'conv group': (_conv('group: 3'), _conv('group: 2'),
                   'convolution_param group 3 must divide the bottom channels (4) and num_output (4)', 'abort'),
    'conv group 0': (_conv('group: 0'), _conv('group: 1'), 'group must be >= 1, got 0', 'abort'),
    'conv dilation wider than the map': (
        _conv('dilation: 5'), _conv('dilation: 2'),
        'its kernel (3 with dilation 5: 11 px) is wider than the padded input height (6 + 2 x 0) by a stride (1) or '
        'more: no output', 'abort'),
    'conv axis': (_conv('axis: 4'), _conv('axis: 1'),
                  'convolution_param axis 4 is out of range for a bottom of shape 2 x 4 x 6 x 6 (4 axes: -4 to 3)',
                  'abort'),
    'inner product axis': (
        _layer('InnerProduct', ['data'], 'inner_product_param { num_output: 3 axis: 6 }'),
        _layer('InnerProduct', ['data'], 'inner_product_param { num_output: 3 axis: 1 }'),
        'inner_product_param axis 6 is out of range for a bottom of shape 2 x 4 x 6 x 6 (4 axes: -4 to 3)', 'abort'),
    'softmax axis': (_layer('Softmax', ['data'], 'softmax_param { axis: -5 }'),
                     _layer('Softmax', ['data'], 'softmax_param { axis: -4 }'),
                     'softmax_param axis -5 is out of range for a bottom of shape 2 x 4 x 6 x 6 (4 axes: -4 to 3)',
                     'abort'),
    'reduction of a scalar': (_layer('Reduction', ['label'], 'reduction_param { axis: 1 }'),
                              _layer('Reduction', ['label'], 'reduction_param { axis: 0 }'),
                              'reduction_param axis 1 is out of range for a bottom of shape 2 (1 axes: -1 to 0)',
                              'abort'),
    'concat axis': (_layer('Concat', ['data', 'data'], 'concat_param { axis: 7 }'),
                    _layer('Concat', ['data', 'data'], 'concat_param { axis: 3 }'),
                    'concat_param axis 7 is out of range for a bottom of shape 2 x 4 x 6 x 6 (4 axes: -4 to 3)',
                    'abort'),
    'concat shapes': (_layer('Concat', ['data', 'score'], ''), _layer('Concat', ['data', 'data'], ''),
                      "bottoms must agree on every axis but 1: 'data' is 2 x 4 x 6 x 6, 'score' is 2 x 4", 'abort'),
    'slice into 3': (_layer('Slice', ['data'], 'slice_param { axis: 1 }', ('a', 'b', 'c')),
                     _layer('Slice', ['data'], 'slice_param { axis: 1 }', ('a', 'b')),
                     '3 tops do not divide axis 1 of size 4 evenly (give slice_point)', 'abort'),
    'slice point past the axis': (
        _layer('Slice', ['data'], 'slice_param { axis: 1 slice_point: 5 }', ('a', 'b')),
        _layer('Slice', ['data'], 'slice_param { axis: 1 slice_point: 3 }', ('a', 'b')),
        'slice_param slice_point 5 is not below the size of axis 1 (4)', 'abort'),
    'slice points that fall': (
        _layer('Slice', ['data'], 'slice_param { axis: 1 slice_point: 3 slice_point: 2 }', ('a', 'b', 'c')),
        _layer('Slice', ['data'], 'slice_param { axis: 1 slice_point: 2 slice_point: 3 }', ('a', 'b', 'c')),
        'slice_param slice_point must rise from above 0, got [3, 2]', 'abort'),
    'flatten axis': (_layer('Flatten', ['data'], 'flatten_param { axis: -9 }'),
                     _layer('Flatten', ['data'], 'flatten_param { axis: -3 }'),
                     'flatten_param axis -9 is out of range for a bottom of shape 2 x 4 x 6 x 6 (4 axes: -4 to 3)',
                     'abort'),
    'flatten end before axis': (_layer('Flatten', ['data'], 'flatten_param { axis: 3 end_axis: 1 }'),
                                _layer('Flatten', ['data'], 'flatten_param { axis: 2 end_axis: 1 }'),
                                'flatten_param end_axis (1) is before axis (3)', 'abort'),
    'accuracy top_k': (_layer('Accuracy', ['score', 'label'], 'accuracy_param { top_k: 9 }'),
                       _layer('Accuracy', ['score', 'label'], 'accuracy_param { top_k: 4 }'),
                       'accuracy_param top_k 9 is more than the 4 classes', 'abort'),
    'accuracy labels': (_layer('Accuracy', ['data', 'label'], ''), _layer('Accuracy', ['score', 'label'], ''),
                        "takes one label per prediction: 'data' (2 x 4 x 6 x 6, classes along axis 1) needs 72 "
                        "labels, 'label' has 2", 'abort'),
    'softmax loss labels': (_layer('SoftmaxWithLoss', ['data', 'label'], ''),
                            _layer('SoftmaxWithLoss', ['score', 'label'], ''),
                            "takes one label per prediction: 'data' (2 x 4 x 6 x 6, classes along axis 1) needs 72 "
                            "labels, 'label' has 2", 'abort'),
    'argmax top_k': (_layer('ArgMax', ['score'], 'argmax_param { top_k: 99 }'),
                     _layer('ArgMax', ['score'], 'argmax_param { top_k: 4 }'),
                     'argmax_param top_k 99 is more than the 4 values it ranks', 'abort'),
    'argmax top_k 0': (_layer('ArgMax', ['score'], 'argmax_param { top_k: 0 }'),
                       _layer('ArgMax', ['score'], 'argmax_param { top_k: 1 }'), 'top_k must be >= 1, got 0', 'abort'),
    'crop offset': (_layer('Crop', ['data', 'data'], 'crop_param { axis: 2 offset: 5 }'),
                    _layer('Crop', ['data', 'data'], 'crop_param { axis: 2 offset: 0 }'),
                    'a crop of 6 from offset 5 does not fit axis 2 of size 6', 'abort'),
    'reshape count': (_layer('Reshape', ['data'], 'reshape_param { shape { dim: 7 dim: 5 } }'),
                      _layer('Reshape', ['data'], 'reshape_param { shape { dim: 8 dim: 36 } }'),
                      'reshape_param shape [7, 5] cannot hold the 288 values of the bottom 2 x 4 x 6 x 6', 'abort'),
    'reshape two -1': (_layer('Reshape', ['data'], 'reshape_param { shape { dim: -1 dim: -1 } }'),
                       _layer('Reshape', ['data'], 'reshape_param { shape { dim: 2 dim: -1 } }'),
                       'reshape_param shape has 2 dims of -1 (at most one is inferred)', 'abort'),
    'lrn even': (_layer('LRN', ['data'], 'lrn_param { local_size: 4 }'),
                 _layer('LRN', ['data'], 'lrn_param { local_size: 3 }'),
                 'lrn_param local_size must be odd, got 4', 'abort'),
    'lstm hidden state shape': (
        'layer { name: "seq" type: "Input" top: "xs" top: "cont" input_param { shape { dim: 3 dim: 2 dim: 4 } '
        'shape { dim: 3 dim: 2 } } }\n'
        'layer { name: "h" type: "Input" top: "h0" top: "c0" input_param { shape { dim: 1 dim: 2 dim: 4 } } }\n' +
        _layer('LSTM', ['xs', 'cont', 'h0', 'c0'], 'recurrent_param { num_output: 3 expose_hidden: true }',
               ('y', 'hT', 'cT')),
        'layer { name: "seq" type: "Input" top: "xs" top: "cont" input_param { shape { dim: 3 dim: 2 dim: 4 } '
        'shape { dim: 3 dim: 2 } } }\n'
        'layer { name: "h" type: "Input" top: "h0" top: "c0" input_param { shape { dim: 1 dim: 2 dim: 4 } } }\n' +
        _layer('LSTM', ['xs', 'cont', 'h0', 'c0'], 'recurrent_param { num_output: 4 expose_hidden: true }',
               ('y', 'hT', 'cT')),
        "its hidden state 'h0' (1 x 2 x 4) must be 1 x N x num_output, 1 x 2 x 3", 'abort'),
    # pass 13: empty blobs Caffe cannot fill; this fork's Pad and Upsample on other than 4 axes
    'dummy zero dim': (_layer('DummyData', [], 'dummy_data_param { shape { dim: 2 dim: 0 } }'),
                       _layer('DummyData', [], 'dummy_data_param { shape { dim: 2 dim: 1 } }'),
                       'dummy_data_param shape [2, 0]: a size of 0 (Caffe cannot fill an empty blob)', 'abort'),
    'parameter zero dim': (_layer('Parameter', [], 'parameter_param { shape { dim: 0 dim: 3 } }'),
                           _layer('Parameter', [], 'parameter_param { shape { dim: 1 dim: 3 } }'),
                           'parameter_param shape [0, 3]: a size of 0 (Caffe cannot fill an empty blob)', 'abort'),
    'resize pyramid to 0 rows': (
        _layer('Resize', ['data'], 'resize_param { is_pyramid_test: true out_height_scale: 0.05 out_width_scale: 1 }'),
        _layer('Resize', ['data'], 'resize_param { is_pyramid_test: true out_height_scale: 0.5 out_width_scale: 1 }'),
        'resize_param scales 0.05 x 1 make a top of 0 x 6 from 2 x 4 x 6 x 6', 'abort'),
    'resize to 0 rows': (_layer('Resize', ['data'], 'resize_param { height: 0 width: 4 }'),
                         _layer('Resize', ['data'], 'resize_param { height: 3 width: 4 }'),
                         'resize_param height and width must be >= 1, got 0 x 4', 'abort'),
    'pad of 5 axes': (_layer('Reshape', ['data'], 'reshape_param { shape { dim: 2 dim: 4 dim: 6 dim: 3 dim: 2 } }',
                             ('r',)).replace('name: "x"', 'name: "r0"') +
                      _layer('Pad', ['r'], 'pad_param { pad_u: 1 }'),
                      _layer('Pad', ['data'], 'pad_param { pad_u: 1 }'),
                      'takes a bottom of at most 4 axes, got 2 x 4 x 6 x 3 x 2', 'abort'),
    'upsample of 2 axes': (_layer('Upsample', ['score'], 'upsample_param { scale: 2 }'),
                           _layer('Upsample', ['data'], 'upsample_param { scale: 2 }'),
                           'upsample_param dims_num 4 needs a bottom of 4 axes, got 2 x 4', 'abort'),
    'pooling kernel_w 0': (_layer('Pooling', ['data'], 'pooling_param { kernel_h: 2 kernel_w: 0 }'),
                           _layer('Pooling', ['data'], 'pooling_param { kernel_h: 2 kernel_w: 1 }'),
                           'kernel size and stride must be >= 1', 'abort'),
    'pooling pad': (_layer('Pooling', ['data'], 'pooling_param { kernel_size: 2 pad: 2 }'),
                    _layer('Pooling', ['data'], 'pooling_param { kernel_size: 2 pad: 1 }'),
                    'pooling_param pad must be smaller than the kernel, got pad 2 x 2 and kernel 2 x 2', 'abort'),
    'pooling of a 2-axis blob': (_layer('Pooling', ['score'], 'pooling_param { kernel_size: 2 }'),
                                 _layer('Pooling', ['data'], 'pooling_param { kernel_size: 2 }'),
                                 'takes a bottom of 4 axes (N x C x H x W), got 2 x 4', 'abort'),
    'global pooling with a kernel': (
        _layer('Pooling', ['data'], 'pooling_param { global_pooling: true kernel_size: 2 }'),
        _layer('Pooling', ['data'], 'pooling_param { global_pooling: true }'),
        'pooling_param global_pooling takes no kernel size', 'abort'),
    'tile 0': (_layer('Tile', ['data'], 'tile_param { tiles: 0 }'), _layer('Tile', ['data'], 'tile_param { tiles: 2 }'),
               'tile_param tiles must be set and >= 1, got 0', 'abort'),
    'log base negative': (_layer('Log', ['data'], 'log_param { base: -2 }'),
                          _layer('Log', ['data'], 'log_param { base: 2 }'),
                          'log_param base must be -1 (e) or > 0 and not 1, got -2.0', 'abort'),
    'log base 1': (_layer('Log', ['data'], 'log_param { base: 1 }'), _layer('Log', ['data'], 'log_param { base: 10 }'),
                   'log_param base must be -1 (e) or > 0 and not 1, got 1.0', 'abort'),
    'dropout ratio': (_layer('Dropout', ['data'], 'dropout_param { dropout_ratio: 1.5 }'),
                      _layer('Dropout', ['data'], 'dropout_param { dropout_ratio: 0.5 }'),
                      'dropout_param dropout_ratio must be in [0, 1), got 1.5', 'abort'),
    'embed input_dim 0': (_layer('Embed', ['label'], 'embed_param { num_output: 3 input_dim: 0 }'),
                          _layer('Embed', ['label'], 'embed_param { num_output: 3 input_dim: 5 }'),
                          'input_dim must be >= 1, got 0', 'abort'),
    'prelu of a 1-axis blob': (_layer('PReLU', ['label'], ''), _layer('PReLU', ['data'], ''),
                               'takes a bottom of 2 or more axes, got 2', 'abort'),
    'bias of another shape': (_layer('Bias', ['data', 'label'], 'bias_param { axis: 1 }'),
                              _layer('Bias', ['data', 'label'], 'bias_param { axis: 0 }'),
                              "its second bottom 'label' (2) must match the first 'data' (2 x 4 x 6 x 6) from axis 1",
                              'abort'),
    'scale of another shape': (_layer('Scale', ['data', 'label'], 'scale_param { axis: 1 }'),
                               _layer('Scale', ['data', 'label'], 'scale_param { axis: 0 }'),
                               "its second bottom 'label' (2) must match the first 'data' (2 x 4 x 6 x 6) from axis 1",
                               'reads past'),
    'scale num_axes': (_layer('Scale', ['data'], 'scale_param { axis: 1 num_axes: 5 }'),
                       _layer('Scale', ['data'], 'scale_param { axis: 1 num_axes: 3 }'),
                       'scale_param num_axes 5 from axis 1 goes past the bottom 2 x 4 x 6 x 6', 'abort'),
    'euclidean loss sizes': (_layer('EuclideanLoss', ['data', 'score'], ''),
                             _layer('EuclideanLoss', ['score', 'score'], ''),
                             'bottoms must hold as many values per item: 2 x 4 x 6 x 6 and 2 x 4', 'abort'),
    'sigmoid cross-entropy sizes': (_layer('SigmoidCrossEntropyLoss', ['data', 'score'], ''),
                                    _layer('SigmoidCrossEntropyLoss', ['score', 'score'], ''),
                                    'bottoms must hold as many values: 2 x 4 x 6 x 6 and 2 x 4', 'abort'),
    'batch reindex by a 2-axis blob': (_layer('BatchReindex', ['data', 'score'], ''),
                                       _layer('BatchReindex', ['data', 'label'], ''),
                                       'its second bottom (the indices) must have 1 axis, got 2 x 4', 'abort'),
    'concat axis and concat_dim': (_layer('Concat', ['data', 'data'], 'concat_param { axis: 1 concat_dim: 1 }'),
                                   _layer('Concat', ['data', 'data'], 'concat_param { concat_dim: 1 }'),
                                   'concat_param sets both axis and concat_dim (one of them)', 'abort'),
    'gaussian filler of std 0': (
        _conv('weight_filler { type: "gaussian" std: 0 }'), _conv('weight_filler { type: "gaussian" std: 0.01 }'),
        'weight_filler gaussian std must be > 0, got 0.0', 'abort'),
    'uniform filler min over max': (
        _conv('weight_filler { type: "uniform" min: 1 max: 0 }'),
        _conv('weight_filler { type: "uniform" min: 0 max: 1 }'),
        'weight_filler uniform min (1.0) must not exceed max (0.0)', 'abort'),
    'unknown filler': (_conv('bias_filler { type: "zeros" }'), _conv('bias_filler { type: "constant" }'),
                       "bias_filler type 'zeros' is not a filler of this Caffe (constant, gaussian, "
                       'positive_unitball, uniform, xavier, msra, bilinear)', 'abort'),
    'bilinear filler of an inner product': (
        _layer('InnerProduct', ['data'], 'inner_product_param { num_output: 3 weight_filler { type: "bilinear" } }'),
        _layer('InnerProduct', ['data'], 'inner_product_param { num_output: 3 weight_filler { type: "xavier" } }'),
        'weight_filler bilinear is for the weights of a convolution with a square 2-D kernel', 'abort'),
    'batch norm of a 1-axis blob': (_layer('BatchNorm', ['label'], ''), _layer('BatchNorm', ['data'], ''),
                                    'takes a bottom of 2 or more axes (N x C ...), got 2', 'abort'),
    'spatial pyramid too tall': (_layer('SPP', ['data'], 'spp_param { pyramid_height: 4 }'),
                                 _layer('SPP', ['data'], 'spp_param { pyramid_height: 2 }'),
                                 'spp_param pyramid_height 4 is too tall for a 2 x 4 x 6 x 6 bottom (level 3: 8 bins '
                                 'of 6 px)', 'abort'),
    'stochastic pooling with a pad': (
        _layer('Pooling', ['data'], 'pooling_param { pool: STOCHASTIC kernel_size: 3 pad: 1 }'),
        _layer('Pooling', ['data'], 'pooling_param { pool: MAX kernel_size: 3 pad: 1 }'),
        'pooling_param pad is for MAX and AVE pooling, not STOCHASTIC', 'abort'),
    'multinomial logistic loss of 2-channel labels': (
        _layer('MultinomialLogisticLoss', ['score', 'score'], ''),
        _layer('MultinomialLogisticLoss', ['score', 'label'], ''),
        "bottom 'score' (2 x 4) must be 1 along axes 1, 2, 3", 'abort'),
    'contrastive loss of unequal channels': (
        _layer('ContrastiveLoss', ['score', 'label', 'label'], ''), _layer('ContrastiveLoss', ['score', 'score', 'label'], ''),
        "bottoms 'score' and 'label' must have as many channels: 2 x 4 and 2", 'abort'),
    'a missing database': (_layer('Data', [], 'data_param { source: "/no/such/lmdb" backend: LMDB batch_size: 2 }',
                                  ('d', 'l')), None, "data_param source '/no/such/lmdb': no such database", None),
    'a missing infogain matrix': (_layer('InfogainLoss', ['score', 'label'],
                                         'infogain_loss_param { source: "/no/such.binaryproto" }'), None,
                                  "infogain_loss_param source '/no/such.binaryproto': no such file (or give the "
                                  'matrix as a third bottom)', None),
    'scale axis with one bottom': (_layer('Scale', ['data'], 'scale_param { axis: 7 num_axes: 0 }'),
                                   _layer('Scale', ['data'], 'scale_param { axis: 1 num_axes: 0 }'),
                                   'scale_param axis 7 is out of range for a bottom of shape 2 x 4 x 6 x 6 (4 axes: '
                                   '-4 to 3)', 'abort'),
    'infogain matrix of the wrong shape': (
        'layer { name: "h" type: "Input" top: "h" input_param { shape { dim: 4 dim: 4 } } }\n' +
        _layer('InfogainLoss', ['score', 'label', 'h'], ''),
        'layer { name: "h" type: "Input" top: "h" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }\n' +
        _layer('InfogainLoss', ['score', 'label', 'h'], ''),
        "its third bottom 'h' (4 x 4), the infogain matrix, must be 1 x 1 x 4 x 4", 'abort'),
    'input of a negative size': (_layer('Input', [], 'input_param { shape { dim: 2 dim: -3 } }'),
                                 _layer('Input', [], 'input_param { shape { dim: 2 dim: 3 } }'),
                                 'input_param shape [2, -3]: a negative size', 'abort'),
    # pass 12, S6: the nets let through to an abort
    'input shapes for the tops': (
        _layer('Input', [], 'input_param { shape { dim: 2 } shape { dim: 3 } }', ('a', 'b', 'c')),
        _layer('Input', [], 'input_param { shape { dim: 2 } shape { dim: 3 } shape { dim: 1 } }', ('a', 'b', 'c')),
        'input_param has 2 shapes for 3 tops (give none, 1 or 3)', 'abort'),
    'dummy data fillers for the tops': (
        _layer('DummyData', [], 'dummy_data_param { shape { dim: 2 } data_filler { type: "constant" } '
                                'data_filler { type: "constant" } }', ('a', 'b', 'c')),
        _layer('DummyData', [], 'dummy_data_param { shape { dim: 2 } data_filler { type: "constant" } }',
               ('a', 'b', 'c')),
        'dummy_data_param has 2 data_filler for 3 tops (give none, 1 or 3)', 'abort'),
    'dummy data shapes for the tops': (
        _layer('DummyData', [], 'dummy_data_param { shape { dim: 2 } shape { dim: 3 } }', ('a', 'b', 'c')),
        _layer('DummyData', [], 'dummy_data_param { shape { dim: 2 } shape { dim: 3 } shape { dim: 4 } }',
               ('a', 'b', 'c')),
        'dummy_data_param has 2 shapes for 3 tops (give 1 or 3)', 'abort'),
    'dummy data without a shape': (_layer('DummyData', [], 'dummy_data_param { }'),
                                   _layer('DummyData', [], 'dummy_data_param { shape { dim: 2 } }'),
                                   'dummy_data_param has 0 shapes for 1 top (give 1)', 'abort'),
    'dummy data of shape and legacy sizes': (
        _layer('DummyData', [], 'dummy_data_param { shape { dim: 2 } num: 2 channels: 1 height: 1 width: 1 }'),
        _layer('DummyData', [], 'dummy_data_param { num: 2 channels: 1 height: 1 width: 1 }'),
        'dummy_data_param gives both shape and num / channels / height / width (one of them)', 'abort'),
    'dummy data legacy sizes for the tops': (
        _layer('DummyData', [], 'dummy_data_param { num: 2 num: 2 num: 2 channels: 1 height: 1 width: 1 }',
               ('a', 'b')),
        _layer('DummyData', [], 'dummy_data_param { num: 2 num: 3 channels: 1 height: 1 width: 1 }', ('a', 'b')),
        'dummy_data_param has 3 num for 2 tops (give 1 or 2)', 'abort'),
    'dummy data of a negative size': (_layer('DummyData', [], 'dummy_data_param { shape { dim: -2 } }'),
                                      _layer('DummyData', [], 'dummy_data_param { shape { dim: 2 } }'),
                                      'dummy_data_param shape [-2]: a negative size', 'abort'),
    # (DummyData's tops are known: the layers they feed are checked)
    'softmax axis of a dummy data blob': (
        _layer('DummyData', [], 'dummy_data_param { num: 2 channels: 3 height: 4 width: 5 }', ('d',)).replace(
            '"x"', '"d"') + _layer('Softmax', ['d'], 'softmax_param { axis: 4 }'),
        _layer('DummyData', [], 'dummy_data_param { num: 2 channels: 3 height: 4 width: 5 }', ('d',)).replace(
            '"x"', '"d"') + _layer('Softmax', ['d'], 'softmax_param { axis: 3 }'),
        'softmax_param axis 4 is out of range for a bottom of shape 2 x 3 x 4 x 5 (4 axes: -4 to 3)', 'abort'),
    'parameter of a negative size': (_layer('Parameter', [], 'parameter_param { shape { dim: -2 dim: 3 } }'),
                                     _layer('Parameter', [], 'parameter_param { shape { dim: 2 dim: 3 } }'),
                                     'parameter_param shape [-2, 3]: a negative size', 'abort'),
    'absval in place': (_layer('AbsVal', ['data'], '', ('data',)), _layer('AbsVal', ['data'], ''),
                        'cannot run in place (its top must not be its bottom)', 'abort'),
    'pooling stride_h 0': (_layer('Pooling', ['data'], 'pooling_param { kernel_size: 2 stride_h: 0 stride_w: 1 }'),
                           _layer('Pooling', ['data'], 'pooling_param { kernel_size: 2 stride_h: 1 stride_w: 1 }'),
                           'kernel size and stride must be >= 1', 'abort'),
    'spatial pyramid of height 0': (_layer('SPP', ['data'], 'spp_param { pyramid_height: 0 }'),
                                    _layer('SPP', ['data'], 'spp_param { pyramid_height: 1 }'),
                                    'pyramid_height must be >= 1, got 0', 'abort'),
    'im2col kernel 0': (_layer('Im2col', ['data'], 'convolution_param { kernel_size: 0 }'),
                        _layer('Im2col', ['data'], 'convolution_param { kernel_size: 3 }'),
                        'kernel sizes must be >= 1', 'abort'),
    'im2col stride 0': (_layer('Im2col', ['data'], 'convolution_param { kernel_size: 2 stride: 0 }'),
                        _layer('Im2col', ['data'], 'convolution_param { kernel_size: 2 stride: 2 }'),
                        'strides must be >= 1', 'abort'),
    'im2col kernel wider than the map': (
        _layer('Im2col', ['data'], 'convolution_param { kernel_size: 9 }'),
        _layer('Im2col', ['data'], 'convolution_param { kernel_size: 6 }'),
        'its kernel (9 with dilation 1: 9 px) is wider than the padded input height (6 + 2 x 0) by a stride (1) or '
        'more: no output', 'abort'),
    '3-D convolution kernel wider than the input': (
        'layer { name: "v" type: "Input" top: "v" input_param { shape { dim: 1 dim: 2 dim: 2 dim: 3 dim: 3 } } }\n'
        + _layer('Convolution', ['v'], 'convolution_param { num_output: 2 kernel_size: 5 }'),
        'layer { name: "v" type: "Input" top: "v" input_param { shape { dim: 1 dim: 2 dim: 2 dim: 3 dim: 3 } } }\n'
        + _layer('Convolution', ['v'], 'convolution_param { num_output: 2 kernel_size: 2 }'),
        'its kernel (5 with dilation 1: 5 px) is wider than the padded input axis 2 (2 + 2 x 0) by a stride (1) or '
        'more: no output', 'abort'),
    'filter of one bottom': (_layer('Filter', ['data'], ''), _layer('Filter', ['data', 'label'], ''),
                             'takes 2 or more bottoms, got 1', 'abort'),
    'filter tops': (_layer('Filter', ['data', 'label'], '', ('y', 'z')), _layer('Filter', ['data', 'label'], ''),
                    'needs one top per bottom but the last (the selector), got 2 bottoms and 2 tops', 'abort'),
    'filter by a 2-axis selector': (_layer('Filter', ['data', 'score'], ''), _layer('Filter', ['data', 'label'], ''),
                                    "its selector 'score' (2 x 4, the last bottom) must be N or N x 1 x ... x 1",
                                    'abort'),
    'filter by a selector of another N': (
        'layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 3 } } }\n' +
        _layer('Filter', ['data', 's'], ''),
        'layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 2 } } }\n' +
        _layer('Filter', ['data', 's'], ''),
        "bottom 'data' (2 x 4 x 6 x 6) must have as many items (axis 0) as the selector 's' (3)", 'abort'),
    'rnn num_output 0': (SEQ + _layer('RNN', ['x', 'cont'], 'recurrent_param { num_output: 0 }'),
                         SEQ + _layer('RNN', ['x', 'cont'], 'recurrent_param { num_output: 5 }'),
                         'num_output must be >= 1, got 0', 'abort'),
    'lstm of one bottom': (SEQ + _layer('LSTM', ['x'], 'recurrent_param { num_output: 5 }'),
                           SEQ + _layer('LSTM', ['x', 'cont'], 'recurrent_param { num_output: 5 }'),
                           'takes 2 to 3 bottoms, got 1', 'abort'),
    'lstm of a 2-axis input': (SEQ + _layer('LSTM', ['cont', 'cont'], 'recurrent_param { num_output: 5 }'),
                               SEQ + _layer('LSTM', ['x', 'cont'], 'recurrent_param { num_output: 5 }'),
                               "its input 'cont' (3 x 2) must be T x N x ... (3 or more axes)", 'abort'),
    'rnn continuation of another shape': (
        SEQ + _layer('RNN', ['x', 'cont5'], 'recurrent_param { num_output: 5 }'),
        SEQ + _layer('RNN', ['x', 'cont'], 'recurrent_param { num_output: 5 }'),
        "its sequence continuation 'cont5' (3 x 5) must be T x N, 3 x 2 as its input 'x' is 3 x 2 x 4", 'abort'),
    'lstm gaussian filler of std 0': (
        SEQ + _layer('LSTM', ['x', 'cont'], 'recurrent_param { num_output: 5 weight_filler { type: "gaussian" '
                                            'std: 0 } }'),
        SEQ + _layer('LSTM', ['x', 'cont'], 'recurrent_param { num_output: 5 weight_filler { type: "gaussian" '
                                            'std: 0.1 } }'),
        'weight_filler gaussian std must be > 0, got 0.0', 'abort'),
    'gaussian filler sparser than its rows': (
        _conv('weight_filler { type: "gaussian" std: 0.1 sparse: 5 }'),
        _conv('weight_filler { type: "gaussian" std: 0.1 sparse: 4 }'),
        'weight_filler gaussian sparse 5 is more than the 4 rows (outputs) of the blob it fills', 'abort'),
    'inner product gaussian filler sparser than its outputs': (
        _layer('InnerProduct', ['data'], 'inner_product_param { num_output: 2 weight_filler { type: "gaussian" '
                                         'std: 0.1 sparse: 3 } }'),
        _layer('InnerProduct', ['data'], 'inner_product_param { num_output: 2 weight_filler { type: "gaussian" '
                                         'std: 0.1 sparse: 1 } }'),
        'weight_filler gaussian sparse 3 is more than the 2 rows (outputs) of the blob it fills', 'abort'),
    'sparse xavier filler': (_conv('weight_filler { type: "xavier" sparse: 2 }'),
                             _conv('weight_filler { type: "xavier" }'),
                             'weight_filler xavier takes no sparse (only gaussian does), got 2', 'abort'),
    # (a MemoryData layer is fed by pycaffe's set_input_arrays only: see its own test)
    'memory data without data': (_layer('MemoryData', [], 'memory_data_param { batch_size: 2 channels: 1 height: 2 '
                                                          'width: 2 }', ('m', 'ml')), None,
                                 "has no data to give: only pycaffe's Net.set_input_arrays feeds a MemoryData layer "
                                 '(Caffe aborts at its first forward pass); use Input, DummyData or a database',
                                 'abort'),
    # this Caffe fork's own layers
    'pad in place': (_layer('Pad', ['data'], 'pad_param { pad_u: 1 }', ('data',)),
                     _layer('Pad', ['data'], 'pad_param { pad_u: 1 }'),
                     'cannot run in place (its top must not be its bottom)', 'abort'),
    # (Pad crops when every pad is negative; a negative one among others writes outside the top)
    'pad below nothing': (_layer('Pad', ['data'], 'pad_param { pad_u: -20 }'),
                          _layer('Pad', ['data'], 'pad_param { pad_u: 20 }'),
                          'pad_param pads must be all >= 0 (a pad) or all < 0 (a crop), got pad_u -20, pad_d 0, '
                          'pad_l 0, pad_r 0', 'abort'),
    'pad of mixed signs': (_layer('Pad', ['data'], 'pad_param { pad_u: -1 pad_d: -1 pad_l: -1 pad_r: 0 }'),
                           _layer('Pad', ['data'], 'pad_param { pad_u: -1 pad_d: -1 pad_l: -1 pad_r: -1 }'),
                           'pad_param pads must be all >= 0 (a pad) or all < 0 (a crop), got pad_u -1, pad_d -1, '
                           'pad_l -1, pad_r 0', 'reads past'),
    'crop below nothing': (_layer('Pad', ['data'], 'pad_param { pad_u: -4 pad_d: -4 pad_l: -1 pad_r: -1 }'),
                           _layer('Pad', ['data'], 'pad_param { pad_u: -3 pad_d: -2 pad_l: -1 pad_r: -1 }'),
                           'a top would be 2 x 4 x -2 x 4: a negative size', 'abort'),
    'permute order past the axes': (_layer('Permute', ['data'], 'permute_param { order: 7 }'),
                                    _layer('Permute', ['data'], 'permute_param { order: 3 }'),
                                    'permute_param order 7 is not an axis of the bottom 2 x 4 x 6 x 6', 'abort'),
    'permute order repeated': (_layer('Permute', ['data'], 'permute_param { order: 1 order: 1 }'),
                               _layer('Permute', ['data'], 'permute_param { order: 1 order: 0 }'),
                               'permute_param order [1, 1] repeats an axis', 'abort'),
    'resize without a height': (_layer('Resize', ['data'], 'resize_param { width: 4 }'),
                                _layer('Resize', ['data'], 'resize_param { width: 4 height: 3 }'),
                                'resize_param needs height and width', 'abort'),
    'upsample scale 0': (_layer('Upsample', ['data'], 'upsample_param { scale: 0 }'),
                         _layer('Upsample', ['data'], 'upsample_param { scale: 2 }'),
                         'scale must be >= 1, got 0', 'abort'),
    'upsample dims_num 5': (_layer('Upsample', ['data'], 'upsample_param { scale: 2 dims_num: 5 }'),
                            _layer('Upsample', ['data'], 'upsample_param { scale: 2 dims_num: 3 }'),
                            'upsample_param dims_num must be 3 or 4, got 5', 'abort'),
    'unsqueeze past the axes': (_layer('Unsqueeze', ['data'], 'unsqueeze_param { dim: 10 }'),
                                _layer('Unsqueeze', ['data'], 'unsqueeze_param { dim: -5 }'),
                                'unsqueeze_param dim 10 is out of range for a bottom of 4 axes (-5 to 4)', 'abort'),
    'position-sensitive pooling of output_dim 0': (
        _layer('PSROIPooling', ['data', 'score'], 'psroi_pooling_param { spatial_scale: 1 output_dim: 0 '
                                                   'group_size: 2 }'), None,
        'output_dim must be >= 1, got 0', 'abort'),
    'max unpooling of one bottom': (_layer('MaxUnPool', ['data'], 'max_unpool_param { dst_h: 4 dst_w: 4 }'), None,
                                    'takes 2 bottoms, got 1', 'abort'),
    'normalize of a 1-axis blob': (_layer('Normalize', ['label'], ''), _layer('Normalize', ['data'], ''),
                                   'takes a bottom of 2 to 4 axes, got 2', 'abort'),
    'prior box without min_size': (_layer('PriorBox', ['data', 'data'], ''),
                                   _layer('PriorBox', ['data', 'data'], 'prior_box_param { min_size: 2 }'),
                                   'prior_box_param min_size must be given, each > 0, got []', 'abort'),
    'detection output without num_classes': (_layer('DetectionOutput', ['data', 'data', 'data'], ''), None,
                                             'detection_output_param num_classes must be set', 'abort'),
    'proposal without bottoms': (_layer('Proposal', [], ''), None, 'takes 3 or more bottoms, got 0', 'abort'),
    'smooth L1 loss of unequal bottoms': (
        _layer('SmoothL1Loss', ['score', 'data'], ''), _layer('SmoothL1Loss', ['score', 'score'], ''),
        "bottom 'data' (2 x 4 x 6 x 6) must match 'score' (2 x 4) in channels, height and width", 'abort'),
    'lstm unit of 4-axis bottoms': (
        _layer('LSTMUnit', ['data', 'data', 'data'], '', ('c', 'h')),
        'layer { name: "u" type: "Input" top: "c0" top: "g" top: "k" input_param { shape { dim: 1 dim: 2 dim: 3 } '
        'shape { dim: 1 dim: 2 dim: 12 } shape { dim: 1 dim: 2 } } }\n' +
        _layer('LSTMUnit', ['c0', 'g', 'k'], '', ('c', 'h')),
        "bottom 'data' (2 x 4 x 6 x 6) must be 1 x N x D (LSTMUnit: cell state, gates, continuation)", 'abort'),
    # pass 29 S2, S3: the fork's PixelShuffle (0: a division by zero), Net::Init's own CHECKs
    'pixel shuffle by 0': (
        _layer('PixelShuffle', ['data'], 'pixelshuffle_param { upscale_factor: 0 }'),
        _layer('PixelShuffle', ['data'], 'pixelshuffle_param { upscale_factor: 2 }'),
        'upscale_factor must be >= 1, got 0', 'abort'),
    'pixel shuffle of channels the factor squared does not divide': (
        _layer('PixelShuffle', ['data'], 'pixelshuffle_param { upscale_factor: 3 }'),
        _layer('PixelShuffle', ['data'], 'pixelshuffle_param { upscale_factor: 1 }'),
        "pixelshuffle_param upscale_factor 3: the bottom's 4 channels must divide by 9 (the factor squared)",
        'abort'),
    'propagate_down given twice for one bottom': (
        _layer('ReLU', ['data'], 'propagate_down: true propagate_down: false'),
        _layer('ReLU', ['data'], 'propagate_down: false'),
        'propagate_down is given 2 times for 1 bottoms (give it once per bottom, or not at all)', 'abort'),
    'more param specs than blobs': (
        _layer('InnerProduct', ['data'], 'param { } param { } param { } inner_product_param { num_output: 2 }'),
        _layer('InnerProduct', ['data'], 'param { } param { } inner_product_param { num_output: 2 }'),
        '3 param specs for a layer of 2 parameter blobs', 'abort'),
    'a cuDNN engine on a build without cuDNN': (
        _layer('Convolution', ['data'], 'convolution_param { num_output: 2 kernel_size: 3 engine: CUDNN }'),
        _layer('Convolution', ['data'], 'convolution_param { num_output: 2 kernel_size: 3 engine: CAFFE }'),
        'convolution_param engine: CUDNN, and this Caffe is built without cuDNN (give engine: CAFFE, or leave '
        'it out)', 'abort'),
    'stochastic pooling on a CPU build': (
        _layer('Pooling', ['data'], 'pooling_param { pool: STOCHASTIC kernel_size: 3 }'),
        _layer('Pooling', ['data'], 'pooling_param { pool: AVE kernel_size: 3 }'),
        'pooling_param pool: STOCHASTIC has no CPU forward pass in Caffe (it aborts), and this Caffe is a '
        'CPU-only build: use MAX or AVE', 'abort'),
    'detection evaluation without num_classes': (
        _layer('DetectionEvaluate', ['data', 'data'], ''), None,
        'detection_evaluate_param num_classes must be set', 'abort'),
    'bilinear interpolation of no size': (
        _layer('BilinearInterpolate', ['data'], ''),
        _layer('BilinearInterpolate', ['data'], 'bilinear_interpolate_param { scale_factor: 2 }'),
        # (the layer sizes its top from members never set: an abort, an OOM kill or a garbage top)
        'bilinear_interpolate_param takes dst_h / dst_w or scale_factor (one of them)', 'reads unset'),
}


def _net(layer):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    return text_format.Merge(INPUTS + layer, caffe_pb2.NetParameter())


@pytest.mark.parametrize('case', list(CASES))
def test_a_setting_caffe_aborts_on_is_refused_naming_layer_and_setting(case):
    bad, twin, message, _ = CASES[case]
    kind = re.search(r'name: "x" type: "(\w+)"', bad).group(1)
    with pytest.raises(InputError) as e:
        prototxt.check_net(_net(bad), 'net.prototxt')
    assert str(e.value) == "net.prototxt: layer 'x': %s: %s" % (kind, message)
    if twin is not None:
        prototxt.check_net(_net(twin), 'net.prototxt')


def _fate_in_caffe(path, phases=('TRAIN', 'TEST')):
    """How real Caffe ends building and running the nets at ``path``
    (TRAIN and TEST, forward and backward) in a forked child: 'ok', or the signal's name."""
    import caffe

    def work():
        caffe.set_mode_cpu()
        for phase in phases:     # (Dropout acts in TRAIN only)
            net = caffe.Net(path, getattr(caffe, phase))
            net.forward()
            net.backward()
    return fate_in_child(work)


@pytest.mark.parametrize('case', [case for case, (_, _, _, fate) in CASES.items() if fate == 'abort'])
def test_caffe_dies_on_each_refused_setting_and_runs_its_twin(case, tmp_path):
    """The reason for each check: without it Caffe kills the process.
    (A fork's layer with no CPU forward pass, or one that needs inputs of
    its own, comes without a twin.)"""
    bad, twin, _, _ = CASES[case]
    (tmp_path / 'bad.prototxt').write_text(INPUTS + bad)
    if twin is not None:
        (tmp_path / 'twin.prototxt').write_text(INPUTS + twin)
        assert _fate_in_caffe(str(tmp_path / 'twin.prototxt')) == 'ok'
    assert _fate_in_caffe(str(tmp_path / 'bad.prototxt')) in ('SIGABRT', 'SIGFPE', 'SIGSEGV')


_CONV = 'convolution_param { num_output: %d kernel_size: %d weight_filler { type: "xavier" } }'
NET_LEVEL = {
    # a parameter shared by name: Net::AppendParam's CHECKs (pass 29 S3)
    'a shared parameter of two shapes': (
        'layer { name: "a" type: "Convolution" bottom: "data" top: "a" param { name: "w" } %s }\n'
        'layer { name: "x" type: "Convolution" bottom: "data" top: "b" param { name: "w" } %s }\n'
        % (_CONV % (2, 3), _CONV % (2, 1)),
        'layer { name: "a" type: "Convolution" bottom: "data" top: "a" param { name: "w" } %s }\n'
        'layer { name: "x" type: "Convolution" bottom: "data" top: "b" param { name: "w" } %s }\n'
        % (_CONV % (2, 3), _CONV % (2, 3)),
        "Convolution: param 'w' is shared with layer 'a', whose blob is 2 x 4 x 3 x 3; here it is 2 x 4 x 1 x 1 "
        "(share_mode PERMISSIVE compares counts only)", ('TRAIN', 'TEST')),
    'a shared parameter with two lr_mult': (
        'layer { name: "a" type: "Convolution" bottom: "data" top: "a" param { name: "w" lr_mult: 1 } %s }\n'
        'layer { name: "x" type: "Convolution" bottom: "data" top: "b" param { name: "w" lr_mult: 2 } %s }\n'
        % (_CONV % (2, 3), _CONV % (2, 3)),
        'layer { name: "a" type: "Convolution" bottom: "data" top: "a" param { name: "w" lr_mult: 1 } %s }\n'
        'layer { name: "x" type: "Convolution" bottom: "data" top: "b" param { name: "w" } %s }\n'
        % (_CONV % (2, 3), _CONV % (2, 3)),
        "Convolution: param 'w' has lr_mult 2, and 1 where it was given before (layer 'a'): a shared parameter "
        "has one", ('TRAIN', 'TEST')),
    # a layer without a backward pass between a learnable layer and a loss
    'a threshold the gradient passes through': (
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c" %s }\n'
        'layer { name: "x" type: "Threshold" bottom: "c" top: "t" }\n'
        'layer { name: "l" type: "EuclideanLoss" bottom: "t" bottom: "c" top: "loss" }\n' % (_CONV % (2, 3)),
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c" %s }\n'
        'layer { name: "x" type: "Threshold" bottom: "c" top: "t" }\n'
        'layer { name: "l" type: "EuclideanLoss" bottom: "t" bottom: "c" top: "loss" propagate_down: false '
        'propagate_down: true }\n' % (_CONV % (2, 3)),
        'Threshold: the backward pass reaches it (a learnable layer below, a loss above) and it has none (Caffe '
        'aborts): give the layer that reads its top propagate_down: false, or lr_mult: 0 to the layers below',
        ('TRAIN',)),
    'a threshold with force_backward (pass 30 M2)': (
        'force_backward: true\nlayer { name: "x" type: "Threshold" bottom: "data" top: "t" }\n',
        'layer { name: "x" type: "Threshold" bottom: "data" top: "t" }\n',
        "Threshold: the backward pass reaches it (force_backward: true runs every layer's) and it has none "
        "(Caffe aborts): leave force_backward out", ('TRAIN',)),
}


@pytest.mark.parametrize('case', list(NET_LEVEL))
def test_net_level_settings_caffe_aborts_on_are_refused_and_their_twins_run(case, tmp_path):
    """Settings Caffe's Net::Init checks across layers: refused naming the
    layer; Caffe dies on the net, and runs its twin (TRAIN, forward and
    backward)."""
    bad, twin, message, phases = NET_LEVEL[case]
    with pytest.raises(InputError) as e:
        prototxt.check_net(_net(bad), 'net.prototxt')
    where = '' if phases == ('TRAIN', 'TEST') else ' (TRAIN)'
    assert "net.prototxt: layer 'x'%s: %s" % (where, message) in str(e.value), str(e.value)
    prototxt.check_net(_net(twin), 'net.prototxt')
    (tmp_path / 'bad.prototxt').write_text(INPUTS + bad)
    (tmp_path / 'twin.prototxt').write_text(INPUTS + twin)
    assert _fate_in_caffe(str(tmp_path / 'twin.prototxt'), ('TRAIN',)) == 'ok'
    assert _fate_in_caffe(str(tmp_path / 'bad.prototxt'), ('TRAIN',)) == 'SIGABRT'


def test_the_generated_nets_have_no_setting_caffe_refuses():
    """No false alarm on the nets we ship (TRAIN and TEST)."""
    import glob
    from tests import REPO
    nets = [path for path in glob.glob(os.path.join(REPO, 'prototxt', '**', '*.prototxt'), recursive=True)
            if 'solver' not in os.path.basename(path) and len(prototxt.read_net(path).layer)]
    assert len(nets) >= 10
    for path in nets:
        prototxt.check_net(prototxt.read_net(path), path)


# Nets real Caffe builds and runs, which check_net refused (pass 10, F1):
# shapes it worked out wrong, or layers it checked that the net's state
# leaves out.
VALID = {
    'flatten from axis 2': _layer('Flatten', ['data'], 'flatten_param { axis: 2 }', ('f',)) +
    'layer { name: "s" type: "Softmax" bottom: "f" top: "s" softmax_param { axis: 2 } }\n',
    'flatten of one axis': _layer('Flatten', ['data'], 'flatten_param { axis: 1 end_axis: 1 }', ('f',)) +
    'layer { name: "c" type: "Concat" bottom: "f" bottom: "data" top: "c" }\n',
    'concat_dim': 'layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 4 dim: 4 dim: 6 dim: 6 } } }\n' +
    _layer('Concat', ['data', 'data'], 'concat_param { concat_dim: 0 }', ('c',)) +
    'layer { name: "e" type: "Eltwise" bottom: "c" bottom: "d" top: "e" }\n',
    'slice_dim': 'layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1 dim: 4 dim: 6 dim: 6 } } }\n' +
    _layer('Slice', ['data'], 'slice_param { slice_dim: 0 }', ('s1', 's2')) +
    'layer { name: "e" type: "Eltwise" bottom: "s1" bottom: "d" top: "e" }\n'
    'layer { name: "z" type: "Silence" bottom: "s2" }\n',
    'stride_h alone (stride_w defaults to 1)': _layer(
        'Convolution', ['data'], 'convolution_param { num_output: 2 kernel_h: 3 kernel_w: 3 stride_h: 2 }'),
    'pad_w alone': _layer('Convolution', ['data'], 'convolution_param { num_output: 2 kernel_h: 1 kernel_w: 5 pad_w: 2 }',
                          ('c',)) +
    'layer { name: "c2" type: "Convolution" bottom: "data" top: "c2" convolution_param { num_output: 2 kernel_size: 1 } }\n'
    'layer { name: "e" type: "Eltwise" bottom: "c" bottom: "c2" top: "e" }\n',
    'convolution along axis 2': 'layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 2 dim: 4 dim: 4 '
    'dim: 4 } } }\n' + _layer('Convolution', ['data'], 'convolution_param { axis: 2 num_output: 4 kernel_size: 3 }',
                              ('c',)) + 'layer { name: "e" type: "Eltwise" bottom: "c" bottom: "d" top: "e" }\n',
    'scale by a scalar': 'layer { name: "v" type: "Input" top: "v" top: "s" input_param { shape { dim: 5 } shape { } } }\n'
    + _layer('Scale', ['v', 's'], '', ('o',)),
    'kernel a pixel wider than the input, stride 2': _layer('Convolution', ['data'],
                                                            'convolution_param { num_output: 2 kernel_size: 7 stride: 2 }'),
    'pooling rounded down (ceil_mode: false)': 'layer { name: "d" type: "Input" top: "d" input_param { shape { '
    'dim: 2 dim: 4 dim: 2 dim: 2 } } }\n' + _layer('Convolution', ['data'], 'convolution_param { num_output: 4 '
                                                  'kernel_size: 2 }', ('c',)) +
    'layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { kernel_size: 2 stride: 2 ceil_mode: false } }\n'
    'layer { name: "j" type: "Concat" bottom: "p" bottom: "d" top: "j" }\n',
    'eltwise of equal counts in two shapes': 'layer { name: "q" type: "Input" top: "q" input_param { shape { dim: 2 '
    'dim: 4 dim: 1 dim: 1 } } }\n' + _layer('Eltwise', ['score', 'q'], '', ('e',)),
    # a pad along one axis clips the last window of both (2 x 2 here, not 2 x 3)
    'pooling padded along one axis': 'layer { name: "d" type: "Input" top: "d" top: "d2" input_param { shape { '
    'dim: 2 dim: 4 dim: 2 dim: 2 } shape { dim: 2 dim: 4 dim: 5 dim: 5 } } }\n' +
    _layer('Pooling', ['d2'], 'pooling_param { kernel_h: 2 kernel_w: 1 stride: 3 pad_h: 1 pad_w: 0 }', ('p',)) +
    'layer { name: "e" type: "Eltwise" bottom: "p" bottom: "d" top: "e" }\n',
    'accuracy per class': _layer('Accuracy', ['score', 'label'], '', ('a', 'per_class')) +
    'layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 4 } } }\n'
    'layer { name: "e" type: "Eltwise" bottom: "per_class" bottom: "s" top: "e" }\n',
    'bilinear dummy data': _layer('DummyData', [], 'dummy_data_param { shape { dim: 2 dim: 1 dim: 4 dim: 4 } '
                                                   'data_filler { type: "bilinear" } }', ('w',)),
    'layers of a stage': 'layer { name: "x1" type: "ReLU" bottom: "data" top: "x" include { stage: "deploy" } }\n'
    'layer { name: "x2" type: "Sigmoid" bottom: "data" top: "x" exclude { stage: "deploy" } }\n'
    'layer { name: "x3" type: "Softmax" bottom: "data" top: "z" softmax_param { axis: 7 } include { stage: "never" } }\n',
    'layers of a level': 'layer { name: "x1" type: "ReLU" bottom: "data" top: "x" include { min_level: 1 } }\n'
    'layer { name: "x2" type: "Sigmoid" bottom: "data" top: "x" include { max_level: 0 } }\n',
    # pass 12, S6: the shapes now worked out (each checked by an Eltwise
    # with a blob of the expected shape), and settings next to those refused
    'convolution along the last axis (no spatial axis: 1 x 1)': _layer(
        'Convolution', ['data'], 'convolution_param { axis: 3 num_output: 2 kernel_size: 3 }'),
    'dummy data, one shape and one filler for every top': _layer(
        'DummyData', [], 'dummy_data_param { shape { dim: 2 dim: 4 dim: 6 dim: 6 } data_filler { type: "gaussian" '
        'std: 0.1 sparse: 2 } }', ('a', 'b')) + 'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" '
    'bottom: "data" top: "e" }\n',
    'dummy data, legacy sizes once for two tops': _layer(
        'DummyData', [], 'dummy_data_param { num: 2 channels: 4 height: 6 width: 6 }', ('a', 'b')) +
    'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "b" bottom: "data" top: "e" }\n',
    'input, one shape per top': _layer('Input', [], 'input_param { shape { dim: 2 dim: 4 dim: 6 dim: 6 } '
                                                               'shape { dim: 2 } }', ('a', 'b')) +
    'layer { name: "e" type: "Eltwise" bottom: "a" bottom: "data" top: "e" }\n',
    '3-D convolution': 'layer { name: "v" type: "Input" top: "v" top: "w" input_param { shape { dim: 1 dim: 2 dim: 4 '
    'dim: 5 dim: 6 } shape { dim: 1 dim: 3 dim: 3 dim: 2 dim: 5 } } }\n' + _layer(
        'Convolution', ['v'], 'convolution_param { num_output: 3 kernel_size: 2 kernel_size: 4 kernel_size: 2 }',
        ('c',))
    + 'layer { name: "e" type: "Eltwise" bottom: "c" bottom: "w" top: "e" }\n',
    'im2col': 'layer { name: "w" type: "Input" top: "w" input_param { shape { dim: 2 dim: 36 dim: 4 dim: 4 } } }\n' +
    _layer('Im2col', ['data'], 'convolution_param { kernel_size: 3 }', ('c',)) +
    'layer { name: "e" type: "Eltwise" bottom: "c" bottom: "w" top: "e" }\n',
    'tile': 'layer { name: "w" type: "Input" top: "w" input_param { shape { dim: 2 dim: 4 dim: 6 dim: 18 } } }\n' +
    _layer('Tile', ['data'], 'tile_param { axis: -1 tiles: 3 }', ('t',)) +
    'layer { name: "e" type: "Eltwise" bottom: "t" bottom: "w" top: "e" }\n',
    'filter by an N x 1 selector': 'layer { name: "s" type: "Input" top: "s" input_param { shape { dim: 2 dim: 1 } } '
    '}\n' + _layer('Filter', ['data', 'score', 's'], '', ('f', 'g')),
    'rnn with a static input, lstm with its hidden state exposed': SEQ +
    'layer { name: "st" type: "Input" top: "st" top: "h0" top: "c0" top: "w" input_param { shape { dim: 2 dim: 7 } '
    'shape { dim: 1 dim: 2 dim: 5 } shape { dim: 1 dim: 2 dim: 5 } shape { dim: 3 dim: 2 dim: 5 } } }\n' +
    _layer('RNN', ['x', 'cont', 'st'], 'recurrent_param { num_output: 5 weight_filler { type: "gaussian" std: 0.1 '
                                       'sparse: 5 } }', ('r',)) +
    'layer { name: "l" type: "LSTM" bottom: "x" bottom: "cont" bottom: "h0" bottom: "c0" top: "l" top: "h1" '
    'top: "c1" recurrent_param { num_output: 5 expose_hidden: true } }\n'
    'layer { name: "e" type: "Eltwise" bottom: "r" bottom: "l" bottom: "w" top: "e" }\n',
    'pad, crop, permute, unsqueeze and upsample': 'layer { name: "w" type: "Input" top: "w" top: "w2" top: "w3" '
    'input_param { shape { dim: 2 dim: 10 dim: 3 dim: 4 } shape { dim: 2 dim: 4 dim: 1 dim: 6 dim: 6 } '
    'shape { dim: 2 dim: 4 dim: 12 dim: 12 } } }\n' +
    _layer('Pad', ['data'], 'pad_param { pad_u: 1 pad_l: 2 }', ('p',)) +
    'layer { name: "q" type: "Pad" bottom: "p" top: "q" pad_param { pad_u: -3 pad_d: -1 pad_l: -2 pad_r: -1 } }\n'
    'layer { name: "r" type: "Permute" bottom: "q" top: "r" permute_param { order: 0 order: 3 order: 2 } }\n'
    'layer { name: "c" type: "Concat" bottom: "r" bottom: "r" top: "c" }\n'
    'layer { name: "e" type: "Eltwise" bottom: "c" bottom: "w" top: "e" }\n'
    'layer { name: "u" type: "Unsqueeze" bottom: "data" top: "u" unsqueeze_param { dim: -3 } }\n'
    'layer { name: "e2" type: "Eltwise" bottom: "u" bottom: "w2" top: "e2" }\n'
    'layer { name: "up" type: "Upsample" bottom: "data" top: "up" upsample_param { scale: 2 } }\n'
    'layer { name: "e3" type: "Eltwise" bottom: "up" bottom: "w3" top: "e3" }\n',
    'gaussian filler as sparse as its rows, of a transposed inner product': _conv(
        'weight_filler { type: "gaussian" std: 0.1 sparse: 4 }') + _layer(
            'InnerProduct', ['data'], 'inner_product_param { num_output: 2 transpose: true weight_filler { type: '
                                      '"gaussian" std: 0.1 sparse: 100 } }', ('t',)).replace('name: "x"', 'name: "ip"'),
}


@pytest.mark.parametrize('case', list(VALID))
def test_a_net_caffe_builds_and_runs_is_not_refused(case, tmp_path):
    prototxt.check_net(_net(VALID[case]), 'net.prototxt')
    (tmp_path / 'net.prototxt').write_text(INPUTS + VALID[case])
    assert _fate_in_caffe(str(tmp_path / 'net.prototxt')) == 'ok'


def test_the_binarys_stage_and_level_select_the_layers_checked(tmp_path):
    """`caffe-mlic caffe time -stage deploy` builds x1, not x2: checked as such."""
    from tests.faults import run_cli
    (tmp_path / 'net.prototxt').write_text(INPUTS + VALID['layers of a stage'].replace('axis: 7', 'axis: 1'))
    for extra in ([], ['-stage', 'deploy'], ['-stage', 'other,deploy']):
        res = run_cli(['caffe', 'time', '-model', 'net.prototxt', '-iterations', '1'] + extra, tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
    (tmp_path / 'bad.prototxt').write_text(INPUTS + VALID['layers of a stage'].replace('"never"', '"deploy"'))
    res = run_cli(['caffe', 'time', '-model', 'bad.prototxt', '-iterations', '1', '-stage', 'deploy'], tmp_path)
    assert res.returncode == 1 and "layer 'x3' (TRAIN): Softmax: softmax_param axis 7 is out of range" in res.stderr, \
        res.stderr
    assert run_cli(['caffe', 'time', '-model', 'bad.prototxt', '-iterations', '1'], tmp_path).returncode == 0


def test_caffe_time_refuses_a_layer_without_a_backward_pass(tmp_path):
    """`caffe time` runs Backward on every layer: ArgMax's aborts."""
    from tests.faults import run_cli
    (tmp_path / 'net.prototxt').write_text(INPUTS + _layer('ArgMax', ['score'], ''))
    res = run_cli(['caffe', 'time', '-model', 'net.prototxt', '-iterations', '1'], tmp_path)
    assert res.returncode == 1 and res.stderr == (
        "caffe-mlic caffe: net.prototxt: caffe time runs every layer's backward pass, and 'x' (ArgMax) has none "
        '(Caffe aborts): time a net without it, or use caffe-mlic speed\n'), res.stderr


# A V1 net (layers { type: CONVOLUTION }, input: fields), which Caffe
# upgrades as it reads it, was refused as "not a net prototxt" (pass 12, S7).
V1_NET = '''name: "v1"
input: "data"
input_dim: 2
input_dim: 3
input_dim: 8
input_dim: 8
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
layers { name: "lrn" type: LRN bottom: "conv" top: "n" lrn_param { local_size: %d } }
'''


def test_a_v1_net_is_upgraded_as_caffe_upgrades_it_and_checked(tmp_path, capsys):
    from tests.faults import run_cli
    (tmp_path / 'v1.prototxt').write_text(V1_NET % 3)
    (tmp_path / 'bad.prototxt').write_text(V1_NET % 4)
    net = prototxt.read_net(str(tmp_path / 'v1.prototxt'))
    assert not len(net.layers) and [(layer.name, layer.type) for layer in net.layer] == [
        ('input', 'Input'), ('conv', 'Convolution'), ('relu', 'ReLU'), ('lrn', 'LRN')]
    assert list(net.layer[0].input_param.shape[0].dim) == [2, 3, 8, 8]
    prototxt.check_net(net, 'v1.prototxt')
    with pytest.raises(InputError) as e:
        prototxt.check_net(prototxt.read_net(str(tmp_path / 'bad.prototxt')), 'bad.prototxt')
    assert str(e.value) == "bad.prototxt: layer 'lrn': LRN: lrn_param local_size must be odd, got 4"
    assert capsys.readouterr().err == ''        # (no note: upgraded and checked)
    assert _fate_in_caffe(str(tmp_path / 'v1.prototxt')) == 'ok'
    assert _fate_in_caffe(str(tmp_path / 'bad.prototxt')) == 'SIGABRT'
    res = run_cli(['caffe', 'time', '-model', 'v1.prototxt', '-iterations', '1'], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    res = run_cli(['caffe', 'time', '-model', 'bad.prototxt', '-iterations', '1'], tmp_path)
    assert res.returncode == 1 and res.stderr == (
        "caffe-mlic caffe: bad.prototxt: layer 'lrn': LRN: lrn_param local_size must be odd, got 4\n"), res.stderr


def test_a_net_of_both_formats_is_refused_as_caffe_aborts_on_it(tmp_path):
    """UpgradeV1Net refuses a net with both layer and layers entries (FATAL)."""
    (tmp_path / 'both.prototxt').write_text(V1_NET % 3 + 'layer { name: "s" type: "Sigmoid" bottom: "n" top: "s" }\n')
    with pytest.raises(InputError) as e:
        prototxt.read_net(str(tmp_path / 'both.prototxt'))
    assert str(e.value).startswith('%s: the net gives both layer { type: "..." } and V1 layers { type: ... } '
                                   'entries: Caffe refuses to upgrade such a net (it aborts)'
                                   % (tmp_path / 'both.prototxt')), str(e.value)
    assert _fate_in_caffe(str(tmp_path / 'both.prototxt')) == 'SIGABRT'


@pytest.mark.parametrize('tool', ['missing', '/bin/false'])
def test_a_v1_net_the_upgrade_tool_cannot_upgrade_goes_to_caffe_unchecked_with_a_note(tmp_path, capsys,
                                                                                     monkeypatch, tool):
    from caffe_mlic.caffe import env as caffe_env

    def caffe_tool(name, root=None):
        if tool == 'missing':
            raise caffe_env.CaffeNotFound('no %s under /nowhere' % name)
        return tool
    monkeypatch.setattr(caffe_env, 'caffe_tool', caffe_tool)
    path = str(tmp_path / 'v1.prototxt')
    (tmp_path / 'v1.prototxt').write_text(V1_NET % 4)
    net = prototxt.read_net(path)
    assert len(net.layers) == 3 and not len(net.layer)
    prototxt.check_net(net, path)           # (nothing to check: Caffe gets it as it is)
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and err.startswith(
        '%s: a V1 net (layers { type: ... }), which Caffe upgrades as it reads it: not checked here (the '
        'upgrade failed: ' % path), err
    assert ('no upgrade_net_proto_text under /nowhere' if tool == 'missing' else 'false ended with status 1') \
        in err, err


def _refusal(text, where='net.prototxt', **kwargs):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    with pytest.raises(InputError) as e:
        prototxt.check_net(text_format.Merge(text, caffe_pb2.NetParameter()), where, **kwargs)
    return str(e.value)


def test_blobs_over_int_max_of_dummy_data_and_tile_are_refused(tmp_path):
    """DummyData's and Tile's tops were not worked out (pass 12, S6): Caffe
    aborted at a blob of more than INT_MAX values."""
    cases = {
        'dummy': (_layer('DummyData', [], 'dummy_data_param { num: 50000 channels: 50000 height: 1 width: 1 }'),
                  "net.prototxt: layer 'x': top 'y' would be 50000 x 50000 x 1 x 1 = 2500000000 values, more "
                  'than a Caffe blob holds (2^31 - 1): lower the input size or batch_size'),
        'tile': (_layer('Tile', ['data'], 'tile_param { axis: 1 tiles: 100000000 }'),
                 "net.prototxt: layer 'x': top 'y' would be 2 x 400000000 x 6 x 6 = 28800000000 values, more "
                 'than a Caffe blob holds (2^31 - 1): lower the input size or batch_size')}
    for name, (layer, message) in cases.items():
        assert _refusal(INPUTS + layer) == message
        (tmp_path / ('%s.prototxt' % name)).write_text(INPUTS + layer)
        assert _fate_in_caffe(str(tmp_path / ('%s.prototxt' % name))) == 'SIGABRT'


def test_a_memory_data_layer_is_refused_unless_its_caller_feeds_it():
    """Nothing but pycaffe's set_input_arrays gives a MemoryData layer data:
    `caffe time` / `test` / `train` abort at its first forward pass
    (pass 12, S6). A caller that feeds it says so; its sizes are checked
    then too."""
    import caffe
    import numpy as np
    good = _layer('MemoryData', [], 'memory_data_param { batch_size: 2 channels: 1 height: 2 width: 2 }', ('m', 'l'))
    assert _refusal(good) == CASES['memory data without data'][2].join(("net.prototxt: layer 'x': MemoryData: ", ''))
    prototxt.check_net(_net(good), 'net.prototxt', fed_memory_data=True)
    assert _refusal(good.replace('batch_size: 2', 'batch_size: 0'), fed_memory_data=True) == \
        "net.prototxt: layer 'x': MemoryData: batch_size must be >= 1, got 0"
    caffe.set_mode_cpu()
    net = prototxt.caffe_net(good, 'TEST', fed_memory_data=True)     # (the first layer: set_input_arrays')
    net.set_input_arrays(np.ones((2, 1, 2, 2), np.float32), np.arange(2, dtype=np.float32))
    net.forward()
    assert float(net.blobs['m'].data.sum()) == 8.0


def test_the_files_data_layers_open_are_checked_as_caffe_opens_them(tmp_path, monkeypatch):
    """A Data source that exists but is no database (a file, an empty
    folder), an HDF5 list naming a file that is not HDF5, an HDF5Output
    file in no folder: Caffe aborted (pass 12, S6)."""
    h5py = pytest.importorskip('h5py')
    import numpy as np
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'list.txt').write_text('d.h5\n')
    (tmp_path / 'bad_list.txt').write_text('list.txt 0\n')
    with h5py.File(tmp_path / 'd.h5', 'w') as f:
        f['y'] = np.zeros((4, 3), np.float32)
        f['w'] = np.zeros((3, 3), np.float32)
    data = 'layer { name: "x" type: "Data" top: "y" data_param { source: "%s" batch_size: 2 %s } }\n'
    hdf5 = 'layer { name: "x" type: "HDF5Data" top: "y" hdf5_data_param { source: "%s" batch_size: %d } }\n'
    output = _layer('HDF5Output', ['data', 'label'], 'hdf5_output_param { file_name: "%s" }', ())
    cases = {
        'a file': (data % ('list.txt', 'backend: LMDB'),
                   "Data: data_param source 'list.txt': not an LMDB database (a folder holding data.mdb)"),
        'an empty folder': (data % ('empty', 'backend: LMDB'),
                            "Data: data_param source 'empty': not an LMDB database (a folder holding data.mdb)"),
        'a folder for LevelDB': (data % ('empty', ''),
                                 "Data: data_param source 'empty': not a LevelDB database (a folder holding "
                                 'CURRENT)'),
        'an HDF5 list of a text file': (hdf5 % ('bad_list.txt', 2),
                                        "HDF5Data: hdf5_data_param source 'bad_list.txt' lists 'list.txt': not "
                                        'an HDF5 file'),
        'HDF5 batch_size 0': (hdf5 % ('list.txt', 0), 'HDF5Data: batch_size must be >= 1, got 0'),
        # (pass 13, S2) what Caffe reads of each file: a dataset per top, of one length
        'an HDF5 file without a top': (hdf5.replace('top: "y"', 'top: "y" top: "z"') % ('list.txt', 2),
                                       "HDF5Data: hdf5_data_param source 'list.txt' lists 'd.h5': no dataset "
                                       "'z' (one for each top)"),
        'HDF5 datasets of two lengths': (hdf5.replace('top: "y"', 'top: "y" top: "w"') % ('list.txt', 2),
                                         "HDF5Data: hdf5_data_param source 'list.txt' lists 'd.h5': its datasets "
                                         'differ in length (axis 0): y 4, w 3'),
        'an HDF5 output in no folder': (output % 'no/such/o.h5',
                                        "HDF5Output: hdf5_output_param file_name 'no/such/o.h5': no such folder "
                                        "'no/such' to write it in"),
        'an HDF5 output of one bottom': (output.replace(' bottom: "label"', '') % 'o.h5',
                                         'HDF5Output: takes 2 bottoms, got 1'),
    }
    for name, (layer, message) in cases.items():
        assert _refusal(INPUTS + layer) == "net.prototxt: layer 'x': " + message, name
        (tmp_path / 'net.prototxt').write_text(INPUTS + layer)
        assert _fate_in_caffe(str(tmp_path / 'net.prototxt')) == 'SIGABRT', name
    # (one net at a time writes an HDF5 output file: the second one built aborts, its file open)
    # an HDF5 list naming a file whose name is not UTF-8 (Caffe reads bytes): taken (pass 13, S6)
    os.link(tmp_path / 'd.h5', os.path.join(bytes(tmp_path), b'caf\xe9.h5'))
    (tmp_path / 'latin1_list.txt').write_bytes(b'caf\xe9.h5\n')
    for twin, phases in ((hdf5 % ('list.txt', 2), ('TRAIN', 'TEST')), (output % 'o.h5', ('TEST',)),
                         (hdf5 % ('latin1_list.txt', 2), ('TRAIN',))):
        prototxt.check_net(_net(twin), 'net.prototxt')
        (tmp_path / 'net.prototxt').write_text(INPUTS + twin)
        assert _fate_in_caffe(str(tmp_path / 'net.prototxt'), phases) == 'ok'


@pytest.mark.parametrize('loss', ['CrossEntropyLoss', 'SoftSigmoidCrossEntropyLoss', 'FeatureMimicLoss'])
def test_our_python_losses_without_loss_weight_are_refused(loss):
    """Caffe gives a Python layer's top the weight 0: without loss_weight the
    net trained to the end with a loss of 0 and learnt nothing (pass 19 S2)."""
    layer = ('layer { name: "x" type: "Python" bottom: "score" bottom: "score" top: "l" '
             'python_param { module: "caffe_mlic.layers" layer: "%s" }%s }')
    with pytest.raises(InputError) as e:
        prototxt.check_net(_net(layer % (loss, '')), 'net.prototxt')
    assert str(e.value) == ("net.prototxt: layer 'x': %s: a loss, and Caffe gives a Python layer's top the weight "
                            "0 (the net would learn nothing from it): give the layer loss_weight: 1 (or 0 to only "
                            "watch it)" % loss)
    for weight in (' loss_weight: 1', ' loss_weight: 0'):
        prototxt.check_net(_net(layer % (loss, weight)), 'net.prototxt')


@pytest.mark.parametrize('weight', ['nan', 'inf', '-inf', '1e39'])
def test_a_loss_weight_that_is_not_a_finite_number_is_refused(weight):
    """loss_weight: nan trained to a NaN loss said to be "training diverged;
    lower base_lr" (pass 21 M7)."""
    layer = ('layer { name: "x" type: "Python" bottom: "score" bottom: "score" top: "l" loss_weight: %s '
             'python_param { module: "caffe_mlic.layers" layer: "CrossEntropyLoss" } }' % weight)
    with pytest.raises(InputError, match="layer 'x'.*has loss_weight .*: a loss weight must be a finite number"):
        prototxt.check_net(_net(layer), 'net.prototxt')
