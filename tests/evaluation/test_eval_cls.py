"""Multi-label classification metrics (hand-computed cases) and `caffe-mlic eval cls`."""
import json

import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.evaluation import classification
from caffe_mlic.errors import InputError
from caffe_mlic.evaluation.classification import (average_precision, check_inputs,
                                                  mean_average_precision, multilabel_metrics)

# 4 images x 3 classes; class 2 has no positive (its one 1 would be image 2, ignored).
S4 = np.array([[0.9, 0.6, 0.1],
               [0.8, 0.4, 0.7],
               [0.3, 0.7, 0.2],
               [0.6, 0.2, 0.4]])
L4 = np.array([[1, 0, 0],
               [0, 1, 0],
               [1, 1, -1],
               [0, 0, 0]])
# AP class 0: ranking img0+ img1- img3- img2+ -> (1/1 + 2/4) / 2 = 0.75
# AP class 1: ranking img2+ img0- img1+ img3- -> (1/1 + 2/3) / 2 = 5/6
# mAP = (0.75 + 5/6) / 2 = 19/24
# >= 0.5: class 0 predicted on img0, img1, img3: Nc 1, Np 3, Ng 2
#         class 1 predicted on img0, img2:       Nc 1, Np 2, Ng 2
#         class 2 predicted on img1:             Nc 0, Np 1, Ng 0 (left out of CP, CR)
# CP = (1/3 + 1/2) / 2 = 5/12, CR = (1/2 + 1/2) / 2 = 1/2, CF1 = 2 CP CR / (CP + CR) = 5/11
# OP = 2 / 6, OR = 2 / 4, OF1 = 2/5; with 3 classes top-3 is every label: the same.
EXPECTED4 = {'mAP': 19 / 24, 'CP': 5 / 12, 'CR': 1 / 2, 'CF1': 5 / 11, 'OP': 1 / 3, 'OR': 1 / 2, 'OF1': 2 / 5}


def _assert_percent(result, expected):
    for key, value in expected.items():
        assert result[key] == pytest.approx(100 * value), key


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


def test_ties_keep_the_given_order():
    # all tied: the ranking is the order given, so the positive is 2nd (AP 1/2) or 1st (AP 1)
    assert average_precision([0.5, 0.5, 0.5], [0, 1, 0]) == 0.5
    assert average_precision([0.5, 0.5, 0.5], [1, 0, 0]) == 1.0
    assert average_precision([0.5] * 40, [0] * 39 + [1]) == pytest.approx(1 / 40)
    # 20 images, 0.7 on every 3rd (7 of them), 0.5 on the rest, positives 2 and 19: ranked
    # after the seven 0.7s in index order, 2 is 9th and 19 is 20th: (1/9 + 2/20) / 2
    scores = np.full(20, 0.5)
    scores[::3] = 0.7
    targets = np.zeros(20)
    targets[[2, 19]] = 1
    assert average_precision(scores, targets) == pytest.approx((1 / 9 + 2 / 20) / 2)


def test_ignored_label_is_left_out_of_the_ranking():
    # counted ranking without image 0: 0.8 (-), 0.7 (+) -> 1/2 (as a negative it would be 1/3)
    assert average_precision([0.9, 0.8, 0.7], [-1, 0, 1]) == 0.5


def test_metrics_hand_computed_with_a_class_without_positive():
    result = multilabel_metrics(S4, L4, ['cat', 'dog', 'bird'])
    _assert_percent(result, EXPECTED4)
    _assert_percent(result, {k + '_top3': v for k, v in EXPECTED4.items() if k != 'mAP'})
    assert result['AP'][:2] == pytest.approx([75.0, 100 * 5 / 6]) and result['AP'][2] is None
    assert result['classes'] == ['cat', 'dog', 'bird']


def test_an_ignored_label_is_not_counted_as_predicted():
    # image 1 predicts class 0 (0.8 >= 0.5) where the label is ignored: Np stays 1
    result = multilabel_metrics([[0.9], [0.8]], [[1], [-1]])
    assert result['CP'] == 100.0 and result['OP'] == 100.0


