"""Law forms as estimators in the scikit-learn manner.

`__init__` stores hyper-parameters only; `fit` returns self and sets learned attributes with a
trailing underscore; `predict` refuses an unfitted law.  Both forms share one fitting engine
(`_objective`), one bootstrap and one serialisation; a form only names its parameters.
"""

from __future__ import annotations

import re
import time
from collections import namedtuple
from typing import Any, ClassVar, NamedTuple

import numpy as np

from scaler.laws import _objective
from scaler.laws._bootstrap import BootstrapResult, run_bootstrap
from scaler.laws._identify import Identification, identify


class NotFittedError(RuntimeError):
    """Raised when a law is asked to predict before `fit` (or `from_dict`)."""


class Exclusion(NamedTuple):
    index: int  # position in the arrays given to `fit`
    reason: str


class PowerLawParams(NamedTuple):
    """L(x) = a * x^(-b) + c."""

    a: float
    b: float
    c: float


class JointLawParams(NamedTuple):
    """L(N, D) = E + A * N^(-alpha) + B * D^(-beta)."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float


class Frontier(NamedTuple):
    """Compute-optimal allocation for a budget C = k * N * D (arrays broadcast with C)."""

    C: np.ndarray
    N: np.ndarray
    D: np.ndarray
    L: np.ndarray


class Law:
    """Base class: a constant plus K power terms, fitted by log-space Huber loss."""

    form: ClassVar[str]
    n_axes: ClassVar[int]
    params_type: ClassVar[type]

    def __init__(
        self,
        *,
        delta: float = 1e-3,
        grid_size: int | None = None,
        n_starts: int = 6,
        exponent_bounds: tuple[float, float] = _objective.EXPONENT_BOUNDS,
    ):
        self.delta = delta
        self.grid_size = grid_size
        self.n_starts = n_starts
        self.exponent_bounds = exponent_bounds

    # --- hyper-parameters -------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "grid_size": self.grid_size,
            "n_starts": self.n_starts,
            "exponent_bounds": tuple(self.exponent_bounds),
        }

    def clone(self) -> Law:
        """An unfitted law with the same hyper-parameters."""
        return type(self)(**self.get_params())

    def _validate_hyperparams(self) -> None:
        if not (np.isfinite(self.delta) and self.delta > 0):
            raise ValueError(f"delta is {self.delta}, but must be > 0")
        if self.n_starts < 1:
            raise ValueError(f"n_starts is {self.n_starts}, but must be >= 1")
        lo, hi = self.exponent_bounds
        if not 0 <= lo < hi:
            raise ValueError(f"exponent_bounds is {self.exponent_bounds}, but must be 0 <= lo < hi")

    @property
    def _grid(self) -> int:
        if self.grid_size:
            return self.grid_size
        # ~2,000-8,000 cells whatever K: 48 | 20^2 | 12^3 | 8^4 | 6^5
        return {1: 48, 2: 20, 3: 12, 4: 8}.get(self.n_axes, 6)

    # --- data -------------------------------------------------------------------------------
    def _as_x(self, X) -> np.ndarray:
        x = np.asarray(X, dtype=float)
        if x.ndim == 1 and self.n_axes == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.n_axes:
            raise ValueError(
                f"{type(self).__name__} takes X of shape (n, {self.n_axes}), got {x.shape}"
            )
        return x

    def _clean(self, x, y, sample_weight, exclude) -> tuple[np.ndarray, list[Exclusion]]:
        """Boolean mask of usable points, and the reason for every point left out."""
        n = len(y)
        reasons: list[str | None] = [None] * n
        if exclude is not None:
            items = exclude.items() if isinstance(exclude, dict) else enumerate(exclude)
            for i, why in items:
                if why:
                    reasons[int(i)] = str(why)
        for i in range(n):
            if reasons[i]:
                continue
            if not np.isfinite(y[i]):
                reasons[i] = f"y is {y[i]} (diverged or missing)"
            elif y[i] <= 0:
                reasons[i] = f"y is {y[i]}, but must be > 0"
            elif not np.all(np.isfinite(x[i]) & (x[i] > 0)):
                reasons[i] = f"x is {x[i].tolist()}, but every axis must be finite and > 0"
            elif sample_weight is not None and not (sample_weight[i] > 0):
                reasons[i] = f"weight is {sample_weight[i]}"
        excluded = [Exclusion(i, r) for i, r in enumerate(reasons) if r]
        keep = np.array([r is None for r in reasons], dtype=bool)
        return keep, excluded

    # --- fitting ----------------------------------------------------------------------------
    def fit(self, X, y, *, sample_weight=None, exclude=None, warm_start: Law | None = None) -> Law:
        """Fit to points (X, y).

        X: (n,) or (n, K) positive axis values; y: (n,) positive losses.
        sample_weight: optional (n,) non-negative weights.
        exclude: optional per-point reasons (sequence aligned with y, or {index: reason});
            a truthy reason leaves the point out.  Non-finite or non-positive points are left
            out automatically.  All exclusions are in `excluded_`.
        warm_start: a fitted law of the same form (the last fit, on fewer points): its optimum is
            polished first, beside the single best cell of the grid instead of `n_starts` cells.
            For refits while points arrive; a fit from scratch searches more basins.
        """
        with _objective.one_blas_thread():
            return self._fit_points(X, y, sample_weight, exclude, warm_start)

    def _fit_points(self, X, y, sample_weight, exclude, warm_start: Law | None) -> Law:
        self._validate_hyperparams()
        start = time.perf_counter()
        x = self._as_x(X)
        y = np.asarray(y, dtype=float).ravel()
        if len(y) != len(x):
            raise ValueError(f"X has {len(x)} rows but y has {len(y)}")
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=float).ravel()
        keep, excluded = self._clean(x, y, w, exclude)
        n_params = 1 + 2 * self.n_axes
        if keep.sum() <= n_params:
            raise ValueError(
                f"{type(self).__name__} needs at least {n_params + 1} usable points "
                f"({n_params} parameters), got {int(keep.sum())} of {len(y)}"
                + (f"; excluded: {excluded[0].reason} ..." if excluded else "")
            )
        self.X_, self.y_ = x[keep], y[keep]
        self.sample_weight_ = np.ones(len(self.y_)) if w is None else w[keep]
        self.excluded_ = excluded
        problem = self._problem(self.X_, self.y_, self.sample_weight_)
        warm = getattr(warm_start, "theta_", None)
        if warm is not None and len(warm) != 1 + 2 * problem.k:
            raise ValueError(
                f"warm_start: a {type(warm_start).__name__} with {len(warm)} parameters, but this "
                f"{type(self).__name__} has {1 + 2 * problem.k}"
            )
        theta, f = _objective.fit(
            problem,
            grid_size=self._grid,
            n_starts=self.n_starts if warm is None else 1,
            warm_start=None if warm is None else _objective.to_normalised(warm, problem.shift),
            exponent_bounds=self.exponent_bounds,
        )
        self.theta_ = _objective.to_natural(theta, problem.shift)
        self.objective_ = f
        self.n_ = len(self.y_)
        self.mape_ = float(np.mean(np.abs(self.predict(self.X_) - self.y_) / self.y_))
        self.fit_seconds_ = time.perf_counter() - start
        self.bootstrap_: BootstrapResult | None = None
        self.distinct_ = [len(np.unique(col)) for col in self.X_.T]
        return self

    def _problem(self, x, y, w) -> _objective.Problem:
        return _objective.Problem.build(x, y, w, self.delta)

    # --- using a fitted law -----------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "theta_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet: call fit() before using it"
            )

    @property
    def params_(self):
        self._check_fitted()
        return self._params_from_theta(self.theta_)

    def _params_from_theta(self, theta: np.ndarray):
        k = self.n_axes
        c, coefs, exps = theta[0], np.exp(theta[1 : 1 + k]), theta[1 + k :]
        return self._pack(c, coefs, exps)

    def _pack(self, c, coefs, exps):  # pragma: no cover - overridden
        raise NotImplementedError

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        x = self._as_x(X)
        return _objective.predict(self.theta_, np.log(x))

    # --- uncertainty --------------------------------------------------------------------------
    def bootstrap(
        self,
        n: int = 1000,
        seed: int = 0,
        *,
        level: float = 0.95,
        n_jobs: int | None = None,
        method: str = "cases",
    ) -> BootstrapResult:
        """Percentile bootstrap over the fitted points: refit on `n` resamples (drawn from
        `seed`, so the result does not depend on `n_jobs`).  Stored in `bootstrap_`.
        method: "cases" (resample points) or "residuals" (keep the sizes, resample the log
        residuals: for a design with one point per size)."""
        self._check_fitted()
        if n < 2:
            raise ValueError(f"bootstrap n is {n}, but must be >= 2")
        if not 0 < level < 1:
            raise ValueError(f"level is {level}, but must be in (0, 1)")
        thetas = run_bootstrap(
            self.X_,
            self.y_,
            self.sample_weight_,
            self.theta_,
            delta=self.delta,
            exponent_bounds=self.exponent_bounds,
            n=n,
            seed=seed,
            n_jobs=n_jobs,
            method=method,
        )
        samples = np.array([self._params_from_theta(t) for t in thetas])
        self.bootstrap_ = BootstrapResult(
            names=self.params_type._fields, samples=samples, thetas=thetas, level=level
        )
        return self.bootstrap_

    @property
    def ci_(self) -> dict[str, tuple[float, float]]:
        """Percentile CI of every parameter at the bootstrap's level (empty if not bootstrapped)."""
        self._check_fitted()
        return {} if self.bootstrap_ is None else self.bootstrap_.ci()

    def predict_interval(self, X, level: float | None = None):
        """(prediction, lo, hi): point prediction and the bootstrap percentile band."""
        pred = self.predict(X)
        if self.bootstrap_ is None:
            raise NotFittedError("no bootstrap yet: call bootstrap() before predict_interval()")
        logx = np.log(self._as_x(X))
        draws = np.array([_objective.predict(t, logx) for t in self.bootstrap_.thetas])
        lo, hi = self.bootstrap_.percentiles(draws, level)
        return pred, lo, hi

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: enough to rebuild a predicting law with `Law.from_dict`."""
        self._check_fitted()
        out: dict[str, Any] = {
            "form": self.form,
            "params": {k: float(v) for k, v in self.params_._asdict().items()},
            "n": int(self.n_),
            "mape": float(self.mape_),
            "hyperparams": {**self.get_params(), "exponent_bounds": list(self.exponent_bounds)},
            "excluded": [{"index": e.index, "reason": e.reason} for e in self.excluded_],
        }
        ident = self.identification_
        out["identified"], out["reason"] = ident.identified, ident.reason
        if hasattr(self, "distinct_"):
            out["distinct"] = list(self.distinct_)
        if self.bootstrap_ is not None:
            out["ci"] = {k: [lo, hi] for k, (lo, hi) in self.ci_.items()}
            out["se"] = self.bootstrap_.se()
            out["level"] = self.bootstrap_.level
        return out

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Law:
        """A law that predicts from a `to_dict` summary (no data, no bootstrap draws)."""
        forms = {cls.form: cls for cls in (PowerLaw, JointLaw, MultiLaw)}
        if d.get("form") not in forms:
            raise ValueError(f"form is {d.get('form')!r}, but must be one of {sorted(forms)}")
        cls = forms[d["form"]]
        hyper = dict(d.get("hyperparams", {}))
        if "exponent_bounds" in hyper:
            hyper["exponent_bounds"] = tuple(hyper["exponent_bounds"])
        if "axes" in hyper:
            hyper["axes"] = tuple(hyper["axes"])
        law = cls(**hyper)
        law.theta_ = law._theta_from_params(law.params_type(**d["params"]))
        law.n_ = d.get("n", 0)
        law.mape_ = d.get("mape", float("nan"))
        law.excluded_ = [Exclusion(e["index"], e["reason"]) for e in d.get("excluded", [])]
        law.bootstrap_ = None
        law.stored_ci_ = {k: tuple(v) for k, v in d.get("ci", {}).items()}
        if "distinct" in d:
            law.distinct_ = list(d["distinct"])
        return law

    def _theta_from_params(self, params) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    # --- identification -----------------------------------------------------------------------
    @property
    def identification_(self) -> Identification:
        """Whether the data pin the law's parameters down (see `scaler.laws._identify`): an
        exponent at its bound, a CI over decades or too few distinct sizes make the numbers
        meaningless, whatever the fit's residuals."""
        self._check_fitted()
        return identify(self)

    @property
    def identified_(self) -> bool:
        return self.identification_.identified

    def __repr__(self) -> str:
        if not hasattr(self, "theta_"):
            return f"{type(self).__name__}(unfitted)"
        ident = self.identification_
        if not ident.identified:
            return f"{type(self).__name__}(not identified: {ident.reason})"
        body = ", ".join(f"{k}={v:.4g}" for k, v in self.params_._asdict().items())
        return f"{type(self).__name__}({body})"


