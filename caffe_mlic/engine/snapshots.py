"""Snapshots: what a run's snapshots weigh (binary protos stop at 2 GB),
which ones a prefix has, and whether a solver state can be resumed from by
this net, checked before Caffe reads it."""
import contextlib
import glob
import os
import re
import shutil
import tempfile

import numpy as np

from caffe_mlic.caffe import prototxt
from caffe_mlic.caffe.weights import (PROTO_LIMIT, blob_shape, check_history, check_weights, parse_message,
                                      name_list, read_state, shape_fits, stored_values)
from caffe_mlic.engine.solver_file import HISTORY_PER_PARAM
from caffe_mlic.errors import InputError, Problem, RunError, in_the_way, path_kind
from caffe_mlic.fileio import atomic_write

class SnapshotError(InputError):
    """A snapshot that cannot be resumed from: truncated, incomplete, or of another net."""


def learnable_shapes(net, net_param):
    """Shapes of the net's learnable blobs in Caffe's order (a blob shared by
    name counts once, where it first appears): what a solver state's history
    follows."""
    specs = {layer.name: layer.param for layer in net_param.layer if prototxt.in_phase(layer, 'TRAIN')}
    seen, shapes = set(), []
    for name, blobs in net.params.items():
        for i, blob in enumerate(blobs):
            spec = specs.get(name)
            shared = spec[i].name if spec is not None and i < len(spec) else ''
            if shared:
                if shared in seen:
                    continue
                seen.add(shared)
            shapes.append(blob.data.shape)
    return shapes


def check_hdf5_snapshots(solver_file):
    """InputError, before any net is built, for HDF5 snapshots of a TRAIN net
    that Caffe cannot write as HDF5 (hdf5_name_problems)."""
    if not solver_file.hdf5:
        return
    problems = hdf5_name_problems([layer.name for layer in solver_file.net_param.layer
                                   if prototxt.in_phase(layer, 'TRAIN')])
    if problems:
        line = None if 'snapshot_format' in {o.partition('=')[0].strip() for o in solver_file.overrides} \
            else _field_line(solver_file.path, 'snapshot_format')
        raise InputError(problems=[Problem(
            solver_file.path, line, 'snapshot_format',
            'HDF5 snapshots cannot be written for %s: %s (Caffe aborts writing one HDF5 group per '
            'layer name); use snapshot_format: BINARYPROTO'
            % (solver_file.net_path or 'its net_param', '; '.join(problems)))])


def check_snapshot_size(solver_file, net):
    """InputError when a binary-proto snapshot of this run would exceed
    protobuf's 2 GB for one message: Caffe aborts when it writes it (at the
    first snapshot, hours in). The solverstate holds one history blob per
    learnable blob (two for Adam and AdaDelta): with Adam, the release VGG16
    distillation nets (teacher and student, 268.5 M values: a 2.15e9-byte state, over 2^31 - 1)
    cannot be snapshotted as binary protos, nor as HDF5 (their TRAIN phase
    repeats layer names: see hdf5_name_problems). HDF5 is refused first for
    a net Caffe cannot write as HDF5."""
    check_hdf5_snapshots(solver_file)
    if solver_file.hdf5:
        return
    values = sum(int(np.prod(shape)) for shape in learnable_shapes(net, solver_file.net_param))
    names = hdf5_name_problems([layer.name for layer in solver_file.net_param.layer
                                if prototxt.in_phase(layer, 'TRAIN')])
    for what, count in (('caffemodel', values), ('solverstate', values * HISTORY_PER_PARAM[solver_file.type])):
        if 4 * count > PROTO_LIMIT:
            if not names:
                fix = 'set snapshot_format: HDF5'
            elif what == 'solverstate' and 4 * values <= PROTO_LIMIT:
                fix = ('and HDF5 cannot hold this net either (%s): use a solver type with one history '
                       'blob per weight (SGD, Nesterov, AdaGrad, RMSProp), or give the layers distinct '
                       'names and set snapshot_format: HDF5' % '; '.join(names))
            else:
                fix = ('and HDF5 cannot hold this net either (%s): give the layers distinct names and '
                       'set snapshot_format: HDF5' % '; '.join(names))
            raise InputError(problems=[Problem(
                solver_file.path, None, 'snapshot_format',
                "this run's %s would be %.2f GB (%d values%s), over protobuf's 2 GB for one message: "
                'Caffe would abort writing the first snapshot; %s'
                % (what, 4 * count / 2 ** 30, count, '' if what == 'caffemodel' else
                   ': %s keeps %d history blob(s) per weight' % (solver_file.type,
                                                                HISTORY_PER_PARAM[solver_file.type]),
                   fix))])


def hdf5_name_problems(names):
    """What keeps Caffe from writing an HDF5 caffemodel of a net whose layers
    (of one phase, in order) are ``names``: Caffe makes one group per layer,
    named as the layer, so a '/' in a name (a path to a group that does not
    exist) and a name given twice (the group exists already) abort it."""
    from collections import Counter
    problems = []
    slashed = [name for name in names if '/' in name]
    if slashed:
        problems.append("%d layer name(s) with '/', e.g. %s" % (len(slashed), ', '.join(slashed[:3])))
    repeated = [name for name, count in Counter(names).items() if count > 1]
    if repeated:
        problems.append('%d layer name(s) given more than once in one phase, e.g. %s'
                        % (len(repeated), ', '.join(repeated[:5])))
    return problems


