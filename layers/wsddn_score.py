"""Placeholder: being written (issue 3)."""
from .base import MlicLayer


class WSDDNScore(MlicLayer):
    def setup(self, bottom, top):
        raise NotImplementedError('WSDDNScore is not written yet')
