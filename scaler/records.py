"""Immutable records that flow one way through a sweep: trial -> fitter -> allocator / tracker."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class EvalPoint:
    """One evaluation of a trial on held-out data, after `samples` training samples.

    Every eval point of a run is an observation on the data axis; the model-size fields make it
    an observation on the parameter and compute axes too.
    """

    samples: int  # training samples seen so far
    dense_params: int  # MLP / interaction parameters
    sparse_params: int  # embedding-table parameters
    flops: float  # cumulative training FLOPs (forward + backward), summed over workers
    wall_seconds: float  # wall-clock seconds since the trial started training
    device_seconds: float  # wall seconds x devices (CPU workers or GPUs) used
    loss: float  # held-out log loss (nats)
    ne: float  # normalized entropy: loss / entropy of the base click rate
    auc: float  # held-out ROC AUC

    @property
    def params(self) -> int:
        return self.dense_params + self.sparse_params

    @property
    def diverged(self) -> bool:
        return not (math.isfinite(self.loss) and math.isfinite(self.ne))

    def to_dict(self) -> dict:
        return asdict(self)
