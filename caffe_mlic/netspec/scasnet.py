"""ScasNet (self-cascaded CNN for semantic labeling of aerial images, ISPRS
J. P&RS 2018): the deploy and train nets of its two variants, from one ScasConfig.

The net: a backbone (DeepLab-v2 VGG16: 3x3 pad-1 pools, pool4/pool5 at
stride 1, conv5 dilated 2; or PSPNet's ResNet-101: deep stem, bottlenecks
3-4-23-3, conv4 / conv5 dilated 2 / 4) and a 3x3 stride-1 pool5; context
branches on pool5 (dilated 3x3 convs, then 1x1 reduced); a self-cascade of
residual corrections ("RC") from the widest context to the narrowest;
refinement by RCs with shallow layers, deepest first, an Interp wherever a
tap's resolution is finer; a head (3x3, 1x1 classifier) and an Interp back
to the input size. The ResNet variant puts a frozen batch norm after every
conv but the classifier (PSPNet's BN layer as stock BatchNorm + Scale).
Ablations of the same net (``context``, an empty ``refine``,
``residual_correction``) swap one of those parts and keep the rest.
``ScasConfig.release()`` and ``ScasConfig.release(variant='resnet')`` are
the released VGG_ScasNet and ResNet_ScasNet (6 classes, 400x400).
"""
from dataclasses import dataclass, replace

import caffe
from caffe import layers as L
from caffe import params as P

from caffe_mlic.errors import UsageError
from caffe_mlic.data.labelmaps import IGNORE_LABEL
from caffe_mlic.netspec.blocks import (drop_input_layers, insert_after, max_pool, netspec_to_proto, python_layer,
                                       train_test_data)
from caffe_mlic.inference.settings import MAX_INPUT_SIZE
from caffe_mlic.netspec.config import MAX_WORKERS, Checks, finite, option
from caffe_mlic.netspec.vgg import DEEPLAB_POOLING, VGG16_BLOCKS, VGG16_WIDTHS, vgg16_convs

ZERO_BIAS = dict(type='constant', value=0)
FROZEN_BN = [dict(lr_mult=0, decay_mult=0)] * 3          # BatchNorm: mean, variance, factor
FROZEN_SCALE = [dict(lr_mult=0, decay_mult=0)] * 2       # Scale: slope, bias
BN_EPS = 1e-5
BN_MOMENTUM = 0.95
RESNET101_BLOCKS = (3, 4, 23, 3)                         # conv2_x .. conv5_x
IMAGENET_MEAN = (104.008, 116.669, 122.675)
# Train nets: He init on every conv (a backbone from DeepLab / PSPNet weights
# overwrites its part; the rest has no pretrained model).
TRAIN_FILLER = dict(type='msra')
CLASSIFIER_FILLER = dict(type='gaussian', std=0.01)
# The release's context rates, meant for its 51x51 pool5 map (400 px): other
# sizes scale them by the map's side.
RELEASE_DILATIONS = (6, 12, 18, 24)
RELEASE_POOL5 = 51
# The largest context rate accepted, with allow_wide_dilations too: pool5's
# side at the largest crop worth building (8192 px); a rate beyond it only
# pads (and Caffe's int32 fields overflow far above it).
MAX_DILATION = 1024
CONTEXTS = ('cascade', 'parallel', 'none')
# The heads `make demo-scasnet` compares, as ScasConfig overrides: each but
# 'fcn' differs from 'full' (the release's head) in one respect only.
HEADS = {'fcn': dict(context='none', refine=()),          # a plain FCN head: no context, no refinement
         'parallel': dict(context='parallel'),            # ASPP-like context, then the same refinement
         'cascade': dict(refine=()),                      # the self-cascade, no refinement
         'full': {},
         'norc': dict(residual_correction=False)}         # the full net without residual correction
VGG_DILATIONS = (1, 1, 1, 1, 2)      # DeepLab-v2: conv5 dilated by 2 after the stride-1 pool4


@dataclass(frozen=True)
class ScasWidths:
    """Channel widths of everything after the backbone."""
    context: int      # each dilated context conv (fc6_i)
    merge: int        # context reductions and the RCs at the deepest resolution
    low: int          # RCs at a finer resolution (after an Interp)
    bottleneck: int   # an RC's 3x3 at the deepest resolution
    low_bottleneck: int
    head: int         # the head's 3x3


