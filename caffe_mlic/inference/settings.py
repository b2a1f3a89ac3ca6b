"""The deploy settings a net needs beyond its prototxt: input sizes, proposals
per image and the preprocessing its data layer used in training.

`caffe-mlic netgen` writes them as deploy.json at the top of its output
folder; they are looked up beside the deploy prototxt and one folder above
(`nets/wsddn/wsddn_deploy.prototxt` -> `nets/deploy.json`). Without the file
the release's preprocessing applies (BGR mean 103.52 116.28 123.675, scale 1)
and the sizes are read from the prototxt's inputs.
"""
import json
import os
from dataclasses import dataclass, field
from typing import List, Optional

from caffe_mlic.errors import InputError

RELEASE_MEAN = [103.52, 116.28, 123.675]


@dataclass
class DeploySettings:
    mean: List[float] = field(default_factory=lambda: list(RELEASE_MEAN))  # BGR
    input_scale: float = 1.0
    num_classes: Optional[int] = None
    bbox_num: Optional[int] = None
    teacher_size: Optional[int] = None
    student_size: Optional[int] = None
    source: Optional[str] = None  # the deploy.json read, if any


def find_settings(net_path):
    here = os.path.dirname(os.path.abspath(net_path))
    for folder in (here, os.path.dirname(here)):
        path = os.path.join(folder, 'deploy.json')
        if os.path.isfile(path):
            return path
    return None


def load_settings(net_path, path=None):
    """DeploySettings for the deploy net at net_path (from ``path`` when given)."""
    path = path or find_settings(net_path)
    if path is None:
        return DeploySettings()
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise InputError('%s: cannot read the deploy settings: %s' % (path, e))
    known = set(DeploySettings.__dataclass_fields__) - {'source'}
    unknown = sorted(set(data) - known) if isinstance(data, dict) else None
    if unknown is None or unknown:
        raise InputError('%s: expected a JSON object with keys among %s%s'
                         % (path, ', '.join(sorted(known)),
                            '' if unknown is None else '; unknown: %s' % ', '.join(unknown)))
    settings = DeploySettings(**data, source=path)
    if len(settings.mean) != 3:
        raise InputError('%s: "mean" must be three numbers (B, G, R), got %r' % (path, settings.mean))
    return settings
