"""`caffe-mlic surgery`: carry trained weights into another net, by layer name.

    caffe-mlic surgery --net prototxt/kd/train_stage2.prototxt -o stage2_init.caffemodel \
        --from teacher:snapshots/wsddn/wsddn_iter_40000.caffemodel \
        --from same:snapshots/kd/stage1_iter_30000.caffemodel

Mappings: ``same`` copies layer X to layer X (a student's stage-1 weights into
stage 2; an ImageNet VGG16 into any VGG16 backbone); ``teacher`` copies a
trained WSDDN (wsddn_train names) to the teacher copy inside the KD nets
(conv1_1 -> conv_wsd_1_1, fc6 -> fc_wsd_6, fc8_c -> fc_wsd_8_c, ...). Later
sources win over earlier ones. Every target layer with parameters is reported
as copied, kept (no source) or mismatched; a shape mismatch stops the run
unless --skip-mismatched is given.
"""
import os
import re

from caffe_mlic import prototxt
from caffe_mlic.errors import InputError
from caffe_mlic.weights import read_weights

MAPPINGS = ('same', 'teacher')


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


def transplant(net, sources, skip_mismatched=False, log=print):
    """Copy weights into caffe.Net ``net`` from sources [(mapping, path)].

    Returns {'copied': [...], 'kept': [...], 'mismatched': [...]} of target names.
    """
    provided = {}  # target layer -> (source path, source layer, arrays)
    for mapping, path in sources:
        if mapping not in MAPPINGS:
            raise SurgeryError('unknown mapping %r (choose from %s)' % (mapping, ', '.join(MAPPINGS)))
        weights = read_weights(path, SurgeryError)
        targets = 0
        for name, arrays in weights.items():
            target = name if mapping == 'same' else teacher_name(name)
            if target is not None:
                provided[target] = (path, name, arrays)
                targets += target in net.params
        if not targets:
            raise SurgeryError(
                '--from %s:%s fills no layer of the net: %s; the net\'s layers with weights are %s'
                % (mapping, path, 'it holds no weights' if not weights else
                   'its layers %s%s' % (', '.join(sorted(weights)[:8]), '' if mapping == 'same' else
                                        ' (with the teacher mapping: conv*_* -> conv_wsd_*_*, '
                                        'fc6/7 -> fc_wsd_6/7, fc8_c/d -> fc_wsd_8_c/d)'),
                   ', '.join(list(net.params)[:8]) + (' ...' if len(net.params) > 8 else '')))
    report = {'copied': [], 'kept': [], 'mismatched': []}
    problems = []
    for target, blobs in net.params.items():
        if target not in provided:
            report['kept'].append(target)
            log('kept        %-22s (no source layer)' % target)
            continue
        path, name, arrays = provided[target]
        want = [tuple(b.data.shape) for b in blobs]
        got = [a.shape for a in arrays]
        if len(want) != len(got) or any(_canonical(w) != _canonical(g) for w, g in zip(want, got)):
            report['mismatched'].append(target)
            line = 'mismatched  %-22s %s from %s:%s has %s' % (target, want, os.path.basename(path), name, got)
            log(line)
            problems.append(line)
            continue
        for blob, array in zip(blobs, arrays):
            blob.data[...] = array.reshape(blob.data.shape)
        report['copied'].append(target)
        log('copied      %-22s from %s:%s' % (target, os.path.basename(path), name))
    if problems and not skip_mismatched:
        raise SurgeryError('shape mismatch (use --skip-mismatched to keep those layers as they are):\n'
                           + '\n'.join(problems))
    return report
