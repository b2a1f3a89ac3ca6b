r"""`caffe-mlic surgery`: carry trained weights into another net, by layer name.

    caffe-mlic surgery --net prototxt/kd/train_stage2.prototxt -o stage2_init.caffemodel \
        --from teacher:snapshots/wsddn/wsddn_iter_40000.caffemodel \
        --from same:snapshots/kd/stage1_iter_30000.caffemodel
    caffe-mlic surgery --net prototxt/scasnet/resnet_scasnet_deploy.prototxt -o scas_init.caffemodel \
        --from pspnet:pspnet101_cityscapes.caffemodel
    caffe-mlic surgery --net prototxt/scasnet/vgg_scasnet_deploy.prototxt -o scas_init.caffemodel \
        --from deeplab:deeplab_v2_vgg16_aspp.caffemodel

Mappings: ``same`` copies layer X to layer X (a student's stage-1 weights into
stage 2; an ImageNet VGG16 into any VGG16 backbone); ``teacher`` copies a
trained WSDDN (wsddn_train names) to the teacher copy inside the KD nets
(conv1_1 -> conv_wsd_1_1, fc6 -> fc_wsd_6, fc8_c -> fc_wsd_8_c, ...);
``pspnet`` reads a PSPNet-fork caffemodel into the ResNet ScasNet: each `BN`
layer <conv>/bn (blobs slope, bias, mean, variance, each 1xCx1x1) fills the
BatchNorm <conv>/bn (mean, variance, scale factor 1) and the Scale
<conv>/scale (slope, bias), everything else goes by name; ``deeplab`` copies a
DeepLab-v2 VGG16 (ASPP) caffemodel into the VGG ScasNet by name (conv1_1 ..
conv5_3, fc6_1 .. fc6_4; old V1-format files are read too). A DeepLab-LargeFOV
caffemodel's single fc6 (dilation 12) fills no ScasNet branch: it is not
copied and is listed as unused. Later sources win over earlier ones.
A source may be an HDF5 caffemodel (``X.caffemodel.h5``, Caffe's
snapshot_format: HDF5); an output named ``.h5`` is written as one, unless a
layer name holds a '/' (Caffe aborts writing such a file; it cannot write a
PSPNet's layers either, so the ``pspnet`` mapping's BN layers are always
binary files, whose layer types it reads).

Every target layer with parameters is reported as copied, kept (no source) or
mismatched (other shapes; a PSPNet BN whose pair is incomplete: the net has
its BatchNorm but no Scale, or the other way round, or one of them as another
type); a mismatch stops the run unless --skip-mismatched is given. Source
layers that fit no layer of the net (DeepLab's fc7_*, fc8_*; PSPNet's pyramid
pooling, conv5_4, conv6; a PSPNet BN with neither BatchNorm nor Scale in the
net) are reported as unused: how many, and which.
"""
import operator
import os
import re

import numpy as np

from caffe_mlic.caffe import prototxt
from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.caffe.weights import name_list, read_layers

MAPPINGS = ('same', 'teacher', 'pspnet', 'deeplab')
MAX_SEED = 2 ** 32 - 1      # Caffe's random seed is an unsigned 32-bit int
HINTS = {'teacher': 'conv*_* -> conv_wsd_*_*, fc6/7 -> fc_wsd_6/7, fc8_c/d -> fc_wsd_8_c/d',
         'pspnet': 'BN <conv>/bn -> BatchNorm <conv>/bn + Scale <conv>/scale, the rest by name'}
BN_PAIR = ('BatchNorm', 'Scale')    # what a PSPNet BN becomes, in this order


def teacher_name(name):
    """wsddn_train layer name -> its name in the KD nets' teacher copy (or None)."""
    m = re.fullmatch(r'conv(\d)_(\d)', name)
    if m:
        return 'conv_wsd_%s_%s' % m.groups()
    m = re.fullmatch(r'fc([67])', name)
    if m:
        return 'fc_wsd_%s' % m.group(1)
    m = re.fullmatch(r'fc8_([cd])', name)
    if m:
        return 'fc_wsd_8_%s' % m.group(1)
    return name if name == 'image_level_score' else None


