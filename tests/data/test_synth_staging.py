"""caffe-mlic synth writes a whole set or nothing (issue 24): the set is
written into a hidden staging folder beside OUT_DIR and renamed into place
once complete; a killed run's leftovers are cleared at the next start; --force
replaces an older set only once the new one is complete."""
import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

from caffe_mlic import cli
from caffe_mlic.data import synth
from tests.tinydata import tree_digest

DET = ['--images', '120', '--image-size', '80x80', '--seed', '7', '-q']
SEG = ['--task', 'seg', '--images', '20', '--tile-size', '160x160', '--seed', '2', '-q']


def _cmd():
    exe = os.path.join(os.path.dirname(sys.executable), 'caffe-mlic')
    return [exe] if os.path.exists(exe) else [sys.executable, '-m', 'caffe_mlic.cli']


def _stage(out):
    return os.path.join(os.path.dirname(out), '.%s.partial' % os.path.basename(out))


def _kill_midway(args, watch, at_least, signum=signal.SIGKILL):
    """Start `synth ARGS`, wait until the staging folder's ``watch`` holds
    ``at_least`` files (the run is writing), send it ``signum`` (SIGKILL);
    returns its stderr (after another signal)."""
    proc = subprocess.Popen(_cmd() + ['synth'] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if len(os.listdir(watch)) >= at_least:
                    break
            except FileNotFoundError:
                pass
            assert proc.poll() is None, 'synth ended before it could be killed: %s' % proc.stderr.read()
            time.sleep(0.02)
        else:
            pytest.fail('no staging folder appeared')
        proc.send_signal(signum)
        if signum != signal.SIGKILL:
            err = proc.communicate(timeout=60)[1].decode()
            assert proc.returncode == 128 + signum, (proc.returncode, err)
            return err
    finally:
        proc.wait(timeout=60)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, 'synth finished before the kill'


def test_killed_run_leaves_no_set_and_the_rerun_is_complete(tmp_path):
    out = str(tmp_path / 'voc')
    _kill_midway([out] + DET, os.path.join(_stage(out), 'JPEGImages'), 5)
    assert not os.path.exists(out)                       # nothing half-written where the set goes
    assert os.path.isdir(_stage(out))                    # (the killed run's unfinished set)
    rerun = subprocess.run(_cmd() + ['synth', out] + DET, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert 'removed %s, the unfinished set of an interrupted run' % _stage(out) in rerun.stderr
    assert not os.path.exists(_stage(out))
    assert cli.main(['synth', str(tmp_path / 'ref')] + DET) == 0      # uninterrupted
    assert tree_digest(out) == tree_digest(str(tmp_path / 'ref'))
    assert len(os.listdir(os.path.join(out, 'JPEGImages'))) == 120
    assert sorted(os.listdir(str(tmp_path))) == ['ref', 'voc']


def test_killed_force_run_keeps_the_older_set(tmp_path):
    out = str(tmp_path / 'isprs')
    assert cli.main(['synth', out, '--task', 'seg', '--images', '3', '--tile-size', '128x96', '--seed', '1',
                     '-q']) == 0
    before = tree_digest(out)
    _kill_midway([out, '--force'] + SEG, os.path.join(_stage(out), 'top'), 2)
    assert tree_digest(out) == before                    # the older set, untouched
    rerun = subprocess.run(_cmd() + ['synth', out, '--force'] + SEG, capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert 'removed %s' % _stage(out) in rerun.stderr
    assert cli.main(['synth', str(tmp_path / 'ref')] + SEG) == 0
    assert tree_digest(out) == tree_digest(str(tmp_path / 'ref'))   # the whole new set, nothing of the old
    assert sorted(os.listdir(str(tmp_path))) == ['isprs', 'ref']


def test_force_replaces_the_whole_set(tmp_path):
    out = str(tmp_path / 'set')
    args = ['synth', '--task', 'seg', out, '--tile-size', '96x96', '-q']
    assert cli.main(args + ['--images', '4']) == 0
    assert cli.main(args + ['--images', '2', '--seed', '5', '--force']) == 0
    assert sorted(os.listdir(os.path.join(out, 'top'))) == ['top_mosaic_09cm_area1.tif',
                                                            'top_mosaic_09cm_area2.tif']
    assert cli.main(['synth', out, '--images', '3', '--image-size', '64x64', '--force', '-q']) == 0
    assert sorted(os.listdir(out)) == ['.synth-files', 'Annotations', 'ImageSets', 'JPEGImages', 'classes.txt']
    assert sorted(os.listdir(str(tmp_path))) == ['set']


def test_force_without_an_atomic_exchange(tmp_path, monkeypatch):
    """Where renameat2's exchange is missing, the older set is moved aside
    and the new one renamed in; the older one goes afterwards."""
    monkeypatch.setattr(synth, '_exchange', lambda a, b: False)
    out = str(tmp_path / 'set')
    assert cli.main(['synth', out, '--images', '2', '--image-size', '64x64', '-q']) == 0
    assert cli.main(['synth', out, '--images', '3', '--image-size', '64x64', '--seed', '9', '--force',
                     '-q']) == 0
    assert len(os.listdir(os.path.join(out, 'JPEGImages'))) == 3
    assert sorted(os.listdir(str(tmp_path))) == ['set']


def test_a_run_killed_between_the_two_renames_is_undone(tmp_path, capsys):
    """Killed after moving the older set aside (.NAME.old) and before
    renaming the new one in: the next run puts the older set back (and so
    refuses to replace it without --force); killed after both renames: the
    older set is removed."""
    out = str(tmp_path / 'set')
    args = ['synth', out, '--images', '2', '--image-size', '64x64', '-q']
    assert cli.main(args) == 0
    before = tree_digest(out)
    old = str(tmp_path / '.set.old')
    os.rename(out, old)
    os.makedirs(os.path.join(_stage(out), 'JPEGImages'))
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert 'removed %s' % _stage(out) in err
    assert 'restored %s from %s' % (out, old) in err
    assert 'already holds a data set' in err.splitlines()[-1]
    assert tree_digest(out) == before and sorted(os.listdir(str(tmp_path))) == ['set']
    os.makedirs(os.path.join(old, 'JPEGImages'))        # the older set, left behind after the swap
    assert cli.main(args + ['--force']) == 0
    assert 'removed %s, the set an interrupted run had just replaced' % old in capsys.readouterr().err
    assert sorted(os.listdir(str(tmp_path))) == ['set']


def test_a_running_synth_is_not_disturbed(tmp_path, capsys):
    out = str(tmp_path / 'set')
    os.makedirs(_stage(out))
    fd = os.open(_stage(out), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)      # as a synth writing there holds it
        assert cli.main(['synth', out, '--images', '2', '-q']) == 1
        err = capsys.readouterr().err
        assert err == 'caffe-mlic synth: %s is being written by another synth now (its unfinished set: %s)\n' % (
            out, _stage(out))
        assert os.path.isdir(_stage(out)) and not os.path.exists(out)
    finally:
        os.close(fd)


def test_other_files_in_out_dir_are_refused(tmp_path, capsys):
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'notes.txt').write_text('keep')
    (out / 'more').mkdir()
    assert cli.main(['synth', '--task', 'seg', str(out), '--images', '1', '--tile-size', '64x64', '-q']) == 2
    err = capsys.readouterr().err
    assert err.startswith('caffe-mlic synth: %s holds more and 1 more, not part of a synthetic data set' % out)
    assert len(err.splitlines()) == 1
    assert (out / 'notes.txt').read_text() == 'keep' and sorted(os.listdir(str(tmp_path))) == ['mine']
    (tmp_path / 'file').write_text('x')
    assert cli.main(['synth', str(tmp_path / 'file'), '--images', '1', '-q']) == 2
    assert 'exists and is not a folder' in capsys.readouterr().err
    assert (tmp_path / 'file').read_text() == 'x'


def test_an_empty_out_dir_and_a_symlink_to_one(tmp_path):
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert cli.main(['synth', str(empty), '--images', '2', '--image-size', '64x64', '-q']) == 0
    assert len(os.listdir(str(empty / 'JPEGImages'))) == 2
    (tmp_path / 'target').mkdir()
    (tmp_path / 'link').symlink_to(tmp_path / 'target')
    assert cli.main(['synth', str(tmp_path / 'link'), '--images', '2', '--image-size', '64x64', '-q']) == 0
    assert os.path.islink(str(tmp_path / 'link'))              # the link stays, its folder holds the set
    assert len(os.listdir(str(tmp_path / 'target' / 'JPEGImages'))) == 2


def test_a_failed_run_leaves_no_staging_folder(tmp_path, monkeypatch):
    from caffe_mlic.data import synth_aerial

    def boom(*args):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(synth_aerial, '_write_lists', boom)
    out = str(tmp_path / 'set')
    with pytest.raises(OSError):
        synth_aerial.make_synthetic_aerial(out, 2, (64, 64), show_progress=False)
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.parametrize('signum, name, word', [(signal.SIGINT, 'SIGINT', 'interrupted'),
                                                (signal.SIGTERM, 'SIGTERM', 'stopped by SIGTERM'),
                                                (signal.SIGHUP, 'SIGHUP', 'stopped by SIGHUP')])
def test_int_term_and_hup_remove_the_unfinished_set(tmp_path, signum, name, word):
    """Ctrl-C (130), SIGTERM (143) and SIGHUP (129, a closed terminal)
    remove the staging folder at once, in one line; a SIGKILL alone leaves
    it for the next run."""
    out = str(tmp_path / 'isprs')
    err = _kill_midway([out] + SEG, os.path.join(_stage(out), 'top'), 2, signum)
    assert word in err and len(err.strip().splitlines()) == 1, err
    assert os.listdir(str(tmp_path)) == []


def test_force_refuses_a_set_holding_files_synth_did_not_write(tmp_path, capsys):
    """--force replaces the whole set: a user's file inside one of its
    folders would go with it, so it is refused, naming the file, whatever
    its name (a VOC-style 009999.jpg, a real tile's name: pass 24 S2). The
    set's own list (.synth-files) says what synth wrote."""
    import shutil
    out = tmp_path / 'set'
    seg = ['synth', '--task', 'seg', str(out), '--images', '3', '--tile-size', '64x64', '-q']
    assert cli.main(seg) == 0
    listed = (out / '.synth-files').read_text().splitlines()
    assert 'top/top_mosaic_09cm_area1.tif' in listed and '.synth-files' not in listed
    shutil.copy(str(out / 'top' / 'top_mosaic_09cm_area1.tif'), str(out / 'top' / 'top_mosaic_09cm_area99.tif'))
    (out / 'hard' / 'extra').mkdir()
    assert cli.main(seg + ['--force']) == 2
    err = capsys.readouterr().err
    assert err == ('caffe-mlic synth: %s holds hard/extra and 1 more, not part of a synthetic data set: synth '
                   'writes a folder of its own (a new or empty one); move them out before --force replaces '
                   'the set\n' % out)
    assert (out / 'top' / 'top_mosaic_09cm_area99.tif').exists()
    os.rmdir(str(out / 'hard' / 'extra'))
    os.remove(str(out / 'top' / 'top_mosaic_09cm_area99.tif'))
    assert cli.main(seg + ['--force', '--seed', '3']) == 0
    det = ['synth', str(tmp_path / 'det'), '--images', '2', '--image-size', '64x64', '-q']
    assert cli.main(det) == 0
    shutil.copy(str(tmp_path / 'det' / 'JPEGImages' / '000001.jpg'), str(tmp_path / 'det' / 'JPEGImages' / '009999.jpg'))
    (tmp_path / 'det' / 'ImageSets' / 'Main' / 'mine.txt').write_text('009999\n')
    assert cli.main(det + ['--force']) == 2
    assert 'holds ImageSets/Main/mine.txt and 1 more, not part' in capsys.readouterr().err
    assert (tmp_path / 'det' / 'JPEGImages' / '009999.jpg').exists()
    # a set of an older version (no list of its files): nothing replaced
    for name in ('ImageSets/Main/mine.txt', 'JPEGImages/009999.jpg', '.synth-files'):
        os.remove(str(tmp_path / 'det' / name))
    assert cli.main(det + ['--force']) == 2
    assert 'holds no list of the files synth wrote there (.synth-files' in capsys.readouterr().err
    assert (tmp_path / 'det' / 'JPEGImages' / '000001.jpg').exists()


@pytest.mark.parametrize('exchange', [True, False])
def test_a_file_put_into_the_old_set_while_force_writes_the_new_one_is_kept(tmp_path, monkeypatch, exchange):
    """--force checked the older set for other files only before writing
    the new one, then removed the whole older set: a file put there
    meanwhile was deleted (pass 25 S5). The older set is removed file by
    file, as its list says; what is not listed is kept, in a visible
    folder beside the set, and said."""
    import io
    out = tmp_path / 'set'
    det = ['synth', str(out), '--images', '2', '--image-size', '64x64', '-q']
    assert cli.main(det) == 0
    target = tmp_path / 'elsewhere'
    target.mkdir()
    (target / 'precious.jpg').write_text('keep')
    if not exchange:       # (a file system without RENAME_EXCHANGE: two renames)
        monkeypatch.setattr(synth, '_exchange', lambda a, b: False)
    log = io.StringIO()
    with synth.staged_set(str(out), force=True, log=log) as stage:
        (out / 'JPEGImages' / 'mine.jpg').write_text('added while synth runs')
        os.symlink(str(target), str(out / 'JPEGImages' / 'linked'))
        (out / 'JPEGImages' / '000001.jpg').unlink()
        os.symlink(str(target / 'precious.jpg'), str(out / 'JPEGImages' / '000001.jpg'))
        os.makedirs(os.path.join(stage, 'JPEGImages'))
        open(os.path.join(stage, 'JPEGImages', '000001.jpg'), 'w').write('new')
    kept = tmp_path / 'set.kept'
    assert sorted(os.listdir(str(tmp_path))) == ['elsewhere', 'set', 'set.kept']
    assert sorted(os.listdir(str(kept / 'JPEGImages'))) == ['linked', 'mine.jpg'] and os.listdir(str(kept)) == [
        'JPEGImages']
    assert (kept / 'JPEGImages' / 'mine.jpg').read_text() == 'added while synth runs'
    assert (target / 'precious.jpg').read_text() == 'keep'
    assert 'synth: kept %s: the older set held files synth had not written there (JPEGImages/linked, ' \
           'JPEGImages/mine.jpg)' % kept in log.getvalue()
    assert sorted(os.listdir(str(out))) == ['.synth-files', 'JPEGImages']
    # with nothing added, nothing is kept
    with synth.staged_set(str(out), force=True, log=log) as stage:
        open(os.path.join(stage, 'a.txt'), 'w').write('newer')
    assert sorted(os.listdir(str(tmp_path))) == ['elsewhere', 'set', 'set.kept']
