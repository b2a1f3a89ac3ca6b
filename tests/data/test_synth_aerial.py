"""caffe-mlic synth --task seg: synthetic aerial tiles in the ISPRS layout."""
import os
import subprocess
import sys

import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.data.labelmaps import IGNORE_LABEL, erode_boundaries, isprs_palette, load_palette, read_label_map
from caffe_mlic.data.synth_aerial import CLASSES, make_synthetic_aerial
from tests.tinydata import tree_digest

N_TILES, SIZE = 10, (320, 240)


def _lines(root, split):
    with open(os.path.join(root, split + '.txt')) as f:
        return [line.split() for line in f]


def _read_rgb(path):
    import cv2
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope='module')
def seg_set(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synth_seg') / 'isprs')
    summary = make_synthetic_aerial(root, N_TILES, SIZE, seed=5, show_progress=False)
    return root, summary


def test_layout_and_datalists(seg_set):
    root, summary = seg_set
    with open(os.path.join(root, 'classes.txt')) as f:
        assert f.read().split() == list(CLASSES) == isprs_palette().names
    palette = load_palette(os.path.join(root, 'palette.txt'))
    assert palette.names == isprs_palette().names
    assert np.array_equal(palette.colours, isprs_palette().colours)
    listed = {s: _lines(root, s) for s in ('train', 'val', 'test')}
    assert [len(v) for v in listed.values()] == [6, 2, 2]
    names = ['top_mosaic_09cm_area%d' % (i + 1) for i in range(N_TILES)]
    images = sorted(os.path.basename(line[0])[:-4] for v in listed.values() for line in v)
    assert images == sorted(names)          # the splits partition the tiles
    for split, lines in listed.items():
        assert [os.path.basename(line[0])[:-4] for line in lines] == summary['splits'][split]
        for image, label in lines:
            assert image.startswith('top/') and label.startswith('gts_for_participants/')
            assert os.path.basename(image) == os.path.basename(label)
            rgb = _read_rgb(os.path.join(root, image))
            labels = read_label_map(os.path.join(root, label))  # no unknown colour
            assert rgb.shape == (SIZE[1], SIZE[0], 3) and labels.shape == rgb.shape[:2]
            assert labels.max() < len(CLASSES)
            eroded = os.path.join(root, 'gts_eroded_for_participants',
                                  os.path.basename(label)[:-4] + '_noBoundary.tif')
            assert os.path.isfile(eroded)
    from caffe_mlic.data.datalist import read_seg_datalist
    assert len(read_seg_datalist(os.path.join(root, 'train.txt'), root_folder=root)) == 6


def test_eroded_labels_are_black_on_boundaries(seg_set):
    root, _ = seg_set
    for i in range(N_TILES):
        name = 'top_mosaic_09cm_area%d' % (i + 1)
        full = read_label_map(os.path.join(root, 'gts_for_participants', name + '.tif'))
        path = os.path.join(root, 'gts_eroded_for_participants', name + '_noBoundary.tif')
        eroded = read_label_map(path)
        assert np.array_equal(eroded, erode_boundaries(full, 3))
        black = (_read_rgb(path) == 0).all(-1)
        assert np.array_equal(black, eroded == IGNORE_LABEL) and black.any()


def test_all_classes_and_shares(seg_set):
    root, summary = seg_set
    counts = np.zeros(len(CLASSES), np.int64)
    for i in range(N_TILES):
        path = os.path.join(root, 'gts_for_participants', 'top_mosaic_09cm_area%d.tif' % (i + 1))
        counts += np.bincount(read_label_map(path).ravel(), minlength=len(CLASSES))
    assert np.array_equal(counts, summary['counts'])
    shares = counts / counts.sum()
    print('class shares', dict(zip(CLASSES, np.round(shares, 3))))
    assert (counts > 0).all()
    assert shares[4] < 0.05 and shares[5] < 0.05       # car and clutter are rare
    assert (shares[:4] > 0.08).all()


def test_colour_alone_is_not_enough(seg_set):
    """A nearest-mean-colour classifier per pixel: better than the majority
    class, but far from perfect."""
    root, _ = seg_set

    def pixels(split):
        xs, ys = [], []
        for image, label in _lines(root, split):
            xs.append(_read_rgb(os.path.join(root, image)).reshape(-1, 3).astype(np.float32))
            ys.append(read_label_map(os.path.join(root, label)).ravel())
        return np.concatenate(xs), np.concatenate(ys)

    x, y = pixels('train')
    means = np.stack([x[y == k].mean(0) for k in range(len(CLASSES))])
    xt, yt = pixels('test')
    pred = np.argmin(((xt[:, None, :] - means[None]) ** 2).sum(-1), 1)
    accuracy = (pred == yt).mean()
    majority = np.bincount(yt).max() / yt.size
    print('nearest-mean accuracy %.3f, majority share %.3f' % (accuracy, majority))
    assert majority < accuracy < 0.9


def test_deterministic_with_seed(tmp_path):
    kw = dict(tile_size=(160, 128), show_progress=False)
    make_synthetic_aerial(str(tmp_path / 'a'), 3, seed=2, **kw)
    make_synthetic_aerial(str(tmp_path / 'b'), 3, seed=2, **kw)
    make_synthetic_aerial(str(tmp_path / 'c'), 3, seed=3, **kw)
    make_synthetic_aerial(str(tmp_path / 'd'), 2, seed=2, split=(1, 0, 0), **kw)
    a, b, c, d = (tree_digest(str(tmp_path / x)) for x in 'abcd')
    assert a == b
    assert set(a) == set(c)
    tifs = [k for k in a if k.endswith('.tif')]
    assert len(tifs) == 9 and all(a[k] != c[k] for k in tifs)
    # a tile depends on the seed and its index only, not on the set's size
    assert all(d[k] == a[k] for k in d if k.endswith('.tif'))
    assert not [k for k in a if os.path.basename(k).startswith('.')]  # no temp files left


def test_existing_set_and_force(tmp_path, capsys):
    out = str(tmp_path / 'set')
    args = ['synth', '--task', 'seg', out, '--images', '2', '--tile-size', '128x96']
    assert cli.main(args + ['--seed', '1']) == 0
    printed = capsys.readouterr().out
    assert 'wrote 2 tiles of 128x96 px' in printed and 'class shares: impervious_surfaces' in printed
    before = tree_digest(out)
    assert cli.main(args + ['-q']) == 2
    assert 'already holds a data set' in capsys.readouterr().err
    assert tree_digest(out) == before
    # a detection set is not written over a seg set either
    assert cli.main(['synth', out, '--images', '2', '-q']) == 2
    assert 'already holds a data set' in capsys.readouterr().err
    assert cli.main(args + ['--seed', '2', '--force', '-q']) == 0
    after = tree_digest(out)
    assert set(after) == set(before) and after != before


@pytest.mark.parametrize('bad, flag', [
    (['--tile-size', '32x32'], '--tile-size'),
    (['--tile-size', 'x'], '--tile-size'),
    (['--images', '0'], '--images'),
    (['--split', '1,2'], '--split'),
    (['--seed', '-1'], '--seed'),
    (['--classes', '3'], '--classes'),          # detection-only options are refused
    (['--image-size', '64x64'], '--image-size'),
    (['--task', 'depth'], '--task'),
])
def test_bad_options(tmp_path, capsys, bad, flag):
    out = str(tmp_path / 'x')
    task = [] if '--task' in bad else ['--task', 'seg']
    assert cli.main(['synth', out] + task + bad + ['-q']) == 2
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic synth: ') and flag in err
    assert not os.path.exists(out)


def test_seg_options_refused_for_detection(tmp_path, capsys):
    assert cli.main(['synth', str(tmp_path / 'x'), '--tile-size', '200x200', '-q']) == 2
    assert 'argument --tile-size: only for --task seg' in capsys.readouterr().err


def test_cli_subprocess_bad_tile_size(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), 'caffe-mlic')
    cmd = [exe] if os.path.exists(exe) else [sys.executable, '-m', 'caffe_mlic.cli']
    out = str(tmp_path / 'x')
    proc = subprocess.run(cmd + ['synth', '--task', 'seg', out, '--tile-size', '0x10'],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith('caffe-mlic synth: argument --tile-size:')
    assert '0x10' in proc.stderr and 'Traceback' not in proc.stderr
    assert not os.path.exists(out)
