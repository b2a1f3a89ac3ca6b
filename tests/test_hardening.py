"""Bad input and faults (issue 11): each gives a clear error naming the file,
line, field or layer; none crashes Caffe, hangs, leaks, or passes as a result."""
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.netspec import netgen
from caffe_mlic.caffe import prototxt
from caffe_mlic.data.datalist import write_datalist
from caffe_mlic.layers.data import DataLoadError
from caffe_mlic.caffe.params import LayerError
from tests import netutil
from tests.tinydata import tiny_mlic_config, write_tiny_dataset

CLI = [sys.executable, '-m', 'caffe_mlic.cli']
C, B = 3, 8


def run_cli(args, cwd, timeout=180, **env):
    return subprocess.run(CLI + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, GLOG_minloglevel='2', **env))


def shm_segments():
    return set(glob.glob('/dev/shm/psm_*'))


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny dataset, its generated nets (no workers) and a caffemodel of the
    baseline student."""
    root = tmp_path_factory.mktemp('hardening')
    listing = write_tiny_dataset(str(root / 'images'), num_classes=C, bbox_num=B, size=96)
    netgen.generate(str(root / 'nets'), tiny_mlic_config(listing))
    net = prototxt.caffe_net(str(root / 'nets' / 'kd' / 'student_baseline.prototxt'), 'TEST', seed=0)
    (root / 'baseline.caffemodel').write_bytes(prototxt.net_weights_bytes(net))
    return root


# ---------------------------------------------------------------- crashes and aborts


@pytest.mark.parametrize('workers', [0, 2])
def test_a_latin1_image_name_is_read(tmp_path, net_from_text, workers):
    """A file name that is not UTF-8 (byte 0xE9) reaches OpenCV as bytes."""
    img = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    name = os.fsdecode(os.path.join(os.fsencode(str(tmp_path)), b'caf\xe9.png'))
    ok, png = cv2.imencode('.png', img)
    with open(name, 'wb') as f:
        f.write(png.tobytes())
    write_datalist(tmp_path / 'list.txt', [(name, [1, 0, 1], [[0, 0, 5, 5]], [1.0])])
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=1, new_width=16, new_height=12,
                  att_num=3, bbox_num=1, workers=workers)
    net = net_from_text(netutil.python_layer_text('data', 'MultiLabelProposalData', params, [],
                                                  ['data', 'label_roi']), 'TEST')
    net.forward()
    assert np.array_equal(net.blobs['data'].data[0], img.transpose(2, 0, 1).astype(np.float32))
    assert cli.main(['datalist', 'check', str(tmp_path / 'list.txt'), '--att-num', '3',
                     '--bbox-num', '1', '--size', '16x12']) == 0


@pytest.mark.parametrize('solver', ['stage1', 'stage2', 'baseline'])
def test_every_student_net_stops_on_divergence_under_the_binary(tmp_path, solver):
    """Stage 2 and the baseline have stock losses only: their DivergenceGuard
    stops them (stage 1's ROIPooling or guard): exit 1, the message, no snapshot."""
    listing = write_tiny_dataset(str(tmp_path / 'images'), num_classes=C, bbox_num=B, size=96)
    netgen.generate(str(tmp_path / 'nets'), tiny_mlic_config(listing), max_iter=10, base_lr=1e8,
                    solver_type='SGD')
    res = run_cli(['caffe', 'train', '-solver', 'nets/kd/solver_%s.prototxt' % solver], tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    assert 'training diverged' in res.stderr
    assert 'double free' not in res.stderr and 'Aborted' not in res.stderr
    assert not glob.glob(str(tmp_path / 'snapshots' / '**' / '*.caffemodel'), recursive=True)


def test_the_driver_stops_a_diverging_baseline_without_corrupting_memory(tmp_path):
    listing = write_tiny_dataset(str(tmp_path / 'images'), num_classes=C, bbox_num=B, size=96)
    netgen.generate(str(tmp_path / 'nets'), tiny_mlic_config(listing), max_iter=10, base_lr=1e8,
                    solver_type='SGD')
    res = run_cli(['train', 'nets/kd/solver_baseline.prototxt', '--run-dir', 'run'], tmp_path)
    assert res.returncode == 1, res.stderr[-3000:]
    assert 'DivergenceGuard' in res.stderr and 'training diverged' in res.stderr
    assert 'double free' not in res.stderr


FLT_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize('bad', [None, np.nan, np.inf, -np.inf, -FLT_MAX])
def test_divergence_guard_hand_cases(layer_net, bad):
    net = layer_net('DivergenceGuard', {}, [(2, 3), (1, 2, 2, 2)], n_tops=0)
    values = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    pooled = np.full((1, 2, 2, 2), 1e30, np.float32)      # large but finite: fine
    if bad is not None:
        pooled[0, 1, 1, 0] = bad
    netutil.set_inputs(net, values, pooled)
    if bad is None:
        net.forward()
        net.backward()
        assert not net.blobs['b0'].diff.any() and not net.blobs['b1'].diff.any()
    else:
        with pytest.raises(LayerError, match=r'DivergenceGuard: bottom 1 \(1x2x2x2\) holds 1 NaN, '
                                             r'inf or -FLT_MAX value\(s\): training diverged'):
            net.forward()


def test_divergence_guard_gradient_is_zero(layer_net):
    """It has no top: it adds nothing to any gradient (numerically: 0)."""
    net = layer_net('DivergenceGuard', {}, [(2, 3)], n_tops=0)
    netutil.set_inputs(net, np.ones((2, 3), np.float32))
    net.blobs['b0'].diff[...] = 7
    net.forward()
    net.backward()
    assert not net.blobs['b0'].diff.any()


@pytest.mark.parametrize('layer, params, shapes, fragment', [
    ('ROIPooling', {'pooled_h': 100000, 'pooled_w': 100000}, [(1, 2, 4, 4), (1, 6)], 'pooled_h / pooled_w'),
    ('Interp', {'height': 100000, 'width': 100000}, [(1, 1, 2, 2)], 'height / width'),
])
def test_blob_sizes_over_int_max_are_refused(layer_net, layer, params, shapes, fragment):
    with pytest.raises(LayerError, match='more than a Caffe blob holds.*lower %s' % fragment):
        layer_net(layer, params, shapes)


def test_data_layer_sizes_over_int_max_are_refused(tmp_path, net_from_text):
    write_datalist(tmp_path / 'list.txt', [(str(tmp_path / 'a.png'), [1, 0, 1], [[0, 0, 5, 5]], [1.0])])
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=10 ** 6, new_width=672,
                  new_height=672, att_num=3, bbox_num=1, workers=2)
    before = shm_segments()
    with pytest.raises(LayerError, match='data top .* more than a Caffe blob holds.*batch_size'):
        net_from_text(netutil.python_layer_text('data', 'MultiLabelProposalData', params, [],
                                                ['data', 'label_roi']), 'TRAIN')
    assert shm_segments() <= before


# ---------------------------------------------------------------- weights: Caffe CHECKs and silent results


def _bad_weights(tiny, kind):
    from caffe.proto import caffe_pb2
    path = tiny / ('%s.caffemodel' % kind)
    if kind == 'truncated':
        path.write_bytes((tiny / 'baseline.caffemodel').read_bytes()[:3000])
    elif kind == 'empty':
        path.write_bytes(b'')
    else:  # foreign: another net's layer
        model = caffe_pb2.NetParameter()
        blob = model.layer.add(name='foo').blobs.add()
        blob.shape.dim.append(2)
        blob.data.extend([1, 2])
        path.write_bytes(model.SerializeToString())
    return path


@pytest.mark.parametrize('kind, fragment', [
    ('truncated', 'truncated or not a NetParameter'),
    ('empty', "fills none of the net's 16 layers with weights"),
    ('foreign', "fills none of the net's 16 layers with weights (conv1_1"),
])
def test_eval_refuses_weights_that_do_not_fill_the_net(tiny, kind, fragment):
    path = _bad_weights(tiny, kind)
    args = ['eval', 'cls', '--net', tiny / 'nets/kd/student_baseline.prototxt', '--blob', 'fc8_mscoco',
            '--sigmoid', '--weights']
    res = run_cli(args + [path], tiny)
    assert res.returncode == 1 and fragment in res.stderr and str(path.name) in res.stderr, res.stderr
    assert 'mAP' not in res.stdout
    assert run_cli(args + [tiny / 'baseline.caffemodel'], tiny).returncode == 0


def test_weights_of_part_of_the_net_are_refused_for_evaluation(tiny, caffe):
    """A caffemodel missing some of the net's layers would leave their
    fillers' values: a plausible, wrong result."""
    from caffe_mlic.caffe.weights import check_weights
    from caffe.proto import caffe_pb2
    model = caffe_pb2.NetParameter()
    model.ParseFromString((tiny / 'baseline.caffemodel').read_bytes())
    fc8 = [i for i, l in enumerate(model.layer) if l.name == 'fc8_mscoco']
    del model.layer[fc8[0]]
    kept = [l for l in model.layer if l.blobs]
    (tiny / 'part.caffemodel').write_bytes(model.SerializeToString())
    with pytest.raises(Exception, match="has no weights for 1 of the net's 16 layers"):
        prototxt.caffe_net(str(tiny / 'nets/kd/student_baseline.prototxt'), 'TEST',
                           weights=str(tiny / 'part.caffemodel'))
    net = prototxt.caffe_net(str(tiny / 'nets/kd/student_baseline.prototxt'), 'TEST')
    check_weights(str(tiny / 'part.caffemodel'), net)   # for fine-tuning, part is fine
    assert len(kept) == 15


@pytest.mark.parametrize('kind', ['empty', 'foreign'])
def test_surgery_refuses_a_source_that_fills_no_layer(tiny, kind):
    path = _bad_weights(tiny, kind)
    res = run_cli(['surgery', '--net', tiny / 'nets/kd/train_stage2.prototxt', '--from',
                   'teacher:%s' % path, '-o', tiny / 'out.caffemodel'], tiny)
    assert res.returncode == 1 and 'fills no layer of the net' in res.stderr, res.stderr
    assert not (tiny / 'out.caffemodel').exists()


def test_a_net_caffe_would_abort_on_is_refused_naming_the_layer(tiny, tmp_path):
    text = (tiny / 'nets/kd/student_baseline.prototxt').read_text()
    text = text.replace('num_output: 4', 'num_output: 0', 1)        # conv1_1
    (tmp_path / 'net.prototxt').write_text(text)
    temp = tmp_path / 'tmp'
    temp.mkdir()
    res = run_cli(['surgery', '--net', tmp_path / 'net.prototxt', '--from',
                   'same:%s' % (tiny / 'baseline.caffemodel'), '-o', tmp_path / 'out.caffemodel'],
                  tmp_path, TMPDIR=str(temp))
    assert res.returncode == 1, res.stderr
    assert "net.prototxt: layer 'conv1_1': Convolution: num_output must be >= 1, got 0" in res.stderr
    assert not os.listdir(temp)               # no temporary prototxt left behind


@pytest.mark.parametrize('edit, fragment', [
    (('module: "caffe_mlic.layers"', 'module: "caffe_mlic.nolayers"'),
     "layer 'data': MultiLabelProposalData: python_param module 'caffe_mlic.nolayers' cannot be imported"),
    (('layer: "Interp"', 'layer: "Interpx"'),
     "layer 'data_size224': Interpx: python_param module 'caffe_mlic.layers' has no layer 'Interpx'"),
    (('"att_num": 3', '"att_num": 3, "atnum": 1'),
     "layer 'data': MultiLabelProposalData: unknown parameter 'atnum'"),
])
def test_bad_python_layers_are_named_not_systemerror(tiny, tmp_path, edit, fragment):
    text = (tiny / 'nets/kd/student_baseline.prototxt').read_text()
    assert edit[0] in text
    (tmp_path / 'net.prototxt').write_text(text.replace(edit[0], edit[1]))
    netutil.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', max_iter=2)
    res = run_cli(['eval', 'cls', '--net', 'net.prototxt', '--weights', tiny / 'baseline.caffemodel',
                   '--blob', 'fc8_mscoco', '--sigmoid'], tmp_path)
    assert res.returncode == 1 and fragment in res.stderr and 'SystemError' not in res.stderr, res.stderr
    res = run_cli(['train', 'solver.prototxt'], tmp_path)
    assert res.returncode == 1 and fragment in res.stderr and 'SystemError' not in res.stderr, res.stderr


def test_a_solver_given_as_the_net_is_named(tiny):
    res = run_cli(['eval', 'cls', '--net', 'nets/kd/solver_baseline.prototxt', '--weights',
                   'baseline.caffemodel', '--blob', 'fc8_mscoco'], tiny)
    assert res.returncode == 1
    assert 'solver_baseline.prototxt: a solver prototxt, not a net' in res.stderr


# ---------------------------------------------------------------- data and annotations


def test_datalist_check_decodes_every_image(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    jpg = cv2.imencode('.jpg', img)[1].tobytes()
    png = cv2.imencode('.png', img)[1].tobytes()
    files = {'good.jpg': jpg, 'empty.jpg': b'', 'text.jpg': b'not an image\n',
             'cut.jpg': jpg[:len(jpg) * 3 // 4], 'cut.png': png[:len(png) // 2]}
    rows = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        rows.append((str(tmp_path / name), [1, 0], [[0, 0, 9, 9]], [1.0]))
    write_datalist(tmp_path / 'list.txt', rows)
    args = ['datalist', 'check', str(tmp_path / 'list.txt'), '--att-num', '2', '--bbox-num', '1',
            '--size', '40']
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert 'list.txt:2: image: cannot decode %s: the file is empty (0 bytes)' % (tmp_path / 'empty.jpg') in out
    assert 'list.txt:3: image: cannot decode %s: not an image' % (tmp_path / 'text.jpg') in out
    assert 'list.txt:4: image: cannot decode %s: a truncated JPEG' % (tmp_path / 'cut.jpg') in out
    assert 'list.txt:5: image: cannot decode %s' % (tmp_path / 'cut.png') in out
    assert 'list.txt:1:' not in out
    assert cli.main(args + ['--no-decode']) == 0


def test_a_truncated_jpeg_fails_in_training_rather_than_decode_half(tmp_path, net_from_text):
    img = np.full((40, 40, 3), 200, np.uint8)
    jpg = cv2.imencode('.jpg', img)[1].tobytes()
    (tmp_path / 'cut.jpg').write_bytes(jpg[:len(jpg) * 3 // 4])
    write_datalist(tmp_path / 'list.txt', [(str(tmp_path / 'cut.jpg'), [1], [[0, 0, 9, 9]], [1.0])])
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=1, new_width=40, new_height=40,
                  att_num=1, bbox_num=1, workers=0)
    net = net_from_text(netutil.python_layer_text('data', 'MultiLabelProposalData', params, [],
                                                  ['data', 'label_roi']), 'TEST')
    with pytest.raises(DataLoadError, match='cut.jpg .*truncated JPEG'):
        net.forward()


def _coco(tmp_path, image_id=1, bbox=(1, 1, 10, 10), category_id=1):
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((30, 40, 3), np.uint8))
    ann = dict(images=[dict(id=1, file_name='a.png', width=40, height=30)],
               categories=[dict(id=1, name='x')],
               annotations=[dict(id=7, image_id=image_id, category_id=category_id, bbox=list(bbox))])
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    return ['datalist', 'build', '--coco', str(tmp_path / 'ann.json'), '--images', str(tmp_path),
            '--whole-image', '-o', str(tmp_path / 'out' / 'list.txt'), '--size', '32', '--bbox-num', '1']


@pytest.mark.parametrize('change, fragment', [
    (dict(bbox=(float('nan'), 1, 10, 10)), '"bbox" must be 4 finite numbers [x, y, w, h], got [NaN, 1, 10, 10]'),
    (dict(bbox=(1, 1, float('inf'), 10)), '"bbox" must be 4 finite numbers'),
    (dict(image_id=True), 'annotation id 7 (image id true): "image_id" must be an integer, got true'),
    (dict(category_id=True), '"category_id" must be an integer, got true'),
])
def test_coco_nan_boxes_and_boolean_ids_are_refused(tmp_path, capsys, change, fragment):
    assert cli.main(_coco(tmp_path, **change)) == 1
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_coco_boolean_image_id_in_images_is_refused(tmp_path, capsys):
    args = _coco(tmp_path)
    ann = json.loads((tmp_path / 'ann.json').read_text())
    ann['images'][0]['id'] = True
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    assert cli.main(args) == 1
    assert 'images[0]: needs an integer "id"' in capsys.readouterr().err


def test_datalist_build_into_a_folder_writes_nothing(tmp_path, capsys):
    args = _coco(tmp_path)
    (tmp_path / 'out' / 'list.txt').mkdir(parents=True)
    assert cli.main(args) == 1
    assert 'Is a directory' in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / 'out')) == ['list.txt']
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]


# ---------------------------------------------------------------- netgen: impossible values, all or nothing


@pytest.mark.parametrize('args, fragment', [
    (['--base-lrs', '1', '1', 'nan', '1'], 'argument --base-lrs: base_lr must be a positive number, got nan'),
    (['--base-lr', '-1'], 'base_lr must be a positive number'),
    (['--teacher-temperature', '-1'], 'teacher_temperature must be a positive number'),
    (['--student-temperature', '0'], 'student_temperature must be a positive number'),
    (['--input-scale', '0'], 'input_scale must be a positive number'),
    (['--workers', '-1'], 'workers must be an integer >= 0'),
    (['--max-iter', '0'], 'max_iter must be >= 1'),
    (['--iters', '1', '0', '1', '1'], 'argument --iters: max_iter must be >= 1'),
    (['--wsddn-batch', '0', '1'], 'wsddn_batch must be two positive integers'),
    (['--scales', '0'], 'scale_factors must be positive numbers'),
])
def test_netgen_refuses_impossible_values_and_writes_nothing(tmp_path, capsys, args, fragment):
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets')] + args) == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / 'nets').exists()


def test_netgen_failing_part_way_writes_nothing(tmp_path, capsys):
    (tmp_path / 'nets' / 'kd' / 'train_stage2.prototxt').mkdir(parents=True)
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets'), '--classes', '3']) == 1
    assert 'train_stage2.prototxt' in capsys.readouterr().err
    written = [os.path.join(d, f) for d, _, files in os.walk(tmp_path) for f in files]
    assert written == []


# ---------------------------------------------------------------- proposals


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / 'photos'
    folder.mkdir()
    for i in range(2):
        img = np.full((64, 80, 3), 90, np.uint8)
        cv2.rectangle(img, (10 + 5 * i, 12), (50, 40), (250, 250, 250), -1)
        img = np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)
        cv2.imwrite(str(folder / ('p%d.png' % i)), img)
    return folder


