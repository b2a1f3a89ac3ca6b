"""With release parameters our generated nets ARE the released nets,
field by field, up to the mapping of the fork's custom layers to our Python layers."""
import copy
import json
import os

import pytest
from google.protobuf import text_format

from caffe_mlic import LAYER_MODULE
from tests import prototxt_text
from tests import REPO

# The released nets live beside the checkout (../shared/reference), not in it.
REFERENCE = os.environ.get('MLIC_REFERENCE_DIR') or os.path.join(
    REPO, os.pardir, 'shared', 'reference', 'mlic-kd-wsd')
SCASNET_REFERENCE = os.path.join(REFERENCE, os.pardir, 'scasnet')

if not os.path.isdir(REFERENCE) and not os.environ.get('CI'):
    pytest.skip('the released nets are not at %s (set MLIC_REFERENCE_DIR); CI always has them'
                % os.path.normpath(REFERENCE), allow_module_level=True)


def _data_params(blocks):
    p = prototxt_text.fields(prototxt_text.block(blocks, 'human_att_data_param'))
    t = prototxt_text.fields(prototxt_text.block(blocks, 'transform_param'))
    out = dict(p, mirror=t.get('mirror', False), mean_value=t.get('mean_value', []))
    if 'scale_factors' in out and not isinstance(out['scale_factors'], list):
        out['scale_factors'] = [out['scale_factors']]
    return out


def _roi_params(keys):
    return lambda blocks: {k: v for k, v in prototxt_text.fields(
        prototxt_text.block(blocks, 'roi_pooling_param')).items() if k in keys}


# The fork's custom layer types and the Python layer (and param_str) each maps to.
TYPE_MAP = {
    'HumanAttData': ('MultiLabelProposalData', _data_params),
    'WsdRoigen': ('WsdRoigen', lambda blocks: {}),
    'WsdRoigenSingleScale': ('WsdRoigenSingleScale', _roi_params({'single_scale', 'origin_scale'})),
    'ROIPooling': ('ROIPooling', _roi_params({'pooled_h', 'pooled_w', 'spatial_scale',
                                              'score_scale', 'score_bias'})),
    'Interp': ('Interp', lambda blocks: prototxt_text.fields(prototxt_text.block(blocks, 'interp_param'))),
    'CrossEntropyLoss': ('CrossEntropyLoss', lambda blocks: {}),
}


def _approx_equal(a, b):
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(
            _approx_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str):
        return a == b
    return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))


def _load_reference(name, folder=REFERENCE):
    from caffe.proto import caffe_pb2
    text = open(os.path.join(folder, name + '.prototxt')).read()
    net = caffe_pb2.NetParameter()
    text_format.Merge(text, net, allow_unknown_field=True)  # drops the custom blocks...
    raw_layers = [v for k, v in prototxt_text.parse(text) if k == 'layer']  # ...kept here
    assert len(raw_layers) == len(net.layer)
    return net, raw_layers


def _release_config(reference_layers):
    from caffe_mlic.netspec import MlicConfig
    sources = {}
    for blocks in reference_layers:
        if prototxt_text.fields(blocks).get('type') == 'HumanAttData':
            p = _data_params(blocks)
            phase = prototxt_text.fields(prototxt_text.block(blocks, 'include'))['phase']
            sources[phase] = p['source']
    kw = {}
    if sources:
        kw = dict(train_list=sources['TRAIN'], test_list=sources['TEST'])
    return MlicConfig.release(**kw)


@pytest.mark.parametrize('reference, generator', [
    ('wsddn_train', 'wsddn/wsddn_train'),
    ('wsddn_deploy', 'wsddn/wsddn_deploy'),
    ('train_stage1', 'kd/train_stage1'),
    ('train_stage2', 'kd/train_stage2'),
])
def test_release_nets_equal_reference(caffe, reference, generator):
    from caffe_mlic.netspec import NETS
    ref, raw = _load_reference(reference)
    ours = NETS[generator](_release_config(raw))
    # Our one addition to the released train nets: a DivergenceGuard that
    # stops a net with stock losses when it diverges (layers/guard.py).
    guards = [l for l in ours.layer if l.type == 'Python' and l.python_param.layer == 'DivergenceGuard']
    assert [l.name for l in guards] == (['divergence_guard'] if generator.startswith('kd/train') else [])
    for guard in guards:
        ours.layer.remove(guard)
    if generator.startswith('kd/train'):
        unfreeze_teacher(ours, ref)
    assert_same_net(ours, ref, raw, reference)


def unfreeze_teacher(ours, ref):
    """Our one deliberate deviation from the released distillation nets: the
    teacher copy's weights and biases have lr_mult 0 / decay_mult 0 (the
    release's lr_mult 1 let weight decay move it: netspec/blocks.py,
    FROZEN_TEACHER). Asserts exactly that, then gives them the release's
    multipliers so the rest compares field by field."""
    released = {layer.name: layer.param for layer in ref.layer}
    teacher = [layer for layer in ours.layer if layer.name.startswith(('conv_wsd_', 'fc_wsd_'))]
    assert len(teacher) == 13 + 2 + (2 if any(l.name == 'fc_wsd_8_c' for l in ours.layer) else 0)
    for layer in teacher:
        assert [(p.lr_mult, p.decay_mult) for p in layer.param] == [(0, 0), (0, 0)], layer.name
        assert [p.lr_mult for p in released[layer.name]] != [0, 0], layer.name
        del layer.param[:]
        layer.param.extend(released[layer.name])


