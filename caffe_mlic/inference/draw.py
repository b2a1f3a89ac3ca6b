"""Boxes and labels drawn on images (detections, ground truth), written as JPEG or PNG."""
import os

import cv2
import numpy as np

from caffe_mlic.fileio import atomic_write

# distinct BGR colours, one per class (cycled)
PALETTE = [(48, 48, 230), (60, 180, 75), (200, 130, 0), (0, 200, 230), (180, 30, 145),
           (240, 240, 70), (230, 50, 240), (60, 245, 210), (0, 128, 128), (128, 0, 0),
           (75, 25, 230), (195, 255, 170), (0, 0, 128), (128, 128, 0), (180, 215, 255)]


def colour(index):
    return PALETTE[index % len(PALETTE)]


def draw_boxes(image, boxes, labels, colours, thickness=None):
    """A copy of BGR image with each box (x1, y1, x2, y2, 0-based inclusive)
    outlined in its colour and its label written on a filled strip above it."""
    out = np.ascontiguousarray(image).copy()
    h, w = out.shape[:2]
    thickness = thickness or max(1, round(min(h, w) / 250))
    font_scale = max(0.35, min(h, w) / 900)
    for box, label, bgr in zip(boxes, labels, colours):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), bgr, thickness)
        if label:
            (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
            ty = y1 - th - base - 2 if y1 - th - base - 2 >= 0 else y1
            cv2.rectangle(out, (x1, ty), (min(x1 + tw + 4, w - 1), ty + th + base + 2), bgr, -1)
            dark = sum(bgr) > 380
            cv2.putText(out, label, (x1 + 2, ty + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                        (0, 0, 0) if dark else (255, 255, 255), 1, cv2.LINE_AA)
    return out


# The largest side a picture format takes: libjpeg's 65500 px (past it
# OpenCV throws),
# WebP's 16383. The images we read may be up to MAX_IMAGE_SIDE wide.
PICTURE_MAX_SIDE = {'.jpg': 65500, '.jpeg': 65500, '.jpe': 65500, '.webp': 16383}


def encode_picture(ext, image, params=()):
    """The bytes of the BGR ``image`` in the format of ``ext``; a picture
    for people (boxes drawn, an overlay), so one over the format's largest
    side (PICTURE_MAX_SIDE) is scaled down to fit, keeping its shape."""
    limit = PICTURE_MAX_SIDE.get(ext.lower())
    h, w = image.shape[:2]
    if limit and max(h, w) > limit:
        scale = limit / max(h, w)
        size = (max(1, min(limit, round(w * scale))), max(1, min(limit, round(h * scale))))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(ext, image, list(params))
    if not ok:
        raise ValueError('OpenCV cannot encode %s images' % ext)
    return data.tobytes()


def write_image(path, image):
    """Write a BGR image atomically; the format follows the extension
    (encode_picture)."""
    data = encode_picture(os.path.splitext(path)[1].lower() or '.png', image)
    with atomic_write(path, 'wb') as f:
        f.write(data)
    return path
