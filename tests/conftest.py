import os
import signal

os.environ.setdefault('GLOG_minloglevel', '2')  # before caffe is imported

import pytest  # noqa: E402

from tests import netutil  # noqa: E402


# A shell without job control (`make test &` in a script, nohup) starts a
# background command with SIGINT ignored, and every child inherits that; our
# commands keep an inherited ignore, as background jobs should. The tests
# that stop a command with SIGINT need it deliverable to their children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope='session')
def caffe():
    import caffe as caffe_module
    caffe_module.set_mode_cpu()
    return caffe_module


@pytest.fixture
def layer_net(caffe, tmp_path):
    """Build a net around one Python layer: layer_net(layer, params, bottom_shapes, ...)."""
    def make(layer, params, bottom_shapes, **kw):
        return netutil.python_layer_net(caffe, tmp_path, layer, params, bottom_shapes, **kw)
    return make


@pytest.fixture
def net_from_text(caffe, tmp_path):
    """caffe.Net from a prototxt string, as Caffe's test_python_layer.py does."""
    def make(text, phase='TRAIN', weights=None):
        return netutil.net_from_text(caffe, tmp_path, text, phase, weights)
    return make
