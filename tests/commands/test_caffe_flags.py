"""`caffe-mlic caffe`: flags the binary does not know, or values it would
abort on, are refused in one line (gflags printed its own error with exit
1; a bad -sigint_effect or -phase was a CHECK abort); the binary's results,
glog INFO lines, are shown unless the user set a level."""
import os
import re

import pytest

from tests.faults import run_cli

# (the log level is the point, not the net: a tiny one times in a moment)
TINY_NET = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }
"""


@pytest.mark.parametrize('argv, message', [
    (['train', '-solver', 's.prototxt', '-sigint_effect', 'bogus'],
     "-sigint_effect must be one of stop, snapshot, none, got 'bogus'"),
    (['train', '-solver', 's.prototxt', '-sighup_effect=bogus'],
     "-sighup_effect must be one of stop, snapshot, none, got 'bogus'"),
    (['time', '-model', 'n.prototxt', '-phase', 'BOGUS'], "-phase must be one of TRAIN, TEST, got 'BOGUS'"),
    (['train', '-solver', 's.prototxt', '-bogus', '3'], r'unknown flag -bogus; the binary takes -gpu, .*'),
    (['time', '-model', 'n.prototxt', '-iterations', 'abc'],
     "-iterations must be an integer from 1 to 2147483647, got 'abc'"),
    # beyond gflags' int32: a ValueError traceback from protobuf's train_state.level (pass 39c S3)
    (['train', '-solver', 's.prototxt', '-level', '2147483648'],
     "-level must be an integer from -2147483648 to 2147483647, got '2147483648'"),
    (['train', '-solver', 's.prototxt', '-level=99999999999999'],
     "-level must be an integer from -2147483648 to 2147483647, got '99999999999999'"),
    (['train', '-solver', 's.prototxt', '-level', '1_0'],
     "-level must be an integer from -2147483648 to 2147483647, got '1_0'"),
    (['train', '-solver', 's.prototxt', '-weights', ''], '-weights needs a file, got an empty value'),
    (['time', '-model'], '-model needs a value'),
])
def test_flags_the_binary_would_refuse_or_abort_on(tmp_path, argv, message):
    res = run_cli(['caffe'] + argv, tmp_path)
    assert res.returncode == 2, res.stderr
    assert re.fullmatch(r'caffe-mlic caffe: %s\n' % (message if '.*' in message else re.escape(message)),
                        res.stderr), res.stderr


def test_the_binarys_results_are_shown_unless_the_user_sets_a_level(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ('GLOG_minloglevel', 'CAFFE_MLIC_GLOG_DEFAULT')}
    import subprocess
    import sys
    (tmp_path / 'tiny.prototxt').write_text(TINY_NET)
    argv = [sys.executable, '-m', 'caffe_mlic.cli', 'caffe', 'time', '-model', 'tiny.prototxt', '-iterations', '1']
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0 and 'Average Forward pass' in res.stderr, res.stderr[-2000:]
    res = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=dict(env, GLOG_minloglevel='2'))
    assert res.returncode == 0 and 'Average Forward pass' not in res.stderr, res.stderr[-2000:]
