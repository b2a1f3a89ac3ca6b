"""The solver file `caffe-mlic train` reads, as Caffe reads it, with KEY=VALUE
overrides checked against the SolverParameter fields (``SolverFile``)."""
import math
import os
import re


from caffe_mlic.caffe import prototxt
from caffe_mlic.caffe.params import FLOAT32_MAX
from caffe_mlic.engine.lr import lr_policy_problems
from caffe_mlic.errors import InputError, Problem, UsageError
from caffe_mlic.fileio import PLAIN_NUMBER

NEVER = 2 ** 31 - 1            # a test_interval Caffe's own Step never reaches
# History blobs Caffe keeps per learnable blob, by solver type.
HISTORY_PER_PARAM = {'SGD': 1, 'Nesterov': 1, 'AdaGrad': 1, 'RMSProp': 1, 'AdaDelta': 2, 'Adam': 2}
_OLD_SOLVER_TYPES = ('SGD', 'Nesterov', 'AdaGrad', 'RMSProp', 'AdaDelta', 'Adam')  # solver_type enum


def _field_found(path, field):
    """(1-based line number, the line) of the first top-level ``field:`` (or
    ``field {``) of a prototxt (not one inside an inline net_param), or
    (None, None)."""
    try:
        with open(path, encoding='utf-8', errors='replace') as f:
            depth = 0
            for number, line in enumerate(f, 1):
                code = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', line).split('#')[0]
                if depth == 0 and re.match(r'\s*%s\s*[:{]' % field, code):
                    return number, line
                depth = max(0, depth + code.count('{') - code.count('}'))
    except OSError:
        pass
    return None, None


def _field_line(path, field):
    """1-based line of the first top-level ``field`` of a prototxt, or None."""
    return _field_found(path, field)[0]


def _field_text(path, field):
    """The value a prototxt gives its first top-level ``field:`` as
    written (the number before any comment), or None."""
    line = _field_found(path, field)[1]
    found = line and re.match(r'\s*%s\s*:\s*([^\s#]+)' % field, line)
    return found.group(1) if found else None


def staging_name_prefix(base):
    """The start of the hidden names the snapshots of prefix ``base`` (its
    file-name part) are staged under: .BASE.partial., or for a long BASE,
    whose staged names would pass the file-name limit where the real ones do
    not, .snapshot-<digest of BASE>.partial. (about 30 bytes longer than the
    real name: pid, start time)."""
    if len(os.fsencode(base)) <= 120:
        return '.%s.partial.' % base
    import hashlib
    return '.snapshot-%s.partial.' % hashlib.sha1(os.fsencode(base)).hexdigest()[:16]


def longest_snapshot_name(base, max_iter, hdf5):
    """The longest file name Caffe gives a snapshot of prefix ``base``."""
    return '%s_iter_%d.solverstate%s' % (base, max_iter, '.h5' if hdf5 else '')


# (protobuf's integer field types: what a SolverParameter field of each holds)
INT_RANGES = {5: 'int32: -2147483648 to 2147483647', 17: 'int32: -2147483648 to 2147483647',
              15: 'int32: -2147483648 to 2147483647', 3: 'int64: -9223372036854775808 to 9223372036854775807',
              18: 'int64: -9223372036854775808 to 9223372036854775807', 13: 'uint32: 0 to 4294967295',
              4: 'uint64: 0 to 18446744073709551615'}