RELEASE_WIDTHS = ScasWidths(1024, 512, 256, 128, 64, 256)
SMALL_SCAS_WIDTHS = ScasWidths(64, 32, 16, 16, 8, 16)
# ScasNet's small VGG is wider than the MLIC nets' tiny one (4 .. 16): from
# scratch and without batch norm, its 13 convs with 4-8 channels stay at the
# label prior.
SMALL_SCAS_VGG = (16, 32, 32, 64, 64)
# backbone: (VGG conv widths, ResNet stem and bottleneck base width, the widths after it)
SCAS_BACKBONES = {'release': (VGG16_WIDTHS, 64, RELEASE_WIDTHS),
                  'small': (SMALL_SCAS_VGG, 4, SMALL_SCAS_WIDTHS)}


@dataclass(frozen=True)
class Variant:
    """How the released nets of each variant name and write their layers."""
    name: str
    refine: tuple              # the release's shallow taps, deepest first
    batch_norm: bool           # BN after every conv but the classifier
    shallow_rc: str            # the inner convs of a refinement RC: prefix + this + '_1x1_reduce'
    head: str                  # the head 3x3's name
    head_learn: list           # the head convs' param blocks (None: none)
    bias_filler: dict          # on the convs that have biases


VARIANTS = {
    'vgg': Variant('VGG_ScasNet', ('conv5_3', 'conv4_3', 'conv3_3'), False, '', 'conv5_4_fpnrc',
                   [dict(lr_mult=20, decay_mult=1)], None),
    'resnet': Variant('ResNet_ScasNet', ('conv5_3', 'conv4_23', 'conv3_4', 'conv2_3'), True, '_merge1',
                      'conv5_4_fpn2', None, ZERO_BIAS),
}


