"""Every chart of the package, drawn with matplotlib's Agg canvas (no
display, no pyplot state) and written atomically as a PNG: a run's curves
(curves.png of `train` and `plot-log`), stage curves over seeds and the
per-class gain (the MLIC report), the confusion matrix (`eval seg`, the
ScasNet report). Pictures composed from images (boxes, label maps) are drawn
with OpenCV by their reports.

curves.png's panels, top to bottom, each only when the records have it:
- loss: the smoothed total (bold), the total of each iteration (faint), each
  train loss top when there are several, the test net's losses (dots);
- the test metric (mAP; mIoU for segmentation), in percent;
- learning rate (log scale when positive).
"""
import contextlib
import errno
import functools
import glob
import math
import os
import sys
import warnings

import numpy as np

from caffe_mlic.errors import MlicError, RunError
from caffe_mlic.evaluation import METRIC_KEYS
from caffe_mlic.fileio import atomic_write


def _matplotlibrc():
    """The matplotlibrc that importing matplotlib reads (matplotlib_fname's
    order in matplotlib 3.x: the working folder, $MATPLOTLIBRC, the config
    folder), or None."""
    candidates = []
    with contextlib.suppress(OSError):
        candidates.append(os.path.join(os.getcwd(), 'matplotlibrc'))
    given = os.environ.get('MATPLOTLIBRC')
    if given:
        candidates += [given, os.path.join(given, 'matplotlibrc')]
    config = os.environ.get('MPLCONFIGDIR')
    config = os.path.realpath(config) if config else os.path.join(
        os.environ.get('XDG_CONFIG_HOME') or os.path.join(os.path.expanduser('~'), '.config'), 'matplotlib')
    candidates.append(os.path.join(config, 'matplotlibrc'))
    return next((c for c in candidates if os.path.exists(c) and not os.path.isdir(c)), None)


FONT_EXTENSIONS = ('.ttf', '.otf', '.ttc', '.afm')
MAX_MATPLOTLIBRC_BYTES = 1 << 20


def _font_folders(matplotlib):
    """The folders matplotlib 3.x searches for fonts when it builds its font
    cache on Linux: its own, the user's and the system's."""
    home = os.path.expanduser('~')
    data = os.environ.get('XDG_DATA_HOME') or os.path.join(home, '.local', 'share')
    return [os.path.join(matplotlib.get_data_path(), 'fonts'), os.path.join(data, 'fonts'),
            os.path.join(home, '.fonts'), '/usr/share/fonts', '/usr/local/share/fonts',
            '/usr/X11R6/lib/X11/fonts/TTF', '/usr/X11/lib/X11/fonts', '/usr/lib/X11/fonts']


def _font_problem(matplotlib):
    """A font file (by its extension) in matplotlib's font folders that is
    no regular file: building the font cache opens each one."""
    from caffe_mlic.errors import in_the_way
    for folder in _font_folders(matplotlib):
        for root, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                if name.lower().endswith(FONT_EXTENSIONS) and os.path.exists(path) and not os.path.isfile(path):
                    return in_the_way(path, 'matplotlib reads fonts (it builds its font cache)')
    return None


