"""`caffe-mlic report RUN` of the comparison of ScasNet heads (`make
demo-scasnet`): RUN/results.json and RUN/report.html from the files each
head's commands wrote (caffe_mlic/report/layout.py), nothing recomputed but
the majority baseline:

    {"runs": [{"seed": S, "variants": {"fcn": M, "parallel": M, "cascade": M, "full": M, ...}}, ...],
     "summary": {"<head>": {"<key>": {"mean", "std", "values"}}, "paired": {"<head>": {"<key>":
                 {"mean", "std", "values", "every_seed"}}}, "claims": [...]},
     "majority": M, "settings": {...}}

Each M holds the metrics of `eval seg --json` on the eroded references (OA,
mF1, mF1_all, mIoU, per-class F1 / IoU / precision / recall by name,
hard_accuracy, hard_pixels, accuracy_by_distance) plus boundary_F1 and
car_recall from the evaluation against the full references (a 2-px
boundary band and whole cars are only there). Paired differences are head
minus full, seed by seed; "std" is the sample standard deviation.
"""
import html
import os

import numpy as np

from caffe_mlic.errors import InputError, Problem
from caffe_mlic.report import check_outputs, layout, pictures_dir, publish, refuse_overwriting_inputs, staging
from caffe_mlic.report.results import mean_std
from caffe_mlic.report.scasnet import (evaluation_inputs, majority_class, read_demo_settings, read_evaluation,
                                       same_classes)

PANEL = 220               # px per panel in the crop pictures
CROP = 320                # px of a test tile shown per crop
REFERENCE_HEAD = 'full'
# what the table, the paired differences and the claims read, in order
KEYS = (('OA', 'OA'), ('mF1', 'mean F1 (5 classes)'), ('mIoU', 'mIoU'), ('hard_accuracy', 'hard-pixel accuracy'),
        ('boundary_F1', 'boundary F1 (2 px)'), ('car_recall', 'car recall (objects)'), ('F1.car', 'car F1'),
        ('F1.building', 'building F1'), ('F1.impervious_surfaces', 'impervious F1'))
PER_CLASS = ('F1', 'IoU', 'precision', 'recall')
FROM_FULL_REFERENCES = ('boundary_F1', 'car_recall', 'objects', 'accuracy_by_distance')


def read_head(folder):
    """[(path, evaluation)] of one head's folder: eval/scasnet.json, then
    eval/scasnet_full.json when there, each checked by read_evaluation
    (the detail metrics too)."""
    paths = [layout.scasnet_eval(folder)]
    full = layout.scasnet_eval(folder, full=True)
    if os.path.isfile(full):
        paths.append(full)
    return [(path, read_evaluation(path, 'evaluation (eval seg --json)', detail=True)) for path in paths]


def head_metrics(folder, evaluations=None):
    """M of one head's folder (see the module docstring), from its
    evaluations (read_head) when given."""
    evaluations = evaluations or read_head(folder)
    return metrics_of(evaluations[0][1], evaluations[1][1] if len(evaluations) > 1 else {})


def metrics_of(eroded, full):
    out = {k: eroded.get(k) for k in ('OA', 'mF1', 'mF1_all', 'mIoU', 'hard_accuracy', 'hard_pixels')}
    for key in PER_CLASS:
        if isinstance(eroded.get(key), list):
            out[key] = dict(zip(eroded['classes'], eroded[key]))
    for key in FROM_FULL_REFERENCES:
        out[key] = full.get(key)
    return out


def _get(m, key):
    value = m
    for part in key.split('.'):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _stats(values):
    mean, std = mean_std(values)
    return dict(mean=mean, std=std, values=values)


def summarise(runs, heads):
    """Per head and key, mean / std / values; per head, its paired
    difference against the full net; the issue's claims, checked."""
    summary = {'seeds': [r['seed'] for r in runs], 'heads': heads}
    for head in heads:
        summary[head] = {key: _stats([_get(r['variants'][head], key) for r in runs]) for key, _ in KEYS}
    paired = {}
    if REFERENCE_HEAD in heads:
        for head in heads:
            if head == REFERENCE_HEAD:
                continue
            paired[head] = {}
            for key, _ in KEYS:
                pairs = [(_get(r['variants'][head], key), _get(r['variants'][REFERENCE_HEAD], key)) for r in runs]
                values = [a - b if a is not None and b is not None else None for a, b in pairs]
                stats = _stats(values)
                stats['full_better_every_seed'] = bool(values) and all(v is not None and v < 0 for v in values)
                paired[head][key] = stats
    summary['paired'] = paired
    summary['claims'] = claims(paired)
    return summary


