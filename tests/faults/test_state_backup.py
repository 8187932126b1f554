"""Tune's state files truncated by a driver killed while Tune copied them to storage: the backup
(`scaler.tune.state_backup`) puts back one consistent checkpoint, which Ray Tune's own readers
load. Tune's save sequence runs for real here (its SearchGenerator, ConcurrencyLimiter and
CallbackList); the end-to-end kill is `test_driver_kill[tune-state-truncated]` (slow)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from ray.tune import Callback
from ray.tune.callback import CallbackList
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.search_generator import SearchGenerator

from scaler.allocation import GridPolicy, Ledger
from scaler.tune.searcher import PolicySearcher
from scaler.tune.state_backup import BACKUP, TUNE_FILES, TUNER_FILE, StateBackup, recover
from tests.test_allocation import candidates


class Counter(Callback):
    """A stateful callback (stands in for the MLflow one)."""

    def __init__(self):
        self.n = 0

    def get_state(self):
        return {"n": self.n}

    def set_state(self, state):
        self.n = state["n"]


def tune_objects(storage):
    searcher = PolicySearcher(GridPolicy(candidates()), Ledger(trials_limit=6))
    counter = Counter()
    callbacks = CallbackList([counter, StateBackup(storage, searcher, [counter])])
    return SearchGenerator(ConcurrencyLimiter(searcher, max_concurrent=4)), callbacks, counter


def checkpoint(staging, search, callbacks, session, trials):
    """What `TuneController.save_to_dir` does: the trial list, the search algorithm, the callbacks."""
    (staging / f"experiment_state-{session}.json").write_text(json.dumps({"trials": trials}))
    search.save_to_dir(str(staging), session_str=session)
    callbacks.save_to_dir(str(staging), session_str=session)


SESSION = "2026-11-29_08-00-00"


def three_checkpoints(tmp_path, copy_after_second: list[str] | None = None):
    """Three checkpoints in staging; storage gets a full copy of the second, then (a kill during
    the third upload) only `copy_after_second`'s files of the third. Returns storage."""
    staging, storage = tmp_path / "staging", tmp_path / "storage"
    staging.mkdir()
    search, callbacks, counter = tune_objects(storage)
    for step in range(3):
        search.searcher.suggest(f"t{step}")  # through the limiter
        counter.n = step + 1
        checkpoint(staging, search, callbacks, SESSION, trials=step + 1)
        if step == 1:
            shutil.copytree(staging, storage, dirs_exist_ok=True)
    for template in copy_after_second or []:
        shutil.copy(staging / template.format(SESSION), storage)
    assert (storage / BACKUP).exists() and not (staging / BACKUP).exists()
    return storage


def assert_third_checkpoint_restores(storage):
    """Ray Tune's own readers load the third checkpoint, all four parts of it."""
    state = json.loads((storage / f"experiment_state-{SESSION}.json").read_text())
    assert state == {"trials": 3}
    resumed, restored_callbacks, restored_counter = tune_objects(storage)
    resumed.restore_from_dir(str(storage))
    restored_callbacks.restore_from_dir(str(storage))
    assert restored_counter.n == 3
    assert resumed.searcher.searcher.ledger.started == 3
    assert sorted(resumed.searcher.live_trials) == ["t0", "t1", "t2"]


def test_truncated_tune_state_is_put_back_from_one_checkpoint(tmp_path):
    storage = three_checkpoints(tmp_path)
    for template in TUNE_FILES:  # the kill during the third upload truncated every file
        (storage / template.format(SESSION)).write_bytes(b"")
    assert sorted(recover(storage)) == sorted(t.format(SESSION) for t in TUNE_FILES)
    assert_third_checkpoint_restores(storage)


@pytest.mark.parametrize("truncated", [None, *TUNE_FILES])
def test_a_half_uploaded_checkpoint_is_replaced_whole(tmp_path, truncated):
    """The kill landed after the trial list was uploaded and (maybe) while one more file was
    being written: every file Tune would read must come from the third checkpoint."""
    storage = three_checkpoints(tmp_path, copy_after_second=[TUNE_FILES[0]])
    if truncated is not None:
        (storage / truncated.format(SESSION)).write_bytes(b"{")
    assert recover(storage) == ([] if truncated is None else [truncated.format(SESSION)])
    assert_third_checkpoint_restores(storage)


