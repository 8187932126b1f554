"""Exactly once in MLflow's raw metric history, whatever the age of the callback state a resumed
sweep restores: the MLflow callback reads a run's points back from a real (sqlite) store before
it logs to a run it did not create. In process, no Ray: seconds."""

from __future__ import annotations

import json
import pickle
import time
from types import SimpleNamespace

import pytest
from mlflow.tracking import MlflowClient

from scaler.fitter import OnlineFitter
from scaler.records import EvalPoint
from scaler.tracking import MISMATCH_TAG, SweepTracker
from scaler.tune.callbacks import SweepCallback
from tests.faults.helpers import assert_no_duplicate_points

TRIAL = SimpleNamespace(trial_id="t0001", config={"samples": 5000, "params": {"n_params": 1e6}})
STEPS = [1000, 2000, 3000, 4000, 5000]


def point(samples: int, loss: float | None = None) -> EvalPoint:
    loss = 1.0 + 1000 / samples if loss is None else loss
    return EvalPoint(samples, 10**6, 0, 6e6 * samples, 1.0, 1.0, loss, loss, float("nan"))


def driver(uri: str, state: dict | None = None) -> SweepCallback:
    """A driver process: a fresh tracker and callback, the saved state (if any) restored as
    `Tuner.restore` does, from a pickle."""
    tracker = SweepTracker(uri, "exactly-once")
    callback = SweepCallback(tracker, OnlineFitter(), progress=None)
    if state is None:
        tracker.start_sweep("sweep", {}, "fingerprint")
    else:
        callback.set_state(pickle.loads(pickle.dumps(state)))
    return callback


def report(callback: SweepCallback, *steps: int, loss: float | None = None) -> None:
    for s in steps:
        callback.on_trial_result(0, [], TRIAL, point(s, loss).to_dict())


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def history(uri: str, run_id: str, key: str = "loss") -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_resume_from_older_state_logs_each_point_once(uri):
    """The issue's case: state saved after 2 points, 2 more logged, the driver killed; the
    trial resumes from its checkpoint after point 2 and re-reports points 3 and 4."""
    first = driver(uri)
    first.on_trial_start(0, [], TRIAL)
    report(first, *STEPS[:2])
    state = first.get_state()  # Tune's last experiment checkpoint before the kill
    report(first, *STEPS[2:4])
    run_id = first.runs[TRIAL.trial_id]
    assert state["logged"][TRIAL.trial_id] == STEPS[:2]  # stale: MLflow holds 4 points

    second = driver(uri, state)
    second.on_trial_start(0, [], TRIAL)
    report(second, *STEPS[2:])
    second.on_trial_complete(0, [], TRIAL)

    client = MlflowClient(uri)
    assert assert_no_duplicate_points(client, [run_id]) == len(STEPS)
    assert [s for s, _ in history(uri, run_id)] == STEPS
    assert MISMATCH_TAG not in client.get_run(run_id).data.tags  # same values: nothing to note
    assert sorted(second.logged[TRIAL.trial_id]) == STEPS


def test_undelivered_events_of_the_restored_outbox_are_reconciled(uri):
    """Events saved undelivered with the state and delivered before the kill are not logged
    again by the resumed driver's outbox."""
    first = driver(uri)
    report(first, *STEPS[:3])
    state = first.get_state()
    events = [
        ("points", {"trial_id": TRIAL.trial_id, "config": TRIAL.config, "ts": 1, "point": p})
        for p in (point(s).to_dict() for s in STEPS[1:4])  # 2, 3 delivered; 4 never was
    ]
    state["outbox"] = events  # saved while MLflow was down; the server came back before the kill
    state["logged"][TRIAL.trial_id] = STEPS[:1]

    second = driver(uri, state)
    assert second.outbox.flush(5)
    run_id = second.runs[TRIAL.trial_id]
    assert assert_no_duplicate_points(MlflowClient(uri), [run_id]) == 4
    assert [s for s, _ in history(uri, run_id)] == STEPS[:4]


class LostReply(SweepTracker):
    """Its first points write lands in the store, and its reply is lost."""

    lost = 1

    def log_points(self, run_id, points, timestamp_ms, tags=None):
        super().log_points(run_id, points, timestamp_ms, tags)
        if self.lost:
            self.lost -= 1
            raise ConnectionError("connection reset by peer")


