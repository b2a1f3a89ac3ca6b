"""`caffe-mlic report RUN`: RUN/results.json and RUN/report.html (pictures
in RUN/report/), readable without the terminal: the table (mean +- std over
seeds, and each seed), the fairness checks, the teacher as a detector
against a random control, speed, the per-class AP change from distillation,
test images with the teacher's top regions and both students' top-3 labels,
and the training curves of every stage and seed."""
import html
import os

import numpy as np

from caffe_mlic.fileio import read_json
from caffe_mlic import plotting
from caffe_mlic.report import check_outputs, figures, layout, pictures_dir, publish, refuse_overwriting_inputs, staging
from caffe_mlic.report.results import collect, read_array

EXAMPLES = 6


def _pm(stat, digits=1):
    if stat is None or stat.get('mean') is None:
        return 'n/a'
    return '%.*f &plusmn; %.*f' % (digits, stat['mean'], digits, stat['std'])


def _num(value, digits=1):
    return 'n/a' if value is None else '%.*f' % (digits, value)


def _main_table(results, sizes):
    summary, runs = results['summary'], results['runs']
    head = ''.join('<th>seed %d</th>' % r['seed'] for r in runs)
    rows = [('teacher: WSDDN, %d px' % sizes['teacher_size'], 'teacher.mAP', lambda r: r['teacher']['mAP']),
            ('student with KD, %d px' % sizes['student_size'], 'student_kd.mAP',
             lambda r: r['student_kd']['mAP']),
            ('student without KD, %d px' % sizes['student_size'], 'student_baseline.mAP',
             lambda r: r['student_baseline']['mAP'])]
    rows += [('ablation: %s' % label, 'ablation.%s.mAP' % name,
              lambda r, name=name: r.get('ablation', {}).get(name, {}).get('mAP'))
             for name, label in layout.ABLATION_LABELS.items() if 'ablation.%s.mAP' % name in summary]
    out = ['<table><tr><th class="l">mAP on the test split (%%)</th><th>mean &plusmn; std</th>%s</tr>'
           % head]
    for label, key, get in rows:
        out.append('<tr><td class="l">%s</td><td><b>%s</b></td>%s</tr>' % (
            html.escape(label), _pm(summary.get(key)), ''.join('<td>%s</td>' % _num(get(r)) for r in runs)))
    gain = summary['kd_gain']
    out.append('<tr><td class="l">gain from KD</td><td><b>%s</b></td>%s</tr>' % (
        '%+.1f &plusmn; %.1f' % (gain['mean'], gain['std']),
        ''.join('<td>%+.1f</td>' % g for g in gain['values'])))
    out.append('</table>')
    return '\n'.join(out)


def _paired_table(results):
    """Every ablation row against its matched control: the per-seed difference."""
    paired, runs = results['summary'].get('paired', []), results['runs']
    if not paired:
        return ''
    labels = dict([('student_kd', 'student with KD (two stages)'),
                   ('student_baseline', 'student without KD (the baseline)')]
                  + [('ablation.' + k, v) for k, v in layout.ABLATION_LABELS.items()])
    out = ['<table><tr><th class="l">what is tested</th><th class="l">row</th><th class="l">'
           'matched control</th><th>row &minus; control, test mAP</th>%s</tr>'
           % ''.join('<th>seed %d</th>' % r['seed'] for r in runs)]
    for p in paired:
        out.append('<tr><td class="l">%s</td><td class="l">%s</td><td class="l">%s</td><td><b>%+.1f '
                   '&plusmn; %.1f</b></td>%s</tr>' % (
                       html.escape(p['name']), html.escape(labels[p['row']]),
                       html.escape(labels[p['control']]), p['mean'], p['std'],
                       ''.join('<td>%+.1f</td>' % v for v in p['values'])))
    out.append('</table>')
    return '\n'.join(out)


