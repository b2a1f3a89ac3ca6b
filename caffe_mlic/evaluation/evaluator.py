"""Which evaluator (caffe_mlic.evaluation: the seam) scores the TEST phase of
a net with each of our data layers, and the one rule for where its labels are."""
from caffe_mlic.evaluation.classification import MultiLabelEvaluator
from caffe_mlic.evaluation.segmentation import SegmentationEvaluator

# the evaluator of the TEST phase of a net with each of our data layers
EVALUATORS = {'MultiLabelProposalData': MultiLabelEvaluator, 'SegmentationData': SegmentationEvaluator}


def for_data_layer(kind, count, num_classes):
    """The evaluator of a TEST pass over ``count`` images of data layer ``kind``
    whose score blob has ``num_classes`` channels."""
    if kind == 'SegmentationData':
        return SegmentationEvaluator(num_classes, count)
    return EVALUATORS[kind](count)


def label_blob(net_param, data_layer):
    """The blob of the labels a TEST net's ``data_layer`` gives: a
    SegmentationData's second top; a MultiLabelProposalData's second top with
    split_tops, else the first top of the Slice that splits it (label_roi)."""
    from caffe_mlic.caffe import prototxt
    if data_layer.type != 'Python' or data_layer.python_param.layer != 'MultiLabelProposalData' \
            or prototxt.python_params(data_layer).get('split_tops'):
        return data_layer.top[1]
    for layer in prototxt.find_layers(net_param, type='Slice', phase='TEST'):
        if list(layer.bottom) == [data_layer.top[1]]:
            return layer.top[0]
    return data_layer.top[1]
