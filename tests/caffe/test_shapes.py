"""The blob shapes worked out before Caffe builds a net equal the ones Caffe
builds, and a net whose blobs Caffe cannot hold is refused, naming the layer
(Caffe would abort in Blob::Reshape)."""
import json
import os

import pytest

from caffe_mlic.caffe import prototxt, shapes
from caffe_mlic.errors import InputError
from caffe_mlic.netspec import netgen
from tests import REPO
from tests.tinydata import tiny_mlic_config, write_tiny_dataset


@pytest.fixture(scope='module')
def tiny_nets(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    listing = write_tiny_dataset(str(root / 'images'), num_classes=3, bbox_num=8, size=96)
    netgen.generate(str(root / 'nets'), tiny_mlic_config(listing))
    return root / 'nets'


def _compare(path, phase):
    net = prototxt.read_net(str(path))
    inferred, _ = shapes.infer_shapes(net, phase, prototxt.in_phase)
    built = prototxt.caffe_net(str(path), phase)
    known = {name: shape for name, shape in inferred.items() if shape is not None}
    assert len(known) >= len(built.blobs) // 2, 'too few shapes worked out to mean anything'
    for name, shape in known.items():
        assert tuple(built.blobs[name].shape) == shape, (path, name)
    return known


@pytest.mark.parametrize('name, phase', [('wsddn/wsddn_train', 'TEST'), ('kd/train_stage1', 'TEST'),
                                         ('kd/train_stage2', 'TEST'), ('kd/student_deploy', 'TEST'),
                                         ('wsddn/wsddn_deploy', 'TEST')])
def test_shapes_equal_caffes_on_the_tiny_mlic_nets(tiny_nets, name, phase):
    _compare(tiny_nets / (name + '.prototxt'), phase)


@pytest.mark.parametrize('name', ['scasnet/vgg_scasnet_deploy', 'kd/student_deploy'])
def test_shapes_equal_caffes_on_release_deploy_nets(name):
    known = _compare(os.path.join(REPO, 'prototxt', name + '.prototxt'), 'TEST')
    assert len(known) > 20


def test_a_data_size_that_blows_up_a_later_layer_is_refused_naming_it(tiny_nets):
    """new_width 1e6 for the teacher: the data top fits (3 x 96 x 1e6 < 2^31), conv1 (more
    channels) does not; Caffe would abort there."""
    path = tiny_nets / 'wsddn' / 'wsddn_train.prototxt'
    net = prototxt.read_net(str(path))
    for layer in net.layer:
        if layer.type == 'Python' and layer.python_param.layer == 'MultiLabelProposalData':
            params = prototxt.python_params(layer)
            params.update(new_width=10 ** 6, new_height=96, batch_size=2, scale_factors=[1.0])
            layer.python_param.param_str = json.dumps(params)
    data = shapes.infer_shapes(net, 'TEST', prototxt.in_phase)[0]['data']
    assert shapes._count(data) < shapes.BLOB_LIMIT
    with pytest.raises(InputError, match=r"big.prototxt: layer '\w+' \(TEST\): (top '\w+'|its im2col "
                                         r"buffer) would be .* more than a Caffe blob holds"):
        prototxt.check_net(net, 'big.prototxt', 'TEST')


def test_a_layer_type_this_caffe_lacks_is_named_not_a_caffe_abort(tmp_path):
    """The layer factory would kill the process (a glog FATAL, rc 134)."""
    path = tmp_path / 'bogus.prototxt'
    path.write_text('name: "b"\n'
                    'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }\n'
                    'layer { name: "weird" type: "BatchReindex2" bottom: "x" top: "y" }\n')
    with pytest.raises(InputError, match=r"bogus.prototxt: layer 'weird': BatchReindex2: unknown layer type "
                                         r"'BatchReindex2' \(a layer of a Caffe fork\?"):
        prototxt.caffe_net(str(path), 'TEST')
    # a stock layer this build leaves out (USE_OPENCV off) is named as such, not as a fork's
    path.write_text('name: "b"\nlayer { name: "img" type: "ImageData" top: "x" top: "y" '
                    'image_data_param { source: "list.txt" batch_size: 1 } }\n')
    with pytest.raises(InputError, match=r"layer 'img': ImageData: ImageData is a stock Caffe layer that this "
                                         r"Caffe was built without \(it needs OpenCV"):
        prototxt.caffe_net(str(path), 'TEST')


# ---------------------------------------------------------------- parameter shapes

ZOO = '''name: "zoo"
layer { name: "in" type: "Input" top: "x" top: "ids" top: "s" top: "v"
        input_param { shape { dim: 2 dim: 6 dim: 5 dim: 7 } shape { dim: 2 dim: 3 } shape { dim: 6 }
                      shape { dim: 2 dim: 3 dim: 4 dim: 5 dim: 6 } } }
layer { name: "conv_g" type: "Convolution" bottom: "x" top: "c1"
        convolution_param { num_output: 4 group: 2 kernel_h: 3 kernel_w: 2 bias_term: false } }
layer { name: "deconv" type: "Deconvolution" bottom: "c1" top: "d1"
        convolution_param { num_output: 6 group: 2 kernel_size: 3 stride: 2 } }
layer { name: "conv3d" type: "Convolution" bottom: "v" top: "c3"
        convolution_param { num_output: 2 kernel_size: 1 kernel_size: 2 kernel_size: 3 } }
layer { name: "ip_t" type: "InnerProduct" bottom: "d1" top: "f1"
        inner_product_param { num_output: 5 transpose: true axis: 2 } }
layer { name: "ip" type: "InnerProduct" bottom: "f1" top: "f2" inner_product_param { num_output: 3 axis: -1 } }
layer { name: "bn" type: "BatchNorm" bottom: "x" top: "bn" }
layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" scale_param { axis: 1 num_axes: 2 bias_term: true } }
layer { name: "sc2" type: "Scale" bottom: "x" bottom: "s" top: "sc2" scale_param { axis: 1 bias_term: true } }
layer { name: "bias" type: "Bias" bottom: "x" top: "b1" bias_param { axis: -2 num_axes: -1 } }
layer { name: "prelu" type: "PReLU" bottom: "x" top: "p1" }
layer { name: "prelu_s" type: "PReLU" bottom: "x" top: "p2" prelu_param { channel_shared: true } }
layer { name: "embed" type: "Embed" bottom: "ids" top: "e1" embed_param { input_dim: 10 num_output: 4 } }
layer { name: "param" type: "Parameter" top: "pp" parameter_param { shape { dim: 3 dim: 2 } } }
layer { name: "ip_a" type: "InnerProduct" bottom: "x" top: "a" param { name: "w" } param { name: "b" }
        inner_product_param { num_output: 2 } }
layer { name: "ip_b" type: "InnerProduct" bottom: "x" top: "b" param { name: "w" } param { name: "b2" }
        inner_product_param { num_output: 2 } }
layer { name: "relu" type: "ReLU" bottom: "a" top: "a" }
'''


def _compare_params(net, built, phase='TEST', least=1):
    """Every parameter blob worked out equals the built net's (shape, and
    whether it is a shared one), and the learnable blobs are snapshots'."""
    from caffe_mlic.caffe.weights import net_wants
    from caffe_mlic.engine import snapshots
    inferred = shapes.infer_param_shapes(net, phase, prototxt.in_phase)
    wants = dict(net_wants(built))
    # (Caffe adds split layers and turns net-level inputs into an Input layer: no parameters)
    assert all(not wants[name] for name in set(wants) - {n for n, _ in inferred})
    known = 0
    for name, blobs in inferred:
        assert blobs is not None, name
        assert len(blobs) == len(wants[name]), name
        for i, (blob, want) in enumerate(zip(blobs, wants[name])):
            assert blob.shared == want.shared, name
            if blob.shape is not None:
                assert blob.shape == tuple(built.params[name][i].data.shape), (name, i, blob.shape)
                known += 1
    assert known >= least
    learnable = shapes.learnable_shapes(inferred)
    expected = snapshots.learnable_shapes(built, net)
    assert len(learnable) == len(expected)
    assert all(a is None or a == tuple(b) for a, b in zip(learnable, expected))
    return known


def test_param_shapes_equal_caffes_for_every_layer_type(tmp_path):
    """Convolution (groups, kernel_h/w, 3-D), Deconvolution, InnerProduct
    (transpose, axis), BatchNorm, Scale (one or two bottoms, bias), Bias,
    PReLU, Embed, Parameter, shared blobs: as Caffe's LayerSetUp makes them."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = text_format.Merge(ZOO, caffe_pb2.NetParameter())
    built = prototxt.caffe_net(ZOO, 'TEST')
    known = _compare_params(net, built, least=20)
    inferred = dict(shapes.infer_param_shapes(net, 'TEST', prototxt.in_phase))
    assert inferred['deconv'][0].shape == (4, 3, 3, 3) and inferred['conv3d'][0].shape == (2, 3, 1, 2, 3)
    assert inferred['ip_t'][0].shape == (91, 5) and inferred['sc'][1].shape == (6, 5)
    assert inferred['prelu_s'][0].shape == () and [b.shared for b in inferred['ip_b']] == [True, False]
    assert known == sum(len(b) for b in inferred.values())


@pytest.mark.parametrize('name', ['wsddn/wsddn_train', 'kd/train_stage1', 'kd/train_stage2',
                                  'kd/student_baseline', 'kd/student_deploy', 'wsddn/wsddn_deploy'])
@pytest.mark.parametrize('phase', ['TRAIN', 'TEST'])
def test_param_shapes_equal_caffes_on_the_tiny_mlic_nets(tiny_nets, name, phase):
    path = str(tiny_nets / (name + '.prototxt'))
    _compare_params(prototxt.read_net(path), prototxt.caffe_net(path, phase), phase, least=20)


@pytest.mark.parametrize('name', ['scasnet/vgg_scasnet_deploy', 'kd/student_deploy', 'wsddn/wsddn_deploy'])
def test_param_shapes_equal_caffes_on_release_deploy_nets(name):
    path = os.path.join(REPO, 'prototxt', name + '.prototxt')
    _compare_params(prototxt.read_net(path), prototxt.caffe_net(path, 'TEST'), least=30)


def test_param_shapes_equal_caffes_on_a_small_resnet_scasnet(tmp_path):
    """BatchNorm + Scale after every conv, as the ResNet variant writes them."""
    from caffe_mlic.netspec.scasnet import ScasConfig, scasnet_deploy
    net = scasnet_deploy(ScasConfig.release(variant='resnet', backbone='small', input_size=64))
    text = prototxt.to_text(net)
    assert _compare_params(net, prototxt.caffe_net(text, 'TEST'), least=100)


def test_an_unknown_layer_leaves_its_blobs_unknown_not_guessed():
    """Another module's Python layer may learn blobs: not known here, and so
    neither is the solver's history count; what follows it is unknown too."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = text_format.Merge(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
        'layer { name: "py" type: "Python" bottom: "x" top: "y" python_param { module: "m" layer: "L" } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "y" top: "z" inner_product_param { num_output: 4 } }\n',
        caffe_pb2.NetParameter())
    params = dict(shapes.infer_param_shapes(net, 'TEST', prototxt.in_phase))
    assert params['py'] is None and params['in'] == []
    assert [b.shape for b in params['fc']] == [None, (4,)]
    assert shapes.learnable_shapes(list(params.items())) is None