def matplotlib_problem():
    """What keeps matplotlib from drawing, found before it reads the file:
    its settings (matplotlibrc), its font cache (fontlist-*.json) or, with
    no cache yet, a font it would read that is a FIFO (open() would wait for
    a writer for ever, stop signals and all), a socket or a device ('PATH is
    a FIFO, where matplotlib keeps its font cache: move it away'); settings
    it cannot be imported with; None once matplotlib has read them."""
    from caffe_mlic.errors import in_the_way
    if 'matplotlib.font_manager' in sys.modules:
        return None
    if 'matplotlib' not in sys.modules:
        rc = _matplotlibrc()
        if rc is not None and not os.path.isfile(rc):
            return in_the_way(rc, "matplotlib reads its settings (matplotlibrc)")
        if rc is not None and os.path.getsize(rc) > MAX_MATPLOTLIBRC_BYTES:   # (read whole, each bad line warned)
            return '%s: the file is %d bytes, more than the %d a matplotlibrc may have' % (
                rc, os.path.getsize(rc), MAX_MATPLOTLIBRC_BYTES)
        try:
            import matplotlib
        except Exception as e:      # noqa: BLE001 (its settings: a matplotlibrc that is not UTF-8)
            return 'matplotlib cannot be imported (%s; its settings, %s?)' % (
                _first_line(e), rc or 'matplotlibrc')
    import matplotlib
    caches = sorted(glob.glob(os.path.join(glob.escape(matplotlib.get_cachedir()), 'fontlist-*.json')))
    for cache in caches:
        if not os.path.isfile(cache):
            return in_the_way(cache, 'matplotlib keeps its font cache')
    return None if caches else _font_problem(matplotlib)


def _first_line(error, longest=300):
    """'Type: the first line of its message' (at most ``longest`` characters)."""
    text = (str(error).strip().splitlines() or [''])[0][:longest]
    return type(error).__name__ + (': ' + text if text else '')


def _matplotlib_checked():
    """OSError (matplotlib_problem) before matplotlib's fonts are loaded.
    matplotlib's own log is kept to its errors: a font family in
    matplotlibrc that is not installed logged "findfont: Font family ...
    not found" once a text (hundreds of lines a chart; it draws with its
    default font)."""
    import logging
    logging.getLogger('matplotlib').setLevel(logging.ERROR)
    problem = matplotlib_problem()
    if problem is not None:
        raise OSError(errno.EINVAL, problem)


def figure(width, height):
    """A matplotlib Figure of width x height inches on an Agg canvas."""
    _matplotlib_checked()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


FORMATS = ('png', 'pdf', 'svg')


@functools.lru_cache(maxsize=1)
def _font_chars():
    """The code points the default font draws."""
    _matplotlib_checked()
    from matplotlib import font_manager, ft2font
    return frozenset(ft2font.FT2Font(font_manager.findfont(font_manager.FontProperties())).get_charmap())


LONGEST_LABEL = 200    # characters of a title or label drawn; the middle of a longer one is left out


def plain_text(text):
    """``text`` (a file name, a class or top name, a title) as matplotlib
    draws it literally with its default font: the bytes of a name that is
    not UTF-8 (surrogate escapes) as \\xNN, characters the font lacks or
    that do not print as \\uNNNN (matplotlib drew an empty box and warned
    "Glyph ... missing from current font"), and '$' escaped, so that
    "a$x$.log" is not read as mathtext. Longer than LONGEST_LABEL: its
    start and end."""
    chars = _font_chars()
    out = []
    text = str(text)
    if len(text) > LONGEST_LABEL:       # (no figure shows more; Agg cannot draw a line of thousands)
        text = text[:LONGEST_LABEL - 60] + ' ... ' + text[-55:]
    for ch in text:
        code = ord(ch)
        if 0xdc80 <= code <= 0xdcff:          # os.fsdecode's escape of a byte
            out.append('\\x%02x' % (code - 0xdc00))
        elif ch == '$':
            out.append('\\$')
        elif ch == ' ' or (ch.isprintable() and code in chars):
            out.append(ch)
        else:
            out.append(ascii(ch)[1:-1] if code > 0xff or not ch.isprintable() else '\\x%02x' % code)
    return ''.join(out)


def save(fig, path, fmt=None, replace_special=False):
    """``fig`` as ``path``, atomically (a device or FIFO: written through,
    unless replace_special, as fileio.atomic_files), in the format ``fmt``,
    else the one its extension names (png, pdf or svg; anything else: PNG)."""
    ext = os.path.splitext(os.fspath(path))[1][1:].lower()
    with atomic_write(path, 'wb', replace_special=replace_special) as f:
        fig.tight_layout()
        fig.savefig(f, format=fmt or (ext if ext in FORMATS else 'png'))


