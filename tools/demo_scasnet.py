"""`make demo-scasnet`: ScasNet in miniature, on the CPU, through the caffe-mlic
commands a user types.

By default, the comparison of heads ScasNet's paper is about: on a synthetic
aerial set where context decides (synth --task seg --scene context: flat
roofs paved like the lots and roads, so their interiors look alike up close),
the same small backbone, solver, crops, iterations and data for every head
(caffe_mlic.netspec.scasnet.HEADS: a plain FCN head, parallel context with
refinement, the self-cascade without refinement, the full ScasNet), for
each seed; sliding-window inference over the test tiles, eval seg on the
eroded and the full references (hard pixels from the synthetic set's masks),
then `caffe-mlic report`: results.json (every head and seed, means, spreads,
paired differences against the full net) and report.html.

    DEMO_DIR=runs/scasnet   where everything goes
    VARIANTS="fcn parallel cascade full"   the heads (also: norc); VARIANTS=full
                            alone is the single-net demo of earlier releases
                            (the suburb scene, the VGG16-deep small backbone)
    SEEDS="1 2 3"           Caffe's and the data layer's seeds
    ITERS=...               training iterations (default below, chosen on the val tiles)
    LR=...                  Adam's base learning rate (default below, chosen on the val tiles)
    DEMO_JOBS=2             trainings side by side (one core each)
    DEMO_MINI=1             a miniature for CI: well-formed outputs, no claim
                            about the metrics
    DEMO_RESUME=1           after an interruption, the same settings into the
                            same DEMO_DIR: the set is kept and `caffe-mlic run`
                            goes on from the stages that are done (a training
                            from its last snapshot); VARIANTS=full resumes its
                            training from its last snapshot
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_driver import DemoFailed, Driver, env_ints, env_number, fresh_run_folder, main, resumed_demo, step  # noqa: E402

from caffe_mlic.netspec.scasnet import HEADS  # noqa: E402
from caffe_mlic.report import layout  # noqa: E402

# The comparison's settings live in configs/demo_scasnet.toml (chosen on the
# val tiles, see README "ScasNet"): one 3x3 conv in each of VGG's first three
# blocks, the context on pool3 (stride 8, 17 x 17 at 128 px). A pool3 unit
# sees 29 px: with fc6 and the head's 3x3, the plain FCN head sees 61 px (30
# either side), less than the hard pixels' distance to their cues (more than
# 24 px, most roofs' centres 35-59 px), while the context's widest branch
# reaches 157 px, more than the 128-px crop: what varies is the head's reach.
# The heads that refine do it with conv3_1 (stride 4), no finer than the
# release's finest tap (conv3_3, stride 4): refining also with conv1_1 at
# full resolution cost cars their precision and, at 600 iterations, 3 of 9
# deep-head trainings lost a class on the val tiles; 1200 iterations, every
# head trained alike, lost none (README "What make demo-scasnet shows").
# Here: the synthetic set's size, and the miniature's overrides.
CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'configs', 'demo_scasnet.toml')
COMPARISON = dict(tiles=12, tile_size='1000x1000', iters=1200, lr='0.002', overrides=())
MINI = dict(tiles=6, tile_size='300x300', iters=12, lr='0.002',
            overrides=('net.input_size=64', 'net.batch_size=4'))


def demo():
    run = os.path.realpath(os.environ.get('DEMO_DIR') or 'runs/scasnet')
    heads = os.environ.get('VARIANTS', 'fcn parallel cascade full').split()
    unknown = [h for h in heads if h not in HEADS]
    if unknown or not heads:
        sys.exit('demo: VARIANTS: unknown head(s) %s; the heads are %s' % (' '.join(unknown) or '(none)',
                                                                         ' '.join(HEADS)))
    os.environ.update(GLOG_minloglevel='2')
    if heads == ['full']:
        return single_net(run)
    return comparison(run, heads)


def comparison(run, heads):
    """The synthetic set, then `caffe-mlic run configs/demo_scasnet.toml` into
    RUN with this demo's seeds, heads, jobs and miniature settings."""
    import json
    mini = os.environ.get('DEMO_MINI', '0') == '1'
    s = dict(MINI if mini else COMPARISON)
    s['iters'], = env_ints('ITERS', str(s['iters']), 1, 10 ** 6, count=1)
    s['lr'] = env_number('LR', s['lr'], 1e-9, 1.0)
    seeds = env_ints('SEEDS', '1 2 3', 0, 2 ** 31 - 1)
    if len(set(seeds)) != len(seeds):
        sys.exit('demo: SEEDS must be distinct (each seed is a folder), got %r' % os.environ['SEEDS'])
    jobs, = env_ints('DEMO_JOBS', '2', 1, 64, count=1)
    data = layout.scasnet_path(run, 'data')
    driver = Driver()
    if not resumed_demo(run, os.path.join(data, 'synth.json'), lambda: same_set(data, 'context', s)):
        fresh_run_folder(run)
        step('caffe-mlic doctor')
        driver.cli('doctor', cwd=run)
        step('synthetic aerial set where context decides: %d tiles of %s px (flat roofs paved like the lots; '
             'hard-pixel masks)' % (s['tiles'], s['tile_size']))
        driver.cli('synth', '--task', 'seg', '--scene', 'context', data, '--images', s['tiles'],
                   '--tile-size', s['tile_size'], '--seed', 0, cwd=run, tail=3)

    overrides = ['run.folder=%s' % json.dumps(run), 'run.seeds=%s' % json.dumps(seeds), 'run.jobs=%d' % jobs,
                 'heads.names=%s' % json.dumps(heads), 'train.max_iter=%d' % s['iters'],
                 'train.base_lr=%s' % s['lr'], 'report.miniature=%s' % json.dumps(mini),
                 'report.notes.scene="context"', 'report.notes.tiles=%d' % s['tiles'],
                 'report.notes.tile_size="%s"' % s['tile_size']]
    overrides += ['data.%s=%s' % (key, json.dumps(os.path.join(data, name))) for key, name in (
        ('train_list', 'train.txt'), ('val_list', 'val.txt'), ('root_folder', ''), ('test_list', 'test.txt'),
        ('gt', 'gts_for_participants'), ('gt_eroded', 'gts_eroded_for_participants'), ('hard_masks', 'hard'))]
    overrides += list(s['overrides'])
    step('caffe-mlic run configs/demo_scasnet.toml: for each seed and head (%s) the nets, training (%d '
         'iterations), inference and eval seg on the test tiles, %d side by side (one core each; each '
         "one's output in seed<S>/<head>/log.txt), then the report" % (', '.join(heads), s['iters'], jobs))
    driver.cli('run', CONFIG, *[item for o in overrides for item in ('--set', o)], cwd=run)


