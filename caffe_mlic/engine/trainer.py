"""The training loop of `caffe-mlic train`: pycaffe's solver, one iteration at a time.
Its parts: the solver file and its overrides (solver_file), snapshots and
resume checks (snapshots), what it reads off the nets (nets), the logs (logs).

The solver file is read as Caffe reads it: a relative ``net`` and a relative
``snapshot_prefix`` are relative to the current directory (the prefix's
folder is created; with no prefix, ``<run dir>/snapshots/<solver stem>``).
On the CPU, or on GPU ``gpu`` with Caffe's CUDA build (our Python layers then
run on the host). What the loop does beyond Caffe's Solver::Step:

- Test: at every ``test_interval`` (iteration 0 too with test_initialization)
  and at the end, the solver's TEST net, sharing the train net's weights, runs
  once over its whole TEST datalist (test_iter is not used), from the list's
  first image each time; the record gets the mean of each scalar output and
  the mAP of the score blob (segmentation nets: mIoU of its argmax). The score blob: ``score_blob`` when given,
  otherwise the other bottom of the first loss layer that takes the labels
  (the teacher's image_level_score, the student's logits); with none, no mAP.
- Snapshots: on the solver's ``snapshot`` schedule and at the end
  (snapshot_after_train), whole or not at all (snapshots.take_snapshot: Caffe
  writes them under hidden names that are then renamed; a disk too full for
  one is a RunError, not Caffe's abort). On SIGINT, SIGTERM, SIGHUP (a
  dropped ssh session) or a closed stdout (``train ... | head -1``) one at
  the iteration reached, after which TrainingInterrupted (exit 128 + the
  signal) says how to resume. A signal that arrives while the nets are built
  is acted on once they are; one run at a time writes a run folder (a lock).
- Resume (``resume``: a .solverstate, or 'auto': the newest complete snapshot
  of the solver's prefix; none: from iteration 0): the state is checked before
  Caffe reads it (it parses, its history fits the net, its learned_net exists,
  parses and fits); 'auto' passes over a state that fails, saying why. The
  run goes on at the state's iteration with the same learning-rate schedule,
  the TRAIN data layers skip to the batch reached, the logs keep what came
  before the snapshot.
- Reproducibility: with random_seed >= 0, Caffe's RNG (dropout) is reseeded
  before each iteration from (random_seed, iteration), so a resumed run draws
  what an uninterrupted one draws and reaches the same weights bit for bit
  (with the data layer's own seeded plan). Without random_seed nothing is
  reseeded, and a resumed run's dropout differs.
- A total loss that is not finite stops the run (RunError): training diverged.
- Under an MPI launcher with several ranks, data-parallel training
  (distributed.py): batch_size per rank, gradients averaged before each
  update, rank 0 alone writes and tests; the loss logged is the ranks' mean.
"""
import contextlib
import glob
import math
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque

import numpy as np

from caffe_mlic import plotting
from caffe_mlic.caffe import prototxt
from caffe_mlic.caffe.env import caffe_check_cleanup
from caffe_mlic.caffe.weights import check_weights, parse_message, read_state
from caffe_mlic.engine import distributed, logs
from caffe_mlic.engine.lr import learning_rate
from caffe_mlic.engine.nets import DATA_LAYERS, data_layers, find_score_blob, scalar_outputs, seekable_layers
from caffe_mlic.engine.snapshots import (SnapshotError, check_finite_snapshot, check_hdf5_snapshots, check_snapshot,
                                         name_list, net_non_finite_layers,
                                         check_snapshot_folder, check_snapshot_size, find_snapshots, learned_net_path,
                                         file_identity, follow_snapshot_folder, has_digest, identity_in, lock_prefix,
                                         move_claim, open_snapshot_folder,
                                         other_owner, recorded_paths, run_records, snapshot_bytes,
                                         take_snapshot, write_claim, write_hdf5_learned_net,
                                         check_paired_model)
from caffe_mlic.engine.solver_file import SolverFile
from caffe_mlic.errors import InputError, MlicError, RunError, UsageError, os_error_text
from caffe_mlic.evaluation.evaluator import EVALUATORS, for_data_layer, label_blob
from caffe_mlic.fileio import _missing_dirs, atomic_write, refuse_overwriting, same_file
from caffe_mlic import processes
from caffe_mlic.processes import STOP_SIGNALS, handling
from caffe_mlic.progress import progress

SIGNAL_NAMES = {signal.SIGINT: 'SIGINT', signal.SIGTERM: 'SIGTERM', signal.SIGHUP: 'SIGHUP',
                signal.SIGPIPE: 'a closed stdout'}
LOCK_FILE = '.lock'


class TrainingInterrupted(MlicError):
    """A signal (or a closed stdout) stopped the run after a snapshot; exits 128 + the signal."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum


class _NoLog:
    """The logs of a rank other than 0: nothing kept."""
    records, elapsed = [], 0.0

    def append(self, record):
        pass

    def close(self):
        pass


class RunFinished(Exception):
    """--resume auto found the run trained to max_iter already: nothing to do."""

    def __init__(self, state):
        super().__init__(state)
        self.state = state


def iteration_seed(seed, iteration, rank=None):
    """Caffe's RNG seed for ``iteration`` of a run seeded with ``seed`` (of
    ``rank`` in data-parallel training)."""
    entropy = [seed, iteration] + ([] if rank is None else [rank])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0]) & 0x7fffffff


RUN_FILES = (logs.JSONL, logs.CSV, logs.RUN_JSON, 'solver.prototxt', 'net.prototxt', 'curves.png')


def _refuse_odd_run_files(run_dir):
    """InputError for a file the run writes in its run folder that is
    there as something else than a regular file (or a link to one): a FIFO
    blocks the open with the stop signals deferred, a folder or symlink
    loop fails it at the end, named by the folder's descriptor."""
    from caffe_mlic.errors import in_the_way
    odd = [name for name in RUN_FILES if os.path.lexists(os.path.join(run_dir, name))
           and not os.path.isfile(os.path.join(run_dir, name))]
    if odd:
        raise InputError(in_the_way(os.path.join(run_dir, odd[0]), 'the run writes its %s' % odd[0],
                                    'move it away' + ('' if len(odd) == 1 else ' (and %s)' % ', '.join(odd[1:]))))


def _refuse_run_files_over_inputs(run_dir, inputs):
    """InputError for a file the run writes in its run folder that is (by a
    link, or a hard link) one of the run's ``inputs`` [(path, the run file
    that may be it, or None)]: the run would write its logs over its
    solver, a datalist or a snapshot. (The run folder's own solver.prototxt
    and net.prototxt may be what the run reads: trained again as they are.)"""
    given = {}
    for path, own in inputs:
        try:
            st = os.stat(path) if path else None
        except (OSError, ValueError):
            continue
        if st is None:
            continue
        given.setdefault((st.st_dev, st.st_ino), []).append((path, own))
    for name in RUN_FILES:
        path = os.path.join(run_dir, name)
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        for source, own in given.get((st.st_dev, st.st_ino), ()):
            if own != name:
                raise InputError('%s is %s %s, an input of this run, where the run writes its %s: move it away'
                                 % (path, 'a link to' if os.path.islink(path) else 'the same file as', source,
                                    name))


def _copy_file(src, dst):
    with open(src, 'rb') as f, atomic_write(dst, 'wb') as out:
        shutil.copyfileobj(f, out)


def lock_run_dir(run_dir, what='training run', advice='give this one another --run-dir'):
    """Hold ``run_dir``'s lock (its .lock file, holding the pid) until
    unlock_run_dir; RunError when another run holds it (``what``, and the
    ``advice`` in the message); processes.lock_file."""
    from caffe_mlic.processes import lock_file
    return lock_file(os.path.join(run_dir, LOCK_FILE), 'another %s (%%s) is writing %s: wait for it to end, or %s'
                     % (what, run_dir, advice))


def unlock_run_dir(lock):
    from caffe_mlic.processes import unlock_file
    unlock_file(lock)


# ---------------------------------------------------------------- the run


def _default_log(message):
    sys.stderr.write(message + '\n')
    sys.stderr.flush()


