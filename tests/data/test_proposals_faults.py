"""Proposals: methods are not mixed in one folder unless recomputed, tiny
images and images with no box are named; a rerun computes a bad existing
output again; --jobs leaves nothing in /dev/shm when killed, and a job
process that dies fails its image only."""
import contextlib
import json
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from tests.faults import CLI, child_pids, shm_segments


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
    assert 'afile is a file, where the output folder would be' in capsys.readouterr().err
    # --min-size 1: the floor is 2 px (it said "smaller than ... min_size 1 px a side": pass 55b M3)
    assert cli.main(['proposals', str(folder / 'dot.png'), '-o', str(tmp_path / 'p1'), '--min-size', '1']) == 1
    assert ('dot.png: the image is 1x1 px: smaller than the smallest box kept (2 px a side: a box has two '
            'corners)') in capsys.readouterr().err


@pytest.mark.parametrize('args, message', [
    (['--jobs', '0'], 'argument --jobs: must be an integer from 1 to %d' % (4 * (os.cpu_count() or 1))),
    (['--jobs', '100000'], 'argument --jobs: must be an integer from 1 to'),
    (['--max-boxes', '3000000000'], "argument --max-boxes: must be an integer from 1 to 1000000, got '3000000000'"),
    (['--min-size', '-5'], 'argument --min-size: must be an integer >= 1'),
    (['--alpha', 'nan'], "argument --alpha: must be a finite number in (0, 1], got 'nan'"),
    (['--beta', '0'], 'argument --beta: must be a finite number in (0, 1]'),
    # (EdgeBoxes' options were ignored by another method without a word: pass 36b M7)
    (['--method', 'selective-search', '--alpha', '0.5'], 'argument --alpha: only applies to --method edgeboxes'),
    (['--method', 'selective-search', '--beta', '0.5'], 'argument --beta: only applies to --method edgeboxes'),
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


# ---------------------------------------------------------------- existing outputs of a rerun

def test_a_rerun_computes_bad_outputs_again_and_keeps_good_ones(photos, tmp_path, capsys):
    """A rerun skipped every existing .npz, even a truncated or foreign one
    (`datalist build` then failed on it); it checks each with the one reader."""
    from caffe_mlic.data.proposals import read_proposal_file
    cv2.imwrite(str(photos / 'flat.png'), np.full((60, 60, 3), 128, np.uint8))    # gets no box
    img = cv2.imread(str(photos / 'p0.png'))
    cv2.imwrite(str(photos / 'p2.png'), img)
    cv2.imwrite(str(photos / 'p3.png'), img)
    out = tmp_path / 'props'
    assert cli.main(['proposals', str(photos), '-o', str(out), '--max-boxes', '30', '-q']) == 0
    capsys.readouterr()
    originals = {name: read_proposal_file(str(out / name), allow_empty=True) for name in os.listdir(out)
                 if name.endswith('.npz')}
    data = (out / 'p0.npz').read_bytes()
    (out / 'p0.npz').write_bytes(data[:len(data) // 2])                 # truncated
    (out / 'p1.npz').write_bytes(b'\x00garbage' * 50)                   # not a .npz
    np.savez(str(out / 'p2.npz'), boxes=np.array([[0, 0, 500, 500]], np.float32),
             scores=np.ones(1, np.float32))                              # another image's
    kept = {name: (out / name).stat().st_mtime_ns for name in ('p3.npz', 'flat.npz')}

    assert cli.main(['proposals', str(photos), '-o', str(out), '--max-boxes', '30']) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    for name, why in (('p0.npz', 'unreadable'), ('p1.npz', 'unreadable: not a .npz'),
                      ('p2.npz', 'box 0 (0, 0, 500, 500) is not inside the 80x64 image')):
        said = [line for line in lines if line.startswith(str(out / name) + ': ')]
        assert len(said) == 1 and why in said[0] and said[0].endswith('; computing it again'), captured.err
    assert '3 written, 2 already there (skipped), 0 failed' in captured.out
    for name, (boxes, scores) in originals.items():
        again = read_proposal_file(str(out / name), allow_empty=True)
        np.testing.assert_array_equal(again[0], boxes)
        np.testing.assert_array_equal(again[1], scores)
    assert {name: (out / name).stat().st_mtime_ns for name in kept} == kept

    # all good now, the image with no box included: nothing is computed again
    assert cli.main(['proposals', str(photos), '-o', str(out), '--max-boxes', '30']) == 0
    captured = capsys.readouterr()
    assert 'computing it again' not in captured.err and '0 written, 5 already there' in captured.out


def test_a_rerun_computes_outputs_that_break_the_format_again(photos, tmp_path, capsys):
    """A rerun kept existing outputs that break the format it writes: scores
    ascending, another method than settings.json's, more than --max-boxes
    boxes, duplicates; and a kept file of 0 boxes was not reported as an image
    with no box. Each is named on stderr and computed again; the empty one is
    reported as on a first run."""
    from caffe_mlic.data.proposals import folder_settings, read_proposal_file, save_proposals
    for i in range(2, 6):
        cv2.imwrite(str(photos / ('p%d.png' % i)), cv2.imread(str(photos / 'p0.png')))
    out = tmp_path / 'props'
    args = ['proposals', str(photos), '-o', str(out), '--max-boxes', '30', '--min-size', '5']
    assert cli.main(args + ['-q']) == 0
    capsys.readouterr()
    boxes, scores = read_proposal_file(str(out / 'p0.npz'))
    assert len(boxes) >= 3
    grid = np.array([[x, y, x + 9, y + 9] for x in range(0, 60, 10) for y in range(0, 50, 8)], np.float32)
    edits = {'p0': (boxes[::-1], scores[::-1], 'edgeboxes'),                       # ascending
             'p1': (boxes, scores, 'selective-search'),                            # another method
             'p2': (grid[:40], np.linspace(1, 0, 40), 'edgeboxes'),                # 40 > 30
             'p3': (np.vstack([boxes[:1], boxes[:9]]), np.r_[scores[:1], scores[:9]], 'edgeboxes'),  # duplicate
             'p4': (np.zeros((0, 4)), np.zeros(0), 'edgeboxes'),                   # kept, no box
             'p5': (np.array([[0, 0, 2, 20]]), np.ones(1), 'edgeboxes')}           # side 3 < 5
    settings = folder_settings(str(out))[0]       # (recorded as `proposals` records them: only the format differs)
    for stem, (b, sc, method) in edits.items():
        save_proposals(str(out / (stem + '.npz')), b, sc, (64, 80), method, settings)
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    for stem, why in (('p0', 'scores are not in descending order'),
                      ('p1', "records method 'selective-search', but this folder's settings.json "
                             "says 'edgeboxes'"),
                      ('p2', "holds 40 boxes, over this folder's max_boxes 30"),
                      ('p3', 'holds 1 duplicate boxes'),
                      ('p5', "box 0 has a side under this folder's min_size 5 px")):
        said = [line for line in lines if line.startswith(str(out / stem) + '.npz: ')]
        assert len(said) == 1 and why in said[0] and said[0].endswith('; computing it again'), captured.err
    assert '5 written, 1 already there (skipped), 0 failed' in captured.out
    assert 'note: 1 image(s) got no box' in captured.out and str(photos / 'p4.png') in captured.out
    again = read_proposal_file(str(out / 'p0.npz'))
    np.testing.assert_array_equal(again[0], boxes)
    assert len(read_proposal_file(str(out / 'p4.npz'), allow_empty=True)[0]) == 0


def test_an_output_folder_among_the_images_or_an_output_that_is_a_folder_is_refused(photos, tmp_path, capsys):
    """`proposals -o IMAGES IMAGES` wrote .npz files and settings.json among the
    input images; an output X.npz that is a folder failed its image with
    "IsADirectoryError: [Errno 21] ...". Both are refused up front, in one
    line, with nothing written; a folder below the images' is fine (folders
    are not read recursively)."""
    before = sorted(os.listdir(photos))
    for out in (str(photos), str(photos) + '/', str(photos / '.')):
        assert cli.main(['proposals', str(photos), '-o', out, '-q']) == 2
        err = capsys.readouterr().err
        assert 'is the folder of the input images' in err and 'choose another output folder' in err
        assert len(err.strip().splitlines()) == 1 and 'Error' not in err
    assert cli.main(['proposals', str(photos / 'p0.png'), '-o', str(photos), '-q']) == 2
    assert 'is the folder of the input images' in capsys.readouterr().err
    assert sorted(os.listdir(photos)) == before
    out = tmp_path / 'props'
    (out / 'p1.npz').mkdir(parents=True)
    assert cli.main(['proposals', str(photos), '-o', str(out), '-q']) == 2
    err = capsys.readouterr().err
    assert ('argument -o/--output: %s is a folder, where the proposals of %s go: remove or rename it'
            % (out / 'p1.npz', photos / 'p1.png')) in err
    assert len(err.strip().splitlines()) == 1 and 'Errno' not in err and not (out / 'p0.npz').exists()
    assert cli.main(['proposals', str(photos), '-o', str(photos / 'props'), '-q']) == 0
    assert (photos / 'props' / 'p0.npz').is_file()


@pytest.mark.parametrize('value, why', [('-1/3', 'I is negative'), ('3/3', 'I must be under N'),
                                        ('1/0', 'N must be >= 1'), ('a/b', 'not two integers I/N')])
def test_a_bad_shard_says_what_is_wrong(photos, tmp_path, capsys, value, why):
    """--shard -1/3 gave argparse's "expected one argument" (it took -1/3 for
    an option)."""
    assert cli.main(['proposals', str(photos), '-o', str(tmp_path / 'o'), '--shard', value]) == 2
    err = capsys.readouterr().err
    assert "argument --shard: expected I/N with 0 <= I < N, got '%s' (%s)" % (value, why) in err
    assert 'expected one argument' not in err and not (tmp_path / 'o').exists()


# ---------------------------------------------------------------- --jobs killed



def _cmdline(pid):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return f.read().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
        return ''


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _new_in_dev_shm(before, settle=5.0):
    """Files in /dev/shm now that were not in ``before``, after waiting up to
    ``settle`` s for those of other processes that are running (other tests)
    to go; a leaked one stays."""
    import time
    deadline = time.monotonic() + settle
    while True:
        new = shm_segments() - before
        if not new or time.monotonic() > deadline:
            return new
        time.sleep(0.2)


def test_jobs_killed_with_their_process_group_leave_nothing_in_dev_shm(tmp_path):
    """multiprocessing.Pool's locks were named semaphores (/dev/shm/sem.mp-*)
    that only its resource tracker unlinks with spawn: SIGKILL to the group
    left them. The workers are fed through pipes now."""
    import signal
    import subprocess
    import time
    from caffe_mlic.data.synth import make_synthetic_voc
    root = tmp_path / 'voc'
    make_synthetic_voc(str(root), 80, 3, (1, 3), image_size=(320, 240), seed=3, show_progress=False)
    out = tmp_path / 'props'
    before = shm_segments()
    proc = subprocess.Popen(CLI + ['proposals', str(root / 'JPEGImages'), '-o', str(out), '--jobs', '2', '-q'],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:      # both workers computing, some outputs written
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, 'no worker started'
            workers = [k for k in child_pids(proc.pid) if 'spawn_main' in _cmdline(k)
                       and 'resource_tracker' not in _cmdline(k)]
            if len(workers) == 2 and len(list(out.glob('*.npz'))) >= 2:
                break
            time.sleep(0.05)
        family = child_pids(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(list(out.glob('*.npz'))) < 80          # killed while it ran
    new = _new_in_dev_shm(before)
    assert not [p for p in new if os.path.basename(p).startswith('sem.mp-')], new
    assert not new, new
    deadline = time.monotonic() + 10
    while any(_alive(k) for k in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [k for k in family if _alive(k)]


def _crashing_worker(job):
    """proposals' worker, but the process dies on an image named crash*."""
    import signal
    from caffe_mlic.data import proposals
    if os.path.basename(job[0]).startswith('crash'):
        os.kill(os.getpid(), signal.SIGKILL)
    return proposals._worker(job)


def test_a_job_process_that_dies_fails_its_image_only(photos, tmp_path):
    """multiprocessing.Pool waited forever for the result of a worker that
    was killed (the OOM killer, a crash in OpenCV); now that image fails,
    named, and the others are computed, by a new process."""
    from caffe_mlic.data import proposals
    names = ['p0.png', 'p1.png', 'crash.png', 'p2.png', 'p3.png', 'p4.png']
    for name in names[2:]:
        (photos / name).write_bytes((photos / 'p0.png').read_bytes())
    kw = dict(method='edgeboxes', max_boxes=30, min_size=20, sed_model=None, alpha=0.65, beta=0.75)
    (tmp_path / 'out').mkdir()
    jobs = [(str(photos / n), str(tmp_path / 'out' / n.replace('.png', '.npz')), kw) for n in names]
    results = {path: (count, err) for path, count, err in proposals._JobPool(2, _crashing_worker).results(jobs)}
    assert sorted(results) == sorted(j[0] for j in jobs)
    crash = str(photos / 'crash.png')
    assert results[crash][0] is None and re.fullmatch(
        r'%s: its worker process \(\d+\) was killed by SIGKILL while computing it' % re.escape(crash),
        results[crash][1]), results[crash]
    assert all(count and err is None for path, (count, err) in results.items() if path != crash), results
    assert sorted(os.listdir(tmp_path / 'out')) == sorted(n.replace('.png', '.npz') for n in names if n != 'crash.png')


@pytest.mark.parametrize('jobs', ['1', '2'])
def test_an_output_that_links_to_an_input_image_is_refused_before_anything_is_written(photos, tmp_path, capsys, jobs):
    """`ln -s ../imgs/p0.png props/p0.npz; proposals imgs -o props` took the
    link for an unreadable output, computed it again and wrote the .npz
    atomically through the link: the input image was replaced, exit 0 (with
    --jobs too). An output (an .npz, settings.json) that is an input is now
    refused up front, naming it and -o, with nothing written."""
    image = photos / 'p0.png'
    original = image.read_bytes()
    out = tmp_path / 'props'
    out.mkdir()
    for link, target in (('p0.npz', image), ('settings.json', photos / 'p1.png')):
        (out / link).symlink_to(os.path.relpath(str(target), str(out)))
        assert cli.main(['proposals', str(photos), '-o', str(out), '--jobs', jobs, '-q']) == 2
        err = capsys.readouterr().err
        assert ('argument -o/--output: %s is an input of this command: writing it would overwrite it'
                % (out / link)) in err, err
        assert len(err.strip().splitlines()) == 1
        assert image.read_bytes() == original and cv2.imread(str(photos / 'p1.png')) is not None
        assert sorted(os.listdir(out)) == [link]
        (out / link).unlink()
    # a hard link would only lose the link (the file is replaced, not written
    # into), but it is the image all the same: refused, as other commands do
    os.link(str(image), str(out / 'p0.npz'))
    assert cli.main(['proposals', str(photos), '-o', str(out), '--jobs', jobs, '-q']) == 2
    assert 'is an input of this command' in capsys.readouterr().err


def test_a_proposal_file_or_output_that_is_a_fifo_is_an_error_not_a_hang(photos, tmp_path):
    """read_proposal_file opened a FIFO (`detect --proposals DIR` with a
    FIFO DIR/<stem>.npz) with a plain open() to read its magic bytes, and a
    `proposals -o DIR` rerun read (then wrote) an existing FIFO output: both
    hung. Each is now an error naming the file as not a regular file."""
    from caffe_mlic.data.proposals import read_proposal_file
    from tests.faults import input_errors_beside_a_fifo, run_cli
    fifo = tmp_path / 'fifo.npz'
    os.mkfifo(str(fifo))
    found = input_errors_beside_a_fifo(fifo, lambda: read_proposal_file(str(fifo)))
    assert found == ['%s: cannot read it: not a regular file (a device, FIFO or folder)' % fifo]
    out = tmp_path / 'props'
    out.mkdir()
    os.mkfifo(str(out / 'p1.npz'))
    done = run_cli(['proposals', photos, '-o', out, '-q'], cwd=str(tmp_path), timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == ('caffe-mlic proposals: %s is a FIFO, where the proposals of %s go: remove '
                                   'or rename it'
                                   % (out / 'p1.npz', photos / 'p1.png'))


def test_an_output_folder_removed_mid_run_fails_the_run(photos, tmp_path, capsys, monkeypatch):
    """The writer made the removed folder again: exit 0, "6 written", with
    the first images' proposals gone (pass 38b S3)."""
    import shutil
    from caffe_mlic.data import proposals
    out, save, saved = tmp_path / 'props', proposals.save_proposals, []

    def removed_after_the_first(path, *args, **kw):
        saved.append(path)
        if len(saved) == 2:
            shutil.rmtree(str(out))
        return save(path, *args, **kw)
    monkeypatch.setattr(proposals, 'save_proposals', removed_after_the_first)
    assert cli.main(['proposals', str(photos), '-o', str(out), '-q']) == 1
    err = capsys.readouterr().err
    assert 'files proposals wrote are not there any more' in err and 'run it again' in err, err


@pytest.mark.parametrize('kind', ['dangling link', 'symlink loop', 'FIFO'])
def test_an_output_folder_of_another_kind_is_named_as_it_is(photos, tmp_path, capsys, kind):
    """A dangling link or loop at -o said "File exists"; a FIFO "is a file,
    not a folder" (pass 45b M5)."""
    out = tmp_path / 'out'
    {'dangling link': lambda: os.symlink('nowhere', str(out)), 'symlink loop': lambda: os.symlink('out', str(out)),
     'FIFO': lambda: os.mkfifo(str(out))}[kind]()
    said = {'dangling link': 'a link to nothing', 'symlink loop': 'a symlink loop', 'FIFO': 'a FIFO'}[kind]
    assert cli.main(['proposals', str(photos), '-o', str(out), '-q']) == 2
    assert capsys.readouterr().err == ('caffe-mlic proposals: argument -o/--output: %s is %s, where the output folder '
                                       'would be: give a folder, or move it away\n' % (out, said))


def test_a_fifo_at_the_folders_settings_is_refused_not_a_hang(photos, tmp_path, capsys):
    """A FIFO at OUT/settings.json hung `proposals` and `proposals import`
    for good (pass 45b M7)."""
    out = tmp_path / 'out'
    out.mkdir()
    os.mkfifo(str(out / 'settings.json'))
    (tmp_path / 'p.csv').write_text('image,x1,y1,x2,y2,score\np0.png,1,1,30,30,0.9\n')
    for argv in (['proposals', str(photos), '-o', str(out), '-q'],
                 ['proposals', 'import', 'csv', str(tmp_path / 'p.csv'), '--images', str(photos), '-o', str(out)]):
        done = subprocess.run(CLI + argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.endswith("argument -o/--output: %s is a FIFO, where the settings of the folder's "
                                    "proposals are kept: move it away\n" % (out / 'settings.json')), done.stderr
    assert os.listdir(str(out)) == ['settings.json']


def test_an_import_with_a_folder_at_an_images_file_writes_nothing(photos, tmp_path, capsys):
    """It failed at the rename, naming the hidden staging file, and left
    settings.json: the next import of other settings was refused as
    "holds proposals computed with ..." (pass 45b M6)."""
    out = tmp_path / 'out'
    (out / 'p0.npz').mkdir(parents=True)
    (tmp_path / 'p.csv').write_text('image,x1,y1,x2,y2,score\np0.png,1,1,30,30,0.9\np1.png,2,2,40,40,0.8\n')
    argv = ['proposals', 'import', 'csv', str(tmp_path / 'p.csv'), '--images', str(photos), '-o', str(out), '-q']
    assert cli.main(argv + ['--max-boxes', '5']) == 2
    assert capsys.readouterr().err == ('caffe-mlic proposals import: argument -o/--output: %s is a folder, where the '
                                       'proposals of %s go: remove or rename it\n' % (out / 'p0.npz',
                                                                                      photos / 'p0.png'))
    assert os.listdir(str(out)) == ['p0.npz']
    (out / 'p0.npz').rmdir()
    assert cli.main(argv) == 0


SED_MODEL = '''%YAML:1.0
options:
   stride: 2
   shrinkNumber: 2
   patchSize: 32
   patchInnerSize: 16
   numberOfGradientOrientations: 4
   gradientSmoothingRadius: 0
   regFeatureSmoothingRadius: 2
   ssFeatureSmoothingRadius: 8
   gradientNormalizationRadius: 4
   selfsimilarityGridSize: 5
   numberOfTrees: 1
   numberOfTreesToEvaluate: 1
childs:
   - [ 2, 0, 0 ]
featureIds:
   - [ 3, 0, 0 ]
thresholds:
   - [ 0.01, 0., 0. ]
edgeBoundaries:
   - [ 0, 0, 0, 1 ]
edgeBins:
   - [ 17 ]
'''


@pytest.mark.parametrize('edits, said', [
    ([], None),       # a one-split tree OpenCV's detector takes
    ([('options:', 'settings:')], 'it has no "options"'),      # (YAML without them: OpenCV divided by zero, SIGFPE)
    ([('numberOfTrees: 1', 'numberOfTrees: 0')],
     r'options.numberOfTrees is not in \[1, 1024\] \(OpenCV reads it, as a 32-bit integer, as 0\)'),
    ([('stride: 2', 'stride: 99999999999999')],        # (pass 55b M4: said as its 32-bit remainder alone)
     r'options.stride is not in \[1, 1024\] \(OpenCV reads it, as a 32-bit integer, as 276447231\)'),
    ([('stride: 2', 'stride: two')], 'options.stride is given, not a whole number'),
    ([('edgeBins:\n   - [ 17 ]', '')], 'its "edgeBins" is missing, not a list of trees'),
    ([('[ 2, 0, 0 ]', '[ 90000000, 0, 0 ]')], r'its structured edge detector crashed on it \(SIGSEGV\)'),
    ([('[ 2, 0, 0 ]', '[ 1, 0, 0 ]'), ('0.01, 0., 0.', '1e30, 0., 0.')],     # (a node its own child, always taken)
     'found no edges in a 64 x 48 px image in 2 s'),
    ([('%YAML:1.0', 'options: [')], r'OpenCV cannot read it \(.*\)$')])
def test_a_sed_model_opencv_cannot_use_is_named_before_any_image(photos, tmp_path, edits, said):
    """OpenCV's structured edge detector trusts its model file: a YAML file
    without its options killed `proposals --sed-model` by SIGFPE, a tree
    pointing past its nodes by SIGSEGV, one whose node is its own child
    never ended. The model is read and tried on a small image in a forked
    child first. (Run as a command: a regression would kill pytest.)"""
    text = SED_MODEL
    for old, new in edits:
        text = text.replace(old, new)
    (tmp_path / 'model.yml').write_text(text)
    out = tmp_path / 'props'
    command = ('import sys; from caffe_mlic.data import proposals; from caffe_mlic import cli; '
               'proposals.SED_PROBE_SECONDS = 2; sys.exit(cli.main(sys.argv[1:]))')
    done = subprocess.run([sys.executable, '-c', command, 'proposals', str(photos), '-o', str(out), '-q',
                           '--sed-model', str(tmp_path / 'model.yml')], capture_output=True, text=True, timeout=120)
    if said is None:
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(out)) == ['p0.npz', 'p1.npz', 'settings.json']
        return
    assert done.returncode == 1, done.stderr
    assert re.match(r'caffe-mlic proposals: \S*model.yml: not a SED model OpenCV can use: .*%s' % said,
                    done.stderr.strip()), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not out.exists()


def test_an_image_too_small_for_the_sed_models_patches_is_named_in_one_line(photos, tmp_path, capfd):
    """A 3 x 3 px image (--min-size 2) with --sed-model: OpenCV's raw
    "error: OpenCV(4.6.0) ... 'setSize'" text (pass 55b M1)."""
    (tmp_path / 'model.yml').write_text(SED_MODEL)
    cv2.imwrite(str(tmp_path / 'tiny.png'), np.full((3, 3, 3), 90, np.uint8))
    assert cli.main(['proposals', str(tmp_path / 'tiny.png'), '-o', str(tmp_path / 'p'), '--min-size', '2',
                     '--sed-model', str(tmp_path / 'model.yml')]) == 1
    err = capfd.readouterr().err
    assert re.search(r'tiny.png: the SED model finds no edges in a 3x3 px image \(OpenCV: [^\n]+\)\n', err), err
    assert 'OpenCV(' not in err, err


def _selective_search_on_a_1_mpx_image(tmp_path):
    """(the output folder, the `proposals --method selective-search` process,
    in its own session, text output) on a textured 1024 x 1024 image: one
    OpenCV call of 15 to 25 s."""
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / 'big.png'), np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8))
    out = tmp_path / 'props'
    proc = subprocess.Popen(CLI + ['proposals', str(tmp_path / 'big.png'), '-o', str(out), '--method',
                                   'selective-search', '-q'], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    return out, proc


def test_a_stop_during_selective_search_ends_the_run_at_once(tmp_path):
    """Selective search on a 1-Mpx image is one OpenCV call of 15 to 25 s
    that a stop signal could not cut (it was acted on when the call
    returned); it runs in a job process now, which the main process ends."""
    import signal
    import time
    out, proc = _selective_search_on_a_1_mpx_image(tmp_path)
    try:
        time.sleep(4)       # (the run reads the image, a job process imports OpenCV in about a second)
        family = child_pids(proc.pid)
        assert proc.poll() is None, 'selective search ended before the stop'
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - stopped
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert took < 5, 'the stop took %.1f s' % took
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.strip().splitlines()[-1] == 'caffe-mlic proposals: stopped by SIGTERM', err
    assert sorted(os.listdir(out)) == ['settings.json']
    deadline = time.monotonic() + 10
    while any(_alive(k) for k in family) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [k for k in family if _alive(k)]


def test_a_job_process_ends_with_a_killed_run(tmp_path):
    """A SIGKILL to `proposals` alone left its job process computing for 15
    to 25 s, which then wrote the image's .npz, making the output folder
    again if it had been removed (pass 60b S1): it dies with its parent."""
    import signal
    import time
    out, proc = _selective_search_on_a_1_mpx_image(tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not [k for k in child_pids(proc.pid) if 'spawn_main' in _cmdline(k)]:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        time.sleep(2)
        family = child_pids(proc.pid)
        proc.kill()         # (the main process only)
        proc.wait(30)
        deadline = time.monotonic() + 10
        while any(_alive(k) for k in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [k for k in family if _alive(k)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not list(out.glob('*.npz'))
