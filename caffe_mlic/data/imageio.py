"""Reading images: the one list of image extensions and the one image reader.

Images are decoded from their bytes (``np.fromfile`` + ``cv2.imdecode``)
rather than with ``cv2.imread(path)``: OpenCV's path argument cannot hold
a name that is not valid UTF-8 (old Latin-1 file systems), while bytes can.

libpng prints its warnings and errors straight to stderr, where no OpenCV log
level reaches them; the two common ones are avoided before decoding: a
truncated PNG (no IEND chunk) is refused without calling libpng ("libpng
error: PNG input buffer is incomplete"), and an ICC profile (iCCP chunk),
which OpenCV never applies, is dropped ("libpng warning: iCCP: known
incorrect sRGB profile"; the pixels are the same without it). A critical
PNG chunk whose CRC fails is refused too (libpng: "IDAT: CRC error"), and
``read_image`` (the commands that read a few images: classify, detect,
speed, scasnet infer, proposals) also inflates a PNG's image data first, so
one that holds less than its header needs is refused without libpng's "Not
enough image data" (``decode_file``, the training workers' reader, skips
that pass: it doubles the time a PNG takes).

An image whose header claims more than MAX_IMAGE_PIXELS pixels (a
decompression bomb: 254 bytes can claim 60000 x 60000, 10 GB decoded) is
refused from its header, naming the file and its size, before anything is
decoded; every reader shares the one bound: the decoders here and
``image_size``, which the datalists, annotations and proposal import read
sizes with. An OpenCV error while decoding is "cannot read image", never
OpenCV's multi-line text. PIL's warnings ("Corrupt EXIF data") are kept off
the terminal while a header is read.
"""
import contextlib
import errno
import io
import os
import re
import stat
import sys
import threading
import warnings
import zlib

import numpy as np

from caffe_mlic.errors import InputError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.ppm', '.pgm', '.webp')


def is_image_file(name):
    return name.lower().endswith(IMAGE_EXTENSIONS) and not os.path.basename(name).startswith('.')


# The most pixels one image may have: 2^28 (16384 x 16384, 768 MiB decoded
# as BGR; the ISPRS tiles have 36 M). OpenCV's own bound is 2^30 and an
# assertion; PIL's, 2 x 89 M, applies to its own reads only.
MAX_IMAGE_PIXELS = 2 ** 28


class ImageTooLarge(ValueError):
    """An image whose header claims more than MAX_IMAGE_PIXELS pixels."""


# The longest side decoded: libpng's default limit (1000000; OpenCV's own,
# CV_IO_MAX_IMAGE_WIDTH / _HEIGHT, is 2^20). Past OpenCV's its decoders
# throw; past libpng's, libpng prints its own error lines.
MAX_IMAGE_SIDE = 1000000


def too_large(width, height):
    """Why a width x height image is not read, or None when it may be."""
    if max(width, height) > MAX_IMAGE_SIDE:
        return ('the image is %dx%d px, a side over the limit of %d px that libpng and OpenCV decode'
                % (width, height, MAX_IMAGE_SIDE))
    if width * height <= MAX_IMAGE_PIXELS:
        return None
    return ('the image is %dx%d px (%d pixels), over the limit of %d (2^28) pixels for one image: '
            'a decompression bomb, or an image to tile first' % (width, height, width * height,
                                                                MAX_IMAGE_PIXELS))


class NotAFile(OSError):
    """Something other than a regular file where an image file is read; its
    strerror says what ('a FIFO, not a file')."""


def open_image_file(path):
    """``path`` opened for reading in binary, if it is a regular file; else
    NotAFile (an OSError) saying what is there ('a FIFO, not a file').
    Opened without waiting: a file renamed over by a FIFO while a run reads
    its images blocked open() (and the stop signals with it); a device never
    ends."""
    def opener(name, flags):
        fd = os.open(name, flags | os.O_NONBLOCK)
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise NotAFile(errno.EINVAL, _kind_of(path, mode), path)
            os.set_blocking(fd, True)
        except BaseException:
            os.close(fd)
            raise
        return fd
    try:
        return open(path, 'rb', opener=opener)     # (named by its path: a library's message says the file)
    except OSError as e:
        if e.errno in (errno.ENXIO, errno.ELOOP) or e.errno == errno.ENOENT and os.path.lexists(path):
            raise NotAFile(e.errno, _kind_of(path), path) from None      # (a socket: "No such device or address")
        raise


