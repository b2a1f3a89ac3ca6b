"""Errors name the layer instance when a net has two of a type; solver
overrides are checked; GPU flags on the CPU build are one-line errors."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.caffe.params import LayerError
from tests import netutil
from tests.faults import run_cli, tiny  # noqa: F401 (tiny: a fixture)


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
    ('max_iter=abc', "max_iter: 'abc' is not a valid whole number"),
    ('base_lr=nan', "base_lr: 'nan' is not a valid number"),
    ('snapshot_format=TEXT', 'snapshot_format: \'TEXT\' is not a valid one of HDF5, BINARYPROTO'),
])
def test_train_solver_overrides_are_checked(tiny, capsys, item, fragment):
    solver = str(tiny / 'nets' / 'kd' / 'solver_baseline.prototxt')
    assert cli.main(['train', solver, '--set', item]) == 2
    err = capsys.readouterr().err
    assert 'argument --set' in err and fragment in err, err


def test_train_solver_overrides_apply(tiny):
    from caffe_mlic.engine.solver_file import SolverFile
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
            # (int() read 1_0 as 10 and Arabic-Indic digits: pass 40b M1)
            (['train', str(solver), '--gpu', '1_0'], 2, "--gpu: expected GPU ids (0 or 0,1) or 'all', got '1_0'"),
            (['train', str(solver), '--gpu', '\u0661'], 2, "--gpu: expected GPU ids (0 or 0,1) or 'all', got"),
            (['train', str(solver), '--gpu', '0,1'], 2, '--gpu 0,1: one process trains on one GPU'),
            (['caffe', 'train', '-solver', str(solver), '-gpu', '0'], 1, 'is a CPU-only build')):
        res = subprocess.run([cli] + argv, capture_output=True, text=True, timeout=120)
        assert res.returncode == code and message in res.stderr, (argv, res.stderr)
        assert 'Check failure' not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_plot_log_refuses_to_draw_over_its_log(tmp_path, capsys):
    """`plot-log L -o L` replaced the log with a PNG."""
    log = tmp_path / 'train.log'
    log.write_text('I0101 00:00:00.000000 1 solver.cpp:218] Iteration 0 (0 iter/s, 0s/1 iters), loss = 0.7\n')
    before = log.read_bytes()
    assert cli.main(['plot-log', str(log), '-o', str(log)]) == 2
    err = capsys.readouterr().err
    assert 'argument -o/--out: %s is an input of this command' % log in err, err
    assert log.read_bytes() == before


@pytest.mark.parametrize('name, title, drawn', [
    (b'train\xff.log', None, 'train\\xff.log'),             # not UTF-8: a surrogate escape
    ('train_\u65e5\u672c.log'.encode(), None, 'train_\\u65e5\\u672c.log'),  # not in DejaVu Sans
    (b'a.log', 'cost $x$ \u8a9e\t!', 'cost \\$x\\$ \\u8a9e\\t!'),  # '$' is not mathtext
])
def test_plot_log_draws_a_title_the_font_can_show_without_warnings(tmp_path, monkeypatch, name, title,
                                                                   drawn):
    """matplotlib warned "Glyph 56575 (\\udcff) missing from current font"
    (twice per glyph) for a log whose name is not UTF-8 or has characters
    DejaVu Sans lacks, and drew empty boxes; the title now shows them escaped."""
    import warnings
    from caffe_mlic import plotting
    log = os.path.join(os.fsencode(tmp_path), name)
    with open(log, 'w') as f:
        f.write('I0101 00:00:00.000000 1 solver.cpp:218] Iteration 0 (0 iter/s, 0s/1 iters), loss = 0.7\n'
                'I0101 00:00:00.000000 1 solver.cpp:218] Iteration 1 (0 iter/s, 0s/1 iters), loss = 0.5\n')
    titles, save = [], plotting.save
    monkeypatch.setattr(plotting, '_unwinder_replaced', lambda: False)    # (drawn here, not in a child: seen)
    monkeypatch.setattr(plotting, 'save', lambda fig, path, *fmt: (titles.append(fig.axes[0].get_title()),
                                                                   save(fig, path, *fmt)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        argv = ['plot-log', os.fsdecode(log), '-o', str(tmp_path / 'c.png')]
        assert cli.main(argv + (['--title', title] if title else [])) == 0
    assert [str(w.message) for w in caught] == [] and titles == [drawn]
    assert (tmp_path / 'c.png').read_bytes()[:4] == b'\x89PNG'


@pytest.mark.parametrize('argv, message', [
    (['synth', 'OUT', '--images', '10000000'], 'argument --images: n_images must be in 1..100000'),
    (['synth', 'OUT', '--seed', '-1'], 'argument --seed: seed must be in 0..2^63-1, got -1'),
    (['synth', 'OUT', '--classes', '1'], 'argument --classes: n_classes must be in 2..8'),
    (['synth', 'OUT', '--clutter', '100000000'], 'argument --clutter: clutter must be in 0..100'),
    (['synth', 'OUT', '--image-size', '100000x100000'], 'argument --image-size: image_size must be between'),
    (['synth', 'OUT', '--split', 'nan,0.5,0.5'], 'argument --split: split needs three non-negative'),
    (['synth', 'OUT', '--task', 'seg', '--seed', '-1'], 'argument --seed: seed must be in 0..2^63-1'),
    (['synth', 'OUT', '--task', 'seg', '--images', '100000'], 'argument --images: the number of tiles must be in'),
    (['speed', '--teacher', 'a', 'b', '--student', 'c', 'd', 'x.png', '--repeats', '0'],
     "argument --repeats: must be an integer from 1 to 100, got '0'"),
    (['train', 'solver.prototxt', '--max-iter', '0'], "argument --max-iter: must be an integer from 1 to 2147483647"),
])
def test_impossible_numbers_are_refused_before_any_work(tmp_path, argv, message, capsys):
    """Values that are impossible or would only exhaust the disk or memory
    (a negative seed was a numpy traceback, 100000x100000 images an OpenCV
    allocation error, NaN fractions a silent overflow)."""
    assert cli.main([a.replace('OUT', str(tmp_path / 'out')) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'out').exists()


def test_speed_refuses_to_write_its_json_over_an_input(tmp_path, capsys):
    for name in 'nw':
        (tmp_path / name).write_text('x')
    img = tmp_path / 'i.png'
    img.write_bytes(b'x')
    argv = ['speed', '--teacher', str(tmp_path / 'n'), str(tmp_path / 'w'), '--student', str(tmp_path / 'n'),
            str(tmp_path / 'w'), str(img)]
    assert cli.main(argv + ['--json', str(tmp_path / 'w')]) == 2
    assert 'is an input of this command' in capsys.readouterr().err
    assert (tmp_path / 'w').read_text() == 'x'


def test_datalist_build_never_writes_over_what_it_reads(tmp_path, capsys):
    """-o naming the image set, an image, an annotation or a proposals file
    replaced it (exit 0); each is refused, the file unchanged."""
    from caffe_mlic.data.synth import make_synthetic_voc
    data = tmp_path / 'voc'
    make_synthetic_voc(str(data), 4, 2, show_progress=False)
    ids = (data / 'ImageSets' / 'Main' / 'train.txt').read_text().split()
    for target in (data / 'ImageSets' / 'Main' / 'train.txt', data / 'JPEGImages' / (ids[0] + '.jpg'),
                   data / 'Annotations' / (ids[0] + '.xml')):
        before = target.read_bytes()
        assert cli.main(['datalist', 'build', '--voc', str(data), '--set', 'train', '--whole-image',
                         '-o', str(target)]) == 2
        assert 'is an input of this command' in capsys.readouterr().err
        assert target.read_bytes() == before


def test_plot_log_writes_the_format_its_extension_names(tmp_path, capsys):
    log = tmp_path / 'train.log'
    log.write_text('I0101 00:00:00.000000 1 solver.cpp:218] Iteration 0 (0 iter/s, 0s/1 iters), loss = 0.7\n'
                   'I0101 00:00:00.000000 1 solver.cpp:218] Iteration 1 (0 iter/s, 0s/1 iters), loss = 0.5\n')
    assert cli.main(['plot-log', str(log), '-o', str(tmp_path / 'c.pdf')]) == 0
    assert (tmp_path / 'c.pdf').read_bytes()[:5] == b'%PDF-'      # PNG bytes in a .pdf before
    assert cli.main(['plot-log', str(log), '-o', str(tmp_path / 'c.jpg')]) == 2
    assert 'the image format comes from the extension' in capsys.readouterr().err


def test_plot_log_draws_losses_of_an_extreme_but_finite_range(tmp_path, capsys):
    """+-1e308 overflowed matplotlib's tick locator (an IndexError traceback):
    such values are left out like non-finite ones, and the rest is drawn."""
    log = tmp_path / 'train.log'
    log.write_text(''.join('I0101 00:00:00.000000 1 solver.cpp:218] Iteration %d (0 iter/s, 0s/1 iters), '
                           'loss = %s\n' % (i, v) for i, v in enumerate(['1e308', '-1e308', '0.5', '0.4'])))
    assert cli.main(['plot-log', str(log), '-o', str(tmp_path / 'c.png')]) == 0, capsys.readouterr().err
    assert (tmp_path / 'c.png').read_bytes()[:4] == b'\x89PNG'
    # and said (they were left out in silence: pass 39b m2)
    assert capsys.readouterr().out.endswith('4 train and 0 test records; 2 NaN, infinite or beyond +-1e+300 values '
                                            'not drawn (a diverged run?)\n')


@pytest.mark.parametrize('line, message', [
    # the number pattern took any run of digits and dots: a ValueError traceback (pass 39b S2)
    ('Iteration 3 (0 iter/s, 0s/1 iters), loss = 1.2.3', "loss is not a number, got '1.2.3'"),
    ('Iteration 3 (0 iter/s, 0s/1 iters), loss = .', "loss is not a number, got '.'"),
    ('Iteration 3, lr = 1_0', "lr is not a number, got '1_0'"),
    ('    Train net output #0: acc = 0x10', "acc is not a number, got '0x10'"),
    # an iteration of 5000 digits passed int()'s limit, one of 400 overflowed float() in the plot
    ('Iteration %s (0 iter/s, 0s/1 iters), loss = 0.5' % ('9' * 5000), 'the iteration must be an integer from 0 '
                                                                       'to 2147483647'),
    ('Iteration 1%s, lr = 0.1' % ('0' * 400), 'the iteration must be an integer from 0 to 2147483647'),
    ('Iteration 2147483648, Testing net (#0)', "got '2147483648'"),
    ('Iteration \u0663, lr = 0.1', "got '\u0663'"),
])
def test_plot_log_names_a_number_caffe_would_not_print(tmp_path, capsys, line, message):
    log = tmp_path / 'train.log'
    head = 'I0101 00:00:00.000000 1 solver.cpp:218] '
    log.write_text(head + 'Iteration 0 (0 iter/s, 0s/1 iters), loss = 0.7\n' + head + line + '\n')
    assert cli.main(['plot-log', str(log), '-o', str(tmp_path / 'c.png')]) == 1
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic plot-log: %s:2: ' % log) and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / 'c.png').exists()


def test_plot_log_says_when_values_of_a_diverged_run_are_not_drawn(tmp_path, capsys):
    """A log whose losses are all NaN gave an empty chart without a word
    (pass 36b M8)."""
    log = tmp_path / 'train.log'
    line = 'I0101 00:00:00.000000 1 solver.cpp:218] Iteration %d (0 iter/s, 0s/1 iters), loss = %s\n'
    log.write_text(line % (0, 'nan') + line % (1, 'nan'))
    assert cli.main(['plot-log', str(log), '-o', str(tmp_path / 'c.png')]) == 0
    assert capsys.readouterr().out.endswith('2 train and 0 test records; every value is NaN or infinite (a diverged '
                                            'run?): the chart has no curve\n')
    log.write_text(line % (0, '0.7') + line % (1, 'inf') + line % (2, '0.5'))
    assert cli.main(['plot-log', str(log), '-o', str(tmp_path / 'c.png')]) == 0
    assert capsys.readouterr().out.endswith('3 train and 0 test records; 1 NaN or infinite value not drawn (a '
                                            'diverged run?)\n')


def test_plot_log_names_a_log_with_a_newline_on_one_line(tmp_path, capsys):
    """A newline in the log's name made a two-line message."""
    log = tmp_path / 'a\nb.log'
    log.write_text('junk\n')
    assert cli.main(['plot-log', str(log), '-o', str(tmp_path / 'c.png')]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ('%s: no "Iteration N' % (tmp_path / 'a\\nb.log')) in err, err
    assert cli.main(['plot-log', str(tmp_path / 'x\ny.log'), '-o', str(tmp_path / 'c.png')]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and 'x\\ny.log: cannot read the log' in err, err


def test_plot_log_writes_through_a_device_or_fifo(tmp_path, capsys):
    """README says a device or FIFO is written through, but `plot-log L -o
    /dev/null` was refused on its extension. A device or FIFO gets --format,
    PNG by default; a regular file still needs an extension or --format."""
    import threading
    log = tmp_path / 'train.log'
    log.write_text('I0101 00:00:00.000000 1 solver.cpp:218] Iteration 0 (0 iter/s, 0s/1 iters), loss = 0.7\n'
                   'I0101 00:00:00.000000 1 solver.cpp:218] Iteration 1 (0 iter/s, 0s/1 iters), loss = 0.5\n')
    assert cli.main(['plot-log', str(log), '-o', os.devnull]) == 0
    capsys.readouterr()
    fifo = tmp_path / 'pipe'
    os.mkfifo(str(fifo))
    for fmt, magic in ((None, b'\x89PNG'), ('svg', b'<?xml')):
        got = []
        reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
        reader.start()
        assert cli.main(['plot-log', str(log), '-o', str(fifo)] + (['--format', fmt] if fmt else [])) == 0
        reader.join(60)
        assert got and got[0].startswith(magic), got[:1]
    assert cli.main(['plot-log', str(log), '-o', str(tmp_path / 'c'), '--format', 'pdf']) == 0
    assert (tmp_path / 'c').read_bytes()[:5] == b'%PDF-'
    assert cli.main(['plot-log', str(log), '-o', str(tmp_path / 'c.png'), '--format', 'svg']) == 2
    assert 'the extension says png, --format says svg' in capsys.readouterr().err
    assert not (tmp_path / 'c.png').exists()


def test_caffe_test_checks_the_test_net_it_builds(tmp_path):
    """`caffe-mlic caffe test` refused a net over a TRAIN-only layer (here an
    Input of 10^10 values: "layer 'big' (TRAIN): ... more than a Caffe blob
    holds"), but the binary's `test` builds the TEST net alone; `time` builds
    -phase's net (default TRAIN), so there it is still refused."""
    from caffe_mlic.caffe import prototxt
    from tests.faults import run_cli
    net = netutil.input_layers_text([(2, 3), (2, 3)], ['x', 'labels'])
    net += ('\nlayer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" '
            'inner_product_param { num_output: 3 } }\n') + netutil.SIGMOID_LOSS_TEXT
    net += ('layer { name: "big" type: "Input" top: "big" include { phase: TRAIN } '
            'input_param { shape { dim: 100000 dim: 100000 } } }\n')
    (tmp_path / 'net.prototxt').write_text(net)
    (tmp_path / 'w.caffemodel').write_bytes(prototxt.net_weights_bytes(
        prototxt.caffe_net(str(tmp_path / 'net.prototxt'), 'TEST', seed=0)))
    res = run_cli(['caffe', 'test', '-model', 'net.prototxt', '-weights', 'w.caffemodel', '-iterations', '1'],
                  tmp_path)
    assert res.returncode == 0 and 'caffe-mlic' not in res.stderr, res.stderr[-2000:]
    res = run_cli(['caffe', 'time', '-model', 'net.prototxt', '-phase', 'TEST', '-iterations', '1'], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    res = run_cli(['caffe', 'time', '-model', 'net.prototxt', '-iterations', '1'], tmp_path)
    assert res.returncode == 1 and res.stderr.startswith(
        "caffe-mlic caffe: net.prototxt: layer 'big' (TRAIN): top 'big' would be 100000 x 100000"), res.stderr


def test_text_inputs_that_are_not_regular_files_are_refused_before_reading(tmp_path):
    """A class list, palette or log that is /dev/zero grew memory until the
    OOM killer came; a FIFO with no writer hung in open()."""
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    for source in ('/dev/zero', str(fifo)):
        for args, what in ((['netgen', '-o', 'nets', '--classes', 3, '--classes-file', source], 'class list'),
                           (['plot-log', source, '-o', 'p.png'], 'the log'),
                           (['eval', 'seg', '--pred', tmp_path, '--gt', tmp_path, '--palette', source],
                            'palette file')):
            res = run_cli(args, tmp_path, timeout=60)
            assert res.returncode == 1, (args, res.stderr)
            assert '%s: cannot read %s: not a regular file' % (source, what) in res.stderr, res.stderr


def test_prototxts_that_are_not_regular_files_are_refused_before_reading(tmp_path):
    """A net or solver prototxt that is a FIFO hung `caffe time`, `caffe
    test` and `surgery` (signals ignored while blocked in open()); /dev/zero
    was a MemoryError traceback."""
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    (tmp_path / 'w.caffemodel').write_bytes(b'')
    for source in ('/dev/zero', str(fifo)):
        for args, what in ((['caffe', 'time', '-model', source, '-iterations', '1'], 'net prototxt'),
                           (['caffe', 'train', '-solver', source], 'solver prototxt'),
                           (['surgery', '--net', source, '--from', 'same:w.caffemodel', '-o', 'o.caffemodel'],
                            'net prototxt')):
            res = run_cli(args, tmp_path, timeout=60)
            assert res.returncode in (1, 2), (args, res.stderr)
            assert 'Traceback' not in res.stderr and 'not a regular file (a device, FIFO or folder)' in res.stderr \
                and source in res.stderr, (args, res.stderr)


def test_plot_log_draws_a_title_too_long_for_a_line_as_its_start_and_end(tmp_path, capsys):
    """Agg cannot draw 2000 W's on one line (matplotlib's "raster
    overflow" RuntimeError, a traceback): a title or label is cut to its
    start and end, as no figure shows more."""
    from caffe_mlic.plotting import LONGEST_LABEL, plain_text
    log = tmp_path / 'train.log'
    log.write_text('I0101 00:00:00.000000 1 solver.cpp:218] Iteration 0 (0 iter/s, 0s/1 iters), loss = 0.7\n'
                   'I0101 00:00:00.000000 1 solver.cpp:218] Iteration 1 (0 iter/s, 0s/1 iters), loss = 0.5\n')
    title = 'A' + 'W' * 4000 + 'Z'
    assert cli.main(['plot-log', str(log), '-o', str(tmp_path / 'c.png'), '--title', title]) == 0, \
        capsys.readouterr().err
    assert (tmp_path / 'c.png').read_bytes()[:4] == b'\x89PNG'
    shown = plain_text(title)
    assert len(shown) == LONGEST_LABEL and shown.startswith('AW') and shown.endswith('WZ') and ' ... ' in shown
    assert plain_text('W' * LONGEST_LABEL) == 'W' * LONGEST_LABEL


def test_the_per_class_gain_chart_of_a_class_without_test_positives_warns_nothing(tmp_path):
    """A class with no AP in any seed printed numpy's "Mean of empty slice"
    in every report of the tiny demo (pass 37b M1)."""
    import warnings
    import numpy as np
    from caffe_mlic.plotting import kd_gain_per_class
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        kd_gain_per_class(['a', 'b'], [3, 1], np.array([[1.5, np.nan], [0.5, np.nan]]), str(tmp_path / 'g.png'))
    assert (tmp_path / 'g.png').read_bytes()[:4] == b'\x89PNG'


def _swallowed_ctrl_c():
    """A Ctrl-C that arrives inside a library's catch-all (pycaffe's bare
    excepts around its imports): Python's handler raises it there, and the
    library drops it."""
    import signal
    import time
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.5)
    except BaseException:       # noqa: B902 (the library's bare except)
        pass


@pytest.mark.parametrize('signum', ['SIGTERM', 'SIGHUP'])
def test_sigterm_and_sighup_unwind_a_command_as_ctrl_c_does(tmp_path, capsys, monkeypatch, signum):
    """netgen, detect and classify had no handler for them: the process
    ended at once, leaving its outputs' hidden .tmp files and half a
    result set (pass 40b S3). They unwind (nothing half-written is left)
    and say so, exit 128 + N; one a library swallows is raised again
    before the next output is committed."""
    import signal
    from caffe_mlic.netspec import netgen
    write = netgen.write_files

    def stopped_while_writing(texts):       # (write_files, the signal half way through the files)
        import time
        from caffe_mlic.fileio import atomic_files
        with atomic_files(list(texts)) as handles:
            for i, (f, text) in enumerate(zip(handles, texts.values())):
                f.write(text)
                if i == len(texts) // 2:
                    os.kill(os.getpid(), getattr(signal, signum))
                    time.sleep(0.5)
    monkeypatch.setattr(netgen, 'write_files', stopped_while_writing)
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets')]) == 128 + getattr(signal, signum)
    assert capsys.readouterr().err == 'caffe-mlic netgen: stopped by %s\n' % signum
    assert not (tmp_path / 'nets').exists() or not list((tmp_path / 'nets').rglob('*'))
    check = netgen.check_buildable
    monkeypatch.setattr(netgen, 'write_files', write)

    def swallowing(nets):
        try:
            os.kill(os.getpid(), getattr(signal, signum))
            import time
            time.sleep(0.5)
        except BaseException:       # noqa: B902 (a library's bare except)
            pass
        return check(nets)
    monkeypatch.setattr(netgen, 'check_buildable', swallowing)
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets')]) == 128 + getattr(signal, signum)
    assert not (tmp_path / 'nets').exists() or not list((tmp_path / 'nets').rglob('*'))
    assert signal.getsignal(getattr(signal, signum)) is signal.SIG_DFL     # (given back)


def test_a_ctrl_c_a_library_swallows_ends_the_command_before_its_outputs(tmp_path, capsys, monkeypatch):
    """netgen went on to write all its nets, exit 0, in half the tries of
    a Ctrl-C during its net check's import of cv2 (pass 39b m1): it ends
    interrupted (130) with nothing written."""
    from caffe_mlic.netspec import netgen
    check = netgen.check_buildable

    def swallowing(nets):
        _swallowed_ctrl_c()
        return check(nets)
    monkeypatch.setattr(netgen, 'check_buildable', swallowing)
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets')]) == 130
    assert capsys.readouterr().err == 'caffe-mlic netgen: interrupted\n'
    assert not (tmp_path / 'nets').exists()
    monkeypatch.setattr(netgen, 'check_buildable', check)
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets')]) == 0      # (nothing left remembered)


@pytest.mark.parametrize('argv, message', [
    # int() and float() read 1_0 as 10 and other scripts' digits: taken in silence where the datalist, CSV,
    # devkit and solver readers refuse them (pass 39b m5)
    (['synth', '--images', '1_0', 'x'], "argument --images: invalid int value: '1_0'"),
    (['synth', '--split', '1_0,0,0', 'x'], "argument --split: expected comma-separated numbers, got '1_0,0,0'"),
    (['detect', '--scales', '1_6'], "argument --scales: must be a multiple of 16 from 16 to 4096, got '1_6'"),
    (['detect', '--top', '\u0661'], "argument --top: must be an integer >= 1, got '\u0661'"),
    (['netgen', '--classes', '2_0'], "argument --classes: invalid int value: '2_0'"),
    (['netgen', '--base-lr', '1_0'], "argument --base-lr: invalid float value: '1_0'"),
    (['scasnet', 'netgen', '--dilations', '1', '0x2'], "argument --dilations: invalid int value: '0x2'"),
])
def test_numbers_on_the_command_line_are_plain_ascii(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err, err


def test_a_set_value_with_a_number_python_alone_reads_is_text_for_validate_to_name(tmp_path, capsys):
    assert cli.main(['netgen', '-o', str(tmp_path / 'n'), '--set', 'num_classes=1_0']) == 2
    err = capsys.readouterr().err
    assert 'num_classes' in err and "'1_0'" in err, err
    assert cli.main(['netgen', '-o', str(tmp_path / 'n'), '--set', 'mean=[0x10, 1, 2]']) == 2
    assert 'mean' in capsys.readouterr().err
    assert not (tmp_path / 'n').exists()


@pytest.mark.parametrize('kind', ['file', 'fifo', 'loop', 'dangling', 'under_a_file'])
@pytest.mark.parametrize('argv', [['netgen', '-o'], ['scasnet', 'netgen', '-o'], ['train', 'x.prototxt', '--run-dir']])
def test_an_output_folder_where_something_else_is_is_called_that(tmp_path, capsys, kind, argv):
    """"File exists" or "Not a directory: OUT/wsddn" (pass 39b m4)."""
    out = tmp_path / 'out'
    if kind == 'file':
        out.write_text('x')
    elif kind == 'fifo':
        os.mkfifo(str(out))
    elif kind == 'loop':
        os.symlink(str(out), str(out))
    elif kind == 'dangling':
        os.symlink(str(tmp_path / 'none'), str(out))
    else:
        (tmp_path / 'f').write_text('x')
        out = tmp_path / 'f' / 'out'
    assert cli.main(argv + [str(out)]) == 2
    err = capsys.readouterr().err
    what = {'file': 'a file', 'fifo': 'a FIFO', 'loop': 'a symlink loop', 'dangling': 'a link to nothing'}
    if kind in what:
        assert '%s is %s, where the output folder would be' % (out, what[kind]) in err, err
    else:
        assert 'is a file, where its folder would be' in err, err
    assert not (tmp_path / 'none').exists()


def test_a_stop_signal_inside_a_gc_callback_is_raised_at_the_next_output(capsys, tmp_path):
    """Raised inside the data layers' gc callback (their reaping of
    orphaned workers), a KeyboardInterrupt or Stopped was printed by Python
    as "Exception ignored in: _reap_orphans" with a traceback and dropped
    (pass 40b S2): it is only recorded there, and raised at the next
    output the command commits."""
    import gc
    import signal
    import time
    from caffe_mlic.fileio import atomic_write
    from caffe_mlic.processes import Stopped, signals_remembered

    def callback(phase, info):
        if phase == 'start' and not fired:
            fired.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
    fired = []
    gc.callbacks.append(callback)
    try:
        with signals_remembered():
            gc.collect()
            assert fired
            with pytest.raises(Stopped):
                with atomic_write(str(tmp_path / 'out.txt')) as f:
                    f.write('x')
    finally:
        gc.callbacks.remove(callback)
    assert 'Exception ignored' not in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_stop_signal_inside_llvmlites_object_cache_callback_is_raised_at_the_next_output(tmp_path, monkeypatch):
    """While numba compiled (a first run's ROI pooling), a signal landed in
    llvmlite's ctypes callback, which printed "Exception ignored on calling
    ctypes callback function" with a traceback (pass 46b S2): recorded
    there, raised at the next output."""
    import ctypes
    import signal
    import time
    from caffe_mlic.fileio import atomic_write
    from caffe_mlic.processes import Stopped, signals_remembered
    namespace = {}
    exec(compile('def _raw_object_cache_notify(kill, sleep, getpid, signum):\n'
                 '    kill(getpid(), signum)\n    sleep(0.2)\n',
                 '/usr/lib/python3/dist-packages/llvmlite/binding/executionengine.py', 'exec'), namespace)
    notify = namespace['_raw_object_cache_notify']
    hook = ctypes.CFUNCTYPE(None)(lambda: notify(os.kill, time.sleep, os.getpid, signal.SIGTERM))
    ignored = []        # (what Python prints as "Exception ignored ...")
    monkeypatch.setattr(sys, 'unraisablehook', ignored.append)
    with signals_remembered():
        hook()
        with pytest.raises(Stopped):
            with atomic_write(str(tmp_path / 'out.txt')) as f:
                f.write('x')
    assert ignored == [] and not list(tmp_path.iterdir())


def test_a_second_stop_signal_while_the_first_unwinds_is_only_recorded():
    """A Ctrl-C a moment after a SIGTERM raised inside the clean-up of the
    first: temp files left, a traceback, or both lost (pass 41b S2)."""
    import signal
    import time
    from caffe_mlic.processes import Stopped, raise_swallowed_signal, signals_remembered
    cleaned = []
    with signals_remembered():
        with pytest.raises(Stopped):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.5)
            finally:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)
                cleaned.append(True)
        assert cleaned
        with pytest.raises(Stopped):      # (still remembered: the command ends stopped)
            raise_swallowed_signal()


def test_a_sigterm_swallowed_inside_stopped_cleanly_is_raised_again(tmp_path):
    """synth and report set SIGTERM and SIGHUP to be ignored once one came:
    when an import's catch-all swallowed it, synth wrote its whole set and
    exited 0 (pass 41b S1)."""
    import signal
    import time
    from caffe_mlic.fileio import atomic_write
    from caffe_mlic.processes import Stopped, signals_remembered, stopped_cleanly
    with signals_remembered(), stopped_cleanly():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
        except BaseException:       # noqa: B902 (a library's bare except)
            pass
        with pytest.raises(Stopped):
            with atomic_write(str(tmp_path / 'out.txt')) as f:
                f.write('x')
    assert not list(tmp_path.iterdir())


def test_an_ignored_sighup_stays_ignored_in_report_and_synth(tmp_path, capsys):
    """Under nohup (SIGHUP ignored) train and run went on when the terminal
    went, but report, scasnet report and synth (stopped_cleanly) took
    SIGHUP over and stopped: every handler of ours leaves an ignored
    signal ignored."""
    import signal
    import time
    from caffe_mlic.processes import run_stoppable, signals_held

    def write(args):
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.2)
        (tmp_path / 'report.html').write_text('done')
        return 0
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        assert run_stoppable(None, write) == 0
        with signals_held() as held:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.2)
        assert held == []
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert (tmp_path / 'report.html').read_text() == 'done'
    assert capsys.readouterr().err == ''


