"""Per-image inference time of a trained teacher and student, measured in one
run on the same images (batch 1, after a warm-up, best of the repeats):

    caffe-mlic speed --teacher NET W --student NET W IMAGES... [--json OUT]

The teacher's time excludes its proposals (their time is reported apart);
the student is timed on Caffe and on OpenCV's dnn importer. Preprocessing
and sizes come from the deploy.json beside each net.
"""
from caffe_mlic.commands.argtypes import int_in
from caffe_mlic.errors import InputError

HELP = 'time a trained teacher and student per image (proposals apart)'


def add_arguments(p):
    p.add_argument('--teacher', nargs=2, required=True, metavar=('NET', 'WEIGHTS'),
                   help='WSDDN deploy prototxt and caffemodel')
    p.add_argument('--student', nargs=2, required=True, metavar=('NET', 'WEIGHTS'),
                   help='student deploy prototxt and caffemodel')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files or folders of images')
    p.add_argument('--max-images', type=int_in(1, 100000), default=20,
                   help='time at most this many, 1 to 100000 (default 20)')
    p.add_argument('--repeats', type=int_in(1, 100), default=2,
                   help='passes over the images, 1 to 100; the best counts (default 2)')
    p.add_argument('--json', metavar='OUT', help='write the times as JSON')


def run(args):
    import os
    from caffe_mlic.fileio import atomic_write_json, refuse_overwriting
    from caffe_mlic.data.imageio import read_image
    from caffe_mlic.inference.speed import measure
    from caffe_mlic.data.imageio import expand_images
    from caffe_mlic.fileio import input_file_problem
    for path in args.teacher + args.student:
        if input_file_problem(path):
            raise InputError(input_file_problem(path))
    paths = expand_images(args.images)[:args.max_images]
    from caffe_mlic.inference.settings import find_settings
    settings = [find_settings(net) for net in args.teacher[:1] + args.student[:1]]
    refuse_overwriting([args.json], args.teacher + args.student + paths + settings, 'json')
    if not paths:
        raise InputError('no image files in %s' % ', '.join(args.images))
    images = [read_image(p) for p in paths]
    ms = measure(*args.teacher, *args.student, images, repeats=args.repeats, names=paths)
    ms.update(images=len(images), speedup=ms['teacher_ms'] / ms['student_ms'])
    if args.json:
        atomic_write_json(args.json, ms, sort_keys=True)
    print('teacher %.2f ms (+ proposals %.2f ms), student %.2f ms (OpenCV %.2f ms) per image over '
          '%d images: the student is %.1fx faster (proposals excluded)'
          % (ms['teacher_ms'], ms['proposals_ms'], ms['student_ms'], ms['student_opencv_ms'],
             len(images), ms['speedup']))
