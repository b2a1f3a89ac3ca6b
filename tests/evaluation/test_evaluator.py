"""The evaluator seam: reset / process / evaluate, batch by batch, with the
rows past the list's end dropped; the same numbers as the metrics computed
on the whole set at once; one rule for the labels of a TEST net."""
import numpy as np
import pytest

from caffe_mlic.evaluation import METRIC_KEYS
from caffe_mlic.evaluation.classification import MultiLabelEvaluator, mean_average_precision
from caffe_mlic.evaluation.evaluator import EVALUATORS, for_data_layer
from caffe_mlic.evaluation.segmentation import SegmentationEvaluator, metrics


def test_every_data_layer_has_an_evaluator_whose_key_the_logs_know():
    assert tuple(e.key for e in EVALUATORS.values()) == METRIC_KEYS
    assert isinstance(for_data_layer('MultiLabelProposalData', 3, 4), MultiLabelEvaluator)
    seg = for_data_layer('SegmentationData', 3, 5)
    assert isinstance(seg, SegmentationEvaluator) and seg.conf.shape == (5, 5)


def test_multilabel_by_hand():
    # class 0: the positive ranks first (AP 1); class 1: second of two (AP 1/2)
    scores = np.array([[0.9, 0.8], [0.1, 0.7]], np.float32)
    labels = np.array([[1, 0], [0, 1]])
    ev = MultiLabelEvaluator()
    ev.process(scores, labels)
    assert ev.evaluate() == {'mAP': pytest.approx(75.0)}
    assert ev.scores().dtype == np.float64 and ev.labels().dtype == np.int8


def test_multilabel_batches_drop_the_wrap_around_and_reset():
    rng = np.random.default_rng(0)
    scores, labels = rng.random((7, 3)), (rng.random((7, 3)) > 0.5).astype(np.int8)
    labels[0] = 1
    ev = MultiLabelEvaluator(count=7)
    padded_scores = np.concatenate([scores, scores[:2]])      # 3 batches of 3: the last wraps around
    padded_labels = np.concatenate([labels, labels[:2]])
    for start in range(0, 9, 3):
        ev.process(padded_scores[start:start + 3, :, None, None], padded_labels[start:start + 3])
    np.testing.assert_array_equal(ev.scores(), scores)
    whole, _ = mean_average_precision(scores, labels)
    assert ev.evaluate()['mAP'] == pytest.approx(100 * whole)
    ev.reset()
    assert ev.scores().size == 0 and ev.seen == 0


def test_segmentation_scores_maps_by_argmax_and_label_maps_alike():
    truth = np.array([[[0, 1], [1, 255]]], np.uint8)                 # (N, H, W); 255 ignored
    pred = np.array([[[0, 1], [0, 0]]])
    scores = np.zeros((1, 2, 2, 2), np.float32)
    scores[0, 1] = (pred[0] == 1)                                    # argmax gives pred
    by_map, by_scores = SegmentationEvaluator(2), SegmentationEvaluator(2)
    by_map.process(pred, truth)
    by_scores.process(scores, truth[:, None])
    np.testing.assert_array_equal(by_map.conf, [[1, 0], [1, 1]])
    np.testing.assert_array_equal(by_scores.conf, by_map.conf)
    assert by_map.evaluate() == metrics(by_map.conf, ['class_0', 'class_1'], exclude_from_mean=())
    # IoU: class 0 1 / (1 + 1) = 50 %, class 1 1 / 2 = 50 %
    assert by_map.evaluate()['mIoU'] == pytest.approx(50.0)


def test_segmentation_drops_the_wrap_around():
    ev = SegmentationEvaluator(2, count=1)
    ev.process(np.ones((2, 3, 3), int), np.zeros((2, 3, 3), np.uint8))   # the second map is the wrap
    assert ev.conf.sum() == 9
