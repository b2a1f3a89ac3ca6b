"""Atomic file writes: a reader never sees a half-written file."""
import contextlib
import errno
import json
import math
import os
import re
import tempfile

from caffe_mlic.processes import (ofd_lock, owned_name_prefix, raise_swallowed_signal, signals_deferred,
                                  sweep_owned_files)


def _missing_dirs(path):
    """The folders of ``path`` that do not exist yet, deepest first."""
    out = []
    while path and not os.path.isdir(path):
        out.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return out


def _temp_name_prefix(name):
    """.NAME. for the temp file beside output NAME; for a long NAME (whose
    temp name, about 35 bytes longer, would pass the file-name limit where
    NAME does not), or one that is not UTF-8 (pycaffe's save takes only
    names that are), a digest of it instead."""
    try:
        name.encode('utf-8')
        if len(os.fsencode(name)) <= 180:
            return '.' + name + '.'
    except UnicodeEncodeError:
        pass
    import hashlib
    return '.%s.' % hashlib.sha1(os.fsencode(name)).hexdigest()[:16]


_SWEPT = set()      # the folders this process swept of dead writers' temps


@contextlib.contextmanager
def atomic_files(paths, mode='w', replace_special=False, **kwargs):
    """Open several files that appear together or not at all: yields one file
    object per path (temp files beside them); when the block succeeds they
    are renamed into place, else every temp file, and every folder made for
    them, goes. Paths that are folders fail before anything is written.

    A symlink is followed (its target is replaced, the link stays); a path
    that is not a regular file (/dev/null, a FIFO) is written directly, as a
    plain open() would: replacing it would destroy it; one of this process's
    descriptors (/dev/stdout, /dev/fd/N, /proc/self/fd/N) is written through
    that descriptor, whatever the shell opened there (`>> log` keeps the
    log's lines: neither replaced nor truncated).

    replace_special: for files of a folder the command owns (a run's
    run.json, curves.png), which the user never names as outputs: whatever
    is not a regular file, or a link to one, is replaced by the new file (a
    link to a FIFO or device as a link; the FIFO or device stays), never
    written through: something put there while the command runs would block
    the write (a FIFO) or swallow it (/dev/zero)."""
    descriptors = [None if replace_special else _own_descriptor(p) for p in paths]
    paths = [_followed(p, replace_special) if fd is None else os.fspath(p) for p, fd in zip(paths, descriptors)]
    for path, fd in zip(paths, descriptors):
        if fd is None and os.path.isdir(path):
            raise IsADirectoryError(errno.EISDIR, 'Is a directory, not a file', path)
    created, temps, files, locks = [], [], [], []
    current = None   # the output being made or finished, for an error that names none
    try:
        for current, path in enumerate(paths):
            if descriptors[current] is not None:
                temps.append(None)
                files.append(os.fdopen(os.dup(descriptors[current]), mode, **kwargs))
                continue
            if os.path.exists(path) and not os.path.isfile(path) and not replace_special:
                temps.append(None)
                files.append(open(path, mode, **kwargs))
                continue
            directory = os.path.dirname(os.path.abspath(path))
            missing = _missing_dirs(directory)
            in_the_way = [d for d in missing if os.path.lexists(d)]
            if in_the_way:          # (os.makedirs says only "File exists")
                raise NotADirectoryError(errno.ENOTDIR, 'not a folder (a file, FIFO, device or a link to none), '
                                         'where a folder of the output would be', in_the_way[-1])
            os.makedirs(directory, exist_ok=True)
            created = missing + created
            # named after this process, so that a later writer in this folder
            # removes what a SIGKILL left between writing and renaming (once a
            # process and folder: a dead writer leaves nothing new)
            temp_prefix = _temp_name_prefix(os.path.basename(path))
            if os.path.realpath(directory) not in _SWEPT:
                sweep_owned_files(directory, None, '.tmp')
                _SWEPT.add(os.path.realpath(directory))
            with signals_deferred():    # (a signal between the two would leave a temp file no one removes)
                fd, tmp = tempfile.mkstemp(prefix=owned_name_prefix(temp_prefix), suffix='.tmp',
                                           dir=directory)   # 0600: given a plain open()'s mode below
                temps.append(tmp)
            # held locked while it is ours: a sweep never takes a live writer's
            # (one of another pid namespace, whose pid means nothing here)
            ofd_lock(fd)
            locks.append(fd)
            # Opened by name, so f.name is the temp path: a writer that takes
            # only a path (pycaffe's Net.save) can write there (save_weights).
            files.append(open(tmp, mode, **kwargs))
        current = None
        yield files
        raise_swallowed_signal()    # (a stop signal a library swallowed: the command ends, writing none)
        umask = os.umask(0)
        os.umask(umask)
        for current, (f, tmp) in enumerate(zip(files, temps)):
            f.flush()
            if tmp is not None:
                os.fsync(f.fileno())
            f.close()
            if tmp is not None:
                os.chmod(tmp, 0o666 & ~umask)
        for current, (tmp, path) in enumerate(zip(temps, paths)):
            if tmp is not None:
                os.replace(tmp, path)
        _close_all(locks)
    except BaseException as e:
        _close_all(locks)
        for f in files:
            with contextlib.suppress(OSError):
                f.close()
        for tmp in temps:
            if tmp is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        for d in sorted(set(created), key=len, reverse=True):  # deepest first, only if empty
            with contextlib.suppress(OSError):
                os.rmdir(d)
        output = _output_of(e, paths, temps, current) if isinstance(e, OSError) else None
        if output is None:
            raise
        raise type(e)(e.errno, e.strerror, output) from e