def test_a_signal_as_a_temp_file_is_made_leaves_none(tmp_path, monkeypatch):
    """A Ctrl-C between mkstemp and the writer's list of its temp files
    left a hidden .tmp the clean-up did not know (pass 41b S3)."""
    import signal
    import tempfile
    import time
    from caffe_mlic.fileio import atomic_write
    from caffe_mlic.processes import signals_remembered
    make = tempfile.mkstemp

    def then_a_ctrl_c(*args, **kwargs):
        made = make(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)
        return made
    monkeypatch.setattr(tempfile, 'mkstemp', then_a_ctrl_c)
    with signals_remembered():
        with pytest.raises(KeyboardInterrupt):
            with atomic_write(str(tmp_path / 'out.txt')) as f:
                f.write('x')
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize('argv, line', [
    (['plot-log', 'none.log', '-o', 'none.png'], 'caffe-mlic plot-log: stopped by SIGTERM\n'),
    # then a usage error: exit 2, the signal lost (pass 45b M2)
    (['detect', '--nonsense'], 'caffe-mlic detect: stopped by SIGTERM\n'),
])
def test_a_sigterm_while_the_commands_load_is_said(capsys, monkeypatch, argv, line):
    """It ended the process without a word while the command's modules
    were imported (pass 41b M2)."""
    import signal
    from caffe_mlic import cli as cli_module
    build = cli_module.build_parser

    def loading(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        return build(*args, **kwargs)
    monkeypatch.setattr(cli_module, 'build_parser', loading)
    assert cli.main(argv) == 143
    assert capsys.readouterr().err.endswith(line)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_signal_whose_handler_runs_inside_the_first_ones_is_only_recorded(monkeypatch):
    """Two signals at once during an import: Python ran the second's
    handler inside a C call of the first's (time.monotonic), where what it
    raised became "SystemError: ... returned a result with an exception
    set", a traceback and exit 1 (pass 42 S1). The second is recorded."""
    import signal
    from caffe_mlic import processes
    clock = processes.time.monotonic

    def with_a_second_signal():     # (as Python runs a pending handler during the call)
        processes._received(signal.SIGTERM, None)
        return clock()
    monkeypatch.setattr(processes.time, 'monotonic', with_a_second_signal)
    with processes.signals_remembered():
        with pytest.raises(KeyboardInterrupt):
            processes._received(signal.SIGINT, None)
        assert [s for s, _ in processes._RECEIVED] == [signal.SIGTERM, signal.SIGINT]
    assert processes._in_handler is False


@pytest.mark.parametrize('cause, code, line', [
    (KeyboardInterrupt(), 130, 'caffe-mlic netgen: interrupted\n'),
    ('SIGTERM', 143, 'caffe-mlic netgen: stopped by SIGTERM\n'),
])
def test_a_system_error_caused_by_a_stop_signal_is_that_signal(tmp_path, capsys, monkeypatch, cause, code, line):
    """Two signals at once: Python ran the second handler with the first's
    exception still set, and its first call failed as "SystemError: ...
    returned a result with an exception set" caused by it: a traceback and
    exit 1 (pass 43 S1). Said as the signal it stands for."""
    import signal
    from caffe_mlic.netspec import netgen
    from caffe_mlic.processes import Stopped
    cause = Stopped(signal.SIGTERM) if cause == 'SIGTERM' else cause

    def two_signals(nets):
        raise SystemError('<built-in function monotonic> returned a result with an exception set') from cause
    monkeypatch.setattr(netgen, 'check_buildable', two_signals)
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets')]) == code
    assert capsys.readouterr().err == line
    assert not (tmp_path / 'nets').exists()


def test_a_stop_signal_a_catch_all_turned_into_an_error_of_ours_is_that_signal(tmp_path, capsys, monkeypatch):
    """Two signals at once during netgen's build check: the second's handler
    failed as a SystemError, which the check of a Python layer's module
    (an `except Exception`) said as "module 'caffe_mlic.layers' cannot be
    imported: SystemError ...", exit 2 (pass 44b S1). An error once a stop
    signal came is said as that signal."""
    import importlib
    import signal
    import time
    real = importlib.import_module

    def two_signals_at_once(name, *args):
        if name == 'caffe_mlic.layers':
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.5)
            except KeyboardInterrupt as first:
                raise SystemError('<built-in function monotonic> returned a result with an exception set') \
                    from first
        return real(name, *args)
    monkeypatch.setattr(importlib, 'import_module', two_signals_at_once)
    assert cli.main(['netgen', '-o', str(tmp_path / 'nets')]) == 130
    assert capsys.readouterr().err == 'caffe-mlic netgen: interrupted\n'
    assert not (tmp_path / 'nets').exists()


