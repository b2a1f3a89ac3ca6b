"""ScasNet (self-cascaded CNN for semantic labeling of aerial images, ISPRS
J. P&RS 2018): the VGG variant's deploy net, from one ScasConfig.

The net: a DeepLab-v2 VGG16 backbone (3x3 pad-1 pools, pool4/pool5 at
stride 1, conv5 dilated 2); four context branches on pool5 (dilated 3x3
convs, then 1x1 reduced); a self-cascade of residual corrections ("RC")
from the widest context to the narrowest; refinement by RCs with shallow
layers, an Interp wherever the tap's resolution is finer; a head (3x3, 1x1
classifier) and an Interp back to the input size. ``ScasConfig.release()``
is the released VGG_ScasNet (6 classes, 400x400).
"""
from dataclasses import dataclass, field, replace

import caffe
from caffe import layers as L
from caffe import params as P

from caffe_mlic.errors import UsageError
from caffe_mlic.netspec.blocks import netspec_to_proto, python_layer
from caffe_mlic.netspec.vgg import DEEPLAB_POOLING, VGG16_BLOCKS, VGG16_WIDTHS, TINY_WIDTHS, vgg16_convs

HEAD_LEARN = [dict(lr_mult=20, decay_mult=1)]   # the two head convs' weights, as released


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
TINY_SCAS_WIDTHS = ScasWidths(32, 16, 8, 8, 4, 8)
SCAS_BACKBONES = {'vgg16': (VGG16_WIDTHS, RELEASE_WIDTHS), 'tiny': (TINY_WIDTHS, TINY_SCAS_WIDTHS)}


@dataclass
class ScasConfig:
    num_classes: int = 6
    input_size: int = 400
    dilations: tuple = (6, 12, 18, 24)
    refine: tuple = ('conv5_3', 'conv4_3', 'conv3_3')   # shallow layers, deepest first
    backbone: str = 'vgg16'
    dropout_ratio: float = 0.5
    extra: dict = field(default_factory=dict)

    @classmethod
    def release(cls, **overrides):
        return replace(cls(), **overrides)

    def validate(self):
        def bad(name, message):
            raise UsageError('%s %s, got %r' % (name, message, getattr(self, name)), name)
        for key in ('num_classes', 'input_size'):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                bad(key, 'must be a positive integer')
        if self.input_size < 16:
            bad('input_size', 'must be at least 16 (three stride-2 pools)')
        if not self.dilations or not all(isinstance(d, int) and d >= 1 for d in self.dilations):
            bad('dilations', 'must be positive integers')
        if self.backbone not in SCAS_BACKBONES:
            bad('backbone', 'must be one of %s' % ', '.join(sorted(SCAS_BACKBONES)))
        known = [VGG_CONV.format(b=b, i=len(range(count))) for b, count in enumerate(VGG16_BLOCKS, 1)]
        taps = list(self.refine)
        if not taps or any(t not in known for t in taps) or \
                [known.index(t) for t in taps] != sorted((known.index(t) for t in taps), reverse=True):
            bad('refine', 'must be block outputs among %s, deepest first' % ', '.join(reversed(known)))
        if not 0 <= self.dropout_ratio < 1:
            bad('dropout_ratio', 'must be in [0, 1)')
        return self


VGG_CONV = 'conv{b}_{i}'


