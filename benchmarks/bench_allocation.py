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
- chinchilla: the points in tests/data (Hoffmann et al. via Besiroglu et al.) less the 5 highest
  losses, as the authors (and bench_fit.py) do; N and D = C / 6N, cost C; the most expensive 10 %
  held out as the target (its recorded losses).  Only `random` depends on the seed here.

Measure (anytime): each policy runs once per seed (the pool's noise and the policy's seed) up to
the whole pool's cost (adaptive: up to `--max-fraction`, it refits at every step); at checkpoints
(1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100 % of the pool's cost) the law is refitted on the rows
bought within that budget.  Per case, the errors are medians over seeds.  The reference e* is the
grid's median error with its full budget (every row).  A policy "reaches" it at the smallest
checkpoint from which its median error stays <= (1 + --slack) e* at every later checkpoint (a
lucky dip does not count; ">" = not reached).  Printed per case: e*, each policy's fraction and
its median errors at 5/10/20 %; then the median fraction over cases; last, the ratio grid full
budget / adaptive's fraction (the issue's goal: >= 10, i.e. <= 10 % of the grid's compute).
A single seed's error at one target is noisy (the pool's noise moves it by about the error
itself), hence the medians; read differences below ~30 % as ties.

Bound (oracle pools, no noise drawn): what any policy could reach.  To first order, the fitted
law's log-error at the target has sd  sigma * sqrt(g (J^T J)^-1 g^T)  (J: d log L / d theta at the
rows bought, g: at the target, sigma: the relative noise), so the ratio of that sd for a design to
the sd for the whole grid needs no simulation.  Per case and budget (5/10/20/30 % of the pool's
cost) two such ratios are printed: a lower bound for any design (any rows, each at its
increment's cost, in fractions: a convex relaxation containing every real design, solved by
Frank-Wolfe and certified by its duality gap: `scaler.allocation._information`) and the best
real design found (runs bought as prefixes, i.e. a run stopped after its k-th eval point;
coordinate descent from 81 starts with the true law).  A policy "reaches e*" at budget
f only if the ratio at f is <= 1 + slack.  Each policy's own design at 10 % is scored the same way.
`--bound-only` also prints, per law, the bound at 10 % and the least fraction of the grid's cost
with a bound <= 1 + slack on denser or redundant grids (each (N, D) its own run, 3 seeds of every
run, 16 x 16): whether the goal could be met on a grid that wastes more.

Run:  .venv/bin/python benchmarks/bench_allocation.py [--seeds 3] [--max-fraction 0.3] [--quick]
      [--bound-only]
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
from scaler.allocation._information import TargetVariance, increments, lower_bound, sd_ratio
from scaler.allocation._oracle_pool import (
    DATA_BUDGET,
    EVAL_POINTS,
    FIRST_SAMPLES,
    MODELS,
    TARGET_X,
    oracle_pool,
    target_variance,
    true_law,
)
from scaler.allocation._replay import Pool, ReplayDesign, run_policy, target_mape

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_epoch_extracted.csv"
POLICIES = ("grid", "random", "halving", "adaptive")
OPTIONS: dict[str, dict] = {}  # extra keyword arguments per policy (experiments)
AT = (0.05, 0.1, 0.2)  # budgets at which errors are printed
BOUND_AT = (0.05, 0.1, 0.2, 0.3)  # budgets at which the best design is searched
DESIGN_AT = 0.1  # budget at which each policy's design is scored against the bound
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


