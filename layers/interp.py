"""Placeholder: being written (issue 3)."""
from .base import MlicLayer


class Interp(MlicLayer):
    def setup(self, bottom, top):
        raise NotImplementedError('Interp is not written yet')
