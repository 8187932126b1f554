"""Scaling-scheme analysis of a sweep's eval points: per-scheme laws, saturation verdicts,
the compute-optimal frontier and backtests.  Pure pandas/NumPy on top of `scaler.laws`; it fits
(this is analysis) and returns typed results that `scaler.report_plots` draws without refitting.

A *scheme* is one resource grown while the others stay put:

- ``data``:      loss vs samples on the largest model (all its eval points);
- ``compute``:   loss vs training FLOPs on the lower envelope (the compute-efficient frontier);
- ``<knob>``:    one per swept knob of ``axes.params`` (``model.embedding_dim``, ``n_params``, ...):
                 loss vs parameters over the trials whose *other* knobs sit at their largest value,
                 at the largest sample count that ``MIN_DISTINCT`` values of the knob reached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaler.laws import JointLaw, JointLawParams, PowerLaw, backtest, compute_frontier

log = logging.getLogger(__name__)

MIN_DISTINCT = 4
FUTURE = (10.0, 100.0)  # the report predicts the frontier at these multiples of the largest C


@dataclass(frozen=True)
class SchemeResult:
    """One scheme's fitted law L(x) = a x^-b + c and what it says at the operating point."""

    name: str
    axis: str  # column of the points table: samples | params | flops
    law: PowerLaw
    x: np.ndarray  # the points the law was fitted on
    loss: np.ndarray
    x_op: float  # operating point: the largest x trained
    flops_op: float  # training FLOPs at the operating point
    loss_op: float  # fitted loss at x_op
    gap: float  # loss_op - c: what is left to gain from this resource
    gap_ci: tuple[float, float]
    per_doubling: float  # L(x_op) - L(2 x_op)
    per_doubling_ci: tuple[float, float]
    per_flop: float  # per_doubling / flops_op: loss bought per FLOP spent at the margin
    saturated: bool
    verdict: str


@dataclass(frozen=True)
class FrontierResult:
    law: JointLaw
    C: np.ndarray  # budgets: largest trained, then x FUTURE
    N: np.ndarray
    D: np.ndarray
    L: np.ndarray
    ci: dict  # "N" | "D" | "L" -> (lo, hi) arrays; "a" -> (lo, hi)
    exponent: float  # a = beta / (alpha + beta)
    k: float  # cost model C = k N D
    n_min: float = 0.0  # N* is kept >= the smallest model trained (a vanished A sends it to 0)
    d_min: float = 0.0  # ... and D* >= the smallest sample count trained
    degenerate: str = (
        ""  # non-empty when a fitted term vanished (A or B = 0): all compute to one axis
    )


@dataclass(frozen=True)
class BacktestResult:
    name: str
    n_train: int
    n_test: int
    mape: float
    max_error: float


@dataclass
class Analysis:
    schemes: dict[str, SchemeResult] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    frontier: FrontierResult | None = None
    backtests: dict[str, BacktestResult] = field(default_factory=dict)
    points: pd.DataFrame | None = None  # the used eval points (for plots)


def knobs(trials: pd.DataFrame) -> list[str]:
    """The swept knobs: `param.<knob>` columns of the trials table with more than one value."""
    cols = [c for c in trials.columns if c.startswith("param.")]
    return [c[len("param.") :] for c in cols if trials[c].nunique() > 1]


def scheme_datasets(points: pd.DataFrame, trials: pd.DataFrame) -> dict[str, object]:
    """scheme name -> (axis column, x, loss) or a string saying why it cannot be fitted."""
    ok = points[points["excluded"].fillna("") == ""]
    ok = ok[np.isfinite(ok["loss"]) & (ok["loss"] > 0)]
    out: dict[str, object] = {}
    largest = ok[ok["params"] == ok["params"].max()]
    if largest["samples"].nunique() >= MIN_DISTINCT:
        out["data"] = ("samples", largest["samples"].to_numpy(float), largest["loss"].to_numpy())
    else:
        out["data"] = f"needs {MIN_DISTINCT} distinct sample counts on the largest model"
    env = _lower_envelope(ok)
    if env["flops"].nunique() >= MIN_DISTINCT:
        out["compute"] = ("flops", env["flops"].to_numpy(float), env["loss"].to_numpy())
    else:
        out["compute"] = f"needs {MIN_DISTINCT} points on the compute frontier"
    swept = knobs(trials)
    for knob in swept:
        keep = trials.copy()
        for other in swept:
            if other != knob:
                col = keep[f"param.{other}"]
                keep = keep[col == col.max()]
        sub = ok[ok["trial_id"].isin(keep["trial_id"])]
        sub = sub.assign(knob=sub["trial_id"].map(keep.set_index("trial_id")[f"param.{knob}"]))
        per_samples = sub.groupby("samples")["knob"].nunique()
        counts = per_samples[per_samples >= MIN_DISTINCT]
        if counts.empty:
            out[knob] = f"needs {MIN_DISTINCT} values of {knob} at a common sample count"
            continue
        at = sub[sub["samples"] == counts.index.max()]
        out[knob] = ("params", at["params"].to_numpy(float), at["loss"].to_numpy())
    return out


