"""The one model every law form shares, and how to fit it fast.

Every law here is a constant plus a sum of K power terms,

    L(x) = c + sum_k exp(s_k - alpha_k * log x_k),          (K = 1: PowerLaw, K = 2: JointLaw)

fitted by a Huber loss on log-space residuals r = log L(x) - log y (Hoffmann et al. 2022,
approach 3; Besiroglu et al. 2024).  Fitting exploits the structure instead of hoping:

1. Given the exponents, L is *linear* in its coefficients (c, A_k = e^{s_k}).  A grid over the
   exponents, each cell solved in closed form for non-negative coefficients (least squares on
   relative residuals, which is the log-residual loss to first order), maps the whole landscape
   in one vectorised pass: that is where the many starting points come from.
2. The best few distinct cells are polished by bounded L-BFGS-B on the exact Huber objective,
   with an analytic gradient.
3. Every x is divided by its geometric mean first, so that s and alpha are decoupled and well
   scaled; coefficients are mapped back afterwards.

The module is pure NumPy/SciPy and knows nothing of forms, names or CIs.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, nnls
from threadpoolctl import ThreadpoolController

EXPONENT_BOUNDS = (0.0, 4.0)


@functools.cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()  # finds the loaded BLAS libraries once (~1 ms), then ~10 us


def one_blas_thread():
    """A context in which BLAS runs on one thread. A law's matrices are tiny (points x a few
    terms): more threads only cost, and OpenBLAS's idle threads spin. Measured in a sweep's
    driver on 2 cores: BLAS threads that spin burned ~a quarter of a core, as much CPU as the
    driver's own loop. (Process-wide while it lasts, as BLAS's thread count is.)"""
    try:
        return _blas().limit(limits=1, user_api="blas")
    except Exception:  # no BLAS found to limit, or one threadpoolctl cannot drive
        return contextlib.nullcontext()


@dataclass(frozen=True)
class Problem:
    """Normalised data: log x (n, K) centred per column, log y (n,), weights summing to 1."""

    logx: np.ndarray
    logy: np.ndarray
    weights: np.ndarray
    shift: np.ndarray  # (K,) the log geometric mean removed from each column of log x
    delta: float

    @classmethod
    def build(cls, x: np.ndarray, y: np.ndarray, weights: np.ndarray, delta: float) -> Problem:
        logx = np.log(x)
        shift = logx.mean(axis=0)
        return cls(logx - shift, np.log(y), weights / weights.sum(), shift, delta)

    @property
    def k(self) -> int:
        return self.logx.shape[1]


# θ = [c, s_1..s_K, alpha_1..alpha_K] in normalised units.


def predict(theta: np.ndarray, logx: np.ndarray) -> np.ndarray:
    k = logx.shape[1]
    return theta[0] + np.exp(theta[1 : 1 + k] - theta[1 + k :] * logx).sum(axis=1)


def objective(theta: np.ndarray, p: Problem) -> tuple[float, np.ndarray]:
    """Weighted mean Huber loss of log residuals, divided by delta (so it is O(mean|r|/delta)),
    and its exact gradient."""
    k = p.k
    terms = np.exp(np.minimum(theta[1 : 1 + k] - theta[1 + k :] * p.logx, 700.0))  # (n, K)
    pred = np.maximum(theta[0] + terms.sum(axis=1), 1e-300)  # L-BFGS-B may probe c=0, s=-700
    r = np.log(pred) - p.logy
    a = np.abs(r)
    quad = a <= p.delta
    loss = np.where(quad, 0.5 * r * r, p.delta * (a - 0.5 * p.delta))
    f = float(p.weights @ loss) / p.delta
    with np.errstate(over="ignore"):
        g = p.weights * np.clip(r, -p.delta, p.delta) / (pred * p.delta)  # d f / d pred
    g = np.nan_to_num(g, posinf=1e300, neginf=-1e300)
    gt = g @ terms  # (K,)
    grad = np.concatenate(([g.sum()], gt, -(g[:, None] * terms * p.logx).sum(axis=0)))
    return f, grad


def huber_batch(pred: np.ndarray, p: Problem) -> np.ndarray:
    """Objective for many predictions at once: pred (G, n) -> (G,)."""
    r = np.log(np.maximum(pred, 1e-300)) - p.logy
    a = np.abs(r)
    loss = np.where(a <= p.delta, 0.5 * r * r, p.delta * (a - 0.5 * p.delta))
    return loss @ p.weights / p.delta


def exponent_grid(k: int, size: int, bounds=EXPONENT_BOUNDS) -> np.ndarray:
    """(G, K) grid of exponents, denser at small values where laws of interest live."""
    lo, hi = bounds
    axis = lo + (hi - lo) * np.linspace(0.0, 1.0, size + 2)[1:-1] ** 1.5
    mesh = np.meshgrid(*([axis] * k), indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def linear_starts(p: Problem, alphas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each exponent row, the non-negative coefficients that minimise the weighted squared
    *relative* error.  Returns thetas (G, 1+2K) and their Huber objective (G,)."""
    g, k = alphas.shape
    y = np.exp(p.logy)
    sw = np.sqrt(p.weights) / y  # row scaling: relative residuals, weighted
    feats = np.exp(-alphas[:, None, :] * p.logx[None, :, :])  # (G, n, K)
    design = np.concatenate([np.ones((g, len(y), 1)), feats], axis=2) * sw[None, :, None]
    target = y * sw
    # Normal equations, batched; columns rescaled for conditioning.
    norms = np.linalg.norm(design, axis=1, keepdims=True)  # (G, 1, K+1)
    dn = design / norms
    gram = dn.transpose(0, 2, 1) @ dn + 1e-12 * np.eye(k + 1)
    rhs = dn.transpose(0, 2, 1) @ target
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0] / norms[:, 0, :]
    for i in np.flatnonzero((coef < 0).any(axis=1)):  # the few cells that need the constraint
        coef[i] = nnls(design[i], target, maxiter=50 * (k + 1))[0]
    coef = np.maximum(coef, 0.0)
    pred = coef[:, :1] + (coef[:, None, 1:] * feats).sum(axis=2)
    scores = huber_batch(pred, p)
    s = np.log(np.maximum(coef[:, 1:], 1e-300))
    thetas = np.concatenate([coef[:, :1], s, alphas], axis=1)
    return thetas, scores


