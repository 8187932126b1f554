"""A Ray worker node stopped mid-trial (SIGKILL of the whole node: raylet, its workers): the trial
that ran there is retried on the surviving node from its last checkpoint (storage shared by both
nodes), within its MLflow run, and the sweep completes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import scaler
from scaler.localcluster import LocalCluster
from tests.faults.helpers import (
    ORACLE_SPEC,
    ResultWatch,
    assert_points_once,
    assert_retried_from_checkpoint,
    scaler_cmd,
    tune_results,
    write_spec,
)

ROOT = Path(__file__).resolve().parents[2]
EVAL_POINTS = 6
pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _ancestors(pid: int) -> list[int]:
    """pid's parent, grandparent, ... (Linux /proc)."""
    found = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # field 4, after the (command name)
        found.append(pid)
    return found


def test_worker_node_stopped_mid_trial_retries_on_the_head_from_checkpoint(tmp_path):
    spec = write_spec(
        tmp_path / "node.yaml",
        name="faults-node",
        oracle={**ORACLE_SPEC["oracle"], "delay_seconds": 1.0},
        trial={"eval_points": EVAL_POINTS},
        axes={"params": {"n_params": [1.0e6, 1.0e7]}, "data": [1.0e7]},
        budget={"trials": 2},
        resources={"cpus_per_trial": 1, "concurrency": 2},  # 1 CPU per node: one trial on each
    )
    storage = tmp_path / "runs"  # on this machine: shared by both nodes
    uri = f"sqlite:///{storage / 'mlflow.db'}"
    cluster = LocalCluster(workers=1, cpus=1, env_extra={"PYTHONPATH": str(ROOT)})
    cluster.start()
    log = tmp_path / "run.log"
    proc = None
    try:
        worker = cluster.nodes[1].proc
        args = ["run", str(spec), "--address", cluster.address, "--storage", str(storage)]
        proc = subprocess.Popen(
            scaler_cmd(*args, "--bootstrap", "0"),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            env=cluster.env(),
        )
        # the trial whose process belongs to the worker node's process group, 2 points in
        watch, found, deadline = ResultWatch(storage / "faults-node"), None, time.time() + 180
        while found is None:
            assert time.time() < deadline and proc.poll() is None, log.read_text()[-3000:]
            for trial_dir, results in watch.settled():
                if 2 <= len(results) < EVAL_POINTS:
                    if worker.pid in _ancestors(results[-1]["pid"]):
                        found = (results[-1]["trial_id"], results[-1]["pid"], trial_dir)
            time.sleep(0.1)
        trial_id, killed, trial_dir = found
        # the node, as if its machine went away: `ray start`, raylet, every process under it
        node = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
        node = [pid for pid in node if worker.pid in _ancestors(pid)]
        assert killed in node
        os.killpg(worker.pid, signal.SIGKILL)
        for pid in node:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        worker.wait(timeout=30)
        assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        cluster.stop()
    assert "2 trials (0 failed)" in log.read_text()

    results = tune_results(trial_dir)
    assert_retried_from_checkpoint(results, killed)
    samples = [r["samples"] for r in results]
    assert len(samples) == EVAL_POINTS

    assert len(scaler.trials("faults-node", tracking_uri=uri)) == 2
    assert_points_once("faults-node", uri, trial_id, samples)
