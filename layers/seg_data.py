"""SegmentationData: crops of images and their label maps, for ScasNet.

Tops: ``data`` (N, 3, S, S) float32 BGR, (pixel - mean_value) * scale, and
``label`` (N, 1, S, S) float32 class indices, 255 where ignored (eroded
boundaries, padding, colours mapped to ignore): the bottoms of a stock
``SoftmaxWithLoss { loss_param { ignore_label: 255 } }``. S is crop_size.

Datalist lines: ``image label`` (caffe_mlic.data.datalist.read_seg_datalist).
Every line's files must exist and have the same size (headers, at setup);
at read time a label value outside the classes, a colour outside the palette
or a size mismatch stops training with the datalist line and the file. The
crop rules: seg_batch.py; the batch plan, prefetching and resuming are
MultiLabelProposalData's (pipeline.py, prefetch.py).
"""
import numpy as np

from caffe_mlic.data.datalist import read_seg_datalist
from caffe_mlic.data.labelmaps import LABEL_FORMATS, UNKNOWN_POLICIES, load_palette
from caffe_mlic.caffe.params import Param
from caffe_mlic.gpu import blobs as gpu_blobs
from .pipeline import TRAIN, PrefetchingDataLayer
from .prefetch import STALL_TIMEOUT
from .seg_batch import SegBatchPlanner, fill_crops, fill_pairs, pair_cache

__all__ = ['SegmentationData']


class SegmentationData(PrefetchingDataLayer):
    """Random crops (TRAIN: scale jitter from scale_factors, left-right and
    up-down flips; TEST: the centre crop) of images and label maps."""

    PARAMS = (
        Param('source', 'str'),  # datalist path (lines: image label)
        Param('root_folder', 'str', ''),
        Param('batch_size', 'int', low=1),
        Param('crop_size', 'int', low=1),
        Param('num_classes', 'int', low=1, high=255),
        Param('shuffle', 'bool', True),
        Param('mirror', 'bool', False),  # flip left-right on a coin (TRAIN)
        Param('vertical_flip', 'bool', False),  # flip up-down on a coin (TRAIN)
        Param('scale_factors', 'float_list', [1.0], low=0, low_open=True, min_len=1),
        Param('mean_value', 'float_list', [0.0, 0.0, 0.0], min_len=1),
        Param('scale', 'float', 1.0),
        Param('palette', 'str', 'isprs'),  # colour label maps: 'isprs' or a palette file
        Param('label_format', 'str', 'auto'),  # auto, index or color
        Param('unknown_color', 'str', 'error'),  # a colour outside the palette: error or ignore
        Param('seed', 'int', 0, low=0),
        Param('workers', 'int', 2, low=0, high=64),   # netspec.config.MAX_WORKERS
        # MiB of decoded images and label maps each process keeps (0: none)
        Param('cache_mb', 'float', 1024.0, low=0, high=2 ** 20),
        # seconds without an answer from the workers before a batch is given up
        Param('timeout', 'float', STALL_TIMEOUT, low=0, low_open=True),
    )
    TOPS = ('data', 'label')
    SIZE_PARAMS = 'batch_size or crop_size'  # what sets the tops' sizes (for caffe.shapes' message)

    @staticmethod
    def top_shapes(p, bottoms, phase):
        return [(p.batch_size, 3, p.crop_size, p.crop_size), (p.batch_size, 1, p.crop_size, p.crop_size)]

    def configure(self, bottom, top):
        p = self.params
        if len(p.mean_value) not in (1, 3):
            raise self.error('mean_value needs 1 or 3 values (B, G, R), got %d' % len(p.mean_value))
        for name, allowed in (('label_format', LABEL_FORMATS), ('unknown_color', UNKNOWN_POLICIES)):
            if getattr(p, name) not in allowed:
                raise self.error('%s must be one of %s, got %r' % (name, ', '.join(allowed), getattr(p, name)))
        palette = load_palette(p.palette)
        if p.label_format != 'index' and len(palette) < p.num_classes:
            raise self.error('num_classes is %d but the palette %s has %d colours'
                             % (p.num_classes, p.palette, len(palette)))
        self.mean = np.array(p.mean_value * 3 if len(p.mean_value) == 1 else p.mean_value, np.float32)
        self.train = self.phase == TRAIN
        self.labels = (p.num_classes, palette, p.label_format, p.unknown_color)
        self.datalist = read_seg_datalist(p.source, p.root_folder)
        n, s = p.batch_size, p.crop_size
        self.check_count('the data top', (n, 4, s, s), 'batch_size or crop_size')
        top[0].reshape(n, 3, s, s)
        top[1].reshape(n, 1, s, s)
        self.start_pipeline(n * 4 * s * s * 4, fill_crops,
                            (list(self.mean), p.scale, p.num_classes, p.palette, p.label_format,
                             p.unknown_color, p.cache_mb))

    def new_planner(self, batch_size):
        p = self.params
        return SegBatchPlanner(len(self.datalist), batch_size, self.train, p.shuffle, p.scale_factors,
                               p.mirror, p.vertical_flip, p.seed)

    def _items(self, plan):
        indices, crops = plan
        d = self.datalist
        return [(d.image_paths[i], d.label_paths[i], d.where(i), tuple(crop)) for i, crop in zip(indices, crops)]

    def batch_shape(self, plan):
        s = self.params.crop_size
        return (self.params.batch_size, 4, s, s)

    def chunk_task(self, plan):
        items, n, s = self._items(plan), self.params.batch_size, self.params.crop_size
        return n, lambda a, b: ((n, s, items[a:b]), [item[0] for item in items[a:b]])

    def fill_inprocess(self, plan, top):
        batch = np.empty(self.batch_shape(plan), np.float32)
        fill_pairs(self._items(plan), self.params.crop_size, self.labels, self.mean, self.params.scale, batch,
                   pair_cache(self.params.cache_mb))
        self.deliver(plan, batch, top)

    def deliver(self, plan, batch, top):
        gpu_blobs.fill(top[0], batch[:, :3])
        gpu_blobs.fill(top[1], batch[:, 3:])
