"""The Tune callback that records a sweep in MLflow and refits its laws as trials finish.

Runs in the driver only, so exactly one process logs each trial, whatever the trial's workers.
Its state (fitter points, trial -> run map, logged steps, undelivered events) is saved with the
experiment and restored by `Tuner.restore`. That state is as old as Tune's last checkpoint, so
MLflow, not the state, says what a run holds: before a point is logged to a run this process did
not create, the run's points are read back from MLflow once (`SweepTracker.logged_points`) and
kept in memory. A trial resumed from an older checkpoint, or an event left in the outbox by a
killed driver, then re-reports points MLflow already has: each is logged exactly once, the first
value kept, and a re-reported value that differs is noted on the run (`MISMATCH_TAG`).

In a sweep the writes are sent by the outbox's own thread (`background=True`): Tune's loop only
queues them. That thread is the only one that touches the run map and the logged steps, under
`outbox.lock`, which Tune's thread takes to checkpoint them; the fitter's points are changed on
Tune's thread only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ray.tune import Callback

from scaler.fitter import FitReport, OnlineFitter
from scaler.outbox import Outbox
from scaler.records import EvalPoint
from scaler.tracking import MISMATCH_TAG, OUTCOME_METRICS, SweepTracker

log = logging.getLogger(__name__)

POINT_FIELDS = tuple(EvalPoint.__dataclass_fields__)


def point_from_result(result: dict) -> EvalPoint | None:
    if not all(k in result for k in POINT_FIELDS):
        return None
    return EvalPoint(**{k: result[k] for k in POINT_FIELDS})


def rereported_mismatch(step: int, logged: dict[str, float], point: EvalPoint) -> dict | None:
    """Step and both values of the outcome metrics where a re-reported point differs from the
    one logged (a non-deterministic retrain), or None if it is the same point (NaN == NaN)."""
    differs = {}
    for key, first in logged.items():
        again = float(getattr(point, key))
        same = (math.isnan(first) and math.isnan(again)) or math.isclose(
            first, again, rel_tol=1e-12
        )
        if not same:
            differs[key] = (first, again)
    if not differs:
        return None
    return {
        "step": int(step),
        "logged": {k: v[0] for k, v in differs.items()},
        "rereported": {k: v[1] for k, v in differs.items()},
    }


def _error_line(trial) -> str:
    """The last line of the trial's error (the exception itself), e.g. `RuntimeError: boom`."""
    err = None
    try:
        # the driver's own copy is current; the one in storage (`get_error`) is synced later and
        # may still lack this failure
        local = trial.error_file
        err = Path(local).read_text() if local and Path(local).is_file() else trial.get_error()
    except Exception:  # no error file (yet): fall back below
        log.debug("no error recorded for trial %s", trial.trial_id, exc_info=True)
    text = str(err or getattr(trial, "error_message", None) or "")
    died = _worker_died(text)
    if died:
        return died
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "trial raised"


def _worker_died(text: str) -> str | None:
    """One line for Ray's many-line "actor died" error (a trial's process killed, or its node
    lost), e.g. `the trial's worker process (pid 6313) died: Worker unexpectedly exits ...`."""
    text = text.rsplit("Failure # ", 1)[-1]  # Tune appends every attempt's error: the last
    if "The actor died" not in text and "The actor is dead" not in text:
        return None
    pid = re.search(r"\bpid: (\d+)", text)
    detail = re.search(r"Worker exit detail: ([^.\n]*)", text)
    return (
        "the trial's worker process"
        + (f" (pid {pid[1]})" if pid else "")
        + " died"
        + (f": {detail[1].strip()}" if detail else "")
    )


