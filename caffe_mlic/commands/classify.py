"""Label any images with the trained student (no proposals, no teacher):

    caffe-mlic classify --net nets/kd/student_deploy.prototxt --weights student.caffemodel \\
        photos/*.jpg [--top 5] [--engine opencv] [-o labels.json]

Prints each image's top labels with their probabilities; with -o, writes them
(and every class's probability) as JSON; with --csv, one line per image: the
image's path, then the probability of each class (a column per class).
`--engine opencv` runs the same model with OpenCV's dnn module (the weights
are checked against the net first, as with Caffe). The preprocessing and the
class names come from the deploy.json that `netgen` writes beside the nets.

-o and --csv are written together, after every image was labelled, or not at
all; neither may name an input. The CSV is UTF-8 text: an image whose name
is not UTF-8 is refused before anything runs (-o's JSON holds such a name,
escaped).
"""
import os

from caffe_mlic.errors import UsageError

HELP = 'label images with the student classifier (Caffe or OpenCV engine)'


def add_arguments(p):
    from caffe_mlic.commands.argtypes import int_in
    from caffe_mlic.inference.classifier import ENGINES
    p.add_argument('--net', required=True, help='student deploy prototxt')
    p.add_argument('--weights', required=True, help='trained student caffemodel')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files or folders of images')
    p.add_argument('--top', type=int_in(1), default=5, help='labels printed per image, >= 1 (default 5)')
    p.add_argument('--engine', choices=ENGINES, default='caffe')
    p.add_argument('--classes', metavar='FILE',
                   help="class names, one per line (default: deploy.json's, else class_0 ...)")
    p.add_argument('--settings', metavar='deploy.json', help='deploy settings (default: beside the net)')
    p.add_argument('-o', '--output', metavar='FILE.json', help='write the results as JSON')
    p.add_argument('--csv', metavar='FILE.csv',
                   help="write every image's class probabilities as CSV (image, then a column per class)")


def run(args):
    import csv
    import io
    import json

    from caffe_mlic.commands.detect import class_names
    from caffe_mlic.errors import InputError
    from caffe_mlic.fileio import atomic_files, json_ready, same_file
    from caffe_mlic.data.imageio import read_image
    from caffe_mlic.fileio import refuse_folders, refuse_overwriting
    from caffe_mlic.inference import is_utf8, model_and_images, printable
    from caffe_mlic.inference.classifier import StudentClassifier, top_labels
    from caffe_mlic.inference.settings import load_settings
    if args.output and args.csv and same_file(args.output, args.csv):
        raise UsageError('-o and --csv name one file (%s): give two' % args.csv)
    images = model_and_images((args.net, args.weights), args.images)
    from caffe_mlic.inference.settings import find_settings
    # the deploy.json read beside the net is an input too, given or not
    inputs = images + [args.net, args.weights, args.settings or find_settings(args.net), args.classes]
    refuse_overwriting([args.output], inputs, 'output')
    refuse_folders([args.output], 'output')
    refuse_folders([args.csv], 'csv')
    refuse_overwriting([args.csv], inputs, 'csv')
    if args.csv:
        not_utf8 = [p for p in images if not is_utf8(os.path.abspath(p))]
        if not_utf8:
            why = ('the name is not UTF-8, which the CSV (UTF-8 text) cannot hold; rename it, or write '
                   '-o FILE.json only')
            raise InputError(problems=[(printable(p), None, None, why) for p in not_utf8])
    model = StudentClassifier(args.net, args.weights, load_settings(args.net, args.settings), args.engine)
    classes = class_names(args.classes, model.num_classes, model.settings.classes)
    results = []
    for image_path in images:
        probabilities = model.probabilities(read_image(image_path))
        top = top_labels(probabilities, classes, args.top)
        print('%s  %s' % (printable(image_path), '  '.join('%s %.3f' % t for t in top)))
        results.append(dict(image=os.path.abspath(image_path), top=[dict(label=n, probability=p)
                                                                   for n, p in top],
                            probabilities={c: float(p) for c, p in zip(classes, probabilities)}))
    texts = {}
    if args.output:
        texts[args.output] = json.dumps(json_ready(dict(engine=args.engine, results=results)), indent=1) + '\n'
    if args.csv:
        table = io.StringIO()
        writer = csv.writer(table, lineterminator='\n')
        writer.writerow(['image'] + classes)
        writer.writerows([[r['image']] + [r['probabilities'][c] for c in classes] for r in results])
        texts[args.csv] = table.getvalue()
    with atomic_files(list(texts), encoding='utf-8', newline='') as files:   # both or neither
        for f, text in zip(files, texts.values()):
            f.write(text)
