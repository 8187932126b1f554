"""`scaler replay POOL.csv --x COL[,COL] --y COL --budget F --policy NAME ...` — what-if a policy
had chosen from a recorded pool of runs.  The same policy code as a live sweep."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pandas as pd

from scaler._expr import evaluate, parse_named, split_top_level
from scaler.allocation import POLICIES
from scaler.allocation._information import TargetVariance, increments, lower_bound, sd_ratio
from scaler.allocation._replay import Pool, fit_law, fitted_mape, replay
from scaler.cli.fit import axis_values, loss_values, read_csv


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="replay an allocation policy on a recorded pool of points")
    p.add_argument("pool", nargs="?", help="CSV with one point per row (or --from-sweep)")
    p.add_argument(
        "--from-sweep",
        metavar="NAME",
        help="replay a recorded sweep: its eval points from MLflow are the pool (columns params, "
        "samples, loss, flops, trial_id; defaults --x params,samples --y loss --cost flops "
        "--run trial_id)",
    )
    p.add_argument("--tracking-uri", help="MLflow tracking URI of --from-sweep")
    p.add_argument("--x", help="axis column(s) as in `scaler fit` (N,D or D)")
    p.add_argument("--y", help="loss column")
    p.add_argument(
        "--cost", default=None, help="cost column or expression, or 6ND (default: 6ND with 2 axes)"
    )
    p.add_argument("--run", default=None, help="run column: rows of a run at increasing D")
    p.add_argument("--budget", type=float, required=True, help="fraction of the pool's cost")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--target", metavar="TARGET.csv", help="rows to predict (same columns)")
    target.add_argument(
        "--target-top-cost", type=float, metavar="F", help="hold out the most expensive fraction F"
    )
    p.add_argument("--policy", required=True, choices=sorted(POLICIES))
    p.add_argument("--seeds", type=int, default=1, metavar="K", help="seeds 0..K-1")
    p.add_argument("--tolerance", type=float, default=None, help="adaptive: stop at this rel. sd")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _costs(df: pd.DataFrame, spec: str | None, x: np.ndarray, path: str) -> np.ndarray:
    if spec is None or spec.upper() == "6ND":
        if x.shape[1] != 2:
            if spec is None:
                return x[:, -1].copy()
            raise ValueError("--cost 6ND needs two --x axes (N,D)")
        return 6.0 * x[:, 0] * x[:, 1]
    try:
        cost = evaluate(spec, df)
    except ValueError as exc:
        raise ValueError(f"{path}: --cost: {exc}") from None
    bad = np.flatnonzero(~(cost > 0) | ~np.isfinite(cost))
    if len(bad):
        raise ValueError(f"{path}: --cost must be > 0, got {cost[bad[0]]} at row {bad[0] + 1}")
    return cost


def _pool_frame(args) -> tuple[pd.DataFrame, str]:
    """The pool's rows and how errors name it; --from-sweep fills in the column defaults."""
    if (args.pool is None) == (args.from_sweep is None):
        raise ValueError("give a POOL.csv or --from-sweep NAME (one of them)")
    if args.pool is not None:
        if args.x is None or args.y is None:
            raise ValueError("--x and --y are required with a POOL.csv")
        return read_csv(args.pool), args.pool
    from scaler.query import fitted_points

    df = fitted_points(args.from_sweep, args.tracking_uri)
    if args.x is None:
        args.x = "params,samples" if df["params"].nunique() > 1 else "samples"
    args.y = args.y or "loss"
    args.cost = args.cost or "flops"
    args.run = args.run or "trial_id"
    return df, f"sweep {args.from_sweep}"


