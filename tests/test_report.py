"""`scaler report` on oracle sweeps whose law is known, from a real sqlite MLflow store."""

import json
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from scaler.cli import main
from scaler.laws import JointLawParams, compute_frontier
from scaler.report import write_report
from scaler.spec import parse_spec

pytestmark = pytest.mark.ray

# parameters barely matter (A N^-alpha < 0.2 % of the loss at N = 1e5), data keeps paying
SATURATED = {"E": 0.45, "A": 0.01, "alpha": 0.30, "B": 25.0, "beta": 0.28}


def _spec(name, law):
    return parse_spec(
        {
            "name": name,
            "backend": "oracle",
            "seed": 3,
            "oracle": {"law": law, "noise": 0.002},
            "trial": {"eval_points": 5},
            "axes": {
                "params": {"n_params": {"low": 1e5, "high": 1e8, "num": 6}},
                "data": {"low": 1e5, "high": 1e8, "num": 4},
            },
            "budget": {"trials": 24},
            "policy": {"name": "grid"},
            "resources": {"cpus_per_trial": 0.25, "concurrency": 8},
            "tracking": {"experiment": "report-test"},
        }
    )


@pytest.fixture(scope="module")
def saturated(tmp_path_factory, ray_local):
    from scaler.sweep import run_sweep

    storage = tmp_path_factory.mktemp("runs")
    result = run_sweep(_spec("report-sat", SATURATED), storage=storage, final_bootstrap=20)
    out = tmp_path_factory.mktemp("report")
    an, md = write_report("report-sat", out, result.tracking_uri, bootstrap=60)
    return result, an, md


def test_report_params_saturate_and_data_keeps_paying(saturated):
    _, an, _ = saturated
    assert an.schemes["n_params"].saturated, an.schemes["n_params"].verdict
    assert not an.schemes["data"].saturated, an.schemes["data"].verdict
    data = an.schemes["data"].law
    assert data.params_.b == pytest.approx(SATURATED["beta"], abs=0.03)
    lo, hi = data.ci_["b"]
    assert lo - 0.01 <= SATURATED["beta"] <= hi + 0.01


def test_report_frontier_matches_the_true_law(saturated):
    _, an, _ = saturated
    fr = an.frontier
    law = an.joint
    # parameters do not pay: their term is left out of the joint law, which is identified
    assert "params" in an.joint_dropped and law.axes == ("samples",)
    assert law.identified_, law.identification_.reason
    assert law.params_.alpha_samples == pytest.approx(SATURATED["beta"], abs=0.02)
    assert law.params_.E == pytest.approx(SATURATED["E"], rel=0.02)
    assert an.cost_model == {"kind": "kND", "k": 6.0}
    smallest = float(an.points["params"].min())
    for r in fr.rows:  # all compute to data, on the smallest model trained
        assert r.config["n_params"] == pytest.approx(smallest)
        assert r.samples * r.flops_per_sample == pytest.approx(r.C, rel=0.01)
        assert r.loss_ci[0] <= r.loss <= r.loss_ci[1]
        assert r.loss >= law.params_.E
    assert fr.rows[0].C == pytest.approx(an.points["flops"].max())
    assert fr.rows[2].loss < fr.rows[1].loss < fr.rows[0].loss
    assert set(an.backtests) >= {"data", "joint"}
    assert an.backtests["joint"].mape < 0.02


