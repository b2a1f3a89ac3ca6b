"""Reading caffemodels of release size in Python against Caffe loading them.

The release WSDDN teacher (VGG16, 80 classes: a 540 MB caffemodel) with
seeded random weights. Measured in one run, best of ``repeats``:
  - ``read_layers`` (what surgery and the report read) against protobuf
    parsing the same file: target <= 1;
  - `caffe-mlic surgery` teacher -> WSDDN deploy net against Caffe building
    that net and loading the teacher into it: target <= 2;
  - surgery teacher -> stage-1 net (teacher and student, 1.1 GB written)
    against Caffe loading that net with the caffemodel surgery wrote:
    target <= 2.
Surgery writes what it reads (atomically, fsync included) and Caffe only
reads, so the ratio includes the write. Each time is the best of 2 (--quick)
or 3 after one untimed run. --quick: the tiny backbone.
"""
import contextlib
import io
import os
import tempfile


def _surgery(net, out, sources):
    from caffe_mlic import cli
    args = ['surgery', '--net', net, '-o', out]
    for source in sources:
        args += ['--from', source]
    with contextlib.redirect_stdout(io.StringIO()):
        if cli.main(args):
            raise RuntimeError('surgery failed: %s' % ' '.join(args))


def run(report, quick):
    import caffe
    from caffe.proto import caffe_pb2
    from caffe_mlic.netspec import netgen
    from caffe_mlic.benchmarks import best_time
    from caffe_mlic.fileio import save_weights
    from caffe_mlic.netspec import MlicConfig
    from caffe_mlic.caffe.surgery import shape_only_net
    from caffe_mlic.caffe.weights import read_layers
    caffe.set_mode_cpu()
    cfg = MlicConfig.release(backbone='tiny', teacher_size=224, student_size=96, pooled=3,
                             bbox_num=100) if quick else MlicConfig.release()
    repeats = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix='mlic_bench_weights_') as folder:
        netgen.generate(folder, cfg)
        deploy = os.path.join(folder, 'wsddn', 'wsddn_deploy.prototxt')
        stage1 = os.path.join(folder, 'kd', 'train_stage1.prototxt')
        teacher = os.path.join(folder, 'teacher.caffemodel')
        save_weights(shape_only_net(deploy, seed=1), teacher)
        megabytes = os.path.getsize(teacher) / 1e6

        def parse():
            with open(teacher, 'rb') as f:
                caffe_pb2.NetParameter().ParseFromString(f.read())

        t_parse = best_time(parse, repeats)
        t_read = best_time(lambda: read_layers(teacher), repeats)
        t_caffe = best_time(lambda: caffe.Net(deploy, caffe.TEST, weights=teacher), repeats)
        out = os.path.join(folder, 'out.caffemodel')
        t_surgery = best_time(lambda: _surgery(deploy, out, ['same:' + teacher]), repeats)
        t_surgery1 = best_time(lambda: _surgery(stage1, out, ['teacher:' + teacher, 'same:' + teacher]),
                           repeats)
        stage1_mb = os.path.getsize(out) / 1e6
        t_caffe1 = best_time(lambda: shape_only_net(stage1).copy_from(out), repeats)
    what = '%s teacher, %.0f MB' % ('tiny' if quick else 'release VGG16', megabytes)
    # Targets at release size only: a tiny file costs microseconds, whatever reads it.
    report('read_layers / protobuf parsing the same caffemodel (%s)' % what, t_read / t_parse,
           None if quick else '<= 1')
    report('surgery teacher -> deploy / Caffe loading the teacher', t_surgery / t_caffe,
           None if quick else '<= 2')
    report('surgery teacher -> stage 1 / Caffe loading stage 1 (%.0f MB)' % stage1_mb,
           t_surgery1 / t_caffe1, None if quick else '<= 2')
    for name, seconds in (('protobuf parse', t_parse), ('read_layers', t_read),
                          ('Caffe loads the teacher', t_caffe), ('surgery teacher -> deploy', t_surgery),
                          ('surgery teacher -> stage 1', t_surgery1),
                          ('Caffe loads stage 1', t_caffe1)):
        report('  %s' % name, seconds, None, 's')