def load(args):
    """(pool, target x, target y) from the arguments; every bad input a clear error."""
    if not 0 < args.budget <= 1:
        raise ValueError(f"--budget is {args.budget}, but must be in (0, 1]")
    if args.seeds < 1:
        raise ValueError(f"--seeds is {args.seeds}, but must be >= 1")
    df, where = _pool_frame(args)
    specs = [parse_named(s) for s in split_top_level(args.x)]
    if len(specs) not in (1, 2):
        raise ValueError(f"--x takes 1 or 2 axes, got {len(specs)}")
    x = axis_values(df, specs, where)
    y = loss_values(df, args.y, where)
    bad = np.flatnonzero(~(y > 0) | ~np.isfinite(y))
    if len(bad):
        raise ValueError(f"{where}: --y must be > 0, got {y[bad[0]]} at row {bad[0] + 1}")
    cost = _costs(df, args.cost, x, where)
    run = None
    if args.run is not None:
        if args.run not in df.columns:
            raise ValueError(f"{where}: no --run column {args.run!r}")
        run = df[args.run].astype(str).to_numpy()
    if args.target is not None:
        tdf = read_csv(args.target)
        tx = axis_values(tdf, specs, args.target)
        ty = loss_values(tdf, args.y, args.target)
        pool_keys = {tuple(r) for r in np.round(np.log(x), 9)}
        overlap = [i for i, r in enumerate(np.round(np.log(tx), 9)) if tuple(r) in pool_keys]
        if overlap:
            raise ValueError(
                f"{args.target}: target row {overlap[0] + 1} has the same --x as a pool row "
                "(the target must be held out of the pool)"
            )
        keep = np.ones(len(y), dtype=bool)
    else:
        f = args.target_top_cost
        if not 0 < f < 1:
            raise ValueError(f"--target-top-cost is {f}, but must be in (0, 1)")
        cut = np.quantile(cost, 1 - f)
        held = cost > cut
        if not held.any():
            raise ValueError(f"--target-top-cost {f} holds out no row (cost cut {cut:g})")
        tx, ty, keep = x[held], y[held], ~held
    pool = Pool(x[keep], y[keep], cost[keep], None if run is None else run[keep])
    return pool, tx, ty


def run(args) -> int:
    pool, tx, ty = load(args)
    seeds = [
        replay(
            pool, tx, ty, policy=args.policy, budget=args.budget, seed=s, tolerance=args.tolerance
        )
        for s in range(args.seeds)
    ]
    whole = fit_law(pool.x, pool.y)  # the reference, and the stand-in for the true law
    full_params, full_mape = fitted_mape(whole, tx, ty)
    sd, bound = design_quality(pool, tx, [r.rows for r in seeds], args.budget, whole)
    out = {
        "seeds": [r.to_dict() | {"design_sd_ratio": v} for r, v in zip(seeds, sd, strict=True)],
        "median": {
            "spent_fraction": statistics.median(r.spent_fraction for r in seeds),
            "rows": statistics.median(len(r.rows) for r in seeds),
            "target_mape": statistics.median(r.target_mape for r in seeds),
            "design_sd_ratio": _median(sd),
        },
        "full_pool": {"params": full_params, "target_mape": full_mape},
        "design_sd_ratio_bound": bound,
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"policy {args.policy}, budget {args.budget:g} of the pool's cost, {len(seeds)} seed(s)")
    for r in seeds:
        print(
            f"  seed {r.seed}: spent {100 * r.spent_fraction:.1f} %, {len(r.rows)} rows, "
            f"target error {100 * r.target_mape:.3f} %"
        )
    m = out["median"]
    print(
        f"median: spent {100 * m['spent_fraction']:.1f} %, {m['rows']:g} rows, "
        f"target error {100 * m['target_mape']:.3f} %"
    )
    print(f"whole pool (reference): target error {100 * full_mape:.3f} %")
    if m["design_sd_ratio"] is not None and bound is not None:
        print(
            f"design: target-error sd {m['design_sd_ratio']:.2f} x the whole pool's (first "
            f"order, under the whole pool's law); no design within the budget beats {bound:.2f} x"
        )
    return 0


def design_quality(pool: Pool, tx, designs: list[list[int]], budget: float, law):
    """How informative each design is about the target and the most any design within `budget`
    could be (`scaler.allocation._information`): first-order target-error sd ratios to the whole
    pool's, under `law`, fitted on the whole pool (the best stand-in for the truth). None where
    undefined (no fit, too few rows)."""
    if law is None:
        return [None] * len(designs), None
    var = TargetVariance(pool, tx, law.theta_)
    sd = [sd_ratio(var, rows) for rows in designs]
    bound = lower_bound(var, increments(pool), budget)
    return [v if math.isfinite(v) else None for v in sd], bound


def _median(values: list) -> float | None:
    """Median, an undefined (None) value counting as infinite; None if the median is."""
    m = statistics.median(math.inf if v is None else v for v in values)
    return m if math.isfinite(m) else None
