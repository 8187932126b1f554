"""A search space's `policy.target` as the law inputs the adaptive policy aims at.

Points are fixed (N, D) rows.  A compute target is the compute-optimal (N*, D*) of the current fit
at C FLOPs, so it moves as the law is refitted: the policy is given a function of the law.  The
cost model is C = k N D with k the median FLOPs per (parameter x sample) of the candidates (6 for
the oracle; smaller for a DLRM, whose embedding parameters cost no FLOPs per sample).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import numpy as np

from scaler.allocation._base import Candidate
from scaler.allocation._design import Design
from scaler.laws import compute_frontier

log = logging.getLogger(__name__)

FRONTIER_POINTS = 5  # compute budgets on a `frontier` target, log-spaced


class TargetError(ValueError):
    """A target the sweep cannot aim at; the message names the field."""


def flops_per_param_sample(candidates: list[Candidate], design: Design) -> float:
    ks = [c.flops / (design.top(c).prod()) for c in candidates if c.flops > 0]
    if not ks:
        raise TargetError("policy.target: the candidates have no FLOP estimates")
    return float(np.median(ks))


def optimal_inputs(law, C: np.ndarray, k: float, sizes: np.ndarray) -> np.ndarray:
    """(len(C), n_axes) compute-optimal law inputs at budgets C under C = k N D."""
    C = np.atleast_1d(np.asarray(C, dtype=float))
    if len(sizes) == 1 or law.form == "power":  # one model: C only buys data
        n = np.full_like(C, sizes.max())
        d = C / (k * n)
        return d[:, None] if law.form == "power" else np.column_stack([n, d])
    with np.errstate(all="ignore"):
        n = compute_frontier(law.params_, C, k=k).N
    # a saturated axis (alpha ~ 0) puts N* anywhere: keep it within reach of the trained sizes
    n = np.where(np.isfinite(n), n, sizes.max())
    n = np.clip(n, sizes.min(), 1e3 * sizes.max())
    return np.column_stack([n, C / (k * n)])


def build_target(target, candidates: list[Candidate], design: Design) -> np.ndarray | Callable:
    """The policy's `target`: an (m, n_axes) array, or a function of the fitted law."""
    tops = np.array([design.top(c) for c in candidates])
    if target.points is not None:
        rows = []
        for i, p in enumerate(target.points):
            if design.n_axes == 2:
                if p.params is None:
                    raise TargetError(
                        f"policy.target.points[{i}].params: required when the sweep scales "
                        "model size"
                    )
                rows.append((p.params, p.samples))
            else:
                rows.append((p.samples,))
        out = np.array(rows, dtype=float)
        inside = [i for i, r in enumerate(out) if np.all(r <= tops.max(axis=0))]
        if inside:
            _warn_inside(f"policy.target.points[{inside[0]}] {tuple(out[inside[0]])}")
        return out
    if design.n_axes == 2:
        k = flops_per_param_sample(candidates, design)
        sizes = np.unique(tops[:, 0])
    else:  # data only: C = k D, k the FLOPs per sample of the one model
        k = float(np.median([c.flops / c.samples for c in candidates]))
        sizes = np.array([1.0])
    largest = max(c.flops for c in candidates)
    if target.compute is not None:
        budgets = np.array([target.compute])
        field = "policy.target.compute"
    else:
        budgets = np.geomspace(largest, target.frontier, FRONTIER_POINTS)
        field = "policy.target.frontier"
    if budgets.max() <= largest:
        _warn_inside(f"{field} {budgets.max():g} FLOPs (largest trial: {largest:g})")
    return lambda law: optimal_inputs(law, budgets, k, sizes)


def _warn_inside(what: str) -> None:
    msg = (
        f"{what} lies inside the trained range: the adaptive policy is built to extrapolate "
        "(a target 10-100x beyond the largest trial); inside, a grid does as well"
    )
    log.warning(msg)
    warnings.warn(msg, UserWarning, stacklevel=3)