def test_proposals_refuse_to_mix_methods_and_recompute_on_request(photos, tmp_path, capsys):
    out = str(tmp_path / 'props')
    assert cli.main(['proposals', str(photos), '-o', out, '--max-boxes', '30', '-q']) == 0
    before = {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)}
    for change in (['--method', 'selective-search'], ['--max-boxes', '20'], ['--min-size', '10']):
        assert cli.main(['proposals', str(photos), '-o', out, '--max-boxes', '30', '-q'] + change) == 2
        err = capsys.readouterr().err
        assert 'holds proposals computed with' in err and '--recompute' in err
        assert {f: os.path.getmtime(os.path.join(out, f)) for f in os.listdir(out)} == before
    assert cli.main(['proposals', str(photos), '-o', out, '--max-boxes', '20', '--recompute']) == 0
    assert '2 written' in capsys.readouterr().out
    with np.load(os.path.join(out, 'p0.npz')) as npz:
        assert len(npz['boxes']) <= 20
    assert json.load(open(os.path.join(out, 'settings.json')))['max_boxes'] == 20


def test_proposals_name_tiny_images_and_report_images_with_no_box(tmp_path, capsys):
    folder = tmp_path / 'imgs'
    folder.mkdir()
    cv2.imwrite(str(folder / 'dot.png'), np.zeros((1, 1, 3), np.uint8))
    cv2.imwrite(str(folder / 'flat.png'), np.full((60, 60, 3), 128, np.uint8))
    assert cli.main(['proposals', str(folder), '-o', str(tmp_path / 'p')]) == 1
    captured = capsys.readouterr()
    assert '%s: the image is 1x1 px: smaller than the smallest box kept' % (folder / 'dot.png') in captured.err
    assert 'got no box' in captured.out and 'flat.png' in captured.out
    (tmp_path / 'afile').write_text('')
    assert cli.main(['proposals', str(folder), '-o', str(tmp_path / 'afile')]) == 2
    assert 'afile is a file, not a folder' in capsys.readouterr().err


