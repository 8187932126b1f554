"""A Tune scheduler that lets the allocation policy stop a running trial (pruning, stopping
runs whose remaining eval points are predicted to add little)."""

from __future__ import annotations

from collections.abc import Callable

from ray.tune.schedulers import FIFOScheduler, TrialScheduler


class PolicyStopper(FIFOScheduler):
    """FIFO order; after every result, STOP if `should_stop(trial_id, result)` says so."""

    def __init__(self, should_stop: Callable[[str, dict], bool]):
        super().__init__()
        self.should_stop = should_stop

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.should_stop(trial.trial_id, result):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE
