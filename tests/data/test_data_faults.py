"""Bad images and annotations: datalist check decodes every image, a truncated
JPEG fails in training, malformed COCO boxes and ids are refused, a build
into a folder writes nothing."""
import base64
import io
import json
import os
import re

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.data.datalist import write_datalist
from caffe_mlic.errors import InputError
from caffe_mlic.layers.data import DataLoadError
from tests.faults import run_cli
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
    # NaN and Infinity are not JSON: the reader refuses the file (fileio.parse_json)
    (dict(bbox=(float('nan'), 1, 10, 10)), 'ann.json: not valid JSON: NaN is not JSON'),
    (dict(bbox=(1, 1, float('inf'), 10)), 'ann.json: not valid JSON: Infinity is not JSON'),
    (dict(bbox=(1, 1, None, 10)), '"bbox" must be 4 finite numbers [x, y, w, h], got [1, 1, null, 10]'),
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


@pytest.mark.parametrize('part, key, value, fragment', [
    # "iscrowd": "0", 2 and null made the object crowd (difficult) or not in silence; absent is 0
    ('annotations', 'iscrowd', '0', 'annotation id 7 (image id 1): "iscrowd" must be 0 or 1, got "0"'),
    ('annotations', 'iscrowd', 2, 'annotation id 7 (image id 1): "iscrowd" must be 0 or 1, got 2'),
    ('annotations', 'iscrowd', None, '"iscrowd" must be 0 or 1, got null'),
    ('annotations', 'iscrowd', True, '"iscrowd" must be 0 or 1, got true'),
    # OUT.classes.txt holds one name a line: such a name made it disagree with the datalist
    ('categories', 'name', '', 'category id 1: "name" "" is no class name: it must be non-empty text'),
    ('categories', 'name', ' \n ', 'category id 1: "name" " \\n " is no class name: it must be non-empty text'),
    ('categories', 'name', 'a/b', 'category id 1: "name" "a/b" is no class name: it has "/"'),
    ('categories', 'name', 'a\0b', 'category id 1: "name" "a\\u0000b" is no class name: it has a NUL character'),
    # (a BOM or a zero-width space passed, and made the class file and gt.json disagree: pass 37b M4)
    ('categories', 'name', '\ufeffa', 'category id 1: "name" "\\ufeffa" is no class name: it has a character that '
                                      'does not print'),
    ('categories', 'name', 'a\u200bb', 'is no class name: it has a character that does not print'),
])
def test_coco_bad_iscrowd_and_category_names_are_refused(tmp_path, capsys, part, key, value, fragment):
    args = _coco(tmp_path)
    ann = json.loads((tmp_path / 'ann.json').read_text())
    ann[part][0][key] = value
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert fragment in err and len(err.splitlines()) == 2, err
    assert not (tmp_path / 'out').exists()
    ann[part][0].pop(key) if key == 'iscrowd' else ann[part][0].update(name='x')
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    assert cli.main(args) == 0


def test_coco_category_names_with_spaces_are_class_names_with_underscores(tmp_path, capsys):
    """COCO's "traffic light" went into OUT.classes.txt as two words, which
    every reader of a class file refuses: its whitespace becomes '_'; two
    categories that become one name are refused."""
    args = _coco(tmp_path)
    ann = json.loads((tmp_path / 'ann.json').read_text())
    ann['categories'][0]['name'] = ' traffic \t light'
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    assert cli.main(args) == 0, capsys.readouterr().err
    classes = next((tmp_path / 'out').glob('*.classes.txt')).read_text().split('\n')
    assert 'traffic_light' in classes
    ann['categories'].append(dict(id=99, name='traffic_light'))
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    assert cli.main(args) == 1
    assert '"categories": category names are not unique: "traffic_light"' in capsys.readouterr().err


def test_an_image_listed_twice_is_refused(tmp_path, capsys):
    """COCO images sharing a file_name, or a label file naming one image on
    two lines, gave the image two contradicting label sets (and a gt.json
    that `eval det` refuses): refused as a VOC image set's repeated id is."""
    from caffe_mlic.data import annotations
    from caffe_mlic.errors import InputError
    args = _coco(tmp_path)
    ann = json.loads((tmp_path / 'ann.json').read_text())
    ann['images'].append(dict(id=2, file_name='./a.png', width=40, height=30))
    ann['annotations'].append(dict(id=8, image_id=2, category_id=1, bbox=[2, 2, 5, 5]))
    (tmp_path / 'ann.json').write_text(json.dumps(ann))
    assert cli.main(args) == 1
    assert capsys.readouterr().err.splitlines()[1:] == [
        '  %s: image id 2 (./a.png): image %s repeats image id 1 (one image, two label sets)'
        % (tmp_path / 'ann.json', str(tmp_path) + '/./a.png')]
    (tmp_path / 'labels.txt').write_text('a.png x\nb.png\n./a.png\n')
    with pytest.raises(InputError) as e:
        annotations.read_label_file(str(tmp_path / 'labels.txt'), ['x'])
    assert "labels.txt:3: image './a.png' repeats line 1 (one image, two label sets)" in str(e.value)
    assert 'labels.txt:1' not in str(e.value)


def test_datalist_build_into_a_folder_writes_nothing(tmp_path, capsys):
    args = _coco(tmp_path)
    (tmp_path / 'out' / 'list.txt').mkdir(parents=True)
    assert cli.main(args) == 2      # (refused before the work since pass 21 M10)
    assert 'list.txt is a folder: give a file path to write' in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / 'out')) == ['list.txt']
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]


# ------------------------------------------------------------------ label files: image paths with spaces

