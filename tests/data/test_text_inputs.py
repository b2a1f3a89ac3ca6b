"""Text inputs that start with a UTF-8 byte order mark (some editors, and
Excel's "CSV UTF-8", write one): every reader of caffe_mlic.data reads the
first line as if the BOM were not there, rather than as part of its first
path, class name or column name."""
import json

import cv2
import numpy as np
import pytest

from caffe_mlic import cli
from caffe_mlic.errors import InputError
from caffe_mlic.data import annotations, labelmaps
from caffe_mlic.data.datalist import read_datalist, read_seg_datalist
from caffe_mlic.data.proposal_formats import read_csv
from caffe_mlic.data.proposal_import import read_image_list

BOM = '\ufeff'


def write(path, text, bom=True):
    path.write_bytes(((BOM if bom else '') + text).encode('utf-8'))
    return str(path)


@pytest.fixture
def image(tmp_path):
    path = tmp_path / 'a.png'
    assert cv2.imwrite(str(path), np.zeros((24, 32, 3), np.uint8))
    return path


def test_datalist(tmp_path, image):
    listing = write(tmp_path / 'list.txt', '%s 1 0 0 0 9 9 1\n' % image)
    dl = read_datalist(listing, 2, 1, 32, 24)
    assert dl.image_paths == [str(image)] and dl.line_numbers.tolist() == [1]


def test_segmentation_datalist(tmp_path, image):
    listing = write(tmp_path / 'seg.txt', 'a.png a.png\n')
    assert read_seg_datalist(listing, str(tmp_path) + '/').image_paths == [str(image)]


def test_class_list_label_file_and_voc_image_set(tmp_path, image):
    assert annotations.read_class_list(write(tmp_path / 'classes.txt', 'cat\ndog\n')) == ['cat', 'dog']
    records = annotations.read_label_file(write(tmp_path / 'labels.txt', 'a.png dog\n'), ['cat', 'dog'])
    assert records[0].path == str(image) and records[0].labels == {'dog'}
    voc = tmp_path / 'VOC'
    (voc / 'ImageSets' / 'Main').mkdir(parents=True)
    (voc / 'Annotations').mkdir()
    (voc / 'JPEGImages').mkdir()
    image.rename(voc / 'JPEGImages' / 'a.png')
    write(voc / 'ImageSets' / 'Main' / 'train.txt', 'a\n')
    (voc / 'Annotations' / 'a.xml').write_text(
        '<annotation><filename>a.png</filename><size><width>32</width><height>24</height></size>'
        '<object><name>dog</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax>'
        '</bndbox></object></annotation>')
    write(voc / 'classes.txt', 'cat\ndog\n')
    classes, records = annotations.read_voc(str(voc), 'train')
    assert classes == ['cat', 'dog'] and len(records) == 1


def test_a_class_lists_problems_are_headed_as_a_class_list(tmp_path):
    """They were "problems in annotations" (pass 31 M4)."""
    path = write(tmp_path / 'classes.txt', 'cat\ndog\ncat\n')
    with pytest.raises(InputError) as e:
        annotations.read_class_list(path)
    assert str(e.value) == "1 problem in class list %s:\n  %s:3: class 'cat' repeats line 1" % (path, path)


def test_coco_json(tmp_path, image):
    data = dict(images=[dict(id=1, file_name='a.png', width=32, height=24)],
                categories=[dict(id=1, name='dog')], annotations=[])
    coco = annotations.read_coco_set(write(tmp_path / 'coco.json', json.dumps(data)), str(tmp_path))
    assert coco.classes == ['dog']


def test_palette(tmp_path):
    palette = labelmaps.load_palette(write(tmp_path / 'palette.txt', 'road 255 255 255\ncar 255 0 0\n'))
    assert palette.names == ['road', 'car']


def test_proposal_csv_and_image_list(tmp_path, image):
    entries = read_csv(write(tmp_path / 'p.csv', 'image,x1,y1,x2,y2,score\na,1,2,10,12,0.5\n'))
    assert [e.image_id for e in entries] == ['a']
    assert read_image_list([write(tmp_path / 'images.txt', 'a.png\n')]) == [str(image)]