def test_a_write_whose_reply_was_lost_is_not_logged_twice(uri):
    """The tracking server stored a batch and went away before answering: the outbox retries
    the event, and the run is read back first. (MLflow's SQL store also skips a metric row equal
    in key, value, timestamp and step, which an outbox retry is; this does not rely on it.)"""

    callback = SweepCallback(LostReply(uri, "exactly-once"), OnlineFitter())
    callback.tracker.start_sweep("sweep", {}, "fingerprint")
    callback.outbox.burst_s = 0.0  # no retry within the burst: the event stays queued
    report(callback, STEPS[0])
    assert callback.outbox.pending and callback.tracker.lost == 0
    report(callback, STEPS[1])
    assert not callback.outbox.pending
    run_id = callback.runs[TRIAL.trial_id]
    assert assert_no_duplicate_points(MlflowClient(uri), [run_id]) == 2


def test_a_rereported_point_that_differs_keeps_the_first_and_tags_the_run(uri):
    """A non-deterministic retrain re-reports step 3 with another loss: MLflow and the fit keep
    the first value; the run's tag holds the step and both values."""
    first = driver(uri)
    report(first, *STEPS[:3])
    state = first.get_state()
    state["logged"][TRIAL.trial_id] = STEPS[:2]
    run_id = first.runs[TRIAL.trial_id]
    logged = point(STEPS[2]).loss

    second = driver(uri, state)
    report(second, STEPS[2], loss=9.5)
    report(second, STEPS[2], loss=9.5)  # noted once
    report(second, STEPS[3])

    client = MlflowClient(uri)
    assert assert_no_duplicate_points(client, [run_id]) == 4
    assert dict(history(uri, run_id))[STEPS[2]] == logged
    tag = json.loads(client.get_run(run_id).data.tags[MISMATCH_TAG])
    assert tag == [
        {
            "step": STEPS[2],
            "logged": {"loss": logged, "ne": logged},
            "rereported": {"loss": 9.5, "ne": 9.5},
        }
    ]
    fitted = second.fitter.frame().set_index("samples")["loss"]
    assert fitted[STEPS[2]] == logged


def test_a_rereported_point_in_the_same_process_is_compared_too(uri):
    """A worker killed and retried from an older checkpoint: the same driver, values in memory."""
    callback = driver(uri)
    report(callback, *STEPS[:2])
    report(callback, STEPS[1])
    report(callback, STEPS[1], loss=point(STEPS[1]).loss * 1.01)
    run_id = callback.runs[TRIAL.trial_id]
    assert assert_no_duplicate_points(MlflowClient(uri), [run_id]) == 2
    (entry,) = json.loads(MlflowClient(uri).get_run(run_id).data.tags[MISMATCH_TAG])
    assert entry["step"] == STEPS[1]


def test_duplicate_check_fails_on_a_repeated_step(uri):
    callback = driver(uri)
    report(callback, STEPS[0])
    run_id = callback.runs[TRIAL.trial_id]
    callback.tracker.log_points(run_id, [point(STEPS[0])], 2)  # behind the callback's back
    with pytest.raises(AssertionError, match=r"loss: steps \[1000\] logged more than once"):
        assert_no_duplicate_points(MlflowClient(uri), [run_id])


def test_batched_points_go_in_one_write_and_are_never_only_in_memory_at_a_checkpoint(uri):
    """A live sweep batches a trial's points (`batch_s`): they reach MLflow together when the
    trial ends, and Tune's checkpoint (`get_state`) never saves a state whose points are held
    only in this process: they are in MLflow, or in the saved outbox."""

    class Counting(SweepTracker):
        writes = 0

        def log_points(self, run_id, points, timestamp_ms, tags=None):
            self.writes += 1
            super().log_points(run_id, points, timestamp_ms, tags)

    callback = SweepCallback(Counting(uri, "exactly-once"), OnlineFitter(), batch_s=60.0)
    callback.tracker.start_sweep("sweep", {}, "fingerprint")
    callback.on_trial_start(0, [], TRIAL)
    report(callback, *STEPS[:2])
    run_id = callback.runs[TRIAL.trial_id]
    assert history(uri, run_id) == [] and callback.tracker.writes == 0  # waiting: batched
    state = callback.get_state()  # a checkpoint: the batch goes out first
    assert [s for s, _ in history(uri, run_id)] == STEPS[:2] and callback.tracker.writes == 1
    assert state["outbox"] == [] and callback.batches == {}
    report(callback, *STEPS[2:])
    callback.on_trial_complete(0, [], TRIAL)
    assert [s for s, _ in history(uri, run_id)] == STEPS and callback.tracker.writes == 2
    assert assert_no_duplicate_points(MlflowClient(uri), [run_id]) == len(STEPS)


