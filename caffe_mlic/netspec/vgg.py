"""The one VGG16 builder, used by every net that has a VGG backbone.

``names`` picks the naming scheme: the plain one (conv1_1 .. conv5_3, pool1 ..
pool5) or the teacher copy inside the KD nets (conv_wsd_1_1, pool_wsd_1, ...);
ReLUs are relu<b>_<i> in both, as in the released nets. ``widths`` lets tests
and CPU experiments run the same graph with few channels.
"""
import re

from caffe_mlic.netspec.blocks import LEARN, conv_relu, max_pool

VGG16_BLOCKS = (2, 2, 3, 3, 3)
VGG16_WIDTHS = (64, 128, 256, 512, 512)
TINY_WIDTHS = (4, 8, 8, 16, 16)
VGG16_FC = 4096
TINY_FC = 32
# One conv per block: the VGG layout (five blocks at strides 1..16, fc6, fc7)
# at a depth that trains from scratch on two CPU cores (the 13-conv tiny
# stack without BN stays at the label prior for hundreds of iterations).
MINI_BLOCKS = (1, 1, 1, 1, 1)
MINI_WIDTHS = (16, 32, 48, 64, 64)
MINI_FC = 64

# name: (conv widths per block, fc6/fc7 width, convs per block)
BACKBONES = {'vgg16': (VGG16_WIDTHS, VGG16_FC, VGG16_BLOCKS),
             'tiny': (TINY_WIDTHS, TINY_FC, VGG16_BLOCKS),
             'mini': (MINI_WIDTHS, MINI_FC, MINI_BLOCKS)}
# The released VGG16 convs have no filler (they start from an ImageNet model).
# The tiny backbone has no pretrained model: He ("msra") init keeps the signal
# through its 13 ReLU convs (Caffe's xavier, variance 1/fan_in, lets it shrink
# about 500x by conv5_3 and the net never leaves the label prior).
CONV_FILLERS = {'vgg16': None, 'tiny': dict(type='msra'), 'mini': dict(type='msra')}


class VggNames:
    """How a VGG's layers are named: templates with {b} (block) and {i} (index)."""

    def __init__(self, conv, pool, fc):
        self.conv, self.pool, self.fc = conv, pool, fc

    def learnable(self, name):
        """Whether ``name`` is one of these convs or fcs (fc8_c / fc8_d included)."""
        return any(re.fullmatch(re.escape(t).replace(r'\{b\}', r'\d+').replace(r'\{i\}', r'[0-9a-z_]+'), name)
                   for t in (self.conv, self.fc))


PLAIN = VggNames(conv='conv{b}_{i}', pool='pool{b}', fc='fc{i}')
TEACHER = VggNames(conv='conv_wsd_{b}_{i}', pool='pool_wsd_{b}', fc='fc_wsd_{i}')


class Pooling:
    """How the backbone pools: kernel, pad, and a stride per pool."""

    def __init__(self, kernel, strides, pad=0):
        self.kernel, self.strides, self.pad = kernel, tuple(strides), pad


CLASSIC_POOLING = Pooling(2, (2, 2, 2, 2, 2))
# DeepLab-v2's: 3x3 pad 1 (Caffe rounds up), pool4 and pool5 at stride 1.
DEEPLAB_POOLING = Pooling(3, (2, 2, 2, 1, 1), pad=1)


def vgg16_convs(n, bottom, widths, names=PLAIN, pools=4, freeze=False, filler=None,
                blocks=VGG16_BLOCKS, learn=LEARN, pooling=CLASSIC_POOLING, dilations=(1, 1, 1, 1, 1)):
    """Add conv1_1 .. conv5_3 (+ ReLUs) and the first ``pools`` poolings to NetSpec n.

    ``pooling`` and ``dilations`` (one per block) make the DeepLab-v2 variant
    ScasNet uses (stride-1 pool4/pool5, dilated conv5); ``learn`` None: no
    param blocks. Returns the last top (conv5_3, or pool5 when pools == 5).
    """
    top = bottom
    for b, (count, width) in enumerate(zip(blocks, widths), start=1):
        for i in range(1, count + 1):
            conv_name = names.conv.format(b=b, i=i)
            conv, relu = conv_relu(top, width, 'relu%d_%d' % (b, i), freeze=freeze, filler=filler,
                                   learn=learn, dilation=dilations[b - 1])
            setattr(n, conv_name, conv)
            setattr(n, '_relu_%s' % conv_name, relu)
            top = conv
        if b <= pools:
            top = max_pool(top, pooling.kernel, pooling.strides[b - 1], pooling.pad)
            setattr(n, names.pool.format(b=b), top)
    return top
