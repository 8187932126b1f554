"""Checks a sweep makes of the Ray cluster it runs on, before any trial starts.

Shared storage: Tune's `storage_path` (trial checkpoints, experiment state, the multi-worker
trainers' checkpoints; MLflow's default artifact root is inside it) must be reachable from every
node. On a cluster where it is not, trials fail late and obscurely (a checkpoint written on one
node that its retry on another cannot read); `check_shared_storage` finds out in a second: the
driver writes a token there, a zero-CPU task pinned to each alive node reads it back and writes
its own, and the driver reads those.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

PROBE_DIR = ".scaler-storage-check"
WHAT_TO_SET = (
    "Tune's storage and MLflow's artifact root must be reachable from every node: set --storage "
    "to a folder mounted at the same path on every node (NFS, EFS, Filestore, a ReadWriteMany "
    "volume), or run on one node"
)


class StorageError(ValueError):
    """Storage that not every node of the cluster can reach; the message says what to set."""


def _probe(location: str, token: str, node_id: str) -> str | None:
    """On one node: None if `location` holds the driver's token and takes a file; else why not."""
    folder = Path(location) / PROBE_DIR
    try:
        seen = (folder / f"{token}.driver").read_text()
    except OSError as exc:
        return f"cannot read the driver's probe file there ({exc.strerror or exc})"
    if seen != token:
        return "sees a different file at that path"
    try:
        (folder / f"{token}.{node_id}").write_text(token)
    except OSError as exc:
        return f"cannot write there ({exc.strerror or exc})"
    return None


