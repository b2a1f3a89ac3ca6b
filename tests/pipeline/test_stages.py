"""Stage records: a second run skips what is done, a change reruns its
stage and what follows, a stage cut short runs again, and nothing else."""
import os

import pytest

import caffe_mlic
from caffe_mlic.errors import RunError, UsageError
from caffe_mlic.pipeline import stages as st


def chain(tmp_path, calls, settings=None, fail=None):
    """Three stages: a (source.txt -> a.txt), b (a.txt -> b.txt), c (b.txt -> c.txt)."""
    settings = dict(dict(a={'k': 1}, b={'lr': 0.1}, c={}), **(settings or {}))

    def step(name, source, out):
        def run():
            calls.append(name)
            if name == fail:
                raise KeyboardInterrupt     # as a Ctrl-C in the middle of the stage
            (tmp_path / out).write_text((tmp_path / source).read_text() + name + repr(settings[name]))
        return run
    return [st.Stage('a', step('a', 'source.txt', 'a.txt'), settings['a'], [str(tmp_path / 'source.txt')],
                     [str(tmp_path / 'a.txt')]),
            st.Stage('b', step('b', 'a.txt', 'b.txt'), settings['b'], [str(tmp_path / 'a.txt')],
                     [str(tmp_path / 'b.txt')], after=['a']),
            st.Stage('c', step('c', 'b.txt', 'c.txt'), settings['c'], [str(tmp_path / 'b.txt')],
                     [str(tmp_path / 'c.txt')], after=['b'])]


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / 'source.txt').write_text('data ')
    return str(tmp_path)


def test_a_second_run_runs_nothing_and_says_each_stage_is_done(tmp_path, run_dir):
    calls, said = [], []
    assert st.run_stages(run_dir, chain(tmp_path, calls), say=said.append) == ['a', 'b', 'c']
    assert (tmp_path / 'c.txt').read_text() == "data a{'k': 1}b{'lr': 0.1}c{}"
    assert said[0] == 'stage a: to do, running it'
    calls.clear(), said.clear()
    assert st.run_stages(run_dir, chain(tmp_path, calls), say=said.append) == []
    assert calls == [] and said == ['stage a: done', 'stage b: done', 'stage c: done']


def test_a_changed_setting_reruns_its_stage_and_what_follows_and_says_why(tmp_path, run_dir):
    calls, said = [], []
    st.run_stages(run_dir, chain(tmp_path, calls), say=said.append)
    calls.clear(), said.clear()
    st.run_stages(run_dir, chain(tmp_path, calls, settings=dict(b={'lr': 0.01})), say=said.append)
    assert calls == ['b', 'c']
    assert [line for line in said if 'done in' not in line] == [
        'stage a: done', 'stage b: settings changed (lr), running it', 'stage c: follows b, running it']


def test_a_changed_input_or_output_or_code_version_makes_a_stage_stale(tmp_path, run_dir, monkeypatch):
    calls = []
    stages = chain(tmp_path, calls)
    st.run_stages(run_dir, stages, say=lambda _: None)
    (tmp_path / 'source.txt').write_text('other data ')
    assert st.status(run_dir, stages[0]) == st.Status('stale', 'input %s changed' % (tmp_path / 'source.txt'))
    assert [s.name for s, _ in st.plan(run_dir, stages)] == ['a', 'b', 'c']
    st.run_stages(run_dir, stages, say=lambda _: None)
    (tmp_path / 'b.txt').write_text('edited by hand')
    assert st.status(run_dir, stages[1]).why == 'output %s is missing or changed' % (tmp_path / 'b.txt')
    (tmp_path / 'b.txt').unlink()
    assert [s.name for s, _ in st.plan(run_dir, stages)] == ['b', 'c']
    st.run_stages(run_dir, stages, say=lambda _: None)
    monkeypatch.setattr(caffe_mlic, '__version__', '99.0')
    assert st.status(run_dir, stages[2]).state == 'stale'
    assert 'caffe-mlic changed' in st.status(run_dir, stages[2]).why


def test_a_stage_cut_short_runs_again_and_the_stages_before_it_do_not(tmp_path, run_dir):
    calls = []
    st.run_stages(run_dir, chain(tmp_path, calls), say=lambda _: None)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        st.run_stages(run_dir, chain(tmp_path, calls, settings=dict(b={'lr': 0.5}), fail='b'),
                      say=lambda _: None)
    assert calls == ['b']
    # b's old record went before it ran: it is not taken as done with its old output
    assert st.status(run_dir, chain(tmp_path, [])[1]).state == 'to do'
    calls.clear()
    st.run_stages(run_dir, chain(tmp_path, calls, settings=dict(b={'lr': 0.5})), say=lambda _: None)
    assert calls == ['b', 'c']
    assert (tmp_path / 'c.txt').read_text() == "data a{'k': 1}b{'lr': 0.5}c{}"


