"""`policy: adaptive` in a live sweep: the spec's target, real Ray Tune, decisions in MLflow, and
`scaler replay --from-sweep` on what the sweep recorded."""

import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from scaler.allocation._targets import TargetError
from scaler.cli import main
from scaler.laws import JointLawParams, compute_frontier
from scaler.spec import parse_spec

TRUTH = {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28}
TARGET_C = 6e18  # 100x the largest trial (N = D = 1e8: 6e16 FLOPs)
TOLERANCE = 0.01  # the target's relative error the user asks for


def spec_dict(name, policy, budget, **extra):
    return {
        "name": name,
        "backend": "oracle",
        "seed": 1,
        "oracle": {"law": TRUTH, "noise": 0.003},
        "trial": {"eval_points": 4},
        "axes": {
            "params": {"n_params": {"low": 1e5, "high": 1e8, "num": 5}},
            "data": {"low": 1e6, "high": 1e8, "num": 3},
        },
        "budget": budget,
        "policy": policy,
        "resources": {"cpus_per_trial": 0.5, "concurrency": 2},
        "tracking": {"experiment": "adaptive-live"},
        **extra,
    }


def target_error(law) -> float:
    """|relative error| of the law's loss at the true compute-optimal point of TARGET_C."""
    f = compute_frontier(JointLawParams(**TRUTH), np.array([TARGET_C]))
    pred = law.predict(np.array([[f.N[0], f.D[0]]]))[0]
    return abs(pred - f.L[0]) / f.L[0]


# --- the spec's target, without Ray ---------------------------------------------------------------
def test_compute_target_follows_the_fitted_law():
    from scaler.laws import JointLaw
    from scaler.sweep import make_searcher

    spec = parse_spec(
        spec_dict("t", {"name": "adaptive", "target": {"compute": TARGET_C}}, {"trials": 9})
    )
    policy = make_searcher(spec).policy
    assert policy.design.n_axes == 2
    n = np.geomspace(1e5, 1e8, 6)
    d = np.geomspace(1e6, 1e8, 5)
    x = np.array([(a, b) for a in n for b in d])
    p = JointLawParams(**TRUTH)
    y = p.E + p.A * x[:, 0] ** -p.alpha + p.B * x[:, 1] ** -p.beta
    target = policy.target(JointLaw().fit(x, y))
    truth = compute_frontier(p, np.array([TARGET_C]))
    np.testing.assert_allclose(target[0], [truth.N[0], truth.D[0]], rtol=0.05)


def test_target_points_need_params_when_the_model_scales():
    from scaler.sweep import make_searcher

    target = {"points": [{"samples": 1e10}]}
    spec = parse_spec(spec_dict("t", {"name": "adaptive", "target": target}, {"trials": 9}))
    with pytest.raises(TargetError, match=r"policy.target.points\[0\].params: required"):
        make_searcher(spec)


def test_target_inside_the_trained_range_warns():
    from scaler.sweep import make_searcher

    target = {"points": [{"params": 1e6, "samples": 1e7}]}
    spec = parse_spec(spec_dict("t", {"name": "adaptive", "target": target}, {"trials": 9}))
    with pytest.warns(UserWarning, match=r"policy.target.points\[0\].*inside the trained range"):
        make_searcher(spec)
    spec = parse_spec(
        spec_dict("t", {"name": "adaptive", "target": {"compute": 1e15}}, {"trials": 9})
    )
    with pytest.warns(UserWarning, match="policy.target.compute 1e.15 FLOPs.*inside"):
        make_searcher(spec)


def test_one_model_makes_a_data_only_design():
    from scaler.sweep import make_searcher

    d = spec_dict("t", {"name": "adaptive", "target": {"points": [{"samples": 1e10}]}}, {})
    d["axes"]["params"] = {"n_params": [1e6]}
    d["budget"] = {"trials": 3}
    policy = make_searcher(parse_spec(d)).policy
    assert policy.design.n_axes == 1 and policy.target.tolist() == [[1e10]]


def test_tuned_sweeps_refuse_adaptive():
    from scaler.spec import SpecError

    d = spec_dict("t", {"name": "adaptive"}, {"trials": 3})
    d["oracle"]["hparams"] = {"lr": {"a": 0.01, "default": 0.01}}
    d["tuning"] = {"hparams": {"lr": {"low": 1e-4, "high": 1.0}}}
    with pytest.raises(SpecError, match=r"policy\.name is 'adaptive', but a tuned sweep"):
        parse_spec(d)


