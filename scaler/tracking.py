"""Everything MLflow: the record of truth of a sweep.

One parent run per sweep (tag `scaler.sweep`), one nested child run per trial (tag
`scaler.trial_id`, `mlflow.parentRunId`), every eval point a step metric (step = samples seen),
law fits as metrics on the parent (step = trials completed) and JSON artifacts.  Runs are found by
tag before they are created, so a retried trial or a resumed sweep keeps its run: one run per
trial, ever.  All calls go through `MlflowClient`; no global active-run state.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from scaler.records import EvalPoint
from scaler.secrets import redact_params, redact_uri

log = logging.getLogger(__name__)

EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"  # the run's description in the MLflow UI (Markdown)


def sweep_description(spec: dict) -> str:
    """What the sweep is, in words, for the parent run's description in the UI."""
    axes = spec.get("axes") or {}
    knobs = ", ".join(axes.get("params") or {}) or "one model"
    budget = ", ".join(f"{k} {v}" for k, v in (spec.get("budget") or {}).items() if v is not None)
    return (
        f"Scaling sweep **{spec.get('name')}**: backend {spec.get('backend')}, policy "
        f"{(spec.get('policy') or {}).get('name')}; scales {knobs} and samples; budget {budget}. "
        "Each child run is one trial (loss, NE, AUC against samples); the laws, refitted as "
        "trials finish and once more at the end, are the metrics `law.<name>/<param>`, one "
        "chart section per law under Model metrics (step = trials completed)."
    )


def laws_in_words(summary: dict, step: int) -> str:
    lines = [f"\n\n**Latest laws** (after {step} trials):"]
    for name, law in summary.get("laws", {}).items():
        if not law.get("identified", True):
            lines.append(f"- {name}: not identified ({law.get('reason')})")
            continue
        params = ", ".join(f"{k} = {v:.4g}" for k, v in law["params"].items())
        lines.append(f"- {name} ({law['form']}): {params}; fit error {law['mape']:.2%}")
    for name, why in summary.get("skipped", {}).items():
        lines.append(f"- {name}: not fitted ({why})")
    return "\n".join(lines)


SWEEP_TAG = "scaler.sweep"
TRIAL_TAG = "scaler.trial_id"
KIND_TAG = "scaler.kind"
POINT_METRICS = tuple(f for f in EvalPoint.__dataclass_fields__ if f != "samples")
STEP_METRIC = "samples"  # logged with every eval point, value = step: the points a run holds
# what a retrain decides; wall-clock fields of a re-reported point may differ without harm
OUTCOME_METRICS = ("loss", "ne", "auc")
MISMATCH_TAG = "scaler.rereported_mismatch"
MAX_PARAM_LEN = 6000
MAX_TAG_LEN = 5000  # MLflow's limit on a tag value is 5000 characters (8000 in newer releases)


def default_tracking_uri(storage: Path) -> str:
    return f"sqlite:///{(storage / 'mlflow.db').resolve()}"


def sqlite_path(uri: str) -> Path | None:
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :])  # sqlite:////abs/path -> /abs/path
    return None


