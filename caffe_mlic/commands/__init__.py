"""The registry of `caffe-mlic` subcommands, in the order --help lists them.

A subcommand is a module of this package with

    HELP = 'one line for `caffe-mlic --help`'
    def add_arguments(parser): ...     # argparse options; the module docstring is the description
    def run(args): ...                 # returns an exit status (None: 0)

Errors are raised, never printed: `caffe_mlic.cli.main` reports them (see
`caffe_mlic.errors`). To add a subcommand, write its module and add its name
to COMMANDS (nested subcommands: ``subcommands`` below; NESTED for those of
a command that takes positional arguments itself). A module listed in
PASS_THROUGH gets its raw arguments in ``run_argv(argv)`` instead (`caffe`
hands them to the binary).
"""
import importlib

COMMANDS = ('caffe', 'doctor', 'synth', 'proposals', 'datalist', 'netgen', 'surgery', 'eval',
            'train', 'plot-log', 'detect', 'classify', 'speed', 'report', 'scasnet', 'run', 'bench')
PASS_THROUGH = ('caffe',)
# Subcommands of a command whose own positional arguments would swallow their
# name (`proposals IMAGES...` and `proposals import FORMAT FILE...`): the
# words that start the command line select them before argparse reads it.
# The value names the attribute of the command's module that is the subcommand
# (DESCRIPTION, add_arguments and run, as a command module has).
NESTED = {('proposals', 'import'): 'ImportCommand'}


def module(name):
    """The module of command ``name`` (plot-log: plot_log.py)."""
    return importlib.import_module('caffe_mlic.commands.' + name.replace('-', '_'))


def nested(argv):
    """(the words that name it, the subcommand) of the NESTED subcommand argv starts with, or None."""
    key = tuple(argv[:2])
    if key not in NESTED:
        return None
    return key, getattr(module(key[0]), NESTED[key])


def modules(names=None):
    return [(name, module(name)) for name in (names or COMMANDS)]


def subcommands(parser):
    """Give a command subcommands: returns add(name, run, help, description=None),
    which adds one and returns its parser. The command's own run is then never
    called (argparse requires a subcommand)."""
    import argparse
    sub = parser.add_subparsers(dest='subcommand', metavar='SUBCOMMAND')
    sub.required = True

    def add(name, run, help, description=None):
        p = sub.add_parser(name, help=help, description=description or help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(run=run, parser=p)
        return p
    return add
