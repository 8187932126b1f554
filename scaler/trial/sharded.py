"""One DLRM trial over k processes: TorchRec `DistributedModelParallel`, tables sharded by a plan.

    # in every rank of an initialised process group (gloo on CPU, nccl on GPU)
    trial = ShardedDLRMTrial(config, checkpoint=None, sharding_types=("table_wise",))
    for point in trial.run():          # the same EvalPoints on every rank
        state = trial.state_dict()     # collective: the full checkpoint on rank 0, None elsewhere

The model is the single-process trial's (`DLRMTrial`, same seed, same initial weights); TorchRec's
planner places each table (table_wise / column_wise / table_column_wise with the fused kernel on
CPU; also row_wise / table_row_wise on GPU) and DMP wraps the MLPs in DDP.

Equivalence with one worker (what the tests check):

- Data: global batch i is the one the single-process trial trains on; rank r takes rows
  [r n / k, (r + 1) n / k) of it, generated directly (batch i is a pure function of seed and i).
- Loss: rank r minimises (k / n) x (sum of its rows' losses). DDP averages dense gradients over
  ranks, so they equal the single-process mean-loss gradient. Embedding rows get the *sum* over
  ranks, k times that gradient: row-wise Adagrad and Adagrad are invariant to a constant factor,
  and plain SGD gets its learning rate divided by k.
- Accounting: FLOPs are per-sample FLOPs x global samples (the sum over workers); device-seconds
  are the sum of every rank's training and evaluation seconds.
- Checkpoints have the single-process format (full tables, full optimizer state), gathered on
  rank 0; any world size resumes from any other's checkpoint.

Limits: every rank first builds the whole single-process model (that is what makes the initial
weights identical), and checkpoints gather whole tables on rank 0, so the tables must fit one
device's memory at start and rank 0's host memory at a checkpoint. Larger tables need meta-device
initialisation and sharded (torch.distributed.checkpoint) checkpoints.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torchrec.datasets.utils import Batch
from torchrec.distributed.fused_embeddingbag import FusedEmbeddingBagCollectionSharder
from torchrec.distributed.model_parallel import DistributedModelParallel
from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
from torchrec.distributed.types import ShardingPlan
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from scaler.data.synthetic import TRAIN
from scaler.records import EvalPoint
from scaler.trial.config import DLRMTrialConfig
from scaler.trial.dlrm import CHECKPOINT_VERSION, DLRMTrial, restore_rows_read, rows_read_entry
from scaler.trial.metrics import log_loss, normalized_entropy, roc_auc

logger = logging.getLogger(__name__)

_SEP = "\x00"
CPU_SHARDING_TYPES = ("table_wise", "column_wise", "table_column_wise")
GPU_SHARDING_TYPES = (*CPU_SHARDING_TYPES, "row_wise", "table_row_wise")


def allowed_sharding_types(device_type: str) -> tuple[str, ...]:
    """Sharding types of the fused kernel TorchRec supports on a device type."""
    return GPU_SHARDING_TYPES if device_type == "cuda" else CPU_SHARDING_TYPES


def check_sharding_types(types: Sequence[str], device_type: str) -> tuple[str, ...]:
    allowed = allowed_sharding_types(device_type)
    bad = [t for t in types if t not in allowed]
    if bad or not types:
        raise ValueError(
            f"sharding types {list(types)} are not available on {device_type}: "
            f"choose from {list(allowed)}"
        )
    return tuple(types)


def sharding_plan(
    model: nn.Module,
    world_size: int,
    device: torch.device,
    sharding_types: Sequence[str] | None = None,
    group: dist.ProcessGroup | None = None,
) -> ShardingPlan:
    """TorchRec's planner over `model`'s tables, restricted to `sharding_types`; every rank gets
    the same plan (computed on rank 0 and broadcast)."""
    types = check_sharding_types(sharding_types or allowed_sharding_types(device.type), device.type)
    tables = [c.name for c in model.sparse_arch.embedding_bag_configs()]
    constraints = {t: ParameterConstraints(sharding_types=list(types)) for t in tables}
    topology = Topology(world_size=world_size, compute_device=device.type)
    planner = EmbeddingShardingPlanner(topology=topology, constraints=constraints)
    return planner.collective_plan(model, [FusedEmbeddingBagCollectionSharder()], group)


def rank_slice(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of an n-row global batch that `rank` trains on (sizes differ by <= 1)."""
    return rank * n // world_size, (rank + 1) * n // world_size