@dataclass
class ScasConfig:
    """Everything the ScasNet nets depend on; the defaults are the release's.
    A new field is one line here: `scasnet netgen` derives its options from
    these (caffe_mlic.netspec.config)."""
    variant: str = option('vgg', 'the variant', choices=sorted(VARIANTS), cli=False)   # netgen: --variant
    num_classes: int = option(6, 'number of classes, >= 2', flag='classes')
    input_size: int = option(400, 'input side in pixels, 16 to 26754')
    dilations: tuple = option(None, "context branch dilations; None: the release's 6 12 18 24 scaled to "
                              "the pool5 side s, round(d * s / 51), at least 1 (6 12 18 24 at 400 px, "
                              "2 4 6 8 at 128); each 1..%d; not with context none" % MAX_DILATION,
                              nargs='+', type=int, metavar='D')
    allow_wide_dilations: bool = option(False, 'accept given dilations >= the pool5 side (such a branch '
                                        'sees only padding off its centre: a 1x1 conv)')
    context: str = option('cascade', "context on pool5: cascade (the release's self-cascade), parallel (the "
                          "same branches summed at once, then as many RCs), none (a plain FCN head)",
                          choices=list(CONTEXTS))
    residual_correction: bool = option(True, 'no residual correction: each RC becomes a plain sum and its '
                                       '1x1 merge', flag='no-residual-correction')
    refine: tuple = option(None, "shallow layers that refine, deepest first; None: the release's, VGG "
                           "conv5_3 conv4_3 conv3_3, ResNet conv5_3 conv4_23 conv3_4 conv2_3; () "
                           "(--set 'refine=()'): none, the coarse scores go straight to the input size; "
                           "each layer once",
                           nargs='+', type=str, metavar='LAYER')
    backbone: str = option('release', "release: the release's widths; small: the same depth with few "
                           "channels (VGG 16-64), for CPU runs ('tiny', its old name, still works)",
                           choices=['release', 'small'], aliases={'tiny': 'small'})
    vgg_blocks: tuple = option(VGG16_BLOCKS, 'VGG convs per block, conv1_x .. conv5_x (fewer: a smaller '
                               'receptive field, so the head decides how far a pixel sees); trailing 0s drop '
                               'those blocks with their pools (1 1 1 0 0: the context runs on pool3); VGG only',
                               metavar='N')
    resnet_blocks: tuple = option(RESNET101_BLOCKS, 'ResNet bottlenecks per block, conv2_x .. conv5_x; ResNet only',
                                  metavar='N')
    bn_trainable: bool = option(False, 'ResNet: learn the batch norms (batch statistics in TRAIN) '
                                'instead of freezing them')
    dropout_ratio: float = option(0.5, 'dropout after the context convs', flag='dropout')
    # the train net's data (SegmentationData); not part of the deploy nets
    train_list: str = option('data/isprs/train.txt', 'TRAIN datalist (image label lines)')
    val_list: str = option('data/isprs/val.txt', 'TEST-phase datalist (loss and pixel accuracy)')
    root_folder: str = option('', "prefix of the datalists' paths")
    batch_size: int = option(4, 'TRAIN crops per batch')
    val_batch_size: int = option(4, 'TEST crops per batch')
    mean: tuple = option(IMAGENET_MEAN, 'BGR mean subtracted by the data layer (1 or 3 values; '
                         'DeepLab-v2 and PSPNet use this one)', nargs='+')
    input_scale: float = option(1.0, 'multiply the mean-subtracted pixels, a finite number > 0 (about '
                                '0.017 for nets from scratch)')
    scale_factors: tuple = option((0.75, 1.0, 1.25), 'TRAIN scale jitter, one drawn per crop',
                                  flag='scales', nargs='+')
    palette: str = option('isprs', "colours of the classes: 'isprs' or a palette file")
    data_seed: int = option(0, "the TRAIN data layer's seed")
    workers: int = option(2, 'data worker processes (0: in-process)')

    @classmethod
    def release(cls, **overrides):
        return replace(cls(), **overrides)

    # Fields that only one variant's nets use: given for the other alone,
    # they would change nothing.
    VARIANT_ONLY = {'vgg_blocks': 'vgg', 'resnet_blocks': 'resnet', 'bn_trainable': 'resnet'}

    def check_given(self, given, asked=None):
        """UsageError for a field in ``given`` (the names set by options or
        --set) that no net written uses: vgg_blocks when only ResNet nets
        are written, resnet_blocks and bn_trainable (VGG has no batch norm)
        when only VGG ones. ``asked``: the
        command's --variant (vgg, resnet or both; default this config's)."""
        written = {'vgg', 'resnet'} if asked == 'both' else {asked or self.variant}
        for name, variant in self.VARIANT_ONLY.items():
            if name in given and variant not in written:
                raise UsageError('%s is for the %s nets only; with variant %s it would change nothing'
                                 % (name, 'VGG' if variant == 'vgg' else 'ResNet', ', '.join(sorted(written))),
                                 name)
        return self

    @property
    def taps(self):
        """The refining layers: ``refine``, or the release's choice (the
        outputs of blocks 5, 4, 3 for VGG; 5, 4, 3, 2 for ResNet), deepest first."""
        if self.refine is not None:
            return tuple(self.refine)
        return tuple(reversed(block_outputs(self)[-len(VARIANTS[self.variant].refine):]))

    @property
    def rates(self):
        """The context branches' dilations: ``dilations``, or the release's
        scaled to the pool5 side (the release's own at 400 px)."""
        if self.dilations is not None:
            return tuple(self.dilations)
        side = resolutions(self)['pool5']
        return tuple(max(1, round(d * side / RELEASE_POOL5)) for d in RELEASE_DILATIONS)

    def validate(self):
        """Raise UsageError naming the field of the first impossible value; returns self."""
        check = Checks(self)
        # bools are bools, lists hold numbers (no bools) or names: the checks below look inside
        check.kinds('dilations', 'refine')       # these two: their own checks below
        check.choices()
        check.positive_ints('num_classes', 'input_size', 'batch_size', 'val_batch_size')
        if self.num_classes < 2:   # a softmax over one class is constant: nothing to learn
            check.bad('num_classes', 'must be at least 2')
        if self.input_size < 16:
            check.bad('input_size', 'must be at least 16 (three stride-2 steps)')
        check.at_most('input_size', MAX_INPUT_SIZE, "a 1 x 3 x S x S input within Caffe's 2^31 - 1 values")
        given = self.dilations
        if given is not None and not (isinstance(given, (tuple, list)) and given and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in given)):
            check.bad('dilations', 'must be positive integers')
        if given is not None:
            check.at_most('dilations', MAX_DILATION, "pool5's side at 8192 px; wider only pads")
            if self.context == 'none':
                check.bad('dilations', 'are the context branches\' rates: they do not go with context none '
                                       '(which has no context module)')
        blocks = self.vgg_blocks
        if len(blocks) != 5 or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in blocks) \
                or not blocks[0] or not all(blocks[:present_blocks(blocks)]):
            check.bad('vgg_blocks', 'must be five integers (conv1_x .. conv5_x), each >= 1 but for trailing 0s, '
                                    'which drop those blocks (conv1_x stays)')
        if len(self.resnet_blocks) != 4 or not all(isinstance(c, int) and c >= 1 for c in self.resnet_blocks):
            check.bad('resnet_blocks', 'must be four positive integers (conv2_x .. conv5_x)')
        if self.context != 'none' and not self.allow_wide_dilations:
            side = resolutions(self)['pool5']
            for i, d in enumerate(self.rates, 1):
                # a tap d away from the centre lies inside a map of side s only if d <= s - 1
                if d >= side:
                    raise UsageError('dilations: branch fc6_%d has rate %d, but the %s map it runs on is '
                                     '%dx%d (at %d px): its off-centre taps see only padding, a 1x1 conv; the '
                                     'largest useful rate is %d (allow_wide_dilations keeps it)'
                                     % (i, d, deep_map(self), side, side, self.input_size, side - 1),
                                     'dilations')
        check.fraction('dropout_ratio')
        if len(self.mean) not in (1, 3) or not all(finite(v) for v in self.mean):
            check.bad('mean', 'needs 1 or 3 values (B, G, R)')
        check.positive_numbers('input_scale')
        check.scale_factors()
        check.nonnegative_ints('workers', 'data_seed')
        check.at_most('workers', MAX_WORKERS, 'each is a process with its own memory')
        check.at_most('num_classes', 255, 'label maps are 8-bit and 255 is the ignore label')
        check.at_most('resnet_blocks', 100, 'ResNet-101 has 3 4 23 3')
        check.at_most('vgg_blocks', 100, 'VGG16 has 2 2 3 3 3')
        check.words('train_list', 'val_list')
        if self.refine is not None and not (isinstance(self.refine, (tuple, list)) and all(
                isinstance(t, str) for t in self.refine)):
            check.bad('refine', 'must be layer names (--refine conv5_3 conv4_3, '
                                "--set 'refine=(\"conv5_3\", \"conv4_3\")', or () for none)")
        outputs = block_outputs(self)
        taps = list(self.taps)
        repeated = sorted({t for t in taps if taps.count(t) > 1})
        if repeated:
            raise UsageError('refine names %s more than once: each layer refines once, got %s'
                             % (', '.join(repeated), ', '.join(taps)), 'refine')
        if any(t not in outputs for t in taps) or \
                [outputs.index(t) for t in taps] != sorted((outputs.index(t) for t in taps), reverse=True):
            raise UsageError('refine must be block outputs among %s, deepest first, got %s'
                             % (', '.join(reversed(outputs)), ', '.join(taps)), 'refine')
        return self

    def describe_context(self):
        """One line on the context module and its rates (`scasnet netgen` prints it)."""
        reach = receptive_fields(self)
        seen = ('; receptive field %d px at %s, %d px after the context, crop %d px'
                % (reach['pool5'], deep_map(self), reach['context'], self.input_size)) if reach else ''
        if self.context == 'none':
            return '%s: no context module (context none)%s' % (self.variant, seen)
        side = resolutions(self)['pool5']
        how = ('as given' if self.dilations is not None else "the release's" if side == RELEASE_POOL5 else
               "the release's %s scaled by %d/%d" % (' '.join(map(str, RELEASE_DILATIONS)), side, RELEASE_POOL5))
        return '%s: %s context, dilations %s (%s %dx%d at %d px; %s)%s' % (
            self.variant, self.context, ' '.join(map(str, self.rates)), deep_map(self), side, side,
            self.input_size, how, seen)


