"""What a policy chooses from, and the ledger of what has been spent.

Pure Python: a policy sees candidates and a ledger, never Ray.  `scaler.tune.PolicySearcher`
adapts any policy to Ray Tune's `Searcher` interface.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Candidate:
    """One trial a policy may run: model knobs and a sample budget."""

    params: tuple[tuple[str, float], ...]  # sorted (knob, value) pairs
    samples: int
    compute: float | None = None  # the FLOP budget it was derived from, on the compute axis
    flops: float = 0.0  # estimated training FLOPs
    hparams: tuple[tuple[str, float], ...] = ()  # tuned hyperparameters (see _tuned.py)
    tuning_trial: int | None = None  # the Optuna trial number within its point's study

    def point(self) -> str:
        """The scale point: axis values without the tuned hyperparameters."""
        out = {"params": dict(self.params), "samples": self.samples}
        if self.compute is not None:
            out["compute"] = self.compute
        return json.dumps(out, sort_keys=True)

    def config(self) -> dict:
        """The Tune config of the trial (what MLflow records as its axis values)."""
        out = json.loads(self.point())
        if self.hparams:
            out.update(
                hparams=dict(self.hparams), point=self.point(), tuning_trial=self.tuning_trial
            )
        return out


def build_candidates(
    param_grid: list[dict[str, float]],
    *,
    samples: list[int] | None,
    compute: list[float] | None,
    flops_per_sample: Callable[[dict], float],
) -> list[Candidate]:
    """Every (model, budget) pair of the axes, cheapest first."""
    out = []
    for point in param_grid or [{}]:
        fps = flops_per_sample(point)
        key = tuple(sorted(point.items()))
        if compute is not None:
            for c in compute:
                d = max(1, round(c / fps))
                out.append(Candidate(key, d, compute=float(c), flops=fps * d))
        else:
            for d in samples or []:
                out.append(Candidate(key, int(d), flops=fps * int(d)))
    return sorted(out, key=lambda c: (c.flops, c.params, c.samples))


@dataclass
class Ledger:
    """Budget accounting: estimates for running trials, actuals for finished ones."""

    trials_limit: int | None = None
    flops_limit: float | None = None
    device_seconds_limit: float | None = None
    running: dict[str, float] = field(default_factory=dict)  # trial id -> estimated FLOPs
    spent_flops: float = 0.0
    spent_device_seconds: float = 0.0
    started: int = 0
    finished: int = 0

    def fits(self, estimate: float) -> bool:
        if self.trials_limit is not None and self.started >= self.trials_limit:
            return False
        if self.flops_limit is not None:
            if self.spent_flops + sum(self.running.values()) + estimate > self.flops_limit:
                return False
        if (
            self.device_seconds_limit is not None
            and self.spent_device_seconds >= self.device_seconds_limit
        ):
            return False
        return True

    def start(self, trial_id: str, estimate: float) -> None:
        self.running[trial_id] = estimate
        self.started += 1

    def cancel(self, trial_id: str) -> None:
        """Forget a started trial that never ran (nothing spent)."""
        if self.running.pop(trial_id, None) is not None:
            self.started -= 1

    def finish(self, trial_id: str, flops: float | None, device_seconds: float | None) -> None:
        estimate = self.running.pop(trial_id, 0.0)
        self.spent_flops += estimate if flops is None else flops
        self.spent_device_seconds += device_seconds or 0.0
        self.finished += 1

    def fraction_spent(self) -> float:
        """Largest fraction of any stated budget spent so far (running trials count in full)."""
        fractions = []
        if self.trials_limit:
            fractions.append(self.started / self.trials_limit)
        if self.flops_limit:
            fractions.append((self.spent_flops + sum(self.running.values())) / self.flops_limit)
        if self.device_seconds_limit:
            fractions.append(self.spent_device_seconds / self.device_seconds_limit)
        return max(fractions, default=0.0)


def latest_choice(
    candidates: list[Candidate], chosen: list[int], candidate: Candidate
) -> int | None:
    """The latest index in `chosen` (indices into `candidates`, in the order proposed) whose
    candidate is `candidate`; None if it was never chosen."""
    for i in reversed(chosen):
        if candidates[i] == candidate:
            return i
    return None


class Policy(ABC):
    """Chooses the next candidate; `None` means nothing more to run."""

    name: str = "base"

    def __init__(self, candidates: list[Candidate], seed: int = 0, *, design=None):
        self.candidates = list(candidates)
        self.seed = seed
        self.design = design  # a scaler.allocation.Design: what a candidate observes and costs

    @abstractmethod
    def propose(self, ledger: Ledger) -> Candidate | None: ...

    def cost(self, candidate: Candidate) -> float:
        """What running the candidate now costs (replay prices only the increment of a run)."""
        return candidate.flops if self.design is None else self.design.cost(candidate)

    def waiting(self, ledger: Ledger) -> bool:
        """After `propose` returned None: True if results of running trials may still make it
        propose more (ask again later), False if the policy is finished."""
        return False

    def on_result(self, trial_id: str, candidate: Candidate, points: list) -> None:  # noqa: B027
        """Hook for adaptive policies: a trial reported eval points.  Default: ignore."""

    def on_complete(self, trial_id: str, candidate: Candidate, result: dict | None = None) -> None:  # noqa: B027
        """A trial ended (finished, stopped or failed); result is its last report, None if it
        failed or is unknown.  Default: ignore."""

    def should_stop(self, trial_id: str, candidate: Candidate, result: dict) -> bool:
        """Asked by Tune's scheduler after each eval point (result holds `samples`, `loss`, ...):
        stop this running trial now?  Default: no."""
        return False

    def explain(self) -> dict | None:
        """The latest decision and why (for MLflow and the progress display); None if none."""
        return None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:  # noqa: B027
        pass
