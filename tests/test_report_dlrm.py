"""`scaler report` end to end on a small real DLRM sweep (TorchRec, synthetic CTR data)."""

import copy

import pytest
from mlflow.tracking import MlflowClient
from test_sweep_dlrm import TINY

from scaler.report import write_report
from scaler.spec import parse_spec

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_report_on_a_real_dlrm_sweep_writes_every_plot(tmp_path, ray_local):
    from scaler.sweep import run_sweep

    spec = copy.deepcopy(TINY)
    spec["name"] = "dlrm-report"
    spec["axes"] = {"params": {"model.num_embeddings": [250, 500, 1000, 4000]}}
    spec["budget"] = {"trials": 4}
    result = run_sweep(parse_spec(spec), storage=tmp_path / "runs", final_bootstrap=0)
    assert result.trials == 4 and result.errors == 0
    an, md = write_report("dlrm-report", tmp_path / "rep", result.tracking_uri, bootstrap=20)
    assert "data" in an.schemes and "model.num_embeddings" in an.schemes | an.skipped
    assert an.cost_model["kind"] == "measured" and an.joint is not None
    fr = an.frontier
    assert fr.rows[0].C == an.points["flops"].max()
    for r in fr.rows:  # the measured cost: every row spends C on the config it chose
        assert r.samples * r.flops_per_sample == pytest.approx(r.C, rel=0.01)
    pngs = {p.name for p in md.parent.glob("*.png")}
    assert {"schemes.png", "residuals.png", "isoflop.png", "frontier.png"} <= pngs
    logged = {
        a.path
        for a in MlflowClient(result.tracking_uri).list_artifacts(result.parent_run_id, "report")
    }
    assert "report/schemes.png" in logged and "report/report.md" in logged