class SurgeryError(InputError):
    """The weights do not fit the net (unknown mapping, unreadable or mismatched caffemodel)."""


def shape_only_net(prototxt_path, phase='TEST', seed=0):
    """caffe.Net of ``prototxt_path`` with our data layers replaced by Input
    layers of the shapes their parameters imply (batch 1), so no datalist is
    needed.

    Layers that no source fills keep their filler values, drawn with ``seed``
    so that the same command writes the same caffemodel.
    """
    try:
        ok = 0 <= operator.index(seed) <= MAX_SEED
    except TypeError:
        ok = False
    if not ok:
        raise UsageError('seed must be an integer from 0 to 2^32 - 1, got %r' % (seed,), 'seed')
    net = prototxt.read_net(prototxt_path)

    def as_input(layer):
        if not prototxt.in_phase(layer, phase):
            return None
        if layer.type == 'Python' and layer.python_param.layer == 'MultiLabelProposalData':
            p = prototxt.python_params(layer)
            shapes = [(1, 3, p['new_height'], p['new_width'])]
            if p.get('split_tops'):
                shapes += [(1, p['att_num']), (1, 5 * p['bbox_num'])]
            else:
                shapes += [(1, p['att_num'] + 5 * p['bbox_num'])]
            return prototxt.input_layer(layer.name, layer.top, shapes[:len(layer.top)])
        return layer

    return prototxt.caffe_net(prototxt.rewrite_layers(net, as_input), phase, seed=seed,
                             where=prototxt_path)


def _canonical(shape):
    """Old caffemodels store fc weights as (1, 1, out, in): drop leading 1s."""
    shape = tuple(shape)
    while len(shape) > 1 and shape[0] == 1:
        shape = shape[1:]
    return shape


def pspnet_bn(name, arrays):
    """PSPNet BN <conv>/bn (slope, bias, mean, variance) -> {<conv>/bn: [mean,
    variance, factor 1], <conv>/scale: [slope, bias]}, as (C,) arrays; the
    arrays are None unless the BN has 4 blobs of as many values."""
    conv = name[:-len('/bn')] if name.endswith('/bn') else name
    targets = (conv + '/bn', conv + '/scale')
    if len(arrays) != 4 or len({a.size for a in arrays}) != 1:
        return dict.fromkeys(targets)
    slope, bias, mean, variance = (a.reshape(-1) for a in arrays)
    return {targets[0]: [mean, variance, np.ones(1, np.float32)], targets[1]: [slope, bias]}


def mapped(mapping, name, kind, arrays):
    """Source layer ``name`` (type ``kind``) under ``mapping`` -> {target layer: arrays}."""
    if mapping == 'teacher':
        target = teacher_name(name)
        return {target: arrays} if target else {}
    if mapping == 'pspnet' and kind == 'BN':
        return pspnet_bn(name, arrays)
    return {name: arrays}


def _bn_problem(arrays, targets, types):
    """Why a PSPNet BN cannot fill its BatchNorm + Scale pair (None if it can)."""
    if None in targets.values():
        return 'is a PSPNet BN of blobs %s, not 4 of C values' % [a.shape for a in arrays]
    for target, kind in zip(targets, BN_PAIR):
        if types.get(target) != kind:
            return 'is a PSPNet BN, but the net has %s for its %s' % (
                'no %s %s' % (kind, target) if target not in types else
                'a %s %s, not a %s,' % (types[target], target, kind),
                'mean and variance' if kind == 'BatchNorm' else 'slope and bias')
    return None