def test_a_layer_kept_or_dropped_by_stage_or_level_is_unknown():
    """in_phase follows phase rules only: a layer that a stage or level may
    drop is not counted (a solver state's history count would be wrong)."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = text_format.Merge(
        'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 2 } } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "z" inner_product_param { num_output: 4 } }\n'
        'layer { name: "fc2" type: "InnerProduct" bottom: "x" top: "y" include { stage: "deploy" } '
        'inner_product_param { num_output: 4 } }\n', caffe_pb2.NetParameter())
    params = shapes.infer_param_shapes(net, 'TEST', prototxt.in_phase)
    assert dict(params)['fc2'] is None and [b.shape for b in dict(params)['fc']] == [(4, 2), (4,)]
    assert shapes.learnable_shapes(params) is None


ELTWISE = '''layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "a" type: "Convolution" bottom: "x" top: "a" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "b" type: "Convolution" bottom: "x" top: "b" convolution_param { num_output: %d kernel_size: 1 } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "s" }
'''


def test_an_eltwise_of_unequal_shapes_is_refused_naming_it_not_a_segfault():
    """This Caffe's EltwiseLayer::Reshape has its shape CHECK commented out:
    summing 4 and 2 channels reads past the smaller bottom, and the backward
    pass copies 4 channels' diff into it (a segfault in training)."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    bad = text_format.Merge(ELTWISE % 2, caffe_pb2.NetParameter())
    with pytest.raises(InputError) as e:
        prototxt.check_net(bad, 'sum.prototxt', 'TEST')
    assert str(e.value) == ("sum.prototxt: layer 'sum' (TEST): Eltwise: bottoms must hold as many values, "
                            "got a 2 x 4 x 8 x 8, b 2 x 2 x 8 x 8")
    prototxt.check_net(text_format.Merge(ELTWISE % 4, caffe_pb2.NetParameter()), 'sum.prototxt', 'TEST')


