"""curves.png: a run's losses, test mAP (mIoU for segmentation) and learning rate against iteration,
drawn from log records (caffe_mlic.engine.logs) with matplotlib's Agg
canvas (no display, no pyplot state).

Panels, top to bottom, each only when the records have it:
- loss: the smoothed total (bold), the total of each iteration (faint), each
  train loss top when there are several, the test net's losses (dots);
- test mAP, in percent;
- learning rate (log scale when positive).
"""
import math

from caffe_mlic.fileio import atomic_write


def series(records, key, phase):
    """(iterations, values) of ``key`` over the records of ``phase``; missing
    and non-finite values are left out."""
    points = [(r['iteration'], r[key]) for r in records
              if r.get('phase') == phase and isinstance(r.get(key), (int, float))
              and math.isfinite(r[key])]
    return [p[0] for p in points], [p[1] for p in points]


def _keys(records, phase, prefix):
    seen = {}
    for r in records:
        if r.get('phase') == phase:
            seen.update((k, None) for k in r if k.startswith(prefix))
    return list(seen)


def draw_curves(records, path, title=None):
    """Draw the panels for ``records`` into the PNG ``path`` (atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train_tops = _keys(records, 'train', 'train_')
    from caffe_mlic.engine.trainer import METRIC_KEYS
    metric = next((k for k in METRIC_KEYS if series(records, 'test_' + k, 'test')[0]), None)
    test_losses = [k for k in _keys(records, 'test', 'test_') if k[5:] not in METRIC_KEYS]
    has_map = metric is not None
    has_lr = bool(series(records, 'lr', 'train')[0])
    panels = ['loss'] + (['map'] if has_map else []) + (['lr'] if has_lr else [])
    heights = {'loss': 3, 'map': 2, 'lr': 1}

    fig = Figure(figsize=(8, 2 + 1.5 * sum(heights[p] for p in panels) / 2), dpi=100)
    FigureCanvasAgg(fig)
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
            ax.plot(tx, ty, linewidth=1, label=key)
    for key in test_losses:
        tx, ty = series(records, key, 'test')
        ax.plot(tx, ty, 'o--', markersize=4, linewidth=1, label=key)
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
        ax.set_ylabel('test %s (%%)' % metric)
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
        axes[0].set_title(title)
    fig.tight_layout()
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png')
    return path
