"""The Python layers that caffe-mlic prototxts name.

In a prototxt:  type: "Python"
                python_param { module: "caffe_mlic.layers" layer: "ROIPooling"
                               param_str: '{"pooled_h": 7, "pooled_w": 7}' }
Python loss layers need an explicit `loss_weight: 1`.
"""
from .cross_entropy import CrossEntropyLoss
from .data import MultiLabelProposalData
from .guard import DivergenceGuard
from .interp import Interp
from .kd_losses import FeatureMimicLoss, SoftSigmoidCrossEntropyLoss
from .roi_pooling import ROIPooling
from .roigen import WsdRoigen, WsdRoigenSingleScale
from .seg_data import SegmentationData
from .wsddn_score import WSDDNScore

__all__ = ['CrossEntropyLoss', 'DivergenceGuard', 'FeatureMimicLoss', 'Interp', 'MultiLabelProposalData', 'ROIPooling',
           'SegmentationData', 'SoftSigmoidCrossEntropyLoss', 'WSDDNScore', 'WsdRoigen', 'WsdRoigenSingleScale']
