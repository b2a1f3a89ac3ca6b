"""Knowledge-distillation losses: soft sigmoid cross-entropy and feature mimicking.

Both are Python loss layers: they need `loss_weight: 1` in the prototxt and
scale their gradients by top[0].diff. Targets (teacher outputs) never get a
gradient; when force_backward asks for one they get zeros.
"""
import numpy as np

from caffe_mlic.caffe.params import Param
from caffe_mlic.gpu import blobs as gpu_blobs
from .base import MlicLayer, PairLossLayer




class SoftSigmoidCrossEntropyLoss(PairLossLayer):
    """Sigmoid cross-entropy of student logits x against soft targets t in [0, 1].

    With z = x / T:  loss = (1/N) sum[max(z, 0) - z t + log(1 + exp(-|z|))]
    (= -(1/N) sum[t log s(z) + (1-t) log(1 - s(z))]), N the first axis of x;
    gradient (s(z) - t) / (T N). With hard targets and T = 1 this is Caffe's
    SigmoidCrossEntropyLoss.
    """
    PARAMS = (Param('temperature', 'float', 1.0, low=0, low_open=True),)
    BOTTOMS = ('logits', 'targets')

    def forward(self, bottom, top):
        t = bottom[1].data.reshape(-1).astype(np.float64)
        # A teacher's image score is a float32 sum of products of softmaxes:
        # it can pass 1 (or 0) by rounding. Within the slack it is clipped.
        self.check_unit_interval(t, 'targets')
        if gpu_blobs.use_kernels():       # (the targets were checked above, on the host: N x C values)
            from caffe_mlic.gpu import kernels
            total = gpu_blobs.device_array((1,), np.float64, self.__dict__.setdefault('_gpu_cache', {}), 'total')
            count = (bottom[0].count,)
            kernels.sigmoid_ce_forward(gpu_blobs.view(bottom[0], shape=count), gpu_blobs.view(bottom[1], shape=count),
                                       self.params.temperature, total)
            self.set_loss(top, total.copy_to_host()[0] / bottom[0].shape[0])
            return
        t = np.clip(t, 0, 1)
        z = bottom[0].data.reshape(-1).astype(np.float64) / self.params.temperature
        loss = (np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))).sum()
        self.set_loss(top, loss / bottom[0].shape[0])

    def backward(self, top, propagate_down, bottom):
        if propagate_down[1]:
            bottom[1].diff[...] = 0
        if not propagate_down[0]:
            return
        temp = self.params.temperature
        if gpu_blobs.use_kernels():
            from caffe_mlic.gpu import kernels
            count = (bottom[0].count,)
            kernels.sigmoid_ce_backward(gpu_blobs.view(bottom[0], shape=count), gpu_blobs.view(bottom[1], shape=count),
                                        temp, top[0].diff.item(), bottom[0].shape[0],
                                        gpu_blobs.view(bottom[0], 'diff', True, count))
            return
        z = bottom[0].data.astype(np.float64) / temp
        t = np.clip(bottom[1].data.reshape(z.shape).astype(np.float64), 0, 1)
        sig = 0.5 * (1 + np.tanh(0.5 * z))  # sigmoid without overflow warnings
        scale = top[0].diff.item() / (temp * bottom[0].shape[0])
        bottom[0].diff[...] = (sig - t) * scale


