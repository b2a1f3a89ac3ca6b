"""ScasNet's ablations from ScasConfig (issue 25): context cascade / parallel /
none, refinement off (an empty refine), residual correction off; and the
context dilations that fit the pool5 map (scaled by default, a given rate
that only sees padding refused). The release nets themselves are checked
against the released files in test_netspec_reference.py and prototxt/ in
test_netgen.py."""
import json
import os

import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.caffe import prototxt
from caffe_mlic.caffe.shapes import infer_shapes
from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.inference.settings import read_settings
from caffe_mlic.netspec.scasnet import (HEADS, ScasConfig, receptive_fields, resolutions, scasnet_deploy,
                                        scasnet_train)
from tests.netspec.test_scasnet import write_pairs

SMALL = dict(backbone='small', input_size=48, workers=0)
RESNET_SMALL = dict(SMALL, variant='resnet', resnet_blocks=(1, 1, 1, 1), bn_trainable=True)   # frozen: no stats yet


def layers(proto):
    return {layer.name: layer for layer in proto.layer}


def dilation(layer):
    p = layer.convolution_param
    return p.dilation[0] if p.dilation else 1


def learnable_count(net, proto):
    """Learnable values of a caffe.Net: every param blob but BatchNorm's
    statistics and blobs with lr_mult 0 (the frozen BN's Scale)."""
    total = 0
    for layer in proto.layer:
        if layer.name not in net.params or layer.type == 'BatchNorm':
            continue
        for i, blob in enumerate(net.params[layer.name]):
            if i >= len(layer.param) or layer.param[i].lr_mult > 0:
                total += blob.count
    return total


# ---------------------------------------------------------------- structure


def test_defaults_are_the_release():
    cfg = ScasConfig.release()
    assert (cfg.context, cfg.residual_correction, cfg.allow_wide_dilations) == ('cascade', True, False)
    for variant in ('vgg', 'resnet'):
        release = ScasConfig.release(variant=variant)
        assert resolutions(release)['pool5'] == 51 and release.rates == (6, 12, 18, 24)


def test_parallel_sums_the_four_branches_once_then_three_rcs():
    net = layers(scasnet_deploy(ScasConfig.release(context='parallel', **SMALL)))
    sums = [l for l in net.values() if l.type == 'Eltwise' and len(l.bottom) > 2]
    assert len(sums) == 1 and list(sums[0].bottom) == ['fc6_%d_reduce' % i for i in range(1, 5)]
    assert [dilation(net['fc6_%d' % i]) for i in range(1, 5)] == [1, 2, 2, 3]
    for j in (1, 2, 3):
        assert net['fc6_rc%d_1x1_reduce' % j].bottom[0] == ('fc6_sum' if j == 1 else 'fc6_rc%d_merge2_reduce' % (j - 1))
        assert list(net['fc6_rc%d_merge2' % j].bottom) == [net['fc6_rc%d_1x1_reduce' % j].bottom[0],
                                                           'fc6_rc%d_1x1_increase' % j]
    assert 'fc6_rc4_merge2' not in net and not any(n.startswith('fc6_34') for n in net)
    assert net['conv5_3_merge1'].bottom[0] == 'fc6_rc3_merge2_reduce'


def test_cascade_merges_two_at_a_time_widest_first():
    net = layers(scasnet_deploy(ScasConfig.release(**SMALL)))
    assert all(len(l.bottom) == 2 for l in net.values() if l.type == 'Eltwise')
    assert list(net['fc6_34_merge1'].bottom) == ['fc6_4_reduce', 'fc6_3_reduce']
    assert list(net['fc6_234_merge1'].bottom) == ['fc6_34_merge2_reduce', 'fc6_2_reduce']
    assert 'fc6_sum' not in net