def test_a_short_trial_costs_four_mlflow_writes_and_its_end_goes_with_its_last_points(uri):
    """At scale every write counts (a transaction on sqlite, a request to a server): a trial
    whose points are batched to its end costs create + params + (points and status tags) + end,
    and a lost reply to that combined write is retried without logging a point twice."""

    calls: list[tuple[str, str]] = []  # (call, run id) of every write, in order

    class Spy(MlflowClient):
        def create_run(self, *a, **k):
            run = super().create_run(*a, **k)
            calls.append(("create_run", run.info.run_id))
            return run

        def log_batch(self, run_id, *a, **k):
            calls.append(("log_batch", run_id))
            return super().log_batch(run_id, *a, **k)

        def set_terminated(self, run_id, *a, **k):
            calls.append(("set_terminated", run_id))
            return super().set_terminated(run_id, *a, **k)

    tracker = SweepTracker(uri, "exactly-once")
    tracker.start_sweep("sweep", {}, "fingerprint")
    tracker._client = Spy(uri)
    callback = SweepCallback(tracker, OnlineFitter(), batch_s=60.0)
    callback.on_trial_start(0, [], TRIAL)
    report(callback, *STEPS)
    callback.on_trial_complete(0, [], TRIAL)
    run_id = callback.runs[TRIAL.trial_id]
    writes = [name for name, run in calls if run == run_id]  # (a live refit logs on the parent)
    assert writes == ["create_run", "log_batch", "log_batch", "set_terminated"], calls
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["scaler.status"] == "completed"
    assert [s for s, _ in history(uri, run.info.run_id)] == STEPS

    lost = SimpleNamespace(trial_id="t0009", config={**TRIAL.config, "samples": 4000})
    callback.tracker.__class__ = LostReply
    callback.outbox.burst_s = 0.0  # no retry within the burst: the end stays queued
    callback.on_trial_start(0, [], lost)
    for step in STEPS[:4]:
        callback.on_trial_result(0, [], lost, point(step).to_dict())
    callback.on_trial_complete(0, [], lost)
    assert callback.tracker.lost == 0  # the combined write landed, its reply did not: retried
    assert callback.outbox.flush()
    run = MlflowClient(uri).get_run(callback.runs[lost.trial_id])
    assert run.info.status == "FINISHED" and run.data.tags["scaler.status"] == "completed"
    assert assert_no_duplicate_points(MlflowClient(uri), [run.info.run_id]) == 4


def test_a_resumed_driver_adopts_the_run_of_a_trial_its_state_never_knew(uri):
    """Killed after a trial started and ended but before Tune's checkpoint: the resumed searcher
    proposes the config again under a new id. Its run (finished) is adopted, points and all;
    a run the restored state maps to a trial of its own is never taken."""
    first = driver(uri)
    state = first.get_state()  # the checkpoint: before the trial
    first.on_trial_start(0, [], TRIAL)
    report(first, *STEPS)
    first.on_trial_complete(0, [], TRIAL)
    run_id = first.runs[TRIAL.trial_id]

    again = SimpleNamespace(trial_id="t0002", config=TRIAL.config)
    second = driver(uri, state)
    second.on_trial_start(0, [], again)
    report(second, *STEPS)  # the rerun re-reports every point
    second.on_trial_complete(0, [], again)
    assert second.runs["t0002"] == run_id
    client = MlflowClient(uri)
    tags = client.get_run(run_id).data.tags
    assert tags["scaler.trial_id"] == "t0002" and tags["scaler.previous_trial_id"] == "t0001"
    assert assert_no_duplicate_points(client, [run_id]) == len(STEPS)

    third = driver(uri, second.get_state())  # it now maps t0002 to that run
    other = SimpleNamespace(trial_id="t0003", config=TRIAL.config)
    third.on_trial_start(0, [], other)
    report(third, STEPS[0])
    assert third.runs["t0003"] != run_id  # not taken from the trial that owns it


