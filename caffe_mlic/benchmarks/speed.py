"""Inference speed: the student deploy net against the WSDDN teacher deploy
net, per image at batch 1, on scikit-image's photographs, with seeded random
weights (speed does not depend on the values). Release sizes (teacher 672 px
with 500 proposals, student 224 px, VGG16); --quick: the tiny backbone."""
import os
import tempfile


def _nets(folder, cfg):
    from caffe_mlic.netspec import netgen
    from caffe_mlic.caffe import prototxt
    from caffe_mlic.fileio import save_weights
    netgen.generate(folder, cfg)
    paths = {}
    for rel in ('wsddn/wsddn_deploy', 'kd/student_deploy'):
        net_path = os.path.join(folder, rel + '.prototxt')
        weights = os.path.join(folder, rel + '.caffemodel')
        save_weights(prototxt.caffe_net(net_path, 'TEST', seed=0), weights)
        paths[rel] = (net_path, weights)
    return paths['wsddn/wsddn_deploy'], paths['kd/student_deploy']


def run(report, quick):
    from caffe_mlic.inference.speed import measure, photos
    from caffe_mlic.netspec import MlicConfig
    cfg = (MlicConfig.release(backbone='tiny', teacher_size=224, student_size=96, pooled=3,
                              bbox_num=100) if quick else MlicConfig.release())
    with tempfile.TemporaryDirectory(prefix='mlic_bench_speed_') as folder:
        (teacher, teacher_w), (student, student_w) = _nets(folder, cfg)
        ms = measure(teacher, teacher_w, student, student_w, photos(2 if quick else 4),
                     repeats=1 if quick else 2)
    what = '%s (teacher %d px, %d proposals; student %d px)' % (
        'tiny' if quick else 'release VGG16', cfg.teacher_size, cfg.bbox_num, cfg.student_size)
    report('student speed-up over the teacher, proposals excluded, %s' % what,
           ms['teacher_ms'] / ms['student_ms'], None if quick else '>= 8')
    report('student speed-up over the teacher, proposals included',
           ms['teacher_with_proposals_ms'] / ms['student_ms'])
    report('OpenCV engine vs Caffe engine for the student (time ratio)',
           ms['student_opencv_ms'] / ms['student_ms'])
    for key in ('teacher_ms', 'proposals_ms', 'teacher_with_proposals_ms', 'student_ms',
                'student_opencv_ms'):
        report('  %s per image' % key[:-3], ms[key], None, 'ms')
    report('  student images/s (Caffe)', 1000 / ms['student_ms'], None, 'img/s')
    report('  teacher images/s (proposals excluded)', 1000 / ms['teacher_ms'], None, 'img/s')
