"""Data-parallel training over MPI: what `mpirun -np N caffe-mlic train` adds
to the one-process loop (trainer.py).

Semantics, as BVLC Caffe's multi-GPU training: the net's ``batch_size`` is
per rank, so one iteration learns from N x batch_size images. Every rank
builds the same TRAIN net; rank 0's weights (fillers, --weights or the
resumed state) are broadcast before the first iteration. After the backward
passes (pycaffe's on_gradients_ready callback, before the update) each
learnable parameter's gradient is summed over the ranks in one flat buffer
and divided by N; every rank then applies the same update with the same
solver history, so the weights stay equal (checked: ParamSync.check_equal).
The data layers deal each global batch of the seed's plan to the ranks
(layers/pipeline.DataShard), so the ranks' batches together are the batch
one process with N x batch_size gets.

Rank 0 (the leader) alone writes: run folder, logs, curves, snapshots, and
runs the TEST passes (the others skip them and wait at the next reduction).

The launcher is found from its environment (Open MPI, MPICH/Hydra, PMIx,
Slurm's PMI); without one, or with one rank, nothing here is used and the
run is the one-process run. mpi4py is imported only then, and only in the
training process (never in data workers).
"""
import hashlib
import os
import socket
import sys
import zlib

import numpy as np

from caffe_mlic.errors import InputError, RunError

# Variables a launcher sets in each rank's environment (rank / size).
LAUNCHER_VARS = ('OMPI_COMM_WORLD_SIZE', 'PMI_SIZE', 'PMIX_RANK', 'PMI_RANK')
LOCAL_RANK_VARS = ('OMPI_COMM_WORLD_LOCAL_RANK', 'MPI_LOCALRANKID', 'SLURM_LOCALID', 'PMI_LOCAL_RANK')
LOCAL_SIZE_VARS = ('OMPI_COMM_WORLD_LOCAL_SIZE', 'MPI_LOCALNRANKS', 'PMI_LOCAL_SIZE')
# Iterations between two checks that every rank holds the same weights.
CHECK_EVERY = 100
# Seconds the ranks wait for each other at the start (right after the
# imports): a rank that runs another command never joins.
START_TIMEOUT_ENV = 'CAFFE_MLIC_MPI_START_TIMEOUT'


def start_timeout():
    """START_TIMEOUT's seconds: 120, or CAFFE_MLIC_MPI_START_TIMEOUT (a whole number > 0)."""
    value = os.environ.get(START_TIMEOUT_ENV, '').strip()
    if not value:
        return 120
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise RunError('%s=%r: expected a whole number of seconds, 1 or more' % (START_TIMEOUT_ENV, value))
    return int(value)
HOST_BYTES = 64


def launched_by_mpi(environ=None):
    environ = os.environ if environ is None else environ
    return any(name in environ for name in LAUNCHER_VARS)


def _env_int(names, default):
    for name in names:
        value = os.environ.get(name, '')
        if value.isdigit():
            return int(value)
    return default


class Single:
    """A one-process run: the group of one (every collective is the identity)."""
    rank, size, local_rank, local_size = 0, 1, 0, 1
    leader = True

    @property
    def host(self):
        return socket.gethostname()

    def where(self, rank=None):
        return 'rank %d' % (self.rank if rank is None else rank)

    def start(self, words):
        pass

    def allgather(self, value):
        return [value]

    def bcast(self, value):
        return value

    def allreduce_sum(self, array):
        return array

    def allgather_within(self, mine, everyone, seconds):
        everyone[...] = mine
        return everyone

    def bcast_array(self, array):
        return array

    def barrier(self):
        pass


