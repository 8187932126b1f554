"""The search-space schema: a YAML sweep validated into typed models at load.

Errors name the key path and the bound: `axes.params.model.embedding_dim[2]: must be > 0, got -8`.
Every key is documented in the README ("Search-space schema").
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PositiveFloat = Annotated[float, Field(gt=0)]


class SpecError(ValueError):
    """A search space that does not load: the message names the key path and the bound."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Range(_Strict):
    """`{low, high, num, scale}`: num values from low to high, log- or linearly spaced."""

    low: PositiveFloat
    high: PositiveFloat
    num: int = Field(ge=1)
    scale: Literal["log", "linear"] = "log"
    integer: bool = True

    @model_validator(mode="after")
    def _ordered(self):
        if self.high < self.low:
            raise ValueError(f"high must be >= low ({self.low}), got {self.high}")
        return self

    def values(self) -> list[float]:
        if self.num == 1:
            vals = [self.low]
        elif self.scale == "log":
            step = (math.log(self.high) - math.log(self.low)) / (self.num - 1)
            vals = [math.exp(math.log(self.low) + i * step) for i in range(self.num)]
        else:
            vals = [self.low + i * (self.high - self.low) / (self.num - 1) for i in range(self.num)]
        return sorted({round(v) for v in vals}) if self.integer else vals


AxisValues = Annotated[list[PositiveFloat], Field(min_length=1)] | Range


def _expand(values: list[float] | Range) -> list[float]:
    vals = values.values() if isinstance(values, Range) else list(values)
    return [int(v) if float(v).is_integer() else v for v in vals]


class Axes(_Strict):
    """What the sweep varies.  Every eval point of a run is a data-axis observation for free.

    data:    sample budgets per trial (omit to use `trial.samples`).
    params:  knobs that scale the model, each a dotted path into the trial config
             (`model.embedding_dim`, `model.num_embeddings`, ... for dlrm; `n_params` for oracle)
             mapped to its values; the grid is their product (a "scaling scheme").
    compute: training-FLOP budgets: with it, a trial's sample budget is C / (FLOPs per sample)
             of its model (IsoFLOP curves).  Exclusive with `data`.
    """

    data: AxisValues | None = None
    params: dict[str, AxisValues] = Field(default_factory=dict)
    compute: AxisValues | None = None

    @model_validator(mode="after")
    def _one_budget_axis(self):
        if self.data is not None and self.compute is not None:
            raise ValueError("give either data or compute budgets, not both")
        if self.data is None and self.compute is None and not self.params:
            raise ValueError("at least one axis (data, params or compute) must be given")
        return self

    def sample_budgets(self) -> list[int] | None:
        return None if self.data is None else [int(v) for v in _expand(self.data)]

    def compute_budgets(self) -> list[float] | None:
        return None if self.compute is None else [float(v) for v in _expand(self.compute)]

    def param_grid(self) -> list[dict[str, float]]:
        names = sorted(self.params)
        combos = itertools.product(*(_expand(self.params[n]) for n in names))
        return [dict(zip(names, c, strict=True)) for c in combos]


class Budget(_Strict):
    """Total budget of the sweep: a number of trials, training FLOPs, or device-hours
    (the first one reached stops the sweep)."""

    trials: int | None = Field(default=None, gt=0)
    flops: PositiveFloat | None = None
    device_hours: PositiveFloat | None = None

    @model_validator(mode="after")
    def _some(self):
        if self.trials is None and self.flops is None and self.device_hours is None:
            raise ValueError("give at least one of trials, flops, device_hours")
        return self


class TargetPoint(_Strict):
    """A (model size, sample count) whose loss the law is for; `params` is the parameter count
    (oracle: n_params), omitted when the sweep scales data only."""

    params: PositiveFloat | None = None
    samples: PositiveFloat


class Target(_Strict):
    """What the law is for, usually 10-100x beyond what the sweep trains (give one):

    points:   the loss at given (params, samples)
    compute:  the compute-optimal loss at C training FLOPs (N*, D* of the current fit)
    frontier: the compute-optimal frontier from the largest trained compute up to C FLOPs
    """

    points: list[TargetPoint] | None = Field(default=None, min_length=1)
    compute: PositiveFloat | None = None
    frontier: PositiveFloat | None = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("points", "compute", "frontier") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of points, compute, frontier, got {given or 'none'}"
            )
        return self


