"""How much a set of a pool's rows tells about the target, to first order, and the most that any
set within a budget could tell.

The law L(x; θ) (θ = [c, log coefficients, exponents], `Law.theta_`) is fitted in log space.
With relative noise σ per row, the fitted law's mean log-error at the target rows has variance
σ² g M(w)⁻¹ gᵀ to first order (Laplace). Here M(w) = Σ_i w_i J_iᵀ J_i, J_i = ∂ log L / ∂θ at pool
row i, and g is the mean of ∂ log L / ∂θ over the target rows. w_i is 1 for a row bought and
0 otherwise. The ratio of that sd for a design to the sd for the whole pool needs neither σ nor a
simulation. It measures how well a policy chose, apart from the luck of one noise draw.

`lower_bound` is the least ratio any design within a budget can reach. Each row may be bought in
any fraction w_i in [0, 1] at its increment's cost, the cost over the row before it in its run.
Any real design (a run bought up to its k-th row costs its k first increments) is one such
choice, so the minimum over them bounds every real design from below. The objective is convex
in w, so Frank-Wolfe solves it and certifies the bound with its duality gap.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from scaler.allocation._adaptive import log_jacobian
from scaler.allocation._replay import Pool


class TargetVariance:
    """var(w) -> (g M(w)⁻¹ gᵀ, its gradient in w), in units of σ² (module docstring)."""

    def __init__(self, pool: Pool, target_x: np.ndarray, theta: np.ndarray):
        self.jac, _ = log_jacobian(theta, np.log(pool.x))
        self.g = log_jacobian(theta, np.log(np.atleast_2d(target_x)))[0].mean(axis=0)
        self.n_rows, self.n_params = self.jac.shape
        self.full = self(np.ones(self.n_rows))[0]  # the whole pool's

    def __call__(self, w: np.ndarray) -> tuple[float, np.ndarray]:
        info = self.jac.T @ (w[:, None] * self.jac) + 1e-12 * np.eye(self.n_params)
        u = np.linalg.solve(info, self.g)
        return float(self.g @ u), -((self.jac @ u) ** 2)


def increments(pool: Pool) -> np.ndarray:
    """Each row's cost over the row before it in its run (its cost without runs), as a fraction
    of the whole pool's cost."""
    if pool.run is None:
        return pool.cost / pool.total_cost()
    step = np.zeros(len(pool.y))
    for run in np.unique(pool.run):
        rows = np.flatnonzero(pool.run == run)
        rows = rows[np.argsort(pool.cost[rows])]
        step[rows] = np.diff(pool.cost[rows], prepend=0.0)
    return step / pool.total_cost()


def sd_ratio(var: TargetVariance, rows) -> float:
    """First-order target-error sd of a fit on `rows` / that of a fit on the whole pool (inf
    with no more rows than the law has parameters: the fitter needs more)."""
    rows = list(rows)
    if len(rows) <= var.n_params:
        return math.inf
    w = np.zeros(var.n_rows)
    w[rows] = 1.0
    return math.sqrt(var(w)[0] / var.full)


def lower_bound(var: TargetVariance, step: np.ndarray, budget: float, tol: float = 1e-4) -> float:
    """Least sd ratio (to the whole pool's) over every fractional design with step @ w <= budget
    (module docstring): Frank-Wolfe with exact line search; returns the best certified bound
    f(w) - gap, as a ratio of sds."""
    n = len(step)
    w = np.full(n, min(1.0, budget / step.sum()))  # feasible
    best = 0.0
    for _ in range(2000):
        f, grad = var(w)
        gain = -grad  # >= 0: every row helps; buy the most per unit cost (fractional knapsack)
        v, left = np.zeros(n), budget
        for i in np.argsort(-gain / np.maximum(step, 1e-300)):
            if gain[i] <= 0 or left <= 0:
                break
            v[i] = min(1.0, left / step[i]) if step[i] > 0 else 1.0
            left -= v[i] * step[i]
        gap = float(grad @ (w - v))
        best = max(best, f - gap)
        if gap <= tol * f:
            break
        d = v - w
        line = minimize_scalar(
            lambda t, w=w, d=d: var(w + t * d)[0], bounds=(0.0, 1.0), method="bounded"
        )
        w = w + line.x * d
    return math.sqrt(max(best, 0.0) / var.full)
