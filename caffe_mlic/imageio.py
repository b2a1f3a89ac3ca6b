"""Reading images: the one list of image extensions and the one image reader.

Images are decoded from their bytes (``np.fromfile`` + ``cv2.imdecode``)
rather than with ``cv2.imread(path)``: OpenCV's path argument cannot hold
a name that is not valid UTF-8 (old Latin-1 file systems), while bytes can.
"""
import os

import numpy as np

from caffe_mlic.errors import InputError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.ppm', '.pgm', '.webp')


def is_image_file(name):
    return name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(name).startswith('.')


def decode_file(path):
    """BGR uint8 (H, W, 3) image of the file at ``path``, or None when it is
    missing, unreadable or not an image OpenCV decodes."""
    import cv2
    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError):
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if img is None or img.size == 0 else img


def read_image(path, error=InputError):
    """BGR uint8 (H, W, 3) image; ``error`` (an InputError class) naming the
    path when the file is missing, unreadable or not an image."""
    if not os.path.isfile(path):
        raise error('%s: no such image file' % path)
    img = decode_file(path)
    if img is None:
        raise error('%s: cannot read image (unknown format or corrupt)' % path)
    return img


def image_size(path):
    """(width, height) from the image header; OSError/ValueError if unreadable."""
    from PIL import Image
    with Image.open(path) as im:
        return im.size
