"""Common base for caffe-mlic's Python layers.

Subclasses declare PARAMS (see caffe_mlic.caffe.params), BOTTOMS/TOPS (allowed
counts, with names for error messages), and implement ``configure`` (once,
after parameters are parsed), ``reshape``, ``forward`` and ``backward``.
"""
import caffe
import numpy as np

from caffe_mlic.caffe.params import LayerError, ParamError, layer_error, parse_params

BLOB_LIMIT = 2 ** 31 - 1   # Caffe's Blob::Reshape CHECKs count <= INT_MAX (and aborts)


# MlicLayer.setup calls so far; a net built by caffe_mlic.caffe.prototxt tells from
# it which layer instance failed while Caffe was building the net.
SETUP_CALLS = [0]


class MlicLayer(caffe.Layer):
    PARAMS = ()
    BOTTOMS = ()   # names of the bottoms, in order; extra optional ones in OPTIONAL_BOTTOMS
    OPTIONAL_BOTTOMS = ()
    TOPS = ()
    OPTIONAL_TOPS = ()

    # The layer's name in its net: Python layers are not told it, so the nets
    # caffe_mlic builds set it once built (prototxt.name_python_layers).
    instance_name = None

    @property
    def kind(self):
        return type(self).__name__

    def error(self, message):
        """A LayerError '<type>: message', naming the instance when known (a
        net may have two layers of a type: stage 1's two ROIPoolings)."""
        if self.instance_name:
            message += " (layer '%s')" % self.instance_name
        return layer_error(self.kind, message)

    def _check_count(self, what, blobs, required, optional):
        lo, hi = len(required), len(required) + len(optional)
        if not lo <= len(blobs) <= hi:
            names = ', '.join(list(required) + ['[%s]' % o for o in optional])
            raise self.error('expected %s %s (%s), got %d'
                             % ('%d' % lo if lo == hi else '%d to %d' % (lo, hi), what, names, len(blobs)))

    def setup(self, bottom, top):
        SETUP_CALLS[0] += 1
        self.params = parse_params(self.kind, self.param_str, self.PARAMS)
        self._check_count('bottom(s)', bottom, self.BOTTOMS, self.OPTIONAL_BOTTOMS)
        self._check_count('top(s)', top, self.TOPS, self.OPTIONAL_TOPS)
        self.configure(bottom, top)

    def configure(self, bottom, top):
        pass

    def backward(self, top, propagate_down, bottom):
        pass

    def check_count(self, what, shape, causes):
        """LayerError before a blob of ``shape`` is made when it would hold
        more values than Caffe allows (it would abort); ``causes`` names the
        parameters to lower."""
        count = 1
        for d in shape:
            count *= int(d)
        if count > BLOB_LIMIT:
            raise self.error('%s would be %s = %d values, more than a Caffe blob holds (2^31 - 1); '
                             'lower %s' % (what, 'x'.join(str(int(d)) for d in shape), count, causes))

    def reshape_top(self, blob, shape, what, causes):
        self.check_count(what, shape, causes)
        blob.reshape(*shape)

    def set_loss(self, top, value):
        """Write a loss value, refusing NaN/inf: a diverged net stops here with a
        clear message, before Caffe's own backward passes (max pooling indexes
        with -1 on all-NaN windows) can corrupt memory."""
        if not np.isfinite(value):
            raise self.error('the loss is %s: training diverged (NaN or inf in the net); '
                             'lower base_lr or check the input data' % value)
        top[0].data[...] = value


class PairLossLayer(MlicLayer):
    """A loss of two bottoms holding the same number of values (predictions,
    targets); the top is a scalar."""
    TOPS = ('loss',)

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise self.error('%s have %d values %s but %s have %d %s'
                             % (self.BOTTOMS[0], bottom[0].count, tuple(bottom[0].shape),
                                self.BOTTOMS[1], bottom[1].count, tuple(bottom[1].shape)))
        top[0].reshape()


__all__ = ['LayerError', 'MlicLayer', 'PairLossLayer', 'ParamError']
