"""The adaptive policy's compute targets use each model's own FLOPs per sample."""

import numpy as np
import pytest

from scaler.allocation._targets import interpolate_cost, optimal_inputs
from scaler.laws import JointLaw, JointLawParams, compute_frontier

TRUTH = JointLawParams(E=0.45, A=60.0, alpha=0.30, B=25.0, beta=0.28)


def _law():
    law = JointLaw()
    law.theta_ = law._theta_from_params(TRUTH)
    return law


def test_with_k_n_costs_the_target_is_the_closed_form_frontier():
    sizes = np.geomspace(1e5, 1e8, 6)
    fps = 6.0 * sizes  # the oracle: C = 6 N D
    C = np.array([1e18, 1e20])
    got = optimal_inputs(_law(), C, sizes, fps, largest=6e16)
    want = compute_frontier(TRUTH, C, k=6.0)
    assert got[:, 0] == pytest.approx(want.N, rel=0.05)
    assert got[:, 0] * got[:, 1] * 6.0 == pytest.approx(C, rel=1e-9)


def test_sizes_that_cost_no_flops_are_held_to_memory_that_grows_with_compute():
    """A DLRM grown in embedding rows: every size costs the same FLOPs per sample, so without a
    bound N* would run away; it stays within the largest size x C / C_max."""
    sizes = np.geomspace(1e5, 1e7, 4)
    fps = np.full(4, 3.5e4)
    largest = 3.5e4 * 1e6
    got = optimal_inputs(_law(), np.array([10 * largest]), sizes, fps, largest)
    assert got[0, 0] == pytest.approx(10 * sizes.max(), rel=1e-6)
    assert got[0, 1] == pytest.approx(10 * largest / 3.5e4)


def test_cost_interpolates_in_log_log_and_extends_by_the_end_slope():
    sizes, fps = np.array([1e3, 1e4]), np.array([2e3, 2e4])
    assert interpolate_cost(sizes, fps, np.array([3e3, 1e5, 1e2])) == pytest.approx([6e3, 2e5, 2e2])
