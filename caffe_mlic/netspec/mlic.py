"""The MLIC-KD-WSD nets: the WSDDN teacher, the two distillation stages, the student.

Every net is a function of one MlicConfig. ``MlicConfig.release()`` is the
configuration the paper's code shipped (MS-COCO: 80 classes, 500 EdgeBoxes
proposals, teacher 672 px, student 224 px).
"""
from dataclasses import dataclass, replace

import caffe
from caffe import layers as L
from caffe import params as P

from caffe_mlic.errors import UsageError
from caffe_mlic.netspec.blocks import (FROZEN, LEARN_10X, drop_input_layers, fc, fc_relu_drop, insert_after,
                                       netspec_to_proto, python_layer, train_test_data)
from caffe_mlic.data.datalist import MAX_ATT_NUM, MAX_BBOX_NUM
from caffe_mlic.inference.settings import MAX_INPUT_SIZE
from caffe_mlic.netspec.config import MAX_WORKERS, Checks, finite, option
from caffe_mlic.netspec.vgg import BACKBONES, CONV_FILLERS, PLAIN, TEACHER, vgg16_convs

RELEASE_SCALES = [0.714286, 0.857143, 1.0, 1.095239, 1.238096]  # 480/576/672/736/832 px
RELEASE_MEAN = [103.52, 116.28, 123.675]  # BGR


