"""The analysis on pools drawn from known multi-axis laws over a real DLRM cost model.

Each pool is a grid of DLRM configs (embedding rows x MLP width) whose cost -- FLOPs per sample,
dense and embedding parameters, embedding bytes -- comes from `scaler.model.accounting` through
the spec, exactly as a sweep's report computes it; the loss of every eval point is drawn from
L = E + A_s·sparse^-a_s + A_d·dense^-a_d + B·D^-b with seeded noise.  No Ray, no MLflow: these
check the maths (recovery, identification, the frontier); tests/test_report.py runs the same
analysis end to end on real sweeps.
"""

import itertools

import numpy as np
import pandas as pd
import pytest

from scaler.analysis import analyze, candidate_configs, knobs
from scaler.costs import cost_model_for
from scaler.spec import parse_spec

ROWS = [1000, 4000, 16000, 64000]
WIDTHS = [16, 32, 64, 128]
BUDGETS = [1e6, 1e7]
BOTH_PAY = {"E": 0.40, "As": 4.0, "a_s": 0.25, "Ad": 3.0, "a_d": 0.35, "B": 30.0, "b": 0.30}
EMB_SATURATED = {**BOTH_PAY, "As": 1e-4}


def _spec(rows, widths, budgets):
    return parse_spec(
        {
            "name": "pool",
            "backend": "dlrm",
            "dlrm": {"model": {"embedding_dim": 16, "bottom_mlp": [64], "top_mlp": [64, 32]}},
            "trial": {"eval_points": 6, "min_samples": 32768},
            "axes": {
                "params": {"model.num_embeddings": rows, "model.mlp_width": widths},
                "data": budgets,
            },
            "budget": {"trials": 1},
        }
    )


def true_loss(t, sparse, dense, samples):
    return (
        t["E"] + t["As"] * sparse ** -t["a_s"] + t["Ad"] * dense ** -t["a_d"] + t["B"] * samples ** -t["b"]
    )  # fmt: skip


def pool(truth, rows=ROWS, widths=WIDTHS, budgets=BUDGETS, noise=0.002, seed=0):
    spec = _spec(rows, widths, budgets)
    cost = cost_model_for(spec)
    rng = np.random.default_rng(seed)
    pts, trials = [], []
    for i, (r, w, budget) in enumerate(itertools.product(rows, widths, budgets)):
        config = {"model.num_embeddings": r, "model.mlp_width": w}
        c = cost.cost(config)
        tid = f"t{i:03d}"
        trials.append({"trial_id": tid, **{f"param.{k}": v for k, v in config.items()}})
        for d in np.geomspace(32768, budget, 6).round():
            loss = true_loss(truth, c.sparse_params, c.dense_params, d)
            pts.append(
                {
                    "trial_id": tid,
                    "samples": d,
                    "dense_params": c.dense_params,
                    "sparse_params": c.sparse_params,
                    "params": c.params,
                    "flops": d * c.flops_per_sample,
                    "loss": loss * np.exp(rng.normal(0, noise)),
                    "excluded": "",
                }
            )
    return pd.DataFrame(pts), pd.DataFrame(trials), cost


@pytest.fixture(scope="module")
def both_pay():
    p, t, cost = pool(BOTH_PAY)
    return analyze(p, t, cost_model=cost, bootstrap=40), p, t, cost


@pytest.fixture(scope="module")
def emb_saturated():
    p, t, cost = pool(EMB_SATURATED)
    return analyze(p, t, cost_model=cost, bootstrap=40), p, t, cost


def test_multi_axis_law_recovers_each_resource_exponent_within_its_ci(both_pay):
    an = both_pay[0]
    law = an.joint
    assert law.axes == ("sparse_params", "dense_params", "samples")
    assert law.identified_, law.identification_.reason
    ci = law.ci_
    for name, true in (("alpha_sparse_params", 0.25), ("alpha_dense_params", 0.35),
                       ("alpha_samples", 0.30)):  # fmt: skip
        lo, hi = ci[name]
        assert lo - 0.02 <= true <= hi + 0.02, (name, lo, hi)
        assert hi - lo < 0.15, (name, lo, hi)
    assert an.cost_model == {"kind": "measured", "k": None}


def test_frontier_rows_spend_exactly_c_and_start_at_the_largest_compute_trained(both_pay):
    an, p = both_pay[0], both_pay[1]
    rows = an.frontier.rows
    assert rows[0].C == pytest.approx(p["flops"].max())
    assert [r.C / rows[0].C for r in rows] == pytest.approx([1, 10, 100])
    for r in rows:
        assert r.samples * r.flops_per_sample == pytest.approx(r.C, rel=0.01)
        assert r.loss_ci[0] <= r.loss <= r.loss_ci[1]
    assert rows[2].loss < rows[1].loss < rows[0].loss


def test_frontier_is_where_the_true_law_puts_it(both_pay):
    """At each budget, the true loss of the config the analysis picks is within 0.5 % of the
    true optimum over the same configs and memory cap."""
    an, _, t, cost = both_pay
    cand, _ = candidate_configs(cost, t, knobs(t))
    for r in an.frontier.rows:
        samples = r.C / cand.fps
        ok = (samples >= 1) & (cand.memory <= r.memory_cap * (1 + 1e-9))
        best = true_loss(BOTH_PAY, cand.sparse, cand.dense, samples)[ok].min()
        picked = true_loss(BOTH_PAY, r.sparse_params, r.dense_params, r.samples)
        assert r.memory_bytes <= r.memory_cap
        assert picked <= best * 1.005, (r.config, picked, best)


