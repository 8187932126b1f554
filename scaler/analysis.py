"""Scaling-scheme analysis of a sweep's eval points: per-scheme laws, verdicts, a multi-axis law,
the compute-optimal frontier under the sweep's real cost model, and backtests.  Pure pandas/NumPy
on top of `scaler.laws` and `scaler.costs`; it fits (this is analysis) and returns typed results
that `scaler.report_plots` draws without refitting.

A *scheme* is one resource grown while the others stay put:

- ``data``:      loss vs samples on the largest model (all its eval points);
- ``compute``:   loss vs training FLOPs on the lower envelope (the compute-efficient frontier),
                 FLOPs as logged by the trials (measured for a DLRM);
- ``<knob>``:    one per swept knob of ``axes.params`` (``model.embedding_dim``, ``n_params``, ...):
                 loss vs parameters over the trials whose *other* knobs sit at their largest value,
                 at the largest sample count that ``MIN_DISTINCT`` values of the knob reached.

Every scheme ends in one verdict: *paying* (the law is identified and the resource still buys
loss), *saturated* (the remaining gain is within the threshold, or the exponent is ~0), or
*not identified* (the data do not pin the law down; see `scaler.laws._identify`).  Leading
points far above the law of the rest (the first steps of training) are left out of the data and
compute schemes with a reason: they are a transient, not the law.

The *joint* law is a `MultiLaw` over the sweep's resource axes: for a DLRM embedding (sparse)
and dense parameters separately, plus samples (an axis the sweep does not vary is a constant and
is left out).  Its *frontier* is found by search over the sweep's knobs with the cost model's
real cost of every config, not a closed form that assumes C = 6·N·D.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scaler.costs import CostModel
from scaler.fitter import data_slice, lower_envelope
from scaler.laws import MultiLaw, PowerLaw, backtest
from scaler.laws._identify import Identification

log = logging.getLogger(__name__)

MIN_DISTINCT = 4
FUTURE = (10.0, 100.0)  # the report predicts the frontier at these multiples of the largest C
REACH = 100.0  # the frontier searches each knob up to this multiple of its largest trained value
TRANSIENT_REL = 0.02  # a leading point this far above the law of the rest (and 4 robust sd) ...
TRANSIENT_SD = 4.0  # ... is a transient of the first training steps, not part of the law


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
    verdict: str  # "paying: ..." | "saturated: ..." | "not identified: ..."
    identified: bool = True
    reason: str | None = None  # why the law is not identified
    transients: tuple = ()  # (x, loss, reason) of leading points left out

    @property
    def status(self) -> str:
        return self.verdict.split(":")[0]


@dataclass(frozen=True)
class FrontierRow:
    """The config and sample count that minimise the fitted loss at compute C."""

    C: float
    samples: float
    flops_per_sample: float
    config: dict[str, Any]
    params: float
    dense_params: float
    sparse_params: float
    memory_bytes: float
    loss: float
    loss_ci: tuple[float, float]
    memory_cap: float = np.inf  # the embedding bytes this budget was allowed


@dataclass(frozen=True)
class NextStep:
    """The loss bought by spending 10x more on one resource (or on the optimal mix)."""

    spend_on: str
    C: float
    samples: float
    config: dict[str, Any]
    memory_bytes: float
    loss: float
    loss_ci: tuple[float, float]
    note: str = ""


@dataclass(frozen=True)
class FrontierResult:
    law: MultiLaw
    axes: tuple[str, ...]
    identified: bool
    reason: str | None
    cost_model: dict[str, Any]  # {"kind": "measured" | "kND", "k": float | None}
    cost_words: str
    memory_cap: float | None  # user's cap in bytes; None: the largest trained memory x C / C_max
    rows: list[FrontierRow]  # the largest compute trained, then x FUTURE
    next_10x: list[NextStep]
    curve: dict[str, np.ndarray]  # the frontier on a grid of C, for plots (never refitted)
    iso: list[dict[str, Any]]  # IsoFLOP curves: {"C", "params", "loss"} per compute level
    knob_range: dict[str, tuple[float, float]]  # where the search looked


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
    joint: MultiLaw | None = None
    joint_dropped: dict[str, str] = field(default_factory=dict)  # axis -> why it was left out
    cost_model: dict[str, Any] = field(default_factory=lambda: {"kind": "measured", "k": None})
    cost_words: str = ""


def knobs(trials: pd.DataFrame) -> list[str]:
    """The swept knobs: `param.<knob>` columns of the trials table with more than one value."""
    cols = [c for c in trials.columns if c.startswith("param.")]
    return [c[len("param.") :] for c in cols if trials[c].nunique() > 1]


def usable(points: pd.DataFrame) -> pd.DataFrame:
    ok = points[points["excluded"].fillna("") == ""]
    return ok[np.isfinite(ok["loss"]) & (ok["loss"] > 0)]


def scheme_datasets(points: pd.DataFrame, trials: pd.DataFrame) -> dict[str, object]:
    """scheme name -> (axis column, x, loss) or a string saying why it cannot be fitted."""
    ok = usable(points)
    out: dict[str, object] = {}
    largest = data_slice(ok)  # the same model the live fitter's data law is on
    if largest is not None:
        out["data"] = ("samples", largest["samples"].to_numpy(float), largest["loss"].to_numpy())
    else:
        out["data"] = f"needs {MIN_DISTINCT} distinct sample counts on one model"
    env = lower_envelope(ok)
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
        by_trial = keep.drop_duplicates("trial_id").set_index("trial_id")  # one value per trial
        sub = sub.assign(knob=sub["trial_id"].map(by_trial[f"param.{knob}"]))
        per_samples = sub.groupby("samples")["knob"].nunique()
        counts = per_samples[per_samples >= MIN_DISTINCT]
        if counts.empty:
            out[knob] = f"needs {MIN_DISTINCT} values of {knob} at a common sample count"
            continue
        at = sub[sub["samples"] == counts.index.max()]
        axis = resource_of(at)
        out[knob] = (axis, at[axis].to_numpy(float), at["loss"].to_numpy())
    return out


def resource_of(rows: pd.DataFrame) -> str:
    """The parameter count a knob moves: embedding rows and width move `sparse_params`, MLP
    widths `dense_params`; a knob that moves both (or a model without embeddings) is measured
    in all parameters.  Total parameters would hide an MLP knob behind the tables' size."""
    moves = {
        c: rows[c].max() > 1.01 * rows[c].min()
        for c in ("sparse_params", "dense_params")
        if c in rows and rows[c].min() > 0
    }
    moved = [c for c, m in moves.items() if m]
    return moved[0] if len(moved) == 1 and len(moves) == 2 else "params"