def failure_text(error, path):
    """Why a chart at ``path`` was not drawn, on one line: an OSError with
    its file as errors.os_error_text, our own error's text, else what
    matplotlib raised (_first_line) and its settings as a likely cause."""
    from caffe_mlic.errors import os_error_text
    if isinstance(error, OSError) and error.strerror:
        return os_error_text(error)
    if isinstance(error, MlicError):
        return str(error)
    return 'matplotlib could not draw %s (%s; its settings, matplotlibrc, or fonts?)' % (path, _first_line(error))


def chart(function):
    """A function that draws a chart into its ``path``: what matplotlib
    raises while it draws (its settings: a dpi too large for an image,
    text.usetex without LaTeX, an empty colour cycle; a font it cannot read;
    its lock on the font cache) is a RunError naming the chart, on one line
    (failure_text); an OSError of a file, and our own errors, pass as they are."""
    import inspect
    signature = inspect.signature(function)

    @functools.wraps(function)
    def drawing(*args, **kwargs):
        path = signature.bind(*args, **kwargs).arguments.get('path')
        try:
            if _unwinder_replaced():
                _matplotlib_checked()       # (here: a FIFO named in this process's words)
                return _drawn_in_child(function, args, kwargs, path)
            return function(*args, **kwargs)
        except MlicError:
            raise
        except Exception as e:      # noqa: BLE001
            if isinstance(e, OSError) and e.strerror:
                raise
            raise RunError(failure_text(e, path)) from None
    return drawing


def _unwinder_replaced():
    """Whether libunwind is loaded (Caffe's glog brings it). While glog's
    library was made global, its unwinder took over C++ exceptions, and one
    that matplotlib's C++ code throws (FT2Font on a font size of 1e9)
    aborted the process (caffe.env no longer does that); a chart is still
    drawn in a child there, so that a crash in that code loses the chart,
    not the run. (Read at each chart: Caffe may be loaded after the first.)"""
    try:
        with open('/proc/self/maps', 'rb') as f:
            return b'libunwind' in f.read()
    except OSError:
        return 'caffe' in sys.modules


def _drawn_in_child(function, args, kwargs, path):
    """``function(*args, **kwargs)`` in a forked child (_unwinder_replaced:
    a crash there loses the chart, not the run); its exception raised here
    again (an OSError with its file, our error's text, else failure_text),
    or RunError saying how the child died."""
    import json
    import signal
    from caffe_mlic.processes import in_fork

    def said(e):
        return json.dumps(dict(errno=e.errno, strerror=e.strerror, filename=e.filename)
                          if isinstance(e, OSError) and e.strerror else dict(text=str(e)) if isinstance(e, MlicError)
                          else dict(text=failure_text(e, path))).encode('utf-8', 'surrogateescape')
    from caffe_mlic.processes import sweep_owned_files

    def sweep():        # (the temp file of a child that died or was killed while it wrote)
        with contextlib.suppress(OSError):
            sweep_owned_files(os.path.dirname(os.path.abspath(os.fspath(path))), None, '.tmp')
    try:
        status, told = in_fork(lambda: function(*args, **kwargs), said, stderr_into_pipe=False,
                               after_recorded_stop=True)
    except BaseException:
        sweep()
        raise
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return path
    if told:
        told = json.loads(told.decode('utf-8', 'surrogateescape'))
        if 'errno' in told:
            raise OSError(told['errno'], told['strerror'], told['filename'])
        raise RunError(told['text'])
    sweep()
    signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    how = (signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else 'status %d' % status)
    if signum in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):     # (from outside)
        raise RunError('%s was not drawn: the process drawing it was killed (%s)' % (path, how))
    raise RunError('matplotlib could not draw %s (it crashed: %s; its settings, matplotlibrc, or fonts?)'
                   % (path, how))


