"""Write the MLIC-KD-WSD nets and solvers of one MlicConfig (`caffe-mlic netgen`)."""
import json
import os
from dataclasses import replace

from caffe_mlic.caffe import prototxt
from caffe_mlic.errors import UsageError
from caffe_mlic.fileio import json_ready, write_files


def solver_overrides(spec, max_iter=None, base_lr=None, solver_type=None, random_seed=None):
    """``spec`` (a SolverSpec) with the overrides given; with max_iter, its
    schedule (solvers.schedule: the step at 70 %, ...)."""
    import math
    from caffe_mlic.netspec.solvers import schedule
    if max_iter is not None:
        spec = replace(spec, **schedule(max_iter))
    if base_lr is not None:
        if not (math.isfinite(base_lr) and 0 < base_lr <= 1e6):     # (Caffe keeps it as a float: 1e300 is inf)
            raise UsageError('base_lr must be a positive number up to 1e6, got %r' % base_lr, 'base_lr')
        spec = replace(spec, base_lr=base_lr)
    if solver_type is not None:
        from caffe_mlic.engine.solver_file import NO_MOMENTUM
        # AdaGrad and RMSProp take no momentum (Caffe aborts on one)
        spec = replace(spec, type=solver_type, momentum=0.0 if solver_type in NO_MOMENTUM else spec.momentum)
    if random_seed is not None:
        if random_seed < 0:
            raise UsageError('random_seed must be >= 0, got %d' % random_seed, 'random_seed')
        spec = replace(spec, random_seed=random_seed)
    return spec


def generate(out_dir, cfg, max_iter=None, base_lr=None, solver_type=None, random_seed=None, classes=None,
             inputs=None):
    """Write every net and solver under out_dir; returns the paths written.

    max_iter / base_lr / solver_type / random_seed override every solver
    (e.g. for short CPU runs of the tiny backbone); max_iter and base_lr may
    also be dicts {solver name (wsddn, stage1, stage2, baseline): value}, a
    solver they do not name keeping its own. ``classes``: the class names,
    written into deploy.json when given. Every file is made in memory
    first, so an impossible value writes nothing; each is written
    atomically. An output that is one of the datalists (with their
    companion files) or of ``inputs`` ({parameter: path or paths}, e.g.
    the classes file read) is refused before anything is written
    (refuse_overwriting_inputs).
    """
    from caffe_mlic.netspec import NETS
    from caffe_mlic.netspec.solvers import SOLVERS, solver_proto
    cfg.validate()
    check_classes(classes, cfg.num_classes)
    files = {}
    for rel, make in NETS.items():
        files[os.path.join(out_dir, rel + '.prototxt')] = make(cfg)
    for rel, (net_rel, spec, prefix) in SOLVERS.items():
        iters = max_iter.get(solver_name(rel)) if isinstance(max_iter, dict) else max_iter
        lr = base_lr.get(solver_name(rel)) if isinstance(base_lr, dict) else base_lr
        spec = solver_overrides(spec, iters, lr, solver_type, random_seed)
        files[os.path.join(out_dir, rel + '.prototxt')] = solver_proto(
            os.path.join(out_dir, net_rel + '.prototxt'), spec, prefix)
    check_buildable({path: files[path] for path in (os.path.join(out_dir, rel + '.prototxt') for rel in NETS)})
    settings = os.path.join(out_dir, DEPLOY_SETTINGS)
    texts = {path: prototxt.to_text(proto) for path, proto in files.items()}
    texts[settings] = settings_text(deploy_settings(cfg, classes))
    refuse_overwriting_inputs(texts, [cfg], ('train_list', 'test_list'), inputs)
    return write_files(texts)   # all the files, or none (a full disk)


def check_buildable(nets):
    """UsageError, before anything is written, when a net of ``nets`` ({path:
    NetParameter}) is one Caffe could not build at these settings: a blob
    over 2^31 - 1 values (an input size Caffe aborts on, far from the
    setting), a layer whose settings do not fit its bottoms."""
    why = unbuildable(nets)
    if why:
        raise UsageError('these settings give nets Caffe cannot build (nothing was written): %s' % why)


def unbuildable(nets):
    """Why Caffe could not build a net of ``nets`` ({path: NetParameter}),
    the first problem on one line, or None."""
    from caffe_mlic.errors import InputError
    for path, net in nets.items():
        try:
            prototxt.check_net(net, path)
        except InputError as e:
            lines = str(e).splitlines()
            shown = [line.strip() for line in (lines[1:] if len(lines) > 1 else lines)]
            return '%s%s' % (shown[0], '' if len(shown) == 1 else ' (and %d more such problems)' % (len(shown) - 1))
    return None


def config_unbuildable(cfg):
    """Why Caffe could not build the nets netgen (or scasnet netgen) writes
    for the validated ``cfg`` (an MlicConfig or a ScasConfig), or None:
    `run --check` asks this of a config's net table, as netgen does."""
    from caffe_mlic.netspec import NETS, MlicConfig
    if isinstance(cfg, MlicConfig):
        return unbuildable({rel + '.prototxt': make(cfg) for rel, make in NETS.items()})
    from caffe_mlic.netspec.scasnet import BUILDERS
    nets = BUILDERS[cfg.variant](cfg)
    return unbuildable({'%s_scasnet_%s.prototxt' % (cfg.variant, kind): nets[kind] for kind in ('deploy', 'train')})


def refuse_overwriting_inputs(outputs, configs, list_fields, inputs=None, file_fields=()):
    """UsageError naming the parameter (the command line: its option) when
    an output path names, now, a file the command reads or the nets will
    read: a datalist of ``list_fields`` or a companion file of it (the
    .classes.txt and .gt.json of `datalist build`), a file of
    ``file_fields`` (a palette), or one of ``inputs`` ({parameter: path or
    paths}). Matched by device and inode (fileio.refuse_overwriting):
    './x', a relative path, a symlink and a hard link are the same file."""
    from caffe_mlic.data.datalist_build import companion_paths
    from caffe_mlic.fileio import refuse_overwriting
    given = {}
    for cfg in configs:
        for name in list_fields:
            path = getattr(cfg, name)
            given.setdefault(name, []).extend([path] + list(companion_paths(path)))
        for name in file_fields:
            given.setdefault(name, []).append(getattr(cfg, name))
    for name, paths in (inputs or {}).items():
        given.setdefault(name, []).extend([paths] if isinstance(paths, str) else list(paths or ()))
    for name, paths in given.items():
        refuse_overwriting(list(outputs), [p for p in paths if isinstance(p, str) and p], name)


def settings_text(settings):
    # ensure_ascii: the file reads the same under any locale
    return json.dumps(json_ready(settings), indent=1, sort_keys=True) + '\n'


def check_classes(classes, num_classes):
    """UsageError unless ``classes`` (None: unknown) are num_classes distinct
    class names (inference.settings reads them back with the same rules)."""
    from caffe_mlic.inference.settings import class_names_problems
    if classes is None:
        return
    problems = class_names_problems(list(classes) if isinstance(classes, tuple) else classes, num_classes)
    if problems:
        raise UsageError('classes: %s' % '; '.join(problems), 'classes')


DEPLOY_SETTINGS = 'deploy.json'


def solver_name(rel):
    """'kd/solver_stage1' -> 'stage1', 'wsddn/solver' -> 'wsddn'."""
    base = rel.split('/')[-1]
    return base[len('solver_'):] if base.startswith('solver_') else rel.split('/')[0]


def solver_names():
    """The solvers' names in generation order (wsddn, stage1, stage2, baseline)."""
    from caffe_mlic.netspec.solvers import SOLVERS
    return tuple(solver_name(rel) for rel in SOLVERS)


def deploy_settings(cfg, classes=None):
    """What running the deploy nets needs beyond the prototxts: the input
    sizes, the proposals per image and the data layer's preprocessing
    ((BGR pixel - mean) * input_scale), written beside the nets; and the
    class names when they are known (the key is absent otherwise, so the
    release's deploy.json stays as it was)."""
    out = dict(num_classes=cfg.num_classes, bbox_num=cfg.bbox_num, teacher_size=cfg.teacher_size,
               student_size=cfg.student_size, mean=list(cfg.mean), input_scale=cfg.input_scale)
    if classes is not None:
        out['classes'] = list(classes)
    return out


def generate_scasnet(out_dir, configs, max_iter=None, base_lr=None, solver_type=None, random_seed=None,
                     snapshot_dir='snapshots/scasnet', classes=None, inputs=None):
    """Write, for each ScasConfig in ``configs``, <variant>_scasnet_deploy,
    _train and _solver prototxts under out_dir (all or nothing), and
    deploy.json (with ``classes``, the class names, when given, and the
    context dilations when they are not the release's); the overrides, and
    the refusal of an output that is an input (the datalists, a palette
    file, ``inputs``), as for generate. Returns the paths written."""
    from caffe_mlic.netspec.scasnet import BUILDERS
    from caffe_mlic.netspec.solvers import SCASNET_SOLVERS, solver_proto
    texts = {}
    for cfg in configs:     # a NaN input_scale would reach the nets and deploy.json
        cfg.validate()
    first = configs[0]
    check_classes(classes, first.num_classes)
    if any((c.mean, c.input_scale, c.num_classes) != (first.mean, first.input_scale, first.num_classes)
           for c in configs):
        raise UsageError('the variants written together must share mean, input_scale and num_classes '
                         '(one deploy.json)')
    # What inference needs beyond the nets: the data layer's preprocessing.
    settings = dict(num_classes=first.num_classes, mean=list(first.mean), input_scale=first.input_scale)
    if classes is not None:
        settings['classes'] = list(classes)
    rates = scasnet_dilations(configs)
    if rates is not None:
        settings['dilations'] = rates
    texts[os.path.join(out_dir, DEPLOY_SETTINGS)] = settings_text(settings)
    for cfg in configs:
        base = os.path.join(out_dir, '%s_scasnet_' % cfg.variant)
        spec = solver_overrides(SCASNET_SOLVERS[cfg.variant], max_iter, base_lr, solver_type, random_seed)
        nets = BUILDERS[cfg.variant](cfg)
        check_buildable({base + 'deploy.prototxt': nets['deploy'], base + 'train.prototxt': nets['train']})
        texts[base + 'deploy.prototxt'] = prototxt.to_text(nets['deploy'])
        texts[base + 'train.prototxt'] = prototxt.to_text(nets['train'])
        texts[base + 'solver.prototxt'] = prototxt.to_text(solver_proto(
            base + 'train.prototxt', spec, os.path.join(snapshot_dir, cfg.variant + '_scasnet')))
    palettes = [c for c in configs if c.palette != 'isprs']    # 'isprs': the built-in colours, no file
    refuse_overwriting_inputs(texts, configs, ('train_list', 'val_list'), inputs)
    refuse_overwriting_inputs(texts, palettes, (), file_fields=('palette',))
    return write_files(texts)


def scasnet_dilations(configs):
    """deploy.json's ``dilations``: the context rates of the nets written
    together, a list when they agree, else {variant: list} (the pool5 side
    can differ by one between VGG and ResNet); None (no key, as the
    release's deploy.json) when every net has the release's rates or no context."""
    from caffe_mlic.netspec.scasnet import RELEASE_DILATIONS
    rates = {cfg.variant: list(cfg.rates) for cfg in configs if cfg.context != 'none'}
    if all(r == list(RELEASE_DILATIONS) for r in rates.values()):
        return None
    values = list(rates.values())
    return values[0] if all(r == values[0] for r in values) else rates
