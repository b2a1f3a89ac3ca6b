"""The student as a multi-label classifier: the whole image at the student's
input size, per-class sigmoid probabilities.

Two engines run the same model: ``caffe`` (pycaffe) and ``opencv``
(``cv2.dnn.readNetFromCaffe``: the deployment path that needs no Caffe).
"""
import numpy as np

from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.inference import check_finite_weights
from caffe_mlic.inference.preprocess import image_blob

ENGINES = ('caffe', 'opencv')
OUTPUT_BLOB = 'prob'


class StudentClassifier:
    def __init__(self, net_path, weights, settings, engine='caffe'):
        from caffe_mlic.caffe import prototxt
        if engine not in ENGINES:
            raise UsageError('engine must be one of %s, got %r' % (', '.join(ENGINES), engine), 'engine')
        self.engine, self.net_path, self.weights = engine, net_path, weights
        proto = prototxt.read_net(net_path)
        if list(proto.input) != ['data'] or len(proto.input_dim) != 4:
            raise InputError('%s: not a student deploy net (expected one input "data" with 4 dims, '
                             'got %s)' % (net_path, list(proto.input) or 'none'))
        self.size = int(proto.input_dim[2])
        # Both engines: the net built by pycaffe with the weights, checked
        # against it (OpenCV would load another net's weights and fail, or
        # not, at forward time) and finite; OpenCV then loads its own copy.
        net = prototxt.caffe_net(net_path, 'TEST', weights=weights)
        check_finite_weights(net, weights)
        if OUTPUT_BLOB not in net.blobs:
            raise InputError('%s: no %r blob (the sigmoid output)' % (net_path, OUTPUT_BLOB))
        self.num_classes = int(net.blobs[OUTPUT_BLOB].count)
        self.settings = settings.check_net(
            net_path, num_classes=(self.num_classes, 'classes in its %r blob' % OUTPUT_BLOB),
            student_size=(self.size, 'px inputs (data)'))
        if engine == 'caffe':
            self.net = net
        else:
            import cv2
            del net
            try:
                self.net = cv2.dnn.readNetFromCaffe(str(net_path), str(weights))
            except cv2.error as e:
                raise InputError('%s, %s: OpenCV cannot load the net: %s'
                                 % (net_path, weights, str(e).strip().splitlines()[-1]))

    def probabilities(self, image):
        """(C,) float64 probabilities of one BGR uint8 image."""
        blob = image_blob(image, self.size, self.size, self.settings.mean, self.settings.input_scale)
        if self.engine == 'caffe':
            self.net.blobs['data'].data[...] = blob
            out = self.net.forward()[OUTPUT_BLOB]
        else:
            import cv2
            self.net.setInput(blob)
            try:
                out = self.net.forward(OUTPUT_BLOB)
            except cv2.error as e:
                raise InputError('%s, %s: OpenCV cannot run the net: %s'
                                 % (self.net_path, self.weights, ' '.join(str(e).split())))
        return np.asarray(out, np.float64).reshape(-1)


def top_labels(probabilities, classes, k):
    """[(class name, probability)] of the k most probable classes, best first."""
    order = np.argsort(-probabilities, kind='stable')[:k]
    return [(classes[i], float(probabilities[i])) for i in order]