_AFTER_THE_LINE = """
import atexit, os, signal, sys, time
from caffe_mlic import cli
from caffe_mlic.netspec import netgen
out, more, hang = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def at_exit():      # (an atexit hook, tqdm's: the traceback was "Exception ignored in atexit callback")
    for _ in range(more):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    time.sleep(hang)
def report(prog, message, said=cli._report):
    said(prog, message)
    os.kill(os.getpid(), signal.SIGINT)     # a second Ctrl-C as the line is said
    time.sleep(0.2)
cli._report = report
def stopped(nets):
    atexit.register(at_exit)    # (as a library the command imports registers its own)
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)
netgen.check_buildable = stopped
sys.argv = ['caffe-mlic', 'netgen', '-o', out]
sys.exit(cli.main())
"""


@pytest.mark.parametrize('more, code', [(1, 130), (3, 130)])
def test_stop_signals_once_the_outcome_is_said_are_dropped_until_the_exit(tmp_path, more, code):
    """A second Ctrl-C as the one line was said, or during an atexit hook,
    printed a KeyboardInterrupt traceback (pass 44b S2): dropped; the third
    one after the outcome ends an exit that hangs at once."""
    started = time.monotonic()
    res = subprocess.run([sys.executable, '-c', _AFTER_THE_LINE, str(tmp_path / 'nets'), str(more), '10'],
                         capture_output=True, text=True, timeout=120)
    assert (res.returncode, res.stderr) == (code, 'caffe-mlic netgen: interrupted\n'), res.stderr
    assert (time.monotonic() - started < 8) == (more == 3)


