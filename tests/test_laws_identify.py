"""Identification: a fit is a result only when the data pin it down (scaler.laws._identify)."""

import numpy as np
import pytest

from scaler.laws import JointLaw, Law, MultiLaw, PowerLaw


def _noisy(x, a=25.0, b=0.3, c=0.4, noise=0.002, seed=0):
    rng = np.random.default_rng(seed)
    return (a * x**-b + c) * np.exp(rng.normal(0, noise, len(x)))


def test_a_well_posed_law_is_identified_before_and_after_its_bootstrap():
    x = np.geomspace(1e5, 1e8, 12)
    law = PowerLaw().fit(x, _noisy(x))
    assert law.identified_ and law.identification_.reason is None
    law.bootstrap(60)
    assert law.identified_, law.identification_.reason
    d = law.to_dict()
    assert d["identified"] is True and d["reason"] is None
    assert "not identified" not in repr(law)


def test_too_few_distinct_sizes_is_not_identified_however_many_points():
    x = np.repeat([1e5, 1e6, 1e7], 4)
    law = PowerLaw().fit(x, _noisy(x))
    ident = law.identification_
    assert not ident.identified
    assert ident.reason == "3 distinct values of x; the form needs at least 4"


def test_an_exponent_at_its_bound_is_not_identified():
    x = np.geomspace(1e3, 1e6, 10)
    y = np.where(x < 2e3, 1.0, 0.5) * np.exp(np.random.default_rng(1).normal(0, 1e-4, 10))
    law = PowerLaw().fit(x, y)  # a step: the fit wants an infinitely steep exponent
    ident = law.identification_
    assert not ident.identified and "sits at its upper bound 4" in ident.reason
    assert repr(law).startswith("PowerLaw(not identified: b = ")


def test_a_ci_over_decades_is_not_identified_and_survives_serialisation():
    x = np.geomspace(1e5, 3e5, 6)  # half a decade of noisy data: a and b trade off freely
    law = PowerLaw().fit(x, _noisy(x, noise=0.02, seed=3))
    law.bootstrap(60)
    ident = law.identification_
    assert not ident.identified and "CI" in ident.reason, ident
    back = Law.from_dict(law.to_dict())
    assert back.identification_ == ident


def test_multi_law_with_two_axes_is_the_joint_law():
    rng = np.random.default_rng(0)
    N = np.repeat(np.geomspace(1e5, 1e8, 5), 5)
    D = np.tile(np.geomspace(1e5, 1e8, 5), 5)
    y = (0.45 + 60 * N**-0.3 + 25 * D**-0.28) * np.exp(rng.normal(0, 0.003, 25))
    joint = JointLaw().fit(np.c_[N, D], y)
    multi = MultiLaw(axes=("params", "samples")).fit(np.c_[N, D], y)
    assert np.allclose(joint.theta_, multi.theta_)
    assert multi.params_.alpha_params == pytest.approx(joint.params_.alpha)
    assert multi.term("samples") == pytest.approx((joint.params_.B, joint.params_.beta))


def test_multi_law_round_trips_and_names_its_parameters_after_its_axes():
    rng = np.random.default_rng(2)
    S, De, D = (rng.choice(np.geomspace(lo, hi, 4), 80) for lo, hi in
                ((1e4, 1e7), (1e3, 1e5), (1e5, 1e8)))  # fmt: skip
    y = 0.4 + 5 * S**-0.25 + 3 * De**-0.3 + 40 * D**-0.3
    law = MultiLaw(axes=("sparse_params", "dense_params", "samples")).fit(np.c_[S, De, D], y)
    assert law.params_._fields == (
        "E", "A_sparse_params", "alpha_sparse_params", "A_dense_params", "alpha_dense_params",
        "A_samples", "alpha_samples",
    )  # fmt: skip
    assert law.params_.alpha_dense_params == pytest.approx(0.3, abs=0.01)
    back = Law.from_dict(law.to_dict())
    assert isinstance(back, MultiLaw) and back.axes == law.axes
    assert np.allclose(back.predict(np.c_[S, De, D]), law.predict(np.c_[S, De, D]))
    with pytest.raises(ValueError, match="repeat a name"):
        MultiLaw(axes=("a", "a")).fit(np.c_[S, S], y)


def test_a_residual_bootstrap_keeps_a_one_point_per_size_design_identified():
    """Five table sizes, one eval each (a knob's scheme): resampling points drops sizes and the
    CIs blow up; resampling residuals keeps the design (measured on a real demo sweep)."""
    x = np.array([6.4e4, 2.56e5, 9.28e5, 3.232e6, 9.952e6])
    y = np.array([0.2711, 0.2558, 0.2434, 0.2400, 0.2380])
    cases = PowerLaw().fit(x, y)
    cases.bootstrap(100, method="cases")
    resid = PowerLaw().fit(x, y)
    resid.bootstrap(100, method="residuals")
    assert not cases.identified_ and resid.identified_, resid.identification_
    lo, hi = resid.ci_["b"]
    assert lo < resid.params_.b < hi and hi - lo < 1.0
    with pytest.raises(ValueError, match="method is 'jackknife'"):
        resid.bootstrap(10, method="jackknife")
