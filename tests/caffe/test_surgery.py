"""`caffe-mlic surgery` for ScasNet: PSPNet caffemodels (BN: slope, bias,
mean, variance) into the ResNet variant's BatchNorm + Scale, DeepLab-v2 (and
old V1-format DeepLab) caffemodels into the VGG variant. The caffemodels are
written here in those layouts, for small ScasNets."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from caffe_mlic.caffe import prototxt
from caffe_mlic.caffe import surgery
from caffe_mlic.netspec.scasnet import ScasConfig, scasnet_deploy

EPS = 1e-5
SIZE = 32
PSP_EXTRA = ('conv5_4', 'conv5_4/bn', 'conv6')     # PSPNet layers ScasNet has not


def run_surgery(net, sources, out, *extra):
    args = ['surgery', '--net', net, '-o', out] + [a for s in sources for a in ('--from', s)]
    return subprocess.run([sys.executable, '-m', 'caffe_mlic.cli'] + [str(a) for a in args + list(extra)],
                          capture_output=True, text=True, timeout=180,
                          env=dict(os.environ, GLOG_minloglevel='2'))


def summary(stdout):
    """(copied, kept, mismatched, unused) of the command's last line."""
    m = re.search(r'(\d+) copied, (\d+) kept, (\d+) mismatched, (\d+) source layers unused', stdout)
    assert m, stdout
    return tuple(int(g) for g in m.groups())


def blob(pb, array, v1=False):
    """A BlobProto of ``array``: shape dims, or V1's num/channels/height/width."""
    b = pb.BlobProto()
    if v1:
        b.num, b.channels, b.height, b.width = (1,) * (4 - array.ndim) + array.shape
    else:
        b.shape.dim.extend(array.shape)
    b.data.extend(array.ravel().tolist())
    return b


def write_model(path, layers, v1=False):
    """A caffemodel of [(name, type, [arrays])]: V2 ``layer`` entries (any type
    string), or V1 ``layers`` (type: a V1 enum name)."""
    from caffe.proto import caffe_pb2 as pb
    net = pb.NetParameter(name='source')
    for name, kind, arrays in layers:
        layer = net.layers.add() if v1 else net.layer.add()
        layer.name = name
        layer.type = getattr(pb.V1LayerParameter, kind) if v1 else kind
        layer.blobs.extend(blob(pb, a.astype(np.float32), v1) for a in arrays)
    with open(path, 'wb') as f:
        f.write(net.SerializeToString())
    return path


def psp_bn(rng, channels):
    """PSPNet BN blobs: slope, bias, mean, variance (> 0), each 1xCx1x1."""
    slope, bias, mean = (rng.uniform(-2, 2, (1, channels, 1, 1)) for _ in range(3))
    return [slope, bias, mean, rng.uniform(0.2, 3, (1, channels, 1, 1))]


def pspnet_layers(net, rng, upto='fc6_1', channels=None):
    """PSPNet-layout layers for caffe.Net ``net``'s backbone (its layers before
    ``upto``): convs by name, each <conv>/bn a 4-blob BN (``channels``: other
    widths for some), plus PSPNet layers that ScasNet lacks."""
    channels = channels or {}
    layers = []
    for name in list(net.params)[:list(net.params).index(upto)]:
        shapes = [b.data.shape for b in net.params[name]]
        if name.endswith('/bn'):
            layers.append((name, 'BN', psp_bn(rng, channels.get(name, shapes[0][0]))))
        elif not name.endswith('/scale'):
            layers.append((name, 'Convolution', [rng.standard_normal(s) for s in shapes]))
    return layers + [('conv5_4', 'Convolution', [rng.standard_normal((3, 4, 3, 3))]),
                     ('conv5_4/bn', 'BN', psp_bn(rng, 3)),
                     ('conv6', 'Convolution', [rng.standard_normal((6, 3, 1, 1)), np.zeros(6)])]