def learned_net_path(learned_net, state_path):
    """Where the state's learned_net is: the caffemodel of that name beside
    the state, where Caffe wrote it with the state (both under one snapshot
    prefix); None when it is not there. Never as Caffe reads the name,
    from the current directory: from another directory, or once the
    state's folder was renamed, that may be another run's caffemodel."""
    beside = os.path.join(os.path.dirname(state_path), os.path.basename(learned_net))
    return beside if os.path.isfile(beside) else None


def _model_not_there(state_path, learned_net):
    """Why the state's caffemodel (learned_net_path) cannot be read: missing,
    or what is there instead (a device, a link to nothing)."""
    beside = os.path.join(os.path.dirname(state_path), os.path.basename(learned_net))
    kind = path_kind(beside)
    return '%s: its caffemodel %s is %s (beside it, where it was written)' % (
        state_path, os.path.basename(learned_net), 'missing' if kind is None else kind + ', not a file')


def check_snapshot(state_path, net, net_param, solver_type):
    """(iteration, caffemodel path) of a solver state this solver can resume
    from; SnapshotError saying why not."""
    from caffe.proto import caffe_pb2
    if not os.path.isfile(state_path):
        from caffe_mlic.fileio import input_file_problem
        raise SnapshotError(input_file_problem(state_path, 'solver state'))
    if state_path.endswith('.h5'):
        # Caffe would abort on what it cannot open, and reshape a history
        # blob of another shape (corrupting memory): h5py reads it first.
        state = read_state(state_path, SnapshotError)
        check_history(state_path, state, learnable_shapes(net, net_param) * HISTORY_PER_PARAM[solver_type],
                      solver_type, SnapshotError)
        if not state.learned_net:
            raise SnapshotError('%s: names no learned_net (its caffemodel)' % state_path)
        model = learned_net_path(state.learned_net, state_path)
        if model is None:
            raise SnapshotError(_model_not_there(state_path, state.learned_net))
        check_weights(model, net, complete=True, error=SnapshotError)
        return state.iteration, model
    state = parse_message(caffe_pb2.SolverState(), state_path, SnapshotError)
    shapes = learnable_shapes(net, net_param) * HISTORY_PER_PARAM[solver_type]
    if len(state.history) != len(shapes):
        raise SnapshotError('%s: not a state of this solver (or truncated): %d history blobs; '
                            'this net with solver type %s keeps %d'
                            % (state_path, len(state.history), solver_type, len(shapes)))
    for i, (proto, shape) in enumerate(zip(state.history, shapes)):
        if not shape_fits(shape, proto) or stored_values(proto) != int(np.prod(shape)):
            raise SnapshotError('%s: not a state of this solver: history blob %d is %s, the net '
                                'needs %s' % (state_path, i, 'x'.join(map(str, blob_shape(proto))),
                                              'x'.join(map(str, shape))))
    if not state.learned_net:
        raise SnapshotError('%s: names no learned_net (its caffemodel)' % state_path)
    model = learned_net_path(state.learned_net, state_path)
    if model is None:
        raise SnapshotError(_model_not_there(state_path, state.learned_net))
    check_weights(model, net, complete=True, error=SnapshotError)
    return state.iter, model


def non_finite_layers(params):
    """Names of the layers of {name: [arrays]} (net.params's blobs' data, or
    read_weights) holding a NaN or infinite value: the weights of a diverged
    run."""
    bad = []
    for name, arrays in params.items():
        # a float64 sum of float32 values is finite exactly when every value is
        if not all(np.isfinite(np.sum(a, dtype=np.float64)) for a in arrays):
            bad.append(name)
    return bad


def net_non_finite_layers(net):
    """non_finite_layers of caffe.Net ``net``'s weights as they are now."""
    return non_finite_layers({name: [b.data for b in blobs] for name, blobs in net.params.items()})


def check_finite_snapshot(state_path, model):
    """SnapshotError when the caffemodel ``model`` of ``state_path`` holds
    NaN or infinite weights (taken after its run diverged)."""
    from caffe_mlic.caffe.weights import read_weights
    bad = non_finite_layers(read_weights(model, SnapshotError))
    if bad:
        raise SnapshotError('%s: its caffemodel %s holds NaN or infinite weights (layers %s): a '
                            'snapshot of a diverged run' % (state_path, model, name_list(bad)))


def own_snapshot_problem(path, prefix, max_iter, hdf5=False, binary=False):
    """A message when weights ``path`` is named like a snapshot that a run
    of ``prefix`` up to ``max_iter`` writes (on its schedule, or when stopped
    there): training from it would write over it. Links are followed on both
    sides; None when it is not one. ``binary``: the advice in the caffe
    binary's flags."""
    def forms(p):
        folder, base = os.path.split(p)
        # (realpath of the folder as given: a '..' after a link is the link target's parent)
        return {os.path.abspath(p), os.path.join(os.path.realpath(folder or '.'), base), os.path.realpath(p)}
    ext = r'\.caffemodel' + (r'\.h5' if hdf5 else '')
    for pre in forms(prefix):
        for candidate in forms(path):
            m = re.fullmatch(re.escape(pre) + r'_iter_(\d+)' + ext, candidate)
            if m and int(m.group(1)) <= max_iter:
                iteration = int(m.group(1))
                state = re.sub(ext + '$', '.solverstate' + ('.h5' if hdf5 else ''), path)
                if binary:
                    other = 'another snapshot_prefix in the solver'
                    go_on = ', or go on with that run: -snapshot %s' % state if os.path.exists(state) else ''
                else:
                    other = 'this run another snapshot_prefix (--set snapshot_prefix=...)'
                    go_on = ', or go on with that run: --resume %s' % (
                        state if os.path.exists(state) else 'auto')
                return ('%s is named like this run\'s snapshot at iteration %d (snapshot_prefix %s): training '
                        'would write over the weights it starts from; copy them elsewhere, give %s%s'
                        % (path, iteration, prefix, other, go_on))
    # the same file under another name (a hard link): the binary writes snapshots in place
    for existing in glob.glob(glob.escape(prefix) + '_iter_*.caffemodel' + ('.h5' if hdf5 else '')):
        m = re.fullmatch(re.escape(prefix) + r'_iter_(\d+)\.caffemodel' + (r'\.h5' if hdf5 else ''), existing)
        with contextlib.suppress(OSError):
            if m and int(m.group(1)) <= max_iter and os.path.samefile(existing, path):
                return ('%s is the same file as %s, a snapshot this run writes (snapshot_prefix %s): training '
                        'would write over the weights it starts from; copy them elsewhere first'
                        % (path, existing, prefix))
    return None


