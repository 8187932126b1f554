"""Run a sweep: spec -> candidates -> Ray Tune (policy searcher, trainable, MLflow callback)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune

from scaler.allocation import (
    Candidate,
    Design,
    Ledger,
    TunedPolicy,
    build_candidates,
    make_policy,
)
from scaler.allocation._targets import build_target
from scaler.cluster import check_shared_storage, safe_concurrency
from scaler.fitter import FitReport, OnlineFitter
from scaler.resume import (
    checkpoint_period,
    restore_tuner,
    save_spec,
    start_or_resume,
    tune_callbacks,
)
from scaler.spec import SweepSpec
from scaler.tracking import SweepTracker, default_tracking_uri
from scaler.trial.oracle import eval_schedule
from scaler.tune.actor_reuse import keep_starting_actors
from scaler.tune.callbacks import SweepCallback
from scaler.tune.scheduler import PolicyStopper
from scaler.tune.searcher import PolicySearcher
from scaler.tune.trainable import run_trial

log = logging.getLogger(__name__)

POINT_BATCH_S = 2.0  # a trial's eval points wait up to this long to reach MLflow in one write

DEFAULT_STORAGE = "scaler_runs"


@dataclass
class SweepResult:
    name: str
    tracking_uri: str
    experiment: str
    parent_run_id: str
    storage: Path
    report: FitReport
    trials: int
    errors: int


def flops_per_sample_fn(spec: SweepSpec) -> Callable[[dict], float]:
    """Training FLOPs per sample of the model a param point describes (for budgets and IsoFLOPs)."""
    if spec.backend == "oracle":
        k = spec.oracle.flops_per_param_sample
        return lambda point: k * float(point.get("n_params", 1.0))
    from scaler.trial.from_spec import flops_per_sample

    return lambda point: flops_per_sample(spec, point)


def make_searcher(spec: SweepSpec) -> PolicySearcher:
    samples = spec.axes.sample_budgets()
    compute = spec.axes.compute_budgets()
    if samples is None and compute is None:
        samples = [spec.trial.samples]
    candidates = build_candidates(
        spec.axes.param_grid(),
        samples=samples,
        compute=compute,
        flops_per_sample=flops_per_sample_fn(spec),
    )
    ledger = Ledger(
        trials_limit=spec.budget.trials,
        flops_limit=spec.budget.flops,
        device_seconds_limit=spec.budget.device_hours * 3600 if spec.budget.device_hours else None,
    )
    policy = make_policy(
        spec.policy.name, candidates, spec.policy.seed, **policy_options(spec, candidates)
    )
    if spec.tuning is not None:
        policy = TunedPolicy(policy, spec.tuning, n_params_fn(spec))
    return PolicySearcher(policy, ledger)


def live_design(spec: SweepSpec, candidates: list[Candidate]) -> Design:
    """What a live trial observes: every point of its eval schedule, at its model's size (the
    law has a parameter axis only when the sweep varies the model)."""
    n_params = n_params_fn(spec)
    sizes = {c.params: n_params(c) for c in candidates}
    t = spec.trial
    return Design(
        size_of=(lambda c: sizes[c.params]) if len(set(sizes.values())) > 1 else None,
        schedule=lambda samples: eval_schedule(samples, t.eval_points, t.min_samples),
    )


def policy_options(spec: SweepSpec, candidates: list[Candidate]) -> dict:
    """Keyword arguments of the spec's policy (each policy takes the ones it knows)."""
    p = spec.policy
    design = live_design(spec, candidates)
    target = None
    if p.name == "adaptive" and p.target is not None:
        target = build_target(p.target, candidates, design)
    return {
        "design": design,
        "eta": p.eta,
        "target": target,
        "tolerance": p.tolerance,
        "stop_ratio": p.stop_ratio,
    }