def _is_sharded(value: Any) -> bool:
    return hasattr(value, "local_shards") and hasattr(value, "metadata")


def gather_full(
    entries: dict[str, Any], rank: int, group: dist.ProcessGroup | None = None
) -> dict[str, torch.Tensor] | None:
    """Collective: the full tensors of `entries` (ShardedTensors or plain tensors) on rank 0,
    None elsewhere.  A rank may hold entries other ranks lack (a fused optimizer lists only the
    tables it holds); plain tensors are taken from rank 0."""
    local: dict[str, tuple] = {}
    for key, value in entries.items():
        if _is_sharded(value):
            shards = [
                (tuple(s.metadata.shard_offsets), s.tensor.detach().cpu().clone())
                for s in value.local_shards()
            ]
            local[key] = (_shape(value), value.dtype, shards)
        elif rank == 0:
            local[key] = (None, None, value.detach().cpu().clone())
    gathered: list[Any] | None = [None] * dist.get_world_size(group) if rank == 0 else None
    dist.gather_object(local, gathered, dst=0, group=group)
    if rank != 0:
        return None
    full: dict[str, torch.Tensor] = {}
    for part in gathered:
        for key, (size, dtype, data) in part.items():
            if size is None:
                full[key] = data
                continue
            out = full.setdefault(key, torch.zeros(size, dtype=dtype))
            for offsets, tensor in data:
                out[_region(offsets, tensor.shape)] = tensor
    return full


def _shape(value: Any) -> tuple[int, ...]:
    return tuple(value.metadata().size if _is_sharded(value) else value.shape)


def _region(offsets: Sequence[int], sizes: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(o, o + s) for o, s in zip(offsets, sizes, strict=True))


def load_full(target: Any, full: torch.Tensor) -> None:
    """Copies the slices of `full` that this rank holds into `target` (a ShardedTensor or tensor)."""
    if tuple(full.shape) != _shape(target):
        raise ValueError(
            f"checkpoint tensor has shape {tuple(full.shape)}, expected {_shape(target)}"
        )
    with torch.no_grad():
        if not _is_sharded(target):
            target.copy_(full)
            return
        for shard in target.local_shards():
            region = _region(shard.metadata.shard_offsets, shard.metadata.shard_sizes)
            shard.tensor.copy_(full[region].to(shard.tensor.device))