def pooled_size(size, kernel, stride, pad):
    """Caffe's pooling output size: rounded up, the last window starting inside."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def vgg_resolutions(input_size, pooling=DEEPLAB_POOLING):
    """{block output name: its side} of the DeepLab VGG at ``input_size``."""
    sizes, size = {}, input_size
    for b, count in enumerate(VGG16_BLOCKS, 1):
        sizes[VGG_CONV.format(b=b, i=count)] = size
        size = pooled_size(size, pooling.kernel, pooling.strides[b - 1], pooling.pad)
    sizes['pool5'] = size
    return sizes


def conv(bottom, nout, kernel=1, pad=0, **kwargs):
    """A conv written as the released ScasNet writes its 1x1 and 3x3 convs
    (num_output, pad, kernel_size, stride 1)."""
    return L.Convolution(bottom, num_output=nout, pad=pad, kernel_size=kernel, stride=1, **kwargs)


def relu(n, name, top):
    setattr(n, '_relu_' + name, L.ReLU(top, in_place=True, name=name + '/relu'))


def conv_relu(n, name, bottom, nout, kernel=1, pad=0):
    top = conv(bottom, nout, kernel, pad)
    setattr(n, name, top)
    relu(n, name, top)
    return top


def residual_correction(n, prefix, a, b, width, bottleneck, out_width):
    """RC: x = a + b; x2 = x + (1x1 reduce + ReLU -> 3x3 + ReLU -> 1x1
    increase); then a 1x1 conv (<prefix>_merge2_reduce) + ReLU. Returns it."""
    merge1 = L.Eltwise(a, b, operation=P.Eltwise.SUM)
    setattr(n, prefix + '_merge1', merge1)
    r = conv_relu(n, prefix + '_1x1_reduce', merge1, bottleneck)
    r = conv_relu(n, prefix + '_3x3', r, bottleneck, kernel=3, pad=1)
    increase = conv(r, width)
    setattr(n, prefix + '_1x1_increase', increase)
    merge2 = L.Eltwise(merge1, increase, operation=P.Eltwise.SUM)
    setattr(n, prefix + '_merge2', merge2)
    return conv_relu(n, prefix + '_merge2_reduce', merge2, out_width)


def _interp(n, name, bottom, size):
    top = python_layer('Interp', [bottom], dict(height=size, width=size))
    setattr(n, name, top)
    return top


def _context(n, pool5, cfg, widths):
    """The dilated context branches on pool5: their 1x1 reductions, in order."""
    reduced = []
    for i, d in enumerate(cfg.dilations, 1):
        top = L.Convolution(pool5, num_output=widths.context, pad=d, kernel_size=3, dilation=d)
        setattr(n, 'fc6_%d' % i, top)
        setattr(n, '_relu6_%d' % i, L.ReLU(top, in_place=True, name='relu6_%d' % i))
        if cfg.dropout_ratio:
            setattr(n, '_drop6_%d' % i, L.Dropout(top, dropout_ratio=cfg.dropout_ratio, in_place=True,
                                                  name='drop6_%d' % i))
        reduced.append(conv_relu(n, 'fc6_%d_reduce' % i, top, widths.merge))
    return reduced


def vgg_scasnet_deploy(cfg):
    """The VGG ScasNet for inference: data (1, 3, S, S) -> conv6_interp, class scores at S x S."""
    cfg.validate()
    backbone_widths, widths = SCAS_BACKBONES[cfg.backbone]
    n = caffe.NetSpec()
    n.data = L.Input()
    vgg16_convs(n, n.data, backbone_widths, pools=5, learn=None, pooling=DEEPLAB_POOLING,
                dilations=(1, 1, 1, 1, 2))
    reduced = _context(n, n.pool5, cfg, widths)

    # Self-cascade, widest context first: RC(24, 18) -> RC(., 12) -> RC(., 6).
    k = len(reduced)
    top, name = reduced[-1], str(k)
    for i in range(k - 1, 0, -1):
        name = str(i) + name
        top = residual_correction(n, 'fc6_%s' % name, top, reduced[i - 1], widths.merge,
                                  widths.bottleneck, widths.merge)

    # Refinement with the shallow layers, deepest first; an Interp brings the
    # result to a finer tap's resolution, and RCs there are narrower.
    sizes = vgg_resolutions(cfg.input_size)
    size, taps, previous = sizes['pool5'], list(cfg.refine), None
    for j, tap in enumerate(taps):
        if sizes[tap] != size:
            size = sizes[tap]
            top = _interp(n, previous + '_merge2_interp', top, size)
        width, bottleneck = ((widths.merge, widths.bottleneck) if size == sizes['pool5']
                             else (widths.low, widths.low_bottleneck))
        shallow = conv_relu(n, tap + '_reduce', getattr(n, tap), width)
        finer_next = j + 1 < len(taps) and sizes[taps[j + 1]] != size
        top = residual_correction(n, tap, top, shallow, width, bottleneck,
                                  widths.low if finer_next else width)
        previous = tap

    head = L.Convolution(top, num_output=widths.head, kernel_size=3, stride=1, pad=1, param=HEAD_LEARN)
    n.conv5_4_fpnrc = head
    relu(n, 'conv5_4_fpnrc', head)
    n.conv6_funetuning_fpn = L.Convolution(head, num_output=cfg.num_classes, kernel_size=1, stride=1,
                                           param=HEAD_LEARN)
    _interp(n, 'conv6_interp', n.conv6_funetuning_fpn, cfg.input_size)
    proto = netspec_to_proto(n, 'VGG_ScasNet', inputs=[('data', [1, 3, cfg.input_size, cfg.input_size])])
    del proto.layer[0]            # the Input layer: the blob comes from `input:`
    return proto
