"""A DLRM trial of k workers: a Ray Train `TorchTrainer` launched from the Tune function.

Ray 2.60 (Train V2): the Tune function builds and fits the trainer; every worker runs
`train_worker` (a `ShardedDLRMTrial` over Ray's process group: gloo on CPU, nccl on GPU) and calls
`ray.train.report` at each eval point; `TuneReportCallback` forwards rank 0's metrics to Tune, where
the sweep's callback logs them to the trial's one MLflow run (only the Tune driver logs).

Checkpoints: rank 0 writes the full single-process-format checkpoint (`trial.pt`) with each report
into the trainer's storage, `<Tune trial dir>/train/`. A retried trial builds a trainer with the
same name and storage, so Ray Train restores its latest checkpoint and the workers resume there.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from ray import tune

from scaler.divergence import divergence
from scaler.spec import SweepSpec

log = logging.getLogger(__name__)

TRAIN_RUN = "train"  # the trainer's run folder inside the Tune trial's folder
CHECKPOINT_FILE = "trial.pt"


def train_worker(cfg: dict) -> None:
    """One Ray Train worker of a multi-worker DLRM trial (runs on every rank)."""
    import ray.train
    import torch

    from scaler.trial.config import DLRMTrialConfig
    from scaler.trial.sharded import ShardedDLRMTrial

    config = DLRMTrialConfig.model_validate(cfg["trial_config"])
    if cfg["use_gpu"]:
        import ray.train.torch

        device = ray.train.torch.get_device()
        torch.cuda.set_device(device)
        train = config.train.model_copy(update={"device": "cuda"})
        config = config.model_copy(update={"train": train})
    checkpoint = None
    previous = ray.train.get_checkpoint()
    if previous is not None:
        with previous.as_directory() as folder:
            checkpoint = torch.load(
                Path(folder) / CHECKPOINT_FILE, map_location="cpu", weights_only=False
            )
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    trial = ShardedDLRMTrial(config, checkpoint, sharding_types=cfg["sharding"])
    for point in trial.run():
        state = trial.state_dict()  # collective; the full checkpoint on rank 0
        # the single-process rule (scaler/tune/trainable.py): NaN/inf at once, NE > 1 + margin
        # only at the final point; every rank sees the same point, so all stop together
        final = point.samples >= config.train.samples
        reason = divergence(point, "dlrm" if final else "no-trivial-check")
        metrics = {**point.to_dict(), "workers": world, "diverged_reason": reason or ""}
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                torch.save(state, Path(tmp) / CHECKPOINT_FILE)
                (Path(tmp) / "point.json").write_text(json.dumps(point.to_dict()))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics)
        if reason:
            return  # the sweep's callback records the reason and excludes the trial


def build_trainer(spec: SweepSpec, trial_config: dict, storage_path: str, filesystem=None):
    """The `TorchTrainer` of one multi-worker trial (call inside a Tune trial)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    res = spec.resources
    use_gpu = res.gpus_per_worker > 0
    per_worker = {"CPU": res.cpus_per_worker}
    if use_gpu:
        per_worker["GPU"] = res.gpus_per_worker
    return TorchTrainer(
        train_worker,
        train_loop_config={
            "trial_config": trial_config,
            "sharding": spec.trial.sharding,
            "use_gpu": use_gpu,
        },
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=spec.trial.workers,
            use_gpu=use_gpu,
            resources_per_worker=per_worker,
            placement_strategy=res.worker_placement.upper(),
        ),
        run_config=RunConfig(
            name=TRAIN_RUN,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            callbacks=[TuneReportCallback()],
            # a failure ends the Tune trial; Tune retries it and Train resumes from the checkpoint
            failure_config=FailureConfig(max_failures=0),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )


def run_dlrm_workers(spec: SweepSpec, config: dict) -> None:
    """The Tune function body of a `trial.workers > 1` DLRM trial."""
    from scaler.trial.from_spec import trial_config

    storage = tune.get_context().get_storage()
    tc = trial_config(spec, config).model_dump(mode="json")
    build_trainer(spec, tc, storage.trial_fs_path, storage.storage_filesystem).fit()
