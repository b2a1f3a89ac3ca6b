"""`caffe-mlic report RUN` of a ScasNet run: RUN/results.json and
RUN/report.html (pictures in RUN/report/), from the files `make demo-scasnet`
writes (caffe_mlic/report/layout.py): the evaluation against the eroded and
the full references, the training run, the predictions, and the training
datalist for the majority baseline.

The majority baseline predicts, at every pixel, the class most frequent in
the training labels; it is scored here on the same pixels as the net.
"""
import html
import os

import numpy as np

from caffe_mlic.errors import InputError, Problem
from caffe_mlic.fileio import read_json
from caffe_mlic.report.checks import PERCENT, is_percent, key_problems, shown
from caffe_mlic.report import (check_outputs, is_number as _is_number, layout, pictures_dir, publish,
                               refuse_overwriting_inputs, staging)

TILE_PANEL = 300     # px per panel in the test-tile pictures
METRICS = ('OA', 'mF1', 'mF1_all', 'mIoU')


# ---------------------------------------------------------------- the JSON files read

def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_scored_image(value):
    return isinstance(value, dict) and all(isinstance(value.get(k), str) and value[k]
                                           for k in ('prediction', 'ground_truth'))


def _passes(check, value):
    """Whether ``check(value)`` (a library check raising UsageError) passes."""
    from caffe_mlic.errors import UsageError
    try:
        check(value)
    except UsageError:
        return False
    return True


def _json_object(path, what, expected):
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise InputError(problems=[Problem(path, None, None, 'expected %s (a JSON object), got %s'
                                           % (expected, shown(data)))])
    return data


# The detail metrics of `eval seg --json` (DetailMetrics) the heads report
# reads: required there (detail=True), checked wherever they are present.
DETAIL_KEYS = ('hard_accuracy', 'hard_pixels', 'hard_mask', 'accuracy_by_distance', 'boundary_F1', 'objects',
               'car_recall')


def _detail_rules(names):
    """Rules for the detail metrics, against the class names ``names`` (None
    when the classes themselves are bad)."""
    from caffe_mlic.data.labelmaps import MAX_HARD_DISTANCE, check_hard_distance

    def known(value):
        return isinstance(value, str) and (names is None or value in names)

    def hard_mask(v):
        if not isinstance(v, dict) or v.get('from') not in ('files', 'reference'):
            return False
        if v['from'] == 'files':
            return isinstance(v.get('folder'), str) and bool(v['folder'])
        return _passes(check_hard_distance, v.get('distance')) and isinstance(v.get('classes'), list) \
            and bool(v['classes']) and all(map(known, v['classes']))

    def by_distance(v):
        return isinstance(v, list) and all(
            isinstance(b, dict) and _is_number(b.get('from')) and b['from'] >= 0
            and (b.get('to') is None or (_is_number(b['to']) and b['to'] > b['from']))
            and is_percent(b.get('accuracy')) and _is_count(b.get('pixels')) for b in v)

    def objects(v):
        return isinstance(v, dict) and all(
            known(name) and isinstance(o, dict) and _is_count(o.get('found')) and _is_count(o.get('total'))
            and o['found'] <= o['total'] and is_percent(o.get('recall')) for name, o in v.items())
    among = ' (names among the "classes")' if names else ''
    return [('hard_accuracy', is_percent, PERCENT),
            ('hard_pixels', _is_count, 'a number of pixels (an integer >= 0)'),
            ('hard_mask', hard_mask, 'an object with "from": "files" and a "folder", or "from": "reference", '
                                     'a "distance" (px, 1 to %d) and "classes"%s' % (MAX_HARD_DISTANCE, among)),
            ('accuracy_by_distance', by_distance, 'a list of objects with "from" and "to" (px), "accuracy" (%s) '
                                                  'and "pixels" (an integer >= 0)' % PERCENT),
            ('boundary_F1', is_percent, PERCENT),
            ('objects', objects, 'an object {class%s: {"found", "total" (integers, found <= total), "recall" (%s)}}'
             % (among, PERCENT)),
            ('car_recall', is_percent, PERCENT)]


