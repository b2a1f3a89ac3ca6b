"""`make demo-scasnet`: ScasNet in miniature, on the CPU, through the caffe-mlic
commands a user types: a synthetic ISPRS-like aerial set (synth --task seg),
a small VGG ScasNet trained from scratch on random crops (caffe-mlic train),
sliding-window inference over the whole test tiles (scasnet infer), the ISPRS
metrics on the eroded and the full references (eval seg), and the report
with a majority-class baseline (caffe-mlic report): results.json,
report.html, the table. Where each file goes is caffe_mlic/report/layout.py,
which the report reads.

    DEMO_DIR=runs/scasnet   where everything goes
    SEED=1                  Caffe's and the data layer's seed
    ITERS=900               training iterations (chosen on the val tiles: validation
                            mIoU rose from 68 at 300 to 75-77 at 700-900)
    DEMO_MINI=1             a miniature (small tiles, few iterations) for CI:
                            well-formed outputs, no claim about the metrics
"""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo_driver import Driver, main, step  # noqa: E402

from caffe_mlic.report import layout  # noqa: E402


def demo():
    run = os.path.realpath(os.environ.get('DEMO_DIR') or 'runs/scasnet')
    seed = int(os.environ.get('SEED', '1'))
    if os.environ.get('DEMO_MINI', '0') == '1':
        tiles, tile_size, size, iters, batch = 5, '300x300', 64, 16, 4
    else:
        tiles, tile_size, size, iters, batch = 12, '1000x1000', 128, int(os.environ.get('ITERS', '900')), 8
    os.environ.update(OPENBLAS_NUM_THREADS='2', GLOG_minloglevel='2')
    shutil.rmtree(run, ignore_errors=True)
    os.makedirs(run)
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
