"""The `caffe-mlic` command: one entry point, one subcommand per job."""
import argparse
import os
import sys

from caffe_mlic import caffe_env


def cmd_caffe(args):
    """Run the caffe binary with PYTHONPATH/LD_LIBRARY_PATH set for our layers."""
    try:
        binary = caffe_env.caffe_binary()
        env = caffe_env.binary_environment()
    except caffe_env.CaffeNotFound as e:
        sys.exit('caffe-mlic caffe: %s' % e)
    os.execve(binary, [binary] + args.caffe_args, env)


def cmd_doctor(args):
    from caffe_mlic import doctor
    return doctor.run()


def build_parser():
    parser = argparse.ArgumentParser(prog='caffe-mlic', description=__doc__)
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    p = sub.add_parser('caffe', help='run the caffe binary with our Python layers importable',
                       add_help=False)
    p.add_argument('caffe_args', nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_caffe)

    p = sub.add_parser('doctor', help='check the Caffe installation and Python libraries')
    p.set_defaults(func=cmd_doctor)

    from caffe_mlic import commands
    commands.register(sub)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['caffe']:
        # Everything after `caffe` belongs to the binary, options included,
        # which argparse.REMAINDER would not pass through when it leads.
        return cmd_caffe(argparse.Namespace(caffe_args=argv[1:]))
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == '__main__':
    sys.exit(main())
