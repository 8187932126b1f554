"""A Tune scheduler that lets the allocation policy stop a running trial (pruning, stopping
runs whose remaining eval points are predicted to add little)."""

from __future__ import annotations

from collections.abc import Callable

from ray.tune.schedulers import FIFOScheduler, TrialScheduler


class PolicyStopper(FIFOScheduler):
    """FIFO order; after every result, STOP if `should_stop(trial_id, result)` says so.  Every
    trial Tune adds (restored ones included) is passed to `on_add(trial_id, config, finished)`."""

    def __init__(
        self,
        should_stop: Callable[[str, dict], bool],
        on_add: Callable[[str, dict, bool], None] | None = None,
    ):
        super().__init__()
        self.should_stop = should_stop
        self.on_add = on_add

    def on_trial_add(self, tune_controller, trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if self.on_add is not None:
            finished = trial.status in (trial.TERMINATED, trial.ERROR)
            self.on_add(trial.trial_id, dict(trial.config), finished)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if self.should_stop(trial.trial_id, result):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE
