"""Run a method's stages from one config file, resumably:

    caffe-mlic run CONFIG.toml [--set KEY.PATH=VALUE ...] [--check | --status]
                               [--from STAGE | --only STAGE]

CONFIG (TOML) names the data, the net options (every MlicConfig or
ScasConfig field, in [net]), the training, the evaluation and the seeds:
see configs/*.toml. Each stage records its inputs (settings, input files' digests, code version)
and outputs in RUN/.stages/; a second `run` skips the stages that are done,
resumes one cut short from its snapshots, and reruns what a change
invalidates, saying why ("stage seed1/full/train: follows seed1/full/nets").
Paths in the config are relative to the current directory.

run.system = "mlic" (configs/demo_mlic.toml, voc2007_mlic.toml,
coco2014_mlic.toml): proposals and datalists, then per seed the teacher,
stage 1, stage 2, the baseline, their evaluation and the teacher's
detections (with ablation rows and study variants on request), then speed
and the report. run.system = "scasnet" (configs/demo_scasnet.toml,
scasnet_vaihingen.toml): per seed and head, nets, training, sliding-window
inference and eval seg; then the comparison report. Both end with
RUN/results.json and RUN/report.html.
"""

HELP = 'run a method from a config file, stage by stage, resumably'


def add_arguments(p):
    p.add_argument('config', metavar='CONFIG', help='the run config (TOML)')
    p.add_argument('--set', action='append', default=[], metavar='KEY.PATH=VALUE', dest='overrides',
                   help='override a config value (VALUE as TOML: 1e-3, true, [1, 2], "text"; else text)')
    mode = p.add_mutually_exclusive_group()
    mode.add_argument('--check', action='store_true', help='check the config and its paths, run nothing')
    mode.add_argument('--status', action='store_true', help='print which stages are done, stale or to do')
    which = p.add_mutually_exclusive_group()
    which.add_argument('--from', dest='start', metavar='STAGE', help='run this stage and every one after it')
    which.add_argument('--only', metavar='STAGE', help='run this stage alone')


def run(args):
    from caffe_mlic.pipeline import runner
    if args.check or args.status:
        from caffe_mlic.pipeline.stages import check_names
        _, plan, stages = runner.load(args.config, args.overrides)
        check_names(stages, args.start, args.only)
        if args.check:
            print('%s: the config and its paths are valid: %d stages into %s'
                  % (args.config, len(stages), plan.folder))
        else:
            print('\n'.join(runner.status_lines(plan, stages, args.start, args.only)))
        return 0
    runner.run(args.config, args.overrides, args.start, args.only)
    return 0