def _followed(path, only_to_files=False):
    """``path``, or the file its symlink leads to; only_to_files: the link
    itself unless it leads to a regular file."""
    if not os.path.islink(path):
        return os.fspath(path)
    target = os.path.realpath(path)
    return target if not only_to_files or os.path.isfile(target) else os.fspath(path)


def _own_descriptor(path):
    """The descriptor of this process that ``path`` names through its links
    (/dev/stdout -> /proc/self/fd/1, /dev/fd/N), or None. Its target by
    realpath would be the file the shell redirected the descriptor to (or
    no path at all for a pipe, `pipe:[N]`)."""
    import re
    own = re.compile(r'/(?:proc/(?:self|thread-self|%d)/fd|dev/fd)/(\d+)' % os.getpid())
    path = os.path.abspath(os.fspath(path))
    for _ in range(40):         # (the kernel's own limit on a chain of links)
        found = own.fullmatch(path)
        if found:
            return int(found.group(1))
        try:
            target = os.readlink(path)
        except (OSError, ValueError):
            return None
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
    return None


def _close_all(fds):
    while fds:
        with contextlib.suppress(OSError):
            os.close(fds.pop())


def _output_of(err, paths, temps, current):
    """The output an OSError of atomic_files is about when it names one of
    our hidden temp files (or no file) rather than the output; else None.
    ``current``: the index of the output being made or finished; None while
    the caller's block writes (then the one output, or all of them)."""
    if err.errno is None:
        return None
    outputs = dict(zip(temps, paths))
    for named in (err.filename, err.filename2):
        if named in outputs:
            return outputs[named]
    if err.filename is None:
        if current is not None:
            return paths[current]
        return paths[0] if len(paths) == 1 else ', '.join(paths)
    named = err.filename
    if current is not None and len(temps) == current and isinstance(named, str):   # mkstemp's candidate
        directory, name = os.path.split(os.path.abspath(paths[current]))
        if os.path.dirname(named) == directory and os.path.basename(named).startswith(_temp_name_prefix(name)):
            return paths[current]
    return None       # a real file or folder: an input, an output's folder


@contextlib.contextmanager
def atomic_write(path, mode='w', replace_special=False, **kwargs):
    """Write to a temp file beside ``path`` and rename it over ``path`` on
    success (replace_special: as atomic_files)."""
    with atomic_files([path], mode, replace_special, **kwargs) as (f,):
        yield f


