"""MLflow writes that survive a tracking-server outage: queued as plain data, sent in order,
retried with exponential backoff, and kept in the callback's saved state until sent.

Two ways to deliver, one queue:
- in the caller's thread (the default, and what the in-process tests drive): `submit` queues an
  event and tries the whole queue for one short retry burst (tenacity); what fails stays queued
  for the next submit.
- in a background thread (`background=True`, what a sweep uses): `submit` only queues, so Tune's
  event loop never waits on a database write (on a sqlite store each write is a transaction with
  an fsync, ~5-20 ms; 4-5 per trial were a sixth of the driver's loop at 1,000 trials). The thread
  sends the queue in order, one attempt at a time, backing off while the server is down.

The background sender lets a burst settle: woken from idle, it waits `settle_s` (0.1 s) before
its first write, so that Tune's loop, which queued the events while handling a finished trial,
starts the next trial before the writes' Python takes the interpreter's lock from it (the events
then go out together). 576-trial oracle sweeps on 2 cores, medians of 2: 101.6 s without the wait,
100.3 s with it, bare Ray Tune 99.8 s (`benchmarks/bench_sweep_scale.py`'s shape).

Either way, while the server is down the driver keeps scheduling and trials keep training; the
queue is flushed in order once a write succeeds again — at the latest at the end of the sweep,
which waits up to `final_wait_s` for the server. MLflow's own HTTP retries (minutes of blocking per
call) are turned down so that this policy is the only one.

`lock` is held while an event is sent and taken off the queue: the sender's own state (which runs
exist, which steps they hold) and `pending` change together under it, so a checkpoint taken under
the lock (`SweepCallback.get_state`) sees each event either still queued or fully delivered.
Queueing does not take it: in the background a new event is appended under a separate condition
(`_cv`), so Tune's loop never waits for the write in flight (it did: 5-20 ms a submit, several
submits a trial, each a pause before Tune could start the next trial). Events are queued from one
thread (Tune's), which is also the one that checkpoints, so a checkpoint cannot miss one that is
being queued.

Delivery is at least once (a write whose reply was lost is sent again; a killed driver's saved
`pending` may hold events it delivered after its last checkpoint); the sender makes it exactly
once: `SweepCallback` reads a run's points back from MLflow before it logs to it again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from tenacity import Retrying, stop_after_delay, wait_exponential

log = logging.getLogger(__name__)

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

SETTLE_S = 0.1  # the background sender's wait, woken from idle (module docstring)


class Outbox:
    """Ordered events `(kind, payload)`, delivered by `send(kind, payload)`; `pending` is picklable
    (so is the outbox: its lock and thread are made again after unpickling)."""

    def __init__(
        self,
        send: Callable[[str, dict], None],
        *,
        background: bool = False,
        burst_s: float = 2.0,
        final_wait_s: float = 600.0,
        max_backoff_s: float = 5.0,
        settle_s: float = SETTLE_S,
    ):
        self.send = send
        self.background = background
        self.burst_s = burst_s
        self.final_wait_s = final_wait_s
        self.max_backoff_s = max_backoff_s
        self.settle_s = settle_s
        self.pending: deque[tuple[str, dict]] = deque()
        self.failures = 0  # delivery attempts that raised (for tests and the log)
        self._setup()

    def _setup(self) -> None:
        self.lock = threading.RLock()  # held while an event is sent and taken off the queue
        self._cv = threading.Condition()  # the queue changed: an event queued or all sent, closed
        self._thread: threading.Thread | None = None
        self._closed = False
        self._flushing = 0  # flushes waiting for the background sender: it does not settle then

    def __getstate__(self) -> dict:  # Tune pickles its callbacks (and so this) with the tuner
        skip = ("lock", "_cv", "_thread", "_closed", "_flushing")
        with self.lock:  # a copy of the queue, not one the sender is changing
            state = {k: v for k, v in self.__dict__.items() if k not in skip}
            state["pending"] = deque(self.pending)
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("settle_s", SETTLE_S)  # saved by an older scaler
        self.__dict__.update(state)
        self._setup()

    def submit(self, kind: str, payload: dict) -> bool:
        """Queue an event. In the caller's thread, then try to deliver the queue (True once it is
        empty); in the background, wake the sender and return True."""
        if self.background:
            with self._cv:  # not `lock`: that one is held for the whole of the write in flight
                self.pending.append((kind, payload))
                self._start()
                self._cv.notify_all()
            return True
        with self.lock:
            self.pending.append((kind, payload))
        return self.flush(self.burst_s)

    def flush(self, wait_s: float | None = None) -> bool:
        """Deliver pending events in order (in the background: wait for the sender to); True once
        all are delivered, False if `wait_s` (default `final_wait_s`) ran out first."""
        wait_s = self.final_wait_s if wait_s is None else wait_s
        if self.background:
            deadline = time.monotonic() + wait_s
            with self._cv:
                self._flushing += 1
                try:
                    if self.pending:
                        self._start()
                        self._cv.notify_all()
                    while self.pending and time.monotonic() < deadline:
                        self._cv.wait(min(0.5, max(0.0, deadline - time.monotonic())))
                    return not self.pending
                finally:
                    self._flushing -= 1
        retrying = Retrying(
            stop=stop_after_delay(wait_s),
            wait=wait_exponential(multiplier=0.25, max=self.max_backoff_s),
            before_sleep=self._note,
            reraise=True,
        )
        with self.lock:
            while self.pending:
                kind, payload = self.pending[0]
                try:
                    retrying(self.send, kind, payload)
                except Exception as exc:  # any transport error: keep it queued
                    self.failures += 1
                    self._warn(exc)
                    return False
                self.pending.popleft()
            return True

    def close(self) -> None:
        """Stop the background sender (after a flush; what is still pending stays queued)."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._thread = None

    # --- the background sender ------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._closed = False
            self._thread = threading.Thread(target=self._run, name="scaler-outbox", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        attempt = 0  # consecutive failures
        while True:
            with self._cv:
                if not self.pending:
                    while not self.pending and not self._closed:
                        self._cv.wait()
                    # woken from idle: let the burst settle (module docstring)
                    self._cv.wait_for(lambda: self._closed or self._flushing, self.settle_s)
                if self._closed:
                    return
            with self.lock:
                kind, payload = self.pending[0]
                try:
                    self.send(kind, payload)
                except Exception as exc:  # any transport error: keep it queued, back off
                    self.failures += 1
                    attempt += 1
                    if attempt == 1:
                        self._warn(exc)
                    sent = False
                else:
                    self.pending.popleft()
                    if attempt:
                        log.warning("MLflow reachable again after %d failed attempt(s)", attempt)
                    attempt, sent = 0, True
            if sent:
                with self._cv:
                    if not self.pending:
                        self._cv.notify_all()  # a flush may be waiting
                continue
            # outside the lock: a checkpoint or a new event need not wait out the backoff
            time.sleep(min(self.max_backoff_s, 0.25 * 2 ** min(attempt - 1, 10)))

    def _warn(self, exc: Exception) -> None:
        log.warning(
            "MLflow unreachable (%s: %s); %d event(s) buffered, retrying later",
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
            len(self.pending),
        )

    def _note(self, state) -> None:
        self.failures += 1
        log.info("MLflow write failed (attempt %d), backing off", state.attempt_number)
