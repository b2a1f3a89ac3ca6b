"""The stages of a pipeline run and their records: what lets `caffe-mlic
run` skip the stages that are done, and rerun what a change invalidates.

A stage is a step of a method (train the teacher, infer one head...) with
what it depends on: its settings (a JSON-able dict, e.g. its config
section), its input files and the stages before it. When it ends, its
record (``RUN/.stages/<name>.json``, written atomically, last) holds the
digest of its settings and of its input files' contents, the code version
and the size and digest of each output. A stage is

- done: its record matches its settings, inputs and code version, and its
  outputs are as recorded;
- stale: it has a record that does not (the record says why);
- to do: it has no record (never run, or cut short: an interrupted stage
  left no record, and resumes from its own snapshots when it runs again).

``plan`` orders what runs: every stage not done, and every stage after one
that runs and depends on it, as a change of settings in stage 2 reruns
stage 2 and what follows.
"""
import hashlib
import json
import os
from typing import Callable, NamedTuple, Optional, Sequence

import caffe_mlic
from caffe_mlic.errors import MlicError, RunError, UsageError
from caffe_mlic.fileio import atomic_write_json, open_regular, read_json

RECORDS = '.stages'
CHUNK = 1 << 20


class Stage(NamedTuple):
    """``run()`` makes ``outputs`` (paths) from ``inputs`` (paths, known by
    their contents, or Files, by their sizes and times) under
    ``settings``; ``after``: the names of the stages whose outputs it uses;
    ``clean()``: removes what an earlier run of it left (snapshots, label
    maps), called before it runs unless it resumes a run cut short under
    the same settings and inputs; ``headline()``: its result in a few words
    for the line that says it is done."""
    name: str
    run: Callable[[], None]
    settings: dict
    inputs: Sequence[str] = ()
    outputs: Sequence[str] = ()
    after: Sequence[str] = ()
    clean: Optional[Callable[[], None]] = None
    headline: Optional[Callable[[], str]] = None    # its result in a few words, once it ran


class Files(NamedTuple):
    """An input of many files (a dataset's images, a folder of proposals),
    known by their paths, sizes and modification times rather than their
    contents: reading gigabytes at each `run --status` is not an option,
    and a file replaced or rewritten changes its size or time. ``paths``:
    files, or folders (their files, recursively)."""
    label: str
    paths: Sequence[str]


def files_fingerprint(paths):
    """The SHA-256 of each file's path, size and mtime (folders walked in name order)."""
    digest = hashlib.sha256()

    def add(path):
        try:
            info = os.stat(path)
        except OSError:
            digest.update(b'missing\0' + path.encode('utf-8', 'surrogateescape') + b'\0')
            return
        digest.update(('%s\0%d\0%d\0' % (path, info.st_size, info.st_mtime_ns)).encode('utf-8', 'surrogateescape'))
    for path in paths:
        if os.path.isdir(path):
            for folder, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    add(os.path.join(folder, name))
        else:
            add(path)
    return digest.hexdigest()


def listed_files(list_path, root=''):
    """The files a datalist names (the first two words of each line that
    are paths: image and label), relative to ``root``."""
    found = []
    try:
        with open(list_path, errors='surrogateescape') as f:
            for line in f:
                words = line.split()
                found += [os.path.join(root, w) for w in words[:2] if not _number(w)]
    except OSError:
        pass
    return found


def _number(word):
    try:
        float(word)
        return True
    except ValueError:
        return False


def _input_key(item):
    return 'files:' + item.label if isinstance(item, Files) else item


def _input_digest(item):
    if isinstance(item, Files):
        return files_fingerprint(item.paths)
    return file_digest(item) if os.path.exists(item) else None


class Status(NamedTuple):
    state: str                  # 'done', 'stale' or 'to do'
    why: Optional[str] = None   # what changed, for a stale stage