def read_evaluation(path, what='evaluation', full=False, detail=False):
    """The `eval seg --json` file ``path``, checked for everything a report
    reads from it: an InputError naming the file and every key that is
    missing or of the wrong kind (a percentage outside 0..100, a count that
    is not an integer >= 0, a class name not among "classes", an erosion
    radius outside eval seg's bound, ...). ``full``: the metrics only (the
    evaluation against the full references); ``detail``: the detail metrics
    (DETAIL_KEYS) are required too (else checked when present)."""
    from caffe_mlic.evaluation.segmentation import MAX_ERODE_RADIUS, check_erode_radius
    data = _json_object(path, what, 'what `eval seg --json` writes')
    classes = data.get('classes')
    named = isinstance(classes, list) and bool(classes) and all(isinstance(c, str) and c for c in classes) \
        and len(set(classes)) == len(classes)

    def per_class(value):
        return isinstance(value, list) and (not named or len(value) == len(classes)) and all(
            is_percent(v) for v in value)
    count = 'a list of percentages (0 to 100) or null, one per class' + (' (%d)' % len(classes) if named else '')
    rules = [('classes', lambda v: named, 'a non-empty list of distinct class names')]
    rules += [(key, is_percent, PERCENT) for key in METRICS]
    rules += [(key, per_class, count) for key in ('F1', 'IoU')]
    rules += [(key, per_class, count) for key in ('precision', 'recall') if key in data]
    if not full:
        eroded = data.get('eroded') is True

        def radius(v):     # eval seg writes the radius it eroded by, bounded by check_erode_radius
            return not eroded if v is None else _passes(check_erode_radius, v)
        rules += [
            ('means', lambda v: isinstance(v, dict) and isinstance(v.get('mF1'), str),
             'an object whose "mF1" is a text'),
            ('pixels', _is_count, 'a number of pixels (an integer >= 0)'),
            ('ground_truth_dir', lambda v: isinstance(v, str) and bool(v), 'a folder'),
            ('images', lambda v: isinstance(v, list) and all(map(_is_scored_image, v)),
             'a list of objects with "prediction" and "ground_truth" files')]
        optional = [('palette', lambda v: v is None or isinstance(v, str), '"isprs", a palette file or null'),
                    ('eroded', lambda v: isinstance(v, bool), 'true or false'),
                    ('erode_radius', radius, 'a radius in pixels (an integer from 0 to %d)%s'
                     % (MAX_ERODE_RADIUS, '' if eroded else ' or null')),
                    ('boundary', lambda v: isinstance(v, dict) and _is_number(v.get('tolerance'))
                     and v['tolerance'] >= 0, 'an object whose "tolerance" is a number of px (>= 0)'),
                    ('object_min_pixels', lambda v: _is_count(v) and v >= 1, 'an integer >= 1 (px)')]
        rules += [rule for rule in optional if rule[0] in data or (rule[0] == 'erode_radius' and eroded)]
    rules += [rule for rule in _detail_rules(classes if named else None) if detail or rule[0] in data]
    problems = key_problems(path, data, rules)
    if problems:
        raise InputError(problems=problems)
    return data


def same_classes(evaluations):
    """InputError naming two files of ``evaluations`` ([(path, data)], each
    read by read_evaluation) whose class lists differ: what one file's
    numbers mean by a class must be what the others' mean."""
    (first, data), rest = evaluations[0], evaluations[1:]
    for path, other in rest:
        if other['classes'] != data['classes']:
            raise InputError(problems=[Problem(path, None, '"classes"', '%s differ from those of %s (%s): '
                                               'every evaluation compared must score the same classes'
                                               % (shown(other['classes']), first, shown(data['classes'])))])


def evaluation_inputs(evaluation):
    """The files a report reads through ``evaluation`` (read_evaluation):
    the references, the hard-pixel masks when files, a palette file."""
    files = [image['ground_truth'] for image in evaluation['images']]
    masks = evaluation.get('hard_mask') or {}
    if masks.get('from') == 'files':
        files += [os.path.join(masks['folder'], os.path.splitext(os.path.basename(image['prediction']))[0] + '.png')
                  for image in evaluation['images']]
    if evaluation.get('palette') not in (None, 'isprs'):
        files.append(evaluation['palette'])
    return files