def test_top3_with_fewer_than_three_labels_over_threshold():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.1],     # top 3: classes 0 1 2; class 3 (0.6) left out
                       [0.2, 0.55, 0.1, 0.3, 0.4],    # top 3: 1 4 3, only class 1 is >= 0.5
                       [0.5, 0.5, 0.5, 0.5, 0.5]])    # tied: classes 0 1 2 (lower index first)
    labels = np.array([[1, 0, 0, 1, 0],
                       [0, 1, 0, 0, 1],
                       [0, 0, 0, 0, 1]])
    # top-3 per class (Nc, Np, Ng): 0 (1, 2, 1), 1 (1, 3, 1), 2 (0, 2, 0: left out),
    # 3 (0, 0 -> 1, 1), 4 (0, 0 -> 1, 2)
    # CP = (1/2 + 1/3 + 0 + 0) / 4 = 5/24, CR = (1 + 1 + 0 + 0) / 4 = 1/2, CF1 = 5/17
    # OP = 2 / 7, OR = 2 / 5, OF1 = 1/3
    # all >= 0.5 (0.5 counts): 0 (1, 2, 1), 1 (1, 3, 1), 2 (0, 2, 0), 3 (1, 2, 1), 4 (1, 1, 2)
    # CP = (1/2 + 1/3 + 1/2 + 1) / 4 = 7/12, CR = (1 + 1 + 1 + 1/2) / 4 = 7/8, OP = 4/10, OR = 4/5
    result = multilabel_metrics(scores, labels)
    _assert_percent(result, {'CP_top3': 5 / 24, 'CR_top3': 1 / 2, 'CF1_top3': 5 / 17,
                             'OP_top3': 2 / 7, 'OR_top3': 2 / 5, 'OF1_top3': 1 / 3})
    _assert_percent(result, {'CP': 7 / 12, 'CR': 7 / 8, 'CF1': 2 * (7 / 12) * (7 / 8) / (7 / 12 + 7 / 8),
                             'OP': 4 / 10, 'OR': 4 / 5})


def test_all_correct_and_all_wrong():
    labels = np.array([[1, 0], [0, 1], [1, 1]])
    right = multilabel_metrics(labels.astype(float), labels)
    assert all(right[k] == 100.0 for k in right if k not in ('AP', 'classes'))
    assert right['AP'] == [100.0, 100.0]
    # every positive ranked below a negative: AP class 0 = ranking - + + : (1/2 + 2/3) / 2 = 7/12
    wrong = multilabel_metrics(1.0 - labels, labels)
    assert wrong['AP'] == pytest.approx([100 * 7 / 12, 100 * 7 / 12])
    for key in ('CP', 'CR', 'CF1', 'OP', 'OR', 'OF1', 'CP_top3', 'OF1_top3'):
        assert wrong[key] == 0.0, key


def test_nothing_predicted_and_no_positive_at_all():
    result = multilabel_metrics([[0.1, 0.2]], [[0, 0]])
    assert result['mAP'] is None and result['CP'] is None and result['CR'] is None
    assert result['AP'] == [None, None] and result['OP'] == 0.0 and result['OR'] is None


@pytest.mark.parametrize('scores, labels, classes, needle', [
    (np.zeros((2, 3)), np.zeros((3, 2)), None, 'scores are 2 images x 3 classes but the labels'),
    (np.array([[0.1, np.nan]]), np.zeros((1, 2)), None, 'S[0, 1] = nan is not a finite number'),
    (np.array([[0.1, 2.5]]), np.zeros((1, 2)), None, 'outside [0, 1]'),
    (np.zeros((2, 2)), np.array([[0, 1], [2, 0]]), None, 'L[1, 0] = 2 is not 1, 0 or -1'),
    (np.zeros((1, 2)), np.zeros((1, 2)), ['a', 'b', 'c'], '3 class names, but the scores have 2'),
    (np.zeros(3), np.zeros(3), None, 'must be a 2-D array'),
])
def test_bad_inputs_are_input_errors(scores, labels, classes, needle):
    with pytest.raises(InputError) as err:
        check_inputs(scores, labels, classes)
    assert needle in str(err.value)


