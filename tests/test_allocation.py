"""Allocation policies and the budget ledger, without Ray."""

import pytest

from scaler.allocation import GridPolicy, Ledger, RandomPolicy, build_candidates, make_policy


def candidates():
    grid = [{"n_params": n} for n in (1e5, 1e6, 1e7)]
    return build_candidates(
        grid, samples=[1000, 10000], compute=None, flops_per_sample=lambda p: 6 * p["n_params"]
    )


def drain(policy, ledger):
    out = []
    while (c := policy.propose(ledger)) is not None:
        ledger.start(str(len(out)), c.flops)
        out.append(c)
    return out


def test_candidates_cover_the_product_cheapest_first():
    cs = candidates()
    assert len(cs) == 6
    assert [c.flops for c in cs] == sorted(c.flops for c in cs)
    assert cs[0].config() == {"params": {"n_params": 1e5}, "samples": 1000}


def test_compute_axis_sets_samples_from_flops_per_sample():
    cs = build_candidates(
        [{"n_params": 1e6}],
        samples=None,
        compute=[6e9, 6e10],
        flops_per_sample=lambda p: 6 * p["n_params"],
    )
    assert [c.samples for c in cs] == [1000, 10000]
    assert all(c.compute is not None for c in cs)


@pytest.mark.parametrize("policy_cls", [GridPolicy, RandomPolicy])
def test_policy_runs_each_candidate_once_within_trial_budget(policy_cls):
    assert len(drain(policy_cls(candidates()), Ledger())) == 6
    assert len(drain(policy_cls(candidates()), Ledger(trials_limit=4))) == 4


def test_flops_budget_counts_running_estimates():
    ledger = Ledger(flops_limit=6 * 1e5 * 1000 + 6 * 1e5 * 10000 + 1)
    chosen = drain(GridPolicy(candidates()), ledger)
    assert sum(c.flops for c in chosen) <= ledger.flops_limit
    assert len(chosen) == 2


def test_random_policy_is_seeded():
    a = [c.config() for c in drain(RandomPolicy(candidates(), seed=1), Ledger())]
    b = [c.config() for c in drain(RandomPolicy(candidates(), seed=1), Ledger())]
    c = [c.config() for c in drain(RandomPolicy(candidates(), seed=2), Ledger())]
    assert a == b and a != c


def test_policy_state_round_trips():
    p = GridPolicy(candidates())
    ledger = Ledger()
    first = drain_n(p, ledger, 3)
    q = GridPolicy(candidates())
    q.load_state_dict(p.state_dict())
    assert q.propose(Ledger()) not in first


def drain_n(policy, ledger, n):
    return [policy.propose(ledger) for _ in range(n)]


def test_unknown_policy_names_choices():
    with pytest.raises(ValueError, match="must be one of"):
        make_policy("bayes", candidates())


def test_ledger_settles_actuals():
    ledger = Ledger(trials_limit=10)
    ledger.start("a", 100.0)
    ledger.finish("a", 80.0, 2.0)
    assert (
        ledger.spent_flops == 80.0 and ledger.spent_device_seconds == 2.0 and ledger.running == {}
    )
    assert ledger.fraction_spent() == pytest.approx(0.1)


def test_make_searcher_turns_compute_budgets_into_isoflop_trials():
    from scaler.spec import parse_spec
    from scaler.sweep import make_searcher

    spec = parse_spec(
        {
            "name": "iso",
            "backend": "oracle",
            "oracle": {"law": {"E": 0.4, "A": 50, "alpha": 0.3, "B": 20, "beta": 0.3}},
            "axes": {"params": {"n_params": [1e5, 1e6]}, "compute": [6e12, 6e13]},
            "budget": {"flops": 1e20},
        }
    )
    configs = [c.config() for c in make_searcher(spec).policy.candidates]
    assert len(configs) == 4
    for c in configs:
        assert 6 * c["params"]["n_params"] * c["samples"] == pytest.approx(c["compute"], rel=1e-6)


def grid_searcher():
    from scaler.tune.searcher import PolicySearcher

    return PolicySearcher(GridPolicy(candidates()), Ledger(trials_limit=6))


def test_searcher_state_unreadable_is_a_clear_error(tmp_path):
    """(`scaler resume` puts a truncated file back from the backup before Tune reads it.)"""
    state = tmp_path / "searcher-state-2026-11-29_08-00-00.pkl"
    first = grid_searcher()
    first.save(str(state))
    assert first.saved_to == (str(tmp_path), "2026-11-29_08-00-00")  # for the backup
    state.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"searcher state .* cannot be read"):
        grid_searcher().restore(str(state))


def test_searcher_reconciles_with_the_trials_tune_restored(tmp_path):
    """The searcher's state may be a checkpoint older or newer than Tune's trial list: a trial
    it started that Tune lost is run again, one Tune has that it never started is not repeated."""
    first = grid_searcher()
    configs = [first.suggest(f"t{i}") for i in range(3)]  # t0 done, t1 running, t2 not in Tune
    first.on_trial_complete("t0", {"flops": 1.0})
    state = tmp_path / "searcher-state-x.pkl"
    first.save(str(state))
    resumed = grid_searcher()
    resumed.restore(str(state))
    fourth = [c.config() for c in candidates()][3]  # Tune had already started it as t3
    resumed.on_tune_trial("t0", configs[0], finished=True)
    resumed.on_tune_trial("t1", configs[1], finished=False)
    resumed.on_tune_trial("t3", fourth, finished=False)
    nxt = [resumed.suggest(f"n{i}") for i in range(3)]
    assert nxt[0] == configs[2]  # t2's candidate again, under a new trial id
    all_configs = [c.config() for c in candidates()]
    assert nxt[1:] == all_configs[4:6]  # the grid goes on, skipping t3's candidate
    assert resumed.suggest("n3") is resumed.FINISHED
    assert sorted(resumed.ledger.running) == ["n0", "n1", "n2", "t1", "t3"]
    assert resumed.ledger.started == 6  # t0, t1, t3 and n0-n2: t2 was cancelled
