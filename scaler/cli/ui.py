"""`scaler ui [--tracking-uri URI] [--port P] [--host H]` — the MLflow UI on a sweep's store.

Starts a real `mlflow server`, bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import os
import sys

from scaler.query import resolve_uri


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="start the MLflow UI on the sweep store (127.0.0.1 by default)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: ./scaler_runs/mlflow.db)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")


def server_command(uri: str, host: str, port: int) -> list[str]:
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    return [
        mlflow,
        "server",
        "--backend-store-uri",
        uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def sweep_urls(uri: str, base: str) -> list[str]:
    """One line per sweep in the store: its experiment's runs page and its parent run."""
    from mlflow.tracking import MlflowClient

    from scaler.query import sweeps

    try:
        df = sweeps(uri)
    except Exception:  # a store that does not exist yet, or an unreachable server
        return []
    client = MlflowClient(uri)
    lines = []
    for row in df.sort_values("start_time").itertuples():
        exp = client.get_run(row.run_id).info.experiment_id
        lines.append(
            f"  sweep {row.sweep}: runs {base}/#/experiments/{exp}/runs  "
            f"sweep run {base}/#/experiments/{exp}/runs/{row.run_id}"
        )
    return lines


def run(args) -> int:
    if not 0 < args.port < 65536:
        raise ValueError(f"--port is {args.port}, but must be in 1..65535")
    uri = resolve_uri(args.tracking_uri)
    cmd = server_command(uri, args.host, args.port)
    base = f"http://{args.host}:{args.port}"
    print(f"MLflow UI on {base}  (store {uri}); Ctrl-C stops it", flush=True)
    for line in sweep_urls(uri, base):
        print(line, flush=True)
    os.execv(cmd[0], cmd)  # replace this process: signals reach the server directly
