"""One DLRM trial: config errors, eval schedule, metrics, checkpoint/resume, learning."""

import io
import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from scaler.data.synthetic import SparseFeatureSpec, SyntheticConfig, bayes_floor
from scaler.model import DLRMConfig, model_cost
from scaler.trial import (
    DLRMTrial,
    DLRMTrialConfig,
    TrainConfig,
    default_hparams,
    eval_schedule,
    log_loss,
    roc_auc,
    train,
)

DATA = SyntheticConfig(
    seed=1,
    base_ctr=0.1,
    features=(
        SparseFeatureSpec(vocab_size=300, zipf_exponent=0.9),
        SparseFeatureSpec(vocab_size=3_000, zipf_exponent=1.0, hotness=2),
        SparseFeatureSpec(vocab_size=30_000, zipf_exponent=1.1),
    ),
)


@pytest.fixture(autouse=True)
def _restore_threads():
    """Trials here run on one thread (steady timings on a shared machine); restore afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _config(model=None, **train_kwargs) -> DLRMTrialConfig:
    train_kwargs.setdefault("eval_samples", 1 << 14)
    train_kwargs.setdefault("num_threads", 1)
    return DLRMTrialConfig(
        data=DATA,
        model=model or DLRMConfig(embedding_dim=8, num_embeddings=1000, top_mlp=(16,)),
        train=TrainConfig(**train_kwargs),
    )


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: _config(samples=1000, batch_size=2000), "train.batch_size"),
        (lambda: _config(samples=0), "samples"),
        (lambda: _config(samples=1000, eval_at=(500, 2000)), "train.eval_at"),
        (lambda: _config(samples=1000, first_eval=5000), "train.first_eval"),
        (lambda: _config(samples=1000, dense_lr=-1.0), "dense_lr"),
        (lambda: _config(model=DLRMConfig(interaction="fm")), "interaction"),
        (lambda: _config(model=DLRMConfig(num_embeddings=0)), "num_embeddings"),
        (lambda: _config(model=DLRMConfig(num_embeddings=(10, 10))), "model.num_embeddings"),
        (
            lambda: DLRMTrialConfig.model_validate({"model": {"embedding_dim": -2}}),
            "embedding_dim",
        ),
    ],
)
def test_trial_config_errors_name_the_field(build, field):
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        build()


def test_eval_schedule_is_log_spaced_in_whole_batches():
    cfg = _config(samples=1_000_000, batch_size=1000, num_evals=7, first_eval=1000)
    points = eval_schedule(cfg)
    assert points[0] == 1000
    assert points[-1] == 1_000_000
    assert all(p % 1000 == 0 for p in points)
    ratios = np.diff(np.log10(points))
    np.testing.assert_allclose(ratios, 0.5, atol=0.11)  # log-spaced up to batch rounding
    np.testing.assert_allclose(np.diff(np.log10(points[2:])), 0.5, atol=0.01)
    explicit = _config(samples=5000, eval_at=(3000, 100, 3000))
    assert eval_schedule(explicit) == [100, 3000]


def test_default_hparams_scale_with_model_size():
    small = default_hparams(10_000, 64)
    big = default_hparams(50_000_000, 4096)
    assert small.batch_size == 512
    assert big.batch_size == 2048
    assert big.dense_lr < small.dense_lr
    # default batch is capped at a small budget; explicit values win
    assert DLRMTrial(_config(samples=300, eval_samples=64)).hparams.batch_size == 300
    assert DLRMTrial(_config(samples=300, dense_lr=0.5)).hparams.dense_lr == 0.5


def test_metrics_against_direct_formulas():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 400).astype(np.float64)  # many ties
    labels = (rng.random(400) < 0.3).astype(np.float32)
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert roc_auc(scores, labels) == pytest.approx(pairs / (len(pos) * len(neg)))
    assert math.isnan(roc_auc(scores, np.zeros(400)))
    p = 1 / (1 + np.exp(-scores + 2))
    direct = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert log_loss(scores - 2, labels) == pytest.approx(direct)


def test_eval_points_carry_accounting():
    cfg = _config(samples=4096, batch_size=512, eval_at=(1024, 4096))
    points = list(train(cfg))
    assert [p.samples for p in points] == [1024, 4096]
    cost = model_cost(cfg.model, DATA.num_dense, [1, 2, 1], cfg.table_rows())
    assert cfg.table_rows() == [300, 1000, 1000]  # rows capped at the vocabulary
    for p in points:
        assert p.dense_params == cost.dense_params
        assert p.sparse_params == cost.sparse_params
        assert p.flops == cost.train_flops_per_sample * p.samples
        assert 0 < p.wall_seconds == p.device_seconds
        assert 0.3 < p.ne < 3.0
        assert 0.0 <= p.auc <= 1.0
    assert points[1].wall_seconds > points[0].wall_seconds


def test_resume_from_checkpoint_continues_exactly():
    cfg = _config(samples=6000, batch_size=256, eval_at=(512, 1280, 3000, 6000))
    full = [p.loss for p in train(cfg)]

    trial = DLRMTrial(cfg)
    run = trial.run()
    first = [next(run).loss, next(run).loss]
    state = trial.state_dict()
    del trial, run
    buffer = io.BytesIO()
    torch.save(state, buffer)  # a checkpoint survives serialisation (Ray Tune stores it)
    buffer.seek(0)
    restored = torch.load(buffer, weights_only=False)

    resumed_trial = DLRMTrial(cfg, checkpoint=restored)
    assert resumed_trial.samples == 1280
    rest = [p.loss for p in resumed_trial.run()]
    assert first == pytest.approx(full[:2], rel=1e-6)
    assert rest == pytest.approx(full[2:], rel=1e-6, abs=1e-7)
    assert rest[-1] != full[0]  # training did happen after the resume


def test_checkpoint_of_another_config_is_refused():
    trial = DLRMTrial(_config(samples=512, eval_at=(512,)))
    state = trial.state_dict()
    with pytest.raises(ValueError, match="config"):
        DLRMTrial(_config(samples=1024, eval_at=(512,)), checkpoint=state)


def test_learning_approaches_the_floor_and_bigger_models_get_closer():
    floor = bayes_floor(DATA, samples=1 << 17)
    tiny = DLRMConfig(embedding_dim=4, num_embeddings=(30, 30, 30), bottom_mlp=(), top_mlp=(2,))
    big = DLRMConfig(embedding_dim=16, num_embeddings=(300, 3000, 30_000), top_mlp=(64, 32))
    common = {"samples": 400_000, "num_evals": 4, "first_eval": 4096, "eval_samples": 1 << 15}
    big_points = list(train(_config(model=big, **common)))
    tiny_points = list(train(_config(model=tiny, **common)))
    gaps = [p.loss - floor.loss for p in big_points]
    assert gaps[-1] < 0.5 * gaps[0]  # falls toward the floor as samples grow
    assert big_points[-1].loss < big_points[1].loss
    assert gaps[-1] > -0.01  # nothing beats the Bayes floor beyond eval noise
    assert big_points[-1].loss < tiny_points[-1].loss - 0.005
    assert big_points[-1].auc > tiny_points[-1].auc
