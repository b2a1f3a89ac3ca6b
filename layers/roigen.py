"""WsdRoigen / WsdRoigenSingleScale: proposals from label_roi to ROIPooling rois."""
import numpy as np

from caffe_mlic.caffe.params import Param
from .base import MlicLayer


class WsdRoigen(MlicLayer):
    """Bottom (N, 5B) = B proposals (x1, y1, x2, y2, s) per image.

    Top (N*B, 6): row i*B + j = (i, x1, y1, x2, y2, s) of proposal j of image i.
    No gradient.
    """
    BOTTOMS = ('proposals',)
    TOPS = ('rois',)

    def reshape(self, bottom, top):
        shape = tuple(bottom[0].shape)
        if len(shape) < 2 or bottom[0].count != shape[0] * shape[1] or shape[1] % 5:
            raise self.error('proposals must be (N, 5B): B proposals (x1, y1, x2, y2, score) '
                             'per image, so the second axis a multiple of 5; got shape %s'
                             % (shape,))
        top[0].reshape(shape[0] * (shape[1] // 5), 6)

    def map_corners(self, corners):
        return corners

    def forward(self, bottom, top):
        n = bottom[0].shape[0]
        boxes = bottom[0].data.reshape(n, -1, 5)
        out = top[0].data.reshape(n, boxes.shape[1], 6)
        out[:, :, 0] = np.arange(n, dtype=np.float32)[:, None]
        out[:, :, 1:5] = self.map_corners(boxes[:, :, :4])
        out[:, :, 5] = boxes[:, :, 4]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            bottom[0].diff[...] = 0  # rois come from the data; nothing to learn there


class WsdRoigenSingleScale(WsdRoigen):
    """WsdRoigen with corners mapped to another resolution.

    Corner -> floor(single_scale * coord / origin_scale) (release: 224 / 672,
    to pool the student's 224 px map with the teacher's 672 px proposals).
    """
    PARAMS = (
        Param('single_scale', 'float', low=0, low_open=True),
        Param('origin_scale', 'float', low=0, low_open=True),
    )

    def map_corners(self, corners):
        # In float64 the product of integer corners and scales is exact and the
        # one rounding (the division) cannot carry a quotient across an
        # integer, so floor gives the exact answer (3 * 224 / 672 -> 1).
        p = self.params
        return np.floor(p.single_scale * corners.astype(np.float64) / p.origin_scale)
