"""A search space's `policy.target` as the law inputs the adaptive policy aims at.

Points are fixed (N, D) rows.  A compute target is the compute-optimal (N*, D*) of the current fit
at C FLOPs, so it moves as the law is refitted: the policy is given a function of the law.  The
cost is each model's own FLOPs per sample, read off the candidates (`scaler.costs`: measured
from the model for a DLRM, k·N for the oracle), interpolated between the trained sizes in log-log
and extended by the end slope: C = D x FLOPs per sample of N.  A DLRM's embedding rows cost
memory, not FLOPs, so a size grown in rows costs no more compute; like the report's frontier, N*
is kept within the largest size x C / C_max (memory grows with compute, not for free).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import numpy as np

from scaler.allocation._base import Candidate
from scaler.allocation._design import Design

log = logging.getLogger(__name__)

FRONTIER_POINTS = 5  # compute budgets on a `frontier` target, log-spaced


class TargetError(ValueError):
    """A target the sweep cannot aim at; the message names the field."""


def flops_per_sample(candidates: list[Candidate], design: Design) -> tuple[np.ndarray, np.ndarray]:
    """(sizes, FLOPs per sample of each): the median over the candidates of each model size."""
    by_size: dict[float, list[float]] = {}
    for c in candidates:
        if c.flops > 0 and c.samples > 0:
            by_size.setdefault(float(design.top(c)[0]), []).append(c.flops / c.samples)
    if not by_size:
        raise TargetError("policy.target: the candidates have no FLOP estimates")
    sizes = np.array(sorted(by_size))
    return sizes, np.array([np.median(by_size[n]) for n in sizes])


def interpolate_cost(sizes: np.ndarray, fps: np.ndarray, n: np.ndarray) -> np.ndarray:
    """FLOPs per sample at sizes n: log-log interpolation, extended by the end slopes."""
    ls, lf, ln = np.log(sizes), np.log(fps), np.log(n)
    if len(sizes) == 1:
        return np.full_like(n, fps[0], dtype=float)
    out = np.interp(ln, ls, lf)
    lo_slope = (lf[1] - lf[0]) / (ls[1] - ls[0])
    hi_slope = (lf[-1] - lf[-2]) / (ls[-1] - ls[-2])
    out = np.where(ln < ls[0], lf[0] + lo_slope * (ln - ls[0]), out)
    out = np.where(ln > ls[-1], lf[-1] + hi_slope * (ln - ls[-1]), out)
    return np.exp(out)


def optimal_inputs(
    law, C: np.ndarray, sizes: np.ndarray, fps: np.ndarray, largest: float
) -> np.ndarray:
    """(len(C), n_axes) compute-optimal law inputs at budgets C: the N that minimises the law at
    D = C / FLOPs-per-sample(N), searched on a log grid from the smallest trained size to the
    largest x max(1, C / largest)."""
    C = np.atleast_1d(np.asarray(C, dtype=float))
    if len(sizes) == 1 or law.form == "power":  # one model: C only buys data
        n = np.full_like(C, sizes.max())
        d = C / interpolate_cost(sizes, fps, n)
        return d[:, None] if law.form == "power" else np.column_stack([n, d])
    rows = []
    for c in C:
        grid = np.geomspace(sizes.min(), sizes.max() * max(1.0, c / largest), 400)
        d = c / interpolate_cost(sizes, fps, grid)
        with np.errstate(all="ignore"):
            loss = law.predict(np.column_stack([grid, d]))
        i = int(np.nanargmin(np.where(np.isfinite(loss), loss, np.nan)))
        rows.append((grid[i], d[i]))
    return np.array(rows)


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
        sizes, fps = flops_per_sample(candidates, design)
    else:  # data only: C = D x the FLOPs per sample of the one model
        sizes = np.array([1.0])
        fps = np.array([np.median([c.flops / c.samples for c in candidates])])
    largest = max(c.flops for c in candidates)
    if target.compute is not None:
        budgets = np.array([target.compute])
        field = "policy.target.compute"
    else:
        budgets = np.geomspace(largest, target.frontier, FRONTIER_POINTS)
        field = "policy.target.frontier"
    if budgets.max() <= largest:
        _warn_inside(f"{field} {budgets.max():g} FLOPs (largest trial: {largest:g})")
    return lambda law: optimal_inputs(law, budgets, sizes, fps, largest)


def _warn_inside(what: str) -> None:
    msg = (
        f"{what} lies inside the trained range: the adaptive policy is built to extrapolate "
        "(a target 10-100x beyond the largest trial); inside, a grid does as well"
    )
    log.warning(msg)
    warnings.warn(msg, UserWarning, stacklevel=3)