# Larger magnitudes are left out like non-finite ones: an axis spanning
# -1e308..1e308 overflows in matplotlib's tick locator (an IndexError).
PLOTTABLE = 1e300


def plottable(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and abs(value) <= PLOTTABLE


def series(records, key, phase):
    """(iterations, values) of ``key`` over the records of ``phase``; missing,
    non-finite and unplottably large values are left out."""
    points = [(r['iteration'], r[key]) for r in records
              if r.get('phase') == phase and plottable(r.get(key)) and plottable(r.get('iteration'))]
    return [p[0] for p in points], [p[1] for p in points]


def _keys(records, phase, prefix):
    seen = {}
    for r in records:
        if r.get('phase') == phase:
            seen.update((k, None) for k in r if k.startswith(prefix))
    return list(seen)


@chart
def draw_curves(records, path, title=None, fmt=None, replace_special=False):
    """Draw the panels for ``records`` into the PNG ``path`` (atomically;
    ``fmt``: pdf or svg instead, else by the extension, as save;
    replace_special: a run's own curves.png, as fileio.atomic_files)."""
    train_tops = _keys(records, 'train', 'train_')
    metric = next((k for k in METRIC_KEYS if series(records, 'test_' + k, 'test')[0]), None)
    test_losses = [k for k in _keys(records, 'test', 'test_') if k[5:] not in METRIC_KEYS]
    has_map = metric is not None
    has_lr = bool(series(records, 'lr', 'train')[0])
    panels = ['loss'] + (['map'] if has_map else []) + (['lr'] if has_lr else [])
    heights = {'loss': 3, 'map': 2, 'lr': 1}

    fig = figure(8, 2 + 1.5 * sum(heights[p] for p in panels) / 2)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw=dict(height_ratios=[heights[p] for p in panels]))[:, 0]
    by_panel = dict(zip(panels, axes))

    ax = by_panel['loss']
    x, y = series(records, 'loss', 'train')
    if x:
        ax.plot(x, y, color='tab:blue', alpha=0.3, linewidth=0.8, label='loss')
    x, y = series(records, 'smoothed_loss', 'train')
    if x:
        ax.plot(x, y, color='tab:blue', linewidth=1.8, label='smoothed loss')
    if len(train_tops) > 1 or not x:
        for key in train_tops:
            tx, ty = series(records, key, 'train')
            ax.plot(tx, ty, linewidth=1, label=plain_text(key))
    for key in test_losses:
        tx, ty = series(records, key, 'test')
        ax.plot(tx, ty, 'o--', markersize=4, linewidth=1, label=plain_text(key))
    ax.set_ylabel('loss')
    if not records:
        ax.text(0.5, 0.5, 'no iterations yet', ha='center', va='center', transform=ax.transAxes)
    if ax.lines:
        ax.legend(loc='upper right', fontsize='small')
    ax.grid(True, alpha=0.3)

    if 'map' in by_panel:
        ax = by_panel['map']
        tx, ty = series(records, 'test_' + metric, 'test')
        ax.plot(tx, ty, 'o-', color='tab:green', markersize=4)
        ax.set_ylim(0, 100)
        ax.set_ylabel(plain_text('test %s (%%)' % metric))
        ax.grid(True, alpha=0.3)
    if 'lr' in by_panel:
        ax = by_panel['lr']
        tx, ty = series(records, 'lr', 'train')
        ax.plot(tx, ty, color='tab:red', linewidth=1, drawstyle='steps-post')
        if min(ty) > 0:
            ax.set_yscale('log')
        ax.set_ylabel('lr')
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel('iteration')
    if title:
        axes[0].set_title(plain_text(title))
    save(fig, path, fmt, replace_special)
    return path


