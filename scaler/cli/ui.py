"""`scaler ui [--tracking-uri URI] [--port P] [--host H] [--open]` — the MLflow UI on a sweep's
store.

Starts a real `mlflow server`, bound to 127.0.0.1 unless told otherwise, and prints the URL of each
sweep's runs page and of its parent run (the sweep's laws, plots and description). With `--open`
the newest sweep's runs page opens in a browser once the server answers; without it, where a
browser can be opened, the output says so.
"""

from __future__ import annotations

import os
import subprocess
import sys


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="start the MLflow UI on the sweep store (127.0.0.1 by default)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: ./scaler_runs/mlflow.db)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument(
        "--open", action="store_true", help="open the newest sweep's runs page in a browser"
    )


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


# MLflow 3's UI has two modes, GenAI and model training, and a page opened by its link alone (a
# run's page, say) shows in the one last used, GenAI on a fresh browser: its breadcrumb then says
# "Evaluations". The query parameter selects model training.
TRAINING = "?workflowType=machine_learning"


def sweep_urls(uri: str, base: str) -> list[tuple[str, str, str]]:
    """(sweep, runs page, parent run page) per sweep in the store, oldest first, opening in the
    UI's model-training mode."""
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
        pages = f"{base}/#/experiments/{exp}/runs"
        lines.append((row.sweep, f"{pages}{TRAINING}", f"{pages}/{row.run_id}{TRAINING}"))
    return lines


def browser_available() -> bool:
    """A browser `webbrowser` would use (none on a headless server without one installed)."""
    import webbrowser

    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return False
    try:
        webbrowser.get()
        return True
    except webbrowser.Error:
        return False


OPEN_WHEN_UP = """
import sys, time, urllib.request, webbrowser
health, url = sys.argv[1], sys.argv[2]
for _ in range(120):
    try:
        urllib.request.urlopen(health, timeout=1)
        webbrowser.open(url)
        break
    except OSError:
        time.sleep(0.5)
"""


def run(args) -> int:
    if not 0 < args.port < 65536:
        raise ValueError(f"--port is {args.port}, but must be in 1..65535")
    from scaler.query import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    cmd = server_command(uri, args.host, args.port)
    base = f"http://{args.host}:{args.port}"
    print(f"MLflow UI on {base}  (store {uri}); Ctrl-C stops it", flush=True)
    found = sweep_urls(uri, base)
    for sweep, runs, parent in found:
        print(f"  sweep {sweep}: runs {runs}  sweep run {parent}", flush=True)
    target = found[-1][1] if found else base
    if args.open:
        # the server replaces this process: a small detached process opens the page once it answers
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_UP, f"{base}/health", target],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        print(f"opening {target} in your browser", flush=True)
    elif browser_available():
        print("  (scaler ui --open opens the newest sweep's runs page in your browser)", flush=True)
    os.execv(cmd[0], cmd)  # replace this process: signals reach the server directly
