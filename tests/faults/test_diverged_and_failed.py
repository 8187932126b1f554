"""Diverged trials (NaN loss) stop early and failing trials exhaust their retries: both are recorded
with a reason, excluded from the fit, shown excluded in query results — and the sweep goes on."""

from __future__ import annotations

import math

import pytest

import scaler
from scaler.divergence import divergence
from scaler.records import EvalPoint
from scaler.spec import parse_spec
from scaler.sweep import run_sweep
from tests.faults.helpers import LAW, ORACLE_SPEC, assert_sweep_points_once


def _point(loss, ne):
    return EvalPoint(
        samples=1000,
        dense_params=1,
        sparse_params=0,
        flops=1.0,
        wall_seconds=0.0,
        device_seconds=0.0,
        loss=loss,
        ne=ne,
        auc=math.nan,
    )


def test_divergence_rule_nonfinite_and_worse_than_trivial():
    assert divergence(_point(math.nan, math.nan), "oracle").startswith("diverged: loss nan")
    assert divergence(_point(math.inf, 1.0), "dlrm")
    assert "worse than predicting the base rate" in divergence(_point(0.7, 1.2), "dlrm")
    assert divergence(_point(0.7, 1.05), "dlrm") is None  # within the margin
    assert divergence(_point(1.5, 1.5), "oracle") is None  # the oracle's ne is its raw loss


@pytest.mark.slow  # ~50 s: 12 trials, 3 of them failing through Ray's retries
def test_diverged_and_failed_trials_excluded_sweep_goes_on(ray_local, tmp_path):
    spec = parse_spec(
        {
            **ORACLE_SPEC,
            "name": "faults-diverge",
            "oracle": {
                "law": LAW,
                "diverge_n_params": [1.0e6],
                "fail_n_params": [1.0e7],
            },
        }
    )
    result = run_sweep(spec, storage=tmp_path, final_bootstrap=0)
    uri = result.tracking_uri
    assert result.trials == 12 and result.errors == 3  # the sweep went on past the failures

    trials = scaler.trials("faults-diverge", tracking_uri=uri).set_index("trial_id")
    n = trials["param.n_params"].astype(float)
    diverged, failed, good = trials[n == 1e6], trials[n == 1e7], trials[(n != 1e6) & (n != 1e7)]
    assert len(diverged) == 3 and (diverged["status"] == "diverged").all()
    assert diverged["excluded"].str.startswith("diverged: loss nan").all()
    assert len(failed) == 3 and (failed["status"] == "failed").all()
    assert failed["excluded"].str.contains("injected failure").all()
    assert (good["status"] == "completed").all() and (good["excluded"] == "").all()

    points = scaler.points("faults-diverge", tracking_uri=uri)
    assert assert_sweep_points_once("faults-diverge", uri) == len(points)  # raw history: once
    # a diverged trial stopped at its first NaN: 1 good point + the NaN one, not all 4
    per_trial = points.groupby("trial_id").size()
    assert (per_trial[diverged.index] == 2).all()
    assert (points.set_index("trial_id").loc[diverged.index, "excluded"] != "").all()
    joint = scaler.laws("faults-diverge", tracking_uri=uri)["joint"]
    assert joint.n_ == 6 * 4  # only the 6 healthy trials feed the law