# ---------------------------------------------------------------- sizes


def pooled_size(size, kernel, stride, pad):
    """Caffe's pooling output size: rounded up, the last window starting inside."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def present_blocks(vgg_blocks):
    """How many VGG blocks a net has: those before the trailing 0s."""
    count = len(vgg_blocks)
    while count and not vgg_blocks[count - 1]:
        count -= 1
    return count


def deep_map(cfg):
    """The name of the map the context runs on: pool5, or the last pool
    when VGG blocks are dropped (resolutions' and receptive_fields' 'pool5')."""
    return 'pool%d' % present_blocks(cfg.vgg_blocks) if cfg.variant == 'vgg' else 'pool5'


def receptive_fields(cfg):
    """VGG variant: the theoretical receptive field (px, one side) of a
    unit of the deep map (key 'pool5', see deep_map) and of a unit after the
    context module (for cascade and parallel, through the widest branch;
    for none, fc6's 3x3), before the refinement and the head; None for
    ResNet."""
    if cfg.variant != 'vgg':
        return None
    field, jump = 1, 1
    for b, count in enumerate(cfg.vgg_blocks[:present_blocks(cfg.vgg_blocks)]):
        field += count * 2 * VGG_DILATIONS[b] * jump                  # 3x3 convs
        field += (DEEPLAB_POOLING.kernel - 1) * jump                   # the 3x3 pool
        jump *= DEEPLAB_POOLING.strides[b]
    widest = 1 if cfg.context == 'none' else max(cfg.rates)
    return {'pool5': field, 'context': field + 2 * widest * jump}


def conv_size(size, kernel, stride, pad):
    """Caffe's convolution output size (rounded down)."""
    return (size + 2 * pad - kernel) // stride + 1


def block_outputs(cfg):
    """The backbone's block outputs (the possible taps), shallowest first."""
    if cfg.variant == 'vgg':
        return ['conv%d_%d' % (b, count) for b, count in enumerate(cfg.vgg_blocks, 1) if count]
    return ['conv%d_%d' % (b, count) for b, count in enumerate(cfg.resnet_blocks, 2)]


def resolutions(cfg):
    """{block output: its side, 'pool5': the deep map's side (deep_map)} at cfg.input_size."""
    size, sizes = cfg.input_size, {}
    if cfg.variant == 'vgg':
        for b, name in enumerate(block_outputs(cfg), 1):
            sizes[name] = size
            size = pooled_size(size, DEEPLAB_POOLING.kernel, DEEPLAB_POOLING.strides[b - 1],
                               DEEPLAB_POOLING.pad)
        sizes['pool5'] = size
        return sizes
    size = pooled_size(conv_size(size, 3, 2, 1), 3, 2, 1)      # stem, pool1
    for b, name in enumerate(block_outputs(cfg), 2):
        if b == 3:
            size = conv_size(size, 3, 2, 1)                     # conv3_1 strides 2
        sizes[name] = size
    sizes['pool5'] = pooled_size(size, 3, 1, 1)
    return sizes


# ---------------------------------------------------------------- pieces


class Builder:
    """Adds the layers of one variant to a NetSpec, named and written as released."""

    def __init__(self, n, cfg, train=False):
        self.n, self.cfg, self.variant = n, cfg, VARIANTS[cfg.variant]
        self.train = train
        # train nets: fillers on every conv
        self.filler = dict(weight_filler=TRAIN_FILLER) if train else {}

    def add(self, name, top):
        setattr(self.n, name, top)
        return top

    def conv(self, name, bottom, nout, kernel=1, pad=0, stride=1, relu=True, dilation=1,
             bias=False, relu_name=None, **extra):
        """A conv as the variant writes it (then BN and ReLU as asked): with
        batch norm, no bias unless ``bias`` (then the variant's bias filler)."""
        kw = dict(num_output=nout, pad=pad, kernel_size=kernel, stride=stride, **self.filler, **extra)
        if dilation != 1:
            kw['dilation'] = dilation
        if self.variant.batch_norm:
            if bias:
                kw['bias_filler'] = self.variant.bias_filler
            else:
                kw['bias_term'] = False
        top = self.add(name, L.Convolution(bottom, **kw))
        self.batch_norm(name, top)
        if relu:
            self.add('_relu_' + name, L.ReLU(top, in_place=True, name=relu_name or name + '/relu'))
        return top

    def batch_norm(self, name, top):
        """PSPNet's BN on stock layers: BatchNorm (<name>/bn) + Scale
        (<name>/scale), in place; frozen: global statistics, nothing learned."""
        if not self.variant.batch_norm:
            return
        frozen = not self.cfg.bn_trainable or not self.train
        # PSPNet's momentum 0.95 is BatchNorm's moving_average_fraction; its
        # slope / bias fillers (1, 0) are the Scale's. Not frozen (a train
        # net): no use_global_stats, so Caffe uses the batch's statistics in
        # TRAIN and the stored ones in TEST, and the Scale learns.
        stats = dict(use_global_stats=True, param=FROZEN_BN) if frozen else {}
        bn = L.BatchNorm(top, in_place=True, name=name + '/bn', eps=BN_EPS,
                         moving_average_fraction=BN_MOMENTUM, **stats)
        self.add('_bn_' + name, bn)
        scale = L.Scale(bn, in_place=True, name=name + '/scale', bias_term=True,
                        filler=dict(type='constant', value=1), bias_filler=ZERO_BIAS,
                        **(dict(param=FROZEN_SCALE) if frozen else {}))
        self.add('_scale_' + name, scale)

    def residual_correction(self, prefix, inputs, width, bottleneck, out_width, inner=''):
        """RC: x = the sum of ``inputs`` (one input: itself); x2 = x + (1x1
        reduce + ReLU -> 3x3 + ReLU -> 1x1 increase); then a 1x1 conv
        (<prefix>_merge2_reduce) + ReLU. Without residual correction: x, then the 1x1."""
        x = inputs[0] if len(inputs) == 1 else self.add(prefix + '_merge1',
                                                        L.Eltwise(*inputs, operation=P.Eltwise.SUM))
        if self.cfg.residual_correction:
            r = self.conv(prefix + inner + '_1x1_reduce', x, bottleneck)
            r = self.conv(prefix + inner + '_3x3', r, bottleneck, kernel=3, pad=1)
            increase = self.conv(prefix + inner + '_1x1_increase', r, width, relu=False)
            x = self.add(prefix + '_merge2', L.Eltwise(x, increase, operation=P.Eltwise.SUM))
        return self.conv(prefix + '_merge2_reduce', x, out_width)

    def interp(self, name, bottom, size):
        return self.add(name, python_layer('Interp', [bottom], dict(height=size, width=size)))

    # ------------------------------------------------------------ backbones

    def vgg(self, data, widths):
        present = present_blocks(self.cfg.vgg_blocks)
        return vgg16_convs(self.n, data, widths, pools=present, learn=None, pooling=DEEPLAB_POOLING,
                           dilations=VGG_DILATIONS, filler=TRAIN_FILLER if self.train else None,
                           blocks=tuple(self.cfg.vgg_blocks[:present]))

    def resnet(self, data, base):
        """PSPNet's ResNet: the deep stem, then bottleneck blocks conv2_x .. conv5_x."""
        top = data
        for name, nout, stride in (('conv1_1_3x3_s2', base, 2), ('conv1_2_3x3', base, 1),
                                   ('conv1_3_3x3', 2 * base, 1)):
            top = self.conv(name, top, nout, kernel=3, pad=1, stride=stride)
        top = self.add('pool1_3x3_s2', max_pool(top, 3, 2, 1))
        for b, count in enumerate(self.cfg.resnet_blocks, 2):
            width = base * 2 ** (b - 2)
            dilation = {4: 2, 5: 4}.get(b, 1)
            for i in range(1, count + 1):
                unit = 'conv%d_%d' % (b, i)
                stride = 2 if (b == 3 and i == 1) else 1
                r = self.conv(unit + '_1x1_reduce', top, width)
                r = self.conv(unit + '_3x3', r, width, kernel=3, pad=dilation, stride=stride,
                              dilation=dilation)
                increase = self.conv(unit + '_1x1_increase', r, 4 * width, relu=False)
                shortcut = top if i > 1 else self.conv(unit + '_1x1_proj', top, 4 * width,
                                                       stride=stride, relu=False)
                top = self.add(unit, L.Eltwise(shortcut, increase, operation=P.Eltwise.SUM))
                self.add('_relu_' + unit, L.ReLU(top, in_place=True, name=unit + '/relu'))
        return self.add('pool5', max_pool(top, 3, 1, 1))

    # ------------------------------------------------------------ after the backbone

    def branch(self, name, pool5, dilation, widths, tag):
        """A context conv (3x3, dilated unless ``dilation`` is None) + ReLU
        (relu<tag>) + Dropout (drop<tag>)."""
        kw = dict(num_output=widths.context, pad=dilation or 1, kernel_size=3, **self.filler)
        if dilation is not None:
            kw['dilation'] = dilation
        if self.variant.bias_filler:
            kw['bias_filler'] = self.variant.bias_filler
        top = self.add(name, L.Convolution(pool5, **kw))
        self.batch_norm(name, top)
        self.add('_relu_' + name, L.ReLU(top, in_place=True, name='relu' + tag))
        if self.cfg.dropout_ratio:
            self.add('_drop_' + name, L.Dropout(top, dropout_ratio=self.cfg.dropout_ratio,
                                                in_place=True, name='drop' + tag))
        return top

    def branches(self, pool5, widths, out_width):
        """The dilated context branches: their 1x1 reductions, in order (a
        lone branch's to ``out_width``: no RC follows to set the width)."""
        rates = self.cfg.rates
        return [self.conv('fc6_%d_reduce' % i, self.branch('fc6_%d' % i, pool5, d, widths, '6_%d' % i),
                          widths.merge if len(rates) > 1 else out_width) for i, d in enumerate(rates, 1)]

    # Each context returns its output and the stem of an Interp after it.

    def cascade(self, pool5, widths, out_width):
        """RC(widest, next) -> RC(., next) ...: fc6_34, fc6_234, fc6_1234 as released."""
        reduced = self.branches(pool5, widths, out_width)
        top, digits = reduced[-1], str(len(reduced))
        for i in range(len(reduced) - 1, 0, -1):
            digits = str(i) + digits
            top = self.residual_correction('fc6_%s' % digits, [top, reduced[i - 1]], widths.merge,
                                           widths.bottleneck, widths.merge if i > 1 else out_width)
        return top, 'fc6_%s_merge2' % digits

    def parallel(self, pool5, widths, out_width):
        """ASPP-like: the same branches summed at once (fc6_sum), then as many
        RCs as the cascade has, on that one map (the same parameters)."""
        reduced = self.branches(pool5, widths, out_width)
        top, stem = reduced[0], 'fc6_1'
        if len(reduced) > 1:       # Eltwise needs two bottoms
            top, stem = self.add('fc6_sum', L.Eltwise(*reduced, operation=P.Eltwise.SUM)), 'fc6_sum'
        for j in range(1, len(reduced)):
            top, stem = self.residual_correction('fc6_rc%d' % j, [top], widths.merge, widths.bottleneck,
                                                 widths.merge if j + 1 < len(reduced) else out_width), \
                'fc6_rc%d_merge2' % j
        return top, stem

    def plain(self, pool5, widths, out_width):
        """No context module: FCN's fc6 (3x3, undilated) and fc7 (1x1 to ``out_width``)."""
        return self.conv('fc7', self.branch('fc6', pool5, None, widths, '6'), out_width), 'fc7'

    def refine_width(self, widths):
        """The width the refinement takes its input at (the context's
        output): its first RC's, narrower when that tap is finer than the
        deep map (VGG blocks dropped); the merge width without taps."""
        sizes, taps = resolutions(self.cfg), self.cfg.taps
        return widths.low if taps and sizes[taps[0]] != sizes['pool5'] else widths.merge

    def refine(self, top, stem, widths):
        """RCs with the shallow taps, deepest first; an Interp brings the
        result to a finer tap's resolution, where the RCs are narrower. No
        taps: ``top`` as it is."""
        sizes, taps = resolutions(self.cfg), list(self.cfg.taps)
        size = sizes['pool5']
        for j, tap in enumerate(taps):
            if sizes[tap] != size:
                size = sizes[tap]
                top = self.interp(stem + '_interp', top, size)
            width, bottleneck = ((widths.merge, widths.bottleneck) if size == sizes['pool5']
                                 else (widths.low, widths.low_bottleneck))
            shallow = self.conv(tap + '_reduce', getattr(self.n, tap), width)
            finer_next = j + 1 < len(taps) and sizes[taps[j + 1]] != size
            top = self.residual_correction(tap, [top, shallow], width, bottleneck,
                                           widths.low if finer_next else width,
                                           inner=self.variant.shallow_rc)
            stem = tap + '_merge2'
        return top

    def head(self, top, widths):
        learn = dict(param=self.variant.head_learn) if self.variant.head_learn else {}
        bias = dict(bias_filler=self.variant.bias_filler) if self.variant.bias_filler else {}
        name = self.variant.head
        top = self.add(name, L.Convolution(top, num_output=widths.head, kernel_size=3, stride=1, pad=1,
                                           **learn, **bias, **self.filler))
        self.batch_norm(name, top)
        self.add('_relu_' + name, L.ReLU(top, in_place=True, name=name + '/relu'))
        # The classifier starts small (DeepLab's fc8: gaussian 0.01): the
        # loss starts near the label prior.
        classifier_filler = dict(weight_filler=CLASSIFIER_FILLER) if self.train else {}
        scores = self.add('conv6_funetuning_fpn', L.Convolution(
            top, num_output=self.cfg.num_classes, kernel_size=1, stride=1, **learn, **bias, **classifier_filler))
        return self.interp('conv6_interp', scores, self.cfg.input_size)


def _body(n, cfg, data, train=False):
    """Backbone, context, cascade, refinement and head on ``data``: the
    scores at S x S (conv6_interp)."""
    vgg_widths, resnet_base, widths = SCAS_BACKBONES[cfg.backbone]
    build = Builder(n, cfg, train)
    pool5 = build.vgg(data, vgg_widths) if cfg.variant == 'vgg' else build.resnet(data, resnet_base)
    context = {'cascade': build.cascade, 'parallel': build.parallel, 'none': build.plain}[cfg.context]
    top, stem = context(pool5, widths, build.refine_width(widths))
    return build.head(build.refine(top, stem, widths), widths)


def scasnet_deploy(cfg):
    """A ScasNet for inference: data (1, 3, S, S) -> conv6_interp, the class
    scores at S x S (no softmax, as released)."""
    cfg.validate()
    n = caffe.NetSpec()
    n.data = L.Input()
    _body(n, cfg, n.data)
    proto = netspec_to_proto(n, VARIANTS[cfg.variant].name,
                             inputs=[('data', [1, 3, cfg.input_size, cfg.input_size])])
    return drop_input_layers(proto)


def _seg_data(cfg, train):
    """SegmentationData's parameters for the TRAIN (train_list: random
    crops, scale jitter, both flips) or TEST phase (val_list: centre crops)."""
    p = dict(source=cfg.train_list if train else cfg.val_list, root_folder=cfg.root_folder,
             batch_size=cfg.batch_size if train else cfg.val_batch_size, crop_size=cfg.input_size,
             num_classes=cfg.num_classes, shuffle=train, mean_value=list(cfg.mean), palette=cfg.palette)
    if train:
        p.update(mirror=True, vertical_flip=True, scale_factors=list(cfg.scale_factors), seed=cfg.data_seed)
    if cfg.workers != 2:
        p['workers'] = cfg.workers
    if cfg.input_scale != 1.0:
        p['scale'] = cfg.input_scale
    return p


def scasnet_train(cfg):
    """A ScasNet to train: SegmentationData (crops of input_size) -> the
    deploy net's layers (with fillers; BN learned with bn_trainable) ->
    SoftmaxWithLoss ignoring 255; TEST also reports pixel accuracy."""
    cfg.validate()
    n = caffe.NetSpec()
    test_data = train_test_data(n, 'SegmentationData', lambda train: _seg_data(cfg, train), ['data', 'label'])
    scores = _body(n, cfg, n.data, train=True)
    ignore = dict(ignore_label=IGNORE_LABEL)
    n.loss = L.SoftmaxWithLoss(scores, n.label, loss_param=dict(ignore_label=IGNORE_LABEL, normalization=P.Loss.VALID))
    n.accuracy = L.Accuracy(scores, n.label, accuracy_param=ignore, include=dict(phase=caffe.TEST))
    proto = netspec_to_proto(n, VARIANTS[cfg.variant].name + '_train')
    insert_after(proto, 'data', test_data)
    return proto


def vgg_scasnet(cfg=None):
    """The VGG variant's {'train': NetParameter, 'deploy': NetParameter}."""
    cfg = replace(cfg or ScasConfig.release(), variant='vgg')
    return dict(train=scasnet_train(cfg), deploy=scasnet_deploy(cfg))


def resnet_scasnet(cfg=None):
    """The ResNet variant's {'train': NetParameter, 'deploy': NetParameter}."""
    cfg = replace(cfg or ScasConfig.release(variant='resnet'), variant='resnet')
    return dict(train=scasnet_train(cfg), deploy=scasnet_deploy(cfg))


BUILDERS = {'vgg': vgg_scasnet, 'resnet': resnet_scasnet}
