"""A `caffe-mlic` command run inside the pipeline's process: the command's
own parser reads the words a user would type and its own ``run`` does the
work, so a stage computes exactly what the command computes (no second
code path, no shelling out)."""
import contextlib
import os


def command(*words):
    """Run `caffe-mlic WORDS...` in this process; its errors are raised
    (UsageError, InputError, RunError...), as the command raises them."""
    from caffe_mlic import cli, commands
    argv = [str(w) for w in words]
    found = commands.nested(argv)
    if found:
        parser = cli.nested_parser(*found)
        args = parser.parse_args(argv[len(found[0]):])
    else:
        args = cli.build_parser([argv[0]]).parse_args(argv)
    return args.run(args)


@contextlib.contextmanager
def working_folder(path):
    """Commands whose relative paths (a solver's net and snapshot_prefix, as
    netgen writes them) are read from ``path``, as when typed there. A
    stage's process runs one stage at a time, so changing the process's
    folder is safe."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)
