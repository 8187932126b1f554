"""GPU check: one DLRM trial on CUDA, single-process and over nccl, beside the CPU path.

For whenever a CUDA machine is at hand (a few minutes; `make install ACCEL=gpu TORCH_INDEX=...`):

    python benchmarks/gpu_check.py                  # CUDA: every step below
    python benchmarks/gpu_check.py --device cpu     # the same steps on CPU / gloo (a dry run)

Steps, each on the same trial (3 tables of 100k / 500k / 1M rows, dim 64, batch 4096, synthetic
CTR data; every path trains on the same samples, so the final losses must agree):

1. `cpu`          DLRMTrial on the CPU: the reference throughput;
2. `cuda`         DLRMTrial on one GPU (FusedEmbeddingBagCollection on CUDA);
3. `nccl x k`     ShardedDLRMTrial over k GPUs (torch.multiprocessing, nccl, TorchRec DMP; the
                  planner may use every sharding type, row_wise included);
4. `ray x k`      the scaler path: a one-trial sweep with `trial.workers: k`, `gpus_per_worker: 1`
                  (Tune function -> Ray Train TorchTrainer -> nccl workers), read back from MLflow.

Prints one row per step (samples/s over training + evaluation, the data generator's own rate, the
final loss and NE), checks the losses agree within 2 %, and ends with `ratio <cuda / cpu>`.
Exit status 1 if a step fails or the losses disagree. Never part of CI.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

ROWS = (100_000, 500_000, 1_000_000)
DIM = 64


def trial_dict(device: str, samples: int, batch: int) -> dict:
    return {
        "data": {
            "seed": 0,
            "features": [{"vocab_size": 10 * r, "zipf_exponent": 1.05} for r in ROWS],
        },
        "model": {
            "embedding_dim": DIM,
            "num_embeddings": list(ROWS),
            "bottom_mlp": [256, 128],
            "top_mlp": [256, 128],
        },
        "train": {
            "samples": samples,
            "batch_size": batch,
            "eval_at": [samples],
            "eval_samples": 65536,
            "device": device,
        },
    }


def row(name: str, points, seconds: float) -> dict:
    last = points[-1]
    return {
        "path": name,
        "samples": last.samples,
        "seconds": seconds,
        "rate": last.samples / seconds,
        "loss": last.loss,
        "ne": last.ne,
    }


def step_single(device: str, samples: int, batch: int) -> dict:
    from scaler.trial import DLRMTrial, DLRMTrialConfig

    config = DLRMTrialConfig.model_validate(trial_dict(device, samples, batch))
    trial = DLRMTrial(config)
    start = time.perf_counter()
    points = list(trial.run())
    if device == "cuda":
        torch.cuda.synchronize()
    return row(device, points, time.perf_counter() - start)


def generator_rate(samples: int, batch: int) -> float:
    from scaler.data.synthetic import TRAIN, synthetic_ctr
    from scaler.trial import DLRMTrialConfig

    config = DLRMTrialConfig.model_validate(trial_dict("cpu", samples, batch))
    data = synthetic_ctr(config.data)
    n = min(samples, 1 << 19)
    start = time.perf_counter()
    for _ in data.batches(TRAIN, batch, 0, n, config.table_rows()):
        pass
    return n / (time.perf_counter() - start)


def _sharded_worker(rank, world, store, backend, device, samples, batch, out):
    import torch.distributed as dist

    from scaler.trial import DLRMTrialConfig
    from scaler.trial.sharded import ShardedDLRMTrial, allowed_sharding_types

    if device == "cuda":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        config = DLRMTrialConfig.model_validate(trial_dict(device, samples, batch))
        trial = ShardedDLRMTrial(config, sharding_types=allowed_sharding_types(device))
        dist.barrier()
        start = time.perf_counter()
        points = list(trial.run())
        seconds = time.perf_counter() - start
        if rank == 0:
            torch.save({"row": row("", points, seconds), "plan": str(trial.plan)}, out)
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


def step_sharded(device: str, workers: int, samples: int, batch: int) -> dict:
    backend = "nccl" if device == "cuda" else "gloo"
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "row.pt")
        torch.multiprocessing.spawn(
            _sharded_worker,
            args=(workers, str(Path(tmp) / "store"), backend, device, samples, batch, out),
            nprocs=workers,
        )
        result = torch.load(out, weights_only=False)
    print(result["plan"], flush=True)
    return {**result["row"], "path": f"{backend} x {workers}"}


def step_ray(device: str, workers: int, samples: int, batch: int) -> dict:
    import ray

    import scaler
    from scaler.spec import parse_spec
    from scaler.sweep import run_sweep

    base = trial_dict(device, samples, batch)
    base["train"] = {k: v for k, v in base["train"].items() if k not in ("samples", "eval_at")}
    gpu = device == "cuda"
    spec = parse_spec(
        {
            "name": "gpu-check",
            "backend": "dlrm",
            "dlrm": base,
            "trial": {"samples": samples, "eval_points": 2, "workers": workers},
            "axes": {"params": {"train.eval_samples": [65536]}},  # one trial: the base config
            "budget": {"trials": 1},
            "resources": {
                "cpus_per_trial": 0.5,
                "cpus_per_worker": 1,
                "gpus_per_worker": 1 if gpu else 0,
                "concurrency": 1,
            },
            "tracking": {"experiment": "gpu-check"},
        }
    )
    ray.init(
        num_cpus=max(os.cpu_count() or 2, workers + 1),
        num_gpus=torch.cuda.device_count() if gpu else 0,
        include_dashboard=False,
        log_to_driver=False,
    )
    try:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = run_sweep(spec, storage=tmp, final_bootstrap=0)
            seconds = time.perf_counter() - start
            if result.errors:
                raise RuntimeError("the Ray trial failed (see the Ray logs)")
            points = scaler.points("gpu-check", tracking_uri=result.tracking_uri)
            last = points.sort_values("samples").iloc[-1]
    finally:
        ray.shutdown()
    return {
        "path": f"ray x {workers}",
        "samples": int(last["samples"]),
        "seconds": float(last["wall_seconds"]),  # the trial's own clock, not Ray's start-up
        "rate": float(last["samples"]) / float(last["wall_seconds"]),
        "loss": float(last["loss"]),
        "ne": float(last["ne"]),
        "note": f"sweep end to end {seconds:.0f} s, device-seconds {last['device_seconds']:.1f}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--samples", type=int, default=1 << 20)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=None, help="default: every GPU (max 8)")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu for a dry run", file=sys.stderr)
        return 2
    if args.device == "cuda":
        workers = args.workers or min(torch.cuda.device_count(), 8)
        names = {torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}
        print(
            f"CUDA: {torch.cuda.device_count()} x {', '.join(sorted(names))}; torch "
            f"{torch.__version__}, NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}"
        )
    else:
        workers = args.workers or 2
    print(
        f"trial: tables {ROWS} x dim {DIM}, batch {args.batch}, {args.samples} samples; "
        f"data generator alone {generator_rate(args.samples, args.batch):,.0f} samples/s",
        flush=True,
    )

    steps = [("cpu", lambda: step_single("cpu", args.samples, args.batch))]
    if args.device == "cuda":
        steps.append(("cuda", lambda: step_single("cuda", args.samples, args.batch)))
    steps.append(("sharded", lambda: step_sharded(args.device, workers, args.samples, args.batch)))
    if not args.skip_ray:
        steps.append(("ray", lambda: step_ray(args.device, workers, args.samples, args.batch)))

    rows, failed = [], []
    for name, fn in steps:
        try:
            rows.append(fn())
            r = rows[-1]
            print(
                f"  {r['path']:<10} {r['rate']:>12,.0f} samples/s  {r['seconds']:7.1f} s  "
                f"loss {r['loss']:.5f}  NE {r['ne']:.4f}  {r.get('note', '')}",
                flush=True,
            )
        except Exception:
            failed.append(name)
            print(f"  {name}: FAILED\n{traceback.format_exc()}", flush=True)

    losses = [r["loss"] for r in rows]
    agree = bool(losses) and max(losses) <= 1.02 * min(losses)
    print(
        f"final losses {'agree' if agree else 'DISAGREE'} within 2 %: "
        + ", ".join(f"{r['path']} {r['loss']:.5f}" for r in rows)
    )
    cpu = next(r for r in rows if r["path"] == "cpu") if rows and rows[0]["path"] == "cpu" else None
    best = max(rows, key=lambda r: r["rate"]) if rows else None
    if cpu and best:
        print(f"ratio {best['rate'] / cpu['rate']:.2f}  ({best['path']} / cpu samples/s)")
    return 1 if failed or not agree else 0


if __name__ == "__main__":
    sys.exit(main())
