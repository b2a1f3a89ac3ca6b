"""The WSDDN teacher as a detector, with the WSDDN test protocol.

For each pass (scale x flip) the deploy net scores every proposal: its region
score per class is the product of the two streams (class softmax x region
softmax), before the sum over regions that gives the image-level score.
Region scores are summed over the passes; then, per class, regions scoring
more than ``score_threshold`` (1e-3) are kept and suppressed with NMS at IoU
``nms_iou`` (0.4). Boxes come back in the original image's pixels (0-based,
inclusive).

The deploy net takes a fixed number B of proposals: an image's top B by
objectness. An image with fewer has them repeated cyclically (as datalists
do); the region scores of the copies are added back onto their proposal.
"""
from dataclasses import dataclass, field
from typing import List

import numpy as np

from caffe_mlic.caffe import prototxt
from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.inference import check_finite_weights
from caffe_mlic.inference.preprocess import boxes_to_input, image_blob

REGION_BLOB = 'proposal_class_score'
IMAGE_BLOB = 'image_level_score'


@dataclass
class Detection:
    class_index: int
    score: float
    box: tuple  # x1, y1, x2, y2 in original pixels, 0-based inclusive


@dataclass
class ImageResult:
    width: int
    height: int
    image_scores: np.ndarray            # (C,) mean image-level score over the passes
    region_scores: np.ndarray           # (K, C) summed over the passes, for the K proposals used
    boxes: np.ndarray                   # (K, 4) those proposals, original pixels
    objectness: np.ndarray              # (K,) their proposal scores
    detections: List[Detection] = field(default_factory=list)

    def top_regions(self, count=10):
        """The ``count`` proposals with the highest region score of any class
        (the region's objectness as the teacher sees it), best first, as
        Detections of that class."""
        best = self.region_scores.max(axis=1)
        order = np.argsort(-best, kind='stable')[:count]
        classes = self.region_scores.argmax(axis=1)
        return [Detection(int(classes[k]), float(best[k]), tuple(float(v) for v in self.boxes[k]))
                for k in order]


class WsddnDetector:
    def __init__(self, net_path, weights, settings, score_threshold=1e-3, nms_iou=0.4):
        import math
        if not (math.isfinite(score_threshold) and score_threshold >= 0):
            raise UsageError('score_threshold must be a finite number >= 0, got %r' % score_threshold,
                             'score_threshold')
        if not (math.isfinite(nms_iou) and 0 <= nms_iou <= 1):
            raise UsageError('nms_iou must be an IoU from 0 to 1, got %r' % nms_iou, 'nms_iou')
        self.net = prototxt.caffe_net(net_path, 'TEST', weights=weights)
        if weights:
            check_finite_weights(self.net, weights)
        for blob in ('imagedata', 'proposaldata', REGION_BLOB, IMAGE_BLOB):
            if blob not in self.net.blobs:
                raise InputError('%s: not a WSDDN deploy net (no blob %r; it has %s)'
                                 % (net_path, blob, ', '.join(self.net.blobs)))
        self.size = int(self.net.blobs['imagedata'].shape[2])
        self.bbox_num = int(self.net.blobs['proposaldata'].count) // 5
        self.num_classes = int(self.net.blobs[IMAGE_BLOB].count)
        self.settings = settings.check_net(
            net_path, num_classes=(self.num_classes, 'classes in its %r blob' % IMAGE_BLOB),
            bbox_num=(self.bbox_num, 'proposals in its proposaldata input'),
            teacher_size=(self.size, 'px inputs (imagedata)'))
        self.score_threshold, self.nms_iou = score_threshold, nms_iou

    def _forward(self, image, boxes_in, objectness, size, flip):
        blob = image_blob(image, size, size, self.settings.mean, self.settings.input_scale, flip)
        self.net.blobs['imagedata'].reshape(*blob.shape)
        self.net.blobs['imagedata'].data[...] = blob
        rois = np.concatenate([boxes_to_input(boxes_in, image.shape[1], image.shape[0], size, flip),
                               objectness[:, None]], axis=1)
        self.net.blobs['proposaldata'].data[...] = rois.reshape(self.net.blobs['proposaldata'].shape)
        self.net.forward()
        region = self.net.blobs[REGION_BLOB].data.reshape(self.bbox_num, self.num_classes)
        return region.astype(np.float64), self.net.blobs[IMAGE_BLOB].data.reshape(-1).astype(np.float64)

    def score(self, image, boxes, objectness, scales=None, flip=False):
        """ImageResult with region and image scores (no detections yet)."""
        boxes, objectness = np.asarray(boxes, np.float64), np.asarray(objectness, np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0 or len(objectness) != len(boxes):
            raise InputError('need K >= 1 proposals as (K, 4) boxes and (K,) scores, got %s and %s'
                             % (boxes.shape, objectness.shape))
        height, width = image.shape[:2]
        order = np.argsort(-objectness, kind='stable')[:self.bbox_num]
        boxes, objectness = boxes[order], objectness[order]
        cycle = np.arange(self.bbox_num) % len(boxes)
        scales = check_scales(scales) if scales else [self.size]
        region = np.zeros((len(boxes), self.num_classes))
        image_scores = np.zeros(self.num_classes)
        passes = [(s, f) for s in scales for f in ((False, True) if flip else (False,))]
        for size, mirrored in passes:
            r, im = self._forward(image, boxes[cycle], objectness[cycle], int(size), mirrored)
            np.add.at(region, cycle, r)  # copies of a proposal add back onto it
            image_scores += im
        return ImageResult(width, height, image_scores / len(passes), region, boxes, objectness)

    def detect(self, image, boxes, objectness, scales=None, flip=False):
        from caffe_mlic.evaluation.detection import nms
        result = self.score(image, boxes, objectness, scales, flip)
        for c in range(self.num_classes):
            keep = np.flatnonzero(result.region_scores[:, c] > self.score_threshold)
            if keep.size == 0:
                continue
            kept = keep[nms(result.boxes[keep], result.region_scores[keep, c], self.nms_iou)]
            result.detections += [Detection(c, float(result.region_scores[k, c]),
                                            tuple(float(v) for v in result.boxes[k])) for k in kept]
        result.detections.sort(key=lambda d: -d.score)
        return result


class RandomControlDetector(WsddnDetector):
    """The control a WSD result is compared with: the same proposals, test
    protocol and output as WsddnDetector, but every region gets a uniform
    random score per class instead of the net's (seeded; the net is only read
    for B and C). Its AP and CorLoc are what knowing nothing gives."""

    def __init__(self, net_path, settings, seed=0, score_threshold=1e-3, nms_iou=0.4):
        super().__init__(net_path, None, settings, score_threshold, nms_iou)
        self.rng = np.random.default_rng(seed)

    def _forward(self, image, boxes_in, objectness, size, flip):
        region = self.rng.random((self.bbox_num, self.num_classes)) / self.bbox_num
        return region, region.sum(axis=0)


# Input sides detect runs at: multiples of 16 (VGG16's pooling) up to 4096
# (the release's scales are 480 to 832; at 5800 px VGG16's conv1 top passes
# Caffe's 2^31 - 1 values, and 40000 px asked for a 100 GB blob).
MIN_SCALE, MAX_SCALE = 16, 4096


def check_scales(scales):
    bad = [s for s in scales if not isinstance(s, (int, np.integer)) or not MIN_SCALE <= s <= MAX_SCALE
           or s % 16]
    if bad:
        raise UsageError('scales must be multiples of 16 from %d to %d (VGG16 pooling), got %s'
                         % (MIN_SCALE, MAX_SCALE, ', '.join(map(str, bad))), 'scales')
    return scales
