"""mAP of a trained net over its TEST datalist: runs the TEST phase once over
every image and prints the AP of each class and their mean."""
import os

import numpy as np

from caffe_mlic.errors import InputError

HELP = 'mAP of a trained net on its TEST datalist'


def add_arguments(p):
    p.add_argument('--net', required=True, help='train/test prototxt with a TEST data layer')
    p.add_argument('--weights', required=True, help='caffemodel')
    p.add_argument('--blob', required=True,
                   help='score blob: image_level_score (teacher), fc8_mscoco (student logits)')
    p.add_argument('--classes', help='class-name file for the per-class table')


def run(args):
    from caffe_mlic.annotations import read_class_list
    from caffe_mlic.evaluate import mean_average_precision, score_test_set
    for path in (args.net, args.weights):
        if not os.path.isfile(path):
            raise InputError('%s: no such file' % path)
    names = read_class_list(args.classes) if args.classes else None
    scores, labels = score_test_set(args.net, args.weights, args.blob)
    mean_ap, aps = mean_average_precision(scores, labels)
    if names is not None and len(names) != len(aps):
        raise InputError('%s: %d classes, but blob %s has %d' % (args.classes, len(names), args.blob,
                                                                 len(aps)))
    for name, ap in zip(names or [str(c) for c in range(len(aps))], aps):
        print('  AP %-20s %s' % (name, 'n/a' if np.isnan(ap) else '%.1f' % (100 * ap)))
    print('mAP %.1f %% over %d images' % (100 * mean_ap, len(scores)))
