"""The oracle backend: a trial whose eval points are drawn from a known law plus seeded noise.

A sweep of hundreds of oracle trials runs in seconds; tests, policy demos and what-if studies use
it to check that what scaler measures is what was put in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import numpy as np

from scaler.records import EvalPoint


def eval_schedule(budget: int, n_points: int, min_samples: int | None = None) -> list[int]:
    """Log-spaced sample counts ending exactly at `budget` (shared by every trial of a sweep with
    the same budget, so trials can be compared at equal data)."""
    if budget <= 0:
        raise ValueError(f"sample budget is {budget}, but must be > 0")
    first = min_samples or max(1, budget // 2**7)
    first = min(first, budget)
    counts = np.unique(np.round(np.geomspace(first, budget, n_points)).astype(np.int64))
    return [int(c) for c in counts]


def hparam_penalty(oracle, n_params: float, hparams: dict | None) -> float:
    """sum over oracle.hparams of sensitivity * (ln h - ln h*(N))^2, h*(N) = a N^-b."""
    total = 0.0
    for name, h in oracle.hparams.items():
        value = float((hparams or {}).get(name, h.default))
        optimum = h.a * float(n_params) ** -h.b
        total += h.sensitivity * (math.log(value) - math.log(optimum)) ** 2
    return total


def oracle_points(
    oracle,
    n_params: float,
    samples: int,
    schedule: list[int],
    seed: int,
    start_index: int = 0,
    hparams: dict | None = None,
) -> Iterator[EvalPoint]:
    """Eval points of one oracle trial: loss = (law(N, D) + hparam penalty) * exp(noise * z),
    z ~ N(0, 1) seeded by (seed, eval index) so a resumed trial redraws the same values."""
    law = oracle.law
    n = float(n_params)
    penalty = hparam_penalty(oracle, n, hparams)
    for i, d in enumerate(schedule[start_index:], start=start_index):
        if oracle.delay_seconds:
            time.sleep(oracle.delay_seconds)
        z = np.random.default_rng([seed, i]).standard_normal()
        clean = law.E + law.A * n**-law.alpha + law.B * d**-law.beta + penalty
        loss = clean * float(np.exp(oracle.noise * z))
        if i >= 1 and any(math.isclose(n, v, rel_tol=1e-9) for v in oracle.diverge_n_params):
            loss = math.nan  # injected divergence
        flops = oracle.flops_per_param_sample * n * d
        device_seconds = flops / oracle.device_flops_per_second
        yield EvalPoint(
            samples=int(d),
            dense_params=int(n),
            sparse_params=0,
            flops=flops,
            wall_seconds=device_seconds,
            device_seconds=device_seconds,
            loss=loss,
            ne=loss,  # the oracle's loss is already normalised
            auc=float("nan"),
        )
