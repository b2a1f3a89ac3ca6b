"""`caffe-mlic proposals import` (other tools' proposal files), COCO results
JSON written by `detect` and read by `eval det`, and the CSV of `eval cls`
and `classify`.

Every import format is tested on a file written here in that tool's own
convention, holding the box x1=3, y1=10, x2=40, y2=20 (0-based inclusive) on
a 64x48 image: a swapped axis or an off-by-one changes its coordinates; a
second box, x 50-60, y 5-30, would leave the 48 px high image with its axes
swapped.
"""
import csv
import json
import os
import pickle
import subprocess
import sys

import cv2
import h5py
import numpy as np
import pytest
import scipy.io

from caffe_mlic import cli
from caffe_mlic.errors import InputError

OURS = np.array([[3, 10, 40, 20], [50, 5, 60, 30]], np.float64)   # 0-based x1 y1 x2 y2
MATLAB_YX = OURS[:, [1, 0, 3, 2]] + 1                                # 1-based y1 x1 y2 x2
SIZES = {'000005': (64, 48), '000007': (80, 40)}                    # stem: (width, height)
OTHER = np.array([[0, 0, 79, 39]], np.float64)                      # 000007's one box, ours
CONSOLE = os.path.join(os.path.dirname(sys.executable), 'caffe-mlic')   # the installed command
CLI = [CONSOLE] if os.path.isfile(CONSOLE) else [sys.executable, '-m', 'caffe_mlic.cli']


@pytest.fixture
def images(tmp_path):
    """Two images, 000005.png (64x48) and 000007.png (80x40), in tmp/images."""
    folder = tmp_path / 'images'
    folder.mkdir()
    for stem, (w, h) in SIZES.items():
        assert cv2.imwrite(str(folder / (stem + '.png')), np.zeros((h, w, 3), np.uint8))
    return folder


def _import(fmt, files, out, *extra):
    return cli.main(['proposals', 'import', fmt] + [str(f) for f in files]
                    + ['-o', str(out)] + [str(e) for e in extra])


