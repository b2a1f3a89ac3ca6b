"""Gather a demo run's numbers into RUN/results.json and write RUN/report.html,
for either system: the run folder says which (caffe_mlic/report/layout.py).

    caffe-mlic report runs/demo [--strict]      # MLIC-KD-WSD (`make demo`)
    caffe-mlic report runs/scasnet              # ScasNet (`make demo-scasnet`;
                                                # `scasnet report` still works)

MLIC-KD-WSD: the page (pictures in RUN/report/) shows the mAP table (mean +- std over the
seeds, and each seed), the fairness checks, the teacher's detection AP and
CorLoc against a random control, speed, the per-class AP change from
distillation, test images with the teacher's top regions and both students'
top-3 labels, and the training curves of every stage and seed. The folder
layout it reads is the one `make demo` writes (caffe_mlic/report/layout.py).
"""
from caffe_mlic.errors import InputError, RunError

HELP = 'results.json and an HTML report of a demo run (MLIC-KD-WSD or ScasNet)'


def add_arguments(p):
    p.add_argument('run_dir', metavar='RUN', help='the demo run folder (runs/demo, runs/scasnet)')
    p.add_argument('--strict', action='store_true',
                   help='MLIC-KD-WSD: exit 1 when a fairness check fails (after writing the report)')


def run(args):
    from caffe_mlic.processes import run_stoppable
    results = run_stoppable(args, _write)
    if results is None or isinstance(results, int):
        return results
    failed = ['seed %d: %s (%s)' % (r['seed'], c['name'], c['detail'])
              for r in results['runs'] for c in r['fairness'] if not c['ok']]
    for line in failed:
        print('fairness check failed: ' + line)
    if failed and args.strict:
        raise RunError('%d fairness check(s) failed; the comparison is not fair' % len(failed))


def _write(args):
    """The report of either system; the MLIC results (None for ScasNet)."""
    from caffe_mlic.report import layout
    system = layout.system_of(args.run_dir)
    if system == 'scasnet':
        from caffe_mlic.commands.scasnet import write_report
        return write_report(args)
    if system is None:
        raise InputError('%s: not a demo run: no seed<S> folders (make demo) and no %s (make demo-scasnet)'
                         % (args.run_dir, layout.scasnet_eval(args.run_dir)))
    from caffe_mlic.report.page import write_report
    results, path = write_report(args.run_dir)
    print(table(results))
    print('results: %s/results.json\nreport:  %s' % (args.run_dir.rstrip('/'), path))
    return results


def table(results):
    """The mAP table as text: mean +- std over the seeds, then each seed."""
    s, runs = results['summary'], results['runs']
    from caffe_mlic.report.layout import ABLATION_LABELS
    rows = [('teacher (WSDDN)', 'teacher.mAP'), ('student with KD', 'student_kd.mAP'),
            ('student without KD', 'student_baseline.mAP')]
    rows += [('  ' + label, 'ablation.%s.mAP' % name) for name, label in ABLATION_LABELS.items()
             if 'ablation.%s.mAP' % name in s]
    width = max(22, max(len(label) for label, _ in rows))
    lines = ['%-*s %15s  %s' % (width, 'test mAP (%)', 'mean +- std', '  '.join(
        'seed %-3d' % r['seed'] for r in runs))]
    for label, key in rows:
        stat = s[key]
        lines.append('%-*s %7.1f +- %4.1f  %s' % (width, label, stat['mean'], stat['std'], '  '.join(
            '%8.1f' % v for v in stat['values'])))
    g = s['kd_gain']
    lines.append('%-*s %+7.1f +- %4.1f  %s' % (width, 'gain from KD', g['mean'], g['std'], '  '.join(
        '%+8.1f' % v for v in g['values'])))
    paired = s.get('paired', [])
    if len(paired) > 1:
        lines.append('paired test mAP differences, row - its matched control (mean +- std, each seed):')
        for p in paired:
            lines.append('  %s: %+.1f +- %.1f  (%s)' % (p['name'], p['mean'], p['std'], ', '.join(
                '%+.1f' % v for v in p['values'])))
    study = sorted(k.split('.')[1] for k in s if k.startswith('study.') and k.endswith('.val_mAP'))
    if study:
        lines.append('stage 2 study (validation mAP at the end, mean +- std; paired against the release):')
        for name in study:
            stat = s['study.%s.val_mAP' % name]
            diffs = s.get('study_paired', {}).get(name, [])
            lines.append('  %-20s %5.1f +- %4.1f  (%s)' % (name, stat['mean'], stat['std'], ', '.join(
                '%+.1f' % d for d in diffs)))
    scale = s.get('student_temperature_scale.mean')
    if scale:
        lines.append("stage 2's learned scale on the student logits (init 1/T): mean %.2f, range %.2f .. "
                     '%.2f over seeds and classes' % (
                         scale['mean'], min(s['student_temperature_scale.min']['values']),
                         max(s['student_temperature_scale.max']['values'])))
    lines.append('teacher detection: AP %.1f +- %.1f (random control %.1f), CorLoc %.1f +- %.1f; '
                 'student %.1fx faster than the teacher' % (
                     s['teacher.det_AP']['mean'], s['teacher.det_AP']['std'],
                     s['teacher.control_det_AP']['mean'], s['teacher.CorLoc']['mean'],
                     s['teacher.CorLoc']['std'], s['speed.speedup']['mean']))
    return '\n'.join(lines)
