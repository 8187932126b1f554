"""A Ray Tune `Searcher` that asks an allocation policy for the next trial."""

from __future__ import annotations

import logging
import pickle

from ray.tune.search import Searcher

from scaler.allocation import Candidate, Ledger, Policy

log = logging.getLogger(__name__)


class PolicySearcher(Searcher):
    """Adapter: `suggest` -> `policy.propose(ledger)`; completions settle the ledger.

    Its state (policy + ledger + which candidate each trial runs) is saved with the experiment
    and restored by `Tuner.restore`, so a resumed sweep neither repeats nor double-spends.
    """

    def __init__(self, policy: Policy, ledger: Ledger):
        super().__init__(metric="loss", mode="min")
        self.policy = policy
        self.ledger = ledger
        self.assigned: dict[str, Candidate] = {}
        self.spent: dict[str, float] = {}  # trial id -> FLOPs (estimate while it runs)

    def suggest(self, trial_id: str):
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

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.set_state(pickle.load(f))
