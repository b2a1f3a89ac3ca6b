"""caffe-mlic: MLIC-KD-WSD and ScasNet on stock Caffe, with Python layers.

Prototxts name our layers as ``python_param { module: "caffe_mlic.layers"
layer: "<ClassName>" param_str: '<JSON>' }``.
"""
__version__ = '0.1.0'

LAYER_MODULE = 'caffe_mlic.layers'