class SweepCallback(Callback):
    def __init__(
        self,
        tracker: SweepTracker,
        fitter: OnlineFitter,
        *,
        final_bootstrap: int = 200,
        progress: Callable[[dict], None] | None = None,
        ledger_of: Callable[[], object] | None = None,
        allocation_of: Callable[[], dict] | None = None,
        batch_s: float = 0.0,
        background: bool = False,
    ):
        self.tracker = tracker
        self.fitter = fitter
        self.final_bootstrap = final_bootstrap
        self.progress = progress
        self.ledger_of = ledger_of
        self.allocation_of = allocation_of  # the searcher's allocation record, logged per refit
        self.last_decision: str | None = None  # the latest decision logged (JSON)
        self.runs: dict[str, str] = {}  # trial id -> MLflow run id
        self.logged: dict[str, set[int]] = {}  # trial id -> steps already in MLflow
        # in memory only: trial id -> step -> outcome values in MLflow (read back or logged here),
        # and the runs whose points this process knows (created here, or read back from MLflow)
        self.values: dict[str, dict[int, dict[str, float]]] = {}
        self.known_runs: set[str] = set()
        self.completed = 0
        self.final_report: FitReport | None = None
        self.reached: dict[str, int] = {}  # trial id -> largest samples reported (driver-side)
        # every MLflow write goes through the outbox: buffered and retried while the server is
        # down; with `background`, sent by the outbox's thread, off Tune's event loop
        self.outbox = Outbox(self._deliver, background=background)
        # first values of re-reported points, found while delivering: the fit takes them on
        # Tune's thread (`_apply_kept`), the only one that touches the fitter's points
        self.kept: deque[tuple[str, EvalPoint]] = deque()
        # a trial's points wait up to `batch_s` to go to MLflow together, in one write: they are
        # handed to the outbox when the trial ends, when Tune saves this callback's state, or when
        # the oldest has waited `batch_s` (0: each point as it arrives)
        self.batch_s = batch_s
        self.batches: dict[str, dict] = {}  # trial id -> {config, points, ts, since}

    # --- MLflow delivery (events are plain data, so undelivered ones are saved with the state) ---
    def _deliver(self, kind: str, e: dict) -> None:
        if kind == "start":
            self._run_id(e["trial_id"], e["config"])
        elif kind == "points":  # "point": one point, as saved by an older scaler
            points = [EvalPoint(**p) for p in e.get("points") or [e["point"]]]
            self._log_points(e["trial_id"], e["config"], points, e["ts"])
        elif kind == "end_trial":  # with the trial's last points, in one write
            tags = self.tracker.end_tags(e["status"], e["reason"])
            points = [EvalPoint(**p) for p in e.get("points", [])]
            run_id = self._log_points(e["trial_id"], e["config"], points, e.get("ts", 0), tags)
            self.tracker.terminate(run_id, e["status"])
        elif kind == "fit":
            self.tracker.log_fit(e["summary"], e["step"], e["ts"])
        elif kind == "sweep_metrics":
            self.tracker.log_sweep_metrics(e["values"], e["step"], e["ts"])
        elif kind == "allocation":
            self.tracker.log_allocation(e["record"], e["step"], e["ts"])
        elif kind == "end_sweep":
            self.tracker.end_sweep(e["status"])
        else:
            raise ValueError(f"unknown outbox event {kind!r}")

    def _run_id(self, trial_id: str, config: dict) -> str:
        """The trial's run, its points known: found or created by tag, or (a run from restored
        state, or one whose last write failed) its points read back from MLflow, once."""
        if trial_id not in self.runs:
            run_id, held = self.tracker.trial_run(trial_id, config, frozenset(self.runs.values()))
            self.runs[trial_id] = run_id
        elif self.runs[trial_id] not in self.known_runs:
            held = self.tracker.logged_points(self.runs[trial_id])
        else:
            return self.runs[trial_id]
        # MLflow is the record: restored steps it lacks (it cannot, short of a store rolled
        # back) are logged again, steps it has that the restored state lacks are not
        self.logged[trial_id] = set(held)
        self.values[trial_id] = held
        self.known_runs.add(self.runs[trial_id])
        return self.runs[trial_id]

    def _log_points(
        self,
        trial_id: str,
        config: dict,
        points: list[EvalPoint],
        ts: int,
        tags: dict[str, str] | None = None,
    ) -> str:
        """The points MLflow does not hold yet, and `tags`, in one write; the others are
        re-reports. Returns the run id."""
        run_id = self._run_id(trial_id, config)
        new: dict[int, EvalPoint] = {}
        for point in points:
            step = int(point.samples)
            if step in self.logged[trial_id]:  # re-reported: keep the first, note a difference
                self._rereported(trial_id, run_id, step, point)
            elif step not in new:
                new[step] = point
        if not new and not tags:
            return run_id
        try:
            self.tracker.log_points(run_id, list(new.values()), ts, tags)
        except Exception:
            # the write may have landed with its reply lost: read the run back before retrying
            self.known_runs.discard(run_id)
            raise
        for step, point in new.items():
            self.logged[trial_id].add(step)
            self.values[trial_id][step] = {k: float(getattr(point, k)) for k in OUTCOME_METRICS}
        return run_id

    def _rereported(self, trial_id: str, run_id: str, step: int, point: EvalPoint) -> None:
        entry = rereported_mismatch(step, self.values[trial_id].get(step, {}), point)
        if entry is not None:
            log.warning(
                "trial %s re-reported step %d with other values %s; kept the first (%s tag)",
                trial_id,
                step,
                entry["rereported"],
                MISMATCH_TAG,
            )
            self.tracker.note_rereported(run_id, entry)
            self._keep_first(trial_id, point, entry["logged"])
        else:
            log.info(
                "trial %s re-reported step %d, already in MLflow: not logged again", trial_id, step
            )

    def _send_points(self, *, due_only: bool = False) -> None:
        """Hand every trial's batched points to the outbox (`due_only`: those whose oldest
        point has waited `batch_s`); a trial's last ones go with its end (`_end_trial`)."""
        now = time.monotonic()
        for tid, batch in list(self.batches.items()):
            if not (due_only and now - batch["since"] < self.batch_s):
                self.outbox.submit("points", self._points_event(tid, batch["config"]))

    def _points_event(self, trial_id: str, config: dict) -> dict:
        """A trial's batched points, taken out of `batches`, as an outbox event's fields."""
        batch = self.batches.pop(trial_id, None) or {"points": [], "ts": 0}
        return {
            "trial_id": trial_id,
            "config": config,
            "points": batch["points"],
            "ts": batch["ts"],
        }

    def _keep_first(self, trial_id: str, point: EvalPoint, first: dict[str, float]) -> None:
        """The fit uses the point MLflow holds, not the re-reported one `on_trial_result` gave it."""
        self.kept.append((trial_id, dataclasses.replace(point, **first)))

    def _apply_kept(self) -> None:
        while self.kept:
            trial_id, kept = self.kept.popleft()
            group = next((r["group"] for r in self.fitter.rows if r["trial_id"] == trial_id), None)
            self.fitter.add(trial_id, kept, group=group)

    # --- trial events ---------------------------------------------------------------------
    def on_trial_start(self, iteration, trials, trial, **info):
        self.outbox.submit("start", {"trial_id": trial.trial_id, "config": trial.config})

    def on_trial_result(self, iteration, trials, trial, result, **info):
        point = point_from_result(result)
        if point is None:
            return
        self.fitter.add(trial.trial_id, point, group=trial.config.get("point"))
        self.reached[trial.trial_id] = max(self.reached.get(trial.trial_id, 0), int(point.samples))
        batch = self.batches.setdefault(
            trial.trial_id, {"config": trial.config, "points": [], "since": time.monotonic()}
        )
        batch["points"].append(point.to_dict())
        batch["ts"] = int(time.time() * 1000)
        self._send_points(due_only=True)
        self._apply_kept()
        reason = result.get("diverged_reason") or (
            f"diverged: loss {point.loss} at {point.samples} samples" if point.diverged else ""
        )
        if reason:
            self.fitter.exclude_trial(trial.trial_id, reason)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._apply_kept()
        reason = self.fitter.trial_reason.get(trial.trial_id)
        reached = self.reached.get(trial.trial_id)
        if not reached:  # no point seen by this process (a resumed trial): what MLflow holds
            with self.outbox.lock:  # the outbox's thread adds to `logged`
                reached = max(self.logged.get(trial.trial_id) or {0})
        budget = trial.config.get("samples", reached)
        status = "diverged" if reason else "completed" if reached >= budget else "stopped early"
        self._end_trial(trial, status, reason)
        self.completed += 1
        # a refit starts in the background (or is coalesced into a later one: scaler.fitter);
        # one that finished since the last look is logged now
        record = self._log_live_fit(self.fitter.refit_live(tag=self.completed))
        self._show(trials, trial, self.fitter.latest, record)

    def on_step_end(self, iteration, trials, **info):
        # Tune's loop turns often: a live refit that finished between trials is logged here
        self._apply_kept()
        done = self.fitter.collect_live()
        if done is not None:
            self._log_live_fit(done)

    def _log_live_fit(self, done: tuple[FitReport, int] | None) -> dict | None:
        """A finished live refit to MLflow (step: trials completed when it started), with the
        allocation record; without one, a new decision of the policy alone. Returns the record."""
        now = int(time.time() * 1000)
        if done is not None:
            report, step = done
            self.outbox.submit("fit", {"summary": report.summary(), "step": step, "ts": now})
        return self._log_allocation(now, refitted=done is not None)

    def on_trial_error(self, iteration, trials, trial, **info):
        reason = f"failed: {_error_line(trial)}"
        self.fitter.exclude_trial(trial.trial_id, reason[:500])
        self._end_trial(trial, "failed", reason)
        self.completed += 1
        self._show(trials, trial, None)

    def on_experiment_end(self, trials, **info):
        self._send_points()
        # every point delivered (so every re-report compared) before the final fit, if MLflow
        # answers within `final_wait_s`
        reachable = self.outbox.flush()
        self._apply_kept()
        report = self.fitter.refit(bootstrap=self.final_bootstrap)
        self.final_report = report
        now = int(time.time() * 1000)
        self.outbox.submit("fit", {"summary": report.summary(), "step": self.completed, "ts": now})
        ledger = self.ledger_of() if self.ledger_of else None
        if ledger is not None:
            values = {
                "budget/flops_spent": ledger.spent_flops,
                "budget/device_seconds": ledger.spent_device_seconds,
            }
            self.outbox.submit(
                "sweep_metrics", {"values": values, "step": self.completed, "ts": now}
            )
        # the policy's last decision, if new: why the sweep ended (a tolerance met, nothing left
        # worth running) is often decided after the last trial completed
        self._log_allocation(now, refitted=False)
        self.outbox.submit("end_sweep", {"status": "FINISHED"})
        # waits up to outbox.final_wait_s for the server (a short burst if it just failed to come)
        delivered = self.outbox.flush(None if reachable else self.outbox.burst_s)
        self.outbox.close()
        if not delivered:
            raise RuntimeError(
                f"MLflow at {self.tracker.tracking_uri} unreachable: {len(self.outbox.pending)} "
                "event(s) not recorded; they are saved with the experiment — `scaler resume` sends them"
            )
        self._plot(report)

    def _log_allocation(self, now: int, refitted: bool = True) -> dict | None:
        """After a finished trial, when the laws were refitted or the policy decided anew: the
        budget spent per axis and the policy's latest decision (the expected gain per FLOP of its
        best candidates), as `allocation/*.json` and `alloc.*` metrics. Every decision is
        recorded; a policy without decisions (grid, random) is recorded per refit only. Returns
        the record (logged or not), or None without a policy."""
        if self.allocation_of is None:
            return None
        record = self.allocation_of()
        decision = json.dumps(record["decision"], sort_keys=True, default=str)
        if not refitted and decision == self.last_decision:
            return record
        record["new_decision"] = decision != self.last_decision
        self.last_decision = decision
        self.outbox.submit("allocation", {"record": record, "step": self.completed, "ts": now})
        return record

    def _end_trial(self, trial, status: str, reason: str | None) -> None:
        """Its points not yet sent go with its end: one MLflow write for both, then the run's
        end (a short trial: create the run, its params, points + status, end; four writes)."""
        event = self._points_event(trial.trial_id, trial.config)
        self.outbox.submit("end_trial", {**event, "status": status, "reason": reason})

    # --- display --------------------------------------------------------------------------
    def _show(self, trials, finished, report: FitReport | None, record: dict | None = None) -> None:
        """The progress line; `record`: the allocation record already made for this trial."""
        if self.progress is None:
            return
        if record is None and self.allocation_of is not None:
            record = self.allocation_of()
        others = [t.status for t in trials if t is not finished]  # `finished` may still say RUNNING
        ledger = self.ledger_of() if self.ledger_of else None
        self.progress(
            {
                "done": self.completed,
                "errors": sum(
                    1 for r in self.fitter.trial_reason.values() if r.startswith("failed")
                ),
                "running": others.count("RUNNING"),
                "pending": others.count("PENDING"),
                "budget": ledger.fraction_spent() if ledger is not None else math.nan,
                "report": report,
                "decision": record["decision"] if record is not None else None,
            }
        )

    def _plot(self, report: FitReport) -> None:
        try:
            from scaler.plots import laws_figure

            fig = laws_figure(self.fitter.frame(), report)
            self.tracker.log_figure(fig, "plots/laws.png")
        except Exception:  # a plot must never fail a sweep
            log.exception("could not draw the laws plot")

    # --- state ----------------------------------------------------------------------------
    def get_state(self) -> dict:
        # the points Tune has checkpointed trials past are in the outbox (and so in this state)
        # or already in MLflow: none is held only in this process's memory
        self._send_points()
        self._apply_kept()
        with self.outbox.lock:  # each event either still queued or delivered, with its effects
            return {
                "fitter": self.fitter.state_dict(),
                "runs": dict(self.runs),
                "logged": {k: sorted(v) for k, v in self.logged.items()},
                "completed": self.completed,
                "parent_run_id": self.tracker.parent_run_id,
                "reached": dict(self.reached),
                "outbox": list(self.outbox.pending),
                "last_decision": self.last_decision,
            }

    def set_state(self, state: dict) -> None:
        with self.outbox.lock:
            self._set_state(state)

    def _set_state(self, state: dict) -> None:
        self.fitter.load_state_dict(state["fitter"])
        self.runs = dict(state["runs"])
        self.logged = {k: set(v) for k, v in state["logged"].items()}
        self.values, self.known_runs = {}, set()  # read back from MLflow before the next write
        self.completed = state["completed"]
        self.tracker.parent_run_id = state["parent_run_id"]
        self.reached = dict(state.get("reached", {}))
        self.outbox.pending.extend(state.get("outbox", []))
        self.last_decision = state.get("last_decision")
