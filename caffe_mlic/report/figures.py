"""The report's pictures, drawn with matplotlib's Agg canvas (no display) and
OpenCV, each written atomically as a PNG."""
import json
import os

import numpy as np

from caffe_mlic.engine.plots import series
from caffe_mlic.fileio import atomic_write
from caffe_mlic.report import layout

STAGE_TITLES = {'teacher': 'WSDDN teacher', 'stage1': 'stage 1 (features)',
                'stage2': 'stage 2 (predictions)', 'baseline': 'baseline student (labels only)'}


def _figure(width, height):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    fig.tight_layout()
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png')


def kd_gain_per_class(classes, frequency, gains, path):
    """Bars of the per-class AP change from distillation (mean over seeds,
    std as error bars), classes sorted by their training frequency."""
    gains = np.asarray(gains, np.float64)             # seeds x classes
    order = np.argsort(-np.asarray(frequency), kind='stable')
    mean = np.nanmean(gains, axis=0)[order]
    std = (np.nanstd(gains, axis=0, ddof=1) if len(gains) > 1 else np.zeros(gains.shape[1]))[order]
    fig = _figure(max(5, 0.8 * len(classes) + 2), 3.6)
    ax = fig.add_subplot(1, 1, 1)
    colours = ['#2a7f3f' if m >= 0 else '#b03030' for m in mean]
    ax.bar(range(len(order)), mean, yerr=std, color=colours, capsize=3)
    ax.axhline(0, color='black', linewidth=0.8)
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(['%s\n(%d)' % (classes[i], frequency[i]) for i in order], fontsize=8)
    ax.set_ylabel('AP with KD - AP without (points)')
    ax.set_xlabel('class (training images with it), most frequent first')
    _save(fig, path)


def training_curves(seed_dirs, path):
    """One row per stage: the smoothed training loss and the validation
    metric (mAP; stage 1 has no classifier, so its validation mimic loss),
    a line per seed."""
    from caffe_mlic.engine.logs import read_records
    fig = _figure(10, 2.6 * len(layout.STAGES))
    for row, stage in enumerate(layout.STAGES):
        loss_ax = fig.add_subplot(len(layout.STAGES), 2, 2 * row + 1)
        val_ax = fig.add_subplot(len(layout.STAGES), 2, 2 * row + 2)
        val_label = 'validation mAP (%)'
        for seed, folder in seed_dirs.items():
            log = os.path.join(layout.stage_run(folder, stage), 'log.jsonl')
            if not os.path.isfile(log):
                continue
            records = read_records(log)
            loss_ax.plot(*series(records, 'smoothed_loss', 'train'), label='seed %d' % seed)
            x, y = series(records, 'test_mAP', 'test')
            if not x:
                keys = [k for r in records if r.get('phase') == 'test' for k in r
                        if k.startswith('test_') and k != 'test_mAP']
                if keys:
                    x, y = series(records, keys[0], 'test')
                    val_label = 'validation %s' % keys[0][5:]
            val_ax.plot(x, y, marker='o', markersize=3, label='seed %d' % seed)
        loss_ax.set_title('%s: training loss (smoothed)' % STAGE_TITLES[stage], fontsize=9)
        val_ax.set_title('%s: %s' % (STAGE_TITLES[stage], val_label), fontsize=9)
        for ax in (loss_ax, val_ax):
            ax.set_xlabel('iteration', fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        val_ax.legend(fontsize=7)
    _save(fig, path)


def _text(img, text, org, colour, scale=0.45):
    import cv2
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def example(image_path, regions, truth, students, classes, path, size=336):
    """One test image, enlarged to ``size``: the teacher's top regions (boxes
    in original pixels, drawn with class and score), and under it each
    student's top-3 labels, green when the image has the class, red when not.
    ``students``: [(name, scores (C,))]."""
    import cv2
    from caffe_mlic.data.imageio import read_image
    from caffe_mlic.inference.draw import colour
    image = read_image(image_path)
    h, w = image.shape[:2]
    f = size / max(h, w)
    canvas = cv2.resize(image, (int(round(w * f)), int(round(h * f))), interpolation=cv2.INTER_LINEAR)
    labels = []
    for rank, r in reversed(list(enumerate(regions))):
        x1, y1, x2, y2 = (int(round(v * f)) for v in r['box'])
        c = colour(classes.index(r['class'])) if r['class'] in classes else (255, 255, 255)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), c, 2 if rank < 3 else 1)
        if rank < 3:
            labels.append(('%s %.2f' % (r['class'], r['score']), (x1 + 2, max(12, y1 - 3)), c))
    placed = []
    for text, org, c in reversed(labels):          # best first; a label too close to one drawn is left out
        if all(abs(org[0] - x) > 60 or abs(org[1] - y) > 12 for x, y in placed):
            _text(canvas, text, org, c, 0.4)
            placed.append(org)
    lines = ['truth: ' + (', '.join(truth) or 'none')]
    line_colours = [[(255, 255, 255)]]
    for name, scores in students:
        top = np.argsort(-np.asarray(scores), kind='stable')[:3]
        parts = ['%s:' % name] + ['%s %.2f' % (classes[k], scores[k]) for k in top]
        lines.append(parts)
        line_colours.append([(255, 255, 255)] + [(80, 200, 80) if classes[k] in truth else (60, 60, 230)
                                                 for k in top])
    panel = np.zeros((20 * len(lines) + 8, canvas.shape[1], 3), np.uint8)
    for row, (parts, cols) in enumerate(zip(lines, line_colours)):
        parts = [parts] if isinstance(parts, str) else parts
        x = 4
        for part, c in zip(parts, cols):
            cv2.putText(panel, part, (x, 18 + 20 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.38, c, 1,
                        cv2.LINE_AA)
            x += cv2.getTextSize(part + ' ', cv2.FONT_HERSHEY_SIMPLEX, 0.38, 1)[0][0]
    out = np.vstack([canvas, panel])
    ok, buf = cv2.imencode('.png', out)
    with atomic_write(path, 'wb') as fh:
        fh.write(buf.tobytes())


def read_top_regions(det_dir, image_path):
    stem = os.path.splitext(os.path.basename(image_path))[0]
    path = os.path.join(det_dir, 'json', stem + '.json')
    with open(path, encoding='utf-8') as f:
        return json.load(f).get('top_regions', [])