class PowerLaw(Law):
    """L(x) = a * x^(-b) + c along one axis (data, parameters or compute).

    The seed paper's form (Ardalani et al. 2022): c is the irreducible loss the axis cannot buy.
    """

    form = "power"
    n_axes = 1
    params_type = PowerLawParams

    def _pack(self, c, coefs, exps):
        return PowerLawParams(a=float(coefs[0]), b=float(exps[0]), c=float(c))

    def _theta_from_params(self, p: PowerLawParams) -> np.ndarray:
        return np.array([p.c, np.log(p.a), p.b], dtype=float)

    def backtest_cost(self, x: np.ndarray) -> np.ndarray:
        return x[:, 0]


class JointLaw(Law):
    """L(N, D) = E + A * N^(-alpha) + B * D^(-beta)  (Hoffmann et al. 2022, approach 3).

    X columns are (N, D): parameters and training samples (tokens).
    """

    form = "joint"
    n_axes = 2
    params_type = JointLawParams

    def _pack(self, c, coefs, exps):
        return JointLawParams(
            E=float(c),
            A=float(coefs[0]),
            alpha=float(exps[0]),
            B=float(coefs[1]),
            beta=float(exps[1]),
        )

    def _theta_from_params(self, p: JointLawParams) -> np.ndarray:
        return np.array([p.E, np.log(p.A), np.log(p.B), p.alpha, p.beta], dtype=float)

    def backtest_cost(self, x: np.ndarray) -> np.ndarray:
        return x[:, 0] * x[:, 1]  # proportional to training compute

    @property
    def optimal_exponent_(self) -> float:
        """a = beta / (alpha + beta): N*(C) grows as C^a, D*(C) as C^(1-a)."""
        p = self.params_
        return p.beta / (p.alpha + p.beta)

    def frontier(self, C, k: float = 6.0) -> Frontier:
        """Compute-optimal N*(C), D*(C), L*(C) under the cost model C = k * N * D."""
        return compute_frontier(self.params_, C, k)

    def frontier_interval(self, C, k: float = 6.0, level: float | None = None):
        """Bootstrap percentile bands: {"N": (lo, hi), "D": ..., "L": ..., "a": ...}."""
        self._check_fitted()
        if self.bootstrap_ is None:
            raise NotFittedError("no bootstrap yet: call bootstrap() before frontier_interval()")
        fronts = [compute_frontier(JointLawParams(*s), C, k) for s in self.bootstrap_.samples]
        out = {
            name: self.bootstrap_.percentiles(np.array([getattr(f, name) for f in fronts]), level)
            for name in ("N", "D", "L")
        }
        a = self.bootstrap_.samples[:, 4] / (
            self.bootstrap_.samples[:, 2] + self.bootstrap_.samples[:, 4]
        )
        out["a"] = self.bootstrap_.percentiles(a, level)
        return out