def save_weights(net, path):
    """Write caffe.Net ``net``'s weights to the caffemodel ``path``, atomically:
    HDF5 when ``path`` ends in .h5 (Caffe reads a file by that name as HDF5),
    else binary protobuf. Caffe writes in a forked child process: where it
    aborts (a CHECK on a failed write, a full disk, a name HDF5 cannot hold)
    only the child dies, and the temp file goes like on any other failure
    (RunError with Caffe's message)."""
    hdf5 = os.fspath(path).endswith('.h5')     # Caffe's rule, as caffe/weights.is_hdf5 (which imports us)
    with atomic_write(path, 'wb') as f:
        _in_child((net.save_hdf5 if hdf5 else net.save), f.name, path)


def _in_child(write, tmp, path):
    """``write(tmp)`` in a forked child; RunError naming ``path`` when it fails
    or the child dies (Caffe's abort), with the last lines it printed."""
    import signal
    from caffe_mlic.errors import RunError
    from caffe_mlic.processes import in_fork
    def in_its_folder():        # (by its own name: a folder above it not UTF-8 is no string pycaffe takes)
        os.chdir(os.path.dirname(os.path.abspath(tmp)))
        write(os.path.basename(tmp))
    status, printed = in_fork(in_its_folder, lambda e: ('%s\n' % (str(e) or type(e).__name__)).encode(
        'utf-8', 'replace'), stderr_into_pipe=True)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return
    lines = [line.strip() for line in printed.decode('utf-8', 'replace').splitlines()
             if line.strip() and not line.lstrip().startswith(('@', '***', 'HDF5-DIAG', '#'))]
    checks = [line for line in lines if 'Check failed' in line or 'Error' in line]
    why = (checks or lines or [''])[-1]
    why = why.split('] ', 1)[1] if why[:1] in 'FEW' and '] ' in why else why
    why = why.replace(os.path.abspath(tmp), path).replace(tmp, path).replace(os.path.basename(tmp), path)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        raise RunError('cannot write %s: Caffe aborted writing it (%s)%s'
                       % (path, name, ': ' + why if why else ''))
    raise RunError('cannot write %s%s' % (path, ': ' + why if why else ''))


def write_files(texts):
    """Write {path: text} all or none (atomic_files)."""
    with atomic_files(list(texts)) as handles:
        for handle, text in zip(handles, texts.values()):
            handle.write(text)
    return list(texts)


def atomic_save_npz(path, **arrays):
    import io
    import numpy as np
    # built in memory, then written: numpy's zip writer left open on a file that failed (a full disk)
    # prints "Exception ignored in ZipFile.__del__" when it is collected
    # (a stop while it builds is held to its end, a moment: raised inside numpy's zip writer, the
    # writer's __del__ met its closed buffer later and printed that traceback after our line)
    from caffe_mlic.processes import signals_deferred
    archive = io.BytesIO()
    with signals_deferred():
        np.savez_compressed(archive, **arrays)
    with atomic_write(path, 'wb') as f:
        f.write(archive.getbuffer())


def atomic_save_npy(path, array):
    import numpy as np
    with atomic_write(path, 'wb') as f:
        np.save(f, array, allow_pickle=False)