# ---------------------------------------------------------------- workers: hang, shared memory, orphans


def _worker_net(tmp_path, net_from_text, n=8, **kw):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = str(tmp_path / ('w%d.png' % i))
        cv2.imwrite(path, rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
        rows.append((path, [1, 0, 1], [[0, 0, 5, 5]], [1.0]))
    write_datalist(tmp_path / 'list.txt', rows)
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=2, new_width=16, new_height=12,
                  att_num=3, bbox_num=1, workers=2)
    params.update(kw)
    return net_from_text(netutil.python_layer_text('data', 'MultiLabelProposalData', params, [],
                                                   ['data', 'label_roi']), 'TEST')


def test_a_stalled_worker_times_out_naming_it_and_its_images(tmp_path, net_from_text):
    net = _worker_net(tmp_path, net_from_text, timeout=2)
    net.forward()
    pids = net.layers[0].worker_pids
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)         # as a process blocked on a dead network mount
    try:
        started = time.monotonic()
        with pytest.raises(DataLoadError, match=r'no data worker answered for 2 s .*worker process '
                                                r'(%s) was reading .*w\d\.png' % '|'.join(map(str, pids))):
            for batch in range(4):           # past the (up to 3) batches loaded ahead
                net.forward()
        assert time.monotonic() - started < 30
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        net.layers[0].close()


