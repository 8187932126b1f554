"""`scaler resume SWEEP [--storage PATH] [--tracking-uri URI]` — finish a sweep whose driver died."""

from __future__ import annotations

from pathlib import Path

from scaler.cli import run as run_cmd


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="resume a sweep from its Tune experiment and MLflow record")
    p.add_argument("sweep", help="sweep name (the spec's `name`)")
    p.add_argument("--storage", default=None, help="Tune storage folder (default: ./scaler_runs)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: as the sweep was run)")
    p.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    p.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap resamples of the final fit"
    )


def run(args) -> int:
    from scaler.resume import load_saved_spec
    from scaler.sweep import DEFAULT_STORAGE

    spec = load_saved_spec(Path(args.storage or DEFAULT_STORAGE), args.sweep)
    return run_cmd.execute(spec, args, resume=True)