RANKS_SUFFIX = '.ranks'


def ranks_file(state_path):
    """The file beside a solver state that says how many data-parallel ranks
    wrote it (none: one process)."""
    return re.sub(r'\.solverstate(\.h5)?$', '', state_path) + RANKS_SUFFIX


def state_ranks(state_path):
    """How many ranks trained the run that wrote ``state_path`` (1 without
    the file); InputError for a file that does not say."""
    candidates = [ranks_file(state_path), ranks_file(os.path.realpath(state_path))]   # (a link to a state)
    path = next((p for p in candidates if os.path.lexists(p)), None)
    if path is None:
        return 1
    if not os.path.isfile(path):        # (a FIFO would block the read, a device never end it)
        raise InputError('%s: not a regular file (it should hold the number of ranks that wrote %s)'
                         % (path, state_path))
    try:
        with open(path, 'rb') as f:
            text = f.read(64).decode('ascii', errors='replace')
    except OSError as e:
        raise InputError('%s: cannot read it: %s' % (path, e.strerror or e))
    if not text.strip().isdigit() or int(text) < 1:
        raise InputError('%s: expected the number of ranks that wrote %s, got %r' % (path, state_path, text[:40]))
    return int(text)


def drop_stale_ranks(prefix, since):
    """Remove the .ranks files of ``prefix``'s snapshots that a one-process
    run (the caffe binary) started at ``since`` (time.time()) wrote over:
    their state is newer than ``since`` and the .ranks file older. (A
    data-parallel snapshot writes its .ranks file just before its state;
    other prefixes' files, w_iter_5_iter_N of prefix w_iter_5 beside prefix
    w, are not this prefix's.)"""
    pattern = re.escape(prefix) + r'_iter_\d+' + re.escape(RANKS_SUFFIX)
    for path in glob.glob(glob.escape(prefix) + '_iter_*' + RANKS_SUFFIX):
        if not re.fullmatch(pattern, path):
            continue
        base = path[:-len(RANKS_SUFFIX)]
        for state in (base + '.solverstate', base + '.solverstate.h5'):
            with contextlib.suppress(OSError):
                if os.path.getmtime(state) >= since > os.path.getmtime(path):
                    os.unlink(path)


def prefix_files(prefix):
    """The snapshot files of ``prefix`` (caffemodels and states, binary or
    HDF5), by the whole name."""
    pattern = re.escape(prefix) + r'_iter_\d+\.(caffemodel|solverstate)(\.h5)?'
    return [p for p in glob.glob(glob.escape(prefix) + '_iter_*') if re.fullmatch(pattern, p)]


def linked_snapshots(prefix, after, until):
    """The files of ``prefix``'s snapshots at iterations in (after, until]
    that are links: a symlink, or a file with another hard link. Stock
    Caffe writes a snapshot by opening its name, so it would write through
    either into the file the link shares (another run's snapshot)."""
    found = []
    for path in prefix_files(prefix):
        iteration = int(re.search(r'_iter_(\d+)\.[a-z5.]+$', path).group(1))
        if after < iteration <= until:
            with contextlib.suppress(OSError):
                if os.path.islink(path) or os.lstat(path).st_nlink > 1:
                    found.append(path)
    return sorted(found)


def unlink_links(paths):
    """Remove the names in ``paths`` that are links (symlinks, or files with
    other hard links) before we write files of those names: the file a link
    shares is left as it is (never written through)."""
    for path in paths:
        with contextlib.suppress(OSError):
            if os.path.islink(path) or (os.path.isfile(path) and os.lstat(path).st_nlink > 1):
                os.unlink(path)


def snapshot_stem(path):
    """A snapshot file's path less its extension (PREFIX_iter_N)."""
    return re.sub(r'\.(caffemodel|solverstate)(\.h5)?$', '', path)


def find_snapshots(prefix):
    """[(iteration, solverstate)] of ``prefix``, newest first."""
    found = []
    for path in glob.glob(glob.escape(prefix) + '_iter_*.solverstate*'):
        # the whole name: prefix w must not take w_iter_5_iter_200 (prefix w_iter_5's)
        m = re.fullmatch(re.escape(prefix) + r'_iter_(\d+)\.solverstate(\.h5)?', path)
        if m:
            found.append((int(m.group(1)), path))
    return sorted(found, reverse=True)


# ---------------------------------------------------------------- writing one

SNAPSHOT_SLACK = 2 ** 20        # names, shapes and protobuf framing beyond 4 bytes a value