@dataclass
class MlicConfig:
    """Everything the MLIC-KD-WSD nets depend on; the defaults are the release's.
    A new field is one line here: netgen derives its options from these."""
    num_classes: int = option(80, 'number of classes, >= 2', flag='classes')
    bbox_num: int = option(500, 'proposals per image', flag='proposals')
    teacher_size: int = option(672, 'teacher input size (px, a multiple of 16, at most 26754)')
    student_size: int = option(224, 'student input size (px) = 32 x pooled, at most 26754')
    scale_factors: list = option(RELEASE_SCALES, 'TRAIN scale factors, one drawn per batch',
                                 flag='scales', nargs='+')
    mean: list = option(RELEASE_MEAN, 'BGR mean subtracted by the data layer')
    input_scale: float = option(1.0, 'data layer: (pixel - mean) x this, a finite number > 0')
    train_list: str = option('data/train_672.txt', 'training datalist')
    test_list: str = option('data/test_672.txt', 'test datalist')
    root_folder: str = option('', 'prefix for the image paths in the datalists')
    wsddn_batch: tuple = option((32, 16), 'teacher batch sizes', metavar=('TRAIN', 'TEST'))
    stage1_batch: tuple = option((32, 16), 'stage 1 batch sizes', metavar=('TRAIN', 'TEST'))
    stage2_batch: tuple = option((28, 4), 'stage 2 batch sizes', metavar=('TRAIN', 'TEST'))
    baseline_batch: tuple = option((32, 16), 'baseline student batch sizes', metavar=('TRAIN', 'TEST'))
    teacher_temperature: float = option(0.5, 'stage 2: teacher logits x 1/T before the softmaxes')
    student_temperature: float = option(5.0, 'stage 2: student logits x 1/T against the soft target')
    score_scale: float = option(1.0, 'ROI features x (score_scale * s + score_bias)')
    score_bias: float = option(0.0, 'see score_scale')
    pooled: int = option(7, 'ROI pooling bins per side; student_size = 32 x pooled')
    backbone: str = option('vgg16', 'tiny: the same graph with few channels',
                           choices=sorted(BACKBONES))
    head: str = option('composed', 'WSDDN head: stock layers as released, or fused (WSDDNScore)',
                       choices=['composed', 'fused'])
    student_fc8: str = option('fc8_mscoco', "the student's classifier name (weights carry over by name)")
    workers: int = option(2, 'data-layer prefetch processes (0: in the solver process)')
    dropout_ratio: float = option(0.5, 'fc6 / fc7 dropout (0: no Dropout layers)')
    data_seed: int = option(0, "TRAIN data layers' seed: image order, scale and mirror draws")
    kd_losses: str = option('stock', "distillation losses: 'stock' as released (stage 1 "
                            "EuclideanLoss, stage 2 learnable Scale + SigmoidCrossEntropyLoss) or "
                            "'python' (FeatureMimicLoss, SoftSigmoidCrossEntropyLoss at the fixed "
                            "student_temperature)", choices=['stock', 'python'])
    mimic_top_k: int = option(0, "stage 1 with kd_losses 'python': mimic only each image's top_k "
                              "proposals by objectness score (0: all)")
    soft_loss_weight: float = option(1.0, "stage 2: loss weight of the soft (distillation) loss; "
                                     "the label loss keeps 1")
    student_scale_lr_mult: float = option(10.0, "stage 2 with kd_losses 'stock': lr_mult of the "
                                          "learnable scale on the student logits (released: 10; 0 "
                                          "keeps 1/student_temperature)")

    @classmethod
    def release(cls, **overrides):
        return replace(cls(), **overrides)

    def validate(self):
        """Raise UsageError naming the field of the first impossible value; returns self."""
        check = Checks(self)
        check.kinds()       # lists are lists of numbers (no bools): the checks below look inside
        check.choices()
        check.positive_ints('num_classes', 'bbox_num', 'teacher_size', 'student_size', 'pooled')
        for name in ('teacher_size', 'student_size'):
            check.at_most(name, MAX_INPUT_SIZE, "a 1 x 3 x S x S input within Caffe's 2^31 - 1 values")
        if self.num_classes < 2:   # WSDDN's class softmax over one class is constant: nothing to learn
            check.bad('num_classes', 'must be at least 2')
        if self.teacher_size % 16 or self.student_size % 32:
            raise UsageError('teacher_size must be a multiple of 16 and student_size of 32 '
                             '(VGG16 pooling), got %d and %d' % (self.teacher_size, self.student_size),
                             'teacher_size' if self.teacher_size % 16 else 'student_size')
        if self.student_size != 32 * self.pooled:
            # Stage 2's student fc6 (on pool5) reuses stage 1's (on ROI-pooled conv5_3).
            raise UsageError('student_size must be 32 x pooled (pool5 then has the ROI pooling '
                             'size, so the student fc6 of stage 1 fits stage 2): got student_size '
                             '%d, pooled %d' % (self.student_size, self.pooled), 'student_size')
        for key in ('wsddn_batch', 'stage1_batch', 'stage2_batch', 'baseline_batch'):
            value = getattr(self, key)
            if len(value) != 2 or not all(isinstance(v, int) and v >= 1 for v in value):
                check.bad(key, 'must be two positive integers (TRAIN, TEST)')
        check.scale_factors()
        if len(self.mean) != 3 or not all(finite(v) for v in self.mean):
            check.bad('mean', 'must be three numbers (B, G, R)')
        check.positive_numbers('input_scale', 'teacher_temperature', 'student_temperature')
        check.fraction('dropout_ratio')
        check.finite_numbers('score_scale', 'score_bias')
        check.nonnegative_numbers('soft_loss_weight', 'student_scale_lr_mult')
        check.nonnegative_ints('workers', 'mimic_top_k', 'data_seed')
        check.at_most('workers', MAX_WORKERS, 'each is a process with its own memory')
        check.at_most('num_classes', MAX_ATT_NUM, "the datalist's bound")
        check.at_most('bbox_num', MAX_BBOX_NUM, "the datalist's bound")
        if self.mimic_top_k and self.kd_losses != 'python':
            check.bad('mimic_top_k', "needs kd_losses 'python' (FeatureMimicLoss)")
        check.words('train_list', 'test_list', 'student_fc8')
        return self

    @property
    def widths(self):
        return BACKBONES[self.backbone][0]

    @property
    def blocks(self):
        return BACKBONES[self.backbone][2]

    @property
    def conv_filler(self):
        return CONV_FILLERS[self.backbone]

    @property
    def fc_width(self):
        return BACKBONES[self.backbone][1]


# ---------------------------------------------------------------- pieces

def _data_pair(n, cfg, batches, scale_jitter, split_name='labels', silence_labels=False):
    """The TRAIN data layer (in NetSpec n) and its TEST twin (returned, to insert).

    Adds the Slice of label_roi into labels and list_roi.
    """
    def params(phase_train):
        p = dict(source=cfg.train_list if phase_train else cfg.test_list, root_folder=cfg.root_folder,
                 batch_size=batches[0] if phase_train else batches[1], shuffle=phase_train,
                 new_width=cfg.teacher_size, new_height=cfg.teacher_size,
                 att_num=cfg.num_classes, bbox_num=cfg.bbox_num,
                 mirror=phase_train, mean_value=list(cfg.mean))
        if phase_train and scale_jitter:
            p['scale_factors'] = list(cfg.scale_factors)
        if cfg.workers != 2:
            p['workers'] = cfg.workers
        if phase_train and cfg.data_seed:
            p['seed'] = cfg.data_seed
        if cfg.input_scale != 1.0:
            p['scale'] = cfg.input_scale
        return p

    test_layer = train_test_data(n, 'MultiLabelProposalData', params, ['data', 'label_roi'])
    labels, n.list_roi = L.Slice(n.label_roi, ntop=2, slice_point=cfg.num_classes, axis=1,
                                 name='slice_label_roi')
    setattr(n, split_name, labels)
    if silence_labels:
        n.silence = L.Silence(labels, ntop=0, name='silence')
    return test_layer


