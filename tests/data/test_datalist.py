"""caffe_mlic.data.datalist: the one datalist parser."""
import os
import re

import numpy as np
import pytest

from caffe_mlic.data.datalist import (Datalist, DatalistError, format_line, parse_line, read_datalist,
                                 scan_datalist, write_datalist)

C, B = 2, 2          # a line has 1 + 2 + 10 = 13 fields
W, H = 32, 24        # resized image size


@pytest.fixture
def images(tmp_path):
    """Three (empty, but existing) image files; the parser only checks they exist."""
    paths = []
    for i in range(3):
        p = tmp_path / ('im%d.jpg' % i)
        p.write_bytes(b'x')
        paths.append(str(p))
    return paths


def good_line(path, i=0):
    return '%s 1 0 %d 2 10 12 0.5 0 0 31 23 1' % (path, i)


def write_lines(tmp_path, lines, name='list.txt'):
    p = tmp_path / name
    p.write_text('\n'.join(lines) + '\n')
    return str(p)


def test_parse_line_values():
    path, labels, boxes, scores = parse_line('a/b.jpg 1 0  3 2 10 12 0.25\t0 0 31 23 1\r\n', C, B)
    assert path == 'a/b.jpg'
    assert labels.dtype == np.uint8 and labels.tolist() == [1, 0]
    assert boxes.dtype == np.float32 and boxes.tolist() == [[3, 2, 10, 12], [0, 0, 31, 23]]
    assert scores.dtype == np.float32 and scores.tolist() == [0.25, 1]


def test_format_parse_round_trip():
    rng = np.random.default_rng(0)
    boxes = np.array([[1, 2, 30, 20], [0.5, 1.25, 7.75, 9]], np.float32)
    scores = rng.random(2).astype(np.float32)
    line = format_line('img.jpg', np.array([1, 0], np.uint8), boxes, scores)
    # integers carry no decimals; float32 values are written short and exact
    assert line.startswith('img.jpg 1 0 1 2 30 20 %s 0.5 1.25 7.75 9 ' % scores[0])
    path, labels, b, s = parse_line(line, C, B)
    assert path == 'img.jpg' and labels.tolist() == [1, 0]
    assert np.array_equal(b, boxes) and np.array_equal(s, scores)
    assert format_line(path, labels, b, s) == line
    assert format_line('x.jpg', [0, 1], [[0, 0, 3, 3]], [1.0]) == 'x.jpg 0 1 0 0 3 3 1'


def test_write_read_round_trip(tmp_path, images):
    rows = [(images[i], [i % 2, 1], [[i, 1, 20, 22.5], [0, 0, 31, 23]], [0.125 * i, 1]) for i in range(3)]
    write_datalist(tmp_path / 'out.txt', rows)
    d = read_datalist(tmp_path / 'out.txt', C, B, W, H)
    assert isinstance(d, Datalist) and len(d) == 3
    assert d.image_paths == images
    assert d.line_numbers.tolist() == [1, 2, 3]
    assert d.labels.tolist() == [[0, 1], [1, 1], [0, 1]]
    assert d.boxes[2].tolist() == [[2, 1, 20, 22.5], [0, 0, 31, 23]]
    assert d.scores[:, 0].tolist() == [0, 0.125, 0.25]
    assert d.boxes.dtype == np.float32 and d.scores.dtype == np.float32 and d.labels.dtype == np.uint8


def test_root_folder_blank_lines_and_line_numbers(tmp_path, images):
    names = [p.rsplit('/', 1)[1] for p in images]
    src = write_lines(tmp_path, ['', good_line(names[0]), '   ', '', good_line(names[1], 5), ''])
    d = read_datalist(src, C, B, W, H, root_folder=str(tmp_path))
    assert d.image_paths == images[:2]
    assert d.line_numbers.tolist() == [2, 5]
    assert d.boxes[:, 0, 0].tolist() == [0, 5]


