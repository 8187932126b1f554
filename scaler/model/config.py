"""The sizes of a DLRM: what a parameter-scaling sweep varies."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

PositiveInt = Annotated[int, Field(gt=0)]


class DLRMConfig(BaseModel):
    """DLRM sizes.

    embedding_dim: D, the width of every table (and of the bottom MLP's output), a multiple of 4.
    num_embeddings: rows per table (the hash size): one int for every table, or one per feature.
    bottom_mlp: hidden widths of the dense (bottom) MLP; a last layer of width D is appended.
    top_mlp: hidden widths of the over (top) MLP, at least one; a last layer of width 1 is appended.
    interaction: "dot" (pairwise dot products, DLRM) or "dcn" (low-rank DCN-v2 cross net).
    dcn_layers, dcn_rank: depth and rank of the cross net (used when interaction == "dcn").
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    embedding_dim: PositiveInt = 16
    num_embeddings: PositiveInt | tuple[PositiveInt, ...] = 100_000
    bottom_mlp: tuple[PositiveInt, ...] = (64,)
    top_mlp: tuple[PositiveInt, ...] = Field(default=(64, 32), min_length=1)
    interaction: Literal["dot", "dcn"] = "dot"
    dcn_layers: PositiveInt = 2
    dcn_rank: PositiveInt = 16

    @field_validator("embedding_dim")
    @classmethod
    def _dim_multiple_of_4(cls, value: int) -> int:
        if value % 4:
            raise ValueError(
                f"embedding_dim is {value}, but must be a multiple of 4 (FBGEMM's embedding kernel)"
            )
        return value

    def table_rows(self, num_features: int) -> list[int]:
        """Rows of each of the `num_features` tables."""
        if isinstance(self.num_embeddings, int):
            return [self.num_embeddings] * num_features
        if len(self.num_embeddings) != num_features:
            raise ValueError(
                f"num_embeddings has {len(self.num_embeddings)} entries, but the data has "
                f"{num_features} sparse features"
            )
        return list(self.num_embeddings)

    def bottom_sizes(self) -> list[int]:
        """Output widths of every bottom-MLP layer, the last one being D."""
        return [*self.bottom_mlp, self.embedding_dim]

    def top_sizes(self) -> list[int]:
        """Output widths of every top-MLP layer, the last one being 1 (the logit)."""
        return [*self.top_mlp, 1]

    def interaction_width(self, num_features: int) -> int:
        """Width of the interaction output (the top MLP's input) for F = num_features.

        dot: D + F + choose(F, 2) = D + choose(F + 1, 2); dcn: (F + 1) * D.
        """
        d, f = self.embedding_dim, num_features
        if self.interaction == "dot":
            return d + (f + 1) * f // 2
        return (f + 1) * d
