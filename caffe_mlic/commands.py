"""Subcommands beyond `caffe` and `doctor`; each registers itself here."""


def register(sub):
    """Add the project's subcommands to the argparse subparsers ``sub``."""
    from caffe_mlic import bench
    bench.register(sub)