def n_params_fn(spec: SweepSpec) -> Callable[[Candidate], float]:
    """Parameter count of a candidate's model (the scale its tuned optimum is a function of)."""
    if spec.backend == "oracle":
        return lambda c: float(dict(c.params).get("n_params", 1.0))
    from scaler.trial.from_spec import param_count

    return lambda c: param_count(spec, dict(c.params))


@contextlib.contextmanager
def environ(values: dict[str, str]):
    """Environment variables set for the duration of the block, then put back as they were."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def init_ray(address: str | None) -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return
    if address:
        from scaler.cluster import AddressError, check_ray_address

        check_ray_address(address)  # a dead address: one line in seconds, not Ray's retries
        try:
            ray.init(address=address, log_to_driver=False)
        except ConnectionError as exc:  # something answers there, but not a Ray cluster
            raise AddressError(f"--address {address}: {str(exc).splitlines()[0]}") from None
    else:
        if os.environ.get("RAY_AUTH_MODE", "").lower() != "disabled":
            from scaler.localcluster import ensure_auth_token

            # Ray would write the token it generates readable by every user (mode 644); ours is
            # this user's only (600), and Ray uses it
            ensure_auth_token()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)


def run_sweep(
    spec: SweepSpec,
    *,
    address: str | None = None,
    tracking_uri: str | None = None,
    storage: str | Path | None = None,
    progress: Callable[[dict], None] | None = None,
    final_bootstrap: int = 200,
    resume: bool = False,
) -> SweepResult:
    storage = Path(storage or DEFAULT_STORAGE).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    searcher = make_searcher(spec)  # a bad target fails here, before anything is recorded
    init_ray(address)
    check_shared_storage([storage])  # every node must reach it: fail now, not inside a trial
    uri = tracking_uri or spec.tracking.uri or default_tracking_uri(storage)
    tracker = SweepTracker(uri, spec.tracking.experiment, artifact_root=storage / "mlartifacts")
    parent = start_or_resume(tracker, spec, resume=resume)
    trials = len(searcher.policy.candidates)
    if spec.budget.trials is not None:
        trials = min(trials, spec.budget.trials)
    tune_env = {  # for this sweep's Tuner only (the caller's own Tune runs keep their settings)
        "TUNE_GLOBAL_CHECKPOINT_S": os.environ.get(
            "SCALER_CHECKPOINT_S", str(checkpoint_period(trials))
        ),
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # ours are in tune_callbacks: no TensorBoard
    }
    # our progress line replaces Tune's; its new output engine prints a banner even at verbose=0
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

    fitter = OnlineFitter(seed=spec.seed)
    callback = SweepCallback(
        tracker,
        fitter,
        final_bootstrap=final_bootstrap,
        progress=progress,
        ledger_of=lambda: searcher.ledger,
        allocation_of=searcher.allocation_record,
        batch_s=POINT_BATCH_S,
        background=True,  # MLflow writes off Tune's event loop (scaler.outbox)
    )
    resources = {"cpu": spec.resources.cpus_per_trial, "gpu": spec.resources.gpus_per_trial}
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, spec_json=spec.resolved()), resources
    )
    tuner = restore_tuner(storage / spec.name, trainable, searcher, callback) if resume else None
    tuner = tuner or tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=PolicyStopper(searcher.should_stop, searcher.on_tune_trial),
            num_samples=-1,
            max_concurrent_trials=safe_concurrency(spec),  # multi-worker trials: no deadlock
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=str(storage),
            callbacks=tune_callbacks(storage / spec.name, searcher, callback),
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=2),
        ),
    )
    save_spec(storage / spec.name, spec)
    with environ(tune_env), keep_starting_actors():  # actors reused, not churned (see the module)
        grid = tuner.fit()
    errors = sum(r.error is not None for r in grid)
    return SweepResult(
        name=spec.name,
        tracking_uri=uri,
        experiment=spec.tracking.experiment,
        parent_run_id=parent,
        storage=storage,
        report=callback.final_report or fitter.refit(),
        trials=len(grid),
        errors=errors,
    )
