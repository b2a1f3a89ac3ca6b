"""The demos' results and reports, for both systems: where a run keeps its
files (layout: an MLIC run of `make demo`, a ScasNet run of `make
demo-scasnet`), the MLIC fairness checks (fairness), results.json (results),
the pictures (figures) and the HTML pages (page: MLIC; scasnet), all written
with this module's one stylesheet."""
import html
import os

from caffe_mlic.fileio import atomic_write

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 1.5em auto; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; }
td, th { border: 1px solid #bbb; padding: 3px 9px; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; } td.n { white-space: nowrap; }
.ok { color: #1d7a32; } .bad { color: #b02020; font-weight: bold; }
img { max-width: 100%; } .examples img { width: 32%; margin: 0.3%; vertical-align: top; }
p.note { color: #555; font-size: 0.92em; }
"""


def write_page(path, title, body):
    """An HTML page of ``body`` (lines of HTML) with its title and the stylesheet, atomically."""
    page = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>%s</title>'
            '<style>%s</style></head><body>\n%s\n</body></html>\n' % (html.escape(title), STYLE, '\n'.join(body)))
    with atomic_write(path) as f:
        f.write(page)
    return path


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