def read_demo_settings(path):
    """RUN/settings.json (the demo's settings), checked for what a report
    reads: an object; "iters" an integer >= 1, "mini" true or false, "seeds"
    a list of distinct integers >= 0 and "heads" a list of distinct heads
    (layout.SCAS_HEAD_LABELS), each when given."""
    data = _json_object(path, 'demo settings', "the demo's settings")

    def distinct(v, test):
        return isinstance(v, list) and bool(v) and all(map(test, v)) and len(set(v)) == len(v)
    rules = [('iters', lambda v: _is_count(v) and v >= 1, 'an integer >= 1'),
             ('mini', lambda v: isinstance(v, bool), 'true or false'),
             ('seeds', lambda v: distinct(v, _is_count), 'a non-empty list of distinct integers >= 0'),
             ('heads', lambda v: distinct(v, lambda h: isinstance(h, str) and h in layout.SCAS_HEAD_LABELS),
              'a non-empty list of distinct heads among %s' % ', '.join(layout.SCAS_HEAD_LABELS))]
    problems = key_problems(path, data, [rule for rule in rules if rule[0] in data])
    if problems:
        raise InputError(problems=problems)
    return data


def _run_seconds(start_time, end_time):
    """Seconds from run.json's start_time to its end_time (ISO 8601 times);
    None when one has a time zone and the other not."""
    from datetime import datetime
    try:
        return (datetime.fromisoformat(end_time.replace('+0000', '+00:00'))
                - datetime.fromisoformat(start_time.replace('+0000', '+00:00'))).total_seconds()
    except TypeError:       # (an aware time less a naive one)
        return None


def read_run_info(path):
    """The training run's run.json, checked for what the report reads (an
    object; start and end times in ISO format when given, the end not
    before the start; final_iteration an integer >= 0 when given)."""
    from datetime import datetime
    data = _json_object(path, 'training run', 'what `caffe-mlic train` writes')

    def when(value):
        try:
            datetime.fromisoformat(value.replace('+0000', '+00:00'))
        except (AttributeError, ValueError):
            return False
        return True
    problems = key_problems(path, data, [(key, when, 'a time in ISO 8601 format')
                                          for key in ('start_time', 'end_time') if data.get(key)]
                            + [('final_iteration', _is_count, 'an integer >= 0')] * ('final_iteration' in data))
    seconds = _run_seconds(data['start_time'], data['end_time']) \
        if not problems and data.get('start_time') and data.get('end_time') else 0
    if seconds is None or seconds < 0:
        problems.append(Problem(path, None, '"end_time"', 'must be a time %s "start_time" (%s), got %s'
                                % ('not before' if seconds is not None else 'in the same time zone form as',
                                   shown(data['start_time']), shown(data['end_time']))))
    if problems:
        raise InputError(problems=problems)
    return data


def majority_class(train_list, num_classes, palette=None, root=None):
    """(class most frequent over the label maps of ``train_list``, pixel
    counts); its paths are relative to ``root`` (default: its folder, as
    `synth --task seg` writes it)."""
    from caffe_mlic.data.datalist import read_seg_datalist
    from caffe_mlic.data.labelmaps import read_label_map
    root = os.path.dirname(train_list) if root is None else root
    datalist = read_seg_datalist(train_list, os.path.join(root, ''), check_files=False)
    counts = np.zeros(256, np.int64)
    for i, path in enumerate(datalist.label_paths):
        counts += np.bincount(read_label_map(path, num_classes, palette, where=datalist.where(i)).ravel(),
                              minlength=256)
    return int(counts[:num_classes].argmax()), counts[:num_classes]


def majority_metrics(evaluation, majority, eroded_radius=None):
    """eval seg's metrics for a constant ``majority`` prediction, on the
    ground truths of ``evaluation`` (an eval seg JSON)."""
    from caffe_mlic.evaluation.segmentation import confusion, metrics
    from caffe_mlic.data.labelmaps import erode_boundaries, read_label_map
    names = evaluation['classes']
    conf = np.zeros((len(names), len(names)), np.int64)
    for image in evaluation['images']:
        gt = read_label_map(image['ground_truth'], len(names), evaluation.get('palette'))
        if eroded_radius:
            gt = erode_boundaries(gt, eroded_radius)
        conf += confusion(gt, np.full(gt.shape, majority, np.uint8), len(names))
    return metrics(conf, names)


