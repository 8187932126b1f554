"""The synthetic CTR generator: determinism, streams, Zipf shape, calibration, the Bayes floor."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from scaler.data import synthetic
from scaler.data.synthetic import (
    BLOCK,
    EVAL,
    TRAIN,
    SparseFeatureSpec,
    SyntheticConfig,
    SyntheticCTR,
    bayes_floor,
    binary_entropy,
    zipf_ranks,
)

SMALL = SyntheticConfig(
    seed=3,
    features=(
        SparseFeatureSpec(vocab_size=1_000, zipf_exponent=0.9),
        SparseFeatureSpec(vocab_size=50_000, zipf_exponent=1.1, hotness=3),
        SparseFeatureSpec(vocab_size=10_000_000, zipf_exponent=1.05),
    ),
)


def _same_batch(a, b) -> bool:
    return (
        torch.equal(a.dense_features, b.dense_features)
        and torch.equal(a.labels, b.labels)
        and torch.equal(a.sparse_features.values(), b.sparse_features.values())
        and torch.equal(a.sparse_features.lengths(), b.sparse_features.lengths())
    )


def test_synthetic_batches_are_deterministic_by_seed():
    a = SyntheticCTR(SMALL).batch(TRAIN, 5, 300)
    b = SyntheticCTR(SMALL).batch(TRAIN, 5, 300)
    c = SyntheticCTR(SMALL.model_copy(update={"seed": 4})).batch(TRAIN, 5, 300)
    assert _same_batch(a, b)
    assert not torch.equal(a.dense_features, c.dense_features)


def test_synthetic_batch_is_pure_function_of_index():
    """Batch i read directly (out of order, across a block boundary) equals batch i streamed."""
    gen = SyntheticCTR(SMALL)
    size = 1000
    index = BLOCK // size  # straddles blocks 0 and 1
    direct = gen.batch(TRAIN, index, size)
    gen.batch(EVAL, 7, size)  # touching other streams / blocks must not matter
    streamed = list(SyntheticCTR(SMALL).batches(TRAIN, size, stop=(index + 1) * size))
    assert len(streamed) == index + 1
    assert _same_batch(direct, streamed[index])
    # the sample sequence does not depend on the batch size
    big = SyntheticCTR(SMALL).samples(TRAIN, 0, 4 * size)
    assert np.array_equal(big.dense[size : 2 * size], gen.batch(TRAIN, 1, size).dense_features)


def test_synthetic_eval_stream_never_overlaps_train():
    gen = SyntheticCTR(SMALL)
    n = 3 * BLOCK
    train = gen.samples(TRAIN, 0, n).dense
    evals = gen.samples(EVAL, 0, n).dense
    train_rows = {r.tobytes() for r in train}
    assert len(train_rows) == n  # continuous dense features: every row distinct
    assert not train_rows & {r.tobytes() for r in evals}


def test_synthetic_batch_layout_and_table_folding():
    gen = SyntheticCTR(SMALL)
    rows = [100, 1000, 5000]
    batch = gen.batch(TRAIN, 0, 64, table_rows=rows)
    assert batch.dense_features.shape == (64, 13)
    assert batch.dense_features.dtype == torch.float32
    assert batch.labels.shape == (64,)
    kjt = batch.sparse_features
    assert kjt.keys() == SMALL.feature_names
    lengths = kjt.lengths().view(3, 64)
    assert lengths.tolist() == [[1] * 64, [3] * 64, [1] * 64]
    for key, r in zip(kjt.keys(), rows, strict=True):
        v = kjt[key].values()
        assert int(v.min()) >= 0
        assert int(v.max()) < r
    raw = gen.samples(TRAIN, 0, 4 * BLOCK)
    for ids, spec in zip(raw.ids, SMALL.features, strict=True):
        assert ids.shape[1] == spec.hotness
        assert 0 <= ids.min()
        assert ids.max() < spec.vocab_size
    # dense features are right-skewed (log1p of lognormal counts)
    dense = raw.dense.astype(np.float64)
    skew = ((dense - dense.mean(0)) ** 3).mean(0) / dense.std(0) ** 3
    assert np.median(skew) > 0.3


@pytest.mark.parametrize("exponent", [0.8, 1.0, 1.3])
def test_zipf_ranks_follow_power_law(exponent):
    rng = np.random.default_rng(0)
    ranks = zipf_ranks(rng.random(2_000_000), 10**6, exponent)
    assert ranks.min() >= 0
    assert ranks.max() < 10**6
    counts = np.bincount(ranks, minlength=10**6)
    r = np.arange(10, 300)
    slope = np.polyfit(np.log(r + 1.5), np.log(counts[r]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.06)
    # a popular id is far more frequent than a tail id
    assert counts[0] > 50 * counts[5000:6000].mean()


def test_zipf_ranks_on_a_tiny_vocabulary_stay_in_range():
    ranks = zipf_ranks(np.array([0.0, 0.5, 1 - 1e-16]), 3, 1.2)
    assert ranks.tolist()[0] == 0
    assert ranks.max() <= 2


def test_hashed_and_tabulated_effects_agree(monkeypatch):
    tabulated = SyntheticCTR(SMALL).block(TRAIN, 0)
    monkeypatch.setattr(synthetic, "_TABLE_MAX_ELEMENTS", 0)  # every feature hashed on the fly
    hashed = SyntheticCTR(SMALL).block(TRAIN, 0)
    np.testing.assert_allclose(hashed.probs, tabulated.probs, rtol=1e-5)


def test_synthetic_base_rate_is_calibrated():
    cfg = SMALL.model_copy(update={"base_ctr": 0.05})
    block = SyntheticCTR(cfg).samples(EVAL, 0, 1 << 17)
    assert float(block.probs.mean()) == pytest.approx(0.05, rel=0.05)
    assert float(block.labels.mean()) == pytest.approx(0.05, rel=0.08)


def test_bayes_floor_interval_and_ne():
    small = bayes_floor(SMALL, samples=1 << 15)
    large = bayes_floor(SMALL, samples=1 << 18)
    assert small.loss_low < small.loss < small.loss_high
    assert small.loss_low <= large.loss <= small.loss_high
    # width shrinks like 1/sqrt(n): 8x the samples -> ~2.8x narrower
    ratio = (small.loss_high - small.loss_low) / (large.loss_high - large.loss_low)
    assert ratio == pytest.approx(math.sqrt(8), rel=0.2)
    assert large.ne == pytest.approx(large.loss / binary_entropy(large.base_rate))
    assert 0.3 < large.ne < 0.95  # informative teacher, but far from deterministic
    # the teacher's own log loss on sampled labels agrees with the floor
    block = SyntheticCTR(SMALL).samples(EVAL, 0, 1 << 18)
    p = block.probs.astype(np.float64)
    y = block.labels
    sampled = -np.mean(y * np.log(p) + (1 - y) * np.log1p(-p))
    assert abs(sampled - large.loss) < 0.02 * large.loss


def test_stronger_teacher_has_lower_floor():
    weak = bayes_floor(SMALL.model_copy(update={"id_effect_scale": 0.3}), samples=1 << 15)
    strong = bayes_floor(SMALL.model_copy(update={"id_effect_scale": 2.5}), samples=1 << 15)
    assert strong.ne < weak.ne - 0.05


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"features": [{"vocab_size": 0, "zipf_exponent": 1.0}]}, "vocab_size"),
        ({"features": [{"vocab_size": 10, "zipf_exponent": -1.0}]}, "zipf_exponent"),
        ({"features": [{"vocab_size": 10, "zipf_exponent": 1.0, "hotness": 0}]}, "hotness"),
        ({"base_ctr": 0.7}, "base_ctr"),
        ({"num_dense": 0}, "num_dense"),
    ],
)
def test_synthetic_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        SyntheticConfig(**kwargs)


def test_samples_rejects_bad_range():
    with pytest.raises(ValueError, match="count"):
        SyntheticCTR(SMALL).samples(TRAIN, 0, 0)
