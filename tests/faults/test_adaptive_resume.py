"""The adaptive policy's state survives a killed driver: `scaler resume` continues its decisions
(no candidate run twice, no budget spent twice, its decision record continues)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import scaler
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

BUDGET = 3.0e16  # FLOPs: about half of the 12-candidate grid's 6.0e16


@pytest.mark.slow
def test_adaptive_policy_resumes_after_driver_sigkill(tmp_path):
    spec = write_spec(
        tmp_path / "adaptive.yaml",
        name="faults-adaptive",
        oracle=slow_oracle(1.0),
        budget={"flops": BUDGET},
        policy={"name": "adaptive", "target": {"compute": 6.0e18}},
    )
    storage, uri, log = sweep_paths(tmp_path)
    proc = start_run(spec, storage, log, bootstrap=5)
    try:
        wait_for(log, "trials done 5 ", proc, timeout=240)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        kill_group(proc)
    before = scaler.trials("faults-adaptive", tracking_uri=uri)
    assert len(before) >= 5

    done = run(["resume", "faults-adaptive", "--storage", str(storage), "--bootstrap", "5"])
    assert done.returncode == 0, done.stderr[-3000:]
    trials = scaler.trials("faults-adaptive", tracking_uri=uri)
    assert len(trials) > len(before), "the resumed policy must go on choosing"
    assert trials["trial_id"].is_unique
    chosen = trials[["param.n_params", "samples_budget"]].astype(float)
    assert not chosen.duplicated().any(), "a candidate ran twice: the policy forgot its state"
    points = scaler.points("faults-adaptive", tracking_uri=uri)
    assert assert_sweep_points_once("faults-adaptive", uri) == len(points)  # raw history: once
    spent = points.groupby("trial_id")["flops"].max().sum()
    assert spent <= BUDGET * 1.0001

    client = MlflowClient(uri)
    parent = scaler.sweeps(uri).query("sweep == 'faults-adaptive'")["run_id"].iloc[-1]
    paths = [a.path for a in client.list_artifacts(parent, "allocation")]
    steps = []
    for p in sorted(x for x in paths if "step_" in x):
        decision = json.loads(Path(client.download_artifacts(parent, p)).read_text())["decision"]
        if decision is not None:
            steps.append(decision["step"])
    # decisions continue after the resume: the policy did not start over from its seeding phase
    assert steps == sorted(steps) and steps[-1] >= len(trials) - 1
