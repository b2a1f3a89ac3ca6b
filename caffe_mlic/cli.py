"""The `caffe-mlic` command: one entry point, one error policy.

Subcommands are listed in ``caffe_mlic.commands`` (the registry). ``main``
is the only place where an error becomes a message and an exit status:

- 0: done;
- 2: the command line is wrong (``UsageError``, argparse's errors); nothing
  was done;
- 1: the command ran and failed: an input has problems (``InputError``,
  listed as file:line: field: message), or something failed while working
  (``RunError``, an OSError such as a full disk, a MemoryError);
- 130: interrupted (Ctrl-C).

Each message is ``caffe-mlic <command>: <message>`` on stderr, without a
traceback. Any other exception is a bug: it keeps its traceback.
"""
import argparse
import contextlib
import signal
import sys

from caffe_mlic.errors import MlicError, UsageError, os_error_text
from caffe_mlic.processes import Stopped, signals_raised_after

PROG = 'caffe-mlic'
GLOG_DEFAULT_MARK = 'CAFFE_MLIC_GLOG_DEFAULT'


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting,
    so that main reports it like every other error: on one line."""

    def error(self, message):
        err = UsageError('%s (see `%s --help`)' % (message, self.prog))
        err.prog = self.prog
        raise err


def build_parser(only=None):
    """The whole parser, or with ``only`` the parser of that one command: a
    command line that names its command imports only that command's modules
    (each command's libraries cost up to a second to import)."""
    from caffe_mlic import commands
    parser = ArgumentParser(prog=PROG, description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for name, module in commands.modules(only):
        p = sub.add_parser(name, help=module.HELP,
                           description=getattr(module, 'DESCRIPTION', module.__doc__),
                           formatter_class=getattr(module, 'FORMATTER',
                                                   argparse.RawDescriptionHelpFormatter),
                           add_help=not getattr(module, 'PASS_THROUGH', False))
        module.add_arguments(p)
        # a command with subcommands has no run of its own: theirs replace it
        p.set_defaults(run=getattr(module, 'run', None), parser=p)
    return parser


def nested_parser(words, command):
    """The parser of a nested subcommand (commands.NESTED): `caffe-mlic proposals import`."""
    p = ArgumentParser(prog=' '.join((PROG,) + tuple(words)), description=command.DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_arguments(p)
    p.set_defaults(run=command.run, parser=p)
    return p


def _option_for(parser, dest):
    """The option string that sets ``dest`` in parser (or a sub-parser of it)."""
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            return '/'.join(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found = _option_for(sub, dest)
                if found:
                    return found
    return None


def _launch_rank():
    """This process's rank in an MPI launch (0 outside one)."""
    import os
    ranks = [os.environ.get(name, '') for name in ('OMPI_COMM_WORLD_RANK', 'PMIX_RANK', 'PMI_RANK')]
    return next((int(r) for r in ranks if r.isascii() and r.isdigit()), 0)


def _report(prog, message):
    from caffe_mlic.errors import terminal_text
    try:
        sys.stderr.write('%s: %s\n' % (prog, terminal_text(message)))
        sys.stderr.flush()
    except (OSError, ValueError):   # stderr is gone (a dropped ssh session): the exit code remains
        pass


def _reopen_closed_std_streams():
    """A command started with stdout or stderr closed (`cmd >&-`) gets
    /dev/null there: Python would have no sys.stdout (a traceback at the
    first line), and the next file opened would take descriptor 1 or 2, so
    a library's output could land in it."""
    import io
    import os
    for fd, name in ((1, 'stdout'), (2, 'stderr')):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, io.TextIOWrapper(io.FileIO(fd, 'w', closefd=False), line_buffering=True))


def _stdout_reader_gone():
    """True when stdout is a pipe whose reader closed it; stdout is then
    pointed at /dev/null, so that the exit's flush raises nothing more."""
    import os
    import select
    try:
        poller = select.poll()
        poller.register(1, 0)
        gone = any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False
    if gone:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    return gone


def main(argv=None):
    import os
    _reopen_closed_std_streams()
    if argv is None:        # the program (not a caller in this process): its exit stays quiet
        import atexit
        atexit.register(_last_at_exit)
    from caffe_mlic.caffe.env import caffe_checks_end_cleanly
    names = []      # the command, once known, for a Caffe CHECK's line
    with caffe_checks_end_cleanly(lambda: names[-1] if names else PROG):
        return _main(argv, names)


def _last_at_exit():
    """Run last of the atexit hooks (registered first): the stop signals,
    dropped since the outcome was said (processes.ending), are ignored from
    here: Python's finalization puts back their default action, and a
    signal in those last milliseconds ended the process with it instead of
    the exit status said."""
    from caffe_mlic import processes
    if processes._ENDING:
        for signum in processes.STOP_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)


def _main(argv, names):
    import os
    # Caffe's INFO and WARNING lines (net setup, "Logging before
    # InitGoogleLogging", upgrade notes) would surround our own messages;
    # quiet them before anything imports caffe, unless the user asked.
    if 'GLOG_minloglevel' not in os.environ:
        os.environ['GLOG_minloglevel'] = '2'
        os.environ[GLOG_DEFAULT_MARK] = '1'     # ours, not the user's: `caffe` shows the binary's log
    # OpenCV's own warnings ("[ WARN:0@0.27] ... TIFFRGBAImageOK: Sorry, can not
    # handle images with 32-bit samples") precede the error we say about the
    # image; its level is read when cv2 is imported.
    os.environ.setdefault('OPENCV_LOG_LEVEL', 'ERROR')
    from caffe_mlic.processes import (ending, raise_swallowed_signal, received_stop, signals_remembered,
                                      stop_behind)
    program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    prog, parser, parsed = PROG, None, False
    # SIGINT, SIGTERM and SIGHUP unwind the command (KeyboardInterrupt, Stopped); one a library swallows
    # ends it at its next output; once its outcome is decided, one more is dropped (as the program, until
    # it exits: a traceback from the report line or an atexit hook otherwise)
    with signals_remembered(kept_after_ending=program):
        try:
            with signals_raised_after():      # a Ctrl-C while the registry imports: acted on, never lost
                from caffe_mlic import commands
            if argv and argv[0] in commands.PASS_THROUGH:
                # Everything after the command belongs to another program, options
                # included, which argparse would try to read.
                prog = '%s %s' % (PROG, argv[0])
                names.append(prog)
                code = commands.module(argv[0]).run_argv(argv[1:]) or 0
                ending()
                return code
            if argv and argv[0] in commands.COMMANDS:
                prog = '%s %s' % (PROG, argv[0])    # (a stop signal while its modules load: said as its)
            with signals_raised_after():      # building the parser imports every command's modules
                found = commands.nested(argv)
                if found:
                    parser = nested_parser(*found)
                    args, extra = parser.parse_known_args(argv[len(found[0]):])
                else:
                    only = [argv[0]] if argv and argv[0] in commands.COMMANDS else None
                    args, extra = build_parser(only).parse_known_args(argv)
            prog, parser = args.parser.prog, args.parser
            names.append(prog)
            if extra:  # say it as the subcommand, which is where they were given
                parser.error('unrecognized arguments: %s' % ' '.join(extra))
            parsed = True
            code = args.run(args) or 0
            raise_swallowed_signal()
            ending()
            return code
        except BaseException as caught:
            ending()
            # An error once a stop signal came is said as that signal: two at once can make Python run the
            # second's handler with the first's exception set, failing as a SystemError that a catch-all
            # turned into an error of ours ("module cannot be imported"); a swallowed one, as at an output.
            e = stop_behind(caught) or (received_stop() if isinstance(caught, Exception) else None) or caught
            if isinstance(e, MlicError):
                message = str(e)
                prog = getattr(e, 'prog', prog)
                flag = _option_for(parser, e.param) if parser and getattr(e, 'param', None) else None
                if flag:
                    message = 'argument %s: %s' % (flag, message)
                if parsed or _launch_rank() == 0:   # (every rank of an MPI launch reads the same command line)
                    _report(prog, message)
                return e.exit_code
            if isinstance(e, BrokenPipeError):
                if _stdout_reader_gone():   # `cmd | head -1`: what it had to say was not wanted; quiet, as SIGPIPE
                    return 128 + 13
                _report(prog, os_error_text(e))
                return 1
            if isinstance(e, OSError):  # the disk, permissions, a vanished file: not a bug
                _report(prog, os_error_text(e))
                return 1
            if isinstance(e, MemoryError):      # (an allocation the machine cannot give: a fact, not a bug)
                _report(prog, 'out of memory%s' % (' (%s)' % str(e).strip().splitlines()[0] if str(e).strip() else ''))
                return 1
            if isinstance(e, KeyboardInterrupt):
                _report(prog, 'interrupted')
                return 130
            if isinstance(e, Stopped):        # SIGTERM, SIGHUP: unwound as a Ctrl-C is (no temp file left)
                _report(prog, 'stopped by %s' % signal.Signals(e.signum).name)
                return 128 + e.signum
            raise

if __name__ == '__main__':
    sys.exit(main())
