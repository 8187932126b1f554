"""Multi-worker DLRM trials: TorchRec DistributedModelParallel over 2 gloo processes.

The contract: a k-worker trial reaches the single-process trial's loss curve on the same data,
with the same accounting (FLOPs summed over workers, device-seconds summed over workers) and
single-process-format checkpoints that any world size resumes from.
"""

import os
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch

import scaler
from scaler.spec import SpecError, parse_spec
from scaler.trial.config import DLRMTrialConfig
from scaler.trial.dlrm import DLRMTrial

FEATURES = [
    {"vocab_size": 5000, "zipf_exponent": 1.0},
    {"vocab_size": 20000, "zipf_exponent": 1.1},
    {"vocab_size": 3000, "zipf_exponent": 1.0},
]
TRIAL = {
    "data": {"seed": 0, "features": FEATURES},
    "model": {"embedding_dim": 8, "bottom_mlp": [16], "top_mlp": [16], "num_embeddings": 4000},
    "train": {
        "samples": 200003,
        "eval_at": [10000, 50000, 200003],  # the last batch has 323 rows: uneven rank slices
        "eval_samples": 20000,
        "batch_size": 512,
        "num_threads": 1,
    },
}
SPEC = {
    "name": "dlrm-2workers",
    "backend": "dlrm",
    "dlrm": {
        "data": {"seed": 0, "features": FEATURES},
        "model": {"embedding_dim": 8, "bottom_mlp": [16], "top_mlp": [16]},
        "train": {"eval_samples": 8192, "num_threads": 1},
    },
    "trial": {
        "samples": 65536,
        "eval_points": 4,
        "min_samples": 8192,
        "workers": 2,
        "sharding": ["table_wise"],
    },
    "axes": {"params": {"model.num_embeddings": [4000]}},
    "budget": {"trials": 1},
    "resources": {"cpus_per_trial": 0.5, "cpus_per_worker": 0.5, "concurrency": 1},
    "tracking": {"experiment": "dlrm-2workers"},
}


def _sharded_worker(rank, world, store, trial_dict, types, checkpoint, out_dir):
    import torch.distributed as dist

    from scaler.trial.sharded import ShardedDLRMTrial

    # a FileStore rendezvous: no port to race for on a shared machine
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        config = DLRMTrialConfig.model_validate(trial_dict)
        state = torch.load(checkpoint, weights_only=False) if checkpoint else None
        trial = ShardedDLRMTrial(config, state, sharding_types=types)
        points = []
        for point in trial.run():
            points.append(point)
            full = trial.state_dict()  # collective
            if rank == 0 and point.samples == 50000:
                torch.save(full, Path(out_dir) / "mid.pt")
        if rank == 0:
            torch.save(points, Path(out_dir) / "points.pt")
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    dist.barrier()
    dist.destroy_process_group()
    # a thread torch/fbgemm leave behind can abort a normal interpreter exit ("terminate called
    # without an active exception") after the work is done: leave without running destructors
    sys.stdout.flush()
    os._exit(0)


def run_sharded(tmp_path, world=2, types=("table_wise",), checkpoint=None):
    out = Path(tempfile.mkdtemp(prefix=f"w{world}-", dir=tmp_path))
    torch.multiprocessing.spawn(
        _sharded_worker,
        args=(world, str(out / "store"), TRIAL, list(types), checkpoint, str(out)),
        nprocs=world,
    )
    return torch.load(out / "points.pt", weights_only=False), out / "mid.pt"


@pytest.fixture(scope="module")
def single():
    torch.set_num_threads(1)
    trial = DLRMTrial(DLRMTrialConfig.model_validate(TRIAL))
    points, mid = [], None
    for point in trial.run():
        points.append(point)
        if point.samples == 50000:
            mid = trial.state_dict()
    return points, mid


@pytest.mark.parametrize("types", [("table_wise",), ("column_wise",)])
def test_two_workers_reach_the_single_process_loss_curve(tmp_path, single, types):
    ref, _ = single
    points, _ = run_sharded(tmp_path, types=types)
    assert [p.samples for p in points] == [p.samples for p in ref] == [10000, 50000, 200003]
    np.testing.assert_allclose([p.loss for p in points], [p.loss for p in ref], rtol=0.02)
    np.testing.assert_allclose([p.ne for p in points], [p.ne for p in ref], rtol=0.02)
    # it learns, beyond the base rate (so the agreement is not trivial)
    assert points[-1].ne < 0.95 and points[-1].auc > 0.68
    assert points[-1].auc == pytest.approx(ref[-1].auc, abs=0.02)
    # accounting: FLOPs of the global batch (= the sum over workers); device-seconds summed
    assert [p.flops for p in points] == [p.flops for p in ref]
    assert all(p.device_seconds > 1.5 * p.wall_seconds for p in points)