def _roi_pool(n, name, features, rois, cfg):
    setattr(n, name, python_layer('ROIPooling', [features, rois], dict(
        pooled_h=cfg.pooled, pooled_w=cfg.pooled, spatial_scale=1 / 16.,
        score_scale=cfg.score_scale, score_bias=cfg.score_bias)))
    return getattr(n, name)


def _fc67(n, bottom, cfg, names=PLAIN, freeze=False):
    """fc6/fc7 with ReLU and Dropout; returns fc7."""
    top = bottom
    for i in (6, 7):
        top, relu, drop = fc_relu_drop(top, cfg.fc_width, i, freeze=freeze, dropout=cfg.dropout_ratio)
        setattr(n, names.fc.format(i=i), top)
        setattr(n, '_relu_%s' % names.fc.format(i=i), relu)
        if drop is not None:
            setattr(n, '_drop_%s' % names.fc.format(i=i), drop)
    return top


def _wsddn_head(n, fc7, cfg, fc8='fc8_{}', freeze=False, temperature_scales=False):
    """fc8_c / fc8_d and the two-stream WSDDN score; returns image_level_score.

    Composed (as released, in the released layer order): Reshape -> [Scale by
    1/T] -> Softmax over classes / over rois -> Eltwise PROD -> a frozen
    all-ones 1x1 convolution summing over rois. Fused: our WSDDNScore layer.
    """
    stop = {'propagate_down': [False]} if freeze else {}

    def branch(suffix, index, axis, reshape_stop):
        logits = fc(fc7, cfg.num_classes, learn=LEARN_10X, freeze=freeze)
        setattr(n, fc8.format(suffix), logits)
        if cfg.head == 'fused':
            return logits
        top = L.Reshape(logits, shape=dict(dim=[-1, cfg.bbox_num, cfg.num_classes, 1]),
                        **(stop if reshape_stop else {}))
        setattr(n, 'reshape_branch%d' % index, top)
        if temperature_scales:
            top = L.Scale(top, axis=axis, bias_term=False, param=[dict(lr_mult=1, decay_mult=0)],
                          filler=dict(type='constant', value=1.0 / cfg.teacher_temperature))
            setattr(n, 'temp_branch%d_learn' % index, top)
        return top

    # As released, only the class branch's Reshape stops gradients in stage 2.
    cls_in = branch('c', 1, axis=2, reshape_stop=True)
    det_in = branch('d', 2, axis=1, reshape_stop=False)
    if cfg.head == 'fused':
        t = cfg.teacher_temperature if temperature_scales else 1.0
        n.proposal_class_score, n.image_level_score = python_layer(
            'WSDDNScore', [cls_in, det_in], dict(bbox_num=cfg.bbox_num, class_temperature=t,
                                                  det_temperature=t), ntop=2,
            **({'propagate_down': [False, False]} if freeze else {}))
        return n.image_level_score
    n.class_score = L.Softmax(cls_in, axis=2)
    n.proposal_score = L.Softmax(det_in, axis=1)
    n.proposal_class_score = L.Eltwise(n.class_score, n.proposal_score, operation=P.Eltwise.PROD)
    n.image_level_score = L.Convolution(
        n.proposal_class_score, param=FROZEN,
        convolution_param=dict(num_output=1, pad_h=0, pad_w=0, kernel_h=1, kernel_w=1,
                               stride_h=1, stride_w=1, weight_filler=dict(type='constant', value=1),
                               bias_term=False), **stop)
    return n.image_level_score


