"""MLflow's client in its own process (scaler.client_process), as a sweep's driver uses it: the
same results and errors as an in-process client, a child killed mid-sweep costs a retry and no
point, and the child does not outlive a killed driver. Real sqlite stores, no Ray: seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from scaler.client_process import ClientProcess
from scaler.fitter import OnlineFitter
from scaler.tracking import SweepTracker
from scaler.tune.callbacks import SweepCallback
from tests.faults.helpers import assert_no_duplicate_points
from tests.faults.test_exactly_once import STEPS, TRIAL, history, point


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a parent that does not reap it has exited)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_calls_return_mlflows_entities_and_raise_its_errors(uri):
    client = ClientProcess(uri)
    try:
        eid = client.create_experiment("x")
        run = client.create_run(eid, tags={"k": "v"})
        client.log_param(run.info.run_id, "p", "1")
        assert MlflowClient(uri).get_run(run.info.run_id).data.params == {"p": "1"}
        assert client.get_run(run.info.run_id).data.tags["k"] == "v"
        with pytest.raises(MlflowException, match="not found"):
            client.get_run("no-such-run")
        assert client.get_run(run.info.run_id).info.run_id == run.info.run_id  # still serving
    finally:
        client.close()
    assert client._proc is None


def test_a_killed_client_process_costs_a_retry_and_no_point(uri):
    """The child killed while a sweep's events are queued: the outbox's next attempt starts a
    new one, and every point lands exactly once."""
    tracker = SweepTracker(uri, "own-process", own_process=True)
    callback = SweepCallback(tracker, OnlineFitter(), background=True)
    tracker.start_sweep("sweep", {}, "fingerprint")
    trials = [SimpleNamespace(trial_id=f"t{i}", config={**TRIAL.config, "i": i}) for i in range(3)]
    first_pid = tracker.client._proc.pid
    for n, t in enumerate(trials):
        callback.on_trial_start(0, [], t)
        for s in STEPS:
            callback.on_trial_result(0, [], t, point(s).to_dict())
        if n == 1:
            os.kill(tracker.client._proc.pid, signal.SIGKILL)
        callback.on_trial_complete(0, [], t)
    assert callback.outbox.flush(60)
    callback.outbox.close()
    assert tracker.client._proc.pid != first_pid
    run_ids = [callback.runs[t.trial_id] for t in trials]
    assert len(set(run_ids)) == len(trials)
    assert assert_no_duplicate_points(MlflowClient(uri), run_ids) == len(trials) * len(STEPS)
    for run_id in run_ids:
        assert [s for s, _ in history(uri, run_id)] == STEPS
    tracker.close()


def test_the_client_process_goes_when_its_driver_is_killed(uri, tmp_path):
    pid_file = tmp_path / "child.pid"
    driver = (
        "import os, signal, sys; from scaler.client_process import ClientProcess\n"
        f"c = ClientProcess({uri!r}); c.create_experiment('x')\n"
        f"open({str(pid_file)!r}, 'w').write(str(c._proc.pid))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", driver], timeout=120)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child), "the MLflow client process outlived its killed driver"
