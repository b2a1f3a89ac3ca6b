"""Interp: DeepLab/PSPNet's corner-aligned bilinear resize, as a Python layer.

Output size (from the effective input ``in_eff = in + pad_beg + pad_end``,
the crop starting at ``-pad_beg``; pads are <= 0, i.e. crops only):

- ``height`` and ``width``: exactly those (both or neither);
- ``shrink_factor`` s: ``(in_eff - 1) // s + 1``;
- ``zoom_factor`` z: ``in_eff + (in_eff - 1) * (z - 1)``;
- both: shrink first, then zoom;
- none of these, with a second bottom: that bottom's H x W.

Any other combination is an error at setup. Output pixel k samples input
position ``k * (in_eff - 1) / (out - 1)`` with the original's float32
arithmetic. Because the resize is separable, it is two small matrices
(out x in per axis), built once per reshape: forward is ``Mh @ X @ Mw^T`` per
(N*C) plane, backward ``Mh^T @ G @ Mw``. Only bottom 0 gets a gradient.
"""
import numpy as np

from caffe_mlic.caffe.params import Param
from caffe_mlic.gpu import blobs as gpu_blobs
from .base import MlicLayer


def interp_weights(n_in, n_out):
    """The (n_out, n_in) float32 bilinear matrix of the original C++ loops.

    Row k holds h0lambda at column h1 and h1lambda at column h1 + h1p, with
    rheight, h1r and the lambdas computed in float32 exactly as the original
    (so the sample positions, including rounding at the far edge, agree).
    """
    k = np.arange(n_out)
    if n_in == n_out:
        return np.eye(n_out, dtype=np.float32)
    rheight = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
    h1r = np.float32(rheight) * k.astype(np.float32)
    h1 = h1r.astype(np.int64)                         # truncation, h1r >= 0
    h1p = (h1 < n_in - 1).astype(np.int64)
    lam1 = h1r - h1.astype(np.float32)
    lam0 = np.float32(1) - lam1
    m = np.zeros((n_out, n_in), np.float32)
    # np.add.at: when h1p == 0 both weights land on the same column.
    np.add.at(m, (k, h1), lam0)
    np.add.at(m, (k, h1 + h1p), lam1)
    return m


