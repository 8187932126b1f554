"""Samples/s of the prepared-Criteo (binary) loader, the TSV reader, and our DLRM training step.

One run, side by side, on the same generated Criteo-format days and the same trial config (26
tables, dim 16, bottom MLP 13-64-16, top MLP 64-32-1, batch `--batch`):

- binary, 1 rank: `CriteoBinaryStream.batches` (memory-mapped rows -> hashed ids -> `Batch`);
- binary, 2 ranks: two processes, each taking its rank's slice of every global batch (as a
  2-worker trial does), at once; samples/s counts both ranks' rows over the slower rank's time;
- TSV: `CriteoReader` over the same days' text (what a trial on `kind: criteo` parses);
- training: `DLRMTrial.step` on pre-built batches (no data loading in the timing).

Everything runs with `--threads` torch threads (default 1: per-core rates).  Repeats alternate
between the measurements (the machine may be shared) and medians are printed; the last lines
are the ratios loader / training.  Goal: binary >= 20x CPU training and >= 5M samples/s per core.

    python benchmarks/bench_criteo_loader.py [--rows 200000] [--batch 2048] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

import torch

from scaler.data.criteo import CriteoReader, CriteoSource, write_criteo_tsv
from scaler.data.criteo_binary import CriteoBinaryStream, prepare_criteo
from scaler.data.synthetic import TRAIN
from scaler.trial import DLRMTrial
from scaler.trial.config import DLRMTrialConfig
from scaler.trial.sharded import rank_slice

TABLE_ROWS = 100_000


def trial_config(folder: Path, rows: int, batch: int) -> DLRMTrialConfig:
    return DLRMTrialConfig.model_validate(
        {
            "data": {
                "kind": "criteo_binary",
                "path": str(folder),
                "train_days": [0, 1],
                "eval_days": [2],
                "eval_rows": 1000,
            },
            "model": {
                "embedding_dim": 16,
                "num_embeddings": TABLE_ROWS,
                "bottom_mlp": [64],
                "top_mlp": [64, 32],
            },
            "train": {"samples": rows, "batch_size": batch, "dense_lr": 1e-3, "num_evals": 1},
        }
    )


def read_rank(config: DLRMTrialConfig, batch: int, rank: int, world: int, threads: int) -> float:
    """Seconds for `rank` to read its slice of every global batch of the train days."""
    torch.set_num_threads(threads)
    stream = CriteoBinaryStream(config.data)
    rows, n = config.table_rows(), stream.train.rows
    start = time.perf_counter()
    for lo in range(0, n - batch + 1, batch):
        a, b = rank_slice(batch, rank, world)
        for _ in stream.batches(TRAIN, b - a, lo + a, lo + b, rows):
            pass
    return time.perf_counter() - start


def _rank_process(args) -> float:
    return read_rank(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=200_000, help="good rows per day (2 train days)"
    )
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-batches", type=int, default=30, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("scaler").setLevel(logging.ERROR)  # the generated malformed lines
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_criteo_"))
    days = [tmp / "day_0", tmp / "day_1.gz", tmp / "day_2"]
    for d, path in enumerate(days):
        write_criteo_tsv(path, args.rows if d < 2 else 1000, seed=d, malformed=10)
    prepare_criteo(days, tmp / "bin", report=lambda _: None)
    config = trial_config(tmp / "bin", 2 * args.rows, args.batch)
    n_train = 2 * args.rows // args.batch * args.batch  # whole global batches read per repeat

    trial = DLRMTrial(config)
    rows = config.table_rows()
    train_batches = list(
        trial.data.batches(TRAIN, args.batch, 0, args.batch * args.train_batches, rows)
    )
    tsv = CriteoReader(CriteoSource(tuple(days[:2])), batch_size=args.batch, table_sizes=rows)
    pool = multiprocessing.get_context("spawn").Pool(2)

    def training() -> float:
        start = time.perf_counter()
        for b in train_batches:
            trial.step(b)
        return time.perf_counter() - start

    def tsv_pass() -> float:
        start = time.perf_counter()
        for _ in tsv:
            pass
        return time.perf_counter() - start

    def two_ranks() -> float:  # the slower rank's own reading time (not the pool's messaging)
        return max(
            pool.map(_rank_process, [(config, args.batch, r, 2, args.threads) for r in (0, 1)])
        )

    training(), read_rank(config, args.batch, 0, 1, args.threads), two_ranks()  # warm-up
    t_train, t_one, t_two, t_tsv = [], [], [], []
    for _ in range(args.repeats):
        t_train.append(training())
        t_one.append(read_rank(config, args.batch, 0, 1, args.threads))
        t_two.append(two_ranks())
        t_tsv.append(tsv_pass())
    pool.close()

    train_rate = args.batch * args.train_batches / statistics.median(t_train)
    one = n_train / statistics.median(t_one)
    two = n_train / statistics.median(t_two)
    text = 2 * args.rows / statistics.median(t_tsv)
    print(
        f"threads {args.threads}  batch {args.batch}  26 tables x {TABLE_ROWS} rows, dim 16  "
        f"train rows {2 * args.rows}  repeats {args.repeats} (medians)"
    )
    print(f"binary loader, 1 rank        {one:14,.0f} samples/s")
    print(f"binary loader, 2 ranks       {two:14,.0f} samples/s  ({two / 2:,.0f} per rank)")
    print(f"TSV reader                   {text:14,.0f} samples/s")
    print(f"DLRM training step (CPU)     {train_rate:14,.0f} samples/s")
    print(f"binary 1 rank / training     {one / train_rate:14.1f}x")
    print(f"TSV / training               {text / train_rate:14.1f}x")
    print(f"binary 1 rank / TSV          {one / text:14.1f}x")


if __name__ == "__main__":
    main()
