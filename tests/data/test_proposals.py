"""caffe-mlic proposals: EdgeBoxes / Selective Search with WSDDN hygiene."""
import json
import os
import shutil
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.data.proposals import clean_boxes, compute_proposals, edge_orientation, gradient_edges
from caffe_mlic.data.synth import make_synthetic_voc


def _check_boxes(boxes, scores, h, w, min_size=20, max_boxes=2000):
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert boxes.shape == (len(scores), 4) and len(boxes) <= max_boxes
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= w - 1).all() and (boxes[:, 3] <= h - 1).all()
    assert (boxes[:, 2] - boxes[:, 0] + 1 >= min_size).all()
    assert (boxes[:, 3] - boxes[:, 1] + 1 >= min_size).all()
    assert (np.diff(scores) <= 0).all()
    assert len(np.unique(boxes, axis=0)) == len(boxes)


@pytest.mark.parametrize('name', ['astronaut', 'coffee', 'chelsea'])
def test_edgeboxes_on_photographs(name):
    import skimage.data
    img = cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR)
    h, w = img.shape[:2]
    boxes, scores = compute_proposals(img)
    print(name, len(boxes), 'boxes, scores', scores[0], '..', scores[-1])
    assert len(boxes) >= 500
    _check_boxes(boxes, scores, h, w)
    # the proposals spread over the image, not one corner
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    assert cx.min() < w / 3 and cx.max() > 2 * w / 3


def test_selective_search_on_photograph():
    import skimage.data
    img = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)
    boxes, scores = compute_proposals(img, 'selective-search', min_size=30, max_boxes=400)
    print('selective search', len(boxes), 'boxes')
    assert 200 <= len(boxes) <= 400
    _check_boxes(boxes, scores, 400, 600, min_size=30, max_boxes=400)
    assert 0 < scores.min() and scores.max() <= 1  # 1 - rank/K


def test_deterministic(small_synth):
    img = cv2.imread(os.path.join(small_synth[0], 'JPEGImages', '000001.jpg'))
    for method in ('edgeboxes', 'selective-search'):
        (b1, s1), (b2, s2) = compute_proposals(img, method), compute_proposals(img, method)
        np.testing.assert_array_equal(b1, b2)
        np.testing.assert_array_equal(s1, s2)


def test_own_edge_map():
    # a bright square on black: edges on its outline only, normals across it
    img = np.zeros((80, 100, 3), np.uint8)
    img[20:60, 30:70] = 200
    edges, orient = gradient_edges(img)
    assert edges.dtype == np.float32 and 0 <= edges.min() and edges.max() <= 1
    assert edges[40, 30] > 0.5 or edges[40, 29] > 0.5       # left side
    assert edges[40, 50] == 0 and edges[5, 5] == 0           # inside, background
    assert edges[40, 28:33].astype(bool).sum() <= 2           # thinned by NMS
    # vertical edge -> normal along x (0 or pi); horizontal edge -> pi/2
    o = edge_orientation(edges)
    assert min(o[40, 30], np.pi - o[40, 30]) < 0.3
    assert abs(o[20, 50] - np.pi / 2) < 0.3


def test_edge_nms_in_tiles_equals_one_remap_and_takes_images_over_opencvs_side_bound(monkeypatch):
    """OpenCV's remap throws on a side of 32767 px or more: a 40 x 70000
    image was a traceback in detect (an abort where Caffe is loaded). The
    edge map is sampled in tiles; tiles give what one remap gives. (Past
    ~30000 px EdgeBoxes itself finds fewer boxes the wider an image is:
    none in 40 x 70000; detect then says it found none.)"""
    from caffe_mlic.data import proposals
    import skimage.data
    img = cv2.cvtColor(skimage.data.coffee(), cv2.COLOR_RGB2BGR)
    whole = gradient_edges(img)[0]
    monkeypatch.setattr(proposals, 'REMAP_TILE', 97)      # (tiles of odd sizes, edges off the tile grid)
    np.testing.assert_array_equal(gradient_edges(img)[0], whole)
    monkeypatch.undo()
    wide = np.tile(img[:100], (1, 56, 1))      # 100 x 33600 px
    boxes, scores = compute_proposals(wide, max_boxes=50)
    _check_boxes(boxes, scores, 100, wide.shape[1], max_boxes=50)
    assert len(boxes) > 0


