"""The blob shapes worked out before Caffe builds a net equal the ones Caffe
builds, and a net whose blobs Caffe cannot hold is refused, naming the layer
(Caffe would abort in Blob::Reshape)."""
import json
import os

import pytest

from caffe_mlic.caffe import prototxt, shapes
from caffe_mlic.errors import InputError
from caffe_mlic.netspec import netgen
from tests import REPO
from tests.tinydata import tiny_mlic_config, write_tiny_dataset


@pytest.fixture(scope='module')
def tiny_nets(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    listing = write_tiny_dataset(str(root / 'images'), num_classes=3, bbox_num=8, size=96)
    netgen.generate(str(root / 'nets'), tiny_mlic_config(listing))
    return root / 'nets'


def _compare(path, phase):
    net = prototxt.read_net(str(path))
    inferred, _ = shapes.infer_shapes(net, phase, prototxt.in_phase)
    built = prototxt.caffe_net(str(path), phase)
    known = {name: shape for name, shape in inferred.items() if shape is not None}
    assert len(known) >= len(built.blobs) // 2, 'too few shapes worked out to mean anything'
    for name, shape in known.items():
        assert tuple(built.blobs[name].shape) == shape, (path, name)
    return known


@pytest.mark.parametrize('name, phase', [('wsddn/wsddn_train', 'TEST'), ('kd/train_stage1', 'TEST'),
                                         ('kd/train_stage2', 'TEST'), ('kd/student_deploy', 'TEST'),
                                         ('wsddn/wsddn_deploy', 'TEST')])
def test_shapes_equal_caffes_on_the_tiny_mlic_nets(tiny_nets, name, phase):
    _compare(tiny_nets / (name + '.prototxt'), phase)


@pytest.mark.parametrize('name', ['scasnet/vgg_scasnet_deploy', 'kd/student_deploy'])
def test_shapes_equal_caffes_on_release_deploy_nets(name):
    known = _compare(os.path.join(REPO, 'prototxt', name + '.prototxt'), 'TEST')
    assert len(known) > 20


def test_a_data_size_that_blows_up_a_later_layer_is_refused_naming_it(tiny_nets):
    """new_width 1e6 for the teacher: the data top fits (3 x 96 x 1e6 < 2^31), conv1 (more
    channels) does not; Caffe would abort there."""
    path = tiny_nets / 'wsddn' / 'wsddn_train.prototxt'
    net = prototxt.read_net(str(path))
    for layer in net.layer:
        if layer.type == 'Python' and layer.python_param.layer == 'MultiLabelProposalData':
            params = prototxt.python_params(layer)
            params.update(new_width=10 ** 6, new_height=96, batch_size=2, scale_factors=[1.0])
            layer.python_param.param_str = json.dumps(params)
    data = shapes.infer_shapes(net, 'TEST', prototxt.in_phase)[0]['data']
    assert shapes._count(data) < shapes.BLOB_LIMIT
    with pytest.raises(InputError, match=r"big.prototxt: layer '\w+' \(TEST\): (top '\w+'|its im2col "
                                         r"buffer) would be .* more than a Caffe blob holds"):
        prototxt.check_net(net, 'big.prototxt', 'TEST')


def test_a_layer_type_this_caffe_lacks_is_named_not_a_caffe_abort(tmp_path):
    """The layer factory would kill the process (a glog FATAL, rc 134)."""
    path = tmp_path / 'bogus.prototxt'
    path.write_text('name: "b"\n'
                    'layer { name: "in" type: "Input" top: "x" input_param { shape { dim: 1 dim: 3 } } }\n'
                    'layer { name: "weird" type: "BatchReindex2" bottom: "x" top: "y" }\n')
    with pytest.raises(InputError, match=r"bogus.prototxt: layer 'weird': BatchReindex2: unknown layer type "
                                         r"'BatchReindex2' \(a layer of a Caffe fork\?"):
        prototxt.caffe_net(str(path), 'TEST')
