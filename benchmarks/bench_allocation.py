"""Budget to reach the grid's full-budget target error: adaptive vs grid, random, halving.

Every policy replays the same pools (`scaler.allocation._replay`, the engine of `scaler replay`):
it may only "run" rows of a pool, a row of a run costs only its increment over the run's rows
already bought (earlier checkpoints come free), and the law is refitted (`JointLaw`) on the rows
bought so far to predict the target.

Pools:
- oracle: a grid of models x data budgets, one run per model with its eval points at increasing
  samples (`scaler.trial.oracle.oracle_points`: the oracle backend's law + seeded log-normal noise
  per point), cost 6ND.  Several exponents and noise levels, including the seed paper's regime
  where parameter scaling saturates (alpha 0.0-0.05) while data keeps paying.  Target: the
  noiseless law at a point beyond the pool (10x the largest model, 10x its data: 100x the
  compute of the largest run).
- chinchilla: the 245 points in tests/data (Hoffmann et al. via Besiroglu et al.), N and
  D = C / 6N, cost C; the most expensive 10 % held out as the target (its recorded losses).

Measure (anytime): each policy runs once per seed up to `--max-fraction` of the pool's cost; at
checkpoints (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100 % of the pool's cost) the law is refitted
on the rows bought within that budget.  The reference error e* is the grid's with its full budget
(every row).  A policy "reaches" it at the smallest checkpoint from which its error stays
<= (1 + --slack) e* at every later checkpoint (a lucky dip does not count).  Printed per case:
e*, each policy's fraction (">" = not within `--max-fraction`) and its errors at 5/10/20 %; then
medians over cases x seeds; last, the ratio grid full budget / adaptive's fraction (goal >= 10).

Run:  .venv/bin/python benchmarks/bench_allocation.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scaler.allocation import Ledger, make_policy
from scaler.allocation._replay import Pool, ReplayDesign, law_for, run_policy
from scaler.spec import Oracle, OracleLaw
from scaler.trial.oracle import oracle_points

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_epoch_extracted.csv"
POLICIES = ("grid", "random", "halving", "adaptive")
AT = (0.05, 0.1, 0.2)  # budgets at which errors are printed
CHECKPOINTS = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)  # refits here

# name -> (law, noise)
ORACLE_CASES = {
    "balanced a.30 b.28 n.3%": ({"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28}, 0.003),
    "balanced a.30 b.28 n1%": ({"E": 0.45, "A": 60.0, "alpha": 0.30, "B": 25.0, "beta": 0.28}, 0.01),
    "steep-N a.50 b.20 n.3%": ({"E": 0.40, "A": 300.0, "alpha": 0.50, "B": 8.0, "beta": 0.20}, 0.003),
    "saturated a.05 b.30 n.3%": ({"E": 0.40, "A": 0.30, "alpha": 0.05, "B": 30.0, "beta": 0.30}, 0.003),
    "saturated a.02 b.30 n1%": ({"E": 0.40, "A": 0.20, "alpha": 0.02, "B": 30.0, "beta": 0.30}, 0.01),
    "saturated a.00 b.35 n.3%": ({"E": 0.50, "A": 0.10, "alpha": 0.0, "B": 40.0, "beta": 0.35}, 0.003),
}  # fmt: skip
MODELS = np.geomspace(1e5, 1e8, 8)  # parameters of the pool's models
DATA_BUDGET = 10**9  # samples of every run; eval points log-spaced from DATA_BUDGET / 2^9
EVAL_POINTS = 8


def oracle_pool(law: dict, noise: float, seed: int):
    oracle = Oracle(law=OracleLaw(**law), noise=noise)
    schedule = [int(d) for d in np.geomspace(DATA_BUDGET / 2**9, DATA_BUDGET, EVAL_POINTS)]
    rows = []
    for m, n in enumerate(MODELS):
        for p in oracle_points(oracle, n, DATA_BUDGET, schedule, seed * 1000 + m):
            rows.append((n, p.samples, p.loss, p.flops, f"m{m}"))
    n, d, y, cost, run = map(np.array, zip(*rows, strict=True))
    pool = Pool(np.c_[n, d], y, cost, run)
    tx = np.array([[10 * MODELS[-1], 10 * DATA_BUDGET]])
    ty = np.array(
        [law["E"] + law["A"] * tx[0, 0] ** -law["alpha"] + law["B"] * tx[0, 1] ** -law["beta"]]
    )
    return pool, tx, ty


def chinchilla_pool(held_fraction: float = 0.1):
    df = pd.read_csv(DATA)
    n = df["Model Size"].to_numpy()
    cost = df["Training FLOP"].to_numpy()
    x, y = np.c_[n, cost / (6 * n)], df["loss"].to_numpy()
    held = cost > np.quantile(cost, 1 - held_fraction)
    return Pool(x[~held], y[~held], cost[~held]), x[held], y[held]


def error(pool: Pool, rows: list[int], tx, ty) -> float:
    if len(rows) <= 1 + 2 * pool.x.shape[1]:
        return math.inf
    try:
        law = law_for(pool.x.shape[1]).fit(pool.x[rows], pool.y[rows])
    except (ValueError, RuntimeError):
        return math.inf
    return float(np.mean(np.abs(law.predict(tx) - ty) / ty))


def anytime(pool: Pool, tx, ty, policy: str, seed: int, max_fraction: float):
    """[(budget fraction, target error)] at every checkpoint <= max_fraction of one run of
    `policy`: the law refitted on the rows bought within that fraction."""
    design = ReplayDesign(pool=pool)
    total = pool.total_cost()
    ledger = Ledger(flops_limit=max_fraction * total * (1 + 1e-12))
    pol = make_policy(policy, design.build(), seed, design=design, target=tx)
    states: list[tuple[float, list[int]]] = [(0.0, [])]

    def step(c) -> None:
        states.append((ledger.spent_flops / total, sorted(design.bought_rows)))

    run_policy(pol, ledger, design.results, lambda c: design.paid[c], on_step=step)
    curve = []
    for f in CHECKPOINTS:
        if f <= max_fraction + 1e-9:
            rows = [r for s, r in states if s <= f + 1e-12][-1]
            curve.append((f, error(pool, rows, tx, ty)))
    return curve


def reached(curve, threshold: float) -> float:
    """Smallest checkpoint from which the error stays <= threshold (inf if never)."""
    out = math.inf
    for frac, err in reversed(curve):
        if err > threshold:
            break
        out = frac
    return out


def at(curve, fraction: float) -> float:
    """Error with `fraction` of the budget (a checkpoint)."""
    errs = [e for f, e in curve if abs(f - fraction) < 1e-9]
    return errs[-1] if errs else math.inf


def fmt_frac(f: float, cap: float) -> str:
    return f">{100 * cap:.0f}%" if not math.isfinite(f) else f"{100 * f:.1f}%"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3, help="pool noise / policy seeds 0..K-1")
    parser.add_argument("--max-fraction", type=float, default=1.0, help="longest run per policy")
    parser.add_argument("--slack", type=float, default=0.1, help="reach (1 + slack) * e*")
    parser.add_argument("--quick", action="store_true", help="1 seed, 3 oracle cases")
    parser.add_argument("--no-chinchilla", action="store_true")
    args = parser.parse_args()
    seeds = range(1 if args.quick else args.seeds)
    cases = [(name, *spec) for name, spec in ORACLE_CASES.items()]
    if args.quick:
        cases = [cases[0], cases[3], cases[4]]
    work = [
        (f"oracle {name}", s, oracle_pool(law, noise, s))
        for name, law, noise in cases
        for s in seeds
    ]
    if not args.no_chinchilla:
        work += [("chinchilla top-10%", s, chinchilla_pool()) for s in seeds]

    head = f"{'case':30s} {'seed':>4s} {'e*':>7s} " + " ".join(f"{p:>9s}" for p in POLICIES)
    head += "   " + " ".join(f"{'err@' + str(int(100 * a)) + '%':>24s}" for a in AT)
    print("fraction of the pool's cost at which each policy reaches (1+slack) x the grid's "
          f"full-budget target error e* (slack {args.slack:g}); errors: grid/random/halving/adaptive")  # fmt: skip
    print(head)
    fractions: dict[str, list[float]] = {p: [] for p in POLICIES}
    errors_at: dict[tuple[str, float], list[float]] = {}
    seconds: dict[str, float] = {p: 0.0 for p in POLICIES}
    for name, seed, (pool, tx, ty) in work:
        e_star = error(pool, list(range(len(pool.y))), tx, ty)
        threshold = (1 + args.slack) * e_star
        row = f"{name:30s} {seed:4d} {100 * e_star:6.3f}% "
        errs = {}
        for p in POLICIES:
            t = time.perf_counter()
            curve = anytime(pool, tx, ty, p, seed, args.max_fraction)
            seconds[p] += time.perf_counter() - t
            f = reached(curve, threshold)
            fractions[p].append(f)
            row += f"{fmt_frac(f, args.max_fraction):>9s} "
            for a in AT:
                errs[(p, a)] = at(curve, a)
                errors_at.setdefault((p, a), []).append(at(curve, a))
        row += "  " + " ".join(
            "/".join(f"{100 * errs[(p, a)]:.2f}" for p in POLICIES).rjust(24) for a in AT
        )
        print(row, flush=True)

    def med(v):
        return statistics.median(v)

    print()
    print(f"median over {len(work)} case x seed runs (runs not reaching it count as inf):")
    for p in POLICIES:
        errs = "  ".join(f"err@{int(100 * a)}% {100 * med(errors_at[(p, a)]):.2f}%" for a in AT)
        hit = sum(math.isfinite(f) for f in fractions[p])
        print(
            f"  {p:9s} reaches e* at {fmt_frac(med(fractions[p]), args.max_fraction):>7s} of the "
            f"pool's cost (reached in {hit}/{len(work)});  {errs};  {seconds[p]:.1f} s"
        )
    ratio = 1.0 / med(fractions["adaptive"])  # the grid's full budget is 1
    print(f"goal: adaptive <= 10% of the grid's compute: {fmt_frac(med(fractions['adaptive']), args.max_fraction)}")  # fmt: skip
    print(f"ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