def test_an_image_over_the_proposal_pixel_bound_is_proposed_on_scaled_down(monkeypatch):
    """EdgeBoxes on a 4096 x 4096 image ran for over 10 minutes in one
    OpenCV call (stop signals waited), and 16384 x 16384 ran out of memory
    (pass 55b S1, S2): past PROPOSAL_MAX_PIXELS the image is scaled down and
    the boxes scaled back, within the image, at least min_size a side."""
    import skimage.data
    from caffe_mlic.data import proposals
    img = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)       # 512 x 512
    whole = compute_proposals(img, max_boxes=300)
    monkeypatch.setattr(proposals, 'PROPOSAL_MAX_PIXELS', 128 * 128)
    boxes, scores = compute_proposals(img, max_boxes=300)
    _check_boxes(boxes, scores, 512, 512, max_boxes=300)
    assert len(boxes) > 50 and boxes[:, 2].max() > 400 and boxes[:, 3].max() > 400
    assert not np.array_equal(boxes, whole[0][:len(boxes)])      # (the bound did apply)
    assert len(whole[0]) == 300


@pytest.mark.parametrize('shape, method, min_size', [((3, 100000), 'selective-search', 2),
                                                       ((2, 600000), 'edgeboxes', 1)])
def test_thin_images_are_proposed_on_within_bounds(shape, method, min_size):
    """Selective search asked OpenCV for about width^2 x 4 bytes (5 GB for
    3 x 100000 px; one call deaf to stop signals); a 2 px high image scaled
    under the pixel bound became 1 px high, a numpy traceback (pass 57b S1,
    M1). Both run on bounded sizes, at least 2 px a side."""
    img = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    boxes, scores = compute_proposals(img, method, min_size=min_size, max_boxes=100)
    _check_boxes(boxes, scores, shape[0], shape[1], min_size=min_size, max_boxes=100)


@pytest.mark.parametrize('min_size', [1, 2])
def test_the_smallest_min_sizes_still_give_boxes(min_size):
    """At --min-size 1 OpenCV's EdgeBoxes gave only 1 x 1 boxes scored +inf,
    the whole budget; the hygiene dropped them all and a photo got no box
    (pass 59b S2). It is asked for boxes of EDGEBOXES_MIN_AREA px or more."""
    from caffe_mlic.data.proposals import EDGEBOXES_MIN_AREA
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (320, 240), interpolation=cv2.INTER_CUBIC)
    boxes, scores = compute_proposals(img, min_size=min_size, max_boxes=500)
    _check_boxes(boxes, scores, 240, 320, min_size=min_size, max_boxes=500)
    assert len(boxes) == 500
    sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1
    assert ((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)).min() >= EDGEBOXES_MIN_AREA
    assert sides.min() >= min_size


def test_clean_boxes():
    boxes = [[-5, 0, 50, 40],      # clipped to x1=0
             [0, 0, 50, 40],       # same after clipping, lower score: dropped
             [10, 10, 20, 60],     # 11 px wide: too small
             [10, 10, 99, 79],     # fine
             [60, 50, 130, 90]]    # clipped to 99, 79
    scores = [0.5, 0.4, 0.9, 0.7, 0.6]
    b, s = clean_boxes(boxes, scores, width=100, height=80, min_size=20, max_boxes=10)
    np.testing.assert_array_equal(b, [[10, 10, 99, 79], [60, 50, 99, 79], [0, 0, 50, 40]])
    np.testing.assert_allclose(s, [0.7, 0.6, 0.5])
    b, s = clean_boxes(boxes, scores, 100, 80, 20, max_boxes=2)
    assert len(b) == 2 and s[0] == np.float32(0.7)


def _iou(g, bs):
    ix = np.clip(np.minimum(g[2], bs[:, 2]) - np.maximum(g[0], bs[:, 0]) + 1, 0, None)
    iy = np.clip(np.minimum(g[3], bs[:, 3]) - np.maximum(g[1], bs[:, 1]) + 1, 0, None)
    inter = ix * iy
    area = lambda b: (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)  # noqa: E731
    return inter / (area(g) + area(bs) - inter)


def _recall(root, ids, propose, tops=(None,)):
    """Fraction of ground-truth objects whose best proposal has IoU >= 0.5,
    using all proposals (None) or the first k of them, for each k in tops."""
    hits = dict.fromkeys(tops, 0)
    total = 0
    for image_id in ids:
        img = cv2.imread(os.path.join(root, 'JPEGImages', image_id + '.jpg'))
        boxes = propose(img)
        for o in ET.parse(os.path.join(root, 'Annotations', image_id + '.xml')).getroot().findall('object'):
            g = np.array([float(o.find('bndbox/' + t).text) - 1 for t in ('xmin', 'ymin', 'xmax', 'ymax')])
            total += 1
            for k in tops:
                b = boxes[:k]
                hits[k] += len(b) > 0 and _iou(g, b).max() >= 0.5
    return {k: v / total for k, v in hits.items()}


