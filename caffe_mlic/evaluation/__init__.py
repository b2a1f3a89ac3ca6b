"""Evaluation: multi-label classification metrics (classification), Pascal
VOC detection AP and CorLoc (detection), segmentation metrics (segmentation),
the evaluators that score a net's outputs batch by batch (evaluator), and the
scores of a trained net over its TEST datalist (net_scores).

Every metric in a result is in percent; a metric that is undefined (no class
with a positive, no ground truth box) is None, i.e. null in the JSON.

The evaluator seam (detectron2's DatasetEvaluator): whatever scores a net's
outputs against its labels, batch by batch (the trainer's TEST pass, `eval
cls --net`, `eval seg`), is an Evaluator:

    evaluator.reset()
    evaluator.process(outputs, targets)    # once a batch
    evaluator.evaluate()                   # {metric: value}, in percent

with a headline ``key`` (one of METRIC_KEYS, the logs' ``test_<key>``) and
``fits(output_shape, label_shape)``, whether a blob can be scored against the
labels. classification.MultiLabelEvaluator and
segmentation.SegmentationEvaluator are the two; evaluator.py says which one
each data layer's TEST phase gets, and where a TEST net's labels are.
"""
from caffe_mlic.fileio import atomic_write_json as write_json, json_ready  # noqa: F401

# The headline metric of each evaluator (evaluator.EVALUATORS), as training
# logs name them (test_mAP, test_mIoU); plots and reports look for these.
METRIC_KEYS = ('mAP', 'mIoU')


class Evaluator:
    key = None

    def __init__(self, count=None):
        """count: how many images the TEST list holds; rows past it (the last
        batch wraps around the list) are dropped. None: keep every row."""
        self.count = count
        self.reset()

    def reset(self):
        self.seen = 0

    def _keep(self, rows):
        """How many of the next ``rows`` rows are images of the list, not its wrap-around."""
        keep = rows if self.count is None else max(0, min(rows, self.count - self.seen))
        self.seen += keep
        return keep

    def process(self, outputs, targets):
        raise NotImplementedError

    def evaluate(self):
        raise NotImplementedError
