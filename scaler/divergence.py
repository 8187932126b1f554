"""When a trial has diverged: a non-finite loss, or (DLRM) a loss worse than the trivial predictor.

For DLRM, NE is the log loss divided by the entropy of the base rate — the loss of always
predicting the average CTR — so NE > 1 means the model does worse than knowing nothing; a margin
keeps the noise of a short eval from stopping a healthy trial.  The oracle's "ne" is its raw loss,
so only the non-finite rule applies to it.
"""

from __future__ import annotations

import math

from scaler.records import EvalPoint

NE_MARGIN = 0.1  # stop a DLRM trial once NE > 1 + NE_MARGIN


def divergence(point: EvalPoint, backend: str) -> str | None:
    """The reason the trial has diverged at this point, or None."""
    if not (math.isfinite(point.loss) and math.isfinite(point.ne)):
        return f"diverged: loss {point.loss}, NE {point.ne} at {point.samples} samples"
    if backend == "dlrm" and point.ne > 1 + NE_MARGIN:
        return (
            f"diverged: NE {point.ne:.4f} > {1 + NE_MARGIN} (worse than predicting the base rate) "
            f"at {point.samples} samples"
        )
    return None
