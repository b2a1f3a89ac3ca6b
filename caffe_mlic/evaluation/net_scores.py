"""The scores of a trained net over its TEST datalist.

The TEST phase reads the datalist in file order and wraps around at its end,
so ceil(M / batch_size) forward passes see every image once; the rows past
the M-th are dropped.
"""
import os

import numpy as np

from caffe_mlic.errors import InputError, UsageError

def _check_score_blob(net, blob, label_blob, data_tops, batch_size, att_num, where):
    """UsageError unless ``blob`` holds one row of att_num scores per image."""
    if blob not in net.blobs:
        raise UsageError('%s has no blob %r; its blobs: %s' % (where, blob, ', '.join(net.blobs)), 'blob')
    if blob == label_blob or blob in data_tops:
        raise UsageError('blob %r is %s, not scores' % (
            blob, 'the labels' if blob == label_blob else 'a top of the data layer (%s)'
            % ', '.join(data_tops)), 'blob')
    shape = tuple(net.blobs[blob].shape)
    if not shape or shape[0] != batch_size or int(np.prod(shape[1:])) != att_num:
        raise UsageError('blob %r has shape %s, not one row of %d class scores per image (%d x %d per '
                         'batch): pick an image-level score blob, not a per-region or feature one'
                         % (blob, shape, att_num, batch_size, att_num), 'blob')


def _with_source(net_param, layer, source):
    """net_param with the TEST data layer ``layer`` reading datalist ``source``."""
    from caffe_mlic.caffe import prototxt

    def swap(candidate):
        if candidate == layer:
            prototxt.set_python_params(candidate, dict(prototxt.python_params(candidate),
                                                       source=os.path.abspath(source)))
        return candidate
    return prototxt.rewrite_layers(net_param, swap)


def score_test_set(prototxt_path, weights, blob, label_blob=None, datalist=None):
    """Run the TEST phase once over its whole datalist (or over ``datalist``
    instead): (scores (M, C) float64 of ``blob``, labels (M, C) int8 of
    label_blob, by default the TEST data layer's labels (evaluator.label_blob))."""
    from caffe_mlic.caffe import prototxt
    from caffe_mlic.data.datalist import read_datalist
    from caffe_mlic.evaluation import evaluator
    net_param = prototxt.read_net(prototxt_path)
    layer = prototxt.data_layer(net_param, 'TEST', where=prototxt_path)
    if datalist is not None:
        from caffe_mlic.fileio import input_file_problem
        problem = input_file_problem(datalist, 'datalist')
        if problem:
            raise InputError(problem)
        net_param = _with_source(net_param, layer, datalist)
    params = prototxt.python_params(layer)
    count = len(read_datalist(params['source'], params['att_num'], params['bbox_num'],
                              check_images=False).image_paths)
    if count == 0:
        raise InputError('%s: the TEST datalist %s lists no image' % (prototxt_path, params['source']))
    net = prototxt.caffe_net(net_param, 'TEST', weights=weights, where=prototxt_path)
    if label_blob is None:
        label_blob = evaluator.label_blob(net_param, layer)
        if label_blob not in net.blobs:
            raise InputError('%s: the TEST net has no blob %r to take the labels from'
                             % (prototxt_path, label_blob))
    _check_score_blob(net, blob, label_blob, list(layer.top), params['batch_size'], params['att_num'],
                      prototxt_path)
    scored = evaluator.MultiLabelEvaluator(count)
    for _ in range(-(-count // params['batch_size'])):
        net.forward()
        scored.process(net.blobs[blob].data, net.blobs[label_blob].data)
    return scored.scores(), scored.labels()