def _claim(text, ok, detail):
    return dict(claim=text, holds=bool(ok), measured=detail)


def _diff_text(d):
    vals = ', '.join('n/a' if v is None else '%+.1f' % v for v in d['values'])
    return ('%+.1f ± %.1f (seeds: %s)' % (d['mean'], d['std'], vals)) if d['mean'] is not None else 'n/a'


def claims(paired):
    """The targets of the comparison, each with what was measured. A paired
    value is head - full, so 'full above the head' is a negative value."""
    out = []
    fcn = paired.get('fcn')
    if fcn:
        d = fcn['mF1']
        out.append(_claim('full ScasNet above the plain FCN head on mean F1 by >= 3 points on average and on '
                          'every seed', d['mean'] is not None and -d['mean'] >= 3 and d['full_better_every_seed'],
                          'fcn - full: ' + _diff_text(d)))
        d = fcn['hard_accuracy']
        out.append(_claim('full ScasNet above the plain FCN head on hard-pixel accuracy on every seed',
                          d['full_better_every_seed'], 'fcn - full: ' + _diff_text(d)))
    cascade = paired.get('cascade')
    if cascade:
        for key, name in (('boundary_F1', 'boundary F1'), ('F1.car', 'car F1')):
            d = cascade[key]
            out.append(_claim('refinement: full ScasNet above the cascade without refinement on %s on average'
                              % name, d['mean'] is not None and d['mean'] < 0, 'cascade - full: ' + _diff_text(d)))
    parallel = paired.get('parallel')
    if parallel:
        d = parallel['mF1']
        values = [v for v in d['values'] if v is not None]
        agree = bool(values) and (all(v < 0 for v in values) or all(v > 0 for v in values))
        clear = agree and d['mean'] is not None and abs(d['mean']) > 2 * (d['std'] or 0)
        way = 'cascade better' if d['mean'] is not None and d['mean'] < 0 else 'parallel better'
        out.append(_claim('cascade against parallel on mean F1: a claim only if every seed agrees and the mean '
                          'exceeds twice the spread (%s)' % way, clear, 'parallel - full: ' + _diff_text(d)))
    return out


def evaluate_constant(evaluation, label):
    """eval seg's metrics (the confusion's and DetailMetrics') of a map that
    is ``label`` everywhere, on the references, hard-pixel masks and
    settings of ``evaluation`` (an eval seg JSON)."""
    from caffe_mlic.data.labelmaps import read_label_map
    from caffe_mlic.evaluation.segmentation import (EXCLUDE_FROM_MEAN, DetailMetrics, SegmentationEvaluator,
                                                    read_hard_mask, score_maps)
    # read_evaluation checked the classes, hard_mask, objects, boundary and erode_radius used here
    names = evaluation['classes']
    masks = evaluation.get('hard_mask') or {}
    from_files = masks.get('from') == 'files'
    objects = evaluation.get('objects')
    detail = DetailMetrics(names, hard_masks=masks.get('folder') if from_files else None,
                           hard_distance=None if from_files else masks.get('distance'),
                           hard_classes=None if from_files else masks.get('classes'),
                           boundary_tolerance=(evaluation.get('boundary') or {}).get('tolerance', 2),
                           object_classes=list(objects) if isinstance(objects, dict) else None,
                           min_object_pixels=evaluation.get('object_min_pixels', 10))
    confusion = SegmentationEvaluator(len(names), class_names=names, exclude_from_mean=EXCLUDE_FROM_MEAN)
    for image in evaluation['images']:
        gt = read_label_map(image['ground_truth'], len(names), evaluation.get('palette'))
        pred = np.full(gt.shape, label, np.uint8)
        hard = None
        if from_files:
            stem = os.path.splitext(os.path.basename(image['prediction']))[0]
            hard = read_hard_mask(os.path.join(masks['folder'], stem + '.png'), gt.shape, image['prediction'])
        score_maps(confusion, pred, gt, evaluation.get('eroded'),
                   3 if evaluation.get('erode_radius') is None else evaluation['erode_radius'], detail, hard)
    out = confusion.evaluate()
    out.update(detail.evaluate())
    return out


