"""Driver killed (SIGKILL of `scaler run` mid-sweep) -> `scaler resume` finishes the sweep with
exactly one MLflow child run per trial, every eval point once, laws fitted, budget spent once."""

from __future__ import annotations

import signal

import pytest

import scaler
from scaler.tune.state_backup import TUNE_FILES
from tests.faults.helpers import (
    assert_sweep_points_once,
    kill_group,
    run,
    slow_oracle,
    start_run,
    sweep_paths,
    wait_for,
    write_spec,
)


@pytest.mark.slow  # ~60 s each; tests/faults/test_state_backup.py covers the restore in seconds
@pytest.mark.parametrize("truncated", [False, pytest.param(True, id="tune-state-truncated")])
def test_driver_sigkill_then_resume_loses_and_duplicates_nothing(tmp_path, truncated):
    """truncated: the kill also caught Tune copying its state to storage (seen under load: an
    empty searcher-state file; after a resume, an empty spec file): here every file Tune uploads
    is empty, and the resume restores Tune's from the backup (`scaler.tune.state_backup`)."""
    spec = write_spec(
        tmp_path / "slow.yaml",
        name="faults-driver",
        oracle=slow_oracle(1.0),
    )
    storage, uri, log = sweep_paths(tmp_path)
    proc = start_run(spec, storage, log, bootstrap=5)
    try:
        wait_for(log, "trials done 3 ", proc, timeout=180)
        proc.send_signal(signal.SIGKILL)  # the driver only; its Ray dies with it or is reaped below
        proc.wait(timeout=30)
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    before = scaler.trials("faults-driver", tracking_uri=uri)
    assert 3 <= len(before) < 12, "the kill must land mid-sweep"
    if truncated:  # every file Tune's upload rewrites in place (all .json and .pkl) left empty
        experiment = storage / "faults-driver"
        states = [p for t in TUNE_FILES for p in experiment.glob(t.format("*"))]
        assert len(states) == 4
        for path in [*experiment.glob("*.json"), *experiment.glob("*.pkl")]:
            path.write_bytes(b"")

    done = run(["resume", "faults-driver", "--storage", str(storage), "--bootstrap", "5"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "12 trials (0 failed)" in done.stdout
    assert done.stderr.count("restoring Tune's state from") == truncated  # only when needed

    trials = scaler.trials("faults-driver", tracking_uri=uri)
    assert len(trials) == 12  # one child run per trial: none lost, none duplicated
    assert trials["trial_id"].is_unique and trials["run_id"].is_unique
    grid = trials[["param.n_params", "samples_budget"]].astype(float)
    assert not grid.duplicated().any(), "a candidate ran twice: the budget was double-spent"
    assert (trials["status"] == "completed").all()
    points = scaler.points("faults-driver", tracking_uri=uri)
    assert len(points) == 12 * 4  # every eval point present ...
    assert not points[["trial_id", "samples"]].duplicated().any()  # ... exactly once
    assert assert_sweep_points_once("faults-driver", uri) == 12 * 4  # in the raw history too
    laws = scaler.laws("faults-driver", tracking_uri=uri)
    assert abs(laws["joint"].params_.alpha - 0.30) < 0.03
