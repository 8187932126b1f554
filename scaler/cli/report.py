"""`scaler report SWEEP [--out DIR]` — scheme laws, verdicts, frontier, backtests, plots."""

from __future__ import annotations

from pathlib import Path

from scaler.report import write_report


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
    p.add_argument("--no-log", action="store_true", help="do not log to the sweep's parent run")


def run(args) -> int:
    out = args.out or Path(f"report-{args.sweep}")
    _an, md = write_report(
        args.sweep,
        out,
        args.tracking_uri,
        bootstrap=args.bootstrap,
        seed=args.seed,
        gap_threshold=args.gap_threshold,
        log_to_mlflow=not args.no_log,
    )
    print(md.read_text())
    print(f"report written to {md}")
    return 0