def test_a_label_file_image_path_with_spaces_is_read_as_a_path(tmp_path, capsys):
    """The plain label file splits on whitespace: 'img dir/a b.png cat' was
    read as the path 'img' and reported as "label 'dir/a' is not in the class
    list". The path now runs up to the last word that makes an existing file;
    a datalist cannot hold it, which `datalist build` says naming the line,
    and --root makes it relative (and space-free) again."""
    from caffe_mlic.data import annotations
    from caffe_mlic.errors import InputError
    root = tmp_path / 'my set'
    (root / 'img dir').mkdir(parents=True)
    for name in ('img dir/a  b.png', 'img dir/c.png'):
        assert cv2.imwrite(str(root / name), np.zeros((20, 30, 3), np.uint8))
    (root / 'classes.txt').write_text('cat\ndog\n')
    (root / 'labels.txt').write_text('img dir/a  b.png cat dog\nimg dir/c.png 0 1\n')
    records = annotations.read_label_file(str(root / 'labels.txt'), ['cat', 'dog'])
    assert [(r.path, r.labels) for r in records] == [
        (str(root / 'img dir/a  b.png'), {'cat', 'dog'}), (str(root / 'img dir/c.png'), {'dog'})]

    args = ['datalist', 'build', '--labels', str(root / 'labels.txt'), '--classes',
            str(root / 'classes.txt'), '--whole-image', '--size', '32', '--bbox-num', '1']
    assert cli.main(args + ['-o', str(tmp_path / 'out.txt'), '--root', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert ("labels.txt:1: image path 'my set/img dir/a  b.png' contains whitespace, "
            "which a datalist cannot hold") in err
    assert 'not in the class list' not in err and not (tmp_path / 'out.txt').exists()
    (root / 'labels.txt').write_text('img dir/c.png dog\n')
    assert cli.main(args + ['-o', str(tmp_path / 'out.txt'), '--root', str(root / 'img dir')]) == 0
    assert (tmp_path / 'out.txt').read_text().startswith('c.png 0 1 ')

    # a path that names no file: the first word is the path, and the message says so
    (root / 'labels.txt').write_text('img dir/x y.png cat\n')
    with pytest.raises(InputError) as e:
        annotations.read_label_file(str(root / 'labels.txt'), ['cat', 'dog'])
    assert ("labels.txt:1: label 'dir/x' is not in the class list (image path read as 'img': "
            "no longer start of the line is an existing file)") in str(e.value)


def test_a_label_line_that_two_files_fit_is_ambiguous(tmp_path):
    """With files 'a.jpg' and 'a.jpg circle', the line 'a.jpg circle square'
    was read silently as 'a.jpg' with {circle, square} (the one-token reading
    was taken before the others were looked at). Both readings name files:
    the line is refused naming both."""
    from caffe_mlic.data import annotations
    from caffe_mlic.errors import InputError
    for name in ('a.jpg', 'a.jpg circle', 'b.jpg'):
        assert cv2.imencode('.jpg', np.zeros((20, 30, 3), np.uint8))[1].tofile(str(tmp_path / name)) is None
    (tmp_path / 'labels.txt').write_text('b.jpg star\na.jpg circle square\n')
    classes = ['circle', 'square', 'star']
    with pytest.raises(InputError) as e:
        annotations.read_label_file(str(tmp_path / 'labels.txt'), classes)
    msg = str(e.value)
    assert "labels.txt:2: ambiguous image path: 'a.jpg', 'a.jpg circle' are all files" in msg
    assert "'a.jpg' with circle, square; 'a.jpg circle' with square" in msg
    assert 'labels.txt:1' not in msg
    os.remove(str(tmp_path / 'a.jpg circle'))
    records = annotations.read_label_file(str(tmp_path / 'labels.txt'), classes)
    assert [r.labels for r in records] == [{'star'}, {'circle', 'square'}]


def test_the_root_hint_is_given_only_where_root_can_help(tmp_path, capsys):
    """A file name holding a space cannot be fixed by --root: the message
    says to rename the file, not "--root DIR writes paths relative to DIR"."""
    (tmp_path / 'sub dir').mkdir()
    for name in ('a b.png', 'sub dir/c.png'):
        assert cv2.imwrite(str(tmp_path / name), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / 'classes.txt').write_text('cat\ndog\n')
    args = ['datalist', 'build', '--labels', str(tmp_path / 'labels.txt'), '--classes',
            str(tmp_path / 'classes.txt'), '--whole-image', '--size', '32', '--bbox-num', '1',
            '-o', str(tmp_path / 'out.txt')]
    (tmp_path / 'labels.txt').write_text('a b.png cat\n')
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert 'contains whitespace' in err and 'rename the file' in err and '--root' not in err
    (tmp_path / 'labels.txt').write_text('sub dir/c.png cat\n')
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert 'contains whitespace' in err and '--root DIR writes paths relative to DIR' in err


def test_two_images_of_one_stem_are_refused_without_proposals_too(tmp_path, capsys):
    """a.png and a.jpg: with --whole-image both went into the datalist
    and gt.json, which eval det then refused (its image id is the stem)."""
    (tmp_path / 'x').mkdir()
    for name in ('a.png', 'x/a.jpg', 'b.png'):
        assert cv2.imwrite(str(tmp_path / name), np.zeros((20, 30, 3), np.uint8))
    (tmp_path / 'classes.txt').write_text('cat\ndog\n')
    (tmp_path / 'labels.txt').write_text('a.png cat\nb.png dog\nx/a.jpg dog\n')
    args = ['datalist', 'build', '--labels', str(tmp_path / 'labels.txt'), '--classes',
            str(tmp_path / 'classes.txt'), '--whole-image', '--size', '32', '--bbox-num', '1',
            '-o', str(tmp_path / 'out.txt')]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert ('labels.txt:3: image %s has the same file stem as %s: detection results and the gt.json name an '
            'image by its stem' % (tmp_path / 'x' / 'a.jpg', tmp_path / 'a.png')) in err, err
    assert not (tmp_path / 'out.txt').exists()
    (tmp_path / 'labels.txt').write_text('a.png cat\nb.png dog\n')
    assert cli.main(args) == 0


# ------------------------------------------------------------------ images: named, and no libpng noise

def _png_with_chunk(image, kind, data):
    """PNG bytes of ``image`` with a chunk inserted after IHDR."""
    import struct
    import zlib
    png = cv2.imencode('.png', image)[1].tobytes()
    chunk = struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return png[:33] + chunk + png[33:]


def _bad_profile_png(image):
    import zlib
    return _png_with_chunk(image, b'iCCP', b'icc\x00\x00' + zlib.compress(b'\x00' * 200))


def test_an_image_too_small_for_proposals_is_named(tmp_path):
    """`detect` computes missing proposals through process_image: its message
    said only 'the image is 1x1 px'."""
    from caffe_mlic.data.proposals import compute_proposals, process_image
    from caffe_mlic.errors import InputError
    cv2.imwrite(str(tmp_path / 'dot.png'), np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(InputError) as e:
        process_image(str(tmp_path / 'dot.png'), str(tmp_path / 'dot.npz'))
    assert str(e.value).startswith('%s: the image is 1x1 px' % (tmp_path / 'dot.png'))
    with pytest.raises(InputError, match=r'^photo\.jpg: expected an HxWx3 BGR image'):
        compute_proposals(np.zeros((30, 30, 4), np.uint8), name='photo.jpg')


def test_a_png_with_an_odd_colour_profile_decodes_without_libpng_warnings(tmp_path, capfd):
    """libpng printed 'libpng warning: iCCP: too short' on stderr, from C."""
    from caffe_mlic.data.imageio import decode_file
    from caffe_mlic.data.labelmaps import read_label_map
    img = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    (tmp_path / 'odd.png').write_bytes(_bad_profile_png(img))
    labels = np.random.default_rng(1).integers(0, 6, (30, 40), dtype=np.uint8)
    (tmp_path / 'labels.png').write_bytes(_bad_profile_png(labels))
    capfd.readouterr()
    assert np.array_equal(decode_file(str(tmp_path / 'odd.png')), img)
    assert np.array_equal(read_label_map(str(tmp_path / 'labels.png'), 6), labels)
    assert capfd.readouterr().err == ''


def test_a_truncated_png_is_refused_without_libpng_errors(tmp_path, capfd):
    """libpng printed 'libpng error: PNG input buffer is incomplete'."""
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    from caffe_mlic.data.labelmaps import LabelMapError, read_label_map
    png = cv2.imencode('.png', np.full((30, 40), 3, np.uint8))[1].tobytes()
    (tmp_path / 'cut.png').write_bytes(png[:len(png) // 2])
    capfd.readouterr()
    assert decode_file(str(tmp_path / 'cut.png')) is None
    assert why_undecodable(str(tmp_path / 'cut.png')) == 'a truncated PNG: no IEND chunk'
    with pytest.raises(LabelMapError, match='cut.png: cannot read label map .a truncated PNG'):
        read_label_map(str(tmp_path / 'cut.png'), 6)
    assert capfd.readouterr().err == ''


def test_images_label_maps_and_sizes_of_special_files_are_named_never_waited_on(tmp_path):
    """Every image reader opens without waiting and reads regular files
    only: a FIFO blocked it (a training's workers hung with their stop
    signals, pass 47c S2), a socket or /dev/zero was "the file is empty"
    (M1). Label maps and image headers take the same path."""
    import socket
    from caffe_mlic.data.imageio import NotAFile, decode_file, image_size, open_image_file, why_undecodable
    from caffe_mlic.data.labelmaps import LabelMapError, read_label_map
    os.mkfifo(str(tmp_path / 'fifo.png'))
    (tmp_path / 'zero.png').symlink_to('/dev/zero')
    (tmp_path / 'folder.png').mkdir()
    (tmp_path / 'dangling.png').symlink_to(tmp_path / 'nowhere.png')
    (tmp_path / 'loop.png').symlink_to(tmp_path / 'loop.png')
    held = socket.socket(socket.AF_UNIX)
    held.bind(str(tmp_path / 'socket.png'))
    try:
        for name, kind in (('fifo', 'a FIFO'), ('zero', 'a device'), ('folder', 'a folder'), ('socket', 'a socket'),
                           ('dangling', 'a link to nothing'), ('loop', 'a symlink loop')):
            path = str(tmp_path / (name + '.png'))
            assert decode_file(path) is None
            assert why_undecodable(path) == 'it is %s, not a file' % kind, name
            with pytest.raises(LabelMapError, match='^%s: cannot read label map: %s, not a file$' % (path, kind)):
                read_label_map(path, 6)
            with pytest.raises(OSError, match='%s, not a file' % kind):
                image_size(path)
            with pytest.raises(NotAFile):
                open_image_file(path)
    finally:
        held.close()
    # said as what they are by the commands' reader too, and PIL's words name no file object (pass 48b M1, M2)
    from caffe_mlic.data.imageio import read_image
    from caffe_mlic.errors import InputError
    with pytest.raises(InputError, match='dangling.png: a link to nothing, not a file$'):
        read_image(str(tmp_path / 'dangling.png'))
    (tmp_path / 'text.png').write_text('hello')
    with pytest.raises(OSError, match=r'^not an image file PIL identifies \(unknown format, corrupt or truncated\)$'):
        image_size(str(tmp_path / 'text.png'))


def test_an_open_error_is_said_as_what_is_there_by_its_class_not_its_text():
    """'it is a FIFO, not a file' comes from NotAFile alone: another
    error whose text happens to end the same way is 'cannot open it'."""
    from caffe_mlic.data.imageio import NotAFile, _open_problem
    assert _open_problem(NotAFile(22, 'a FIFO, not a file', 'x.png')) == 'it is a FIFO, not a file'
    assert _open_problem(OSError(5, 'remote says: not a file', 'x.png')) == 'cannot open it: remote says: not a file'


def test_an_image_file_over_1_gib_is_refused_before_it_is_read(tmp_path):
    """Images were read whole: 3 GiB files held a training's stop signals
    for seconds, a 1 TiB sparse one was Python's "MemoryError: Unable to
    allocate 1.00 TiB" (pass 48c M3, M4). Refused by its size (sparse
    files here: nothing is written)."""
    from caffe_mlic.data import imageio
    from caffe_mlic.data.labelmaps import LabelMapError, read_label_map
    big = tmp_path / 'big.png'
    for size in (imageio.MAX_IMAGE_BYTES + 1, 2 ** 40):
        with open(big, 'wb') as f:
            f.truncate(size)
        said = 'the file is %d bytes, more than the 1073741824 (1 GiB) an image file may have' % size
        assert imageio.decode_file(str(big)) is None and imageio.why_undecodable(str(big)).startswith(said)
        with pytest.raises(LabelMapError, match=re.escape(said)):
            read_label_map(str(big), 6)
    with open(big, 'r+b') as f:
        f.truncate(imageio.MAX_IMAGE_BYTES)     # (at the bound: read, and found not to be an image)
    assert imageio.why_undecodable(str(big)) != imageio.why_undecodable(str(tmp_path / 'none.png'))
    assert 'more than' not in imageio.why_undecodable(str(big))


def test_a_label_map_whose_header_claims_too_many_pixels_is_refused_before_opencv(tmp_path):
    """A label map replaced mid-run by a PNG whose header claims 40000 x
    40000 px: OpenCV asserted, and in a training (libunwind loaded by
    Caffe's glog) that was a SIGSEGV, nothing said (pass 49c S2); with
    workers, OpenCV's assertion text (M1). The images' pixel bound, from
    the header, as for images."""
    import struct
    import zlib
    from caffe_mlic.data.labelmaps import LabelMapError, read_label_map

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    png = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 40000, 40000, 8, 0, 0, 0, 0))
           + chunk(b'IDAT', zlib.compress(b'\x00' * 100)) + chunk(b'IEND', b''))
    (tmp_path / 'bomb.png').write_bytes(png)
    with pytest.raises(LabelMapError, match=r'bomb.png: cannot read label map \(the image is 40000x40000 px '
                                            r'\(1600000000 pixels\), over the limit'):
        read_label_map(str(tmp_path / 'bomb.png'), 6)


def test_formats_opencv_reads_but_we_do_not_are_refused_before_opencv(tmp_path):
    """A Radiance HDR whose header claims 40000 x 40000 px, or an OpenEXR
    stub, renamed over an image or a label map mid-run: PIL reads neither
    header (no pixel bound), OpenCV threw, which aborted `train` (SIGABRT,
    libunwind), and left a copy of the file in /tmp/__opencv_temp.* (pass
    50c S2, S3). Only the formats of IMAGE_EXTENSIONS are decoded."""
    import glob
    import tempfile
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    from caffe_mlic.data.labelmaps import LabelMapError, read_label_map
    (tmp_path / 'x.hdr').write_bytes(b'#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 40000 +X 40000\n' + b'\x02\x02' * 2000)
    (tmp_path / 'x.exr').write_bytes(b'\x76\x2f\x31\x01\x02\x00\x00\x00' + b'\x00' * 200)
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), '__opencv_temp*')))
    for name in ('x.hdr', 'x.exr'):
        path = str(tmp_path / name)
        assert decode_file(path) is None
        assert why_undecodable(path) == 'not an image of a format read here (JPEG, PNG, BMP, TIFF, PGM/PPM, WebP)'
        with pytest.raises(LabelMapError, match='cannot read label map \\(not an image of a format read here'):
            read_label_map(path, 6)
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), '__opencv_temp*'))) <= before