def _study_table(results):
    """STUDY=1: the stage-2 variants' validation mAP, each against the release's stage 2."""
    summary = results['summary']
    names = [n for n in layout.STUDY_LABELS if 'study.%s.val_mAP' % n in summary]
    names += sorted(k.split('.')[1] for k in summary if k.startswith('study.') and k.endswith('.val_mAP')
                    and k.split('.')[1] not in names)
    if not names:
        return ''
    out = ['<p class="note">Stage 2 again from its own start with one setting changed; validation '
           'split, at the last iteration. Paired: minus the release\'s stage 2 of the same seed.</p>'
           '<table><tr><th class="l">stage 2</th><th>validation mAP</th><th>paired difference</th>'
           '<th>student scale at the end (mean)</th></tr>']
    for name in names:
        diffs = summary.get('study_paired', {}).get(name, [])
        scale = summary.get('study.%s.scale.mean' % name)
        out.append('<tr><td class="l">%s</td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
            html.escape(layout.STUDY_LABELS.get(name, name)), _pm(summary['study.%s.val_mAP' % name]),
            '' if name == 'release' else ', '.join('%+.1f' % d for d in diffs),
            _pm(scale, 2) if scale else ''))
    out.append('</table>')
    return '\n'.join(out)


def _soft_target_table(results):
    """What stage 2 distils: the teacher's soft targets per class (validation split)."""
    summary = results['summary']
    if 'soft_targets.mAP' not in summary:
        return ''
    classes = results['runs'][0]['student_kd']['classes']
    sets = [('soft_targets.', 'T = 0.5 (released)')]
    if 'study.soft_targets_T1.mAP' in summary:
        sets.append(('study.soft_targets_T1.', 'T = 1'))
    out = ['<table><tr><th class="l">class</th>%s</tr>' % ''.join(
        '<th>%s: mean target, images with the class</th><th>without</th><th>AP of the target</th>'
        % label for _, label in sets)]
    for c, name in enumerate(classes):
        out.append('<tr><td class="l">%s</td>%s</tr>' % (html.escape(name), ''.join(
            '<td>%s</td><td>%s</td><td>%s</td>' % (
                _num(summary[prefix + 'mean_with']['mean'][c], 3),
                _num(summary[prefix + 'mean_without']['mean'][c], 3),
                _num(summary[prefix + 'AP']['mean'][c])) for prefix, _ in sets)))
    out.append('<tr><td class="l">all classes (mean &plusmn; std over seeds)</td>%s</tr></table>' % ''.join(
        '<td></td><td></td><td><b>%s</b></td>' % _pm(summary[prefix + 'mAP']) for prefix, _ in sets))
    scale = summary.get('student_temperature_scale.mean')
    if scale:
        out.append('<p class="note">The student\'s learned scale on its logits (the release\'s 1/T, '
                   'learned with lr_mult 10) at the end of stage 2: mean %.2f (over seeds: %s); '
                   'lowest %.2f, highest %.2f over seeds and classes.</p>' % (
                       scale['mean'], ', '.join('%.2f' % v for v in scale['values']),
                       min(summary['student_temperature_scale.min']['values']),
                       max(summary['student_temperature_scale.max']['values'])))
    return '\n'.join(out)


def _metric_table(results):
    """CP .. OF1 at 0.5 and at per-class thresholds chosen on the validation split."""
    summary = results['summary']
    keys = ['CP', 'CR', 'CF1', 'OP', 'OR', 'OF1', 'CF1_top3', 'OF1_top3']
    out = ['<table><tr><th class="l">test split (mean &plusmn; std)</th><th class="l">threshold</th>%s</tr>'
           % ''.join('<th>%s</th>' % k for k in keys)]
    for name, label in (('student_kd', 'student with KD'), ('student_baseline', 'student without KD'),
                        ('teacher', 'teacher')):
        rows = [('0.5', name + '.%s')]
        if 'fitted.%s.CF1' % name in summary:
            rows.append(('per class (val)', 'fitted.' + name + '.%s'))
        for threshold, pattern in rows:
            out.append('<tr><td class="l">%s</td><td class="l">%s</td>%s</tr>' % (label, threshold, ''.join(
                '<td class="n">%s</td>' % _pm(summary.get(pattern % k)) for k in keys)))
    out.append('</table>')
    return '\n'.join(out)