# ------------------------------------------------------------------ the command, on saved scores

def _saved(tmp_path, scores=S4, labels=L4):
    np.save(tmp_path / 'S.npy', scores)
    np.save(tmp_path / 'L.npy', labels)
    (tmp_path / 'classes.txt').write_text('cat\ndog\nbird\n')
    return ['eval', 'cls', '--scores', str(tmp_path / 'S.npy'), '--labels', str(tmp_path / 'L.npy')]


def test_cli_cls_prints_the_table_and_writes_json(tmp_path, capsys):
    argv = _saved(tmp_path) + ['--classes', str(tmp_path / 'classes.txt'), '--json', str(tmp_path / 'm.json')]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == 'mAP 79.2 % over 4 images'
    assert any(line.split() == ['bird', 'n/a'] for line in out)
    assert any(line.split()[:2] == ['cat', '75.0'] for line in out)
    saved = json.loads((tmp_path / 'm.json').read_text())
    _assert_percent(saved, EXPECTED4)
    assert saved['AP'][2] is None and saved['classes'] == ['cat', 'dog', 'bird']
    assert set(saved) == {'mAP', 'AP', 'CP', 'CR', 'CF1', 'OP', 'OR', 'OF1', 'CP_top3', 'CR_top3',
                          'CF1_top3', 'OP_top3', 'OR_top3', 'OF1_top3', 'classes', 'threshold'}
    assert saved['threshold'] == 0.5


def test_fit_thresholds_by_hand():
    # class 0: positives 0.9, 0.4; negatives 0.6, 0.1. Cuts: top 1 (F1 2/3), top 2 (F1 1/2),
    # top 3 (F1 4/5), top 4 (F1 2/3): the best keeps 0.9, 0.6, 0.4 -> halfway to 0.1.
    # class 1: one positive on top, ties below: 0.8 alone (F1 1). class 2: no positive: 0.5.
    # class 3: tied scores can only be cut together: 0.7 0.7 (1 positive), 0.2 (negative).
    scores = np.array([[0.9, 0.8, 0.3, 0.7], [0.6, 0.3, 0.2, 0.7], [0.4, 0.3, 0.1, 0.2],
                       [0.1, 0.3, 0.9, 0.0]])
    labels = np.array([[1, 1, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, -1]])
    t = classification.fit_thresholds(scores, labels)
    assert t.tolist() == pytest.approx([0.25, 0.55, 0.5, 0.45])
    # applied to the same scores, each class's F1 is its best
    m = classification.multilabel_metrics(scores, labels, threshold=t)
    at_half = classification.multilabel_metrics(scores, labels)
    assert m['CF1'] >= at_half['CF1'] and m['CR'] == pytest.approx(100.0)


def test_cli_fit_thresholds_on_one_split_and_apply_them_to_another(tmp_path, capsys):
    argv = _saved(tmp_path) + ['--classes', str(tmp_path / 'classes.txt')]
    fitted = tmp_path / 't.json'
    assert cli.main(argv + ['--fit-thresholds', str(fitted), '--json', str(tmp_path / 'val.json')]) == 0
    data = json.loads(fitted.read_text())
    assert data['classes'] == ['cat', 'dog', 'bird'] and data['fitted_on'] == str(tmp_path / 'S.npy')
    assert json.loads((tmp_path / 'val.json').read_text())['threshold'] == 0.5
    expected = classification.multilabel_metrics(S4, L4, threshold=np.array(data['thresholds']))
    assert cli.main(argv + ['--thresholds', str(fitted), '--json', str(tmp_path / 'm.json')]) == 0
    assert 'all >= thresholds' in capsys.readouterr().out
    saved = json.loads((tmp_path / 'm.json').read_text())
    assert saved['threshold'] == dict(file=str(fitted), values=data['thresholds'])
    assert saved['CF1'] == pytest.approx(expected['CF1']) and saved['OF1'] == pytest.approx(expected['OF1'])
    # a bare list of the same thresholds (the scores' class order) is read as the same
    bare = tmp_path / 'bare.json'
    bare.write_text(json.dumps(data['thresholds']))
    assert cli.main(argv + ['--thresholds', str(bare), '--json', str(tmp_path / 'b.json')]) == 0
    assert json.loads((tmp_path / 'b.json').read_text())['CF1'] == saved['CF1']


