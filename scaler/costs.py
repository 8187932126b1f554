"""What a config costs: the cost model every report, frontier and compute target uses.

In a DLRM most parameters are embedding rows.  A row costs memory (4 bytes per float, plus its
optimizer state) and one lookup per id that hits it; it costs no FLOPs in proportion to the
table's size.  So the cost of a DLRM config is *measured from the model*: training FLOPs per
sample from `scaler.model.accounting` (MLPs, interaction, one row read and updated per id) and
the embedding bytes; compute C = samples x FLOPs per sample.  `C = k·N·D` (N all parameters)
would charge every embedding row 6 FLOPs per sample and misplace a DLRM's optimum by orders of
magnitude; it stays for the oracle backend, whose trials are drawn from a law in (N, D) with that
cost model, and for pools where the user declares it.

A cost model maps a config (the sweep's knobs: ``{"model.num_embeddings": 4000, ...}``) to a
`ConfigCost`, or to None when no trial could be built with those knobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class ConfigCost:
    flops_per_sample: float  # training (forward + backward) FLOPs per sample
    dense_params: float  # MLP and interaction parameters
    sparse_params: float  # embedding parameters (rows x width, summed over tables)
    memory_bytes: float  # embedding tables and their optimizer state (0 without embeddings)

    @property
    def params(self) -> float:
        return self.dense_params + self.sparse_params


class CostModel:
    """Base: `cost(config)` and a description for reports (``{"kind": ..., "k": ...}``)."""

    kind: str = ""
    k: float | None = None

    def cost(self, config: dict[str, Any]) -> ConfigCost | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "k": self.k}

    def words(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


class MeasuredCost(CostModel):
    """A DLRM sweep's cost from its spec: the trial config a set of knobs builds, counted by
    `scaler.model.accounting` (the same counts the trials log as `flops`)."""

    kind = "measured"

    def __init__(self, spec):
        self.spec = spec
        self._cached = lru_cache(maxsize=None)(self._cost)

    def cost(self, config: dict[str, Any]) -> ConfigCost | None:
        return self._cached(tuple(sorted(config.items())))

    def _cost(self, items: tuple) -> ConfigCost | None:
        from pydantic import ValidationError

        from scaler.spec import SpecError
        from scaler.trial.from_spec import _cost

        try:
            c = _cost(self.spec, dict(items))
        except (ValidationError, SpecError, ValueError):
            return None
        return ConfigCost(
            float(c.train_flops_per_sample),
            float(c.dense_params),
            float(c.sparse_params),
            float(c.embedding_bytes),
        )

    def words(self) -> str:
        return (
            "measured: C = samples x the config's training FLOPs per sample "
            "(scaler.model.accounting); embedding rows cost memory and a lookup, not FLOPs"
        )


class KNDCost(CostModel):
    """C = k·N·D for a one-knob sweep over the parameter count N (`n_params`)."""

    kind = "kND"

    def __init__(self, k: float, knob: str = "n_params"):
        if not k > 0:
            raise ValueError(f"k is {k}, but must be > 0")
        self.k, self.knob = float(k), knob

    def cost(self, config: dict[str, Any]) -> ConfigCost | None:
        n = float(config.get(self.knob, 0.0))
        if not n > 0:
            return None
        return ConfigCost(self.k * n, n, 0.0, 0.0)  # no embedding tables: no memory cap binds

    def words(self) -> str:
        return f"declared: C = {self.k:g}·N·D (N = parameters, D = samples)"


class ObservedCost(CostModel):
    """The trained configs only, at the FLOPs per sample their trials logged: for a sweep whose
    spec cannot be rebuilt.  Configs that were not trained have no cost."""

    kind = "measured"

    def __init__(self, points: pd.DataFrame, trials: pd.DataFrame, knobs: list[str]):
        """points: eval points (samples, flops, dense_params, sparse_params by trial_id);
        trials: one row per trial with its `param.<knob>` columns."""
        self.table: dict[tuple, ConfigCost] = {}
        last = points.sort_values("samples").groupby("trial_id").last()
        for _, row in trials.iterrows():
            if row["trial_id"] not in last.index:
                continue
            p = last.loc[row["trial_id"]]
            key = tuple(sorted((k, row[f"param.{k}"]) for k in knobs))
            sparse = float(p.get("sparse_params", 0.0))
            self.table[key] = ConfigCost(
                float(p["flops"]) / float(p["samples"]),
                float(p.get("dense_params", p.get("params", 0.0))),
                sparse,
                4.0 * sparse,
            )

    def cost(self, config: dict[str, Any]) -> ConfigCost | None:
        return self.table.get(tuple(sorted(config.items())))

    def words(self) -> str:
        return "measured: C = samples x FLOPs per sample as logged by each trial (trained configs)"


def cost_model_for(spec) -> CostModel:
    """The cost model of a sweep spec: measured for DLRM, k·N·D for the oracle."""
    if spec.backend == "oracle":
        return KNDCost(spec.oracle.flops_per_param_sample)
    return MeasuredCost(spec)
