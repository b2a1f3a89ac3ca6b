"""WSDDNScore: the WSDDN two-stream head fused into one layer.

The original wired Reshape (-1, B, C, 1) -> Softmax over classes (axis 2) on
fc8_c and Softmax over the B rois (axis 1) on fc8_d -> Eltwise PROD -> a
frozen all-ones 1x1 Convolution summing over the rois. This layer computes the
same, with optional temperatures (logits divided by T before each softmax; the
KD stage 2 teacher used a temperature of 0.5).

Bottoms: fc8_c, fc8_d, each (N*B, C) or (N*B, C, 1, 1), same shape.
Tops: region scores (N, B, C) and image-level scores (N, C).
"""
import numpy as np

from caffe_mlic.caffe.params import Param
from caffe_mlic.gpu import blobs as gpu_blobs
from .base import MlicLayer


def _softmax(z, axis):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _softmax_backward(p, g, axis):
    """Softmax Jacobian-vector product: dL/dz = p * (g - sum(g * p))."""
    return p * (g - (g * p).sum(axis=axis, keepdims=True))


class WSDDNScore(MlicLayer):
    PARAMS = (
        Param('bbox_num', 'int', low=1),  # B, proposals per image
        Param('class_temperature', 'float', 1.0, low=0, low_open=True),
        Param('det_temperature', 'float', 1.0, low=0, low_open=True),
    )
    BOTTOMS = ('fc8_c', 'fc8_d')
    TOPS = ('region_scores', 'image_scores')

    def reshape(self, bottom, top):
        sc, sd = tuple(bottom[0].shape), tuple(bottom[1].shape)
        if sc != sd:
            raise self.error('fc8_c has shape %s but fc8_d has shape %s' % (sc, sd))
        if len(sc) not in (2, 4) or (len(sc) == 4 and sc[2:] != (1, 1)):
            raise self.error('fc8_c/fc8_d must be (N*B, C) or (N*B, C, 1, 1), got %s' % (sc,))
        rows, c = sc[0], sc[1]
        b = self.params.bbox_num
        if rows % b:
            raise self.error('fc8_c has %d rows, not a multiple of bbox_num %d' % (rows, b))
        self.shape = (rows // b, b, c)
        top[0].reshape(*self.shape)
        top[1].reshape(rows // b, c)

    def forward(self, bottom, top):
        p = self.params
        if gpu_blobs.use_kernels():
            from caffe_mlic.gpu import kernels
            cache = self.__dict__.setdefault('_gpu_cache', {})
            self.gpu_pc = gpu_blobs.device_array(self.shape, np.float64, cache, 'pc')
            self.gpu_pd = gpu_blobs.device_array(self.shape, np.float64, cache, 'pd')
            kernels.wsddn_forward(gpu_blobs.view(bottom[0], shape=self.shape), gpu_blobs.view(bottom[1], shape=self.shape),
                                  p.class_temperature, p.det_temperature, gpu_blobs.view(top[0], write=True),
                                  gpu_blobs.view(top[1], write=True), self.gpu_pc, self.gpu_pd)
            return
        zc = bottom[0].data.reshape(self.shape).astype(np.float64) / p.class_temperature
        zd = bottom[1].data.reshape(self.shape).astype(np.float64) / p.det_temperature
        self.pc = _softmax(zc, axis=2)   # over classes
        self.pd = _softmax(zd, axis=1)   # over the rois of each image
        region = self.pc * self.pd
        top[0].data[...] = region
        top[1].data[...] = region.sum(axis=1)

    def backward(self, top, propagate_down, bottom):
        if not (propagate_down[0] or propagate_down[1]):
            return
        if gpu_blobs.use_kernels():
            from caffe_mlic.gpu import kernels
            p = self.params
            kernels.wsddn_backward(
                gpu_blobs.view(top[0], 'diff'), gpu_blobs.view(top[1], 'diff'), self.gpu_pc, self.gpu_pd,
                p.class_temperature, p.det_temperature,
                gpu_blobs.view(bottom[0], 'diff', write=True, shape=self.shape) if propagate_down[0] else None,
                gpu_blobs.view(bottom[1], 'diff', write=True, shape=self.shape) if propagate_down[1] else None)
            return
        # image = sum over rois of region, so its gradient reaches every roi
        g = top[0].diff.astype(np.float64) + top[1].diff.astype(np.float64)[:, None, :]
        p = self.params
        if propagate_down[0]:
            gc = _softmax_backward(self.pc, g * self.pd, axis=2) / p.class_temperature
            bottom[0].diff[...] = gc.reshape(bottom[0].diff.shape)
        if propagate_down[1]:
            gd = _softmax_backward(self.pd, g * self.pc, axis=1) / p.det_temperature
            bottom[1].diff[...] = gd.reshape(bottom[1].diff.shape)