def data_files(run, settings=None):
    """(train list, its root folder, test list) of a run: RUN/data/ as the
    demo makes it, or what settings.json's "data" names (`caffe-mlic run`,
    whose data may live anywhere)."""
    data = (settings or {}).get('data')
    if isinstance(data, dict) and all(isinstance(data.get(k), str) for k in ('train_list', 'root_folder',
                                                                               'test_list')):
        return data['train_list'], data['root_folder'], data['test_list']
    folder = layout.scasnet_path(run, 'data')
    return os.path.join(folder, 'train.txt'), folder, os.path.join(folder, 'test.txt')


def hard_masks(run, settings=None):
    """The folder of hard-pixel masks: RUN/data/hard, or settings.json's
    "data" "hard_masks" (None: there are none)."""
    data = (settings or {}).get('data')
    if isinstance(data, dict) and 'train_list' in data:
        return data.get('hard_masks') if isinstance(data.get('hard_masks'), str) else None
    return layout.scasnet_path(run, 'data', 'hard')


def majority(run, evaluations, settings=None):
    """M of the majority-class map (the class most frequent in the training
    labels), scored by the same evaluation as the heads on their references
    (``evaluations``: one head's, read_head)."""
    eroded = evaluations[0][1]
    classes = eroded['classes']
    train_list, root, _ = data_files(run, settings)
    label, _ = majority_class(train_list, len(classes), eroded.get('palette'), root)
    full = evaluations[1][1] if len(evaluations) > 1 else None
    m = metrics_of(evaluate_constant(eroded, label), evaluate_constant(full, label) if full else {})
    m['class'] = classes[label]
    return m


def _listed(items):
    return ', '.join(map(str, items))


def matched_heads(run, settings=None):
    """(seeds, heads) of a comparison run, checked to be matched: every seed
    holds the same scored heads (seed<S>/<head>/eval/scasnet.json). What the
    demo ran is what RUN/settings.json lists ("seeds", "heads", read by
    read_demo_settings: ``settings``) when it does, else every seed<S>
    folder and every head scored in any of them. A head missing from a
    seed, a seed folder missing, an extra seed folder or an extra head
    folder (a known head's name, or a folder with eval/scasnet.json) is
    one InputError naming the run, the seeds and the heads: a comparison
    with a head absent from a seed is not a comparison. When settings.json
    lists the seeds and heads, folders of other seeds and heads (an earlier
    run into the folder with more of them, then resumed with fewer) are
    left out of the comparison, not an error: returns (seeds, heads, the
    folders left out, relative to ``run``)."""
    settings = settings or {}
    folders = layout.seed_dirs(run)
    found = layout.scasnet_heads(run)
    if not found:
        raise InputError('%s: no seed<S>/<head>/eval/scasnet.json: not a comparison of heads '
                         '(run `make demo-scasnet`)' % run)

    def head_folders(folder):       # what a seed folder holds that is, or looks like, a head
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.is_dir())
        except OSError:
            return []
        return [n for n in names if n in layout.SCAS_HEAD_LABELS
                or os.path.isfile(layout.scasnet_eval(os.path.join(folder, n)))]
    listed = [key for key in ('seeds', 'heads') if key in settings]
    where = ' (the %s %s lists)' % (' and '.join(listed), layout.scasnet_path(run, 'settings.json')) if listed else ''
    seeds = sorted(settings['seeds']) if 'seeds' in settings else list(folders)
    named = settings['heads'] if 'heads' in settings else {h for by_head in found.values() for h in by_head}
    heads = [h for h in layout.SCAS_HEAD_LABELS if h in named]
    problems = []
    missing_seeds = [seed for seed in seeds if seed not in folders]
    if missing_seeds:
        problems.append('no folder for seed%s %s' % ('s' if len(missing_seeds) > 1 else '', _listed(missing_seeds)))
    left_out = []
    extra_seeds = [seed for seed in folders if seed not in seeds]
    if extra_seeds and 'seeds' in settings:
        left_out += [os.path.basename(folders[seed]) for seed in extra_seeds]
    elif extra_seeds:
        problems.append('seed folder%s %s not among the seeds' % ('s' if len(extra_seeds) > 1 else '', _listed(
            os.path.basename(folders[seed]) for seed in extra_seeds)))
    for seed in seeds:
        if seed not in folders:
            continue
        scored = found.get(seed, {})
        missing = [h for h in heads if h not in scored]
        extra = [h for h in head_folders(folders[seed]) if h not in heads]
        if missing:
            problems.append('seed %d lacks head%s %s (no %s)' % (seed, 's' if len(missing) > 1 else '', _listed(
                missing), _listed(os.path.relpath(layout.scasnet_eval(layout.scasnet_head_dir(run, seed, h)), run)
                                  for h in missing)))
        if extra and 'heads' in settings:
            left_out += [os.path.join(os.path.basename(folders[seed]), h) for h in extra]
        elif extra:
            problems.append('seed %d has the unexpected head folder%s %s' % (
                seed, 's' if len(extra) > 1 else '', _listed(os.path.join(os.path.basename(folders[seed]), h)
                                                             for h in extra)))
    if problems:
        raise InputError('%s: not a matched comparison: %s; every seed (%s) must hold every head (%s)%s'
                         % (run, '; '.join(problems), _listed(seeds) or 'none', _listed(heads) or 'none', where))
    return seeds, heads, left_out