def test_datalist_check_prints_its_error_alone(tmp_path, capfd):
    good = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    (tmp_path / 'odd.png').write_bytes(_bad_profile_png(good))
    png = cv2.imencode('.png', good)[1].tobytes()
    (tmp_path / 'cut.png').write_bytes(png[:len(png) // 2])
    write_datalist(tmp_path / 'list.txt', [(str(tmp_path / n), [1, 0], [[0, 0, 9, 9]], [1.0])
                                           for n in ('odd.png', 'cut.png')])
    assert cli.main(['datalist', 'check', str(tmp_path / 'list.txt'), '--att-num', '2', '--bbox-num', '1',
                     '--size', '40']) == 1
    captured = capfd.readouterr()
    assert 'list.txt:2: image: cannot decode %s: a truncated PNG' % (tmp_path / 'cut.png') in captured.out
    assert captured.err == 'caffe-mlic datalist check: %s: 2 image lines: 1 valid, 1 with problems\n' % (
        tmp_path / 'list.txt')


def test_proposals_quiet_prints_each_failure_once(tmp_path, capfd):
    """With -q the failures were printed as they happened and again in the error."""
    folder = tmp_path / 'imgs'
    folder.mkdir()
    cv2.imwrite(str(folder / 'dot.png'), np.zeros((1, 1, 3), np.uint8))
    (folder / 'odd.png').write_bytes(_bad_profile_png(np.full((40, 40, 3), 128, np.uint8)))
    assert cli.main(['proposals', str(folder), '-o', str(tmp_path / 'p'), '-q']) == 1
    err = capfd.readouterr().err
    assert err == ('caffe-mlic proposals: 1 image(s) failed (the others were written):\n  %s: the image is '
                   '1x1 px: smaller than the smallest box kept (min_size 20 px a side), so it can have no '
                   'proposal\n' % (folder / 'dot.png')), err


# ---------------------------------------------------------------- decompression bombs, PNG data, PIL warnings

def _png_bytes(width, height, raw_rows):
    """A PNG whose IHDR says width x height (RGB, 8-bit) and whose IDAT holds
    ``raw_rows`` bytes of zeros, however many the size needs."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(b'\0' * raw_rows)) + chunk(b'IEND', b''))


def _bomb(path):
    """254 bytes whose header says 60000 x 60000 px (10 GB decoded): OpenCV
    raised cv2.error (an assertion, several lines) from every reader."""
    path.write_bytes(_png_bytes(60000, 60000, 180001))
    return str(path)


BOMB_SIZE = ('the image is 60000x60000 px (3600000000 pixels), over the limit of 268435456 (2^28) pixels '
             'for one image')


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, capfd):
    from caffe_mlic.data.imageio import ImageTooLarge, decode_file, image_size, read_image, why_undecodable
    from caffe_mlic.errors import InputError
    bomb = _bomb(tmp_path / 'bomb.png')
    assert decode_file(bomb) is None
    assert why_undecodable(bomb).startswith(BOMB_SIZE)
    with pytest.raises(InputError) as e:
        read_image(bomb)
    assert str(e.value).startswith('%s: cannot read image (%s' % (bomb, BOMB_SIZE))
    with pytest.raises(ImageTooLarge, match=r'60000x60000 px'):     # the one bound, for header readers too
        image_size(bomb)
    assert capfd.readouterr().err == ''


def test_a_decompression_bomb_in_a_datalist_is_one_line(tmp_path, capfd, net_from_text):
    """datalist check and the training data layer: the raw OpenCV assertion
    and a blank line were printed."""
    bomb = _bomb(tmp_path / 'bomb.png')
    cv2.imwrite(str(tmp_path / 'good.png'), np.zeros((40, 40, 3), np.uint8))
    write_datalist(tmp_path / 'list.txt', [(p, [1, 0], [[0, 0, 9, 9]], [1.0])
                                           for p in (str(tmp_path / 'good.png'), bomb)])
    assert cli.main(['datalist', 'check', str(tmp_path / 'list.txt'), '--att-num', '2', '--bbox-num', '1',
                     '--size', '40']) == 1
    captured = capfd.readouterr()
    assert 'list.txt:2: image: cannot decode %s: %s' % (bomb, BOMB_SIZE) in captured.out
    assert 'OpenCV' not in captured.out + captured.err and '\n\n' not in captured.out + captured.err
    write_datalist(tmp_path / 'bomb.txt', [(bomb, [1, 0], [[0, 0, 9, 9]], [1.0])])
    params = dict(source=str(tmp_path / 'bomb.txt'), batch_size=1, new_width=40, new_height=40,
                  att_num=2, bbox_num=1, workers=0)
    net = net_from_text(netutil.python_layer_text('data', 'MultiLabelProposalData', params, [],
                                                  ['data', 'label_roi']), 'TEST')
    with pytest.raises(DataLoadError) as e:
        net.forward()
    assert str(e.value) == 'cannot read image %s (%s: a decompression bomb, or an image to tile first)' % (
        bomb, BOMB_SIZE)


def test_proposals_of_a_decompression_bomb_name_it(tmp_path, capfd):
    bomb = _bomb(tmp_path / 'bomb.png')
    assert cli.main(['proposals', bomb, '-o', str(tmp_path / 'p'), '-q']) == 1
    err = capfd.readouterr().err
    assert err == ('caffe-mlic proposals: 1 image(s) failed (the others were written):\n  %s: cannot read '
                   'image (%s: a decompression bomb, or an image to tile first)\n' % (bomb, BOMB_SIZE)), err


def test_a_png_short_of_image_data_is_refused_without_libpng_errors(tmp_path, capfd):
    """Its IEND is there, its data is not: libpng printed 'libpng error: Not
    enough image data'. read_image (classify, detect, ...) inflates a PNG's
    data first; a critical chunk whose CRC fails is refused by every reader."""
    from caffe_mlic.data.imageio import decode_file, read_image
    from caffe_mlic.errors import InputError
    (tmp_path / 'short.png').write_bytes(_png_bytes(300, 200, 1801))
    png = bytearray(cv2.imencode('.png', np.full((30, 40, 3), 7, np.uint8))[1].tobytes())
    png[-20] ^= 0xff                     # in the IDAT's data, before its CRC and IEND
    (tmp_path / 'crc.png').write_bytes(bytes(png))
    capfd.readouterr()
    with pytest.raises(InputError, match=r'short\.png: cannot read image \(a truncated PNG: its image data '
                                         r'holds 1801 of the 180200 bytes its 300x200 header needs\)'):
        read_image(str(tmp_path / 'short.png'))
    with pytest.raises(InputError, match=r'crc\.png: cannot read image \(a corrupt PNG: its IDAT chunk '
                                         r'at byte 33 fails its CRC\)'):
        read_image(str(tmp_path / 'crc.png'))
    assert decode_file(str(tmp_path / 'crc.png')) is None
    assert capfd.readouterr().err == ''
    good = np.random.default_rng(0).integers(0, 256, (31, 45, 3), dtype=np.uint8)
    for interlaced in (False, True):     # the header's size is what real PNGs hold
        from PIL import Image
        Image.fromarray(good[:, :, ::-1]).save(str(tmp_path / 'good.png'), interlace=interlaced)
        assert np.array_equal(read_image(str(tmp_path / 'good.png')), good)


def test_reading_a_truncated_tiff_prints_no_pil_warning(tmp_path):
    """PIL warned 'Corrupt EXIF data. Expecting to read 2 bytes but only got 0'
    (scasnet infer reads sizes first) around the one-line error."""
    import warnings
    from caffe_mlic.data.imageio import image_size, read_image
    from caffe_mlic.errors import InputError
    tif = cv2.imencode('.tif', np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8))[1]
    (tmp_path / 'cut.tif').write_bytes(tif.tobytes()[:2000])     # OpenCV writes the IFD at the end
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        with pytest.raises(Exception):
            image_size(str(tmp_path / 'cut.tif'))
        with pytest.raises(InputError, match='cut.tif: cannot read image'):
            read_image(str(tmp_path / 'cut.tif'))
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize('arrays, fragment', [
    (dict(boxes=np.array([{}], dtype=object), scores=np.ones(1)),
     'holds object arrays (Python objects, read only with pickle), not numbers'),
    (dict(boxes=np.ones((3, 5)), scores=np.ones(3)), 'boxes must be (K, 4) and scores (K,), got (3, 5) and (3,)'),
    (dict(boxes=np.zeros((0, 4)), scores=np.zeros(0)), 'no proposals (0 boxes): need K >= 1'),
    (dict(boxes=np.ones((2, 4))), 'needs arrays "boxes" and "scores", has boxes'),
    (dict(boxes=np.array([[0, 0, 5, np.nan]]), scores=np.ones(1)), 'boxes or scores are not finite'),
    (dict(boxes=np.array([[0, 0, 5, 50]]), scores=np.ones(1)),
     'box 0 (0, 0, 5, 50) is not inside the 40x30 image img.png'),
    (dict(boxes=np.array([[0, 0, 5, 5]]), scores=np.ones(1), image_shape=np.array([20, 40])),
     'proposals of a 40x20 image, but img.png is 40x30'),
])
def test_a_proposal_file_is_read_by_one_checked_reader(tmp_path, arrays, fragment):
    """`detect --proposals`: an object array was numpy's ValueError traceback,
    a (3, 5) or empty file 'need K >= 1 proposals' naming no file."""
    from caffe_mlic.data.proposals import read_proposal_file
    from caffe_mlic.errors import InputError
    path = str(tmp_path / 'img.npz')
    np.savez(path, **arrays)
    with pytest.raises(InputError) as e:
        read_proposal_file(path, (30, 40), 'img.png')
    assert str(e.value) == '%s: %s' % (path, fragment)
    (tmp_path / 'text.npz').write_text('boxes')
    with pytest.raises(InputError, match=r'text\.npz: unreadable'):
        read_proposal_file(str(tmp_path / 'text.npz'))


def test_datalist_check_refuses_a_device_a_fifo_and_a_folder(tmp_path):
    """/dev/zero never ends (memory grew without bound, Ctrl-C ignored); a
    FIFO with no writer blocks in open(): both looked at before opening."""
    fifo = tmp_path / 'fifo'
    os.mkfifo(fifo)
    for source in ('/dev/zero', str(fifo), str(tmp_path)):
        res = run_cli(['datalist', 'check', source, '--att-num', 6, '--bbox-num', 10], tmp_path, timeout=60)
        assert res.returncode == 1, res.stderr
        assert '%s: cannot read the datalist: not a regular file' % source in res.stdout + res.stderr


def test_the_commands_that_run_a_model_say_what_is_there_instead_of_an_image(tmp_path):
    """classify, detect and scasnet infer said "not a regular file (a
    device, FIFO or folder), not an image" where read_image says what it is
    (pass 50b M1)."""
    from caffe_mlic.errors import InputError
    from caffe_mlic.inference import model_and_images
    os.mkfifo(str(tmp_path / 'fifo.jpg'))
    (tmp_path / 'zero.jpg').symlink_to('/dev/zero')
    with pytest.raises(InputError) as e:
        model_and_images([], [str(tmp_path / 'fifo.jpg'), str(tmp_path / 'zero.jpg')])
    assert 'fifo.jpg: a FIFO, not a file' in str(e.value) and 'zero.jpg: a device, not a file' in str(e.value)


@pytest.mark.parametrize('width,height', [(2 ** 20 + 1, 1), (1, 2 ** 20 + 1)])
def test_an_image_with_a_side_over_opencvs_limit_is_refused_from_its_header(tmp_path, width, height):
    """A 2097152 x 1 px BMP or PGM (2 Mpx, within the pixel bound): OpenCV
    refuses a side over 2^20 by throwing, which aborted `train` and
    `scasnet infer` (SIGABRT/SIGSEGV, nothing said; pass 51 S1)."""
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    from caffe_mlic.data.labelmaps import LabelMapError, read_label_map
    pgm = tmp_path / 'wide.pgm'
    pgm.write_bytes(b'P5\n%d %d\n255\n' % (width, height) + b'\x01' * (width * height))
    said = 'the image is %dx%d px, a side over the limit of 1000000 px that libpng and OpenCV decode' % (width, height)
    assert decode_file(str(pgm)) is None and why_undecodable(str(pgm)) == said
    with pytest.raises(LabelMapError, match=re.escape(said)):
        read_label_map(str(pgm), 6)


@pytest.mark.parametrize('name,data', [
    ('lz.pgm', b'P5\n00002097152 1\n255\n' + b'\x01' * 2097152),      # PIL: "Token too long"
    ('w1m.png', None)])
def test_an_image_whose_header_pil_cannot_size_or_over_libpngs_side_is_refused(tmp_path, name, data):
    """A valid 2097152 x 1 PGM whose width PIL cannot read passed to OpenCV,
    whose width check threw: SIGABRT in `train` (pass 52 S1, M1); a
    1000001 x 1 PNG passed to libpng, which printed its own error (M2)."""
    import struct
    import zlib
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    if data is None:
        def chunk(kind, body):
            return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))
        data = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 1000001, 1, 8, 0, 0, 0, 0))
                + chunk(b'IDAT', zlib.compress(b'\x00' * 1000002)) + chunk(b'IEND', b''))
    (tmp_path / name).write_bytes(data)
    assert decode_file(str(tmp_path / name)) is None
    why = why_undecodable(str(tmp_path / name))
    assert why.startswith('its size cannot be read from its header (' if name.endswith('.pgm') else
                          'the image is 1000001x1 px, a side over the limit of 1000000 px'), why


def _tiff(entries):
    """A little-endian TIFF of one directory: ``entries`` [(tag, type, value)]
    (3 SHORT, 4 LONG), then 256 bytes of pixels."""
    import struct
    body = struct.pack('<H', len(entries))
    for tag, kind, value in entries:
        body += struct.pack('<HHI', tag, kind, 1) + (struct.pack('<HH', value, 0) if kind == 3
                                                     else struct.pack('<I', value))
    return b'II*\x00' + struct.pack('<I', 8) + body + struct.pack('<I', 0) + b'\x00' * 256


@pytest.mark.parametrize('name,entries,said', [
    ('dupw.tif', [(256, 4, 2097152), (256, 3, 16), (257, 3, 16), (258, 3, 8), (277, 3, 1)],
     'a TIFF that gives tag 256 twice'),
    ('tile.tif', [(256, 3, 16), (257, 3, 16), (258, 3, 8), (277, 3, 1), (322, 4, 65536), (323, 4, 65536)],
     'a TIFF whose tiles or strips take 1 GiB or more each (65536x65536 px)')])
def test_a_tiff_opencv_would_throw_on_is_refused_before_it(tmp_path, name, entries, said):
    """A TIFF giving its width twice (PIL keeps the last, 16; OpenCV the
    first, 2097152) or tiled in 65536 x 65536 tiles: PIL sized it 16 x 16,
    OpenCV threw, and `train` aborted (SIGABRT), `scasnet infer` segfaulted
    (pass 53 S1)."""
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    from caffe_mlic.data.labelmaps import LabelMapError, read_label_map
    (tmp_path / name).write_bytes(_tiff(entries))
    assert decode_file(str(tmp_path / name)) is None and why_undecodable(str(tmp_path / name)) == said
    with pytest.raises(LabelMapError, match=re.escape('cannot read label map (%s)' % said)):
        read_label_map(str(tmp_path / name), 6)


def _cut_tiff(path, size=(64, 64)):
    """A plain RGB TIFF written by PIL, cut in half (an interrupted copy):
    its first directory is whole, its strips are not."""
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, size + (3,), dtype=np.uint8)).save(buffer, 'TIFF')
    data = buffer.getvalue()
    path.write_bytes(data[:len(data) // 2])
    return str(path)


def test_what_opencv_says_of_an_image_it_cannot_decode_is_its_reason_not_printed(tmp_path, capfd):
    """OpenCV printed "imdecode_(''): can't read data: ..." (std::cerr) for
    a truncated TIFF or a PGM with a negative sample, before our line (with
    two workers, a dozen times), and that line said only "unknown format,
    corrupt or truncated" (pass 54c M1). What it says is the reason now."""
    from caffe_mlic.data.imageio import decode_file, read_image, why_undecodable
    from caffe_mlic.data.labelmaps import LabelMapError, read_label_map
    from caffe_mlic.errors import InputError
    cut = _cut_tiff(tmp_path / 'cut.tif')
    (tmp_path / 'neg.pgm').write_bytes(b'P2\n4 4\n255\n' + b'-1 ' * 16)
    for path, said in ((cut, r'libtiff: TIFFFillStrip: Read error at scanline \d+; got \d+ bytes, expected \d+'),
                       (str(tmp_path / 'neg.pgm'), r'PXM: Unexpected code in ReadNumber\(\): 0x2d \(45\)')):
        assert decode_file(path) is None
        assert re.fullmatch('OpenCV cannot decode it: ' + said, why_undecodable(path)), why_undecodable(path)
        with pytest.raises(InputError, match=r'cannot read image \(OpenCV cannot decode it: %s\)$' % said):
            read_image(path)
        with pytest.raises(LabelMapError, match=r'cannot read label map \(OpenCV cannot decode it: %s\)$' % said):
            read_label_map(path, 6)
    assert capfd.readouterr().err == ''


def test_the_decoders_stderr_is_written_out_when_the_image_decodes(monkeypatch, capfd):
    """Only a failed decode's words are kept back: a decoder's note on an
    image it decodes reaches stderr as it was, and stderr is ours again after."""
    import cv2
    from caffe_mlic.data import imageio
    monkeypatch.setattr(cv2, 'imdecode', lambda data, flags: (os.write(2, b'decoder: a note\n'),
                                                             np.zeros((2, 2, 3), np.uint8))[1])
    image, said = imageio.imdecode(np.zeros(4, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (2, 2, 3) and said is None
    os.write(2, b'ours\n')
    assert capfd.readouterr().err == 'decoder: a note\nours\n'
    told = (b"imdecode_(''): can't read data: OpenCV(4.6.0) ./m/grfmt_tiff.cpp:704: error: (-2:Unspecified error) "
            b"OpenCV TIFF: failed X in function 'readData'\n\n")
    monkeypatch.setattr(cv2, 'imdecode', lambda data, flags: (os.write(2, told), None)[1])
    assert imageio.imdecode(np.zeros(4, np.uint8), cv2.IMREAD_COLOR) == (None, 'OpenCV TIFF: failed X')
    monkeypatch.setattr(cv2, 'imdecode', lambda data, flags: (os.write(2, b'libpng error: IDAT: Missing PLTE\n'),
                                                             None)[1])
    assert imageio.imdecode(np.zeros(4, np.uint8), cv2.IMREAD_COLOR) == (None, 'libpng: IDAT: Missing PLTE')
    assert capfd.readouterr().err == ''


def test_a_jpeg_libjpeg_calls_corrupt_is_not_decoded(tmp_path, capfd):
    """A baseline JPEG whose SOF0 marker says SOF9 (arithmetic coding):
    libjpeg warned "Corrupt JPEG data" and gave a grey image, which every
    command used with exit 0 and `datalist check` counted valid (pass
    54b M3). Refused as a truncated JPEG is, with libjpeg's words."""
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    good = cv2.imencode('.jpg', np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))[1].tobytes()
    assert b'\xff\xc0' in good
    (tmp_path / 'sof9.jpg').write_bytes(good.replace(b'\xff\xc0', b'\xff\xc9', 1))
    assert decode_file(str(tmp_path / 'sof9.jpg')) is None
    why = why_undecodable(str(tmp_path / 'sof9.jpg'))
    assert re.fullmatch(r'OpenCV cannot decode it: libjpeg: Corrupt JPEG data: \d+ extraneous bytes before marker '
                        r'0xd9', why), why
    write_datalist(tmp_path / 'list.txt', [(str(tmp_path / 'sof9.jpg'), [1, 0], [[0, 0, 9, 9]], [1.0])])
    assert cli.main(['datalist', 'check', str(tmp_path / 'list.txt'), '--att-num', '2', '--bbox-num', '1',
                     '--size', '32']) == 1
    assert 'list.txt:1: image: cannot decode %s: OpenCV cannot decode it: libjpeg: Corrupt JPEG data' % (
        tmp_path / 'sof9.jpg') in capfd.readouterr().out


def test_images_decode_with_stderr_closed(tmp_path):
    """`classify IMG 2>&-`: fd 2 is closed, or is whatever file the
    process opened next; set aside while the decoder runs (or not, when
    there is none) and put back, the image decodes all the same."""
    import subprocess
    import sys
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((8, 8, 3), np.uint8))
    done = subprocess.run([sys.executable, '-c', 'import sys; from caffe_mlic.data.imageio import decode_file; '
                           'print(decode_file(sys.argv[1]).shape)', str(tmp_path / 'a.png')],
                          stdout=subprocess.PIPE, text=True, preexec_fn=lambda: os.close(2), timeout=60)
    assert done.stdout == '(8, 8, 3)\n' and done.returncode == 0


@pytest.mark.parametrize('compression', ['tiff_lzw', 'tiff_adobe_deflate'])
def test_a_compressed_tiff_whose_data_libtiff_cannot_decompress_is_not_decoded(tmp_path, compression, capfd):
    """200 bytes of an LZW or Deflate TIFF's strip flipped: OpenCV mutes
    libtiff's error and returns the strip black, which a training used
    silently (an ISPRS label map lost half its pixels to black; pass 55c
    S1). libtiff's words are the reason; a good one decodes as before."""
    from PIL import Image
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, 'TIFF', compression=compression)
    good = bytearray(buffer.getvalue())
    (tmp_path / 'good.tif').write_bytes(bytes(good))
    np.testing.assert_array_equal(decode_file(str(tmp_path / 'good.tif')), pixels[:, :, ::-1])
    for i in range(100, 300):       # (PIL writes the directory after the strips: byte 8 on is data)
        good[i] ^= 0x5a
    (tmp_path / 'bad.tif').write_bytes(bytes(good))
    assert decode_file(str(tmp_path / 'bad.tif')) is None
    assert re.fullmatch(r'OpenCV cannot decode it: libtiff: .+|a corrupt TIFF: its Deflate strip 0 does not inflate .+',
                        why_undecodable(str(tmp_path / 'bad.tif')))
    assert capfd.readouterr().err == ''


