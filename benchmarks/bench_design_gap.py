"""Where adaptive's design loses to the certified bound on oracle pools (#18's "within 1.15x").

`bench_allocation.py` scores adaptive's design at 10 and 20 % of an oracle pool's cost by its
first-order target-error sd (under the true law) over the certified lower bound for any design
within that budget (`scaler.allocation._information`).  This benchmark splits the gap, per oracle
case and budget (medians over `--seeds`; all ratios are to the bound):

- best:       the best real design found with the true law (runs bought as prefixes, coordinate
              descent: `bench_allocation.design_bound`), i.e. what rounding the relaxation costs.
- plug-in:    the best real design found with the law fitted on the whole noisy pool (more than
              any policy knows before it buys), scored under the true law: what not knowing the
              law exactly costs a design chosen all at once.
- after-id:   the bound once adaptive's identifying runs (its runs until three distinct values
              on every axis) are bought: what its law-blind start costs.
- adaptive:   adaptive as it is (its fitted law, the discrepancy test).
- no-disc:    adaptive with `discrepancy=False`: no misfit mode, the greedy choice per unit cost
              on its own fitted law after the same identifying runs.

Measured (2026-12-07, 15 seeds, 6 minutes on 2 cores): best 1.01-1.06x and plug-in the same to
two decimals in all 12 cells, so a design within 1.15x exists and a law estimated from the pool
chooses it as well as the true law does; after-id 1.01-1.08x, so the law-blind start costs
little; no-disc 1.02-1.16x, within 1.15x but on the two saturated alpha .02 (1 % noise) cells
(1.16x); adaptive 1.02-1.21x, above no-disc where the discrepancy test raises false alarms on
these pools (steep N at 10 %: 1.14 -> 1.21x).  What stays above 1.15x is the greedy one-step
choice on a noisy, nearly flat parameter axis and the misfit mode's false alarms on a law that
fits, not the fit, the start, or rounding.

Run:  .venv/bin/python benchmarks/bench_design_gap.py [--seeds 15] [--case NAME ...]
"""

from __future__ import annotations

import argparse
import math
import statistics

from bench_allocation import DESIGN_AT, ORACLE_CASES, best_prefix, design_bound

from scaler.allocation import Ledger, make_policy
from scaler.allocation._information import TargetVariance, increments, lower_bound, sd_ratio
from scaler.allocation._oracle_pool import TARGET_X, oracle_pool, target_variance
from scaler.allocation._replay import Pool, ReplayDesign, fit_law, run_policy

BUDGETS = (DESIGN_AT, 0.2)


def adaptive_rows(pool: Pool, budget: float, seed: int, **options):
    """(rows bought in the end, rows bought by the step the law was first identified) by one
    adaptive replay."""
    design = ReplayDesign(pool=pool)
    candidates = design.build()
    ledger = Ledger(flops_limit=budget * pool.total_cost() * (1 + 1e-12))
    policy = make_policy("adaptive", candidates, seed, design=design, target=TARGET_X, **options)
    identified: list[int] = []

    def step(_) -> None:
        if not identified and policy._identified():
            identified.extend(int(r) for r in design.bought_rows)

    run_policy(policy, ledger, design.results, lambda c: design.paid[c], on_step=step)
    rows = sorted(int(r) for r in design.bought_rows)
    return rows, sorted(identified) or rows


COLUMNS = ("best", "plug-in", "after-id", "adaptive", "no-disc")


def case_rows(name: str, seeds) -> dict[float, dict[str, float]]:
    law, noise = ORACLE_CASES[name]
    pool0, var = target_variance(law)
    step = increments(pool0)
    bounds = design_bound(law, BUDGETS)
    out = {}
    for budget in BUDGETS:
        bound, best, _ = bounds[budget]
        cols: dict[str, list[float]] = {c: [] for c in COLUMNS[1:]}
        for seed in seeds:
            pool = oracle_pool(law, noise, seed)[0]
            fitted = fit_law(pool.x, pool.y)
            _, _, w = best_prefix(pool0, TargetVariance(pool0, TARGET_X, fitted.theta_), budget)
            cols["plug-in"].append(math.sqrt(var(w)[0] / var.full))
            rows, start = adaptive_rows(pool, budget, seed)
            cols["adaptive"].append(sd_ratio(var, rows))
            rest = step.copy()
            rest[start] = 0.0  # bought: the rest of the budget is what is left after them
            cols["after-id"].append(lower_bound(var, rest, max(budget - step[start].sum(), 1e-12)))
            rows, _ = adaptive_rows(pool, budget, seed, discrepancy=False)
            cols["no-disc"].append(sd_ratio(var, rows))
        out[budget] = {"bound": bound, "best": best / bound}
        out[budget].update({c: statistics.median(v) / bound for c, v in cols.items()})
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=15)
    parser.add_argument("--case", action="append", choices=list(ORACLE_CASES))
    args = parser.parse_args()
    print(
        f"design sd ratio / the certified bound, medians over {args.seeds} seeds (goal for "
        "adaptive: <= 1.15); columns: module docstring"
    )
    print(f"  {'case':26s} {'budget':>6s} {'bound':>6s} " + " ".join(f"{c:>12s}" for c in COLUMNS))
    worst = {c: 0.0 for c in COLUMNS}
    for name in args.case or ORACLE_CASES:
        for budget, r in case_rows(name, range(args.seeds)).items():
            print(
                f"  {name:26s} {100 * budget:5.0f}% {r['bound']:6.2f} "
                + " ".join(f"{r[c]:11.2f}x" for c in COLUMNS),
                flush=True,
            )
            worst = {c: max(worst[c], r[c]) for c in COLUMNS}
    print("  worst cell: " + ", ".join(f"{c} {v:.2f}x" for c, v in worst.items()))
    print(f"ratio {worst['adaptive']:.2f}")  # adaptive's worst design / the bound (goal <= 1.15)


if __name__ == "__main__":
    main()