def test_none_has_a_plain_fcn_head_and_no_dilated_conv():
    net = layers(scasnet_deploy(ScasConfig.release(context='none', **SMALL)))
    convs = [l for l in net.values() if l.type == 'Convolution']
    # the backbone's conv5 is dilated 2 (DeepLab-v2): nothing after it is
    assert [l.name for l in convs if dilation(l) > 1] == ['conv5_1', 'conv5_2', 'conv5_3']
    assert not any(n.startswith('fc6_') for n in net)
    assert net['fc6'].bottom[0] == 'pool5' and net['fc6'].convolution_param.kernel_size == [3]
    assert net['fc7'].bottom[0] == 'fc6' and net['conv5_3_merge1'].bottom[0] == 'fc7'


@pytest.mark.parametrize('context', ['cascade', 'parallel', 'none'])
def test_no_refinement_upsamples_the_coarse_scores_straight_to_the_input(context):
    cfg = ScasConfig.release(context=context, refine=(), **SMALL)
    net = layers(scasnet_deploy(cfg))
    interps = [l for l in net.values() if l.type == 'Python']
    assert [l.name for l in interps] == ['conv6_interp']
    assert not any(n.startswith(('conv5_3_', 'conv4_3_', 'conv3_3_')) for n in net)
    head = net['conv5_4_fpnrc'].bottom[0]
    assert head == {'cascade': 'fc6_1234_merge2_reduce', 'parallel': 'fc6_rc3_merge2_reduce', 'none': 'fc7'}[context]


@pytest.mark.parametrize('context', ['cascade', 'parallel', 'none'])
def test_without_residual_correction_each_rc_is_a_sum_and_its_merge(context):
    for variant in (SMALL, RESNET_SMALL):
        proto = scasnet_deploy(ScasConfig.release(context=context, residual_correction=False, **variant))
        names = [l.name for l in proto.layer]
        head = names[names.index('pool5'):]        # the backbone's ResNet units have their own
        assert head and not any(n.endswith(('_1x1_reduce', '_3x3', '_1x1_increase', '_merge2')) for n in head)
        net = layers(proto)
        tap = 'conv5_3' if variant is SMALL else 'conv5_1'     # resnet_blocks 1 1 1 1
        assert net[tap + '_merge2_reduce'].bottom[0] == tap + '_merge1'


def test_an_rc_keeps_its_residual_branch_by_default():
    net = layers(scasnet_deploy(ScasConfig.release(**SMALL)))
    assert list(net['conv4_3_merge2'].bottom) == ['conv4_3_merge1', 'conv4_3_1x1_increase']
    assert net['conv4_3_merge2_reduce'].bottom[0] == 'conv4_3_merge2'


# ---------------------------------------------------------------- Caffe builds and runs them

VARIANTS = [dict(context=c, refine=r, residual_correction=rc) for c in ('cascade', 'parallel', 'none')
            for r in (None, ()) for rc in (True, False)]


def _run(caffe, cfg, source):
    """Train net: forward/backward with finite loss and a gradient on the
    first context conv; deploy net: forward, S x S scores."""
    cfg = ScasConfig.release(**dict(cfg, train_list=source, val_list=source,
                                    root_folder=os.path.dirname(source) + '/', batch_size=2))
    train_proto = scasnet_train(cfg)
    net = prototxt.caffe_net(train_proto, 'TRAIN', seed=1)
    loss = net.forward()['loss']
    net.backward()
    assert np.isfinite(loss) and loss > 0
    first = 'fc6' if cfg.context == 'none' else 'fc6_1'
    assert np.abs(net.params[first][0].diff).sum() > 0
    deploy = prototxt.caffe_net(scasnet_deploy(cfg), 'TEST', seed=1)
    assert deploy.forward()['conv6_interp'].shape == (1, cfg.num_classes, cfg.input_size, cfg.input_size)


@pytest.mark.parametrize('variant', VARIANTS, ids=lambda v: '%s-%s-%s' % (
    v['context'], 'refine' if v['refine'] is None else 'norefine', 'rc' if v['residual_correction'] else 'norc'))
def test_every_variant_builds_and_runs_small(caffe, tmp_path, variant):
    source = write_pairs(str(tmp_path / 'd'), [(60, 60)])
    _run(caffe, dict(variant, **SMALL), source)
    _run(caffe, dict(variant, **RESNET_SMALL), source)