def _load(out, stem):
    with np.load(os.path.join(str(out), stem + '.npz'), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _assert_imported(out, method, scores5=(1, 1), scores7=(1,)):
    a = _load(out, '000005')
    np.testing.assert_array_equal(a['boxes'], OURS)
    np.testing.assert_allclose(a['scores'], scores5, rtol=1e-6)
    assert tuple(a['image_shape']) == (48, 64) and str(a['method']) == 'imported ' + method
    b = _load(out, '000007')
    np.testing.assert_array_equal(b['boxes'], OTHER)
    np.testing.assert_allclose(b['scores'], scores7, rtol=1e-6)
    with open(os.path.join(str(out), 'settings.json')) as f:
        assert json.load(f)['method'] == 'imported ' + method


# ------------------------------------------------------------------ MATLAB v7.3 in MATLAB's layout

MAT73_HEADER = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2018 HDF5 schema 1.00 .'


def write_mat73(path, variables):
    """A .mat v7.3 file as MATLAB writes one: a 512-byte header, then HDF5
    with every matrix transposed, cells as references under #refs#, chars
    as UTF-16 code units, empty matrices as their dimensions."""
    with h5py.File(path, 'w', userblock_size=512) as f:
        refs = f.create_group('#refs#')

        def put(parent, name, value):
            if isinstance(value, list):
                targets = [put(refs, 'r%d' % len(refs), v).ref for v in value]
                d = parent.create_dataset(name, data=np.array(targets, h5py.ref_dtype).reshape(-1, 1))
                d.attrs['MATLAB_class'] = np.bytes_('cell')
            elif isinstance(value, str):
                d = parent.create_dataset(name, data=np.array([ord(c) for c in value], np.uint16)[:, None])
                d.attrs['MATLAB_class'] = np.bytes_('char')
                d.attrs['MATLAB_int_decode'] = np.int32(2)
            else:
                a = np.asarray(value, np.float64)
                if a.size == 0:
                    d = parent.create_dataset(name, data=np.array(a.shape, np.uint64))
                    d.attrs['MATLAB_empty'] = np.uint8(1)
                else:
                    d = parent.create_dataset(name, data=a.T)
                d.attrs['MATLAB_class'] = np.bytes_('double')
            return d
        for name, value in variables.items():
            put(f, name, value)
    with open(path, 'r+b') as f:
        f.write(MAT73_HEADER.ljust(116) + b'\0' * 8 + b'\x00\x02IM')


def _cells(arrays):
    """A MATLAB 1xN cell array for scipy.io.savemat."""
    cell = np.empty((1, len(arrays)), object)
    for k, a in enumerate(arrays):
        cell[0, k] = a
    return cell


def test_matlab_v73_reader_transposes_and_follows_references(tmp_path):
    from caffe_mlic.data.matfile import read_mat
    path = str(tmp_path / 'x.mat')
    write_mat73(path, {'boxes': [MATLAB_YX, np.zeros((0, 0))], 'images': ['000005', 'ab'],
                       'm': np.arange(6.0).reshape(2, 3)})
    values, names = read_mat(path, ['boxes', 'images', 'm', 'absent'])
    assert sorted(names) == ['boxes', 'images', 'm'] and 'absent' not in values
    np.testing.assert_array_equal(values['boxes'][0], MATLAB_YX)
    assert values['boxes'][1].size == 0
    assert values['images'] == ['000005', 'ab']
    np.testing.assert_array_equal(values['m'], np.arange(6.0).reshape(2, 3))


def test_matlab_v73_without_h5py_says_what_to_install(tmp_path, monkeypatch):
    from caffe_mlic.data.matfile import read_mat
    path = str(tmp_path / 'x.mat')
    write_mat73(path, {'boxes': [MATLAB_YX]})
    monkeypatch.setitem(sys.modules, 'h5py', None)   # import h5py now fails
    with pytest.raises(InputError, match='x.mat: a MATLAB v7.3 .HDF5. file: reading it needs the h5py module'):
        read_mat(path, ['boxes'])


# ------------------------------------------------------------------ each format

@pytest.mark.parametrize('version', ['v5', 'v7.3'])
def test_fast_rcnn_selective_search_mat(images, tmp_path, version, capsys):
    path = tmp_path / 'voc_2007_trainval.mat'
    boxes, ids = [OTHER[:, [1, 0, 3, 2]] + 1, MATLAB_YX], ['000007', '000005']  # not in list order
    if version == 'v5':
        scipy.io.savemat(str(path), {'boxes': _cells(boxes), 'images': _cells(ids)})
    else:
        write_mat73(str(path), {'boxes': boxes, 'images': ids})
    assert _import('fast-rcnn-ss', [path], tmp_path / 'props', '--images', images, '--min-size', '1') == 0
    _assert_imported(tmp_path / 'props', 'fast-rcnn-ss')
    assert '2 images, 3 boxes read, 3 kept' in capsys.readouterr().out


def test_mat_image_ids_may_be_numbers(images, tmp_path):
    path = tmp_path / 'ss.mat'
    scipy.io.savemat(str(path), {'boxes': _cells([MATLAB_YX, OTHER[:, [1, 0, 3, 2]] + 1]),
                                 'images': np.array([[5.0, 7.0]])})
    assert _import('fast-rcnn-ss', [path], tmp_path / 'props', '--images', images, '--min-size', '1') == 0
    _assert_imported(tmp_path / 'props', 'fast-rcnn-ss')


def test_fast_rcnn_selective_search_without_ids_takes_the_list_order(images, tmp_path):
    path = tmp_path / 'ss.mat'
    scipy.io.savemat(str(path), {'boxes': _cells([OTHER[:, [1, 0, 3, 2]] + 1, MATLAB_YX])})
    listing = tmp_path / 'list.txt'
    listing.write_text('images/000007.png\n# comment\n\nimages/000005.png\n')
    assert _import('fast-rcnn-ss', [path], tmp_path / 'props', '--images', listing, '--min-size', '1') == 0
    _assert_imported(tmp_path / 'props', 'fast-rcnn-ss')


@pytest.mark.parametrize('version', ['v5', 'v7.3'])
def test_edgeboxes_mat_as_wsddn_distributes_it(images, tmp_path, version):
    path = tmp_path / 'EdgeBoxesVOC2007trainval.mat'
    variables = {'boxes': [MATLAB_YX, OTHER[:, [1, 0, 3, 2]] + 1], 'images': ['000005', '000007'],
                 'boxScores': [np.array([[0.9], [0.4]]), np.array([[0.25]])]}
    if version == 'v5':
        scipy.io.savemat(str(path), {k: _cells(v) for k, v in variables.items()})
    else:
        write_mat73(str(path), variables)
    assert _import('edgeboxes-mat', [path], tmp_path / 'props', '--images', images, '--min-size', '1') == 0
    _assert_imported(tmp_path / 'props', 'edgeboxes-mat', (0.9, 0.4), (0.25,))


def test_mcg_per_image_mat_files(images, tmp_path):
    folder = tmp_path / 'mcg'
    folder.mkdir()
    # scores in ascending order: the import sorts them, best first
    scipy.io.savemat(str(folder / '000005.mat'), {'bboxes': MATLAB_YX[::-1],
                                                  'bboxes_scores': np.array([[0.2], [0.7]])})
    scipy.io.savemat(str(folder / '000007.mat'), {'bboxes': OTHER[:, [1, 0, 3, 2]] + 1,
                                                  'bboxes_scores': np.array([[0.5]])})
    assert _import('mcg-mat', [folder], tmp_path / 'props', '--images', images, '--min-size', '1') == 0
    _assert_imported(tmp_path / 'props', 'mcg-mat', (0.7, 0.2), (0.5,))


@pytest.mark.parametrize('protocol', [2, pickle.HIGHEST_PROTOCOL])
def test_wetectron_pickle_with_voc_integer_ids(images, tmp_path, protocol):
    path = tmp_path / 'SS-voc_2007_trainval-boxes.pkl'
    data = {'boxes': [OTHER.astype(np.uint16), OURS.astype(np.uint16)],
            'scores': [np.array([0.5], np.float32), np.array([0.8, 0.3], np.float32)],
            'indexes': [7, 5]}
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    assert _import('wetectron', [path], tmp_path / 'props', '--images', images, '--min-size', '1') == 0
    _assert_imported(tmp_path / 'props', 'wetectron', (0.8, 0.3), (0.5,))


def test_wetectron_mcg_pickle_for_coco(tmp_path):
    folder = tmp_path / 'val2014'
    folder.mkdir()
    names = {42: 'COCO_val2014_000000000042.jpg', 73: 'COCO_val2014_000000000073.jpg'}
    for (cid, name), (w, h) in zip(names.items(), SIZES.values()):
        assert cv2.imwrite(str(folder / name), np.zeros((h, w, 3), np.uint8))
    path = tmp_path / 'MCG-coco_2014_minival-boxes.pkl'
    path.write_bytes(pickle.dumps({'boxes': [OURS, OTHER], 'ids': [42, 73],
                                   'scores': [np.array([[0.6], [0.1]]), np.array([[0.3]])]}))
    # ids from the file stems, then from the COCO file (ids that no stem tells)
    assert _import('wetectron', [path], tmp_path / 'a', '--images', folder, '--min-size', '1') == 0
    coco = tmp_path / 'instances.json'
    coco.write_text(json.dumps({'images': [{'id': 1, 'file_name': names[42]}, {'id': 2, 'file_name': names[73]}]}))
    path.write_bytes(pickle.dumps({'boxes': [OTHER, OURS], 'indexes': [2, 1]}))
    assert _import('wetectron', [path], tmp_path / 'b', '--images', folder, '--coco', coco, '--min-size', '1') == 0
    for out, scores in (('a', (0.6, 0.1)), ('b', (1, 1))):
        got = _load(tmp_path / out, 'COCO_val2014_000000000042')
        np.testing.assert_array_equal(got['boxes'], OURS)
        np.testing.assert_allclose(got['scores'], scores, rtol=1e-6)
        np.testing.assert_array_equal(_load(tmp_path / out, 'COCO_val2014_000000000073')['boxes'], OTHER)


def test_json_and_csv(images, tmp_path):
    data = {'000005': [list(OURS[0]) + [0.9], list(OURS[1]) + [0.4]], '000007.png': [list(OTHER[0]) + [0.25]]}
    (tmp_path / 'p.json').write_text(json.dumps(data))
    assert _import('json', [tmp_path / 'p.json'], tmp_path / 'j', '--images', images, '--min-size', '1') == 0
    _assert_imported(tmp_path / 'j', 'json', (0.9, 0.4), (0.25,))
    rows = ['score,image,x1,y1,x2,y2,extra', '0.4,000005,50,5,60,30,x', '0.25,000007,0,0,79,39,',
            '0.9,000005,3,10,40,20,y']
    (tmp_path / 'p.csv').write_text('\n'.join(rows) + '\n')
    assert _import('csv', [tmp_path / 'p.csv'], tmp_path / 'c', '--images', images, '--min-size', '1') == 0
    _assert_imported(tmp_path / 'c', 'csv', (0.9, 0.4), (0.25,))


@pytest.mark.parametrize('row, expected', [
    # (a traceback: csv's field limit, 128 KB, and an unterminated quote: pass 36b S6)
    ('000005,1,1,20,20,' + '9' * 200000, ':2: not CSV: field larger than field limit'),
    ('000005,1,1,20,20,"0.5' + 'x' * 200000, ':2: not CSV: field larger than field limit'),
    # (float() reads 2_0 as 20, as eval det's results do not: pass 36b M2)
    ('000005,1,1,2_0,20,0.9', ":2: expected an image and 5 numbers"),
    ('000005,1,1,\u0662\u0660,20,0.9', ":2: expected an image and 5 numbers"),
])
def test_a_csv_that_is_not_plain_numbers_is_one_error(tmp_path, row, expected):
    from caffe_mlic.data.proposal_formats import read_csv
    path = tmp_path / 'p.csv'
    path.write_text('image,x1,y1,x2,y2,score\n%s\n' % row.encode().decode('unicode_escape'))
    with pytest.raises(InputError) as e:
        read_csv(str(path))
    assert expected in str(e.value), str(e.value)


def test_safe_unpickler_reads_python2_style_numpy_pickles(tmp_path):
    from caffe_mlic.data.proposal_formats import read_wetectron
    path = tmp_path / 'p.pkl'
    path.write_bytes(pickle.dumps({'boxes': (OURS.astype(np.float32),), 'indexes': np.array([5]),
                                   'scores': [np.float64(0.5) * np.ones(2)]}, protocol=0))
    (entry,) = read_wetectron(str(path))
    assert entry.image_id == 5 and isinstance(entry.image_id, int)
    np.testing.assert_array_equal(entry.boxes, OURS)
    # written by numpy 2 (numpy._core), read by numpy 1
    path.write_bytes(pickle.dumps({'boxes': [OURS], 'ids': ['000005']}, protocol=2)
                     .replace(b'numpy.core', b'numpy._core'))
    assert b'numpy._core' in path.read_bytes()
    (entry,) = read_wetectron(str(path))
    np.testing.assert_array_equal(entry.boxes, OURS)
    assert entry.image_id == '000005'


def test_integer_ids_read_from_file_stems():
    from caffe_mlic.data.proposal_import import stem_number
    assert stem_number('000005') == 5
    assert stem_number('2008_000008') == 2008000008          # as wetectron reads VOC2012 ids
    assert stem_number('COCO_val2014_000000000042') == 42
    assert stem_number('000000000042') == 42                   # COCO 2017
    assert stem_number('cat') is None and stem_number('img_a') is None


# ------------------------------------------------------------------ hygiene and report

def test_hygiene_and_the_report_of_what_was_dropped(images, tmp_path, capsys):
    rows = [[3, 10, 40, 20, 0.5],      # 38 x 11: under --min-size 12
            [0, 0, 30, 30, 0.6], [0, 0, 30, 30, 0.9],   # a duplicate: the 0.9 copy stays
            [1, 1, 40, 40, 0.7], [2, 2, 50, 40, 0.8], [5, 5, 63, 47, 0.1]]   # the 0.1 one: over --max-boxes
    data = {'000005': rows, '000007': [[0, 0, 5, 5, 1.0]]}    # 000007: nothing left
    (tmp_path / 'p.json').write_text(json.dumps(data))
    assert _import('json', [tmp_path / 'p.json'], tmp_path / 'o', '--images', images,
                   '--min-size', '12', '--max-boxes', '3') == 0
    out = capsys.readouterr().out
    assert '2 images, 7 boxes read, 3 kept' in out
    assert 'dropped: 2 with a side under 12 px, 1 duplicates, 1 beyond the top 3 by score' in out
    assert 'note: 1 image(s) have no box left' in out and '000007.png' in out
    got = _load(tmp_path / 'o', '000005')
    np.testing.assert_array_equal(got['boxes'], [[0, 0, 30, 30], [2, 2, 50, 40], [1, 1, 40, 40]])
    np.testing.assert_allclose(got['scores'], [0.9, 0.8, 0.7], rtol=1e-6)
    assert len(_load(tmp_path / 'o', '000007')['boxes']) == 0


def test_clean_boxes_counted_matches_clean_boxes():
    from caffe_mlic.data.proposals import clean_boxes, clean_boxes_counted
    rng = np.random.default_rng(0)
    xs, ys = (np.sort(rng.integers(0, 100, (300, 2)), axis=1) for _ in range(2))
    boxes = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], 1)
    boxes = np.concatenate([boxes, boxes[:20]])
    scores = rng.random(320)
    b1, s1 = clean_boxes(boxes, scores, 100, 100, 10, 50)
    b2, s2, dropped = clean_boxes_counted(boxes, scores, 100, 100, 10, 50)
    np.testing.assert_array_equal(b1, b2)
    np.testing.assert_array_equal(s1, s2)
    assert sum(dropped.values()) == 320 - len(b1) and dropped['over_max'] > 0 and dropped['duplicate'] >= 1


