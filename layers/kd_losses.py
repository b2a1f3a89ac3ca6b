"""Placeholder: being written (issue 3)."""
from .base import MlicLayer


class SoftSigmoidCrossEntropyLoss(MlicLayer):
    def setup(self, bottom, top):
        raise NotImplementedError('SoftSigmoidCrossEntropyLoss is not written yet')


class FeatureMimicLoss(MlicLayer):
    def setup(self, bottom, top):
        raise NotImplementedError('FeatureMimicLoss is not written yet')
