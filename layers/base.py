"""Common base for caffe-mlic's Python layers.

Subclasses declare PARAMS (see caffe_mlic.caffe.params), BOTTOMS/TOPS (allowed
counts, with names for error messages), and implement ``configure`` (once,
after parameters are parsed), ``reshape``, ``forward`` and ``backward``.
"""
import functools
import os
import sys

import caffe
import numpy as np

from caffe_mlic.caffe.params import LayerError, ParamError, layer_error, parse_params
from caffe_mlic.errors import MlicError

BLOB_LIMIT = 2 ** 31 - 1   # Caffe's Blob::Reshape CHECKs count <= INT_MAX (and aborts)


# MlicLayer.setup calls so far; a net built by caffe_mlic.caffe.prototxt tells from
# it which layer instance failed while Caffe was building the net.
SETUP_CALLS = [0]


# `caffe-mlic caffe` runs the caffe binary with this set to its own pid. In
# that binary (our parent is that pid), an error of ours from a layer's
# setup, reshape, forward or backward is said in one line and ends the
# binary with status 1: Caffe would print Python's traceback and abort
# (after the whole solver dump). Elsewhere (pycaffe, `caffe-mlic train`,
# tests, a binary run by hand) the error is raised as always.
WRAPPER_ENV = 'CAFFE_MLIC_CAFFE_WRAPPER'
BEFORE_EXIT = []            # callables run first (pipeline: stop the data workers)


def in_wrapped_binary():
    return os.environ.get(WRAPPER_ENV) == str(os.getppid())


def exit_on_error(error):
    """Say ``error`` as `caffe-mlic caffe: <message>` and end the process
    (status 1), its data workers stopped first."""
    for hook in BEFORE_EXIT:
        try:
            hook()
        except Exception:
            pass
    try:
        sys.stdout.flush()
        sys.stderr.write('caffe-mlic caffe: %s\n' % error)
        sys.stderr.flush()
    finally:
        os._exit(1)


def _guarded(method):
    """``method`` (a layer's setup/reshape/forward/backward), ending the
    binary on our errors when run by `caffe-mlic caffe` (see WRAPPER_ENV)."""
    if getattr(method, 'guarded', False):
        return method

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except MlicError as e:
            if in_wrapped_binary():
                exit_on_error(e)
            raise
    call.guarded = True
    return call


GUARDED = ('setup', 'reshape', 'forward', 'backward')


class MlicLayer(caffe.Layer):
    PARAMS = ()
    BOTTOMS = ()   # names of the bottoms, in order; extra optional ones in OPTIONAL_BOTTOMS
    OPTIONAL_BOTTOMS = ()
    TOPS = ()
    OPTIONAL_TOPS = ()

    # The layer's name in its net: Python layers are not told it, so the nets
    # caffe_mlic builds set it once built (prototxt.name_python_layers).
    instance_name = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in GUARDED:
            if name in cls.__dict__:
                setattr(cls, name, _guarded(cls.__dict__[name]))

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

    def not_finite(self, what):
        """The message for NaN or inf found by this layer (``what``: 'the
        loss is nan', ...): in a TRAIN net, training diverged; in a TEST net
        (`caffe test`, a validation pass), the weights it was given or its
        input data hold them."""
        if getattr(self, 'phase', 0) == 1:     # caffe.TEST
            return ('%s in the TEST net: the weights it was given (from a diverged training run?) or its '
                    'input data hold NaN or inf' % what)
        return '%s: training diverged%s; lower base_lr or check the input data' % (
            what, '' if 'NaN or inf' in what else ' (NaN or inf in the net)')

    def set_loss(self, top, value):
        """Write a loss value, refusing NaN/inf: a diverged net stops here with a
        clear message, before Caffe's own backward passes (max pooling indexes
        with -1 on all-NaN windows) can corrupt memory."""
        if not np.isfinite(value):
            raise self.error(self.not_finite('the loss is %s' % value))
        top[0].data[...] = value


for _name in GUARDED:
    if _name in MlicLayer.__dict__:
        setattr(MlicLayer, _name, _guarded(MlicLayer.__dict__[_name]))


UNIT_SLACK = 1e-5   # float32 rounding of a sum of softmax products


class PairLossLayer(MlicLayer):
    """A loss of two bottoms holding the same number of values (predictions,
    targets); the top is a scalar."""
    TOPS = ('loss',)
    IS_LOSS = True      # Caffe gives a Python layer's top weight 0: the net must give loss_weight

    def check_unit_interval(self, values, what, nonfinite_ok=False):
        """``values`` (float64, flat) as the layer reads them: in [0, 1]
        within UNIT_SLACK (a float32 sum of softmax products can pass 1 by
        rounding), else the layer's one-line error naming the first.
        ``nonfinite_ok``: NaN and inf pass (a diverged net's outputs: the
        loss says "training diverged")."""
        bad = ~((values >= -UNIT_SLACK) & (values <= 1 + UNIT_SLACK))  # NaN fails both comparisons
        if nonfinite_ok:
            bad &= np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise self.error('%s must lie in [0, 1]: %d value(s) do not, first at flat index %d: %r'
                             % (what, int(bad.sum()), i, float(values[i])))

    def reshape(self, bottom, top):
        if bottom[0].count != bottom[1].count:
            raise self.error('%s have %d values %s but %s have %d %s'
                             % (self.BOTTOMS[0], bottom[0].count, tuple(bottom[0].shape),
                                self.BOTTOMS[1], bottom[1].count, tuple(bottom[1].shape)))
        top[0].reshape()


__all__ = ['LayerError', 'MlicLayer', 'PairLossLayer', 'ParamError']