@pytest.mark.parametrize('content, needle', [
    ({'thresholds': [0.5, 0.5]}, 't.json: thresholds: 2 thresholds for 3 classes'),
    ({'thresholds': [0.5, 2, 0.5]}, 't.json: thresholds: must be a list of numbers in [0, 1]'),
    ({'thresholds': [0.5] * 3, 'classes': ['a', 'b', 'c']}, "t.json: classes: fitted for classes ['a'"),
    ('not json', 't.json: not valid JSON'),
    ([0.5, 0.5], 't.json: thresholds: 2 thresholds for 3 classes'),
    (0.5, 't.json: thresholds: expected the object --fit-thresholds writes'),
    ('{"thresholds": [0.9, 0.9, 0.9], "thresholds": [0.5, 0.5, 0.5]}',
     "t.json: not valid JSON: the key 'thresholds' is given twice in one object"),
])
def test_cli_bad_thresholds_file_exit_1(tmp_path, capsys, content, needle):
    path = tmp_path / 't.json'
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    argv = _saved(tmp_path) + ['--classes', str(tmp_path / 'classes.txt'), '--thresholds', str(path)]
    assert cli.main(argv) == 1
    assert needle in capsys.readouterr().err


def test_cli_fit_and_apply_together_is_refused(tmp_path, capsys):
    argv = _saved(tmp_path) + ['--fit-thresholds', 'a.json', '--thresholds', 'b.json']
    assert cli.main(argv) == 2
    assert 'fit on the validation scores' in capsys.readouterr().err


def test_cli_cls_sigmoid_turns_logits_into_probabilities(tmp_path, capsys):
    logits = np.log(S4 / (1 - S4))
    argv = _saved(tmp_path, scores=logits)
    assert cli.main(argv) == 1
    assert 'S.npy: S[0, 0] = 2.19722 is outside [0, 1]' in capsys.readouterr().err
    assert cli.main(argv + ['--sigmoid', '--json', str(tmp_path / 'm.json')]) == 0
    _assert_percent(json.loads((tmp_path / 'm.json').read_text()), EXPECTED4)
    assert 'note:' not in capsys.readouterr().err
    # probabilities through --sigmoid: said (pass 20 M6)
    assert cli.main(_saved(tmp_path) + ['--sigmoid']) == 0
    assert 'note: the scores all lie in [0, 1] already' in capsys.readouterr().err


@pytest.mark.parametrize('extra, needle', [
    (['--net', 'n.prototxt'], 'not both'),
    (['--net', 'n', '--weights', 'w', '--blob', 'b'], 'not both'),
])
def test_cli_cls_bad_arguments_exit_2(tmp_path, capsys, extra, needle):
    assert cli.main(_saved(tmp_path) + extra) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize('argv, needle', [
    (['eval', 'cls', '--scores', 'S.npy'], '--scores and --labels go together'),
    (['eval', 'cls', '--net', 'n.prototxt', '--blob', 'b'], 'give --scores S.npy --labels L.npy, or'),
    (['eval', 'cls'], 'give --scores'),
])
def test_cli_cls_incomplete_arguments_exit_2(capsys, argv, needle):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic eval cls: ') and needle in err, err