def collect(run, inputs=None):
    """results.json's content (module docstring); the files read outside the
    evaluations' folders are added to the list ``inputs`` when given."""
    path = layout.scasnet_path(run, 'settings.json')
    settings = read_demo_settings(path) if os.path.isfile(path) else None
    seeds, heads, left_out = matched_heads(run, settings)
    found = layout.scasnet_heads(run)
    evaluations = {(seed, h): read_head(found[seed][h]) for seed in seeds for h in heads}
    same_classes([e for each in evaluations.values() for e in each])
    runs = [dict(seed=seed, variants={h: head_metrics(found[seed][h], evaluations[seed, h]) for h in heads})
            for seed in seeds]
    some = evaluations[runs[0]['seed'], heads[0]]
    first = some[0][1]
    results = dict(runs=runs, summary=summarise(runs, heads), majority=majority(run, some, settings),
                   classes=first['classes'], test_tiles=[os.path.basename(i['prediction']) for i in first['images']])
    if settings is not None:
        results['settings'] = settings
    if left_out:
        results['left_out'] = sorted(left_out)
    if inputs is not None:
        inputs += [path for each in evaluations.values() for path, _ in each]
        inputs += [f for _, e in some for f in evaluation_inputs(e)]
    return results


# ---------------------------------------------------------------- pictures


def _crop_box(hard, size):
    """The CROP x CROP window of a tile holding the most hard pixels of
    ``hard`` (a bool mask, or None) (its top-left)."""
    import cv2
    h, w = size
    side = min(CROP, h, w)
    if hard is None or hard.shape != (h, w):
        return 0, 0, side
    integral = cv2.integral(hard.astype(np.uint8))
    counts = (integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side] + integral[:-side, :-side])
    y, x = np.unravel_index(int(counts.argmax()), counts.shape)
    return int(y), int(x), side


def _test_tile(run, settings, stem):
    """(image, reference) paths of test tile ``stem``: from the test list's
    "image label" lines."""
    from caffe_mlic.data.datalist import read_seg_datalist
    _, root, test_list = data_files(run, settings)
    if not os.path.exists(test_list) and not (settings or {}).get('data'):
        # the demo's layout without its list: the ISPRS folders
        from caffe_mlic.report.scasnet import _find_image
        return (_find_image(os.path.join(root, 'top'), stem),
                _find_image(os.path.join(root, 'gts_for_participants'), stem))
    tiles = read_seg_datalist(test_list, os.path.join(root, ''), check_files=False)
    for image, label in zip(tiles.image_paths, tiles.label_paths):
        if os.path.splitext(os.path.basename(image))[0] == stem:
            return image, label
    raise InputError(problems=[Problem(test_list, None, None, 'lists no test tile %s' % stem)])


