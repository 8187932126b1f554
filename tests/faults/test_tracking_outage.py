"""MLflow tracking server down ~30 s mid-sweep (a real `mlflow server` on loopback, stopped and
restarted on the same sqlite store): trials keep going, writes are buffered and retried, and the
record is complete afterwards."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import scaler
from tests.faults.helpers import (
    assert_sweep_points_once,
    kill_group,
    slow_oracle,
    start,
    wait_for,
    write_spec,
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(store: Path, port: int, log: Path) -> subprocess.Popen:
    mlflow = Path(sys.executable).parent / "mlflow"
    return subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--artifacts-destination",
            str(store / "artifacts"),
        ],
        stdout=log.open("a"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_healthy(port: int, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow server on port {port} not healthy within {timeout} s")


@pytest.mark.slow
def test_tracking_server_down_30s_mid_sweep_loses_nothing(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    server_log = tmp_path / "server.log"
    server = _server(store, port, server_log)
    sweep = None
    try:
        _wait_healthy(port)
        spec = write_spec(
            tmp_path / "s.yaml",
            name="faults-outage",
            oracle=slow_oracle(1.0),
        )
        log = tmp_path / "run.log"
        sweep = start(
            [
                "run",
                str(spec),
                "--storage",
                str(tmp_path / "runs"),
                "--tracking-uri",
                uri,
                "--bootstrap",
                "5",
            ],
            log,
        )
        wait_for(log, "trials done 2 ", sweep, timeout=180)
        kill_group(server)  # the server is down ...
        down_at = time.time()
        wait_for(log, "trials done 5 ", sweep, timeout=120)  # ... and trials keep finishing
        time.sleep(max(0.0, 30 - (time.time() - down_at)))
        server = _server(store, port, server_log)
        assert sweep.wait(timeout=300) == 0, log.read_text()[-3000:]
        assert "MLflow unreachable" in log.read_text()
        trials = scaler.trials("faults-outage", tracking_uri=uri)
        assert len(trials) == 12 and trials["trial_id"].is_unique
        assert (trials["status"] == "completed").all()
        points = scaler.points("faults-outage", tracking_uri=uri)
        assert len(points) == 12 * 4
        assert not points[["trial_id", "samples"]].duplicated().any()
        # retried writes (some landed before the server went away) are in the raw history once
        assert assert_sweep_points_once("faults-outage", uri) == 12 * 4
        assert "joint" in scaler.laws("faults-outage", tracking_uri=uri)
    finally:
        if sweep is not None:
            kill_group(sweep)
        kill_group(server)
