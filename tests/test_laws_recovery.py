"""Recovery: generate points from known laws, fit, get the parameters back; CIs cover the truth."""

import numpy as np
import pytest

from scaler.laws import JointLaw, JointLawParams, PowerLaw, compute_frontier


@pytest.mark.parametrize(
    "a,b,c,noise",
    [
        (5.0, 0.40, 0.30, 0.001),  # constant matters
        (5.0, 0.40, 0.30, 0.01),  # noisier
        (50.0, 0.25, 0.00, 0.003),  # no constant: pure power law
        (2.0, 0.80, 0.90, 0.002),  # steep, saturates quickly
        (1.0, 0.10, 0.05, 0.002),  # shallow
    ],
)
def test_power_law_recovers_known_parameters(a, b, c, noise):
    rng = np.random.default_rng(0)
    x = np.geomspace(10, 1e7, 30)
    y = (a * x**-b + c) * np.exp(noise * rng.standard_normal(len(x)))
    p = PowerLaw().fit(x, y).params_
    tol = 0.05 + 10 * noise
    assert p.b == pytest.approx(b, rel=tol)
    assert p.c == pytest.approx(c, abs=tol * max(c, 0.05))
    truth_far = a * 1e10**-b + c
    assert PowerLaw().fit(x, y).predict([1e10])[0] == pytest.approx(truth_far, rel=tol)


@pytest.mark.parametrize(
    "truth,noise",
    [
        (JointLawParams(E=1.5, A=400.0, alpha=0.35, B=1500.0, beta=0.30), 0.002),
        (JointLawParams(E=0.2, A=30.0, alpha=0.5, B=8.0, beta=0.15), 0.002),
        (JointLawParams(E=2.0, A=1e3, alpha=0.6, B=1e3, beta=0.6), 0.005),
    ],
)
def test_joint_law_recovers_known_parameters(truth, noise):
    rng = np.random.default_rng(1)
    N, D = np.meshgrid(np.geomspace(1e6, 1e10, 8), np.geomspace(1e7, 1e12, 8))
    X = np.c_[N.ravel(), D.ravel()]
    t = truth
    y = (t.E + t.A * X[:, 0] ** -t.alpha + t.B * X[:, 1] ** -t.beta) * np.exp(
        noise * rng.standard_normal(len(X))
    )
    p = JointLaw().fit(X, y).params_
    assert p.alpha == pytest.approx(t.alpha, abs=0.03)
    assert p.beta == pytest.approx(t.beta, abs=0.03)
    assert p.E == pytest.approx(t.E, rel=0.05, abs=0.02)


@pytest.mark.slow  # 3,000 refits (~80 s on 2 cores): a coverage statistic
def test_power_law_ci_covers_truth_at_about_nominal_rate():
    a, b, c, noise, level = 3.0, 0.35, 0.4, 0.01, 0.9
    x = np.geomspace(1e3, 1e7, 16)
    hits = []
    for seed in range(30):
        rng = np.random.default_rng(100 + seed)
        y = (a * x**-b + c) * np.exp(noise * rng.standard_normal(len(x)))
        law = PowerLaw().fit(x, y)
        lo, hi = law.bootstrap(100, seed=seed, level=level, n_jobs=1).ci()["b"]
        hits.append(lo <= b <= hi)
    coverage = np.mean(hits)
    # Percentile bootstrap on 16 points is a little liberal; nominal is 0.9.
    assert 0.7 <= coverage <= 1.0, coverage


def test_frontier_closed_form_matches_numeric_minimum():
    p = JointLawParams(E=1.8, A=480.0, alpha=0.35, B=2100.0, beta=0.37)
    C = 1e23
    f = compute_frontier(p, C, k=6.0)
    N = np.geomspace(1e8, 1e12, 20001)
    L = p.E + p.A * N**-p.alpha + p.B * (C / (6 * N)) ** -p.beta
    i = np.argmin(L)
    assert f.N == pytest.approx(N[i], rel=1e-3)
    assert f.L == pytest.approx(L[i], rel=1e-9)
    assert 6 * f.N * f.D == pytest.approx(C)
    # N* grows as C^a with a = beta / (alpha + beta)
    f2 = compute_frontier(p, 10 * C)
    assert np.log10(f2.N / f.N) == pytest.approx(p.beta / (p.alpha + p.beta))


def test_frontier_rejects_nonpositive_budget():
    p = JointLawParams(E=1.8, A=480.0, alpha=0.35, B=2100.0, beta=0.37)
    with pytest.raises(ValueError, match="must be > 0"):
        compute_frontier(p, [1e20, -1])


@pytest.mark.parametrize(
    "a, b, n, d", [(0.0, 2100.0, 0.0, np.inf), (480.0, 0.0, np.inf, 0.0)], ids=["A=0", "B=0"]
)
def test_frontier_of_a_vanished_term_runs_to_the_edge_without_nan(a, b, n, d):
    p = JointLawParams(E=1.8, A=a, alpha=0.35, B=b, beta=0.37)
    with np.errstate(all="raise"):  # and without a floating-point warning
        f = compute_frontier(p, np.array([1e21, 1e23]))
    assert (f.N == n).all() and (f.D == d).all()
    np.testing.assert_allclose(f.L, 1.8)  # the limit: the other term vanishes too
