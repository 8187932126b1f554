"""The Tune function trainable: one trial = one backend run, one `tune.report` per eval point.

Each report carries the eval point's fields (see `scaler.records.EvalPoint`) and a checkpoint
from which a retried trial resumes instead of starting over.
"""

from __future__ import annotations

import json
import math
import tempfile
import zlib
from pathlib import Path

from ray import tune

from scaler.divergence import divergence
from scaler.records import EvalPoint
from scaler.spec import SweepSpec
from scaler.trial.oracle import eval_schedule, oracle_points

STATE_FILE = "scaler_state.json"


def trial_seed(spec: SweepSpec, config: dict) -> int:
    """Deterministic per (sweep seed, trial config): reruns and resumes draw the same data."""
    return zlib.crc32(json.dumps([spec.seed, config], sort_keys=True).encode())


def report(
    point: EvalPoint,
    state: dict,
    files: dict[str, object] | None = None,
    extra: dict | None = None,
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / STATE_FILE).write_text(json.dumps(state))
        for name, obj in (files or {}).items():
            import torch

            torch.save(obj, Path(tmp) / name)
        tune.report(
            {**point.to_dict(), **(extra or {})}, checkpoint=tune.Checkpoint.from_directory(tmp)
        )


def load_checkpoint() -> tuple[dict | None, Path | None]:
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None, None
    tmp = Path(tempfile.mkdtemp(prefix="scaler-ckpt-"))
    path = Path(ckpt.to_directory(str(tmp)))
    return json.loads((path / STATE_FILE).read_text()), path


def run_trial(config: dict, spec_json: dict) -> None:
    spec = SweepSpec.model_validate(spec_json)
    if spec.backend == "dlrm" and spec.trial.workers > 1:
        from scaler.tune.multiworker import run_dlrm_workers  # Ray Train + TorchRec DMP

        return run_dlrm_workers(spec, config)
    state, ckpt_dir = load_checkpoint()
    if spec.backend == "oracle":
        run_oracle(spec, config, state)
    else:
        run_dlrm(spec, config, state, ckpt_dir)


def run_oracle(spec: SweepSpec, config: dict, state: dict | None) -> None:
    schedule = eval_schedule(config["samples"], spec.trial.eval_points, spec.trial.min_samples)
    start = state["next_index"] if state else 0
    seed = trial_seed(spec, config)
    n_params = config["params"].get("n_params", 1.0)
    hparams = config.get("hparams")
    points = oracle_points(spec.oracle, n_params, config["samples"], schedule, seed, start, hparams)
    fails = any(math.isclose(n_params, v, rel_tol=1e-9) for v in spec.oracle.fail_n_params)
    for i, point in enumerate(points, start):
        if fails and i >= 1:
            raise RuntimeError(f"injected failure at eval point {i} (oracle.fail_n_params)")
        reason = divergence(point, spec.backend)
        report(point, {"next_index": i + 1}, extra={"diverged_reason": reason or ""})
        if reason:
            return  # stop early; the callback records the reason and excludes the trial


def run_dlrm(spec: SweepSpec, config: dict, state: dict | None, ckpt_dir: Path | None) -> None:
    import torch

    from scaler.trial.dlrm import DLRMTrial
    from scaler.trial.from_spec import trial_config

    checkpoint = torch.load(ckpt_dir / "trial.pt", weights_only=False) if state else None
    trial = DLRMTrial(trial_config(spec, config), checkpoint)
    for point in trial.run():
        # young DLRM trials are often worse than the trivial predictor (NE 4-5 at the first eval
        # point of a tiny CPU trial): NaN/inf stops at once, NE > 1 + margin only at the end
        final = point.samples >= config["samples"]
        reason = divergence(point, spec.backend if final else "no-trivial-check")
        extra = {"diverged_reason": reason or ""}
        report(
            point, {"samples": point.samples}, files={"trial.pt": trial.state_dict()}, extra=extra
        )
        if reason:
            return  # stop early; the callback records the reason and excludes the trial