# ------------------------------------------------------------------ bad input: all or nothing

class _Runs:
    """Unpickling it would call a function: the reader must refuse it."""

    def __reduce__(self):
        return print, ('unpickled',)


def _bad_files(tmp_path, case):
    """(format, files, extra arguments) of a bad input."""
    good = {'000005': [list(OURS[0]) + [0.9]], '000007': [list(OTHER[0]) + [0.5]]}
    j = tmp_path / 'p.json'
    if case == 'count':
        scipy.io.savemat(str(tmp_path / 'ss.mat'), {'boxes': _cells([MATLAB_YX])})
        return 'fast-rcnn-ss', [tmp_path / 'ss.mat'], []
    if case == 'unknown id':
        j.write_text(json.dumps(dict(good, nosuch=[[0, 0, 5, 5, 1]])))
    elif case == 'no proposals':
        j.write_text(json.dumps({'000005': good['000005']}))
    elif case == 'outside':
        j.write_text(json.dumps(dict(good, **{'000005': [[3, 10, 64, 20, 1]]})))
    elif case == 'swapped axes':
        scipy.io.savemat(str(tmp_path / 'ss.mat'), {'boxes': _cells([OURS + 1, OTHER + 1]),
                                                    'images': _cells(['000005', '000007'])})
        return 'fast-rcnn-ss', [tmp_path / 'ss.mat'], []
    elif case == 'nan score':     # JSON has no NaN (the reader refuses the file); CSV has
        (tmp_path / 'p.csv').write_text('image,x1,y1,x2,y2,score\n000005,3,10,40,20,nan\n000007,0,0,9,9,1\n')
        return 'csv', [tmp_path / 'p.csv'], []
    elif case == 'huge score':    # finite, but inf as the float32 an .npz holds (pass 39b S3)
        (tmp_path / 'p.csv').write_text('image,x1,y1,x2,y2,score\n000005,3,10,40,20,-1e308\n000007,0,0,9,9,1\n')
        return 'csv', [tmp_path / 'p.csv'], []
    elif case == 'json huge score':
        j.write_text(json.dumps(dict(good, **{'000005': [[3, 10, 40, 20, 1e39]]})))
    elif case == 'json nan':
        j.write_text(json.dumps(dict(good, **{'000005': [[3, 10, 40, 20, float('nan')]]})))
    elif case == 'inverted':
        j.write_text(json.dumps(dict(good, **{'000005': [[40, 10, 3, 20, 1]]})))
    elif case == 'mat layout':
        scipy.io.savemat(str(tmp_path / 'ss.mat'), {'all_boxes': _cells([MATLAB_YX])})
        return 'fast-rcnn-ss', [tmp_path / 'ss.mat'], []
    elif case == 'box shape':
        scipy.io.savemat(str(tmp_path / 'ss.mat'), {'boxes': _cells([MATLAB_YX.T, OTHER])})
        return 'fast-rcnn-ss', [tmp_path / 'ss.mat'], []
    elif case == 'pickle layout':
        (tmp_path / 'p.pkl').write_bytes(pickle.dumps({'boxes': [OURS, OTHER]}))
        return 'wetectron', [tmp_path / 'p.pkl'], []
    elif case == 'pickle class':
        (tmp_path / 'p.pkl').write_bytes(pickle.dumps({'boxes': [OURS], 'indexes': [_Runs()]}))
        return 'wetectron', [tmp_path / 'p.pkl'], []
    elif case == 'csv header':
        (tmp_path / 'p.csv').write_text('image,x1,y1,x2,y2\n000005,3,10,40,20\n')
        return 'csv', [tmp_path / 'p.csv'], []
    elif case == 'csv number':
        (tmp_path / 'p.csv').write_text('image,x1,y1,x2,y2,score\n000005,3,10,40,20,1\n000007,0,0,x,5,1\n')
        return 'csv', [tmp_path / 'p.csv'], []
    elif case == 'csv outside':
        (tmp_path / 'p.csv').write_text('image,x1,y1,x2,y2,score\n000005,3,10,40,20,1\n000005,3,10,40,48,1\n'
                                        '000007,0,0,9,9,1\n')
        return 'csv', [tmp_path / 'p.csv'], []
    elif case == 'json rows':
        j.write_text(json.dumps(dict(good, **{'000005': [[3, 10, 40, 20]]})))
    elif case == 'twice':
        (tmp_path / 'q.json').write_text(json.dumps({'000005.png': good['000005']}))
        j.write_text(json.dumps(good))
        return 'json', [j, tmp_path / 'q.json'], []
    return 'json', [j], []