def apply_overrides(param, overrides):
    """Set SolverParameter fields from 'FIELD=VALUE' strings (`train --set`),
    as detectron2's KEY=VALUE overrides: a scalar field of the message,
    VALUE as its type reads it (a text in double quotes as the solver file
    writes it, or bare). UsageError naming the field otherwise."""
    from google.protobuf.descriptor import FieldDescriptor as F
    for item in overrides:
        name, sep, text = item.partition('=')
        field = param.DESCRIPTOR.fields_by_name.get(name.strip())
        if not sep or field is None or field.label == F.LABEL_REPEATED or field.type == F.TYPE_MESSAGE:
            raise UsageError('expected FIELD=VALUE with a scalar SolverParameter field (max_iter, '
                             'base_lr, stepsize, snapshot, snapshot_prefix, ...), got %r' % item,
                             'overrides')
        text = text.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in '"\'' and field.type in (F.TYPE_STRING,
                                                                                      F.TYPE_ENUM):
            text = text[1:-1]       # quoted as in the solver file: snapshot_prefix="runs/x", lr_policy='step'
        try:
            if field.type == F.TYPE_STRING:
                value = text
            elif field.type == F.TYPE_BOOL:
                value = {'true': True, 'false': False}[text.lower()]
            elif field.type == F.TYPE_ENUM:
                value = field.enum_type.values_by_name[text].number
            elif not PLAIN_NUMBER.match(text):      # (Python would read 1_0 and Arabic-Indic digits)
                raise ValueError(text)
            elif field.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError(text)
            elif not text.lstrip('+-').isdigit():
                raise ValueError(text)
            else:
                value = int(text)
        except (KeyError, ValueError):
            raise UsageError('%s: %r is not a valid %s' % (field.name, text, {
                F.TYPE_BOOL: 'true/false', F.TYPE_ENUM: 'one of ' + ', '.join(
                    v.name for v in field.enum_type.values) if field.enum_type else '',
                F.TYPE_FLOAT: 'number', F.TYPE_DOUBLE: 'number'}.get(
                    field.type, 'whole number')), 'overrides')
        if field.type == F.TYPE_FLOAT and abs(value) > FLOAT32_MAX:     # (Caffe would read inf)
            raise UsageError('%s: %s is beyond a float32 field\'s range (|x| <= 3.4e38)' % (field.name, text),
                             'overrides')
        if field.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE) and _rounds_to_zero(text, value, field.type == F.TYPE_FLOAT):
            raise UsageError('%s: %s' % (field.name, _reads_as_zero(text, field.type == F.TYPE_FLOAT)), 'overrides')
        try:
            setattr(param, field.name, value)
        except (ValueError, TypeError):         # protobuf's range of an integer field, a string's UTF-8
            if field.type == F.TYPE_STRING:
                raise UsageError('%s: %s is not UTF-8 text, and a solver\'s strings are (a path in another '
                                 'encoding cannot be given to Caffe)' % (
                    field.name, text.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')),
                    'overrides')
            raise UsageError('%s: %s is out of the range of the field (%s)'
                             % (field.name, text, INT_RANGES.get(field.type, 'type %d' % field.type)),
                             'overrides')


def _reads_as_zero(text, float32):
    """What is said of a number ``text`` that _rounds_to_zero."""
    return '%s is not 0 but reads as 0 (a %s field holds |x| >= %s or 0): give 0, or a larger value' % (
        text, 'float32' if float32 else 'double', '1.4e-45' if float32 else '4.9e-324')


def _rounds_to_zero(text, value, float32):
    """Whether the number ``text`` (read as ``value``) is not 0 but is 0 as
    the field holds it (base_lr 1e-46: a run at learning rate 0, unsaid)."""
    import numpy as np
    if value == 0:
        return bool(re.search('[1-9]', re.split('[eE]', text)[0]))
    return float32 and np.float32(value) == 0


# (field, lowest, highest, whether the highest is allowed): values that make
# no sense or make Caffe misbehave (a momentum >= 1 lets the update grow
# without bound; a negative snapshot or test interval is never reached;
# RMSProp CHECKs 0 <= rms_decay < 1, an abort). The float fields are read as
# Caffe reads them, rounded to float32 (rms_decay 0.99999999 is 1).
VALUE_BOUNDS = (
    ('base_lr', 0.0, math.inf, False),
    ('momentum', 0.0, 1.0, False),
    ('momentum2', 0.0, 1.0, False),
    ('weight_decay', 0.0, math.inf, False),
    ('delta', 0.0, math.inf, False),
    ('rms_decay', 0.0, 1.0, False),
    ('power', 0.0, math.inf, False),
    ('clip_gradients', -1.0, math.inf, False),
    ('test_interval', 0, math.inf, False),
    ('average_loss', 1, math.inf, False),
)


def check_values(param, problem):
    """``problem(field, message)`` for each solver value outside VALUE_BOUNDS."""
    for name, low, high, high_allowed in VALUE_BOUNDS:
        value = getattr(param, name)
        if not (math.isfinite(value) if isinstance(value, float) else True) or value < low or \
                value > high or (value == high and not high_allowed):
            span = '>= %g' % low if high == math.inf else '%s%g, %g%s' % (
                '[', low, high, ']' if high_allowed else ')')
            problem(name, '%s must be %s, got %g%s' % (
                name, span if high == math.inf else 'in ' + span, value,
                ' (a float field holds |x| <= 3.4e38: a larger value reads as inf)' if math.isinf(value) else ''))


# iter_size: Caffe's Step runs iter_size forward/backward passes inside one
# iteration (one pycaffe step(1) call), and `train` acts on a stop signal
# (Ctrl-C, SIGTERM) only between iterations: a huge one never ends its first
# iteration, and nothing but SIGKILL stops it. Gradient accumulation past a
# thousand batches is no recipe anyone uses (DeepLab and FCN use 10 to 20).
MAX_ITER_SIZE = 1024
# What Caffe accepts, exactly (SGDSolver::Regularize aborts on any other,
# "Unknown regularization type", at the first update with weight decay).
REGULARIZATION_TYPES = ('L1', 'L2')
# Solvers that CHECK momentum == 0 when built (sgd_solvers.hpp: "Momentum
# cannot be used with AdaGrad / RMSProp").
NO_MOMENTUM = ('AdaGrad', 'RMSProp')
# Solvers that divide by (a root of) a gradient history plus delta: with
# delta 0 a weight whose gradient is 0 (a frozen or dead unit) gets 0/0, NaN.
USES_DELTA = ('AdaGrad', 'RMSProp', 'AdaDelta', 'Adam')
EVAL_TYPES = ('classification', 'detection')      # Solver::TestAll aborts on another
AP_VERSIONS = ('11point', 'MaxIntegral', 'Integral')   # bbox_util ComputeAP aborts on another


def type_problems(param, solver_type):
    """[(field, message)] for values Caffe aborts on (or that give NaN at
    once) with solver type ``solver_type``, and a regularization_type other
    than L1 / L2."""
    problems = []
    if param.regularization_type not in REGULARIZATION_TYPES:
        problems.append(('regularization_type', 'regularization_type must be "L1" or "L2" (Caffe aborts on '
                         'any other: "Unknown regularization type"), got %r' % param.regularization_type))
    if solver_type in NO_MOMENTUM and 0 < param.momentum < 1:     # (others: VALUE_BOUNDS)
        problems.append(('momentum', 'momentum must be 0 for %s (Caffe: "Momentum cannot be used with %s"; '
                         'it aborts), got %g' % (solver_type, solver_type, param.momentum)))
    if solver_type in USES_DELTA and param.delta == 0:
        problems.append(('delta', 'delta must be > 0 for %s (it keeps the denominator of the update from 0: '
                         'a weight whose gradient is 0 would get 0/0, NaN), got 0' % solver_type))
    return problems


def testing_problems(param):
    """[(field, message)] for the testing fields the caffe binary aborts on
    when it tests (Solver::InitTestNets, TestAll): a test_interval <= 0, a
    test_state count other than the test nets', an unknown eval_type (or
    ap_version for detection). `train` runs its own tests and never these."""
    tests = len(param.test_iter)
    problems = []
    if param.test_state and len(param.test_state) != tests:     # (checked with no test net too)
        problems.append(('test_state', 'the solver gives %d test_state for %d test net(s) (one per '
                         'test_iter): Caffe needs one per test net, or none (it aborts)'
                         % (len(param.test_state), tests)))
    if not tests:
        return problems
    if param.test_interval <= 0:
        problems.append(('test_interval', 'the solver tests (%d test_iter) but test_interval is %d: Caffe '
                         'needs test_interval > 0 then (it aborts); give one, or remove test_iter'
                         % (tests, param.test_interval)))
    if param.eval_type not in EVAL_TYPES:
        problems.append(('eval_type', 'unknown eval_type %r; Caffe knows %s (it aborts at the first test '
                         'on another)' % (param.eval_type, ', '.join(EVAL_TYPES))))
    elif param.eval_type == 'detection' and param.ap_version not in AP_VERSIONS:
        problems.append(('ap_version', 'unknown ap_version %r; Caffe knows %s (it aborts at the first '
                         'test on another)' % (param.ap_version, ', '.join(AP_VERSIONS))))
    return problems


def net_field_problems(param):
    """[(field, message)] for the net fields of a solver that Caffe aborts on
    (Solver::InitTrainNet / InitTestNets CHECKs): not exactly one train net
    among net, net_param, train_net, train_net_param; test nets without a
    test_iter each."""
    train_fields = [f for f in ('net', 'net_param', 'train_net', 'train_net_param') if param.HasField(f)]
    problems = []
    if len(train_fields) > 1:
        problems.append((train_fields[1], 'the solver gives %s: Caffe takes exactly one train net '
                         '(it aborts); keep one' % ' and '.join(train_fields)))
    tests = len(param.test_net) + len(param.test_net_param)
    if tests and len(param.test_iter) < tests:
        field = 'test_net' if len(param.test_net) else 'test_net_param'
        problems.append((field, 'the solver gives %d test net(s) (test_net / test_net_param) but %d '
                         'test_iter: Caffe needs a test_iter for each (it aborts)'
                         % (tests, len(param.test_iter))))
    elif len(param.test_iter) > tests and len(train_fields) == 1 and train_fields[0].startswith('train_'):
        # (only net / net_param is tested with the test_iter left over)
        problems.append(('test_iter', 'the solver gives %d test_iter but %d test net(s) (test_net / '
                         'test_net_param), and its %s is not tested: Caffe needs exactly one test_iter per '
                         'test net then (it aborts)' % (len(param.test_iter), tests, train_fields[0])))
    return problems


def _net_file_problem(path, value, what='net prototxt'):
    """Why the net file ``value`` a solver (at ``path``) names cannot be
    read as Caffe reads it (relative to the current directory), or None."""
    if os.path.exists(value) and not os.path.isfile(value):
        return '%s: not a regular file (a device, FIFO or folder)' % value
    if not os.path.isfile(value):
        beside = os.path.join(os.path.dirname(path), value)
        hint = (' (Caffe reads it relative to the current directory; %s exists)' % beside
                if not os.path.isabs(value) and os.path.isfile(beside) else '')
        return '%s: no such %s%s' % (value, what, hint)
    return None


class SolverFile:
    """A solver prototxt checked for what Caffe would abort on: ``param``
    (SolverParameter), ``net_path`` (the TRAIN net's file: net or
    train_net; None for an inline net_param / train_net_param),
    ``net_param`` (the TRAIN net), ``type`` and ``snapshot_prefix``
    (resolved). Every problem of the file is reported at once, each naming
    its field and line.

    ``test_nets``: the solver as the caffe binary takes it (every form
    Solver::InitTrainNet / InitTestNets takes: net, net_param, train_net,
    train_net_param, test_net and test_net_param, a test_iter each), and
    the testing fields the binary aborts on are checked (testing_problems);
    ``binary_state``: the (stages, level) of the binary's -stage / -level,
    which it adds to train_state (its level always set). Else the solver as
    `caffe-mlic train` takes it: one net (net or net_param), trained in its
    TRAIN phase and tested in its TEST phase on its own schedule.

    ``nets``: the nets Caffe builds, [(label, NetParameter, file, NetState)]:
    the TRAIN net with the solver's train_state, and each TEST net with its
    test_state (only those built: for the binary, one per test_iter; for
    `train`, one where the net has a data layer of ours to test); each is
    checked (prototxt.check_net) with the layers its state keeps.
    ``test_view``: for `train`, its net as the TEST state keeps it
    (prototxt.filter_net: what it looks for a data layer to test in); None
    for the binary."""

    def __init__(self, path, run_dir, overrides=(), test_nets=True, binary_state=None):
        self.path = os.fspath(path)
        from caffe_mlic.fileio import input_file_problem
        if input_file_problem(self.path, 'solver prototxt'):
            raise InputError(input_file_problem(self.path, 'solver prototxt'))
        self.param = param = prototxt.read_solver(self.path)
        apply_overrides(param, overrides)
        if binary_state is not None:        # tools/caffe.cpp train(), before the solver is built
            stages, level = binary_state
            param.train_state.level = level
            param.train_state.stage.extend(stages)
        self.overrides = list(overrides)
        self.stem = os.path.splitext(os.path.basename(self.path))[0]

        overridden = {o.partition('=')[0].strip() for o in self.overrides}
        problems = []       # [(field, message)], every one reported at once

        def problem(field, message):
            problems.append((field, message))
        for field, message in net_field_problems(param):
            problem(field, message)
        if not test_nets and (param.test_net or param.test_net_param):
            problem('test_net' if param.test_net else 'test_net_param',
                    'train tests the TEST phase of the net (net: / net_param) and would ignore '
                    'test_net / test_net_param: put the TEST layers in the net, and remove them')
        self.net_path, self.net_param = None, None
        # the TRAIN net: the first of these Caffe reads (more than one: net_field_problems)
        forms = ('net', 'net_param', 'train_net', 'train_net_param') if test_nets else ('net', 'net_param')
        given = [f for f in forms if param.HasField(f)]
        if given and given[0] in ('net', 'train_net'):
            self.net_path = getattr(param, given[0])
            if _net_file_problem(self.path, self.net_path):
                problem(given[0], _net_file_problem(self.path, self.net_path))
        elif given:
            self.net_param = getattr(param, given[0])
        elif test_nets:
            problem('net', 'the solver names no train net: give net: "train_val.prototxt" (or net_param, '
                    'train_net, train_net_param): Caffe needs one (it aborts)')
        elif not (param.HasField('train_net') or param.HasField('train_net_param')):
            problem('net', 'the solver names no net: give net: "train_val.prototxt" (or net_param), with '
                    'TRAIN and TEST phases')
        else:
            field = 'train_net' if param.HasField('train_net') else 'train_net_param'
            problem(field, 'caffe-mlic train takes one net, net: "train_val.prototxt" (or net_param), '
                    'trains its TRAIN phase and tests its TEST phase: it does not take %s; give net:, or '
                    'run this solver as it is with caffe-mlic caffe train -solver %s' % (field, self.path))
        if test_nets:
            for value in param.test_net:
                if _net_file_problem(self.path, value):
                    problem('test_net', _net_file_problem(self.path, value))
        self.type = param.type
        if param.HasField('solver_type'):
            self.type = _OLD_SOLVER_TYPES[param.solver_type]
        both = param.HasField('solver_type') and param.HasField('type')
        if both:
            # (Caffe's UpgradeSolverType CHECKs that; `train` would use one
            # and ignore the other in silence)
            problem('solver_type' if 'solver_type' in overridden or 'type' not in overridden else 'type',
                    'the solver gives both solver_type: %s (the deprecated enum) and type: "%s": Caffe '
                    'takes one (it aborts); keep type' % (param.DESCRIPTOR.fields_by_name['solver_type']
                                                          .enum_type.values_by_number[param.solver_type].name,
                                                          param.type))
        if self.type not in HISTORY_PER_PARAM:
            problem('type', 'unknown solver type %r; Caffe knows %s'
                    % (self.type, ', '.join(HISTORY_PER_PARAM)))
        # (with both types given the one meant is not known: nothing checked against it)
        for field, message in type_problems(param, None if both else self.type):
            if field == 'momentum' and field not in overridden and overridden & {'type', 'solver_type'}:
                message += '; the type is set by --set: add --set momentum=0'
            problem(field, message)
        if test_nets:       # the caffe binary tests on Caffe's schedule; `train` on its own
            for field, message in testing_problems(param):
                problem(field, message)
        elif len(param.test_state) > 1:
            problem('test_state', 'train builds one TEST net (the net\'s TEST phase) but the solver gives '
                    '%d test_state: Caffe needs one per test net (it aborts); keep one, or none'
                    % len(param.test_state))
        for field, message in lr_policy_problems(param):
            problem(field, message)
        if param.max_iter <= 0:
            problem('max_iter', 'max_iter must be > 0, got %d' % param.max_iter)
        if not 1 <= param.iter_size <= MAX_ITER_SIZE:
            problem('iter_size', 'iter_size must be from 1 to %d (each iteration runs iter_size forward/'
                    'backward passes inside Caffe, and Ctrl-C / SIGTERM wait for the iteration to end), '
                    'got %d' % (MAX_ITER_SIZE, param.iter_size))
        check_values(param, problem)
        for field in param.DESCRIPTOR.fields:     # (--set values: apply_overrides)
            if field.type == field.TYPE_FLOAT and field.label != field.LABEL_REPEATED and \
                    field.name not in overridden and param.HasField(field.name) and getattr(param, field.name) == 0:
                text = _field_text(self.path, field.name)
                if text and _rounds_to_zero(text, 0.0, True):
                    problem(field.name, '%s %s' % (field.name, _reads_as_zero(text, True)))
        if param.snapshot < 0:
            problem('snapshot', 'snapshot must be >= 0 (0: no periodic snapshots), got %d' % param.snapshot)
        if param.snapshot_prefix and (param.snapshot_prefix.endswith(('/', os.sep))
                                      or os.path.basename(param.snapshot_prefix) in ('.', '..')):
            problem('snapshot_prefix', '%r names a folder: Caffe would name the files '
                    '"_iter_N.caffemodel" in it; give a file prefix such as "%s"'
                    % (param.snapshot_prefix, os.path.join(param.snapshot_prefix, self.stem)))
        self._raise(problems, overridden)
        if self.net_param is None:
            self.net_param = prototxt.read_net(self.net_path)
        self.nets = self._built_nets(test_nets)
        # each net file once, with the states of the nets built of it
        checked = []        # [(NetParameter, file, [(label, NetState)])]
        for label, net, where, state in self.nets:
            for other, _, states in checked:
                if other is net:
                    states.append((label, state))
                    break
            else:
                checked.append((net, where, [(label, state)]))
        for net, where, states in checked:
            prototxt.check_net(net, where, states=states)
        self.snapshot_prefix = param.snapshot_prefix or os.path.join(run_dir, 'snapshots', self.stem)
        self.hdf5 = param.snapshot_format == param.HDF5

    def _built_nets(self, test_nets):
        """``nets`` (see the class): the TRAIN net, then the TEST nets in
        Caffe's order (test_net_param, test_net, then net / net_param once
        for each test_iter left), each with its NetState as the solver
        builds it; TEST nets with the same net and state are listed once."""
        param = self.param
        where = self.net_path or self.path
        self.test_view = None
        nets = [('TRAIN', self.net_param, where,
                 prototxt.net_state('TRAIN', self.net_param.state, param.train_state))]
        tests = []      # [(NetParameter, file)], one per test net Caffe builds
        if test_nets:
            tests += [(net, self.path) for net in param.test_net_param]
            read = {self.net_path: self.net_param} if self.net_path else {}     # each file once
            for value in param.test_net:
                if value not in read:
                    read[value] = prototxt.read_net(value)
                tests.append((read[value], value))
            if param.HasField('net') or param.HasField('net_param'):
                tests += [(self.net_param, where)] * (len(param.test_iter) - len(tests))
        else:
            # `train` builds one TEST net of its own net where it has a data
            # layer of ours to test (Trainer._test_setup), with test_state
            from caffe_mlic.engine.nets import data_layers
            self.test_view = prototxt.filter_net(self.net_param, prototxt.net_state(
                'TEST', self.net_param.state, param.test_state[0] if len(param.test_state) else None))
            if len(data_layers(self.test_view, 'TEST')) == 1:
                tests.append((self.net_param, where))
        built = []      # [([index], net, file, state)]
        for i, (net, file) in enumerate(tests):
            state = prototxt.net_state('TEST', net.state,
                                       param.test_state[i] if i < len(param.test_state) else None)
            for indices, other, _, other_state in built:
                if other is net and other_state == state:
                    indices.append(i)
                    break
            else:
                built.append(([i], net, file, state))
        for indices, net, file, state in built:
            label = 'TEST' if len(built) == 1 else 'TEST net%s %s' % (
                's' if len(indices) > 1 else '', ', '.join('#%d' % i for i in indices))
            nets.append((label, net, file, state))
        return nets

    def _raise(self, problems, overridden):
        """Every problem at once: an InputError naming each field and its
        line; a UsageError when all of them come from --set values."""
        if not problems:
            return
        if all(field in overridden for field, _ in problems):
            raise UsageError('; '.join(message for _, message in problems), 'overrides')
        raise InputError(problems=[
            Problem(self.path, None, field, message + ' (set by --set)') if field in overridden else
            Problem(self.path, _field_line(self.path, field), field, message)
            for field, message in problems])

    @property
    def staging_prefix(self):
        """Where Caffe writes a snapshot before it is renamed into place: a
        hidden name beside the real one (same folder, so the rename is
        atomic), .PREFIX.partial.<pid>-<start>-run_iter_N.caffemodel."""
        from caffe_mlic.processes import owned_name_prefix
        folder, base = os.path.split(self.snapshot_prefix)
        # named after this process: a run that sweeps what a killed one left
        # (check_snapshot_folder) never takes a live run's snapshot
        return os.path.join(folder, owned_name_prefix(staging_name_prefix(base)) + 'run')

    def snapshot_paths(self, iteration, staged=False):
        """(caffemodel, solverstate) of the snapshot at ``iteration`` (staged:
        the hidden names Caffe writes first)."""
        ext = '.h5' if self.hdf5 else ''
        base = '%s_iter_%d' % (self.staging_prefix if staged else self.snapshot_prefix, iteration)
        return base + '.caffemodel' + ext, base + '.solverstate' + ext

    def runtime_param(self, with_test, staging_folder=None):
        """The SolverParameter handed to pycaffe: CPU, no display, the net's
        path absolute, and Caffe's own testing off (we test); one TEST net
        when ``with_test``; Caffe writes its snapshots into ``staging_folder``
        when given (the snapshot folder by a path that follows it)."""
        from caffe.proto import caffe_pb2
        p = caffe_pb2.SolverParameter()
        p.CopyFrom(self.param)
        if self.net_path is not None:
            p.net = os.path.abspath(self.net_path)
        p.ClearField('solver_type')
        p.type = self.type
        del p.test_iter[:]
        if with_test:
            p.test_iter.append(1)
            p.test_interval, p.test_initialization = NEVER, False
        else:
            # (no test net: a test_state would fail Caffe's count CHECK)
            p.ClearField('test_interval')
            p.ClearField('test_state')
        p.display, p.debug_info = 0, False
        p.solver_mode = caffe_pb2.SolverParameter.CPU
        # The trainer takes every snapshot itself (snapshots.take_snapshot):
        # Caffe writes them under the staging prefix, never on its schedule.
        p.snapshot_prefix, p.snapshot = self.staging_prefix, 0
        if staging_folder is not None:
            p.snapshot_prefix = os.path.join(staging_folder, os.path.basename(self.staging_prefix))
        return p