def test_the_last_atexit_hook_ignores_stop_signals_once_the_outcome_is_said(monkeypatch):
    """Python's finalization puts back SIGINT's and SIGTERM's default
    action: a signal in the last milliseconds of a detect that had said its
    summary ended it with rc -15 (pass 44b, TERM+INT loops)."""
    import signal
    from caffe_mlic import processes
    previous = {s: signal.getsignal(s) for s in processes.STOP_SIGNALS}
    try:
        cli._last_at_exit()
        assert {s: signal.getsignal(s) for s in processes.STOP_SIGNALS} == previous
        monkeypatch.setattr(processes, '_ENDING', True)
        cli._last_at_exit()
        assert all(signal.getsignal(s) is signal.SIG_IGN for s in processes.STOP_SIGNALS)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def test_a_system_error_of_another_cause_is_not_hidden(tmp_path, monkeypatch):
    from caffe_mlic.netspec import netgen

    def broken(nets):
        raise SystemError('a bug') from ValueError('x')
    monkeypatch.setattr(netgen, 'check_buildable', broken)
    with pytest.raises(SystemError):
        cli.main(['netgen', '-o', str(tmp_path / 'nets')])


@pytest.mark.parametrize('where', ['matplotlibrc in the working folder', 'font cache'])
@pytest.mark.parametrize('kind', ['fifo', 'socket'])
def test_a_special_file_matplotlib_reads_is_named_not_waited_on(tmp_path, where, kind):
    """matplotlib opens its settings and its font cache itself: a FIFO
    there hung every command that draws (stop signals held in `train`), a
    socket was "No such device or address" (pass 47c S3, M2)."""
    import socket
    log = tmp_path / 'train.log'
    log.write_text('I0101 00:00:00.000000 1 solver.cpp:218] Iteration 0 (0 iter/s, 0s/1 iters), loss = 0.7\n')
    config = tmp_path / 'mpl'
    config.mkdir()
    special = tmp_path / 'matplotlibrc' if where.startswith('matplotlibrc') else config / 'fontlist-v330.json'
    held = None
    if kind == 'fifo':
        os.mkfifo(str(special))
    else:
        held = socket.socket(socket.AF_UNIX)
        held.bind(str(special))
    try:
        res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'plot-log', str(log), '-o', 'c.png'],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             env=dict(os.environ, MPLCONFIGDIR=str(config)))
    finally:
        if held is not None:
            held.close()
    what = ('matplotlib reads its settings (matplotlibrc)' if where.startswith('matplotlibrc')
            else 'matplotlib keeps its font cache')
    assert res.returncode == 1 and res.stderr == 'caffe-mlic plot-log: %s is a %s, where %s: move it away\n' % (
        special, 'FIFO' if kind == 'fifo' else 'socket', what), res.stderr
    assert not (tmp_path / 'c.png').exists()


