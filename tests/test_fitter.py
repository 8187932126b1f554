"""The online fitter on points drawn from a known law (no Ray, no MLflow)."""

import dataclasses
import math
import pickle

import numpy as np
import pytest

from scaler.fitter import OnlineFitter
from scaler.spec import Oracle, OracleLaw
from scaler.trial.oracle import eval_schedule, oracle_points

ORACLE = Oracle(law=OracleLaw(E=0.45, A=60.0, alpha=0.3, B=25.0, beta=0.28), noise=0.002)


def feed(fitter, sizes, budget=10**7):
    schedule = eval_schedule(budget, 6)
    for i, n in enumerate(sizes):
        for p in oracle_points(ORACLE, n, budget, schedule, seed=i):
            fitter.add(f"t{i}", p)


def test_refit_recovers_the_joint_law():
    fitter = OnlineFitter()
    feed(fitter, np.geomspace(1e5, 1e8, 6))
    report = fitter.refit()
    joint = report.laws["joint"].params_
    assert joint.alpha == pytest.approx(0.3, abs=0.02)
    assert joint.beta == pytest.approx(0.28, abs=0.02)
    assert set(report.laws) == {"data", "params", "compute", "joint"}


def test_data_law_of_the_largest_model_has_the_right_constant():
    fitter = OnlineFitter()
    feed(fitter, [1e5, 1e8])
    report = fitter.refit()
    law = report.laws["data"].params_
    assert law.b == pytest.approx(0.28, abs=0.02)
    assert law.c == pytest.approx(0.45 + 60 * 1e8**-0.3, rel=0.02)
    assert "params" in report.skipped  # only 2 sizes


def test_the_data_law_stays_on_the_largest_model_with_enough_points():
    """A larger model that has just started (two eval points in) does not make the live data
    law disappear: it stays on the largest model with MIN_DISTINCT sample counts."""
    fitter = OnlineFitter()
    feed(fitter, [1e5, 1e7])
    (first, second, *_) = oracle_points(ORACLE, 1e8, 10**7, eval_schedule(10**7, 6), seed=9)
    fitter.add("t9", first)
    fitter.add("t9", second)
    report = fitter.refit()
    assert report.laws["data"].n_ == 6  # the 1e7 model's six points
    assert report.laws["data"].params_.c == pytest.approx(0.45 + 60 * 1e7**-0.3, rel=0.02)


def test_diverged_points_and_trials_are_excluded_with_reasons():
    fitter = OnlineFitter()
    feed(fitter, np.geomspace(1e5, 1e8, 5))
    bad = fitter.frame().iloc[0]
    from scaler.records import EvalPoint

    fitter.add(
        "nan-trial",
        EvalPoint(**{**{k: bad[k] for k in EvalPoint.__dataclass_fields__}, "loss": math.nan}),
    )
    fitter.exclude_trial("t1", "failed: worker died")
    df = fitter.frame()
    assert df.loc[df.trial_id == "nan-trial", "excluded"].str.startswith("diverged").all()
    assert (df.loc[df.trial_id == "t1", "excluded"] == "failed: worker died").all()
    report = fitter.refit()
    assert report.n_excluded == 7
    assert report.laws["joint"].n_ == len(df) - 7


def test_state_round_trip():
    a = OnlineFitter()
    feed(a, [1e5, 1e6])
    b = OnlineFitter()
    b.load_state_dict(a.state_dict())
    assert b.frame().equals(a.frame())


def test_readding_a_point_replaces_it():
    fitter = OnlineFitter()
    feed(fitter, [1e5])
    n = len(fitter.frame())
    feed(fitter, [1e5])
    assert len(fitter.frame()) == n


def test_live_refits_run_off_the_callers_thread_coalesced_and_warm():
    """A live refit runs in the background thread (the caller gets None, then the report with its
    tag on a later call); requests while one runs, or after refits have taken more than
    `live_share` of the time, are coalesced; a warm-started refit lands on the cold fit's
    optimum; the final (cold) fit does not depend on which live refits ran."""
    fitter = OnlineFitter(live_share=0.0)  # after the first, every live refit is coalesced
    feed(fitter, np.geomspace(1e5, 1e8, 4))
    assert fitter.refit_live(tag=4) is None and fitter.latest is None  # started, not waited for
    thread = fitter._running[0]
    assert fitter.refit_live(tag=5) is None and fitter.coalesced == 1  # one runs at a time
    report, tag = fitter.collect_live(wait=True)
    assert thread.done() and tag == 4 and fitter.latest is report and report.n_points == 24
    assert len(fitter.history) == 1 and fitter.collect_live() is None
    first = report
    feed(fitter, np.geomspace(1e5, 1e8, 6))  # more points arrive: over the share, this waits
    assert fitter.refit_live(tag=6) is None and fitter.coalesced == 2 and fitter.latest is first
    assert fitter._running is None
    fitter.live_share = 1.0  # within the share again: the next request fits every point so far
    fitter.refit_live(tag=7)
    assert fitter.collect_live(wait=True)[0].n_points == len(fitter.frame())
    assert pickle.loads(pickle.dumps(fitter)).history == fitter.history  # the thread is not pickled

    warm = fitter.refit(warm=True)
    cold = OnlineFitter()
    feed(cold, np.geomspace(1e5, 1e8, 6))
    reference = cold.refit()
    for name, law in reference.laws.items():
        np.testing.assert_allclose(warm.laws[name].theta_, law.theta_, rtol=1e-3, atol=1e-6)
    final = fitter.refit()  # from scratch, as at the end of a sweep
    for name, law in reference.laws.items():
        np.testing.assert_allclose(final.laws[name].theta_, law.theta_, rtol=1e-9)


def test_a_re_reported_point_replaces_the_first_in_place():
    fitter = OnlineFitter()
    feed(fitter, [1e6, 1e7])
    rows = len(fitter.rows)
    (p, *_) = oracle_points(ORACLE, 1e6, 10**7, eval_schedule(10**7, 6), seed=0)
    fitter.add("t0", dataclasses.replace(p, loss=9.0))  # a retried trial re-reports it
    assert len(fitter.rows) == rows and fitter.rows[0]["loss"] == 9.0
    restored = OnlineFitter()
    restored.load_state_dict(fitter.state_dict())  # the index is rebuilt after a resume
    restored.add("t9", dataclasses.replace(p, loss=8.0))  # a new trial's point: appended
    restored.add("t0", dataclasses.replace(p, loss=7.0))
    assert len(restored.rows) == rows + 1 and restored.rows[0]["loss"] == 7.0