@pytest.mark.parametrize('variant', [dict(context='cascade'), dict(context='parallel'), dict(context='none'),
                                     dict(refine=()), dict(residual_correction=False)],
                         ids=['cascade', 'parallel', 'none', 'norefine', 'norc'])
def test_variants_build_and_run_with_the_release_vgg(caffe, tmp_path, variant):
    source = write_pairs(str(tmp_path / 'd'), [(60, 60)])
    _run(caffe, dict(variant, input_size=48, workers=0), source)


@pytest.mark.parametrize('base', [dict(backbone='small'), dict(backbone='release'),
                                  dict(backbone='small', variant='resnet', resnet_blocks=(1, 1, 1, 1))],
                         ids=['small', 'vgg', 'resnet-small'])
def test_parallel_and_cascade_have_the_same_learnable_parameters(caffe, base):
    counts = {}
    for rc in (True, False):
        for context in ('cascade', 'parallel', 'none'):
            proto = scasnet_deploy(ScasConfig.release(context=context, residual_correction=rc, input_size=64, **base))
            counts[context, rc] = learnable_count(prototxt.caffe_net(proto, 'TEST'), proto)
        assert counts['parallel', rc] == counts['cascade', rc] > counts['none', rc]
    assert counts['cascade', True] > counts['cascade', False]


# ---------------------------------------------------------------- dilations


@pytest.mark.parametrize('size, rates', [(400, (6, 12, 18, 24)), (128, (2, 4, 6, 8)), (64, (1, 2, 3, 4)),
                                         (16, (1, 1, 1, 1)), (800, (12, 24, 36, 48))])
def test_default_rates_scale_with_the_pool5_side(size, rates):
    assert ScasConfig.release(input_size=size).rates == rates


def test_pool5_side_and_rates_agree_with_the_inferred_shapes():
    """The side the rates are scaled by is pool5's shape in the built net,
    and every default rate is below it."""
    for size in list(range(16, 140, 9)) + [400, 513]:
        for base in (SMALL, RESNET_SMALL):
            cfg = ScasConfig.release(**dict(base, input_size=size)).validate()
            proto = scasnet_deploy(cfg)
            shapes, _ = infer_shapes(proto, 'TEST', prototxt.in_phase)
            side = resolutions(cfg)['pool5']
            assert shapes['pool5'][2:] == (side, side), (size, cfg.variant)
            net = layers(proto)
            rates = [dilation(net['fc6_%d' % i]) for i in range(1, 5)]
            assert rates == [max(1, round(d * side / 51)) for d in (6, 12, 18, 24)]
            assert all(r < side for r in rates)


def test_a_given_rate_that_sees_only_padding_is_refused_unless_allowed():
    with pytest.raises(UsageError, match=r'dilations: branch fc6_3 has rate 18, but the pool5 map it runs on is '
                                         r'17x17 \(at 128 px\).* the largest useful rate is 16') as e:
        ScasConfig.release(input_size=128, dilations=(6, 12, 18, 24)).validate()
    assert e.value.param == 'dilations'
    ScasConfig.release(input_size=128, dilations=(6, 12, 16, 2)).validate()
    wide = ScasConfig.release(input_size=128, dilations=(6, 12, 18, 24), allow_wide_dilations=True,
                              backbone='small')
    net = layers(scasnet_deploy(wide))
    assert [dilation(net['fc6_%d' % i]) for i in range(1, 5)] == [6, 12, 18, 24]
    with pytest.raises(UsageError, match='they do not go with context none') as e:    # no branches to dilate
        ScasConfig.release(input_size=128, dilations=(6, 12), context='none').validate()
    assert e.value.param == 'dilations'
    ScasConfig.release(input_size=128, context='none').validate()       # the default (None) does
    for bad in ((), (0, 2), (1.5,), 3):
        with pytest.raises(UsageError, match='dilations must be positive integers'):
            ScasConfig.release(dilations=bad).validate()