def test_a_retried_run_create_in_a_fresh_sweep_finds_the_run_its_lost_reply_made(uri):
    """In a sweep this process started, a trial's run is created without a search, but only on
    the first try: when that create reached the store and its reply was lost (a tracking outage),
    the retry finds the run instead of making a second one, and writes its params if the first
    try died before them."""
    callback = driver(uri)
    tracker = callback.tracker
    assert tracker.created_parent
    config = TRIAL.config
    run_id, held = tracker.trial_run(TRIAL.trial_id, config)
    assert held == {}
    client = MlflowClient(uri)
    again, _ = tracker.trial_run(TRIAL.trial_id, config)  # the retry
    assert again == run_id
    runs = client.search_runs(
        [client.get_experiment_by_name("exactly-once").experiment_id],
        filter_string=f"tags.`scaler.trial_id` = '{TRIAL.trial_id}'",
    )
    assert [r.info.run_id for r in runs] == [run_id]
    assert json.loads(client.get_run(run_id).data.params["config"]) == config


# --- the outbox's own thread (what a sweep uses): Tune's loop only queues -------------------


class SlowStore(SweepTracker):
    """A store whose point writes take `delay` seconds and fail while `down` is set."""

    delay = 0.05
    down = False
    writes = 0

    def log_points(self, run_id, points, timestamp_ms, tags=None):
        time.sleep(self.delay)
        if self.down:
            raise ConnectionError("tracking server unreachable")
        self.writes += 1
        super().log_points(run_id, points, timestamp_ms, tags)


def background_driver(uri: str, state: dict | None = None) -> SweepCallback:
    callback = SweepCallback(SlowStore(uri, "exactly-once"), OnlineFitter(), background=True)
    if state is None:
        callback.tracker.start_sweep("sweep", {}, "fingerprint")
    else:
        callback.set_state(pickle.loads(pickle.dumps(state)))
    return callback


def test_in_the_background_reports_only_queue_and_a_mid_flight_checkpoint_resumes_once(uri):
    """Writes sent by the outbox's thread: reporting does not wait for them (points are still
    queued right after), a checkpoint taken while they are in flight holds every point either in
    MLflow or in its saved outbox, and a driver resumed from it logs each point exactly once."""
    trials = [SimpleNamespace(trial_id=f"t{i}", config={**TRIAL.config, "i": i}) for i in range(4)]
    first = background_driver(uri)
    for t in trials:
        first.on_trial_start(0, [], t)
        for s in STEPS[:3]:
            first.on_trial_result(0, [], t, point(s).to_dict())
    assert first.outbox.pending  # 4 starts + 12 points at 50 ms a write: not all sent yet
    state = pickle.loads(pickle.dumps(first.get_state()))  # Tune checkpoints mid-flight
    queued = {
        (e["trial_id"], int(p["samples"]))
        for kind, e in state["outbox"]
        if kind == "points"
        for p in e["points"]
    }
    for t in trials:
        for s in STEPS[:3]:  # each point: logged per the state, or queued with it
            assert (s in state["logged"].get(t.trial_id, [])) != ((t.trial_id, s) in queued)
    assert first.outbox.flush(30)
    first.outbox.close()  # the driver is killed after delivering all of it

    second = background_driver(uri, state)
    for t in trials:
        second.on_trial_start(0, [], t)
        for s in STEPS:  # resumed from the trial's first checkpoint: every point re-reported
            second.on_trial_result(0, [], t, point(s).to_dict())
        second.on_trial_complete(0, [], t)
    assert second.outbox.flush(30)
    run_ids = [second.runs[t.trial_id] for t in trials]
    assert len(set(run_ids)) == len(trials)
    assert assert_no_duplicate_points(MlflowClient(uri), run_ids) == len(trials) * len(STEPS)
    for run_id in run_ids:
        assert [s for s, _ in history(uri, run_id)] == STEPS


