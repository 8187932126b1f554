"""Non-parametric bootstrap for laws: resample points, refit, take percentiles.

Resample indices are all drawn up front from one seed, so results are identical whatever the
number of worker processes.  Each refit starts from the full-data optimum and from the best
cell of a coarse exponent grid, so a resample whose optimum moved basins is still found.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from joblib import Parallel, delayed

from scaler.laws import _objective

_COARSE_GRID = {1: 10, 2: 10, 3: 8, 4: 5}  # per K; 4 for more axes (cells = grid^K)
_PER_PROCESS_MIN = (
    100  # below this many resamples per worker, a process pool costs more than it saves
)


@dataclass(frozen=True)
class BootstrapResult:
    names: tuple[str, ...]
    samples: np.ndarray  # (n, P) parameters in natural units, columns named by `names`
    thetas: np.ndarray  # (n, 1 + 2K) internal parameter vectors, for predictions
    level: float

    def percentiles(self, draws: np.ndarray, level: float | None = None):
        """(lo, hi) percentile band along axis 0 of `draws`."""
        level = self.level if level is None else level
        tail = 100.0 * (1.0 - level) / 2.0
        lo, hi = np.percentile(draws, [tail, 100.0 - tail], axis=0)
        return lo, hi

    def ci(self, level: float | None = None) -> dict[str, tuple[float, float]]:
        lo, hi = self.percentiles(self.samples, level)
        return {n: (float(a), float(b)) for n, a, b in zip(self.names, lo, hi, strict=True)}

    def se(self) -> dict[str, float]:
        sd = self.samples.std(axis=0, ddof=1)
        return {n: float(s) for n, s in zip(self.names, sd, strict=True)}


def _refit_chunk(x, y, w, theta, delta, exponent_bounds, indices) -> np.ndarray:
    out = np.empty((len(indices), len(theta)))
    for row, idx in enumerate(indices):
        p = _objective.Problem.build(x[idx], y[idx], w[idx], delta)
        warm = _objective.to_normalised(theta, p.shift)
        best, _ = _objective.fit(
            p,
            grid_size=_COARSE_GRID.get(p.k, 4),
            n_starts=1,
            warm_start=warm,
            exponent_bounds=exponent_bounds,
        )
        out[row] = _objective.to_natural(best, p.shift)
    return out


def _refit_residuals(x, y_stars, w, theta, delta, exponent_bounds) -> np.ndarray:
    out = np.empty((len(y_stars), len(theta)))
    for row, y_star in enumerate(y_stars):
        p = _objective.Problem.build(x, y_star, w, delta)
        best, _ = _objective.fit(
            p,
            grid_size=_COARSE_GRID.get(p.k, 4),
            n_starts=1,
            warm_start=_objective.to_normalised(theta, p.shift),
            exponent_bounds=exponent_bounds,
        )
        out[row] = _objective.to_natural(best, p.shift)
    return out


def run_bootstrap(
    x, y, w, theta, *, delta, exponent_bounds, n, seed, n_jobs=None, method="cases"
) -> np.ndarray:
    """Refit on `n` resamples.  method "cases" resamples points (the default); "residuals"
    keeps every x and resamples the fit's log residuals (scaled by sqrt(n / (n - p)) for the
    p fitted parameters): for a designed grid with one point per size, where a case resample
    that drops sizes leaves a law no design could identify."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(y), size=(n, len(y)))
    if method == "residuals":
        pred = _objective.predict(theta, np.log(x))
        r = np.log(y) - np.log(pred)
        dof = max(len(y) - len(theta), 1)
        y_stars = pred * np.exp(r[indices] * np.sqrt(len(y) / dof))
        return _refit_residuals(x, y_stars, w, theta, delta, exponent_bounds)
    if method != "cases":
        raise ValueError(f"method is {method!r}, but must be 'cases' or 'residuals'")
    if n_jobs is None:
        n_jobs = min(os.cpu_count() or 1, max(1, n // _PER_PROCESS_MIN))
    if n_jobs <= 1:
        return _refit_chunk(x, y, w, theta, delta, exponent_bounds, indices)
    # joblib's loky workers are fresh processes (safe beside Ray's and MLflow's threads) that
    # need no `if __name__ == "__main__"` guard in the caller's script, and are reused.
    parts = Parallel(n_jobs=n_jobs, backend="loky")(
        delayed(_refit_chunk)(x, y, w, theta, delta, exponent_bounds, chunk)
        for chunk in np.array_split(indices, n_jobs)
    )
    return np.concatenate(parts)