@pytest.mark.parametrize('case, needles', [
    ('count', ['ss.mat', 'has 1 images and no image ids', 'the image list has 2']),
    ('unknown id', ['p.json', '"nosuch"', "image id 'nosuch' is not in the image list"]),
    ('no proposals', ['000007.png', 'in the image list but in none of the proposal files', 'p.json']),
    ('outside', ['p.json', 'image 000005.png', 'box 0 (x1 y1 x2 y2 = 3 10 64 20, 0-based) is outside the 64x48']),
    ('swapped axes', ['ss.mat', 'boxes{1}, image 000005.png', 'box 1', 'outside the 64x48']),
    ('nan score', ['p.csv:2', 'image 000005.png', 'score nan is not a finite number']),
    ('json nan', ['p.json', 'not valid JSON: NaN is not JSON']),
    ('huge score', ['p.csv:2', 'image 000005.png', 'box 0: score -1e+308 is beyond the float32 range']),
    ('json huge score', ['p.json', 'image 000005.png', 'box 0: score 1e+39 is beyond the float32 range']),
    ('inverted', ['p.json', 'image 000005.png', 'has x2 < x1 or y2 < y1']),
    ('mat layout', ['ss.mat', "no variable 'boxes' (the file has all_boxes)"]),
    ('box shape', ['ss.mat', 'boxes{1}', 'expected a (K, 4) matrix, got a 4x2']),
    ('pickle layout', ['p.pkl', 'needs "boxes" and "indexes"', 'not a wetectron proposal file']),
    ('pickle class', ['p.pkl', 'builtins.print', 'only those are unpickled']),
    ('csv header', ['p.csv:1', 'lacks score']),
    ('csv number', ['p.csv:3', 'expected an image and 5 numbers']),
    ('csv outside', ['p.csv:3', 'image 000005.png', 'box 1 (x1 y1 x2 y2 = 3 10 40 48, 0-based) is outside']),
    ('json rows', ['p.json', '"000005"', '5 numbers each']),
    ('twice', ['q.json', 'image 000005.png again', 'p.json']),
])
def test_bad_input_names_file_and_image_and_writes_nothing(images, tmp_path, capsys, case, needles):
    fmt, files, extra = _bad_files(tmp_path, case)
    out = tmp_path / 'props'
    assert _import(fmt, files, out, '--images', images, '--min-size', '1', *extra) == 1
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic proposals import: ') and 'Traceback' not in err
    for needle in needles:
        assert needle in err, err
    assert not out.exists()


