"""Tuned at every scale: per-point Optuna studies, scaling rules, warm starts (no Ray here)."""

import pickle

import numpy as np
import pytest

from scaler.allocation import TunedPolicy
from scaler.hparams import TunedRun, fit_rule, fit_rules
from scaler.simulate import simulate
from scaler.spec import SpecError, parse_spec
from scaler.sweep import make_searcher

TRUE_LR = {"a": 0.5, "b": 0.25}
BASE = {
    "name": "hp",
    "backend": "oracle",
    "seed": 0,
    "oracle": {
        "law": {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28},
        "noise": 0.002,
        "hparams": {"lr": {**TRUE_LR, "sensitivity": 0.2, "default": 0.01}},
    },
    "trial": {"eval_points": 5},
    "axes": {"params": {"n_params": {"low": 1e5, "high": 1e8, "num": 7}}, "data": [1e5, 1e6, 1e7]},
    "budget": {"trials": 1000},
}
TUNING = {"hparams": {"lr": {"low": 1e-3, "high": 1.0}}, "trials_per_point": 10}


def run(tuning=None, **changes):
    spec = parse_spec({**BASE, **({"tuning": tuning} if tuning else {}), **changes})
    searcher = make_searcher(spec)
    fitter = simulate(spec, searcher.policy, searcher.ledger)
    return searcher, fitter


@pytest.fixture(scope="module")
def tuned():
    return run(TUNING)


def test_tuned_sweep_recovers_exponents_where_fixed_hyperparameters_bias_them(tuned):
    _, fixed = run()
    fixed_law = fixed.refit(bootstrap=100).laws["joint"]
    lo, hi = fixed_law.ci_["alpha"]
    assert not lo <= 0.30 <= hi and fixed_law.params_.alpha - 0.30 > 0.03  # biased
    tuned_law = tuned[1].refit(bootstrap=100).laws["joint"]
    lo, hi = tuned_law.ci_["alpha"]
    assert lo - 0.003 <= 0.30 <= hi + 0.003
    assert tuned_law.params_.beta == pytest.approx(0.28, abs=0.005)


def test_fitted_rule_recovers_the_true_optimum_scaling(tuned):
    rule = tuned[0].policy.rules()["lr"]
    assert rule.b_ci[0] <= TRUE_LR["b"] <= rule.b_ci[1]
    assert rule.a_ci[0] <= TRUE_LR["a"] <= rule.a_ci[1]
    assert rule.b == pytest.approx(TRUE_LR["b"], abs=0.05)


def test_law_uses_each_points_best_run_and_records_the_spread(tuned):
    searcher, fitter = tuned
    df = fitter.frame()
    used = df[df["excluded"] == ""]
    assert used.groupby("group")["trial_id"].nunique().max() == 1  # one run per point feeds the law
    assert (df["excluded"] == "tuning: not the best run of its scale point").sum() > 0
    spreads = fitter.spreads()
    assert len(spreads) == 21 and (spreads["trials"] >= 1).all()
    assert (spreads["worst_loss"] >= spreads["best_loss"]).all()
    assert searcher.ledger.started == 21 * 10  # tuning trials count in the budget


def test_warm_start_enqueues_the_rules_prediction(tuned):
    policy = tuned[0].policy
    warm = [p for p in policy.points.values() if p.start is not None]
    cold = [p for p in policy.points.values() if p.start is None]
    assert len(cold) >= 3 and len(warm) >= 10
    for point in warm:
        first = min(point.study.trials, key=lambda t: t.number)
        assert first.params["lr"] == pytest.approx(point.start["lr"])
        dist = point.distributions["lr"]
        assert dist.high / dist.low <= 4.0**2 * 1.001  # narrowed around the prediction


def test_pruning_stops_a_losing_trial_early(tuned):
    policy = tuned[0].policy
    pruned = sum(len(p.pruned) for p in policy.points.values())
    assert pruned > 0


def test_tuned_policy_state_survives_pickling(tuned):
    policy = tuned[0].policy
    state = pickle.loads(pickle.dumps(policy.state_dict()))
    again = TunedPolicy(
        policy.inner.__class__(policy.inner.candidates), policy.tuning, policy.n_params_of
    )
    again.load_state_dict(state)
    assert again.rules()["lr"].b == pytest.approx(policy.rules()["lr"].b)


def test_tuning_is_deterministic_for_a_seed():
    small = {"axes": {"params": {"n_params": [1e5, 1e6, 1e7]}, "data": [1e6]}}
    a = run({**TUNING, "trials_per_point": 4}, **small)[1].frame()["loss"].to_numpy()
    b = run({**TUNING, "trials_per_point": 4}, **small)[1].frame()["loss"].to_numpy()
    np.testing.assert_array_equal(a, b)


def test_rule_fit_and_its_errors():
    n = np.geomspace(1e5, 1e8, 6)
    rule = fit_rule("lr", n, 0.5 * n**-0.25)
    assert rule.b == pytest.approx(0.25) and rule.a == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_rule("lr", [1e5, 1e6], [0.1, 0.05])
    runs = [TunedRun("p1", 1e5, {"lr": 0.1}, 0.5), TunedRun("p1", 1e5, {"lr": 0.2}, 0.4)]
    assert fit_rules(runs, ["lr"]) == {}  # one point: no rule


def test_tuning_spec_errors_name_the_field():
    with pytest.raises(SpecError, match=r"tuning.hparams.lr: high must be > low"):
        parse_spec({**BASE, "tuning": {"hparams": {"lr": {"low": 1.0, "high": 0.1}}}})
    with pytest.raises(SpecError, match=r"tuning.hparams \['momentum'\] are not in oracle.hparams"):
        parse_spec({**BASE, "tuning": {"hparams": {"momentum": {"low": 0.1, "high": 0.9}}}})
    with pytest.raises(SpecError, match=r"tuning\.trials_per_point: must be >= 1"):
        parse_spec({**BASE, "tuning": {**TUNING, "trials_per_point": 0}})
