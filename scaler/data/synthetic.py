"""Synthetic click logs whose best achievable loss (the Bayes floor) is known.

A sample has F categorical features (each `hotness` ids drawn from a Zipf law over a large
vocabulary), `num_dense` skewed dense features, and a label drawn as
Bernoulli(sigmoid(teacher logit)). The teacher is a fixed function of the seed:

    logit = bias + sum_f a_f(ids_f)/sqrt(F)                       per-id main effects
                 + sum_{f<g} <u_f(ids_f), u_g(ids_g)> / sqrt(k P) latent pairwise interactions
                 + v . n / sqrt(J)                                 dense part
where a_f(ids) / u_f(ids) are the means over the feature's ids of per-id effects (scalar / k-vector),
P = choose(F, 2), n is the latent normal behind the dense features and `bias` is calibrated so
that the mean click rate equals `base_ctr`. Per-id effects are pseudo-random functions of
(seed, feature, id) computed by hashing, so no table of vocabulary size is needed (a table is
built, from the same hash, only when the vocabulary is small enough to be faster that way).
Long-tail ids carry effects that only more data reveals: that is what makes data scaling work.

Streams: sample j of stream s is a pure function of (seed, s, j); samples are generated in blocks
of `BLOCK` so any batch size reads the same sample sequence. Stream TRAIN and stream EVAL use
disjoint random streams, so the held-out set never overlaps training.

Notation: n samples, F sparse features, L_f ids of feature f (its hotness), J dense features,
k latent dimension.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.optimize import brentq
from scipy.stats import norm
from torchrec.datasets.utils import Batch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

logger = logging.getLogger(__name__)

TRAIN = 0  # training stream
EVAL = 1  # held-out evaluation stream (also used to estimate the Bayes floor)
_CALIBRATION = 2  # private stream used to calibrate the teacher's bias
BLOCK = 8192  # samples per generated block; batches are slices of blocks
_TABLE_MAX_ELEMENTS = 1 << 23  # per-id effects are tabulated below this many floats per feature

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class SparseFeatureSpec(BaseModel):
    """One categorical feature: ids in [0, vocab_size), rank r drawn with P(r) ~ (r+1)^-s."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vocab_size: int = Field(gt=1, le=1 << 40)
    zipf_exponent: float = Field(gt=0.0, le=4.0)
    hotness: int = Field(default=1, ge=1, le=1024)  # ids per sample (multi-hot when > 1)


def _default_features() -> tuple[SparseFeatureSpec, ...]:
    return (
        SparseFeatureSpec(vocab_size=10_000, zipf_exponent=0.9),
        SparseFeatureSpec(vocab_size=100_000, zipf_exponent=1.0, hotness=2),
        SparseFeatureSpec(vocab_size=1_000_000, zipf_exponent=1.05),
        SparseFeatureSpec(vocab_size=10_000_000, zipf_exponent=1.1),
    )


