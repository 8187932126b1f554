"""One contract, every law form: the estimator API, exclusions, serialisation, bootstrap."""

import numpy as np
import pytest

from scaler.laws import JointLaw, Law, NotFittedError, PowerLaw, backtest


def power_data(n=24, a=5.0, b=0.4, c=0.3, noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    x = np.geomspace(1e4, 1e8, n)
    y = (a * x**-b + c) * np.exp(noise * rng.standard_normal(n))
    return x, y


def joint_data(n_side=6, E=1.5, A=400.0, alpha=0.35, B=1500.0, beta=0.3, noise=0.003, seed=0):
    rng = np.random.default_rng(seed)
    N, D = np.meshgrid(np.geomspace(1e6, 1e9, n_side), np.geomspace(1e7, 1e11, n_side))
    X = np.c_[N.ravel(), D.ravel()]
    y = (E + A * X[:, 0] ** -alpha + B * X[:, 1] ** -beta) * np.exp(
        noise * rng.standard_normal(len(X))
    )
    return X, y


FORMS = {"power": (PowerLaw, power_data), "joint": (JointLaw, joint_data)}


@pytest.fixture(params=sorted(FORMS))
def form(request):
    return FORMS[request.param]


def test_law_refuses_to_predict_unfitted(form):
    cls, data = form
    X, _ = data()
    with pytest.raises(NotFittedError, match="not fitted"):
        cls().predict(X)
    with pytest.raises(NotFittedError):
        cls().params_  # noqa: B018


def test_law_fit_returns_self_and_sets_learned_attributes(form):
    cls, data = form
    X, y = data()
    law = cls()
    assert law.fit(X, y) is law
    assert law.n_ == len(y) and law.excluded_ == []
    assert law.mape_ < 0.01
    assert np.all(np.isfinite(law.predict(X)))
    assert law.fit_seconds_ < 5


def test_law_excludes_bad_and_flagged_points_with_reasons(form):
    cls, data = form
    X, y = data()
    y = y.copy()
    y[1] = np.nan
    y[2] = np.inf
    reasons = [None] * len(y)
    reasons[3] = "diverged: loss above the trivial predictor"
    law = cls().fit(X, y, exclude=reasons)
    got = {e.index: e.reason for e in law.excluded_}
    assert set(got) == {1, 2, 3}
    assert "nan" in got[1] and "inf" in got[2] and got[3].startswith("diverged")
    assert law.n_ == len(y) - 3


def test_law_rejects_too_few_points_naming_the_bound(form):
    cls, data = form
    X, y = data()
    need = 2 + 2 * cls.n_axes
    with pytest.raises(ValueError, match=f"at least {need} usable points"):
        cls().fit(X[: need - 1], y[: need - 1])


def test_law_rejects_bad_hyperparameters(form):
    cls, data = form
    X, y = data()
    with pytest.raises(ValueError, match="delta is -1"):
        cls(delta=-1).fit(X, y)
    with pytest.raises(ValueError, match="n_starts is 0"):
        cls(n_starts=0).fit(X, y)


def test_law_round_trips_through_dict(form):
    cls, data = form
    X, y = data()
    law = cls().fit(X, y)
    law.bootstrap(50, seed=0)
    again = Law.from_dict(law.to_dict())
    assert isinstance(again, cls)
    np.testing.assert_allclose(again.predict(X), law.predict(X), rtol=1e-10)
    for name, (lo, hi) in law.ci_.items():
        assert again.stored_ci_[name] == pytest.approx((lo, hi))


def test_bootstrap_is_seeded_and_independent_of_worker_count(form):
    cls, data = form
    X, y = data()
    law = cls().fit(X, y)
    one = law.bootstrap(40, seed=7, n_jobs=1).samples
    two = law.bootstrap(40, seed=7, n_jobs=2).samples
    other = law.bootstrap(40, seed=8, n_jobs=1).samples
    np.testing.assert_allclose(one, two)
    assert not np.allclose(one, other)


def test_predict_interval_brackets_the_prediction(form):
    cls, data = form
    X, y = data()
    law = cls().fit(X, y)
    with pytest.raises(NotFittedError, match="bootstrap"):
        law.predict_interval(X)
    law.bootstrap(60, seed=0)
    pred, lo, hi = law.predict_interval(X)
    assert np.all(lo <= pred + 1e-9) and np.all(pred <= hi + 1e-9)
    assert np.all(hi > lo)


def test_sample_weights_pull_the_fit(form):
    cls, data = form
    X, y = data(noise=0.0)
    y = y.copy()
    y[-1] *= 1.2  # one outlier
    w = np.ones(len(y))
    w[-1] = 1e4
    heavy = cls().fit(X, y, sample_weight=w)
    light = cls().fit(X, y)
    assert abs(heavy.predict(X[-1:])[0] - y[-1]) < abs(light.predict(X[-1:])[0] - y[-1])


def test_backtest_reports_holdout_error_above_the_cost_cut(form):
    cls, data = form
    X, y = data()
    bt = backtest(cls(), X, y, holdout=0.2)
    assert bt.n_test >= 1 and bt.n_train + bt.n_test == len(y)
    cost = X if X.ndim == 1 else (X[:, 0] * X[:, 1] if X.shape[1] == 2 else X[:, 0])
    assert np.all(cost[bt.test_index] > bt.cut)
    assert bt.mape < 0.02  # a correct law extrapolates


def test_backtest_exposes_a_wrong_law():
    # Data whose loss turns up at the largest x: no power law predicts that.
    x, y = power_data(noise=0.0)
    y = y.copy()
    y[-5:] *= np.linspace(1.05, 1.25, 5)
    assert backtest(PowerLaw(), x, y, holdout=0.2).mape > 0.05


def test_warm_start_reaches_the_cold_optimum_and_checks_its_form(form):
    cls, data = form
    X, y = data()
    cold = cls().fit(X, y)
    half = cls().fit(X[::2], y[::2])  # the last refit, on fewer points
    warm = cls().fit(X, y, warm_start=half)
    np.testing.assert_allclose(warm.theta_, cold.theta_, rtol=1e-3, atol=1e-6)
    other = JointLaw if cls is PowerLaw else PowerLaw
    Xo, yo = FORMS["joint" if cls is PowerLaw else "power"][1]()
    with pytest.raises(ValueError, match=r"warm_start: a \w+Law with \d parameters"):
        cls().fit(X, y, warm_start=other().fit(Xo, yo))


def test_a_fit_runs_blas_on_one_thread_and_gives_the_threads_back(monkeypatch):
    """Tiny matrices: BLAS threads only cost, and OpenBLAS's idle ones spin (a quarter of a core
    in a sweep's driver). During a fit BLAS has one thread; after it, what it had before."""
    from threadpoolctl import threadpool_info

    from scaler.laws import _objective

    def blas_threads():
        return {
            d["filepath"]: d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"
        }

    before, during = blas_threads(), []
    real_fit = _objective.fit

    def spy(*args, **kwargs):
        during.append(blas_threads())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(_objective, "fit", spy)
    x = np.geomspace(1e6, 1e9, 8)
    PowerLaw().fit(x, 2.0 * x**-0.3 + 0.5)
    assert during and all(set(d.values()) == {1} for d in during)
    assert blas_threads() == before