class Interp(MlicLayer):
    """Bilinear resize (corner aligned) of bottom 0; optional bottom 1 gives the size."""
    PARAMS = (
        Param('height', 'int', None, low=1),  # output height (with width)
        Param('width', 'int', None, low=1),  # output width (with height)
        Param('zoom_factor', 'int', None, low=1),
        Param('shrink_factor', 'int', None, low=1),
        Param('pad_beg', 'int', 0, high=0),  # <= 0: crop this many pixels at the start
        Param('pad_end', 'int', 0, high=0),  # <= 0: crop this many pixels at the end
    )
    BOTTOMS = ('input',)
    OPTIONAL_BOTTOMS = ('size_reference',)
    TOPS = ('output',)
    SIZE_PARAMS = 'height / width (or zoom_factor)'  # what sets the tops' sizes (for caffe.shapes' message)

    def configure(self, bottom, top):
        p = self.params
        has_h, has_w = p.height is not None, p.width is not None
        if has_h != has_w:
            raise self.error('height and width must be given together (got only %s)'
                             % ('height' if has_h else 'width'))
        factors = [n for n in ('zoom_factor', 'shrink_factor') if getattr(p, n) is not None]
        if has_h and factors:
            raise self.error('give either height/width or %s, not both' % ' / '.join(factors))
        explicit = has_h or bool(factors)
        if len(bottom) == 2 and explicit:
            raise self.error('with a second bottom (size reference) give none of height, '
                             'width, zoom_factor, shrink_factor')
        if len(bottom) == 1 and not explicit:
            raise self.error('no output size: give height and width, zoom_factor and/or '
                             'shrink_factor, or a second bottom whose H x W to match')
        self._mats = {}

    @classmethod
    def top_shapes(cls, p, bottoms, phase):
        if not bottoms or bottoms[0] is None or len(bottoms[0]) != 4:
            return None
        n, c, h, w = bottoms[0]
        if len(bottoms) == 2:
            if bottoms[1] is None or len(bottoms[1]) != 4:
                return None
            return [(n, c) + tuple(bottoms[1][2:])]
        h_eff, w_eff = h + p.pad_beg + p.pad_end, w + p.pad_beg + p.pad_end
        return [(n, c, cls._output_size(p, h_eff, 0), cls._output_size(p, w_eff, 1))]

    def _out_size(self, n_eff, ref):
        return self._output_size(self.params, n_eff, ref)

    @staticmethod
    def _output_size(p, n_eff, ref):
        if p.height is not None:
            return (p.height, p.width)[ref]
        if p.zoom_factor is None and p.shrink_factor is None:
            return None  # from bottom[1]
        n = n_eff
        if p.shrink_factor is not None:
            n = (n - 1) // p.shrink_factor + 1
        if p.zoom_factor is not None:
            n = n + (n - 1) * (p.zoom_factor - 1)
        return n

    def _matrix(self, n_in, n_out):
        key = (n_in, n_out)
        if key not in self._mats:
            self._mats[key] = interp_weights(n_in, n_out)
        return self._mats[key]

    def reshape(self, bottom, top):
        if len(bottom[0].shape) != 4:
            raise self.error('input must be 4-D (N, C, H, W), got shape %s' % (tuple(bottom[0].shape),))
        n, c, h, w = bottom[0].shape
        p = self.params
        h_eff, w_eff = h + p.pad_beg + p.pad_end, w + p.pad_beg + p.pad_end
        if h_eff < 1 or w_eff < 1:
            raise self.error('pad_beg %d and pad_end %d crop the %dx%d input to nothing'
                             % (p.pad_beg, p.pad_end, h, w))
        if len(bottom) == 2:
            if len(bottom[1].shape) != 4:
                raise self.error('size reference must be 4-D (N, C, H, W), got shape %s'
                                 % (tuple(bottom[1].shape),))
            h_out, w_out = bottom[1].shape[2], bottom[1].shape[3]
        else:
            h_out, w_out = self._out_size(h_eff, 0), self._out_size(w_eff, 1)
        self.check_count('the output', (n, c, h_out, w_out), 'height / width (or zoom_factor)')
        self.crop = (slice(-p.pad_beg, -p.pad_beg + h_eff), slice(-p.pad_beg, -p.pad_beg + w_eff))
        self.cropped = (h_eff, w_eff) != (h, w)
        self.same = (h_eff, w_eff) == (h_out, w_out)
        if len(self._mats) > 8:  # sizes changed many times (multi-scale input): forget old ones
            self._mats = {}
        self.mh = self._matrix(h_eff, h_out)   # (h_out, h_eff)
        self.mw = self._matrix(w_eff, w_out)   # (w_out, w_eff)
        top[0].reshape(n, c, h_out, w_out)  # (counted above)

    def _gpu(self):
        """The kernels run the resize itself (a crop or a copy stays on the host path)."""
        return not (self.cropped or self.same) and gpu_blobs.use_kernels()

    def _taps(self):
        from caffe_mlic.gpu import kernels
        key = (self.mh.shape, self.mw.shape)
        if getattr(self, '_gpu_taps', (None,))[0] != key:
            self._gpu_taps = (key, kernels.to_device(*kernels.interp_taps(self.mh)),
                              kernels.to_device(*kernels.interp_taps(self.mw)))
        return self._gpu_taps[1:]

    def forward(self, bottom, top):
        if self._gpu():
            from caffe_mlic.gpu import kernels
            n, c, h, w = bottom[0].shape
            _, _, h_out, w_out = top[0].shape
            kernels.interp_forward(gpu_blobs.view(bottom[0], shape=(n * c, h, w)), *self._taps(),
                                   gpu_blobs.view(top[0], write=True, shape=(n * c, h_out, w_out)))
            return
        x = bottom[0].data[(Ellipsis,) + self.crop]
        if self.same:
            top[0].data[...] = x  # the original copies identical sizes exactly
            return
        n, c, h_eff, w_eff = x.shape
        w_out = self.mw.shape[0]
        # width pass as one big GEMM over all rows, then the height pass per plane
        with np.errstate(invalid='ignore', over='ignore'):   # (NaN / inf of a diverged net: said by the loss)
            y = (x.reshape(-1, w_eff) @ self.mw.T).reshape(n, c, h_eff, w_out)
            np.matmul(self.mh, y, out=top[0].data)  # straight into the blob

    def backward(self, top, propagate_down, bottom):
        if len(bottom) == 2 and propagate_down[1]:
            bottom[1].diff[...] = 0  # the size reference gets no gradient
        if not propagate_down[0]:
            return
        if self._gpu():
            from caffe_mlic.gpu import kernels
            n, c, h, w = bottom[0].shape
            _, _, h_out, w_out = top[0].shape
            kernels.interp_backward(gpu_blobs.view(top[0], 'diff', shape=(n * c, h_out, w_out)), *self._taps(),
                                    gpu_blobs.view(bottom[0], 'diff', write=True, shape=(n * c, h, w)))
            return
        g = top[0].diff
        diff = bottom[0].diff
        if self.cropped:
            diff[...] = 0  # cropped-away pixels get no gradient
        if self.same:
            diff[(Ellipsis,) + self.crop] = g
            return
        n, c, h_out, w_out = g.shape
        h_eff = self.mh.shape[1]
        gy = np.matmul(self.mh.T, g).reshape(-1, w_out)   # (n*c*h_eff, w_out)
        if self.cropped:
            diff[(Ellipsis,) + self.crop] = (gy @ self.mw).reshape(n, c, h_eff, -1)
        else:
            np.matmul(gy, self.mw, out=diff.reshape(gy.shape[0], -1))
