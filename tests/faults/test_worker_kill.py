"""Trial worker killed (SIGKILL of the Ray worker process running a trial, mid-trial): Tune's
FailureConfig retries the trial from its last checkpoint — not from zero — in a new process, within
the trial's one MLflow run, and the sweep completes."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import scaler
from tests.faults.helpers import (
    ResultWatch,
    assert_points_once,
    assert_retried_from_checkpoint,
    assert_sweep_points_once,
    kill_group,
    slow_oracle,
    start_run,
    sweep_paths,
    tune_results,
    wait_for,
    write_spec,
)

EVAL_POINTS = 5


def _kill_mid_trial(experiment: Path, proc, timeout: float, points: int) -> tuple[str, int, int]:
    """Once a trial has reported 2 of its `points` eval points (each with its checkpoint), SIGKILL
    the process that reported them. Returns (trial id, the killed pid, points reported before)."""
    deadline, watch = time.time() + timeout, ResultWatch(experiment)
    while time.time() < deadline:
        assert proc.poll() is None, "the sweep ended before a trial could be killed"
        for _, results in watch.settled():
            if 2 <= len(results) < points:  # mid-trial (Tune reuses a finished trial's actor)
                pid = results[-1]["pid"]
                os.kill(pid, signal.SIGKILL)  # the Ray worker (Tune's trial actor) itself
                return results[-1]["trial_id"], pid, len(results)
        time.sleep(0.1)
    raise AssertionError(f"no trial reported 2 points within {timeout} s")


@pytest.mark.slow  # ~35 s: a real sweep whose trial worker is killed and retried
def test_trial_worker_sigkill_retries_from_checkpoint_in_same_run(tmp_path):
    spec = write_spec(
        tmp_path / "slow.yaml",
        name="faults-worker",
        oracle=slow_oracle(1.0),
        trial={"eval_points": EVAL_POINTS},
        axes={"params": {"n_params": [1.0e6, 1.0e7]}, "data": [1.0e7]},
        budget={"trials": 2},
        resources={"cpus_per_trial": 0.5, "concurrency": 1},  # one trial process at a time
    )
    storage, uri, log = sweep_paths(tmp_path)
    proc = start_run(spec, storage, log)
    try:
        trial_id, killed, before = _kill_mid_trial(
            storage / "faults-worker", proc, timeout=120, points=EVAL_POINTS
        )
        wait_for(log, "2 trials (0 failed)", proc, timeout=120)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        kill_group(proc)

    # Tune's record of the killed trial: its first attempt, then a retry in a new process that
    # starts after the last checkpoint -- every eval point reported once, none re-run from zero
    (trial_dir,) = (storage / "faults-worker").glob(f"run_trial_{trial_id}_*")
    results = tune_results(trial_dir)
    first_retry = assert_retried_from_checkpoint(results, killed)
    assert first_retry >= before  # the kill landed after >= 2 checkpointed points
    samples = [r["samples"] for r in results]
    assert len(samples) == EVAL_POINTS

    # MLflow: one child run per trial, the killed trial's points all there exactly once
    assert len(scaler.trials("faults-worker", tracking_uri=uri)) == 2
    assert_points_once("faults-worker", uri, trial_id, samples)
    assert len(scaler.points("faults-worker", tracking_uri=uri)) == 2 * EVAL_POINTS


@pytest.mark.slow
def test_trial_worker_killed_past_the_retry_limit_is_failed_and_excluded(tmp_path):
    """Every attempt's worker is SIGKILLed after it reports a point: after FailureConfig's 2
    retries the trial is failed with the reason, left out of the fit, and the sweep goes on."""
    spec = write_spec(
        tmp_path / "slow.yaml",
        name="faults-worker-limit",
        oracle=slow_oracle(1.0),
        trial={"eval_points": 8},
        axes={"params": {"n_params": [1.0e6, 1.0e7]}, "data": [1.0e7]},
        budget={"trials": 2},
        resources={"cpus_per_trial": 0.5, "concurrency": 1},
    )
    storage, uri, log = sweep_paths(tmp_path)
    experiment = storage / "faults-worker-limit"
    proc = start_run(spec, storage, log)
    try:
        trial_id, pid, _ = _kill_mid_trial(experiment, proc, timeout=120, points=8)
        killed = [pid]
        (trial_dir,) = experiment.glob(f"run_trial_{trial_id}_*")
        deadline = time.time() + 120
        while len(killed) < 3:  # the first attempt and both retries
            assert time.time() < deadline, f"retry {len(killed)} never reported:\n{log.read_text()}"
            results = tune_results(trial_dir)
            if results and results[-1]["pid"] not in killed and len(results) < 8:
                killed.append(results[-1]["pid"])
                os.kill(killed[-1], signal.SIGKILL)
            time.sleep(0.1)
        wait_for(log, "2 trials (1 failed)", proc, timeout=120)
        proc.wait(timeout=60)
    finally:
        kill_group(proc)

    trials = scaler.trials("faults-worker-limit", tracking_uri=uri).set_index("trial_id")
    assert len(trials) == 2 and trials["run_id"].is_unique
    assert trials.loc[trial_id, "status"] == "failed"
    reason = trials.loc[trial_id, "excluded"]
    # one line naming what happened, not Ray's page of advice
    assert reason.startswith(f"failed: the trial's worker process (pid {killed[-1]}) died"), reason
    assert "\n" not in reason and len(reason) < 200, reason
    other = trials.drop(index=trial_id)
    assert (other["status"] == "completed").all() and (other["excluded"] == "").all()
    points = scaler.points("faults-worker-limit", tracking_uri=uri)
    mine = points[points["trial_id"] == trial_id]
    assert len(mine) >= 3 and (mine["excluded"] != "").all()  # one point per attempt at least
    assert not points[["trial_id", "samples"]].duplicated().any()
    assert_sweep_points_once("faults-worker-limit", uri)


def test_worker_death_reason_is_one_line_from_the_last_failure():
    from scaler.tune.callbacks import _worker_died

    def failure(n: int, pid: int) -> str:
        return (
            f"Failure # {n} (occurred at 2026-11-28_13-13-04)\n"
            "The actor died unexpectedly before finishing this task.\n"
            f"\tclass_name: ImplicitFunc\n\tpid: {pid}\n\tip: 10.0.0.2\n"
            "The actor is dead because its worker process has died. Worker exit type: "
            "SYSTEM_ERROR Worker exit detail: Worker unexpectedly exits with a connection error "
            "code 2. End of file. Some common causes include: (1) the process was killed by ...\n"
        )

    text = failure(1, 11) + failure(2, 22) + failure(3, 33)
    assert _worker_died(text) == (
        "the trial's worker process (pid 33) died: "
        "Worker unexpectedly exits with a connection error code 2"
    )
    assert _worker_died("Failure # 1\nRuntimeError: injected failure") is None
