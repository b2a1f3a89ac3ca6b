"""Caffe's own writes of weights and snapshots never go through a link
(tools/caffe-patches/0005-snapshots-never-through-links.patch): a symlink
or a hard link at the name is replaced, the file it shared left as it was;
a file of that name alone is written in place; a device stays a device."""
import os
import stat

import pytest

NET = ('input: "x"\ninput_shape { dim: 2 dim: 3 }\n'
       'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" '
       'inner_product_param { num_output: 4 weight_filler { type: "gaussian" std: 1 } } }\n')


@pytest.fixture
def net(caffe, tmp_path):
    (tmp_path / 'net.prototxt').write_text(NET)
    return caffe.Net(str(tmp_path / 'net.prototxt'), caffe.TEST)


@pytest.mark.parametrize('ext', ['caffemodel', 'h5'])
def test_saved_weights_replace_a_link_and_keep_what_it_linked_to(net, tmp_path, ext):
    save = net.save_hdf5 if ext == 'h5' else net.save
    victim = tmp_path / ('victim.' + ext)
    victim.write_text('another run\'s file')
    os.symlink(victim.name, str(tmp_path / ('sym.' + ext)))
    os.link(str(victim), str(tmp_path / ('hard.' + ext)))
    save(str(tmp_path / ('sym.' + ext)))
    save(str(tmp_path / ('hard.' + ext)))
    assert victim.read_text() == 'another run\'s file' and victim.stat().st_nlink == 1
    for name in ('sym.', 'hard.'):
        path = tmp_path / (name + ext)
        assert not path.is_symlink() and path.stat().st_nlink == 1 and path.stat().st_size > 100
    alone = tmp_path / ('alone.' + ext)
    alone.write_bytes(b'x' * 100000)
    inode = alone.stat().st_ino
    save(str(alone))
    assert alone.stat().st_ino == inode and alone.stat().st_size == (tmp_path / ('sym.' + ext)).stat().st_size
    save('/dev/null')
    assert stat.S_ISCHR(os.stat('/dev/null').st_mode)
    if ext == 'h5':
        return      # (HDF5 itself cannot create a file through /proc/self/fd/N)
    # a link that cannot be removed is written through, as before: /proc/self/fd/N (a memory file)
    fd = os.memfd_create('weights')
    try:
        save('/proc/self/fd/%d' % fd)
        assert os.fstat(fd).st_size == alone.stat().st_size
    finally:
        os.close(fd)


@pytest.mark.parametrize('snapshot_format', ['BINARYPROTO', 'HDF5'])
def test_a_solver_snapshot_replaces_links_at_its_names(caffe, tmp_path, snapshot_format):
    (tmp_path / 'train.prototxt').write_text(
        'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 2 dim: 3 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y" inner_product_param '
        '{ num_output: 1 weight_filler { type: "gaussian" std: 1 } } }\n'
        'layer { name: "loss" type: "Reduction" bottom: "y" top: "loss" loss_weight: 1 }\n')
    (tmp_path / 'solver.prototxt').write_text(
        'net: "%s"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 10\nsnapshot_prefix: "%s"\n'
        'snapshot_format: %s\nsolver_mode: CPU\n' % (tmp_path / 'train.prototxt', tmp_path / 'w', snapshot_format))
    suffix = '.h5' if snapshot_format == 'HDF5' else ''
    names = ['w_iter_0.caffemodel' + suffix, 'w_iter_0.solverstate' + suffix]
    (tmp_path / 'other').mkdir()
    for i, name in enumerate(names):
        victim = tmp_path / 'other' / name
        victim.write_text('another run\'s snapshot')
        if i == 0:
            os.symlink(str(victim), str(tmp_path / name))
        else:
            os.link(str(victim), str(tmp_path / name))
    solver = caffe.get_solver(str(tmp_path / 'solver.prototxt'))
    solver.snapshot()
    for name in names:
        assert (tmp_path / 'other' / name).read_text() == 'another run\'s snapshot'
        assert not (tmp_path / name).is_symlink() and (tmp_path / name).stat().st_nlink == 1
        assert (tmp_path / name).stat().st_size > 20
