"""`scaler report SWEEP [--out DIR]` — scheme laws, verdicts, frontier, backtests, plots."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="analyse a sweep from MLflow: laws, verdicts, frontier, plots")
    p.add_argument("sweep", help="sweep name or parent run id")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: report-SWEEP)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: ./scaler_runs/mlflow.db)")
    p.add_argument("--bootstrap", type=int, default=100, help="bootstrap resamples (>= 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--gap-threshold",
        type=float,
        default=0.01,
        help="saturated when the gap to the constant is below this fraction of the loss",
    )
    p.add_argument(
        "--memory-cap",
        type=float,
        default=None,
        help="embedding bytes the frontier may use (default: the largest trained config's, "
        "scaled with compute)",
    )
    p.add_argument("--no-log", action="store_true", help="do not log to the sweep's parent run")
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (schemes, joint law, frontier, next 10x, backtests) on "
        "stdout; the Markdown and PNGs still go to --out",
    )


def run(args) -> int:
    if args.memory_cap is not None and not args.memory_cap > 0:
        raise ValueError(f"--memory-cap is {args.memory_cap}, but must be > 0 bytes")
    from scaler.report import to_json, write_report

    out = args.out or Path(f"report-{args.sweep}")
    an, md = write_report(
        args.sweep,
        out,
        args.tracking_uri,
        bootstrap=args.bootstrap,
        seed=args.seed,
        gap_threshold=args.gap_threshold,
        log_to_mlflow=not args.no_log,
        memory_cap=args.memory_cap,
    )
    if args.json:
        print(json.dumps(to_json(args.sweep, an), default=_plain))
        return 0
    print(md.read_text())
    print(f"report written to {md}")
    return 0


def _plain(value):
    """numpy scalars in configs -> JSON numbers."""
    return value.item() if hasattr(value, "item") else str(value)
