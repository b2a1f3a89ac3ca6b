"""The demos' results and reports, for both systems: where a run keeps its
files (layout: an MLIC run of `make demo`, a ScasNet run of `make
demo-scasnet`), the MLIC fairness checks (fairness), results.json (results),
the pictures (figures) and the HTML pages (page: MLIC; scasnet), all written
with this module's one stylesheet."""
import contextlib
import errno
import html
import json
import math
import os
import shutil

from caffe_mlic.errors import RunError, in_the_way
from caffe_mlic.fileio import atomic_files, atomic_write, json_ready

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 1.5em auto; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; }
td, th { border: 1px solid #bbb; padding: 3px 9px; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; } td.n { white-space: nowrap; }
.ok { color: #1d7a32; } .bad { color: #b02020; font-weight: bold; }
img { max-width: 100%; } .examples img { width: 32%; margin: 0.3%; vertical-align: top; }
p.note { color: #555; font-size: 0.92em; }
"""


def page_text(title, body):
    """An HTML page of ``body`` (lines of HTML) with its title and the stylesheet."""
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>%s</title>'
            '<style>%s</style></head><body>\n%s\n</body></html>\n' % (html.escape(title), STYLE, '\n'.join(body)))


def write_page(path, title, body):
    """An HTML page of ``body`` (page_text), atomically."""
    with atomic_write(path) as f:
        f.write(page_text(title, body))
    return path


# ---------------------------------------------------------------- writing a report all or nothing

def pictures_dir(run):
    """RUN/report: the report's pictures."""
    return os.path.join(run, 'report')


def check_outputs(run, outputs):
    """Before a report writes anything: an InputError when one of
    ``outputs`` (paths) cannot be written as a file: a folder, device or
    FIFO at its path (through a link too), or its folder missing (RUN/report excepted: made
    when missing) or not writable (a read-only file system, permissions)."""
    from caffe_mlic.errors import InputError
    pictures = os.path.realpath(pictures_dir(run))
    checked = {}
    for path in outputs:
        real = os.path.realpath(path)
        if os.path.exists(real) and not os.path.isfile(real):
            # (a FIFO would block the write, where signals wait for the report to be whole: publish)
            raise InputError(in_the_way(path, 'the report writes this file'))
        folder = os.path.dirname(real)
        if folder in checked:
            continue
        checked[folder] = True
        if not os.path.isdir(folder):
            if folder == pictures and os.path.isdir(os.path.dirname(folder)):
                folder = os.path.dirname(folder)        # RUN/report is made in RUN
            else:
                raise InputError('%s: its folder %s is missing' % (path, os.path.dirname(path)))
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError('%s: cannot write it: its folder %s is read-only or not writable by this user'
                             % (path, folder))


def is_number(value):
    """A finite int or float read from JSON (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# RUN/.report.<pid>-<start time>-<random>.tmp (processes.owned_folder): a
# killed report's staging folder is swept by the next report
STAGING_PREFIX = '.report.'


@contextlib.contextmanager
def staging(run):
    """A hidden folder beside RUN/report (beside the folder it links to, so
    that renaming out of it stays on one file system) where a report makes
    its pictures; removed on the way out, whatever happens (SIGTERM too:
    commands/report.py), and by the next report when this one is killed.
    publish() moves what it holds into RUN/report."""
    from caffe_mlic.processes import owned_folder
    out_dir = pictures_dir(run)
    base = os.path.dirname(os.path.realpath(out_dir)) if os.path.isdir(out_dir) else run
    try:
        folder, lock = owned_folder(base, STAGING_PREFIX, '.tmp')
    except OSError as e:
        raise type(e)(e.errno, e.strerror, out_dir) from e
    try:
        yield folder
    except RunError as e:       # (a picture that failed is named where it would have gone, not in here)
        said = str(e).replace(os.path.abspath(folder), os.path.abspath(out_dir)).replace(folder, out_dir)
        if said == str(e):
            raise
        raise RunError(said) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(lock)


def publish(run, pictures, results, title, body):
    """The last step of a report: RUN/results.json (``results``) and
    RUN/report.html (page_text of ``title`` and ``body``) written in full
    to temp files beside them first, then the pictures moved from the
    staging folder into RUN/report (``pictures``: [(staged, final)]), then
    both files renamed into place together (fileio.atomic_files). An error
    before the end (a full disk) leaves the previous report as it was and
    nothing new. Returns the page's path."""
    texts = {os.path.join(run, 'results.json'): json.dumps(json_ready(results), indent=1, sort_keys=False) + '\n',
             os.path.join(run, 'report.html'): page_text(title, body)}
    from caffe_mlic.processes import signals_deferred
    # a signal while pictures and files are put in place would leave a mix
    # of the new pictures and the old page: it waits for the end
    with signals_deferred(), atomic_files(list(texts), replace_special=True) as handles:   # (the run's own files)
        for handle, text in zip(handles, texts.values()):
            handle.write(text)
            handle.flush()              # a full disk shows here, before any picture is moved
            try:
                os.fsync(handle.fileno())
            except OSError as e:
                if e.errno != errno.EINVAL:     # EINVAL: not a file that syncs (a device)
                    raise
        if pictures:
            os.makedirs(pictures_dir(run), exist_ok=True)
        for staged, final in pictures:
            os.replace(staged, os.path.realpath(final) if os.path.islink(final) else final)
    return os.path.join(run, 'report.html')


def _files_under(folder):
    """Every file under ``folder``, through linked folders too (each folder
    once, so a link loop ends)."""
    seen, files, stack = set(), [], [folder]
    while stack:
        here = stack.pop()
        try:
            st = os.stat(here)
            entries = list(os.scandir(here))
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        for entry in entries:
            try:
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.is_file():
                    files.append(entry.path)
            except OSError:
                pass
    return files


def refuse_overwriting_inputs(run, outputs, inputs=()):
    """Before a report writes anything: a UsageError (fileio.refuse_overwriting)
    when one of ``outputs`` (results.json, report.html, report/*.png) already
    names, through a link, one of the report's inputs (``inputs``, and every
    other file of the run folder ``run``: a report reads them or links to
    them), or another of ``outputs``; and an InputError when the pictures'
    folder RUN/report is not a folder. Only an output that exists can be an
    input: the run folder is walked only then."""
    from caffe_mlic.errors import InputError, UsageError
    from caffe_mlic.fileio import refuse_overwriting, same_file
    pictures = os.path.join(run, 'report')
    if os.path.lexists(pictures) and not os.path.isdir(pictures):
        raise InputError('%s: not a folder (the report writes its pictures there); move it away' % pictures)
    present = [path for path in outputs if os.path.exists(path)]
    if not present:
        return
    for k, path in enumerate(present):
        for other in present[:k]:
            if same_file(path, other):
                raise UsageError('%s and %s are one file (a link): one output of the report would overwrite '
                                 'the other' % (other, path))
    folders = {}

    def entry(path):      # the file's name in its folder, wherever the folder is reached from
        folder = os.path.dirname(os.path.abspath(path))
        if folder not in folders:
            folders[folder] = os.path.realpath(folder)
        return folders[folder], os.path.basename(path)
    own = {entry(path) for path in outputs}
    walked = [path for path in _files_under(run) if entry(path) not in own]
    refuse_overwriting(present, list(inputs) + walked)
