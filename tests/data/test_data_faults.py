"""Bad images and annotations: datalist check decodes every image, a truncated
JPEG fails in training, malformed COCO boxes and ids are refused, a build
into a folder writes nothing."""
import json
import os

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.data.datalist import write_datalist
from caffe_mlic.layers.data import DataLoadError
from tests import netutil


def test_datalist_check_decodes_every_image(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
    jpg = cv2.imencode('.jpg', img)[1].tobytes()
    png = cv2.imencode('.png', img)[1].tobytes()
    files = {'good.jpg': jpg, 'empty.jpg': b'', 'text.jpg': b'not an image\n',
             'cut.jpg': jpg[:len(jpg) * 3 // 4], 'cut.png': png[:len(png) // 2]}
    rows = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        rows.append((str(tmp_path / name), [1, 0], [[0, 0, 9, 9]], [1.0]))
    write_datalist(tmp_path / 'list.txt', rows)
    args = ['datalist', 'check', str(tmp_path / 'list.txt'), '--att-num', '2', '--bbox-num', '1',
            '--size', '40']
    assert cli.main(args) == 1
    out = capsys.readouterr().out
    assert 'list.txt:2: image: cannot decode %s: the file is empty (0 bytes)' % (tmp_path / 'empty.jpg') in out
    assert 'list.txt:3: image: cannot decode %s: not an image' % (tmp_path / 'text.jpg') in out
    assert 'list.txt:4: image: cannot decode %s: a truncated JPEG' % (tmp_path / 'cut.jpg') in out
    assert 'list.txt:5: image: cannot decode %s' % (tmp_path / 'cut.png') in out
    assert 'list.txt:1:' not in out
    assert cli.main(args + ['--no-decode']) == 0


def test_a_truncated_jpeg_fails_in_training_rather_than_decode_half(tmp_path, net_from_text):
    img = np.full((40, 40, 3), 200, np.uint8)
    jpg = cv2.imencode('.jpg', img)[1].tobytes()
    (tmp_path / 'cut.jpg').write_bytes(jpg[:len(jpg) * 3 // 4])
    write_datalist(tmp_path / 'list.txt', [(str(tmp_path / 'cut.jpg'), [1], [[0, 0, 9, 9]], [1.0])])
    params = dict(source=str(tmp_path / 'list.txt'), batch_size=1, new_width=40, new_height=40,
                  att_num=1, bbox_num=1, workers=0)
    net = net_from_text(netutil.python_layer_text('data', 'MultiLabelProposalData', params, [],
                                                  ['data', 'label_roi']), 'TEST')
    with pytest.raises(DataLoadError, match='cut.jpg .*truncated JPEG'):
        net.forward()


def _coco(tmp_path, image_id=1, bbox=(1, 1, 10, 10), category_id=1):
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((30, 40, 3), np.uint8))
    ann = dict(images=[dict(id=1, file_name='a.png', width=40, height=30)],
               categories=[dict(id=1, name='x')],
               annotations=[dict(id=7, image_id=image_id, category_id=category_id, bbox=list(bbox))])
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    return ['datalist', 'build', '--coco', str(tmp_path / 'ann.json'), '--images', str(tmp_path),
            '--whole-image', '-o', str(tmp_path / 'out' / 'list.txt'), '--size', '32', '--bbox-num', '1']


@pytest.mark.parametrize('change, fragment', [
    (dict(bbox=(float('nan'), 1, 10, 10)), '"bbox" must be 4 finite numbers [x, y, w, h], got [NaN, 1, 10, 10]'),
    (dict(bbox=(1, 1, float('inf'), 10)), '"bbox" must be 4 finite numbers'),
    (dict(image_id=True), 'annotation id 7 (image id true): "image_id" must be an integer, got true'),
    (dict(category_id=True), '"category_id" must be an integer, got true'),
])
def test_coco_nan_boxes_and_boolean_ids_are_refused(tmp_path, capsys, change, fragment):
    assert cli.main(_coco(tmp_path, **change)) == 1
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_coco_boolean_image_id_in_images_is_refused(tmp_path, capsys):
    args = _coco(tmp_path)
    ann = json.loads((tmp_path / 'ann.json').read_text())
    ann['images'][0]['id'] = True
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    assert cli.main(args) == 1
    assert 'images[0]: needs an integer "id"' in capsys.readouterr().err


def test_datalist_build_into_a_folder_writes_nothing(tmp_path, capsys):
    args = _coco(tmp_path)
    (tmp_path / 'out' / 'list.txt').mkdir(parents=True)
    assert cli.main(args) == 1
    assert 'Is a directory' in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / 'out')) == ['list.txt']
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]