@pytest.mark.slow  # ~25 s: four 2-worker and 1-worker runs through Ray Train
def test_checkpoints_resume_across_world_sizes(tmp_path, single):
    ref, single_mid = single
    fresh, mid = run_sharded(tmp_path)
    # a 2-worker checkpoint resumes in 2 workers exactly where the uninterrupted run went
    resumed, _ = run_sharded(tmp_path, checkpoint=str(mid))
    assert [p.samples for p in resumed] == [200003]
    assert resumed[0].loss == pytest.approx(fresh[-1].loss, rel=1e-4)
    # ... and in one process (single-process format); a 1-worker checkpoint resumes in 2 workers
    state = torch.load(mid, weights_only=False)
    assert set(state["model"]) == set(single_mid["model"])
    assert (
        state["sparse_optimizer"]["state"].keys() == single_mid["sparse_optimizer"]["state"].keys()
    )
    one = list(DLRMTrial(DLRMTrialConfig.model_validate(TRIAL), state).run())
    assert one[0].loss == pytest.approx(ref[-1].loss, rel=0.02)
    torch.save(single_mid, tmp_path / "single_mid.pt")
    two, _ = run_sharded(tmp_path, checkpoint=str(tmp_path / "single_mid.pt"))
    assert two[0].loss == pytest.approx(ref[-1].loss, rel=0.02)


@pytest.mark.ray
@pytest.mark.slow  # ~60 s on 2 cores
def test_two_worker_trials_in_a_sweep_log_one_run_each_with_rank0_points(tmp_path, ray_local):
    from scaler.sweep import run_sweep
    from scaler.trial.from_spec import trial_config

    # two budgets: 16384 samples ends at NE ~3 (worse than the base rate: excluded as diverged,
    # the single-process rule), 65536 learns
    trial = {k: v for k, v in SPEC["trial"].items() if k != "samples"}
    axes = {"params": SPEC["axes"]["params"], "data": [16384, 65536]}
    resources = {**SPEC["resources"], "concurrency": 2}  # fits 2 CPUs: 2 x 0.5 + 2 x 0.5
    spec = parse_spec(
        {**SPEC, "trial": trial, "axes": axes, "budget": {"trials": 2}, "resources": resources}
    )
    result = run_sweep(spec, storage=tmp_path, final_bootstrap=0)
    assert result.trials == 2 and result.errors == 0
    trials = scaler.trials("dlrm-2workers", tracking_uri=result.tracking_uri)
    points = scaler.points("dlrm-2workers", tracking_uri=result.tracking_uri)
    assert len(trials) == 2
    status = dict(zip(trials["samples_budget"], trials["status"], strict=True))
    assert status == {16384: "diverged", 65536: "completed"}
    short = trials[trials["samples_budget"] == 16384].iloc[0]
    assert "worse than predicting the base rate" in short["excluded"]
    points = points[
        points["trial_id"] == trials[trials["samples_budget"] == 65536].iloc[0]["trial_id"]
    ]
    points = points.sort_values("samples")
    # the same trial in one process, in this process
    config = trial_config(spec, {"params": {"model.num_embeddings": 4000}, "samples": 65536})
    ref = list(DLRMTrial(config).run())
    assert list(points["samples"]) == [p.samples for p in ref]  # each eval point once
    np.testing.assert_allclose(points["loss"], [p.loss for p in ref], rtol=0.02)
    np.testing.assert_allclose(points["flops"], [p.flops for p in ref])
    assert (points["device_seconds"] > 1.5 * points["wall_seconds"]).all()
    # rank 0's checkpoints live in the trainer's storage inside the Tune trial's folder
    ckpts = sorted((tmp_path / "dlrm-2workers").glob("*samples=65536*/train/checkpoint_*/trial.pt"))
    assert len(ckpts) == 2  # CheckpointConfig(num_to_keep=2)
    last = torch.load(ckpts[-1], weights_only=False)
    assert last["samples"] == 65536
    resumed = DLRMTrial(config, last)  # the single-process trial takes it as its own
    assert resumed.samples == 65536


def test_workers_and_sharding_are_validated():
    base = {k: v for k, v in SPEC.items()}
    with pytest.raises(SpecError, match=r"trial.workers: must be >= 1, got 0"):
        parse_spec({**base, "trial": {**SPEC["trial"], "workers": 0}}, "x.yaml")
    with pytest.raises(SpecError, match=r"row_wise.*need GPUs.*gpus_per_worker"):
        parse_spec({**base, "trial": {**SPEC["trial"], "sharding": ["row_wise"]}}, "x.yaml")
    with pytest.raises(SpecError, match=r"trial.sharding\[0\]"):
        parse_spec({**base, "trial": {**SPEC["trial"], "sharding": ["data_parallel"]}}, "x.yaml")
    oracle = {
        "name": "o",
        "backend": "oracle",
        "oracle": {"law": {"E": 0.4, "A": 1, "alpha": 0.3, "B": 1, "beta": 0.3}},
        "trial": {"samples": 1000, "workers": 2},
        "axes": {"params": {"n_params": [1e5]}},
        "budget": {"trials": 1},
    }
    with pytest.raises(SpecError, match=r"trial.workers is 2, but must be 1 for the oracle"):
        parse_spec(oracle, "x.yaml")
    gpu = {**base, "trial": {**SPEC["trial"], "sharding": ["row_wise"]}}
    gpu["resources"] = {**SPEC["resources"], "gpus_per_worker": 1}
    assert parse_spec(gpu).trial.sharding == ["row_wise"]


