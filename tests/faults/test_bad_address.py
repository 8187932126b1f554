"""A cluster address that does not answer: `scaler run --address` / `scaler submit --address`
fail in seconds (Ray's own connect retries for minutes) with one line naming `--address` and what
was tried, exit 2, and record nothing."""

from __future__ import annotations

import http.server
import re
import threading
import time

import pytest

from scaler.localcluster import free_port
from tests.faults.helpers import run, write_spec

FAST_S = 25  # the CLI's imports included, on 2 busy cores; Ray alone retries for minutes


def _one_error_line(out, command: str) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith(f"scaler {command}: error: --address "), lines[0]
    return lines[0]


@pytest.mark.parametrize("how", ["host:port", "auto via RAY_ADDRESS"])
def test_run_with_dead_address_fails_fast_naming_it(tmp_path, how):
    port = free_port()  # bound and released: nothing listens there
    spec = write_spec(tmp_path / "s.yaml", name="faults-address")
    storage = tmp_path / "runs"
    address, env = f"127.0.0.1:{port}", None
    if how.startswith("auto"):
        address, env = "auto", {"RAY_ADDRESS": f"127.0.0.1:{port}"}
    start = time.time()
    out = run(["run", str(spec), "--address", address, "--storage", str(storage)], 120, env)
    elapsed = time.time() - start
    assert out.returncode == 2, out.stderr[-3000:]
    line = _one_error_line(out, "run")
    assert f"127.0.0.1:{port}" in line and "connection refused" in line, line
    assert elapsed < FAST_S, f"took {elapsed:.1f} s"
    assert not (storage / "mlflow.db").exists()  # no MLflow run
    assert not (storage / "faults-address").exists()  # no Tune experiment


def test_submit_with_dead_or_wrong_address_fails_fast_naming_it(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", name="faults-address")
    port = free_port()
    args = ["submit", str(spec), "--working-dir", str(tmp_path), "--storage", str(tmp_path)]
    start = time.time()
    out = run([*args, "--address", f"http://127.0.0.1:{port}"], 120)
    elapsed = time.time() - start
    assert out.returncode == 2, out.stderr[-3000:]
    line = _one_error_line(out, "submit")
    assert f"http://127.0.0.1:{port}" in line and "no Ray dashboard answers" in line, line
    assert elapsed < FAST_S, f"took {elapsed:.1f} s"

    # something answers HTTP there, but it is not a Ray dashboard
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        out = run([*args, "--address", url], 120)
    finally:
        server.shutdown()
    assert out.returncode == 2, out.stderr[-3000:]
    assert url in _one_error_line(out, "submit")
    assert not list(tmp_path.glob("**/mlflow.db"))


def test_address_checks_in_process():
    import socket

    from scaler.cluster import AddressError, check_dashboard_address, check_ray_address

    for bad in ["nonsense", "127.0.0.1:http", "127.0.0.1:70000"]:
        with pytest.raises(AddressError, match=f"^--address {bad}: expected HOST:PORT$"):
            check_ray_address(bad)
    check_ray_address("local")  # Ray starts a local one: nothing to probe
    check_dashboard_address("ray://head:10001")  # left to Ray's job client
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_dashboard_address(f"127.0.0.1:{port}")  # HTTP, as Ray's job client reads it
        # takes connections but says nothing: not a GCS (which answers HTTP/2 at once)
        for address, what in [("", "Ray cluster (GCS)"), ("ray://", "Ray client server")]:
            with pytest.raises(
                AddressError,
                match=rf"127.0.0.1:{port}: something takes connections .* not a {re.escape(what)} "
                r"\(no gRPC answer within 0.5 s\)",
            ):
                check_ray_address(f"{address}127.0.0.1:{port}", timeout=0.5)
    with pytest.raises(AddressError, match=rf"ray://127.0.0.1:{port}: no Ray client server"):
        check_ray_address(f"ray://127.0.0.1:{port}")


def test_a_gcs_passes_and_an_http_server_is_named_not_one(ray_local, tmp_path):
    """The gRPC check takes a real GCS; the dashboard's port (HTTP) fails in seconds, naming the
    GCS port to use instead."""
    from scaler.cluster import AddressError, check_ray_address

    check_ray_address(ray_local.get_runtime_context().gcs_address)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_address[1]}"
    try:
        start = time.time()
        with pytest.raises(AddressError) as err:
            check_ray_address(address)
        assert time.time() - start < 2
        spec = write_spec(tmp_path / "s.yaml", name="faults-address")
        out = run(["run", str(spec), "--address", address, "--storage", str(tmp_path)], 120)
    finally:
        server.shutdown()
    assert "not a Ray cluster (GCS) (it answered b'" in str(err.value)
    assert "HOST:6379" in str(err.value) and "scaler submit" in str(err.value)
    assert out.returncode == 2 and str(err.value) in _one_error_line(out, "run")
    assert not (tmp_path / "mlflow.db").exists()


def test_auth_error_says_what_is_missing_and_what_to_set(monkeypatch, tmp_path):
    from scaler.cluster import auth_error

    what_to_set = (
        "; set RAY_AUTH_MODE=token and put the cluster's token in ~/.ray/auth_token (or "
        "RAY_AUTH_TOKEN)"
    )
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    head = "--address h:1: the Ray cluster there requires token authentication and "
    assert str(auth_error("h:1")) == (
        head + "RAY_AUTH_MODE is 'disabled' here, so no token was sent" + what_to_set
    )
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "none"))
    assert str(auth_error("h:1")) == head + "no token was found here" + what_to_set
    monkeypatch.setenv("RAY_AUTH_TOKEN", "deadbeef")
    assert str(auth_error("h:1")) == (head + "rejected the token from RAY_AUTH_TOKEN" + what_to_set)


def test_run_with_a_wrong_token_fails_fast_in_one_line(ray_local, tmp_path):
    """The session's Ray runs with token authentication (ray.init's default in Ray 2.60): a
    client with another token gets one line, in seconds, instead of Ray's warning a second."""
    gcs = ray_local.get_runtime_context().gcs_address
    spec = write_spec(tmp_path / "s.yaml", name="faults-address")
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}
    start = time.time()
    out = run(["run", str(spec), "--address", gcs, "--storage", str(tmp_path)], 120, env)
    assert out.returncode == 2, out.stderr[-3000:]
    line = _one_error_line(out, "run")
    assert "requires token authentication and rejected the token from RAY_AUTH_TOKEN" in line
    assert "set RAY_AUTH_MODE=token" in line
    assert time.time() - start < FAST_S
    assert not (tmp_path / "mlflow.db").exists()
