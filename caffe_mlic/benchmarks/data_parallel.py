"""Data-parallel training over MPI: 1 rank against 2 ranks, in one run.

A net where the compute dominates (DummyData, then convolutions at 112 px,
batch 8 a rank; --quick: 32 px, batch 2), trained by `caffe-mlic train`
alone and under `mpirun -np 2` for the same iterations. Reported:
  - the iteration time of each, and the throughput of 2 ranks against 1
    (images a second; 2 at best). On this 2-core machine two ranks share
    the cores that one rank's BLAS threads used, so the ratio is bounded by
    the cores, not by the method: it says what the reduction costs here;
  - the time rank 0 spent averaging the gradients, per iteration and per MB;
  - the projected time to average VGG16's gradients (138 M parameters,
    553 MB) for 2 ranks over a network: a ring all-reduce moves
    2 (N - 1) / N times the buffer through each rank's link, at 10 Gbit/s
    (1.25 GB/s) and at 100 Gbit/s (12.5 GB/s).
Info only: no target (the issue sets none beyond reporting honestly).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

VGG16_PARAMS = 138_357_544


def _net(size, batch):
    convs = ''.join('''layer { name: "conv%d" type: "Convolution" bottom: "%s" top: "conv%d"
  convolution_param { num_output: 64 kernel_size: 3 pad: 1 weight_filler { type: "xavier" } } }
layer { name: "relu%d" type: "ReLU" bottom: "conv%d" top: "conv%d" }
''' % (i, 'data' if i == 1 else 'conv%d' % (i - 1), i, i, i, i) for i in range(1, 5))
    text = ('layer { name: "data" type: "DummyData" top: "data" top: "target"\n'
            '  dummy_data_param { shape { dim: %d dim: 3 dim: %d dim: %d } shape { dim: %d dim: 10 }\n'
            '    data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 0.5 } } }\n'
            % (batch, size, size, batch) + convs +
            'layer { name: "fc" type: "InnerProduct" bottom: "conv4" top: "fc"\n'
            '  inner_product_param { num_output: 10 weight_filler { type: "xavier" } } }\n'
            'layer { name: "loss" type: "EuclideanLoss" bottom: "fc" bottom: "target" top: "loss" }\n')
    return text


def _train(command, cwd, run_dir, env):
    from caffe_mlic.errors import RunError
    with tempfile.TemporaryFile('w+', encoding='utf-8', errors='replace') as err:
        proc = subprocess.Popen(command + ['train', 'solver.prototxt', '--run-dir', run_dir], cwd=cwd,
                                stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            code = proc.wait(timeout=1800)
        except BaseException:
            _stop(proc)
            raise
        if code:
            err.seek(0)
            lines = [line.strip() for line in err.read().splitlines() if line.strip()]
            ours = [line for line in lines if line.startswith('caffe-mlic ')]     # (train's one line, if it said one)
            raise RunError('data_parallel: its training (%s) failed: %s' % (
                'mpirun' if 'mpirun' in command[0] else 'one process',
                (ours or lines or ['exit %d' % code])[-1]))
    with open(os.path.join(cwd, run_dir, 'run.json')) as f:
        info = json.load(f)
    from caffe_mlic.engine import logs
    rows = [r for r in logs.read_records(os.path.join(cwd, run_dir, 'log.jsonl')) if r['phase'] == 'train']
    skip = max(1, len(rows) // 5)        # (the first iterations: caches and allocations)
    per_iteration = (rows[-1]['elapsed'] - rows[skip]['elapsed']) / (len(rows) - 1 - skip)
    return per_iteration, info


def _stop(proc):
    """Stop the training ``proc`` after a stop signal or a timeout here,
    letting it clean up: mpirun killed at once (subprocess.run's way) left
    Open MPI's shared-memory segments in /dev/shm and its session folder.
    One that had the signal too (the terminal's whole group) is given a
    moment to end first; then SIGTERM, then SIGKILL."""
    import signal
    for action, wait in ((None, 3), (signal.SIGTERM, 60), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        if action is not None:
            proc.send_signal(action)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass


def run(report, quick):
    from caffe_mlic.caffe import prototxt
    size, batch, iterations = (32, 2, 12) if quick else (112, 8, 30)
    mpirun = shutil.which('mpirun')
    if mpirun is None:
        sys.stdout.write('   mpirun not found (make install puts in openmpi-bin): skipped\n')
        return
    cli = [sys.executable, '-m', 'caffe_mlic.cli']
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT='1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM='1',
               OMPI_MCA_rmaps_base_oversubscribe='1', OMPI_MCA_btl='self,vader',
               OMPI_MCA_btl_vader_single_copy_mechanism='none', CAFFE_MLIC_PROGRESS='never')
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, 'net.prototxt'), 'w') as f:
            f.write(_net(size, batch))
        prototxt.write_solver(os.path.join(tmp, 'solver.prototxt'), os.path.join(tmp, 'net.prototxt'),
                              base_lr=1e-4, momentum=0.9, lr_policy='fixed', max_iter=iterations,
                              snapshot=0, snapshot_after_train=False, snapshot_prefix='snap/w', random_seed=1)
        one, _ = _train(cli, tmp, 'one', env)
        two, info = _train([mpirun, '-np', '2'] + cli, tmp, 'two', env)
    reduction = info['reduction']
    per_reduction = reduction['seconds'] / max(1, reduction['iterations'])
    report('data parallel: iteration, 1 rank (batch %d)' % batch, one * 1e3, None, 'ms')
    report('data parallel: iteration, 2 ranks (batch %d each)' % batch, two * 1e3, None, 'ms')
    report('data parallel: throughput, 2 ranks / 1 rank (at most 2; %d cores here)' % os.cpu_count(),
           2 * one / two, None, 'x')
    report('data parallel: averaging %.1f MB of gradients, per iteration' % reduction['megabytes'],
           per_reduction * 1e3, None, 'ms')
    report('data parallel: averaging, per MB (shared memory; waits for the slower rank too)',
           per_reduction / max(reduction['megabytes'], 1e-9) * 1e3, None, 'ms')
    vgg_mb = VGG16_PARAMS * 4 / 1e6
    for name, gbytes in (('10 Gbit/s', 1.25), ('100 Gbit/s', 12.5)):
        report('data parallel: VGG16 (%.0f MB) averaged by 2 ranks over %s, projected' % (vgg_mb, name),
               vgg_mb * 2 * (2 - 1) / 2 / (gbytes * 1e3) * 1e3, None, 'ms')