def _summary(m):
    keys = ('OA', 'mF1', 'mF1_all', 'mIoU')
    out = {k: m[k] for k in keys}
    out['F1'] = dict(zip(m['classes'], m['F1']))
    out['IoU'] = dict(zip(m['classes'], m['IoU']))
    return out


def collect(run):
    """results.json's content: the net's metrics (flat: OA, mIoU, mF1, F1, IoU),
    the majority baseline's (majority_OA, majority_mIoU, ...), the full-reference
    numbers when scored, and the training run's facts."""
    ours = read_evaluation(layout.scasnet_eval(run), 'evaluation (eval seg --json)')
    majority, counts = majority_class(layout.scasnet_path(run, 'data', 'train.txt'), len(ours['classes']),
                                      ours.get('palette'))
    base = majority_metrics(ours, majority, ours.get('erode_radius') if ours.get('eroded') else None)
    results = _summary(ours)
    results.update(('majority_' + k, v) for k, v in _summary(base).items())
    results.update(classes=ours['classes'], majority_class=ours['classes'][majority],
                   train_class_share={n: 100.0 * c / counts.sum() for n, c in zip(ours['classes'], counts)},
                   references=os.path.basename(os.path.normpath(ours['ground_truth_dir'])),
                   means=ours['means'], pixels=ours['pixels'],
                   test_tiles=[os.path.basename(i['prediction']) for i in ours['images']])
    full = layout.scasnet_eval(run, full=True)
    if os.path.isfile(full):
        results['full_reference'] = _summary(read_evaluation(full, 'evaluation', full=True))
    run_json = layout.scasnet_path(run, 'train', 'run.json')
    if os.path.isfile(run_json):
        info = read_run_info(run_json)
        seconds = None
        if info.get('start_time') and info.get('end_time'):
            seconds = _run_seconds(info['start_time'], info['end_time'])
        results['train'] = dict(iterations=info.get('final_iteration'), seconds=seconds, seed=info.get('seed'),
                                data_seed=info.get('data_seed'), status=info.get('status'))
    settings = layout.scasnet_path(run, 'settings.json')
    if os.path.isfile(settings):
        results['settings'] = read_demo_settings(settings)
    return results


def tile_figure(image_path, pred_colour, gt_colour, overlay_path, path, size=TILE_PANEL):
    """image | prediction | reference | overlay, side by side, titled."""
    import cv2
    from caffe_mlic.data.imageio import read_image
    from caffe_mlic.report.figures import titled_row
    return titled_row([(title, cv2.resize(read_image(p), (size, size), interpolation=cv2.INTER_AREA))
                       for title, p in (('image', image_path), ('prediction', pred_colour),
                                        ('reference', gt_colour), ('overlay', overlay_path))], path, 0.55)


def _fmt(v, missing='&ndash;'):
    return missing if v is None else '%.1f' % v


def _tables(results):
    rows = [('overall accuracy (OA)', 'OA'), ('mean F1, %s' % results['means']['mF1'], 'mF1'),
            ('mean F1, all classes', 'mF1_all'), ('mIoU, all classes', 'mIoU')]
    main = ['<table><tr><th class="l">test tiles (%s references)</th><th>small VGG ScasNet</th>'
            '<th>majority class (%s)</th></tr>' % (html.escape(results['references']),
                                                   html.escape(results['majority_class']))]
    main += ['<tr><td class="l">%s</td><td>%s</td><td>%s</td></tr>'
             % (html.escape(label), _fmt(results[k]), _fmt(results['majority_' + k])) for label, k in rows]
    main.append('</table>')
    per_class = ['<table><tr><th class="l">class</th><th>F1</th><th>IoU</th><th>share of the training '
                 'pixels</th></tr>']
    per_class += ['<tr><td class="l">%s</td><td>%s</td><td>%s</td><td>%.1f</td></tr>'
                  % (html.escape(c), _fmt(results['F1'][c]), _fmt(results['IoU'][c]),
                     results['train_class_share'][c]) for c in results['classes']]
    per_class.append('</table>')
    return '\n'.join(main), '\n'.join(per_class)


