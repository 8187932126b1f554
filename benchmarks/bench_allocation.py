"""Allocation on real and oracle scaling data: adaptive vs grid, random, halving.

Default sections (all ratios from this one run):
- public pools (`scaler.allocation._public_pools`: Chinchilla, the 15 Porian et al. 2024 IsoFLOP
  setups; fit region / held-out expensive region): per pool and budget (5, 10, 20 % of the pool's
  cost) the target error of the law refitted on what each policy bought (random: the median over
  `--seeds`, 25; the other policies do not use their seed on a pool without noise, checked),
  the whole fit region's error beside it and P(adaptive <= random), the share of random's seeds
  that adaptive beats; then how often adaptive <= random (and grid, halving), and the null:
  random against itself with other seeds, how often one cell's verdict flips by noise.
- holdout (`holdout_pools`: the README's replay example, Chinchilla with all its points): the
  same table, outside the verdict, so that a rule fitted to the 48 cells shows here.
- oracle pools (the cases below, `--seeds` of each): adaptive's design sd ratio / the certified
  lower bound at 10 and 20 %, and its median target error beside random's.
- the tolerance stop (`--slow-seeds`, 5): adaptive replays with a tolerance; the share of stopped
  sweeps whose realised target error is within it.
- speed: replay seconds per seed of each policy on a 360-row oracle pool (60 runs x 6 eval
  points), and the seconds of one live decision over 1,000 candidates.
`--anytime` adds the retired goal's table below (budget to reach the grid's full-budget error).

Retired goal (`--anytime`): budget to reach the grid's full-budget target error.

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

Measure (anytime, `--slow-seeds`): each policy runs once per seed (the pool's noise and the
policy's seed) up to the whole pool's cost (adaptive: up to `--max-fraction`, it refits at every
step); at checkpoints (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100 % of the pool's cost) the law is refitted on the rows
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

Run:  .venv/bin/python benchmarks/bench_allocation.py [--seeds 25] [--slow-seeds 5] [--quick] [--anytime]
      [--max-fraction 0.3] [--bound-only]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

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
from scaler.allocation._public_pools import chinchilla_pool, holdout_pools, public_pools
from scaler.allocation._replay import Pool, ReplayDesign, replay, run_policy, target_mape
from scaler.spec import Oracle, OracleLaw
from scaler.trial.oracle import oracle_points

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


def best_prefix(
    pool: Pool, var: TargetVariance, budget: float
) -> tuple[list[int], float, np.ndarray]:
    """The best prefix design found under `var`'s law within `budget` (a fraction of the oracle
    pool's cost): (eval points bought per model, its target variance, its 0/1 row weights).
    Coordinate descent from 81 starts (the j smallest models in full, k eval points of the
    rest)."""
    runs = [np.flatnonzero(pool.run == f"m{m}") for m in range(len(MODELS))]
    runs = [r[np.argsort(pool.x[r, 1])] for r in runs]  # each run's rows by samples
    step = increments(pool)  # each row's cost over the row before it in its run

    def prefix(ks) -> np.ndarray:
        w = np.zeros(len(pool.y))
        for r, k in zip(runs, ks, strict=True):
            w[r[:k]] = 1.0
        return w

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
    return best, best_v, prefix(best)


def design_bound(law: dict, budgets) -> dict[float, tuple[float, float, list[int]]]:
    """budget -> (lower bound, best design found, its eval points per model): target-error sd
    ratios to the whole grid on the oracle pool of `law` (module docstring, "Bound")."""
    pool, var = target_variance(law)
    step = increments(pool)  # each row's cost over the row before it in its run
    out = {}
    for budget in budgets:
        lower = lower_bound(var, step, budget)  # any rows, in fractions: bounds every design
        best, best_v, _ = best_prefix(pool, var, budget)  # achievable: runs bought as prefixes
        out[budget] = (lower, math.sqrt(best_v / var.full), best)
    return out


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


def replay_error(pool: Pool, tx, ty, policy: str, budget: float, seed: int, **options) -> float:
    """Target error of one replay (inf when no law could be fitted on what it bought)."""
    err = replay(pool, tx, ty, policy=policy, budget=budget, seed=seed, **options).target_mape
    return err if math.isfinite(err) else math.inf


def pct(v: float) -> str:
    return "   no fit" if not math.isfinite(v) else f"{100 * v:8.2f}%"


HOLDOUT = (
    "holdout, not in the verdict above (the README's replay example; check every allocation "
    "change here too)"
)
SEEDED = ("random",)  # on public pools (no noise drawn) only random's choices depend on the seed


def print_public(seeds, budgets=AT, pools=None, what="public pools") -> float:
    """Per public pool and budget: each policy's target error, medians over seeds.

    A public pool draws no noise, and of the policies only `random` uses its seed there (grid and
    halving have none; adaptive's seeds only the tolerance stop's bootstrap): their error is one
    number per cell, checked here against a second seed.  Random's median is over `seeds` (25 by
    default: with 5, random's own median moved by up to 5.9x between two sets of seeds, the null
    line below), and each cell also gets P(adaptive <= random): the share of random's seeds that
    adaptive's error beats."""
    pools = public_pools() if pools is None else pools
    print(
        f"{what}: target error of the law fitted on what each policy bought (random: median "
        f"over {len(seeds)} seeds; the others do not depend on the seed here, checked on seed 1; "
        "'no fit': too few rows for the law), the whole fit region's beside it, and P(adaptive "
        "<= random), the share of random's seeds adaptive beats"
    )
    print(
        f"  {'pool':46s} {'budget':>6s} {'whole':>9s} "
        + " ".join(f"{p:>9s}" for p in POLICIES)
        + "  P(a<=r)"
    )
    wins = {p: 0 for p in POLICIES[:-1]}
    ratios: list[float] = []
    shares: list[float] = []
    cells = 0
    seconds = {p: [] for p in POLICIES}
    for name, (pool, tx, ty) in pools.items():
        whole = error(pool, list(range(len(pool.y))), tx, ty)
        for b in budgets:
            med, errs = {}, {}
            for p in POLICIES:
                errs[p] = []
                for seed in seeds if p in SEEDED else seeds[:1]:
                    t = time.perf_counter()
                    errs[p].append(replay_error(pool, tx, ty, p, b, seed))
                    seconds[p].append(time.perf_counter() - t)
                if p not in SEEDED and len(seeds) > 1:  # the claim above, checked
                    again = replay_error(pool, tx, ty, p, b, seeds[1])
                    if again != errs[p][0]:
                        raise AssertionError(f"{p} on {name} at {b}: seed-dependent ({again})")
                med[p] = statistics.median(errs[p])
            cells += 1
            for p in wins:
                wins[p] += med["adaptive"] <= med[p]
            share = float(np.mean([med["adaptive"] <= e for e in errs["random"]]))
            shares.append(share)
            if math.isfinite(med["random"]) and math.isfinite(med["adaptive"]):
                ratios.append(med["adaptive"] / med["random"])
            print(
                f"  {name[:46]:46s} {100 * b:5.0f}% {pct(whole)} "
                + " ".join(pct(med[p]) for p in POLICIES)
                + f"  {share:7.2f}",
                flush=True,
            )
    print(
        f"  adaptive's median error <= the other policy's, of {cells} pool x budget cells: "
        + ", ".join(f"{p} {wins[p]}" for p in wins)
    )
    print(
        f"  adaptive / random error, median over cells where both fit: "
        f"{statistics.median(ratios):.2f} (quartiles {np.quantile(ratios, 0.25):.2f}-"
        f"{np.quantile(ratios, 0.75):.2f}); P(adaptive <= random) over cells: median "
        f"{statistics.median(shares):.2f}, lowest {min(shares):.2f}"
    )
    print(
        "  replay seconds per seed (median): "
        + ", ".join(f"{p} {statistics.median(v):.2f}" for p, v in seconds.items())
    )
    return statistics.median(ratios)


