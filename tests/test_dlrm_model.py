"""The TorchRec DLRM and its accounting, checked against independent counts."""

import pytest
import torch
from pydantic import ValidationError

from scaler.data.synthetic import TRAIN, SparseFeatureSpec, SyntheticConfig, SyntheticCTR
from scaler.model import DLRMConfig, build_dlrm, linear_cost, model_cost

DATA = SyntheticConfig(
    features=(
        SparseFeatureSpec(vocab_size=5_000, zipf_exponent=1.0),
        SparseFeatureSpec(vocab_size=5_000, zipf_exponent=1.0, hotness=3),
        SparseFeatureSpec(vocab_size=5_000, zipf_exponent=1.0),
    ),
)
HOT = [1, 3, 1]

CONFIGS = [
    DLRMConfig(embedding_dim=8, num_embeddings=300, bottom_mlp=(), top_mlp=(4,)),
    DLRMConfig(embedding_dim=16, num_embeddings=(100, 200, 300), bottom_mlp=(32, 24)),
    DLRMConfig(embedding_dim=4, num_embeddings=1000, interaction="dcn", dcn_layers=3, dcn_rank=2),
]


def _model(config, seed=0):
    rows = config.table_rows(DATA.num_sparse)
    return build_dlrm(config, DATA.num_dense, DATA.feature_names, rows, seed=seed), rows


@pytest.mark.parametrize("config", CONFIGS)
def test_dlrm_forward_shape_and_param_counts(config):
    model, rows = _model(config)
    batch = SyntheticCTR(DATA).batch(TRAIN, 0, 32, table_rows=rows)
    logits = model(batch.dense_features, batch.sparse_features)
    assert logits.shape == (32,)
    assert torch.isfinite(logits).all()
    cost = model_cost(config, DATA.num_dense, HOT)
    dense = sum(p.numel() for p in model.dense_parameters())
    total = sum(p.numel() for p in model.parameters())
    assert cost.dense_params == dense
    assert cost.sparse_params == total - dense == sum(rows) * config.embedding_dim
    first_top = model.over_arch.model[0]._mlp[0]._linear
    assert first_top.in_features == config.interaction_width(DATA.num_sparse)


def test_accounting_matches_hand_counted_flops():
    """J=13, bottom 13->8->4, D=4, F=3 with hotness (1,3,1), dot, top 10->6->1."""
    config = DLRMConfig(embedding_dim=4, num_embeddings=10, bottom_mlp=(8,), top_mlp=(6,))
    cost = model_cost(config, 13, HOT)
    # forward: bottom 2*13*8+8 + 2*8*4+4 = 216+68; embeddings 4*(1+3+1) = 20;
    # dot on [4 x 4]: 2*4*4*4 = 128; top input 4 + 6 = 10: 2*10*6+6 + 2*6*1+1 = 126+13
    fwd = 216 + 68 + 20 + 128 + 126 + 13
    # backward: first layer no input grad (2*13*8+8=216); others 4mn+n: 4*8*4+4=132,
    # 4*10*6+6=246, 4*6+1=25; embeddings 20; dot 256
    bwd = 216 + 132 + 20 + 256 + 246 + 25
    assert cost.forward_flops_per_sample == fwd
    assert cost.train_flops_per_sample == fwd + bwd
    assert cost.dense_params == (13 * 8 + 8) + (8 * 4 + 4) + (10 * 6 + 6) + (6 + 1)
    assert cost.sparse_params == 3 * 10 * 4
    assert cost.param_bytes == 4 * cost.params
    assert cost.lookup_bytes_per_sample == 4 * 3 * 4 * 5


def test_linear_cost_counts_bias_and_grads():
    op = linear_cost("x", 3, 5)
    assert (op.forward, op.backward, op.params) == (35, 65, 20)
    assert linear_cost("x", 3, 5, input_grad=False).backward == 35


def test_accounting_flops_grow_with_pooling_and_width():
    config = DLRMConfig(embedding_dim=8)
    one = model_cost(config, 13, [1, 1, 1])
    many = model_cost(config, 13, [1, 10, 1])
    assert many.train_flops_per_sample - one.train_flops_per_sample == 2 * 9 * 8
    wide = model_cost(config.model_copy(update={"top_mlp": (256, 32)}), 13, [1, 1, 1])
    assert wide.train_flops_per_sample > one.train_flops_per_sample


def test_build_dlrm_is_deterministic_by_seed():
    a, _ = _model(CONFIGS[1], seed=1)
    b, _ = _model(CONFIGS[1], seed=1)
    c, _ = _model(CONFIGS[1], seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_fused_optimizer_updates_only_touched_rows():
    config = CONFIGS[1]
    model, rows = _model(config)
    batch = SyntheticCTR(DATA).batch(TRAIN, 0, 16, table_rows=rows)
    key = DATA.feature_names[0]
    weight = model.sparse_arch.embedding_bags[f"t_{key}"].weight
    before = weight.detach().clone()
    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        model(batch.dense_features, batch.sparse_features), batch.labels
    )
    loss.backward()  # the fused optimizer steps inside backward
    changed = (weight.detach() != before).any(dim=1).nonzero().flatten()
    touched = batch.sparse_features[key].values().unique()
    assert set(changed.tolist()) <= set(touched.tolist())
    assert len(changed) > 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"embedding_dim": 6}, "embedding_dim is 6, but must be a multiple of 4"),
        ({"num_embeddings": -5}, "num_embeddings"),
        ({"bottom_mlp": (16, 0)}, "bottom_mlp"),
        ({"top_mlp": ()}, "top_mlp"),
        ({"interaction": "mlp"}, "interaction"),
        ({"dcn_rank": 0}, "dcn_rank"),
    ],
)
def test_dlrm_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        DLRMConfig(**kwargs)


def test_table_rows_length_must_match_features():
    with pytest.raises(ValueError, match="num_embeddings has 2 entries"):
        DLRMConfig(num_embeddings=(10, 20)).table_rows(3)
