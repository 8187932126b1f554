"""The validated config of one DLRM trial: data, model sizes, and how to train and evaluate."""

from __future__ import annotations

import math
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from scaler.data.criteo_binary import CriteoBinaryDataConfig
from scaler.data.criteo_stream import CriteoDataConfig
from scaler.data.synthetic import SyntheticConfig
from scaler.model.accounting import model_cost
from scaler.model.config import DLRMConfig
from scaler.model.dlrm import SparseOptimizer


class TrainConfig(BaseModel):
    """How one trial trains and evaluates.

    samples: the training budget (samples; one pass over a fresh stream, no epochs).
    batch_size, dense_lr, sparse_lr: None picks `default_hparams` for the model size.
    eval_at: training-sample counts to evaluate at; if None, `num_evals` log-spaced counts from
    `first_eval` (default max(batch, samples / 1000)) to `samples`, rounded up to whole batches.
    eval_samples: size of the held-out set (the first samples of the eval stream).
    seed: model initialisation seed (the data has its own seed).
    num_threads: torch CPU threads (None: leave torch's setting alone).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: int = Field(default=1 << 20, gt=0)
    batch_size: int | None = Field(default=None, gt=0)
    dense_lr: float | None = Field(default=None, gt=0.0)
    sparse_lr: float | None = Field(default=None, gt=0.0)
    sparse_optimizer: SparseOptimizer = "rowwise_adagrad"
    eval_at: tuple[int, ...] | None = None
    num_evals: int = Field(default=8, gt=0, le=1000)
    first_eval: int | None = Field(default=None, gt=0)
    eval_samples: int = Field(default=1 << 16, gt=0)
    seed: int = Field(default=0, ge=0)
    num_threads: int | None = Field(default=None, gt=0)
    device: Literal["cpu", "cuda"] = "cpu"

    @model_validator(mode="after")
    def _check_bounds(self) -> TrainConfig:
        if self.batch_size is not None and self.batch_size > self.samples:
            raise ValueError(
                f"train.batch_size is {self.batch_size}, but must be <= train.samples "
                f"({self.samples})"
            )
        if self.first_eval is not None and self.first_eval > self.samples:
            raise ValueError(
                f"train.first_eval is {self.first_eval}, but must be <= train.samples "
                f"({self.samples})"
            )
        if self.eval_at is not None:
            if not self.eval_at:
                raise ValueError("train.eval_at is empty, but must list at least one count")
            bad = [n for n in self.eval_at if not 0 < n <= self.samples]
            if bad:
                raise ValueError(
                    f"train.eval_at has {bad}, but every count must be in "
                    f"(0, train.samples = {self.samples}]"
                )
        return self


def _data_kind(value) -> str:
    """`kind` selects the data source; a `data:` without one is synthetic."""
    if isinstance(value, dict):
        return value.get("kind", "synthetic")
    return getattr(value, "kind", "synthetic")


DataConfig = Annotated[
    Annotated[SyntheticConfig, Tag("synthetic")]
    | Annotated[CriteoDataConfig, Tag("criteo")]
    | Annotated[CriteoBinaryDataConfig, Tag("criteo_binary")],
    Discriminator(_data_kind),
]


class DLRMTrialConfig(BaseModel):
    """One trial: `data` (synthetic), `model` (DLRM sizes) and `train` (budget, optimiser, evals)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: DataConfig = Field(default_factory=SyntheticConfig)
    model: DLRMConfig = Field(default_factory=DLRMConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)

    @model_validator(mode="after")
    def _check_consistency(self) -> DLRMTrialConfig:
        rows = self.model.num_embeddings
        if not isinstance(rows, int) and len(rows) != self.data.num_sparse:
            raise ValueError(
                f"model.num_embeddings has {len(rows)} entries, but data.features has "
                f"{self.data.num_sparse}"
            )
        if self.data.kind == "criteo_binary":  # unique samples: the budget must fit the rows
            limit = self.data.epochs * self.data.train_rows
            if self.train.samples > limit:
                raise ValueError(
                    f"train.samples is {self.train.samples}, but must be <= {limit}: data.epochs "
                    f"({self.data.epochs}) x the {self.data.train_rows} rows of data.train_days "
                    f"{list(self.data.train_days)}"
                )
        return self

    def table_rows(self) -> list[int]:
        """Rows per table, capped at the feature's vocabulary (rows beyond it are never used)."""
        rows = self.model.table_rows(self.data.num_sparse)
        return [min(r, f.vocab_size) for r, f in zip(rows, self.data.features, strict=True)]


class Hparams(NamedTuple):
    batch_size: int
    dense_lr: float  # Adam
    sparse_lr: float  # fused embedding optimizer (row-wise Adagrad by default)


def default_hparams(dense_params: int, max_width: int) -> Hparams:
    """The documented default batch size and learning rates for a model size.

    batch: 512 up to 10^6 dense parameters, 1024 up to 10^7, 2048 beyond (bigger models amortise
    per-step overhead and tolerate bigger batches). Dense Adam lr: 2e-3 at batch 512 and width
    <= 256, scaled by sqrt(batch / 512) (the square-root rule for Adam) and by sqrt(256 / width)
    for wider MLPs (keeps the update size per unit steady, a muP-like heuristic). Sparse row-wise
    Adagrad lr: 0.02 x sqrt(batch / 512) -- Adagrad normalises per row, so it is size-free
    (a scan over 0.005..0.15 at 20k and 200k rows was flat within 0.5 % of loss from 0.005 to 0.03).
    """
    batch = 512 if dense_params <= 10**6 else 1024 if dense_params <= 10**7 else 2048
    scale = math.sqrt(batch / 512)
    dense_lr = 2e-3 * scale * math.sqrt(min(1.0, 256 / max(max_width, 1)))
    return Hparams(batch, dense_lr, 0.02 * scale)


def resolve_hparams(config: DLRMTrialConfig) -> Hparams:
    """Config values where given, the size-based defaults otherwise; batch capped at the budget."""
    m = config.model
    cost = model_cost(
        m, config.data.num_dense, [f.hotness for f in config.data.features], config.table_rows()
    )
    widths = [*m.bottom_mlp, *m.top_mlp, m.embedding_dim]
    default = default_hparams(cost.dense_params, max(widths))
    t = config.train
    return Hparams(
        batch_size=t.batch_size or min(default.batch_size, t.samples),
        dense_lr=t.dense_lr or default.dense_lr,
        sparse_lr=t.sparse_lr or default.sparse_lr,
    )


def eval_schedule(config: DLRMTrialConfig) -> list[int]:
    """Training-sample counts at which the trial evaluates, ascending and unique."""
    t = config.train
    if t.eval_at is not None:
        return sorted(set(t.eval_at))
    batch = resolve_hparams(config).batch_size
    first = t.first_eval or max(batch, t.samples // 1000)
    if t.num_evals == 1 or first >= t.samples:
        return [t.samples]
    ratio = (t.samples / first) ** (1 / (t.num_evals - 1))
    points = {t.samples}
    for i in range(t.num_evals - 1):
        target = first * ratio**i
        points.add(min(t.samples, math.ceil(target / batch) * batch))
    return sorted(points)
