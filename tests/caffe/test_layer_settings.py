"""Settings of stock layers that Caffe CHECKs when it builds a net (a
"Check failed" abort of the whole process, or a division by zero) are
refused before Caffe sees them, naming the file, the layer and the setting.

Each case comes with a twin that differs only in the setting at fault. Real
Caffe, in a forked child, is shown to die on the case and to build and run
the twin: the check is needed, and it refuses nothing Caffe takes."""
import faulthandler
import os
import signal

import pytest

from caffe_mlic.caffe import prototxt
from caffe_mlic.errors import InputError

INPUTS = '''name: "settings"
layer { name: "in" type: "Input" top: "data" top: "label" top: "score"
  input_param { shape { dim: 2 dim: 4 dim: 6 dim: 6 } shape { dim: 2 } shape { dim: 2 dim: 4 } } }
'''


def _layer(kind, bottoms, params, tops=('y',)):
    return 'layer { name: "x" type: "%s" %s %s %s }\n' % (
        kind, ' '.join('bottom: "%s"' % b for b in bottoms), ' '.join('top: "%s"' % t for t in tops), params)


def _conv(params):
    return _layer('Convolution', ['data'], 'convolution_param { num_output: 4 kernel_size: 3 %s }' % params)


# id: (layer at fault, its twin, the message after "layer 'x': TYPE: ",
#      what Caffe does with it: 'abort', or 'reads past' a blob unchecked)
CASES = {
    'conv group': (_conv('group: 3'), _conv('group: 2'),
                   'convolution_param group 3 must divide the bottom channels (4) and num_output (4)', 'abort'),
    'conv group 0': (_conv('group: 0'), _conv('group: 1'), 'group must be >= 1, got 0', 'abort'),
    'conv dilation wider than the map': (
        _conv('dilation: 5'), _conv('dilation: 2'),
        'its kernel (3 with dilation 5: 11 px) is wider than the padded input height (6 + 2 x 0)', 'abort'),
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
    'input of a negative size': (_layer('Input', [], 'input_param { shape { dim: 2 dim: -3 } }'),
                                 _layer('Input', [], 'input_param { shape { dim: 2 dim: 3 } }'),
                                 'input_param shape [2, -3]: a negative size', 'abort'),
}


def _net(layer):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    return text_format.Merge(INPUTS + layer, caffe_pb2.NetParameter())


@pytest.mark.parametrize('case', list(CASES))
def test_a_setting_caffe_aborts_on_is_refused_naming_layer_and_setting(case):
    bad, twin, message, _ = CASES[case]
    kind = bad.split('type: "')[1].split('"')[0]
    with pytest.raises(InputError) as e:
        prototxt.check_net(_net(bad), 'net.prototxt')
    assert str(e.value) == "net.prototxt: layer 'x': %s: %s" % (kind, message)
    prototxt.check_net(_net(twin), 'net.prototxt')


def _fate_in_caffe(path):
    """How real Caffe ends building and running the nets at ``path``
    (TRAIN and TEST, forward and backward) in a forked child: 'ok', or the signal's name."""
    import caffe
    pid = os.fork()
    if pid == 0:                 # the child: Caffe may abort it
        try:
            signal.alarm(60)
            faulthandler.disable()      # (pytest's dumps every death to its own copy of stderr)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            caffe.set_mode_cpu()
            for phase in (caffe.TRAIN, caffe.TEST):     # (Dropout acts in TRAIN only)
                net = caffe.Net(path, phase)
                net.forward()
                net.backward()
            os._exit(0)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return 'ok' if os.WEXITSTATUS(status) == 0 else 'exit %d' % os.WEXITSTATUS(status)


@pytest.mark.parametrize('case', [case for case, (_, _, _, fate) in CASES.items() if fate == 'abort'])
def test_caffe_dies_on_each_refused_setting_and_runs_its_twin(case, tmp_path):
    """The reason for each check: without it Caffe kills the process."""
    bad, twin, _, _ = CASES[case]
    (tmp_path / 'bad.prototxt').write_text(INPUTS + bad)
    (tmp_path / 'twin.prototxt').write_text(INPUTS + twin)
    assert _fate_in_caffe(str(tmp_path / 'twin.prototxt')) == 'ok'
    assert _fate_in_caffe(str(tmp_path / 'bad.prototxt')) in ('SIGABRT', 'SIGFPE', 'SIGSEGV')


def test_the_generated_nets_have_no_setting_caffe_refuses():
    """No false alarm on the nets we ship (TRAIN and TEST)."""
    import glob
    from tests import REPO
    nets = [path for path in glob.glob(os.path.join(REPO, 'prototxt', '**', '*.prototxt'), recursive=True)
            if 'solver' not in os.path.basename(path) and len(prototxt.read_net(path).layer)]
    assert len(nets) >= 10
    for path in nets:
        prototxt.check_net(prototxt.read_net(path), path)
