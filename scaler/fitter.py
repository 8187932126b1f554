"""The online fitter: every eval point of every trial in, the sweep's laws out.

Pure pandas/NumPy on top of `scaler.laws`; the Tune callback feeds it and logs what it returns.
Which points each law sees:

- ``data``:    loss vs samples, from the eval points of the largest model trained with at
               least `MIN_DISTINCT` of them (with one model size: every eval point);
- ``params``:  loss vs parameters, at the largest sample count that at least 4 model sizes reached;
- ``compute``: loss vs training FLOPs, on the lower envelope (each point better than every
               cheaper one) — the compute-efficient frontier;
- ``joint``:   L(N, D) on every eval point, when the sweep varies both parameters and data.

Non-finite losses and trials marked diverged or failed are excluded with a reason.

While a sweep runs, the callback calls `refit_live` after each finished trial. A refit costs time
that grows with the points (a 1,000-trial sweep has thousands), and the driver is the process that
keeps Ray Tune's loop turning, so live refits run off that loop, in one background thread, and are
coalesced: at most one runs at a time; a new one starts only while refits have used (in CPU
time) at most `live_share` of the driver's wall time since the first point, and it fits every
point that has arrived by then (the newest data wins; requests made while one runs are folded
into the next). A finished refit is collected by the next `refit_live` or `collect_live` call,
on the caller's thread, so the fitter's history and latest report only ever change there. A live
refit is warm-started from the previous laws (their optimum polished beside the grid's best
cell, not six cells). The final refit at the end of the sweep is a full one, from scratch, with
the bootstrap: the laws a sweep reports do not depend on when its live refits happened to run.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scaler.laws import JointLaw, Law, PowerLaw
from scaler.records import EvalPoint

log = logging.getLogger(__name__)

MIN_DISTINCT = 4  # distinct x values before a one-axis law is worth fitting
# at most this share of the driver's wall time goes to live refits: they are for whoever watches
# the sweep (the laws against trials completed, in MLflow; the policies fit their own), and their
# Python holds the interpreter's lock that Tune's loop needs (576-trial oracle sweeps: 100.2 s at
# 0.03 against 101.4 s at 0.1 and 98.3 s for bare Ray Tune, medians of 2)
LIVE_SHARE = 0.03


@dataclass
class FitReport:
    laws: dict[str, Law] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # law name -> why it was not fitted
    n_points: int = 0
    n_excluded: int = 0
    tuned_points: int = 0  # scale points tuned by a per-point study (0: not a tuned sweep)
    median_spread: float = 0.0  # median over tuned points of (worst - best) final loss

    def summary(self) -> dict:
        return {
            "tuned_points": self.tuned_points,
            "median_spread": self.median_spread,
            "laws": {name: law.to_dict() for name, law in self.laws.items()},
            "skipped": dict(self.skipped),
            "n_points": self.n_points,
            "n_excluded": self.n_excluded,
        }


def _frame(rows: list[dict], trial_reason: dict[str, str]) -> pd.DataFrame:
    """The points `rows` as a frame, with an `excluded` column holding the reason (empty if
    used): the trial's reason, a non-finite loss, or not the best trial of its tuned point."""
    cols = ["trial_id", *EvalPoint.__dataclass_fields__, "params", "group", "excluded"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    df["excluded"] = [_reason(r, trial_reason) for r in rows]
    best = best_of_groups(df[df["excluded"] == ""])
    not_best = df["group"].notna() & ~df["trial_id"].isin(best.values()) & (df["excluded"] == "")
    df.loc[not_best, "excluded"] = "tuning: not the best run of its scale point"
    return df[cols]


def _reason(row: dict, trial_reason: dict[str, str]) -> str:
    if row["trial_id"] in trial_reason:
        return trial_reason[row["trial_id"]]
    if not (math.isfinite(row["loss"]) and row["loss"] > 0):
        return f"diverged: loss is {row['loss']}"
    return ""


class OnlineFitter:
    """Collects eval points by trial and refits on demand."""

    def __init__(self, *, bootstrap: int = 0, seed: int = 0, live_share: float = LIVE_SHARE):
        self.bootstrap = bootstrap
        self.seed = seed
        self.live_share = live_share
        self.rows: list[dict] = []
        self._row_of: dict[tuple[str, float], int] = {}  # (trial id, samples) -> index in rows
        self.trial_reason: dict[str, str] = {}  # trial id -> why all its points are excluded
        self.history: list[dict] = []  # one summary per refit
        self.latest: FitReport | None = None  # the last refit's report
        self.coalesced = 0  # live refits not started (their points went into a later one)
        self._started: float | None = None  # perf_counter at the first point of this process
        self._live_seconds = 0.0  # spent in live refits by this process
        self._executor: ThreadPoolExecutor | None = None  # made on first use; not pickled
        self._running: tuple[Future, int] | None = None  # the live refit in flight, and its tag

    def __getstate__(self) -> dict:  # Tune pickles its callbacks (and so this) with the tuner
        return {k: v for k, v in self.__dict__.items() if k not in ("_executor", "_running")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _executor=None, _running=None)

    # --- input ----------------------------------------------------------------------------
    def add(self, trial_id: str, point: EvalPoint, group: str | None = None) -> None:
        """Record an eval point.  `group` names a tuned scale point: of the trials of a group,
        only the best (lowest loss at the group's largest sample count) feeds the laws."""
        if self._started is None:
            self._started = time.perf_counter()
        row = {"trial_id": trial_id, **point.to_dict(), "params": point.params, "group": group}
        key = (trial_id, float(point.samples))
        if key in self._row_of:  # a retried trial re-reports points it already reported
            self.rows[self._row_of[key]] = row  # keep the latest
        else:
            self._row_of[key] = len(self.rows)
            self.rows.append(row)

    def exclude_trial(self, trial_id: str, reason: str) -> None:
        self.trial_reason[trial_id] = reason

    # --- views ----------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """All eval points, with an `excluded` column holding the reason (empty if used)."""
        return _frame(self.rows, self.trial_reason)

    def spreads(self) -> pd.DataFrame:
        """Per tuned point: trials, best and worst final loss (at the point's budget)."""
        return _spreads(self.frame())

    # --- fitting --------------------------------------------------------------------------
    def refit_live(self, tag: int = 0) -> tuple[FitReport, int] | None:
        """Start a warm-started refit on every point so far, off the caller's thread, unless one
        is running or refits have already taken `live_share` of the driver's time (then the
        request is coalesced into a later one). Returns a live refit that has finished since the
        last call, with the `tag` it was started with (the callback's trials completed), or None."""
        done = self.collect_live()
        now = time.perf_counter()
        if self._running is not None or self._live_seconds > self.live_share * (
            now - (self._started or now)
        ):
            self.coalesced += 1
            return done
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="scaler-refit")
        # a snapshot (rows are replaced, never changed in place): points arriving during the
        # refit wait for the next; the frame is built on the refit's thread, off the caller's
        rows, reasons = list(self.rows), dict(self.trial_reason)
        previous = dict(self.latest.laws) if self.latest else {}
        self._running = (self._executor.submit(self._timed_fit, rows, reasons, previous), tag)
        return done

    def collect_live(self, wait: bool = False) -> tuple[FitReport, int] | None:
        """The live refit in flight once it has finished (or, with `wait`, after waiting for it),
        recorded as the latest report; None when none is in flight or it is still running."""
        if self._running is None or not (wait or self._running[0].done()):
            return None
        future, tag = self._running
        self._running = None
        report, seconds = future.result()
        self._live_seconds += seconds
        self._record(report)
        return report, tag

    def _timed_fit(
        self, rows: list[dict], reasons: dict[str, str], previous: dict[str, Law]
    ) -> tuple[FitReport, float]:
        # the refit's CPU time, not its wall time: sharing the interpreter with Tune's loop
        # stretches the latter without costing the trials anything
        start = time.thread_time()
        report = self._fit(_frame(rows, reasons), bootstrap=0, previous=previous)
        return report, time.thread_time() - start

    def refit(self, bootstrap: int | None = None, *, warm: bool = False) -> FitReport:
        """Fit every law on the points so far, now, on this thread (from scratch unless `warm`:
        see the module). A live refit still in flight is waited for first."""
        self.collect_live(wait=True)
        previous = dict(self.latest.laws) if warm and self.latest else {}
        n_boot = self.bootstrap if bootstrap is None else bootstrap
        report = self._fit(self.frame(), bootstrap=n_boot, previous=previous)
        self._record(report)
        return report

    def _record(self, report: FitReport) -> None:
        self.history.append(report.summary())
        self.latest = report
        for name, why in report.skipped.items():
            log.debug("law %s not fitted: %s", name, why)

    def _fit(self, df: pd.DataFrame, bootstrap: int, previous: dict[str, Law]) -> FitReport:
        """Every law fitted on the frame `df`; touches no state of the fitter (it runs on the
        refit thread too)."""
        report = FitReport(n_points=len(df), n_excluded=int((df["excluded"] != "").sum()))
        spreads = _spreads(df)
        if len(spreads):
            report.tuned_points = len(spreads)
            report.median_spread = float((spreads["worst_loss"] - spreads["best_loss"]).median())
        for name, (law, x, y) in self._datasets(df[df["excluded"] == ""]).items():
            if isinstance(x, str):
                report.skipped[name] = x
                continue
            try:
                law.fit(x, y, warm_start=previous.get(name))
                if bootstrap:
                    law.bootstrap(bootstrap, seed=self.seed)
                report.laws[name] = law
            except ValueError as exc:
                report.skipped[name] = str(exc)
        return report

    def _datasets(self, ok: pd.DataFrame) -> dict:
        out: dict = {}
        n_sizes = ok["params"].nunique()
        n_samples = ok["samples"].nunique()

        largest = data_slice(ok)
        if largest is not None:
            out["data"] = (
                PowerLaw(),
                largest["samples"].to_numpy(float),
                largest["loss"].to_numpy(),
            )
        else:
            out["data"] = (
                PowerLaw(),
                f"needs {MIN_DISTINCT} distinct sample counts on one model",
                None,
            )

        at = _params_slice(ok)
        if at is not None:
            out["params"] = (PowerLaw(), at["params"].to_numpy(float), at["loss"].to_numpy())
        else:
            out["params"] = (
                PowerLaw(),
                f"needs {MIN_DISTINCT} model sizes at a common sample count",
                None,
            )

        env = lower_envelope(ok)
        if env["flops"].nunique() >= MIN_DISTINCT:
            out["compute"] = (PowerLaw(), env["flops"].to_numpy(float), env["loss"].to_numpy())
        else:
            out["compute"] = (
                PowerLaw(),
                f"needs {MIN_DISTINCT} points on the compute frontier",
                None,
            )

        if n_sizes >= 2 and n_samples >= 2:
            X = ok[["params", "samples"]].to_numpy(float)
            out["joint"] = (JointLaw(), X, ok["loss"].to_numpy())
        else:
            out["joint"] = (JointLaw(), "needs at least 2 model sizes and 2 sample counts", None)
        return out

    # --- state (survives a resume through Tune's callback state) -------------------------
    def state_dict(self) -> dict:
        return {
            "rows": list(self.rows),
            "trial_reason": dict(self.trial_reason),
            "history": list(self.history),
        }

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])
        self._row_of = {(r["trial_id"], float(r["samples"])): i for i, r in enumerate(self.rows)}
        self.trial_reason = dict(state["trial_reason"])
        self.history = list(state["history"])


