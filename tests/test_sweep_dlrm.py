"""Real DLRM sweeps (TorchRec) on a real local Ray and a real sqlite MLflow store."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

import scaler
from scaler.spec import SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.ray

TINY = {
    "name": "dlrm-tiny",
    "backend": "dlrm",
    "dlrm": {
        "data": {
            "seed": 0,
            "features": [
                {"vocab_size": 5000, "zipf_exponent": 1.0},
                {"vocab_size": 20000, "zipf_exponent": 1.1},
            ],
        },
        "model": {"embedding_dim": 8, "bottom_mlp": [16], "top_mlp": [16]},
        "train": {"eval_samples": 8192, "num_threads": 1},
    },
    "trial": {"samples": 65536, "eval_points": 4, "min_samples": 8192},
    "axes": {"params": {"model.num_embeddings": [500, 4000]}},
    "budget": {"trials": 2},
    "resources": {"cpus_per_trial": 1, "concurrency": 2},
    "tracking": {"experiment": "dlrm-tiny"},
}


def test_dlrm_sweep_records_every_trial_and_eval_point(tmp_path, ray_local):
    from scaler.sweep import run_sweep

    result = run_sweep(parse_spec(TINY), storage=tmp_path, final_bootstrap=0)
    assert result.trials == 2 and result.errors == 0
    trials = scaler.trials("dlrm-tiny", tracking_uri=result.tracking_uri)
    points = scaler.points("dlrm-tiny", tracking_uri=result.tracking_uri)
    assert len(trials) == 2 and (trials["status"] == "completed").all()
    assert sorted(trials["param.model.num_embeddings"]) == [500, 4000]
    from scaler.trial.oracle import eval_schedule

    assert len(points) == 8 and sorted(set(points["samples"])) == eval_schedule(65536, 4, 8192)
    for _, group in points.groupby("trial_id"):
        losses = group.sort_values("samples")["loss"].to_numpy()
        assert losses[-1] < losses[0]  # it learns
        assert (group["auc"] > 0.5).all() and (group["flops"] > 0).all()
    bigger = points.groupby("trial_id")["sparse_params"].first().sort_values()
    assert bigger.iloc[1] == 8 * bigger.iloc[0]  # 4000 vs 500 rows of dim 8 on 2 tables
    assert "joint" in result.report.laws or "joint" in result.report.skipped


def test_adaptive_policy_drives_a_dlrm_sweep(tmp_path, ray_local):
    """`policy: adaptive` on real TorchRec trials: the law's parameter axis is the DLRM model's
    parameter count (from the knob), every decision is in MLflow, the budget holds."""
    import json

    from mlflow.tracking import MlflowClient

    from scaler.sweep import make_searcher, run_sweep

    spec = parse_spec(
        {
            **TINY,
            "name": "dlrm-adaptive",
            "trial": {"eval_points": 4, "min_samples": 8192},
            "axes": {"params": {"model.num_embeddings": [500, 2000, 8000]}, "data": [32768, 65536]},
            "budget": {"trials": 4},
            "policy": {"name": "adaptive"},
        }
    )
    design = make_searcher(spec).policy.design
    assert design.n_axes == 2  # the model varies: a joint law in (parameters, samples)
    result = run_sweep(spec, storage=tmp_path, final_bootstrap=0)
    # all 4, or fewer if the policy ended the sweep (on real losses the law may misfit, and then
    # no run left may be expected to help): its reason is then the last decision in MLflow
    assert 1 <= result.trials <= 4 and result.errors == 0
    client = MlflowClient(result.tracking_uri)
    run = result.parent_run_id
    paths = sorted(a.path for a in client.list_artifacts(run, "allocation"))
    steps = [p for p in paths if p.startswith("allocation/step_")]
    assert "allocation/latest.json" in paths and steps
    first = json.loads(open(client.download_artifacts(run, steps[0])).read())
    assert set(first["spent_per_axis"]) == {"model.num_embeddings", "samples"}
    chosen = first["decision"]["chosen"]
    assert chosen["params"]["model.num_embeddings"] in (500, 2000, 8000)
    assert chosen["samples"] in (32768, 65536)
    modes = ("identifying", "information", "misfit")  # every pick explained, before a law too
    assert first["decision"]["mode"].startswith(modes)
    latest = json.loads(open(client.download_artifacts(run, "allocation/latest.json")).read())
    assert latest["decision"]["mode"].startswith(modes)
    if result.trials < 4:
        assert latest["decision"]["stop"], latest["decision"]
    trials = scaler.trials("dlrm-adaptive", tracking_uri=result.tracking_uri)
    # adaptive may stop a running trial whose remaining eval points are worth little
    assert len(trials) == result.trials, trials
    assert trials["status"].isin(["completed", "stopped early"]).all(), trials["status"]


def test_bad_dlrm_knob_fails_at_load_naming_the_field():
    bad = {**TINY, "axes": {"params": {"model.embedding_dim": [8, 6]}}}
    with pytest.raises(
        SpecError, match=r"dlrm.model.embedding_dim: .*multiple of 4.*model.embedding_dim=6"
    ):
        parse_spec(bad, "bad.yaml")


def test_unknown_dlrm_key_fails_at_load():
    bad = {**TINY, "dlrm": {**TINY["dlrm"], "model": {"embeding_dim": 8}}}
    with pytest.raises(SpecError, match=r"dlrm\.model\.embeding_dim"):
        parse_spec(bad, "bad.yaml")


@pytest.mark.slow
def test_demo_spec_runs_end_to_end_and_its_report_is_identified(tmp_path):
    """`make demo`'s sweep from the command line, then `scaler report --json` on it: measured
    cost, frontier rows that spend exactly C from the largest compute trained, an identified
    data law, and no identified law at a bound or with a coefficient CI over 3 decades."""
    exe = Path(sys.executable).parent / "scaler"
    demo = ROOT / "search_spaces" / "demo.yaml"
    proc = subprocess.run(
        [str(exe), "run", str(demo), "--storage", str(tmp_path), "--bootstrap", "50"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "Analysis (scaler report" in out and "MLflow store: sqlite:///" in out, out[-3000:]
    assert "scaler ui" in out
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    trials = scaler.trials("demo", tracking_uri=uri)
    assert len(trials) == load_spec(demo).budget.trials
    assert "data" in scaler.laws("demo", tracking_uri=uri)
    rep = subprocess.run(
        [str(exe), "report", "demo", "--json", "--no-log", "--tracking-uri", uri,
         "--out", str(tmp_path / "rep")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert rep.returncode == 0, rep.stderr[-3000:]
    report = json.loads(rep.stdout)
    assert report["cost_model"]["kind"] == "measured"
    flops = scaler.points("demo", tracking_uri=uri)["flops"].max()
    assert report["frontier"][0]["C"] == pytest.approx(flops, rel=1e-9)
    for row in report["frontier"]:
        assert row["samples"] * row["flops_per_sample"] == pytest.approx(row["C"], rel=0.01)
    assert report["schemes"]["data"]["identified"], report["schemes"]["data"]
    laws = [*report["schemes"].values(), report["joint"]]
    for law in laws:
        if not law["identified"]:
            continue
        for name, (lo, hi) in law["ci"].items():
            if name.startswith(("b", "alpha")):
                assert 0 < law["params"][name] < 4, (name, law)
            if name in ("a", "B") or name.startswith("A_"):
                assert lo > 0 and hi / lo <= 1e3, (name, lo, hi)
