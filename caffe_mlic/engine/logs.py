"""A training run's records: log.jsonl and log.csv, run.json, and the same
records read back from a caffe binary's log.

A record is a flat dict, one per event:

    train  iteration N (the update that takes the weights from N to N + 1),
           elapsed (seconds of training, summed over resumed sessions), lr,
           loss (the total: each loss top times its loss_weight),
           smoothed_loss (mean of the last average_loss totals),
           train_<top> for each scalar output of the train net (with
           iter_size > 1: of the iteration's last forward);
    test   iteration N (the weights after N updates), elapsed,
           test_<top> for each scalar output of the test net (mean over the
           pass), test_mAP (percent; absent when there is no score blob).

log.jsonl holds one JSON object a line; log.csv the same rows, its columns
fixed when the log is opened (empty where a record has no value). Both are
appended a line at a time and flushed; anything else is written atomically.
When a run resumes at iteration R, the records after its snapshot (train
records from R on, test records after R) are dropped first: the resumed
session writes them again.
"""
import contextlib
import csv
import io
import json
import os
import platform
import re
import time

from caffe_mlic.errors import InputError
from caffe_mlic.fileio import atomic_write, atomic_write_json, json_ready, load_json_text

JSONL, CSV, RUN_JSON = 'log.jsonl', 'log.csv', 'run.json'
BASE_COLUMNS = ('phase', 'iteration', 'elapsed', 'lr', 'loss', 'smoothed_loss')


def read_records(path):
    """The records of a log.jsonl; a torn last line (a killed run: no
    newline after it, as each record is written with its own) is left
    out. InputError naming the line for one that is not a record as
    TrainLog writes them: a JSON object with "phase" train or test, an
    integer "iteration" >= 0, and numbers (or null) for the rest."""
    from caffe_mlic.fileio import open_regular
    records = []
    try:
        with open_regular(path, 'rb') as f:     # (a FIFO would block)
            data = f.read()
            lines = data.splitlines()
    except FileNotFoundError:
        return records
    except OSError as e:
        raise InputError('%s: cannot read the log: %s' % (path, e.strerror or e))
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = load_json_text(line.decode('utf-8'))
        except (ValueError, RecursionError):        # (UnicodeDecodeError is a ValueError)
            if number == len(lines) and not data.endswith((b'\n', b'\r')):
                break
            raise InputError('%s:%d: not a JSON record' % (path, number))
        why = _record_problem(record)
        if why:
            raise InputError('%s:%d: not a record of caffe-mlic train: %s' % (path, number, why))
        records.append(record)
    return records


def _record_problem(record):
    if not isinstance(record, dict):
        return 'not a JSON object'
    if record.get('phase') not in ('train', 'test'):
        return '"phase" must be "train" or "test"'
    iteration = record.get('iteration')
    if not isinstance(iteration, int) or isinstance(iteration, bool) or iteration < 0:
        return '"iteration" must be an integer >= 0'
    for key, value in record.items():
        if key != 'phase' and value is not None and (isinstance(value, bool) or
                                                     not isinstance(value, (int, float))):
            return '%s must be a number' % json.dumps(key)
    return None


def test_points(path, key='test_mAP'):
    """[(iteration, value)] of ``key`` in the test records of log.jsonl
    ``path``, in order; tests without the value are left out."""
    return [(r['iteration'], r[key]) for r in read_records(path)
            if r.get('phase') == 'test' and r.get(key) is not None]


def kept_before(records, iteration):
    """The records a run resumed at ``iteration`` keeps: train records before
    it, test records up to it."""
    return [r for r in records if r['iteration'] < iteration
            or (r['phase'] == 'test' and r['iteration'] == iteration)]


class TrainLog:
    """log.jsonl and log.csv of a run directory. ``columns``: the record keys
    after BASE_COLUMNS. With ``resume_at`` the kept records (kept_before) are
    rewritten and then appended to; otherwise the logs start empty.
    ``records`` holds everything logged, for the plots."""

    def __init__(self, run_dir, columns, resume_at=None):
        self.run_dir = run_dir
        self.columns = list(BASE_COLUMNS) + [c for c in columns if c not in BASE_COLUMNS]
        self.jsonl_path = os.path.join(run_dir, JSONL)
        self.csv_path = os.path.join(run_dir, CSV)
        self.records = [] if resume_at is None else kept_before(read_records(self.jsonl_path),
                                                                 resume_at)
        with atomic_write(self.jsonl_path, replace_special=True) as f:
            f.writelines(self._json_line(r) for r in self.records)
        with atomic_write(self.csv_path, newline='', replace_special=True) as f:
            f.write(self._csv_text(self.records, header=True))
        self._jsonl = open(self.jsonl_path, 'a', encoding='utf-8')
        self._csv = open(self.csv_path, 'a', encoding='utf-8', newline='')

    @property
    def elapsed(self):
        """Seconds of training the kept records cover."""
        return self.records[-1]['elapsed'] if self.records else 0.0

    def _json_line(self, record):
        return json.dumps(json_ready(record)) + '\n'

    def _csv_text(self, records, header=False):
        out = io.StringIO()
        writer = csv.DictWriter(out, self.columns, restval='', extrasaction='ignore',
                                lineterminator='\n')
        if header:
            writer.writeheader()
        writer.writerows({k: ('' if v is None else v) for k, v in r.items()} for r in records)
        return out.getvalue()

    def append(self, record):
        self.records.append(record)
        for f, text in ((self._jsonl, self._json_line(record)), (self._csv, self._csv_text([record]))):
            with _naming(f):
                f.write(text)
                f.flush()

    def close(self):
        for f in (self._jsonl, self._csv):
            with _naming(f):
                f.close()