def _guard(n, values, pools):
    """DivergenceGuard on the student's max-pooling outputs (an all-NaN
    window comes out as -FLT_MAX, and Caffe's backward then writes out of
    bounds) and on the values the losses read. A net whose losses are stock
    layers then stops with "training diverged" too, under the `caffe` binary
    as under `caffe-mlic train` (our addition to the released nets; it
    changes no value or gradient)."""
    watched = [getattr(n, PLAIN.pool.format(b=b)) for b in range(1, pools + 1)] + [values]
    n.divergence_guard = python_layer('DivergenceGuard', watched, {}, ntop=0,
                                      propagate_down=[False] * len(watched))


def _finish(n, name, test_data=None, inputs=()):
    proto = netspec_to_proto(n, name, inputs)
    if test_data is not None:
        insert_after(proto, 'data', test_data)
    return proto


# ---------------------------------------------------------------- nets

def wsddn_train(cfg):
    """The teacher: WSDDN on VGG16, trained from image-level labels."""
    cfg.validate()
    n = caffe.NetSpec()
    test_data = _data_pair(n, cfg, cfg.wsddn_batch, scale_jitter=True)
    n.roi = python_layer('WsdRoigen', [n.list_roi], {})
    conv5 = vgg16_convs(n, n.data, cfg.widths, blocks=cfg.blocks, filler=cfg.conv_filler)
    fc7 = _fc67(n, _roi_pool(n, 'roi_pooling', conv5, n.roi, cfg), cfg)
    score = _wsddn_head(n, fc7, cfg)
    n.loss = python_layer('CrossEntropyLoss', [score, n.labels], {}, loss_weight=1)
    return _finish(n, 'VGG16_wsddn', test_data)


def wsddn_deploy(cfg):
    """The teacher for inference: image (1,3,S,S) + proposals (1,5B,1,1)."""
    cfg.validate()
    n = caffe.NetSpec()
    # The blobs come from `input:` fields; this Input layer only names them and is dropped.
    n.imagedata, n.proposaldata = L.Input(ntop=2)
    n.roi = python_layer('WsdRoigen', [n.proposaldata], {})
    conv5 = vgg16_convs(n, n.imagedata, cfg.widths, blocks=cfg.blocks, filler=cfg.conv_filler)
    fc7 = _fc67(n, _roi_pool(n, 'roi_pooling', conv5, n.roi, cfg), cfg)
    _wsddn_head(n, fc7, cfg)
    proto = _finish(n, 'vgg16_wsddn', inputs=[('imagedata', [1, 3, cfg.teacher_size, cfg.teacher_size]),
                                              ('proposaldata', [1, 5 * cfg.bbox_num, 1, 1])])
    return drop_input_layers(proto)


def _teacher(n, cfg, data, roi):
    """The frozen teacher copy (conv_wsd_*, fc_wsd_*); returns fc_wsd_7."""
    conv5 = vgg16_convs(n, data, cfg.widths, blocks=cfg.blocks, names=TEACHER, freeze=True, filler=cfg.conv_filler)
    return _fc67(n, _roi_pool(n, 'roi_pooling', conv5, roi, cfg), cfg, names=TEACHER, freeze=True)


def _student_input(n, cfg):
    n.data_size224 = python_layer('Interp', [n.data], dict(height=cfg.student_size,
                                                           width=cfg.student_size))
    return n.data_size224


def kd_stage1(cfg):
    """Feature-level distillation: student fc7 of each roi regresses the teacher's."""
    cfg.validate()
    n = caffe.NetSpec()
    test_data = _data_pair(n, cfg, cfg.stage1_batch, scale_jitter=False, split_name='label',
                           silence_labels=True)
    n.roi = python_layer('WsdRoigen', [n.list_roi], {})
    n.roi_224 = python_layer('WsdRoigenSingleScale', [n.list_roi], dict(
        single_scale=cfg.student_size, origin_scale=cfg.teacher_size))
    teacher_fc7 = _teacher(n, cfg, n.data, n.roi)
    conv5 = vgg16_convs(n, _student_input(n, cfg), cfg.widths, blocks=cfg.blocks, filler=cfg.conv_filler)
    fc7 = _fc67(n, _roi_pool(n, 'roi_pooling_224', conv5, n.roi_224, cfg), cfg)
    _guard(n, fc7, pools=4)
    if cfg.kd_losses == 'stock':
        n.loss_euclid = L.EuclideanLoss(teacher_fc7, fc7, loss_weight=1, propagate_down=[False, True])
    elif cfg.mimic_top_k:
        # the rois' objectness scores (column 5) rank the rows of each image
        _, n.roi_score = L.Slice(n.roi, ntop=2, slice_point=5, axis=1, name='slice_roi_score')
        n.loss_mimic = python_layer('FeatureMimicLoss', [fc7, teacher_fc7, n.roi_score], dict(
            top_k=cfg.mimic_top_k, rows_per_image=cfg.bbox_num, weight_rows=False),
            loss_weight=1, propagate_down=[True, False, False])
    else:
        n.loss_mimic = python_layer('FeatureMimicLoss', [fc7, teacher_fc7], {}, loss_weight=1,
                                    propagate_down=[True, False])
    return _finish(n, 'stage1', test_data)