def test_cli_cls_bad_input_files_exit_1(tmp_path, capsys):
    scores = S4.copy()
    scores[2, 1] = np.nan
    argv = _saved(tmp_path, scores=scores)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err == 'caffe-mlic eval cls: %s: S[2, 1] = nan is not a finite number\n' % (tmp_path / 'S.npy')

    labels = L4.copy()
    labels[0, 0] = 3
    assert cli.main(_saved(tmp_path, labels=labels)) == 1
    assert 'L.npy: L[0, 0] = 3 is not 1, 0 or -1' in capsys.readouterr().err

    assert cli.main(_saved(tmp_path, labels=L4[:3])) == 1
    assert 'scores are 4 images x 3 classes but the labels' in capsys.readouterr().err

    (tmp_path / 'two.txt').write_text('cat\ndog\n')
    assert cli.main(_saved(tmp_path) + ['--classes', str(tmp_path / 'two.txt')]) == 1
    assert 'two.txt: 2 class names, but the scores have 3 classes' in capsys.readouterr().err

    (tmp_path / 'S.npy').write_text('not an array')
    assert cli.main(argv[:2] + ['--scores', str(tmp_path / 'S.npy'), '--labels', str(tmp_path / 'L.npy')]) == 1
    assert 'S.npy: not a .npy file (it is text); --scores takes' in capsys.readouterr().err

    assert cli.main(['eval', 'cls', '--scores', str(tmp_path / 'nope.npy'), '--labels', argv[5]]) == 1
    assert 'nope.npy: no such file' in capsys.readouterr().err


def _pickled(path):
    with open(path, 'wb') as f:      # (a file: np.save adds .npy to a path)
        np.save(f, np.array([{}, 1], dtype=object), allow_pickle=True)


def _npz(path):
    with open(path, 'wb') as f:
        np.savez(f, s=S4)


def _truncated(path):
    with open(path, 'wb') as f:
        np.save(f, S4)
    path.write_bytes(path.read_bytes()[:-8])


def _huge_header(path, shape=b"(1000000000, 3), }"):
    """A tiny file whose header claims 10^9 x 3 (np.load allocated it first),
    or ``shape``: 0 x 10^30 passes the size check (0 bytes) and np.load overflowed."""
    with open(path, 'wb') as f:
        np.save(f, np.zeros((1, 3)))
    head = b"(1, 3), }" + b" " * (len(shape) - len(b"(1, 3), }"))
    path.write_bytes(path.read_bytes().replace(head, shape))


@pytest.mark.parametrize('make, problem', [
    # np.load said "Cannot load file containing pickled data" of every one but the last two
    (lambda p: p.write_text('cat\ndog\n'), 'not a .npy file (it is text)'),
    (lambda p: p.write_bytes(b'\x00\xff' * 40), 'not a .npy file'),
    (lambda p: p.write_bytes(b''), 'the file is empty (0 bytes)'),
    (_npz, 'a zip archive (.npz?), not a .npy array'),
    (_pickled, 'a .npy array of Python objects, not numbers'),
    (_truncated, 'a truncated .npy file: its header says 4x3 of float64 (96 bytes), the file holds 88'),
    (_huge_header, 'a truncated .npy file: its header says 1000000000x3 of float64 (24000000000 bytes), '
                   'the file holds 24'),
    (lambda p: _huge_header(p, b"(0, 1000000000000000000000000000000), }"),
     'a damaged .npy header: shape 0x1000000000000000000000000000000'),
])
def test_cli_cls_scores_that_are_not_an_npy_array_are_named(tmp_path, capsys, make, problem):
    argv = _saved(tmp_path)
    make(tmp_path / 'classes.txt')
    argv[argv.index('--scores') + 1] = str(tmp_path / 'classes.txt')
    assert cli.main(argv) == 1
    assert capsys.readouterr().err == (
        'caffe-mlic eval cls: %s: %s; --scores takes an images x classes array of numbers saved by '
        'numpy.save (.npy)\n' % (tmp_path / 'classes.txt', problem))