def write_report(run):
    """Write RUN/results.json, RUN/report.html and RUN/report/*.png; returns
    (results, report path). Every check first (inputs, outputs); the
    pictures made in a staging folder, then moved into place with the two
    files written last (publish): an error leaves the previous report or
    nothing new."""
    results = collect(run)
    out_dir = pictures_dir(run)
    ours = read_evaluation(layout.scasnet_eval(run))
    stems = [os.path.splitext(os.path.basename(image['prediction']))[0] for image in ours['images']]
    pictures = [os.path.join(out_dir, 'tile_%s.png' % stem) for stem in stems]
    outputs = [os.path.join(run, 'results.json'), os.path.join(run, 'report.html')] + pictures
    refuse_overwriting_inputs(run, outputs, evaluation_inputs(ours))
    check_outputs(run, outputs)
    with staging(run) as folder:
        staged = []
        for image, stem, path in zip(ours['images'], stems, pictures):   # first: they read the last inputs
            source = _find_image(layout.scasnet_path(run, 'data', 'top'), stem)
            staged.append(tile_figure(source, layout.scasnet_path(run, 'pred', 'color', stem + '.png'),
                                      image['ground_truth'], layout.scasnet_path(run, 'pred', 'overlay', stem + '.jpg'),
                                      os.path.join(folder, os.path.basename(path))))
        page = publish(run, list(zip(staged, pictures)), results, 'caffe-mlic ScasNet report',
                       _page_body(run, results, pictures))
    return results, page


def _page_body(run, results, pictures):
    confusion_png = layout.scasnet_path(run, 'eval', 'scasnet.confusion.png')
    curves = layout.scasnet_path(run, 'train', 'curves.png')
    rel = lambda p: os.path.relpath(p, run)  # noqa: E731
    main, per_class = _tables(results)
    train = results.get('train', {})
    full = results.get('full_reference')
    body = [
        '<h1>ScasNet in miniature: semantic labeling of a synthetic aerial set</h1>',
        '<p class="note">A small VGG ScasNet trained from scratch on this machine\'s CPU (%s iterations, '
        '%s s) on synthetic ISPRS-like tiles; sliding-window inference on the test tiles; every number is '
        'in <code>results.json</code>. Scored as the ISPRS benchmark scores: on the references with '
        'eroded class boundaries (those pixels ignored), %d pixels.</p>'
        % (train.get('iterations', '?'), '%.0f' % train['seconds'] if train.get('seconds') else '?',
           results['pixels']),
        '<h2>Metrics</h2>', main,
        ('<p class="note">Against the full references (boundaries kept): OA %s, mF1 %s, mIoU %s.</p>'
         % (_fmt(full['OA']), _fmt(full['mF1']), _fmt(full['mIoU'])) if full else ''),
        '<h2>Per class</h2>', per_class,
        '<h2>Confusion matrix</h2><p class="note">Rows: the reference; each row in percent of its pixels.</p>',
        '<img src="%s" alt="confusion matrix" style="max-width: 640px">' % rel(confusion_png)
        if os.path.isfile(confusion_png) else '<p>(no confusion plot)</p>',
        '<h2>Test tiles</h2><p class="note">Image, prediction, reference (black: eroded boundaries, '
        'ignored), prediction over the image.</p>',
        ''.join('<p><img src="%s" alt="test tile %d"></p>' % (rel(p), i) for i, p in enumerate(pictures)),
        '<h2>Training</h2><p class="note">Validation: the val tiles (centre crops); the test tiles are '
        'never used while training.</p>',
        '<img src="%s" alt="training curves">' % rel(curves) if os.path.isfile(curves) else '<p>(no curves)</p>',
    ]
    return body


def _find_image(folder, stem):
    from caffe_mlic.data.imageio import IMAGE_EXTENSIONS
    for ext in IMAGE_EXTENSIONS:
        path = os.path.join(folder, stem + ext)
        if os.path.isfile(path):
            return path
    raise InputError('%s: no image %s.* (the test tile of the prediction %s)' % (folder, stem, stem))


def table(results):
    """The metrics as text, with the majority baseline."""
    lines = ['%-10s %8s %10s' % ('test', 'ScasNet', 'majority')]
    for k in ('OA', 'mF1', 'mF1_all', 'mIoU'):
        lines.append('%-10s %8s %10s' % (k, _fmt(results[k], '-'), _fmt(results['majority_' + k], '-')))
    return '\n'.join(lines)