def file_digest(path):
    """The SHA-256 of a file's content, or of a folder's files (their
    relative paths and contents, in name order)."""
    digest = hashlib.sha256()
    if os.path.isdir(path):
        for folder, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(folder, name)
                digest.update(os.path.relpath(full, path).encode('utf-8', 'surrogateescape') + b'\0')
                digest.update(file_digest(full).encode())
        return digest.hexdigest()
    with open_regular(path, 'rb') as f:       # (a FIFO in a stage's files would block)
        for chunk in iter(lambda: f.read(CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def remover(*patterns):
    """A Stage.clean that removes the files and folders matching ``patterns``
    (glob patterns; a plain path matches itself)."""
    def clean():
        import glob
        import shutil
        for pattern in patterns:
            for path in glob.glob(glob.escape(pattern) if not any(c in pattern for c in '*?[') else pattern):
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
    return clean


def settings_digest(settings):
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def record_path(run_dir, name):
    return os.path.join(run_dir, RECORDS, name + '.json')


def started_path(run_dir, name):
    """Where a stage that runs notes what it runs on, until its record is written."""
    return os.path.join(run_dir, RECORDS, name + '.started.json')


def _observed(stage):
    """What a record of ``stage`` holds about its inputs, as they are now."""
    return dict(settings=settings_digest(stage.settings), code=caffe_mlic.__version__,
                inputs={_input_key(item): _input_digest(item) for item in stage.inputs})


def write_record(run_dir, stage):
    """Record ``stage`` as done (after its run: every output must exist)."""
    missing = [path for path in stage.outputs if not os.path.exists(path)]
    if missing:
        raise RunError('stage %s made no %s' % (stage.name, ', '.join(missing)))
    record = dict(_observed(stage), stage=stage.name, settings_used=stage.settings,
                  outputs={path: file_digest(path) for path in stage.outputs})
    atomic_write_json(record_path(run_dir, stage.name), record, sort_keys=True, replace_special=True)


def status(run_dir, stage):
    """The Status of ``stage`` in ``run_dir`` from its record."""
    path = record_path(run_dir, stage.name)
    if not os.path.exists(path):
        return Status('to do', 'cut short, resuming it' if _resumable(run_dir, stage) else None)
    try:
        record = read_json(path)
    except ValueError:
        return Status('stale', 'its record is unreadable')
    if not isinstance(record, dict):
        return Status('stale', 'its record is unreadable')
    now = _observed(stage)
    if record.get('settings') != now['settings']:
        old = record.get('settings_used')
        changed = sorted(k for k in set(old or {}) | set(stage.settings)
                         if (old or {}).get(k) != stage.settings.get(k)) if isinstance(old, dict) else []
        return Status('stale', 'settings changed' + (' (%s)' % ', '.join(changed) if changed else ''))
    if record.get('code') != now['code']:
        return Status('stale', 'caffe-mlic changed (%s -> %s)' % (record.get('code'), now['code']))
    inputs = record.get('inputs') or {}
    for path, digest in now['inputs'].items():
        if inputs.get(path) != digest:
            return Status('stale', 'the %s changed (a file added, removed or rewritten)' % path[len('files:'):]
                          if path.startswith('files:') else 'input %s changed' % path)
    outputs = record.get('outputs') or {}
    for path in stage.outputs:
        if path not in outputs or not os.path.exists(path) or file_digest(path) != outputs[path]:
            return Status('stale', 'output %s is missing or changed' % path)
    return Status('done')


def check_names(stages, *names):
    """UsageError for a name (of --from, --only) that is no stage's."""
    known = [s.name for s in stages]
    for name in names:
        if name is not None and name not in known:
            raise UsageError('no stage %r; the stages are %s' % (name, ', '.join(known)))


def plan(run_dir, stages, start=None, only=None):
    """[(stage, why)] of the stages to run, in order: those not done and
    those after one that runs and needs it; ``start``: that stage and every
    one that follows from it (``after``, step by step), done or not;
    ``only``: that stage alone, done or not."""
    check_names(stages, start, only)
    if only is not None:
        return [(s, 'asked for (--only)') for s in stages if s.name == only]
    todo, rerun, asked = [], set(), {start}
    for stage in stages:
        why = None
        if start is not None and (stage.name == start or any(before in asked for before in stage.after)):
            asked.add(stage.name)       # the stage asked for and those that follow from it
            why = 'asked for (--from %s)' % start
        elif any(before in rerun for before in stage.after):
            why = 'follows %s' % next(b for b in stage.after if b in rerun)
        else:
            current = status(run_dir, stage)
            if current.state != 'done':
                why = current.why or current.state
        if why is not None:
            todo.append((stage, why))
            rerun.add(stage.name)
    return todo


def run_stages(run_dir, stages, say=print, start=None, only=None):
    """Run ``plan(...)``'s stages in order, each recorded as it ends; a
    line each as it starts and ends. A stage's record is removed before it
    runs, so one cut short is never taken as done."""
    todo = plan(run_dir, stages, start, only)
    running = {stage.name for stage, _ in todo}
    for stage in stages:
        if stage.name not in running:
            say('stage %s: done' % stage.name)
    run_planned(run_dir, todo, say)
    return [stage.name for stage, _ in todo]


def run_planned(run_dir, todo, say=print):
    """Run the [(stage, why)] of a plan, in order (run_stages)."""
    import time
    for stage, why in todo:
        say('stage %s: %s' % (stage.name, why if why.startswith('cut short') else why + ', running it'))
        path = record_path(run_dir, stage.name)
        if os.path.exists(path):
            os.unlink(path)
        if not _resumable(run_dir, stage) and stage.clean is not None:
            stage.clean()
        atomic_write_json(started_path(run_dir, stage.name), _observed(stage), sort_keys=True,
                          replace_special=True)
        began = time.monotonic()
        try:
            stage.run()
        except MlicError as e:      # what the stage's library function refused, named by the stage
            e.args = ('stage %s: %s' % (stage.name, e),) + e.args[1:]
            raise
        write_record(run_dir, stage)
        os.unlink(started_path(run_dir, stage.name))
        took = time.monotonic() - began
        say('stage %s: done in %.0f s%s' % (stage.name, took, ': ' + stage.headline() if stage.headline else ''))


def _resumable(run_dir, stage):
    """Whether ``stage`` was cut short under the settings and inputs it has now."""
    try:
        return read_json(started_path(run_dir, stage.name)) == _observed(stage)
    except (OSError, ValueError):
        return False