def test_cli_cls_outputs_that_name_an_input_are_refused(tmp_path, capsys):
    argv = _saved(tmp_path) + ['--classes', str(tmp_path / 'classes.txt')]
    (tmp_path / 'T.json').write_text(json.dumps({'thresholds': [0.5] * 3}))
    np.save(tmp_path / 'out.labels.npy', L4)
    cases = [(['--csv', 'S.npy'], '--csv', 'S.npy'),            # the case
             (['--json', 'L.npy'], '--json', 'L.npy'),
             (['--save-scores', 'S.npy'], '--save-scores', 'S.npy'),
             (['--fit-thresholds', 'classes.txt'], '--fit-thresholds', 'classes.txt'),
             (['--thresholds', 'T.json', '--csv', 'T.json'], '--csv', 'T.json'),
             # --save-scores out.npy also writes out.labels.npy, here the labels read
             (['--save-scores', 'out.npy', '--labels', 'out.labels.npy'], '--save-scores', 'out.labels.npy')]
    for extra, flag, name in cases:
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        extra = [str(tmp_path / e) if e.endswith(('.npy', '.txt', '.json')) else e for e in extra]
        assert cli.main(argv + extra) == 2, extra
        err = capsys.readouterr().err
        assert err == ('caffe-mlic eval cls: argument %s: %s is an input of this command: writing it would '
                       'overwrite it; choose another output path\n' % (flag, tmp_path / name)), err
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before    # nothing written
    same = str(tmp_path / 'm.out')
    assert cli.main(argv + ['--json', same, '--csv', same]) == 2
    assert 'argument --csv: %s is also the output of another option' % same in capsys.readouterr().err
    assert not (tmp_path / 'm.out').exists()


# ------------------------------------------------------------------ the command, on a trained net

C, B, TEACHER, STUDENT, IMAGES = 3, 8, 64, 64, 6


@pytest.fixture(scope='module')
def tiny_teacher(caffe, tmp_path_factory):
    """A generated tiny WSDDN over 6 images, TEST batch 4 (so the last batch wraps), with
    randomly initialised weights saved as a caffemodel."""
    from caffe_mlic.netspec import netgen
    from caffe_mlic.netspec import MlicConfig
    from tests.tinydata import write_tiny_dataset
    root = tmp_path_factory.mktemp('eval_net')
    listing = write_tiny_dataset(str(root / 'images'), n_images=IMAGES, num_classes=C, bbox_num=B,
                                 size=TEACHER)
    cfg = MlicConfig.release(num_classes=C, bbox_num=B, teacher_size=TEACHER, student_size=STUDENT,
                             pooled=2, backbone='tiny', train_list=listing, test_list=listing,
                             scale_factors=[1.0], workers=0, input_scale=1 / 58., wsddn_batch=(2, 4))
    netgen.generate(str(root / 'nets'), cfg)
    net_path = str(root / 'nets' / 'wsddn' / 'wsddn_train.prototxt')
    caffe.set_random_seed(3)
    weights = str(root / 'random.caffemodel')
    caffe.Net(net_path, caffe.TEST).save(weights)
    return net_path, weights, listing