def crop_figure(run, seed, heads, stem, path, settings=None):
    """One row: the image, the reference, the hard pixels (white), then each
    head's prediction, all on the same crop of test tile ``stem``."""
    import cv2
    from caffe_mlic.data.imageio import read_image
    from caffe_mlic.report.figures import titled_row
    from caffe_mlic.evaluation.segmentation import read_hard_mask
    image_path, reference_path = _test_tile(run, settings, stem)
    image = read_image(image_path)
    panels = [('image', image, image_path), ('reference', read_image(reference_path), reference_path)]
    preds = [(head, os.path.join(layout.scasnet_head_dir(run, seed, head), 'pred', 'color', stem + '.png'))
             for head in heads]
    panels += [(head, read_image(pred), pred) for head, pred in preds]
    for title, img, where in panels[1:]:
        if img.shape[:2] != image.shape[:2]:
            raise InputError(problems=[Problem(where, None, None, 'is %dx%d (WxH) but its test tile %s is %dx%d'
                                               % (img.shape[1], img.shape[0], image_path, image.shape[1],
                                                  image.shape[0]))])
    hard_folder = hard_masks(run, settings)
    hard_path = os.path.join(hard_folder, stem + '.png') if hard_folder else None
    hard = None
    if hard_path and os.path.isfile(hard_path):     # the masks eval seg read: an InputError naming the file, as there
        hard = read_hard_mask(hard_path, image.shape[:2], preds[0][1] if preds else image_path)
        panels.insert(2, ('hard pixels', cv2.cvtColor(hard.astype(np.uint8) * 255, cv2.COLOR_GRAY2BGR), hard_path))
    y, x, side = _crop_box(hard, image.shape[:2])
    return titled_row([(title, cv2.resize(np.ascontiguousarray(img[y:y + side, x:x + side]), (PANEL, PANEL),
                                          interpolation=cv2.INTER_NEAREST)) for title, img, _ in panels], path)


# ---------------------------------------------------------------- page and text


def _fmt(v, missing='&ndash;'):
    return missing if v is None else '%.1f' % v


def _cell(stats):
    if stats['mean'] is None:
        return '&ndash;'
    return '%.1f ± %.1f' % (stats['mean'], stats['std'])


def _tables(results):
    s, heads = results['summary'], results['summary']['heads']
    label = lambda h: html.escape(layout.SCAS_HEAD_LABELS.get(h, h))  # noqa: E731
    rows = ['<table><tr><th class="l">test tiles, mean ± std over seeds %s</th>%s<th>majority (%s)</th></tr>'
            % (', '.join(map(str, s['seeds'])), ''.join('<th>%s</th>' % label(h) for h in heads),
               html.escape(results['majority'].get('class', '?')))]
    for key, name in KEYS:
        rows.append('<tr><td class="l">%s</td>%s<td>%s</td></tr>' % (
            html.escape(name), ''.join('<td>%s</td>' % _cell(s[h][key]) for h in heads),
            _fmt(_get(results['majority'], key))))
    rows.append('</table>')
    paired = ['<table><tr><th class="l">head &minus; full, per seed</th>%s</tr>'
              % ''.join('<th>%s</th>' % label(h) for h in s['paired'])]
    for key, name in KEYS:
        paired.append('<tr><td class="l">%s</td>%s</tr>' % (html.escape(name), ''.join(
            '<td>%s</td>' % html.escape(_diff_text(s['paired'][h][key])) for h in s['paired'])))
    paired.append('</table>')
    per_seed = ['<table><tr><th class="l">seed</th><th class="l">head</th>%s</tr>'
                % ''.join('<th>%s</th>' % html.escape(name) for _, name in KEYS)]
    for r in results['runs']:
        for h in heads:
            per_seed.append('<tr><td class="l">%d</td><td class="l">%s</td>%s</tr>' % (
                r['seed'], html.escape(h), ''.join('<td>%s</td>' % _fmt(_get(r['variants'][h], k)) for k, _ in KEYS)))
    per_seed.append('</table>')
    claims = ['<ul>'] + ['<li><b>%s</b>: %s. Measured: %s.</li>' % (
        'holds' if c['holds'] else 'does not hold', html.escape(c['claim']), html.escape(c['measured']))
        for c in s['claims']] + ['</ul>']
    return '\n'.join(rows), '\n'.join(paired), '\n'.join(per_seed), '\n'.join(claims)