def design_bound(law: dict, budgets) -> dict[float, tuple[float, float, list[int]]]:
    """budget -> (lower bound, best design found, its eval points per model): target-error sd
    ratios to the whole grid on the oracle pool of `law` (module docstring, "Bound")."""
    pool, var = target_variance(law)
    runs = [np.flatnonzero(pool.run == f"m{m}") for m in range(len(MODELS))]
    runs = [r[np.argsort(pool.x[r, 1])] for r in runs]  # each run's rows by samples
    step = increments(pool)  # each row's cost over the row before it in its run

    def prefix(ks) -> np.ndarray:
        w = np.zeros(len(pool.y))
        for r, k in zip(runs, ks, strict=True):
            w[r[:k]] = 1.0
        return w

    out = {}
    for budget in budgets:
        lower = lower_bound(var, step, budget)  # any rows, in fractions: bounds every design
        # achievable: prefix designs by coordinate descent from 81 starts (the j smallest models
        # in full, k eval points of the rest)
        best, best_v = None, math.inf
        for j in range(len(runs) + 1):
            for k in range(EVAL_POINTS + 1):
                ks = [EVAL_POINTS] * j + [k] * (len(runs) - j)
                w = prefix(ks)
                if step @ w > budget:
                    continue
                v, improved = var(w)[0], True
                while improved:
                    improved = False
                    for m in range(len(runs)):
                        for k2 in range(EVAL_POINTS + 1):
                            t = [*ks[:m], k2, *ks[m + 1 :]]
                            w = prefix(t)
                            vt = var(w)[0] if step @ w <= budget else math.inf
                            if vt < v * (1 - 1e-9):
                                ks, v, improved = t, vt, True
                if v < best_v:
                    best, best_v = ks, v
        out[budget] = (lower, math.sqrt(best_v / var.full), best)
    return out


def chinchilla_pool(held_fraction: float = 0.1, drop_outliers: bool = True):
    df = pd.read_csv(DATA)
    if drop_outliers:
        df = df.sort_values("loss").iloc[:-5]  # as the authors (and bench_fit.py) do
    n = df["Model Size"].to_numpy()
    cost = df["Training FLOP"].to_numpy()
    x, y = np.c_[n, cost / (6 * n)], df["loss"].to_numpy()
    held = cost > np.quantile(cost, 1 - held_fraction)
    return Pool(x[~held], y[~held], cost[~held]), x[held], y[held]


def error(pool: Pool, rows: list[int], tx, ty) -> float:
    if len(rows) <= 1 + 2 * pool.x.shape[1]:
        return math.inf
    mape = target_mape(pool.x[rows], pool.y[rows], tx, ty)[1]
    return mape if math.isfinite(mape) else math.inf  # no fit


def anytime(pool: Pool, tx, ty, policy: str, seed: int, max_fraction: float):
    """[(budget fraction, target error)] at every checkpoint <= max_fraction of one run of
    `policy`: the law refitted on the rows bought within that fraction; and {fraction: rows}."""
    design = ReplayDesign(pool=pool)
    total = pool.total_cost()
    ledger = Ledger(flops_limit=max_fraction * total * (1 + 1e-12))
    pol = make_policy(
        policy, design.build(), seed, design=design, target=tx, **OPTIONS.get(policy, {})
    )
    states: list[tuple[float, list[int]]] = [(0.0, [])]

    def step(c) -> None:
        states.append((ledger.spent_flops / total, sorted(design.bought_rows)))

    run_policy(pol, ledger, design.results, lambda c: design.paid[c], on_step=step)
    curve, bought = [], {}
    for f in CHECKPOINTS:
        if f <= max_fraction + 1e-9:
            bought[f] = [r for s, r in states if s <= f + 1e-12][-1]
            curve.append((f, error(pool, bought[f], tx, ty)))
    return curve, bought


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


def print_bound(cases, slack: float) -> dict[str, dict]:
    """Print (and return, per oracle case) `design_bound` at BOUND_AT."""
    print(
        "bound: target-error sd within each budget / the whole grid's (first order, true law): "
        "lower bound for any design, best prefix design found [eval points per model]; "
        f"reaching e* needs <= {1 + slack:g}"
    )
    by_case = {}
    for name, law, _ in cases:
        if law is None:
            continue
        b = by_case[name] = design_bound(law, BOUND_AT)
        print(
            f"  {name:32s} "
            + "  ".join(f"@{100 * f:.0f}% >={lo:.2f} {r:.2f} {ks}" for f, (lo, r, ks) in b.items())
        )
    print(
        "  median over the oracle cases: "
        + "  ".join(
            f"@{100 * f:.0f}% >={statistics.median(b[f][0] for b in by_case.values()):.2f} "
            f"{statistics.median(b[f][1] for b in by_case.values()):.2f}"
            for f in BOUND_AT
        )
    )
    return by_case


