"""A tuned sweep live: per-point Optuna studies inside one Ray Tune experiment and one MLflow record."""

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import scaler
from scaler.spec import parse_spec

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]

SPEC = {
    "name": "tuned-oracle",
    "backend": "oracle",
    "oracle": {
        "law": {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28},
        "noise": 0.002,
        "hparams": {"lr": {"a": 0.5, "b": 0.25, "sensitivity": 0.2, "default": 0.01}},
    },
    "trial": {"eval_points": 4},
    "axes": {"params": {"n_params": [1e5, 1e6, 1e7, 1e8]}, "data": [1e6]},
    "tuning": {"hparams": {"lr": {"low": 1e-3, "high": 1.0}}, "trials_per_point": 5},
    "budget": {"trials": 100},
    "resources": {"cpus_per_trial": 0.25, "concurrency": 4},
    "tracking": {"experiment": "tuned"},
}


def test_tuned_oracle_sweep_records_per_point_studies(tmp_path, ray_local):
    from scaler.sweep import run_sweep

    result = run_sweep(parse_spec(SPEC), storage=tmp_path, final_bootstrap=0)
    assert result.trials == 20 and result.errors == 0
    trials = scaler.trials("tuned-oracle", tracking_uri=result.tracking_uri)
    assert len(trials) == 20 and trials["point"].nunique() == 4
    assert trials.groupby("point").size().eq(5).all()  # 5 tuning trials per scale point
    assert trials["hparam.lr"].between(1e-3, 1.0).all()
    client = MlflowClient(result.tracking_uri)
    run = client.get_run(trials["run_id"].iloc[0])
    config = json.loads(run.data.params["config"])
    assert {"hparams", "point", "tuning_trial"} <= set(config)
    assert run.data.params["hparams.lr"] == str(config["hparams"]["lr"])
    # the law saw one run per point; the others are excluded with a reason
    assert result.report.tuned_points == 4
    rules = scaler.hparam_rules("tuned-oracle", tracking_uri=result.tracking_uri)
    assert rules["lr"].n_points == 4 and rules["lr"].b_ci[0] < rules["lr"].b < rules["lr"].b_ci[1]


def test_tuned_demo_spec_loads():
    from scaler.spec import load_spec

    spec = load_spec(ROOT / "search_spaces" / "tuned_demo.yaml")
    assert spec.tuning is not None and spec.backend == "dlrm"


@pytest.mark.slow
def test_tuned_dlrm_sweep_runs_end_to_end(tmp_path, ray_local):
    from scaler.spec import load_spec
    from scaler.sweep import run_sweep

    spec = load_spec(ROOT / "search_spaces" / "tuned_demo.yaml")
    result = run_sweep(spec, storage=tmp_path, final_bootstrap=0)
    assert result.errors == 0
    trials = scaler.trials(spec.name, tracking_uri=result.tracking_uri)
    assert trials["point"].nunique() == len(spec.axes.param_grid())
    assert (trials.groupby("point").size() == spec.tuning.trials_per_point).all()
    assert {"hparam.train.dense_lr", "hparam.train.sparse_lr"} <= set(trials.columns)


@pytest.mark.slow  # ~15 s; a tuned sweep + its report
def test_report_of_a_tuned_sweep_shows_the_rules(tmp_path, ray_local):
    from scaler.report import write_report
    from scaler.sweep import run_sweep

    spec = parse_spec(
        {**SPEC, "name": "tuned-report", "tuning": {**SPEC["tuning"], "trials_per_point": 3}}
    )
    result = run_sweep(spec, storage=tmp_path / "runs", final_bootstrap=0)
    _, md = write_report("tuned-report", tmp_path / "out", result.tracking_uri, bootstrap=20)
    text = md.read_text()
    assert "Hyperparameter scaling rules" in text and "| lr |" in text