def test_mapping_and_box_problems_are_listed_together(images, tmp_path, capsys):
    """An id not in the list and a box outside its image: the box problem was
    hidden until the mapping was fixed."""
    data = {'000005': [[3, 10, 64, 20, 1]], '000007': [[0, 0, 9, 9, 1]],
            'nosuch': [[0, 0, 5, 5, 1]], '000007.png': [[0, 0, 9, 9, 1]]}
    (tmp_path / 'p.json').write_text(json.dumps(data))
    assert _import('json', [tmp_path / 'p.json'], tmp_path / 'props', '--images', images, '--min-size', '1') == 1
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic proposals import: 3 problems in proposals ')
    assert "image id 'nosuch' is not in the image list" in err
    assert 'image 000007.png again' in err
    assert 'box 0 (x1 y1 x2 y2 = 3 10 64 20, 0-based) is outside the 64x48 image' in err
    assert not (tmp_path / 'props').exists()


def test_one_error_counts_what_it_does_not_list(images, tmp_path, capsys):
    """25 unknown ids and a box outside: 20 listed, the rest counted."""
    data = {'000005': [[3, 10, 64, 20, 1]], '000007': [[0, 0, 9, 9, 1]]}
    data.update(('x%02d' % k, [[0, 0, 5, 5, 1]]) for k in range(25))
    (tmp_path / 'p.json').write_text(json.dumps(data))
    assert _import('json', [tmp_path / 'p.json'], tmp_path / 'props', '--images', images, '--min-size', '1') == 1
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic proposals import: 26 problems in proposals ')
    assert err.endswith('  ... and 6 more problems\n') and len(err.splitlines()) == 22


def test_an_error_leaves_an_existing_folder_as_it_was(images, tmp_path, capsys):
    out = tmp_path / 'props'
    (tmp_path / 'p.json').write_text(json.dumps({'000005': [[3, 10, 40, 20, 1]], '000007': [[0, 0, 9, 9, 1]]}))
    assert _import('json', [tmp_path / 'p.json'], out, '--images', images, '--min-size', '1') == 0
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    (tmp_path / 'p.json').write_text(json.dumps({'000005': [[3, 10, 40, 20, 1]], '000007': [[0, 0, 99, 9, 1]]}))
    assert _import('json', [tmp_path / 'p.json'], out, '--images', images, '--min-size', '1') == 1
    assert '000007' in capsys.readouterr().err
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before


def test_a_folder_of_other_proposals_is_refused_unless_replaced(images, tmp_path, capsys):
    out = tmp_path / 'props'
    assert cli.main(['proposals', str(images), '-o', str(out), '--min-size', '8', '-q']) == 0  # still works
    assert sorted(os.listdir(out)) == ['000005.npz', '000007.npz', 'settings.json']
    (tmp_path / 'p.json').write_text(json.dumps({'000005': [[3, 10, 40, 20, 1]], '000007': [[0, 0, 9, 9, 1]]}))
    assert _import('json', [tmp_path / 'p.json'], out, '--images', images) == 2
    assert 'pass --replace to replace them' in capsys.readouterr().err
    assert _import('json', [tmp_path / 'p.json'], out, '--images', images, '--min-size', '1', '--replace') == 0
    assert str(_load(out, '000005')['method']) == 'imported json'
    assert sorted(os.listdir(out)) == ['000005.npz', '000007.npz', 'settings.json']


def test_usage_errors_of_import(images, tmp_path, capsys):
    assert cli.main(['proposals', 'import', 'xml', 'f', '-o', str(tmp_path / 'o'), '--images', str(images)]) == 2
    assert "argument FORMAT: invalid choice: 'xml'" in capsys.readouterr().err
    assert cli.main(['proposals', 'import', '--no-such-option']) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith('caffe-mlic proposals import: ')
    assert _import('json', ['p.json'], tmp_path / 'o', '--images', images, '--max-boxes', '0') == 2
    assert 'argument --max-boxes: must be an integer from 1 to 1000000' in capsys.readouterr().err


def test_image_list_problems(images, tmp_path, capsys):
    (tmp_path / 'p.json').write_text('{}')
    other = tmp_path / 'other'
    other.mkdir()
    cv2.imwrite(str(other / '000005.jpg'), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / 'list.txt').write_text('images/000005.png\nimages/missing.png\nother\n')
    assert _import('json', [tmp_path / 'p.json'], tmp_path / 'o', '--images', images, other,
                   tmp_path / 'list.txt') == 1
    err = capsys.readouterr().err
    assert 'list.txt:2: image not found' in err
    assert 'list.txt:3: image is a folder, not a file: %s' % other in err
    assert 'images of the same file stem' in err and 'the same image twice' in err


