"""`caffe-mlic train`'s engine: a pycaffe solver loop with a progress bar,
test mAP, logs, curves, snapshots on signals and resumable runs.

    trainer   Trainer / train(): the loop, snapshots, resume checks
    lr        learning_rate(): Caffe's lr policies
    logs      log.jsonl / log.csv / run.json, and a caffe binary's log read back
"""
from caffe_mlic.engine.lr import learning_rate
from caffe_mlic.engine.trainer import SnapshotError, Trainer, TrainingInterrupted, train

__all__ = ['SnapshotError', 'Trainer', 'TrainingInterrupted', 'learning_rate', 'train']