def bounds_for(
    p: Problem, exponent_bounds=EXPONENT_BOUNDS
) -> list[tuple[float | None, float | None]]:
    ymax = float(np.exp(p.logy.max()))
    return [(0.0, ymax)] + [(-700.0, 700.0)] * p.k + [exponent_bounds] * p.k


def polish(theta0: np.ndarray, p: Problem, bounds) -> tuple[np.ndarray, float]:
    theta0 = np.clip(theta0, [b[0] for b in bounds], [b[1] for b in bounds])
    theta0[1 : 1 + p.k] = np.maximum(theta0[1 : 1 + p.k], -690.0)
    res = minimize(
        objective,
        theta0,
        args=(p,),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-10, "maxcor": 10},
    )
    return res.x, float(res.fun)


def distinct_best(thetas: np.ndarray, scores: np.ndarray, n: int, k: int) -> list[int]:
    """Indices of the `n` best cells whose exponents differ from every better pick by more than
    a tenth of the exponent range: many starts that are not all in one basin."""
    order = np.argsort(scores)
    chosen: list[int] = []
    span = 0.1 * (EXPONENT_BOUNDS[1] - EXPONENT_BOUNDS[0])
    for i in order:
        if not np.isfinite(scores[i]):
            break
        alpha = thetas[i, 1 + k :]
        if all(np.max(np.abs(alpha - thetas[j, 1 + k :])) > span for j in chosen):
            chosen.append(int(i))
            if len(chosen) == n:
                break
    return chosen


def fit(
    p: Problem,
    *,
    grid_size: int,
    n_starts: int,
    warm_start: np.ndarray | None = None,
    exponent_bounds=EXPONENT_BOUNDS,
) -> tuple[np.ndarray, float]:
    """Best θ (normalised units) over the polished starts, and its objective."""
    thetas, scores = linear_starts(p, exponent_grid(p.k, grid_size, exponent_bounds))
    starts = [thetas[i] for i in distinct_best(thetas, scores, n_starts, p.k)]
    if warm_start is not None:
        starts.insert(0, warm_start)
    bounds = bounds_for(p, exponent_bounds)
    best, best_f = None, np.inf
    for theta0 in starts:
        theta, f = polish(np.array(theta0, dtype=float), p, bounds)
        if f < best_f:
            best, best_f = theta, f
    if best is None:
        raise RuntimeError("no finite starting point: check that y > 0 and x > 0")
    return best, best_f


def to_natural(theta: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Normalised θ -> θ in the caller's units: A (x/g)^-a = (A g^a) x^-a."""
    k = len(shift)
    out = theta.copy()
    out[1 : 1 + k] = theta[1 : 1 + k] + theta[1 + k :] * shift
    return out


def to_normalised(theta: np.ndarray, shift: np.ndarray) -> np.ndarray:
    k = len(shift)
    out = np.asarray(theta, dtype=float).copy()
    out[1 : 1 + k] = out[1 : 1 + k] - out[1 + k :] * shift
    return out
