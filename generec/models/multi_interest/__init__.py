"""Multi-interest candidate matching (ComiRec-SA, ComiRec-DR, MIND) with REMI's IHN and RR."""

from generec.models.multi_interest.base import MultiInterestModule
from generec.models.multi_interest.comirec import ComiRecDR, ComiRecSA
from generec.models.multi_interest.losses import (
    InterestAwareHardNegatives,
    SampledSoftmax,
    routing_max_weight,
    routing_regularization,
)
from generec.models.multi_interest.mind import MIND

__all__ = [
    "MIND",
    "ComiRecDR",
    "ComiRecSA",
    "InterestAwareHardNegatives",
    "MultiInterestModule",
    "SampledSoftmax",
    "routing_max_weight",
    "routing_regularization",
]