def test_cli_cls_on_a_net_scores_every_test_image_once(tiny_teacher, tmp_path, capsys):
    from caffe_mlic.caffe import prototxt
    from caffe_mlic.data.datalist import read_datalist
    from caffe_mlic.evaluation.net_scores import score_test_set
    net_path, weights, listing = tiny_teacher
    scores, labels = score_test_set(net_path, weights, 'image_level_score')
    assert scores.shape == (IMAGES, C)
    # two TEST batches of 4 in file order: images 0-3, then 4 5 and, wrapped, 0 1
    net = prototxt.caffe_net(net_path, 'TEST', weights=weights)
    rows = []
    for _ in range(2):
        net.forward()
        rows.append(net.blobs['image_level_score'].data.reshape(4, C).copy())
    rows = np.concatenate(rows)
    np.testing.assert_allclose(rows[6:], rows[:2], rtol=1e-6)
    np.testing.assert_allclose(scores, rows[:IMAGES], rtol=1e-6)
    assert scores.std() > 0
    np.testing.assert_array_equal(labels, read_datalist(listing, C, B, check_images=False).labels)
    assert cli.main(['eval', 'cls', '--net', net_path, '--weights', weights, '--blob', 'image_level_score',
                     '--json', str(tmp_path / 'm.json')]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    saved = json.loads((tmp_path / 'm.json').read_text())
    assert last == 'mAP %.1f %% over %d images' % (saved['mAP'], IMAGES)
    assert saved == json.loads(json.dumps(dict(multilabel_metrics(scores, labels), threshold=0.5)))


@pytest.mark.parametrize('blob, needle', [
    ('fc8_c', "argument --blob: blob 'fc8_c' has shape (32, 3), not one row of 3 class scores per image"),
    ('labels', "argument --blob: blob 'labels' is the labels, not scores"),
    ('data', "argument --blob: blob 'data' is a top of the data layer"),
    ('no_such_blob', "has no blob 'no_such_blob'"),
])
def test_cli_cls_refuses_a_blob_that_is_not_image_scores(tiny_teacher, capsys, blob, needle):
    net_path, weights, _ = tiny_teacher
    assert cli.main(['eval', 'cls', '--net', net_path, '--weights', weights, '--blob', blob]) == 2
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic eval cls: ') and needle in err, err


def test_cli_cls_net_names_a_missing_file(tmp_path, capsys):
    net = tmp_path / 'net.prototxt'
    net.write_text('name: "x"\n')
    assert cli.main(['eval', 'cls', '--net', str(net), '--weights', str(tmp_path / 'missing.caffemodel'),
                     '--blob', 'prob']) == 1
    err = capsys.readouterr().err
    assert 'missing.caffemodel: no such file' in err and 'Traceback' not in err


def test_cli_cls_list_scores_another_datalist_and_saves_scores(tiny_teacher, tmp_path, capsys):
    from caffe_mlic.evaluation.net_scores import score_test_set
    net_path, weights, listing = tiny_teacher
    lines = open(listing).read().splitlines()
    subset = tmp_path / 'subset.txt'
    subset.write_text('\n'.join(lines[4:] + lines[:1]) + '\n')      # images 4, 5, 0
    full, _ = score_test_set(net_path, weights, 'image_level_score')
    out = tmp_path / 'scores.npy'
    assert cli.main(['eval', 'cls', '--net', net_path, '--weights', weights, '--blob', 'image_level_score',
                     '--list', str(subset), '--save-scores', str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith('over 3 images')
    np.testing.assert_allclose(np.load(out), full[[4, 5, 0]], rtol=1e-6)
    labels = np.load(tmp_path / 'scores.labels.npy')
    assert labels.dtype == np.int8 and labels.shape == (3, C)
    # the net file itself is untouched
    assert str(subset) not in open(net_path).read()
    assert cli.main(['eval', 'cls', '--scores', str(out), '--labels', str(tmp_path / 'scores.labels.npy'),
                     '--list', str(subset)]) == 2
    assert '--list goes with --net' in capsys.readouterr().err
    assert cli.main(['eval', 'cls', '--net', net_path, '--weights', weights, '--blob', 'image_level_score',
                     '--list', str(tmp_path / 'missing.txt')]) == 1
    assert 'missing.txt: no such datalist' in capsys.readouterr().err
    assert cli.main(['eval', 'cls', '--net', net_path, '--weights', weights, '--blob', 'image_level_score',
                     '--list', str(tmp_path)]) == 1
    assert '%s: not a regular file (a device, FIFO or folder)' % tmp_path in capsys.readouterr().err
