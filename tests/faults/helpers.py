"""Real processes for fault tests: `scaler` CLI subprocesses in their own session (so the Ray
they start can be cleaned up by process group), oracle specs slow enough to kill mid-sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

LAW = {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28}
ORACLE_SPEC = {
    "name": "faults",
    "backend": "oracle",
    "seed": 0,
    "oracle": {"law": LAW},
    "trial": {"eval_points": 4},
    "axes": {
        "params": {"n_params": {"low": 1.0e5, "high": 1.0e8, "num": 4}},
        "data": {"low": 1.0e5, "high": 1.0e8, "num": 3},
    },
    "budget": {"trials": 12},
    "policy": {"name": "grid"},
    "resources": {"cpus_per_trial": 0.5, "concurrency": 2},
    "tracking": {"experiment": "faults"},
}


def slow_oracle(delay_seconds: float, **extra) -> dict:
    """The oracle section of a sweep slow enough to kill mid-trial (a sleep per eval point)."""
    return {"law": LAW, "delay_seconds": delay_seconds, **extra}


def assert_retried_from_checkpoint(results: list[dict], killed: int) -> int:
    """Tune's results of a trial whose process `killed` died: a retry in a new process that
    starts after the last checkpoint, every eval point reported once.  Returns the retry's index."""
    rows = [(r["pid"], r["training_iteration"], r["samples"]) for r in results]  # for a failure
    pids = [r["pid"] for r in results]
    first_retry = next(i for i, pid in enumerate(pids) if pid != killed)
    assert first_retry >= 2 and killed not in pids[first_retry:], rows
    retry = results[first_retry]
    assert retry["iterations_since_restore"] == 1, rows  # a new attempt ...
    assert retry["samples"] > results[0]["samples"], rows  # ... that did not start from zero
    assert retry["training_iteration"] == first_retry + 1, rows  # ... but from the last checkpoint
    samples = [r["samples"] for r in results]
    assert samples == sorted(set(samples)), rows
    return first_retry


class ResultWatch:
    """Tune's results of an experiment's trials, each trial's offered once its newest row has stood
    `quiet` seconds.  A kill then lands mid-point, after the driver registered that row's
    checkpoint.  The driver logs a row (in its staging folder, synced to storage with the
    experiment state, possibly in the same loop) before it asks the trial actor for the row's
    checkpoint (`_checkpoint_trial_if_needed` -> a remote `save`, registered when it returns), so
    a kill right after the row shows up retries from the checkpoint before and repeats a point."""

    def __init__(self, experiment: Path, quiet: float = 0.4):
        self.experiment, self.quiet = experiment, quiet
        self.seen: dict[Path, tuple[int, float]] = {}  # trial dir -> (rows, when last grown)

    def settled(self) -> list[tuple[Path, list[dict]]]:
        now, found = time.time(), []
        for trial_dir in sorted(self.experiment.glob("run_trial_*")):
            results = tune_results(trial_dir)
            rows, since = self.seen.get(trial_dir, (-1, now))
            if rows != len(results):
                since = now
            self.seen[trial_dir] = (len(results), since)
            if now - since >= self.quiet:
                found.append((trial_dir, results))
        return found


def tune_results(trial_dir: Path) -> list[dict]:
    """The results Tune recorded for a trial, every attempt appended (`result.json`)."""
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    results = []
    for line in path.read_text().splitlines():
        try:
            results.append(json.loads(line))
        except json.JSONDecodeError:  # the line Tune is writing right now
            break
    return results


def sweep_paths(tmp_path: Path) -> tuple[Path, str, Path]:
    """Where a test's sweep keeps its runs, its MLflow (sqlite) URI, and the driver's log."""
    storage = tmp_path / "runs"
    return storage, f"sqlite:///{storage / 'mlflow.db'}", tmp_path / "run.log"


def start_run(spec: Path, storage: Path, log: Path, bootstrap: int = 0) -> subprocess.Popen:
    """`scaler run SPEC` as a subprocess in its own process group, output to `log`."""
    return start(["run", str(spec), "--storage", str(storage), "--bootstrap", str(bootstrap)], log)


def assert_points_once(name: str, uri: str, trial_id: str, samples: list) -> None:
    """MLflow holds one completed child run per trial, and the trial's eval points exactly once."""
    import scaler

    trials = scaler.trials(name, tracking_uri=uri)
    assert trials["run_id"].is_unique
    assert (trials["status"] == "completed").all(), trials[["trial_id", "status", "excluded"]]
    points = scaler.points(name, tracking_uri=uri)
    assert not points[["trial_id", "samples"]].duplicated().any()
    assert_sweep_points_once(name, uri)  # and in MLflow's raw history
    mine = points[points["trial_id"] == trial_id].sort_values("samples")
    assert mine["samples"].tolist() == samples


def assert_no_duplicate_points(client, run_ids: list[str]) -> int:
    """MLflow's RAW metric history (what its UI, `mlflow.search_runs` and a notebook see, not
    `scaler.points`, which keeps one value per step): every metric of every run in `run_ids`
    holds each step once. Returns the number of eval points (steps of `samples`) checked."""
    repeated, points = [], 0
    for run_id in run_ids:
        for key in client.get_run(run_id).data.metrics:
            steps = [m.step for m in client.get_metric_history(run_id, key)]
            twice = sorted({s for s in steps if steps.count(s) > 1})
            if twice:
                repeated.append(f"run {run_id} {key}: steps {twice} logged more than once")
            if key == "samples":
                points += len(steps)
    assert not repeated, "\n".join(repeated)
    return points


def assert_sweep_points_once(name: str, uri: str) -> int:
    """`assert_no_duplicate_points` over every child run of sweep `name`; returns the points."""
    from mlflow.tracking import MlflowClient

    import scaler

    trials = scaler.trials(name, tracking_uri=uri)
    return assert_no_duplicate_points(MlflowClient(uri), trials["run_id"].tolist())


def write_spec(path: Path, **overrides) -> Path:
    spec = {**ORACLE_SPEC, **overrides}
    path.write_text(yaml.safe_dump(spec))
    return path


def scaler_cmd(*args: str) -> list[str]:
    main = "import sys; from scaler.cli import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", main, *args]


def start(args: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        scaler_cmd(*args),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the Ray it starts is ours to clean up
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})},
    )


def wait_for(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in log.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"process exited ({proc.returncode}) before {text!r}:\n{log.read_text()}"
            )
        time.sleep(0.2)
    raise AssertionError(f"no {text!r} within {timeout} s:\n{log.read_text()}")


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group we started (the process and any Ray it left behind)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def run(
    args: list[str], timeout: float = 240, env: dict | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(
        scaler_cmd(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})},
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