def snapshot_bytes(solver_file, net):
    """About what one snapshot (caffemodel and solverstate) takes on disk."""
    values = sum(int(np.prod(shape)) for shape in learnable_shapes(net, solver_file.net_param))
    return 4 * values * (1 + HISTORY_PER_PARAM[solver_file.type]) + SNAPSHOT_SLACK


def prefix_folder(prefix):
    """The folder a snapshot prefix's files go into, as the kernel finds it
    (symlinks followed before a '..': lexical abspath would take lk/.. for
    the folder holding lk, not the one lk's target is in)."""
    return os.path.realpath(os.path.dirname(prefix) or '.')


def owner_path(prefix):
    """The file beside a snapshot prefix's snapshots that names the run
    folder whose snapshots they are (one run per prefix). A prefix by its
    folder's descriptor (/proc/self/fd/N/BASE) keeps that folder: its path
    by name may be renamed away before the file is written."""
    folder = os.path.dirname(prefix) if prefix.startswith('/proc/self/fd/') else prefix_folder(prefix)
    return os.path.join(folder, '.%s.run' % os.path.basename(prefix))


def prefix_owner(prefix):
    """The run folder that claimed ``prefix`` (its absolute path), or None.
    (Recorded relative to the snapshots' folder: a copy of a tree that holds
    both is the copy's own.)"""
    import stat
    try:
        with open(owner_path(prefix), 'rb', opener=_no_waiting) as f:     # (a FIFO there: refused where checked)
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            text = f.read(65536).decode('utf-8', 'surrogateescape')
    except OSError:
        return None
    text = text[:-1] if text.endswith('\n') else text     # (only the line's end: a name may end in a space)
    if not text:
        return None
    return os.path.realpath(os.path.join(os.path.dirname(os.path.realpath(owner_path(prefix))), text))


def _run_records(run_dir):
    """run.json of ``run_dir`` and the records of its earlier sessions
    ([] without one; a hand-edited one's values of the wrong kind are
    passed over)."""
    from caffe_mlic.engine.logs import read_run_json
    info = read_run_json(run_dir)
    return run_records(info)


def run_records(info):
    """The session records of run.json's content ``info`` (its own and its
    ``previous`` ones that are records)."""
    if not isinstance(info, dict):
        return []
    previous = info.get('previous') if isinstance(info.get('previous'), list) else []
    return [info] + [r for r in previous if isinstance(r, dict)]


def _a_path(text):
    """Whether ``text`` can name a file (no NUL; it encodes as a file name:
    a lone surrogate JSON allows does not)."""
    if '\0' in text:
        return False
    try:
        os.fsencode(text)
    except UnicodeEncodeError:
        return False
    return True


def recorded_paths(record, path, run_dir=None):
    """The places a path run.json recorded may mean: against the cwd the run
    recorded (relative ones); and, for a relative one, against the current
    directory too when ``run_dir`` (the run folder as this command names it)
    sits where it sat then relative to the cwd (a project folder moved as a
    whole, its command run again in the new place; not a run folder of
    another project that happens to use the same relative names)."""
    cwd = record.get('cwd') if isinstance(record.get('cwd'), str) else None
    if not all(_a_path(p) for p in (path, cwd or '', str(record.get('run_dir')))):
        return set()        # (a hand-edited run.json: no path has a NUL or a lone surrogate)
    meant = os.path.normpath(os.path.join(cwd, path) if cwd else os.path.abspath(path))
    places = {os.path.realpath(meant)}
    then = record.get('run_dir') if isinstance(record.get('run_dir'), str) else None
    if (not os.path.isabs(path) and cwd and then and run_dir is not None
            and os.path.relpath(then, cwd) == os.path.relpath(os.path.abspath(run_dir), os.getcwd())):
        places.add(os.path.realpath(path))
    if then and run_dir is not None and os.path.isabs(then):
        inside = os.path.relpath(meant, os.path.normpath(then))
        if inside != '.' and not inside.startswith('..'):   # (inside the run folder: moved with it)
            places.add(os.path.realpath(os.path.join(run_dir, inside)))
    return places


HEAD_TAIL_BYTES = 1 << 16
_digests = {}       # (device, inode, size, mtime, ctime) -> whole-file digest: a file is read once per process


def _no_waiting(name, flags):
    """open()'s opener for a file that may be a FIFO: opened without
    waiting for a writer (then refused as no regular file by its reader)."""
    return os.open(name, flags | os.O_NONBLOCK)


def file_identity(path):
    """[size, 'v2:' + sha1 of the whole file] of the file at ``path``, or
    None: what tells a run's snapshot from another run's of the same name
    (a state holds the weights' history, which differs between runs,
    possibly only in a middle layer's part), whatever a copy, tar or touch
    did to its times. About 0.3 s for a VGG16 SGD state in the page cache;
    each file is read once per process while it stays unchanged."""
    import hashlib
    import stat
    try:
        # (not blocking: a FIFO would wait for a writer; a device is no file: /dev/zero never ended, with
        # the stop signals held while the run was set up)
        with open(path, 'rb', opener=_no_waiting) as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                return None
            key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            if key not in _digests:
                digest = hashlib.sha1()
                for block in iter(lambda: f.read(1 << 20), b''):
                    digest.update(block)
                if len(_digests) > 4096:
                    _digests.clear()
                _digests[key] = 'v2:' + digest.hexdigest()
    except (OSError, ValueError):
        return None
    return [info.st_size, _digests[key]]