def test_netgen_refuses_a_wide_rate_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / 'nets'
    args = ['scasnet', 'netgen', '-o', str(out), '--variant', 'vgg', '--backbone', 'small', '--input-size', '128',
            '--dilations', '2', '4', '17']
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert 'branch fc6_3 has rate 17' in err and '17x17' in err and 'largest useful rate is 16' in err, err
    assert not out.exists()
    assert cli.main(args + ['--allow-wide-dilations']) == 0
    assert 'vgg: cascade context, dilations 2 4 17 (pool5 17x17 at 128 px; as given)' in capsys.readouterr().out
    assert json.loads((out / 'deploy.json').read_text())['dilations'] == [2, 4, 17]


def test_netgen_prints_the_rates_and_writes_them_to_deploy_json(tmp_path, capsys):
    out = tmp_path / 'nets'
    assert cli.main(['scasnet', 'netgen', '-o', str(out), '--variant', 'vgg', '--backbone', 'small',
                     '--input-size', '128']) == 0
    printed = capsys.readouterr().out
    assert ("vgg: cascade context, dilations 2 4 6 8 (pool5 17x17 at 128 px; the release's 6 12 18 24 scaled "
            "by 17/51)") in printed
    assert json.loads((out / 'deploy.json').read_text())['dilations'] == [2, 4, 6, 8]
    assert read_settings(str(out / 'deploy.json')).dilations == [2, 4, 6, 8]
    # at 50 px VGG's pool5 is 8x8 and ResNet's 7x7: one list each
    assert cli.main(['scasnet', 'netgen', '-o', str(tmp_path / 'both'), '--backbone', 'small',
                     '--input-size', '50', '--resnet-blocks', '1', '1', '1', '1']) == 0
    assert read_settings(str(tmp_path / 'both' / 'deploy.json')).dilations == {'vgg': [1, 2, 3, 4],
                                                                                'resnet': [1, 2, 2, 3]}
    # the release's rates: no key (the release's deploy.json stays as it was)
    assert cli.main(['scasnet', 'netgen', '-o', str(tmp_path / 'rel'), '--variant', 'vgg']) == 0
    assert "vgg: cascade context, dilations 6 12 18 24 (pool5 51x51 at 400 px; the release's)" in \
        capsys.readouterr().out
    assert 'dilations' not in json.loads((tmp_path / 'rel' / 'deploy.json').read_text())


def test_netgen_flags_and_set_reach_the_variants(tmp_path, capsys):
    out = tmp_path / 'nets'
    assert cli.main(['scasnet', 'netgen', '-o', str(out), '--variant', 'vgg', '--backbone', 'small',
                     '--input-size', '64', '--context', 'parallel', '--no-residual-correction',
                     '--set', 'refine=()']) == 0
    assert 'vgg: parallel context, dilations 1 2 3 4' in capsys.readouterr().out
    net = layers(prototxt.read_net(str(out / 'vgg_scasnet_train.prototxt')))
    assert 'fc6_sum' in net and 'fc6_rc1_1x1_increase' not in net and 'conv5_3_merge1' not in net
    assert cli.main(['scasnet', 'netgen', '-o', str(tmp_path / 'none'), '--variant', 'vgg',
                     '--set', 'context=none']) == 0
    assert 'vgg: no context module (context none)' in capsys.readouterr().out
    assert 'dilations' not in json.loads((tmp_path / 'none' / 'deploy.json').read_text())


@pytest.mark.parametrize('value, ok', [([2, 4, 6, 8], True), ({'vgg': [1, 2], 'resnet': [1, 1]}, True),
                                       ([], False), ([0, 2], False), ([1.5], False), ([True], False), ('2 4', False),
                                       ({'vgg': [0]}, False), ({'': [1]}, False), ({}, False)])
def test_deploy_json_dilations_are_checked(tmp_path, value, ok):
    path = tmp_path / 'deploy.json'
    path.write_text(json.dumps({'num_classes': 6, 'dilations': value}))
    if ok:
        assert read_settings(str(path)).dilations == value
    else:
        with pytest.raises(InputError, match='dilations: must be a list of positive integers'):
            read_settings(str(path))


# ---------------------------------------------------------------- a shallower VGG


