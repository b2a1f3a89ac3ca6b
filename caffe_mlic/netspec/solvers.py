"""Solvers: the four trainable MLIC-KD-WSD nets (SOLVERS) and the two ScasNet
variants (SCASNET_SOLVERS).

For MLIC-KD-WSD the release gave only the teacher's base_lr (5e-5, step policy); the rest are
our choices, stated here:
- every solver: SGD, momentum 0.9, step policy with gamma 0.1, a snapshot
  every 5000 iterations, TEST phase every 5000 iterations for 50 batches.
- stage 1 uses weight_decay 0 (as first chosen to keep the teacher copy as
  loaded; the teacher's layers now have lr_mult 0 / decay_mult 0 in both
  stages, so neither stage's weight decay or method can move it).
- stage 2 and the baseline fine-tune a VGG16 classifier: base_lr 1e-4 / 1e-3.
"""
from dataclasses import dataclass

from caffe_mlic.caffe import prototxt
from caffe_mlic.errors import UsageError


@dataclass
class SolverSpec:
    base_lr: float
    stepsize: int
    max_iter: int
    weight_decay: float = 0.0005
    momentum: float = 0.9
    gamma: float = 0.1
    snapshot: int = 5000
    test_interval: int = 5000
    test_iter: int = 50
    display: int = 20
    iter_size: int = 1
    type: str = 'SGD'   # or 'Adam' (momentum2 0.999), e.g. for tiny nets from scratch
    random_seed: int = -1  # >= 0: Caffe seeds fillers and dropout with it (reproducible runs)
    lr_policy: str = 'step'  # or 'poly': base_lr (1 - iter / max_iter) ^ power
    power: float = 0.9


SOLVERS = {
    # solver file: (net it trains, spec, snapshot prefix)
    'wsddn/solver': ('wsddn/wsddn_train', SolverSpec(base_lr=5e-5, stepsize=25000, max_iter=40000),
                     'snapshots/wsddn/wsddn'),
    'kd/solver_stage1': ('kd/train_stage1', SolverSpec(base_lr=1e-5, stepsize=20000, max_iter=30000,
                                                       weight_decay=0.0), 'snapshots/kd/stage1'),
    'kd/solver_stage2': ('kd/train_stage2', SolverSpec(base_lr=1e-4, stepsize=20000, max_iter=30000),
                         'snapshots/kd/stage2'),
    'kd/solver_baseline': ('kd/student_baseline', SolverSpec(base_lr=1e-3, stepsize=20000,
                                                             max_iter=30000),
                           'snapshots/kd/baseline'),
}


# ScasNet (the release has no solver): DeepLab-v2's recipe, poly decay with
# power 0.9, momentum 0.9, weight decay 5e-4; base_lr 1e-3 for VGG (DeepLab-v2)
# and 1e-2 for the ResNet with its BN (PSPNet).
SCASNET_SOLVERS = {
    'vgg': SolverSpec(base_lr=1e-3, stepsize=0, max_iter=20000, lr_policy='poly', test_interval=1000,
                      test_iter=20, snapshot=2000),
    'resnet': SolverSpec(base_lr=1e-2, stepsize=0, max_iter=20000, lr_policy='poly', test_interval=1000,
                         test_iter=20, snapshot=2000),
}


def solver_proto(net_path, spec, snapshot_prefix):
    schedule = (dict(lr_policy='poly', power=spec.power) if spec.lr_policy == 'poly' else
                dict(lr_policy='step', gamma=spec.gamma, stepsize=spec.stepsize))
    fields = dict(base_lr=spec.base_lr, **schedule, momentum=spec.momentum, weight_decay=spec.weight_decay, max_iter=spec.max_iter,
                  display=spec.display, average_loss=spec.display, iter_size=spec.iter_size,
                  test_iter=[spec.test_iter], test_interval=spec.test_interval,
                  test_initialization=False, snapshot=spec.snapshot,
                  snapshot_prefix=snapshot_prefix, solver_mode='CPU')
    if spec.random_seed >= 0:
        fields['random_seed'] = spec.random_seed
    if spec.type != 'SGD':
        fields['type'] = spec.type
        if spec.type == 'Adam':
            fields['momentum2'] = 0.999
    return prototxt.solver(net_path, **fields)


def schedule(max_iter):
    """The schedule of a run of ``max_iter`` iterations, for `netgen --iters`
    and `train --max-iter` alike: the step at 70 % of it, one snapshot at the
    end, a test every eighth of the run (so the curves have points)."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise UsageError('max_iter must be >= 1, got %r' % (max_iter,), 'max_iter')
    return dict(max_iter=max_iter, stepsize=max(1, int(0.7 * max_iter)), snapshot=max_iter,
                test_interval=max(1, -(-max_iter // 8)))