@pytest.fixture(scope='module')
def small_synth(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('recall') / 'voc')
    make_synthetic_voc(root, 16, 6, (1, 4), image_size=(256, 192), seed=5)
    return root, ['%06d' % (i + 1) for i in range(16)]


# Floors set below what was measured on this set (seed 5, 38 objects):
# edgeboxes 1.00 (all 2000 boxes) / 0.82 (top 100), selective search
# 1.00 / 0.97; 100 uniformly random boxes get 0.34.
@pytest.mark.parametrize('method,floor_all,floor_100', [
    ('edgeboxes', 0.9, 0.7), ('selective-search', 0.9, 0.85)])
def test_recall_on_synthetic_set(small_synth, method, floor_all, floor_100):
    root, ids = small_synth
    # the boxes are sorted by score, so the top 100 are the first 100
    recall = _recall(root, ids, lambda im: compute_proposals(im, method)[0], tops=(None, 100))
    print('%s: recall@0.5 = %.3f (all boxes), %.3f (top 100)' % (method, recall[None], recall[100]))
    assert recall[None] >= floor_all
    assert recall[100] >= floor_100


def test_recall_measure_discriminates(small_synth):
    # the same measure gives random boxes a low recall: the floors above mean something
    root, ids = small_synth
    rng = np.random.default_rng(0)

    def random_boxes(img):
        h, w = img.shape[:2]
        xs = np.sort(rng.uniform(0, w - 1, (100, 2)), 1)
        ys = np.sort(rng.uniform(0, h - 1, (100, 2)), 1)
        return np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], 1)
    recall = _recall(root, ids, random_boxes)[None]
    print('100 random boxes: recall@0.5 = %.3f' % recall)
    assert recall < 0.5


# ---------------------------------------------------------------- CLI

@pytest.fixture
def image_dir(tmp_path):
    root = str(tmp_path / 'voc')
    make_synthetic_voc(root, 6, 3, (1, 2), image_size=(128, 96), clutter=1, seed=2)
    return os.path.join(root, 'JPEGImages')


def _outputs(d):
    """The per-image proposal files of folder d (not its settings.json)."""
    return sorted(f for f in os.listdir(d) if f.endswith('.npz')) if os.path.isdir(d) else []


def test_cli_writes_npz(image_dir, tmp_path, capsys):
    out = str(tmp_path / 'props')
    images = sorted(os.path.join(image_dir, f) for f in os.listdir(image_dir))
    assert cli.main(['proposals', images[0], images[1], '-o', out, '--max-boxes', '50',
                     '--min-size', '16', '-q']) == 0
    assert _outputs(out) == ['000001.npz', '000002.npz']
    with np.load(os.path.join(out, '000001.npz')) as z:
        assert set(z.files) == {'boxes', 'scores', 'image_shape', 'method', 'settings', 'image'}
        _check_boxes(z['boxes'], z['scores'], 96, 128, min_size=16, max_boxes=50)
        assert len(z['boxes']) == 50
        assert tuple(z['image_shape']) == (96, 128) and str(z['method']) == 'edgeboxes'


def test_shard_resume_and_jobs(image_dir, tmp_path, capsys):
    out = str(tmp_path / 'props')
    common = ['--max-boxes', '30', '-q']
    assert cli.main(['proposals', image_dir, '-o', out, '--shard', '0/2'] + common) == 0
    shard0 = _outputs(out)
    assert shard0 == ['000001.npz', '000003.npz', '000005.npz']  # sorted list, every 2nd
    assert cli.main(['proposals', image_dir, '-o', out, '--shard', '1/2'] + common) == 0
    assert _outputs(out) == ['%06d.npz' % i for i in range(1, 7)]

    # resume: existing outputs are skipped, a removed one is redone
    mtimes = {f: os.stat(os.path.join(out, f)).st_mtime_ns for f in _outputs(out)}
    os.unlink(os.path.join(out, '000004.npz'))
    capsys.readouterr()
    assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', '30']) == 0
    captured = capsys.readouterr()
    assert '1 written, 5 already there' in captured.out
    for f, t in mtimes.items():
        if f != '000004.npz':
            assert os.stat(os.path.join(out, f)).st_mtime_ns == t
    assert os.path.isfile(os.path.join(out, '000004.npz'))

    # --jobs 2 gives the same files as one process
    out2 = str(tmp_path / 'props2')
    assert cli.main(['proposals', image_dir, '-o', out2, '--jobs', '2'] + common) == 0
    assert _outputs(out2) == _outputs(out)
    for f in _outputs(out):
        with np.load(os.path.join(out, f)) as a, np.load(os.path.join(out2, f)) as b:
            np.testing.assert_array_equal(a['boxes'], b['boxes'])
            np.testing.assert_array_equal(a['scores'], b['scores'])