def test_datalist_check_and_proposals_import_on_files_with_a_bom(tmp_path, image, capsys):
    """Through the commands: both failed on the BOM ('image file \ufeff/... does
    not exist', 'it lacks image')."""
    listing = write(tmp_path / 'list.txt', '%s 1 0 0 0 9 9 1\n' % image)
    assert cli.main(['datalist', 'check', listing, '--att-num', '2', '--bbox-num', '1', '--size',
                     '32x24']) == 0, capsys.readouterr()
    csv_file = write(tmp_path / 'p.csv', 'image,x1,y1,x2,y2,score\na,1,2,10,12,0.5\n')
    assert cli.main(['proposals', 'import', 'csv', csv_file, '-o', str(tmp_path / 'props'), '--images',
                     str(image), '--min-size', '1', '-q']) == 0, capsys.readouterr().err
    with np.load(str(tmp_path / 'props' / 'a.npz')) as z:
        assert z['boxes'].tolist() == [[1, 2, 10, 12]]


@pytest.mark.parametrize('kind', ['folder', 'fifo', 'dangling link'])
def test_a_voc_classes_txt_or_annotation_that_is_no_regular_file_is_an_error(tmp_path, image, kind):
    """read_voc passed over a ROOT/classes.txt that was a folder, a FIFO or a
    broken link (the 20 VOC classes were used); an Annotations/<id>.xml that
    was a FIFO was said "not found" (and parse_voc_xml, opening it, hung)."""
    import os
    from tests.faults import input_errors_beside_a_fifo
    voc = tmp_path / 'VOC'
    (voc / 'ImageSets' / 'Main').mkdir(parents=True)
    (voc / 'Annotations').mkdir()
    write(voc / 'ImageSets' / 'Main' / 'train.txt', 'a\n')
    own = voc / 'classes.txt'
    {'folder': os.mkdir, 'fifo': os.mkfifo, 'dangling link': lambda p: os.symlink('gone.txt', p)}[kind](str(own))
    with pytest.raises(InputError) as e:
        annotations.read_voc(str(voc), 'train')
    assert str(e.value).startswith('%s: cannot read class list: ' % own)
    own.unlink() if kind != 'folder' else own.rmdir()
    write(own, 'cat\ndog\n')
    xml = voc / 'Annotations' / 'a.xml'
    os.mkfifo(str(xml))
    found = input_errors_beside_a_fifo(xml, lambda: annotations.read_voc(str(voc), 'train'))
    assert len(found) == 1 and '%s: cannot read: not a regular file (a device, FIFO or folder)' % xml in found[0]


@pytest.mark.parametrize('breaker', ['\u2028', '\u2029', '\x85', '\x0b', '\x0c', '\x1c', '\x1e'])
def test_a_class_name_with_a_unicode_line_break_is_refused_on_its_line(tmp_path, breaker):
    """str.splitlines broke 'sq<U+2028>are' into two class names: netgen
    --classes 4 took them, and every class after it was shifted by one
    (pass 44b S3). A line ends at a newline only; the character is named."""
    path = write(tmp_path / 'classes.txt', 'circle\nsq%sare\ntriangle\n' % breaker)
    with pytest.raises(InputError) as e:
        annotations.read_class_list(path)
    assert str(e.value) == ('1 problem in class list %s:\n  %s:2: U+%04X, a character that does not print (a '
                            'control, format or line separator character), in %r: give one printable class a line'
                            % (path, path, ord(breaker), 'sq%sare' % breaker))
    res = cli.main(['netgen', '-o', str(tmp_path / 'nets'), '--classes', '4', '--classes-file', path])
    assert res == 1 and not (tmp_path / 'nets').exists()


def test_text_lines_break_at_newlines_only():
    from caffe_mlic.fileio import text_lines
    assert text_lines('a\r\nb\rc\nd\u2028e\x85f\n') == ['a', 'b', 'c', 'd\u2028e\x85f']
    assert text_lines('a\n\n') == ['a', ''] and text_lines('') == [] and text_lines('x') == ['x']