def test_a_fifo_among_the_images_is_an_error_not_a_hang(images, tmp_path):
    """`proposals import json X -o O --images DIR` with a FIFO named like an
    image in DIR hung reading its size; `--images FIFO` said "no such file or
    folder". Both now name the file as not a regular file."""
    data = {'000005': [list(OURS[0]) + [0.9]], 'fifo': [list(OURS[0]) + [0.5]]}
    (tmp_path / 'p.json').write_text(json.dumps(data))
    os.mkfifo(str(images / 'fifo.png'))
    os.mkfifo(str(tmp_path / 'list'))
    for given in (images, tmp_path / 'list'):
        done = subprocess.run([sys.executable, '-m', 'caffe_mlic.cli', 'proposals', 'import', 'json',
                               str(tmp_path / 'p.json'), '-o', str(tmp_path / 'o'), '--images', str(given)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        assert '%s: not a regular file (a device, FIFO or folder)' % (
            images / 'fifo.png' if given == images else given) in done.stderr
        assert 'Traceback' not in done.stderr and not (tmp_path / 'o').exists()


# ------------------------------------------------------------------ end to end: the real command

def test_imported_folder_feeds_datalist_build_through_the_console_command(images, tmp_path):
    pkl = tmp_path / 'props.pkl'
    pkl.write_bytes(pickle.dumps({'boxes': [OURS, OTHER], 'scores': [np.array([0.9, 0.4]), np.array([1.0])],
                                  'indexes': [5, 7]}))
    res = subprocess.run(CLI + ['proposals', 'import', 'wetectron', str(pkl), '-o', str(tmp_path / 'props'),
                                '--images', str(images), '--min-size', '1'],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (tmp_path / 'classes.txt').write_text('cat\ndog\n')
    (tmp_path / 'labels.txt').write_text('000005.png cat\n000007.png dog\n')
    out = tmp_path / 'train.txt'
    res = subprocess.run(CLI + ['datalist', 'build', '--labels', str(tmp_path / 'labels.txt'), '--classes',
                                str(tmp_path / 'classes.txt'), '--images', str(images), '--proposals',
                                str(tmp_path / 'props'), '-o', str(out), '--bbox-num', '2', '--size', '32'],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    first = out.read_text().splitlines()[0].split()
    assert first[0].endswith('000005.png') and first[1:3] == ['1', '0']
    # 64x48 -> 32x32: x * 0.5, y * 0.6667, floored
    assert first[3:] == ['1', '6', '20', '13', '0.9', '25', '3', '30', '20', '0.4']


# ------------------------------------------------------------------ COCO results

def _gt_with_ids():
    from caffe_mlic.evaluation.detection import ground_truth
    return ground_truth(['person', 'car'], ['a', 'b'],
                        [[('person', (0, 0, 9, 9), False)], [('car', (10, 10, 29, 19), False)]],
                        'gt.json', coco_image_ids=[42, 7], category_ids=[1, 3])


def test_coco_bbox_is_the_detectron_conversion_and_reading_inverts_it():
    from caffe_mlic.evaluation.detection import box_from_coco, box_to_coco
    assert box_to_coco((3, 10, 40, 20)) == [3, 10, 38, 11]
    assert box_from_coco([3, 10, 38, 11]) == [3, 10, 40, 20]
    assert box_from_coco([3, 10, 0.5, 0]) == [3, 10, 3, 10]   # under a pixel: one pixel


def test_coco_results_round_trip_and_bad_results(tmp_path):
    from caffe_mlic.evaluation.detection import (ClassDetections, evaluate_detections, read_coco_results,
                                                 write_coco_results)
    gt = _gt_with_ids()
    dets = {'person': ClassDetections(['a', 'b'], np.array([0.9, 0.2]), np.array([[0, 0, 9, 9], [1, 2, 3, 4.5]])),
            'car': ClassDetections(['b'], np.array([0.7]), np.array([[10, 10, 29, 19]]))}
    path = str(tmp_path / 'r.json')
    write_coco_results(path, dets, gt)
    with open(path) as f:
        written = json.load(f)
    assert written[0] == {'image_id': 42, 'category_id': 1, 'bbox': [0.0, 0.0, 10.0, 10.0], 'score': 0.9}
    assert written[2] == {'image_id': 7, 'category_id': 3, 'bbox': [10.0, 10.0, 20.0, 10.0], 'score': 0.7}
    back = read_coco_results(path, gt)
    for name, d in dets.items():
        assert back[name].image_ids == d.image_ids
        np.testing.assert_array_equal(back[name].boxes, d.boxes)
        np.testing.assert_array_equal(back[name].scores, d.scores)
    assert evaluate_detections(gt, back) == evaluate_detections(gt, dets)
    bad = [{'image_id': 5, 'category_id': 1, 'bbox': [0, 0, 1, 1], 'score': 1},
           {'image_id': 42, 'category_id': 2, 'bbox': [0, 0, 1, 1], 'score': 1},
           {'image_id': 42, 'category_id': 1, 'bbox': [0, 0, -1, 1], 'score': 1},
           {'image_id': 42, 'category_id': 1, 'bbox': [0, 0, 1, 1], 'score': 'high'},
           {'image_id': True, 'category_id': 1, 'bbox': [0, 0, 1, 1], 'score': 1}, 'x']
    (tmp_path / 'bad.json').write_text(json.dumps(bad))
    with pytest.raises(InputError) as e:
        read_coco_results(str(tmp_path / 'bad.json'), gt)
    text = str(e.value)
    assert '6 problems in detection results' in text
    for needle in ('results[0]: image_id 5 is not', 'results[1]: category_id 2 is not',
                   'results[2]: "bbox" must be', 'results[3]: "score" must be', 'results[4]: image_id true',
                   'results[5]: expected'):
        assert needle in text, text
    no_ids = gt._replace(coco_image_ids=None, category_ids=None)
    with pytest.raises(InputError, match='no COCO image and category ids'):
        read_coco_results(path, no_ids)


def test_datalist_build_coco_keeps_the_ids(images, tmp_path, capsys):
    from caffe_mlic.evaluation.detection import read_gt_json
    data = {'images': [{'id': 42, 'file_name': '000005.png', 'width': 64, 'height': 48},
                       {'id': 7, 'file_name': '000007.png', 'width': 80, 'height': 40}],
            'categories': [{'id': 3, 'name': 'car'}, {'id': 1, 'name': 'person'}],
            'annotations': [{'id': 1, 'image_id': 42, 'category_id': 3, 'bbox': [3, 10, 38, 11]}]}
    (tmp_path / 'inst.json').write_text(json.dumps(data))
    (tmp_path / 'classes.txt').write_text('person\nbike\ncar\n')
    out = tmp_path / 'dl.txt'
    assert cli.main(['datalist', 'build', '--coco', str(tmp_path / 'inst.json'), '--images', str(images),
                     '--whole-image', '-o', str(out), '--classes', str(tmp_path / 'classes.txt')]) == 0
    gt = json.loads((tmp_path / 'dl.gt.json').read_text())
    assert gt['category_ids'] == [1, None, 3]
    assert [im['coco_id'] for im in gt['images']] == [42, 7]
    assert gt['images'][0]['objects'][0]['box'] == [3, 10, 40, 20]
    read = read_gt_json(str(tmp_path / 'dl.gt.json'))
    assert read.coco_image_ids == [42, 7] and read.category_ids == [1, None, 3]


# ------------------------------------------------------------------ detect, eval det, classify, eval cls

@pytest.fixture(scope='module')
def coco_run(tmp_path_factory):
    """Tiny generated nets, the tiny dataset as a COCO set (ids 101.., categories
    5, 2, 9), its datalist (gt.json with ids) and `detect --control random` on it."""
    from caffe_mlic.netspec import netgen
    from caffe_mlic.caffe import prototxt
    from tests.tinydata import tiny_mlic_config, write_tiny_dataset
    root = tmp_path_factory.mktemp('coco_results')
    listing = write_tiny_dataset(str(root / 'images'), n_images=6, num_classes=3, bbox_num=8, size=96)
    netgen.generate(str(root / 'nets'), tiny_mlic_config(listing))
    student = root / 'nets' / 'kd' / 'student_deploy.prototxt'
    (root / 'student.caffemodel').write_bytes(prototxt.net_weights_bytes(prototxt.caffe_net(student, 'TEST', seed=3)))
    images, annotations = [], []
    os.makedirs(root / 'props')
    for k, line in enumerate(open(listing).read().split('\n')[:-1]):
        fields = line.split()
        h, w = cv2.imread(fields[0]).shape[:2]
        boxes = np.array(fields[4:], np.float64).reshape(8, 5)
        pixel = np.minimum(np.floor(boxes[:, :4] * np.array([w / 96, h / 96] * 2)), [w - 1, h - 1] * 2)
        np.savez(root / 'props' / ('img%03d.npz' % k), boxes=pixel.astype(np.float32),
                 scores=boxes[:, 4].astype(np.float32), image_shape=np.array([h, w], np.int32))
        images.append({'id': 101 + k, 'file_name': os.path.basename(fields[0]), 'width': w, 'height': h})
        for j, cat in enumerate((5, 2, 9)):     # each class on one of the proposals: AP > 0
            x1, y1, x2, y2 = pixel[(k + j) % 8]
            annotations.append({'id': len(annotations) + 1, 'image_id': 101 + k, 'category_id': cat,
                                'bbox': [x1, y1, x2 - x1 + 1, y2 - y1 + 1]})
    categories = [{'id': 5, 'name': 'c0'}, {'id': 2, 'name': 'c1'}, {'id': 9, 'name': 'c2'}]
    (root / 'inst.json').write_text(json.dumps({'images': images, 'annotations': annotations,
                                                'categories': categories}))
    (root / 'classes.txt').write_text('c0\nc1\nc2\n')
    assert cli.main(['datalist', 'build', '--coco', str(root / 'inst.json'), '--images', str(root / 'images'),
                     '--proposals', str(root / 'props'), '-o', str(root / 'dl.txt'), '--bbox-num', '8',
                     '--size', '96', '--classes', str(root / 'classes.txt')]) == 0
    assert cli.main(['detect', '--net', str(root / 'nets' / 'wsddn' / 'wsddn_deploy.prototxt'), '--control',
                     'random', str(root / 'images'), '-o', str(root / 'det'), '--proposals', str(root / 'props'),
                     '--coco-ids', str(root / 'dl.gt.json'), '-q']) == 0
    return root


def test_detect_writes_coco_results_that_eval_det_scores_as_the_devkit_files(coco_run, capsys):
    root = coco_run
    results = json.loads((root / 'det' / 'coco_results.json').read_text())
    assert results and {r['category_id'] for r in results} <= {5, 2, 9}
    assert {r['image_id'] for r in results} <= set(range(101, 107))
    # the same detection in both files: devkit 1-based corners, COCO x, y, w, h
    line = (root / 'det' / 'comp4_det_test_c1.txt').read_text().splitlines()[0].split()
    x1, y1, x2, y2 = (float(v) - 1 for v in line[2:])
    first = next(r for r in results if r['category_id'] == 2)
    assert first['image_id'] == 101 + int(line[0][3:]) and first['score'] == pytest.approx(float(line[1]))
    assert first['bbox'] == pytest.approx([x1, y1, x2 - x1 + 1, y2 - y1 + 1])
    gt = str(root / 'dl.gt.json')
    for results_path, out in ((root / 'det', 'devkit.json'), (root / 'det' / 'coco_results.json', 'coco.json')):
        assert cli.main(['eval', 'det', '--gt', gt, '--results', str(results_path), '--json', str(root / out)]) == 0
    devkit, coco = (json.loads((root / f).read_text()) for f in ('devkit.json', 'coco.json'))
    assert devkit == coco and devkit['AP'] > 0
    # eval det also writes them, from the devkit files: the same results
    assert cli.main(['eval', 'det', '--gt', gt, '--results', str(root / 'det'), '--save-coco',
                     str(root / 'again.json')]) == 0
    again = json.loads((root / 'again.json').read_text())
    key = (lambda r: (r['category_id'], r['image_id'], -r['score'], r['bbox']))
    assert len(again) == len(results)
    for a, b in zip(sorted(again, key=key), sorted(results, key=key)):
        assert a['bbox'] == pytest.approx(b['bbox']) and a['score'] == pytest.approx(b['score'])
    capsys.readouterr()


def test_coco_results_need_the_ids(coco_run, tmp_path, capsys):
    root = coco_run
    plain = json.loads((root / 'dl.gt.json').read_text())
    del plain['category_ids']
    (tmp_path / 'plain.gt.json').write_text(json.dumps(plain))
    assert cli.main(['eval', 'det', '--gt', str(tmp_path / 'plain.gt.json'), '--results',
                     str(root / 'det' / 'coco_results.json')]) == 1
    assert 'no COCO image and category ids' in capsys.readouterr().err
    some = json.loads((root / 'dl.gt.json').read_text())
    some['images'] = some['images'][:2]
    (tmp_path / 'some.gt.json').write_text(json.dumps(some))
    assert cli.main(['detect', '--net', str(root / 'nets' / 'wsddn' / 'wsddn_deploy.prototxt'), '--control',
                     'random', str(root / 'images'), '-o', str(tmp_path / 'det'), '--proposals',
                     str(root / 'props'), '--coco-ids', str(tmp_path / 'some.gt.json'), '-q']) == 1
    assert 'has no COCO image id for 4 of the images' in capsys.readouterr().err
    assert not (tmp_path / 'det').exists()


def test_eval_cls_writes_csv(tmp_path, capsys):
    scores = np.array([[0.9, 0.6], [0.4, 0.8], [0.6, 0.1], [0.3, 0.2]])
    labels = np.array([[1, 0], [0, 1], [0, 0], [1, 0]])      # mAP 87.5, CP 50: each row is its own
    np.save(tmp_path / 's.npy', scores)
    np.save(tmp_path / 'l.npy', labels)
    (tmp_path / 'classes.txt').write_text('cat\ndog\n')
    assert cli.main(['eval', 'cls', '--scores', str(tmp_path / 's.npy'), '--labels', str(tmp_path / 'l.npy'),
                     '--classes', str(tmp_path / 'classes.txt'), '--json', str(tmp_path / 'm.json'),
                     '--csv', str(tmp_path / 'm.csv')]) == 0
    metrics = json.loads((tmp_path / 'm.json').read_text())
    with open(tmp_path / 'm.csv', newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['metric', 'class', 'value']
    assert rows[1:3] == [['AP', 'cat', repr(metrics['AP'][0])], ['AP', 'dog', repr(metrics['AP'][1])]]
    table = {(m, c): v for m, c, v in rows[1:]}
    assert len(rows) == 1 + 2 + 1 + 12
    for key in ('mAP', 'CP', 'OF1', 'CF1_top3'):
        assert float(table[(key, '')]) == pytest.approx(metrics[key])
    capsys.readouterr()


def test_classify_writes_csv(coco_run, tmp_path, capsys):
    root = coco_run
    assert cli.main(['classify', '--net', str(root / 'nets' / 'kd' / 'student_deploy.prototxt'), '--weights',
                     str(root / 'student.caffemodel'), str(root / 'images'), '--classes', str(root / 'classes.txt'),
                     '-o', str(tmp_path / 'c.json'), '--csv', str(tmp_path / 'c.csv')]) == 0
    results = json.loads((tmp_path / 'c.json').read_text())['results']
    with open(tmp_path / 'c.csv', newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['image', 'c0', 'c1', 'c2'] and len(rows) == 1 + 6
    for row, r in zip(rows[1:], results):
        assert row[0] == r['image']
        assert [float(v) for v in row[1:]] == [r['probabilities'][c] for c in ('c0', 'c1', 'c2')]
    capsys.readouterr()


def _deep(depth):
    value = [1]
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize('boxes', [[[[1, 2], [3]]], [_deep(40)]])
def test_wetectron_ragged_or_overdeep_boxes_are_named(images, tmp_path, capsys, boxes):
    """np.asarray raised a ValueError traceback on rows of unequal length."""
    path = tmp_path / 'r.pkl'
    path.write_bytes(pickle.dumps({'boxes': boxes, 'indexes': [5]}))
    assert _import('wetectron', [path], tmp_path / 'props', '--images', images) == 1
    err = capsys.readouterr().err
    assert 'r.pkl: boxes[0]: expected a numeric (K, 4) matrix' in err and 'Traceback' not in err, err
    assert not (tmp_path / 'props').exists()


def test_a_proposals_file_of_another_kind_is_named_as_it_is(tmp_path):
    """A FIFO, /dev/null, a folder or a symlink loop given as the proposals
    file was "no such file" (pass 44b M1)."""
    from caffe_mlic.data.proposal_formats import read_entries
    from caffe_mlic.errors import InputError
    os.mkfifo(str(tmp_path / 'fifo'))
    (tmp_path / 'folder').mkdir()
    os.symlink('loop', str(tmp_path / 'loop'))
    said = {}
    for path in (str(tmp_path / 'fifo'), '/dev/null', str(tmp_path / 'folder'), str(tmp_path / 'loop'),
                 str(tmp_path / 'none')):
        with pytest.raises(InputError) as e:
            read_entries('csv', [path])
        said[os.path.basename(path)] = e.value.problems[0].message
    assert said == {'fifo': 'not a regular file (a device, FIFO or folder)',
                    'null': 'not a regular file (a device, FIFO or folder)',
                    'folder': 'not a regular file (a device, FIFO or folder)',
                    'loop': 'a symlink loop, not a file', 'none': 'no such file'}