class Policy(_Strict):
    """Which trial runs next (scaler/allocation): `grid`, `random`, `halving` (successive halving
    along the data axis) or `adaptive` (law-aware: most information about `target` per FLOP)."""

    name: Literal["grid", "random", "halving", "adaptive"] = "grid"
    seed: int = 0
    eta: int = Field(default=3, ge=2)  # halving: promote the best 1/eta of each rung
    # adaptive: the prediction to make certain (default: 10x beyond the largest trial on every
    # axis); stop the sweep when its relative sd is below `tolerance`; stop a running trial when
    # its remaining eval points are worth < stop_ratio x the best candidate's gain per FLOP
    target: Target | None = None
    tolerance: PositiveFloat | None = None
    stop_ratio: float = Field(default=0.1, ge=0)


class Resources(_Strict):
    cpus_per_trial: float = Field(default=1.0, gt=0)
    gpus_per_trial: float = Field(default=0.0, ge=0)
    concurrency: int = Field(default=2, ge=1)
    # multi-worker trials (trial.workers > 1): each Ray Train worker's share; the trial's Tune
    # function keeps cpus_per_trial (it only waits on the workers: a fraction of a CPU will do)
    cpus_per_worker: float = Field(default=1.0, gt=0)
    gpus_per_worker: float = Field(default=0.0, ge=0)
    worker_placement: Literal["pack", "spread"] = "pack"


class Tracking(_Strict):
    uri: str | None = None  # default: sqlite store in the sweep's storage folder
    experiment: str = "scaler"


class OracleLaw(_Strict):
    """The true law the oracle draws from: L(N, D) = E + A N^-alpha + B D^-beta."""

    E: float = Field(ge=0)
    A: float = Field(ge=0)
    alpha: float = Field(ge=0)
    B: float = Field(ge=0)
    beta: float = Field(ge=0)


class OracleHparam(_Strict):
    """Sensitivity of the oracle's loss to a hyperparameter h (e.g. a learning rate):
    loss += sensitivity * (ln h - ln h*(N))^2 with the optimum h*(N) = a * N^(-b).
    Trials that do not set h use `default`."""

    a: float = Field(gt=0)
    b: float = 0.0
    sensitivity: float = Field(default=0.05, ge=0)
    default: float = Field(gt=0)


class Oracle(_Strict):
    law: OracleLaw
    hparams: dict[str, OracleHparam] = Field(default_factory=dict)
    noise: float = Field(default=0.003, ge=0)  # relative (log-normal) noise per eval point
    flops_per_param_sample: float = Field(default=6.0, gt=0)  # cost model C = k N D
    device_flops_per_second: float = Field(default=1e12, gt=0)  # for simulated device-seconds
    delay_seconds: float = Field(default=0.0, ge=0)  # per eval point: simulates training time
    # fault injection (tests, demos): trials of these sizes diverge (NaN loss from their 2nd eval
    # point) or raise at their 2nd eval point on every attempt
    diverge_n_params: list[PositiveFloat] = Field(default_factory=list)
    fail_n_params: list[PositiveFloat] = Field(default_factory=list)


class HparamRange(_Strict):
    low: PositiveFloat
    high: PositiveFloat
    log: bool = True

    @model_validator(mode="after")
    def _ordered(self):
        if self.high <= self.low:
            raise ValueError(f"high must be > low ({self.low}), got {self.high}")
        return self


class Tuning(_Strict):
    """Hyperparameters tuned at every scale point by an Optuna study (see scaler/allocation/_tuned.py).

    hparams: dotted paths into the trial config (dlrm: `train.dense_lr`, `train.sparse_lr`,
      `train.batch_size`, ...; oracle: the names in `oracle.hparams`) -> search range.
    trials_per_point: the tuning budget of each scale point, in trials (they count in the budget).
    warm_start: once 3 points are tuned, fit each optimum against scale (h*(N) = a N^-b) and start
      the next point's study from the rule: enqueue its prediction, narrow the range to
      prediction x/÷ `narrow`.
    prune: stop a trial whose loss at an eval point is worse than the median of the point's
      finished trials at that eval point (short-horizon pruning).
    """

    hparams: dict[str, HparamRange] = Field(min_length=1)
    trials_per_point: int = Field(default=8, ge=1)
    sampler: Literal["tpe", "random"] = "tpe"
    warm_start: bool = True
    narrow: float = Field(default=4.0, gt=1)
    prune: bool = True
    seed: int = 0


ShardingType = Literal[
    "table_wise", "column_wise", "table_column_wise", "row_wise", "table_row_wise"
]
GPU_ONLY_SHARDING = ("row_wise", "table_row_wise")  # TorchRec's fused kernel on CPU lacks these