def test_from_and_only_choose_the_stages_and_a_wrong_name_is_refused(tmp_path, run_dir):
    calls = []
    st.run_stages(run_dir, chain(tmp_path, calls), say=lambda _: None)
    calls.clear()
    st.run_stages(run_dir, chain(tmp_path, calls), start='b', say=lambda _: None)
    assert calls == ['b', 'c']
    calls.clear()
    st.run_stages(run_dir, chain(tmp_path, calls), only='a', say=lambda _: None)
    assert calls == ['a']
    with pytest.raises(UsageError, match="no stage 'd'; the stages are a, b, c"):
        st.plan(run_dir, chain(tmp_path, calls), start='d')


def test_a_stage_that_makes_no_output_is_an_error_and_is_not_recorded(tmp_path, run_dir):
    stages = [st.Stage('a', lambda: None, {}, [], [str(tmp_path / 'never.txt')])]
    with pytest.raises(RunError, match='stage a made no .*never.txt'):
        st.run_stages(run_dir, stages, say=lambda _: None)
    assert st.status(run_dir, stages[0]).state == 'to do'


def test_a_stage_resumes_what_it_left_only_under_the_same_settings(tmp_path, run_dir):
    """A stage cut short keeps what it made (a training's snapshots) for its
    next run under the same settings and inputs; a change of either, or a
    stale record, cleans them first: never a resume from another run."""
    events = []

    def stages(lr, fail=False):
        def run():
            events.append('run')
            if fail:
                raise KeyboardInterrupt
            (tmp_path / 'w.txt').write_text(str(lr))
        return [st.Stage('train', run, {'lr': lr}, [str(tmp_path / 'source.txt')], [str(tmp_path / 'w.txt')],
                         clean=lambda: events.append('clean'))]
    with pytest.raises(KeyboardInterrupt):
        st.run_stages(run_dir, stages(0.1, fail=True), say=lambda _: None)
    assert events == ['clean', 'run']
    assert st.status(run_dir, stages(0.1)[0]) == st.Status('to do', 'cut short, resuming it')
    events.clear()
    said = []
    st.run_stages(run_dir, stages(0.1), say=said.append)
    assert events == ['run'] and said[0] == 'stage train: cut short, resuming it'
    events.clear()
    with pytest.raises(KeyboardInterrupt):
        st.run_stages(run_dir, stages(0.2, fail=True), say=lambda _: None)
    assert events == ['clean', 'run']
    events.clear()
    st.run_stages(run_dir, stages(0.3), say=lambda _: None)      # cut short under 0.2: not resumed
    assert events == ['clean', 'run']
    assert not os.path.exists(st.started_path(run_dir, 'train'))


def test_files_known_by_size_and_time_make_a_stage_stale_when_one_is_rewritten(tmp_path, run_dir):
    """A dataset's images (Files): not read at each status, yet an image
    replaced in place, added or removed reruns the stage."""
    images = tmp_path / 'images'
    (images / 'sub').mkdir(parents=True)
    (images / 'a.png').write_bytes(b'aaaa')
    (images / 'sub' / 'b.png').write_bytes(b'bb')
    calls = []
    stages = chain(tmp_path, calls)
    stages[0] = stages[0]._replace(inputs=list(stages[0].inputs) + [st.Files('images', [str(images)])])
    st.run_stages(run_dir, stages, say=lambda _: None)
    assert st.status(run_dir, stages[0]).state == 'done'
    before = os.stat(images / 'sub' / 'b.png').st_mtime_ns
    (images / 'sub' / 'b.png').write_bytes(b'cc')       # same size: its time tells
    os.utime(images / 'sub' / 'b.png', ns=(before + 10 ** 9, before + 10 ** 9))
    assert st.status(run_dir, stages[0]) == st.Status(
        'stale', 'the images changed (a file added, removed or rewritten)')
    st.run_stages(run_dir, stages, say=lambda _: None)
    (images / 'c.png').write_bytes(b'')
    assert st.status(run_dir, stages[0]).state == 'stale'
    assert st.listed_files(str(tmp_path / 'none.txt')) == []
    (tmp_path / 'list.txt').write_text('top/a.tif gt/a.tif\nimg.jpg 1 0 1\n')
    assert st.listed_files(str(tmp_path / 'list.txt'), '/r') == ['/r/top/a.tif', '/r/gt/a.tif', '/r/img.jpg']


