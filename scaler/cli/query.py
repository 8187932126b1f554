"""`scaler query SWEEP [--points] [--csv] [--tracking-uri URI]` — a sweep's trials or eval points."""

from __future__ import annotations

import sys


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="print a sweep's trials (or eval points) from MLflow")
    p.add_argument("sweep", help="sweep name or parent run id")
    p.add_argument(
        "--points", action="store_true", help="one row per eval point instead of per trial"
    )
    p.add_argument("--csv", action="store_true", help="CSV instead of a table")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: ./scaler_runs/mlflow.db)")


def run(args) -> int:
    import pandas as pd

    from scaler import query

    df = (query.points if args.points else query.trials)(args.sweep, args.tracking_uri)
    if args.csv:
        df.to_csv(sys.stdout, index=False)
        return 0
    with pd.option_context(
        "display.max_rows", 200, "display.width", 200, "display.max_columns", 30
    ):
        print(df.to_string(index=False))
    try:
        laws = query.laws(args.sweep, args.tracking_uri)
    except ValueError:
        return 0
    print()
    for name, law in laws.items():
        print(f"{name:<8} {law!r}")
    return 0
