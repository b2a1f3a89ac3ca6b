"""`caffe-mlic train`'s engine: a pycaffe solver loop with a progress bar,
test mAP, logs, curves, snapshots on signals and resumable runs.

    trainer       Trainer / train(): the loop (tests, signals, snapshots on a stop, resume)
    solver_file   SolverFile: the solver file as Caffe reads it, KEY=VALUE overrides
    snapshots     snapshot sizes, the snapshots of a prefix, resume checks
    nets          what the loop reads off a net (data layers, score blob, outputs)
    lr            learning_rate(): Caffe's lr policies
    logs          log.jsonl / log.csv / run.json, and a caffe binary's log read back
"""
from caffe_mlic.engine.lr import learning_rate
from caffe_mlic.engine.snapshots import SnapshotError
from caffe_mlic.engine.trainer import Trainer, TrainingInterrupted, train

__all__ = ['SnapshotError', 'Trainer', 'TrainingInterrupted', 'learning_rate', 'train']
