"""DivergenceGuard: stop a diverged net in its forward pass, with a message.

A net whose loss layers are stock Caffe layers (SigmoidCrossEntropyLoss,
EuclideanLoss) trains on NaN without a word: the `caffe` binary goes on, writes
all-NaN snapshots, and Caffe's max-pooling backward, given all-NaN windows,
writes out of bounds ("double free or corruption"). This layer watches the
values the losses are computed from and the max poolings' outputs (where an
all-NaN or all -inf window comes out as -FLT_MAX, the value Caffe starts its
max from) and raises before any backward runs. It has no tops and changes
nothing: the generated student nets add one.
"""
import numpy as np

from caffe_mlic.gpu import blobs as gpu_blobs
from .base import MlicLayer

FLT_MAX = float(np.finfo(np.float32).max)


class DivergenceGuard(MlicLayer):
    """Bottoms: 1 to 8 blobs to watch (the outputs of max poolings, the
    logits). No tops, no gradient."""
    BOTTOMS = ('values',)
    OPTIONAL_BOTTOMS = ('more values',) * 7

    def reshape(self, bottom, top):
        pass

    def forward(self, bottom, top):
        for i in range(len(bottom)):  # (pycaffe's blob vectors index, they do not iterate)
            blob = bottom[i]
            if not blob.count:
                continue
            bad = self._kernel_count(blob) if gpu_blobs.use_kernels() else self._host_count(blob.data)
            if bad:
                raise self.error('bottom %d (%s) holds %d NaN, inf or -FLT_MAX value(s): training '
                                 'diverged (the weights are no longer finite); lower base_lr or '
                                 'check the input data' % (i, 'x'.join(map(str, blob.shape)), bad))

    @staticmethod
    def _host_count(values):
        # A float64 sum of float32 values is finite exactly when every value is.
        if np.isfinite(np.sum(values, dtype=np.float64)) and values.min() > -FLT_MAX:
            return 0
        return int(np.count_nonzero(~np.isfinite(values) | (values <= -FLT_MAX)))

    def _kernel_count(self, blob):
        from caffe_mlic.gpu import kernels
        count = gpu_blobs.device_array((1,), np.int64, self.__dict__.setdefault('_gpu_cache', {}), 'count')
        kernels.count_bad(gpu_blobs.view(blob, shape=(blob.count,)), count)
        return int(count.copy_to_host()[0])

    def backward(self, top, propagate_down, bottom):
        for i in range(len(bottom)):
            if propagate_down[i]:
                bottom[i].diff[...] = 0