def new_sqlite_store(db: Path) -> None:
    """Create the sqlite store `db`, if it does not exist, as a copy of an empty store.

    MLflow builds a new store's schema by running every one of its migrations: 0.9 s here, paid by
    every new sweep (and test) before its first trial, against 0.02 s for a copy. The empty store
    is made once per MLflow version in the user's cache folder, without MLflow's "Default"
    experiment (MLflow adds it, with this store's artifact root, when it first opens the copy).
    The copy is put in place with a hard link, which fails if the file exists: two processes
    creating one store both use the same file. Anything unusual (no cache folder, no hard links)
    and MLflow creates the store as usual."""
    if db.exists():
        return
    try:
        template = _empty_store_template()
        fd, tmp = tempfile.mkstemp(dir=db.parent, prefix=f".{db.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(template, tmp)
            os.link(tmp, db)
        finally:
            os.unlink(tmp)
    except FileExistsError:
        pass  # another process made it first
    except Exception:  # an optimisation only: MLflow creates the store itself
        log.debug("no copy of an empty store for %s", db, exc_info=True)


def _empty_store_template() -> Path:
    import mlflow

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "scaler"
    template = cache / f"mlflow-{mlflow.__version__}-empty.db"
    if template.is_file():
        return template
    cache.mkdir(parents=True, exist_ok=True)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        path = Path(tmp) / "empty.db"
        store = SqlAlchemyStore(f"sqlite:///{path}", str(Path(tmp) / "artifacts"))
        store.engine.dispose()
        with contextlib.closing(sqlite3.connect(path)) as con, con:
            con.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
            con.execute("DELETE FROM experiments WHERE experiment_id = 0")
        os.replace(path, template)  # whole or not at all, whoever else makes it at once
    return template


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


class SweepTracker:
    """Writes one sweep to MLflow.  Cheap to construct; picklable state is just strings."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: Path | None = None):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        self.parent_run_id: str | None = None
        self.sweep_name: str | None = None
        self.created_parent = False  # set by start_sweep: this process created the sweep's run
        self._tried: set[str] = set()  # trial ids whose run this process has tried to create
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None  # looked up once per process (not per trial run)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            db = sqlite_path(self.tracking_uri)
            if db is not None:
                db.parent.mkdir(parents=True, exist_ok=True)
                new_sqlite_store(db)
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def __getstate__(self):
        return {**self.__dict__, "_client": None, "_experiment_id": None}

    def __setstate__(self, state):  # a checkpoint written before these existed loads too
        self.__dict__.update({"_experiment_id": None, "_tried": set(), **state})

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            self._experiment_id = self._find_or_create_experiment()
        return self._experiment_id

    def _find_or_create_experiment(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is not None:
            if EXPERIMENT_KIND not in exp.tags:
                self.client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
            return exp.experiment_id
        location = None
        if self.artifact_root is not None:
            self.artifact_root.mkdir(parents=True, exist_ok=True)
            location = self.artifact_root.resolve().as_uri()
        # MLflow 3's UI picks an experiment's landing page by this tag: without it a new
        # experiment opens on the GenAI overview (traces, tokens) instead of its training runs
        return self.client.create_experiment(
            self.experiment, artifact_location=location, tags={EXPERIMENT_KIND: MODEL_TRAINING}
        )

    # --- the sweep (parent run) -----------------------------------------------------------
    def find_sweep(self, name: str):
        runs = self.client.search_runs(
            [self.experiment_id()],
            filter_string=f"tags.`{SWEEP_TAG}` = '{name}' and tags.`{KIND_TAG}` = 'sweep'",
            max_results=1,
        )
        return runs[0] if runs else None

    def start_sweep(self, name: str, resolved_spec: dict, fingerprint: str) -> str:
        existing = self.find_sweep(name)
        self.sweep_name = name
        self.created_parent = existing is None  # no run of the sweep predates this process
        if existing is not None:
            self.parent_run_id = existing.info.run_id
            self.client.update_run(self.parent_run_id, RunStatus.to_string(RunStatus.RUNNING))
            return self.parent_run_id
        run = self.client.create_run(
            self.experiment_id(),
            run_name=name,
            tags={
                SWEEP_TAG: name,
                KIND_TAG: "sweep",
                "scaler.spec_fingerprint": fingerprint,
                NOTE_TAG: sweep_description(resolved_spec),
            },
        )
        self.parent_run_id = run.info.run_id
        params = {
            k: json.dumps(v) if isinstance(v, list | dict) else str(v)
            for k, v in flatten(resolved_spec).items()
        }
        self._log_params(self.parent_run_id, redact_params(params))  # no tokens in the record
        self.client.log_dict(self.parent_run_id, _redact_spec(resolved_spec), "spec.json")
        return self.parent_run_id

    def end_sweep(self, status: str = "FINISHED") -> None:
        if self.parent_run_id:
            self.client.set_terminated(self.parent_run_id, status)

    # --- trials (child runs) --------------------------------------------------------------
    def trial_run(
        self, trial_id: str, config: dict, known: frozenset[str] = frozenset()
    ) -> tuple[str, dict[int, dict[str, float]]]:
        """The trial's run (found or created) and the points it already holds (`logged_points`).

        `known`: run ids the driver's restored state maps to trials of its own (never adopted).
        In a sweep this process started, no run can exist yet for a trial it starts the first
        time: the searches below (whose cost grows with the sweep's runs) are for resumed sweeps,
        and for a retry here (a create whose reply was lost to a tracking outage may have made
        the run: creating another would make two runs of one trial)."""
        first_try = trial_id not in self._tried
        self._tried.add(trial_id)
        if self.created_parent and first_try:
            return self._new_trial_run(trial_id, config), {}
        runs = self.client.search_runs(
            [self.experiment_id()],
            filter_string=f"tags.`{TRIAL_TAG}` = '{trial_id}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'",
            max_results=1,
        )
        if not runs:
            # A driver killed after starting a trial and before Tune's next experiment checkpoint
            # leaves a run (running, or finished if the trial ended in that window) whose trial
            # id the resumed sweep never knew; its searcher proposes the same config again under
            # a new id. Adopt that run: one run per config, its points logged once.
            runs = [
                r
                for r in self.client.search_runs(
                    [self.experiment_id()],
                    filter_string=(
                        f"tags.`scaler.config_hash` = '{config_hash(config)}' and "
                        f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'"
                    ),
                    max_results=50,
                )
                if r.info.run_id not in known
            ][:1]
            if runs:
                old_id = runs[0].data.tags.get(TRIAL_TAG, "")
                self.set_tags(
                    runs[0].info.run_id, {"scaler.previous_trial_id": old_id, TRIAL_TAG: trial_id}
                )
        if runs:
            run_id = runs[0].info.run_id
            if "config" not in runs[0].data.params:  # created, but its params never written
                self._log_params(run_id, self._trial_params(config))
            self.client.update_run(run_id, RunStatus.to_string(RunStatus.RUNNING))
            return run_id, self.logged_points(run_id)
        return self._new_trial_run(trial_id, config), {}

    def _new_trial_run(self, trial_id: str, config: dict) -> str:
        run = self.client.create_run(
            self.experiment_id(),
            run_name=f"trial-{trial_id}",
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                TRIAL_TAG: trial_id,
                KIND_TAG: "trial",
                SWEEP_TAG: self._sweep_name(),
                "scaler.config_hash": config_hash(config),
            },
        )
        self._log_params(run.info.run_id, self._trial_params(config))
        return run.info.run_id

    @staticmethod
    def _trial_params(config: dict) -> dict[str, str]:
        params = {k: str(v) for k, v in flatten(config).items()}
        params["config"] = json.dumps(config, sort_keys=True)
        return params

    def logged_points(self, run_id: str) -> dict[int, dict[str, float]]:
        """The eval points a run holds in MLflow: step -> its outcome metrics (`OUTCOME_METRICS`).

        Read from the metric history, so whatever wrote them (this process, a driver killed
        since, a write whose reply was lost) they are known.  A point's metrics go in one
        `log_batch`, one transaction in the store: its step metric is there iff its outcome is.
        """
        held: dict[int, dict[str, float]] = {}
        for key in (STEP_METRIC, *OUTCOME_METRICS):
            for m in self.client.get_metric_history(run_id, key):
                values = held.setdefault(m.step, {})
                if key != STEP_METRIC:
                    values.setdefault(key, m.value)  # the first one logged is the record
        return held

    def note_rereported(self, run_id: str, entry: dict) -> None:
        """Add `entry` (a re-reported point that differs from the one logged: step and both
        values) to the run's `MISMATCH_TAG`, a JSON list; entries past the tag's length limit
        are counted in `MISMATCH_TAG.dropped`, not stored."""
        tags = self.client.get_run(run_id).data.tags
        entries = json.loads(tags.get(MISMATCH_TAG, "[]"))
        if json.dumps(entry) in map(json.dumps, entries):  # by text: NaN != NaN
            return
        text = json.dumps([*entries, entry])
        if len(text) <= MAX_TAG_LEN:
            self.client.set_tag(run_id, MISMATCH_TAG, text)
        else:
            dropped = int(tags.get(f"{MISMATCH_TAG}.dropped", "0")) + 1
            self.client.set_tag(run_id, f"{MISMATCH_TAG}.dropped", str(dropped))

    def log_points(
        self,
        run_id: str,
        points: list[EvalPoint],
        timestamp_ms: int,
        tags: dict[str, str] | None = None,
    ) -> None:
        """The points' metrics (and `tags`, e.g. a trial's end status: one write, not two)."""
        metrics = [
            Metric(key, float(getattr(p, key)), timestamp_ms, int(p.samples))
            for p in points
            for key in (*POINT_METRICS, "params")
        ]
        metrics += [
            Metric("samples", float(p.samples), timestamp_ms, int(p.samples)) for p in points
        ]
        run_tags = [RunTag(k, v) for k, v in (tags or {}).items()]
        for i in range(0, max(len(metrics), 1), 900):  # MLflow's batch limit is 1000 metrics
            self.client.log_batch(run_id, metrics=metrics[i : i + 900], tags=run_tags)
            run_tags = []

    @staticmethod
    def end_tags(status: str, reason: str | None = None) -> dict[str, str]:
        return {"scaler.status": status} | ({"scaler.excluded": reason[:5000]} if reason else {})

    def terminate(self, run_id: str, status: str) -> None:
        """End a trial's run (its status tags went with its last points: `end_tags`)."""
        self.client.set_terminated(run_id, "FINISHED" if status == "completed" else "FAILED")

    # --- laws (on the parent) -------------------------------------------------------------
    def log_fit(self, summary: dict, step: int, timestamp_ms: int) -> None:
        metrics = []
        for name, law in summary["laws"].items():
            identified = float(law.get("identified", True))  # 0: the numbers are not a result
            values = {**law["params"], "mape": law["mape"], "n": law["n"], "identified": identified}
            for key, value in values.items():
                if math.isfinite(value):
                    metrics.append(Metric(f"law.{name}/{key}", float(value), timestamp_ms, step))
        if metrics:
            self.client.log_batch(self.parent_run_id, metrics=metrics)
        self.client.log_dict(self.parent_run_id, summary, f"laws/fit_{step:05d}.json")
        self.client.log_dict(self.parent_run_id, summary, "laws/latest.json")
        if getattr(self, "_note_head", None) is None:  # once per process (e.g. after a resume)
            note = self.client.get_run(self.parent_run_id).data.tags.get(NOTE_TAG, "")
            self._note_head = note.split("\n\n**Latest laws**")[0]
        self.client.set_tag(
            self.parent_run_id, NOTE_TAG, self._note_head + laws_in_words(summary, step)
        )

    def log_figure(self, figure, path: str) -> None:
        self.client.log_figure(self.parent_run_id, figure, path)

    def log_allocation(self, record: dict, step: int, timestamp_ms: int) -> None:
        """The allocation record after a refit (see SweepCallback._log_allocation)."""
        values = {
            "budget/fraction_spent": record["fraction_spent"],
            "budget/flops_spent": record["flops_spent"],
        }
        decision = record.get("decision") or {}
        for key in ("target_rel_sd", "target_rel_sd_bootstrap"):
            if decision.get(key) is not None:
                values[f"alloc/{key}"] = decision[key]
        if decision.get("top"):
            values["alloc/best_gain_per_flop"] = decision["top"][0]["gain_per_cost"]
        finite = {k: float(v) for k, v in values.items() if math.isfinite(v)}
        self.log_sweep_metrics(finite, step, timestamp_ms)
        self.client.log_dict(self.parent_run_id, record, "allocation/latest.json")
        if record.get("new_decision", True):
            self.client.log_dict(self.parent_run_id, record, f"allocation/step_{step:05d}.json")

    def log_sweep_metrics(self, values: dict[str, float], step: int, timestamp_ms: int) -> None:
        metrics = [Metric(k, float(v), timestamp_ms, step) for k, v in values.items()]
        self.client.log_batch(self.parent_run_id, metrics=metrics)

    # --- helpers --------------------------------------------------------------------------
    def _sweep_name(self) -> str:
        if self.sweep_name:
            return self.sweep_name
        return self.client.get_run(self.parent_run_id).data.tags.get(SWEEP_TAG, "")

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        items = [Param(k[:250], v[:MAX_PARAM_LEN]) for k, v in params.items()]
        for i in range(0, len(items), 90):
            self.client.log_batch(run_id, params=items[i : i + 90])

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def _redact_spec(spec: dict) -> dict:
    tracking = spec.get("tracking")
    if isinstance(tracking, dict) and isinstance(tracking.get("uri"), str):
        return {**spec, "tracking": {**tracking, "uri": redact_uri(tracking["uri"])}}
    return spec


def ui_hint(tracking_uri: str) -> str:
    return f"scaler ui --tracking-uri '{tracking_uri}'   (or: mlflow ui --backend-store-uri '{tracking_uri}')"


__all__ = ["SweepTracker", "default_tracking_uri", "ui_hint"]
