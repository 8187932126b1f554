"""One DLRM trial without Ray: train on the synthetic stream, evaluate at log-spaced sample counts.

    trial = DLRMTrial(config)                 # or DLRMTrial(config, checkpoint=state)
    for point in trial.run():                 # EvalPoint at every scheduled sample count
        state = trial.state_dict()            # a checkpoint taken right after that evaluation

A checkpoint holds the model and both optimizers' state, the data position (samples seen: batch i
of the stream is a pure function of the seed and i, so the position is the whole data state),
the accumulated FLOPs and seconds, and the torch RNG; a trial resumed from it continues exactly
as the uninterrupted one would.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torchrec.datasets.utils import Batch

from scaler.data.synthetic import TRAIN, synthetic_ctr
from scaler.model.accounting import ModelCost, model_cost
from scaler.model.dlrm import DLRM, build_dlrm
from scaler.records import EvalPoint
from scaler.trial.config import DLRMTrialConfig, Hparams, eval_schedule, resolve_hparams
from scaler.trial.metrics import log_loss, normalized_entropy, roc_auc

logger = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
_EVAL_CHUNK = 8192


def data_stream(data):
    """The trial's data: the synthetic generator, Criteo TSV files, or prepared Criteo days
    (same interface)."""
    if data.kind == "criteo":
        from scaler.data.criteo_stream import CriteoStream

        return CriteoStream(data)
    if data.kind == "criteo_binary":
        from scaler.data.criteo_binary import CriteoBinaryStream

        return CriteoBinaryStream(data)
    return synthetic_ctr(data)


class DLRMTrial:
    """A DLRM trial: `run()` yields EvalPoints; `state_dict()` is a checkpoint at any yield."""

    def __init__(self, config: DLRMTrialConfig, checkpoint: dict[str, Any] | None = None) -> None:
        self.config = config
        t = config.train
        if t.num_threads is not None:
            torch.set_num_threads(t.num_threads)
        self.device = torch.device(t.device)
        self.hparams: Hparams = resolve_hparams(config)
        self.schedule = eval_schedule(config)
        self.table_rows = config.table_rows()
        self.data = data_stream(config.data)
        self.cost: ModelCost = model_cost(
            config.model,
            config.data.num_dense,
            [f.hotness for f in config.data.features],
            self.table_rows,
        )
        self.model: DLRM = build_dlrm(
            config.model,
            config.data.num_dense,
            config.data.feature_names,
            self.table_rows,
            seed=t.seed,
            sparse_optimizer=t.sparse_optimizer,
            sparse_lr=self.hparams.sparse_lr,
            device=self.device,
        )
        self.optimizer = torch.optim.Adam(
            self.model.dense_parameters(), lr=self.hparams.dense_lr, fused=True
        )
        self.loss_fn = nn.BCEWithLogitsLoss()
        self.samples = 0
        self.wall_seconds = 0.0
        self._eval_batches: list[Batch] | None = None
        if checkpoint is not None:
            self.load_state_dict(checkpoint)
        logger.info(
            "DLRM trial: %d dense + %d sparse params, %d train FLOPs/sample, %s",
            self.cost.dense_params,
            self.cost.sparse_params,
            self.cost.train_flops_per_sample,
            self.hparams,
        )

    # ------------------------------------------------------------------------------ training

    def step(self, batch: Batch) -> torch.Tensor:
        """One optimisation step on a batch (embeddings update inside backward); returns the loss."""
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(batch.dense_features, batch.sparse_features)
        loss = self.loss_fn(logits, batch.labels)
        loss.backward()
        self.optimizer.step()
        self.samples += len(batch.labels)
        return loss

    def train_batches(self, stop: int) -> Iterator[Batch]:
        """Training batches from the current position up to sample `stop`, on the device."""
        for batch in self.data.batches(
            TRAIN, self.hparams.batch_size, self.samples, stop, self.table_rows
        ):
            yield batch if self.device.type == "cpu" else batch.to(self.device, non_blocking=True)

    def run(self) -> Iterator[EvalPoint]:
        """Trains to each scheduled sample count past the current position and evaluates there.

        Wall seconds count training and evaluation only, not time the caller spends between
        yields (e.g. writing checkpoints).
        """
        for target in self.schedule:
            if target <= self.samples:
                continue
            start = time.perf_counter()
            self.model.train()
            for batch in self.train_batches(target):
                self.step(batch)
            loss, ne, auc = self.evaluate()
            self.wall_seconds += time.perf_counter() - start
            yield self._point(loss, ne, auc)

    def _point(self, loss: float, ne: float, auc: float) -> EvalPoint:
        return EvalPoint(
            samples=self.samples,
            dense_params=self.cost.dense_params,
            sparse_params=self.cost.sparse_params,
            flops=float(self.cost.train_flops_per_sample) * self.samples,
            wall_seconds=self.wall_seconds,
            device_seconds=self.wall_seconds,  # one worker: one CPU process or one GPU
            loss=loss,
            ne=ne,
            auc=auc,
        )

    # ---------------------------------------------------------------------------- evaluation

    def eval_batches(self) -> list[Batch]:
        """The held-out set: the first `eval_samples` samples of the eval stream (built once)."""
        if self._eval_batches is None:
            n = self.config.train.eval_samples
            batches = self.data.eval_batches(n, _EVAL_CHUNK, self.table_rows)
            self._eval_batches = [b.to(self.device) for b in batches]
        return self._eval_batches

    @torch.no_grad()
    def predict(self, batches: list[Batch]) -> tuple[np.ndarray, np.ndarray]:
        """Logits [n] and labels [n] over the batches."""
        self.model.eval()
        logits = [self.model(b.dense_features, b.sparse_features).cpu() for b in batches]
        labels = [b.labels.cpu() for b in batches]
        self.model.train()
        return torch.cat(logits).numpy(), torch.cat(labels).numpy()

    def evaluate(self) -> tuple[float, float, float]:
        """(log loss, NE, AUC) on the held-out set; NE divides by the entropy of its label mean."""
        logits, labels = self.predict(self.eval_batches())
        loss = log_loss(logits, labels)
        return loss, normalized_entropy(loss, labels), roc_auc(logits, labels)

    # ---------------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """A self-contained checkpoint (tensors cloned: training may go on afterwards)."""
        return copy.deepcopy(
            {
                "version": CHECKPOINT_VERSION,
                "config": self.config.model_dump(mode="json"),
                "samples": self.samples,
                "wall_seconds": self.wall_seconds,
                "model": self.model.state_dict(),
                "dense_optimizer": self.optimizer.state_dict(),
                "sparse_optimizer": self.model.sparse_optimizer().state_dict(),
                "torch_rng": torch.get_rng_state(),
                **rows_read_entry([getattr(self.data, "rows_read", None)]),
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a checkpoint from `state_dict()`; the config must match this trial's."""
        if state.get("version") != CHECKPOINT_VERSION:
            raise ValueError(
                f"checkpoint version is {state.get('version')}, but must be {CHECKPOINT_VERSION}"
            )
        saved = DLRMTrialConfig.model_validate(state["config"])
        if saved != self.config:
            raise ValueError("checkpoint config differs from this trial's config")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["dense_optimizer"])
        sparse_state = state["sparse_optimizer"]
        if sparse_state["state"]:
            self.model.sparse_optimizer().load_state_dict(sparse_state)
        self.samples = int(state["samples"])
        self.wall_seconds = float(state["wall_seconds"])
        torch.set_rng_state(state["torch_rng"])
        restore_rows_read(self.data, state, rank=0, world_size=1)


def rows_read_entry(per_rank: list[list[tuple[int, int]] | None]) -> dict[str, Any]:
    """The checkpoint's record of which train positions each rank read ([start, stop) lists), for
    data that keeps one (prepared Criteo days): an audit of the data axis, not needed to resume
    (the position is `samples`)."""
    if any(r is None for r in per_rank):
        return {}
    return {"rows_read": [[list(r) for r in rank] for rank in per_rank]}


def restore_rows_read(data, state: dict[str, Any], rank: int, world_size: int) -> None:
    """A resumed rank continues its predecessor's record (when the world size is the same)."""
    saved = state.get("rows_read")
    if saved is not None and hasattr(data, "rows_read") and len(saved) == world_size:
        data.rows_read = [tuple(r) for r in saved[rank]]


def train(config: DLRMTrialConfig, checkpoint: dict[str, Any] | None = None) -> Iterator[EvalPoint]:
    """Trains one DLRM trial (resumed from `checkpoint` if given), yielding an EvalPoint per eval.

    For checkpoints at each point, use `DLRMTrial` directly and call `state_dict()` per yield.
    """
    return DLRMTrial(config, checkpoint).run()
