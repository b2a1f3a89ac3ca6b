"""ScasNet on images of any size: sliding-window inference.

The deploy net takes one tile x tile input (its Interp sizes are written for
that size). An image is covered by tiles at 0, stride, 2 stride, ... along
each axis, the last one moved back to end at the image's edge; an image
smaller than a tile is padded at the bottom / right with the mean (0 after
normalisation). Each tile's class scores go through a softmax and the
probabilities are averaged where tiles overlap. With ``flip`` each tile is
also run flipped left-right and up-down (aerial images have no up) and the
three are averaged.
"""
import numpy as np

from caffe_mlic.errors import InputError, UsageError

OUTPUT_BLOB = 'conv6_interp'


def tile_starts(size, tile, stride):
    """Tile offsets along one axis of ``size`` (>= tile) px: 0, stride, ...
    and a last one ending at the edge."""
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] != size - tile:
        starts.append(size - tile)
    return starts


def softmax(scores, axis=0):
    e = np.exp(scores - scores.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def normalise(image_bgr, mean, scale):
    """(3, H, W) float32: (BGR pixel - mean) * scale."""
    blob = image_bgr.astype(np.float32).transpose(2, 0, 1)
    blob -= np.asarray(mean, np.float32)[:, None, None]
    if scale != 1.0:
        blob *= np.float32(scale)
    return blob


class Segmenter:
    """A ScasNet deploy net (input ``data`` 1x3xSxS, scores ``conv6_interp``)
    with its weights and preprocessing (DeploySettings)."""

    def __init__(self, net_path, weights, settings, tile=None, output=OUTPUT_BLOB, palette=None,
                 palette_name='isprs'):
        """``palette``: the colours (labelmaps.Palette) the label maps will be
        painted with, named ``palette_name`` ('isprs' or its file) in errors;
        see check_palette."""
        from caffe_mlic.caffe import prototxt
        from caffe_mlic.inference import check_finite_weights
        proto = prototxt.read_net(net_path)
        if list(proto.input) != ['data'] or len(proto.input_dim) != 4 or proto.input_dim[2] != proto.input_dim[3]:
            raise InputError('%s: not a ScasNet deploy net (expected one square input "data", got %s)'
                             % (net_path, list(proto.input) or 'none'))
        self.tile = int(proto.input_dim[2])
        if tile is not None and tile != self.tile:
            raise UsageError('--tile %d: the net %s takes %dx%d tiles (its Interp sizes are fixed); '
                             'regenerate it with `caffe-mlic scasnet netgen --input-size %d`'
                             % (tile, net_path, self.tile, self.tile, tile), 'tile')
        self.net = prototxt.caffe_net(net_path, 'TEST', weights=weights)
        check_finite_weights(self.net, weights)
        if output not in self.net.blobs:
            raise InputError('%s: no %r blob (the class scores)' % (net_path, output))
        self.output, self.net_path = output, net_path
        self.num_classes = self.net.blobs[output].data.shape[1]
        self.settings = settings.check_net(
            net_path, num_classes=(self.num_classes, 'classes in its %r blob' % output))
        if palette is not None:
            self.check_palette(palette, palette_name)

    def check_palette(self, colours, name):
        """InputError when the palette ``colours`` (named ``name``: 'isprs' or
        its file) has fewer colours than the net has classes, as the training
        data layer refuses it: a class without a colour would be painted
        black, the colour of the ignore label."""
        have = len(colours)
        if have < self.num_classes:
            unpainted = ('class %d' % have if have == self.num_classes - 1 else
                         'classes %d to %d' % (have, self.num_classes - 1))
            raise InputError('num_classes is %d (the net %s, its %r blob) but the palette %s has %d colours: '
                             '%s would be painted black, the ignore colour'
                             % (self.num_classes, self.net_path, self.output, name, have, unpainted))
        return self

    def tiles(self, height, width, stride):
        """(y, x) of every tile over a height x width image (padded up to a tile)."""
        h, w = max(height, self.tile), max(width, self.tile)
        return [(y, x) for y in tile_starts(h, self.tile, stride) for x in tile_starts(w, self.tile, stride)]

    def tile_probabilities(self, blob, flip=False):
        """(K, t, t) softmax probabilities of one (3, t, t) tile."""
        views = [(lambda a: a, lambda a: a)]
        if flip:
            views += [(lambda a: a[..., ::-1], lambda a: a[..., ::-1]),
                      (lambda a: a[..., ::-1, :], lambda a: a[..., ::-1, :])]
        total = 0
        for forward_view, back in views:
            self.net.blobs['data'].data[0] = forward_view(blob)
            scores = self.net.forward()[self.output][0]
            total = total + back(softmax(scores))
        return total / len(views)

    def probabilities(self, image_bgr, stride, flip=False, on_tile=None):
        """(K, H, W) float32 class probabilities of a BGR uint8 image."""
        if not 1 <= stride <= self.tile:
            # a stride past the tile would leave pixels between tiles unscored
            raise UsageError('stride must be 1 to the tile (%d), got %d' % (self.tile, stride), 'stride')
        height, width = image_bgr.shape[:2]
        t = self.tile
        blob = normalise(image_bgr, self.settings.mean, self.settings.input_scale)
        # Sums over the image's own pixels only: a side under the tile is padded tile by tile (with the
        # mean, 0 once normalised), not in the whole image (a 700000 x 2 px image padded to 64 rows made
        # each sum 1 GiB).
        total = np.zeros((self.num_classes, height, width), np.float32)
        count = np.zeros((height, width), np.float32)
        for y, x in self.tiles(height, width, stride):
            rows, cols = min(t, height - y), min(t, width - x)
            tile = blob[:, y:y + t, x:x + t]
            if (rows, cols) != (t, t):
                tile = np.zeros((3, t, t), np.float32)
                tile[:, :rows, :cols] = blob[:, y:y + rows, x:x + cols]
            total[:, y:y + rows, x:x + cols] += self.tile_probabilities(tile, flip)[:, :rows, :cols]
            count[y:y + rows, x:x + cols] += 1
            if on_tile:
                on_tile()
        total /= count
        return total


def overlay(image_bgr, colours_rgb, alpha=0.5):
    """The image with the colour-coded labels blended over it (BGR uint8)."""
    import cv2
    return cv2.addWeighted(image_bgr, 1 - alpha, cv2.cvtColor(colours_rgb, cv2.COLOR_RGB2BGR), alpha, 0)


def label_images(net, weights, images, out, tile=None, stride=None, flip=False, palette='isprs', settings=None,
                 say=print):
    """`caffe-mlic scasnet infer`: label ``images`` (files or folders) with the
    deploy ``net`` and ``weights`` by sliding windows of ``tile`` px (the
    net's input size) every ``stride`` px (two thirds of the tile); writes
    OUT/labels/X.png, OUT/color/X.png and OUT/overlay/X.jpg per image X.
    Nothing is written when an output would replace an input. Returns the
    images' paths."""
    import os
    import cv2
    from caffe_mlic.data.imageio import image_size, read_image
    from caffe_mlic.data.labelmaps import colour_png, index_to_colour, label_png, load_palette
    from caffe_mlic.fileio import atomic_files, refuse_lost_outputs, refuse_output_among_inputs, refuse_overwriting
    from caffe_mlic.fileio import refuse_folders, refuse_non_folders
    from caffe_mlic.inference import model_and_images, printable
    from caffe_mlic.inference.draw import encode_picture
    from caffe_mlic.inference.settings import find_settings, load_settings
    from caffe_mlic.progress import progress
    images = model_and_images((net, weights), images)
    stems = [os.path.splitext(os.path.basename(p))[0] for p in images]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise UsageError('two images would write the same outputs: %s' % ', '.join(map(printable, twice)))
    outputs = [out] + [os.path.join(out, folder, stem + ext) for stem in stems
                       for folder, ext in (('labels', '.png'), ('color', '.png'), ('overlay', '.jpg'))]
    refuse_output_among_inputs(out, images, param='out', subfolders=('labels', 'color', 'overlay'))
    refuse_overwriting(outputs, images + [net, weights, settings or find_settings(net), palette], 'out')
    refuse_non_folders([out] + [os.path.join(out, sub) for sub in ('labels', 'color', 'overlay')], 'out')
    refuse_folders(outputs[1:], 'out')
    colours = load_palette(palette)
    model = Segmenter(net, weights, load_settings(net, settings), tile, palette=colours, palette_name=palette)
    stride = max(1, round(model.tile * 2 / 3)) if stride is None else stride
    if not 1 <= stride <= model.tile:
        raise UsageError('argument --stride: must be 1 to the tile (%d), got %d' % (model.tile, stride))
    total = 0
    for path in images:
        try:
            w, h = image_size(path)
        except Exception as e:
            raise InputError('%s: cannot read image (%s)' % (path, e))
        total += len(model.tiles(h, w, stride)) * (3 if flip else 1)
    bar = progress(total=total, desc='scasnet infer', unit='tile')
    for path, stem in zip(images, stems):
        image = read_image(path)
        probabilities = model.probabilities(image, stride, flip, on_tile=lambda: bar.update(3 if flip else 1))
        labels = probabilities.argmax(axis=0).astype('uint8')
        jpg = encode_picture('.jpg', overlay(image, index_to_colour(labels, colours)), [cv2.IMWRITE_JPEG_QUALITY, 90])
        # an image's three outputs together or none (a full disk left its labels without its overlay)
        with atomic_files([os.path.join(out, folder, stem + ext) for folder, ext in
                           (('labels', '.png'), ('color', '.png'), ('overlay', '.jpg'))], 'wb') as files:
            for f, data in zip(files, (label_png(labels), colour_png(labels, colours), jpg)):
                f.write(data)
    bar.close()
    refuse_lost_outputs(outputs[1:], 'scasnet infer')
    say('labelled %d images (%d tiles of %d px, stride %d%s) -> %s' % (
        len(images), total, model.tile, stride, ', flipped too' if flip else '', printable(out)))
    return images