def test_shared_memory_is_unlinked_when_the_net_is_built(tmp_path, net_from_text):
    """Nothing in /dev/shm even if the process is killed before its first batch."""
    before = shm_segments()
    net = _worker_net(tmp_path, net_from_text)
    layer = net.layers[0]
    assert layer.worker_pids and not [s for s in layer.workers.slots
                                      if os.path.exists('/dev/shm/' + s.name.lstrip('/'))]
    assert shm_segments() <= before
    layer.close()


@pytest.mark.parametrize('python', [None, '/bin/false'])
def test_killed_or_misconfigured_runs_leave_no_shared_memory(tmp_path, python):
    """SIGKILL right after the net is built (before any batch); and a wrong
    CAFFE_MLIC_PYTHON, which fails the workers' start with a clear error."""
    _worker_net(tmp_path, lambda text, phase: (tmp_path / 'net.prototxt').write_text(text))
    script = textwrap.dedent('''
        import os, signal, sys
        from caffe_mlic.caffe import prototxt
        from caffe_mlic.errors import MlicError
        try:
            net = prototxt.caffe_net(%r, 'TRAIN')
        except MlicError as e:
            print('ERROR', e, flush=True)
            sys.exit(3)
        print(' '.join(map(str, net.layers[0].worker_pids)), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        ''' % str(tmp_path / 'net.prototxt'))
    env = dict(os.environ, GLOG_minloglevel='2')
    if python:
        env['CAFFE_MLIC_PYTHON'] = python
    before = shm_segments()
    res = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env,
                         timeout=120)
    if python:
        assert res.returncode == 3 and 'data worker process' in res.stdout and python in res.stdout, \
            res.stdout + res.stderr
    else:
        assert res.returncode == -signal.SIGKILL, res.stderr
    assert shm_segments() <= before