class ShardedDLRMTrial:
    """A DLRM trial on every rank of a process group: `run()` yields EvalPoints on every rank."""

    def __init__(
        self,
        config: DLRMTrialConfig,
        checkpoint: dict[str, Any] | None = None,
        sharding_types: Sequence[str] | None = None,
        group: dist.ProcessGroup | None = None,
    ) -> None:
        if not dist.is_initialized():
            raise RuntimeError("ShardedDLRMTrial needs an initialised torch.distributed group")
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        # the single-process trial: model (same seed -> same weights), data, schedule, accounting
        self.base = DLRMTrial(config)
        self.config = config
        self.device = self.base.device
        if self.device.type == "cuda" and self.device.index is None:  # DMP wants an index
            self.device = torch.device("cuda", torch.cuda.current_device())
        # nccl reduces device tensors only; gloo CPU ones
        nccl = dist.get_backend(group) == "nccl"
        self._comm_device = self.device if nccl else torch.device("cpu")
        self.hparams = self.base.hparams
        self.cost = self.base.cost
        unsharded = {k: v.detach().clone() for k, v in self.base.model.state_dict().items()}
        self.plan = sharding_plan(
            self.base.model, self.world_size, self.device, sharding_types, group
        )
        self.model = DistributedModelParallel(
            self.base.model,
            device=self.device,
            plan=self.plan,
            sharders=[FusedEmbeddingBagCollectionSharder()],
        )
        self._load_model(unsharded)  # sharded tables start from the single-process weights
        if config.train.sparse_optimizer == "sgd":  # the only optimizer not scale-invariant
            for group_ in self.model.fused_optimizer.param_groups:
                group_["lr"] = self.hparams.sparse_lr / self.world_size
        # DDP wraps the same parameter objects, so this is the single-process optimizer's layout
        self.optimizer = torch.optim.Adam(
            self.base.model.dense_parameters(), lr=self.hparams.dense_lr, fused=True
        )
        self.loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
        self.samples = 0
        self.wall_seconds = 0.0
        self.rank_seconds = 0.0  # this rank's share of device-seconds
        self.device_seconds = 0.0  # summed over ranks (at the last eval point)
        self._eval: list[Batch] | None = None
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
        logger.info("rank %d/%d: sharding plan %s", self.rank, self.world_size, self.plan)

    @property
    def schedule(self) -> list[int]:
        return self.base.schedule

    # ------------------------------------------------------------------------------ training

    def _local_batch(self, start: int, n: int) -> Batch:
        """This rank's rows of the global batch of n samples starting at `start`."""
        lo, hi = rank_slice(n, self.rank, self.world_size)
        data, rows = self.base.data, self.base.table_rows
        batch = next(data.batches(TRAIN, max(hi - lo, 1), start + lo, start + hi, rows), None)
        if batch is None:  # an empty slice (n < world size): a 1-row stand-in with zero weight
            batch = next(data.batches(TRAIN, 1, start, start + 1, rows))
        return batch if self.device.type == "cpu" else batch.to(self.device, non_blocking=True)

    def step(self, start: int, n: int) -> None:
        """One optimisation step on global batch [start, start + n)."""
        batch = self._local_batch(start, n)
        lo, hi = rank_slice(n, self.rank, self.world_size)
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(batch.dense_features, batch.sparse_features)
        # k/n x sum: DDP's average over ranks is the global mean loss's gradient
        loss = self.loss_fn(logits, batch.labels) * (self.world_size / n)
        if hi == lo:
            loss = loss * 0.0
        loss.backward()
        self.optimizer.step()
        self.samples += n

    def run(self) -> Iterator[EvalPoint]:
        """Trains to each scheduled count past the current position and evaluates there."""
        batch_size = self.hparams.batch_size
        for target in self.schedule:
            if target <= self.samples:
                continue
            start = time.perf_counter()
            self.model.train()
            while self.samples < target:
                self.step(self.samples, min(batch_size, target - self.samples))
            loss, ne, auc = self.evaluate()
            elapsed = time.perf_counter() - start
            self.rank_seconds += elapsed
            self.wall_seconds += self._max(elapsed)
            self.device_seconds = self._sum(self.rank_seconds)
            yield self._point(loss, ne, auc)

    def _point(self, loss: float, ne: float, auc: float) -> EvalPoint:
        return EvalPoint(
            samples=self.samples,
            dense_params=self.cost.dense_params,
            sparse_params=self.cost.sparse_params,
            flops=float(self.cost.train_flops_per_sample) * self.samples,
            wall_seconds=self.wall_seconds,
            device_seconds=self.device_seconds,
            loss=loss,
            ne=ne,
            auc=auc,
        )

    def _sum(self, x: float) -> float:
        return self._reduce(x, dist.ReduceOp.SUM)

    def _max(self, x: float) -> float:
        return self._reduce(x, dist.ReduceOp.MAX)

    def _reduce(self, x: float, op) -> float:
        t = torch.tensor([x], dtype=torch.float64, device=self._comm_device)
        dist.all_reduce(t, op=op, group=self.group)
        return float(t.item())

    # ---------------------------------------------------------------------------- evaluation

    @torch.no_grad()
    def predict(self) -> tuple[np.ndarray, np.ndarray]:
        """Logits and labels of the whole held-out set, on every rank (each rank scores a slice
        of every eval batch; the slices are all-gathered)."""
        if self._eval is None:
            self._eval = self.base.eval_batches()
        self.model.eval()
        logits, labels = [], []
        for batch in self._eval:
            n = len(batch.labels)
            bounds = [rank_slice(n, r, self.world_size) for r in range(self.world_size)]
            lo, hi = bounds[self.rank]
            # every rank joins the all-to-all, with a stand-in row if its slice is empty
            mine = _rows(batch, lo, hi) if hi > lo else _rows(batch, n - 1, n)
            out = self.model(mine.dense_features, mine.sparse_features)[: hi - lo]
            width = max(h - lo_ for lo_, h in bounds)
            padded = torch.zeros(width, dtype=out.dtype, device=out.device)
            padded[: hi - lo] = out
            parts = [torch.empty_like(padded) for _ in range(self.world_size)]
            dist.all_gather(parts, padded, group=self.group)
            logits += [p[: h - lo_].cpu() for p, (lo_, h) in zip(parts, bounds, strict=True)]
            labels.append(batch.labels.cpu())
        self.model.train()
        return torch.cat(logits).numpy(), torch.cat(labels).numpy()

    def evaluate(self) -> tuple[float, float, float]:
        logits, labels = self.predict()
        loss = log_loss(logits, labels)
        return loss, normalized_entropy(loss, labels), roc_auc(logits, labels)

    # ---------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any] | None:
        """Collective: the full single-process-format checkpoint on rank 0, None on other ranks."""
        model = gather_full(self.model.state_dict(), self.rank, self.group)
        fused = self.model.fused_optimizer.state_dict()["state"]
        flat = {f"{p}{_SEP}{k}": v for p, entry in fused.items() for k, v in entry.items()}
        sparse = gather_full(flat, self.rank, self.group)
        rows_read = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(getattr(self.base.data, "rows_read", None), rows_read, 0, self.group)
        if self.rank != 0:
            return None
        sparse_state: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in sorted(sparse.items()):
            param, name = _single_process_name(*key.split(_SEP))
            sparse_state.setdefault(param, {})[name] = value
        return {
            "version": CHECKPOINT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "samples": self.samples,
            "wall_seconds": self.wall_seconds,
            "device_seconds": self.device_seconds,
            "model": model,
            "dense_optimizer": self.optimizer.state_dict(),
            "sparse_optimizer": {"state": sparse_state},
            "torch_rng": torch.get_rng_state(),
            **rows_read_entry(rows_read),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a checkpoint of either format (any world size; the config must match)."""
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"checkpoint version is {state.get('version')}, but must be {CHECKPOINT_VERSION}"
            )
        if DLRMTrialConfig.model_validate(state["config"]) != self.config:
            raise ValueError("checkpoint config differs from this trial's config")
        self._load_model(state["model"])
        self.optimizer.load_state_dict(state["dense_optimizer"])
        saved = state["sparse_optimizer"]["state"]
        for param, entry in self.model.fused_optimizer.state_dict()["state"].items():
            for key, value in entry.items():
                p, k = _single_process_name(param, key)
                if k not in saved.get(p, {}):
                    raise ValueError(f"checkpoint lacks sparse optimizer state {p}: {k}")
                load_full(value, saved[p][k])
        self.samples = int(state["samples"])
        self.wall_seconds = float(state["wall_seconds"])
        self.device_seconds = float(state.get("device_seconds", self.wall_seconds))
        self.rank_seconds = self.device_seconds / self.world_size
        torch.set_rng_state(state["torch_rng"])
        restore_rows_read(self.base.data, state, self.rank, self.world_size)

    def _load_model(self, full: dict[str, torch.Tensor]) -> None:
        live = self.model.state_dict()
        missing = sorted(set(live) - set(full))
        if missing:
            raise ValueError(f"checkpoint lacks model entries {missing[:3]}")
        for key, value in live.items():
            load_full(value, full[key])


def _single_process_name(param: str, name: str) -> tuple[str, str]:
    """Sharded fused-optimizer state names -> the single-process FusedEmbeddingBagCollection's:
    (`sparse_arch.embedding_bags.t_a.weight`, `t_a.momentum1`) -> (`t_a.weight`,
    `t_a.weight.momentum_1`)."""
    table = param.removeprefix("sparse_arch.embedding_bags.").removesuffix(".weight")
    match = re.fullmatch(rf"{re.escape(table)}\.(\D+?)(\d+)", name)
    if match is None:
        raise ValueError(f"unexpected fused optimizer state {name!r} of {param!r}")
    return f"{table}.weight", f"{table}.weight.{match[1]}_{match[2]}"


def _rows(batch: Batch, lo: int, hi: int) -> Batch:
    """Rows [lo, hi) of a batch (dense, labels and the jagged sparse features)."""
    kjt = batch.sparse_features
    n = len(batch.labels)
    lengths = kjt.lengths().view(len(kjt.keys()), n)
    offsets = kjt.offsets().view(-1)
    values = []
    for f in range(len(kjt.keys())):
        a, b = int(offsets[f * n + lo]), int(offsets[f * n + hi])
        values.append(kjt.values()[a:b])
    sparse = KeyedJaggedTensor.from_lengths_sync(
        keys=kjt.keys(), values=torch.cat(values), lengths=lengths[:, lo:hi].reshape(-1)
    )
    return Batch(
        dense_features=batch.dense_features[lo:hi],
        sparse_features=sparse,
        labels=batch.labels[lo:hi],
    )
