"""Tune's state files truncated by a driver killed while Tune copied them to storage: the backup
(`scaler.tune.state_backup`) puts back one consistent checkpoint, which Ray Tune's own readers
load. Tune's save sequence runs for real here (its SearchGenerator, ConcurrencyLimiter and
CallbackList); the end-to-end kill is `test_driver_kill[tune-state-truncated]` (slow)."""

from __future__ import annotations

import json
import shutil

import pytest
from ray.tune import Callback
from ray.tune.callback import CallbackList
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.search_generator import SearchGenerator

from scaler.allocation import GridPolicy, Ledger
from scaler.tune.searcher import PolicySearcher
from scaler.tune.state_backup import BACKUP, TUNE_FILES, StateBackup, recover
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


def test_truncated_tune_state_is_put_back_from_one_checkpoint(tmp_path):
    staging, storage = tmp_path / "staging", tmp_path / "storage"
    staging.mkdir()
    search, callbacks, counter = tune_objects(storage)
    session = "2026-11-29_08-00-00"
    for step in range(3):  # three checkpoints; storage receives (a copy of) the second
        search.searcher.suggest(f"t{step}")  # through the limiter
        counter.n = step + 1
        checkpoint(staging, search, callbacks, session, trials=step + 1)
        if step == 1:
            shutil.copytree(staging, storage, dirs_exist_ok=True)
    assert (storage / BACKUP).exists() and not (staging / BACKUP).exists()
    assert recover(storage) == []  # nothing unreadable: Tune's copy is left as it is
    for template in TUNE_FILES:  # the kill during the third copy truncated every file
        (storage / template.format(session)).write_bytes(b"")

    assert sorted(recover(storage)) == sorted(t.format(session) for t in TUNE_FILES)

    state = json.loads((storage / f"experiment_state-{session}.json").read_text())
    assert state == {"trials": 3}  # the third checkpoint, whole
    resumed, restored_callbacks, restored_counter = tune_objects(storage)
    resumed.restore_from_dir(str(storage))  # Ray Tune's own readers
    restored_callbacks.restore_from_dir(str(storage))
    assert restored_counter.n == 3
    policy_searcher = resumed.searcher.searcher
    assert policy_searcher.ledger.started == 3
    assert sorted(resumed.searcher.live_trials) == ["t0", "t1", "t2"]


def test_truncated_tune_state_without_a_backup_is_a_clear_error(tmp_path):
    (tmp_path / "experiment_state-2026-11-29_08-00-00.json").write_text('{"trials": ')
    with pytest.raises(ValueError, match=r"experiment_state-.*cannot be read and there is no"):
        recover(tmp_path)