def _lower_envelope(ok: pd.DataFrame) -> pd.DataFrame:
    srt = ok.sort_values(["flops", "loss"])
    best_before = np.minimum.accumulate(np.r_[np.inf, srt["loss"].to_numpy()[:-1]])
    return srt[srt["loss"].to_numpy() < best_before]


def _flops_at(ok: pd.DataFrame, axis: str, x: float) -> float:
    """Training FLOPs of the most expensive point at the operating point of an axis."""
    rows = ok[np.isclose(ok[axis].astype(float), x)]
    return float(rows["flops"].max()) if len(rows) else float("nan")


def fit_scheme(
    name: str,
    axis: str,
    x: np.ndarray,
    loss: np.ndarray,
    flops_op: float,
    *,
    bootstrap: int,
    seed: int,
    gap_threshold: float,
    exponent_floor: float,
) -> SchemeResult:
    law = PowerLaw().fit(x, loss)
    law.bootstrap(bootstrap, seed=seed)
    x_op = float(x.max())
    p = law.params_
    loss_op = float(law.predict([x_op])[0])
    gap = p.a * x_op ** (-p.b)
    per_doubling = gap * (1.0 - 2.0 ** (-p.b))
    s = law.bootstrap_.samples  # columns: c, a, b
    names = list(law.bootstrap_.names)
    a_s, b_s = s[:, names.index("a")], s[:, names.index("b")]
    gaps = a_s * x_op ** (-b_s)
    dbl = gaps * (1.0 - 2.0 ** (-b_s))
    q = (2.5, 97.5)
    gap_ci = tuple(float(v) for v in np.percentile(gaps, q))
    dbl_ci = tuple(float(v) for v in np.percentile(dbl, q))
    b_lo = law.ci_["b"][0]
    reasons = []
    if b_lo <= exponent_floor:
        reasons.append(f"exponent CI reaches {b_lo:.3g} (indistinguishable from 0)")
    if gap_ci[1] < gap_threshold * loss_op:
        reasons.append(
            f"gap to the constant < {gap_threshold:.1%} of the loss (CI upper {gap_ci[1]:.3g})"
        )
    saturated = bool(reasons)
    verdict = (
        "saturated: " + "; ".join(reasons)
        if saturated
        else f"still paying: {per_doubling:.3g} loss per doubling ({per_doubling / loss_op:.2%})"
    )
    return SchemeResult(
        name=name,
        axis=axis,
        law=law,
        x=x,
        loss=loss,
        x_op=x_op,
        flops_op=flops_op,
        loss_op=loss_op,
        gap=float(gap),
        gap_ci=gap_ci,
        per_doubling=float(per_doubling),
        per_doubling_ci=dbl_ci,
        per_flop=float(per_doubling / flops_op) if flops_op > 0 else float("nan"),
        saturated=saturated,
        verdict=verdict,
    )


def clamped_frontier(p: JointLawParams, C, k: float, n_min: float, d_min: float):
    """Closed-form N*(C), D*(C), L*(C), with N* kept within [n_min, C / (k d_min)]: when a term
    vanishes, the optimum runs off to 0 or infinity and the nearest trained size is the answer."""
    f = compute_frontier(p, C, k)
    C = np.asarray(C, dtype=float)
    with np.errstate(all="ignore"):
        n = np.clip(np.nan_to_num(f.N, nan=n_min), n_min, np.maximum(n_min, C / (k * d_min)))
        d = C / (k * n)
        loss = p.E + p.A * n ** (-p.alpha) + p.B * d ** (-p.beta)
    return n, d, loss


