"""Files we write are written atomically: whole or not at all, with the
mode a plain open() would give."""
import os
import stat

from caffe_mlic.fileio import atomic_write


def test_atomic_write_replaces_whole_file_with_normal_mode(tmp_path):
    target = tmp_path / 'out.txt'
    target.write_text('old')
    try:
        with atomic_write(target) as f:
            f.write('half')
            raise RuntimeError('interrupted')
    except RuntimeError:
        pass
    assert target.read_text() == 'old' and os.listdir(tmp_path) == ['out.txt']
    with atomic_write(target) as f:
        f.write('new')
    assert target.read_text() == 'new'
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o666 & ~umask
