"""Training throughput of scaler's DLRM trial vs a plain-PyTorch DLRM, on identical configs.

Both train the same DLRM (3 tables of 10k / 50k / 100k rows, dim 16, bottom MLP 13-64-16, dot
interaction, top MLP 22-64-32-1, batch 512) on the same pre-generated synthetic batches:
- ours: `scaler.trial.DLRMTrial.step` (TorchRec FusedEmbeddingBagCollection, row-wise Adagrad
  fused into backward, Adam on the dense part);
- reference: `nn.EmbeddingBag(sparse=True)` tables + SparseAdam (or sparse SGD), Adam on the
  dense part.
Repeats alternate between the two (the machine may be shared: alternation spreads any load
evenly) and medians are reported, with the data generator's throughput next to ours.
The last line is `ratio <ours / reference>`.

    python benchmarks/bench_dlrm_throughput.py [--device cuda] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from scaler.data.synthetic import TRAIN, SparseFeatureSpec, SyntheticConfig, synthetic_ctr
from scaler.model import DLRMConfig
from scaler.trial import DLRMTrial, DLRMTrialConfig, TrainConfig

ROWS = (10_000, 50_000, 100_000)
DIM = 16
BATCH = 512
BOTTOM = (64,)
TOP = (64, 32)


def trial_config(device: str, samples: int) -> DLRMTrialConfig:
    data = SyntheticConfig(
        features=tuple(
            SparseFeatureSpec(vocab_size=v, zipf_exponent=1.05) for v in (10**5, 10**6, 10**7)
        )
    )
    model = DLRMConfig(embedding_dim=DIM, num_embeddings=ROWS, bottom_mlp=BOTTOM, top_mlp=TOP)
    train = TrainConfig(samples=samples, batch_size=BATCH, dense_lr=1e-3, device=device)
    return DLRMTrialConfig(data=data, model=model, train=train)


class ReferenceDLRM(nn.Module):
    """Plain-PyTorch DLRM: EmbeddingBag(sparse=True) per table, dot interaction, MLPs."""

    def __init__(self, num_dense: int, rows: tuple[int, ...]) -> None:
        super().__init__()
        self.tables = nn.ModuleList(
            [nn.EmbeddingBag(r, DIM, mode="sum", sparse=True) for r in rows]
        )
        layers, width = [], num_dense
        for w in (*BOTTOM, DIM):
            layers += [nn.Linear(width, w), nn.ReLU()]
            width = w
        self.bottom = nn.Sequential(*layers)
        f = len(rows)
        layers, width = [], DIM + f * (f + 1) // 2
        for w in TOP:
            layers += [nn.Linear(width, w), nn.ReLU()]
            width = w
        self.top = nn.Sequential(*layers, nn.Linear(width, 1))
        self.register_buffer("tri", torch.triu_indices(f + 1, f + 1, offset=1), persistent=False)

    def forward(self, dense: torch.Tensor, ids: list[tuple[torch.Tensor, torch.Tensor]]):
        """dense [B, J]; ids: per table (values, offsets) -> logits [B]."""
        x = self.bottom(dense)
        pooled = [t(v, o) for t, (v, o) in zip(self.tables, ids, strict=True)]
        combined = torch.stack([x, *pooled], dim=1)  # [B, F + 1, D]
        inter = torch.bmm(combined, combined.transpose(1, 2))[:, self.tri[0], self.tri[1]]
        return self.top(torch.cat([x, inter], dim=1)).squeeze(1)


def reference_step(num_dense: int, device: torch.device, sparse_opt: str) -> Callable:
    model = ReferenceDLRM(num_dense, ROWS).to(device)
    sparse_params = list(model.tables.parameters())
    dense_params = list(model.bottom.parameters()) + list(model.top.parameters())
    if sparse_opt == "sparse_adam":
        sparse = torch.optim.SparseAdam(sparse_params, lr=1e-3)
    else:
        sparse = torch.optim.SGD(sparse_params, lr=0.05)
    dense = torch.optim.Adam(dense_params, lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()

    def step(batch) -> None:
        dense_x, ids, labels = batch
        sparse.zero_grad(set_to_none=True)
        dense.zero_grad(set_to_none=True)
        loss_fn(model(dense_x, ids), labels).backward()
        sparse.step()
        dense.step()

    return step


def reference_inputs(batch, device: torch.device):
    """(dense, [(values, offsets)] per table, labels) from a TorchRec Batch, on the device."""
    kjt = batch.sparse_features
    ids = []
    for key in kjt.keys():
        jt = kjt[key]
        ids.append((jt.values().to(device), jt.offsets()[:-1].to(device)))
    return batch.dense_features.to(device), ids, batch.labels.to(device)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batches", type=int, default=100, help="batches per timed repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--reference-optimizer", choices=["sparse_adam", "sgd"], default="sparse_adam"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = args.batches * BATCH

    config = trial_config(device.type, samples=n * (args.repeats + 2))
    trial = DLRMTrial(config)
    gen = synthetic_ctr(config.data)
    rows = config.table_rows()

    batches = list(gen.batches(TRAIN, BATCH, 0, n, rows))
    ours_batches = [b.to(device) for b in batches]
    ref_batches = [reference_inputs(b, device) for b in batches]
    ref = reference_step(config.data.num_dense, device, args.reference_optimizer)

    def run_ours() -> None:
        for b in ours_batches:
            trial.step(b)

    def run_ref() -> None:
        for b in ref_batches:
            ref(b)

    def run_end_to_end() -> None:  # our step fed straight from the generator
        for b in trial.train_batches(trial.samples + n):
            trial.step(b)

    for fn in (run_ours, run_ref):  # warm-up
        timed(fn, device)

    def run_generation(window: int) -> None:  # fresh samples (no cached block), far ahead
        start = (1000 + window) * n
        for _ in gen.batches(TRAIN, BATCH, start, start + n, rows):
            pass

    ours_t, ref_t, e2e_t, gen_t = [], [], [], []
    for r in range(args.repeats):
        ours_t.append(timed(run_ours, device))
        ref_t.append(timed(run_ref, device))
        e2e_t.append(timed(run_end_to_end, device))
        gen_t.append(timed(lambda r=r: run_generation(r), device))

    ours = n / statistics.median(ours_t)
    reference = n / statistics.median(ref_t)
    generation = n / statistics.median(gen_t)
    end_to_end = n / statistics.median(e2e_t)
    print(f"device {device}  threads {args.threads}  batch {BATCH}  tables {ROWS} dim {DIM}")
    print(f"samples per repeat {n}  repeats {args.repeats}  (medians)")
    print(f"ours (TorchRec fused row-wise Adagrad + Adam)  {ours:12,.0f} samples/s")
    print(
        f"reference (EmbeddingBag sparse + {args.reference_optimizer})  {reference:12,.0f} samples/s"
    )
    print(f"ours end-to-end incl. generation             {end_to_end:12,.0f} samples/s")
    print(f"generation                                   {generation:12,.0f} samples/s")
    print(f"generation / ours training                   {generation / ours:12.2f}x")
    print(f"ratio {ours / reference:.3f}")


if __name__ == "__main__":
    main()
