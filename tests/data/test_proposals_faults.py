"""Proposals: methods are not mixed in one folder unless recomputed, tiny
images and images with no box are named."""
import json
import os

import cv2
import numpy as np
import pytest

from caffe_mlic import cli


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


@pytest.mark.parametrize('args, message', [
    (['--jobs', '0'], 'argument --jobs: must be an integer from 1 to %d' % (4 * (os.cpu_count() or 1))),
    (['--jobs', '100000'], 'argument --jobs: must be an integer from 1 to'),
    (['--max-boxes', '3000000000'], "argument --max-boxes: must be an integer from 1 to 1000000, got '3000000000'"),
    (['--min-size', '-5'], 'argument --min-size: must be an integer >= 1'),
    (['--alpha', 'nan'], "argument --alpha: must be a finite number in (0, 1], got 'nan'"),
    (['--beta', '0'], 'argument --beta: must be a finite number in (0, 1]'),
])
def test_proposals_refuse_impossible_numbers(photos, tmp_path, capsys, args, message):
    """--max-boxes 3000000000 failed each image ('integer won't fit into a C int');
    --jobs had no bound (a process per image)."""
    assert cli.main(['proposals', str(photos), '-o', str(tmp_path / 'p'), '-q'] + args) == 2
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic proposals: %s' % message) and err.count('\n') == 1, err
    assert not (tmp_path / 'p').exists()


def test_proposals_help_states_the_bounds(capsys):
    with pytest.raises(SystemExit):
        cli.main(['proposals', '--help'])
    text = ' '.join(capsys.readouterr().out.split())
    for fragment in ('in (0, 1] (default 0.65)', '1 to 1000000 (default 2000)', '(px, >= 1, default 20)',
                     'processes, 1 to 4 per CPU'):
        assert fragment in text, fragment
