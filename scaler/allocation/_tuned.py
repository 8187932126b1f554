"""Tuned at every scale: an Optuna study per scale point, warm-started from scaling rules.

`TunedPolicy` wraps any policy.  The inner policy chooses the scale points (model knobs and a
sample budget); for each point this policy runs `trials_per_point` trials whose hyperparameters
an Optuna study asks for (ask/tell: one Tune experiment, one MLflow record).  Trials report every
eval point to the study, and Optuna's median pruner stops losers early.  Once three points are
tuned, each hyperparameter's optimum is fitted against scale (`scaler.hparams.fit_rule`) and the
next point's study starts from the rule: the predicted optimum is enqueued first and the range
narrowed around it.  The law then uses each point's best run (`OnlineFitter` groups by point).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace

import optuna

from scaler.allocation._base import Candidate, Ledger, Policy
from scaler.hparams import TunedRun, fit_rules

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _distributions(tuning, centre: dict[str, float] | None) -> dict:
    """Search ranges; around a rule's prediction when given (clipped to the user's range)."""
    out = {}
    for name, r in tuning.hparams.items():
        low, high = r.low, r.high
        if centre and name in centre:
            low = max(low, min(high, centre[name] / tuning.narrow))
            high = min(high, max(low * 1.0001, centre[name] * tuning.narrow))
        out[name] = optuna.distributions.FloatDistribution(low, high, log=r.log)
    return out


class _PointStudy:
    """The study of one scale point and the bookkeeping of its trials."""

    def __init__(
        self, candidate: Candidate, tuning, n_params: float, start: dict | None, seed: int
    ):
        self.candidate = candidate
        self.n_params = n_params
        self.start = start  # the rule's prediction it was warm-started from (None: cold)
        sampler = (
            optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)
            if tuning.sampler == "tpe"
            else optuna.samplers.RandomSampler(seed=seed)
        )
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=2)
            if tuning.prune
            else optuna.pruners.NopPruner()
        )
        self.study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
        self.distributions = _distributions(tuning, start)
        if start:
            self.study.enqueue_trial({k: v for k, v in start.items() if k in self.distributions})
        self.asked = 0
        self.trials: dict[int, optuna.trial.Trial] = {}  # Optuna trial number -> trial
        self.reported: dict[int, set[int]] = {}  # trial number -> steps reported
        self.pruned: set[int] = set()
        self.told: set[int] = set()


class TunedPolicy(Policy):
    """Wrap `inner`: every candidate it proposes becomes a tuned point (see the module doc)."""

    name = "tuned"

    def __init__(self, inner: Policy, tuning, n_params_of: Callable[[Candidate], float]):
        super().__init__(inner.candidates, tuning.seed)
        self.inner = inner
        self.tuning = tuning
        self.n_params_of = n_params_of
        self.points: dict[str, _PointStudy] = {}
        self.runs: list[TunedRun] = []

    # --- choosing ---------------------------------------------------------------------------
    def propose(self, ledger: Ledger) -> Candidate | None:
        open_point = next(
            (p for p in self.points.values() if p.asked < self.tuning.trials_per_point), None
        )
        if open_point is None:
            candidate = self.inner.propose(ledger)
            if candidate is None:
                return None
            open_point = self._open(candidate)
        elif not ledger.fits(open_point.candidate.flops):
            return None
        trial = open_point.study.ask(open_point.distributions)
        open_point.trials[trial.number] = trial
        open_point.asked += 1
        return replace(
            open_point.candidate,
            hparams=tuple(sorted(trial.params.items())),
            tuning_trial=trial.number,
        )

    def _open(self, candidate: Candidate) -> _PointStudy:
        n_params = self.n_params_of(candidate)
        start = None
        if self.tuning.warm_start:
            rules = self.rules()
            if len(rules) == len(self.tuning.hparams):
                start = {name: float(rule.predict(n_params)) for name, rule in rules.items()}
        seed = self.tuning.seed + len(self.points)
        point = _PointStudy(candidate, self.tuning, n_params, start, seed)
        self.points[candidate.point()] = point
        log.info(
            "tuning point %s (N=%.3g) %s",
            candidate.point(),
            n_params,
            f"from rule {start}" if start else "cold",
        )
        return point

    # --- what trials tell us -------------------------------------------------------------------
    def _trial(self, candidate: Candidate):
        point = self.points.get(candidate.point())
        if point is None or candidate.tuning_trial is None:
            return None, None
        return point, point.trials.get(candidate.tuning_trial)

    def should_stop(self, trial_id: str, candidate: Candidate, result: dict) -> bool:
        point, trial = self._trial(candidate)
        loss, step = result.get("loss"), result.get("samples")
        if trial is None or loss is None or step is None:
            return False
        if not math.isfinite(loss):
            return True
        reported = point.reported.setdefault(trial.number, set())
        if step not in reported:  # a retried trial re-reports its steps: report each once
            reported.add(step)
            trial.report(float(loss), int(step))
            if trial.should_prune():
                point.pruned.add(trial.number)
        return trial.number in point.pruned

    def on_complete(self, trial_id: str, candidate: Candidate, result: dict | None) -> None:
        point, trial = self._trial(candidate)
        if trial is None or trial.number in point.told:
            return
        loss = (result or {}).get("loss")
        if trial.number in point.pruned:
            point.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif loss is None or not math.isfinite(loss):
            point.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            point.study.tell(trial, float(loss))
            n = float(result.get("params", point.n_params))
            self.runs.append(TunedRun(candidate.point(), n, dict(candidate.hparams), float(loss)))
        point.told.add(trial.number)

    def rules(self):
        """Scaling rules fitted from the points whose studies are complete."""
        done = {k for k, p in self.points.items() if len(p.told) >= self.tuning.trials_per_point}
        return fit_rules([r for r in self.runs if r.point in done], self.tuning.hparams)

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict(), "points": self.points, "runs": self.runs}

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state["inner"])
        self.points, self.runs = state["points"], state["runs"]