def test_unreadable_image_reported_others_done(image_dir, tmp_path, capsys):
    bad = str(tmp_path / 'broken.jpg')
    with open(bad, 'wb') as f:
        f.write(b'\xff\xd8 not really a jpeg')
    missing = str(tmp_path / 'nowhere.png')
    good = os.path.join(image_dir, '000001.jpg')
    out = str(tmp_path / 'props')
    for jobs in ('1', '2'):
        rc = cli.main(['proposals', bad, good, missing, '-o', out, '--jobs', jobs, '-q'])
        err = capsys.readouterr().err
        assert rc == 1
        assert 'broken.jpg: cannot read image' in err and bad in err
        assert 'nowhere.png: no such image file' in err
        assert '2 image(s) failed' in err
        assert _outputs(out) == ['000001.npz']  # no partial or temp files


def test_cli_usage_errors(image_dir, tmp_path, capsys):
    out = str(tmp_path / 'props')
    for bad in (['--shard', '2/2'], ['--shard', 'x'], ['--jobs', '0'],
                ['--method', 'selective-search', '--sed-model', 'm.yml.gz']):
        assert cli.main(['proposals', image_dir, '-o', out] + bad) == 2
        assert capsys.readouterr().err.startswith('caffe-mlic proposals: ')
    rc = cli.main(['proposals', image_dir, '-o', out, '--sed-model', str(tmp_path / 'none.yml.gz')])
    assert rc == 1
    assert 'none.yml.gz: SED model not found' in capsys.readouterr().err
    # a device, a symlink loop: said what they are, not "not found"
    os.symlink('loop.yml.gz', str(tmp_path / 'loop.yml.gz'))
    for model, why in (('/dev/zero', '/dev/zero: not a regular file (a device, FIFO or folder)'),
                       (str(tmp_path / 'loop.yml.gz'), 'loop.yml.gz: a symlink loop, not a file')):
        assert cli.main(['proposals', image_dir, '-o', out, '--sed-model', model]) == 1
        assert why in capsys.readouterr().err
    # two images whose outputs would collide
    other = tmp_path / 'other'
    other.mkdir()
    shutil.copy(os.path.join(image_dir, '000001.jpg'), str(other / '000001.png'))
    rc = cli.main(['proposals', image_dir, str(other), '-o', out])
    assert rc == 1
    err = capsys.readouterr().err
    assert 'share a file stem' in err and str(other / '000001.png') in err
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert cli.main(['proposals', str(empty), '-o', out]) == 1
    assert 'no image files in ' + str(empty) in capsys.readouterr().err
    assert _outputs(out) == []



def test_a_device_given_as_an_image_is_named_as_not_a_regular_file(tmp_path, capsys):
    assert cli.main(['proposals', '/dev/zero', '-o', str(tmp_path / 'out'), '-q']) == 1
    err = capsys.readouterr().err
    assert '/dev/zero: a device, not a file' in err, err


@pytest.mark.parametrize('command', ['compute', 'import'])
def test_the_images_folder_as_the_output_is_refused(image_dir, tmp_path, capsys, command):
    if command == 'compute':
        argv = ['proposals', image_dir, '-o', image_dir, '-q']
    else:
        listing = tmp_path / 'p.json'
        listing.write_text('{}')
        argv = ['proposals', 'import', 'json', str(listing), '--images', image_dir, '-o', image_dir, '-q']
    before = sorted(os.listdir(image_dir))
    assert cli.main(argv) == 2
    assert '%s is the folder of the input images' % image_dir in capsys.readouterr().err
    assert sorted(os.listdir(image_dir)) == before


