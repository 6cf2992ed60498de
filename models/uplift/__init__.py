"""Uplift models (who changes behaviour when treated) and coupon-campaign planning.

One interface: `fit(X, treatment, outcome)` then `predict_uplift(X)`; see `models.uplift.base`.
"""

from models.uplift.base import BaseUpliftModel
from models.uplift.learners import (
    ClassTransformation,
    DRLearner,
    FunnelLearner,
    SLearner,
    TLearner,
    TwoPartLearner,
    XLearner,
)
from models.uplift.selection import MODEL_KEYS, AutoUplift, UpliftEnsemble, make_model

__all__ = [
    "BaseUpliftModel",
    "SLearner",
    "TLearner",
    "XLearner",
    "DRLearner",
    "ClassTransformation",
    "TwoPartLearner",
    "FunnelLearner",
    "AutoUplift",
    "UpliftEnsemble",
    "MODEL_KEYS",
    "make_model",
]