def print_null(seeds, budgets=AT) -> None:
    """How noisy one cell's verdict is: random against itself (seeds K.. instead of 0..K-1), the
    same medians of the same number of seeds. A policy no better or worse than random "wins" a
    cell about half the time, so "<= random in every cell" cannot be a goal for near-ties."""
    other = [1000 + s for s in seeds]
    wins, ratios, cells = 0, [], 0
    for pool, tx, ty in public_pools().values():
        for b in budgets:
            first = statistics.median(replay_error(pool, tx, ty, "random", b, s) for s in seeds)
            second = statistics.median(replay_error(pool, tx, ty, "random", b, s) for s in other)
            cells += 1
            wins += second <= first  # counted as print_public counts adaptive's (no fit: inf)
            if math.isfinite(first) and math.isfinite(second) and first > 0:
                ratios.append(second / first)
    print(
        f"null (random vs random, other seeds, {len(seeds)} per median): the second <= the first "
        f"in {wins} of {cells} public cells; where both fit ({len(ratios)}), second / first: "
        f"median {statistics.median(ratios):.2f}, "
        f"quartiles {np.quantile(ratios, 0.25):.2f}-{np.quantile(ratios, 0.75):.2f}, "
        f"range {min(ratios):.2f}-{max(ratios):.2f}"
    )