def test_fewer_vgg_convs_per_block_shrink_the_receptive_field_and_move_the_taps():
    # DeepLab-v2 VGG16 by hand: 3x3 convs add 2*dilation*jump, 3x3 pools 2*jump;
    # pools 1-3 stride 2, pool4/5 stride 1, conv5 dilated 2: 227 px at pool5.
    # One conv per block: 1+2+2 (conv1_1, pool1) +4+4 +8+8 +16+16 +32+16 = 109.
    assert receptive_fields(ScasConfig.release(input_size=128)) == {'pool5': 227, 'context': 227 + 2 * 8 * 8}
    cfg = ScasConfig.release(vgg_blocks=(1, 1, 1, 1, 1), **dict(SMALL, input_size=128))
    assert receptive_fields(cfg)['pool5'] == 109
    assert receptive_fields(ScasConfig.release(context='none', vgg_blocks=(1, 1, 1, 1, 1)))['context'] == 109 + 16
    assert cfg.taps == ('conv5_1', 'conv4_1', 'conv3_1')
    net = layers(scasnet_deploy(cfg))
    assert 'conv1_2' not in net and 'conv5_1' in net and 'conv3_1_reduce' in net
    assert 'receptive field 109 px at pool5, 237 px after the context, crop 128 px' in cfg.describe_context()
    assert receptive_fields(ScasConfig.release(variant='resnet')) is None


@pytest.mark.parametrize('blocks', [(1, 1, 1, 1), (0, 1, 1, 1, 1), (1, 1, 1, 1, 101), (1, 0, 1, 1, 1),
                                    (1, 1, 0, 0, 1), (0, 0, 0, 0, 0), (1, 1, -1, 0, 0), (1, True, 1, 0, 0)])
def test_vgg_blocks_are_five_counts_from_1_to_100_with_only_trailing_zeros(blocks):
    with pytest.raises(UsageError, match='vgg_blocks') as e:
        ScasConfig.release(vgg_blocks=blocks).validate()
    assert e.value.param == 'vgg_blocks'


def test_trailing_zero_vgg_blocks_drop_those_blocks_and_their_pools(caffe):
    # 1 1 1 0 0: conv1_1 pool1 conv2_1 pool2 conv3_1 pool3, by hand 1+2+2 +4+4 +8+8 = 29 px
    # at pool3 (stride 8, 17x17 at 128 px like pool5 with all blocks): the plain
    # head's fc6 adds 2*8 = 16, the cascade's widest branch (rate 8) 2*8*8 = 128.
    cfg = ScasConfig.release(vgg_blocks=(1, 1, 1, 0, 0), **dict(SMALL, input_size=128)).validate()
    assert receptive_fields(cfg) == {'pool5': 29, 'context': 29 + 128}
    none = ScasConfig.release(vgg_blocks=(1, 1, 1, 0, 0), context='none', refine=(), **dict(SMALL, input_size=128))
    assert receptive_fields(none.validate())['context'] == 29 + 16
    assert resolutions(cfg) == {'conv1_1': 128, 'conv2_1': 65, 'conv3_1': 33, 'pool5': 17}
    assert cfg.rates == (2, 4, 6, 8) and cfg.taps == ('conv3_1', 'conv2_1', 'conv1_1')
    assert 'receptive field 29 px at pool3, 157 px after the context' in cfg.describe_context()
    assert '(pool3 17x17 at 128 px;' in cfg.describe_context()
    proto = scasnet_deploy(cfg)
    net = layers(proto)
    assert 'pool3' in net and not {'conv4_1', 'pool4', 'conv5_1', 'pool5'} & set(net)
    assert net['fc6_1'].bottom == ['pool3']
    shapes, _ = infer_shapes(proto, 'TEST', prototxt.in_phase)
    assert tuple(shapes['pool3'])[2:] == (17, 17)
    assert prototxt.caffe_net(proto, 'TEST', seed=1).forward()['conv6_interp'].shape == (1, 6, 128, 128)
    with pytest.raises(UsageError, match='the pool3 map it runs on is 17x17'):
        ScasConfig.release(vgg_blocks=(1, 1, 1, 0, 0), dilations=(2, 17), **dict(SMALL, input_size=128)).validate()