def frontier_band(law: JointLaw, C, k: float, n_min: float, d_min: float, q=(2.5, 97.5)):
    """Percentile bands of the clamped frontier over the law's bootstrap samples."""
    draws = [
        clamped_frontier(JointLawParams(*s), C, k, n_min, d_min) for s in law.bootstrap_.samples
    ]
    arr = np.array(draws)  # (n_boot, 3, len(C))
    lo, hi = np.nanpercentile(arr, q, axis=0)
    return {"N": (lo[0], hi[0]), "D": (lo[1], hi[1]), "L": (lo[2], hi[2])}


def _degenerate(law: JointLaw) -> str:
    p = law.params_
    if p.A <= 1e-12 * p.E:
        return "parameters do not pay (A = 0): the frontier puts all compute into data"
    if p.B <= 1e-12 * p.E:
        return "data does not pay (B = 0): the frontier puts all compute into parameters"
    return ""


def analyze(
    points: pd.DataFrame,
    trials: pd.DataFrame,
    *,
    bootstrap: int = 100,
    seed: int = 0,
    gap_threshold: float = 0.01,
    exponent_floor: float = 0.02,
    k: float = 6.0,
    holdout: float = 0.2,
) -> Analysis:
    """Fit every scheme, the joint law and its frontier, and backtest each law."""
    if bootstrap < 2:
        raise ValueError(f"bootstrap is {bootstrap}, but must be >= 2")
    if not 0 < gap_threshold < 1:
        raise ValueError(f"gap_threshold is {gap_threshold}, but must be in (0, 1)")
    if points.empty:
        raise ValueError("the sweep has no eval points yet")
    ok = points[points["excluded"].fillna("") == ""]
    ok = ok[np.isfinite(ok["loss"]) & (ok["loss"] > 0)]
    result = Analysis(points=ok)
    for name, ds in scheme_datasets(points, trials).items():
        if isinstance(ds, str):
            result.skipped[name] = ds
            continue
        axis, x, y = ds
        try:
            result.schemes[name] = fit_scheme(
                name,
                axis,
                x,
                y,
                _flops_at(ok, axis, float(x.max())),
                bootstrap=bootstrap,
                seed=seed,
                gap_threshold=gap_threshold,
                exponent_floor=exponent_floor,
            )
        except ValueError as exc:
            result.skipped[name] = str(exc)
            continue
        try:
            bt = backtest(PowerLaw(), x, y, holdout=holdout)
            result.backtests[name] = BacktestResult(
                name, bt.n_train, bt.n_test, bt.mape, bt.max_error
            )
        except ValueError as exc:
            log.info("no backtest for %s: %s", name, exc)
    if ok["params"].nunique() >= 2 and ok["samples"].nunique() >= 2:
        X = ok[["params", "samples"]].to_numpy(float)
        y = ok["loss"].to_numpy()
        try:
            law = JointLaw().fit(X, y)
            law.bootstrap(bootstrap, seed=seed)
            c_max = float(ok["flops"].max())
            C = c_max * np.r_[1.0, FUTURE]
            n_min, d_min = float(X[:, 0].min()), float(X[:, 1].min())
            n, d, lstar = clamped_frontier(law.params_, C, k, n_min, d_min)
            ci = frontier_band(law, C, k, n_min, d_min)
            ci["a"] = law.frontier_interval(C, k=k)["a"]
            result.frontier = FrontierResult(
                law=law,
                C=C,
                N=n,
                D=d,
                L=lstar,
                ci=ci,
                n_min=n_min,
                d_min=d_min,
                exponent=law.optimal_exponent_,
                k=k,
                degenerate=_degenerate(law),
            )
            bt = backtest(JointLaw(), X, y, holdout=holdout)
            result.backtests["joint"] = BacktestResult(
                "joint", bt.n_train, bt.n_test, bt.mape, bt.max_error
            )
        except ValueError as exc:
            result.skipped["joint"] = str(exc)
    else:
        result.skipped["joint"] = "needs at least 2 model sizes and 2 sample counts"
    return result