def _detection_table(results):
    summary = results['summary']
    rows = [('teacher (WSDDN)', 'teacher.det_AP07', 'teacher.det_AP', 'teacher.CorLoc'),
            ('control: random scores on the same proposals', 'teacher.control_det_AP07',
             'teacher.control_det_AP', 'teacher.control_CorLoc')]
    out = ['<table><tr><th class="l">detection on the test split (%)</th><th>AP (VOC07 11-point)</th>'
           '<th>AP (all points)</th><th>CorLoc</th></tr>']
    for label, *keys in rows:
        out.append('<tr><td class="l">%s</td>%s</tr>' % (html.escape(label), ''.join(
            '<td>%s</td>' % _pm(summary.get(k)) for k in keys)))
    out.append('</table>')
    return '\n'.join(out)


def _speed_table(results):
    s = results['summary']
    return ('<table><tr><th class="l">per image, batch 1, proposals excluded</th><th>ms</th></tr>'
            '<tr><td class="l">teacher deploy (Caffe)</td><td>%s</td></tr>'
            '<tr><td class="l">student deploy (Caffe)</td><td>%s</td></tr>'
            '<tr><td class="l">student deploy (OpenCV dnn)</td><td>%s</td></tr>'
            '<tr><td class="l">student speed-up over the teacher</td><td><b>%s&times;</b></td></tr></table>'
            % (_pm(s.get('speed.teacher_ms'), 2), _pm(s.get('speed.student_ms'), 2),
               _pm(s.get('speed.student_opencv_ms'), 2), _pm(s.get('speed.speedup'))))


def _fairness(results):
    out = ['<table><tr><th class="l">seed</th><th class="l">check</th><th class="l">result</th></tr>']
    for r in results['runs']:
        for c in r['fairness']:
            out.append('<tr><td>%d</td><td class="l">%s</td><td class="l"><span class="%s">%s</span> %s'
                       '</td></tr>' % (r['seed'], c['name'], 'ok' if c['ok'] else 'bad',
                                       'pass' if c['ok'] else 'FAIL', html.escape(c['detail'])))
    out.append('</table>')
    return '\n'.join(out)


def _ground_truth(run, split):
    """The gt.json `datalist build` wrote beside a split's datalist."""
    from caffe_mlic.data.datalist_build import companion_paths
    return read_json(companion_paths(layout.lists(run, split))[1], 'ground truth')


def _class_frequency(run, classes):
    gt = _ground_truth(run, 'train')
    return [sum(1 for im in gt['images'] if c in im['labels']) for c in classes]


def _examples(run, results, out_dir, count=EXAMPLES):
    """Pictures of the first seed's models on the first ``count`` test images."""
    first = results['runs'][0]
    seed_dir = layout.seed_dirs(run)[first['seed']]
    gt = _ground_truth(run, 'test')
    classes = gt['classes']
    scores = {name: read_array(layout.eval_file(seed_dir, name, '.npy')) for name in layout.STUDENTS}
    paths = []
    for index, image in enumerate(gt['images'][:count]):
        regions = figures.read_top_regions(os.path.join(seed_dir, 'det'), image['file'])
        path = os.path.join(out_dir, 'example_%d.png' % index)
        figures.example(image['file'], regions, image['labels'],
                        [('KD', scores['student_kd'][index]),
                         ('no KD', scores['student_baseline'][index])], classes, path)
        paths.append(path)
    return paths


def _settings(run):
    from caffe_mlic.inference.settings import read_settings
    first = next(iter(layout.seed_dirs(run).values()))
    settings = read_settings(os.path.join(first, 'nets', 'deploy.json'))
    return {k: v for k, v in vars(settings).items() if k != 'source'}