def write_report(run):
    """Write RUN/results.json, RUN/report.html and RUN/report/*.png; returns
    (results, report path). Every check first (inputs, outputs); the
    pictures made in a staging folder, then moved into place with the two
    files written last (publish): an error leaves the previous report or
    nothing new."""
    inputs = []
    results = collect(run, inputs)
    out_dir = pictures_dir(run)
    stems = [os.path.splitext(tile)[0] for tile in results['test_tiles']]
    pictures = [os.path.join(out_dir, 'heads_%s.png' % stem) for stem in stems]
    outputs = [os.path.join(run, 'results.json'), os.path.join(run, 'report.html')] + pictures
    refuse_overwriting_inputs(run, outputs, inputs)
    check_outputs(run, outputs)
    with staging(run) as folder:
        # the pictures first, in the staging folder: they read the last inputs (tiles, hard masks, predictions)
        heads, seed = results['summary']['heads'], results['runs'][0]['seed']
        staged = [crop_figure(run, seed, heads, stem, os.path.join(folder, os.path.basename(path)),
                              results.get('settings'))
                  for stem, path in zip(stems, pictures)]
        page = publish(run, list(zip(staged, pictures)), results, 'caffe-mlic ScasNet heads',
                       _page_body(run, results, pictures))
    return results, page


def _page_body(run, results, pictures):
    heads, seed = results['summary']['heads'], results['runs'][0]['seed']
    rel = lambda p: os.path.relpath(p, run)  # noqa: E731
    curves = [(h, os.path.join(layout.scasnet_head_dir(run, seed, h), 'train', 'curves.png')) for h in heads]
    table, paired, per_seed, claims = _tables(results)
    settings = results.get('settings', {})
    body = [
        '<h1>ScasNet heads compared on a synthetic aerial set where context decides</h1>',
        '<p class="note">The same small VGG backbone (receptive field smaller than the crop), solver, crops, '
        'iterations (%s) and data for every head; seeds %s; sliding-window inference on the test tiles. OA, '
        'mean F1, mIoU, per-class F1 and hard-pixel accuracy on the eroded references (as the ISPRS '
        'benchmark); boundary F1 and car recall (a car found when half its pixels are labelled car) on the '
        'full ones. Hard pixels: impervious and building pixels farther than the set distance from any other '
        'label, where a local window holds no cue. Every number is in <code>results.json</code>.</p>'
        % (settings.get('iters', '?'), ', '.join(map(str, results['summary']['seeds']))),
        '<p class="note">Left out (folders of seeds or heads this run does not list): %s.</p>'
        % html.escape(', '.join(results['left_out'])) if results.get('left_out') else '',
        '<h2>Heads</h2>', table,
        '<h2>Paired differences against the full net</h2><p class="note">Negative: the full net is ahead.</p>',
        paired,
        '<h2>What the comparison set out to show</h2>',
        '<p class="note">A miniature run (DEMO_MINI=1): too few iterations for these to mean anything.</p>'
        if settings.get('mini') else '', claims,
        '<h2>Every seed</h2>', per_seed,
        '<h2>Predictions on the same crops (seed %d)</h2><p class="note">Each test tile\'s window with the '
        'most hard pixels: image, reference, hard pixels (white), then each head.</p>' % seed,
        ''.join('<p><img src="%s" alt="crop %d"></p>' % (rel(p), i) for i, p in enumerate(pictures)),
        '<h2>Training curves (seed %d)</h2>' % seed,
        ''.join('<h3>%s</h3><img src="%s" alt="curves of %s">' % (html.escape(h), rel(p), html.escape(h))
                for h, p in curves if os.path.isfile(p)),
    ]
    return body


def table(results):
    """The comparison as text: mean ± std per head, the majority, then the claims."""
    s, heads = results['summary'], results['summary']['heads']
    width = 15
    lines = ['%-22s' % 'test tiles' + ''.join('%*s' % (width, h) for h in heads) + '%*s' % (width, 'majority')]
    for key, name in KEYS:
        cells = ''.join('%*s' % (width, '-' if s[h][key]['mean'] is None else '%.1f±%.1f'
                                 % (s[h][key]['mean'], s[h][key]['std'])) for h in heads)
        m = _get(results['majority'], key)
        lines.append('%-22s' % name[:22] + cells + '%*s' % (width, '-' if m is None else '%.1f' % m))
    if results.get('left_out'):
        lines.append('left out (folders of seeds or heads this run does not list): %s' % ', '.join(results['left_out']))
    if results.get('settings', {}).get('mini'):
        lines.append('a miniature run (DEMO_MINI=1): too few iterations for the claims below to mean anything')
    for c in s['claims']:
        lines.append('%s: %s (%s)' % ('holds' if c['holds'] else 'does not hold', c['claim'], c['measured']))
    return '\n'.join(lines)