def test_spec_sharding_names_match_torchrec_fused_kernel():
    from torchrec.distributed.fused_embeddingbag import FusedEmbeddingBagCollectionSharder

    from scaler.spec import GPU_ONLY_SHARDING, ShardingType
    from scaler.trial.sharded import CPU_SHARDING_TYPES, GPU_SHARDING_TYPES

    sharder = FusedEmbeddingBagCollectionSharder()
    cpu = set(sharder.sharding_types("cpu")) - {"data_parallel"}  # dense kernel: not fused
    gpu = set(sharder.sharding_types("cuda")) - {"data_parallel"}
    assert set(CPU_SHARDING_TYPES) == cpu and set(GPU_SHARDING_TYPES) == gpu
    assert set(ShardingType.__args__) == gpu and set(GPU_ONLY_SHARDING) == gpu - cpu


@pytest.mark.slow
def test_gpu_check_script_dry_runs_on_cpu():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [
            sys.executable,
            str(root / "benchmarks" / "gpu_check.py"),
            "--device",
            "cpu",
            "--samples",
            "32768",
            "--batch",
            "1024",
            "--skip-ray",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "final losses agree within 2 %" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("ratio ")


def _descendants(pid: int) -> list[int]:
    """Process ids below `pid` (this test's own Ray: the raylet is a child of this process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.ray
def test_a_killed_worker_fails_the_trial_and_its_retry_resumes_from_the_checkpoint(
    tmp_path, ray_local
):
    import json
    import signal
    import threading
    import time

    from scaler.sweep import run_sweep
    from scaler.trial.from_spec import trial_config

    spec = parse_spec(
        {
            **SPEC,
            "name": "dlrm-killed",
            "trial": {**SPEC["trial"], "samples": 262144, "eval_points": 4, "min_samples": 16384},
            "tracking": {"experiment": "dlrm-killed"},
        }
    )
    killed: list[int] = []
    seen_at_kill: list[int] = []

    def kill_a_worker_after_the_first_checkpoint():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if list((tmp_path / "dlrm-killed").glob("*/train/checkpoint_*/trial.pt")):
                workers = [p for p in _descendants(os.getpid()) if "RayTrainWorker" in _cmdline(p)]
                if workers:
                    os.kill(workers[-1], signal.SIGKILL)  # a process this test's Ray started
                    killed.append(workers[-1])
                    results = list((tmp_path / "dlrm-killed").glob("*/result.json"))
                    seen_at_kill.append(sum(1 for r in results for _ in open(r)))
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_a_worker_after_the_first_checkpoint, daemon=True)
    watcher.start()
    result = run_sweep(spec, storage=tmp_path, final_bootstrap=0)
    watcher.join(timeout=5)
    assert killed, "no worker was killed: the test did not exercise a retry"
    assert seen_at_kill[0] < 4  # killed mid-trial, with eval points still to come
    assert result.trials == 1 and result.errors == 0  # Tune retried the trial, and it finished
    trials = scaler.trials("dlrm-killed", tracking_uri=result.tracking_uri)
    points = scaler.points("dlrm-killed", tracking_uri=result.tracking_uri).sort_values("samples")
    assert trials["status"].iloc[0] == "completed"
    config = trial_config(spec, {"params": {"model.num_embeddings": 4000}, "samples": 262144})
    ref = list(DLRMTrial(config).run())
    assert list(points["samples"]) == [p.samples for p in ref]  # each eval point once in MLflow
    np.testing.assert_allclose(points["loss"], [p.loss for p in ref], rtol=0.02)
    # Tune saw the retry continue after the checkpoint: no eval point was trained twice
    (trial_dir,) = [
        d
        for d in (tmp_path / "dlrm-killed").iterdir()
        if d.is_dir() and (d / "result.json").exists()
    ]
    assert (trial_dir / "error.txt").is_file()  # Tune recorded the failure it retried
    reported = [json.loads(line)["samples"] for line in open(trial_dir / "result.json")]
    assert sorted(reported) == [p.samples for p in ref] and len(set(reported)) == len(reported)


@pytest.mark.ray
def test_concurrency_is_lowered_so_a_trainer_always_fits(ray_local, caplog):
    from scaler.cluster import safe_concurrency

    def spec(**resources):
        return parse_spec({**SPEC, "resources": {**SPEC["resources"], **resources}})

    # ray_local has 2 CPUs: c x 0.5 (trial functions) + 2 x 0.5 (one trainer) <= 2  ->  c <= 2
    assert safe_concurrency(spec(concurrency=4)) == 2
    assert "resources.concurrency 4 lowered to 2" in caplog.text
    assert safe_concurrency(spec(concurrency=1)) == 1
    caplog.clear()
    assert safe_concurrency(spec(concurrency=3, cpus_per_worker=2)) == 1  # no trainer fits at all
    assert "trials wait until an autoscaler adds nodes" in caplog.text
    single = {**SPEC, "trial": {**SPEC["trial"], "workers": 1}, "resources": {"concurrency": 8}}
    assert safe_concurrency(parse_spec(single)) == 8  # one-process trials: untouched