@pytest.mark.parametrize('settings,said', [
    (b'savefig.dpi: 40000\n', 'matplotlib could not draw c.png (ValueError: Image size of 320000x170000 pixels is '
                               'too large. It must be less than 2^16 in each direction.; its settings, matplotlibrc, '
                               'or fonts?)'),
    (b'savefig.dpi: 0\n', 'matplotlib could not draw c.png (ValueError: dpi must be positive; its settings, '
                          'matplotlibrc, or fonts?)'),
    (b'axes.prop_cycle: cycler(color=[])\n', 'matplotlib could not draw c.png (ZeroDivisionError: integer modulo by '
                                             'zero; its settings, matplotlibrc, or fonts?)'),
    (b'font.family: \xff\xfe\n', "matplotlib cannot be imported (UnicodeDecodeError: 'utf-8' codec can't decode byte "
                                 "0xff in position 13: invalid start byte; its settings, {rc}?)"),
    (b'#' * (1 << 20) + b'\n', '{rc}: the file is 1048577 bytes, more than the 1048576 a matplotlibrc may have')],
    ids=['dpi-40000', 'dpi-0', 'empty-cycle', 'not-utf8', 'over-1-mib'])
def test_a_matplotlibrc_matplotlib_fails_on_is_one_line(tmp_path, settings, said):
    """savefig.dpi 40000 or 0, an empty colour cycle in the working
    folder's matplotlibrc, or one that is not UTF-8: a traceback from every
    command that draws (pass 48c S1, 48b S3)."""
    log = tmp_path / 'train.log'
    log.write_text('I0101 00:00:00.000000 1 solver.cpp:218] Iteration 0 (0 iter/s, 0s/1 iters), loss = 0.7\n')
    (tmp_path / 'matplotlibrc').write_bytes(settings)
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'plot-log', str(log), '-o', 'c.png'],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and res.stderr == 'caffe-mlic plot-log: %s\n' % said.format(
        rc=tmp_path / 'matplotlibrc'), res.stderr
    assert not (tmp_path / 'c.png').exists() and not list(tmp_path.glob('.c.png.*'))