def check_shared_storage(locations: Sequence[str | Path], timeout: float = 120.0) -> int:
    """Raises StorageError unless every alive node of the connected Ray cluster can read and
    write each of `locations` (local paths, as the driver sees them). Returns the node count.
    A single-node Ray (the driver's own machine) passes without a probe."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) <= 1:
        return len(nodes)
    token = uuid.uuid4().hex
    folders = []
    for loc in locations:
        folder = Path(loc) / PROBE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{token}.driver").write_text(token)
        folders.append(folder)
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    try:
        pending = {
            (str(loc), n["NodeID"], n.get("NodeManagerAddress", "?")): probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(str(loc), token, n["NodeID"])
            for loc in locations
            for n in nodes
        }
        try:
            answers = ray.get(list(pending.values()), timeout=timeout)
        except ray.exceptions.GetTimeoutError:
            raise StorageError(
                f"could not check the storage on every node within {timeout:.0f} s"
            ) from None
        for (loc, node_id, ip), problem in zip(pending, answers, strict=True):
            if problem is None and not (Path(loc) / PROBE_DIR / f"{token}.{node_id}").is_file():
                problem = "writes files there that the driver cannot see"
            if problem:
                raise StorageError(
                    f"storage {loc} is not shared by every Ray node: node {node_id[:12]} ({ip}) "
                    f"{problem}. {WHAT_TO_SET}."
                )
    finally:
        for folder in folders:
            for f in folder.glob(f"{token}.*"):
                f.unlink(missing_ok=True)
            try:
                os.rmdir(folder)
            except OSError:
                pass  # another sweep's probe is running there
    log.info("storage %s reachable from all %d nodes", list(map(str, locations)), len(nodes))
    return len(nodes)


def safe_concurrency(spec) -> int:
    """`resources.concurrency`, lowered where multi-worker trials could deadlock the cluster.

    A multi-worker trial holds its Tune function's resources (`cpus_per_trial`, `gpus_per_trial`)
    while its trainer waits for `workers x cpus_per_worker` (and GPUs) as one placement group. If
    `concurrency` trial functions can take so much that no trainer fits beside them, every trial
    waits forever. So: the largest c <= concurrency with c x per-trial + one trainer <= the
    cluster's resources now (an autoscaling cluster may grow later; set concurrency for that
    size and start it with enough nodes)."""
    import ray

    r, k = spec.resources, spec.trial.workers
    if k <= 1:
        return r.concurrency
    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)

    def fits(c: int) -> bool:
        return (
            c * r.cpus_per_trial + k * r.cpus_per_worker <= cpus + 1e-9
            and c * r.gpus_per_trial + k * r.gpus_per_worker <= gpus + 1e-9
        )

    c = r.concurrency
    while c > 1 and not fits(c):
        c -= 1
    need = (
        f"cpus_per_trial {r.cpus_per_trial:g} + {k} x cpus_per_worker {r.cpus_per_worker:g} CPUs"
        f", {r.gpus_per_trial:g} + {k} x {r.gpus_per_worker:g} GPUs"
    )
    if not fits(c):
        log.warning(
            "one %d-worker trial needs %s but the cluster has %g CPUs, %g GPUs now: trials wait "
            "until an autoscaler adds nodes",
            k,
            need,
            cpus,
            gpus,
        )
    elif c < r.concurrency:
        log.warning(
            "resources.concurrency %d lowered to %d: with %d trials each holding %s, no trainer "
            "would fit in the cluster's %g CPUs, %g GPUs",
            r.concurrency,
            c,
            r.concurrency,
            need,
            cpus,
            gpus,
        )
    return c


# --- cluster addresses --------------------------------------------------------------------
ADDRESS_TIMEOUT_S = 5.0  # a cluster that does not take a TCP connection by then is not there


class AddressError(ValueError):
    """A `--address` with no Ray cluster behind it; the message names the flag and what was tried."""


def _host_port(address: str, default_port: int | None) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        port = parts.port or default_port
    except ValueError:  # a port that is not a number, or out of range
        port = None
    if not parts.hostname or port is None:
        raise AddressError(f"--address {address}: expected HOST:PORT")
    return parts.hostname, port


# HTTP/2's client connection preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, its
# client server) answers with a SETTINGS frame of its own (frame type 4 at byte 3 of 9)
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
GCS_HINT = (
    "a Ray cluster's address is its GCS, HOST:6379 unless `ray start --head --port` said "
    "otherwise; the dashboard's (HOST:8265) is for `scaler submit`"
)
CLIENT_HINT = (
    "Ray's client server is ray://HOST:10001 unless `ray start --head --ray-client-server-port` "
    "said otherwise"
)


def _connect(
    address: str, host: str, port: int, what: str, timeout: float, grpc_hint: str | None = None
) -> None:
    """Raises AddressError unless `host:port` takes a TCP connection within `timeout`; with a
    `grpc_hint` (said when it fails) it must also answer HTTP/2, so a dashboard or any other
    non-gRPC server there fails in seconds instead of after Ray's retries (skipped under
    RAY_USE_TLS, whose handshake comes first)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            if grpc_hint is None or os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return
            conn.sendall(H2_PREFACE)
            reply = b""
            try:
                while len(reply) < 9 and (chunk := conn.recv(9 - len(reply))):
                    reply += chunk
            except (TimeoutError, OSError):
                pass
            if len(reply) == 9 and reply[3] == 4:
                return
            got = f"it answered {reply!r}" if reply else f"no gRPC answer within {timeout:g} s"
            raise AddressError(
                f"--address {address}: something takes connections at {host}:{port}, but it is "
                f"not a {what} ({got}); {grpc_hint}"
            )
    except TimeoutError:
        why = f"no answer within {timeout:g} s"
    except OSError as exc:
        why = (exc.strerror or str(exc)).lower()
    raise AddressError(
        f"--address {address}: no {what} answers at {host}:{port} ({why}); start the cluster "
        "(ray start --head) or fix the address"
    )


