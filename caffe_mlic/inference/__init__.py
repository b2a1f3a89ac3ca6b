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
    return images
