"""Exact parameter, FLOP and byte counts of a DLRM, from its config alone (no torch).

Counting rules (per training sample; B, the batch, divides out):
- Linear(m -> n): forward 2mn (multiply-add) + n (bias). Backward 2mn for the weight gradient,
  n for the bias gradient and 2mn for the input gradient -- the last one omitted for the first
  bottom-MLP layer, whose input is data.
- Embedding bag of feature f with L_f ids of width D (sum pooling): forward L_f * D (each id's row
  is read and added once: pooling costs per id, a bag is not one lookup); backward L_f * D (the
  pooled gradient is scattered to each id's row).
- Dot interaction on T = [F + 1, D]: forward T T^T, 2 (F + 1)^2 D (the full matrix, as computed);
  backward two such products, 4 (F + 1)^2 D.
- DCN layer on N = (F + 1) D with rank r: x0 * (W V x + b) + x: forward 4Nr + 3N; backward
  8Nr (input and weight gradients of both factors) + N (bias) + 2N (the product and the sum).
- Not counted: activations, the sigmoid / loss, optimizer updates (O(width) each, well under 1 %
  of the matmuls at swept sizes; optimizer updates are excluded for dense layers too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scaler.model.config import DLRMConfig

FLOAT_BYTES = 4


@dataclass(frozen=True)
class OpCost:
    """One operation's FLOPs per sample and parameters."""

    name: str
    forward: int
    backward: int
    params: int


@dataclass(frozen=True)
class ModelCost:
    """Totals for one DLRM (see the module docstring for the counting rules).

    dense_params: MLP and interaction parameters; sparse_params: embedding rows x D summed over
    tables; forward/train_flops_per_sample: forward and forward + backward FLOPs per sample;
    param_bytes: all parameters in fp32; optimizer_bytes: optimizer state (Adam: 2 floats per
    dense parameter; row-wise Adagrad: 1 float per embedding row); lookup_bytes_per_sample:
    embedding bytes touched per sample (rows read forward, read and written by the update).
    """

    dense_params: int
    sparse_params: int
    forward_flops_per_sample: int
    train_flops_per_sample: int
    param_bytes: int
    optimizer_bytes: int
    lookup_bytes_per_sample: int
    ops: tuple[OpCost, ...]
    embedding_bytes: int = 0  # the tables in fp32 + their row-wise optimizer state

    @property
    def params(self) -> int:
        return self.dense_params + self.sparse_params


def linear_cost(name: str, m: int, n: int, input_grad: bool = True) -> OpCost:
    """FLOPs of Linear(m -> n) with bias, per sample."""
    backward = 2 * m * n + n + (2 * m * n if input_grad else 0)
    return OpCost(name, 2 * m * n + n, backward, m * n + n)


def mlp_costs(prefix: str, in_features: int, sizes: Sequence[int], first_input_grad: bool):
    """One OpCost per layer of an MLP with the given output widths."""
    costs, m = [], in_features
    for i, n in enumerate(sizes):
        costs.append(linear_cost(f"{prefix}.{i}", m, n, first_input_grad or i > 0))
        m = n
    return costs


def interaction_costs(config: DLRMConfig, num_features: int) -> list[OpCost]:
    d, f1 = config.embedding_dim, num_features + 1
    if config.interaction == "dot":
        fwd = 2 * f1 * f1 * d
        return [OpCost("interaction.dot", fwd, 2 * fwd, 0)]
    n, r = f1 * d, config.dcn_rank
    return [
        OpCost(f"interaction.dcn.{i}", 4 * n * r + 3 * n, 8 * n * r + 3 * n, 2 * n * r + n)
        for i in range(config.dcn_layers)
    ]


def model_cost(
    config: DLRMConfig,
    num_dense: int,
    hotness: Sequence[int],
    table_rows: Sequence[int] | None = None,
) -> ModelCost:
    """Counts for a DLRM on `num_dense` dense features and len(hotness) sparse features.

    hotness: ids per sample of each sparse feature (L_f); table_rows: rows of each table
    (default: config.table_rows(len(hotness))).
    """
    num_f = len(hotness)
    rows = list(table_rows) if table_rows is not None else config.table_rows(num_f)
    d = config.embedding_dim
    ops = mlp_costs("bottom", num_dense, config.bottom_sizes(), first_input_grad=False)
    ops += [OpCost(f"embedding.{f}", hot * d, hot * d, 0) for f, hot in enumerate(hotness)]
    ops += interaction_costs(config, num_f)
    ops += mlp_costs("top", config.interaction_width(num_f), config.top_sizes(), True)
    dense = sum(op.params for op in ops)
    sparse = sum(r * d for r in rows)
    fwd = sum(op.forward for op in ops)
    return ModelCost(
        dense_params=dense,
        sparse_params=sparse,
        forward_flops_per_sample=fwd,
        train_flops_per_sample=fwd + sum(op.backward for op in ops),
        param_bytes=FLOAT_BYTES * (dense + sparse),
        optimizer_bytes=FLOAT_BYTES * (2 * dense + sum(rows)),
        lookup_bytes_per_sample=FLOAT_BYTES * 3 * d * sum(hotness),
        ops=tuple(ops),
        embedding_bytes=FLOAT_BYTES * (sparse + sum(rows)),
    )