def best_of_groups(df: pd.DataFrame) -> dict[str, str]:
    """group -> trial id with the lowest loss at the group's largest sample count."""
    grouped = df[df["group"].notna()]
    if grouped.empty:
        return {}
    last = grouped[grouped["samples"] == grouped.groupby("group")["samples"].transform("max")]
    return {g: rows.loc[rows["loss"].idxmin(), "trial_id"] for g, rows in last.groupby("group")}


def _spreads(df: pd.DataFrame) -> pd.DataFrame:
    """Per tuned point of the frame `df`: trials, best and worst final loss."""
    tuned = df[df["group"].notna() & ~df["excluded"].str.startswith(("diverged", "failed"))]
    if tuned.empty:
        return pd.DataFrame(columns=["group", "trials", "best_loss", "worst_loss"])
    last = tuned[tuned["samples"] == tuned.groupby("group")["samples"].transform("max")]
    out = last.groupby("group")["loss"].agg(trials="count", best_loss="min", worst_loss="max")
    return out.reset_index()


def data_slice(ok: pd.DataFrame) -> pd.DataFrame | None:
    """Points of the largest model with MIN_DISTINCT sample counts.  While a larger one is still
    training (its first points in), or stopped early, or diverged, the data law stays on the
    largest model that has them, rather than having none."""
    counts = ok.groupby("params")["samples"].nunique()
    enough = counts[counts >= MIN_DISTINCT]
    return ok[ok["params"] == enough.index.max()] if len(enough) else None


def _params_slice(ok: pd.DataFrame) -> pd.DataFrame | None:
    """Points at the largest sample count that MIN_DISTINCT model sizes reached."""
    if ok.empty:
        return None
    sizes_at = ok.groupby("samples")["params"].nunique()
    counts = sizes_at[sizes_at >= MIN_DISTINCT]
    if counts.empty:
        return None
    return ok[ok["samples"] == counts.index.max()]


def lower_envelope(ok: pd.DataFrame) -> pd.DataFrame:
    """Points whose loss beats every point with fewer FLOPs."""
    if ok.empty:
        return ok
    srt = ok.sort_values(["flops", "loss"])
    best_before = np.minimum.accumulate(np.r_[np.inf, srt["loss"].to_numpy()[:-1]])
    return srt[srt["loss"].to_numpy() < best_before]