def _field(axis: str) -> str:
    name = re.sub(r"\W", "_", axis)
    return name if name.isidentifier() else f"x_{name}"


class MultiLaw(Law):
    """L(x_1, ..., x_K) = E + sum_i A_i * x_i^(-alpha_i): one power term per resource axis.

    For a DLRM the axes are the resources a team can buy separately, for example
    ``("sparse_params", "dense_params", "samples")``: embedding rows cost memory and a lookup,
    MLP parameters cost FLOPs, samples cost both; one parameter axis would blur the first two.
    Parameters are named after the axes: ``E``, ``A_<axis>``, ``alpha_<axis>``.  With axes
    (N, D) it is `JointLaw` (same objective, same grid, same optimum).
    """

    form = "multi"

    def __init__(self, axes: tuple[str, ...] | list[str] = ("x",), **kwargs):
        super().__init__(**kwargs)
        self.axes = tuple(axes)

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "axes": tuple(self.axes)}

    def _validate_hyperparams(self) -> None:
        super()._validate_hyperparams()
        if not self.axes:
            raise ValueError("axes is empty, but a MultiLaw needs at least one axis")
        names = [_field(a) for a in self.axes]
        if len(set(names)) != len(names):
            raise ValueError(f"axes {self.axes} repeat a name")

    @property
    def n_axes(self) -> int:  # type: ignore[override]
        return len(self.axes)

    @property
    def params_type(self) -> type:  # type: ignore[override]
        fields = ["E"]
        for a in self.axes:
            fields += [f"A_{_field(a)}", f"alpha_{_field(a)}"]
        return namedtuple("MultiLawParams", fields)

    def _pack(self, c, coefs, exps):
        values = [float(c)]
        for a, e in zip(coefs, exps, strict=True):
            values += [float(a), float(e)]
        return self.params_type(*values)

    def _theta_from_params(self, p) -> np.ndarray:
        k = self.n_axes
        coefs = [p[1 + 2 * i] for i in range(k)]
        exps = [p[2 + 2 * i] for i in range(k)]
        return np.array([p[0], *np.log(coefs), *exps], dtype=float)

    def term(self, axis: str) -> tuple[float, float]:
        """(A, alpha) of one axis."""
        p = self.params_._asdict()
        return p[f"A_{_field(axis)}"], p[f"alpha_{_field(axis)}"]

    def backtest_cost(self, x: np.ndarray) -> np.ndarray:
        return x.prod(axis=1)  # a proxy; callers with a real cost pass it to backtest()


def compute_frontier(p: JointLawParams, C, k: float = 6.0) -> Frontier:
    """Minimise A N^-alpha + B D^-beta subject to k N D = C (closed form).

    A vanished term (A alpha = 0: parameters do not pay; B beta = 0: data does not pay) sends the
    optimum to the edge: N* = 0 and D* = inf (or the reverse), and L* is the limit, E plus the
    other term's limit; callers that need finite sizes clamp (scaler.analysis.clamped_frontier)."""
    if k <= 0:
        raise ValueError(f"k is {k}, but must be > 0")
    C = np.asarray(C, dtype=float)
    if np.any(C <= 0):
        raise ValueError("compute budget C must be > 0")
    s = p.alpha + p.beta
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        G = (np.float64(p.alpha * p.A) / (p.beta * p.B)) ** (1.0 / s)
        n_opt = G * (C / k) ** (p.beta / s)
        d_opt = (C / k) / n_opt
        n_term = p.A * n_opt ** (-p.alpha) if p.A * p.alpha > 0 else np.zeros_like(C)
        d_term = p.B * d_opt ** (-p.beta) if p.B * p.beta > 0 else np.zeros_like(C)
    return Frontier(C=C, N=n_opt, D=d_opt, L=p.E + n_term + d_term)
