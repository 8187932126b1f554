"""An oracle sweep of 50 trials on a real local Ray, recorded in a real sqlite MLflow store."""

import json
import zlib

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import scaler
from scaler.spec import parse_spec
from scaler.trial.oracle import eval_schedule, oracle_points

pytestmark = pytest.mark.ray

TRUTH = {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28}
SPEC = {
    "name": "oracle-test",
    "backend": "oracle",
    "seed": 3,
    "oracle": {"law": TRUTH, "noise": 0.003},
    "trial": {"eval_points": 5},
    "axes": {
        "params": {"n_params": {"low": 1e5, "high": 1e8, "num": 10}},
        "data": {"low": 1e5, "high": 1e8, "num": 5},
    },
    "budget": {"trials": 60},
    "policy": {"name": "random", "seed": 0},
    "resources": {"cpus_per_trial": 0.25, "concurrency": 8},
    "tracking": {"experiment": "oracle-test"},
}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, ray_local):
    from scaler.sweep import run_sweep

    storage = tmp_path_factory.mktemp("runs")
    spec = parse_spec(SPEC)
    return spec, run_sweep(spec, storage=storage, final_bootstrap=100)


def test_sweep_runs_every_trial_of_the_grid(sweep):
    _spec, result = sweep
    assert result.trials == 50 and result.errors == 0  # 10 sizes x 5 budgets < the 60-trial budget


def test_mlflow_holds_one_parent_and_one_child_per_trial_with_every_eval_point(sweep):
    _spec, result = sweep
    client = MlflowClient(result.tracking_uri)
    exp = client.get_experiment_by_name("oracle-test")
    # the UI opens it as model training (its runs), not on the GenAI traces overview
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("scaler.kind") == "sweep"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert len(parents) == 1 and len(runs) == 51 and len(children) == 50
    note = parents[0].data.tags["mlflow.note.content"]  # the run's description in the UI
    assert note.startswith("Scaling sweep **oracle-test**") and "**Latest laws** (after" in note
    assert "- data (power): a = " in note
    assert len({r.data.tags["scaler.trial_id"] for r in children}) == 50
    for r in children:
        config = json.loads(r.data.params["config"])
        expected_steps = eval_schedule(config["samples"], 5)
        steps = [m.step for m in client.get_metric_history(r.info.run_id, "loss")]
        assert sorted(steps) == expected_steps  # every eval point once
        assert r.data.tags["scaler.config_hash"] and r.info.status == "FINISHED"
    # the resolved spec and the law history live on the parent
    parent = parents[0]
    assert parent.data.params["backend"] == "oracle"
    assert (
        json.loads(open(client.download_artifacts(parent.info.run_id, "spec.json")).read())["name"]
        == "oracle-test"
    )
    # refitted while trials ran (coalesced: not after every trial), and at the end, on all 50
    steps = sorted(m.step for m in client.get_metric_history(parent.info.run_id, "law.joint.alpha"))
    assert len(set(steps)) >= 3 and steps[0] < 50 and steps[-1] == 50


def test_fitted_joint_law_recovers_the_oracle(sweep):
    _, result = sweep
    law = result.report.laws["joint"]
    p = law.params_
    assert p.alpha == pytest.approx(TRUTH["alpha"], abs=0.01)
    assert p.beta == pytest.approx(TRUTH["beta"], abs=0.01)
    assert p.E == pytest.approx(TRUTH["E"], rel=0.03)
    lo, hi = law.ci_["alpha"]
    assert lo <= TRUTH["alpha"] + 0.005 and hi >= TRUTH["alpha"] - 0.005


def test_query_returns_what_was_logged(sweep):
    spec, result = sweep
    pts = scaler.points("oracle-test", tracking_uri=result.tracking_uri)
    trials = scaler.trials("oracle-test", tracking_uri=result.tracking_uri)
    assert len(trials) == 50 and len(pts) == 250
    # recompute each trial's points independently from its config and the sweep seed
    for _, t in trials.iterrows():
        config = {
            "params": {"n_params": int(t["param.n_params"])},
            "samples": int(t["samples_budget"]),
        }
        seed = zlib.crc32(json.dumps([spec.seed, config], sort_keys=True).encode())
        schedule = eval_schedule(config["samples"], 5)
        expected = [
            p.loss
            for p in oracle_points(
                spec.oracle, config["params"]["n_params"], config["samples"], schedule, seed
            )
        ]
        got = pts[pts.trial_id == t.trial_id].sort_values("samples")["loss"].to_numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12)
    laws = scaler.laws("oracle-test", tracking_uri=result.tracking_uri)
    np.testing.assert_allclose(
        laws["joint"].predict([[1e9, 1e10]]),
        result.report.laws["joint"].predict([[1e9, 1e10]]),
        rtol=1e-9,
    )
    assert "alpha" in laws["joint"].stored_ci_


def test_query_cli_prints_trials_as_csv(sweep, capsys):
    from scaler.cli import main

    _, result = sweep
    assert main(["query", "oracle-test", "--tracking-uri", result.tracking_uri, "--csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 51 and "trial_id" in lines[0]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp) with a socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:
                found.add(addr)
    return found


def test_scaler_ui_serves_the_sweep_over_rest_on_loopback(sweep):
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    _, result = sweep
    port = free_port()
    exe = Path(sys.executable).parent / "scaler"
    proc = subprocess.Popen(
        [str(exe), "ui", "--tracking-uri", result.tracking_uri, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
            assert time.time() < deadline, "mlflow server did not answer /health in 120 s"
            time.sleep(1)
        with urllib.request.urlopen(
            f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=oracle-test"
        ) as r:
            exp_id = json.load(r)["experiment"]["experiment_id"]
        body = json.dumps(
            {
                "experiment_ids": [exp_id],
                "filter": f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'",
                "max_results": 1000,
            }
        ).encode()
        req = urllib.request.Request(
            f"{base}/api/2.0/mlflow/runs/search",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req) as r:
            runs = json.load(r)["runs"]
        assert len(runs) == 50
        assert listening_addresses(port) == {"0100007F"}  # bound to 127.0.0.1 only
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    printed = proc.stdout.read().decode()
    # it points the user at the sweep's runs and its parent run, not just the server
    assert f"{base}/#/experiments/{exp_id}/runs/{result.parent_run_id}" in printed, printed[:2000]
