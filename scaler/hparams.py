"""Hyperparameter scaling rules: the optimum of a tuned hyperparameter against scale.

    h*(N) = a * N^(-b)      fitted by least squares in log-log space, with t-intervals

A pure function of the record: for every scale point, its best run (lowest final loss) gives the
optimum h* at that point's parameter count N.  The tuned policy warm-starts from these rules, and
`scaler.hparam_rules` recomputes them from MLflow alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
from scipy import stats


class TunedRun(NamedTuple):
    point: str  # the scale point (axis values, without the tuned hyperparameters)
    n_params: float
    hparams: dict[str, float]
    loss: float  # final held-out loss (lower is better)


class Rule(NamedTuple):
    """h*(N) = a * N^-b, with `level` confidence intervals from the log-log regression."""

    name: str
    a: float
    b: float
    a_ci: tuple[float, float]
    b_ci: tuple[float, float]
    n_points: int
    level: float = 0.95

    def predict(self, n_params) -> np.ndarray:
        return self.a * np.asarray(n_params, dtype=float) ** -self.b

    def to_dict(self) -> dict:
        return {**self._asdict(), "a_ci": list(self.a_ci), "b_ci": list(self.b_ci)}


def best_per_point(runs: Iterable[TunedRun]) -> dict[str, TunedRun]:
    best: dict[str, TunedRun] = {}
    for run in runs:
        if math.isfinite(run.loss) and (run.point not in best or run.loss < best[run.point].loss):
            best[run.point] = run
    return best


def fit_rule(name: str, n_params, optimum, level: float = 0.95) -> Rule:
    """Least squares of ln h* = ln a - b ln N; needs 3 points of at least 2 sizes."""
    x = np.log(np.asarray(n_params, dtype=float))
    y = np.log(np.asarray(optimum, dtype=float))
    if len(x) < 3 or np.ptp(x) == 0:
        raise ValueError(
            f"rule for {name} needs at least 3 points of 2 or more sizes, got {len(x)}"
        )
    res = stats.linregress(x, y)
    t = stats.t.ppf(0.5 + level / 2, len(x) - 2)
    slope_ci = (res.slope - t * res.stderr, res.slope + t * res.stderr)
    icpt_ci = (res.intercept - t * res.intercept_stderr, res.intercept + t * res.intercept_stderr)
    return Rule(
        name=name,
        a=float(math.exp(res.intercept)),
        b=float(-res.slope),
        a_ci=(float(math.exp(icpt_ci[0])), float(math.exp(icpt_ci[1]))),
        b_ci=(float(-slope_ci[1]), float(-slope_ci[0])),
        n_points=len(x),
        level=level,
    )


def fit_rules(runs: Iterable[TunedRun], names: Iterable[str]) -> dict[str, Rule]:
    """A rule for every tuned hyperparameter that has enough tuned points."""
    best = list(best_per_point(runs).values())
    rules = {}
    for name in names:
        pts = [(r.n_params, r.hparams[name]) for r in best if name in r.hparams]
        try:
            rules[name] = fit_rule(name, [p[0] for p in pts], [p[1] for p in pts])
        except ValueError:
            continue
    return rules