class SyntheticConfig(BaseModel):
    """The synthetic CTR data set: features, teacher strength, base rate, seed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["synthetic"] = "synthetic"
    seed: int = Field(default=0, ge=0)
    features: tuple[SparseFeatureSpec, ...] = Field(default_factory=_default_features, min_length=1)
    num_dense: int = Field(default=13, ge=1, le=4096)
    dense_skew: float = Field(default=1.0, gt=0.0, le=5.0)  # sigma of the lognormal dense counts
    latent_dim: int = Field(default=4, ge=1, le=256)  # k: teacher's interaction rank
    base_ctr: float = Field(default=0.03, gt=0.0, lt=0.5)
    id_effect_scale: float = Field(default=1.5, ge=0.0)  # std of the summed per-id main effects
    interaction_scale: float = Field(default=1.0, ge=0.0)  # std of the summed interactions
    dense_scale: float = Field(default=0.5, ge=0.0)  # std of the dense part

    @model_validator(mode="after")
    def _check_features(self) -> SyntheticConfig:
        if len(self.features) > 1024:
            raise ValueError(f"features has {len(self.features)} entries, but must be <= 1024")
        return self

    @property
    def num_sparse(self) -> int:
        return len(self.features)

    @property
    def feature_names(self) -> list[str]:
        return [f"cat_{i}" for i in range(self.num_sparse)]


# ---------------------------------------------------------------- hashing and sampling primitives


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A bijective 64-bit mixer (splitmix64 finaliser); uint64 in, uint64 out, wraps mod 2^64."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _hash_key(*parts: int) -> np.uint64:
    """A 64-bit key from small non-negative ints (seed, feature, purpose)."""
    h = np.zeros(1, dtype=np.uint64)
    for p in parts:
        h = _splitmix64(h ^ np.uint64(p & 0xFFFFFFFFFFFFFFFF))
    return h[0]


def _pseudo_normal(h: np.ndarray) -> np.ndarray:
    """Approximately standard-normal float32 from uint64 hashes: Irwin-Hall sum of 4 uniforms."""
    mask = np.uint64(0xFFFF)
    s = (h & mask).astype(np.float32)
    for shift in (16, 32, 48):
        s += ((h >> np.uint64(shift)) & mask).astype(np.float32)
    # sum of 4 U(0,1) has mean 2 and variance 1/3
    return (s * np.float32(1.0 / 65536.0) - np.float32(2.0)) * np.float32(math.sqrt(3.0))


def zipf_ranks(u: np.ndarray, vocab_size: int, exponent: float) -> np.ndarray:
    """Ranks in [0, vocab_size) with P(rank = r) ~ (r + 1)^-exponent, by inverse CDF.

    Uses the continuous power law on [1, V + 1) floored to integers, so the frequency of rank r
    is the integral of x^-s over [r + 1, r + 2): a Zipf law in shape (log-log slope -s away from
    the head), exact at any vocabulary size without a V-sized table.
    u: uniforms in [0, 1), any shape -> int64 ranks, same shape.
    """
    top = float(vocab_size) + 1.0
    if abs(exponent - 1.0) < 1e-9:
        x = np.exp(u * math.log(top))
    else:
        a = 1.0 - exponent
        x = (1.0 + u * (top**a - 1.0)) ** (1.0 / a)
    return np.minimum(x.astype(np.int64) - 1, vocab_size - 1)


def _rank_permutation(vocab_size: int, seed: int, feature: int) -> tuple[int, int]:
    """(mult, shift) of an affine bijection rank -> id mod V, so popular ids are scattered."""
    key = int(_hash_key(seed, feature, 7))
    mult = key % vocab_size or 1
    while math.gcd(mult, vocab_size) != 1:
        mult += 1
    return mult, (key >> 20) % vocab_size


# ---------------------------------------------------------------------------------- the teacher


class _FeatureEffects:
    """Per-id effects of one feature: column 0 the main effect, columns 1..k the latent vector."""

    def __init__(self, spec: SparseFeatureSpec, seed: int, feature: int, latent_dim: int) -> None:
        self._key = _hash_key(seed, feature, 11)
        self._cols = latent_dim + 1
        self._table: np.ndarray | None = None
        if spec.vocab_size * self._cols <= _TABLE_MAX_ELEMENTS:
            self._table = self._hashed(np.arange(spec.vocab_size, dtype=np.int64))

    def _hashed(self, ids: np.ndarray) -> np.ndarray:
        """ids [m] int64 -> effects [m, 1 + k] float32, computed from the hash alone."""
        base = ids.astype(np.uint64) * np.uint64(self._cols) + self._key
        with np.errstate(over="ignore"):
            h = base[:, None] + np.arange(self._cols, dtype=np.uint64)[None, :]
        return _pseudo_normal(_splitmix64(h))

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        """ids [n, L] -> pooled (mean over L) effects [n, 1 + k] float32."""
        n, hot = ids.shape
        flat = ids.reshape(-1)
        eff = self._table[flat] if self._table is not None else self._hashed(flat)
        if hot == 1:
            return eff
        return eff.reshape(n, hot, self._cols).mean(axis=1)


class Teacher:
    """The fixed, seeded model that defines click probabilities (see the module docstring)."""

    def __init__(self, config: SyntheticConfig, bias: float = 0.0) -> None:
        c = config
        self.bias = bias
        self._effects = [
            _FeatureEffects(spec, c.seed, f, c.latent_dim) for f, spec in enumerate(c.features)
        ]
        num_f = c.num_sparse
        self._main_scale = np.float32(c.id_effect_scale / math.sqrt(num_f))
        pairs = num_f * (num_f - 1) // 2
        self._inter_scale = np.float32(
            c.interaction_scale / math.sqrt(c.latent_dim * max(pairs, 1))
        )
        rng = np.random.default_rng([c.seed, 101])
        self.dense_weights = rng.standard_normal(c.num_dense).astype(np.float32)
        self.dense_weights *= np.float32(c.dense_scale / math.sqrt(max(c.num_dense, 1)))

    def logits(self, ids: Sequence[np.ndarray], dense_latent: np.ndarray) -> np.ndarray:
        """ids: F arrays [n, L_f] int64; dense_latent [n, J] float32 -> logits [n] float32."""
        pooled = [eff(x) for eff, x in zip(self._effects, ids, strict=True)]  # [n, 1 + k] each
        z = dense_latent @ self.dense_weights + np.float32(self.bias)
        if len(pooled) == 1:
            return z + self._main_scale * pooled[0][:, 0]
        # sum_{f<g} <u_f, u_g> = (|sum_f u_f|^2 - sum_f |u_f|^2) / 2, done on the [n, 1 + k] rows:
        # column 0 (the main effect) is summed linearly and removed from the squared terms.
        total = pooled[0].copy()
        squares = np.einsum("ij,ij->i", pooled[0], pooled[0])
        for p in pooled[1:]:
            total += p
            squares += np.einsum("ij,ij->i", p, p)
        main = total[:, 0]
        main_sq = sum(p[:, 0] * p[:, 0] for p in pooled)
        inter = 0.5 * (np.einsum("ij,ij->i", total, total) - main * main - squares + main_sq)
        return z + self._main_scale * main + self._inter_scale * inter


# ------------------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Block:
    """Samples [start, start + n) of one stream, as NumPy arrays.

    ids: F arrays [n, L_f] int64 (raw ids in [0, vocab_size)); dense [n, J] float32
    (log1p of lognormal counts); labels [n] float32 in {0, 1}; probs [n] float32, the teacher's
    click probabilities.
    """

    ids: tuple[np.ndarray, ...]
    dense: np.ndarray
    labels: np.ndarray
    probs: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def slice(self, lo: int, hi: int) -> Block:
        return Block(
            tuple(x[lo:hi] for x in self.ids),
            self.dense[lo:hi],
            self.labels[lo:hi],
            self.probs[lo:hi],
        )

    @staticmethod
    def concat(blocks: Sequence[Block]) -> Block:
        if len(blocks) == 1:
            return blocks[0]
        return Block(
            tuple(np.concatenate(x) for x in zip(*(b.ids for b in blocks), strict=True)),
            np.concatenate([b.dense for b in blocks]),
            np.concatenate([b.labels for b in blocks]),
            np.concatenate([b.probs for b in blocks]),
        )


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


class SyntheticCTR:
    """Generator of the synthetic data set described by a `SyntheticConfig`.

    Deterministic: `block(stream, i)` and therefore every batch is a pure function of
    (config, stream, index). Nothing is held in memory beyond one block per stream.
    """

    def __init__(self, config: SyntheticConfig) -> None:
        self.config = config
        self._perms = [
            _rank_permutation(s.vocab_size, config.seed, f) for f, s in enumerate(config.features)
        ]
        rng = np.random.default_rng([config.seed, 103])
        self._dense_mu = torch.from_numpy(
            rng.uniform(-1.0, 2.0, config.num_dense).astype(np.float32)
        )
        sigma = config.dense_skew * rng.uniform(0.5, 1.5, config.num_dense)
        self._dense_sigma = torch.from_numpy(sigma.astype(np.float32))
        self.teacher = Teacher(config, bias=0.0)
        self.teacher.bias = self._calibrate_bias()
        self._last: dict[int, tuple[int, Block]] = {}
        self._lengths: dict[int, torch.Tensor] = {}

    def _raw(self, stream: int, index: int, n: int = BLOCK) -> tuple[tuple, np.ndarray, np.ndarray]:
        """Draws ids, dense features and the dense latent normals of one block."""
        rng = np.random.Generator(np.random.PCG64([self.config.seed, stream, index]))
        # torch's normal sampler is ~3x faster than NumPy's; seeded from the same stream
        gen = torch.Generator().manual_seed(int(rng.integers(0, 1 << 62)))
        ids = []
        for spec, (mult, shift) in zip(self.config.features, self._perms, strict=True):
            ranks = zipf_ranks(rng.random((n, spec.hotness)), spec.vocab_size, spec.zipf_exponent)
            ids.append((ranks * mult + shift) % spec.vocab_size)
        latent = torch.randn((n, self.config.num_dense), generator=gen)
        # log1p of lognormal counts (as the Criteo pipeline transforms counts): softplus of the
        # log-count; torch's vectorised softplus is ~3x faster than NumPy's log1p(exp(.))
        dense = torch.nn.functional.softplus(
            torch.addcmul(self._dense_mu, self._dense_sigma, latent)
        )
        return tuple(ids), dense.numpy(), latent.numpy()

    def _calibrate_bias(self, n: int = 1 << 17) -> float:
        """Bias b with mean(sigmoid(z + b)) = base_ctr on a private calibration sample."""
        ids, _, latent = self._raw(_CALIBRATION, 0, n)
        z = self.teacher.logits(ids, latent).astype(np.float64)
        target = self.config.base_ctr

        def gap(b: float) -> float:
            return float(np.mean(1.0 / (1.0 + np.exp(-(z + b))))) - target

        bias = brentq(gap, -60.0, 60.0, xtol=1e-10)
        logger.debug("calibrated teacher bias %.4f for base_ctr %.4f", bias, target)
        return float(bias)

    def block(self, stream: int, index: int) -> Block:
        """Samples [index * BLOCK, (index + 1) * BLOCK) of `stream`."""
        cached = self._last.get(stream)
        if cached is not None and cached[0] == index:
            return cached[1]
        rng_labels = np.random.Generator(np.random.PCG64([self.config.seed, stream, index, 1]))
        ids, dense, latent = self._raw(stream, index)
        probs = _sigmoid(self.teacher.logits(ids, latent))
        labels = (rng_labels.random(BLOCK, dtype=np.float32) < probs).astype(np.float32)
        out = Block(ids, dense, labels, probs)
        self._last[stream] = (index, out)
        return out

    def samples(self, stream: int, start: int, count: int) -> Block:
        """Samples [start, start + count) of `stream` (count > 0)."""
        if start < 0 or count <= 0:
            raise ValueError(f"start is {start} and count {count}, but need start >= 0, count > 0")
        first, last = start // BLOCK, (start + count - 1) // BLOCK
        parts = []
        for i in range(first, last + 1):
            lo = max(start - i * BLOCK, 0)
            hi = min(start + count - i * BLOCK, BLOCK)
            parts.append(self.block(stream, i).slice(lo, hi))
        return Block.concat(parts)

    def eval_batches(
        self, n: int, chunk: int, table_rows: Sequence[int] | None = None
    ) -> list[Batch]:
        """The held-out set: the first `n` samples of the eval stream, in batches of `chunk`."""
        block = self.samples(EVAL, 0, n)
        return [self.to_batch(block.slice(i, i + chunk), table_rows) for i in range(0, n, chunk)]

    def to_batch(self, block: Block, table_rows: Sequence[int] | None = None) -> Batch:
        """A TorchRec `Batch`: dense [n, J] float32, KJT with F keys (ids mod table_rows), labels [n]."""
        n = len(block)
        values = []
        for f, x in enumerate(block.ids):
            flat = x.reshape(-1)
            values.append(flat % table_rows[f] if table_rows is not None else flat)
        kjt = KeyedJaggedTensor(
            keys=self.config.feature_names,
            values=torch.from_numpy(np.concatenate(values)),
            lengths=self._lengths_for(n),
        )
        return Batch(
            dense_features=torch.from_numpy(block.dense),
            sparse_features=kjt,
            labels=torch.from_numpy(block.labels),
        )

    def _lengths_for(self, n: int) -> torch.Tensor:
        if n not in self._lengths:
            hot = [s.hotness for s in self.config.features]
            self._lengths[n] = torch.tensor(np.repeat(hot, n), dtype=torch.int32)
        return self._lengths[n]

    def batch(
        self, stream: int, index: int, batch_size: int, table_rows: Sequence[int] | None = None
    ) -> Batch:
        """Batch `index` of `stream`: samples [index * batch_size, (index + 1) * batch_size)."""
        return self.to_batch(self.samples(stream, index * batch_size, batch_size), table_rows)

    def batches(
        self,
        stream: int,
        batch_size: int,
        start: int = 0,
        stop: int | None = None,
        table_rows: Sequence[int] | None = None,
    ) -> Iterator[Batch]:
        """Consecutive batches covering samples [start, stop) (endless when stop is None).

        The last batch is shorter when stop - start is not a multiple of batch_size.
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size is {batch_size}, but must be > 0")
        pos = start
        while stop is None or pos < stop:
            n = batch_size if stop is None else min(batch_size, stop - pos)
            yield self.to_batch(self.samples(stream, pos, n), table_rows)
            pos += n