def test_numbers_parse_exactly_like_float(tmp_path, images):
    """The fast parser must give the very values Python's float() gives."""
    from caffe_mlic.data.datalist import _POW10, _parse_block
    rng = np.random.default_rng(1)
    tokens = []
    for v in rng.random(300) * 10.0 ** rng.integers(-3, 4, 300):
        tokens.append(rng.choice([repr(float(v)), '%.3f' % v, '%.8e' % v, '%.20f' % v, '+%g' % v, '-%.6g' % v]))
    tokens += ['1e-30', '0.000000000000000000000000123', '7.', '.5', '1E2', '0012.50', '123456789012345678',
               '-0', '4.9e-324', '1.7976931348623157e308']
    # float64 straight from the kernel (the public arrays are float32), one
    # token a line; status 2 = left to the field-by-field path
    text = ''.join('p %s\n' % t for t in tokens).encode()
    n = len(tokens)
    values = np.zeros((n, 1))
    status = np.zeros(n, np.uint8)
    idx = [np.zeros(n, np.int64) for _ in range(3)]
    assert _parse_block(np.frombuffer(text, np.uint8), 1, _POW10, values, *idx, status) == n
    fast = [(t, v) for t, v, s in zip(tokens, values[:, 0], status) if s == 1]
    assert len(fast) > 200
    assert [v for _, v in fast] == [float(t) for t, _ in fast]
    assert [t for t, s in zip(tokens, status) if s == 2][-4:] == [
        '0.000000000000000000000000123', '123456789012345678', '4.9e-324', '1.7976931348623157e308']
    # and through the public parser, lines with unusual numbers included
    boxes = ' '.join('0 0 1 1 %s' % t.lstrip('-') for t in tokens[:-1])
    src = write_lines(tmp_path, ['%s 1 0 %s' % (images[0], boxes)])
    d = read_datalist(src, C, len(tokens) - 1)
    assert d.scores[0].tolist() == [np.float32(float(t.lstrip('-'))) for t in tokens[:-1]]


def test_exact_field_count_expected_vs_got(tmp_path, images):
    src = write_lines(tmp_path, [good_line(images[0]), images[1] + ' 1 0 3 2 10 12 0.5 0 0 31 23'])
    with pytest.raises(DatalistError) as e:
        read_datalist(src, C, B, W, H)
    assert '%s:2: expected 13 fields' % src in str(e.value)
    assert 'got 12' in str(e.value)
    assert e.value.problems == [(src, 2, None, e.value.problems[0].message)]


@pytest.mark.parametrize('line, fragment', [
    ('{p} 1 0 3 abc 10 12 0.5 0 0 31 23 1', "field 5 (box 0 y1): 'abc' is not a number"),
    ('{p} 1 2 3 2 10 12 0.5 0 0 31 23 1', 'field 3 (label 1): 2 is not 0 or 1'),
    ('{p} 1 0 9 2 4 12 0.5 0 0 31 23 1', 'box 0: x2 = 4 < x1 = 9'),
    ('{p} 1 0 3 2 10 12 0.5 0 9 31 5 1', 'box 1: y2 = 5 < y1 = 9'),
    ('{p} 1 0 3 2 10 12 0.5 0 0 32 23 1', 'field 11 (box 1 x2): 32 is outside the 32x24 image (max x is 31)'),
    ('{p} 1 0 3 2 10 24 0.5 0 0 31 23 1', 'field 7 (box 0 y2): 24 is outside the 32x24 image (max y is 23)'),
    ('{p} 1 0 3 2 10 12 nan 0 0 31 23 1', "field 8 (box 0 score): 'nan' is not a finite number"),
    ('{p} 1 0 3 2 10 12 0.5 0 0 31 23 inf', "field 13 (box 1 score): 'inf' is not a finite number"),
    ('{p} 1 0 -1 2 10 12 0.5 0 0 31 23 1', 'field 4 (box 0 x1): -1 is negative'),
    ('{p} 1 0 3 2 10 12 1_0 0 0 31 23 1', "field 8 (box 0 score): '1_0' is not a number"),
])
def test_bad_line_names_file_line_and_field(tmp_path, images, line, fragment):
    src = write_lines(tmp_path, [good_line(images[0]), '', line.format(p=images[1])])
    with pytest.raises(DatalistError) as e:
        read_datalist(src, C, B, W, H)
    assert '%s:3: %s' % (src, fragment) in str(e.value)
    assert len(e.value.problems) == 1
    if 'outside' not in fragment:       # parse_line knows no image size
        with pytest.raises(ValueError, match=re.escape(fragment)):
            parse_line(line.format(p='x.jpg'), C, B)


