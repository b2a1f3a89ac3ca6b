"""Reading images: the one list of image extensions and the one image reader.

Images are decoded from their bytes (``np.fromfile`` + ``cv2.imdecode``)
rather than with ``cv2.imread(path)``: OpenCV's path argument cannot hold
a name that is not valid UTF-8 (old Latin-1 file systems), while bytes can.

libpng prints its warnings and errors straight to stderr, where no OpenCV log
level reaches them; the two common ones are avoided before decoding: a
truncated PNG (no IEND chunk) is refused without calling libpng ("libpng
error: PNG input buffer is incomplete"), and an ICC profile (iCCP chunk),
which OpenCV never applies, is dropped ("libpng warning: iCCP: known
incorrect sRGB profile"; the pixels are the same without it).
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


PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_IEND = b'\x00\x00\x00\x00IEND\xaeB`\x82'      # the last chunk of every PNG


def truncated_png(data):
    """A PNG with no IEND chunk: cut short (libpng would print an error)."""
    if data[:8].tobytes() != PNG_SIGNATURE:
        return False
    return data[-12:].tobytes() != _PNG_IEND and data.tobytes().rfind(b'IEND') < 0


def without_colour_profile(data):
    """PNG bytes without their iCCP chunks (module docstring). Only the few
    chunks before the image data are walked; other bytes are returned as they are."""
    if data[:8].tobytes() != PNG_SIGNATURE:
        return data
    cuts, p = [], 8
    while p + 8 <= data.size:
        length = int.from_bytes(data[p:p + 4].tobytes(), 'big')
        kind = data[p + 4:p + 8].tobytes()
        if kind in (b'IDAT', b'IEND') or length >= 1 << 31:   # the data, or not a chunk: stop
            break
        if kind == b'iCCP':
            cuts.append((p, p + 12 + length))
        p += 12 + length
    if not cuts:
        return data
    bounds = [0] + [b for cut in cuts for b in cut] + [data.size]
    return np.concatenate([data[a:b] for a, b in zip(bounds[::2], bounds[1::2])])


def decode_file(path):
    """BGR uint8 (H, W, 3) image of the file at ``path``, or None when it is
    missing, unreadable, truncated or not an image OpenCV decodes."""
    import cv2
    try:
        data = np.fromfile(path, np.uint8)
    except (OSError, ValueError):
        return None
    if not data.size or _truncated_jpeg(data) or truncated_png(data):
        return None
    img = cv2.imdecode(without_colour_profile(data), cv2.IMREAD_COLOR)
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
    data = np.fromfile(path, np.uint8)
    if _truncated_jpeg(data):
        return 'a truncated JPEG: no end-of-image marker'
    if truncated_png(data):
        return 'a truncated PNG: no IEND chunk'
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