class TrialSpec(_Strict):
    samples: int | None = Field(default=None, gt=0)  # sample budget when data is not swept
    eval_points: int = Field(default=6, ge=2)  # log-spaced evaluations per trial
    min_samples: int | None = Field(default=None, gt=0)  # first eval point (default: budget / 2^7)
    # dlrm: processes per trial; > 1 runs a Ray Train TorchTrainer with TorchRec's
    # DistributedModelParallel (see scaler/tune/multiworker.py)
    workers: int = Field(default=1, ge=1)
    sharding: list[ShardingType] | None = Field(default=None, min_length=1)  # planner's choices


class SweepSpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    backend: Literal["dlrm", "oracle"]
    seed: int = 0
    oracle: Oracle | None = None
    dlrm: dict[str, Any] = Field(default_factory=dict)  # base trial config, see scaler.trial
    trial: TrialSpec = TrialSpec()
    axes: Axes
    budget: Budget
    policy: Policy = Policy()
    resources: Resources = Resources()
    tracking: Tracking = Tracking()
    tuning: Tuning | None = None

    @model_validator(mode="after")
    def _backend_section(self):
        if self.backend == "oracle" and self.oracle is None:
            raise ValueError("backend oracle needs an `oracle:` section with its law")
        if self.axes.data is None and self.axes.compute is None and self.trial.samples is None:
            raise ValueError("give trial.samples, or sample budgets in axes.data / axes.compute")
        if self.backend == "oracle":
            unknown = set(self.axes.params) - {"n_params"}
            if unknown:
                raise ValueError(f"the oracle backend scales only n_params, got {sorted(unknown)}")
            if self.tuning is not None:
                missing = set(self.tuning.hparams) - set(self.oracle.hparams)
                if missing:
                    raise ValueError(f"tuning.hparams {sorted(missing)} are not in oracle.hparams")
        return self

    @model_validator(mode="after")
    def _tuned_policy(self):
        if self.tuning is not None and self.policy.name not in ("grid", "random"):
            raise ValueError(
                f"policy.name is {self.policy.name!r}, but a tuned sweep (tuning:) takes grid or "
                "random: its points are chosen before their studies finish"
            )
        return self

    @model_validator(mode="after")
    def _workers(self):
        if self.trial.workers > 1 and self.backend != "dlrm":
            raise ValueError(
                f"trial.workers is {self.trial.workers}, but must be 1 for the {self.backend} backend"
            )
        gpu_only = sorted(set(self.trial.sharding or ()) & set(GPU_ONLY_SHARDING))
        if gpu_only and self.resources.gpus_per_worker == 0:
            raise ValueError(
                f"trial.sharding has {gpu_only}, which need GPUs (resources.gpus_per_worker > 0); "
                "on CPU (gloo) use table_wise, column_wise or table_column_wise"
            )
        return self

    @field_validator("dlrm")
    @classmethod
    def _dlrm_is_mapping(cls, v):
        return dict(v)

    def resolved(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        blob = json.dumps(self.resolved(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _format_error(err: ValidationError) -> str:
    # With unions pydantic reports one error per branch; the deepest is the branch that matched.
    wrong_branch = {"list_type", "model_type", "model_attributes_type", "dict_type"}
    e = max(err.errors(), key=lambda x: (len(x["loc"]), x["type"] not in wrong_branch))
    path = ""
    for part in e["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "Range" or "[" in str(part):
            continue  # pydantic's union-branch labels
        elif str(part).replace("_", "").replace("-", "").replace(".", "").isalnum():
            path += ("." if path else "") + str(part)
        else:
            path += f"[{part!r}]"  # a key a user typed with odd characters: show it quoted
    msg = e["msg"]
    for old, new in [
        ("Input should be greater than or equal to ", "must be >= "),
        ("Input should be greater than ", "must be > "),
        ("Input should be less than or equal to ", "must be <= "),
        ("Input should be less than ", "must be < "),
        ("Extra inputs are not permitted", "unknown key"),
        ("Value error, ", ""),
        ("List should have at least 1 item after validation, not 0", "must have at least 1 value"),
    ]:
        msg = msg.replace(old, new)
    got = e.get("input")
    if e["type"] == "missing":
        return f"{path}: required key is missing"
    if e["type"] == "extra_forbidden" or isinstance(got, dict):
        return f"{path or '<top>'}: {msg}"
    return f"{path}: {msg}, got {got!r}"


def parse_spec(data: Any, source: str = "<spec>") -> SweepSpec:
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: the top level must be a mapping of keys, got {type(data).__name__}"
        )
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(f"{source}: {_format_error(err)}") from None
    if spec.backend == "dlrm":
        from scaler.trial.from_spec import validate_dlrm_grid  # torch only for dlrm sweeps

        validate_dlrm_grid(spec, source)
    return spec


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"no such search space: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{path}:{where} malformed YAML ({getattr(exc, 'problem', exc)})") from None
    return parse_spec(data, str(path))
