"""Per-image inference time of the teacher (with and without computing its
proposals) and of the student (Caffe and OpenCV engines), batch 1, after a
warm-up, all measured in one run on the same images."""
import time

import numpy as np


def _best_ms(fn, items, repeats):
    """Best over ``repeats`` of the mean milliseconds per item."""
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, 1000 * (time.perf_counter() - start) / len(items))
    return best


def measure(teacher_net, teacher_weights, student_net, student_weights, images, repeats=2, names=None):
    """{'teacher_ms', 'proposals_ms', 'teacher_with_proposals_ms', 'student_ms',
    'student_opencv_ms'} over ``images`` (BGR uint8 arrays; ``names``: their
    files, for the message of an image that can have no proposal)."""
    from caffe_mlic.inference.classifier import StudentClassifier
    from caffe_mlic.inference.detector import WsddnDetector
    from caffe_mlic.inference.settings import load_settings
    from caffe_mlic.data.proposals import compute_proposals
    teacher = WsddnDetector(teacher_net, teacher_weights, load_settings(teacher_net))
    students = {engine: StudentClassifier(student_net, student_weights, load_settings(student_net),
                                          engine) for engine in ('caffe', 'opencv')}
    proposals = [compute_proposals(img, name=name)            # also the warm-up of OpenCV
                 for img, name in zip(images, names or [None] * len(images))]
    pairs = list(zip(images, proposals))
    image, (boxes, scores) = pairs[0]
    teacher.detect(image, boxes, scores)                      # warm-up: numba, buffers
    for student in students.values():
        student.probabilities(images[0])
    out = dict(
        teacher_ms=_best_ms(lambda p: teacher.detect(p[0], *p[1]), pairs, repeats),
        proposals_ms=_best_ms(compute_proposals, images, repeats),
        student_ms=_best_ms(students['caffe'].probabilities, images, repeats),
        student_opencv_ms=_best_ms(students['opencv'].probabilities, images, repeats))
    out['teacher_with_proposals_ms'] = out['teacher_ms'] + out['proposals_ms']
    return out


def photos(count=4):
    """BGR photographs that scikit-image ships (astronaut, chelsea, coffee, rocket)."""
    import skimage.data
    names = ('astronaut', 'chelsea', 'coffee', 'rocket')[:count]
    return [np.ascontiguousarray(getattr(skimage.data, n)()[:, :, ::-1]) for n in names]