def test_in_the_background_an_outage_keeps_events_queued_in_order_and_a_differing_rereport_is_kept_first(
    uri,
):
    """The server down: trials go on reporting, the events stay queued (and are saved with a
    checkpoint); back up, they are sent in order. A re-reported point that differs keeps the
    first value in MLflow and, applied on Tune's thread, in the fit."""
    callback = background_driver(uri)
    callback.on_trial_start(0, [], TRIAL)
    report(callback, STEPS[0])
    assert callback.outbox.flush(10)
    callback.tracker.down = True
    report(callback, *STEPS[1:3])
    report(callback, STEPS[0], loss=7.0)  # a retried worker re-reports step 1 differently
    time.sleep(0.5)  # a few failed attempts
    assert callback.outbox.failures > 0
    saved = [e["points"][0]["samples"] for _, e in callback.get_state()["outbox"]]
    assert saved == [STEPS[1], STEPS[2], STEPS[0]]  # in the order reported
    callback.tracker.down = False
    assert callback.outbox.flush(30)
    callback.on_step_end(0, [])  # Tune's loop turns: the first value goes back into the fit
    run_id = callback.runs[TRIAL.trial_id]
    assert [s for s, _ in history(uri, run_id)] == STEPS[:3]
    assert dict(history(uri, run_id))[STEPS[0]] == point(STEPS[0]).loss
    assert MISMATCH_TAG in MlflowClient(uri).get_run(run_id).data.tags
    fitted = callback.fitter.frame().set_index("samples")["loss"]
    assert fitted[STEPS[0]] == point(STEPS[0]).loss
    callback.outbox.close()


def test_in_the_background_tunes_thread_never_waits_for_the_write_in_flight(uri):
    """While a write hangs (a slow server), Tune's thread goes on: results, a trial's end and a
    new trial only queue (they once took the send lock the write holds). Released, all of it
    lands, in order."""
    import threading

    release = threading.Event()

    class Hanging(SweepTracker):
        def log_points(self, run_id, points, timestamp_ms, tags=None):
            release.wait(30)
            super().log_points(run_id, points, timestamp_ms, tags)

    callback = SweepCallback(Hanging(uri, "exactly-once"), OnlineFitter(), background=True)
    callback.tracker.start_sweep("sweep", {}, "fingerprint")
    callback.on_trial_start(0, [], TRIAL)
    report(callback, STEPS[0])
    deadline = time.monotonic() + 10
    while callback.outbox.pending and callback.outbox.pending[0][0] != "points":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.1)  # the points' write is in flight and hangs

    other = SimpleNamespace(trial_id="t0002", config={**TRIAL.config, "i": 2})
    tunes_thread = threading.Thread(
        target=lambda: (
            report(callback, *STEPS[1:]),
            callback.on_trial_complete(0, [], TRIAL),
            callback.on_trial_start(0, [], other),
        )
    )
    tunes_thread.start()
    tunes_thread.join(5)
    assert not tunes_thread.is_alive(), "Tune's thread waited for the hanging write"
    assert callback.outbox.pending  # all of it queued behind the hanging write
    release.set()
    assert callback.outbox.flush(30)
    run_id = callback.runs[TRIAL.trial_id]
    assert [s for s, _ in history(uri, run_id)] == STEPS
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"
    assert other.trial_id in callback.runs
    callback.outbox.close()


def test_the_experiment_is_looked_up_once_per_process_not_per_trial_run(uri):
    """Each trial's run needs the experiment's id: one lookup serves the process (it was a query
    per trial), and a pickled tracker (Tune's checkpoint) looks it up again where it is loaded."""
    lookups = []

    class Counting(SweepTracker):
        def _find_or_create_experiment(self):
            lookups.append(1)
            return super()._find_or_create_experiment()

    callback = SweepCallback(Counting(uri, "exactly-once"), OnlineFitter(), progress=None)
    callback.tracker.start_sweep("sweep", {}, "fingerprint")
    for i in range(5):
        trial = SimpleNamespace(trial_id=f"t{i}", config={**TRIAL.config, "i": i})
        callback.on_trial_start(0, [], trial)
        callback.on_trial_result(0, [], trial, point(STEPS[0]).to_dict())
        callback.on_trial_complete(0, [], trial)
    assert callback.outbox.flush(10)
    assert len(lookups) == 1
    runs = MlflowClient(uri).search_runs([callback.tracker.experiment_id()])
    assert len(runs) == 6  # the sweep and its five trials, in that experiment
    plain = SweepTracker(uri, "exactly-once")
    assert plain.experiment_id() == callback.tracker.experiment_id()
    restored = pickle.loads(pickle.dumps(plain))
    assert restored._experiment_id is None  # not carried: the store may have changed meanwhile
    assert restored.experiment_id() == plain.experiment_id()