def test_report_json_keeps_its_promised_names(saturated, capsys):
    result, _, _ = saturated
    rc = main(["report", "report-sat", "--tracking-uri", result.tracking_uri, "--json",
               "--bootstrap", "20", "--no-log", "--out", str(Path(result.storage) / "rep-json")])  # fmt: skip
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"sweep", "cost_model", "schemes", "joint", "frontier", "next_10x",
                        "backtests"}  # fmt: skip
    assert out["cost_model"] == {"kind": "kND", "k": 6.0}
    for s in out["schemes"].values():
        assert set(s) >= {"x", "identified", "reason", "verdict", "params", "ci",
                          "loss_per_doubling"}  # fmt: skip
        assert s["verdict"] in {"paying", "saturated", "not identified"}
        assert s["identified"] == (s["reason"] is None)
    assert out["schemes"]["data"]["verdict"] == "paying"
    assert out["schemes"]["n_params"]["verdict"] == "saturated"
    assert set(out["joint"]) >= {"axes", "identified", "reason", "params", "ci"}
    first = out["frontier"][0]
    assert set(first) >= {"C", "samples", "flops_per_sample", "config", "params", "dense_params",
                          "sparse_params", "loss", "loss_ci"}  # fmt: skip
    for row in out["frontier"]:
        assert row["samples"] * row["flops_per_sample"] == pytest.approx(row["C"], rel=0.01)
    assert [n["spend_on"] for n in out["next_10x"]] == ["data", "n_params", "optimal mix"]
    assert all(set(b) >= {"n_train", "n_test", "mape"} for b in out["backtests"].values())


def test_report_writes_pngs_markdown_and_logs_them_to_the_parent_run(saturated):
    result, _an, md = saturated
    text = md.read_text()
    for png in ("schemes.png", "residuals.png", "isoflop.png", "frontier.png"):
        assert (md.parent / png).stat().st_size > 10_000
        assert f"]({png})" in text
    assert "saturated" in text and "100x" in text
    client = MlflowClient(result.tracking_uri)
    logged = {a.path for a in client.list_artifacts(result.parent_run_id, "report")}
    assert {"report/report.md", "report/frontier.png", "report/schemes.png"} <= logged


@pytest.mark.slow
def test_report_recovers_exponents_of_a_sweep_where_both_pay(tmp_path, ray_local, capsys):
    from scaler.sweep import run_sweep

    truth = {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28}
    result = run_sweep(_spec("report-both", truth), storage=tmp_path / "runs", final_bootstrap=20)
    out = tmp_path / "rep"
    rc = main(
        ["report", "report-both", "--out", str(out), "--tracking-uri", result.tracking_uri,
         "--bootstrap", "40", "--no-log"]
    )  # fmt: skip
    assert rc == 0 and "report written to" in capsys.readouterr().out
    from scaler.report import write_report as wr

    an, _ = wr("report-both", out, result.tracking_uri, bootstrap=40, log_to_mlflow=False)
    assert not an.schemes["n_params"].saturated and not an.schemes["data"].saturated
    assert an.schemes["n_params"].law.params_.b == pytest.approx(truth["alpha"], abs=0.05)
    law = an.joint
    assert law.axes == ("params", "samples") and law.identified_
    # the frontier searched under C = 6 N D puts N* where the closed form of the true law does
    true = compute_frontier(JointLawParams(**truth), [r.C for r in an.frontier.rows], k=6.0)
    for r, n_true in zip(an.frontier.rows, true.N, strict=True):
        assert r.params == pytest.approx(n_true, rel=0.5), (r.C, r.params, n_true)
        assert r.loss_ci[0] <= r.loss <= r.loss_ci[1]
    assert np.all(np.diff([r.params for r in an.frontier.rows]) > 0)


def test_report_unknown_sweep_is_one_clear_error(saturated, capsys):
    result, _, _ = saturated
    rc = main(["report", "nope", "--tracking-uri", result.tracking_uri])
    assert rc == 2 and "no sweep named 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("notebook", ["paper_figures.ipynb", "policy_comparison.ipynb"])
@pytest.mark.slow  # two kernels (~45 s); the report's own tests stay in the default run
def test_notebook_executes_against_the_sweep(saturated, notebook, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    result, _, _ = saturated
    monkeypatch.setenv("SCALER_SWEEP", "report-sat")
    monkeypatch.setenv("SCALER_TRACKING_URI", result.tracking_uri)
    path = Path(__file__).parents[1] / "notebooks" / notebook
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()  # raises on any cell error
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    if notebook == "policy_comparison.ipynb":
        table = [o for o in outputs if "text/html" in o.get("data", {})][-1]["data"]["text/html"]
        assert all(
            p in table for p in ("grid", "random", "halving", "adaptive", "beta_err", "design_sd")
        )
        text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
        assert "no design within 30% of the FLOPs has design_sd below" in text