def test_a_later_session_than_the_backup_keeps_tunes_copy(tmp_path):
    storage = three_checkpoints(tmp_path)
    later = storage / "experiment_state-2026-11-29_09-00-00.json"
    later.write_text(json.dumps({"trials": 9}))
    assert recover(storage) == [] and later.exists()  # the backup is older: not used
    later.write_text('{"trials": ')
    with pytest.raises(ValueError, match=r"cannot be read and there is no usable backup"):
        recover(storage)


def test_a_backup_that_cannot_be_written_does_not_stop_the_sweep_nor_stay_stale(tmp_path, caplog):
    storage = three_checkpoints(tmp_path)
    (storage / (BACKUP + ".tmp")).mkdir()  # the next backup cannot be written
    search, callbacks, _ = tune_objects(storage)
    search.searcher.suggest("t0")
    checkpoint(tmp_path / "staging", search, callbacks, SESSION, trials=1)  # does not raise
    assert "could not back up Tune's state" in caplog.text
    assert not (storage / BACKUP).exists()  # the old copy is not kept as if it were current


def test_truncated_tune_state_without_a_backup_is_a_clear_error(tmp_path):
    (tmp_path / "experiment_state-2026-11-29_08-00-00.json").write_text('{"trials": ')
    with pytest.raises(ValueError, match=r"experiment_state-.*cannot be read and there is no"):
        recover(tmp_path)


def test_tuner_pkl_truncated_after_a_resume_is_put_back(tmp_path):
    """Once a sweep has been resumed, Tune re-uploads `tuner.pkl` (in place) at every checkpoint;
    the backup keeps the copy the driver started from."""
    storage = tmp_path / "storage"
    storage.mkdir()
    original = pickle.dumps({"tuner": "settings"})
    (storage / TUNER_FILE).write_bytes(original)
    three_checkpoints(tmp_path)
    (storage / TUNER_FILE).write_bytes(original[:5])  # the kill caught its upload
    assert TUNER_FILE in recover(storage)
    assert (storage / TUNER_FILE).read_bytes() == original
    assert_third_checkpoint_restores(storage)


def test_tuner_pkl_unreadable_without_a_copy_is_a_clear_error(tmp_path):
    storage = three_checkpoints(tmp_path)  # no tuner.pkl when the backups were written
    (storage / TUNER_FILE).write_bytes(b"\x80")
    with pytest.raises(ValueError, match=r"tuner.pkl cannot be read and the backup"):
        recover(storage)


def test_tunes_restore_does_not_copy_scalers_own_files(tmp_path, ray_local):
    """Tune's restore copies the experiment's .json and .pkl files into its staging folder and
    every later checkpoint uploads them back in place (not atomic): a file of ours among them
    could be left empty by a kill, as `scaler_spec.json` once was. Real Tune code, real files."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    from scaler.resume import SPEC_FILE, load_saved_spec, save_spec
    from scaler.spec import parse_spec
    from tests.faults.helpers import ORACLE_SPEC

    context = StorageContext(storage_path=str(tmp_path / "runs"), experiment_dir_name="sweep")
    experiment = tmp_path / "runs" / "sweep"
    spec = parse_spec({**ORACLE_SPEC, "name": "sweep"}, source="test")
    save_spec(experiment, spec)
    assert load_saved_spec(tmp_path / "runs", "sweep").fingerprint() == spec.fingerprint()
    three_checkpoints(tmp_path)  # a backup written ...
    shutil.copy(tmp_path / "storage" / BACKUP, experiment)  # ... into this experiment
    (experiment / TUNE_FILES[0].format(SESSION)).write_text("{}")  # and one file of Tune's

    manager = _ExperimentCheckpointManager(storage=context, checkpoint_period=1)
    manager.sync_down_experiment_state()
    staged = {p.name for p in Path(context.experiment_driver_staging_path).iterdir()}
    assert staged == {TUNE_FILES[0].format(SESSION)}  # Tune's file, and none of ours
    assert {SPEC_FILE, BACKUP} <= {p.name for p in experiment.iterdir()}


def test_the_checkpoint_period_grows_with_the_sweep():
    from scaler.resume import checkpoint_period

    assert checkpoint_period(16) == 1.0 and checkpoint_period(100) == 1.0
    assert checkpoint_period(500) == 5.0 and checkpoint_period(10_000) == 10.0
