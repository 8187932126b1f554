"""Resuming a sweep after its driver died: the spec kept with the Tune experiment, the MLflow
fingerprint check, and `Tuner.restore` with freshly built searcher, scheduler and callback.

Idempotency does not rest on Tune's (periodic) experiment checkpoint alone: the MLflow child run of
a trial is found by tag and the steps it already holds are read back before anything is logged,
so a resumed sweep neither loses nor duplicates a run or an eval point.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from scaler.secrets import redact_uri
from scaler.spec import SpecError, SweepSpec, parse_spec

log = logging.getLogger(__name__)

SPEC_FILE = "scaler_spec.json"
CHECKPOINT_S = 1  # TUNE_GLOBAL_CHECKPOINT_S default: a killed driver loses at most ~1 s of state


def save_spec(experiment_dir: Path, spec: SweepSpec) -> None:
    experiment_dir.mkdir(parents=True, exist_ok=True)
    (experiment_dir / SPEC_FILE).write_text(json.dumps(spec.resolved(), indent=1, default=str))


def load_saved_spec(storage: Path, name: str) -> SweepSpec:
    path = Path(storage) / name / SPEC_FILE
    if not path.is_file():
        raise SpecError(
            f"sweep {name!r}: no saved sweep under {Path(storage).resolve()} "
            f"(expected {path}); pass --storage where `scaler run` kept it"
        )
    return parse_spec(json.loads(path.read_text()), source=str(path))


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


def recover_callback_state(experiment_dir: Path, callback) -> None:
    """A driver killed while Tune copied its state to storage can leave the callbacks' file
    truncated, and Tune would fail to resume: drop it and load the callback's state from the
    searcher's backup (saved by Tune together with it: `PolicySearcher.save`)."""
    from scaler.tune.searcher import BACKUP, read_state

    bad = [p for p in experiment_dir.glob("callback-states-*.pkl") if read_state(p) is None]
    if not bad:
        return
    backup = experiment_dir / BACKUP
    state = (read_state(backup) or {}).get("companion")
    if state is None:
        raise SpecError(
            f"sweep {experiment_dir.name}: {bad[0]} cannot be read and there is no backup of it "
            f"({backup}); the sweep cannot resume without losing its fitted points"
        )
    log.warning("%s unreadable; the callback's state comes from %s", bad[0].name, backup.name)
    for p in bad:
        p.unlink()
    callback.set_state(state)


def restore_tuner(experiment_dir: Path, trainable, searcher, callback):
    """`Tuner.restore` of the experiment, or None if there is nothing to restore.

    Tune unpickles the searcher, scheduler and callbacks it had at the start and then loads the
    searcher's and callbacks' saved state into them; we swap in freshly built ones first (Ray has no
    public hook for this), so the state lands in objects bound to this process (progress stream,
    MLflow client, the ledger the callback reports).
    """
    from ray import tune

    from scaler.tune.scheduler import PolicyStopper

    if not tune.Tuner.can_restore(str(experiment_dir)):
        log.warning("no Tune experiment at %s to restore; starting it afresh", experiment_dir)
        return None
    recover_callback_state(experiment_dir, callback)
    tuner = tune.Tuner.restore(
        str(experiment_dir), trainable, resume_unfinished=True, resume_errored=True
    )
    internal = tuner._local_tuner
    internal._tune_config.search_alg = searcher
    internal._tune_config.scheduler = PolicyStopper(searcher.should_stop, searcher.on_tune_trial)
    internal.get_run_config().callbacks = [callback]
    return tuner
