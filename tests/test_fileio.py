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


# ---------------------------------------------------------------- JSON input

import pytest

from caffe_mlic.errors import InputError, UsageError
from caffe_mlic.fileio import read_json, refuse_overwriting


@pytest.mark.parametrize('text, expected', [
    ('[' * 100000 + ']' * 100000, 'nested too deeply'),
    ('{"a": NaN}', 'NaN is not JSON'),
    ('{"a": -Infinity}', '-Infinity is not JSON'),
    ('{"a": 1', 'not valid JSON'),
])
def test_read_json_turns_pathological_json_into_one_line(tmp_path, text, expected):
    path = tmp_path / 'in.json'
    path.write_text(text)
    with pytest.raises(InputError) as e:
        read_json(path)
    assert expected in str(e.value) and str(path) in str(e.value) and '\n' not in str(e.value)


def test_read_json_accepts_a_bom_and_refuses_other_encodings(tmp_path):
    path = tmp_path / 'in.json'
    path.write_bytes('\ufeff{"a": [1, 2]}'.encode('utf-8'))
    assert read_json(path) == {'a': [1, 2]}
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(InputError, match='not UTF-8'):
        read_json(path)


def test_an_output_that_names_an_input_is_refused(tmp_path):
    src = tmp_path / 'scores.npy'
    src.write_bytes(b'x')
    os.symlink(src, tmp_path / 'link.npy')
    for out in (src, tmp_path / 'link.npy', str(tmp_path / 'sub' / '..' / 'scores.npy')):
        with pytest.raises(UsageError, match='overwrite'):
            refuse_overwriting([out], [None, str(src)])
    refuse_overwriting([tmp_path / 'other.npy', None], [src])    # a new path: fine