def test_saturated_embeddings_are_left_out_and_data_keeps_paying(emb_saturated):
    an = emb_saturated[0]
    assert "sparse_params" in an.joint_dropped, an.joint_dropped
    assert an.joint.axes == ("dense_params", "samples")
    assert an.joint.identified_, an.joint.identification_.reason
    assert an.schemes["data"].status == "paying", an.schemes["data"].verdict
    assert an.schemes["model.num_embeddings"].status == "saturated"
    # the frontier buys no embedding rows it cannot use: the smallest table at every budget
    assert all(r.config["model.num_embeddings"] == min(ROWS) for r in an.frontier.rows)
    spend = {n.spend_on: n for n in an.frontier.next_10x}
    assert spend["data"].loss < spend["model.num_embeddings"].loss
    assert spend["optimal mix"].loss <= spend["data"].loss + 1e-12


def test_next_10x_compares_data_each_knob_and_the_mix(both_pay):
    an = both_pay[0]
    spend = {n.spend_on: n for n in an.frontier.next_10x}
    assert set(spend) == {"data", "model.num_embeddings", "model.mlp_width", "optimal mix"}
    base = an.frontier.rows[0]
    assert spend["data"].C == pytest.approx(10 * base.C)
    assert spend["data"].config == base.config
    # rows cost memory, not FLOPs: spending on them leaves the compute where it was
    assert spend["model.num_embeddings"].C == pytest.approx(base.C, rel=0.01)
    assert "memory" in spend["model.num_embeddings"].note
    assert spend["model.mlp_width"].C <= 10 * base.C * 1.0001
    assert spend["optimal mix"].loss <= min(n.loss for n in spend.values()) + 1e-12
    for n in spend.values():
        assert n.loss_ci[0] <= n.loss <= n.loss_ci[1]


def test_two_sizes_and_one_budget_is_not_identified():
    p, t, cost = pool(BOTH_PAY, rows=[4000, 64000], widths=[64], budgets=[1e6])
    an = analyze(p, t, cost_model=cost, bootstrap=20)
    ident = an.joint.identification_
    assert not ident.identified and "2 distinct values of sparse_params" in ident.reason
    assert "model.num_embeddings" in an.skipped  # 2 values: no one-axis law either


def test_memory_cap_bounds_every_frontier_config(both_pay):
    _, p, t, cost = both_pay
    cap = 2e6  # bytes: below the largest trained tables
    an = analyze(p, t, cost_model=cost, bootstrap=20, memory_cap=cap)
    assert all(r.memory_bytes <= cap for r in an.frontier.rows)
    assert an.frontier.memory_cap == cap


def test_bad_memory_cap_names_the_field(both_pay):
    _, p, t, cost = both_pay
    with pytest.raises(ValueError, match=r"memory_cap is -1\.0, but must be > 0"):
        analyze(p, t, cost_model=cost, bootstrap=20, memory_cap=-1.0)


def test_transient_first_points_are_left_out_of_the_data_law_with_a_reason():
    p, t, cost = pool(BOTH_PAY, rows=[16000], widths=[64], budgets=[1e7])
    first = p["samples"] == p["samples"].min()
    p.loc[first, "loss"] *= 1.5  # the first eval point, before the loss settles
    an = analyze(p, t, cost_model=cost, bootstrap=20)
    data = an.schemes["data"]
    assert len(data.transients) == 1 and data.transients[0][2].startswith("transient")
    assert data.status == "paying" and data.identified


def test_a_plateau_after_a_step_is_saturated_not_unidentified():
    """Table rows past the smallest vocabulary buy nothing (measured on the seed paper's rows
    sweep): no power law fits a step then a plateau, but the last 8x of the range bought
    nothing, and the verdict says so."""
    from scaler.analysis import fit_scheme

    x = np.array([6.4e4, 2.6e5, 6.4e5, 1.3e6, 3.2e6, 6.4e6, 1.3e7])
    y = np.array([0.12391, 0.12357, 0.12138, 0.12138, 0.12156, 0.12163, 0.12120])
    s = fit_scheme("rows", "sparse_params", x, y, 1e12, bootstrap=60, seed=0,
                   gap_threshold=0.01, exponent_floor=0.02)  # fmt: skip
    assert s.status == "saturated" and "last 8x" in s.verdict, s.verdict


def test_a_largest_model_stopped_early_leaves_the_data_law_on_the_next_one():
    """The largest model has 2 eval points (stopped early, or still training): the report's data
    law is fitted on the largest model with 4 sample counts, as the live fitter's is, not
    skipped."""
    from scaler.analysis import scheme_datasets
    from scaler.fitter import data_slice

    p, t, cost = pool(BOTH_PAY, budgets=[1e7])
    top = p["params"] == p["params"].max()
    early = top & (p["samples"] > sorted(p.loc[top, "samples"].unique())[1])
    p = p[~early].reset_index(drop=True)
    axis, x, _ = scheme_datasets(p, t)["data"]
    next_largest = p.loc[~top[~early].to_numpy(), "params"].max()
    assert axis == "samples" and len(x) == 6
    assert set(data_slice(p)["params"]) == {next_largest}
    an = analyze(p, t, cost_model=cost, bootstrap=20)
    assert "data" in an.schemes and "data" not in an.skipped
