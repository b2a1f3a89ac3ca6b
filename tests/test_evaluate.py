import numpy as np
import pytest

from caffe_mlic.evaluate import average_precision, mean_average_precision


def test_average_precision_hand_computed():
    # ranking: + - + -  -> precisions at hits 1/1 and 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0.1, 0.2, 0.3], [0, 0, 1]) == 1.0
    assert average_precision([0.3, 0.2, 0.1], [0, 0, 1]) == pytest.approx(1 / 3)
    assert np.isnan(average_precision([0.3, 0.2], [0, 0]))


def test_mean_average_precision_skips_classes_without_positives():
    scores = np.array([[0.9, 0.1, 0.5], [0.1, 0.9, 0.5]])
    targets = np.array([[1, 0, 0], [0, 1, 0]])
    mean_ap, aps = mean_average_precision(scores, targets)
    assert mean_ap == 1.0 and np.isnan(aps[2])
    reversed_ranking = np.array([[0.1, 0.9, 0.5], [0.9, 0.1, 0.5]])
    assert mean_average_precision(reversed_ranking, targets)[0] == 0.5


def test_evaluate_cli_names_a_missing_file(tmp_path):
    import subprocess
    import sys
    net = tmp_path / 'net.prototxt'
    net.write_text('name: "x"\n')
    res = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'evaluate', '--net', str(net),
                          '--weights', str(tmp_path / 'missing.caffemodel'), '--blob', 'prob'],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert 'missing.caffemodel: no such file' in res.stderr and 'Traceback' not in res.stderr
