"""From a sweep spec and a trial's axis values to the DLRM trial config it trains.

A knob in `axes.params` is a dotted path into the trial config (`model.embedding_dim`,
`model.num_embeddings`, `train.dense_lr`, `data.base_ctr`, ...), plus three MLP knobs for the
seed paper's MLP-scaling schemes:

- `model.mlp_width`: every hidden layer of both MLPs gets this width (all-MLP scaling);
- `model.top_mlp_width`: every hidden layer of the top (over-arch) MLP gets this width;
- `model.top_mlp_depth`: the top MLP gets this many hidden layers of its first width.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import ValidationError

from scaler.model.accounting import model_cost
from scaler.spec import SpecError, SweepSpec
from scaler.trial.config import DLRMTrialConfig
from scaler.trial.oracle import eval_schedule

MLP_KNOBS = ("model.mlp_width", "model.top_mlp_width", "model.top_mlp_depth")


def _set_path(tree: dict, path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = tree
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SpecError(f"axes.params.{path}: {key} is not a section of the trial config")
    node[leaf] = value


def _apply_mlp_knobs(tree: dict, knobs: dict[str, Any]) -> None:
    model = tree.setdefault("model", {})
    defaults = DLRMTrialConfig().model
    bottom = list(model.get("bottom_mlp", defaults.bottom_mlp))
    top = list(model.get("top_mlp", defaults.top_mlp))
    if "model.top_mlp_depth" in knobs:
        top = [top[0]] * int(knobs["model.top_mlp_depth"])
    if "model.top_mlp_width" in knobs:
        top = [int(knobs["model.top_mlp_width"])] * len(top)
    if "model.mlp_width" in knobs:
        width = int(knobs["model.mlp_width"])
        bottom, top = [width] * len(bottom), [width] * len(top)
    model["bottom_mlp"], model["top_mlp"] = bottom, top


def trial_config(spec: SweepSpec, config: dict) -> DLRMTrialConfig:
    """The trial's config: spec.dlrm, then the knobs, then the sample budget and eval points
    (the same log-spaced schedule as every trial with that budget, so trials compare at equal data)."""
    tree = copy.deepcopy(spec.dlrm)
    knobs = dict(config.get("params", {}))
    for path, value in knobs.items():
        if path not in MLP_KNOBS:
            _set_path(tree, path, value)
    if any(k in knobs for k in MLP_KNOBS):
        _apply_mlp_knobs(tree, knobs)
    for path, value in config.get("hparams", {}).items():  # tuned at this scale point
        _set_path(tree, path, value)
    samples = int(config["samples"])
    train = tree.setdefault("train", {})
    train["samples"] = samples
    train["eval_at"] = eval_schedule(samples, spec.trial.eval_points, spec.trial.min_samples)
    train.pop("num_evals", None)
    return DLRMTrialConfig.model_validate(tree)


def _cost(spec: SweepSpec, point: dict):
    cfg = trial_config(spec, {"params": point, "samples": spec.trial.samples or 1 << 20})
    hotness = [f.hotness for f in cfg.data.features]
    return model_cost(cfg.model, cfg.data.num_dense, hotness, cfg.table_rows())


def flops_per_sample(spec: SweepSpec, point: dict) -> float:
    return float(_cost(spec, point).train_flops_per_sample)


def param_count(spec: SweepSpec, point: dict) -> float:
    cost = _cost(spec, point)
    return float(cost.dense_params + cost.sparse_params)


def validate_dlrm_grid(spec: SweepSpec, source: str) -> None:
    """Build every trial config of the grid now, so a bad knob value fails at load, not in a trial."""
    budget = max(spec.axes.sample_budgets() or [], default=spec.trial.samples or 1 << 20)
    for point in spec.axes.param_grid() or [{}]:
        try:
            trial_config(spec, {"params": point, "samples": budget})
        except ValidationError as err:
            e = err.errors()[0]
            path = ".".join(str(p) for p in e["loc"])
            msg = e["msg"].replace("Value error, ", "")
            knobs = ", ".join(f"{k}={v}" for k, v in point.items())
            raise SpecError(
                f"{source}: dlrm.{path}: {msg} (trial with {knobs or 'no knobs'})"
            ) from None
