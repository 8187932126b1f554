"""Read sweeps back from MLflow alone: DataFrames of trials and eval points, and fitted laws.

>>> import scaler
>>> scaler.trials("oracle-demo", tracking_uri="sqlite:///scaler_runs/mlflow.db")
>>> scaler.points("oracle-demo")          # one row per eval point
>>> scaler.laws("oracle-demo")["joint"].predict([[1e9, 1e10]])
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from scaler.laws import Law
from scaler.records import EvalPoint
from scaler.tracking import KIND_TAG, SWEEP_TAG, TRIAL_TAG, default_tracking_uri, sqlite_path

POINT_COLUMNS = [f for f in EvalPoint.__dataclass_fields__ if f != "samples"] + ["params"]
BULK_RUNS = 500  # run ids per bulk read (under sqlite's 999 bound variables)


def resolve_uri(tracking_uri: str | None) -> str:
    uri = (
        tracking_uri
        or os.environ.get("MLFLOW_TRACKING_URI")
        or default_tracking_uri(Path("scaler_runs"))
    )
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise FileNotFoundError(f"no MLflow store at {db} (tracking URI {uri})")
    return uri


def _client(tracking_uri: str | None) -> MlflowClient:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return MlflowClient(resolve_uri(tracking_uri))


def _parent(client: MlflowClient, sweep: str):
    """The parent run of a sweep, by run id or by sweep name (latest if several experiments)."""
    try:
        run = client.get_run(sweep)
        if run.data.tags.get(KIND_TAG) == "sweep":
            return run
    except Exception:  # not a run id
        pass
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        exps,
        filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{KIND_TAG}` = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise ValueError(f"no sweep named {sweep!r} in {client.tracking_uri}")
    return runs[0]


def _children(client: MlflowClient, parent) -> list:
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=50000,
    )


def sweeps(tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per sweep in the store."""
    client = _client(tracking_uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, filter_string=f"tags.`{KIND_TAG}` = 'sweep'", max_results=10000)
    return pd.DataFrame(
        [
            {
                "sweep": r.data.tags.get(SWEEP_TAG),
                "run_id": r.info.run_id,
                "status": r.info.status,
                "backend": r.data.params.get("backend"),
                "start_time": pd.to_datetime(r.info.start_time, unit="ms"),
            }
            for r in runs
        ],
        columns=["sweep", "run_id", "status", "backend", "start_time"],
    )


