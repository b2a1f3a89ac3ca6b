"""Subcommands beyond `caffe` and `doctor`: each module has register(subparsers)."""
from caffe_mlic import bench, datalist_cli, evaluate, netgen, proposals, surgery, synth


def register(sub):
    for module in (synth, proposals, datalist_cli, netgen, surgery, evaluate, bench):
        module.register(sub)
