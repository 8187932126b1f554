"""The driver's process group SIGKILLed at seeded random moments, several times in a row, each
time resumed with `scaler resume`: the record in MLflow is the one an uninterrupted sweep of the
same spec leaves — one child run per trial, every eval point once in MLflow's RAW metric history,
the same fitted laws, the budget spent once."""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import scaler
from scaler.tune.state_backup import BACKUP
from tests.faults.helpers import (
    assert_sweep_points_once,
    kill_group,
    run,
    slow_oracle,
    start,
    sweep_paths,
    write_spec,
)

# the kill moments' RNG (printed; SCALER_KILL_SEED=N draws other moments)
SEED = int(os.environ.get("SCALER_KILL_SEED", "2111"))
KILLS = 3
EVAL_POINTS = 6
NAME = "faults-random-kills"
# 4 model sizes x 4 sample budgets = 16 trials, 2 at a time, 0.5 s per eval point: ~3 s a trial,
# ~24 s of trials. Shorter, a resumed driver finished the sweep's trials before its kill moment came
# (each driver needs ~8 s to start Ray and restore, and its first result rows reach storage only at
# Tune's next checkpoint): the third kill found every trial completed.
SPEC = {
    "name": NAME,
    "oracle": slow_oracle(0.5, noise=0.003),
    "trial": {"eval_points": EVAL_POINTS},
    "axes": {
        "params": {"n_params": {"low": 1.0e5, "high": 1.0e8, "num": 4}},
        "data": {"low": 1.0e5, "high": 1.0e8, "num": 4},
    },
    "budget": {"trials": 16},
    "resources": {"cpus_per_trial": 0.25, "concurrency": 2},
}
TRIALS = 16
MOMENTS = {
    # right after Tune's copy of a trial's result reaches storage (the driver's staging folder is
    # synced with the experiment state): the trial's checkpoint for that row may not be registered
    "result": "a new result row",
    # right after `StateBackup` wrote the checkpoint, while Tune copies its state to storage
    "checkpoint": "the state backup rewritten",
    # anywhere in the sweep, after it has started running trials
    "random": "a random delay",
}


class Moments:
    """What the experiment folder shows of a running driver: result rows per trial (sizes of
    `result.json`) and the state backup's mtime."""

    def __init__(self, experiment: Path):
        self.experiment = experiment
        self.rows, self.backup = self._rows(), self._backup()

    def _rows(self) -> dict[Path, int]:
        return {p: p.stat().st_size for p in self.experiment.glob("*/result.json")}

    def _backup(self) -> float:
        path = self.experiment / BACKUP
        return path.stat().st_mtime_ns if path.exists() else 0

    def new_row(self) -> bool:
        rows = self._rows()
        grown = any(size > self.rows.get(p, 0) for p, size in rows.items())
        self.rows = rows
        return grown

    def new_backup(self) -> bool:
        backup = self._backup()
        changed, self.backup = backup != self.backup, backup
        return changed


def kill_at(proc, experiment: Path, moment: str, skip: int, rng: random.Random, log: Path) -> float:
    """SIGKILL the driver's process group at `moment`, after `skip` such events, once the driver
    has reported a result of its own. Returns seconds since it started; fails if it finished."""
    t0, seen = time.time(), Moments(experiment)
    deadline = t0 + 180
    running = False
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"the sweep ended (rc {proc.returncode}) before kill {moment}; its log ends:\n"
                + log.read_text()[-4000:]
            )
        if not running:
            running = seen.new_row()
            seen.new_backup()
            if running and moment == "random":
                time.sleep(rng.uniform(0.2, 3.0))
                break
        elif (moment == "result" and seen.new_row()) or (
            moment == "checkpoint" and seen.new_backup()
        ):
            if skip == 0:
                break
            skip -= 1
        time.sleep(0.01)
    else:
        raise AssertionError(f"no {MOMENTS[moment]} within 180 s")
    kill_group(proc)
    return time.time() - t0