def grid_pool(law: dict, models: int, points: int, runs: bool, copies: int) -> Pool:
    """A noiseless oracle grid for the bound (noise does not change it): `models` sizes over
    MODELS' range, `points` sample counts up to DATA_BUDGET; each model one run with its eval
    points (`runs`), or each (N, D) its own run (as when the LR schedule is matched to D, so an
    earlier checkpoint is not a valid point); `copies` of every run (seeds)."""
    n = np.geomspace(MODELS[0], MODELS[-1], models)
    d = np.geomspace(FIRST_SAMPLES, DATA_BUDGET, points)
    x = np.array([(a, b) for _ in range(copies) for a in n for b in d])
    ids = np.arange(len(x))
    run = ids // points if runs else None  # copies and models in order: one id per run
    return Pool(x, true_law(law).predict(x), 6 * x[:, 0] * x[:, 1], run)


GRIDS = {  # name -> grid_pool arguments
    "bench (8 runs, 8 points)": dict(models=8, points=8, runs=True, copies=1),
    "every (N,D) its own run": dict(models=8, points=8, runs=False, copies=1),
    "3 seeds of every run": dict(models=8, points=8, runs=True, copies=3),
    "16 runs, 16 points": dict(models=16, points=16, runs=True, copies=1),
}


def print_density(slack: float) -> None:
    """Does a denser or redundant grid make the goal reachable?  Per law and grid: the lower bound
    at 10 % and the least fraction of the grid's cost at which it is <= 1 + slack."""
    print(
        f"grid density: lower bound @10% / least fraction of the grid's cost for <= {1 + slack:g}"
    )
    done = []
    for name, (law, _) in ORACLE_CASES.items():
        if law in done:  # the same law at another noise level: the same bound
            continue
        done.append(law)
        cells = []
        for grid, kw in GRIDS.items():
            pool = grid_pool(law, **kw)
            var, step = TargetVariance(pool, TARGET_X, true_law(law).theta_), increments(pool)
            lo, hi = 0.01, 1.0  # bisection in log(fraction)
            for _ in range(10):
                mid = math.sqrt(lo * hi)
                lo, hi = (lo, mid) if lower_bound(var, step, mid, 1e-3) <= 1 + slack else (mid, hi)
            cells.append(f"{grid}: >={lower_bound(var, step, 0.1):.2f} / {100 * hi:.0f}%")
        print(f"  {name:26s} " + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3, help="pool noise / policy seeds 0..K-1")
    parser.add_argument("--max-fraction", type=float, default=0.3, help="longest adaptive run")
    parser.add_argument("--slack", type=float, default=0.1, help="reach (1 + slack) * e*")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 3 oracle cases")
    parser.add_argument("--no-chinchilla", action="store_true")
    parser.add_argument("--bound-only", action="store_true", help="only the best-design bound")
    args = parser.parse_args()
    seeds = range(2 if args.quick else args.seeds)
    cases = [(f"oracle {name}", law, noise) for name, (law, noise) in ORACLE_CASES.items()]
    if args.quick:
        cases = [cases[0], cases[3], cases[4]]
    if not args.no_chinchilla:
        cases.append(("chinchilla top-10% held out", None, None))
    if args.bound_only:
        print_bound(cases, args.slack)
        print_density(args.slack)
        return

    print(
        f"median over {len(seeds)} seeds of the target error after each budget; fraction of the "
        f"pool's cost from which the median error stays <= {1 + args.slack:g} x e*, the grid's "
        "error with its full budget"
    )
    head = f"{'case':32s} {'e*':>7s} " + " ".join(f"{p:>9s}" for p in POLICIES)
    head += "  " + " ".join(f"{'err @' + str(int(100 * a)) + '% g/r/h/a':>25s}" for a in AT)
    print(head)
    fractions: dict[str, list[float]] = {p: [] for p in POLICIES}
    seconds: dict[str, float] = {p: 0.0 for p in POLICIES}
    equal: dict[tuple[str, float], list[float]] = {}  # (policy, budget) -> error / grid error
    designs: dict[str, dict[str, float]] = {}  # oracle case -> policy -> design sd ratio
    for name, law, noise in cases:
        curves: dict[str, list] = {p: [] for p in POLICIES}
        e_stars = []
        sds: dict[str, list[float]] = {p: [] for p in POLICIES}  # design sd ratios at DESIGN_AT
        variance = None if law is None else target_variance(law)[1]
        for seed in seeds:
            pool, tx, ty = chinchilla_pool() if law is None else oracle_pool(law, noise, seed)
            e_stars.append(error(pool, list(range(len(pool.y))), tx, ty))
            for p in POLICIES:
                t = time.perf_counter()
                cap = args.max_fraction if p == "adaptive" else 1.0
                curve, bought = anytime(pool, tx, ty, p, seed, cap)
                curves[p].append(curve)
                seconds[p] += time.perf_counter() - t
                if variance is not None:
                    sds[p].append(sd_ratio(variance, bought[DESIGN_AT]))
        e_star = statistics.median(e_stars)
        row = f"{name:32s} {100 * e_star:6.3f}% "
        errs = {}
        for p in POLICIES:
            fr = [f for f, _ in curves[p][0]]
            med = [(f, statistics.median(c[j][1] for c in curves[p])) for j, f in enumerate(fr)]
            frac = reached(med, (1 + args.slack) * e_star)
            fractions[p].append(frac)
            row += f"{fmt_frac(frac, args.max_fraction if p == 'adaptive' else 1.0):>9s} "
            for a in AT:
                errs[(p, a)] = at(med, a)
        for p in POLICIES[1:]:
            for a in AT:
                equal.setdefault((p, a), []).append(errs[(p, a)] / errs[("grid", a)])
        row += " " + " ".join(
            "/".join(f"{100 * errs[(p, a)]:.2f}" for p in POLICIES).rjust(25) for a in AT
        )
        print(row, flush=True)
        if law is not None:
            designs[name] = {p: statistics.median(v) for p, v in sds.items()}

    print()
    bounds = print_bound(cases, args.slack)
    print(
        f"design quality at {100 * DESIGN_AT:.0f}%, noise-free: first-order target-error sd of the "
        "rows each policy bought / the whole grid's (median over seeds)"
    )
    print(f"  {'case':32s} " + " ".join(f"{p:>9s}" for p in (*POLICIES, "best", "bound")))
    for name, d in designs.items():
        lower, best, _ = bounds[name][DESIGN_AT]
        cells = [*(d[p] for p in POLICIES), best, lower]
        print(f"  {name:32s} " + " ".join(f"{v:9.2f}" for v in cells))

    print()
    print(f"median over the {len(cases)} cases (a case not reached counts as not reached):")
    for p in POLICIES:
        cap = args.max_fraction if p == "adaptive" else 1.0
        hit = sum(math.isfinite(f) for f in fractions[p])
        print(
            f"  {p:9s} reaches e* at {fmt_frac(statistics.median(fractions[p]), cap):>6s} of the "
            f"pool's cost (in {hit}/{len(cases)} cases); {seconds[p]:.0f} s"
        )
    for p in POLICIES[1:]:
        rel = "  ".join(f"@{int(100 * a)}% {statistics.median(equal[(p, a)]):.2f}" for a in AT)
        print(f"  at equal budget, {p} error / grid error (median over cases): {rel}")
    adaptive = statistics.median(fractions["adaptive"])
    print(
        f"goal: adaptive <= 10% of the grid's compute; measured {fmt_frac(adaptive, args.max_fraction)}"
    )
    if math.isfinite(adaptive):
        print(f"ratio {1.0 / adaptive:.2f}")  # the grid's full budget / adaptive's fraction
    else:
        print(f"ratio < {1.0 / args.max_fraction:.2f}")


if __name__ == "__main__":
    main()