@functools.lru_cache(maxsize=8)
def synthetic_ctr(config: SyntheticConfig) -> SyntheticCTR:
    """A cached generator per config (the bias calibration costs ~0.1 s)."""
    return SyntheticCTR(config)


# ---------------------------------------------------------------------------------- the floor


def binary_entropy(p: np.ndarray | float) -> np.ndarray | float:
    """H(p) = -p log p - (1 - p) log(1 - p), in nats."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


class BayesFloor(NamedTuple):
    """The teacher's expected log loss on the eval distribution, with a confidence interval.

    loss: E[H(p)] in nats, estimated on `samples` eval-stream samples; [loss_low, loss_high] its
    `confidence` interval (normal approximation); base_rate: mean teacher probability;
    ne: loss / H(base_rate), with ne_low/ne_high the loss interval divided by the same entropy.
    """

    loss: float
    loss_low: float
    loss_high: float
    ne: float
    ne_low: float
    ne_high: float
    base_rate: float
    samples: int
    confidence: float


def bayes_floor(
    config: SyntheticConfig, samples: int = 1 << 20, confidence: float = 0.95
) -> BayesFloor:
    """Estimates the Bayes floor of `config` on the first `samples` samples of the eval stream.

    Uses the expected loss of each sample given its teacher probability, E[-log q(y)] = H(p),
    rather than the sampled labels: same expectation, lower variance.
    """
    if samples < 2:
        raise ValueError(f"samples is {samples}, but must be >= 2")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence is {confidence}, but must be in (0, 1)")
    gen = synthetic_ctr(config)
    total = total_sq = rate = 0.0
    for start in range(0, samples, BLOCK * 16):
        probs = gen.samples(EVAL, start, min(BLOCK * 16, samples - start)).probs
        h = binary_entropy(probs)
        total += float(h.sum())
        total_sq += float((h * h).sum())
        rate += float(probs.astype(np.float64).sum())
    mean = total / samples
    std = math.sqrt(max(total_sq / samples - mean * mean, 0.0) * samples / (samples - 1))
    half = float(norm.ppf(0.5 + confidence / 2)) * std / math.sqrt(samples)
    base = rate / samples
    h_base = float(binary_entropy(base))
    return BayesFloor(
        loss=mean,
        loss_low=mean - half,
        loss_high=mean + half,
        ne=mean / h_base,
        ne_low=(mean - half) / h_base,
        ne_high=(mean + half) / h_base,
        base_rate=base,
        samples=samples,
        confidence=confidence,
    )