class FeatureMimicLoss(MlicLayer):
    """Euclidean feature mimicking, optionally weighted and top-k selected per image.

    Bottoms: student features a, teacher features b (same shape, R rows = first
    axis, D = the rest), optional per-row weights w (R values, >= 0, e.g. the
    teacher's proposal objectness).

        loss = (1 / (2 K)) * sum_{r kept} w_r ||a_r - b_r||^2

    - no weights: w_r = 1; with weight_rows false, the weights only select.
    - top_k = 0: every row is kept and K = R, i.e. exactly Caffe's
      EuclideanLoss (weighted by w when given).
    - top_k > 0 (needs the weights and rows_per_image P): rows form R/P
      consecutive images; per image the min(top_k, P) rows with the largest
      weight are kept (ties: the earlier row). K = number of kept rows, so the
      loss is the mean over the kept rows, as EuclideanLoss is the mean over
      all rows.

    Gradient: w_r (a_r - b_r) / K to a, its negative to b (each only if asked);
    none to the weights.
    """
    IS_LOSS = True
    PARAMS = (
        Param('top_k', 'int', 0, low=0),  # rows kept per image by weight; 0 = all
        Param('rows_per_image', 'int', None, low=1),  # required when top_k > 0
        Param('weight_rows', 'bool', True),  # multiply each row by its weight
    )
    BOTTOMS = ('student', 'teacher')
    OPTIONAL_BOTTOMS = ('weights',)
    TOPS = ('loss',)

    def configure(self, bottom, top):
        p = self.params
        if p.top_k > 0:
            if p.rows_per_image is None:
                raise self.error('top_k > 0 needs rows_per_image')
            if len(bottom) < 3:
                raise self.error('top_k > 0 needs the weights bottom (third) to rank rows')

    def reshape(self, bottom, top):
        sa, sb = tuple(bottom[0].shape), tuple(bottom[1].shape)
        if sa != sb:
            raise self.error('student features have shape %s but teacher features %s' % (sa, sb))
        if len(sa) == 0:
            raise self.error('features need at least one axis (rows)')
        rows = sa[0]
        if len(bottom) == 3 and bottom[2].count != rows:
            raise self.error('weights have %d values %s but features have %d rows'
                             % (bottom[2].count, tuple(bottom[2].shape), rows))
        p = self.params
        if p.top_k > 0 and rows % p.rows_per_image:
            raise self.error('%d rows is not a multiple of rows_per_image %d'
                             % (rows, p.rows_per_image))
        top[0].reshape()

    def _row_factors(self, bottom):
        """Per-row factor w_r * kept_r / K (float64, length R)."""
        rows = bottom[0].shape[0]
        p = self.params
        if len(bottom) < 3:
            return np.full(rows, 1.0 / rows)
        w = bottom[2].data.reshape(-1).astype(np.float64)
        bad = ~(np.isfinite(w) & (w >= 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise self.error('weights must be finite and >= 0; row %d has %r' % (i, float(w[i])))
        if p.top_k > 0:
            per = p.rows_per_image
            order = np.argsort(-w.reshape(-1, per), axis=1, kind='stable')
            keep = np.zeros((rows // per, per), bool)
            np.put_along_axis(keep, order[:, :p.top_k], True, axis=1)
            keep = keep.reshape(-1)
        else:
            keep = np.ones(rows, bool)
        f = (w if p.weight_rows else np.ones(rows)) * keep
        return f / keep.sum()

    def forward(self, bottom, top):
        rows = bottom[0].shape[0]
        if gpu_blobs.use_kernels():
            from caffe_mlic.gpu import kernels
            cache = self.__dict__.setdefault('_gpu_cache', {})
            shape = (rows, bottom[0].count // rows if rows else 0)
            self.gpu_diff = gpu_blobs.device_array(shape, np.float32, cache, 'diff')
            sq = gpu_blobs.device_array((rows,), np.float64, cache, 'sq')
            kernels.mimic_forward(gpu_blobs.view(bottom[0], shape=shape), gpu_blobs.view(bottom[1], shape=shape),
                                  self.gpu_diff, sq)
            self.factors = self._row_factors(bottom)       # (the weights: R values, on the host)
            self.set_loss(top, 0.5 * (self.factors * sq.copy_to_host()).sum())
            return
        # float32 like the blobs (stage 1 mimics 14000 x 4096 features); the
        # per-row sums and the total are accumulated in float64.
        self.diff = np.subtract(bottom[0].data, bottom[1].data).reshape(rows, -1)
        sq = np.einsum('ij,ij->i', self.diff, self.diff, dtype=np.float64)
        self.factors = self._row_factors(bottom)
        self.set_loss(top, 0.5 * (self.factors * sq).sum())

    def backward(self, top, propagate_down, bottom):
        if len(bottom) == 3 and propagate_down[2]:
            bottom[2].diff[...] = 0
        if gpu_blobs.use_kernels():
            from caffe_mlic.gpu import kernels
            factors, = kernels.to_device(self.factors)
            for i, sign in ((0, 1), (1, -1)):
                if propagate_down[i]:
                    kernels.mimic_backward(self.gpu_diff, factors, sign * top[0].diff.item(),
                                           gpu_blobs.view(bottom[i], 'diff', True, self.gpu_diff.shape))
            return
        scale = self.factors * top[0].diff.item()
        for i, sign in ((0, 1), (1, -1)):
            if propagate_down[i]:
                # straight into the blob's diff: no temporaries of feature size
                out = bottom[i].diff.reshape(self.diff.shape)
                np.multiply(self.diff, (sign * scale).astype(np.float32)[:, None], out=out)