def trials(sweep: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per trial: ids, status, exclusion reason, axis values, final eval point."""
    client = _client(tracking_uri)
    parent = _parent(client, sweep)
    rows = []
    for r in _children(client, parent):
        config = json.loads(r.data.params.get("config", "{}"))
        row = {
            "trial_id": r.data.tags.get(TRIAL_TAG),
            "run_id": r.info.run_id,
            "status": r.data.tags.get("scaler.status", r.info.status.lower()),
            "excluded": r.data.tags.get("scaler.excluded", ""),
            "samples_budget": config.get("samples"),
            "compute_budget": config.get("compute"),
            **{f"param.{k}": v for k, v in config.get("params", {}).items()},
            **{f"hparam.{k}": v for k, v in config.get("hparams", {}).items()},
            "point": config.get("point"),
            **{
                k: r.data.metrics.get(k)
                for k in ("samples", "loss", "ne", "auc", "params", "flops", "device_seconds")
            },
        }
        rows.append(row)
    return pd.DataFrame(rows).sort_values("trial_id", ignore_index=True) if rows else pd.DataFrame()


def _histories(client: MlflowClient, run_ids: list[str]) -> dict[str, dict[int, dict]]:
    """run id -> step -> {metric: value} of `POINT_COLUMNS` (the last value logged at a step).

    A SQL store (sqlite, ...) reads each metric of up to `BULK_RUNS` runs in one query
    (`get_metric_history_bulk`, every value, unlike the UI's sampled bulk call): 1,000 runs in
    ~1 s instead of 10,000 calls. Other stores (a tracking server) are read run by run."""
    out: dict[str, dict[int, dict]] = {r: {} for r in run_ids}
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    bulk = getattr(store, "get_metric_history_bulk", None)
    for key in POINT_COLUMNS:
        if bulk is None:
            for run_id in run_ids:
                for m in client.get_metric_history(run_id, key):
                    out[run_id].setdefault(m.step, {})[key] = m.value
            continue
        for i in range(0, len(run_ids), BULK_RUNS):
            for row in bulk(run_ids[i : i + BULK_RUNS], key, max_results=None):
                out[row.run_id].setdefault(row.step, {})[key] = row.value
    return out


def points(sweep: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """One row per eval point (step metrics of every trial run; step = samples seen)."""
    client = _client(tracking_uri)
    parent = _parent(client, sweep)
    runs = _children(client, parent)
    found = _histories(client, [r.info.run_id for r in runs])
    histories = [found[r.info.run_id] for r in runs]
    frames = []
    for r, by_step in zip(runs, histories, strict=True):
        for step, values in sorted(by_step.items()):
            frames.append(
                {
                    "trial_id": r.data.tags.get(TRIAL_TAG),
                    "run_id": r.info.run_id,
                    "samples": step,
                    **values,
                    "excluded": r.data.tags.get("scaler.excluded", ""),
                }
            )
    df = pd.DataFrame(frames)
    if df.empty:
        return df
    for col in ("dense_params", "sparse_params", "params", "samples"):
        if col in df:
            df[col] = df[col].astype("int64")
    return df.sort_values(["trial_id", "samples"], ignore_index=True)


def fitted_points(sweep: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The eval points the fit uses: `points` without excluded (diverged, failed) trials and
    non-positive losses — the pool `scaler replay --from-sweep` chooses from."""
    df = points(sweep, tracking_uri)
    if df.empty:
        raise ValueError(f"sweep {sweep!r} has no eval points")
    df = df[(df["excluded"].fillna("") == "") & (df["loss"] > 0)]
    return df.reset_index(drop=True)


def laws(sweep: str, tracking_uri: str | None = None) -> dict[str, Law]:
    """The latest fitted laws of a sweep, rebuilt from its `laws/latest.json` artifact."""
    client = _client(tracking_uri)
    parent = _parent(client, sweep)
    try:
        summary = json.loads(
            Path(client.download_artifacts(parent.info.run_id, "laws/latest.json")).read_text()
        )
    except Exception as exc:
        raise ValueError(f"sweep {sweep!r} has no fitted laws yet ({exc})") from None
    return {name: Law.from_dict(d) for name, d in summary["laws"].items()}


def fit_history(sweep: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """Law parameters after each refit: one row per refit (`trials_completed`), a column
    `law.<name>.<param>` per parameter (the parent run's metrics `law.<name>/<param>`; stores
    written before they were grouped for the UI have `law.<name>.<param>`)."""
    client = _client(tracking_uri)
    parent = _parent(client, sweep)
    rows: dict[int, dict] = {}
    for key in parent.data.metrics:
        if key.startswith("law."):
            column = key.replace("/", ".")
            for m in client.get_metric_history(parent.info.run_id, key):
                rows.setdefault(m.step, {"trials_completed": m.step})[column] = m.value
    return pd.DataFrame([rows[s] for s in sorted(rows)])


def hparam_rules(sweep: str, tracking_uri: str | None = None) -> dict:
    """Hyperparameter scaling rules h*(N) = a N^-b of a tuned sweep, from MLflow alone: each
    scale point's best completed run gives the optimum at its parameter count."""
    from scaler.hparams import TunedRun, fit_rules

    df = trials(sweep, tracking_uri)
    names = [c.removeprefix("hparam.") for c in df.columns if c.startswith("hparam.")]
    if not names:
        raise ValueError(f"sweep {sweep!r} tuned no hyperparameters")
    done = df[
        (df["status"] == "completed")
        & (df["samples"] == df["samples_budget"])
        & df["point"].notna()
    ]
    runs = [
        TunedRun(
            row.point,
            float(row.params),
            {n: float(row[f"hparam.{n}"]) for n in names},
            float(row.loss),
        )
        for _, row in done.iterrows()
    ]
    return fit_rules(runs, names)
