"""Write the MLIC-KD-WSD nets and solvers for a configuration:

    caffe-mlic netgen -o prototxt                       # the release configuration
    caffe-mlic netgen -o my_nets --classes 20 --proposals 300 --train-list voc_train.txt ...
    caffe-mlic netgen -o my_nets --set num_classes=20 --set mean=[104,117,123]

Every field of MlicConfig (caffe_mlic/netspec/mlic.py) is an option here and
can be set with --set FIELD=VALUE (VALUE as a Python literal; text as is).
"""
import ast
import dataclasses

from caffe_mlic.errors import UsageError

HELP = 'generate the MLIC-KD-WSD nets and solvers'


def _config_fields():
    from caffe_mlic.netspec import MlicConfig
    return [f for f in dataclasses.fields(MlicConfig)]


def _default(f):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def add_arguments(p):
    p.add_argument('-o', '--out', required=True, help='output folder (gets wsddn/ and kd/)')
    p.add_argument('--release', action='store_true',
                   help='the released configuration (the default; options below override it)')
    config = p.add_argument_group('configuration (MlicConfig fields; default: the release)')
    for f in _config_fields():
        meta, default = f.metadata, _default(f)
        kw = dict(dest=f.name, default=None, help='%s (%s)' % (meta['help'], default))
        if meta.get('choices'):
            kw['choices'] = meta['choices']
        if isinstance(default, tuple):
            kw.update(type=type(default[0]), nargs=len(default), metavar=meta.get('metavar'))
        elif isinstance(default, list):
            kw.update(type=float, nargs=len(default) if f.name == 'mean' else '+', metavar='X')
        else:
            kw.update(type=type(default), metavar=meta.get('metavar') or {int: 'N', float: 'X'}.get(
                type(default), 'TEXT') if not meta.get('choices') else None)
        config.add_argument('--' + (meta.get('flag') or f.name.replace('_', '-')), **kw)
    config.add_argument('--set', action='append', default=[], metavar='FIELD=VALUE',
                        help='set any MlicConfig field, e.g. --set teacher_temperature=0.5')
    solver = p.add_argument_group('every solver')
    solver.add_argument('--max-iter', type=int, help='this many iterations (step at 70 %%)')
    solver.add_argument('--iters', nargs=4, type=int, metavar=('WSDDN', 'STAGE1', 'STAGE2', 'BASELINE'),
                        help='iterations of each solver (instead of --max-iter)')
    solver.add_argument('--base-lr', type=float, help='this base learning rate')
    solver.add_argument('--base-lrs', nargs=4, type=float, metavar=('WSDDN', 'STAGE1', 'STAGE2', 'BASELINE'),
                        help='base learning rate of each solver (instead of --base-lr)')
    solver.add_argument('--solver-type', choices=['SGD', 'Adam'], help='this method (SGD)')
    solver.add_argument('--random-seed', type=int, help='seed for fillers and dropout')


def _literal(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _coerce(default, text):
    """``text`` read as a value of the kind of ``default`` (numbers stay
    numbers when they do not fit; validate() then says what is wrong)."""
    if isinstance(default, str):
        return text
    value = _literal(text)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        elem = type(default[0]) if default else float
        value = [float(v) if elem is float and isinstance(v, int) and not isinstance(v, bool) else v
                 for v in value]
        return type(default)(value)
    return value


def config_from_args(args):
    """MlicConfig.release() with the options given, then the --set overrides."""
    from caffe_mlic.netspec import MlicConfig
    by_name = {f.name: f for f in _config_fields()}
    overrides = {}
    for f in _config_fields():
        value = getattr(args, f.name)
        if value is not None:
            overrides[f.name] = tuple(value) if isinstance(_default(f), tuple) else value
    for item in args.set:
        name, sep, text = item.partition('=')
        if not sep or name not in by_name:
            raise UsageError('argument --set: expected FIELD=VALUE with FIELD one of %s, got %r'
                             % (', '.join(by_name), item))
        overrides[name] = _coerce(_default(by_name[name]), text)
    return MlicConfig.release(**overrides).validate()


def run(args):
    from caffe_mlic.netspec.netgen import generate, solver_names
    cfg = config_from_args(args)
    if args.iters and args.max_iter is not None:
        raise UsageError('give --max-iter or --iters, not both')
    if args.base_lrs and args.base_lr is not None:
        raise UsageError('give --base-lr or --base-lrs, not both')
    names = solver_names()
    max_iter = dict(zip(names, args.iters)) if args.iters else args.max_iter
    base_lr = dict(zip(names, args.base_lrs)) if args.base_lrs else args.base_lr
    try:
        written = generate(args.out, cfg, max_iter=max_iter, base_lr=base_lr,
                           solver_type=args.solver_type, random_seed=args.random_seed)
    except UsageError as e:
        # a value given per solver: name the option the user typed
        per_solver = {'max_iter': ('--iters', args.iters), 'base_lr': ('--base-lrs', args.base_lrs)}
        flag, given = per_solver.get(e.param, (None, None))
        if given:
            raise UsageError('argument %s: %s' % (flag, e)) from e
        raise
    for path in written:
        print(path)
