"""Warm-started vs cold per-point studies: trials until a point's optimum is found.

On an oracle law with a learning-rate optimum lr*(N) = a N^-b, runs the same tuned sweep twice
(in-process, `scaler.simulate`): cold (every point's study starts from the full range) and warm
(from the 4th point on, studies start from the fitted rule).  For every point after the first
three, counts the trials until one lands within `--tol` (in ln lr) of the true optimum; prints
the medians and their ratio (cold / warm) over several seeds.

    python benchmarks/bench_tuning.py [--seeds 5] [--trials 20] [--tol 0.15]
"""

from __future__ import annotations

import argparse
import math
import statistics

from scaler.simulate import simulate
from scaler.spec import parse_spec
from scaler.sweep import make_searcher

LR = {"a": 0.5, "b": 0.25}


def trials_to_optimum(warm: bool, seed: int, trials: int, tol: float) -> list[int]:
    spec = parse_spec(
        {
            "name": "bench",
            "backend": "oracle",
            "seed": seed,
            "oracle": {
                "law": {"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28},
                "noise": 0.002,
                "hparams": {"lr": {**LR, "sensitivity": 0.2, "default": 0.01}},
            },
            "trial": {"eval_points": 4},
            "axes": {"params": {"n_params": {"low": 1e4, "high": 1e9, "num": 11}}, "data": [1e6]},
            "tuning": {
                "hparams": {"lr": {"low": 1e-4, "high": 10.0}},
                "trials_per_point": trials,
                "warm_start": warm,
                "prune": False,
                "seed": seed,
            },
            "budget": {"trials": 10_000},
        }
    )
    searcher = make_searcher(spec)
    simulate(spec, searcher.policy, searcher.ledger)
    counts = []
    for i, point in enumerate(searcher.policy.points.values()):
        if i < 3:
            continue  # cold in both arms: the rule needs 3 tuned points
        optimum = LR["a"] * point.n_params ** -LR["b"]
        hits = [
            t.number for t in point.study.trials if abs(math.log(t.params["lr"] / optimum)) <= tol
        ]
        counts.append((min(hits) + 1) if hits else trials + 1)  # not found: count as budget + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--tol", type=float, default=0.15)
    args = parser.parse_args()
    cold, warm = [], []
    for seed in range(args.seeds):
        cold += trials_to_optimum(False, seed, args.trials, args.tol)
        warm += trials_to_optimum(True, seed, args.trials, args.tol)
    mc, mw = statistics.median(cold), statistics.median(warm)
    print(
        f"points compared: {len(cold)} per arm ({args.seeds} seeds); tolerance |ln lr - ln lr*| <= {args.tol}"
    )
    print(f"cold study: median {mc} trials to the optimum (mean {statistics.mean(cold):.1f})")
    print(f"warm start: median {mw} trials to the optimum (mean {statistics.mean(warm):.1f})")
    print(f"ratio {mc / mw:.2f}")


if __name__ == "__main__":
    main()