def json_ready(value):
    """``value`` with NaN/inf floats as None (JSON has no NaN) and numpy
    scalars and arrays as Python numbers and lists."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, 'tolist') and not isinstance(value, (str, bytes)):
        return json_ready(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_csv(path, header, rows):
    """Write a CSV (header, then rows; None as an empty cell), atomically."""
    import csv
    with atomic_write(path, newline='', encoding='utf-8') as f:
        writer = csv.writer(f, lineterminator='\n')
        writer.writerow(header)
        writer.writerows([['' if v is None else v for v in row] for row in rows])
    return path


def _no_constant(name):
    raise ValueError('%s is not JSON (write null or a number)' % name)


def bounded_int(text):
    """json's parse_int: an integer within +-2^63 (a longer one is no count,
    id or size of ours, and overflows float(): math.isfinite raised
    OverflowError on it in every number check)."""
    value = int(text)
    if not -2 ** 63 <= value < 2 ** 63:
        raise ValueError('the integer %s... is beyond +-2^63' % text[:20])
    return value


def load_json_text(text):
    """json.loads as every reader of ours parses: NaN and Infinity refused,
    integers within +-2^63, a key given twice in one object refused
    (ValueError, or RecursionError when nested too deeply)."""
    return json.loads(text, parse_constant=_no_constant, parse_int=bounded_int, object_pairs_hook=no_repeated_keys)


def parse_json(text, path, what=None):
    """The JSON value of ``text`` read from ``path``; an InputError naming the
    file for anything that is not plain JSON: a syntax error, NaN / Infinity
    (Python's extension), nesting too deep for the parser, a BOM, a key given
    twice in one object (json keeps the last without a word: an image's
    first boxes, a result's first image id, dropped)."""
    from caffe_mlic.errors import InputError, Problem
    if isinstance(text, bytes):
        try:
            text = text.decode('utf-8')
        except UnicodeDecodeError as e:
            raise InputError(problems=[Problem(path, None, None, 'not UTF-8 text: %s' % e)])
    text = text[1:] if text.startswith('\ufeff') else text     # a BOM some editors write
    try:
        return load_json_text(text)
    except RecursionError:
        message = 'not valid JSON: nested too deeply'
    except ValueError as e:
        message = 'not valid JSON: %s' % e
    raise InputError(problems=[Problem(path, None, None, message)])


# The largest JSON file read: COCO's instances_train2017.json is 448 MB, and
# Python's parser needs several times a file's size in memory.
MAX_JSON_BYTES = 2 ** 31


def no_repeated_keys(pairs):
    """A JSON object's dict (json.loads' object_pairs_hook); ValueError for a
    key given twice (json would keep the last without a word)."""
    found = {}
    for key, value in pairs:
        if key in found:
            raise ValueError('the key %r is given twice in one object' % key)
        found[key] = value
    return found


# A number as our text inputs write one: ASCII digits, an optional sign,
# point and exponent (Python's float() also reads 1_0 as 10, and digits of
# other scripts).
PLAIN_NUMBER = re.compile(r'[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z', re.ASCII)


PLAIN_INTEGER = re.compile(r'[+-]?\d+\Z', re.ASCII)


def text_integer(token):
    """int(token) for a plain integer (ASCII digits, an optional sign,
    around spaces): int() also reads 1_0 as 10 and digits of other
    scripts. ValueError for anything else."""
    if not isinstance(token, str) or not PLAIN_INTEGER.match(token.strip()):
        raise ValueError(token)
    return int(token)


def text_number(token):
    """float(token) for a plain number (PLAIN_NUMBER, around spaces); NaN
    and infinities as float() reads them, for the caller's own finiteness
    check; ValueError for anything else."""
    value = float(token)
    if math.isfinite(value) and not PLAIN_NUMBER.match(token.strip()):
        raise ValueError(token)
    return value


def read_json(path, what=None):
    """The JSON value in ``path``; an InputError naming the file when it cannot
    be read ('cannot read[ the <what>]: ...'), is not a regular file (a
    device such as /dev/zero never ends, a FIFO blocks), is larger than
    MAX_JSON_BYTES or is not JSON (parse_json)."""
    from caffe_mlic.errors import InputError, Problem
    try:
        with open_regular(path, 'rb') as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_JSON_BYTES:
                raise InputError(problems=[Problem(path, None, None, '%s is %d bytes, more than the %d a JSON '
                                                   'input may have' % (what or 'the file', size, MAX_JSON_BYTES))])
            text = f.read()      # a regular file of known size (read(n) would reserve n bytes first)
    except OSError as e:
        raise InputError(problems=[Problem(path, None, None, 'cannot read%s: %s' % (
            ' the ' + what if what else '', e.strerror or e))])
    return parse_json(text, path)


def same_file(a, b):
    """Whether paths ``a`` and ``b`` name one file (existing or not)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def refuse_overwriting(outputs, inputs, param=None):
    """UsageError when an output path names one of the inputs: writing it
    would destroy what the command reads. ``outputs`` and ``inputs`` are
    paths (None entries ignored); only an output that exists now can be an
    input, so they are matched by (device, inode): one stat a path, for
    thousands of images too."""
    from caffe_mlic.errors import UsageError
    given = {}
    for path in filter(None, inputs):
        try:
            st = os.stat(path)
        except (OSError, ValueError):       # (ValueError: a NUL, which no file's name holds)
            continue
        given.setdefault((st.st_dev, st.st_ino), path)
    for out in filter(None, outputs):
        try:
            st = os.stat(out)
        except (OSError, ValueError):
            continue
        if (st.st_dev, st.st_ino) in given:
            raise UsageError('%s is an input of this command: writing it would overwrite it; '
                             'choose another output path' % out, param)


def refuse_output_among_inputs(output, images, folders=(), param=None, subfolders=()):
    """UsageError when the output folder, or one of its ``subfolders`` the
    command writes into (json/, labels/, ...), is the folder of one of the
    input ``images`` or one of the input ``folders`` (a proposals folder):
    the outputs would be written among the inputs (and a `run`'s folder
    would go stale)."""
    from caffe_mlic.errors import UsageError
    inputs = [f for f in list(folders) + sorted({os.path.dirname(os.fspath(p)) or '.' for p in images})
              if f and os.path.isdir(f)]
    for target in [output] + [os.path.join(output, sub) for sub in subfolders]:
        if os.path.isdir(target):
            for folder in inputs:
                if same_file(folder, target):
                    raise UsageError('%s is the folder of inputs of this command (%s): the outputs would be '
                                     'written among them; choose another output folder' % (target, folder),
                                     param)


def refuse_folders(outputs, param=None):
    """UsageError, before the work, for an output file path that is a folder
    or a socket (which no open() writes: "No such device or address"), or
    whose folder cannot be made because a file is in its place."""
    import stat
    from caffe_mlic.errors import UsageError
    for out in filter(None, outputs):
        if os.path.isdir(out):
            raise UsageError('%s is a folder: give a file path to write' % out, param)
        try:
            socket = stat.S_ISSOCK(os.stat(out).st_mode)
        except (OSError, ValueError):
            socket = False
        if socket:
            raise UsageError('%s is a socket: give a file path to write' % out, param)
        parent = os.path.dirname(os.path.abspath(out))
        while not os.path.exists(parent) and os.path.dirname(parent) != parent:
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise UsageError('%s cannot be written: %s is a file, where its folder would be' % (out, parent), param)


def unprintable_in(text):
    """'U+XXXX, a character that does not print (...)' for the first such
    character of a line of text (space and tab aside), or None: str.split
    takes U+2028, U+0085 or VT for a separator, so a name would lose it
    unsaid, or become two."""
    odd = next((c for c in text if not c.isprintable() and c not in ' \t'), None)
    return None if odd is None else ('U+%04X, a character that does not print (a control, format or line '
                                     'separator character)' % ord(odd))


def text_lines(text):
    """The lines of ``text`` as an editor numbers them: broken at \\n, \\r\\n
    or \\r only. (str.splitlines also breaks at U+2028, U+0085, VT, FF and
    U+001C-U+001E: one class name became two, and the line numbers of the
    lines after it were off.)"""
    lines = text.replace('\r\n', '\n').replace('\r', '\n').split('\n')
    return lines[:-1] if lines and lines[-1] == '' else lines


def refuse_non_folders(folders, param=None):
    """UsageError, before the work, for an output folder path where
    something else is (a file, FIFO or device, a symlink loop or a link to
    nothing), or whose parent is a file: os.makedirs would say only "File
    exists" or "Not a directory"."""
    from caffe_mlic.errors import UsageError
    for folder in filter(None, folders):
        if os.path.isdir(folder):
            continue
        if os.path.lexists(folder):
            from caffe_mlic.errors import in_the_way
            raise UsageError(in_the_way(folder, 'the output folder would be', 'give a folder, or move it away'),
                             param)
        refuse_folders([os.path.join(folder, 'x')], param)   # (a file where a parent folder would be)


def atomic_write_json(path, data, indent=1, sort_keys=False, replace_special=False):
    """Write ``data`` as JSON (non-finite numbers as null), atomically
    (replace_special: as atomic_files)."""
    with atomic_write(path, replace_special=replace_special) as f:
        f.write(json.dumps(json_ready(data), indent=indent, sort_keys=sort_keys) + '\n')
    return path


def open_regular(path, *args, **kwargs):
    """open() for a text input that must be a regular file: a device such as
    /dev/zero never ends (memory without bound) and a FIFO with no writer
    blocks in open(), so both are an OSError, found before opening."""
    import errno
    import stat
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        # (said as what is there: "Too many levels of symbolic links", "No such file" for a link seen there)
        if e.errno == errno.ELOOP:
            raise OSError(e.errno, 'a symlink loop, not a file', path)
        if e.errno == errno.ENOENT and os.path.lexists(path):
            raise OSError(e.errno, 'a link to nothing, not a file', path)
        raise
    if not stat.S_ISREG(mode):
        raise OSError(errno.EINVAL, 'not a regular file (a device, FIFO or folder)', path)
    return open(path, *args, **kwargs)


def read_npy(path):
    """The array of numbers of the .npy file ``path`` (numpy.save's format;
    never a pickle, an .npz or objects). OSError when it cannot be read (not
    a regular file: a FIFO would block, a device never end); ValueError
    saying what it is otherwise, before anything is allocated: a header
    whose shape needs more bytes than the file holds is refused (np.load
    would allocate what it claims)."""
    import numpy as np
    fmt = np.lib.format
    with open_regular(path, 'rb') as f:
        head = f.read(6)
        if not head:
            raise ValueError('the file is empty (0 bytes)')
        if head.startswith(b'PK'):
            raise ValueError('a zip archive (.npz?), not a .npy array')
        if head != b'\x93NUMPY':
            raise ValueError('not a .npy file' + (' (it is text)' if _looks_like_text(head + f.read(506)) else ''))
        f.seek(0)
        try:
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read_header(f)
        except (ValueError, EOFError, SyntaxError, TypeError) as e:
            raise ValueError('a truncated or damaged .npy header (%s)' % e)
        if dtype.hasobject:
            raise ValueError('a .npy array of Python objects, not numbers')
        if dtype.kind not in 'biuf':
            raise ValueError('a .npy array of %s, not numbers' % dtype)
        if any(d > 2 ** 31 for d in shape):     # with a 0 beside it, the size check passes; np.load overflows
            raise ValueError('a damaged .npy header: shape %s' % 'x'.join(map(str, shape)))
        needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
        held = os.fstat(f.fileno()).st_size - f.tell()
        if needed > held:
            raise ValueError('a truncated .npy file: its header says %s of %s (%d bytes), the file holds %d'
                             % ('x'.join(map(str, shape)) or 'a scalar', dtype, needed, held))
        f.seek(0)
        try:
            return np.load(f, allow_pickle=False)
        except (ValueError, EOFError, OverflowError, MemoryError) as e:
            raise ValueError('a truncated or damaged .npy file (%s)' % e)


def _looks_like_text(data):
    try:
        data.decode('utf-8')
    except UnicodeDecodeError as e:
        return e.start >= len(data) - 3    # a character cut at the end of the sample
    return b'\x00' not in data


def input_file_problem(path, what='file'):
    """'PATH: why' it cannot be read as an input file (file_kind_problem),
    or None."""
    why = file_kind_problem(path, what)
    return None if why is None else '%s: %s' % (path, why)


def file_kind_problem(path, what='file'):
    """Why ``path`` cannot be read as an input file ('no such <what>', a
    symlink loop, or not a regular file: a FIFO would block, a device never
    end), or None."""
    if os.path.isfile(path):
        return None
    if os.path.exists(path):
        return 'not a regular file (a device, FIFO or folder)'
    if os.path.islink(path):
        try:
            os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                return 'a symlink loop, not a file'
            if e.errno == errno.ENOENT:
                return 'a link to nothing, not a file'
    return 'no such %s' % what


def refuse_lost_outputs(paths, command):
    """RunError when one of ``paths``, each written by ``command`` in this
    run, is not there any more: its folder was removed or renamed while it
    ran (a per-image writer makes a missing folder again, so the rest went
    to a new, incomplete one). Checked before a command says it is done."""
    from caffe_mlic.errors import RunError
    lost = [p for p in paths if not os.path.lexists(p)]
    if lost:
        raise RunError('%d of the %d files %s wrote are not there any more (%s%s): was its output folder removed '
                       'or renamed while it ran? Its outputs are incomplete: run it again'
                       % (len(lost), len(paths), command, lost[0], '' if len(lost) == 1 else ', ...'))