class MpiGroup(Single):
    """The ranks of an MPI job (MPI_COMM_WORLD)."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise RunError('started by an MPI launcher, but mpi4py cannot be imported (%s): '
                           'install it with `make install` (Debian\'s python3-mpi4py)' % e) from None
        self.MPI, self.comm = MPI, MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.leader = self.rank == 0
        self.local_rank = _env_int(LOCAL_RANK_VARS, 0)
        self.local_size = _env_int(LOCAL_SIZE_VARS, 1)
        self.hosts = [socket.gethostname() if r == self.rank else '?' for r in range(self.size)]   # (start())

    def start(self, words):
        """The first exchange, which gives up after start_timeout(): the
        ranks' host names, and whether they run the same command."""
        name = np.zeros(HOST_BYTES, np.uint8)
        raw = socket.gethostname().encode()[:HOST_BYTES]
        name[:len(raw)] = np.frombuffer(raw, np.uint8)
        names = self.allgather_within(name, np.empty((self.size, HOST_BYTES), np.uint8), start_timeout())
        self.hosts = [bytes(row).rstrip(b'\0').decode(errors='replace') for row in names]
        check_same_command(self, words)

    def where(self, rank=None):
        rank = self.rank if rank is None else rank
        return 'rank %d of %d (%s)' % (rank, self.size, self.hosts[rank])

    def allgather(self, value):
        return self.comm.allgather(value)

    def bcast(self, value):
        return self.comm.bcast(value, root=0)

    def allreduce_sum(self, array):
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array

    def bcast_array(self, array):
        self.comm.Bcast(array, root=0)
        return array

    def allgather_within(self, mine, everyone, seconds):
        """Allgather of a small array that gives up after ``seconds`` (RunError):
        a blocking collective would wait forever for a rank that never calls it."""
        import time
        request = self.comm.Iallgather(mine, everyone)
        deadline = time.monotonic() + seconds
        while not request.Test():
            if time.monotonic() > deadline:
                raise Alone('not every one of the %d ranks started training within %d s: each rank must run '
                               'the same `caffe-mlic train` command (a rank that runs another program, or exits, '
                               'leaves the others waiting)' % (self.size, seconds))
            time.sleep(0.01)
        return everyone

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code):
        sys.stderr.flush()
        self.comm.Abort(code)


_GROUP = None


def group():
    """This process's group: MpiGroup under an MPI launcher with several
    ranks, else Single. Made once."""
    global _GROUP
    if _GROUP is None:
        _GROUP = Single()
        if launched_by_mpi():
            mpi = MpiGroup()
            if mpi.size > 1:
                _GROUP = mpi
    return _GROUP


def local_gpu(ids, grp):
    """The GPU of this rank from --gpu's ids: the only one for one rank on a
    machine, else local rank k's (one id per rank on the machine)."""
    if grp.local_size <= 1 and len(ids) == 1:
        return ids[0]
    if len(ids) < grp.local_size:
        raise InputError('%d ranks run on %s but --gpu names %d GPU%s (%s): give one id per rank on '
                         'a machine, e.g. --gpu %s' % (
                             grp.local_size, grp.host, len(ids), '' if len(ids) == 1 else 's',
                             ','.join(map(str, ids)), ','.join(map(str, range(grp.local_size)))))
    return ids[grp.local_rank]


# ---------------------------------------------------------------- agreeing


def agree(grp, error):
    """Every rank says how its setup went (``error``: None or the exception);
    raise on every rank when one failed. The leader's RunError names the
    failed ranks and their errors (one line each, identical ones merged);
    the others raise FollowerStopped (nothing printed: the leader speaks)."""
    said = grp.allgather(None if error is None else '%s' % (error,))
    failed = [(rank, message) for rank, message in enumerate(said) if message is not None]
    if not failed:
        return
    if not grp.leader:
        raise FollowerStopped(getattr(error, 'exit_code', 1) if error is not None else 1)
    if error is not None and all(message == str(error) for _, message in failed):
        error.everywhere = True
        raise error             # the same failure everywhere: the leader's own error
    by_message = {}
    for rank, message in failed:
        by_message.setdefault(message, []).append(rank)
    lines = ['%s: %s' % (_ranks_text(grp, ranks), message) for message, ranks in by_message.items()]
    combined = RunError('setting up the training failed on %s\n  %s'
                        % (_ranks_text(grp, [r for r, _ in failed]), '\n  '.join(lines)))
    combined.everywhere = True
    raise combined


class Alone(RunError):
    """A failure that the other ranks cannot be asked about (one of them is
    missing): this rank ends the job (stop_job)."""