def same_set(data, scene, settings):
    """Whether the synthetic set in ``data`` (its synth.json) is the one
    this demo run would make: the scene, the tile count and size."""
    import json
    try:
        with open(os.path.join(data, 'synth.json')) as f:
            made = json.load(f)
        return (made.get('scene') == scene and sum(map(len, made['splits'].values())) == settings['tiles']
                and 'x'.join(map(str, made['tile_size'])) == settings['tile_size'])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def single_net(run):
    """VARIANTS=full: one small VGG16-deep ScasNet on the suburb scene (the
    demo of earlier releases)."""
    # SEED, else the first of SEEDS (named as the user gave it)
    seed = (env_ints('SEED', '1', 0, 2 ** 31 - 1, count=1) if 'SEED' in os.environ
            else env_ints('SEEDS', '1', 0, 2 ** 31 - 1))[0]
    if os.environ.get('DEMO_MINI', '0') == '1':
        tiles, tile_size, size, iters, batch = 5, '300x300', 64, env_ints('ITERS', '16', 1, 10 ** 6, 1)[0], 4
    else:
        # ITERS: validation mIoU rose from 68 at 300 to 75-77 at 700-900
        tiles, tile_size, size, iters, batch = 12, '1000x1000', 128, env_ints('ITERS', '900', 1, 10 ** 6, 1)[0], 8
    os.environ.update(OPENBLAS_NUM_THREADS='2')
    data = layout.scasnet_path(run, 'data')
    driver = Driver()
    cli = lambda *args, **kw: driver.cli(*args, cwd=run, **kw)  # noqa: E731
    resumed = resumed_demo(run, os.path.join(data, 'synth.json'),
                           lambda: same_set(data, 'suburb', dict(tiles=tiles, tile_size=tile_size)))
    if not resumed:
        fresh_run_folder(run)
        step('caffe-mlic doctor')
        cli('doctor')
        step('synthetic aerial set: %d tiles of %s px, six ISPRS classes, in the ISPRS layout' % (tiles, tile_size))
        cli('synth', '--task', 'seg', data, '--images', tiles, '--tile-size', tile_size, '--seed', 0, '-q')

    step('nets: small VGG ScasNet for %dx%d crops (deploy, train, solver: Adam 2e-3, poly decay, %d iterations)'
         % (size, size, iters))
    nets = layout.scasnet_path(run, 'nets')
    cli('scasnet', 'netgen', '-o', nets, '--variant', 'vgg', '--backbone', 'small', '--input-size', size,
        '--train-list', 'data/train.txt', '--val-list', 'data/val.txt', '--root-folder', 'data/',
        '--batch-size', batch, '--input-scale', '0.017', '--dropout', 0, '--max-iter', iters,
        '--solver-type', 'Adam', '--base-lr', '0.002', '--random-seed', seed, '--data-seed', seed)

    step('training from scratch on random crops (scale jitter, both flips); validation: the val tiles')
    # resumed: from the newest complete snapshot (none: from the start; at max_iter: nothing to train)
    cli('train', os.path.join(nets, 'vgg_scasnet_solver.prototxt'), '--run-dir', layout.scasnet_path(run, 'train'),
        *(('--resume', 'auto') if resumed else ()))

    step('sliding-window inference over the whole test tiles')
    with open(os.path.join(data, 'test.txt')) as f:
        test_tiles = [os.path.join(data, line.split()[0]) for line in f if line.split()]
    pred = layout.scasnet_path(run, 'pred')
    cli('scasnet', 'infer', '--net', os.path.join(nets, 'vgg_scasnet_deploy.prototxt'),
        '--weights', 'snapshots/scasnet/vgg_scasnet_iter_%d.caffemodel' % iters, *test_tiles, '-o', pred)

    step('ISPRS metrics: on the eroded references (as the benchmark), then on the full ones')
    labels = os.path.join(pred, 'labels')
    cli('eval', 'seg', '--pred', labels, '--gt', os.path.join(data, 'gts_eroded_for_participants'),
        '--gt-suffix', '_noBoundary', '--json', layout.scasnet_eval(run))
    cli('eval', 'seg', '--pred', labels, '--gt', os.path.join(data, 'gts_for_participants'),
        '--json', layout.scasnet_eval(run, full=True), tail=4)

    step('report')
    cli('report', run)


if __name__ == '__main__':
    main(demo)