def write_report(run):
    """Write RUN/results.json, RUN/report.html and RUN/report/*.png; returns
    (results, report path). Every check first (inputs, outputs); the
    pictures made in a staging folder, then moved into place with the two
    files written last (publish): an error leaves the previous report or
    nothing new."""
    results = collect(run)
    out_dir = pictures_dir(run)
    shown = _ground_truth(run, 'test')
    shown = shown.get('images') if isinstance(shown, dict) else None   # _examples: the first EXAMPLES
    shown = [image for image in shown[:EXAMPLES] if isinstance(image, dict)] if isinstance(shown, list) else []
    outputs = [os.path.join(run, name) for name in ('results.json', 'report.html')] + [
        os.path.join(out_dir, name) for name in ['kd_gain_per_class.png', 'training_curves.png'] + [
            'example_%d.png' % index for index in range(len(shown))]]
    refuse_overwriting_inputs(run, outputs, [image.get('file') for image in shown])
    check_outputs(run, outputs)
    classes = results['runs'][0]['student_kd']['classes']
    gains = [[(a if a is not None else np.nan) - (b if b is not None else np.nan)
              for a, b in zip(r['student_kd']['AP'], r['student_baseline']['AP'])]
             for r in results['runs']]
    with staging(run) as folder:
        plotting.kd_gain_per_class(classes, _class_frequency(run, classes), gains,
                                   os.path.join(folder, 'kd_gain_per_class.png'))
        figures.training_curves(layout.seed_dirs(run), os.path.join(folder, 'training_curves.png'))
        staged = [os.path.join(folder, name) for name in ('kd_gain_per_class.png', 'training_curves.png')]
        staged += _examples(run, results, folder)
        final = [os.path.join(out_dir, os.path.basename(path)) for path in staged]
        page = publish(run, list(zip(staged, final)), results, 'caffe-mlic demo report',
                       _page_body(run, results, out_dir, final[2:]))
    return results, page


def _page_body(run, results, out_dir, examples):
    sizes = _settings(run)
    rel = lambda p: os.path.relpath(p, run)  # noqa: E731
    body = [
        '<h1>MLIC-KD-WSD in miniature: distillation from a weakly supervised detector</h1>',
        '<p class="note">%d seed(s): %s. Synthetic data, nets trained on this machine\'s CPU; every number '
        'below was measured by the demo\'s commands and is in <code>results.json</code>. The paper '
        '(MS-COCO, VGG16) reports 78.6 / 74.6 / 70.9 mAP for teacher / student with KD / without.</p>'
        % (len(results['runs']), ', '.join(str(r['seed']) for r in results['runs'])),
        '<h2>Multi-label classification</h2>', _main_table(results, sizes), _metric_table(results),
        '<h2>Each row against its matched control</h2>', _paired_table(results),
        '<h2>Fair comparison</h2><p class="note">Checked from the files each run wrote.</p>',
        _fairness(results),
        '<h2>The teacher as a detector</h2>', _detection_table(results),
        '<h2>Speed</h2>', _speed_table(results),
        '<h2>Per-class AP change from distillation</h2>',
        '<img src="%s" alt="per-class AP change">' % rel(os.path.join(out_dir, 'kd_gain_per_class.png')),
        '<h2>Test images</h2><p class="note">Boxes: the teacher\'s 10 best regions (by their highest '
        'class score; the top 3 labelled). Under each image: the truth, then each student\'s top-3 '
        'labels, green when the image has the class, red when not.</p><div class="examples">',
        ''.join('<img src="%s" alt="test image %d">' % (rel(p), i) for i, p in enumerate(examples)),
        '</div>',
        '<h2>What stage 2 distils</h2><p class="note">The teacher\'s image scores as stage 2 reads them '
        '(its temperature, the teacher as loaded into stage 2), on the validation split, averaged '
        'over the seeds.</p>', _soft_target_table(results), _study_table(results),
        '<h2>Training curves</h2><p class="note">Validation: a split carved from the training images '
        '(the test split is never used while training).</p>',
        '<img src="%s" alt="training curves">' % rel(os.path.join(out_dir, 'training_curves.png')),
    ]
    return body
