"""One contract table for every allocation policy: budget, space, determinism, resume."""

from collections import deque

import numpy as np
import pytest

from scaler.allocation import POLICIES, Design, Ledger, build_candidates, make_policy
from scaler.allocation._design import candidate_size
from scaler.allocation._replay import run_policy

LAW = {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28}


def space():
    grid = [{"n_params": n} for n in np.geomspace(1e5, 1e8, 6).round()]
    return build_candidates(
        grid,
        samples=[int(d) for d in np.geomspace(1e5, 1e8, 4).round()],
        compute=None,
        flops_per_sample=lambda p: 6 * p["n_params"],
    )


def observe(design):
    def results(c):
        out = []
        rng = np.random.default_rng(abs(hash((c.params, c.samples))) % 2**32)
        for d in design.schedule(c.samples):
            n = candidate_size(c)
            loss = LAW["E"] + LAW["A"] * n ** -LAW["alpha"] + LAW["B"] * d ** -LAW["beta"]
            out.append({"samples": d, "loss": loss * np.exp(0.003 * rng.standard_normal())})
        return out

    return results


def make(name, seed=0):
    design = Design(size_of=candidate_size)
    return make_policy(name, space(), seed, design=design, tolerance=None), design


def drive(policy, design, ledger):
    return run_policy(policy, ledger, observe(design), lambda c: c.flops)


TOTAL = sum(c.flops for c in space())


@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("fraction", [0.05, 0.3])
def test_policy_never_exceeds_the_flops_budget(name, fraction):
    policy, design = make(name)
    ledger = Ledger(flops_limit=fraction * TOTAL)
    chosen = drive(policy, design, ledger)
    assert chosen, "a budget that fits the cheapest trial must run something"
    assert sum(c.flops for c in chosen) <= fraction * TOTAL


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_never_exceeds_the_trial_budget(name):
    policy, design = make(name)
    assert len(drive(policy, design, Ledger(trials_limit=5))) <= 5


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_proposes_only_candidates_of_the_space_each_once(name):
    policy, design = make(name)
    chosen = drive(policy, design, Ledger(flops_limit=0.5 * TOTAL))
    allowed = set(space())
    assert all(c in allowed for c in chosen)
    assert len(set(chosen)) == len(chosen)


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_is_deterministic_for_a_seed(name):
    runs = []
    for _ in range(2):
        policy, design = make(name, seed=7)
        runs.append([c.config() for c in drive(policy, design, Ledger(flops_limit=0.3 * TOTAL))])
    assert runs[0] == runs[1]


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_resumes_from_its_state_dict(name):
    """Stopped after k trials and rebuilt from state_dict, a policy continues exactly as one that
    never stopped."""
    budget = 0.3 * TOTAL
    policy, design = make(name, seed=3)
    ledger = Ledger(flops_limit=budget)
    whole = [c.config() for c in drive(policy, design, ledger)]
    assert len(whole) >= 4

    first, design1 = make(name, seed=3)
    ledger1 = Ledger(flops_limit=budget)
    results = observe(design1)
    part = []
    for step in range(3):
        c = first.propose(ledger1)
        ledger1.start(str(step), c.flops)
        first.on_result(str(step), c, results(c))
        first.on_complete(str(step), c)
        ledger1.finish(str(step), c.flops, None)
        part.append(c.config())
    state = first.state_dict()
    resumed, design2 = make(name, seed=3)
    resumed.load_state_dict(state)
    rest = [c.config() for c in drive(resumed, design2, ledger1)]
    assert part + rest == whole


def test_adaptive_stops_at_the_tolerance_and_explains_every_decision():
    design = Design(size_of=candidate_size)
    policy = make_policy("adaptive", space(), 0, design=design, tolerance=0.02)
    ledger = Ledger(flops_limit=TOTAL)
    chosen = drive(policy, design, ledger)
    assert policy.done_reason and "below tolerance" in policy.done_reason
    assert ledger.spent_flops < TOTAL
    last = policy.explain()
    assert last["target_rel_sd"] < 0.02
    assert last["target_rel_sd_bootstrap"] < 0.02  # the stop was confirmed by a bootstrap
    assert "bootstrap" in policy.done_reason
    decisions = [d for d in policy.decisions if d["chosen"] is not None and d["law"] is not None]
    assert len(decisions) >= 1
    for d in decisions:
        top = d["top"][0]
        assert top["gain_per_cost"] == pytest.approx(top["gain"] / top["cost"])
        assert set(d["cost_position"]) == {"params", "samples"}
        assert all(0 <= v <= 1 for v in d["cost_position"].values())
    assert len(chosen) < len(space())


def drive_concurrently(policy, design, ledger, width=2):
    """As a live sweep at concurrency `width` runs a policy: a trial starts as soon as one
    finishes, so another is always running when the policy decides."""
    results, running, chosen = observe(design), deque(), []
    while True:
        while len(running) < width and (c := policy.propose(ledger)) is not None:
            tid = f"t{len(chosen):05d}"
            ledger.start(tid, c.flops)
            running.append((tid, c))
            chosen.append(c)
        if not running:
            return chosen
        tid, c = running.popleft()
        policy.on_result(tid, c, results(c))
        policy.on_complete(tid, c)
        ledger.finish(tid, c.flops, None)


def test_the_tolerance_stop_comes_while_other_trials_run():
    """Found by benchmarks/bench_tolerance_live.py: the stop waited for no trial to be running,
    which at concurrency 2 or more never happens, so live sweeps ran to the end of the budget."""
    sequential = Design(size_of=candidate_size)
    alone = drive(
        make_policy("adaptive", space(), 0, design=sequential, tolerance=0.02),
        sequential,
        Ledger(flops_limit=TOTAL),
    )
    design = Design(size_of=candidate_size)
    policy = make_policy("adaptive", space(), 0, design=design, tolerance=0.02)
    chosen = drive_concurrently(policy, design, Ledger(flops_limit=TOTAL))
    assert policy.done_reason and "below tolerance" in policy.done_reason
    assert len(chosen) <= len(alone) + 2 < len(space())  # at most the trials already running


def test_halving_promotes_only_the_best_third_of_a_rung():
    policy, design = make("halving")
    chosen = drive(policy, design, Ledger())
    by_samples = {}
    for c in chosen:
        by_samples.setdefault(c.samples, []).append(c)
    rungs = sorted(by_samples)
    assert len(by_samples[rungs[0]]) == 6  # every model starts at the smallest budget
    # asynchronous (ASHA): a trial is promoted once in the best third of those finished at its
    # rung, so fewer than all models go up, and never the smallest (worst loss under this law)
    assert 0 < len(by_samples[rungs[1]]) < 6
    assert 1e5 not in {candidate_size(c) for c in by_samples[rungs[1]]}


def test_bad_policy_options_are_clear_errors():
    with pytest.raises(ValueError, match="eta is 1, but must be >= 2"):
        make_policy("halving", space(), eta=1)
    with pytest.raises(ValueError, match="tolerance is 0, but must be > 0"):
        make_policy("adaptive", space(), tolerance=0)