def records(name: str, uri: str):
    """(trials, points by grid cell, laws, budget spent) of a finished sweep, from MLflow."""
    trials = scaler.trials(name, tracking_uri=uri)
    points = scaler.points(name, tracking_uri=uri)
    cell = trials.set_index("trial_id")[["param.n_params", "samples_budget"]].astype(float)
    points = points.join(cell, on="trial_id")
    by_cell = points.set_index(["param.n_params", "samples_budget", "samples"])["loss"]
    client = MlflowClient(uri)
    parent = scaler.sweeps(uri).query(f"sweep == '{name}'")["run_id"].iloc[-1]
    spent = client.get_run(parent).data.metrics["budget/flops_spent"]
    return trials, by_cell.sort_index(), scaler.laws(name, tracking_uri=uri), spent


@pytest.mark.slow  # ~3-4 min on 2 cores: an uninterrupted sweep, then 4 drivers, 3 killed
def test_random_driver_kills_leave_the_record_of_an_uninterrupted_sweep(tmp_path):
    rng = random.Random(SEED)
    moments = rng.sample(sorted(MOMENTS), KILLS)  # each kind of moment once, in a seeded order
    skips = [rng.randint(0, 2) for _ in moments]

    reference = tmp_path / "reference"
    reference.mkdir()
    spec = write_spec(reference / "s.yaml", **SPEC)
    ref_storage, ref_uri, _ = sweep_paths(reference)
    done = run(["run", str(spec), "--storage", str(ref_storage), "--bootstrap", "0"])
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    killed.mkdir()
    spec = write_spec(killed / "s.yaml", **SPEC)
    storage, uri, log = sweep_paths(killed)
    experiment = storage / NAME
    at = []
    logs = [log]
    proc = start(["-v", "run", str(spec), "--storage", str(storage), "--bootstrap", "0"], log)
    for i, (moment, skip) in enumerate(zip(moments, skips, strict=True)):
        try:
            at.append(round(kill_at(proc, experiment, moment, skip, rng, log), 1))
        finally:
            kill_group(proc)
        # mid-sweep: a trial not yet completed in the record (by the last resume every trial
        # may have its run already: the last two start at once)
        status = scaler.trials(NAME, tracking_uri=uri)["status"]
        assert (status == "completed").sum() < TRIALS, "a kill must land mid-sweep"
        logs.append(log := killed / f"resume{i}.log")
        proc = start(["-v", "resume", NAME, "--storage", str(storage), "--bootstrap", "0"], log)
    try:
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        kill_group(proc)
    assert f"{TRIALS} trials (0 failed)" in log.read_text()
    # the points at risk: re-reported by trials resumed from an older checkpoint (the driver's log)
    again = sum(p.read_text().count("already in MLflow: not logged again") for p in logs)
    print(
        f"\nrandom driver kills: seed {SEED}, {KILLS} kills of {TRIALS} trials "
        f"({EVAL_POINTS} eval points each), {again} point(s) re-reported after a resume; at "
        + ", ".join(
            f"{MOMENTS[m]}{f' (after {s} more)' if m != 'random' else ''} {t} s in"
            for m, s, t in zip(moments, skips, at, strict=True)
        )
    )

    trials, points, laws, spent = records(NAME, uri)
    _, ref_points, ref_laws, ref_spent = records(NAME, ref_uri)
    # one child run per trial, each grid cell run once, all completed
    assert len(trials) == TRIALS and trials["run_id"].is_unique and trials["trial_id"].is_unique
    cells = trials[["param.n_params", "samples_budget"]].astype(float)
    assert not cells.duplicated().any(), "a candidate ran twice: the budget was double-spent"
    assert (trials["status"] == "completed").all(), trials[["trial_id", "status", "excluded"]]
    # every eval point exactly once in MLflow's raw history, the same values as uninterrupted
    assert assert_sweep_points_once(NAME, uri) == assert_sweep_points_once(NAME, ref_uri)
    assert len(points) == len(ref_points) == TRIALS * EVAL_POINTS
    assert points.index.equals(ref_points.index) and (points == ref_points).all()
    # the same laws (the oracle is deterministic given the seed) and the budget spent once
    assert laws.keys() == ref_laws.keys()
    for name, law in laws.items():
        for key, value in law.params_._asdict().items():
            ref = ref_laws[name].params_._asdict()[key]
            assert math.isclose(value, ref, rel_tol=1e-6), (name, key, value, ref)
    assert math.isclose(spent, ref_spent, rel_tol=1e-9)
    assert math.isclose(spent, trials["flops"].sum(), rel_tol=1e-9)
