"""Running trained nets on images: the WSDDN teacher as a detector, the student
as a classifier (`caffe-mlic detect`, `caffe-mlic classify`)."""
import os

from caffe_mlic.data.imageio import expand_images
from caffe_mlic.errors import InputError


def model_and_images(files, image_args):
    """The commands that run a model on images: every file of ``files`` (net,
    weights; None skipped) must exist, and ``image_args`` (files or folders)
    must name at least one image. Returns the image paths."""
    for path in filter(None, files):
        if not os.path.isfile(path):
            raise InputError('%s: no such file' % path)
    images = expand_images(image_args)
    if not images:
        raise InputError('no image files in %s' % ', '.join(image_args))
    missing = [p for p in images if not os.path.isfile(p)]
    if missing:     # before any output is written
        raise InputError(problems=[(printable(p), None, None, 'no such image file') for p in missing])
    return images


def refuse_overwriting_inputs(outputs, inputs, param=None):
    """fileio.refuse_overwriting for many paths at once (thousands of images
    and outputs): an output can only destroy an input if it exists now, so
    the two are matched by (device, inode), one stat a path."""
    from caffe_mlic.fileio import refuse_overwriting
    given = {}
    for path in filter(None, inputs):
        try:
            st = os.stat(path)
        except OSError:
            continue
        given.setdefault((st.st_dev, st.st_ino), path)
    for out in filter(None, outputs):
        try:
            st = os.stat(out)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in given:
            refuse_overwriting([out], [given[(st.st_dev, st.st_ino)]], param)


def is_utf8(path):
    """Whether ``path`` is valid UTF-8 (a name that is not reaches Python as
    surrogate escapes, which text written as UTF-8 cannot hold)."""
    try:
        os.fspath(path).encode('utf-8')
        return True
    except UnicodeEncodeError:
        return False


def printable(path):
    """``path`` for the terminal, whatever its bytes: those that are not
    UTF-8 as \\xNN (print() would fail on them)."""
    return os.fspath(path).encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')


def image_ids(images):
    """The file stem of each image: what names its outputs and, in devkit
    result files, the image. UsageError when two images share one; InputError
    for a stem that is empty or has whitespace (a devkit line is
    whitespace-separated)."""
    from caffe_mlic.errors import UsageError
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    first, twice = {}, []
    for path, stem in zip(images, stems):
        if stem in first:
            twice.append('%s and %s' % (printable(first[stem]), printable(path)))
        first.setdefault(stem, path)
    if twice:
        raise UsageError('two images would write the same outputs (their names without the extension '
                         'are equal): %s%s' % ('; '.join(twice[:3]), ' ...' if len(twice) > 3 else ''))
    bad = [p for p, s in zip(images, stems) if not s or any(c.isspace() for c in s)]
    if bad:
        why = ('its name (without the extension) is empty or has whitespace, which a devkit result '
               'line cannot hold as the image id; rename it')
        raise InputError(problems=[(printable(p), None, None, why) for p in bad])
    return stems