def _kind_of(path, mode=None):
    """'a FIFO, not a file' (errors.path_kind), from the opened file's
    ``mode`` when there is one (what was read, not what is there now)."""
    from caffe_mlic.errors import path_kind
    if mode is None:
        kind = path_kind(path) or 'nothing'
    else:
        kind = ('a folder' if stat.S_ISDIR(mode) else 'a FIFO' if stat.S_ISFIFO(mode) else
                'a socket' if stat.S_ISSOCK(mode) else 'a device')
    return '%s, not a file' % kind


# Bytes of one image file: an uncompressed 4-channel 8-bit image at the
# pixel bound. Read whole and decoded from memory, a larger file held the
# run's stop signals for seconds a GiB (a 1 TiB sparse file: a MemoryError).
MAX_IMAGE_BYTES = MAX_IMAGE_PIXELS * 4


class ImageFileTooLarge(ValueError):
    """An image file over MAX_IMAGE_BYTES."""


def file_bytes(path):
    """The bytes of the image file ``path`` (open_image_file: a regular file
    only, opened without waiting), as uint8; the one way an image, a label
    map or a mask is read. ImageFileTooLarge over MAX_IMAGE_BYTES."""
    with open_image_file(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_IMAGE_BYTES:
            raise ImageFileTooLarge('the file is %d bytes, more than the %d (1 GiB) an image file may have (an '
                                    'uncompressed image at the limit of 2^28 pixels)' % (size, MAX_IMAGE_BYTES))
        return np.fromfile(f, np.uint8)


_PIL_LOCK = threading.Lock()   # PIL's bound and the warnings filters are process-wide


def _header_size(source):
    """(width, height) from the header of ``source`` (a path or bytes), read
    by PIL with its own decompression-bomb bound lifted (ours applies) and
    its warnings silenced; PIL's error when the header cannot be read."""
    from PIL import Image
    with contextlib.ExitStack() as opened:
        if not isinstance(source, io.BytesIO):
            source = opened.enter_context(open_image_file(source))
        if source.read(2) == b'\xff\xd8':
            return _jpeg_header_size(source)
        source.seek(0)
        with _PIL_LOCK, warnings.catch_warnings():
            warnings.simplefilter('ignore')
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(source) as im:
                    return im.size
            except Image.UnidentifiedImageError:    # (PIL's text names a file object by its repr)
                raise Image.UnidentifiedImageError('not an image file PIL identifies (unknown format, corrupt or '
                                                   'truncated)') from None
            finally:
                Image.MAX_IMAGE_PIXELS = saved


def size_problem(data):
    """too_large for image bytes from their header, read by PIL; one PIL
    does not read is refused too: OpenCV's own size checks throw (a
    2097152-px-wide PGM whose width is written 00002097152, a BMP with a
    36-byte header)."""
    try:
        width, height = _header_size(io.BytesIO(data))
    except Exception as e:   # noqa: BLE001  PIL raises several kinds for headers it cannot read
        text = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        return 'its size cannot be read from its header (%s), so it is not decoded' % text
    return too_large(width, height)


def oversized(path):
    """too_large for the image file at ``path`` from its header (None when
    the header cannot be read: whoever decodes the file reports that)."""
    try:
        width, height = _header_size(path)
    except Exception:   # noqa: BLE001
        return None
    return too_large(width, height)


def _truncated_jpeg(data):
    """A JPEG whose main image has no end-of-image marker after its scans:
    cut short (a full disk, an interrupted copy). OpenCV would decode such a
    file partly, grey below the cut, with only a warning, or none."""
    raw = data.tobytes()
    if not raw.startswith(b'\xff\xd8'):
        return False
    first_scan, end = jpeg_layout(raw)
    return first_scan < 0 or end < 0


_FILL_RUN = re.compile(rb'\xff+')


def _jpeg_markers(raw):
    """(marker, offset) of each marker of a JPEG's main image, from its
    start to its end marker (0xD9), with None for the marker where the
    bytes stop being a JPEG (cut, or damaged: not a marker where one must
    be): its marker segments are walked by their lengths, so that an EXIF
    thumbnail (a JPEG inside an APP1 segment) and what follows the end
    marker (a motion photo's video) are not taken for the image's own;
    entropy-coded data escapes 0xFF, so a marker in it is real (restart
    markers aside); a run of fill bytes is skipped at once."""
    size, i = len(raw), 2
    while i + 1 < size:
        if raw[i] != 0xFF:
            break
        marker = raw[i + 1]
        if marker == 0xFF:      # (fill before a marker)
            i = _FILL_RUN.match(raw, i).end() - 1
            continue
        yield marker, i
        if marker == 0xD9:
            return
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:       # (no length)
            i += 2
            continue
        if i + 4 > size:
            break
        i += 2 + max(int.from_bytes(raw[i + 2:i + 4], 'big'), 2)     # (a length under 2 skips nothing, as in libjpeg)
        if marker != 0xDA:
            continue
        while True:         # the entropy-coded data, to the next marker
            i = raw.find(b'\xff', i)
            if i < 0 or i + 1 >= size:
                yield None, size
                return
            following = raw[i + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                i += 2
            elif following == 0xFF:
                i = _FILL_RUN.match(raw, i).end() - 1
            else:
                break
    yield None, min(i, size)


def jpeg_layout(raw):
    """(offset of the end of the main image's first scan header, offset of
    its end marker), -1 for one not found (_jpeg_markers)."""
    first_scan = -1
    for marker, i in _jpeg_markers(raw):
        if marker == 0xD9:
            return first_scan, i
        if marker == 0xDA and first_scan < 0:
            first_scan = i + 2 + int.from_bytes(raw[i + 2:i + 4], 'big')
    return first_scan, -1


# Start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC): their segment gives the image's size.
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def jpeg_frame_size(raw):
    """((width, height) of a JPEG's main image from its frame header, or
    None where no frame header comes before its first scan; whether the
    bytes ``raw`` ran out before either). ValueError for a frame header
    that does not hold its fields, or gives a side of 0."""
    for marker, i in _jpeg_markers(raw):
        if marker in _JPEG_FRAMES:
            if i + 10 > len(raw):
                return None, True
            length, components = int.from_bytes(raw[i + 2:i + 4], 'big'), raw[i + 9]
            if length < 8:
                raise ValueError('a JPEG whose frame header is %d bytes long, too short for its fields' % length)
            if length != 8 + 3 * components:
                raise ValueError('a JPEG whose frame header is %d bytes long, not the %d of its %d components'
                                 % (length, 8 + 3 * components, components))
            size = int.from_bytes(raw[i + 7:i + 9], 'big'), int.from_bytes(raw[i + 5:i + 7], 'big')
            if 0 in size:       # (a height given after the scan, by a DNL marker: libjpeg does not read those)
                raise ValueError('a JPEG whose frame header gives it a %s of 0' % ('width' if size[0] == 0 else
                                                                                    'height'))
            return size, False
        if marker is None:
            return None, i >= len(raw) - 16
        if marker in (0xDA, 0xD9) or marker < 0xC0 and marker != 0x01:     # (a scan, the end, no marker)
            return None, False
    return None, True


JPEG_HEADER_BYTES = 16 << 20    # a frame header follows the APPn segments (64 KB each): well within this


def _jpeg_header_size(f):
    """(width, height) from the frame header of the JPEG file object ``f``,
    read from its start in growing pieces up to JPEG_HEADER_BYTES;
    ValueError saying why there is none. (PIL's header reader takes each
    fill or junk byte between markers in a Python loop: 8 s for 32 MB, 86 s
    for a 1 GiB file.)"""
    piece = 1 << 16
    while True:
        f.seek(0)
        raw = f.read(piece)
        size, ran_out = jpeg_frame_size(raw)
        if size:
            return size
        if not ran_out:
            raise ValueError('a JPEG with no frame header before its first scan')
        if len(raw) < piece:
            raise ValueError('a JPEG cut short before its frame header')
        if piece >= JPEG_HEADER_BYTES:
            raise ValueError('a JPEG with no frame header in its first %d MB' % (JPEG_HEADER_BYTES >> 20))
        piece *= 4


PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PNG_IEND = b'\x00\x00\x00\x00IEND\xaeB`\x82'      # the last chunk of every PNG


def truncated_png(data):
    """A PNG with no IEND chunk: cut short (libpng would print an error)."""
    if data[:8].tobytes() != PNG_SIGNATURE:
        return False
    return data[-12:].tobytes() != _PNG_IEND and data.tobytes().rfind(b'IEND') < 0


def _png_chunks(raw):
    """[(kind, start of its data, length)] of the chunks of PNG bytes ``raw``;
    stops at IEND or where the bytes stop being whole chunks."""
    chunks, p = [], 8
    while p + 12 <= len(raw):
        length = int.from_bytes(raw[p:p + 4], 'big')
        kind = raw[p + 4:p + 8]
        if length >= 1 << 31 or p + 12 + length > len(raw):
            break
        chunks.append((kind, p + 8, length))
        if kind == b'IEND':
            break
        p += 12 + length
    return chunks


def png_problem(data, inflate=False):
    """Why libpng would fail on these PNG bytes (uint8 array), in a few
    words, or None: a critical chunk (IHDR, PLTE, IDAT, IEND) whose CRC
    fails; with ``inflate``, image data that does not inflate or holds fewer
    bytes than the header's size needs (the data is inflated once, in 1 MiB
    pieces that are not kept)."""
    if data[:8].tobytes() != PNG_SIGNATURE:
        return None
    raw = data.tobytes()
    chunks = _png_chunks(raw)
    for kind, start, length in chunks:
        if kind[:1].islower():      # ancillary: libpng only warns, and decodes
            continue
        crc = int.from_bytes(raw[start + length:start + length + 4], 'big')
        if zlib.crc32(raw[start - 4:start + length]) != crc:
            return 'a corrupt PNG: its %s chunk at byte %d fails its CRC' % (
                kind.decode('latin-1'), start - 8)
    if not inflate or not chunks or chunks[0][0] != b'IHDR' or chunks[0][2] < 13:
        return None
    start = chunks[0][1]
    width, height = int.from_bytes(raw[start:start + 4], 'big'), int.from_bytes(raw[start + 4:start + 8], 'big')
    depth, colour, interlace = raw[start + 8], raw[start + 9], raw[start + 12]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None or too_large(width, height):
        return None
    passes = ([(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
               (0, 1, 1, 2)] if interlace else [(0, 0, 1, 1)])
    need = 0
    for x0, y0, dx, dy in passes:
        w, h = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if w and h:
            need += h * (1 + (w * channels * depth + 7) // 8)
    inflater, got = zlib.decompressobj(), 0
    try:
        for kind, start, length in chunks:
            if kind != b'IDAT':
                continue
            block = raw[start:start + length]
            while block and got < need:
                got += len(inflater.decompress(block, 1 << 20))
                block = inflater.unconsumed_tail
    except zlib.error as e:
        return 'a corrupt PNG: its image data does not inflate (%s)' % e
    if got < need:
        return 'a truncated PNG: its image data holds %d of the %d bytes its %dx%d header needs' % (
            got, need, width, height)
    return None


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


# The formats of IMAGE_EXTENSIONS, by their first bytes. OpenCV decodes more
# (Radiance HDR, OpenEXR, ...), but their headers escape the pixel bound (PIL
# cannot read them) and their decoders leave a copy of the file in /tmp
# when they fail.
_SIGNATURES = (b'\xff\xd8', PNG_SIGNATURE, b'BM', b'II*\x00', b'MM\x00*', b'P2', b'P3', b'P5', b'P6')


def format_problem(data):
    """Why image bytes are of no format we read (_SIGNATURES), or a TIFF
    OpenCV would throw on (tiff_problem), or None."""
    head = data[:16].tobytes()
    if head.startswith(_SIGNATURES) or head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return tiff_problem(data)
    if head[:4] in (b'II+\x00', b'MM\x00+'):
        return 'a BigTIFF, which is not read here (save it as a classic TIFF)'
    return 'not an image of a format read here (JPEG, PNG, BMP, TIFF, PGM/PPM, WebP)'


_TIFF_TILE_BYTES = 1 << 30     # OpenCV's bound on a TIFF tile or strip buffer (it throws past it)


# The tags that say how a TIFF's pixels are laid out and coded (size, samples,
# compression, strips and tiles, subsampling): given twice, the two readers differ.
TIFF_LAYOUT_TAGS = {256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338,
                    339, 347, 530}


def tiff_problem(data):
    """Why a TIFF's first directory would make OpenCV throw where PIL saw
    nothing wrong, or None: a layout tag given twice (PIL keeps the last value,
    OpenCV's libtiff the first: a width of 2097152 then 16 passed our size
    check as 16 px), or a tile or strip buffer of 1 GiB or more (16 x 16 px
    in 65536 x 65536 tiles). Read from the bytes; other formats: None."""
    import struct
    head = data[:4].tobytes()
    if head not in (b'II*\x00', b'MM\x00*'):
        return None
    order = '<' if head[:2] == b'II' else '>'
    try:
        (offset,) = struct.unpack_from(order + 'I', data, 4)
        (count,) = struct.unpack_from(order + 'H', data, offset)
        tags, entries = {}, {}
        for i in range(count):
            entry = offset + 2 + 12 * i
            tag, kind, n, value = struct.unpack_from(order + 'HHII', data, entry)
            if tag in tags:
                if tag in TIFF_LAYOUT_TAGS:
                    return 'a TIFF that gives tag %d twice' % tag
                continue        # (a description or other metadata twice: tifffile writes its own)
            entries[tag] = (kind, n, entry)
            if kind == 3:       # SHORT: the first in the value field, or (more than 2) where it points
                value = struct.unpack_from(order + 'H', data, entry + 8 if n <= 2 else value)[0]
            elif kind != 4 or n != 1:       # (only single LONGs are read as numbers)
                value = None
            tags[tag] = value
    except struct.error:
        return 'a truncated TIFF: its first directory is cut'
    width, height = tags.get(256) or 0, tags.get(257) or 0
    tile_w = tags.get(322) or width
    tile_h = tags.get(323) or min(tags.get(278) or height, height)
    samples, bits = tags.get(277) or 1, tags.get(258) or 1
    if tile_w * tile_h * samples * max(1, bits // 8) >= _TIFF_TILE_BYTES:
        return 'a TIFF whose tiles or strips take 1 GiB or more each (%dx%d px)' % (tile_w, tile_h)
    if tags.get(259) in TIFF_DEFLATE:
        return _deflate_problem(data, order, entries, tile_w * tile_h * samples * max(1, -(-bits // 8)))
    return None


TIFF_DEFLATE = (8, 32946)       # Compression: Adobe Deflate, and the older Deflate code


def _tiff_numbers(data, order, kind, n, entry):
    """The SHORT or LONG values of a directory entry (inline when they fit
    its 4 bytes, else where it points), or None for another type."""
    import struct
    size = {3: 2, 4: 4}.get(kind)
    if size is None:
        return None
    where = entry + 8 if n * size <= 4 else struct.unpack_from(order + 'I', data, entry + 8)[0]
    return struct.unpack_from('%s%d%s' % (order, n, 'H' if size == 2 else 'I'), data, where)


def _deflate_problem(data, order, entries, most):
    """Why a Deflate TIFF's first directory's strips (or tiles) are not
    whole zlib streams of at most ``most`` bytes (a strip's or tile's
    pixels), or None: libtiff stops inflating a strip when it has its
    pixels, before the stream's Adler-32 check, so damaged data that still
    inflates decoded as garbage, said nowhere; and a stream holding more
    (8 MB inflating on and on) took seconds a read."""
    import struct
    parts = (273, 279) if 273 in entries else (324, 325)        # strips, else tiles
    try:
        offsets, counts = (_tiff_numbers(data, order, *entries[tag]) if tag in entries else None for tag in parts)
    except struct.error:
        return 'a truncated TIFF: its strip offsets or byte counts are cut'
    if offsets is None or counts is None:
        return None     # (OpenCV's to refuse)
    raw = memoryview(data)
    for number, (start, length) in enumerate(zip(offsets, counts)):
        kind = 'strip' if parts[0] == 273 else 'tile'
        stream, inflated = zlib.decompressobj(), 0
        try:
            rest = raw[start:start + length]
            while rest and inflated <= most:     # (in bounded pieces: a strip may inflate to hundreds of MB)
                inflated += len(stream.decompress(rest, min(1 << 24, most + 1 - inflated)))
                rest = stream.unconsumed_tail
        except zlib.error as e:
            return 'a corrupt TIFF: its Deflate %s %d does not inflate (%s)' % (kind, number, e)
        if inflated > most:
            return 'a corrupt TIFF: its Deflate %s %d inflates to more than its %d bytes of pixels' % (
                kind, number, most)
        if not stream.eof:
            return 'a corrupt TIFF: its Deflate %s %d is cut' % (kind, number)
    return None


def bytes_problem(data, thorough=False):
    """Why these image bytes (an image, a label map, a mask) are not
    decoded, found without decoding them, or None: empty, not one of our
    formats, cut short, over the pixel bound, a PNG libpng would fail on."""
    if not data.size:
        return 'the file is empty (0 bytes)'
    why = format_problem(data)
    if why:
        return why
    if _truncated_jpeg(data):
        return 'a truncated JPEG: no end-of-image marker'
    if truncated_png(data):
        return 'a truncated PNG: no IEND chunk'
    return size_problem(data) or png_problem(data, inflate=thorough)


def _decode(path, thorough=False):
    """(BGR uint8 image or None, why not)."""
    import cv2
    try:
        data = file_bytes(path)
    except (OSError, ValueError) as e:
        return None, _open_problem(e)
    why = bytes_problem(data, thorough)
    if why:
        return None, why
    img, said = imdecode(without_colour_profile(data), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        return None, ('OpenCV cannot decode it: %s' % said if said else
                      'not an image OpenCV decodes: unknown format, corrupt or truncated')
    return img, None


_DECODER_LOCK = threading.Lock()    # (fd 2 is the process's: one decode at a time is heard)
_HEARD = {}     # pid -> the memfd this process hears its decoders on


def imdecode(data, flags):
    """cv2.imdecode(data, flags) as (image or None, what the decoder said of
    a file it could not decode, on one line, or None). OpenCV writes the
    error it catches in imdecode on std::cerr ("imdecode_(''): can't read
    data: ...", a truncated TIFF) and libpng its errors on stderr, before
    our line that names the file (with two workers, a dozen times): the
    decoders' lines (_decoder_line, heard by _heard_decode) are said here
    instead when the image is not decoded, written out as they were when
    it is; other lines (another thread's) are written out either way. A
    JPEG libjpeg calls corrupt (LIBJPEG_CORRUPT; zero padding before its
    end marker too: _zeros_note), or a TIFF libtiff says anything of beyond its directory
    (_libtiff_failure: a strip or tile it could not decode), is not
    decoded: both go on with grey, black or garbage pixels."""
    image, error, lines = _heard_decode(data, flags)
    decoded = image is not None and image.size > 0
    own = [line.strip() for line in lines if _decoder_line(line)]
    corrupt = [line for line in own if line.startswith(LIBJPEG_CORRUPT)]
    why = 'libjpeg: %s%s' % (corrupt[0], _zeros_note(data, corrupt[0])) if corrupt else _libtiff_failure(own)
    if decoded and why is None:     # its warnings written out (not the debug level's lines)
        others = [line for line in lines if not _raised_level_line(line)]
    else:
        others = [line for line in lines if not _decoder_line(line)]
    others = ''.join(line for line in others if line.strip())
    if others:
        with contextlib.suppress(OSError):
            os.write(2, others.encode('utf-8', 'replace'))
    if decoded and why is None:
        return image, None
    return None, why or _decoder_words('\n'.join(own), error)


def _heard_decode(data, flags):
    """cv2.imdecode(data, flags) with this process's fd 2 on a memfd while
    it runs (and OpenCV's log level at debug for a TIFF: its handler prints
    libtiff's errors only there): (image or None, the cv2.error raised or
    None, the lines written meanwhile; a libtiff message with a line break
    kept as one line). Without a memfd or a stderr, nothing is heard."""
    import cv2
    tiff = data[:4].tobytes() in (b'II*\x00', b'MM\x00*')
    with _DECODER_LOCK:
        heard, saved = _hearing_fd(), None
        if heard is not None:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            try:
                saved = os.dup(2)
            except OSError:     # (no stderr: `2>&-`; nothing to hear)
                heard = None
            else:
                os.dup2(heard, 2)
        level = cv2.getLogLevel()
        if tiff and heard is not None:
            cv2.setLogLevel(LOG_LEVEL_DEBUG)
        error = None
        try:
            image = cv2.imdecode(data, flags)
        except cv2.error as e:      # an assertion (OpenCV's own size bound...)
            image, error = None, e
        finally:
            cv2.setLogLevel(level)
            if saved is not None:
                os.dup2(saved, 2)
                os.close(saved)
        text = b''
        if heard is not None:
            text = os.pread(heard, os.fstat(heard).st_size, 0)
            os.ftruncate(heard, 0)
            os.lseek(heard, 0, os.SEEK_SET)     # (the offset fd 2 wrote at is this one's: it stays past the end)
    lines = []
    for line in text.decode('utf-8', 'replace').splitlines(keepends=True):
        # (OpenCV's libtiff handler ends each message with '.': one without goes on)
        if lines and lines[-1].startswith('OpenCV TIFF: ') and not lines[-1].rstrip().endswith('.'):
            lines[-1] = lines[-1].rstrip('\n') + ' ' + line
        else:
            lines.append(line)
    return image, error, lines


LOG_LEVEL_DEBUG = 5     # cv::utils::logging::LOG_LEVEL_DEBUG

# What libjpeg warns of a JPEG whose data it could not all decode, going on
# with grey or garbage pixels: such an image is not decoded, as a truncated one.
LIBJPEG_CORRUPT = ('Corrupt JPEG data', 'Premature end of JPEG file', 'Inconsistent progression sequence',
                   'Invalid SOS parameters')

# Lines the decoders write: OpenCV's catch in imdecode, its logger, its
# libtiff handler; libpng's and libjpeg's messages.
_DECODER_PREFIXES = ('imdecode_(', '>', 'OpenCV TIFF: ', 'libpng error: ', 'libpng warning: ', '[ WARN:', '[ERROR:',
                     '[ INFO:', '[DEBUG:', '[VERBOSE:') + LIBJPEG_CORRUPT


PADDING_WORDS = re.compile(r'Corrupt JPEG data: (\d+) extraneous bytes before marker 0xd9$')


def _zeros_note(data, said):
    """What a JPEG whose bytes libjpeg ``said`` were extraneous before its
    end marker has there, when they are all zeros: padding (some writers
    leave it) or zeros written over the end of its scan, which read the
    same (libjpeg reads part of them as data: the last blocks go wrong, up
    to 2 % of the pixels, 45 % where the arithmetic decoder reads them all
    as its implied zeros), so such a file is refused, saying what to do
    with a whole one; '' for other bytes (a damaged scan leaves varied ones)."""
    found = PADDING_WORDS.match(said)
    if not found:
        return ''
    end, count = jpeg_layout(data.tobytes())[1], int(found[1])
    if count < 1 or end < count or np.count_nonzero(data[end - count:end]):     # (a view: no copy of the zeros)
        return ''
    return (' (the %d bytes are zeros: padding, or zeros written over the end of its scan, which cannot be told '
            'apart; if the image is whole, save it again without them, e.g. with jpegtran -copy all)' % count)


def _decoder_line(line):
    return line.lstrip().startswith(_DECODER_PREFIXES)


def _raised_level_line(line):
    """A line that only the debug level raised for a TIFF made OpenCV write
    (its logger's info and debug lines, libtiff's warnings through it)."""
    return line.lstrip().startswith(('OpenCV TIFF: ', '[ INFO:', '[DEBUG:', '[VERBOSE:', '[ WARN:'))


def _libtiff_failure(lines):
    """libtiff's words (through OpenCV's handler: "OpenCV TIFF: ZIPDecode:
    Warning, Decoding error at scanline 0.") of anything but its directory
    (an unknown tag, a count it ignores: LIBTIFF_DIRECTORY), or None. A
    strip or tile it could not decode (LZW, Deflate, PackBits, CCITT, JPEG
    through "JPEGLib") OpenCV leaves black or garbage and returns."""
    for line in lines:
        if not line.startswith('OpenCV TIFF: '):
            continue
        module, _, said = line[len('OpenCV TIFF: '):].partition(': ')
        said = said[len('Warning, '):] if said.startswith('Warning, ') else said
        if module.startswith(LIBTIFF_DIRECTORY) or said.startswith(LIBTIFF_NOTES):
            continue
        return 'libtiff: %s%s' % (module + ': ' if module else '', said.rstrip('.'))
    return None


# libtiff's modules that read a TIFF's directory (their warnings leave the
# pixels as they are; a real TIFF often has some) and the ones that set its fields.
LIBTIFF_DIRECTORY = ('TIFFReadDirectory', 'TIFFFetch', 'TIFFReadCustomDirectory', 'TIFFReadEXIFDirectory',
                     'TIFFReadGPSDirectory', 'TIFFAdvanceDirectory', 'TIFFNumberOfDirectories', 'TIFFVSetField',
                     '_TIFFVSetField', 'TIFFSetField', 'OJPEGSubsamplingCorrect')
# What libtiff says of TIFFs it decodes whole: old-style JPEG (compression 6),
# a JPEG last strip of the full strip height, which it crops, JPEG subsampling
# it corrects from the data, and old-style LZW codes.
LIBTIFF_NOTES = ('Deprecated and troublesome old-style JPEG compression', 'JPEG strip size exceeds expected dimensions',
                 'Auto-corrected former TIFF subsampling values', 'Old-style LZW codes')


def _hearing_fd():
    """This process's memfd for the decoders' stderr (a forked child makes
    its own), or None where there is none."""
    pid = os.getpid()
    if pid not in _HEARD:
        try:
            _HEARD[pid] = os.memfd_create('caffe-mlic-decoder', os.MFD_CLOEXEC)
        except (AttributeError, OSError):
            _HEARD[pid] = None
    return _HEARD[pid]


def _decoder_words(text, error):
    """What a decoder said of an image it did not decode (its stderr
    ``text``, the cv2.error raised), on one line without OpenCV's version,
    source line and function, with a failed check's "> " lines, or None."""
    import re
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines += [line.strip() for line in str(error).splitlines() if line.strip()] if error is not None else []
    for i in reversed(range(len(lines))):
        line = lines[i]
        if line.startswith('libpng error: '):
            return 'libpng: ' + line[len('libpng error: '):]
        line = re.sub(r"^.*can't read (data|header): ", '', line)
        if line.startswith('OpenCV('):
            line = re.sub(r'^OpenCV\([^)]*\) \S+: error: \([^)]*\) ?', '', line)
            line = re.sub(r"\s*in function '[^']*'$", '', line)
            detail = []
            for more in lines[i + 1:]:
                if not more.startswith('>'):
                    break
                detail.append(more.lstrip('> ').strip())
            words = ' '.join(part for part in [line] + detail if part and part != ':')
            return words or None
    return _last_line(error) if error is not None else None


def opencv_words(error):
    """A cv2.error's message on one line, without OpenCV's version, source
    line and function (with a failed check's "> " lines)."""
    return _decoder_words('', error)


def _open_problem(error):
    """Why an image file could not be read: what is there instead ('it is a
    FIFO, not a file'), its size over the bound, or 'cannot open it: <strerror>'."""
    if isinstance(error, ImageFileTooLarge):
        return str(error)
    text = getattr(error, 'strerror', None) or str(error)
    return 'it is ' + text if isinstance(error, NotAFile) else 'cannot open it: %s' % text


def _last_line(error):
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def decode_file(path):
    """BGR uint8 (H, W, 3) image of the file at ``path``, or None when it is
    missing, unreadable, truncated, too large (MAX_IMAGE_PIXELS) or not an
    image OpenCV decodes (``why_undecodable`` says which)."""
    return _decode(path)[0]


def read_image(path, error=InputError):
    """BGR uint8 (H, W, 3) image; ``error`` (an InputError class) naming the
    path when the file is missing, unreadable, too large or not an image. A
    PNG's image data is inflated once first (module docstring)."""
    if not os.path.isfile(path):
        from caffe_mlic.errors import path_kind     # (what is there: 'a FIFO', 'a symlink loop')
        kind = path_kind(path)
        raise error('%s: %s' % (path, 'no such image file' if kind is None else '%s, not a file' % kind))
    img, why = _decode(path, thorough=True)
    if img is None:
        raise error('%s: cannot read image (%s)' % (path, why))
    return img


def why_undecodable(path):
    """Why decode_file gave None for ``path``, in a few words."""
    try:
        data = file_bytes(path)
    except (OSError, ValueError) as e:
        return _open_problem(e)
    why = bytes_problem(data, thorough=True)
    if why:
        return why
    import cv2      # (decoded again: what the decoder said of it)
    img, said = imdecode(without_colour_profile(data), cv2.IMREAD_COLOR)
    return ('OpenCV cannot decode it: %s' % said if said else
            'not an image OpenCV decodes: unknown format, corrupt or truncated')


def image_size(path):
    """(width, height) from the image header; OSError/ValueError if unreadable,
    ImageTooLarge (a ValueError) over MAX_IMAGE_PIXELS. PIL's warnings about
    the file are not printed."""
    width, height = _header_size(path)
    why = too_large(width, height)
    if why:
        raise ImageTooLarge(why)
    return width, height


def expand_images(paths):
    """Files as given; directories become their image files (not recursive).
    Sorted, each file once: two spellings of one path (``./a.jpg``,
    ``a.jpg``) are one image, named as it was first given."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            out += [os.path.join(p, f) for f in sorted(os.listdir(p))
                    if is_image_file(f)]
        else:
            out.append(p)
    once = {}
    for p in out:
        once.setdefault(os.path.abspath(p), p)
    return sorted(once.values())
