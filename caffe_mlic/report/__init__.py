"""The demos' results and reports, for both systems: where a run keeps its
files (layout: an MLIC run of `make demo`, a ScasNet run of `make
demo-scasnet`), the MLIC fairness checks (fairness), results.json (results),
the pictures (figures) and the HTML pages (page: MLIC; scasnet), all written
with this module's one stylesheet."""
import html

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
