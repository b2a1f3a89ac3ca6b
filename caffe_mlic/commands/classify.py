"""Label any images with the trained student (no proposals, no teacher):

    caffe-mlic classify --net nets/kd/student_deploy.prototxt --weights student.caffemodel \\
        photos/*.jpg [--top 5] [--engine opencv] [-o labels.json]

Prints each image's top labels with their probabilities; with -o, writes them
(and every class's probability) as JSON; with --csv, one line per image: the
image's path, then the probability of each class (a column per class).
`--engine opencv` runs the same model with OpenCV's dnn module, which needs no
Caffe. The preprocessing comes from the deploy.json that `netgen` writes
beside the nets.
"""
import os

from caffe_mlic.errors import UsageError

HELP = 'label images with the student classifier (Caffe or OpenCV engine)'


def add_arguments(p):
    from caffe_mlic.inference.classifier import ENGINES
    p.add_argument('--net', required=True, help='student deploy prototxt')
    p.add_argument('--weights', required=True, help='trained student caffemodel')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files or folders of images')
    p.add_argument('--top', type=int, default=5, help='labels printed per image (default 5)')
    p.add_argument('--engine', choices=ENGINES, default='caffe')
    p.add_argument('--classes', metavar='FILE', help='class names, one per line (default class_0 ...)')
    p.add_argument('--settings', metavar='deploy.json', help='deploy settings (default: beside the net)')
    p.add_argument('-o', '--output', metavar='FILE.json', help='write the results as JSON')
    p.add_argument('--csv', metavar='FILE.csv',
                   help="write every image's class probabilities as CSV (image, then a column per class)")


def run(args):
    from caffe_mlic.commands.detect import class_names
    from caffe_mlic.fileio import atomic_write_csv, atomic_write_json
    from caffe_mlic.data.imageio import read_image
    from caffe_mlic.inference import model_and_images
    from caffe_mlic.inference.classifier import StudentClassifier, top_labels
    from caffe_mlic.inference.settings import load_settings
    if args.top < 1:
        raise UsageError('argument --top: must be >= 1, got %d' % args.top)
    images = model_and_images((args.net, args.weights), args.images)
    model = StudentClassifier(args.net, args.weights, load_settings(args.net, args.settings), args.engine)
    results, classes = [], None
    for image_path in images:
        probabilities = model.probabilities(read_image(image_path))
        classes = classes or class_names(args.classes, len(probabilities))
        top = top_labels(probabilities, classes, args.top)
        print('%s  %s' % (image_path, '  '.join('%s %.3f' % t for t in top)))
        results.append(dict(image=os.path.abspath(image_path), top=[dict(label=n, probability=p)
                                                                   for n, p in top],
                            probabilities={c: float(p) for c, p in zip(classes, probabilities)}))
    if args.output:
        atomic_write_json(args.output, dict(engine=args.engine, results=results))
    if args.csv:
        atomic_write_csv(args.csv, ['image'] + classes,
                         [[r['image']] + [r['probabilities'][c] for c in classes] for r in results])