def test_other_lines_written_while_an_image_fails_to_decode_are_not_lost(monkeypatch, capfd):
    """fd 2 is the process's: a line another thread writes while the
    decoder is heard is written out even when the image fails (pass 55c M1)."""
    import cv2
    from caffe_mlic.data import imageio
    told = b"another thread: still here\nimdecode_(''): can't read data: OpenCV(4.6.0) x.cpp:1: error: (-2:x) bad\n"
    monkeypatch.setattr(cv2, 'imdecode', lambda data, flags: (os.write(2, told), None)[1])
    assert imageio.imdecode(np.zeros(4, np.uint8), cv2.IMREAD_COLOR) == (None, 'bad')
    assert capfd.readouterr().err == 'another thread: still here\n'


def _tiff_bytes(image, **save):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, 'TIFF', **save)
    return bytearray(buffer.getvalue())


def _strip(data):
    """(offset, byte count) of the one strip of a small TIFF PIL wrote."""
    from PIL import Image
    tags = Image.open(io.BytesIO(bytes(data))).tag_v2
    return tags[273][0], tags[279][0]


def test_tiffs_whose_pixels_libtiff_or_zlib_find_damaged_are_not_decoded(tmp_path, capfd):
    """What pass 56c trained on with exit 0: a JPEG-compressed TIFF whose
    data libjpeg calls corrupt (libtiff's module "JPEGLib"), a CCITT fax
    TIFF with a damaged line ("Fax3Decode1D"), a Deflate strip whose
    Adler-32 fails but which still inflates (libtiff stops before the
    check); and a BigTIFF is said to be one. Undamaged ones decode."""
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    rng = np.random.default_rng(0)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), 8, 0), 8, 1)
    bits = (rng.random((64, 64)) > 0.5)
    cases = {'jpeg': (_tiff_bytes(smooth, compression='jpeg'), 'libtiff: JPEGLib: '),
             'fax': (_tiff_bytes(bits, compression='group3'), 'libtiff: Fax3Decode'),
             'deflate': (_tiff_bytes(smooth, compression='tiff_adobe_deflate'),
                         r'a corrupt TIFF: its Deflate strip 0 does not inflate \(.*incorrect data check\)')}
    for name, (data, said) in cases.items():
        (tmp_path / ('good_%s.tif' % name)).write_bytes(bytes(data))
        assert decode_file(str(tmp_path / ('good_%s.tif' % name))) is not None, name
        start, length = _strip(data)
        if name == 'deflate':
            data[start + length - 1] ^= 0xff        # (the stream's Adler-32: its pixels inflate as they were)
        else:
            for i in range(start + length // 3, start + length // 3 + 12):
                data[i] ^= 0x5a
        path = str(tmp_path / ('bad_%s.tif' % name))
        (tmp_path / ('bad_%s.tif' % name)).write_bytes(bytes(data))
        assert decode_file(path) is None, name
        assert re.match('(OpenCV cannot decode it: )?' + said, why_undecodable(path)), (name, why_undecodable(path))
    (tmp_path / 'big.tif').write_bytes(b'II+\x00\x08\x00\x00\x00' + bytes(64))
    assert why_undecodable(str(tmp_path / 'big.tif')) == 'a BigTIFF, which is not read here (save it as a classic TIFF)'
    assert capfd.readouterr().err == ''


@pytest.mark.parametrize('warned', [b'Inconsistent progression sequence for component 0 coefficient 0\n',
                                    b'Corrupt JPEG data: bad Huffman code\n'])
def test_a_jpeg_libjpeg_warns_is_damaged_is_not_decoded_though_it_gave_pixels(monkeypatch, warned):
    """A progressive JPEG with a damaged scan header gave a wholly wrong
    image with only libjpeg's warning (pass 56c S3)."""
    import cv2
    from caffe_mlic.data import imageio
    monkeypatch.setattr(cv2, 'imdecode', lambda data, flags: (os.write(2, warned), np.zeros((2, 2, 3), np.uint8))[1])
    assert imageio.imdecode(np.zeros(4, np.uint8), cv2.IMREAD_COLOR) == (None, 'libjpeg: ' + warned.decode().strip())


def test_fill_before_a_jpegs_end_marker_passes_and_zeros_are_refused_saying_why(tmp_path, capfd):
    """0xFF fill before the end marker is legal and decodes quietly. Zeros
    there ("Corrupt JPEG data: 64 extraneous bytes before marker 0xd9"),
    which some writers leave, read exactly as zeros written over the end of
    a scan, of which libjpeg reads a few as data: every rule that passed
    padding (pass 55b M2) let such damage through, with up to 45 % of the
    pixels wrong (passes 57c S1, 58 S2, 59c S1, 60c M1, 60d S2), or refused
    good images (59c S2, 60c S2). Zeros are refused, saying what to do with
    a whole image; varied bytes (a damaged scan that ends early) too."""
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = cv2.imencode('.jpg', pixels)[1].tobytes()
    clean = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    (tmp_path / 'filled.jpg').write_bytes(data[:-2] + b'\xff' * 64 + data[-2:])
    np.testing.assert_array_equal(decode_file(str(tmp_path / 'filled.jpg')), clean)
    assert capfd.readouterr().err == ''
    (tmp_path / 'padded.jpg').write_bytes(data[:-2] + bytes(64) + data[-2:])
    assert re.fullmatch(r'OpenCV cannot decode it: libjpeg: Corrupt JPEG data: (\d+) extraneous bytes before marker 0xd9 \(the \1 bytes are zeros: padding, or zeros written over the end of its scan, which cannot be told apart; if the '
        r'image is whole, save it again without them, e\.g\. with jpegtran -copy all\)', why_undecodable(str(tmp_path / 'padded.jpg')))
    (tmp_path / 'junk.jpg').write_bytes(data[:-2] + bytes(range(1, 200)) + data[-2:])
    assert decode_file(str(tmp_path / 'junk.jpg')) is None      # (libjpeg: "193 extraneous bytes", of varied values)
    assert 'zeros' not in why_undecodable(str(tmp_path / 'junk.jpg'))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xff         # (a byte of the scan: libjpeg stops early, "1666 extraneous bytes")
    (tmp_path / 'flipped.jpg').write_bytes(bytes(flipped))
    assert cv2.imdecode(np.frombuffer(bytes(flipped), np.uint8), cv2.IMREAD_COLOR) is not None
    assert decode_file(str(tmp_path / 'flipped.jpg')) is None


def test_a_deflate_tiff_strip_inflating_past_its_pixels_is_refused_at_once(tmp_path):
    """An 8 MB Deflate strip behind a 16 x 8 px header inflated to its end
    on every read (18 s; a stop waited 30 s; pass 57c M1): inflating stops
    past the strip's bytes of pixels."""
    import struct
    import time
    import zlib
    from caffe_mlic.data.imageio import why_undecodable
    strip = zlib.compress(bytes(200 * 2 ** 20), 9)
    entries = [(256, 3, 1, 16), (257, 3, 1, 8), (258, 3, 1, 8), (259, 3, 1, 8), (262, 3, 1, 1), (273, 4, 1, 0),
               (277, 3, 1, 1), (278, 3, 1, 8), (279, 4, 1, len(strip))]
    header = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack('<H', len(entries)) + b''.join(
        struct.pack('<HHI', tag, kind, n) + (struct.pack('<HH', value, 0) if kind == 3 else
                                            struct.pack('<I', header if tag == 273 else value))
        for tag, kind, n, value in entries) + struct.pack('<I', 0)
    (tmp_path / 'bomb.tif').write_bytes(b'II*\x00' + struct.pack('<I', 8) + ifd + strip)
    began = time.monotonic()
    assert why_undecodable(str(tmp_path / 'bomb.tif')) == ('a corrupt TIFF: its Deflate strip 0 inflates to more '
                                                           'than its 128 bytes of pixels')
    assert time.monotonic() - began < 2


def test_a_libtiff_message_with_a_line_break_is_one_reason_and_benign_notes_pass(monkeypatch, capfd):
    """libtiff's "Improper JPEG sampling factors 2,2\\nApparently should be
    1,1." left its second line on stderr, once per read (pass 57c M4); its
    note on an old-style JPEG TIFF refused a TIFF that decodes (M3)."""
    import cv2
    from caffe_mlic.data import imageio
    said = (b'OpenCV TIFF: JPEGPreDecode: Warning, Improper JPEG sampling factors 2,2\nApparently should be 1,1.\n'
            b"imdecode_(''): can't read data: OpenCV(4.6.0) x.cpp:1: error: (-2:x) OpenCV TIFF: failed X\n")
    monkeypatch.setattr(cv2, 'imdecode', lambda data, flags: (os.write(2, said), None)[1])
    tiff = np.frombuffer(b'II*\x00' + bytes(8), np.uint8)
    assert imageio.imdecode(tiff, cv2.IMREAD_COLOR) == (
        None, 'libtiff: JPEGPreDecode: Improper JPEG sampling factors 2,2 Apparently should be 1,1')
    note = (b'OpenCV TIFF: OJPEGSetupDecode: Warning, Deprecated and troublesome old-style JPEG compression mode, '
            b'please convert to new-style JPEG compression and notify vendor of writing software.\n')
    monkeypatch.setattr(cv2, 'imdecode', lambda data, flags: (os.write(2, note), np.zeros((2, 2, 3), np.uint8))[1])
    assert imageio.imdecode(tiff, cv2.IMREAD_COLOR)[1] is None
    assert capfd.readouterr().err == ''


def test_a_motion_photo_is_the_jpeg_before_its_video(tmp_path):
    """A camera's motion photo: a video appended after the JPEG's end
    marker, whose bytes held a "scan" marker of their own, was "a
    truncated JPEG" (pass 57c M2)."""
    from caffe_mlic.data.imageio import decode_file
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = cv2.imencode('.jpg', pixels)[1].tobytes()
    (tmp_path / 'motion.jpg').write_bytes(data + b'\x00\x00\x00\x18ftypmp42' + b'\xff\xda' + bytes(range(256)))
    np.testing.assert_array_equal(decode_file(str(tmp_path / 'motion.jpg')),
                                  cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))


