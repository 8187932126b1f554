"""Adaptive vs grid at equal budget on a seeded oracle pool (the pool of
benchmarks/bench_allocation.py, 3 seeds of one case): the adaptive policy's design must be at
least as informative about the target as the grid's, and its fitted law's target error must match
the grid's within a stated margin.  And the
tolerance stop: where the first-order sd is too optimistic, the bootstrap keeps the sweep going."""

import numpy as np
import pytest
from scipy.optimize import minimize

from scaler.allocation._information import TargetVariance, increments, lower_bound, sd_ratio
from scaler.allocation._oracle_pool import TARGET_X, oracle_pool, target_variance, true_law
from scaler.allocation._replay import Pool, replay

LAW = {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28}
NOISE = 0.003
BUDGET = 0.1  # of the pool's cost
POLICIES = ("grid", "adaptive")
ERROR_MARGIN = 1.25  # adaptive's mean target error may exceed the grid's by at most 25 %


@pytest.fixture(scope="module")
def runs():
    """(grid, adaptive) replays at BUDGET on 3 seeds."""
    out = []
    for seed in range(3):
        p, tx, ty = oracle_pool(LAW, NOISE, seed)
        out.append(
            tuple(replay(p, tx, ty, policy=name, budget=BUDGET, seed=seed) for name in POLICIES)
        )
    return out


@pytest.mark.slow  # a replay per policy (~35 s)
def test_adaptive_design_is_at_least_as_informative_as_the_grids(runs):
    _, variance = target_variance(LAW)  # first-order target-error sd under the true law
    for grid, adaptive in runs:
        assert adaptive.spent_fraction <= BUDGET + 1e-9
        assert sd_ratio(variance, adaptive.rows) <= sd_ratio(variance, grid.rows)


@pytest.mark.slow  # a replay per policy (~35 s)
def test_adaptive_target_error_matches_the_grid_at_equal_budget(runs):
    grid = np.mean([g.target_mape for g, _ in runs])
    adaptive = np.mean([a.target_mape for _, a in runs])
    assert adaptive <= ERROR_MARGIN * grid, (adaptive, grid)


@pytest.mark.slow  # ~20 s: 50-refit bootstraps
def test_bootstrap_vetoes_a_tolerance_stop_the_first_order_sd_would_make_too_early():
    """Parameter scaling nearly saturated (alpha 0.02) with 1 % noise: the law is far from linear
    in its parameters, and on this seed the first-order sd falls below the tolerance after a few
    cheap runs whose fit misses the target by more than twice the tolerance.  The bootstrap must
    see the larger spread and keep buying."""
    saturated = {"E": 0.40, "A": 0.20, "alpha": 0.02, "B": 30.0, "beta": 0.30}
    p, tx, ty = oracle_pool(saturated, 0.01, 1)
    tolerance = 0.012
    trusting = replay(
        p, tx, ty, policy="adaptive", budget=0.1, seed=1, tolerance=tolerance, confirm_bootstrap=0
    )
    confirming = replay(p, tx, ty, policy="adaptive", budget=0.1, seed=1, tolerance=tolerance)
    assert trusting.spent_fraction < 0.02 and trusting.target_mape > 2 * tolerance
    assert confirming.spent_fraction > 2 * trusting.spent_fraction


def test_the_certified_bound_is_below_every_design_and_one_with_the_whole_budget():
    """`_information.lower_bound`: no design within a budget is more informative than it; with
    the whole pool's budget it is the whole pool (1); a smaller budget can only raise it."""
    pool, var = target_variance(LAW)
    step = increments(pool)
    assert lower_bound(var, step, 1.0) == pytest.approx(1.0, rel=1e-3)
    # the same convex problem solved by SLSQP: a bound that is valid but loose would differ
    slsqp = minimize(
        lambda w: tuple(v / var.full for v in var(w)),
        np.full(len(step), 0.1),
        jac=True,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * len(step),
        constraints=[{"type": "ineq", "fun": lambda w: 0.1 - step @ w, "jac": lambda w: -step}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    assert slsqp.success
    assert lower_bound(var, step, 0.1) == pytest.approx(np.sqrt(slsqp.fun), rel=2e-3)
    bounds = [lower_bound(var, step, b) for b in (0.3, 0.1, 0.03)]
    assert bounds[0] < bounds[1] < bounds[2]
    rng = np.random.default_rng(0)
    runs = [np.flatnonzero(pool.run == f"m{m}") for m in range(8)]  # rows by samples
    checked = 0
    for _ in range(300):  # random prefix designs: each run stopped after k eval points
        rows = [i for r, k in zip(runs, rng.integers(0, 9, size=8), strict=True) for i in r[:k]]
        for b, lo in zip((0.3, 0.1, 0.03), bounds, strict=True):
            if step[rows].sum() <= b:
                assert sd_ratio(var, rows) >= lo * (1 - 1e-6)
                checked += 1
    assert checked > 50


def test_copies_of_every_run_leave_the_bound_unchanged():
    """A more redundant grid (3 seeds of every run) scales information and cost alike, so the
    fraction of the grid any design needs is the same (what the benchmark's density table shows)."""
    pool, var = target_variance(LAW)
    copies = Pool(
        np.tile(pool.x, (3, 1)),
        np.tile(pool.y, 3),
        np.tile(pool.cost, 3),
        np.array([f"{k}-{r}" for k in range(3) for r in pool.run]),
    )
    var3 = TargetVariance(copies, TARGET_X, true_law(LAW).theta_)
    assert var3.full == pytest.approx(var.full / 3, rel=1e-9)
    for budget in (0.05, 0.1, 0.3):
        assert lower_bound(var3, increments(copies), budget) == pytest.approx(
            lower_bound(var, increments(pool), budget), rel=2e-3
        )
