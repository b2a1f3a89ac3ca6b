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
"""
import os
import queue
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_driver import DemoFailed, Driver, env_ints, env_number, fresh_run_folder, main, step  # noqa: E402

from caffe_mlic.fileio import atomic_write_json  # noqa: E402
from caffe_mlic.netspec.scasnet import HEADS  # noqa: E402
from caffe_mlic.report import layout  # noqa: E402

# The comparison's settings (chosen on the val tiles, see README "ScasNet"):
# one 3x3 conv in each of VGG's first three blocks, the context on pool3
# (stride 8, 17 x 17 at 128 px). A pool3 unit sees 29 px: with fc6 and the
# head's 3x3, the plain FCN head sees 61 px (30 either side), less than the
# hard pixels' distance to their cues (more than 24 px, most roofs' centres
# 35-59 px), while the context's widest branch reaches 157 px, more than the
# 128-px crop: what varies is the head's reach. Widths of the small backbone.
# The heads that refine do it with conv3_1 (stride 4), no finer than the
# release's finest tap (conv3_3, stride 4): refining also with conv1_1 at
# full resolution cost cars their precision and, at 600 iterations, 3 of 9
# deep-head trainings lost a class on the val tiles; 1200 iterations, every
# head trained alike, lost none (README "What make demo-scasnet shows").
COMPARISON = dict(tiles=12, tile_size='1000x1000', size=128, iters=1200, batch=8, lr='0.002',
                  vgg_blocks=(1, 1, 1, 0, 0), refine=('conv3_1',))
MINI = dict(tiles=6, tile_size='300x300', size=64, iters=12, batch=4, lr='0.002', vgg_blocks=(1, 1, 1, 0, 0),
            refine=('conv3_1',))


def netgen_flags(head, refine):
    """HEADS[head] as `scasnet netgen --set` items (text as is, the rest as
    Python literals); ``refine``, the comparison's taps, for a head that
    refines (HEADS leaves its refine to the default)."""
    fields = dict(HEADS[head])
    fields.setdefault('refine', tuple(refine))
    return [item for field, value in fields.items()
            for item in ('--set', '%s=%s' % (field, value if isinstance(value, str) else repr(value)))]


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
    mini = os.environ.get('DEMO_MINI', '0') == '1'
    s = dict(MINI if mini else COMPARISON)
    s['iters'], = env_ints('ITERS', str(s['iters']), 1, 10 ** 6, count=1)
    s['lr'] = env_number('LR', s['lr'], 1e-9, 1.0)
    seeds = env_ints('SEEDS', '1 2 3', 0, 2 ** 31 - 1)
    if len(set(seeds)) != len(seeds):
        sys.exit('demo: SEEDS must be distinct (each seed is a folder), got %r' % os.environ['SEEDS'])
    jobs, = env_ints('DEMO_JOBS', '2', 1, 64, count=1)
    fresh_run_folder(run)
    data = layout.scasnet_path(run, 'data')
    driver = Driver()
    settings = dict(s, heads=heads, seeds=seeds, jobs=jobs, scene='context', mini=mini)
    atomic_write_json(layout.scasnet_path(run, 'settings.json'), settings)

    step('caffe-mlic doctor')
    driver.cli('doctor', cwd=run)
    step('synthetic aerial set where context decides: %d tiles of %s px (flat roofs paved like the lots; '
         'hard-pixel masks)' % (s['tiles'], s['tile_size']))
    driver.cli('synth', '--task', 'seg', '--scene', 'context', data, '--images', s['tiles'],
               '--tile-size', s['tile_size'], '--seed', 0, cwd=run, tail=3)

    step('nets: the same small VGG (convs per block %s) for %dx%d crops under each head (%s; those that '
         'refine, with %s); Adam %s, poly decay, %d iterations, batch %d'
         % (' '.join(map(str, s['vgg_blocks'])), s['size'], s['size'], ', '.join(heads), ' '.join(s['refine']),
            s['lr'], s['iters'], s['batch']))
    for seed in seeds:
        for head in heads:
            folder = layout.scasnet_head_dir(run, seed, head)
            os.makedirs(folder)
            driver.cli('scasnet', 'netgen', '-o', 'nets', '--variant', 'vgg', '--backbone', 'small',
                       '--vgg-blocks', *s['vgg_blocks'], '--input-size', s['size'],
                       '--train-list', '../../data/train.txt', '--val-list', '../../data/val.txt',
                       '--root-folder', '../../data/', '--batch-size', s['batch'], '--input-scale', '0.017',
                       '--dropout', 0, '--workers', 0, '--max-iter', s['iters'], '--solver-type', 'Adam',
                       '--base-lr', s['lr'], '--random-seed', seed, '--data-seed', seed,
                       *netgen_flags(head, s['refine']),
                       cwd=folder, log=os.path.join(folder, 'log.txt'))
        print('seed %d: %s' % (seed, ', '.join(heads)))

    with open(os.path.join(data, 'test.txt')) as f:
        test_tiles = [os.path.join(data, line.split()[0]) for line in f if line.split()]
    todo = queue.Queue()
    for seed in seeds:
        for head in heads:
            todo.put((seed, head))
    step('training %d nets, %d side by side (one core each), then inference and eval seg on the test '
         'tiles; what each prints goes to seed<S>/<head>/log.txt' % (len(seeds) * len(heads), jobs))

    def worker():
        while True:
            try:
                seed, head = todo.get_nowait()
            except queue.Empty:
                return
            one_head(driver, run, seed, head, s['iters'], test_tiles)
            print('  seed %d, %s: done' % (seed, head), flush=True)
    threads = [driver.in_thread(worker) for _ in range(min(jobs, todo.qsize()))]
    for t in threads:
        t.join()
    for t in threads:
        if t.error is not None:
            if isinstance(t.error, DemoFailed) and t.error.output:
                print(t.error.output[-3000:], end='')
            raise t.error

    step('report: results.json (every head and seed, means, paired differences against the full net), '
         'report.html')
    driver.cli('report', run)


def one_head(driver, run, seed, head, iters, test_tiles):
    """Train, infer and score one head of one seed, in its folder, its output in log.txt."""
    folder = layout.scasnet_head_dir(run, seed, head)
    log = os.path.join(folder, 'log.txt')
    env = dict(OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1')
    cli = lambda *args: driver.cli(*args, cwd=folder, log=log, env=env)  # noqa: E731
    cli('train', 'nets/vgg_scasnet_solver.prototxt', '--run-dir', 'train')
    cli('scasnet', 'infer', '--net', 'nets/vgg_scasnet_deploy.prototxt',
        '--weights', 'snapshots/scasnet/vgg_scasnet_iter_%d.caffemodel' % iters, *test_tiles, '-o', 'pred')
    data = layout.scasnet_path(run, 'data')
    hard = ['--hard-masks', os.path.join(data, 'hard')]
    cli('eval', 'seg', '--pred', 'pred/labels', '--gt', os.path.join(data, 'gts_eroded_for_participants'),
        '--gt-suffix', '_noBoundary', *hard, '--json', layout.scasnet_eval(folder))
    cli('eval', 'seg', '--pred', 'pred/labels', '--gt', os.path.join(data, 'gts_for_participants'), *hard,
        '--json', layout.scasnet_eval(folder, full=True))


def single_net(run):
    """VARIANTS=full: one small VGG16-deep ScasNet on the suburb scene (the
    demo of earlier releases)."""
    seed = env_ints('SEED', ' '.join(os.environ.get('SEEDS', '1').split()[:1]) or '1', 0, 2 ** 31 - 1, count=1)[0]
    if os.environ.get('DEMO_MINI', '0') == '1':
        tiles, tile_size, size, iters, batch = 5, '300x300', 64, 16, 4
    else:
        # ITERS: validation mIoU rose from 68 at 300 to 75-77 at 700-900
        tiles, tile_size, size, iters, batch = 12, '1000x1000', 128, env_ints('ITERS', '900', 1, 10 ** 6, 1)[0], 8
    os.environ.update(OPENBLAS_NUM_THREADS='2')
    fresh_run_folder(run)
    data = layout.scasnet_path(run, 'data')
    driver = Driver()
    cli = lambda *args, **kw: driver.cli(*args, cwd=run, **kw)  # noqa: E731

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
    cli('train', os.path.join(nets, 'vgg_scasnet_solver.prototxt'), '--run-dir', layout.scasnet_path(run, 'train'))

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