def test_a_camera_jpegs_thumbnail_is_not_taken_for_its_image(tmp_path):
    """An EXIF thumbnail is a JPEG inside the APP1 segment: its scan and
    end marker were taken for the image's, so a camera JPEG cut in half
    passed as whole (48 % of its pixels wrong) and its padding was judged
    by the thumbnail's bytes (pass 58 S1, S2, M1). The file's segments are
    walked, to the main image's own end marker."""
    from caffe_mlic.data.imageio import decode_file, jpeg_layout
    rng = np.random.default_rng(0)
    main = cv2.imencode('.jpg', rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))[1].tobytes()
    thumb = cv2.imencode('.jpg', rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))[1].tobytes() + bytes(16)
    app1 = b'Exif\x00\x00' + thumb
    camera = main[:2] + b'\xff\xe1' + (len(app1) + 2).to_bytes(2, 'big') + app1 + main[2:]
    assert jpeg_layout(camera)[1] == len(camera) - 2
    clean = cv2.imdecode(np.frombuffer(camera, np.uint8), cv2.IMREAD_COLOR)
    (tmp_path / 'camera.jpg').write_bytes(camera)
    np.testing.assert_array_equal(decode_file(str(tmp_path / 'camera.jpg')), clean)
    (tmp_path / 'cut.jpg').write_bytes(camera[:len(camera) * 3 // 4])
    assert decode_file(str(tmp_path / 'cut.jpg')) is None
    (tmp_path / 'padded.jpg').write_bytes(camera[:-2] + b'\xff' * 64 + camera[-2:])
    np.testing.assert_array_equal(decode_file(str(tmp_path / 'padded.jpg')), clean)
    scan = camera[:-2]
    zeroed = scan[:len(scan) - 300] + bytes(300) + camera[-2:]      # (the scan's end written over with zeros)
    (tmp_path / 'zeroed.jpg').write_bytes(zeroed)
    assert decode_file(str(tmp_path / 'zeroed.jpg')) is None


# A 48 x 32 JPEG with arithmetic coding (written by libjpeg-turbo's cjpeg -arithmetic).
ARITHMETIC_JPEG = (
    '/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAMCAgMCAgMDAwMEAwMEBQgFBQQEBQoHBwYIDAoMDAsKCwsNDhIQDQ4RDgsLEBYQ'
    'ERMUFRUVDA8XGBYUGBIUFRT/2wBDAQMEBAUEBQkFBQkUDQsNFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQU'
    'FBQUFBQUFBQUFBQUFBT/yQARCAAgADADASIAAhEBAxEB/8wACgAQEAUBEBEF/9oADAMBAAIRAxEAPwDSqtBDHUeppUUBhDxi'
    'SZ4K3B3R81emR4tcL82KpvW0kNQXtS/2ZZ7+sxSdHC9N2oGqa4F2efZI1vTKj8ENWFxWTJpQaqqm9Kl4fC6q7KKUHstdVY+C'
    'mQUpFYOEif7I/l+iDKiJWiaSp+eTrzJc00XmhzS1SrXVFh7QkR7Ff1iJSOqNqxoxQbX40j1ZkgmU7Fnt8sEGIPhO+B7QemPr'
    'KUkJNtY9myWxfPWcBJz/AJ2XOKfvWz7xZnDNqBYDRtdrYIVUfRsiNrP2+Kg4/oStKoARpcxlfoQnaplJGwTHCA7H9fybBBty'
    'FaEE+nDBwiXDtCiL4j5mUjl33zXR6F8wPjJFvMeCWNuWyDarLOJEOqcl9vXok2S+yLgvFGDVmzYNHM0B2VqKvUuPHTXL9HPi'
    'IVumxtRZBmOQPKsI083P9voIvDgk7dwNyiTUBk7tvOYaWPK7gGvAz9AghXvpqA6BeYwJrcihD6/oYRp4nInPmQMYz9xBEnKa'
    'Cr5jrhpRxzRxCNLNa+VTE7Ya7aLErF6esSMcn3YFDbAw8RqD19me1CdRTniTqPDC57ZJQt3KtSskLyvpn9mw3Ul7l6qe80gm'
    '8YDeMsx3g+c0PLIFEM9TeIyvGHXu5Yi27xbVpHdyv8gnQi1HkNfgRY2QZ4TmO1CxjYD/2Q=='
)


def test_zeros_over_the_end_of_an_arithmetic_coded_scan_are_refused(tmp_path):
    """libjpeg's arithmetic decoder reads zeros at the end of a scan as its
    implied zeros, without a word: zeros written over a scan's end decoded
    the same with the zeros libjpeg called extraneous removed, and passed
    as padding with 16 to 81 % of the pixels wrong (pass 59c S1)."""
    from caffe_mlic.data.imageio import jpeg_layout, why_undecodable
    data = base64.b64decode(''.join(ARITHMETIC_JPEG))
    clean = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(decode_file_bytes(tmp_path, data), clean)
    first, end = jpeg_layout(data)
    for fraction in (0.3, 0.8, 0.95):
        cut = first + int((end - first) * fraction)
        zeroed = data[:cut] + bytes(end - cut) + data[end:]
        wrong = np.abs(cv2.imdecode(np.frombuffer(zeroed, np.uint8), cv2.IMREAD_COLOR).astype(int) - clean).max(2) > 24
        assert wrong.mean() > 0.1
        (tmp_path / 'zeroed.jpg').write_bytes(zeroed)
        assert re.fullmatch(r'OpenCV cannot decode it: libjpeg: Corrupt JPEG data: (\d+) extraneous bytes before marker 0xd9 \(the \1 bytes are zeros: padding, or zeros written over the end of its scan, which cannot be told apart; if the '
        r'image is whole, save it again without them, e\.g\. with jpegtran -copy all\)', why_undecodable(str(tmp_path / 'zeroed.jpg'))), fraction


def decode_file_bytes(tmp_path, data):
    from caffe_mlic.data.imageio import decode_file
    (tmp_path / 'bytes.jpg').write_bytes(data)
    return decode_file(str(tmp_path / 'bytes.jpg'))


def test_fill_bytes_between_markers_are_skipped_at_once(tmp_path):
    """Legal 0xFF fill between a JPEG's markers was walked a byte at a time,
    by our segment walk and PIL's header reader: 32 MB of it took 5 to 12 s
    a read against 0.1 s for OpenCV (pass 59c M2). A JPEG's size is read
    from its frame header, looked for in its first 16 MB."""
    import time
    from PIL import Image
    from caffe_mlic.data.imageio import decode_file, image_size, jpeg_frame_size
    pixels = np.random.default_rng(0).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    data = cv2.imencode('.jpg', pixels)[1].tobytes()
    clean = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    for name, filled in (('after-start.jpg', data[:2] + b'\xff' * (8 << 20) + data[2:]),
                         ('before-end.jpg', data[:-2] + b'\xff' * (32 << 20) + data[-2:])):
        (tmp_path / name).write_bytes(filled)
        began = time.monotonic()
        assert image_size(str(tmp_path / name)) == (40, 24)
        np.testing.assert_array_equal(decode_file(str(tmp_path / name)), clean)
        assert time.monotonic() - began < 3, name
    with Image.open(io.BytesIO(data)) as im:
        assert jpeg_frame_size(data) == (im.size, False)
    assert jpeg_frame_size(data[:12]) == (None, True)
    for length in (b'\x00\x00', b'\x00\x01'):       # (a segment length under 2 skips nothing, as libjpeg reads it)
        (tmp_path / 'short.jpg').write_bytes(data[:2] + b'\xff\xe0' + length + data[2:])
        np.testing.assert_array_equal(decode_file(str(tmp_path / 'short.jpg')), clean)
    # no size without a frame header: said, where PIL read on a byte at a time (86 s for a 1 GiB file)
    (tmp_path / 'far.jpg').write_bytes(data[:2] + b'\xff' * (32 << 20) + data[2:])
    (tmp_path / 'none.jpg').write_bytes(data[:2] + b'\xff\xd9')
    (tmp_path / 'cut.jpg').write_bytes(data[:2] + b'\xff' * 100)
    frame = next(i for i in range(2, len(data)) if data[i:i + 2] == b'\xff\xc0')
    (tmp_path / 'h0.jpg').write_bytes(data[:frame + 5] + b'\x00\x00' + data[frame + 7:])     # (datalist build: nan)
    (tmp_path / 'short.jpg').write_bytes(data[:frame + 2] + b'\x00\x08' + data[frame + 4:])
    (tmp_path / 'shorter.jpg').write_bytes(data[:frame + 2] + b'\x00\x06' + data[frame + 4:])
    (tmp_path / 'junk.jpg').write_bytes(data[:2] + b'\xff\x00\x00\x0a' + data[2:])    # (libjpeg skips FF 00 as junk)
    for name, why in (('far.jpg', 'a JPEG with no frame header in its first 16 MB'),
                      ('none.jpg', 'a JPEG with no frame header before its first scan'),
                      ('cut.jpg', 'a JPEG cut short before its frame header'),
                      ('h0.jpg', 'a JPEG whose frame header gives it a height of 0'),
                      ('short.jpg', 'a JPEG whose frame header is 8 bytes long, not the 17 of its 3 components'),
                      ('shorter.jpg', 'a JPEG whose frame header is 6 bytes long, too short for its fields'),
                      ('junk.jpg', 'a JPEG with no frame header before its first scan')):
        began = time.monotonic()
        with pytest.raises(ValueError, match='^%s$' % why):
            image_size(str(tmp_path / name))
        assert time.monotonic() - began < 3, name


@pytest.mark.parametrize('reader', ['label map', 'hard-pixel mask'])
def test_a_truncated_jpeg_label_map_or_mask_is_refused(tmp_path, reader):
    """Label maps and hard-pixel masks were decoded without the cut-file
    checks images get: a JPEG cut in half gave 8 to 17 % wrong labels,
    silently (pass 59c M1)."""
    from caffe_mlic.data.labelmaps import read_label_map
    from caffe_mlic.evaluation.segmentation import read_hard_mask
    labels = np.kron(np.random.default_rng(0).integers(0, 3, (6, 8)), np.ones((8, 8))).astype(np.uint8)
    data = cv2.imencode('.jpg', labels * 100, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
    (tmp_path / 'cut.jpg').write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match=r'cut\.jpg.*a truncated JPEG: no end-of-image marker'):
        if reader == 'label map':
            read_label_map(str(tmp_path / 'cut.jpg'), num_classes=256, label_format='index')
        else:
            read_hard_mask(str(tmp_path / 'cut.jpg'), (48, 64), 'pred.png')


def test_zero_padding_after_scan_data_that_ends_in_zeros_or_fill_is_refused(tmp_path):
    """Scan data that ends in zero codes (optimized Huffman codes of a flat
    band), or in a stuffed 0xFF 0x00, then zero padding: refused as any
    zero padding is, with its note (such files passed or were refused by
    turns under the padding rules, passes 59c S2, 60c S2); 0xFF written over
    a scan's last bytes, then zeros, passed with wrong pixels (60c M2)."""
    from PIL import Image
    from caffe_mlic.data.imageio import decode_file, why_undecodable
    out = io.BytesIO()
    Image.fromarray(np.full((480, 64), 200, np.uint8)).save(out, 'JPEG', quality=75, optimize=True)
    flat = out.getvalue()
    assert len(flat[:-2]) - len(flat[:-2].rstrip(b'\x00')) > 100       # (its data ends in zero codes)
    assert decode_file_bytes(tmp_path, flat) is not None
    (tmp_path / 'flat-padded.jpg').write_bytes(flat[:-2] + bytes(64) + flat[-2:])
    assert re.fullmatch(r'OpenCV cannot decode it: libjpeg: Corrupt JPEG data: (\d+) extraneous bytes before marker 0xd9 \(the \1 bytes are zeros: padding, or zeros written over the end of its scan, which cannot be told apart; if the '
        r'image is whole, save it again without them, e\.g\. with jpegtran -copy all\)', why_undecodable(str(tmp_path / 'flat-padded.jpg')))
    for seed in range(3000):
        stuffed = cv2.imencode('.jpg', np.random.default_rng(seed).integers(0, 256, (16, 16, 3), np.uint8))[1].tobytes()
        if stuffed[-4:-2] == b'\xff\x00':
            break
    assert stuffed[-4:-2] == b'\xff\x00' and decode_file_bytes(tmp_path, stuffed) is not None
    pixels = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    data = cv2.imencode('.jpg', pixels)[1].tobytes()
    for count in (2, 4, 16):
        (tmp_path / 'ff.jpg').write_bytes(data[:-2 - count] + b'\xff' * count + bytes(64) + data[-2:])
        assert decode_file(str(tmp_path / 'ff.jpg')) is None, count

def test_metadata_given_twice_and_libtiff_notes_on_whole_tiffs_pass(tmp_path, monkeypatch):
    """tifffile writes ImageDescription (tag 270) twice, the user's text and
    its own: every such TIFF was refused as "a TIFF that gives tag 270
    twice" (pass 62c S2); only tags of the pixels' layout given twice are.
    libtiff's notes on a JPEG subsampling it corrects and on old-style LZW
    codes, of files it decodes whole, refused them too (S1)."""
    from caffe_mlic.data import imageio
    n = 11
    pixels_at = 8 + 2 + 12 * n + 4
    entries = [(256, 3, 16), (257, 3, 16), (258, 3, 8), (259, 3, 1), (262, 3, 1), (270, 2, 0x61), (270, 2, 0x62),
               (273, 4, pixels_at), (277, 3, 1), (278, 3, 16), (279, 4, 256)]
    data = bytearray(_tiff(entries))
    data[pixels_at:] = bytes(range(256))
    (tmp_path / 'described.tif').write_bytes(bytes(data))
    np.testing.assert_array_equal(imageio.decode_file(str(tmp_path / 'described.tif'))[:, :, 0],
                                  np.arange(256, dtype=np.uint8).reshape(16, 16))
    for note in (b'OpenCV TIFF: JPEGFixupTagsSubsamplingSec: Warning, Auto-corrected former TIFF subsampling values '
                 b'[2,1] to match subsampling values inside JPEG compressed data [2,2].\n',
                 b'OpenCV TIFF: LZWPreDecode: Warning, Old-style LZW codes, convert file.\n'):
        monkeypatch.setattr(cv2, 'imdecode', lambda data, flags: (os.write(2, note), np.zeros((2, 2, 3), np.uint8))[1])
        assert imageio.imdecode(np.frombuffer(b'II*\x00' + bytes(8), np.uint8), cv2.IMREAD_COLOR)[1] is None
