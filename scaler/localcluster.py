"""A multi-node Ray cluster on one machine: `ray start --head` plus worker nodes on loopback.

For trying `scaler submit` and `scaler run --address` without a cloud (cluster/local_cluster.sh),
and for the tests. Each node is a `ray start --block` process in its own process group, so
`stop()` ends exactly the processes this cluster started (never `ray stop`, which would end every
Ray on the machine). All ports are picked free, and the cluster keeps its session files and its
address file under its own RAY_TMPDIR, so `ray.init()` elsewhere on the machine does not see it.

    with LocalCluster(workers=1, cpus=2) as cluster:
        cluster.address            # "127.0.0.1:PORT" (GCS), for ray.init / scaler run --address
        cluster.dashboard_url      # "http://127.0.0.1:PORT", for scaler submit --address
        cluster.env()              # the environment a client on this machine should use

    python -m scaler.localcluster up --workers 1 --cpus 2   # prints commands; Ctrl-C stops it

The nodes run with Ray's token authentication (`RAY_AUTH_MODE=token`); the token is Ray's usual
one (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), written to ~/.ray/auth_token when
there is none. A client needs `RAY_AUTH_MODE=token` and that token: `env()` has both, and the
commands `up` prints carry the first (the token file is found by itself).

`isolate` lists folders a worker node must *not* share with the head: that node runs in a private
mount namespace (Linux, `unshare -m`, root) with an empty tmpfs over each of them, as if it were
another machine without that mount (used to test the shared-storage check).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

RAY = str(Path(sys.executable).parent / "ray")
# what a client of this cluster must set besides the token: Ray's default mode is "disabled"
CLIENT_ENV = {"RAY_AUTH_MODE": "token"}


def whole_cpus(value: float, name: str = "cpus", low: int = 0) -> int:
    """`ray start --num-cpus` takes an integer: `value` as one, or ValueError naming `name`."""
    if not (math.isfinite(value) and value == int(value) and value >= low):
        raise ValueError(
            f"{name} is {value:g}, but must be a whole number >= {low} "
            "(ray start --num-cpus takes an integer)"
        )
    return int(value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def can_isolate() -> bool:
    """Whether this machine lets us start a node in a private mount namespace."""
    if shutil.which("unshare") is None or not sys.platform.startswith("linux"):
        return False
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


@dataclass
class _Node:
    name: str
    proc: subprocess.Popen
    log_path: Path


@dataclass
class LocalCluster:
    workers: int = 1
    cpus: int = 2  # logical CPUs per node (may exceed the machine's cores); whole, as ray start
    head_cpus: int | None = None  # default: cpus
    object_store_mb: int = 200
    isolate: list[str] = field(default_factory=list)  # folders hidden from worker nodes
    env_extra: dict[str, str] = field(default_factory=dict)  # e.g. PYTHONPATH for the nodes
    tmp: Path | None = None

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise ValueError(f"workers is {self.workers}, but must be >= 0")
        self.cpus = whole_cpus(self.cpus)
        if self.head_cpus is not None:
            self.head_cpus = whole_cpus(self.head_cpus, "head_cpus")
        self.nodes: list[_Node] = []
        self.gcs_port = free_port()
        self.dashboard_port = free_port()
        self._own_tmp = self.tmp is None
        # short: Ray's Unix socket paths live under it and must stay < 108 characters
        self.tmp = Path(self.tmp or tempfile.mkdtemp(prefix="scl-", dir="/tmp"))

    # --- addresses --------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self) -> dict[str, str]:
        """Environment for processes that talk to this cluster (its RAY_TMPDIR: `--address
        auto` finds this cluster, and no other Ray on the machine finds it)."""
        env = {**os.environ, **self.env_extra}
        env["RAY_TMPDIR"] = str(self.tmp)
        # `python` in a job's entrypoint is this interpreter, as on a cluster built from one image
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.update(CLIENT_ENV)  # explicit: nodes and clients must agree (Ray 2.60)
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        env.setdefault("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")  # stop() is a teardown
        env.pop("RAY_ADDRESS", None)
        return env

    # --- life cycle -------------------------------------------------------------------------
    def _ports(self) -> list[str]:
        return [
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            "--min-worker-port=0",
            "--max-worker-port=0",
        ]

    def _launch(self, name: str, args: list[str], isolate: bool = False) -> None:
        log_path = self.tmp / f"{name}.log"
        cmd = [RAY, "start", "--block", "--disable-usage-stats", *args, *self._ports()]
        if isolate and self.isolate:
            mounts = " && ".join(
                f"mount -t tmpfs scaler-isolated {shlex.quote(p)}" for p in self.isolate
            )
            cmd = [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                f"{mounts} && exec {shlex.join(cmd)}",
            ]
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() signals only it
            )
        self.nodes.append(_Node(name, proc, log_path))

    def start(self, timeout: float = 120) -> LocalCluster:
        if self.isolate and not can_isolate():
            raise RuntimeError("isolate needs Linux mount namespaces (unshare -m, as root)")
        for p in self.isolate:
            Path(p).mkdir(parents=True, exist_ok=True)
        ensure_auth_token()  # `ray start` in token mode refuses to start without one
        head_cpus = self.cpus if self.head_cpus is None else self.head_cpus
        self._launch(
            "head",
            [
                "--head",
                "--node-ip-address=127.0.0.1",
                f"--port={self.gcs_port}",
                f"--num-cpus={head_cpus}",
                f"--object-store-memory={self.object_store_mb * 2**20}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
            ],
        )
        try:
            self._wait_nodes(1, timeout)
            for i in range(self.workers):
                self._launch(
                    f"worker{i + 1}",
                    [
                        f"--address={self.address}",
                        "--node-ip-address=127.0.0.1",
                        # its own session files: nodes sharing one would also share (and
                        # garbage-collect) each other's runtime_env working dirs
                        f"--temp-dir={self.tmp / f'w{i + 1}'}",
                        f"--num-cpus={self.cpus}",
                        f"--object-store-memory={self.object_store_mb * 2**20}",
                    ],
                    isolate=True,
                )
            self._wait_nodes(1 + self.workers, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def alive_nodes(self) -> list[dict]:
        """The cluster's alive nodes, from the dashboard's REST API (no Ray client needed)."""
        request = urllib.request.Request(
            f"{self.dashboard_url}/nodes?view=summary", headers=auth_headers()
        )
        with urllib.request.urlopen(request, timeout=5) as r:
            summary = json.load(r)["data"]["summary"]
        return [n for n in summary if n["raylet"]["state"] == "ALIVE"]

    def _wait_nodes(self, n: int, timeout: float) -> None:
        deadline = time.time() + timeout
        while True:
            for node in self.nodes:
                if node.proc.poll() is not None:
                    raise RuntimeError(
                        f"ray node {node.name} exited ({node.proc.returncode}): "
                        + node.log_path.read_text()[-3000:]
                    )
            try:
                if len(self.alive_nodes()) >= n:
                    return
            except (OSError, KeyError, ValueError):
                pass  # dashboard not up yet
            if time.time() > deadline:
                raise TimeoutError(f"{n} Ray nodes not alive after {timeout} s; logs in {self.tmp}")
            time.sleep(1)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM each node's process group (`ray start --block` then stops its node), SIGKILL
        what is left after `grace` seconds. Workers first, the head last."""
        for node in reversed(self.nodes):
            _signal_group(node.proc, signal.SIGTERM)
            try:
                node.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(node.proc, signal.SIGKILL)
            node.proc.wait(timeout=10)
        self.nodes.clear()
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def auth_token() -> str | None:
    """Ray's token (token authentication: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.read_text().strip() if path.is_file() else None


def ensure_auth_token() -> None:
    """Writes a new token to Ray's token file (~/.ray/auth_token, or RAY_AUTH_TOKEN_PATH) unless
    there is one, as `ray get-auth-token --generate` does; readable by this user only."""
    if auth_token():
        return
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another cluster wrote one meanwhile: use that
        return
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))  # Ray's own token: 256 random bits, hex
    log.info("wrote a new Ray auth token to %s", path)


def auth_headers() -> dict[str, str]:
    token = auth_token()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group this cluster created for the node (its own pgid)
    except ProcessLookupError:
        pass


def _cpus_arg(text: str) -> int:
    try:
        value = float(text)
        return whole_cpus(value, low=1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text} is not a whole number >= 1 (ray start --num-cpus takes an integer)"
        ) from None


def client_commands(cluster: LocalCluster, scaler: str) -> list[str]:
    """What `up` prints: complete commands for another shell in the project folder (each carries
    the environment a client needs; the token is found in its file). The first two are the quick
    start of cluster/README.md, verbatim but for the port."""
    env = " ".join(f"{k}={v}" for k, v in CLIENT_ENV.items())
    return [
        f"{env} {scaler} submit search_spaces/oracle.yaml --address {cluster.dashboard_url} "
        '--storage "$PWD/scaler_runs/cluster" --follow',
        f'{scaler} ui --tracking-uri "sqlite:///$PWD/scaler_runs/cluster/mlflow.db"',
        f"{env} RAY_TMPDIR={cluster.tmp} {scaler} run SPEC.yaml --address auto",
        f"{env} {scaler} run SPEC.yaml --address {cluster.address}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cluster/local_cluster.sh",
        description="A Ray cluster of several nodes on this machine, for trying scaler submit.",
    )
    parser.add_argument("command", choices=["up"])
    parser.add_argument("--workers", type=int, default=1, help="worker nodes besides the head")
    parser.add_argument(
        "--cpus", type=_cpus_arg, default=2, help="logical CPUs per node, a whole number"
    )
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error(f"--workers is {args.workers}, but must be >= 0")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cluster = LocalCluster(workers=args.workers, cpus=args.cpus).start()
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    here = Path.cwd()
    scaler = Path(sys.executable).parent / "scaler"
    shown = scaler.relative_to(here) if scaler.is_relative_to(here) else scaler
    print(f"Ray cluster up: {1 + args.workers} nodes, {args.cpus} CPUs each", flush=True)
    print(f"In another shell, in {here} (SPEC.yaml: any search space there):")
    for line in client_commands(cluster, str(shown)):
        print(f"  {line}")
    print("Ctrl-C stops it.", flush=True)
    stop = {"now": False}

    def _stop(*_):
        stop["now"] = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    while not stop["now"]:
        time.sleep(0.5)
    cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