def _head_tail_identity(path):
    """[size, digest of its first and last 64 KB]: file_identity as
    versions after 03a70e4 up to 6110669 recorded it in run.json (blind to a state
    that differs only in its middle), or None."""
    import hashlib
    import stat
    try:
        with open(path, 'rb', opener=_no_waiting) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            size = os.fstat(f.fileno()).st_size
            digest = hashlib.sha1(f.read(HEAD_TAIL_BYTES))
            if size > HEAD_TAIL_BYTES:
                f.seek(max(HEAD_TAIL_BYTES, size - HEAD_TAIL_BYTES))
                digest.update(f.read(HEAD_TAIL_BYTES))
    except (OSError, ValueError):
        return None
    return [size, digest.hexdigest()[:20]]


def has_digest(identity):
    """Whether run.json's ``identity`` of a state is a digest of its content
    (file_identity or its older form), not an older version's mtime."""
    return isinstance(identity, list) and len(identity) == 2 and isinstance(identity[1], str)


def identity_in(path, identities):
    """Whether the file at ``path`` is one of ``identities`` as run.json
    records them: [size, 'v2:' digest] (file_identity), [size, digest of
    its first and last 64 KB] as versions after 03a70e4 up to 6110669 wrote, or
    [size, mtime in ns] as versions 3aa4ef9 to 03a70e4 wrote them (each
    compared as its version did)."""
    whole = head_tail = None
    for identity in identities:
        if not (isinstance(identity, list) and len(identity) == 2):
            continue
        mark = identity[1]
        if isinstance(mark, str) and mark.startswith('v2:'):
            whole = whole or file_identity(path)
            if whole == identity:
                return True
        elif isinstance(mark, str):
            head_tail = head_tail or _head_tail_identity(path)
            if head_tail == identity:
                return True
        elif isinstance(mark, int) and not isinstance(mark, bool):
            try:
                info = os.stat(path)
            except (OSError, ValueError):
                continue
            if [info.st_size, info.st_mtime_ns] == identity:
                return True
    return False


def wrote_snapshots(run_dir, prefix):
    """Whether the run in ``run_dir`` (its run.json and the records of its
    earlier sessions) wrote or resumed from a snapshot of ``prefix`` still
    there: the same run, wherever its folder is now. The state it recorded
    must be that file (its identity, where run.json records one: another
    run with the same prefix and schedule writes the same names); a record
    without one (an older version's) goes by the name (the caffemodel or
    the state)."""
    files = prefix_files(prefix)
    mine = {os.path.realpath(snapshot_stem(p)) for p in files}

    def names_one(record, key):
        if not isinstance(record.get(key), str):
            return False
        identity = record.get(key + '_id')
        for path in recorded_paths(record, record[key], run_dir):
            if snapshot_stem(path) in mine and (identity is None or identity_in(path, [identity])):
                return True
        # a state recorded with its identity is that run's wherever its path pointed (a project
        # moved as a whole, then its run folder renamed: neither path rule finds it)
        name = os.path.basename(record[key])
        return isinstance(identity, list) and any(
            os.path.basename(p) == name and identity_in(p, [identity]) for p in files)
    return any(names_one(r, key) for r in _run_records(run_dir) for key in ('last_snapshot', 'resumed_from'))


def uses_prefix(run_dir, prefix):
    """Whether ``run_dir``'s run.json says its run writes ``prefix`` (it
    was started there with it, before any snapshot)."""
    target = os.path.join(prefix_folder(prefix), os.path.basename(prefix))
    return any(isinstance(r.get('snapshot_prefix'), str) and
               any(os.path.join(prefix_folder(p), os.path.basename(r['snapshot_prefix'])) == target
                   for p in recorded_paths(r, r['snapshot_prefix'], run_dir))
               for r in _run_records(run_dir))


def other_owner(prefix, run_dir=None):
    """Why ``run_dir`` (None: a run with no folder, `caffe-mlic caffe`) may
    not write snapshots of ``prefix``, or None. Refused: another run folder,
    still there, claimed it; the folder that claimed it is gone (moved,
    removed) while its snapshots (caffemodels or states) are still there,
    and ``run_dir`` is not that run (its run.json names none of them); or
    the claim names ``run_dir`` but its run.json does not say it writes
    this prefix while snapshots are there (the run that was here was
    renamed away, and a new one started in its old folder)."""
    owner = prefix_owner(prefix)
    if owner is None:
        return None
    me = os.path.realpath(run_dir) if run_dir is not None else None
    claim = owner_path(prefix)
    if owner == me:
        # (a snapshot folder renamed after its run: run.json names the old prefix, and the states it
        # recorded writing are these)
        if prefix_files(prefix) and not uses_prefix(run_dir, prefix) and not wrote_snapshots(run_dir, prefix):
            from caffe_mlic.engine.logs import RUN_JSON, read_run_json
            why = ('its run.json is not there: moved away?' if not os.path.lexists(os.path.join(run_dir, RUN_JSON))
                   else 'its run.json cannot be read' if read_run_json(run_dir) is None
                   else 'its run.json names another snapshot prefix, and none of these snapshots')
            return ('%s holds the snapshots of the run that was in %s before this one (%s): this run would write '
                    'over them; give this run another snapshot_prefix (--set snapshot_prefix=...), resume the '
                    'earlier run in its folder, or remove %s and those snapshots first' % (prefix, owner, why, claim))
        return None
    # (the binary has no --set: its prefix is changed in the solver file)
    another = ('another snapshot_prefix in the solver' if run_dir is None else
               'this run another snapshot_prefix (--set snapshot_prefix=...)')
    if os.path.isdir(owner) and _run_records(owner):
        return ('%s is the snapshot prefix of the run in %s: this run would write over its snapshots (and '
                '--resume auto go on from them); give %s; if these snapshots are a copy, not that run\'s own, '
                'remove %s (the record of whose they are) first' % (prefix, owner, another, claim))
    if prefix_files(prefix) and (run_dir is None or not wrote_snapshots(run_dir, prefix)):
        return ('%s holds the snapshots of the run that was in %s, which is not there any more (moved or '
                'removed?): this run would write over them (and --resume auto go on from them); resume that '
                'run in its folder, give %s, or remove %s and those snapshots first'
                % (prefix, owner, another, claim))
    return None


