"""Resuming a sweep after its driver died: the spec kept with the Tune experiment, the MLflow
fingerprint check, and `Tuner.restore` with freshly built searcher, scheduler and callback.

Idempotency does not rest on Tune's (periodic) experiment checkpoint alone: the MLflow child run of
a trial is found by tag and the points it already holds are read back from MLflow before anything
is logged to it, however old the restored callback state, so a resumed sweep neither loses nor
duplicates a run or an eval point (`scaler.tune.callbacks`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import yaml

from scaler.secrets import redact_uri
from scaler.spec import SpecError, SweepSpec, parse_spec

log = logging.getLogger(__name__)

# The sweep's resolved spec, kept beside Tune's state in storage. Not a .json or .pkl file: Tune's
# restore copies every such file into its staging folder and each later checkpoint copies it back,
# overwriting it in place, so a driver killed during that copy left it empty and the sweep could not
# be resumed (found by tests/faults/test_random_kills.py). Written atomically, read by no one else.
SPEC_FILE = "scaler-spec.yaml"
OLD_SPEC_FILE = "scaler_spec.json"  # where sweeps saved before the rename kept it
CHECKPOINT_S = 1  # TUNE_GLOBAL_CHECKPOINT_S of a small sweep: a kill loses ~1 s of Tune's state
MAX_CHECKPOINT_S = 10  # the floor of Tune's own "auto" period


def checkpoint_period(trials: int) -> float:
    """Seconds between Tune's experiment checkpoints for a sweep of up to `trials` trials.

    Each checkpoint serialises every trial (JSON) and our state backup copies it: at a 1 s period a
    1,000-trial sweep spent a growing share of its driver on it (the last 100 trials 2.1x slower
    than trials 100-200; 1.1x at 10 s: `benchmarks/bench_sweep_scale.py`). So the period grows
    with the sweep, 1 s per 100 trials, from 1 s to 10 s. A kill then loses more of Tune's state,
    which costs re-run work, not the record: points are read back from MLflow before logging, and
    a trial started after the checkpoint, proposed again under a new id, adopts its run."""
    return float(min(MAX_CHECKPOINT_S, max(CHECKPOINT_S, trials / 100)))


def save_spec(experiment_dir: Path, spec: SweepSpec) -> None:
    from scaler.tune.state_backup import write_atomic

    experiment_dir.mkdir(parents=True, exist_ok=True)
    resolved = json.loads(json.dumps(spec.resolved(), default=str))  # plain types only
    text = yaml.safe_dump(resolved, sort_keys=False, width=100)
    write_atomic(experiment_dir / SPEC_FILE, text.encode())


def load_saved_spec(storage: Path, name: str) -> SweepSpec:
    folder = Path(storage) / name
    path = next((p for p in (folder / SPEC_FILE, folder / OLD_SPEC_FILE) if p.is_file()), None)
    if path is None:
        raise SpecError(
            f"sweep {name!r}: no saved sweep under {Path(storage).resolve()} "
            f"(expected {folder / SPEC_FILE}); pass --storage where `scaler run` kept it"
        )
    try:
        raw = yaml.safe_load(path.read_text())  # JSON (the old file) is YAML too
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: the saved spec cannot be read ({e})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the saved spec is empty or not a mapping")
    return parse_spec(raw, source=str(path))


def start_or_resume(tracker, spec: SweepSpec, *, resume: bool) -> str:
    """The sweep's parent run; refuses a name recorded with another spec unless resuming."""
    try:
        existing = tracker.find_sweep(spec.name)
    except Exception as exc:  # connection refused, bad scheme, unreadable sqlite file, ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError(
            f"tracking URI {redact_uri(tracker.tracking_uri)}: cannot be read "
            f"({type(exc).__name__}: {redact_uri(first)[:300]})"
        ) from None
    if existing is not None and not resume:
        recorded = existing.data.tags.get("scaler.spec_fingerprint")
        if recorded and recorded != spec.fingerprint():
            raise SpecError(
                f"name: sweep {spec.name!r} already exists in MLflow ({redact_uri(tracker.tracking_uri)}) with "
                f"spec fingerprint {recorded}, this spec has {spec.fingerprint()}; "
                "rename the sweep, or pass --resume to continue the recorded one"
            )
    return tracker.start_sweep(spec.name, spec.resolved(), spec.fingerprint())


def tune_callbacks(experiment_dir: Path, searcher, callback) -> list:
    """The sweep's Tune callbacks: the MLflow one, the backup of Tune's state, then Tune's JSON and
    CSV logs of each trial's results (`result.json`, `progress.csv`, as Tune writes by default).

    Not Tune's TensorBoard logger: MLflow is the sweep's record, and at a thousand trials writing
    an event file per trial took ~a quarter of the driver's loop (`run_sweep` turns Tune's default
    loggers off, `TUNE_DISABLE_AUTO_CALLBACK_LOGGERS`, so these two are the only ones)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from scaler.tune.state_backup import StateBackup

    return [
        callback,
        StateBackup(experiment_dir, searcher, [callback]),
        JsonLoggerCallback(),
        CSVLoggerCallback(),
    ]


def restore_tuner(experiment_dir: Path, trainable, searcher, callback):
    """`Tuner.restore` of the experiment, or None if there is nothing to restore.

    Tune unpickles the searcher, scheduler and callbacks it had at the start and then loads the
    searcher's and callbacks' saved state into them; we swap in freshly built ones first (Ray has no
    public hook for this), so the state lands in objects bound to this process (progress stream,
    MLflow client, the ledger the callback reports).
    """
    from ray import tune

    from scaler.tune import state_backup
    from scaler.tune.scheduler import PolicyStopper

    if not tune.Tuner.can_restore(str(experiment_dir)):
        log.warning("no Tune experiment at %s to restore; starting it afresh", experiment_dir)
        return None
    try:
        state_backup.recover(experiment_dir)  # a state file truncated by the kill
    except ValueError as e:
        raise SpecError(str(e)) from None
    tuner = tune.Tuner.restore(
        str(experiment_dir), trainable, resume_unfinished=True, resume_errored=True
    )
    internal = tuner._local_tuner
    internal._tune_config.search_alg = searcher
    internal._tune_config.scheduler = PolicyStopper(searcher.should_stop, searcher.on_tune_trial)
    internal.get_run_config().callbacks = tune_callbacks(experiment_dir, searcher, callback)
    return tuner
