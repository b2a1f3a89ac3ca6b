"""The command line's one error policy, walked over every registered subcommand."""
import os
import subprocess
import sys

import pytest

from caffe_mlic import cli, commands
from caffe_mlic.errors import InputError, Problem, RunError, UsageError, format_problems

CLI = [sys.executable, '-m', 'caffe_mlic.cli']


def _leaf_commands():
    """[(argv prefix, prog)] of every runnable command, nested ones included."""
    import argparse
    out = []

    def walk(parser, prefix):
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append((prefix, parser.prog))
        for action in subs:
            for name, sub in action.choices.items():
                walk(sub, prefix + [name])
    walk(cli.build_parser(), [])
    return out


LEAVES = _leaf_commands()


def test_registry_lists_every_command_module():
    here = os.path.dirname(commands.__file__)
    modules = sorted(f[:-3] for f in os.listdir(here) if f.endswith('.py')
                     and f not in ('__init__.py', 'argtypes.py'))
    # A command's module is its name with '_' for '-' (plot-log: plot_log.py).
    assert sorted(c.replace('-', '_') for c in commands.COMMANDS) == modules
    # every command has its leaves (subcommands, or itself), in the registry's order
    assert list(dict.fromkeys(p[0] for p, _ in LEAVES)) == list(commands.COMMANDS)
    assert sorted({p[1] for p, _ in LEAVES if p[0] == 'scasnet'}) == ['infer', 'netgen', 'report']
    for name, module in commands.modules():
        nested = [p for p, _ in LEAVES if p[0] == name and len(p) > 1]
        assert module.HELP and callable(module.add_arguments)
        assert callable(getattr(module, 'run', None)) != bool(nested), name


@pytest.mark.parametrize('argv, prog', LEAVES, ids=[' '.join(a) for a, _ in LEAVES])
def test_bad_arguments_exit_2_with_one_line_naming_the_command(argv, prog, capsys):
    bad = ['bogus-action'] if argv == ['caffe'] else ['--no-such-option']
    assert cli.main(argv + bad) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(prog + ': '), lines
    assert 'Traceback' not in captured.err and captured.out == ''


@pytest.mark.parametrize('rank_var', ['OMPI_COMM_WORLD_RANK', 'PMIX_RANK', 'PMI_RANK'])
def test_under_mpirun_a_usage_error_is_said_by_the_first_rank_alone(monkeypatch, capsys, tmp_path, rank_var):
    """Every rank reads the same command line: rank 0 says the usage error,
    the others only exit 2; an error while working is said by every rank
    (it may be the rank's own)."""
    for rank, said in ((0, True), (1, False), (3, False)):
        monkeypatch.setenv(rank_var, str(rank))
        assert cli.main(['train', '--no-such-option']) == 2
        assert bool(capsys.readouterr().err) == said, rank
        assert cli.main(['train', str(tmp_path / 'missing.prototxt')]) == 1
        assert 'missing.prototxt' in capsys.readouterr().err


def test_missing_command_and_subcommand_exit_2(capsys):
    assert cli.main([]) == 2
    assert capsys.readouterr().err.startswith('caffe-mlic: ')
    assert cli.main(['datalist']) == 2
    assert capsys.readouterr().err.startswith('caffe-mlic datalist: ')