def test_a_shallow_vgg_builds_and_its_shapes_are_caffes(caffe):
    cfg = ScasConfig.release(vgg_blocks=(1, 1, 1, 1, 1), **SMALL).validate()
    proto = scasnet_deploy(cfg)
    shapes, _ = infer_shapes(proto, 'TEST', prototxt.in_phase)
    net = prototxt.caffe_net(proto, 'TEST', seed=1)
    for name, shape in shapes.items():       # Caffe adds split blobs of its own
        assert tuple(net.blobs[name].data.shape) == tuple(shape), name
    assert net.forward()['conv6_interp'].shape == (1, 6, 48, 48)


def test_dilations_are_bounded_even_when_wide_ones_are_allowed():
    """A rate past MAX_DILATION (1024) only pads; far past it protobuf's
    int32 overflows (a traceback in net_spec)."""
    from caffe_mlic.netspec.scasnet import MAX_DILATION
    assert MAX_DILATION == 1024
    ScasConfig.release(input_size=128, dilations=(2, 1024), allow_wide_dilations=True).validate()
    for rates in ((2, 1025), (2, 2 ** 31 - 1), (2, 10 ** 11)):
        with pytest.raises(UsageError, match=r'dilations must be at most 1024') as e:
            ScasConfig.release(input_size=128, dilations=rates, allow_wide_dilations=True).validate()
        assert e.value.param == 'dilations'


def test_refine_must_be_distinct_layer_names():
    with pytest.raises(UsageError, match='refine names conv4_3 more than once') as e:
        ScasConfig.release(refine=('conv4_3', 'conv4_3')).validate()
    assert e.value.param == 'refine'
    for bad in ((1, 2), 'conv4_3', (None,)):
        with pytest.raises(UsageError, match='refine must be layer names') as e:
            ScasConfig.release(refine=bad).validate()
        assert e.value.param == 'refine'
    assert ScasConfig.release(refine=('conv5_3', 'conv3_3')).validate().taps == ('conv5_3', 'conv3_3')


def test_check_given_refuses_the_other_variants_blocks():
    cfg = ScasConfig.release(variant='resnet', vgg_blocks=(1, 1, 1, 1, 1)).validate()
    with pytest.raises(UsageError, match='vgg_blocks is for the VGG nets only') as e:
        cfg.check_given({'vgg_blocks'}, 'resnet')
    assert e.value.param == 'vgg_blocks'
    cfg.check_given({'vgg_blocks'}, 'both')           # written beside a VGG net: used there
    cfg.check_given(set(), 'resnet')                  # the default, not given: fine
    with pytest.raises(UsageError, match='resnet_blocks is for the ResNet nets only'):
        ScasConfig.release(variant='vgg').check_given({'resnet_blocks'})


@pytest.mark.parametrize('blocks', [(1, 1, 1, 1, 1), (1, 1, 1, 0, 0), (1, 1, 0, 0, 0), (2, 1, 1, 1, 0)])
@pytest.mark.parametrize('head', sorted(HEADS))
def test_every_head_on_every_depth_sums_only_equal_shapes(blocks, head):
    """This Caffe's Eltwise does not check its bottoms' shapes (its CHECK is
    commented out): a sum of 32 and 16 channels read past one and the
    backward pass segfaulted, with the taps finer than the deep map once
    blocks were dropped. Every generated net must sum equal shapes."""
    from caffe_mlic.caffe.shapes import refused_layers
    for rates in (None, (3,)):
        if rates and HEADS[head].get('context') == 'none':
            continue
        cfg = ScasConfig.release(vgg_blocks=blocks, dilations=rates, **dict(SMALL, input_size=128, **HEADS[head]))
        for net, phases in ((scasnet_deploy(cfg.validate()), ['TEST']), (scasnet_train(cfg), ['TRAIN', 'TEST'])):
            for phase in phases:
                assert refused_layers(net, phase, prototxt.in_phase) == [], (blocks, head, rates, phase)
