"""`caffe-mlic bench` (and `make bench`): speed targets as ratios measured in one run.

Each module in caffe_mlic/benchmarks/ has ``run(report, quick)``; it calls
``report(name, measured, target, unit)`` for every number it measures, where
``target`` is a string like '<= 0.5' or '>= 1.6' (or None for plain info).
"""
import importlib
import os
import sys
import time

BENCHMARKS = ('roi_pooling', 'data_layer', 'layer_share', 'speed', 'weights_io', 'data_parallel')


def best_time(fn, repeats):
    """The fastest of ``repeats`` timed calls of ``fn`` (seconds), after one
    untimed call (JIT compilation or cache loading, pages of files and buffers)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class Report:
    def __init__(self, out=sys.stdout):
        self.out, self.rows = out, []

    def __call__(self, name, measured, target=None, unit='x'):
        ok = None
        if target:
            op, value = target.split()
            ok = measured <= float(value) if op == '<=' else measured >= float(value)
        self.rows.append((name, measured, target, ok))
        verdict = '' if ok is None else ('  OK' if ok else '  MISSED')
        self.out.write('%-62s %10.3f %-3s %s%s\n' % (name, measured, unit,
                                                  ('target ' + target) if target else '', verdict))
        self.out.flush()


def run(names=None, quick=False, out=sys.stdout):
    os.environ.setdefault('GLOG_minloglevel', '2')
    report = Report(out)
    for name in names or BENCHMARKS:
        start = time.perf_counter()
        out.write('== %s\n' % name)
        importlib.import_module('caffe_mlic.benchmarks.' + name).run(report, quick)
        out.write('   (%.1f s)\n' % (time.perf_counter() - start))
    missed = [r[0] for r in report.rows if r[3] is False]
    if missed:
        out.write('missed targets: %s\n' % ', '.join(missed))
    return report