def assert_same_net(ours, ref, raw, reference):
    """Our NetParameter equals the released one field by field, up to TYPE_MAP."""
    assert ours.name == ref.name
    assert list(ours.input) == list(ref.input) and list(ours.input_dim) == list(ref.input_dim)
    assert [l.name for l in ours.layer] == [l.name for l in ref.layer]
    for r, o, blocks in zip(ref.layer, ours.layer, raw):
        where = '%s layer %r' % (reference, r.name)
        r, o = copy.deepcopy(r), copy.deepcopy(o)
        if r.type in TYPE_MAP:
            layer, to_params = TYPE_MAP[r.type]
            assert o.type == 'Python', where
            assert (o.python_param.module, o.python_param.layer) == (LAYER_MODULE, layer), where
            expected, got = to_params(blocks), json.loads(o.python_param.param_str)
            assert sorted(got) == sorted(expected), '%s: param keys %s vs %s' % (where, sorted(got),
                                                                                 sorted(expected))
            for key in expected:
                assert _approx_equal(got[key], expected[key]), '%s: %s = %r, reference %r' % (
                    where, key, got[key], expected[key])
            o.ClearField('python_param')
            o.type = r.type
            r.ClearField('transform_param')  # carried in param_str (mirror, mean_value)
        assert text_format.MessageToString(o) == text_format.MessageToString(r), where
        assert o == r, where


def _as_pspnet_bn(net):
    """Our net with each stock BatchNorm (<x>/bn) + Scale (<x>/scale) pair,
    checked to be a frozen BN, folded back into one PSPNet "BN" layer as the
    released net writes it: frozen = use_global_stats, momentum =
    moving_average_fraction, slope / bias fillers = the Scale's fillers."""
    from caffe.proto import caffe_pb2
    layers, folded = list(net.layer), []
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net)
    del out.layer[:]
    i = 0
    while i < len(layers):
        layer = layers[i]
        if layer.type == 'BatchNorm':
            scale = layers[i + 1]
            base = layer.name[:-len('/bn')]
            assert layer.name.endswith('/bn') and scale.type == 'Scale' and scale.name == base + '/scale'
            assert list(layer.bottom) == list(layer.top) == list(scale.bottom) == list(scale.top)
            bn = layer.batch_norm_param
            assert bn.use_global_stats and abs(bn.eps - 1e-5) < 1e-12
            assert scale.scale_param.bias_term
            assert [p.lr_mult for p in layer.param] == [0] * 3 and [p.lr_mult for p in scale.param] == [0] * 2
            folded_bn = out.layer.add(name=layer.name, type='BN', bottom=layer.bottom, top=layer.top)
            p = folded_bn.bn_param
            p.slope_filler.CopyFrom(scale.scale_param.filler)
            p.bias_filler.CopyFrom(scale.scale_param.bias_filler)
            p.frozen = bn.use_global_stats
            p.momentum = bn.moving_average_fraction
            folded.append(layer.name)
            i += 2
            continue
        out.layer.add().CopyFrom(layer)
        i += 1
    return out, folded


@pytest.mark.parametrize('variant, layers, bns', [('vgg', 116, 0), ('resnet', 486, 147)])
def test_scasnet_deploy_equals_the_released_net(caffe, variant, layers, bns):
    from caffe_mlic.netspec.scasnet import ScasConfig, scasnet_deploy
    name = {'vgg': 'VGG_ScasNet', 'resnet': 'ResNet_ScasNet'}[variant]
    ref, raw = _load_reference(name, SCASNET_REFERENCE)
    assert len(ref.layer) == layers
    ours, folded = _as_pspnet_bn(scasnet_deploy(ScasConfig.release(variant=variant)))
    assert len(folded) == bns
    for blocks in raw:        # every released BN is a frozen one, as ours
        if prototxt_text.fields(blocks).get('type') == 'BN':
            assert prototxt_text.fields(prototxt_text.block(blocks, 'bn_param'))['frozen'] is True
    assert_same_net(ours, ref, raw, name)


@pytest.mark.parametrize('size', [400, 320, 513])
def test_scasnet_interp_sizes_follow_the_input_size(caffe, size):
    """The Interp sizes come from the input size (the released files are
    written for 400): the small nets run at other sizes and give S x S scores."""
    from caffe_mlic.caffe import prototxt
    from caffe_mlic.netspec.scasnet import ScasConfig, scasnet_deploy
    for variant in ('vgg', 'resnet'):
        cfg = ScasConfig.release(variant=variant, backbone='small', input_size=size,
                                 resnet_blocks=(1, 1, 2, 1))
        net = prototxt.caffe_net(scasnet_deploy(cfg), 'TEST', seed=0)
        net.forward()
        assert net.blobs['conv6_interp'].data.shape == (1, 6, size, size)
