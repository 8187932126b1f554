"""DLRM built from TorchRec modules, with the embedding optimizer fused into the backward pass.

Notation: B batch, J dense features, F sparse features, D embedding dim.

The tables live in a TorchRec `FusedEmbeddingBagCollection` (FBGEMM's table-batched embedding
kernel, one call for all tables, the optimizer applied to the touched rows inside backward):
that is what makes the CPU path as fast as a plain `nn.EmbeddingBag(sparse=True)` model, where a
dense optimizer over `EmbeddingBagCollection` is several times slower. The dense part (bottom
MLP, interaction, top MLP) is TorchRec's `DenseArch`, `InteractionArch` / `InteractionDCNArch`
and `OverArch`, trained by an ordinary optimizer over `dense_parameters()`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import nn
from torchrec import optim as trec_optim
from torchrec.models.dlrm import DenseArch, InteractionArch, InteractionDCNArch, OverArch
from torchrec.modules.crossnet import LowRankCrossNet
from torchrec.modules.embedding_configs import EmbeddingBagConfig
from torchrec.modules.fused_embedding_modules import FusedEmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from scaler.model.config import DLRMConfig

logger = logging.getLogger(__name__)

SparseOptimizer = Literal["rowwise_adagrad", "adagrad", "sgd"]
_SPARSE_OPTIMIZERS = {
    "rowwise_adagrad": trec_optim.RowWiseAdagrad,
    "adagrad": torch.optim.Adagrad,
    "sgd": torch.optim.SGD,
}


class DLRM(nn.Module):
    """DLRM: bottom MLP on dense features, pooled embeddings, interaction, top MLP -> logit.

    forward(dense [B, J] float, sparse KJT with keys `feature_names`) -> logits [B].
    The embedding tables update themselves in backward (fused optimizer `sparse_optimizer`
    with learning rate `sparse_lr`); `dense_parameters()` is what a dense optimizer gets.
    """

    def __init__(
        self,
        config: DLRMConfig,
        num_dense: int,
        feature_names: Sequence[str],
        table_rows: Sequence[int],
        sparse_optimizer: SparseOptimizer = "rowwise_adagrad",
        sparse_lr: float = 0.05,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        if num_dense < 1:
            raise ValueError(f"num_dense is {num_dense}, but must be >= 1")
        if len(table_rows) != len(feature_names):
            raise ValueError(
                f"table_rows has {len(table_rows)} entries, but there are "
                f"{len(feature_names)} features"
            )
        if sparse_optimizer not in _SPARSE_OPTIMIZERS:
            raise ValueError(
                f"sparse_optimizer is {sparse_optimizer!r}, but must be one of "
                f"{sorted(_SPARSE_OPTIMIZERS)}"
            )
        device = torch.device(device)
        self.config = config
        self.num_features = len(feature_names)
        d, num_f = config.embedding_dim, self.num_features
        tables = [
            EmbeddingBagConfig(
                name=f"t_{name}", embedding_dim=d, num_embeddings=rows, feature_names=[name]
            )
            for name, rows in zip(feature_names, table_rows, strict=True)
        ]
        self.sparse_arch = FusedEmbeddingBagCollection(
            tables=tables,
            optimizer_type=_SPARSE_OPTIMIZERS[sparse_optimizer],
            optimizer_kwargs={"lr": sparse_lr},
            device=device,
        )
        self.dense_arch = DenseArch(num_dense, config.bottom_sizes(), device=device)
        if config.interaction == "dot":
            self.inter_arch: nn.Module = InteractionArch(num_sparse_features=num_f)
        else:
            crossnet = LowRankCrossNet(
                in_features=(num_f + 1) * d,
                num_layers=config.dcn_layers,
                low_rank=config.dcn_rank,
            )
            self.inter_arch = InteractionDCNArch(num_sparse_features=num_f, crossnet=crossnet)
        self.over_arch = OverArch(
            config.interaction_width(num_f), config.top_sizes(), device=device
        )
        self.inter_arch.to(device)

    def forward(self, dense: torch.Tensor, sparse: KeyedJaggedTensor) -> torch.Tensor:
        """dense [B, J], sparse KJT (F keys) -> logits [B]."""
        x = self.dense_arch(dense)  # [B, D]
        emb = self.sparse_arch(sparse).values()  # [B, F * D], in table order
        emb = emb.view(-1, self.num_features, self.config.embedding_dim)  # [B, F, D]
        return self.over_arch(self.inter_arch(x, emb)).squeeze(1)

    def dense_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the MLPs and the interaction (not the fused embedding tables)."""
        for module in (self.dense_arch, self.inter_arch, self.over_arch):
            yield from module.parameters()

    def sparse_optimizer(self) -> trec_optim.KeyedOptimizer:
        """The fused embedding optimizer (for its state_dict and learning rate)."""
        return self.sparse_arch.fused_optimizer()


def build_dlrm(
    config: DLRMConfig,
    num_dense: int,
    feature_names: Sequence[str],
    table_rows: Sequence[int],
    seed: int = 0,
    sparse_optimizer: SparseOptimizer = "rowwise_adagrad",
    sparse_lr: float = 0.05,
    device: torch.device | str = "cpu",
) -> DLRM:
    """A DLRM whose initial weights are a function of `seed` (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DLRM(
            config, num_dense, feature_names, table_rows, sparse_optimizer, sparse_lr, device
        )
