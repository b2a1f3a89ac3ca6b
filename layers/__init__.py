"""The Python layers that caffe-mlic prototxts name.

In a prototxt:  type: "Python"
                python_param { module: "caffe_mlic.layers" layer: "ROIPooling"
                               param_str: '{"pooled_h": 7, "pooled_w": 7}' }
"""
from .cross_entropy import CrossEntropyLoss

__all__ = ['CrossEntropyLoss']