def _fills_nothing(mapping, path, layers, net):
    """The error for a source none of whose layers fits the net."""
    names = sorted(name for name, _, _ in layers)
    hint = ' (with the %s mapping: %s)' % (mapping, HINTS[mapping]) if mapping in HINTS else ''
    held = 'its layers %s%s' % (', '.join(names[:8]), hint) if names else 'it holds no weights'
    return SurgeryError('--from %s:%s fills no layer of the net: %s; the net\'s layers with weights are %s'
                        % (mapping, path, held,
                           ', '.join(list(net.params)[:8]) + (' ...' if len(net.params) > 8 else '')))


def _provide(net, types, mapping, path, provided):
    """Enter the source's weights into ``provided`` {target: (path, source
    layer, arrays, problem)}; returns the source layers that fit no layer."""
    if mapping not in MAPPINGS:
        raise SurgeryError('unknown mapping %r (choose from %s)' % (mapping, ', '.join(MAPPINGS)))
    layers = read_layers(path, SurgeryError)
    unused = []
    for name, kind, arrays in layers:
        targets = mapped(mapping, name, kind, arrays)
        present = [t for t in targets if t in net.params]
        if not present:
            unused.append(name)
            continue
        problem = (_bn_problem(arrays, targets, types)
                   if mapping == 'pspnet' and kind == 'BN' else None)
        for target in present:
            provided[target] = (path, name, targets[target], problem)
    if len(unused) == len(layers):
        raise _fills_nothing(mapping, path, layers, net)
    return unused


def _shape_problem(want, arrays):
    got = [a.shape for a in arrays]
    if len(want) != len(got) or any(_canonical(w) != _canonical(g) for w, g in zip(want, got)):
        return 'has %s' % got
    return None


def transplant(net, sources, skip_mismatched=False, log=print):
    """Copy weights into caffe.Net ``net`` from sources [(mapping, path)].

    Returns {'copied': [...], 'kept': [...], 'mismatched': [...]} of target
    names and 'unused': [(path, source layer)] of the layers that fit none.
    """
    types = dict(zip(net._layer_names, (layer.type for layer in net.layers)))
    provided, unused = {}, []
    for mapping, path in sources:
        unused += [(path, name) for name in _provide(net, types, mapping, path, provided)]
    report = {'copied': [], 'kept': [], 'mismatched': [], 'unused': unused}
    problems = []
    for target, blobs in net.params.items():
        if target not in provided:
            report['kept'].append(target)
            log('kept        %-22s (no source layer)' % target)
            continue
        path, name, arrays, problem = provided[target]
        want = [tuple(b.data.shape) for b in blobs]
        problem = problem or _shape_problem(want, arrays)
        bad = 0 if problem else sum(int(np.size(a) - np.count_nonzero(np.isfinite(a))) for a in arrays)
        if bad:     # (the weights of a diverged run: refused as classify and detect refuse them)
            raise SurgeryError('%s: layer %s holds %d values that are not finite (NaN or inf): a snapshot of a '
                               'diverged training run?' % (path, name, bad))
        if problem:
            report['mismatched'].append(target)
            line = 'mismatched  %-22s %s from %s:%s %s' % (target, want, os.path.basename(path), name,
                                                           problem)
            log(line)
            problems.append(line)
            continue
        for blob, array in zip(blobs, arrays):
            blob.data[...] = array.reshape(blob.data.shape)
        report['copied'].append(target)
        log('copied      %-22s from %s:%s' % (target, os.path.basename(path), name))
    _log_unused(unused, log)
    if problems and not skip_mismatched:
        raise SurgeryError('mismatch (use --skip-mismatched to keep those layers as they are):\n'
                           + '\n'.join(problems))
    return report


def _log_unused(unused, log):
    """One line per source: how many of its layers fit no layer of the net, and which."""
    for path in dict.fromkeys(p for p, _ in unused):
        names = [n for p, n in unused if p == path]
        log('unused      %d layer%s of %s: %s' % (len(names), 's' * (len(names) != 1),
                                                  os.path.basename(path), name_list(names)))
