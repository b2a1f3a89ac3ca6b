"""Every user path once at release size: the generated release nets (VGG16,
teacher 672 px, student 224 px, 500 proposals, 80 classes; batch sizes 1 for
time) with random weights of release size (540 MB a VGG16, 1.1 GB a
distillation net), written here.

Each Caffe step runs in its own process: a build that cannot read files this
large aborts (rc 134) instead of raising, and must fail the test, not the
suite. About 3-5 minutes on 2 cores and up to 7 GB of disk at a time,
removed at the end.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from caffe_mlic.netspec import netgen
from caffe_mlic.engine import logs
from caffe_mlic.netspec import MlicConfig
from caffe_mlic.caffe.weights import read_layers
from tests.tinydata import write_tiny_dataset

pytestmark = pytest.mark.release_size

CLI = [sys.executable, '-m', 'caffe_mlic.cli']
PROTO_READ_LIMIT_BEFORE = 512 * 2 ** 20     # what the unpatched Caffe tree read at most
TIMEOUT = 900

# Loads a net (our data layers as Input layers, as surgery builds it) and a
# caffemodel with Caffe's own reader, then prints {layer: [sha1 of each blob]}.
LOAD_WITH_CAFFE = r'''
import hashlib, json, sys
import caffe
from caffe_mlic.caffe.surgery import shape_only_net
caffe.set_mode_cpu()
net = shape_only_net(sys.argv[1])
net.copy_from(sys.argv[2])
print(json.dumps({name: [hashlib.sha1(b.data.tobytes()).hexdigest() for b in blobs]
                  for name, blobs in net.params.items()}))
'''

# Writes the filler weights of a net (seeded) as a caffemodel.
WRITE_RANDOM_WEIGHTS = r'''
import sys
import caffe
from caffe_mlic.caffe.surgery import shape_only_net
caffe.set_mode_cpu()
shape_only_net(sys.argv[1], seed=int(sys.argv[3])).save(sys.argv[2])
'''


def run(args, cwd, **kw):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          env=dict(os.environ, GLOG_minloglevel='2'), **kw)


def cli(args, cwd):
    res = run(CLI + list(args), cwd)
    assert res.returncode == 0, 'caffe-mlic %s: rc %d\n%s' % (' '.join(args), res.returncode,
                                                               res.stderr[-3000:])
    return res


def digests(path):
    """{layer: [sha1 of each blob's float32 values]} read by our own reader."""
    return {name: [hashlib.sha1(a.astype('<f4').tobytes()).hexdigest() for a in arrays]
            for name, _, arrays in read_layers(path)}


def loaded_by_caffe(root, net, weights):
    """Caffe's reading of ``weights`` into ``net``, as digests (asserts it loads)."""
    res = run([sys.executable, '-c', LOAD_WITH_CAFFE, net, weights], root)
    assert res.returncode == 0, 'Caffe could not load %s (%.0f MB) into %s: rc %d\n%s' % (
        weights, os.path.getsize(weights) / 2 ** 20, net, res.returncode, res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def assert_loads_exactly(root, net, weights):
    """Caffe loads ``weights`` and holds, in every layer the file fills, the
    values our own reader finds there; returns both, as digests."""
    assert os.path.getsize(weights) > PROTO_READ_LIMIT_BEFORE, 'not a release-size file'
    in_caffe, in_file = loaded_by_caffe(root, net, weights), digests(weights)
    filled = [name for name in in_caffe if name in in_file]
    assert filled and all(in_caffe[name] == in_file[name] for name in filled), weights
    return in_caffe, in_file


@pytest.fixture(scope='module')
def release(tmp_path_factory):
    root = tmp_path_factory.mktemp('release_size')
    try:
        listing = write_tiny_dataset(str(root / 'images'), n_images=1, num_classes=80, bbox_num=500,
                                     size=672, seed=3)
        cfg = MlicConfig.release(train_list=listing, test_list=listing, workers=0,
                                 wsddn_batch=(1, 1), stage1_batch=(1, 1), stage2_batch=(1, 1),
                                 baseline_batch=(1, 1))
        netgen.generate(str(root / 'nets'), cfg)
        for net, out, seed in (('wsddn/wsddn_deploy', 'teacher.caffemodel', 1),
                               ('kd/student_deploy', 'student_random.caffemodel', 2)):
            res = run([sys.executable, '-c', WRITE_RANDOM_WEIGHTS,
                       str(root / 'nets' / (net + '.prototxt')), str(root / out), str(seed)], root)
            assert res.returncode == 0, res.stderr[-3000:]
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)     # gigabytes: never left for pytest to keep


def nets(root, rel):
    return str(root / 'nets' / (rel + '.prototxt'))


def test_pycaffe_loads_the_release_teacher_and_student(release):
    assert_loads_exactly(release, nets(release, 'wsddn/wsddn_deploy'), str(release / 'teacher.caffemodel'))
    assert_loads_exactly(release, nets(release, 'kd/student_deploy'),
                         str(release / 'student_random.caffemodel'))


def teacher_solver(root, name, max_iter, **fields):
    from caffe_mlic.caffe.prototxt import write_solver
    return write_solver(root / (name + '.prototxt'), nets(root, 'wsddn/wsddn_train'),
                        base_lr=1e-5, momentum=0.9, weight_decay=5e-4, max_iter=max_iter,
                        snapshot=max_iter, snapshot_prefix='snap_%s/wsddn' % name, random_seed=1,
                        test_iter=[1], test_interval=1000, test_initialization=False, **fields)


def cpu_seconds(pid):
    """The CPU time process ``pid`` has used (all its threads), in seconds."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')    # utime + stime


def test_caffe_binary_trains_from_release_weights(release):
    # display: 0: no extra forward pass after the last iteration (Caffe's
    # Solve runs one to print the final loss: a third of an iteration here)
    teacher_solver(release, 'binary', 1, display=0)
    cli(['caffe', 'train', '-solver', 'binary.prototxt', '-weights', 'teacher.caffemodel'], release)
    model = release / 'snap_binary' / 'wsddn_iter_1.caffemodel'
    state = release / 'snap_binary' / 'wsddn_iter_1.solverstate'
    assert os.path.getsize(state) > PROTO_READ_LIMIT_BEFORE     # SGD: a history blob per weight
    assert_loads_exactly(release, nets(release, 'wsddn/wsddn_deploy'), str(model))


def test_train_from_release_weights_then_sigterm_and_resume(release):
    # One iteration (most of a minute on 2 cores) before the SIGTERM, one after the resume.
    teacher_solver(release, 'driver', 2)
    run_dir = release / 'runs' / 'driver'
    proc = subprocess.Popen(CLI + ['train', 'driver.prototxt', '--weights', 'teacher.caffemodel'],
                            cwd=release, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + TIMEOUT

    def wait_for(condition):
        while not condition():
            assert proc.poll() is None, 'train ended before its first iteration did: rc %d\n%s' % (
                proc.returncode, proc.stderr.read()[-3000:])
            assert time.time() < deadline
            time.sleep(0.2)
    # run.json is written once the weights are in, right before iteration 0;
    # 5 s of the process's CPU time later it is inside that iteration, and
    # the SIGTERM is acted on when the iteration ends: a snapshot at 1
    wait_for(lambda: (run_dir / 'run.json').exists())
    started = cpu_seconds(proc.pid)
    wait_for(lambda: cpu_seconds(proc.pid) >= started + 5)
    assert not any(r['phase'] == 'train' for r in logs.read_records(str(run_dir / 'log.jsonl'))), \
        'iteration 0 ended before the SIGTERM'
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 143, err[-3000:]
    assert 'stopped by SIGTERM at iteration 1,' in err, err[-3000:]     # after a step: momentum history
    state = err.split('snapshot ')[1].split(';')[0]
    assert os.path.getsize(release / state) > PROTO_READ_LIMIT_BEFORE
    cli(['train', 'driver.prototxt', '--resume', state], release)
    final = release / 'snap_driver' / 'wsddn_iter_2.caffemodel'
    assert_loads_exactly(release, nets(release, 'wsddn/wsddn_deploy'), str(final))
    shutil.copy(final, release / 'teacher_trained.caffemodel')
    shutil.rmtree(release / 'snap_driver')
    shutil.rmtree(release / 'snap_binary')


def test_surgery_teacher_to_stage1_to_stage2_to_student_deploy(release):
    teacher = 'teacher_trained.caffemodel'
    steps = [('kd/train_stage1', 'stage1.caffemodel', ['teacher:' + teacher, 'same:' + teacher]),
             ('kd/train_stage2', 'stage2.caffemodel', ['teacher:' + teacher, 'same:stage1.caffemodel']),
             ('kd/student_deploy', 'student.caffemodel', ['same:stage2.caffemodel'])]
    written = {}
    for net, out, sources in steps:
        args = ['surgery', '--net', nets(release, net), '-o', out]
        for source in sources:
            args += ['--from', source]
        cli(args, release)
        in_caffe, written[out] = assert_loads_exactly(release, nets(release, net), str(release / out))
        assert len(in_caffe) and set(in_caffe) <= set(written[out])
    # The teacher inside stage 2 is the trained teacher, the student's fc8 its stage-1 one.
    trained, stage2 = digests(str(release / teacher)), written['stage2.caffemodel']
    assert stage2['conv_wsd_5_3'] == trained['conv5_3'] and stage2['fc_wsd_8_c'] == trained['fc8_c']
    assert stage2['fc7'] == trained['fc7']      # the student started from the teacher's VGG16 here
    os.remove(release / 'stage1.caffemodel')


def test_eval_detect_and_classify_with_release_weights(release):
    image = str(release / 'images' / 'img000.png')
    student, teacher = 'student.caffemodel', 'teacher_trained.caffemodel'
    res = cli(['eval', 'cls', '--net', nets(release, 'kd/student_baseline'), '--weights', student,
               '--blob', 'fc8_mscoco', '--sigmoid', '--json', 'cls.json'], release)
    assert 'mAP' in json.loads((release / 'cls.json').read_text()), res.stdout
    cli(['detect', '--net', nets(release, 'wsddn/wsddn_deploy'), '--weights', teacher, image,
         '-o', 'det', '-q'], release)
    detections = json.loads((release / 'det' / 'json' / 'img000.json').read_text())
    assert len(detections['scores']) == 80
    probabilities = {}
    for engine in ('caffe', 'opencv'):
        cli(['classify', '--net', nets(release, 'kd/student_deploy'), '--weights', student, image,
             '--engine', engine, '-o', engine + '.json'], release)
        result, = json.loads((release / (engine + '.json')).read_text())['results']
        probabilities[engine] = result['probabilities']
    assert len(probabilities['caffe']) == 80
    assert all(abs(probabilities['caffe'][c] - probabilities['opencv'][c]) < 1e-4
               for c in probabilities['caffe'])


def test_adam_on_a_release_distillation_net_is_refused_naming_what_works(release):
    """Stage 1 holds two VGG16s (268 M weights): Adam's state (two history
    blobs each) is over protobuf's 2 GB and Caffe would abort writing the
    first snapshot; HDF5 cannot hold the net either (its teacher and student
    repeat layer names): refused before training, naming what works."""
    from caffe_mlic.caffe.prototxt import write_solver
    write_solver(release / 'adam.prototxt', nets(release, 'kd/train_stage1'), type='Adam', base_lr=1e-5,
                 momentum=0.9, momentum2=0.999, max_iter=1, snapshot_prefix='snap_adam/stage1')
    res = run(CLI + ['train', 'adam.prototxt'], release)
    assert res.returncode == 1, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "caffe-mlic train: adam.prototxt: snapshot_format: this run's solverstate would be 2.00 GB "
        "(537042176 values: Adam keeps 2 history blob(s) per weight), over protobuf's 2 GB for one "
        "message: Caffe would abort writing the first snapshot; and HDF5 cannot hold this net either ("), last
    assert 'given more than once in one phase, e.g. relu1_1' in last, last
    assert last.endswith('use a solver type with one history blob per weight (SGD, Nesterov, AdaGrad, '
                         'RMSProp), or give the layers distinct names and set snapshot_format: HDF5'), last
    assert not (release / 'runs').exists() or not (release / 'runs' / 'adam').exists()
    assert not (release / 'snap_adam').exists() or not os.listdir(release / 'snap_adam')
