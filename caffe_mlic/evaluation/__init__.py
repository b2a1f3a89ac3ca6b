"""Evaluation: multi-label classification metrics (classification), Pascal
VOC detection AP and CorLoc (detection), and the scores of a trained net over
its TEST datalist (net_scores).

Every metric in a result is in percent; a metric that is undefined (no class
with a positive, no ground truth box) is None, i.e. null in the JSON.
"""
from caffe_mlic.fileio import atomic_write_json as write_json, json_ready  # noqa: F401
