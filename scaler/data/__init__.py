"""CTR data: the synthetic generator with a known Bayes floor, and the Criteo TSV reader."""

from scaler.data.criteo import (
    MALFORMED_REASONS,
    CriteoFormatError,
    CriteoReader,
    CriteoSource,
    CriteoStats,
    write_criteo_tsv,
)
from scaler.data.synthetic import (
    BLOCK,
    EVAL,
    TRAIN,
    BayesFloor,
    Block,
    SparseFeatureSpec,
    SyntheticConfig,
    SyntheticCTR,
    Teacher,
    bayes_floor,
    binary_entropy,
    synthetic_ctr,
    zipf_ranks,
)

__all__ = [
    "BLOCK",
    "EVAL",
    "MALFORMED_REASONS",
    "TRAIN",
    "BayesFloor",
    "Block",
    "CriteoFormatError",
    "CriteoReader",
    "CriteoSource",
    "CriteoStats",
    "SparseFeatureSpec",
    "SyntheticCTR",
    "SyntheticConfig",
    "Teacher",
    "bayes_floor",
    "binary_entropy",
    "synthetic_ctr",
    "write_criteo_tsv",
    "zipf_ranks",
]