def _student_classifier(n, cfg, data):
    """Student VGG16 on the whole image: pool5 -> fc6 -> fc7 -> fc8; returns fc8."""
    pool5 = vgg16_convs(n, data, cfg.widths, blocks=cfg.blocks, pools=5, filler=cfg.conv_filler)
    fc8 = fc(_fc67(n, pool5, cfg), cfg.num_classes, learn=LEARN_10X)
    setattr(n, cfg.student_fc8, fc8)
    return fc8


def kd_stage2(cfg):
    """Prediction-level distillation: teacher image scores (temperature T) as soft targets."""
    cfg.validate()
    n = caffe.NetSpec()
    test_data = _data_pair(n, cfg, cfg.stage2_batch, scale_jitter=False, split_name='label')
    n.roi = python_layer('WsdRoigen', [n.list_roi], {})
    teacher_fc7 = _teacher(n, cfg, n.data, n.roi)
    soft_target = _wsddn_head(n, teacher_fc7, cfg, fc8='fc_wsd_8_{}', freeze=True,
                              temperature_scales=True)
    fc8 = _student_classifier(n, cfg, _student_input(n, cfg))
    _guard(n, fc8, pools=5)
    if cfg.kd_losses == 'stock':
        soft = L.Scale(fc8, filler=dict(type='constant', value=1.0 / cfg.student_temperature),
                       bias_term=False, param=[dict(lr_mult=cfg.student_scale_lr_mult, decay_mult=0)])
        setattr(n, cfg.student_fc8 + '_soft', soft)
        n.loss_soft = L.SigmoidCrossEntropyLoss(soft, soft_target, loss_weight=cfg.soft_loss_weight,
                                                propagate_down=[True, False])
    else:
        n.loss_soft = python_layer('SoftSigmoidCrossEntropyLoss', [fc8, soft_target],
                                   dict(temperature=cfg.student_temperature),
                                   loss_weight=cfg.soft_loss_weight, propagate_down=[True, False])
    n.loss_sig = L.SigmoidCrossEntropyLoss(fc8, n.label, loss_weight=1, propagate_down=[True, False])
    return _finish(n, 'stage2', test_data)


def student_baseline(cfg):
    """The student trained on labels only (the paper's "without KD" row)."""
    cfg.validate()
    n = caffe.NetSpec()
    test_data = _data_pair(n, cfg, cfg.baseline_batch, scale_jitter=False, split_name='label')
    n.silence = L.Silence(n.list_roi, ntop=0, name='silence')
    fc8 = _student_classifier(n, cfg, _student_input(n, cfg))
    _guard(n, fc8, pools=5)
    n.loss_sig = L.SigmoidCrossEntropyLoss(fc8, n.label, loss_weight=1, propagate_down=[True, False])
    return _finish(n, 'student_baseline', test_data)


def student_deploy(cfg):
    """The distilled classifier alone: image (1,3,224,224) -> per-class probabilities.

    Stock layers only, so plain Caffe and OpenCV's Caffe importer load it.
    """
    cfg.validate()
    n = caffe.NetSpec()
    n.data = L.Input()  # named by the `input:` field below; the layer is dropped
    fc8 = _student_classifier(n, cfg, n.data)
    n.prob = L.Sigmoid(fc8)
    proto = _finish(n, 'student_deploy', inputs=[('data', [1, 3, cfg.student_size, cfg.student_size])])
    return drop_input_layers(proto)


NETS = {
    'wsddn/wsddn_train': wsddn_train,
    'wsddn/wsddn_deploy': wsddn_deploy,
    'kd/train_stage1': kd_stage1,
    'kd/train_stage2': kd_stage2,
    'kd/student_baseline': student_baseline,
    'kd/student_deploy': student_deploy,
}