# --- live: real Ray Tune, real MLflow -------------------------------------------------------------
@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, ray_local):
    from scaler.sweep import run_sweep

    storage = tmp_path_factory.mktemp("runs")
    grid = run_sweep(
        parse_spec(spec_dict("live-grid", {"name": "grid"}, {"trials": 15})),
        storage=storage,
        final_bootstrap=0,
    )
    policy = {"name": "adaptive", "target": {"compute": TARGET_C}, "tolerance": TOLERANCE}
    adaptive = run_sweep(
        parse_spec(spec_dict("live-adaptive", policy, {"flops": 1.5e16})),
        storage=storage,
        final_bootstrap=0,
    )
    return grid, adaptive


def flops_spent(result) -> float:
    client = MlflowClient(result.tracking_uri)
    return client.get_run(result.parent_run_id).data.metrics["budget/flops_spent"]


@pytest.mark.ray
@pytest.mark.slow  # two live sweeps (~35 s); the target units stay in the default run
def test_adaptive_meets_the_target_tolerance_on_less_compute_than_the_grid(sweeps):
    """Both sweeps must predict the target within the user's tolerance (1 %); the adaptive one
    must get there on well under the grid's compute.  Adaptive stops once the target is within
    the tolerance with 80 % probability (sd <= tolerance / 1.28), so one live run may miss it:
    it must stay within 2x (about 2.6 sd, 99 %).  Measured (live order varies, so does the
    adaptive error): grid 0.03 % on 100 %, adaptive 0.2-0.6 % on 13 %.  At *equal* error the grid's
    largest run alone costs 74 % of the grid, so no policy matches the grid's 0.03 % for less
    than that here; benchmarks/bench_allocation.py measures the equal-error fractions."""
    grid, adaptive = sweeps
    assert grid.trials == 15 and grid.errors == 0 and adaptive.errors == 0
    e_grid = target_error(grid.report.laws["joint"])
    e_adaptive = target_error(adaptive.report.laws["joint"])
    spent = flops_spent(adaptive) / flops_spent(grid)
    print(f"target error: grid {e_grid:.4%}, adaptive {e_adaptive:.4%}; spent ratio {spent:.3f}")
    assert e_grid < TOLERANCE and e_adaptive < 2 * TOLERANCE
    assert spent < 0.6


@pytest.mark.ray
@pytest.mark.slow  # two live sweeps (~35 s); the target units stay in the default run
def test_mlflow_shows_the_adaptive_decisions(sweeps):
    _, adaptive = sweeps
    client = MlflowClient(adaptive.tracking_uri)
    run = adaptive.parent_run_id
    steps = [a.path for a in client.list_artifacts(run, "allocation")]
    assert "allocation/latest.json" in steps and len(steps) >= 4
    records = [json.loads(open(client.download_artifacts(run, p)).read()) for p in sorted(steps)]
    assert all(r["policy"] == "adaptive" for r in records)
    first = next(r for r in records if r["decision"] and r["decision"]["law"])  # the first fit
    decision = first["decision"]
    assert decision["chosen"]["samples"] > 0 and decision["top"]
    assert all(t["gain_per_cost"] >= 0 for t in decision["top"])
    spent = first["spent_per_axis"]
    assert set(spent) == {"n_params", "samples"} and sum(spent["samples"].values()) > 0
    sd = [m.value for m in client.get_metric_history(run, "alloc/target_rel_sd")]
    # recorded as the decisions go, and it moves as runs land and the law is refitted. Not
    # always down: live order varies, so the first law may come after many runs and already be
    # the tightest, and a refit that finds more misfit raises it (CI saw 0.0085 then 0.0175)
    assert len(sd) >= 3 and len(set(sd)) >= 2


@pytest.mark.ray
@pytest.mark.slow  # two live sweeps (~35 s); the target units stay in the default run
def test_replay_from_sweep_uses_the_recorded_points(sweeps, capsys):
    grid, _ = sweeps
    args = [
        "replay", "--from-sweep", "live-grid", "--tracking-uri", grid.tracking_uri,
        "--budget", "0.3", "--target-top-cost", "0.1", "--policy", "adaptive", "--json",
    ]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert 0 < out["seeds"][0]["spent_fraction"] <= 0.3 + 1e-9
    assert set(out["seeds"][0]["params"]) == {"E", "A", "alpha", "B", "beta"}
    assert out["full_pool"]["target_mape"] < 0.02


def test_replay_from_an_unknown_sweep_is_a_clear_error(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/m.db"
    MlflowClient(uri).create_experiment("other")  # a store without that sweep
    capsys.readouterr()
    args = ["replay", "--from-sweep", "nope", "--tracking-uri", uri, "--budget", "0.3"]
    args += ["--target-top-cost", "0.1", "--policy", "grid"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1