def drop_transients(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
    """Keep-mask over (x, y), leaving out leading points (smallest x) that lie far above the law
    fitted to the points after them: the first steps of training, before the loss settles onto
    its power law.  Each is judged against a fit that does not include it (a steep first point
    would bend a fit that did), and at most a third of the points go."""
    order = np.argsort(x, kind="stable")
    keep = np.ones(len(x), dtype=bool)
    dropped: list[tuple] = []
    for i in order[: len(x) // 3]:
        rest = keep.copy()
        rest[i] = False
        if len(np.unique(x[rest])) < MIN_DISTINCT + 1:
            break
        try:
            law = PowerLaw().fit(x[rest], y[rest])
        except ValueError:
            break
        r_rest = np.log(y[rest] / law.predict(x[rest]))
        sd = max(1.4826 * float(np.median(np.abs(r_rest - np.median(r_rest)))), 1e-3)
        r = float(np.log(y[i] / law.predict([x[i]])[0]))
        if r > max(TRANSIENT_SD * sd, math.log1p(TRANSIENT_REL)):
            keep[i] = False
            dropped.append(
                (
                    float(x[i]),
                    float(y[i]),
                    f"transient: {math.expm1(r):.1%} above the law of the later points "
                    f"({r / sd:.0f} robust sd)",
                )
            )
        else:
            break
    return keep, dropped


def _flops_at(ok: pd.DataFrame, axis: str, x: float) -> float:
    """Training FLOPs of the most expensive point at the operating point of an axis."""
    rows = ok[np.isclose(ok[axis].astype(float), x)]
    return float(rows["flops"].max()) if len(rows) else float("nan")


def verdict(
    ident: Identification,
    *,
    too_few: bool,
    gap_ci_hi: float,
    loss_op: float,
    b_lo: float,
    per_doubling: float,
    per_doubling_hi: float,
    gap_threshold: float,
    exponent_floor: float,
    last_8x_hi: float | None = None,
) -> tuple[bool, str]:
    """(saturated, verdict) of a one-axis law; never two verdicts at once.

    The saturation tests read the law's *predictions* across the bootstrap, which the data pin
    down even when a and b are not separately identified: the gap to its constant at the largest
    x; what the last 8x of the trained range bought (inside the data: a plateau after a step,
    which no power law fits, is saturated there whatever corner the exponent sits in); and what
    1000x more would buy."""
    if too_few:
        return False, f"not identified: {ident.reason}"
    if gap_ci_hi < gap_threshold * loss_op:
        return True, (
            f"saturated: the gain left, {gap_ci_hi:.3g} at most (CI upper), is under "
            f"{gap_threshold:.1%} of the loss"
        )
    if last_8x_hi is not None and last_8x_hi < gap_threshold * loss_op:
        return True, (
            f"saturated: the last 8x of the trained range bought under {gap_threshold:.1%} of "
            f"the loss ({last_8x_hi:.3g} at most, CI upper)"
        )
    if 10 * per_doubling_hi < gap_threshold * loss_op:  # gains shrink with every doubling
        return True, (
            f"saturated: 1000x more buys under {gap_threshold:.1%} of the loss "
            f"({per_doubling_hi:.3g} per doubling at most, CI upper)"
        )
    if not ident.identified:
        return False, f"not identified: {ident.reason}"
    if b_lo <= exponent_floor:
        return True, f"saturated: exponent CI reaches {b_lo:.3g} (indistinguishable from 0)"
    return False, f"paying: {per_doubling:.3g} loss per doubling ({per_doubling / loss_op:.2%})"


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
    transients: tuple = (),
) -> SchemeResult:
    law = PowerLaw().fit(x, loss)
    # a knob's scheme has one point per size: resampling points would drop sizes (a resample
    # of 5 sizes often keeps 3, which no law identifies); keep the design, resample residuals
    one_per_size = len(np.unique(x)) == len(x)
    law.bootstrap(bootstrap, seed=seed, method="residuals" if one_per_size else "cases")
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
    x_lo = max(float(x.min()), x_op / 8.0)
    last_8x_hi = None
    if x_op / x_lo >= 4.0:  # at least two doublings of data below the operating point
        last = a_s * (x_lo ** (-b_s) - x_op ** (-b_s))
        last_8x_hi = float(np.percentile(last, q[1]))
    ident = law.identification_
    saturated, text = verdict(
        ident,
        too_few=ident.cause == "distinct",
        gap_ci_hi=gap_ci[1],
        loss_op=loss_op,
        b_lo=law.ci_["b"][0],
        per_doubling=per_doubling,
        per_doubling_hi=dbl_ci[1],
        gap_threshold=gap_threshold,
        exponent_floor=exponent_floor,
        last_8x_hi=last_8x_hi,
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
        verdict=text,
        identified=ident.identified,
        reason=ident.reason,
        transients=tuple(transients),
    )


# --- the joint law and its frontier ---------------------------------------------------------


def joint_axes(ok: pd.DataFrame) -> list[str]:
    """The resource axes the sweep varies: embedding and dense parameters separately (all
    parameters as one axis when the model has no embeddings, as the oracle's), then samples."""
    if "sparse_params" in ok and (ok["sparse_params"] > 0).any():
        axes = [a for a in ("sparse_params", "dense_params") if ok[a].nunique() >= 2]
    else:
        axes = ["params"] if ok["params"].nunique() >= 2 else []
    return [*axes, "samples"]


def _law_inputs(axes, sparse, dense, samples) -> np.ndarray:
    cols = {"sparse_params": sparse, "dense_params": dense, "params": sparse + dense}
    return np.column_stack([samples if a == "samples" else cols[a] for a in axes])


def _knob_grid(values: np.ndarray, n: int) -> np.ndarray:
    """Log-spaced values from the smallest trained to REACH x the largest, plus the trained
    ones; integer knobs stay on the step their trained values share (e.g. multiples of 4)."""
    values = np.unique(np.asarray(values, dtype=float))
    grid = np.geomspace(values.min(), values.max() * REACH, n)
    if np.all(values == np.round(values)):
        step = float(np.gcd.reduce(values.astype(np.int64)))
        grid = np.maximum(step, np.round(grid / step) * step)
    return np.unique(np.r_[grid, values])


@dataclass
class _Candidates:
    """Every config the frontier may choose, with its cost."""

    configs: list[dict[str, Any]]
    fps: np.ndarray
    dense: np.ndarray
    sparse: np.ndarray
    memory: np.ndarray


def candidate_configs(cost_model: CostModel, trials: pd.DataFrame, swept: list[str]):
    grids = {k: trials[f"param.{k}"].astype(float).to_numpy() for k in swept}
    n = {1: 60, 2: 16}.get(len(swept), 8)
    axes = [_knob_grid(v, n) for v in grids.values()]
    rows = []
    for combo in itertools.product(*axes) if axes else [()]:
        config = {
            k: (int(v) if float(v).is_integer() else float(v))
            for k, v in zip(swept, combo, strict=True)
        }
        c = cost_model.cost(config)
        if c is not None:
            rows.append((config, c))
    if not rows:
        raise ValueError("the cost model builds no config from the sweep's knobs")
    ranges = {k: (float(a.min()), float(a.max())) for k, a in zip(swept, axes, strict=True)}
    return (
        _Candidates(
            [r[0] for r in rows],
            np.array([r[1].flops_per_sample for r in rows]),
            np.array([r[1].dense_params for r in rows]),
            np.array([r[1].sparse_params for r in rows]),
            np.array([r[1].memory_bytes for r in rows]),
        ),
        ranges,
    )


def _best(law: MultiLaw, cand: _Candidates, samples: np.ndarray, feasible: np.ndarray) -> int:
    """Index of the feasible candidate with the lowest fitted loss; ties (a term that does not
    pay) go to the cheapest in memory, then in FLOPs."""
    if not feasible.any():
        return -1
    loss = law.predict(_law_inputs(law.axes, cand.sparse, cand.dense, samples))
    loss = np.where(feasible, loss, np.inf)
    tie = np.isclose(loss, loss.min(), rtol=1e-9, atol=0.0)
    idx = np.flatnonzero(tie)
    return int(idx[np.lexsort((cand.fps[idx], cand.memory[idx]))[0]])


def _predict_one(law: MultiLaw, cand, i: int, samples: float) -> tuple[float, tuple]:
    """Fitted loss of candidate i trained on `samples`, and its bootstrap band."""
    x = _law_inputs(law.axes, cand.sparse[i : i + 1], cand.dense[i : i + 1], np.array([samples]))
    pred, lo, hi = law.predict_interval(x)
    return float(pred[0]), (float(lo[0]), float(hi[0]))


def frontier_at(law, cand, C: float, memory_cap: float) -> int:
    samples = C / cand.fps
    feasible = (cand.memory <= memory_cap * (1 + 1e-9)) & (samples >= 1.0)
    return _best(law, cand, samples, feasible)


def build_frontier(
    law: MultiLaw,
    ok: pd.DataFrame,
    trials: pd.DataFrame,
    cost_model: CostModel,
    *,
    memory_cap: float | None = None,
) -> FrontierResult:
    """The compute-optimal config and sample count at the largest compute trained and at
    FUTURE multiples of it, the frontier curve for plots, IsoFLOP curves, and where the next
    10x should go."""
    swept = knobs(trials)
    cand, ranges = candidate_configs(cost_model, trials, swept)
    trained_mem = _trained_memory(cost_model, trials, swept)
    c_max = float(ok["flops"].max())

    def cap(C: float) -> float:
        return memory_cap if memory_cap is not None else trained_mem * max(1.0, C / c_max)

    def row(C: float) -> FrontierRow:
        i = frontier_at(law, cand, C, cap(C))
        if i < 0:
            raise ValueError(f"no config fits the memory cap {cap(C):.3g} bytes at C = {C:.3g}")
        d = C / cand.fps[i]
        loss, band = _predict_one(law, cand, i, d)
        return FrontierRow(
            C=C,
            samples=float(d),
            flops_per_sample=float(cand.fps[i]),
            config=cand.configs[i],
            params=float(cand.sparse[i] + cand.dense[i]),
            dense_params=float(cand.dense[i]),
            sparse_params=float(cand.sparse[i]),
            memory_bytes=float(cand.memory[i]),
            loss=loss,
            loss_ci=band,
            memory_cap=float(cap(C)),
        )

    rows = [row(c_max * m) for m in (1.0, *FUTURE)]
    ident = law.identification_
    curve_c = np.geomspace(float(ok["flops"].min()), c_max * FUTURE[-1], 40)
    curve_rows = [row(float(c)) for c in curve_c]
    curve = {
        "C": curve_c,
        "samples": np.array([r.samples for r in curve_rows]),
        "params": np.array([r.params for r in curve_rows]),
        "sparse_params": np.array([r.sparse_params for r in curve_rows]),
        "dense_params": np.array([r.dense_params for r in curve_rows]),
        "loss": np.array([r.loss for r in curve_rows]),
        "lo": np.array([r.loss_ci[0] for r in curve_rows]),
        "hi": np.array([r.loss_ci[1] for r in curve_rows]),
    }
    iso = _isoflop(law, cand, ok, cap)
    return FrontierResult(
        law=law,
        axes=tuple(law.axes),
        identified=ident.identified,
        reason=ident.reason,
        cost_model=cost_model.describe(),
        cost_words=cost_model.words(),
        memory_cap=memory_cap,
        rows=rows,
        next_10x=next_10x(law, cand, rows[0], swept, cap(10.0 * rows[0].C)),
        curve=curve,
        iso=iso,
        knob_range=ranges,
    )


def _trained_memory(cost_model: CostModel, trials: pd.DataFrame, swept: list[str]) -> float:
    mem = []
    for _, t in trials.iterrows():
        c = cost_model.cost({k: t[f"param.{k}"] for k in swept})
        if c is not None:
            mem.append(c.memory_bytes)
    return max(mem) if mem else np.inf


def _isoflop(law, cand, ok, cap, n_levels: int = 5) -> list[dict[str, Any]]:
    """Per compute level: the fitted loss of every config at that compute (D = C / its FLOPs per
    sample), best per parameter count, within the trained parameter range x 10."""
    edges = np.geomspace(ok["flops"].min(), ok["flops"].max() * 1.0001, n_levels + 1)
    params = cand.sparse + cand.dense
    lo, hi = ok["params"].min(), ok["params"].max() * 10
    out = []
    for i in range(n_levels):
        c_mid = float(np.sqrt(edges[i] * edges[i + 1]))
        samples = c_mid / cand.fps
        sel = (params >= lo) & (params <= hi) & (samples >= 1) & (cand.memory <= cap(c_mid))
        if not sel.any():
            continue
        loss = law.predict(_law_inputs(law.axes, cand.sparse, cand.dense, samples))
        df = pd.DataFrame({"params": params[sel], "loss": loss[sel]})
        best = df.groupby("params")["loss"].min()
        j = frontier_at(law, cand, c_mid, cap(c_mid))
        out.append(
            {
                "C": c_mid,
                "lo": float(edges[i]),
                "hi": float(edges[i + 1]),
                "params": best.index.to_numpy(float),
                "loss": best.to_numpy(float),
                "opt_params": float(params[j]) if j >= 0 else np.nan,
                "opt_loss": float(loss[j]) if j >= 0 else np.nan,
            }
        )
    return out


def next_10x(
    law: MultiLaw, cand: _Candidates, base: FrontierRow, swept: list[str], memory_cap: float
) -> list[NextStep]:
    """From the optimum at the largest compute trained, spend 10x more: on data alone (same
    config, 10x the samples), on each knob alone (same samples; the knob raised as far as 10x
    the compute and the memory cap allow -- embedding rows cost memory, not FLOPs), and on the
    optimal mix (the frontier at 10x the compute)."""
    c10 = 10.0 * base.C

    def step(name: str, i: int, samples: float, note: str) -> NextStep:
        loss, band = _predict_one(law, cand, i, samples)
        return NextStep(
            spend_on=name,
            C=float(samples * cand.fps[i]),
            samples=float(samples),
            config=cand.configs[i],
            memory_bytes=float(cand.memory[i]),
            loss=loss,
            loss_ci=band,
            note=note,
        )

    base_i = cand.configs.index(base.config)
    out = [step("data", base_i, 10.0 * base.samples, "same config, 10x the samples")]
    for knob in swept:
        same = np.array(
            [all(c[k] == base.config[k] for k in swept if k != knob) for c in cand.configs]
        )
        up = np.array([c[knob] >= base.config[knob] for c in cand.configs])
        samples = np.full(len(cand.fps), base.samples)
        feasible = (
            same
            & up
            & (cand.fps * base.samples <= c10 * (1 + 1e-9))
            & (cand.memory <= memory_cap * (1 + 1e-9))
        )
        i = _best(law, cand, samples, feasible)
        if i < 0:
            continue
        flat = np.isclose(cand.fps[i], cand.fps[base_i], rtol=0.01)
        note = f"{knob} {base.config[knob]} -> {cand.configs[i][knob]}; " + (
            "costs memory, not FLOPs: bounded by the memory cap"
            if flat
            else f"{cand.fps[i] / cand.fps[base_i]:.2g}x the FLOPs per sample"
        )
        out.append(step(knob, i, base.samples, note))
    j = frontier_at(law, cand, c10, memory_cap)
    if j >= 0:
        out.append(step("optimal mix", j, c10 / cand.fps[j], "the frontier at 10x the compute"))
    return out


def flat_terms(law: MultiLaw, threshold: float) -> dict[str, str]:
    """Axes whose term buys less than `threshold` of the loss across the whole trained range,
    even at the bootstrap's 97.5th percentile: the resource is saturated there, and its A and
    alpha cannot be identified (any tiny term fits)."""
    out = {}
    y_ref = float(np.median(law.y_))
    k = law.n_axes
    for i, axis in enumerate(law.axes):
        if axis == "samples":
            continue
        x_lo, x_hi = law.X_[:, i].min(), law.X_[:, i].max()
        a, alpha = np.exp(law.bootstrap_.thetas[:, 1 + i]), law.bootstrap_.thetas[:, 1 + k + i]
        with np.errstate(over="ignore", invalid="ignore"):
            span = np.nan_to_num(a * (x_lo ** (-alpha) - x_hi ** (-alpha)), nan=np.inf)
        hi = float(np.percentile(span, 97.5))
        if hi < threshold * y_ref:
            out[axis] = (
                f"saturated: over the trained range [{x_lo:.3g}, {x_hi:.3g}] its term buys "
                f"{hi:.3g} at most (CI upper), under {threshold:.1%} of the loss; left out"
            )
    return out


def fit_joint(
    ok: pd.DataFrame, *, bootstrap: int, seed: int, threshold: float = 0.01
) -> tuple[MultiLaw, dict[str, str]]:
    """The multi-axis law over the sweep's resource axes, refitted without any axis whose term
    is flat over the trained range (a saturated resource: its coefficient and exponent are not
    identified, and the law without it predicts the same).  Returns (law, dropped axes)."""
    axes = joint_axes(ok)
    dropped: dict[str, str] = {}
    while True:
        law = MultiLaw(axes=axes).fit(ok[axes].to_numpy(float), ok["loss"].to_numpy())
        law.bootstrap(bootstrap, seed=seed)
        flat = flat_terms(law, threshold)
        if not flat:
            return law, dropped
        dropped.update(flat)
        axes = [a for a in axes if a not in flat]


def analyze(
    points: pd.DataFrame,
    trials: pd.DataFrame,
    *,
    cost_model: CostModel | None = None,
    bootstrap: int = 100,
    seed: int = 0,
    gap_threshold: float = 0.01,
    exponent_floor: float = 0.02,
    holdout: float = 0.2,
    memory_cap: float | None = None,
) -> Analysis:
    """Fit every scheme, the multi-axis joint law and its frontier, and backtest each law.

    cost_model: what a config costs (`scaler.costs.cost_model_for(spec)`); without one, the
    trained configs at the FLOPs per sample their trials logged."""
    if bootstrap < 2:
        raise ValueError(f"bootstrap is {bootstrap}, but must be >= 2")
    if not 0 < gap_threshold < 1:
        raise ValueError(f"gap_threshold is {gap_threshold}, but must be in (0, 1)")
    if memory_cap is not None and not memory_cap > 0:
        raise ValueError(f"memory_cap is {memory_cap}, but must be > 0 bytes")
    if points.empty:
        raise ValueError("the sweep has no eval points yet")
    ok = usable(points)
    if cost_model is None:
        from scaler.costs import ObservedCost

        cost_model = ObservedCost(ok, trials, knobs(trials))
    result = Analysis(points=ok, cost_model=cost_model.describe(), cost_words=cost_model.words())
    for name, ds in scheme_datasets(points, trials).items():
        if isinstance(ds, str):
            result.skipped[name] = ds
            continue
        axis, x, y = ds
        dropped: list[tuple] = []
        if name in ("data", "compute"):
            keep, dropped = drop_transients(x, y)
            x, y = x[keep], y[keep]
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
                transients=tuple(dropped),
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
    if ok["samples"].nunique() < 2:
        result.skipped["joint"] = "needs at least 2 sample counts"
        return result
    try:
        law, result.joint_dropped = fit_joint(
            ok, bootstrap=bootstrap, seed=seed, threshold=gap_threshold
        )
    except ValueError as exc:
        result.skipped["joint"] = str(exc)
        return result
    result.joint = law
    for name, sch in list(result.schemes.items()):
        if sch.axis in result.joint_dropped and sch.status != "saturated":
            # the joint law measured this resource on every point, not one slice of them
            why = result.joint_dropped[sch.axis].removesuffix("; left out")
            result.schemes[name] = dataclasses.replace(
                sch, saturated=True, verdict=f"{why} (joint law, all {law.n_} points)"
            )
    try:
        result.frontier = build_frontier(law, ok, trials, cost_model, memory_cap=memory_cap)
    except ValueError as exc:
        result.skipped["frontier"] = str(exc)
    try:
        bt = backtest(
            law.clone(), ok[list(law.axes)].to_numpy(float), ok["loss"].to_numpy(),
            holdout=holdout, cost=ok["flops"].to_numpy(float),
        )  # fmt: skip
        result.backtests["joint"] = BacktestResult(
            "joint", bt.n_train, bt.n_test, bt.mape, bt.max_error
        )
    except ValueError as exc:
        log.info("no backtest for the joint law: %s", exc)
    return result
