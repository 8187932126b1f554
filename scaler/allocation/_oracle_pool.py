"""A seeded oracle pool for replaying policies, and the first-order variance at its target.

Shared by `benchmarks/bench_allocation.py` and `tests/test_allocation_efficiency.py`: a grid of
models, one run per model with its eval points at increasing samples (the oracle backend's law +
seeded log-normal noise per point, `scaler.trial.oracle.oracle_points`), cost 6ND; the target is
the noiseless law at 10x the largest model and 10x its data (100x the compute of the largest run).
"""

from __future__ import annotations

import numpy as np

from scaler.allocation._information import TargetVariance
from scaler.allocation._replay import Pool
from scaler.laws import Law
from scaler.spec import Oracle, OracleLaw
from scaler.trial.oracle import oracle_points

MODELS = np.geomspace(1e5, 1e8, 8)  # parameters of the pool's models
DATA_BUDGET = 10**9  # samples of every run; eval points log-spaced from FIRST_SAMPLES
FIRST_SAMPLES = DATA_BUDGET / 2**9
EVAL_POINTS = 8
TARGET_X = np.array([[10 * MODELS[-1], 10 * DATA_BUDGET]])  # 100x the largest run's compute
TARGET_X.setflags(write=False)  # shared by every pool


def oracle_pool(law: dict, noise: float, seed: int) -> tuple[Pool, np.ndarray, np.ndarray]:
    """(pool, target x (1, 2), target loss (1,)) for `law` (E, A, alpha, B, beta)."""
    oracle = Oracle(law=OracleLaw(**law), noise=noise)
    schedule = [int(d) for d in np.geomspace(FIRST_SAMPLES, DATA_BUDGET, EVAL_POINTS)]
    rows = []
    for m, n in enumerate(MODELS):
        for p in oracle_points(oracle, n, DATA_BUDGET, schedule, seed * 1000 + m):
            rows.append((n, p.samples, p.loss, p.flops, f"m{m}"))
    n, d, y, cost, run = map(np.array, zip(*rows, strict=True))
    pool = Pool(np.c_[n, d], y, cost, run)
    return pool, TARGET_X, true_law(law).predict(TARGET_X)


def true_law(law: dict) -> Law:
    """The oracle's law as a `JointLaw` that predicts (its `theta_` for the first-order sd)."""
    return Law.from_dict({"form": "joint", "params": law})


def target_variance(law: dict) -> tuple[Pool, TargetVariance]:
    """The oracle pool of `law` and the first-order variance of a fit's error at its target
    under the true law (`scaler.allocation._information`)."""
    pool = oracle_pool(law, 0.0, 0)[0]
    return pool, TargetVariance(pool, TARGET_X, true_law(law).theta_)
