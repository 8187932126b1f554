"""Joint-law fit time: scaler's fitter vs the authors' recipe, side by side in one process.

The recipe (Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", written here
independently from their description): parameterise L = exp(LSE(a - alpha log N, b - beta log D, e)),
Huber loss (delta = 1e-3) on log residuals, L-BFGS-B with finite-difference gradients from every
point of their initialisation grid (alpha, beta in 0..2 step 0.5; e in -1..1 step 0.5;
a, b in 0..25 step 5: 4,500 starts), keep the best.

Run:  .venv/bin/python benchmarks/bench_fit.py [--repeats 5] [--recipe-starts 4500]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import huber, logsumexp

from scaler.laws import JointLaw

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_epoch_extracted.csv"


def load():
    df = pd.read_csv(DATA).sort_values("loss").iloc[:-5]  # the authors drop the 5 highest losses
    n = df["Model Size"].to_numpy()
    d = df["Training FLOP"].to_numpy() / (6 * n)
    return n, d, df["loss"].to_numpy()


def recipe_fit(n, d, y, max_starts: int):
    log_n, log_d, log_y = np.log(n), np.log(d), np.log(y)

    def loss(p):
        a, b, e, alpha, beta = p
        pred = logsumexp([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)], axis=0)
        return huber(1e-3, pred - log_y).sum()

    grid = list(
        itertools.product(
            np.arange(0, 30, 5),
            np.arange(0, 30, 5),
            np.arange(-1, 1.5, 0.5),
            np.arange(0, 2.5, 0.5),
            np.arange(0, 2.5, 0.5),
        )
    )[:max_starts]
    best = None
    for start in grid:
        res = minimize(loss, np.array(start, dtype=float), method="L-BFGS-B")
        if best is None or res.fun < best.fun:
            best = res
    a, b, e, alpha, beta = best.x
    return {"E": np.exp(e), "A": np.exp(a), "alpha": alpha, "B": np.exp(b), "beta": beta}, len(grid)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--recipe-starts", type=int, default=4500)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args()
    n, d, y = load()
    x = np.c_[n, d]

    ours = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        law = JointLaw().fit(x, y)
        ours.append(time.perf_counter() - t)
    t_ours = statistics.median(ours)
    print(f"scaler JointLaw.fit: median {t_ours * 1e3:.1f} ms over {args.repeats} runs -> {law}")

    t = time.perf_counter()
    params, starts = recipe_fit(n, d, y, args.recipe_starts)
    t_recipe = time.perf_counter() - t
    body = ", ".join(f"{k}={v:.4g}" for k, v in params.items())
    print(f"authors' recipe ({starts} L-BFGS-B starts): {t_recipe:.1f} s -> ({body})")

    t = time.perf_counter()
    boot = law.bootstrap(args.bootstrap, seed=0)
    t_boot = time.perf_counter() - t
    se = ", ".join(f"{k}={v:.3g}" for k, v in boot.se().items())
    print(f"bootstrap {args.bootstrap} resamples: {t_boot:.1f} s (se: {se})")
    print(f"goal: fit < 1 s: {t_ours:.3f} s; bootstrap < 30 s: {t_boot:.1f} s")
    print(f"ratio {t_recipe / t_ours:.0f}")


if __name__ == "__main__":
    main()