def test_fonts_matplotlib_cannot_read_are_one_line_or_named_before_they_block(tmp_path):
    """A FIFO named *.ttf in the user's fonts hung every command that draws
    while matplotlib built its font cache (none yet); a cache naming a
    corrupt font file was an FT2Font RuntimeError traceback (pass 48b S4,
    S5)."""
    import json
    log = tmp_path / 'train.log'
    log.write_text('I0101 00:00:00.000000 1 solver.cpp:218] Iteration 0 (0 iter/s, 0s/1 iters), loss = 0.7\n')
    (tmp_path / 'data' / 'fonts').mkdir(parents=True)
    os.mkfifo(str(tmp_path / 'data' / 'fonts' / 'x.ttf'))
    env = dict(os.environ, MPLCONFIGDIR=str(tmp_path / 'mpl'), XDG_DATA_HOME=str(tmp_path / 'data'))
    cli_ = [sys.executable, '-m', 'caffe_mlic.cli', 'plot-log', str(log), '-o', 'c.png']
    res = subprocess.run(cli_, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 1 and res.stderr == ('caffe-mlic plot-log: %s is a FIFO, where matplotlib reads fonts '
                                                  '(it builds its font cache): move it away\n'
                                                  % (tmp_path / 'data' / 'fonts' / 'x.ttf')), res.stderr
    (tmp_path / 'data' / 'fonts' / 'x.ttf').unlink()
    assert subprocess.run(cli_, cwd=tmp_path, capture_output=True, timeout=300, env=env).returncode == 0
    cache = next((tmp_path / 'mpl').glob('fontlist-*.json'))
    (tmp_path / 'bad.ttf').write_bytes(b'not a font' * 100)
    fonts = json.loads(cache.read_text())
    for entry in fonts['ttflist']:
        entry['fname'] = str(tmp_path / 'bad.ttf')
    cache.write_text(json.dumps(fonts))
    res = subprocess.run(cli_, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 1 and res.stderr.startswith('caffe-mlic plot-log: matplotlib could not draw c.png '
                                                         '(RuntimeError: In FT2Font: ') and res.stderr.count('\n') == 1, \
        res.stderr


def test_a_font_family_that_is_not_installed_draws_without_a_line_a_text(tmp_path):
    """font.family in matplotlibrc not installed: matplotlib logged
    "findfont: Font family 'x' not found." hundreds of times a chart."""
    log = tmp_path / 'train.log'
    log.write_text('I0101 00:00:00.000000 1 solver.cpp:218] Iteration 0 (0 iter/s, 0s/1 iters), loss = 0.7\n')
    (tmp_path / 'matplotlibrc').write_text('font.family: nosuchfont\n')
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'plot-log', str(log), '-o', 'c.png'],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr == '', res.stderr[:2000]
    assert (tmp_path / 'c.png').read_bytes().startswith(b'\x89PNG')
