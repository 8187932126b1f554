"""A Ray Tune `Searcher` that asks an allocation policy for the next trial."""

from __future__ import annotations

import json
import logging
import os
import pickle

from ray.tune.search import Searcher

from scaler.allocation import Candidate, Ledger, Policy
from scaler.tune.state_backup import read_state, session_of

log = logging.getLogger(__name__)


class PolicySearcher(Searcher):
    """Adapter: `suggest` -> `policy.propose(ledger)`; completions settle the ledger.

    Its state (policy + ledger + which candidate each trial runs) is saved with the experiment
    and restored by `Tuner.restore`, so a resumed sweep neither repeats nor double-spends.

    Tune copies its state files to storage one by one, so a driver killed during the copy can
    leave the searcher's state one checkpoint (~1 s) older or newer than Tune's trial list.
    `scaler.tune.state_backup` puts back one consistent checkpoint before a resume; where it
    has none (a sweep started before it, a backup that could not be written), the searcher
    reconciles with the trials Tune re-adds (`on_tune_trial`, from the scheduler): a trial it
    started that Tune does not know is run again under a new id, and a trial Tune knows that it
    did not start is adopted (not proposed a second time).
    """

    def __init__(self, policy: Policy, ledger: Ledger):
        super().__init__(metric="loss", mode="min")
        self.policy = policy
        self.ledger = ledger
        self.assigned: dict[str, Candidate] = {}
        self.spent: dict[str, float] = {}  # trial id -> FLOPs (estimate while it runs)
        self.tune_trials: dict[str, tuple[dict, bool]] | None = None  # after a restore
        self.requeue: list[Candidate] = []  # started here, unknown to Tune: run again
        self.adopted: list[Candidate] = []  # known to Tune, not started here: do not repeat
        self.saved_to: tuple[str, str] | None = None  # (folder, Tune session) of the last save

    def suggest(self, trial_id: str):
        if self.tune_trials is not None:
            self.reconcile(self.tune_trials)
            self.tune_trials = None
        if self.requeue:
            candidate = self.requeue.pop(0)
        else:
            candidate = self.policy.propose(self.ledger)
            while candidate is not None and candidate in self.adopted:
                self.adopted.remove(candidate)  # already running under a trial Tune restored
                candidate = self.policy.propose(self.ledger)
        if candidate is None:
            # None: Tune asks again after the next result (halving waits for a rung to fill,
            # adaptive for the law to move); FINISHED: the policy has nothing more to run
            return None if self.policy.waiting(self.ledger) else Searcher.FINISHED
        self.ledger.start(trial_id, candidate.flops)
        self.assigned[trial_id] = candidate
        self.spent[trial_id] = candidate.flops
        return candidate.config()

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.assigned:
            self.policy.on_result(trial_id, self.assigned[trial_id], [result])

    def should_stop(self, trial_id: str, result: dict) -> bool:
        """Asked by `PolicyStopper` after every report of a running trial."""
        candidate = self.assigned.get(trial_id)
        return candidate is not None and self.policy.should_stop(trial_id, candidate, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self.assigned:
            self.policy.on_complete(trial_id, self.assigned[trial_id], None if error else result)
        result = result or {}
        self.ledger.finish(trial_id, result.get("flops"), result.get("device_seconds"))
        if result.get("flops") is not None:
            self.spent[trial_id] = float(result["flops"])

    def spent_per_axis(self) -> dict[str, dict[str, float]]:
        """FLOPs spent (running trials: their estimate) per value of each axis: where the
        budget went, for the allocation record in MLflow."""
        out: dict[str, dict[str, float]] = {}
        for trial_id, flops in self.spent.items():
            c = self.assigned[trial_id]
            axes = [*c.params, ("samples", c.samples)]
            if c.compute is not None:
                axes.append(("compute", c.compute))
            for axis, value in axes:
                by_value = out.setdefault(axis, {})
                by_value[f"{value:g}"] = by_value.get(f"{value:g}", 0.0) + flops
        return out

    def allocation_record(self) -> dict:
        """Where the budget went and the policy's latest decision (None for grid/random)."""
        return {
            "policy": self.policy.name,
            "fraction_spent": self.ledger.fraction_spent(),
            "flops_spent": self.ledger.spent_flops,
            "flops_running": sum(self.ledger.running.values()),
            "spent_per_axis": self.spent_per_axis(),
            "decision": self.policy.explain(),
        }

    # --- state ----------------------------------------------------------------------------
    def get_state(self) -> dict:
        return {
            "policy": self.policy.state_dict(),
            "ledger": self.ledger,
            "assigned": self.assigned,
            "spent": self.spent,
        }

    def set_state(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.ledger = state["ledger"]
        self.assigned = state["assigned"]
        self.spent = state.get("spent", {})

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.get_state(), f)
        session = session_of(checkpoint_path)
        if session is not None:
            self.saved_to = (os.path.dirname(checkpoint_path), session)

    def restore(self, checkpoint_path: str) -> None:
        state = read_state(checkpoint_path)
        if state is None:  # `scaler.resume` puts back the backup before Tune gets here
            raise RuntimeError(
                f"searcher state {checkpoint_path} cannot be read; "
                "the sweep cannot resume without repeating trials"
            )
        self.set_state(state)
        self.tune_trials = {}

    # --- reconciling with Tune's trials after a restore ------------------------------------
    def on_tune_trial(self, trial_id: str, config: dict, finished: bool) -> None:
        """Tune (re-)added a trial (called by `PolicyStopper.on_trial_add`)."""
        if self.tune_trials is not None:
            self.tune_trials[trial_id] = (config, finished)

    def reconcile(self, tune_trials: dict[str, tuple[dict, bool]]) -> None:
        for trial_id in list(self.ledger.running):
            if trial_id not in tune_trials and trial_id in self.assigned:
                log.warning("trial %s was started but Tune does not know it: run again", trial_id)
                self.ledger.cancel(trial_id)
                self.spent.pop(trial_id, None)
                self.requeue.append(self.assigned.pop(trial_id))
        by_config = {json.dumps(c.config(), sort_keys=True): c for c in self.policy.candidates}
        for trial_id, (config, finished) in tune_trials.items():
            if trial_id in self.assigned:
                continue
            candidate = by_config.get(json.dumps(config, sort_keys=True))
            if candidate is None:
                log.warning("trial %s (%s) is not a candidate of this policy", trial_id, config)
                continue
            log.warning("trial %s was not started here but Tune knows it: adopted", trial_id)
            self.assigned[trial_id] = candidate
            self.spent[trial_id] = candidate.flops
            self.adopted.append(candidate)
            self.ledger.start(trial_id, candidate.flops)
            if finished:
                self.ledger.finish(trial_id, None, None)
