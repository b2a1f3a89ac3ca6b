"""Running trained nets on images: the WSDDN teacher as a detector, the student
as a classifier (`caffe-mlic detect`, `caffe-mlic classify`)."""
import os

from caffe_mlic.data.imageio import expand_images
from caffe_mlic.errors import InputError


def model_and_images(files, image_args):
    """The commands that run a model on images: every file of ``files`` (net,
    weights; None skipped) must exist, and ``image_args`` (files or folders)
    must name at least one image. Returns the image paths."""
    from caffe_mlic.fileio import input_file_problem
    for path in filter(None, files):
        if input_file_problem(path):
            raise InputError(input_file_problem(path))
    images = expand_images(image_args)
    if not images:
        raise InputError('no image files in %s' % ', '.join(image_args))
    missing = [p for p in images if not os.path.isfile(p)]
    if missing:     # before any output is written: what is there instead ('a FIFO, not a file'), as read_image says
        from caffe_mlic.errors import path_kind
        raise InputError(problems=[(printable(p), None, None, 'no such image file' if path_kind(p) is None
                                    else '%s, not a file' % path_kind(p)) for p in missing])
    return images


def check_finite_weights(net, weights):
    """InputError naming ``weights`` and each layer of caffe.Net ``net`` (the
    weights copied in) whose values are not all finite. A NaN or inf weight
    gives NaN outputs that no later step names (a class whose probability is
    NaN is silently dropped from the top labels, ScasNet's argmax is class 0,
    detection ROIPooling says "training diverged"): the file is refused as it
    is loaded."""
    import numpy as np
    problems = []
    for name, blobs in net.params.items():
        bad = sum(int(b.count - np.count_nonzero(np.isfinite(b.data))) for b in blobs)
        if bad:
            total = sum(int(b.count) for b in blobs)
            problems.append((os.fspath(weights), None, None,
                             "layer '%s': %d of its %d weights are NaN or infinite: the weights hold "
                             "non-finite values (a snapshot of a diverged training run?)" % (name, bad, total)))
    if problems:
        raise InputError(problems=problems, what='weights' if len(problems) > 1 else None)


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
