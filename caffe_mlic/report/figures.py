"""The reports' pictures: the MLIC report's charts (through
caffe_mlic.plotting) and examples, and the titled rows of panels both
reports show, composed with OpenCV and written atomically as PNGs."""
import os

import numpy as np

from caffe_mlic import plotting
from caffe_mlic.errors import InputError
from caffe_mlic.fileio import atomic_write, read_json
from caffe_mlic.report import is_number, layout

STAGE_TITLES = {'teacher': 'WSDDN teacher', 'stage1': 'stage 1 (features)',
                'stage2': 'stage 2 (predictions)', 'baseline': 'baseline student (labels only)'}


def training_curves(seed_dirs, path):
    """The stages' curves over the seeds (plotting.stage_curves)."""
    rows = []
    for stage in layout.STAGES:
        logs = {seed: os.path.join(layout.stage_run(folder, stage), 'log.jsonl')
                for seed, folder in seed_dirs.items()}
        rows.append((STAGE_TITLES[stage], {s: p for s, p in logs.items() if os.path.isfile(p)}))
    plotting.stage_curves(rows, path)


def _text(img, text, org, colour, scale=0.45):
    import cv2
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def titled_row(panels, path, scale=0.5):
    """Write [(title, image)] (BGR, one height) side by side, each titled at
    its top left, 4-px white gaps between, as a PNG at ``path``, atomically."""
    import cv2
    row = []
    for title, img in panels:
        img = np.ascontiguousarray(img)
        _text(img, title, (5, 16), (255, 255, 255), scale)
        row += [img, np.full((img.shape[0], 4, 3), 255, np.uint8)]
    ok, png = cv2.imencode('.png', np.hstack(row[:-1]))
    with atomic_write(path, 'wb') as f:
        f.write(png.tobytes())
    return path


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
    scaled = (max(1, round(w * f)), max(1, round(h * f)))      # (1 px at least: a 1 x 70000 px image)
    canvas = cv2.resize(image, scaled, interpolation=cv2.INTER_LINEAR)
    labels = []
    for rank, r in reversed(list(enumerate(regions))):
        x1, y1, x2, y2 = (int(round(np.clip(v * f, -1e6, 1e6))) for v in r['box'])   # cv2: int32
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
    found = read_json(path, 'detection')
    if not isinstance(found, dict):
        raise InputError('%s: a detection JSON holds an object, not %s' % (path, type(found).__name__))
    regions = found.get('top_regions', [])
    if not (isinstance(regions, list) and all(
            isinstance(r, dict) and isinstance(r.get('class'), str) and is_number(r.get('score'))
            and isinstance(r.get('box'), list) and len(r['box']) == 4 and all(map(is_number, r['box']))
            for r in regions)):
        raise InputError('%s: "top_regions": must be a list of objects with a "class", a "score" and a "box" '
                         '(4 numbers)' % path)
    return regions