def test_bounds_only_checked_with_a_size(tmp_path, images):
    src = write_lines(tmp_path, [images[0] + ' 1 0 3 2 100 12 0.5 0 0 31 23 1'])
    assert read_datalist(src, C, B).boxes[0, 0, 2] == 100
    with pytest.raises(DatalistError, match='outside'):
        read_datalist(src, C, B, W, H)


def test_missing_image(tmp_path, images):
    src = write_lines(tmp_path, [good_line(images[0]), good_line(str(tmp_path / 'nope.jpg'))])
    with pytest.raises(DatalistError) as e:
        read_datalist(src, C, B, W, H)
    assert '%s:2: image file %s does not exist' % (src, tmp_path / 'nope.jpg') in str(e.value)
    src = write_lines(tmp_path, [good_line(images[0]), good_line(str(tmp_path))])      # (pass 31 M3)
    with pytest.raises(DatalistError) as e:
        read_datalist(src, C, B, W, H)
    assert '%s:2: image file %s is a folder' % (src, tmp_path) in str(e.value)
    # a FIFO or a link to a device "did not exist" (pass 46c M1)
    os.mkfifo(str(tmp_path / 'fifo.jpg'))
    os.symlink('/dev/zero', str(tmp_path / 'zero.jpg'))
    for name, kind in (('fifo.jpg', 'a FIFO'), ('zero.jpg', 'a device')):
        src = write_lines(tmp_path, [good_line(images[0]), good_line(str(tmp_path / name))])
        with pytest.raises(DatalistError) as e:
            read_datalist(src, C, B, W, H)
        assert '%s:2: image file %s is %s, not a file' % (src, tmp_path / name, kind) in str(e.value)
    assert len(read_datalist(src, C, B, W, H, check_images=False)) == 2


@pytest.mark.parametrize('content', ['', '\n\n   \n'])
def test_empty_file(tmp_path, content):
    src = tmp_path / 'empty.txt'
    src.write_text(content)
    with pytest.raises(DatalistError, match='empty.txt: the datalist is empty'):
        read_datalist(src, C, B, W, H)


def test_unreadable_source(tmp_path):
    with pytest.raises(DatalistError, match='nothere.txt: cannot read the datalist: No such file'):
        read_datalist(tmp_path / 'nothere.txt', C, B)


def test_every_bad_line_is_listed(tmp_path, images):
    lines = [good_line(images[0]),
             images[1] + ' 1 0 3 2 10',                          # 2: too few fields
             images[1] + ' 1 0 3 2 10 12 0.5 0 0 31 23 x',        # 3: not a number
             good_line(images[2]),
             images[2] + ' 3 0 9 2 4 12 0.5 0 0 31 23 1']         # 5: label and box order
    src = write_lines(tmp_path, lines)
    d, problems = scan_datalist(src, C, B, W, H)
    assert [(p.line, p.field or p.message) for p in problems] == [
        (2, 'expected 13 fields (image path, 2 labels, 2 boxes of x1 y1 x2 y2 score), got 6'),
        (3, 'field 13 (box 1 score)'), (5, 'field 2 (label 0)'), (5, 'box 0')]
    assert all(p.path == src for p in problems)
    assert d.image_paths == [images[0], images[2]] and d.line_numbers.tolist() == [1, 4]
    with pytest.raises(DatalistError) as e:
        read_datalist(src, C, B, W, H)
    text = str(e.value)
    assert text.startswith('4 problems in datalist %s:' % src)
    for n in (2, 3, 5):
        assert '%s:%d: ' % (src, n) in text