class Trainer:
    """One training session of ``solver_path`` into ``run_dir``.

    weights: caffemodels copied into the nets before training; resume: a
    .solverstate path or 'auto' (weights then only apply when no snapshot is
    found); score_blob: the TEST blob scored (mAP, or mIoU for segmentation); command: the command
    line (for run.json); resume_command: the one that resumes, '{state}'
    standing for the solver state; log: where notes go (stderr); gpu: the
    GPU device id to train on (a GPU build of Caffe), None for the CPU."""
    evaluator = EVALUATORS['MultiLabelProposalData']   # the TEST evaluator's class (from the TEST data layer)

    def __init__(self, solver_path, run_dir=None, weights=(), resume=None, score_blob=None,
                 command=None, resume_command=None, log=None, overrides=(), gpu=None, early_signals=()):
        self.group = distributed.group()
        self.leader = self.group.leader
        self.run_dir = run_dir or os.path.join('runs', os.path.splitext(
            os.path.basename(os.fspath(solver_path)))[0])
        self.solver_file = SolverFile(solver_path, self.run_dir, overrides, test_nets=False)
        self.given_run_dir, self.given_prefix = self.run_dir, self.solver_file.snapshot_prefix
        check_hdf5_snapshots(self.solver_file)
        if overrides:   # the run folder keeps the solver as run: never over the solver read
            refuse_overwriting([os.path.join(self.run_dir, 'solver.prototxt')], [self.solver_file.path],
                               'run_dir')
        self.weights = list(weights)
        from caffe_mlic.caffe.weights import weights_file_problem
        for w in self.weights if self.leader else ():     # (rank 0 reads them; the others get its weights)
            if weights_file_problem(w):
                raise InputError(weights_file_problem(w))
            self._refuse_own_snapshot(w)
        if resume not in (None, 'auto') and not os.path.isfile(resume):
            from caffe_mlic.fileio import input_file_problem
            raise InputError(input_file_problem(resume, 'solver state'))
        if resume not in (None, 'auto') and self.weights:
            raise UsageError('give a solver state to resume from or weights to start from, not both')
        self.resume, self.score_blob_option = resume, score_blob
        self.resume_command = resume_command or ['caffe-mlic', 'train', os.fspath(solver_path),
                                                 '--resume', '{state}']
        self.command = command or [a for a in self.resume_command if a not in ('--resume', '{state}')]
        self.note = (log or _default_log) if self.leader else (lambda message: None)
        self.stop_signal = None
        self.info = {}      # run.json's fields, made by _start (a folder followed while the nets are built: none yet)
        self.early_signals = early_signals   # signals recorded before the trainer's own handlers
        self.state_iteration = None
        param = self.solver_file.param
        if gpu is None and param.HasField('solver_mode') and param.solver_mode == param.GPU:
            # as the caffe binary reads the solver: solver_mode only when it is
            # given (its default, GPU, is not used: an unset mode is the CPU)
            gpu = param.device_id
        self.gpu = gpu
        if gpu is not None:
            # Caffe aborts the process (a CHECK) on a CPU-only build or a
            # missing device: say so first.
            from caffe_mlic.caffe import env as caffe_env
            caffe_env.check_gpu([gpu])

    def _refuse_own_snapshot(self, path):
        """UsageError when weights ``path`` is named like a snapshot this run
        writes: the run would write over the file it started from."""
        from caffe_mlic.engine.snapshots import own_snapshot_problem
        sf = self.solver_file
        problem = own_snapshot_problem(path, sf.snapshot_prefix, sf.param.max_iter, sf.hdf5)
        if problem:
            raise UsageError(problem, 'weights')

    # ------------------------------------------------------------ setup

    def _test_setup(self):
        """(data layer, labels, score blob) of the TEST phase, or None without a TEST data layer
        (the layers the solver's test_state keeps)."""
        net_param = self.solver_file.test_view
        found = data_layers(net_param, 'TEST')
        kinds = ' or '.join(DATA_LAYERS)
        if len(found) != 1:
            what = 'no' if not found else '%d' % len(found)
            if self.score_blob_option:
                raise UsageError('the net has %s TEST-phase %s layer, nothing to score'
                                 % (what, kinds), 'score_blob')
            self.note('the net has %s TEST-phase %s layer: no tests' % (what, kinds))
            return None
        kind = found[0].python_param.layer
        labels = label_blob(net_param, found[0])
        score = self.score_blob_option or find_score_blob(net_param, labels)
        self.evaluator = EVALUATORS[kind]
        if score is None:
            self.note('no loss layer takes the labels %r: tests give the losses only, no %s '
                      '(name the scores with score_blob)' % (labels, self.evaluator.key))
        return found[0], labels, score

    def _build(self):
        import caffe
        from caffe_mlic.layers.pipeline import set_data_shard
        sf = self.solver_file
        self.test = self._test_setup() if self.leader else None     # (rank 0 tests)
        self.snapshot_dirs_made = check_snapshot_folder(sf, self.run_dir) if self.leader else []
        # one writer of a prefix at a time, this run or the caffe binary (released in run())
        self.prefix_lock = lock_prefix(sf.snapshot_prefix) if self.leader else None
        self.snapshot_folder_fd, staging_folder = open_snapshot_folder(sf.snapshot_prefix) if self.leader else \
            (None, None)
        set_data_shard(self.group.rank, self.group.size)
        if self.gpu is None:
            caffe.set_mode_cpu()
        else:       # our Python layers read and write blobs on the host; pycaffe syncs them
            caffe.set_device(self.gpu)
            caffe.set_mode_gpu()
        runtime = sf.runtime_param(self.test is not None, staging_folder)
        guard_max_pooling(runtime, sf.net_param)
        text = prototxt.to_text(runtime, header=None)
        # A signal now is recorded by run()'s handlers and acted on once the
        # nets are built (the data workers ignore SIGINT themselves).
        with prototxt.temporary_file(text) as path, \
                prototxt.naming_build_errors(sf.net_param, [state for _, _, _, state in sf.nets]
                                             [:1 + (self.test is not None)], sf.net_path or sf.path):
            self.solver = caffe.get_solver(path)
        self.net = self.solver.net
        self.test_net = self.solver.test_nets[0] if self.test is not None else None
        for net in (self.net, self.test_net):
            if net is not None:
                prototxt.name_python_layers(net)
        if self.test is not None:
            data, labels, score = self.test
            blobs = self.test_net.blobs
            if score is not None and score not in blobs:
                raise UsageError('the TEST net has no blob %r; its blobs: %s'
                                 % (score, ', '.join(blobs)), 'score_blob')
            if labels not in blobs:
                raise InputError('%s: the TEST net has no label blob %r' % (sf.path, labels))
            if score is not None and not self.evaluator.fits(blobs[score].data.shape, blobs[labels].data.shape):
                raise UsageError('blob %s is %s but the labels %s are %s: not scores of the classes'
                                 % (score, blobs[score].data.shape, labels,
                                    blobs[labels].data.shape), 'score_blob')
            self.test_data = self.test_net.layer_dict[data.name]
        self.train_tops = scalar_outputs(self.net)
        weights = self.net.blob_loss_weights
        self.loss_weights = np.array([weights[name] for name in self.train_tops], np.float64)
        self.test_tops = scalar_outputs(self.test_net) if self.test_net is not None else []

    def _copy_weights(self, paths):
        for path in paths:
            check_weights(path, self.net)
            self.net.copy_from(path)
            bad = net_non_finite_layers(self.net)
            if bad:     # (training would diverge at its first step)
                raise InputError('%s: holds NaN or infinite weights (layers %s): a snapshot of a '
                                 'diverged run?' % (path, name_list(bad)))
            if self.test_net is not None:
                check_weights(path, self.test_net)
                self.test_net.copy_from(path)
            self.note('weights from %s' % path)

    def _choose_state(self):
        """The solver state to resume from (None: start at iteration 0)."""
        sf = self.solver_file
        if self.resume is None:
            return None
        info = logs.read_run_json(self.run_dir)
        info = info if isinstance(info, dict) else {}
        if self.resume != 'auto':
            self.state_iteration, model = check_snapshot(self.resume, self.net, sf.net_param, sf.type)
            check_paired_model(self.resume, model, info)
            check_finite_snapshot(self.resume, model)
            self.resumed_model = model
            return self.resume
        last = self._recorded_last_state(info)
        candidates = find_snapshots(sf.snapshot_prefix)
        if not candidates:
            self._refuse_another_prefix(info)
        # The state the run last reached, outside this prefix (it resumed from another prefix's state and
        # wrote none since): the run goes on from it, never from this prefix's state of that iteration.
        reached = self._reached_state_elsewhere(info, last, candidates)
        if reached is not None:
            candidates = sorted(candidates + [reached], key=lambda c: (c[0], c[1] == reached[1]), reverse=True)
        prior, own = self._prior_snapshots(info)
        self._refuse_a_lost_or_foreign_last_state(info, last, candidates, own)
        began = self._chain_began(info) if prior is None else None
        left, newest_own = self._left_snapshots(info)
        beyond = self._last_unrecorded_iteration(info, last)
        for iteration, path in candidates:
            if reached is not None and iteration == reached[0] and path != reached[1]:
                self.note('skipping %s: not the state this run reached at iteration %d (%s)'
                          % (path, iteration, reached[1]))
                continue
            if (identity_in(path, prior) and not identity_in(path, own) if prior is not None else
                    began is not None and os.path.getmtime(path) < began - 2):
                # the prefix is shared with an earlier run that this run folder started over from
                self.note('skipping %s: written before this run folder\'s run began: another run\'s '
                          'snapshot' % path)
                continue
            if left and identity_in(path, left) and not identity_in(path, newest_own):
                self.note('skipping %s: this run left it when it was resumed from an earlier state' % path)
                continue
            if beyond is not None and iteration > beyond[1] and not identity_in(path, own):
                self.note('skipping %s: not a state this run wrote (newer than iteration %d, %s)' % (
                    path, beyond[1], 'the snapshot due after its last recorded state, %d' % beyond[0]
                    if beyond[1] > beyond[0] else 'its last recorded state, where its schedule ended'))
                continue
            try:
                self.state_iteration, model = check_snapshot(path, self.net, sf.net_param, sf.type)
                check_paired_model(path, model, info)
                check_finite_snapshot(path, model)
                self.resumed_model = model
                return path
            except SnapshotError as e:
                self.note('skipping %s' % e)
        if last is not None:        # (starting over would write over the run's logs and run.json)
            raise UsageError('auto: the run in %s last reached %s (its run.json), and the prefix %s holds no '
                             'complete snapshot of it now: give the state to resume from with --resume, or run '
                             'without --resume to start this run folder over'
                             % (self.run_dir, last[0], sf.snapshot_prefix), 'resume')
        self.note('no complete snapshot with prefix %s: starting at iteration 0'
                  % sf.snapshot_prefix if candidates else
                  'no snapshot with prefix %s yet: starting at iteration 0' % sf.snapshot_prefix)
        return None

    def _refuse_another_prefix(self, info):
        """UsageError for --resume auto with no snapshot of this prefix where
        the run in this folder wrote its snapshots with another one that holds
        them (its snapshot folder followed to a new name, or a --set given
        before): starting over would write over its log and run.json.
        ``info``: its run.json."""
        recorded = info.get('snapshot_prefix')
        if not isinstance(recorded, str) or not recorded:
            return
        here = os.path.realpath(self.solver_file.snapshot_prefix)
        for place in sorted(recorded_paths(info, recorded, self.run_dir)):
            # (this prefix itself, or one another run folder owns: the original of a copied project)
            if place == here or not find_snapshots(place) or other_owner(place, self.run_dir):
                continue
            given = recorded if os.path.realpath(recorded) == place else os.path.relpath(place)
            raise UsageError('--resume auto: the run in %s wrote its snapshots with prefix %s (its run.json), '
                             'and %s holds none: resume with --set snapshot_prefix=%s, or run without --resume '
                             'to start this run folder over'
                             % (self.run_dir, given, self.solver_file.snapshot_prefix, given), 'resume')

    def _refuse_a_lost_or_foreign_last_state(self, info, last, candidates, own):
        """UsageError for --resume auto where the run in this run folder
        recorded writing a state (run.json's last_snapshot) and the prefix now
        holds no snapshot (its folder moved or removed: starting over would
        write over the run's log and run.json), or holds, at that state's
        iteration, a complete state that is not the one it wrote (the prefix
        leads to another run's snapshots: its newer states are not this
        run's). ``info``: its run.json; ``last``: _recorded_last_state."""
        if last is None:
            return
        recorded, iteration, identity = last
        prefix = self.solver_file.snapshot_prefix
        if not candidates:
            raise UsageError('auto: the run in %s last reached %s (its run.json), and no snapshot with prefix '
                             '%s is there now (its snapshot folder moved or removed?): give the state where it is '
                             'now with --resume, or run without --resume to start this run folder over'
                             % (self.run_dir, recorded, prefix), 'resume')
        if not has_digest(identity):
            return      # (no digest recorded: an older version's run.json)
        at = [path for i, path in candidates if i == iteration]
        if not at or identity_in(at[0], own):
            return
        # (only where the recorded name leads to it: a state it resumed from in another folder says nothing)
        if os.path.realpath(at[0]) not in recorded_paths(info, recorded, self.run_dir):
            return
        try:        # (a truncated state there is skipped as any other, not taken for another run's)
            check_snapshot(at[0], self.net, self.solver_file.net_param, self.solver_file.type)
        except SnapshotError:
            return
        raise UsageError('auto: %s is not the state the run in %s reached at iteration %d (its run.json '
                         'records another file): the prefix %s holds another run\'s snapshots, or this one '
                         'changed since; give the state to resume from with --resume, or start a new run elsewhere'
                         % (at[0], self.run_dir, iteration, prefix), 'resume')

    def _newer_states(self, state, start):
        """The identities of the states newer than iteration ``start`` that
        this prefix and the prefix of ``state`` (the one resumed from; None:
        a fresh start, []) hold now: the line a run resumed from an earlier
        state leaves (run.json's left_snapshots), in either prefix."""
        if state is None:
            return []
        prefixes = {self.solver_file.snapshot_prefix}
        own = re.fullmatch(r'(.+)_iter_\d+\.solverstate(\.h5)?', state)
        if own:
            prefixes.add(own.group(1))
        return [i for i in (file_identity(p) for prefix in sorted(prefixes) for n, p in find_snapshots(prefix)
                            if n > start) if i is not None]

    def _reached_state_elsewhere(self, info, last, candidates):
        """(iteration, path) of the state the newest run of this run folder
        last reached when that is not a state of this prefix: one it was
        resumed from (--resume PATH) in another folder, writing none after,
        found by its recorded name and identity (it wins over this prefix's
        state of that iteration); else None. UsageError where the run's last
        snapshot went to another prefix and this one does not hold it, or
        the state it was resumed from is not there as it was: this prefix's
        states are then of a line it left, or of another weight history.
        ``info``: its run.json; ``last``: _recorded_last_state."""
        recorded_prefix = info.get('snapshot_prefix')
        if last is None or not isinstance(recorded_prefix, str) or not recorded_prefix:
            return None
        path, iteration, identity = last
        if not has_digest(identity):
            return None     # (an older version's run.json: no digest)
        prefix = self.solver_file.snapshot_prefix
        same_prefix = os.path.realpath(prefix) in recorded_paths(info, recorded_prefix, self.run_dir)
        in_prefix = {os.path.realpath(p): p for _, p in candidates}
        if info.get('last_snapshot') is not None:
            if not candidates or same_prefix or any(i == iteration and identity_in(p, [identity])
                                                    for i, p in candidates):
                return None     # (none here: refused as lost; its prefix, or its snapshot folder renamed)
            raise UsageError('auto: the run in %s last wrote %s (its run.json), with prefix %s, and %s does not '
                             'hold it: resume with --set snapshot_prefix=%s, or give the state with --resume'
                             % (self.run_dir, path, recorded_prefix, prefix, recorded_prefix), 'resume')
        own_name = re.fullmatch(re.escape(os.path.normpath(recorded_prefix)) + r'_iter_\d+\.solverstate(\.h5)?',
                                os.path.normpath(path))
        if own_name and same_prefix:
            return None     # (a state of this prefix: where it is now decides)
        places = recorded_paths(info, path, self.run_dir)
        given = os.path.realpath(path)
        for place in ([given] if given in places else []) + sorted(places - {given}):
            if os.path.isfile(place) and identity_in(place, [identity]):
                if place in in_prefix:
                    return None     # (this prefix's own, under another name)
                return iteration, (path if place == given else place)
        raise UsageError('auto: the run in %s was last resumed from %s (its run.json), which is not there any '
                         'more as it was, and the states of prefix %s are not its line: give the state to resume '
                         'from with --resume, or run without --resume to start this run folder over'
                         % (self.run_dir, path, prefix), 'resume')

    def _left_snapshots(self, info):
        """(the states newer than the one the newest run of this run folder
        resumed from, as the prefix held them then: the line it left, its
        own states as it recorded them). A run resumed from an earlier
        state (--resume PATH) goes on from there; --resume auto must not go
        back to the newer states it left. ``info``: its run.json."""
        if not isinstance(info.get('left_snapshots'), list):
            return [], []
        return info['left_snapshots'], [info.get('last_snapshot_id'), info.get('resumed_from_id')]

    @staticmethod
    def _last_unrecorded_iteration(info, last):
        """(the iteration of the last state the run in this run folder
        recorded, or of its start; the newest iteration at which it can have
        written a state it did not record: the snapshot after that one by
        its newest session's schedule, run.json's snapshot and max_iter, as
        a SIGKILL between a state and run.json loses one), or None where
        run.json does not say (an older version's). A newer state that the
        run never recorded was put there by hand. ``last``:
        _recorded_last_state."""
        start = last[1] if last is not None else info.get('start_iteration')
        interval, max_iter = info.get('snapshot'), info.get('max_iter')
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, interval, max_iter)):
            return None
        following = (start // interval + 1) * interval if interval > 0 else max_iter
        return start, max(start, min(following, max_iter))

    @staticmethod
    def _recorded_last_state(info):
        """(path as recorded, iteration, identity) of the last state the run
        in this run folder reached, by its newest record (run.json's own
        fields): the last it wrote, else the one it resumed from; None for a
        run that started over and wrote none. (An older record's states may
        since have been written over by a run resumed from an earlier one.)
        ``info``: its run.json."""
        for name, identity in (('last_snapshot', 'last_snapshot_id'), ('resumed_from', 'resumed_from_id')):
            path = info.get(name)
            found = re.search(r'_iter_(\d+)\.solverstate(\.h5)?$', path) if isinstance(path, str) else None
            if found:
                return path, int(found.group(1)), info.get(identity)
        return None

    def _check_same_ranks(self, state):
        """UsageError when the state was written by another number of ranks
        (the file beside it, snapshots.ranks_file): each iteration's batch
        would change."""
        from caffe_mlic.engine.snapshots import ranks_file, state_ranks
        before = state_ranks(state)
        if before != self.group.size:
            raise UsageError('%s was written by a run of %d rank%s (%s); resuming it with %d would change '
                             'the batch of every iteration (batch_size is per rank): run %s' % (
                                 state, before, '' if before == 1 else 's',
                                 ranks_file(state) if before > 1 else 'no %s beside it' % os.path.basename(
                                     ranks_file(state)),
                                 self.group.size,
                                 'it without mpirun' if before == 1 else 'it under mpirun -np %d' % before),
                             'resume')

    @staticmethod
    def _prior_snapshots(info):
        """(the states of other runs the prefix held when the run in this run
        folder began, the states this run recorded writing or resuming),
        each a file_identity; (None, []) where its run.json does not record
        them (an older version's: _chain_began decides). A state this run
        wrote may equal a prior one bit for bit (a deterministic run again):
        it is this run's. ``info``: its run.json."""
        records = run_records(info)
        found = [r['prior_snapshots'] for r in records if isinstance(r.get('prior_snapshots'), list)]
        if not found:
            return None, []
        own = [r.get(key) for r in records for key in ('last_snapshot_id', 'resumed_from_id')]
        return [i for listed in found for i in listed], own

    @staticmethod
    def _chain_began(info):
        """When the run this run folder holds began (its first start, through
        its resumes; seconds since the epoch), or None without a run.json
        (``info``: it, or {})."""
        import datetime
        records = run_records(info)
        if not records:
            return None
        starts = []
        for record in records:
            try:
                starts.append(datetime.datetime.strptime(record['start_time'], '%Y-%m-%dT%H:%M:%S%z').timestamp())
            except (KeyError, TypeError, ValueError):
                pass
        return min(starts) if starts else None

    def _restore(self, state_path):
        """solver.restore, with the learned_net made absolute when Caffe
        would not read the caffemodel beside the state by its name
        (learned_net_path: a renamed folder, another current directory)."""
        from caffe.proto import caffe_pb2
        if state_path.endswith('.h5'):
            self._restore_hdf5(state_path)
            return
        state = parse_message(caffe_pb2.SolverState(), state_path)
        model = learned_net_path(state.learned_net, state_path)
        if model == state.learned_net:
            self.solver.restore(state_path)
            return
        state.learned_net = os.path.abspath(model)
        with prototxt.temporary_file('', suffix='.solverstate') as tmp:
            with open(tmp, 'wb') as f:
                f.write(state.SerializeToString())
            self.solver.restore(tmp)

    def _restore_hdf5(self, state_path):
        """_restore of an HDF5 state: a copy naming the caffemodel beside it
        when its learned_net does not lead Caffe there (learned_net_path)."""
        import h5py
        learned_net = read_state(state_path).learned_net
        model = learned_net_path(learned_net, state_path)
        if model == learned_net:
            self.solver.restore(state_path)
            return
        # (a file on disk: Caffe tells an HDF5 state by its name's ".h5")
        with prototxt.temporary_file('', suffix='.solverstate.h5', directory=tempfile.gettempdir()) as tmp:
            shutil.copyfile(state_path, tmp)
            with h5py.File(tmp, 'r+') as f:
                write_hdf5_learned_net(f, os.path.abspath(model))
            self.solver.restore(tmp)

    # ------------------------------------------------------------ testing

    def _due_test(self, iteration):
        interval = self.solver_file.param.test_interval
        return (self.test is not None and interval > 0 and iteration % interval == 0
                and (iteration > 0 or self.solver_file.param.test_initialization))

    def run_test(self):
        """The test record at the current iteration, or None when a signal
        cut the pass short."""
        data, labels, score = self.test
        count, batch = len(self.test_data.datalist), self.test_data.params.batch_size
        net = self.test_net
        net.share_with(self.net)
        self.test_data.seek(0)
        sums = np.zeros(len(self.test_tops))
        evaluator = for_data_layer(self.test[0].python_param.layer, count,
                                   net.blobs[score].data.shape[1]) if score is not None else None
        for _ in range(-(-count // batch)):
            if self.stop_signal is not None:
                return None
            net.forward()
            sums += [float(net.blobs[name].data.flat[0]) for name in self.test_tops]
            if evaluator is not None:
                evaluator.process(net.blobs[score].data, net.blobs[labels].data)
        record = dict(phase='test', iteration=self.solver.iter, elapsed=self._elapsed())
        record.update(('test_' + name, v / -(-count // batch)) for name, v in zip(self.test_tops, sums))
        if evaluator is not None:
            record['test_' + evaluator.key] = evaluator.evaluate()[evaluator.key]
        return record

    # ------------------------------------------------------------ the loop

    def _elapsed(self):
        return self.elapsed_before + time.monotonic() - self.started

    def _resume_command(self, state):
        command = [state if a == '{state}' else a for a in self.resume_command]
        # a run folder or snapshot folder followed to its new place: the command names that one
        if self.run_dir != self.given_run_dir:
            moved = self.run_dir if os.path.isabs(self.given_run_dir) else os.path.relpath(self.run_dir)
            command = _with_option(command, '--run-dir', moved)
        prefix = self.solver_file.snapshot_prefix
        if prefix != self.given_prefix and self.solver_file.param.snapshot_prefix:
            command = _with_option(command, '--set', 'snapshot_prefix=' + prefix, 'snapshot_prefix=')
        if self.group.size > 1:
            command = ['mpirun', '-np', str(self.group.size)] + command
        return shell_join(command)

    def _follow_run_dir(self):
        """The run folder where it is now. One renamed or moved while the run
        trains is followed (its lock file, held open, moves with it), said
        once: its logs are open files that went with it, and run.json,
        curves.png and the claim on the snapshot prefix follow. RunError when
        it was removed."""
        from caffe_mlic.processes import GONE, moved_path
        lock = getattr(self, 'run_lock', None)
        where = moved_path(lock, os.path.join(self.run_dir, LOCK_FILE)) if lock is not None else None
        if where is None:
            return self.run_dir
        if where is GONE:
            if os.path.isdir(self.run_dir):     # (its lock file removed, the folder still there)
                return self.run_dir
            solver = getattr(self, 'solver', None)
            raise RunError('the run folder %s was removed while this run trained%s'
                           % (self.run_dir, ' (at iteration %d)' % solver.iter if solver is not None else ''))
        moved = os.path.dirname(where)
        if os.path.islink(self.run_dir.rstrip(os.sep) or os.sep):     # (re-pointed, nothing moved)
            self.note('the run folder %s now leads to another folder: this run goes on in %s, where it began'
                      % (self.run_dir, moved))
        else:
            self.note('the run folder %s was moved to %s while this run trained: it goes on there'
                      % (self.run_dir, moved))
        move_claim(self._snapshot_io_prefix(), self.run_dir, moved)
        self.run_dir = self.info['run_dir'] = moved
        return moved

    def _run_dir_io(self):
        """The run folder as files are written into it: by its descriptor
        (wherever it is), else by its name."""
        fd = getattr(self, 'run_dir_fd', None)
        return '/proc/self/fd/%d' % fd if fd is not None else self.run_dir

    def _draw_curves(self):
        """curves.png in the run folder, wherever it is now; why it could not
        be drawn (a full disk, matplotlib's settings: plotting.failure_text,
        naming the file by the run folder), or None. A failure ends nothing:
        the curves are a view of log.jsonl."""
        self._follow_run_dir()
        io_dir = self._run_dir_io()
        self.curves_drawn = time.monotonic()
        try:
            plotting.draw_curves(self.log.records, os.path.join(io_dir, 'curves.png'),
                                 title=self.solver_file.stem, replace_special=True)
        except (MlicError, OSError) as e:      # (plotting.chart turns matplotlib's own errors into a RunError)
            with contextlib.suppress(OSError):
                self._follow_run_dir()      # (named where the folder is now: it may have moved while it drew)
            if self.stop_signal is not None:    # (its drawing cut short by the stop: processes.STOP_GRACE)
                return '%s not drawn: stopped by %s while it was drawn' % (
                    os.path.join(self.run_dir, 'curves.png'), SIGNAL_NAMES[self.stop_signal])
            return plotting.failure_text(e, os.path.join(self.run_dir, 'curves.png')).replace(io_dir, self.run_dir)
        return None

    def _draw_curves_mid_run(self, bar):
        """curves.png after a test; a failure said once (the run goes on, and
        draws them again at its end)."""
        why = self._draw_curves()
        if why is not None and self.stop_signal is None and not getattr(self, 'curves_failure_said', False):
            self.curves_failure_said = True
            self._say(bar, 'curves.png not drawn (%s); the run goes on' % why)

    def _write_run_json(self, **changes):
        if not self.leader:
            return
        # (given first: a move found below renames what they name, run_dir and the prefix read at one
        # moment, again after a rename between them)
        self.info.update(changes)
        for _ in range(10):
            before = self._follow_run_dir()
            self._follow_snapshots()
            if self._follow_run_dir() == before:
                break
        logs.write_run_json(self._run_dir_io(), self.info)
        self.run_json_written = True

    def _snapshot_io_prefix(self):
        """The snapshot prefix as files are written: through the snapshot
        folder's descriptor (wherever it is), else by its name."""
        fd = getattr(self, 'snapshot_folder_fd', None)
        prefix = self.solver_file.snapshot_prefix
        return os.path.join('/proc/self/fd/%d' % fd, os.path.basename(prefix)) if fd is not None else prefix

    def _follow_snapshots(self, strict=False):
        """The snapshot prefix where its folder is now (follow_snapshot_folder),
        said once per move, with the claim beside the snapshots and run.json's
        prefix made to agree (ownership is judged by both). A removed folder
        is a RunError when ``strict`` (before a snapshot), else passed over."""
        if not self.leader or getattr(self, 'snapshot_folder_fd', None) is None:
            return
        try:
            followed = follow_snapshot_folder(self.solver_file, self.snapshot_folder_fd)
        except RunError:
            if strict:
                raise
            return
        if followed is None:
            return
        self.note(followed)
        with contextlib.suppress(OSError):     # (the claim names the run folder relative to the snapshots)
            write_claim(self._snapshot_io_prefix(), self._follow_run_dir())
        self.info['snapshot_prefix'] = self.solver_file.snapshot_prefix
        if getattr(self, 'last_snapshot', None) is not None and 'last_snapshot' in self.info:
            self.info['last_snapshot'] = self.solver_file.snapshot_paths(self.last_snapshot)[1]

    def _snapshot(self):
        # Never a snapshot of diverged weights (--resume auto would pick it):
        # the last one taken stays the last finite one.
        if not self.leader:         # (rank 0 snapshots the weights all ranks hold)
            self.last_snapshot = self.solver.iter
            return
        bad = net_non_finite_layers(self.net)
        if bad:
            raise RunError('the weights are NaN or infinite at iteration %d (layers %s): training '
                           'diverged; lower base_lr%s' % (self.solver.iter, name_list(bad), self._resume_hint()))
        held = self.snapshot_folder_fd is not None
        try:
            self._follow_snapshots(strict=True)
            _, identity, model_identity = take_snapshot(
                self.solver, self.solver_file, self.snapshot_needed, ranks=self.group.size,
                run_dir=self._follow_run_dir(), io_prefix=self._snapshot_io_prefix() if held else None)
        except RunError as e:
            raise RunError('%s%s' % (e, self._resume_hint())) from None
        self.last_snapshot = self.solver.iter
        # run.json names it at once (a run killed later is known by it: wrote_snapshots), where it is now.
        # A run that cannot record its snapshots stops: --resume auto takes at most one state its run.json
        # does not record (the one a SIGKILL before this write leaves), never a line of them.
        try:
            self._follow_snapshots()
            # (each state with its caffemodel: one replaced since is never resumed with this history)
            pairs = self.info.get('snapshot_pairs', []) + [[identity, model_identity]]
            self._write_run_json(last_snapshot=self.solver_file.snapshot_paths(self.solver.iter)[1],
                                 last_snapshot_id=identity, last_snapshot_model_id=model_identity,
                                 snapshot_pairs=pairs)
        except OSError as e:
            raise RunError('cannot record the snapshot of iteration %d in %s: %s%s' % (
                self.solver.iter, os.path.join(self._follow_run_dir(), logs.RUN_JSON), e.strerror or e,
                self._resume_hint())) from None

    def _say(self, bar, line):
        """A line on stdout; a closed stdout (the reader went away) stops the
        run like SIGTERM, and nothing more is written there."""
        try:
            bar.write(line, file=sys.stdout)
            sys.stdout.flush()
        except (BrokenPipeError, ValueError, OSError):
            sys.stdout = open(os.devnull, 'w')
            self._signal(signal.SIGPIPE)

    def _test_and_log(self, bar):
        record = self.run_test()
        if record is None:
            return
        self.log.append(record)
        self.tested.add(record['iteration'])
        key = 'test_' + self.evaluator.key
        parts = ['%s %.4g' % (k[5:], v) for k, v in record.items()
                 if k.startswith('test_') and k != key and v is not None]
        if record.get(key) is not None:
            parts.insert(0, '%s %.2f %%' % (self.evaluator.key, record[key]))
            self.last_metric = record[key]
        self._say(bar, 'iteration %d: test %s' % (record['iteration'], ', '.join(parts) or 'done'))
        # (drawing takes most of a second: after a test at most every CURVES_EVERY seconds, and at the end)
        if time.monotonic() - getattr(self, 'curves_drawn', self.started) >= CURVES_EVERY:
            self._draw_curves_mid_run(bar)

    def _refuse_run_files_in_the_way(self, run_dir):
        """The run folder's files that cannot be written as the run's: of
        another kind, or one of its inputs; a file matplotlib would hang on
        while it draws curves.png."""
        _refuse_odd_run_files(run_dir)
        problem = plotting.matplotlib_problem()
        if problem is not None:
            raise InputError(problem + ' (curves.png is drawn with it)')
        sf = self.solver_file
        inputs = [(sf.path, None if sf.overrides else 'solver.prototxt'), (sf.net_path, 'net.prototxt')]
        for layer in data_layers(sf.net_param, 'TRAIN') + data_layers(sf.net_param, 'TEST'):
            with contextlib.suppress(InputError):       # (a param_str that is not JSON: said as the net is built)
                params = prototxt.python_params(layer)
                if isinstance(params, dict) and isinstance(params.get('source'), str):
                    inputs.append((params['source'], None))
        inputs += [(w, None) for w in self.weights]
        if self.resume not in (None, 'auto'):
            inputs.append((self.resume, None))
        inputs += [(p, None) for p in glob.glob(glob.escape(sf.snapshot_prefix) + '_iter_*')]
        _refuse_run_files_over_inputs(run_dir, inputs)

    def _start(self):
        """Build the nets, load the weights or the state, open the logs and
        run.json; returns the state resumed from (None: a fresh start)."""
        sf, run_dir = self.solver_file, self.run_dir
        many = self.group.size > 1
        self._agreed(lambda: self._refuse_run_files_in_the_way(run_dir) if self.leader else None)
        # With several ranks every step below is taken by all of them in this
        # order; a failure on any rank stops all of them together (_agreed).
        self._agreed(self._build)
        if many:
            self._agreed(lambda: distributed.check_same_inputs(self.group, sf, self.net))

        def choose():       # (rank 0 writes the snapshots, so it chooses)
            if not self.leader:
                return None
            check_snapshot_size(sf, self.net)
            self.snapshot_needed = snapshot_bytes(sf, self.net)
            state = self._choose_state()
            if state is not None:
                self._check_same_ranks(state)
                self.final_test_missing = self._final_test_missing(state)
            return state
        state = self._agreed(choose)
        if many:
            state, self.state_iteration, self.final_test_missing = self.group.bcast(
                (state, self.state_iteration, getattr(self, 'final_test_missing', False)))
            stops = [s for s in self.group.allgather(getattr(self, 'received_signal', None)) if s is not None]
            if stops and self.stop_signal is None:
                self.stop_signal = stops[0]
        try:
            if state is not None and self.stop_signal is None:
                self._check_not_finished(state)
            if self.stop_signal is not None:
                raise self._interrupted_in_setup(state)
        except MlicError as e:
            raise self._everywhere(e)

        def load():
            if state is not None:
                self._restore(state)        # (every rank: the solver history too)
            elif self.leader:
                self._copy_weights(self.weights)
        self._agreed(load)
        if state is not None:
            self.note('resuming from %s at iteration %d' % (state, self.solver.iter))
        if many:
            self.sync = distributed.ParamSync(self.net, sf.net_param, self.group)
            self.sync.broadcast_weights()
            self.solver.add_callback(lambda: None, self.sync.average_gradients)
            first = self.net.blobs[next(iter(self.net.blobs))].shape
            batch = first[0] if len(first) else 1
            self.note('%d ranks on %s: %d x %d%s images an iteration, %.1f MB of gradients averaged each' % (
                self.group.size, ', '.join(sorted(set(self.group.hosts))), self.group.size, batch,
                ' x iter_size %d' % sf.param.iter_size if sf.param.iter_size > 1 else '',
                self.sync.gradient_bytes / 1e6))
        start = self.solver.iter
        if start:
            for layer in seekable_layers(self.net):
                layer.seek(start * sf.param.iter_size)
        self.last_snapshot = start if state is not None else None
        if not self.leader:
            self.log, self.tested, self.info = _NoLog(), set(), {}
            self.recent_losses = deque(maxlen=max(1, sf.param.average_loss))
            return state

        run_dir = self._follow_run_dir()       # (renamed as it was made: the logs go where it is)
        if sf.overrides:   # the solver as run: the file with the --set fields
            prototxt.write(os.path.join(run_dir, 'solver.prototxt'), sf.param,
                           header='# %s with %s\n' % (sf.path, ' '.join('--set ' + o for o in sf.overrides)))
        elif not same_file(sf.path, os.path.join(run_dir, 'solver.prototxt')):
            _copy_file(sf.path, os.path.join(run_dir, 'solver.prototxt'))
        if sf.net_path is not None and not same_file(sf.net_path, os.path.join(run_dir, 'net.prototxt')):
            _copy_file(sf.net_path, os.path.join(run_dir, 'net.prototxt'))
        columns = ['train_' + t for t in self.train_tops] + ['test_' + t for t in self.test_tops]
        if self.test is not None and self.test[2] is not None:
            columns.append('test_' + self.evaluator.key)
        self.log = logs.TrainLog(run_dir, columns, resume_at=start if state is not None else None)
        self.tested = {r['iteration'] for r in self.log.records if r['phase'] == 'test'}
        recent = [r['loss'] for r in self.log.records
                  if r['phase'] == 'train' and r.get('loss') is not None]
        self.recent_losses = deque(recent, maxlen=max(1, sf.param.average_loss))

        previous = logs.read_run_json(run_dir) if state is not None else None
        previous = previous if isinstance(previous, dict) else None     # (a hand-edited one of another kind)
        train_data = data_layers(sf.net_param, 'TRAIN')
        self.info = dict(
            command=shlex.join(self.command), argv=list(sys.argv), solver=os.path.abspath(sf.path),
            net=os.path.abspath(sf.net_path) if sf.net_path else None,
            run_dir=os.path.abspath(run_dir), cwd=os.getcwd(), versions=logs.versions(), seed=self.seed,
            data_seed=prototxt.python_params(train_data[0]).get('seed', 0) if train_data else None,
            weights=[os.path.abspath(w) for w in self.weights] if state is None else [],
            resumed_from=state, resumed_from_id=file_identity(state) if state is not None else None,
            resumed_from_model_id=(file_identity(self.resumed_model) if state is not None
                                   and getattr(self, 'resumed_model', None) else None),
            left_snapshots=self._newer_states(state, start),
            snapshot_prefix=sf.snapshot_prefix, max_iter=sf.param.max_iter, snapshot=sf.param.snapshot,
            test=dict(score_blob=self.test[2], label_blob=self.test[1],
                      images=len(self.test_data.datalist)) if self.test else None,
            start_time=logs.now(), end_time=None, start_iteration=start, final_iteration=start,
            status='running', previous=[],
            ranks=self.group.size, hosts=sorted(set(getattr(self.group, 'hosts', [self.group.host]))))
        if previous:
            earlier = previous.pop('previous', [])
            self.info['previous'] = (earlier if isinstance(earlier, list) else []) + [previous]
        else:       # a run started (over) here: the prefix's states of other runs, never resumed (_choose_state)
            self.info['prior_snapshots'] = [i for i in (file_identity(p) for _, p in
                                                        find_snapshots(sf.snapshot_prefix)) if i is not None]
        self._write_run_json()
        return state

    def _agreed(self, step):
        return distributed.agreed(self.group, step)

    def _everywhere(self, error):
        """``error``, raised on every rank at once: the leader reports it, the
        others stop quietly with its exit code."""
        return distributed.everywhere(self.group, error)

    def _state_iteration(self, state):
        if self.state_iteration is None:        # (check_snapshot gives it for both formats)
            import h5py
            with h5py.File(state, 'r') as f:
                return int(np.asarray(f['iter']))
        return self.state_iteration

    def _check_not_finished(self, state):
        """RunFinished when the state is at max_iter already (--resume auto
        on a finished run); UsageError when it is past it."""
        iteration, max_iter = self._state_iteration(state), self.solver_file.param.max_iter
        if iteration == max_iter and getattr(self, 'final_test_missing', False):
            self.note('%s is at max_iter %d, and the run stopped before its final test: testing it' % (
                state, max_iter))
            return
        if iteration > max_iter or (iteration == max_iter and self.resume != 'auto'):
            # (a state run.json does not record as the run's last, after a SIGKILL before the final test:
            # --resume auto knows it by its rules, and runs that test)
            untested = iteration == max_iter and self.test is not None and not self._final_test_logged()
            raise UsageError('%s is at iteration %d, %s max_iter %d of %s: nothing to train (raise '
                             'max_iter, e.g. --set max_iter=N%s)' % (
                                 state, iteration, 'past' if iteration > max_iter else 'at',
                                 max_iter, self.solver_file.path,
                                 '; or, for the final test the run folder\'s log lacks, --resume auto'
                                 if untested else ''), 'resume')
        if iteration == max_iter:
            raise RunFinished(state)

    def _final_test_logged(self):
        """Whether the run folder's log has the test at max_iter (or the run
        has no test net)."""
        if self.test is None:
            return True
        max_iter = self.solver_file.param.max_iter
        with contextlib.suppress(InputError):
            return any(r['phase'] == 'test' and r['iteration'] == max_iter
                       for r in logs.read_records(os.path.join(self.run_dir, logs.JSONL)))
        return False

    def _final_test_missing(self, state):
        """Whether ``state`` is at max_iter, the run in this run folder's
        (--resume auto chose it by its rules; a state given is the last one
        its run.json records, by identity), and its log has no test there: a
        stop signal cut its final test short, or a SIGKILL came before it.
        Resuming it runs that test and nothing else."""
        max_iter = self.solver_file.param.max_iter
        if self.test is None or self._state_iteration(state) != max_iter:
            return False
        if self.resume != 'auto':
            info = logs.read_run_json(self.run_dir)
            if (not isinstance(info, dict) or not has_digest(info.get('last_snapshot_id'))
                    or not identity_in(state, [info['last_snapshot_id']])):
                return False
        return not self._final_test_logged()

    def _interrupted_in_setup(self, state):
        # (the state's iteration: the solver's is 0 until the state is restored)
        where = 'iteration %d (%s)' % (self._state_iteration(state), state) if state else 'iteration 0'
        return TrainingInterrupted('stopped by %s while the nets were built, before training from %s; '
                                   'nothing new to snapshot: run the same command again'
                                   % (SIGNAL_NAMES[self.stop_signal], where), self.stop_signal)

    def _train_iteration(self):
        """One solver step, logged; the record."""
        iteration = self.solver.iter
        rate = learning_rate(self.solver_file.param, iteration)
        if self.seed is not None:
            # (several ranks: each its own dropout, as one process's batch has)
            self._reseed(iteration_seed(self.seed, iteration, self.group.rank if self.group.size > 1 else None))
        try:
            self.solver.step(1)
        except MlicError as e:
            if not str(e).startswith('DivergenceGuard:'):
                raise
            raise RunError('at iteration %d: %s%s' % (iteration, e, self._resume_hint())) from None
        values = [float(self.net.blobs[name].data.flat[0]) for name in self.train_tops]
        if self.group.size > 1:
            values = self._agree_iteration(values)
        total = float(np.dot(self.loss_weights, values))
        self.recent_losses.append(total)
        record = dict(phase='train', iteration=iteration, elapsed=self._elapsed(), lr=rate,
                      loss=total, smoothed_loss=sum(self.recent_losses) / len(self.recent_losses))
        record.update(('train_' + name, v) for name, v in zip(self.train_tops, values))
        self.log.append(record)
        if not math.isfinite(total):    # (before the snapshot: none of diverged weights)
            raise self._everywhere(RunError('the loss is %s at iteration %d: training diverged; lower '
                                            'base_lr%s' % (total, iteration, self._resume_hint())))
        every = self.solver_file.param.snapshot
        if every and self.solver.iter % every == 0:
            self._snapshot()          # where Caffe's Step would take it, whole or not at all
        return record

    def _agree_iteration(self, values):
        """After a step with several ranks: the ranks' mean of the outputs
        (the loss of the whole batch), a stop signal any rank received acted
        on by all, BatchNorm statistics averaged, and every CHECK_EVERY
        iterations (and the first) a check that the weights are equal."""
        self.sync.average_statistics()
        everyone = self.group.allgather((values, getattr(self, 'received_signal', None)))
        stops = [signum for _, signum in everyone if signum is not None]
        if stops and self.stop_signal is None:
            self.stop_signal = stops[0]
        iteration = self.solver.iter
        if iteration % distributed.CHECK_EVERY == 0 or not getattr(self, 'checked_equal', False):
            self.checked_equal = True
            try:
                self.sync.check_equal(iteration)
            except MlicError as e:
                raise self._everywhere(e)
        return list(np.mean([v for v, _ in everyone], axis=0)) if values else values

    def _ended_by_the_stop_signal(self, error):
        """Whether ``error`` (a data worker that died) came from the stop
        signal this process received: the whole process group signalled (a
        Ctrl-C, an ssh drop, `kill -- -PGID`) ends the workers too, and one
        step waiting on their batch fails before the signal is acted on."""
        return (self.stop_signal is not None and self.group.size == 1 and isinstance(error, MlicError)
                and not isinstance(error, (TrainingInterrupted, RunFinished)))

    def _stopped_mid_step(self, error):
        """The TrainingInterrupted for a step cut short by the stop signal
        (``error``: how it failed): no snapshot of a half-done step (its
        batch is lost); resumed from the last snapshot."""
        if self.last_snapshot is None:
            where = 'no snapshot of this run before it: run the same command again'
        else:
            state = self.solver_file.snapshot_paths(self.last_snapshot)[1]
            where = 'the last snapshot is %s; resume with: %s' % (state, self._resume_command(state))
        return TrainingInterrupted('stopped by %s at iteration %d, in a step it cut short (%s); %s'
                                   % (SIGNAL_NAMES[self.stop_signal], self.solver.iter,
                                      'it ended a data worker too' if 'data worker' in str(error)
                                      and 'was killed by' in str(error) else 'then: %s' % error, where),
                                   self.stop_signal)

    def _interrupted(self):
        """Snapshot at the iteration reached; the TrainingInterrupted to raise."""
        if self.last_snapshot != self.solver.iter:
            self._snapshot()
        state = self.solver_file.snapshot_paths(self.solver.iter)[1]
        name = SIGNAL_NAMES[self.stop_signal]
        return self._everywhere(TrainingInterrupted('stopped by %s at iteration %d, snapshot %s; resume with: %s'
                                   % (name, self.solver.iter, state, self._resume_command(state)),
                                   self.stop_signal))

    def run(self):
        """Train to max_iter; returns run.json's content. Raises
        TrainingInterrupted after a snapshot on a stop signal."""
        processes.forget_recorded_stop()
        try:
            return self._run_to_the_end()
        finally:        # (a stop of this run says nothing of what the process does next: tests, `run`)
            processes.forget_recorded_stop()

    def _run_to_the_end(self):
        def stop(signum, frame):
            self._signal(signum)

        if not self.leader:
            return self._follow(stop)
        made = _missing_dirs(self.run_dir)      # the run folder and its parents made here
        created = bool(made)
        os.makedirs(self.run_dir, exist_ok=True)
        self.run_json_written = False

        def remove_made():
            shutil.rmtree(self.run_dir, ignore_errors=True)
            # its parents, and the snapshot folder made for a run that never began, deepest first, while empty
            for folder in made[1:] + list(getattr(self, 'snapshot_dirs_made', [])):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
        try:
            lock = self.run_lock = lock_run_dir(self.run_dir)
            # run.json and curves.png are written into the folder by its descriptor: a rename at any
            # moment cannot split the run between two folders (_follow_run_dir names where it is)
            self.run_dir_fd = os.open(self.run_dir, os.O_PATH | os.O_DIRECTORY) \
                if os.path.isdir('/proc/self/fd') else None
        except BaseException:
            if created:
                remove_made()
            raise
        def caffe_stopped():     # (no exception: the process ends at once)
            self._close_layers()
            if created and not self.run_json_written:
                remove_made()
            elif self.run_json_written:
                if getattr(self, 'log', None) is not None:
                    self.log.close()
                solver = getattr(self, 'solver', None)
                self._write_run_json(end_time=logs.now(), status='failed', error='Caffe stopped on a check',
                                     **({'final_iteration': solver.iter} if solver is not None else {}))
            if getattr(self, 'prefix_lock', None) is not None:
                unlock_run_dir(self.prefix_lock)
            unlock_run_dir(lock)
        try:
            with handling({s: stop for s in STOP_SIGNALS}), caffe_check_cleanup(caffe_stopped):
                if self.early_signals:
                    self._signal(self.early_signals[0])
                return self._run()
        except RunFinished as done:
            self.note('%s is at max_iter %d already: nothing to train'
                      % (done.state, self.solver_file.param.max_iter))
            info = logs.read_run_json(self.run_dir)
            info = info if isinstance(info, dict) else {}
            status = info.get('status')
            if self.leader and (status == 'running' or isinstance(status, str) and status.startswith('interrupted')
                                and self._final_test_logged()):
                # killed or stopped after its last snapshot and final test (we hold the run folder's lock:
                # no run writes it now): the run is whole
                with contextlib.suppress(OSError):
                    logs.write_run_json(self._run_dir_io(), dict(
                        info, status='finished', final_iteration=self.solver_file.param.max_iter,
                        last_snapshot=done.state, last_snapshot_id=file_identity(done.state),
                        last_snapshot_model_id=(info.get('last_snapshot_model_id') if file_identity(done.state)
                                                == info.get('last_snapshot_id') else None)))
            curves = os.path.join(self.run_dir, 'curves.png')
            if self.leader and not os.path.lexists(curves):     # (killed before it drew them)
                try:
                    plotting.draw_curves(logs.read_records(os.path.join(self.run_dir, logs.JSONL)), curves,
                                         title=self.solver_file.stem, replace_special=True)
                except Exception as e:      # noqa: BLE001 (a view of the log: the run is whole without it)
                    self.note('curves.png not drawn (%s)' % plotting.failure_text(e, curves))
            return dict(info, final_iteration=self.solver_file.param.max_iter, last_snapshot=done.state,
                        run_dir=os.path.abspath(self.run_dir))
        except BaseException:
            if created and not self.run_json_written:
                # failed or stopped before the run began (bad weights, a state
                # that cannot be resumed, a net Caffe cannot build): nothing
                # was trained, so no run folder is left, as if never started
                remove_made()
            raise
        finally:
            if getattr(self, 'prefix_lock', None) is not None:
                unlock_run_dir(self.prefix_lock)
            for name in ('snapshot_folder_fd', 'run_dir_fd'):
                if getattr(self, name, None) is not None:
                    os.close(getattr(self, name))
                    setattr(self, name, None)
            unlock_run_dir(lock)

    def _signal(self, signum):
        """A stop signal (or a closed stdout) received. One process acts on
        it at the next iteration; with several ranks it is acted on once all
        ranks know it (_agree_iteration), so they all stop at one iteration."""
        processes.stop_recorded()       # (a chart drawn from now on in a child ends within STOP_GRACE)
        if self.group.size > 1:
            self.received_signal = getattr(self, 'received_signal', None) or signum
        elif self.stop_signal is None:
            self.stop_signal = signum

    def _follow(self, stop):
        """run() on a rank other than 0: the same steps, nothing written."""
        def caffe_stopped():
            self._close_layers()
        try:
            with handling({s: stop for s in STOP_SIGNALS}), caffe_check_cleanup(caffe_stopped):
                if self.early_signals:
                    self._signal(self.early_signals[0])
                return self._run()
        except RunFinished:
            return {}

    def _close_layers(self):
        for net in (getattr(self, 'net', None), getattr(self, 'test_net', None)):
            if net is not None:
                for layer in seekable_layers(net):
                    layer.close()

    def _run(self):
        sf = self.solver_file
        self.seed = sf.param.random_seed if sf.param.random_seed >= 0 else None
        try:
            state = self._start()
        except BaseException as e:
            self._close_layers()
            if self.group.size == 1 and self.stop_signal is not None and \
                    not isinstance(e, (TrainingInterrupted, RunFinished)):
                # e.g. a data worker killed by the same Ctrl-C while it started
                raise self._interrupted_in_setup(None) from e
            raise
        start, max_iter = self.solver.iter, sf.param.max_iter
        self.elapsed_before, self.started = self.log.elapsed, time.monotonic()
        self.last_metric = None
        bar = progress(total=max_iter, initial=min(start, max_iter), desc=sf.stem, unit='it',
                       enabled=self.leader)
        status, error, together = 'failed', None, False
        unwritten = []          # outputs the end of the run could not write (a full disk)
        try:
            if self._due_test(start) and start not in self.tested:
                self._test_and_log(bar)
            while self.solver.iter < max_iter and self.stop_signal is None:
                record = self._train_iteration()
                bar.set_postfix_str('loss %.4g, lr %.3g%s' % (
                    record['smoothed_loss'], record['lr'],
                    '' if self.last_metric is None else ', %s %.1f' % (self.evaluator.key, self.last_metric)),
                    refresh=False)
                bar.update(1)
                if self.solver.iter < max_iter and self._due_test(self.solver.iter):
                    self._test_and_log(bar)
            if self.stop_signal is not None:
                interrupted = self._interrupted()
                status = 'interrupted by %s' % SIGNAL_NAMES[self.stop_signal]
                raise interrupted
            if sf.param.snapshot_after_train and self.last_snapshot != self.solver.iter:
                self._snapshot()
            if self.test is not None and self.solver.iter not in self.tested:
                self._test_and_log(bar)
            if self.stop_signal is not None and self.test is not None and self.solver.iter not in self.tested:
                # (during the final test, which it cut short: a resume runs that test; one after it, or
                # the final test's line on a closed stdout, stops nothing: the run is whole)
                interrupted = self._interrupted()
                status = 'interrupted by %s' % SIGNAL_NAMES[self.stop_signal]
                raise interrupted
            status = 'finished'
        except BaseException as e:
            if status == 'failed' and self._ended_by_the_stop_signal(e):
                status = 'interrupted by %s' % SIGNAL_NAMES[self.stop_signal]
                raise self._stopped_mid_step(e) from None
            if status == 'failed':
                error = str(e) or type(e).__name__
            together = getattr(e, 'everywhere', False) or isinstance(e, distributed.FollowerStopped)
            if status == 'failed' and isinstance(e, OSError):   # (a full disk, a folder gone): where to go on from
                error = 'at iteration %d: %s%s' % (self.solver.iter, os_error_text(e), self._resume_hint())
                raise RunError(error) from None
            raise
        else:
            together = True
        finally:
            bar.close()
            try:
                self.log.close()
            except OSError as e:
                unwritten.append(os_error_text(e))
            if self.leader:
                why = self._draw_curves()
                if why is not None:
                    unwritten.append(why)
            if getattr(self, 'sync', None) is not None:     # (what averaging the gradients cost rank 0: `make bench`)
                self.info['reduction'] = dict(iterations=self.sync.reductions, seconds=self.sync.reduce_seconds,
                                              megabytes=self.sync.gradient_bytes / 1e6)
            with contextlib.suppress(OSError):
                self._follow_snapshots()
            last = sf.snapshot_paths(self.last_snapshot)[1] if self.last_snapshot is not None else None
            # (the identity recorded as it was written stays when the file cannot be read now)
            last_id = (file_identity(last) or self.info.get('last_snapshot_id')) if last is not None else None
            if unwritten:       # (what the run's end says too: run.json agrees with its exit status)
                self.info['unwritten'] = list(unwritten)
            try:
                self._write_run_json(end_time=logs.now(), final_iteration=self.solver.iter, status=status,
                                     error=error, resumed_from=state, last_snapshot=last, last_snapshot_id=last_id)
            except OSError as e:
                unwritten.append(os_error_text(e))
            self._close_layers()
            if together:
                # Every rank ends here at once (finished, stopped, or a failure all met): none exits
                # before rank 0 has written its snapshot and run.json, since the launcher ends the
                # whole job once one rank exits with an error.
                self.group.barrier()
        if unwritten:           # (with a failure on its way, that failure is what is said)
            raise RunError('trained to iteration %d, but %s%s' % (
                self.solver.iter, '; '.join(unwritten), self._resume_hint()))
        return self.info

    def _reseed(self, value):
        import caffe
        caffe.set_random_seed(value)

    def _resume_hint(self):
        if self.last_snapshot is None:
            return '; no snapshot of this run before it (start again)'
        with contextlib.suppress(OSError):
            self._follow_snapshots()        # (named where it is now)
        last = self.solver_file.snapshot_paths(self.last_snapshot)[1]
        if self.leader and not os.path.exists(last):        # (its folder removed with it)
            return '; its last snapshot, %s, is not there any more' % last
        return '; the last snapshot is %s' % last


def shell_join(args):
    """``args`` as one shell command on one line that a user can paste: a
    name that is not UTF-8 (bytes kept as surrogates) or holds a control
    character (a newline) is written in bash's $'...' form, its bytes as
    \\xNN, where shlex would print the surrogates (\\udcff) or break the line."""
    def plain(arg):
        try:
            arg.encode('utf-8')
        except UnicodeEncodeError:
            return False
        return not any(ord(c) < 32 or ord(c) == 127 for c in arg)

    def quote(arg):
        if plain(arg):
            return shlex.quote(arg)
        raw = arg.encode('utf-8', 'surrogateescape')
        return "$'%s'" % ''.join(chr(b) if 32 <= b < 127 and chr(b) not in "'\\" else '\\x%02x' % b for b in raw)
    return ' '.join(quote(a) for a in args)


def _with_option(command, flag, value, starts=''):
    """``command`` (a list) with the value of ``flag`` (the first whose value
    begins with ``starts``) replaced by ``value``, or the pair added."""
    for i, arg in enumerate(command[:-1]):
        if arg == flag and command[i + 1].startswith(starts):
            return command[:i + 1] + [value] + command[i + 2:]
    return command + [flag, value]


CURVES_EVERY = 30       # seconds: curves.png is redrawn after a test at most this often while training

GUARD_SUFFIX = '_divergence_guard'


def guard_max_pooling(param, net_param):
    """Give the TRAIN net of SolverParameter ``param`` (its net or
    net_param, NetParameter ``net_param`` as read) a DivergenceGuard right
    after each MAX pooling layer of both phases, unless the net has a guard
    already. Given NaN input (diverged weights, a NaN loss's update), Caffe's
    max pooling leaves a window's argmax at -1 and its backward writes before
    the start of its bottom's gradient: heap corruption, glibc's "double free
    or corruption" abort after the "training diverged" line (ScasNet). The
    guard stops the forward pass first; it has no weights (snapshots are
    unchanged) and changes no value or gradient."""
    from caffe.proto import caffe_pb2
    if not (param.HasField('net') or param.HasField('net_param')) or len(net_param.layers):
        return      # (train_net fields, V1 nets: as given)
    if any(layer.type == 'Python' and layer.python_param.layer == 'DivergenceGuard'
           for layer in net_param.layer):
        return
    names = {layer.name for layer in net_param.layer}
    guarded = caffe_pb2.NetParameter()
    guarded.CopyFrom(net_param)
    del guarded.layer[:]
    count = 0
    for layer in net_param.layer:
        guarded.layer.add().CopyFrom(layer)
        if not (layer.type == 'Pooling' and layer.pooling_param.pool == caffe_pb2.PoolingParameter.MAX
                and layer.top and not layer.exclude
                and all(rule.phase == caffe_pb2.TRAIN for rule in layer.include)):
            continue
        name = layer.name + GUARD_SUFFIX
        if name in names:
            continue
        guard = guarded.layer.add()
        guard.name, guard.type = name, 'Python'
        guard.bottom.append(layer.top[0])
        guard.propagate_down.append(False)
        guard.include.add().phase = caffe_pb2.TRAIN
        guard.python_param.module, guard.python_param.layer = 'caffe_mlic.layers', 'DivergenceGuard'
        count += 1
    if count:
        param.ClearField('net')
        param.net_param.CopyFrom(guarded)


def train(solver_path, **options):
    """Train ``solver_path`` (see Trainer for the options); returns run.json's content."""
    return Trainer(solver_path, **options).run()