@pytest.fixture(scope='module')
def nets(tmp_path_factory, caffe):
    """Tiny deploy nets of both variants (32 x 32 input), as prototxt files."""
    root = tmp_path_factory.mktemp('scas_surgery')
    resnet = ScasConfig.release(variant='resnet', backbone='small', resnet_blocks=(1, 1, 1, 1),
                                input_size=SIZE)
    vgg = ScasConfig.release(backbone='small', input_size=SIZE)
    return {'root': root,
            'resnet': prototxt.write(str(root / 'resnet.prototxt'), scasnet_deploy(resnet)),
            'vgg': prototxt.write(str(root / 'vgg.prototxt'), scasnet_deploy(vgg))}


@pytest.fixture(scope='module')
def pspnet(nets):
    """A PSPNet caffemodel for the small ResNet ScasNet's backbone, its layers and
    the result of the surgery: (layers, stdout, caffemodel)."""
    net = prototxt.caffe_net(nets['resnet'], 'TEST')
    layers = pspnet_layers(net, np.random.default_rng(1))
    source = write_model(str(nets['root'] / 'psp.caffemodel'), layers)
    out = nets['root'] / 'scas_init.caffemodel'
    res = run_surgery(nets['resnet'], ['pspnet:' + source], out)
    assert res.returncode == 0, res.stderr
    return layers, res.stdout, str(out)


def test_pspnet_bn_fills_batchnorm_and_scale(caffe, nets, pspnet):
    layers, stdout, out = pspnet
    net = prototxt.caffe_net(nets['resnet'], 'TEST', weights=out)
    bns = [(name, arrays) for name, kind, arrays in layers if kind == 'BN' and name in net.params]
    assert len(bns) == 19             # the stem 3, four units of 4 (reduce, 3x3, increase, proj)
    for name, (slope, bias, mean, variance) in bns:
        conv = name[:-len('/bn')]
        bn, scale = net.params[name], net.params[conv + '/scale']
        np.testing.assert_array_equal(bn[0].data, mean.ravel().astype(np.float32), err_msg=name)
        np.testing.assert_array_equal(bn[1].data, variance.ravel().astype(np.float32), err_msg=name)
        np.testing.assert_array_equal(bn[2].data, [1.0], err_msg=name)
        np.testing.assert_array_equal(scale[0].data, slope.ravel().astype(np.float32), err_msg=name)
        np.testing.assert_array_equal(scale[1].data, bias.ravel().astype(np.float32), err_msg=name)
    convs = {name: arrays for name, kind, arrays in layers if kind == 'Convolution'}
    np.testing.assert_array_equal(net.params['conv3_1_3x3'][0].data,
                                  convs['conv3_1_3x3'][0].astype(np.float32))
    assert 'copied      conv1_1_3x3_s2/scale' in stdout and 'copied      conv1_1_3x3_s2/bn' in stdout


def test_pspnet_weights_compute_pspnet_bn(caffe, nets, pspnet):
    """conv2_1_1x1_proj (1x1, no ReLU) then BN + Scale in place: its blob is
    slope * (W x - mean) / sqrt(var + 1e-5) + bias of PSPNet's blobs."""
    layers, _, out = pspnet
    source = {name: arrays for name, _, arrays in layers}
    net = prototxt.caffe_net(nets['resnet'], 'TEST', weights=out)
    net.blobs['data'].data[...] = np.random.default_rng(2).standard_normal(net.blobs['data'].data.shape)
    net.forward()
    x = net.blobs['pool1_3x3_s2'].data.astype(np.float64)
    conv = np.einsum('oi,bihw->bohw', source['conv2_1_1x1_proj'][0][:, :, 0, 0], x)
    slope, bias, mean, variance = source['conv2_1_1x1_proj/bn']
    expected = slope * (conv - mean) / np.sqrt(variance + EPS) + bias
    got = net.blobs['conv2_1_1x1_proj'].data
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(expected - conv).max() > 0.1        # the BN does something


