"""MLflow writes that survive a tracking-server outage: queued as plain data, sent in order,
retried with exponential backoff (tenacity), and kept in the callback's saved state until sent.

While the server is down the driver keeps scheduling and trials keep training: each event waits in
the outbox (one short retry burst per new event), and the whole outbox is flushed, in order, as
soon as a write succeeds again — at the latest at the end of the sweep, which waits up to
`final_wait_s` for the server.  MLflow's own HTTP retries (minutes of blocking per call) are turned
down so that this policy is the only one.

Delivery is at least once (a write whose reply was lost is sent again; a killed driver's saved
`pending` may hold events it delivered after its last checkpoint); the sender makes it exactly
once: `SweepCallback` reads a run's points back from MLflow before it logs to it again.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable

from tenacity import Retrying, stop_after_delay, wait_exponential

log = logging.getLogger(__name__)

os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


class Outbox:
    """Ordered events `(kind, payload)`, delivered by `send(kind, payload)`; `pending` is picklable."""

    def __init__(
        self,
        send: Callable[[str, dict], None],
        *,
        burst_s: float = 2.0,
        final_wait_s: float = 600.0,
        max_backoff_s: float = 5.0,
    ):
        self.send = send
        self.burst_s = burst_s
        self.final_wait_s = final_wait_s
        self.max_backoff_s = max_backoff_s
        self.pending: deque[tuple[str, dict]] = deque()
        self.failures = 0  # delivery attempts that raised (for tests and the log)

    def submit(self, kind: str, payload: dict) -> bool:
        self.pending.append((kind, payload))
        return self.flush(self.burst_s)

    def flush(self, wait_s: float | None = None) -> bool:
        """Deliver pending events in order; True once all are delivered, False if the budget ran out."""
        wait_s = self.final_wait_s if wait_s is None else wait_s
        retrying = Retrying(
            stop=stop_after_delay(wait_s),
            wait=wait_exponential(multiplier=0.25, max=self.max_backoff_s),
            before_sleep=self._note,
            reraise=True,
        )
        while self.pending:
            kind, payload = self.pending[0]
            try:
                retrying(self.send, kind, payload)
            except Exception as exc:  # any transport error: keep it queued
                self.failures += 1
                log.warning(
                    "MLflow unreachable (%s: %s); %d event(s) buffered, retrying later",
                    type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "",
                    len(self.pending),
                )
                return False
            self.pending.popleft()
        return True

    def _note(self, state) -> None:
        self.failures += 1
        log.info("MLflow write failed (attempt %d), backing off", state.attempt_number)