def _lock_folder():
    """This user's folder of prefix locks, /tmp/caffe-mlic-locks-UID (0700,
    ours, not a link: in a folder others can write, a planted link would
    have us write our pid over its target), or None where it cannot be."""
    import stat
    folder = '/tmp/caffe-mlic-locks-%d' % os.getuid()
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    info = os.lstat(folder)
    if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077:
        return folder
    return None


def lock_prefix(prefix, shown=None):
    """Hold a lock on ``prefix`` while a run (or the caffe binary) may write
    its snapshots: two writers started side by side would both pass the
    claim check before either claims. The lock file is named by a digest of
    the prefix's folder as the kernel knows it (device and inode: a bind
    mount or a second mount path of one folder is one folder) and its base
    name, in this user's _lock_folder (not beside the snapshots, where a
    killed run would leave it; there where that folder cannot be had).
    ``shown``: the prefix as the messages name it. processes.lock_file; give
    it back with processes.unlock_file."""
    import hashlib
    from caffe_mlic.processes import lock_file, sweep_lock_files
    folder_path = prefix_folder(prefix)
    try:
        info = os.stat(folder_path)
        key = '%d:%d/%s' % (info.st_dev, info.st_ino, os.path.basename(prefix))
    except OSError:     # (a folder not made yet: the cannot-write error comes from the lock below)
        key = os.path.join(folder_path, os.path.basename(prefix))
    try:
        folder = _lock_folder()
    except OSError:
        folder = None
    if folder:
        sweep_lock_files(folder)       # (those of killed runs)
    path = (os.path.join(folder, hashlib.sha1(os.fsencode(key)).hexdigest()[:24] + '.lock') if folder
            else os.path.join(folder_path, '.%s.lock' % os.path.basename(prefix)))
    shown = prefix if shown is None else shown
    try:
        return lock_file(path, 'another run (%%s) is writing snapshots with the prefix %s now: wait for it to end, '
                               'or give this run another snapshot_prefix' % shown)
    except OSError as e:        # (a link planted where the lock goes, a folder we cannot write)
        raise RunError('cannot lock the snapshot prefix %s: %s: %s' % (shown, path, e.strerror or e)) from None


def claim_prefix(prefix, run_dir):
    """Record ``run_dir`` as the run whose snapshots ``prefix`` names
    (before its first snapshot); RunError when another run claimed it since
    this one started (two runs side by side)."""
    other = other_owner(prefix, run_dir)
    if other:
        raise RunError(other)
    if prefix_owner(prefix) != os.path.realpath(run_dir):
        write_claim(prefix, run_dir)


def write_claim(prefix, run_dir):
    """Name ``run_dir`` as the owner of ``prefix`` (relative to the
    snapshots' folder)."""
    path = owner_path(prefix)
    with atomic_write(path, 'wb') as f:     # (bytes: a run folder's name need not be UTF-8)
        f.write(os.fsencode(os.path.relpath(os.path.realpath(run_dir), os.path.dirname(os.path.realpath(path))))
                + b'\n')


def move_claim(prefix, old_run_dir, run_dir):
    """Record ``run_dir`` as the owner of ``prefix`` where the claim names
    ``old_run_dir``: the same run, its folder renamed while it trained
    (the caller holds the prefix's lock)."""
    if prefix_owner(prefix) == os.path.realpath(old_run_dir):
        write_claim(prefix, run_dir)


def open_snapshot_folder(prefix):
    """A descriptor of the prefix's folder and the path by which Caffe can
    write into it wherever it is moved (/proc/self/fd/N), or (None, None)
    without /proc."""
    if not os.path.isdir('/proc/self/fd'):
        return None, None
    fd = os.open(prefix_folder(prefix), os.O_PATH | os.O_DIRECTORY)     # (not inherited)
    return fd, '/proc/self/fd/%d' % fd


def follow_snapshot_folder(solver_file, folder_fd):
    """Point the snapshot prefix at its folder where it is now, when it was
    renamed or moved while the run trained (a run folder holding its
    snapshots renamed, or the snapshot folder itself), or when its name now
    leads to another folder (a symlink re-pointed): Caffe writes into the
    folder by its descriptor, so the run goes on where it began. Returns
    the message saying so, or None; RunError when the folder was removed."""
    from caffe_mlic.processes import GONE, moved_path
    if folder_fd is None:
        return None
    prefix = solver_file.snapshot_prefix
    shown = os.path.dirname(prefix) or '.'
    if os.fstat(folder_fd).st_nlink == 0:
        raise RunError('the snapshot folder %s was removed while this run trained' % shown)
    where = moved_path(folder_fd, prefix_folder(prefix))
    if where is None or where is GONE:
        return None
    new = os.path.join(where if os.path.isabs(prefix) else os.path.relpath(where), os.path.basename(prefix))
    solver_file.snapshot_prefix = new
    if os.path.isdir(shown):
        return ('the snapshot folder %s now leads to another folder: this run\'s snapshots go on in %s, '
                'where it began' % (shown, os.path.dirname(new)))
    return ('the snapshot folder %s was moved to %s while this run trained: its snapshots go on there'
            % (shown, os.path.dirname(new)))