def test_pspnet_report_counts_kept_and_unused(caffe, nets, pspnet):
    layers, stdout, _ = pspnet
    net = prototxt.caffe_net(nets['resnet'], 'TEST')
    backbone = list(net.params).index('fc6_1')
    assert summary(stdout) == (backbone, len(net.params) - backbone, 0, 3)
    assert 'kept        fc6_1/bn' in stdout and 'kept        conv6_funetuning_fpn' in stdout
    assert 'unused      3 layers of psp.caffemodel: conv5_4, conv5_4/bn, conv6' in stdout
    assert 'mismatched' not in stdout.replace('0 mismatched', '')


def test_pspnet_channel_mismatch_stops_unless_skipped(caffe, nets, tmp_path):
    net = prototxt.caffe_net(nets['resnet'], 'TEST')
    layers = pspnet_layers(net, np.random.default_rng(3), channels={'conv1_2_3x3/bn': 5})
    source = write_model(str(tmp_path / 'psp.caffemodel'), layers)
    out = tmp_path / 'out.caffemodel'
    res = run_surgery(nets['resnet'], ['pspnet:' + source], out)
    assert res.returncode == 1 and not out.exists(), res.stderr
    assert 'mismatched  conv1_2_3x3/bn         [(4,), (4,), (1,)] from psp.caffemodel:conv1_2_3x3/bn ' \
           'has [(5,), (5,), (1,)]' in res.stderr, res.stderr
    assert 'conv1_2_3x3/scale' in res.stderr and '--skip-mismatched' in res.stderr
    res = run_surgery(nets['resnet'], ['pspnet:' + source], out, '--skip-mismatched')
    assert res.returncode == 0, res.stderr
    backbone = list(net.params).index('fc6_1')
    assert summary(res.stdout) == (backbone - 2, len(net.params) - backbone, 2, 3)
    loaded = prototxt.caffe_net(nets['resnet'], 'TEST', weights=str(out))
    np.testing.assert_array_equal(loaded.params['conv1_2_3x3/scale'][0].data, np.ones(4))  # filler
    np.testing.assert_array_equal(loaded.params['conv1_2_3x3/scale'][1].data, np.zeros(4))


BN_NET = '''name: "bn" input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
        convolution_param { num_output: 3 kernel_size: 1 bias_term: false } }
layer { name: "c/bn" type: "BatchNorm" bottom: "c" top: "c" batch_norm_param { use_global_stats: true } }
%s'''
SCALE = 'layer { name: "c/scale" type: "Scale" bottom: "c" top: "c" scale_param { bias_term: true } }'


@pytest.mark.parametrize('scale, bn, fragment', [
    ('', None, 'is a PSPNet BN, but the net has no Scale c/scale for its slope and bias'),
    (SCALE.replace('"Scale"', '"Bias"').replace('scale_param { bias_term: true }', ''), None,
     'the net has a Bias c/scale, not a Scale, for its slope and bias'),
    (SCALE, 3, 'is a PSPNet BN of blobs [(1, 3, 1, 1), (1, 3, 1, 1), (1, 3, 1, 1)], not 4 of C values'),
])
def test_an_incomplete_bn_pair_is_mismatched(caffe, tmp_path, scale, bn, fragment):
    rng = np.random.default_rng(4)
    net = prototxt.caffe_net(BN_NET % scale, 'TEST')
    blobs = psp_bn(rng, 3)[:bn]
    source = write_model(str(tmp_path / 'psp.caffemodel'),
                         [('c', 'Convolution', [rng.standard_normal((3, 2, 1, 1))]), ('c/bn', 'BN', blobs)])
    lines = []
    with pytest.raises(surgery.SurgeryError, match=re.escape(fragment)):
        surgery.transplant(net, [('pspnet', source)], log=lines.append)
    report = surgery.transplant(net, [('pspnet', source)], skip_mismatched=True, log=lines.append)
    assert report['copied'] == ['c'] and 'c/bn' in report['mismatched'] and report['unused'] == []