def test_recompute_by_shards_keeps_the_other_shards_proposals(image_dir, tmp_path, capsys):
    """`--recompute --shard 0/2` then `--recompute --shard 1/2` (as the tool
    asks when the settings change) left only shard 1's files: the first
    shard's were removed by the second (pass 20 S1)."""
    out = str(tmp_path / 'props')
    assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', '30', '-q']) == 0
    for shard in ('0/2', '1/2'):
        assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', '20', '--recompute', '--shard', shard,
                         '-q']) == 0
    assert _outputs(out) == ['%06d.npz' % i for i in range(1, 7)]
    for name in _outputs(out):
        assert len(np.load(os.path.join(out, name))['boxes']) <= 20, name     # every file of the new settings
    capsys.readouterr()
    assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', '20']) == 0
    assert '0 written, 6 already there' in capsys.readouterr().out


def test_a_shard_run_without_recompute_after_one_with_it_recomputes_its_old_files(image_dir, tmp_path, capsys):
    """`--recompute --shard 0/2` rewrote settings.json; `--shard 1/2` with the
    new settings but no --recompute took its files of the old settings as
    "already there": a folder of mixed settings, rc 0 (pass 21 S1). Each
    file records its settings: those of other settings are computed again."""
    out = str(tmp_path / 'props')
    assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', '20', '-q']) == 0
    new = ['--max-boxes', '30', '--min-size', '10']     # (the old files pass every check of the format)
    assert cli.main(['proposals', image_dir, '-o', out, *new, '--recompute', '--shard', '0/2', '-q']) == 0
    capsys.readouterr()
    assert cli.main(['proposals', image_dir, '-o', out, *new, '--shard', '1/2']) == 0
    captured = capsys.readouterr()
    assert '3 written, 0 already there' in captured.out, captured.out
    assert 'computed with max_boxes 20, min_size 20; this folder\'s settings are max_boxes 30, min_size 10' \
        in captured.err
    for name in _outputs(out):
        recorded = json.loads(str(np.load(os.path.join(out, name))['settings']))
        assert (recorded['max_boxes'], recorded['min_size']) == (30, 10), name
    assert cli.main(['proposals', image_dir, '-o', out, *new]) == 0
    assert '0 written, 6 already there' in capsys.readouterr().out


def _strip_records(folder):
    """Make ``folder`` look written by a version before the records: no
    settings or image record in its files, no records flag in settings.json."""
    from caffe_mlic.data.proposals import RECORDS
    for name in _outputs(folder):
        path = os.path.join(folder, name)
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files if k not in ('settings', 'image')}
        np.savez(path[:-4], **arrays)
    settings = json.loads(open(os.path.join(folder, 'settings.json')).read())
    settings.pop(RECORDS)
    open(os.path.join(folder, 'settings.json'), 'w').write(json.dumps(settings))


def test_files_of_an_older_version_are_recomputed_once_the_settings_change(image_dir, tmp_path, capsys):
    """Files without a settings record (an older version's) were kept as
    "already there" by a shard run after another's --recompute with new
    settings: a folder of two settings (pass 22 S1). Unchanged settings keep
    them (no recomputing after an upgrade)."""
    out = str(tmp_path / 'props')
    assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', '20', '-q']) == 0
    _strip_records(out)
    capsys.readouterr()
    assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', '20']) == 0
    assert '0 written, 6 already there' in capsys.readouterr().out
    new = ['--max-boxes', '30', '--min-size', '10']
    assert cli.main(['proposals', image_dir, '-o', out, *new, '--recompute', '--shard', '0/2', '-q']) == 0
    capsys.readouterr()
    assert cli.main(['proposals', image_dir, '-o', out, *new, '--shard', '1/2']) == 0
    captured = capsys.readouterr()
    assert '3 written, 0 already there' in captured.out, captured.out + captured.err
    assert 'holds no record of the settings it was computed with' in captured.err
    for name in _outputs(out):
        assert json.loads(str(np.load(os.path.join(out, name))['settings']))['max_boxes'] == 30, name