def check_snapshot_folder(solver_file, run_dir=None):
    """Create the snapshot prefix's folder and check that files can be made
    in it, before Caffe starts (Caffe aborts on a prefix it cannot write);
    returns the folders it made, deepest first (removed again when the
    prefix is refused). A prefix another run claimed is refused
    (other_owner: its snapshots would be written over, and --resume auto
    would go on from the other run's); ``run_dir`` is this run's folder
    (`train`; None for the caffe binary, which has none); take_snapshot
    claims it."""
    folder = os.path.dirname(solver_file.snapshot_prefix) or '.'     # (as given: Caffe's path)

    def problem(message):
        for made_folder in made:        # (deepest first; only those still empty)
            with contextlib.suppress(OSError):
                os.rmdir(made_folder)
        line = None if solver_file.overrides else _field_line(solver_file.path, 'snapshot_prefix')
        return InputError(problems=[Problem(solver_file.path, line, 'snapshot_prefix', message)])
    from caffe_mlic.fileio import _missing_dirs
    made = _missing_dirs(folder)
    if os.path.lexists(folder) and not os.path.isdir(folder):       # (makedirs said only "File exists")
        raise problem(in_the_way(folder, 'the snapshots of this prefix go'))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix='.write_probe.', dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise problem('cannot write snapshots into %s: %s' % (folder, e.strerror or e))
    folder, base = prefix_folder(solver_file.snapshot_prefix), os.path.basename(solver_file.snapshot_prefix)
    from caffe_mlic.engine.solver_file import longest_snapshot_name, staging_name_prefix
    longest = longest_snapshot_name(base, solver_file.param.max_iter, solver_file.hdf5)
    try:
        name_max = os.pathconf(folder, 'PC_NAME_MAX')
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(longest)) > name_max:     # (Caffe's write CHECK aborts at the first snapshot)
        raise problem('the snapshots would be named up to %d bytes long (%s), more than the %d a file name '
                      'can have in %s: shorten the prefix\'s last part by %d bytes or more'
                      % (len(os.fsencode(longest)), longest, name_max, folder,
                         len(os.fsencode(longest)) - name_max))
    for path in prefix_files(solver_file.snapshot_prefix):
        if not os.path.islink(path) and not os.path.isfile(path):      # (Caffe cannot write a snapshot there)
            raise problem(in_the_way(path, 'a snapshot of this prefix goes'))
    for path in glob.glob(glob.escape(solver_file.snapshot_prefix) + '_iter_*' + RANKS_SUFFIX):
        if not os.path.isfile(path):    # (a snapshot at its iteration would fail after the training)
            raise problem(in_the_way(path, 'a snapshot of this prefix writes how many ranks wrote it'))
    # snapshots cut short by a kill: those of runs that are gone (another
    # run of this prefix may be writing one now)
    from caffe_mlic.processes import sweep_owned_files
    for ext in ('.caffemodel', '.solverstate', '.caffemodel.h5', '.solverstate.h5'):
        sweep_owned_files(folder, staging_name_prefix(base), ext)
    for stale in glob.glob(os.path.join(glob.escape(folder), glob.escape('.%s.partial' % base) + '_iter_*')):
        with contextlib.suppress(OSError):      # of the older, pid-less naming
            os.unlink(stale)
    claim = owner_path(solver_file.snapshot_prefix)
    if os.path.lexists(claim) and (os.path.islink(claim) or not os.path.isfile(claim)):
        raise problem(in_the_way(claim, 'the file recording which run folder the snapshots of this prefix '
                                 'belong to is kept', follow_links=False))
    other = other_owner(solver_file.snapshot_prefix, run_dir)
    if other:
        raise problem(other)
    return made


def _field_line(path, field):
    from caffe_mlic.engine.solver_file import _field_line as find
    return find(path, field)


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_hdf5_learned_net(h5file, model):
    """Name ``model`` as the learned_net of an open HDF5 solver state."""
    name = model.encode('utf-8', 'surrogateescape')
    del h5file['learned_net']
    # with its terminating NUL, as Caffe's hdf5_save_string stores it: Caffe reads the string
    # with strlen (a name that fills its dataset exactly reads on past its end)
    h5file['learned_net'] = np.array(name + b'\0', dtype='S%d' % (len(name) + 1))


def _point_state_at(staged_state, state, model, hdf5):
    """Write ``state``: the staged solver state naming ``model`` (Caffe named
    the staged caffemodel) as its learned_net, atomically. Returns its
    file_identity, taken before it is in place (the folder may be removed
    the moment after)."""
    if hdf5:
        import h5py
        with h5py.File(staged_state, 'r+') as f:
            write_hdf5_learned_net(f, model)
        _fsync(staged_state)
        identity = file_identity(staged_state)
        os.replace(staged_state, state)
        return identity
    from caffe.proto import caffe_pb2
    message = parse_message(caffe_pb2.SolverState(), staged_state, RunError)
    message.learned_net = model
    with atomic_write(state, 'wb') as f:
        f.write(message.SerializeToString())
        f.flush()
        identity = file_identity(f.name)
    os.unlink(staged_state)
    return identity


