"""The errors the library raises on purpose, and the one way problems are printed.

    MlicError        base of every expected error; ``exit_code`` is what
    |                `caffe-mlic` exits with when one reaches it
    +- UsageError    the command line is wrong: an option's value or a
    |                combination of options; nothing was done (exit 2)
    +- InputError    an input (datalist, annotations, image, prototxt,
    |                weights, proposals...) has problems; ``problems`` lists
    |                each as (path, line, field, message) (exit 1)
    +- RunError      a failure while working: Caffe missing, a subprocess or
                     a worker failed, training diverged (exit 1)

Library code raises these and never exits; ``caffe_mlic.cli.main`` alone turns
one into ``caffe-mlic <command>: <message>`` and an exit code. Anything else
that escapes is a bug and keeps its traceback. Messages name the library's
parameter (``bbox_num``), not a command-line flag.
"""
from typing import NamedTuple, Optional

MAX_LISTED = 20  # problems shown in one message; the rest are counted


class Problem(NamedTuple):
    """One problem in an input: where (path, 1-based line or None, field or
    None) and what."""
    path: str
    line: Optional[int]
    field: Optional[str]
    message: str

    def __str__(self):
        where = str(self.path)
        if self.line:
            where += ':%d' % self.line
        return '%s: %s%s' % (where, self.field + ': ' if self.field else '', self.message)


class MlicError(Exception):
    exit_code = 1


class UsageError(MlicError, ValueError):
    """``param``, when given, is the library parameter at fault (``bbox_num``):
    the command line names the option that sets it."""
    exit_code = 2

    def __init__(self, message, param=None):
        super().__init__(message)
        self.param = param


class RunError(MlicError, RuntimeError):
    pass


class InputError(MlicError, ValueError):
    """Bad input. Either a plain message, or ``problems`` (Problem tuples, or
    plain strings for problems with no file) with an optional ``what`` that
    names the input in the heading ('datalist', 'annotations')."""

    def __init__(self, message=None, problems=(), what=None, max_listed=MAX_LISTED):
        self.problems = [p if isinstance(p, (Problem, str)) else Problem(*p) for p in problems]
        self.what, self.max_listed = what, max_listed
        if message is None:
            message = format_problems(self.problems, what, max_listed)
        super().__init__(message)

    def __reduce__(self):  # keep the problems through pickling (worker processes)
        return _rebuild, (type(self), str(self), self.problems, self.what, self.max_listed)


def _rebuild(cls, message, problems, what, max_listed):
    err = cls.__new__(cls)
    InputError.__init__(err, message, problems, what, max_listed)
    return err


MAX_SOURCES = 3     # files named in a heading; more are counted, with their common folder


def _files_in_common(sources):
    """'N files in FOLDER' for the files ``sources`` (a heading listing 96
    paths was one line of 2,700 characters), or 'FIRST, ... (N files)'."""
    import os
    try:
        common = os.path.commonpath(sources)
    except ValueError:      # (absolute and relative paths mixed)
        common = ''
    return '%d files in %s' % (len(sources), common) if common else '%s, ... (%d files)' % (sources[0], len(sources))


def format_problems(problems, what=None, max_listed=MAX_LISTED):
    """One problem: itself. Several: a heading with the count (and the files),
    one line each, and how many more were not listed."""
    problems = list(problems)
    if len(problems) == 1 and not what:
        return str(problems[0])
    sources = sorted({str(p.path) for p in problems if isinstance(p, Problem)})
    head = '%d problem%s' % (len(problems), '' if len(problems) == 1 else 's')
    if what:
        head += ' in %s' % what
    if sources:
        if len(sources) <= MAX_SOURCES:
            head += ' %s' % ', '.join(sources) if what else ' in %s' % ', '.join(sources)
        else:
            head += ' (%s)' % _files_in_common(sources) if what else ' in %s' % _files_in_common(sources)
    lines = [head + ':'] + ['  ' + str(p) for p in problems[:max_listed]]
    rest = len(problems) - max_listed
    if rest > 0:
        lines.append('  ... and %d more problem%s' % (rest, '' if rest == 1 else 's'))
    return '\n'.join(lines)


def raise_if_problems(problems, what=None, cls=InputError):
    if problems:
        raise cls(problems=problems, what=what)


def os_error_text(e):
    """An OSError as the one line says it: 'No space left on device: PATH'."""
    return '%s%s' % (e.strerror or e, ': %s' % e.filename if e.filename else '')


def terminal_text(text):
    """``text`` as an error line may show it: bytes of a name that are not
    UTF-8 (surrogate escapes) and control characters other than the line
    breaks between problems as \\xNN, so that a file name never moves the
    cursor, recolours the terminal or hides the rest of the line."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0xdc80 <= code <= 0xdcff:
            out.append('\\x%02x' % (code - 0xdc00))
        elif ch != '\n' and (code < 0x20 or 0x7f <= code <= 0x9f):
            out.append('\\x%02x' % code)
        else:
            out.append(ch)
    return ''.join(out)


def path_kind(path, follow_links=True):
    """What is at ``path``, as an error says it ('a file', 'a folder', 'a
    FIFO', 'a device', 'a socket', 'a symlink loop', 'a link to nothing'),
    or None when nothing is. follow_links=False: a link is 'a symbolic
    link', whatever it points to."""
    import errno
    import os
    import stat
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(mode):
        if not follow_links:
            return 'a symbolic link'
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            return 'a symlink loop' if e.errno == errno.ELOOP else 'a link to nothing'
    return ('a file' if stat.S_ISREG(mode) else 'a folder' if stat.S_ISDIR(mode) else
            'a FIFO' if stat.S_ISFIFO(mode) else 'a socket' if stat.S_ISSOCK(mode) else 'a device')


def in_the_way(path, where, advice='move it away', follow_links=True):
    """'PATH is KIND, where WHERE: ADVICE': the one wording for something
    (path_kind) at the path of a file or folder we write."""
    return '%s is %s, where %s: %s' % (path, path_kind(path, follow_links), where, advice)


def not_a_file_text(path, what='image'):
    """'<what> not found: PATH', or what is there instead ('image is a FIFO,
    not a file: PATH'): an input file of a list that is no regular file."""
    kind = path_kind(path)
    return '%s not found: %s' % (what, path) if kind is None else '%s is %s, not a file: %s' % (what, kind, path)


def folder_problem(path, what='folder'):
    """Why ``path`` is no ``what`` to read: 'no such <what>', or what is
    there instead ('a FIFO, not a <what>', 'a symlink loop, not a ...')."""
    kind = path_kind(path)
    return 'no such %s' % what if kind is None else '%s, not a %s' % (kind, what)
