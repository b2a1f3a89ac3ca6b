"""Placeholder: being written (issue 3)."""
from .base import MlicLayer


class ROIPooling(MlicLayer):
    def setup(self, bottom, top):
        raise NotImplementedError('ROIPooling is not written yet')
