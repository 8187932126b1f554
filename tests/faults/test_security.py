"""Security defaults: loopback servers, no eval of user text, no secrets in the record."""

from __future__ import annotations

import re
from pathlib import Path

from scaler.cli import build_parser
from scaler.cli.ui import server_command
from scaler.secrets import redact_params, redact_uri
from scaler.tracking import SweepTracker

PACKAGE = Path(__file__).resolve().parents[2] / "scaler"


def test_ui_binds_loopback_unless_told():
    args = build_parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"
    cmd = server_command("sqlite:///x.db", args.host, args.port)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"


def test_no_eval_exec_or_foreign_pickle_in_the_package():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        for no, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if re.search(r"(?<![\w.])(eval|exec)\(", code) or "0.0.0.0" in code:
                offenders.append(f"{path.name}:{no}: {line.strip()}")
            # the only pickles read are the sweep's own state in the user's Tune experiment dir
            # (state_backup.read_state: the searcher's, Tune's callbacks', the backup of both)
            if "pickle.load" in code and path.name != "state_backup.py":
                offenders.append(f"{path.name}:{no}: {line.strip()}")
    assert not offenders, offenders


def test_redact_uri_and_params():
    assert redact_uri("https://bob:s3cr3t@mlflow.example/x?token=abc&a=1") == (
        "https://***@mlflow.example/x?token=***&a=1"
    )
    assert redact_uri("sqlite:////tmp/m.db") == "sqlite:////tmp/m.db"
    out = redact_params({"tracking.uri": "https://u:tok@h", "dlrm.api_key": "k", "seed": "0"})
    assert out == {"tracking.uri": "https://***@h", "dlrm.api_key": "***", "seed": "0"}


def test_tracking_token_never_logged_as_param(tmp_path):
    tracker = SweepTracker(f"sqlite:///{tmp_path / 'm.db'}", "sec")
    spec = {"name": "s", "tracking": {"uri": "https://alice:ghp_TOKEN123@mlflow.example"}}
    run_id = tracker.start_sweep("s", spec, "f" * 16)
    params = tracker.client.get_run(run_id).data.params
    assert params["tracking.uri"] == "https://***@mlflow.example"
    assert not any("ghp_TOKEN123" in v for v in params.values())
    art = Path(tracker.client.download_artifacts(run_id, "spec.json", str(tmp_path)))
    assert "ghp_TOKEN123" not in art.read_text()


def test_a_local_ray_started_by_a_sweep_keeps_its_auth_token_private(tmp_path):
    """Ray's token authentication: a token Ray generates itself is written readable by every
    user (mode 644); the sweep's local Ray uses one written for this user only (600)."""
    import os
    import subprocess
    import sys

    token = tmp_path / ".ray" / "auth_token"  # where Ray looks by default, under this HOME
    env = {**os.environ, "HOME": str(tmp_path), "RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS", "RAY_AUTH_MODE"):
        env.pop(name, None)
    code = "import ray; from scaler.sweep import init_ray; init_ray(None); ray.shutdown()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert token.is_file()
    assert token.stat().st_mode & 0o777 == 0o600