def test_a_bn_pair_computes_pspnet_bn(caffe, tmp_path):
    """One conv, BatchNorm + Scale: the forward is PSPNet's BN of the conv."""
    rng = np.random.default_rng(5)
    net = prototxt.caffe_net(BN_NET % SCALE, 'TEST')
    weight, bn = rng.standard_normal((3, 2, 1, 1)), psp_bn(rng, 3)
    source = write_model(str(tmp_path / 'psp.caffemodel'),
                         [('c', 'Convolution', [weight]), ('c/bn', 'BN', bn)])
    report = surgery.transplant(net, [('pspnet', source)], log=lambda *_: None)
    assert report == {'copied': ['c', 'c/bn', 'c/scale'], 'kept': [], 'mismatched': [], 'unused': []}
    x = rng.standard_normal((1, 2, 3, 3))
    net.blobs['data'].data[...] = x
    net.forward()
    conv = np.einsum('oi,bihw->bohw', weight[:, :, 0, 0], x)
    slope, bias, mean, variance = bn
    np.testing.assert_allclose(net.blobs['c'].data, slope * (conv - mean) / np.sqrt(variance + EPS) + bias,
                               rtol=1e-5, atol=1e-5)


def test_pspnet_source_filling_nothing_names_the_mapping(caffe, nets, tmp_path):
    net = prototxt.caffe_net(nets['resnet'], 'TEST')
    source = write_model(str(tmp_path / 'other.caffemodel'),
                         [('bn_conv1', 'BN', psp_bn(np.random.default_rng(6), 4))])
    with pytest.raises(surgery.SurgeryError, match='fills no layer.*with the pspnet mapping: BN <conv>/bn'):
        surgery.transplant(net, [('pspnet', source)], log=lambda *_: None)


# ---------------------------------------------------------------- DeepLab


def deeplab_layers(net, rng, largefov=False):
    """DeepLab-layout layers at ``net``'s (small) widths: conv1_1 .. conv5_3,
    fc6_1..4 (ASPP; LargeFOV: one fc6), fc7_*, fc8_voc12_*."""
    layers = [(name, 'Convolution', [rng.standard_normal(b.data.shape) for b in net.params[name]])
              for name in net.params if re.fullmatch(r'conv\d_\d', name)]
    context, width = net.params['fc6_1'][0].data.shape[:2]
    for suffix in [''] if largefov else ['_1', '_2', '_3', '_4']:
        layers += [('fc6' + suffix, 'Convolution', [rng.standard_normal((context, width, 3, 3)),
                                                    rng.standard_normal(context)]),
                   ('fc7' + suffix, 'Convolution', [rng.standard_normal((context, context, 1, 1)),
                                                    rng.standard_normal(context)]),
                   ('fc8_voc12' + suffix, 'Convolution', [rng.standard_normal((21, context, 1, 1)),
                                                          rng.standard_normal(21)])]
    return layers


def test_deeplab_v2_fills_the_vgg_backbone_and_context(caffe, nets, tmp_path):
    net = prototxt.caffe_net(nets['vgg'], 'TEST')
    layers = deeplab_layers(net, np.random.default_rng(7))
    source = write_model(str(tmp_path / 'deeplab.caffemodel'), layers)
    out = tmp_path / 'out.caffemodel'
    res = run_surgery(nets['vgg'], ['deeplab:' + source], out)
    assert res.returncode == 0, res.stderr
    assert summary(res.stdout) == (17, len(net.params) - 17, 0, 8)
    assert ('unused      8 layers of deeplab.caffemodel: fc7_1, fc8_voc12_1, fc7_2, fc8_voc12_2, '
            'fc7_3, fc8_voc12_3, fc7_4, fc8_voc12_4' in res.stdout), res.stdout
    assert 'copied      fc6_4 ' in res.stdout and 'kept        conv5_4_fpnrc' in res.stdout
    loaded = prototxt.caffe_net(nets['vgg'], 'TEST', weights=str(out))
    for name, _, arrays in layers:
        if name in loaded.params:
            for blob, array in zip(loaded.params[name], arrays):
                np.testing.assert_array_equal(blob.data, array.astype(np.float32), err_msg=name)
    assert all(name in loaded.params for name in ('conv1_1', 'conv5_3', 'fc6_1', 'fc6_4'))


