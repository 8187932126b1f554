"""A new sqlite store is a copy of an empty one (MLflow's migrations run once per version)."""

import os
import sqlite3
from contextlib import closing

from mlflow.tracking import MlflowClient

from scaler.tracking import SweepTracker, new_sqlite_store


def schema(db) -> tuple[set[str], str]:
    with closing(sqlite3.connect(db)) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        (version,) = con.execute("SELECT version_num FROM alembic_version").fetchone()
    return tables, version


def test_a_new_store_is_the_store_mlflow_makes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    made = tmp_path / "mlflow-made.db"
    MlflowClient(f"sqlite:///{made}").search_experiments()  # MLflow's own migrations
    for name in ("first.db", "second.db"):  # the first makes the cached empty store
        db = tmp_path / name
        new_sqlite_store(db)
        assert schema(db) == schema(made)
        monkeypatch.chdir(tmp_path)
        default = MlflowClient(f"sqlite:///{db}").get_experiment("0")  # added at first open,
        assert default.name == "Default"  # with this store's artifact root, not the cache's
        assert default.artifact_location == (tmp_path / "mlruns" / "0").as_uri()[len("file://") :]
    (template,) = (tmp_path / "cache" / "scaler").glob("mlflow-*-empty.db")
    new_sqlite_store(tmp_path / "first.db")  # an existing store is left as it is
    tracker = SweepTracker(f"sqlite:///{tmp_path / 'third.db'}", "exp")
    run = tracker.client.create_run(tracker.experiment_id())
    tracker.client.log_metric(run.info.run_id, "loss", 0.5)
    assert tracker.client.get_run(run.info.run_id).data.metrics == {"loss": 0.5}
    assert os.path.getsize(template) > 0


def test_without_a_cache_folder_mlflow_makes_the_store(tmp_path, monkeypatch):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # mkdir under a file fails
    tracker = SweepTracker(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}", "exp")
    assert tracker.client.get_experiment_by_name("exp") is None
    assert tracker.experiment_id() and (tmp_path / "runs" / "mlflow.db").is_file()