@chart
def stage_curves(rows, path):
    """One row per stage: its smoothed training loss and its validation
    metric, a line per seed. ``rows``: [(title, {seed: log.jsonl path})]; the
    metric is the first of METRIC_KEYS a log has, else (stage 1, which has no
    classifier) its first test loss."""
    from caffe_mlic.engine.logs import read_records
    fig = figure(10, 2.6 * len(rows))
    for row, (title, logs) in enumerate(rows):
        loss_ax = fig.add_subplot(len(rows), 2, 2 * row + 1)
        val_ax = fig.add_subplot(len(rows), 2, 2 * row + 2)
        val_label = 'validation mAP (%)'
        for seed, log in logs.items():
            records = read_records(log)
            loss_ax.plot(*series(records, 'smoothed_loss', 'train'), label='seed %d' % seed)
            metric = next((k for k in METRIC_KEYS if series(records, 'test_' + k, 'test')[0]), None)
            if metric is not None:
                x, y = series(records, 'test_' + metric, 'test')
                val_label = 'validation %s (%%)' % metric
            else:
                keys = [k for r in records if r.get('phase') == 'test' for k in r if k.startswith('test_')]
                x, y = series(records, keys[0], 'test') if keys else ([], [])
                if keys:
                    val_label = 'validation %s' % keys[0][5:]
            val_ax.plot(x, y, marker='o', markersize=3, label='seed %d' % seed)
        loss_ax.set_title(plain_text('%s: training loss (smoothed)' % title), fontsize=9)
        val_ax.set_title(plain_text('%s: %s' % (title, val_label)), fontsize=9)
        for ax in (loss_ax, val_ax):
            ax.set_xlabel('iteration', fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        val_ax.legend(fontsize=7)
    save(fig, path)


@chart
def kd_gain_per_class(classes, frequency, gains, path):
    """Bars of the per-class AP change from distillation (mean over seeds,
    std as error bars), classes sorted by their training frequency."""
    gains = np.asarray(gains, np.float64)             # seeds x classes
    order = np.argsort(-np.asarray(frequency), kind='stable')
    with warnings.catch_warnings():     # (a class without test positives has no AP in any seed: no bar, no warning)
        warnings.simplefilter('ignore', RuntimeWarning)
        mean = np.nanmean(gains, axis=0)[order]
        std = (np.nanstd(gains, axis=0, ddof=1) if len(gains) > 1 else np.zeros(gains.shape[1]))[order]
    fig = figure(max(5, 0.8 * len(classes) + 2), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    colours = ['#2a7f3f' if m >= 0 else '#b03030' for m in mean]
    ax.bar(range(len(order)), mean, yerr=std, color=colours, capsize=3)
    ax.axhline(0, color='black', linewidth=0.8)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(['%s\n(%d)' % (plain_text(classes[i]), frequency[i]) for i in order], fontsize=8)
    ax.set_ylabel('AP with KD - AP without (points)')
    ax.set_xlabel('class (training images with it), most frequent first')
    save(fig, path)


@chart
def plot_confusion(path, conf, names, title=None):
    """PNG of the row-normalised confusion (percent of each ground-truth
    class), every cell annotated; atomic."""
    from caffe_mlic.evaluation.segmentation import row_percentages
    pct = row_percentages(conf)
    k = len(names)
    fig = figure(max(4.0, 0.9 * k + 2.5), max(3.5, 0.8 * k + 1.8))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(np.nan_to_num(pct), cmap='Blues', vmin=0, vmax=100)
    for (i, j), value in np.ndenumerate(pct):
        text = 'n/a' if np.isnan(value) else '%.1f' % value
        ax.text(j, i, text, ha='center', va='center', fontsize=8,
                color='white' if value > 60 else 'black')
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    names = [plain_text(n) for n in names]
    ax.set_xticklabels(names, rotation=35, ha='right', fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    ax.set_xlabel('prediction')
    ax.set_ylabel('ground truth')
    ax.set_title(plain_text(title or 'confusion (% of each ground-truth class)'), fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    save(fig, path)
    return path