def test_deeplab_largefov_v1_format_copies_convs_not_fc6(caffe, nets, tmp_path):
    """An old V1-format LargeFOV caffemodel: conv1_1 .. conv5_3 copied; its
    single fc6 fills no ASPP branch (unused, like fc7 and fc8); fc6_i kept."""
    net = prototxt.caffe_net(nets['vgg'], 'TEST')
    rng = np.random.default_rng(8)
    layers = [(name, 'CONVOLUTION', arrays) for name, _, arrays in deeplab_layers(net, rng, largefov=True)]
    source = write_model(str(tmp_path / 'largefov.caffemodel'), layers, v1=True)
    report = surgery.transplant(net, [('deeplab', source)], log=lambda *_: None)
    assert len(report['copied']) == 13 and 'fc6_1' in report['kept'] and not report['mismatched']
    assert report['unused'] == [(source, 'fc6'), (source, 'fc7'), (source, 'fc8_voc12')]
    np.testing.assert_array_equal(net.params['conv4_2'][1].data, dict(
        (n, a) for n, _, a in layers)['conv4_2'][1].astype(np.float32))


@pytest.mark.parametrize('seed', ['-1', '4294967296', '99999999999999999999', '1.5'])
def test_a_seed_caffe_cannot_take_is_a_usage_error(tmp_path, capsys, seed):
    """--seed -1 reached caffe.set_random_seed: OverflowError and a traceback."""
    from caffe_mlic import cli
    model = write_model(str(tmp_path / 'm.caffemodel'), [])
    assert cli.main(['surgery', '--net', 'n.prototxt', '--from', 'same:' + model, '-o', str(tmp_path / 'o'),
                     '--seed', seed]) == 2
    assert capsys.readouterr().err == (
        "caffe-mlic surgery: argument --seed: must be an integer from 0 to 4294967295, got '%s' "
        "(see `caffe-mlic surgery --help`)\n" % seed)
    from caffe_mlic.errors import UsageError
    with pytest.raises(UsageError, match='seed must be an integer from 0 to 2.32 - 1, got -1'):
        surgery.shape_only_net('n.prototxt', seed=-1)


def test_the_output_may_not_be_the_net(tmp_path, capsys):
    from caffe_mlic import cli
    net = tmp_path / 'n.prototxt'
    net.write_text('name: "n"\n')
    model = write_model(str(tmp_path / 'm.caffemodel'), [])
    assert cli.main(['surgery', '--net', str(net), '--from', 'same:' + model, '-o', str(net)]) == 2
    assert 'argument -o/--out: %s is an input of this command' % net in capsys.readouterr().err
    assert net.read_text() == 'name: "n"\n'


def test_an_output_that_is_a_folder_is_refused_before_the_work(tmp_path, capsys):
    from caffe_mlic import cli
    net = tmp_path / 'n.prototxt'
    net.write_text('name: "n"\n')
    model = write_model(str(tmp_path / 'm.caffemodel'), [])
    (tmp_path / 'out').mkdir()
    assert cli.main(['surgery', '--net', str(net), '--from', 'same:' + model, '-o', str(tmp_path / 'out')]) == 2
    assert capsys.readouterr().err == ('caffe-mlic surgery: argument -o/--out: %s is a folder: give a file path to '
                                       'write\n' % (tmp_path / 'out'))


def test_weights_that_are_not_finite_are_refused(caffe, tmp_path):
    """`--from same:` a diverged snapshot copied NaN weights with rc 0, which
    classify refuses (pass 22 M9)."""
    net = tmp_path / 'net.prototxt'
    net.write_text('name: "n" input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }\n'
                   'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
                   '        convolution_param { num_output: 3 kernel_size: 1 } }\n')
    weights = np.ones((3, 2, 1, 1))
    weights[1, 0] = np.nan
    source = write_model(str(tmp_path / 'nan.caffemodel'), [('c', 'Convolution', [weights, np.zeros(3)])])
    out = tmp_path / 'out.caffemodel'
    res = run_surgery(net, ['same:' + source], out)
    assert res.returncode == 1 and not out.exists(), res.stderr
    assert 'nan.caffemodel: layer c holds 1 values that are not finite (NaN or inf)' in res.stderr, res.stderr