@contextlib.contextmanager
def _naming(f):
    """An OSError of a write to open file ``f`` (a full disk) naming it."""
    try:
        yield
    except OSError as e:
        if e.filename is None:
            e.filename = f.name
        raise


def versions():
    """Versions of what the run depends on."""
    import caffe
    import cv2
    import numpy

    import caffe_mlic
    return dict(caffe=getattr(caffe, '__version__', 'unknown'), numpy=numpy.__version__,
                opencv=cv2.__version__, python=platform.python_version(),
                caffe_mlic=caffe_mlic.__version__)


def now():
    return time.strftime('%Y-%m-%dT%H:%M:%S%z')


RUN_JSON_DEPTH = 64


def start_weights(info):
    """The weights the run of run.json ``info`` started from: its own
    `weights`, or, once resumed (which records none: it goes on from a
    state), those of the fresh start among its `previous` records. A run
    stopped and resumed had "weights: []" read as "started from nothing"
    (the report's teacher_frozen and same_initialisation failed)."""
    records = [r for r in (info.get('previous') or []) if isinstance(r, dict)] + [info]
    for record in reversed(records):
        if record.get('resumed_from') is None:      # (the fresh start: what came after goes on from it)
            return record.get('weights') or []
    return []


def read_run_json(run_dir):
    """The run's run.json, or None where it is missing, not a JSON file, or
    nested deeper than any we write (a hand-edited one: written back into
    the next run.json's `previous`, it would exceed Python's recursion)."""
    from caffe_mlic.errors import InputError
    from caffe_mlic.fileio import read_json
    if not os.path.lexists(os.path.join(run_dir, RUN_JSON)):
        return None
    try:
        info = read_json(os.path.join(run_dir, RUN_JSON))
    except InputError:
        return None
    return info if _depth_at_most(info, RUN_JSON_DEPTH) else None


def _depth_at_most(value, limit):
    """Whether JSON ``value`` nests at most ``limit`` lists and objects deep
    (without recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            pending.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return True


def write_run_json(run_dir, info):
    """run.json of ``run_dir``: a FIFO or device link put there while the run
    trains is replaced, never written through (fileio.atomic_files)."""
    atomic_write_json(os.path.join(run_dir, RUN_JSON), info, indent=2, sort_keys=True, replace_special=True)


# ---------------------------------------------------------------- a caffe binary's log

# Caffe's words around each number; the number itself is the word after them, read strictly (_caffe_number)
_CAFFE_LINES = re.compile(
    r'Iteration (?P<loss_it>\S+?)(?: \([^)\n]*\))?, loss = (?P<loss>\S+)'
    r'|(?P<kind>Train|Test) net output #\d+: (?P<name>\S+) = (?P<value>\S+)'
    r'|Iteration (?P<lr_it>\S+?), lr = (?P<lr>\S+)'
    r'|Iteration (?P<test_it>\S+?), Testing net \(#(?P<test_net>\d+)\)', re.ASCII)
CAFFE_MAX_ITERATION = 2 ** 31 - 1       # (Caffe's iteration is a C int)


def read_caffe_log(text, path='the log'):
    """Records (as above) from a caffe binary's training log: "Iteration N
    ..., loss = X" gives smoothed_loss (the binary prints the smoothed
    total), the "Train net output #k: NAME = V" lines after it train_NAME,
    "Iteration N, lr = X" the lr, and the "Test net output #k: NAME = V"
    lines after "Iteration N, Testing net (#0)" test_NAME. InputError
    naming ``path`` and the line for a value that is not a number as Caffe
    prints one (NaN and inf are) or an iteration that is not one Caffe
    counts."""
    train, tests = {}, []
    current_train = current_test = None

    def where(m):
        return '%s:%d' % (path, text.count('\n', 0, m.start()) + 1)

    def number(m, group):
        from caffe_mlic.fileio import text_number
        try:
            return text_number(m.group(group))
        except ValueError:
            raise InputError('%s: %s is not a number, got %r' % (
                where(m), m.group('name') if group == 'value' else group, m.group(group))) from None

    def iteration(m, group):
        word = m.group(group)
        if not (word.isascii() and word.isdigit() and len(word) <= 10 and int(word) <= CAFFE_MAX_ITERATION):
            raise InputError('%s: the iteration must be an integer from 0 to %d (a C int, as Caffe counts), '
                             'got %r' % (where(m), CAFFE_MAX_ITERATION, word[:40]))
        return int(word)
    for m in _CAFFE_LINES.finditer(text):
        if m.group('loss_it') is not None:
            it = iteration(m, 'loss_it')
            current_train = train.setdefault(it, dict(phase='train', iteration=it))
            current_train['smoothed_loss'] = number(m, 'loss')
        elif m.group('lr_it') is not None:
            it = iteration(m, 'lr_it')
            train.setdefault(it, dict(phase='train', iteration=it))['lr'] = number(m, 'lr')
        elif m.group('test_it') is not None:
            current_test = None
            if m.group('test_net') == '0':
                current_test = dict(phase='test', iteration=iteration(m, 'test_it'))
                tests.append(current_test)
        elif m.group('kind') == 'Train' and current_train is not None:
            current_train['train_' + m.group('name')] = number(m, 'value')
        elif m.group('kind') == 'Test' and current_test is not None:
            current_test['test_' + m.group('name')] = number(m, 'value')
    return sorted(list(train.values()) + tests, key=lambda r: (r['iteration'], r['phase'] == 'train'))