def test_datalist_build_refuses_a_folder_whose_shards_ran_with_other_settings(image_dir, tmp_path, capsys):
    """Shard 0 with --recompute --max-boxes 16, shard 1 with --recompute
    --max-boxes 12: settings.json says 12, shard 0's files hold 16; datalist
    build took them (pass 22 S2). It names them now."""
    out = str(tmp_path / 'props')
    for shard, boxes in (('0/2', '16'), ('1/2', '12')):
        assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', boxes, '--recompute', '--shard', shard,
                         '-q']) == 0
    root = os.path.dirname(image_dir)
    labels = tmp_path / 'labels.txt'
    first_class = open(os.path.join(root, 'classes.txt')).read().split()[0]
    labels.write_text(''.join('%s %s\n' % (name, first_class) for name in sorted(os.listdir(image_dir))))
    capsys.readouterr()
    argv = ['datalist', 'build', '--labels', str(labels), '--classes', os.path.join(root, 'classes.txt'), '--images',
            image_dir, '--proposals', out, '-o', str(tmp_path / 'list.txt'), '--bbox-num', '4']
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "computed with max_boxes 16; this folder's settings are max_boxes 12" in err, err
    assert not (tmp_path / 'list.txt').exists()
    assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', '12', '--shard', '0/2', '-q']) == 0
    assert cli.main(argv) == 0, capsys.readouterr().err


def _datalist_argv(image_dir, tmp_path, out):
    root = os.path.dirname(image_dir)
    labels = tmp_path / 'labels.txt'
    first_class = open(os.path.join(root, 'classes.txt')).read().split()[0]
    labels.write_text(''.join('%s %s\n' % (name, first_class) for name in sorted(os.listdir(image_dir))))
    return ['datalist', 'build', '--labels', str(labels), '--classes', os.path.join(root, 'classes.txt'), '--images',
            image_dir, '--proposals', out, '-o', str(tmp_path / 'list.txt'), '--bbox-num', '4']


def test_an_image_replaced_by_one_of_the_same_size_and_time_is_found_by_its_content(image_dir, tmp_path, capsys):
    """A copy made with cp -p, tar or rsync -t keeps the mtime, and BMP / PPM
    files of one size have one byte count: the SHA-1 decides (pass 23 S2);
    `datalist build` checks the image record too (pass 23 S3)."""
    import shutil
    images = tmp_path / 'images'
    shutil.copytree(image_dir, str(images))
    shutil.copy(os.path.join(os.path.dirname(image_dir), 'classes.txt'), str(tmp_path))
    names = sorted(os.listdir(str(images)))
    a, b = str(images / names[0]), str(images / names[1])
    out = str(tmp_path / 'props')
    assert cli.main(['proposals', str(images), '-o', out, '--max-boxes', '20', '-q']) == 0
    first = np.load(os.path.join(out, _outputs(out)[0]))['boxes'].copy()
    stat = os.stat(a)
    replacement = bytearray(open(b, 'rb').read())
    replacement = (replacement + bytes(stat.st_size))[:stat.st_size]        # b's picture, a's byte count
    open(a, 'wb').write(bytes(replacement))
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))                    # and a's time
    assert os.stat(a).st_size == stat.st_size and os.stat(a).st_mtime_ns == stat.st_mtime_ns
    capsys.readouterr()
    argv = _datalist_argv(str(images), tmp_path, out)
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert 'computed for another image of the name %s (its contents differ)' % names[0] in err, err
    assert not (tmp_path / 'list.txt').exists()
    assert cli.main(['proposals', str(images), '-o', out, '--max-boxes', '20']) == 0
    captured = capsys.readouterr()
    assert '1 written, %d already there' % (len(names) - 1) in captured.out, captured.out + captured.err
    assert not np.array_equal(np.load(os.path.join(out, _outputs(out)[0]))['boxes'], first)
    assert cli.main(argv) == 0, capsys.readouterr().err


def test_datalist_build_without_settings_json_still_refuses_files_of_two_settings(image_dir, tmp_path, capsys):
    """The files of a mixed folder copied without its settings.json were
    taken (pass 23 M7): the first file's record stands for the folder's."""
    out = str(tmp_path / 'props')
    for shard, boxes in (('0/2', '16'), ('1/2', '12')):
        assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', boxes, '--recompute', '--shard', shard,
                         '-q']) == 0
    os.remove(os.path.join(out, 'settings.json'))
    argv = _datalist_argv(image_dir, tmp_path, out)
    capsys.readouterr()
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert 'the folder has no settings.json holding its settings, and %s was computed with other settings' % os.path.join(
        out, _outputs(out)[0]) in err, err
    assert not (tmp_path / 'list.txt').exists()
    assert cli.main(['proposals', image_dir, '-o', out, '--max-boxes', '16', '--recompute', '-q']) == 0
    os.remove(os.path.join(out, 'settings.json'))
    assert cli.main(argv) == 0, capsys.readouterr().err
