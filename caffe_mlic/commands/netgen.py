"""Write the MLIC-KD-WSD nets and solvers for a configuration:

    caffe-mlic netgen -o prototxt                       # the release configuration
    caffe-mlic netgen -o my_nets --classes 20 --proposals 300 --train-list voc_train.txt ...
    caffe-mlic netgen -o my_nets --set num_classes=20 --set mean=[104,117,123]

Every field of MlicConfig (caffe_mlic/netspec/mlic.py) is an option here and
can be set with --set FIELD=VALUE (VALUE as a Python literal; text as is).

deploy.json gets the class names when they are known: --classes-file FILE
(one name per line), else the .classes.txt that `datalist build` writes beside
a datalist given with --train-list / --test-list. Their count must be the
number of classes; `detect` and `classify` then print names.
"""
import os

from caffe_mlic.errors import UsageError

HELP = 'generate the MLIC-KD-WSD nets and solvers'


def add_arguments(p):
    p.add_argument('-o', '--out', required=True, help='output folder (gets wsddn/ and kd/)')
    p.add_argument('--release', action='store_true',
                   help='the released configuration (the default; options below override it)')
    from caffe_mlic.netspec import MlicConfig
    from caffe_mlic.netspec.config import add_config_flags
    add_config_flags(p, MlicConfig, 'configuration (MlicConfig fields; default: the release)')
    add_classes_file(p)
    solver = p.add_argument_group('every solver')
    from caffe_mlic.commands.argtypes import INT32_MAX, INT64_MAX, int_in, plain_float
    solver.add_argument('--max-iter', type=int_in(1, INT32_MAX), help='this many iterations (step at 70 %%)')
    solver.add_argument('--iters', nargs=4, type=int_in(1, INT32_MAX), metavar=('WSDDN', 'STAGE1', 'STAGE2', 'BASELINE'),
                        help='iterations of each solver (instead of --max-iter)')
    solver.add_argument('--base-lr', type=plain_float, help='this base learning rate')
    solver.add_argument('--base-lrs', nargs=4, type=plain_float, metavar=('WSDDN', 'STAGE1', 'STAGE2', 'BASELINE'),
                        help='base learning rate of each solver (instead of --base-lr)')
    solver.add_argument('--solver-type', choices=['SGD', 'Adam'], help='this method (SGD)')
    solver.add_argument('--random-seed', type=int_in(0, INT64_MAX), help='seed for fillers and dropout')


def run(args):
    from caffe_mlic.netspec import MlicConfig
    from caffe_mlic.netspec.config import config_from_args
    from caffe_mlic.netspec.netgen import generate, solver_names
    from caffe_mlic.fileio import refuse_non_folders
    cfg = config_from_args(MlicConfig, args)
    refuse_non_folders([args.out], 'out')
    if args.iters and args.max_iter is not None:
        raise UsageError('give --max-iter or --iters, not both')
    if args.base_lrs and args.base_lr is not None:
        raise UsageError('give --base-lr or --base-lrs, not both')
    names = solver_names()
    max_iter = dict(zip(names, args.iters)) if args.iters else args.max_iter
    base_lr = dict(zip(names, args.base_lrs)) if args.base_lrs else args.base_lr
    classes = deploy_class_names(args, cfg, ('train_list', 'test_list'))
    try:
        written = generate(args.out, cfg, max_iter=max_iter, base_lr=base_lr,
                           solver_type=args.solver_type, random_seed=args.random_seed, classes=classes,
                           inputs={'classes_file': args.classes_file})
    except UsageError as e:
        # a value given per solver: name the option the user typed
        per_solver = {'max_iter': ('--iters', args.iters), 'base_lr': ('--base-lrs', args.base_lrs)}
        flag, given = per_solver.get(e.param, (None, None))
        if given:
            raise UsageError('argument %s: %s' % (flag, e)) from e
        raise
    for path in written:
        print(path)


def add_classes_file(p):
    p.add_argument('--classes-file', metavar='FILE',
                   help='class names, one per line, as many as --classes, distinct: written into '
                        "deploy.json (default: the .classes.txt beside the datalists given, if any)")


def deploy_class_names(args, cfg, list_fields):
    """The class names for deploy.json, or None: --classes-file, else the
    companion .classes.txt (`datalist build`) of each datalist the command
    line gave (``list_fields``: the config fields naming datalists; all
    companions found must agree). InputError naming the file when the names
    are bad or their count is not cfg.num_classes."""
    from caffe_mlic.data.annotations import read_class_list
    from caffe_mlic.data.datalist_build import companion_paths
    from caffe_mlic.errors import InputError, Problem
    from caffe_mlic.inference.settings import class_names_problems
    if args.classes_file:
        sources = [args.classes_file]
    else:
        given = {f for f in list_fields if getattr(args, f, None) is not None}
        given |= {item.partition('=')[0] for item in args.set if item.partition('=')[0] in list_fields}
        # relative datalists are read from where the command runs, as Caffe will
        sources = [companion_paths(getattr(cfg, f))[0] for f in list_fields if f in given]
        sources = [p for p in dict.fromkeys(sources) if os.path.isfile(p)]
    names = {path: read_class_list(path) for path in sources}
    for path, found in names.items():
        problems = class_names_problems(found, cfg.num_classes)   # deploy.json's reader's rules
        if problems:
            raise InputError(problems=[Problem(path, None, None, m) for m in problems])
    if len({tuple(n) for n in names.values()}) > 1:
        a, b = list(names)[:2]
        raise InputError('%s and %s: the datalists\' class names differ' % (a, b))
    return next(iter(names.values()), None)