def agreed(grp, step):
    """step(); with several ranks, every rank then says whether its step
    failed, and all stop together when one did (agree)."""
    if grp.size == 1:
        return step()
    try:
        result = step()
    except Alone:
        raise
    except Exception as e:
        agree(grp, e)
        raise
    agree(grp, None)
    return result


def _ranks_text(grp, ranks):
    if len(ranks) == 1:
        return grp.where(ranks[0])
    return 'ranks %s of %d' % (', '.join(map(str, ranks)), grp.size)


class FollowerStopped(Exception):
    """A rank other than 0 stops because the job stops (the leader says why)."""

    def __init__(self, exit_code):
        super().__init__('stopped with the job')
        self.exit_code = exit_code


def check_same_inputs(grp, solver_file, net):
    """RunError naming the ranks whose solver, net or TRAIN datalists differ
    from rank 0's (another file of that name on another machine)."""
    digest = hashlib.sha256()
    digest.update(str(solver_file.param).encode())
    digest.update(str(solver_file.net_param).encode())
    parts = {'the solver and net': digest.hexdigest()}
    for layer in _data_layers(net):
        source = layer.params.source
        with open(source, 'rb') as f:
            parts['the datalist %s' % source] = hashlib.sha256(f.read()).hexdigest()
    everyone = grp.allgather(parts)
    problems = []
    for what, value in everyone[0].items():
        differ = [r for r, theirs in enumerate(everyone) if theirs.get(what) != value]
        if differ:
            problems.append('%s of %s differ%s from rank 0\'s' % (
                what, _ranks_text(grp, differ), 's' if len(differ) == 1 else ''))
    if problems:
        raise RunError('every rank must train the same thing: %s (copy the same files to every '
                       'machine, or put them on a shared filesystem)' % '; '.join(problems))


def check_same_command(grp, words):
    """RunError naming the ranks given other arguments than rank 0 (each
    rank must run the same command: one launcher line, not several)."""
    digest = int.from_bytes(hashlib.sha256('\0'.join(words).encode()).digest()[:8], 'little') >> 1
    digests = grp.allgather_within(np.array([digest], np.int64), np.empty(grp.size, np.int64), start_timeout())
    if (digests == digests[0]).all():
        return
    everyone = grp.allgather(list(words))
    differ = [r for r, theirs in enumerate(everyone) if theirs != everyone[0]]
    if differ:
        import shlex
        raise RunError('every rank must run the same command, but %s got `%s` where rank 0 got `%s`'
                       % (_ranks_text(grp, differ), shlex.join(everyone[differ[0]]), shlex.join(everyone[0])))


def _data_layers(net):
    return [layer for layer in net.layers if callable(getattr(layer, 'seek', None))]


# ---------------------------------------------------------------- parameters


def _lr_mults(net_param):
    """{layer name: [lr_mult of each of its param blobs]} as the net file gives them."""
    return {layer.name: [spec.lr_mult for spec in layer.param] for layer in net_param.layer}


def _batch_statistics(net_param):
    """The BatchNorm layers that update their running statistics in TRAIN
    (use_global_stats unset or false)."""
    return {layer.name for layer in net_param.layer if layer.type == 'BatchNorm'
            and not (layer.batch_norm_param.HasField('use_global_stats')
                     and layer.batch_norm_param.use_global_stats)}


