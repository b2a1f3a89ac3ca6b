"""Placeholder: being written (issue 3)."""
from .base import MlicLayer


class MultiLabelProposalData(MlicLayer):
    def setup(self, bottom, top):
        raise NotImplementedError('MultiLabelProposalData is not written yet')