def _token_source() -> str:
    """Where Ray reads this client's token from (the order Ray reads them in)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    return os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token"


def auth_error(address: str) -> AddressError:
    """The one line for a cluster that refused this client's credentials (Ray 2.60 token
    authentication): what is missing here and what to set."""
    from scaler.localcluster import auth_token

    mode = os.environ.get("RAY_AUTH_MODE", "disabled")
    if mode.lower() != "token":
        why = f"RAY_AUTH_MODE is {mode!r} here, so no token was sent"
    elif not auth_token():
        why = "no token was found here"
    else:
        why = f"rejected the token from {_token_source()}"
    return AddressError(
        f"--address {address}: the Ray cluster there requires token authentication and {why}; "
        "set RAY_AUTH_MODE=token and put the cluster's token in ~/.ray/auth_token (or "
        "RAY_AUTH_TOKEN)"
    )


def _check_gcs_auth(address: str, host: str, port: int, timeout: float) -> None:
    """Raises `auth_error` if the GCS at host:port refuses the credentials `ray.init` would send
    (Ray's own client otherwise logs a warning a second and then fails without saying why)."""
    import grpc
    from ray._private.authentication.grpc_authentication_client_interceptor import (
        _get_authentication_metadata_tuple,
    )
    from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc
    from ray.exceptions import AuthenticationError

    try:
        metadata = _get_authentication_metadata_tuple()
    except AuthenticationError:  # token mode, and RAY_AUTH_TOKEN_PATH names no readable file
        raise auth_error(address) from None
    with grpc.insecure_channel(f"{host}:{port}") as channel:
        stub = gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel)
        try:
            stub.GetClusterId(
                gcs_service_pb2.GetClusterIdRequest(), metadata=metadata, timeout=timeout
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise auth_error(address) from None
            # anything else is left to ray.init, which says more about it


def resolve_ray_address(address: str) -> str | None:
    """The GCS address `ray.init(address=...)` will connect to (None: Ray starts a local one).

    `auto` is resolved as Ray does (RAY_ADDRESS, then the address file of the last `ray start`
    under RAY_TMPDIR, then any GCS process on this machine)."""
    if address == "local":
        return None
    if address != "auto":
        return address
    from ray._private.services import get_ray_address_from_environment

    try:
        found = get_ray_address_from_environment("auto", None)
    except ConnectionError:
        found = None
    if not found or found == "auto":
        raise AddressError(
            "--address auto: no running Ray cluster found on this machine (no RAY_ADDRESS, no "
            "address file of a `ray start`); start one (ray start --head) or drop --address"
        )
    return found


def check_ray_address(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """Raises AddressError within `timeout` unless a Ray cluster takes connections at `address`
    (`HOST:PORT` of its GCS, `auto`, or `ray://HOST:PORT`) and, for a GCS, takes the credentials
    this process would send (token authentication). `ray.init` on a dead address retries for
    minutes, and on refused credentials fails without saying why; this finds out in seconds."""
    target = resolve_ray_address(address)
    if target is None:
        return
    client = target.startswith("ray://")
    host, port = _host_port(target, 10001 if client else None)
    shown = address if target == address else f"{address} (= {target})"
    what, hint = ("Ray client server", CLIENT_HINT) if client else ("Ray cluster (GCS)", GCS_HINT)
    _connect(shown, host, port, what, timeout, grpc_hint=hint)
    if not client and os.environ.get("RAY_USE_TLS", "0").lower() not in ("1", "true"):
        _check_gcs_auth(shown, host, port, timeout)


def check_dashboard_address(address: str, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """Raises AddressError within `timeout` unless something takes connections at the Ray
    dashboard address given to `scaler submit`: `http(s)://HOST:PORT`, or `HOST:PORT` (HTTP, as
    Ray's job client reads it). Other forms (`auto`, `ray://`) are left to Ray."""
    if "://" not in address and address != "auto":
        address = f"http://{address}"
    if not address.startswith(("http://", "https://")):
        return
    host, port = _host_port(address, 443 if address.startswith("https://") else 80)
    _connect(address, host, port, "Ray dashboard", timeout)