def take_snapshot(solver, solver_file, needed, ranks=1, run_dir=None, io_prefix=None):
    """Caffe's snapshot at the solver's iteration, whole or not at all: Caffe
    writes it under the staging prefix, then the caffemodel and the state
    naming it are renamed into place, in that order. A disk without
    ``needed`` bytes free is refused before Caffe starts writing (Caffe
    aborts the process on a failed write). RunError when it cannot be
    written; earlier snapshots are untouched. With several data-parallel
    ``ranks`` their number goes beside the state first (ranks_file): a
    resume with another number is refused. ``io_prefix``: the prefix by
    the snapshot folder's descriptor (/proc/self/fd/N/BASE, Caffe's staging
    folder too), through which every file is written, so that a rename of
    the folder at any moment changes nothing; the caller holds the prefix's
    lock (so no other run can have claimed it). Returns the state's path
    (by name), its file_identity and its caffemodel's, as written."""
    iteration = solver.iter
    model, state = solver_file.snapshot_paths(iteration)
    staged_model, staged_state = solver_file.snapshot_paths(iteration, staged=True)
    folder = prefix_folder(model)           # (named in messages)
    io_folder = os.path.dirname(io_prefix) if io_prefix else folder

    def io(path):
        return os.path.join(io_folder, os.path.basename(path)) if io_prefix else path
    try:
        free = shutil.disk_usage(io_folder).free
    except OSError as e:
        raise RunError('cannot write the snapshot at iteration %d into %s: %s'
                       % (iteration, folder, e.strerror or e))
    if free < needed:
        raise RunError('cannot write the snapshot at iteration %d: it needs about %.1f MB and the '
                       'disk of %s has %.1f MB free' % (iteration, needed / 1e6, folder, free / 1e6))
    if run_dir is not None and io_prefix:
        if prefix_owner(io_prefix) != os.path.realpath(run_dir):
            write_claim(io_prefix, run_dir)
    elif run_dir is not None:
        claim_prefix(solver_file.snapshot_prefix, run_dir)
    ranks_path = ranks_file(state)
    if os.path.lexists(io(ranks_path)) and not os.path.isfile(io(ranks_path)):
        raise RunError('cannot write the snapshot at iteration %d: %s is in the way, and it is not a regular '
                       'file (the file of that name says how many ranks wrote the state): move it away'
                       % (iteration, ranks_path))
    try:
        # a folder that cannot take a file now (made read-only mid-run, removed): said here, since
        # Caffe's failed write is a FATAL that ends the process
        probe, name = tempfile.mkstemp(prefix='.write_probe.', dir=io_folder)
        os.close(probe)
        os.unlink(name)
    except OSError as e:
        raise RunError('cannot write the snapshot at iteration %d into %s: %s'
                       % (iteration, folder, e.strerror or e))
    # A name here that links to another file (a snapshot linked in from another prefix) is replaced,
    # never written through: Caffe opens the staged names, and atomic_write follows a symlink.
    unlink_links([io(p) for p in (staged_model, staged_state, model, state, ranks_path)])
    try:
        solver.snapshot()
        _fsync(io(staged_model))
        model_identity = file_identity(io(staged_model))
        # An earlier state of this name (a run resumed from an earlier one) goes first: a kill between
        # the two renames left it beside the new caffemodel, a snapshot of two runs that resumed silently.
        if os.path.lexists(io(state)):
            os.unlink(io(state))
        os.replace(io(staged_model), io(model))
        if ranks > 1:
            with atomic_write(io(ranks_path), 'w', replace_special=True) as f:
                f.write('%d\n' % ranks)
        elif os.path.exists(io(ranks_path)):      # (an earlier run's, at this iteration)
            os.unlink(io(ranks_path))
        identity = _point_state_at(io(staged_state), io(state), model, solver_file.hdf5)
    except OSError as e:
        for path in (staged_model, staged_state):
            with contextlib.suppress(OSError):
                os.unlink(io(path))
        # (the file that failed: a folder made at the caffemodel's name is named as that, not the state)
        failed = model if {e.filename, getattr(e, 'filename2', None)} & {io(staged_model), io(model)} else state
        raise RunError('cannot write the snapshot at iteration %d (%s): %s'
                       % (iteration, failed, e.strerror or e))
    return state, identity, model_identity


def recorded_model_identity(info, state_identity):
    """The file_identity of the caffemodel written (or resumed) with the
    state of ``state_identity``, as the records of run.json's content
    ``info`` give it; None where none records one (an older version's, or
    another run's state)."""
    if not has_digest(state_identity):
        return None
    for record in run_records(info):
        pairs = [(record.get(state_key), record.get(model_key)) for state_key, model_key in (
            ('last_snapshot_id', 'last_snapshot_model_id'), ('resumed_from_id', 'resumed_from_model_id'))]
        pairs += [tuple(p) for p in record.get('snapshot_pairs', []) if isinstance(p, list) and len(p) == 2] \
            if isinstance(record.get('snapshot_pairs'), list) else []
        for state, model in pairs:
            if state == state_identity and has_digest(model):
                return model
    return None


def check_paired_model(state_path, model_path, info):
    """SnapshotError when run.json's content ``info`` records the state at
    ``state_path`` with another caffemodel than the one beside it now (a
    copy or link of another run's put there by hand): the state's history
    with other weights is neither run."""
    recorded = recorded_model_identity(info, file_identity(state_path))
    if recorded is not None and not identity_in(model_path, [recorded]):
        raise SnapshotError('%s: its caffemodel %s is not the one written with it (run.json records '
                            'another: replaced since?)' % (state_path, model_path))
