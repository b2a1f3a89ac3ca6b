"""Images into net input blobs, with the transform the data layer applies in
training: bilinear resize, optional left-right flip, (BGR pixel - mean) * scale."""
import cv2
import numpy as np

from caffe_mlic.data.datalist import resize_boxes


def image_blob(image_bgr, width, height, mean, scale=1.0, flip=False):
    """(1, 3, height, width) float32 blob of a BGR uint8 image."""
    img = image_bgr
    if img.shape[:2] != (height, width):
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    if flip:
        img = cv2.flip(img, 1)
    blob = img.astype(np.float32).transpose(2, 0, 1)
    blob -= np.asarray(mean, np.float32)[:, None, None]
    if scale != 1.0:
        blob *= np.float32(scale)
    return blob[None]


def boxes_to_input(boxes, width, height, size, flip=False):
    """Boxes (K, 4) 0-based inclusive in a width x height image -> the same
    boxes in the size x size net input (as a datalist holds them), mirrored
    left-right when flip."""
    out = resize_boxes(boxes, width, height, size, size)
    if flip:
        out = np.stack([size - 1 - out[:, 2], out[:, 1], size - 1 - out[:, 0], out[:, 3]], axis=1)
    return out