def test_a_resource_tracker_that_cannot_run_leaves_no_shared_memory(monkeypatch):
    """SharedMemory registers a new segment with multiprocessing's resource
    tracker after creating it. A tracker that cannot run (it is started with
    CAFFE_MLIC_PYTHON, which may not be a Python) makes that raise; the
    segment must not stay in /dev/shm, and the error must say what failed."""
    from multiprocessing import resource_tracker
    from caffe_mlic.layers import prefetch
    registered = []

    def tracker_gone(name, rtype):
        registered.append(name)
        raise BrokenPipeError(32, 'Broken pipe')

    monkeypatch.setattr(resource_tracker, 'register', tracker_gone)
    with pytest.raises(DataLoadError, match='cannot start data worker processes'):
        prefetch.PrefetchWorkers(1, 2, 4096, None, None)
    assert registered and not [n for n in registered if os.path.exists('/dev/shm/' + n.lstrip('/'))]


def _stress_dataset(root, n=240):
    """n PNGs (image 10 huge, 2500 x 2000); the datalist in file order."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        size = (2000, 2500) if i == 10 else (100, 120)
        img = rng.integers(0, 256, size + (3,), dtype=np.uint8)
        path = str(root / ('s%03d.png' % i))
        cv2.imwrite(path, img)
        rows.append((path, [i % 2, 1 - i % 2], [[0, 0, 9, 9]], [1.0]))
    write_datalist(root / 'list.txt', rows)
    return [r[0] for r in rows]


def _processes_of(marker):
    """pids of live processes whose environment holds ``marker``."""
    found = []
    for env_path in glob.glob('/proc/[0-9]*/environ'):
        try:
            with open(env_path, 'rb') as f:
                if marker.encode() in f.read():
                    found.append(int(env_path.split('/')[2]))
        except OSError:
            pass
    return found


def test_stress_bad_images_mid_epoch_with_workers(tmp_path):
    """A few hundred images, one huge, one deleted while the run goes and a
    corrupt one after it: `caffe-mlic train` with workers stops at the first
    bad one, naming it, and leaves no shared memory and no process behind."""
    paths = _stress_dataset(tmp_path)
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=8, new_width=120, new_height=100,
                  att_num=2, bbox_num=1, workers=2, shuffle=False)
    net = netutil.python_layer_text('data', 'MultiLabelProposalData', params, [], ['data', 'label_roi'],
                                    phase='TRAIN')
    net += netutil.classifier_text(2, conv=False, std=0.01) + netutil.SIGMOID_LOSS_TEXT
    (tmp_path / 'net.prototxt').write_text(net)
    netutil.write_solver(tmp_path / 'solver.prototxt', 'net.prototxt', base_lr=0.01, max_iter=60,
                         snapshot_prefix='snap/s')
    (tmp_path / paths[232]).write_bytes(b'corrupt')       # batch 29: after the missing one
    marker = 'CAFFE_MLIC_STRESS_%d' % os.getpid()
    before = shm_segments()
    env = dict(os.environ, GLOG_minloglevel='2', CAFFE_MLIC_PROGRESS='never', **{marker: '1'})
    proc = subprocess.Popen(CLI + ['train', 'solver.prototxt', '--run-dir', 'run'], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # Freeze the run as soon as it starts, delete image 200 (batch 25,
        # far past the 3 batches loaded ahead), and let it go on.
        deadline = time.time() + 120
        while not (tmp_path / 'run' / 'run.json').exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.time() < deadline
            time.sleep(0.002)
        proc.send_signal(signal.SIGSTOP)
        os.remove(paths[200])
        proc.send_signal(signal.SIGCONT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-3000:]
    assert 'cannot read image %s (cannot open it: No such file' % paths[200] in err, err[-3000:]
    assert paths[232] not in err and 'Traceback' not in err
    assert shm_segments() <= before
    deadline = time.time() + 10
    while _processes_of(marker) and time.time() < deadline:
        time.sleep(0.1)
    assert _processes_of(marker) == []
    run = json.load(open(tmp_path / 'run' / 'run.json'))
    assert run['status'] == 'failed' and run['final_iteration'] == 25


# ---------------------------------------------------------------- resume under the binary


def _binary_resume_case(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        path = str(tmp_path / ('r%d.png' % i))
        cv2.imwrite(path, rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
        rows.append((path, [i % 2, (i // 2) % 2], [[0, 0, 9, 9]], [1.0]))
    write_datalist(tmp_path / 'list.txt', rows)
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=4, new_width=24, new_height=20,
                  att_num=2, bbox_num=1, workers=0, shuffle=True, mirror=True, seed=3,
                  scale_factors=[0.75, 1.0], mean_value=[128], scale=0.01)
    net = netutil.python_layer_text('data', 'MultiLabelProposalData', params, [], ['data', 'label_roi'],
                                    phase='TRAIN')
    net += netutil.classifier_text(2) + netutil.SIGMOID_LOSS_TEXT
    (tmp_path / 'net.prototxt').write_text(net)
    for name in ('a', 'b'):
        netutil.write_solver(tmp_path / ('solver_%s.prototxt' % name), 'net.prototxt', base_lr=0.5,
                             max_iter=20, snapshot=10, random_seed=1, snapshot_prefix='%s/s' % name,
                             lr_policy='fixed', momentum=0.9)


def test_the_binary_resumed_from_a_snapshot_continues_the_batch_plan(tmp_path):
    """`caffe-mlic caffe train -snapshot` ends on the weights of a run that was
    never interrupted; the bare binary, whose data plan restarts at batch 0,
    does not (so this test can tell)."""
    from caffe_mlic.caffe import env as caffe_env
    from caffe_mlic.caffe.weights import read_weights
    _binary_resume_case(tmp_path)
    assert run_cli(['caffe', 'train', '-solver', 'solver_a.prototxt'], tmp_path).returncode == 0
    res = run_cli(['caffe', 'train', '-solver', 'solver_b.prototxt', '-snapshot',
                   'a/s_iter_10.solverstate'], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    whole, resumed = read_weights(str(tmp_path / 'a/s_iter_20.caffemodel')), \
        read_weights(str(tmp_path / 'b/s_iter_20.caffemodel'))
    assert all(np.array_equal(whole[k][i], resumed[k][i]) for k in whole for i in range(len(whole[k])))
    env = caffe_env.binary_environment()
    env['GLOG_minloglevel'] = '2'
    subprocess.run([caffe_env.caffe_binary(), 'train', '-solver', 'solver_b.prototxt', '-snapshot',
                    'a/s_iter_10.solverstate'], cwd=tmp_path, env=env, capture_output=True, check=True)
    bare = read_weights(str(tmp_path / 'b/s_iter_20.caffemodel'))
    assert not np.array_equal(whole['fc'][0], bare['fc'][0])


def test_a_truncated_solver_state_is_named_before_caffe_reads_it(tmp_path):
    _binary_resume_case(tmp_path)
    assert run_cli(['caffe', 'train', '-solver', 'solver_a.prototxt'], tmp_path).returncode == 0
    state = tmp_path / 'a/s_iter_10.solverstate'
    state.write_bytes(state.read_bytes()[:len(state.read_bytes()) // 2])
    res = run_cli(['caffe', 'train', '-solver', 'solver_b.prototxt', '-snapshot', state], tmp_path)
    assert res.returncode == 1
    assert '%s: truncated or not a SolverState' % state in res.stderr


# ---------------------------------------------------------------- which layer


def _two_roi_poolings(second_rois_shape):
    text = netutil.input_layers_text([(1, 2, 8, 8), (2, 6), second_rois_shape], ['f', 'r1', 'r2'])
    for name, rois in (('pool_a', 'r1'), ('pool_b', 'r2')):
        text += '\n' + netutil.python_layer_text(name, 'ROIPooling', {'pooled_h': 2, 'pooled_w': 2},
                                                 ['f', rois], [name])
    return text


def test_errors_name_the_instance_when_a_net_has_two_layers_of_a_type(net_from_text):
    with pytest.raises(LayerError, match=r"ROIPooling: rois must be .* \(layer 'pool_b' of the net\)"):
        net_from_text(_two_roi_poolings((2, 5)))
    net = net_from_text(_two_roi_poolings((2, 6)))
    net.blobs['f'].data[...] = 1
    net.blobs['r1'].data[...] = [0, 0, 0, 3, 3, 1]
    net.blobs['r2'].data[...] = [0, 0, 0, 3, 3, 1]
    net.blobs['f'].data[0, 1, 2, 2] = np.nan
    with pytest.raises(LayerError, match=r"ROIPooling: the features contain NaN .*\(layer 'pool_a'\)"):
        net.forward()


@pytest.mark.parametrize('item, fragment', [
    ('nope=1', "expected FIELD=VALUE with a scalar SolverParameter field"),
    ('max_iter', "expected FIELD=VALUE"),
    ('test_iter=3', "expected FIELD=VALUE with a scalar"),          # repeated
    ('max_iter=abc', "max_iter: 'abc' is not a valid number"),
    ('base_lr=nan', "base_lr: 'nan' is not a valid number"),
    ('snapshot_format=TEXT', 'snapshot_format: \'TEXT\' is not a valid one of HDF5, BINARYPROTO'),
])
def test_train_solver_overrides_are_checked(tiny, capsys, item, fragment):
    solver = str(tiny / 'nets' / 'kd' / 'solver_baseline.prototxt')
    assert cli.main(['train', solver, '--set', item]) == 2
    err = capsys.readouterr().err
    assert 'argument --set' in err and fragment in err, err


def test_train_solver_overrides_apply(tiny):
    from caffe_mlic.engine.trainer import SolverFile
    sf = SolverFile(str(tiny / 'nets' / 'kd' / 'solver_baseline.prototxt'), str(tiny / 'r'),
                    ['max_iter=7', 'snapshot_prefix=elsewhere/s', 'base_lr=0.5', 'snapshot_after_train=false'])
    assert (sf.param.max_iter, sf.snapshot_prefix, sf.param.base_lr) == (7, 'elsewhere/s', 0.5)
    assert sf.param.snapshot_after_train is False


def test_gpu_flags_on_the_cpu_build_are_one_line_errors(tmp_path):
    """--gpu / -gpu never reach Caffe's CHECK abort: a CPU-only build, a bad
    id and several GPUs for training are refused first."""
    from caffe_mlic.caffe import env as caffe_env
    if caffe_env.build_kind() != caffe_env.CPU:
        pytest.skip('the active Caffe is not the CPU build')
    cli = os.path.join(os.path.dirname(sys.executable), 'caffe-mlic')
    solver = tmp_path / 'solver.prototxt'
    net = tmp_path / 'net.prototxt'
    net.write_text('name: "n" layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1 } } }\n')
    solver.write_text('net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 1\n' % net)
    for argv, code, message in (
            (['train', str(solver), '--gpu', '0'], 1, 'is a CPU-only build, it cannot use a GPU'),
            (['train', str(solver), '--gpu', 'x'], 2, "--gpu: expected GPU ids (0 or 0,1) or 'all', got 'x'"),
            (['train', str(solver), '--gpu', '0,1'], 2, '--gpu 0,1: this Caffe has no multi-GPU training'),
            (['caffe', 'train', '-solver', str(solver), '-gpu', '0'], 1, 'is a CPU-only build')):
        res = subprocess.run([cli] + argv, capture_output=True, text=True, timeout=120)
        assert res.returncode == code and message in res.stderr, (argv, res.stderr)
        assert 'Check failure' not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