@pytest.mark.parametrize('layer, message', [
    ('bottom: "a" bottom: "b" top: "s" eltwise_param { coeff: 1 }',
     'eltwise_param has 1 coeff for 2 bottoms (one per bottom, or none)'),
    ('bottom: "a" top: "s"', 'takes 2 or more bottoms, got 1'),
    ('bottom: "a" bottom: "b" top: "s" eltwise_param { operation: PROD coeff: 1 coeff: 2 }',
     'eltwise_param coeff is for operation SUM, not PROD'),
])
def test_eltwise_layers_caffe_would_abort_on_are_named(layer, message):
    """EltwiseLayer::LayerSetUp CHECKs its coefficients and Layer::CheckBlobCounts
    its bottoms: a "Check failed" abort of the whole process otherwise."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    text = (ELTWISE % 4).replace('bottom: "a" bottom: "b" top: "s"', layer)
    with pytest.raises(InputError) as e:
        prototxt.check_net(text_format.Merge(text, caffe_pb2.NetParameter()), 'e.prototxt', 'TEST')
    assert str(e.value) == "e.prototxt: layer 'sum': Eltwise: %s" % message


@pytest.mark.parametrize('layer, message', [
    ('layer { name: "r" type: "ReLU" bottom: "a" bottom: "b" top: "r" }', "'r': ReLU: takes 1 bottom, got 2"),
    ('layer { name: "c" type: "Crop" bottom: "a" top: "c" }', "'c': Crop: takes 2 bottoms, got 1"),
    ('layer { name: "s" type: "Scale" bottom: "a" bottom: "b" bottom: "x" top: "t" }',
     "'s': Scale: takes 1 to 2 bottoms, got 3"),
    ('layer { name: "k" type: "Convolution" bottom: "a" bottom: "b" top: "k" '
     'convolution_param { num_output: 4 kernel_size: 1 } }',
     "'k': Convolution: needs one top per bottom, got 2 bottoms and 1 tops"),
])
def test_bottom_counts_caffe_would_abort_on_are_named(layer, message):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    text = ELTWISE % 4 + layer
    with pytest.raises(InputError) as e:
        prototxt.check_net(text_format.Merge(text, caffe_pb2.NetParameter()), 'e.prototxt', 'TEST')
    assert str(e.value) == 'e.prototxt: layer %s' % message


def test_caffe_command_refuses_a_malformed_eltwise_without_an_abort(tmp_path):
    import subprocess
    import sys
    (tmp_path / 'e.prototxt').write_text((ELTWISE % 4).replace('top: "s"', 'top: "s" eltwise_param { coeff: 1 }'))
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'caffe', 'test', '-model', 'e.prototxt',
                          '-iterations', '1'], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert 'Check failed' not in res.stderr and 'Traceback' not in res.stderr
    assert res.stderr.strip().splitlines()[-1].endswith(
        "e.prototxt: layer 'sum': Eltwise: eltwise_param has 1 coeff for 2 bottoms (one per bottom, or none)")


@pytest.mark.parametrize('layer, message', [
    ('layer { name: "r" type: "ReLU" bottom: "a" top: "r" top: "r2" }', "'r': ReLU: takes 1 top, got 2"),
    ('layer { name: "p" type: "Pooling" bottom: "a" top: "p" top: "m" pooling_param { pool: AVE kernel_size: 2 } }',
     "'p': Pooling: takes 1 top, got 2"),
    ('layer { name: "s" type: "Split" bottom: "a" }', "'s': Split: takes 1 or more tops, got 0"),
    ('layer { name: "l" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "l" top: "l2" }',
     "'l': EuclideanLoss: takes 0 to 1 tops, got 2"),
])
def test_top_counts_caffe_would_abort_on_are_named(layer, message):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    with pytest.raises(InputError) as e:
        prototxt.check_net(text_format.Merge(ELTWISE % 4 + layer, caffe_pb2.NetParameter()), 'e.prototxt', 'TEST')
    assert str(e.value) == 'e.prototxt: layer %s' % message


def test_blob_counts_caffe_takes_are_not_refused():
    """MAX pooling's mask top, a loss without a top (Caffe adds it), a Slice
    in two: accepted, as Caffe accepts them."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    text = ELTWISE % 4 + '''
