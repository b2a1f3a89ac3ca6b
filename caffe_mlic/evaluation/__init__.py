"""Evaluation: multi-label classification metrics (classification), Pascal
VOC detection AP and CorLoc (detection), and the scores of a trained net over
its TEST datalist (net_scores).

Every metric in a result is in percent; a metric that is undefined (no class
with a positive, no ground truth box) is None, i.e. null in the JSON.
"""
import json
import math

from caffe_mlic.fileio import atomic_write


def json_ready(value):
    """``value`` with NaN/inf floats as None and numpy scalars as Python numbers."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if hasattr(value, 'item') and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, result):
    """Write a result dict as JSON, atomically."""
    with atomic_write(path) as f:
        f.write(json.dumps(json_ready(result), indent=1) + '\n')
    return path
