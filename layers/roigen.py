"""Placeholder: being written (issue 3)."""
from .base import MlicLayer


class WsdRoigen(MlicLayer):
    def setup(self, bottom, top):
        raise NotImplementedError('WsdRoigen is not written yet')


class WsdRoigenSingleScale(MlicLayer):
    def setup(self, bottom, top):
        raise NotImplementedError('WsdRoigenSingleScale is not written yet')
