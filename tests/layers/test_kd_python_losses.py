"""netgen's kd_losses 'python': the distillation nets with our FeatureMimicLoss and
SoftSigmoidCrossEntropyLoss in place of the release's stock losses."""
import numpy as np
import pytest

from caffe_mlic.netspec import netgen
from caffe_mlic.caffe import prototxt
from caffe_mlic.netspec import MlicConfig
from tests import netutil
from tests.tinydata import write_tiny_dataset

C, B = 3, 8


def _config(listing, **kw):
    return MlicConfig.release(num_classes=C, bbox_num=B, teacher_size=96, student_size=64, pooled=2,
                              backbone='tiny', train_list=listing, test_list=listing,
                              scale_factors=[1.0], workers=0, input_scale=1 / 58.,
                              stage1_batch=(2, 2), stage2_batch=(2, 2), **kw)


@pytest.fixture(scope='module')
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp('kd_python')
    listing = write_tiny_dataset(str(root / 'images'), num_classes=C, bbox_num=B, size=96)
    for name, kw in (('stock', {}), ('python', dict(kd_losses='python')),
                     ('topk', dict(kd_losses='python', mimic_top_k=3))):
        netgen.generate(str(root / name), _config(listing, **kw))
    return root


def _losses(net_path):
    return [(l.name, l.type, l.python_param.layer, prototxt.python_params(l) if l.type == 'Python' else {})
            for l in prototxt.read_net(net_path).layer if l.loss_weight]


def test_generated_losses(nets):
    assert _losses(nets / 'stock' / 'kd' / 'train_stage1.prototxt') == [
        ('loss_euclid', 'EuclideanLoss', '', {})]
    assert _losses(nets / 'python' / 'kd' / 'train_stage1.prototxt') == [
        ('loss_mimic', 'Python', 'FeatureMimicLoss', {})]
    assert _losses(nets / 'topk' / 'kd' / 'train_stage1.prototxt') == [
        ('loss_mimic', 'Python', 'FeatureMimicLoss',
         {'top_k': 3, 'rows_per_image': B, 'weight_rows': False})]
    assert _losses(nets / 'python' / 'kd' / 'train_stage2.prototxt') == [
        ('loss_soft', 'Python', 'SoftSigmoidCrossEntropyLoss', {'temperature': 5.0}),
        ('loss_sig', 'SigmoidCrossEntropyLoss', '', {})]


def test_mimic_top_k_needs_python_losses():
    with pytest.raises(ValueError, match="mimic_top_k needs kd_losses 'python'"):
        MlicConfig.release(mimic_top_k=3).validate()


def _same_weights_forward(caffe, stock_path, python_path):
    stock = prototxt.caffe_net(stock_path, 'TEST')
    python = prototxt.caffe_net(python_path, 'TEST')
    for name, blobs in python.params.items():
        for mine, theirs in zip(blobs, stock.params[name]):
            mine.data[...] = theirs.data
    return stock.forward(), python.forward()


def test_python_losses_equal_the_stock_ones_at_the_same_weights(caffe, nets):
    stock, python = _same_weights_forward(caffe, nets / 'stock' / 'kd' / 'train_stage1.prototxt',
                                          nets / 'python' / 'kd' / 'train_stage1.prototxt')
    assert float(python['loss_mimic']) == pytest.approx(float(stock['loss_euclid']), rel=1e-5)
    assert float(stock['loss_euclid']) > 0
    # stage 2: the fixed temperature equals the stock Scale at its initial 1/T
    stock, python = _same_weights_forward(caffe, nets / 'stock' / 'kd' / 'train_stage2.prototxt',
                                          nets / 'python' / 'kd' / 'train_stage2.prototxt')
    assert float(python['loss_soft']) == pytest.approx(float(stock['loss_soft']), rel=1e-4)
    assert float(python['loss_sig']) == pytest.approx(float(stock['loss_sig']), rel=1e-6)


def test_top_k_mimic_is_the_mean_over_the_kept_rows(caffe, nets):
    net = prototxt.caffe_net(nets / 'topk' / 'kd' / 'train_stage1.prototxt', 'TEST')
    out = net.forward()
    student, teacher = net.blobs['fc7'].data, net.blobs['fc_wsd_7'].data
    scores = net.blobs['roi'].data[:, 5].reshape(-1, B)
    rows = [i * B + j for i, s in enumerate(scores) for j in np.argsort(-s, kind='stable')[:3]]
    diff = (student[rows] - teacher[rows]).reshape(len(rows), -1)
    assert float(out['loss_mimic']) == pytest.approx((diff ** 2).sum() / (2 * len(rows)), rel=1e-4)


def _epoch_loss(net, loss, target=None):
    """Mean of ``loss`` over one pass of the TEST datalist (6 images, batch 2, file
    order). With ``target`` (soft targets t): less the loss's floor, the binary
    entropy of t, so what is left is the KL divergence the student can remove."""
    values = []
    for _ in range(3):
        value = float(net.forward()[loss])
        if target is not None:
            t = np.clip(net.blobs[target].data.astype(np.float64), 1e-12, 1 - 1e-12)
            value -= float(-(t * np.log(t) + (1 - t) * np.log(1 - t)).sum() / t.shape[0])
        values.append(value)
    return float(np.mean(values))


@pytest.mark.parametrize('variant, rel, loss', [('topk', 'kd/train_stage1', 'loss_mimic'),
                                                ('python', 'kd/train_stage2', 'loss_soft')])
def test_python_loss_nets_train(caffe, nets, variant, rel, loss):
    root = nets / variant
    net_path = root / (rel + '.prototxt')
    if loss == 'loss_soft':
        # Only the soft loss trains: the label loss would pull the student away
        # from this untrained teacher's flat targets.
        def soft_only(layer):
            if layer.name == 'loss_sig':
                layer.loss_weight[0] = 0
            return layer
        net_path = prototxt.write(root / 'soft_only.prototxt', prototxt.rewrite_layers(
            prototxt.read_net(net_path), soft_only))
    path = netutil.write_solver(root / 'solver_test.prototxt', net_path,
                                type='Adam', base_lr=0.002, momentum=0.9, momentum2=0.999,
                                max_iter=60, random_seed=1, snapshot_prefix=str(root / 'snap'))
    layer = next(l for l in prototxt.read_net(net_path).layer if l.name == loss)
    target = layer.bottom[1] if layer.python_param.layer == 'SoftSigmoidCrossEntropyLoss' else None
    solver = caffe.get_solver(str(path))
    test = prototxt.caffe_net(net_path, 'TEST')
    test.share_with(solver.net)
    before = _epoch_loss(test, loss, target)
    solver.step(60)
    after = _epoch_loss(test, loss, target)
    assert before > 0 and np.isfinite(after) and after < 0.5 * before, (before, after)