class ParamSync:
    """The parameters of caffe.Net ``net`` as flat buffers: gradients
    averaged over the ranks, weights broadcast from rank 0, and a check that
    every rank holds the same weights. A blob shared by several layers (the
    same memory) is counted once; a blob with lr_mult 0 everywhere (a frozen
    teacher, frozen BatchNorm statistics) has no gradient to reduce. The
    running statistics of a BatchNorm layer that updates them from its batch
    are averaged over the ranks after each iteration (each rank saw its own
    batch), so the ranks stay equal; the batch's normalisation itself uses
    the rank's own batch, as in any data-parallel training without a
    synchronised BatchNorm."""

    def __init__(self, net, net_param, grp):
        self.grp = grp
        mults = _lr_mults(net_param)
        updating = _batch_statistics(net_param)
        self.blobs, self.learnable, self.statistics = [], [], []
        seen = {}
        for name, layer in zip(net._layer_names, net.layers):
            if name in updating:
                self.statistics.extend(b for b in layer.blobs)
            for j, blob in enumerate(layer.blobs):
                key = blob.data.ctypes.data
                given = mults.get(name, [])
                learns = (given[j] if j < len(given) else 1.0) != 0
                if key in seen:
                    if learns and not seen[key][1]:
                        self.learnable.append(seen[key][0])
                        seen[key] = (seen[key][0], True)
                    continue
                seen[key] = (blob, learns)
                self.blobs.append(blob)
                if learns:
                    self.learnable.append(blob)
        self.grad_count = sum(b.count for b in self.learnable)
        self.count = sum(b.count for b in self.blobs)
        self._grads = np.empty(self.grad_count, np.float32)
        self.reduce_seconds = 0.0
        self.reductions = 0

    @property
    def gradient_bytes(self):
        return self._grads.nbytes

    def _gather(self, arrays, out):
        offset = 0
        for a in arrays:
            out[offset:offset + a.size] = a.ravel()
            offset += a.size
        return out

    def _scatter(self, flat, arrays):
        offset = 0
        for a in arrays:
            a[...] = flat[offset:offset + a.size].reshape(a.shape)
            offset += a.size

    def average_gradients(self):
        """Each learnable blob's diff := the mean of the ranks' diffs."""
        import time
        started = time.perf_counter()
        diffs = [b.diff for b in self.learnable]
        flat = self._gather(diffs, self._grads)
        self.grp.allreduce_sum(flat)
        flat *= np.float32(1.0 / self.grp.size)
        self._scatter(flat, diffs)
        self.reduce_seconds += time.perf_counter() - started
        self.reductions += 1

    def average_statistics(self):
        """BatchNorm running statistics := their mean over the ranks."""
        if self.statistics:
            data = [b.data for b in self.statistics]
            flat = self._gather(data, np.empty(sum(b.count for b in self.statistics), np.float32))
            self.grp.allreduce_sum(flat)
            flat *= np.float32(1.0 / self.grp.size)
            self._scatter(flat, data)

    def broadcast_weights(self):
        """Every blob's data := rank 0's (all parameters, frozen ones too)."""
        data = [b.data for b in self.blobs]
        flat = self._gather(data, np.empty(self.count, np.float32))
        self.grp.bcast_array(flat)
        self._scatter(flat, data)

    def checksum(self):
        value = 0
        for b in self.blobs:
            value = zlib.crc32(np.ascontiguousarray(b.data).view(np.uint8), value)
        return value

    def check_equal(self, iteration):
        """RunError naming the ranks whose weights differ from rank 0's."""
        sums = self.grp.allgather(self.checksum())
        differ = [r for r, s in enumerate(sums) if s != sums[0]]
        if differ:
            raise RunError('at iteration %d the weights of %s differ from rank 0\'s (CRC-32 %s, rank 0 '
                           '%08x): the ranks no longer train one net' % (
                               iteration, _ranks_text(self.grp, differ),
                               ', '.join('%08x' % sums[r] for r in differ), sums[0]))


def everywhere(grp, error):
    """``error``, raised by every rank at the same point: rank 0 reports it
    (marked so the command does not stop the job over it), the others stop
    quietly with its exit code."""
    if grp.size == 1:
        return error
    if not grp.leader:
        return FollowerStopped(getattr(error, 'exit_code', 1))
    error.everywhere = True
    return error


def stop_job(grp, error, prog):
    """A rank failed on its own while the others may be waiting for it in a
    collective: say which rank and why, then end the whole job (MPI_Abort;
    an orderly exit would leave the others waiting, or MPI_Finalize hanging)."""
    import traceback
    from caffe_mlic.errors import MlicError
    if isinstance(error, MlicError):
        message, code = str(error), error.exit_code
    else:
        traceback.print_exception(type(error), error, error.__traceback__)
        message, code = '%s: %s' % (type(error).__name__, error), 1
    sys.stderr.write('%s: %s: %s\n' % (prog, grp.where(), message))
    grp.abort(code)