def test_the_real_console_command_follows_the_policy(tmp_path):
    res = subprocess.run(CLI + ['netgen', '-o', str(tmp_path), '--classes', 'many'],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        "caffe-mlic netgen: argument --classes: invalid int value: 'many' "
        "(see `caffe-mlic netgen --help`)"]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('argv, needle', [
    (['netgen', '-o', '{tmp}', '--classes', '0'], 'argument --classes: num_classes must be a positive integer'),
    (['netgen', '-o', '{tmp}', '--proposals', '-3'], 'argument --proposals: bbox_num must be'),
    (['netgen', '-o', '{tmp}', '--teacher-temperature', '-1'], 'argument --teacher-temperature: teacher_temperature must be a positive'),
    (['netgen', '-o', '{tmp}', '--set', 'workers=-1'], 'argument --workers: workers must be an integer >= 0'),
    (['netgen', '-o', '{tmp}', '--set', 'nope=1'], 'argument --set: expected FIELD=VALUE'),
    (['netgen', '-o', '{tmp}', '--max-iter', '0'], 'argument --max-iter: must be an integer from 1 to 2147483647'),
    (['scasnet', 'netgen', '-o', '{tmp}', '--max-iter', '2147483648'],
     'argument --max-iter: must be an integer from 1 to 2147483647'),
    (['scasnet', 'netgen', '-o', '{tmp}', '--palette', '/nonexistent'],
     'argument --palette: /nonexistent: cannot read palette file'),
    (['scasnet', 'netgen', '-o', '{tmp}', '--random-seed', '9223372036854775808'],
     'argument --random-seed: must be an integer from 0 to 9223372036854775807'),
    (['synth', '{tmp}/s', '--classes', '9'], 'argument --classes: n_classes must be in 2..8'),
    (['proposals', '{tmp}', '-o', '{tmp}/p', '--shard', '3/2'], 'argument --shard: expected I/N'),
    (['surgery', '--net', 'n', '--from', 'nope:x', '-o', 'o'], 'argument --from: expected MAPPING:MODEL'),
])
def test_library_parameter_errors_name_the_option_that_sets_them(tmp_path, capsys, argv, needle):
    argv = [a.replace('{tmp}', str(tmp_path)) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert not (tmp_path / 'wsddn').exists() and not (tmp_path / 's').exists()


def test_failures_while_working_exit_1(tmp_path, capsys):
    net = tmp_path / 'net.prototxt'
    net.write_text('layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 1 } } }\n')
    model = tmp_path / 'm.caffemodel'
    model.write_bytes(b'')
    (tmp_path / 'empty').mkdir()
    cases = [
        (['surgery', '--net', str(tmp_path / 'missing.prototxt'), '--from', 'same:%s' % model, '-o',
          str(tmp_path / 'o.caffemodel')], 'missing.prototxt: cannot read the net prototxt'),
        (['eval', 'cls', '--net', str(net), '--weights', str(tmp_path / 'w.caffemodel'), '--blob', 'a'],
         'w.caffemodel: no such file'),
        # a folder, FIFO or device given as weights is named as such, not "no such file"
        (['eval', 'cls', '--net', str(net), '--weights', str(tmp_path / 'empty'), '--blob', 'a'],
         'empty: not a regular file (a device, FIFO or folder)'),
        (['surgery', '--net', str(net), '--from', 'same:/dev/zero', '-o', str(tmp_path / 'o.caffemodel')],
         '/dev/zero: not a regular file (a device, FIFO or folder)'),
        (['classify', '--net', str(net), '--weights', str(tmp_path / 'empty'), str(tmp_path / 'empty')],
         'empty: not a regular file (a device, FIFO or folder)'),
        (['speed', '--teacher', str(net), '/dev/null', '--student', str(net), str(model), str(tmp_path)],
         '/dev/null: not a regular file (a device, FIFO or folder)'),
        (['eval', 'cls', '--net', str(net), '--weights', str(model), '--blob', 'a'],
         'has no TEST-phase MultiLabelProposalData layer'),
        (['proposals', str(tmp_path / 'empty'), '-o', str(tmp_path / 'p'), '-q'], 'no image files in'),
    ]
    for argv, needle in cases:
        assert cli.main(argv) == 1, argv
        err = capsys.readouterr().err
        prog = cli.build_parser().parse_known_args(argv)[0].parser.prog
        assert err.startswith(prog + ': ') and needle in err, err
        assert 'Traceback' not in err


def test_an_error_line_shows_control_characters_and_bytes_that_are_not_utf8_escaped(tmp_path, capsys):
    """A file name with a terminal escape recoloured the terminal through
    the error line, and bytes that are not UTF-8 were shown as \\udcNN
    (pass 36b M3, M9): both as \\xNN, and the line stays one line."""
    net = tmp_path / 'net.prototxt'
    net.write_text('layer { name: "a" type: "Input" top: "a" input_param { shape { dim: 1 } } }\n')
    weights = os.path.join(str(tmp_path), os.fsdecode(b'w\x1b[31m\r\xff\xc2\x85.caffemodel'))
    assert cli.main(['eval', 'cls', '--net', str(net), '--weights', weights, '--blob', 'a']) == 1
    err = capsys.readouterr().err
    assert err.endswith('w\\x1b[31m\\x0d\\xff\\x85.caffemodel: no such file\n'), err
    assert err.count('\n') == 1 and '\x1b' not in err and 'udc' not in err


def test_prototxt_syntax_error_names_file_and_line(tmp_path, capsys):
    net = tmp_path / 'broken.prototxt'
    net.write_text('layer {\n  name: "a"\n  type: Input"\n}\n')
    model = tmp_path / 'm.caffemodel'
    model.write_bytes(b'')
    assert cli.main(['surgery', '--net', str(net), '--from', 'same:%s' % model, '-o',
                     str(tmp_path / 'o.caffemodel')]) == 1
    err = capsys.readouterr().err
    assert '%s:3:' % net in err, err


def test_expected_errors_get_no_traceback_and_bugs_keep_theirs(monkeypatch, capsys):
    from caffe_mlic.commands import doctor

    def raiser(exc):
        def run(args):
            raise exc
        return run
    for exc, code, message in (
            (InputError('x.txt:3: bad'), 1, 'x.txt:3: bad'),
            (RunError('worker died'), 1, 'worker died'),
            (UsageError('no'), 2, 'no'),
            (OSError(28, 'No space left on device', 'out.npz'), 1, 'No space left on device: out.npz'),
            # (numpy's words; they were a traceback, pass 59b S3)
            (MemoryError('Unable to allocate 1.00 GiB for an array with shape (6, 64, 700000)'), 1,
             'out of memory (Unable to allocate 1.00 GiB for an array with shape (6, 64, 700000))'),
            (MemoryError(), 1, 'out of memory'),
            (KeyboardInterrupt(), 130, 'interrupted')):
        monkeypatch.setattr(doctor, 'run', raiser(exc))
        assert cli.main(['doctor']) == code
        assert capsys.readouterr().err == 'caffe-mlic doctor: %s\n' % message
    monkeypatch.setattr(doctor, 'run', raiser(ZeroDivisionError('a bug')))
    with pytest.raises(ZeroDivisionError):
        cli.main(['doctor'])


def test_problems_print_one_way():
    one = Problem('a.txt', 3, 'field 2 (label 0)', "'x' is not a number")
    assert str(one) == "a.txt:3: field 2 (label 0): 'x' is not a number"
    assert str(Problem('a.txt', None, None, 'empty')) == 'a.txt: empty'
    assert str(Problem('a.xml', None, '<size>', 'missing')) == 'a.xml: <size>: missing'
    many = [Problem('a.txt', i, None, 'bad') for i in range(1, 26)]
    text = format_problems(many, 'datalist', max_listed=10)
    assert text.splitlines()[0] == '25 problems in datalist a.txt:'
    assert text.splitlines()[1] == '  a.txt:1: bad' and len(text.splitlines()) == 12
    assert text.endswith('... and 15 more problems')
    err = InputError(problems=many[:2], what='annotations')
    assert str(err).startswith('2 problems in annotations a.txt:')
    assert err.problems == many[:2] and err.exit_code == 1 and isinstance(err, ValueError)


def test_caffe_is_kept_quiet_unless_the_user_asks(monkeypatch):
    """Errors only (no "Logging before InitGoogleLogging", no upgrade notes
    around our one-line messages); a GLOG_minloglevel the user set wins."""
    import os
    monkeypatch.delenv('GLOG_minloglevel', raising=False)
    assert cli.main(['no-such-command']) == 2
    assert os.environ['GLOG_minloglevel'] == '2'
    monkeypatch.setenv('GLOG_minloglevel', '0')
    assert cli.main(['no-such-command']) == 2
    assert os.environ['GLOG_minloglevel'] == '0'


def test_a_message_to_a_closed_stderr_keeps_the_exit_code(monkeypatch):
    import io
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr('sys.stderr', closed)
    assert cli.main(['no-such-command']) == 2


def test_a_command_started_with_stdout_or_stderr_closed_runs(tmp_path):
    """`cmd >&-` (no sys.stdout in Python: a traceback at the first line);
    /dev/null is put there, and the next file opened never takes fd 1 or 2."""
    import subprocess
    import sys
    for redirect in ('>&-', '2>&-'):
        res = subprocess.run(['bash', '-c', 'exec "$@" %s' % redirect, 'x', sys.executable, '-m', 'caffe_mlic.cli',
                              'doctor'], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert res.returncode == 0 and 'Traceback' not in res.stdout + res.stderr, (redirect, res.stderr)


def test_opencv_warnings_are_kept_off_the_terminal_unless_asked(tmp_path):
    """OpenCV's "[ WARN ] ... can not handle images with 32-bit samples"
    came before the one-line error about the image (pass 36b M4)."""
    import numpy as np
    from PIL import Image
    image = tmp_path / 'float.tif'
    Image.fromarray(np.zeros((8, 8), np.float32), mode='F').save(str(image))
    code = ('import sys, numpy as np\n'
            'from caffe_mlic import cli\n'
            'try:\n    cli.main(["eval", "--help"])\nexcept SystemExit:\n    pass\n'
            'import cv2\n'
            'cv2.imdecode(np.fromfile(sys.argv[1], np.uint8), cv2.IMREAD_COLOR)\n')
    env = {k: v for k, v in os.environ.items() if k != 'OPENCV_LOG_LEVEL'}
    quiet = subprocess.run([sys.executable, '-c', code, str(image)],
                           capture_output=True, text=True, env=env, timeout=120)
    assert quiet.returncode == 0 and 'WARN' not in quiet.stderr, quiet.stderr
    asked = subprocess.run([sys.executable, '-c', code, str(image)],
                           capture_output=True, text=True, env=dict(env, OPENCV_LOG_LEVEL='WARNING'), timeout=120)
    assert 'WARN' in asked.stderr and '32-bit samples' in asked.stderr, asked.stderr


def test_a_heading_of_problems_in_many_files_counts_them_in_their_folder():
    """datalist build on an empty proposals folder headed its 96 problems
    with the 96 paths, one line of 2,700 characters (pass 45b M8)."""
    many = [Problem('props/%06d.npz' % i, None, None, 'not found') for i in range(96)]
    assert format_problems(many, 'datalist build').splitlines()[0] == \
        '96 problems in datalist build (96 files in props):'
    assert format_problems(many).splitlines()[0] == '96 problems in 96 files in props:'
    few = many[:3]
    assert format_problems(few).splitlines()[0] == \
        '3 problems in props/000000.npz, props/000001.npz, props/000002.npz:'
    mixed = [Problem('/abs/a.txt', None, None, 'x'), Problem('rel/b.txt', None, None, 'x'),
             Problem('rel/c.txt', None, None, 'x'), Problem('rel/d.txt', None, None, 'x')]
    assert format_problems(mixed).splitlines()[0] == '4 problems in /abs/a.txt, ... (4 files):'