layer { name: "p" type: "Pooling" bottom: "a" top: "p" top: "m" pooling_param { pool: MAX kernel_size: 2 } }
layer { name: "l" type: "EuclideanLoss" bottom: "a" bottom: "b" }
layer { name: "c" type: "Slice" bottom: "s" top: "c1" top: "c2" slice_param { axis: 1 } }
'''
    prototxt.check_net(text_format.Merge(text, caffe_pb2.NetParameter()), 'e.prototxt', 'TEST')


@pytest.mark.parametrize('layer, message', [
    ('layer { name: "r" type: "ReLU" bottom: "aa" top: "r" }',
     "layer 'r' (TEST): bottom 'aa' is not a top of an earlier layer"),
    ('layer { name: "r" type: "ReLU" bottom: "b" top: "a" }',
     "layer 'r' (TEST): top 'a' is already an earlier layer's (a layer may reuse a name only in place, "
     "as its bottom at the same position)"),
])
def test_blobs_no_layer_gives_or_two_layers_give_are_named(layer, message):
    """Caffe's "Unknown bottom blob" (a misspelt name) and "produced by
    multiple sources" are aborts; in place (ReLU a -> a) is fine."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    with pytest.raises(InputError) as e:
        prototxt.check_net(text_format.Merge(ELTWISE % 4 + layer, caffe_pb2.NetParameter()), 'e.prototxt', 'TEST')
    assert str(e.value) == 'e.prototxt: ' + message
    in_place = ELTWISE % 4 + 'layer { name: "r" type: "ReLU" bottom: "a" top: "a" }'
    prototxt.check_net(text_format.Merge(in_place, caffe_pb2.NetParameter()), 'e.prototxt', 'TEST')


@pytest.mark.parametrize('layer, message', [
    ('layer { name: "l" type: "SoftmaxWithLoss" bottom: "a" bottom: "b" top: "l" top: "p" '
     'loss_weight: 1 loss_weight: 0 }', "'l': SoftmaxWithLoss: takes 0 to 1 tops, got 2"),
    ('layer { name: "l" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "l" loss_weight: 1 loss_weight: 2 }',
     "'l': EuclideanLoss: has 2 loss_weight for 1 tops (one per top, or none)"),
    ('layer { name: "c" type: "Slice" bottom: "s" top: "c1" top: "c2" top: "c3" '
     'slice_param { axis: 1 slice_point: 2 } }',
     "'c': Slice: slice_param has 1 slice_point for 3 tops (one fewer than the tops, or none)"),
    ('layer { name: "q" type: "Silence" bottom: "s" top: "q" }', "'q': Silence: takes 0 tops, got 1"),
])
def test_loss_weights_and_slice_points_caffe_would_abort_on_are_named(layer, message):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    with pytest.raises(InputError) as e:
        prototxt.check_net(text_format.Merge(ELTWISE % 4 + layer, caffe_pb2.NetParameter()), 'e.prototxt', 'TEST')
    assert str(e.value) == 'e.prototxt: layer %s' % message


def test_two_layers_with_weights_of_one_name_are_refused():
    """Caffe copies a caffemodel by layer name into the last of them: the
    other kept its fillers, and classify and detect gave other scores with
    exit 0 (pass 38b S4). Layers without weights may share a name (the
    distillation nets' ReLUs do)."""
    text = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
            'layer { name: "conv" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 '
            'kernel_size: 3 } }\n'
            'layer { name: "relu" type: "ReLU" bottom: "c" top: "c" }\n'
            'layer { name: "conv" type: "Convolution" bottom: "c" top: "d" convolution_param { num_output: 2 '
            'kernel_size: 3 } }\n'
            'layer { name: "relu" type: "ReLU" bottom: "d" top: "d" }\n')
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = text_format.Parse(text, caffe_pb2.NetParameter())
    with pytest.raises(InputError) as e:
        prototxt.check_net(net, 'dup.prototxt', phase='TEST')
    assert str(e.value) == ("dup.prototxt: layer 'conv' (TEST): another layer with weights has this name: weights "
                            "from a caffemodel would reach only the last of them")
    net.layer[3].name = 'conv2'
    prototxt.check_net(net, 'dup.prototxt', phase='TEST')
    # a layer without weights named as one with them (pass 39b S4: surgery wrote a file classify refused,
    # and Caffe's copy aborts where the last of the name has no blobs)
    for renamed in (2, 4):
        net.layer[renamed].name = net.layer[renamed - 1].name
        with pytest.raises(InputError) as e:
            prototxt.check_net(net, 'dup.prototxt', phase='TEST')
        assert str(e.value) == ("dup.prototxt: layer '%s' (TEST): a layer with weights and a ReLU layer have this "
                                "name: weights from a caffemodel are copied by name, into the last of them"
                                % net.layer[renamed].name)
        net.layer[renamed].name = 'relu'
