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


def _truncated_jpeg(data):
    """A JPEG whose last scan has no end-of-image marker after it: cut short
    (a full disk, an interrupted copy). OpenCV would decode such a file
    partly, grey below the cut, with only a warning."""
    raw = data.tobytes()
    if not raw.startswith(b'\xff\xd8'):
        return False
    last_scan = raw.rfind(b'\xff\xda')   # entropy-coded data escapes 0xFF, so markers are real
    return last_scan < 0 or raw.find(b'\xff\xd9', last_scan) < 0


def decode_file(path):
    """BGR uint8 (H, W, 3) image of the file at ``path``, or None when it is
    missing, unreadable, truncated or not an image OpenCV decodes."""
    import cv2
    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError):
        return None
    if not data.size or _truncated_jpeg(data):
        return None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if img is None or img.size == 0 else img


def read_image(path, error=InputError):
    """BGR uint8 (H, W, 3) image; ``error`` (an InputError class) naming the
    path when the file is missing, unreadable or not an image."""
    if not os.path.isfile(path):
        raise error('%s: no such image file' % path)
    img = decode_file(path)
    if img is None:
        raise error('%s: cannot read image (%s)' % (path, why_undecodable(path)))
    return img


def why_undecodable(path):
    """Why decode_file gave None for ``path``, in a few words."""
    try:
        size = os.path.getsize(path)
    except OSError as e:
        return 'cannot open it: %s' % (e.strerror or e)
    if size == 0:
        return 'the file is empty (0 bytes)'
    if _truncated_jpeg(np.fromfile(path, np.uint8, count=min(size, 1 << 26))):
        return 'a truncated JPEG: no end-of-image marker'
    return 'not an image OpenCV decodes: unknown format, corrupt or truncated'


def image_size(path):
    """(width, height) from the image header; OSError/ValueError if unreadable."""
    from PIL import Image
    with Image.open(path) as im:
        return im.size


def expand_images(paths):
    """Files as given; directories become their image files (not recursive)."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += [os.path.join(p, f) for f in sorted(os.listdir(p))
                    if is_image_file(f)]
        else:
            out.append(p)
    return sorted(set(out))
