"""What the training loop reads off a net: its data layers, the blob a TEST
pass scores, its scalar outputs, the layers that can skip to a batch."""
from caffe_mlic.caffe import prototxt


DATA_LAYERS = ('MultiLabelProposalData', 'SegmentationData')


def data_layers(net_param, phase):
    """The net's data layers of ours in ``phase``."""
    return [layer for kind in DATA_LAYERS for layer in prototxt.find_layers(net_param, python_layer=kind, phase=phase)]


def _is_loss(layer):
    kind = layer.python_param.layer if layer.type == 'Python' else layer.type
    return kind.endswith('Loss') or any(w != 0 for w in layer.loss_weight)


def find_score_blob(net_param, labels):
    """The other bottom of the first TEST-phase loss layer that takes the
    labels; None when no loss does."""
    for layer in prototxt.find_layers(net_param, phase='TEST'):
        if _is_loss(layer) and len(layer.bottom) == 2 and labels in layer.bottom:
            other = [b for b in layer.bottom if b != labels]
            if other:
                return other[0]
    return None


def scalar_outputs(net):
    """The net's outputs holding one value (losses, accuracies)."""
    return [name for name in net.outputs if net.blobs[name].data.size == 1]


def seekable_layers(net):
    """The layers of caffe.Net ``net`` that can skip to a batch (data layers)."""
    return [layer for layer in net.layers if callable(getattr(layer, 'seek', None))]
