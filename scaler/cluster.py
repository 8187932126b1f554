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
