"""Check that everything is in place to run our nets: where Caffe is, whether
it has Python layers, the library versions; exit status 1 if something is missing."""

HELP = 'check the Caffe installation and Python libraries'


def add_arguments(parser):
    pass


def run(args):
    from caffe_mlic.caffe import doctor
    return doctor.run()
