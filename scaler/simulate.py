"""Run an allocation policy against the oracle backend in-process: no Ray, no MLflow.

The same policy objects the live sweep uses (through `PolicySearcher`) are driven here one trial
at a time, so tests and benchmarks of policies run in milliseconds per trial.
"""

from __future__ import annotations

import itertools

from scaler.allocation import Ledger, Policy
from scaler.fitter import OnlineFitter
from scaler.spec import SweepSpec
from scaler.trial.oracle import eval_schedule, oracle_points
from scaler.tune.trainable import trial_seed


def simulate(
    spec: SweepSpec, policy: Policy, ledger: Ledger, fitter: OnlineFitter | None = None
) -> OnlineFitter:
    """Propose, run (oracle), report, complete — until the policy or the budget says stop."""
    if spec.backend != "oracle":
        raise ValueError(f"simulate runs the oracle backend only, got backend {spec.backend!r}")
    fitter = fitter or OnlineFitter(seed=spec.seed)
    for i in itertools.count():
        candidate = policy.propose(ledger)
        if candidate is None:
            return fitter
        trial_id = f"sim{i:05d}"
        config = candidate.config()
        ledger.start(trial_id, candidate.flops)
        schedule = eval_schedule(config["samples"], spec.trial.eval_points, spec.trial.min_samples)
        n_params = config["params"].get("n_params", 1.0)
        last = None
        points = oracle_points(
            spec.oracle,
            n_params,
            config["samples"],
            schedule,
            trial_seed(spec, config),
            0,
            config.get("hparams"),
        )
        for point in points:
            last = point.to_dict()
            fitter.add(trial_id, point, group=config.get("point"))
            policy.on_result(trial_id, candidate, [last])
            if policy.should_stop(trial_id, candidate, last):
                break
        policy.on_complete(trial_id, candidate, last)
        ledger.finish(
            trial_id, last["flops"] if last else 0.0, last["device_seconds"] if last else 0.0
        )