def print_oracle(seeds, budgets=(0.1, 0.2)) -> None:
    """Adaptive's design sd ratio against the certified bound, and its error beside random's."""
    print(
        "oracle pools: adaptive's design sd ratio (first order, true law, median over seeds) / "
        "the lower bound for any design (goal <= 1.15), and median target errors"
    )
    for name, (law, noise) in ORACLE_CASES.items():
        pool0, var = target_variance(law)
        lower = {b: lower_bound(var, increments(pool0), b) for b in budgets}
        row = f"  {name:26s}"
        for b in budgets:
            sds, err = [], {"adaptive": [], "random": []}
            for seed in seeds:
                pool, tx, ty = oracle_pool(law, noise, seed)
                for p in err:
                    r = replay(pool, tx, ty, policy=p, budget=b, seed=seed)
                    err[p].append(r.target_mape if math.isfinite(r.target_mape) else math.inf)
                    if p == "adaptive":
                        sds.append(sd_ratio(var, r.rows))
            sd = statistics.median(sds)
            row += (
                f"  @{100 * b:.0f}% sd {sd:.2f}/{lower[b]:.2f} = {sd / lower[b]:.2f}x, error "
                f"{100 * statistics.median(err['adaptive']):.2f}% (random "
                f"{100 * statistics.median(err['random']):.2f}%)"
            )
        print(row, flush=True)


def print_tolerance(seeds, tolerances=(0.01, 0.005)) -> None:
    """Adaptive with a tolerance and the whole pool as budget: of the sweeps that stopped on it,
    how many have a realised target error within the tolerance."""
    print("tolerance stop: realised target error <= tolerance, of the replays that stopped on it")
    for tol in tolerances:
        ok = stopped = 0
        for law, noise in ORACLE_CASES.values():
            for seed in seeds:
                pool, tx, ty = oracle_pool(law, noise, seed)
                r = replay(pool, tx, ty, policy="adaptive", budget=1.0, seed=seed, tolerance=tol)
                if r.spent_fraction < 1.0 - 1e-9:
                    stopped += 1
                    ok += r.target_mape <= tol
        share = ok / stopped if stopped else math.nan
        print(
            f"  tolerance {100 * tol:.1f}%: {ok}/{stopped} stopped replays within it ({100 * share:.0f}%)"
        )


def pool_360(seed: int) -> tuple[Pool, np.ndarray, np.ndarray]:
    """60 runs (10 models x 6 data budgets) x 6 eval points of the balanced oracle law."""
    law, noise = ORACLE_CASES["balanced a.30 b.28 n.3%"]
    oracle = Oracle(law=OracleLaw(**law), noise=noise)
    rows = []
    for m, n in enumerate(np.geomspace(1e5, 1e8, 10)):
        for b, budget in enumerate(np.geomspace(1e7, 1e9, 6)):
            schedule = [int(d) for d in np.geomspace(budget / 32, budget, 6)]
            for p in oracle_points(oracle, n, int(budget), schedule, seed * 1000 + 6 * m + b):
                rows.append((n, p.samples, p.loss, p.flops, f"m{m}b{b}"))
    n, d, y, cost, run = map(np.array, zip(*rows, strict=True))
    tx = np.array([[1e9, 1e10]])
    return Pool(np.c_[n, d], y, cost, run), tx, true_law(law).predict(tx)