def test_a_fifo_among_a_runs_records_or_stage_files_is_an_error_not_a_hang(tmp_path):
    """A FIFO at RUN/.stages/system hung `run --status`, `run --check` and
    `report`; one among a stage's inputs or outputs hung `run` (pass 38b
    S1): the system is then told by the layout, and a digest of a FIFO is
    an error naming it."""
    import os
    from caffe_mlic.pipeline import runner, stages
    from tests.faults import input_errors_beside_a_fifo
    (tmp_path / stages.RECORDS).mkdir()
    system = tmp_path / stages.RECORDS / runner.SYSTEM_FILE
    os.mkfifo(str(system))
    found = []
    assert input_errors_beside_a_fifo(system, lambda: found.append(runner.folder_system(str(tmp_path)))) == []
    assert found == [None]
    # report's own reading of it hung still (pass 39b S1): one reader now, in report.layout
    from caffe_mlic.report import layout
    assert input_errors_beside_a_fifo(system, lambda: found.append(layout.system_of(str(tmp_path)))) == []
    assert found == [None, None]
    (tmp_path / 'out').mkdir()
    fifo = tmp_path / 'out' / 'x.png'
    os.mkfifo(str(fifo))
    assert input_errors_beside_a_fifo(fifo, lambda: stages.file_digest(str(tmp_path / 'out'))) == [
        '[Errno 22] not a regular file (a device, FIFO or folder): %r' % str(fifo)]


def test_a_chains_log_of_another_kind_is_named_never_waited_on(tmp_path):
    """A FIFO at seed2/fcn/log.txt, put there while seed 1 trained, hung
    `run` when seed 2's chain began, and every rerun (pass 48c S4). The log
    is opened without waiting and appended to only as a regular file."""
    import socket
    from caffe_mlic.pipeline import runner
    log = tmp_path / 'log.txt'
    fd = runner._open_chain_log(str(log))
    os.write(fd, b'first\n')
    os.close(fd)
    fd = runner._open_chain_log(str(log))
    os.write(fd, b'second\n')
    os.close(fd)
    assert log.read_text() == 'first\nsecond\n'
    os.mkfifo(str(tmp_path / 'fifo.txt'))
    (tmp_path / 'zero.txt').symlink_to('/dev/zero')
    (tmp_path / 'folder.txt').mkdir()
    (tmp_path / 'loop.txt').symlink_to(tmp_path / 'loop.txt')
    held = socket.socket(socket.AF_UNIX)
    held.bind(str(tmp_path / 'socket.txt'))
    reader = os.open(str(tmp_path / 'fifo.txt'), os.O_RDONLY | os.O_NONBLOCK)     # (a FIFO with a reader too)
    try:
        for name, kind in (('fifo', 'a FIFO'), ('zero', 'a device'), ('folder', 'a folder'), ('loop', 'a symlink loop'),
                           ('socket', 'a socket')):
            path = str(tmp_path / (name + '.txt'))
            with pytest.raises(RunError) as e:
                runner._open_chain_log(path)
            assert str(e.value) == "%s is %s, where the chain's log is kept: move it away" % (path, kind)
        os.close(reader)
        with pytest.raises(RunError, match='is a FIFO, where'):
            runner._open_chain_log(str(tmp_path / 'fifo.txt'))
    finally:
        held.close()


def test_the_reports_files_replace_what_was_put_at_their_names(tmp_path):
    """A FIFO at RUN/results.json hung the report stage; settings.json as
    a link to /dev/zero swallowed the run's settings (pass 48c S3, M2): a
    run's own files are replaced, never written through."""
    from caffe_mlic.report import publish
    os.mkfifo(str(tmp_path / 'results.json'))
    (tmp_path / 'report.html').symlink_to('/dev/zero')
    page = publish(str(tmp_path), [], {'a': 1}, 'title', '<p>body</p>')
    assert (tmp_path / 'results.json').is_file() and not (tmp_path / 'report.html').is_symlink()
    assert '"a": 1' in (tmp_path / 'results.json').read_text() and 'body' in open(page).read()


CHAIN_STOPPED = r'''
import os, signal, sys, time
from multiprocessing import Pipe
from caffe_mlic.fileio import atomic_write
from caffe_mlic.pipeline import runner

def stage(path, overrides, key, planned):      # a stage writing an output when SIGTERM comes
    with atomic_write(os.path.join(sys.argv[1], 'scores.json')) as f:
        f.write('{')
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

runner._run_chain = stage
ours, theirs = Pipe()
pid = os.fork()
if pid == 0:
    runner._chain_main('cfg.toml', [], 'seed1/fcn', [], theirs)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status), ours.recv() if ours.poll(5) else None)
'''


def test_a_stage_stopped_by_sigterm_removes_what_it_was_writing(tmp_path):
    """Outside training a chain's process had SIGTERM's default action: a
    stop during evaluation left `.scasnet.json.<pid>-....tmp` in the eval
    folder (pass 60b S2). It unwinds as a Ctrl-C does now."""
    import subprocess
    import sys
    script = tmp_path / 'chain.py'
    script.write_text(CHAIN_STOPPED)
    res = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "143 ('seed1/fcn: stopped by SIGTERM; run the config again to go on', 143)", res
    assert sorted(os.listdir(tmp_path)) == ['chain.py']