def test_max_listed_counts_the_rest(tmp_path, images):
    src = write_lines(tmp_path, [images[0] + ' 1 0 x'] * 25)
    with pytest.raises(DatalistError) as e:
        read_datalist(src, C, B, max_listed=10)
    text = str(e.value)
    assert len(e.value.problems) == 25
    assert '%s:10: ' % src in text and '%s:11: ' % src not in text
    assert text.endswith('... and 15 more problems')


def test_many_lines_many_boxes(tmp_path, images):
    """Several blocks of the fast parser, with one bad line deep inside."""
    rng = np.random.default_rng(2)
    nb, n = 50, 3000
    xy = rng.integers(0, 20, (n, nb, 2))
    boxes = np.concatenate([xy, xy + rng.integers(0, 4, (n, nb, 2))], axis=2)
    scores = rng.random((n, nb)).astype(np.float32)
    rows = [(images[i % 3], rng.integers(0, 2, C), boxes[i], scores[i]) for i in range(n)]
    write_datalist(tmp_path / 'big.txt', rows)
    d = read_datalist(tmp_path / 'big.txt', C, nb, W, H)
    assert np.array_equal(d.boxes, boxes.astype(np.float32)) and np.array_equal(d.scores, scores)
    text = (tmp_path / 'big.txt').read_text().splitlines()
    fields = text[2500].split(' ')
    fields[1] = '0.5e'
    text[2500] = ' '.join(fields)
    (tmp_path / 'big.txt').write_text('\n'.join(text))
    _, problems = scan_datalist(tmp_path / 'big.txt', C, nb, W, H)
    assert [(p.line, p.field, p.message) for p in problems] == [(2501, 'field 2 (label 0)',
                                                                 "'0.5e' is not a number")]


def test_a_file_of_short_lines_is_read_in_little_memory(tmp_path):
    """An image list given where a datalist is expected, at the release's
    sizes (20 classes, 500 boxes: 2520 values a line): the parser asked for a
    row of values per line of each 8 MB block, 0.8 GB for these 40000 lines
    (5.6 GB for 300000), before finding that no line has its fields."""
    import tracemalloc
    src = tmp_path / 'images.txt'
    src.write_text(''.join('im%d.jpg\n' % i for i in range(40000)))
    tracemalloc.start()
    try:
        datalist, problems = scan_datalist(src, 20, 500, check_images=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(datalist) == 0 and len(problems) == 40000
    assert problems[-1].line == 40000 and 'expected 2521 fields' in problems[-1].message
    assert peak < 150e6, peak


def test_lines_read_in_small_groups_keep_their_numbers(tmp_path, images, monkeypatch):
    from caffe_mlic.data import datalist
    lines = [good_line(images[i % 3], i % 9) if i % 4 else '' for i in range(40)]
    lines[17] = good_line(images[0]).replace(' 0.5 ', ' x ')
    src = write_lines(tmp_path, lines)
    whole = scan_datalist(src, C, B, W, H)
    monkeypatch.setattr(datalist, '_VALUES_BUDGET', 8 * (C + 5 * B) * 3)    # 3 lines a group
    grouped = scan_datalist(src, C, B, W, H)
    assert grouped[1] == whole[1] and [p.line for p in whole[1]] == [18]
    assert grouped[0].line_numbers.tolist() == whole[0].line_numbers.tolist() == [
        i + 1 for i in range(40) if i % 4 and i != 17]
    assert np.array_equal(grouped[0].boxes, whole[0].boxes) and grouped[0].image_paths == whole[0].image_paths