def decision_seconds(repeats: int = 5) -> list[float]:
    """Seconds of `propose` over a live space of 1,000 candidates (40 sizes x 25 budgets, six
    eval points each), with 40 runs observed; each repeat observes one more run first."""
    from scaler.allocation import Design, build_candidates, candidate_size

    law, noise = ORACLE_CASES["balanced a.30 b.28 n.3%"]
    oracle = Oracle(law=OracleLaw(**law), noise=noise)
    cands = build_candidates(
        [{"n_params": float(n)} for n in np.geomspace(1e5, 1e8, 40).round()],
        samples=[int(d) for d in np.geomspace(1e7, 1e9, 25)],
        compute=None,
        flops_per_sample=lambda p: 6 * p["n_params"],
    )
    design = Design(size_of=candidate_size)
    policy = make_policy("adaptive", cands, 0, design=design)
    ledger = Ledger(flops_limit=0.5 * sum(c.flops for c in cands))
    rng = np.random.default_rng(0)
    out = []
    for step in range(40 + repeats):
        if step >= 40:
            t = time.perf_counter()
        c = policy.propose(ledger) if step >= 40 else cands[int(rng.integers(len(cands)))]
        if step >= 40:
            out.append(time.perf_counter() - t)
        if c is None:
            break
        if step < 40:
            policy.chosen.append(cands.index(c))
        n = candidate_size(c)
        schedule = design.schedule(c.samples)
        points = [
            {"samples": p.samples, "loss": p.loss}
            for p in oracle_points(oracle, n, c.samples, schedule, step)
        ]
        policy.on_result(f"t{step}", c, points)
        policy.on_complete(f"t{step}", c)
    return out


def print_speed(seeds) -> None:
    print("speed: replay on a 360-row oracle pool (60 runs x 6 eval points) at 10 %, per seed")
    for p in POLICIES:
        secs = []
        for seed in seeds:
            pool, tx, ty = pool_360(seed)
            t = time.perf_counter()
            replay(pool, tx, ty, policy=p, budget=0.1, seed=seed)
            secs.append(time.perf_counter() - t)
        print(f"  {p:9s} median {statistics.median(secs):6.2f} s (max {max(secs):.2f} s)")
    secs = decision_seconds()
    print(
        f"  one live decision over 1,000 candidates: median {statistics.median(secs):.3f} s "
        f"(max {max(secs):.3f} s, goal < 1 s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--seeds",
        type=int,
        default=25,
        help="seeds 0..K-1: random's on public pools (and the null's), pool noise and policy on "
        "oracle pools",
    )
    parser.add_argument(
        "--slow-seeds", type=int, default=5, help="seeds of the tolerance stop and --anytime"
    )
    parser.add_argument("--max-fraction", type=float, default=0.3, help="longest adaptive run")
    parser.add_argument("--slack", type=float, default=0.1, help="reach (1 + slack) * e*")
    parser.add_argument("--quick", action="store_true", help="3 seeds (2 slow), 3 oracle cases")
    parser.add_argument("--no-chinchilla", action="store_true")
    parser.add_argument("--bound-only", action="store_true", help="only the best-design bound")
    parser.add_argument("--anytime", action="store_true", help="also the retired goal's table")
    args = parser.parse_args()
    seeds = range(3 if args.quick else args.seeds)
    slow = range(2 if args.quick else args.slow_seeds)
    if not args.bound_only:
        public = print_public(seeds)
        print_null(seeds)
        print()
        print_public(seeds, pools=holdout_pools(), what=HOLDOUT)
        print()
        print_oracle(seeds)
        print()
        print_tolerance(slow)
        print()
        print_speed(range(2 if args.quick else 3))
        if (
            not args.anytime
        ):  # random's error / adaptive's on the public pools (> 1: adaptive's lower)
            print(f"ratio {1 / public:.2f}")
            return
        print()
    cases = [(f"oracle {name}", law, noise) for name, (law, noise) in ORACLE_CASES.items()]
    if args.quick:
        cases = [cases[0], cases[3], cases[4]]
    if not args.no_chinchilla:
        cases.append(("chinchilla top-10% held out", None, None))
    if args.bound_only:
        print_bound(cases, args.slack)
        print_density(args.slack)
        return

    seeds = slow  # the anytime curves refit at every step
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
