"""CrossEntropyLoss on probabilities (the WSDDN loss), clamped as the original."""
import numpy as np

from caffe_mlic.caffe.params import Param
from caffe_mlic.gpu import blobs as gpu_blobs
from .base import PairLossLayer

CLAMP = 1e-4


class CrossEntropyLoss(PairLossLayer):
    """loss = -(1/N) sum[t log max(p, 1e-4) + (1-t) log max(1-p, 1e-4)].

    Bottoms: probabilities p and targets t with the same count (N the first
    axis of p). Only p receives a gradient. Needs `loss_weight: 1` in the
    prototxt, as every Python loss layer does.
    """
    BOTTOMS = ('probabilities', 'targets')

    def forward(self, bottom, top):
        # Logits given as probabilities, or class indices / -1 "ignore" as
        # targets, would train to the end on a clamped, meaningless loss.
        # (Read on the host in GPU mode too: N x C image scores.)
        self.check_unit_interval(bottom[0].data.reshape(-1).astype(np.float64), 'probabilities', nonfinite_ok=True)
        self.check_unit_interval(bottom[1].data.reshape(-1).astype(np.float64), 'targets')
        if gpu_blobs.use_kernels():
            from caffe_mlic.gpu import kernels
            total = gpu_blobs.device_array((1,), np.float64, self.__dict__.setdefault('_gpu_cache', {}), 'total')
            count = (bottom[0].count,)
            kernels.cross_entropy_forward(gpu_blobs.view(bottom[0], shape=count),
                                          gpu_blobs.view(bottom[1], shape=count), total)
            self.set_loss(top, total.copy_to_host()[0] / bottom[0].shape[0])
            return
        p = bottom[0].data.reshape(-1).astype(np.float64)
        t = bottom[1].data.reshape(-1).astype(np.float64)
        n = bottom[0].shape[0]
        loss = -(t * np.log(np.maximum(p, CLAMP)) + (1 - t) * np.log(np.maximum(1 - p, CLAMP))).sum()
        self.set_loss(top, loss / n)

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            # Targets get no gradient. (force_backward asks anyway, and a
            # Python layer cannot refuse it the way Caffe's C++ losses do.)
            bottom[1].diff[...] = 0
        if not propagate_down[0]:
            return
        if gpu_blobs.use_kernels():
            from caffe_mlic.gpu import kernels
            count = (bottom[0].count,)
            kernels.cross_entropy_backward(gpu_blobs.view(bottom[0], shape=count),
                                           gpu_blobs.view(bottom[1], shape=count), top[0].diff.item(),
                                           bottom[0].shape[0], gpu_blobs.view(bottom[0], 'diff', True, count))
            return
        p = bottom[0].data.astype(np.float64)
        t = bottom[1].data.reshape(p.shape).astype(np.float64)
        grad = -(t / np.maximum(p, CLAMP) - (1 - t) / np.maximum(1 - p, CLAMP))
        bottom[0].diff[...] = grad * (top[0].diff.item() / bottom[0].shape[0])
