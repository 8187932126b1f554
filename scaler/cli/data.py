"""`scaler data prepare-criteo DAY_FILE... --out DIR [--workers N] [--address ADDR]`: Criteo day
files (TSV, plain or gzip) to the binary layout trials read memory-mapped (kind: criteo_binary)."""

from __future__ import annotations

import os


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="prepare data sets for trials")
    actions = p.add_subparsers(dest="action", required=True)
    prep = actions.add_parser(
        "prepare-criteo",
        help="Criteo day files -> day_<d>_{dense,sparse,labels}.npy (resumable: done days are kept)",
    )
    prep.add_argument("days", nargs="+", metavar="DAY_FILE", help="day_<d> or day_<d>.gz files")
    prep.add_argument("--out", required=True, metavar="DIR", help="folder of the binary days")
    prep.add_argument(
        "--workers", type=int, default=1, metavar="N", help="days prepared at once (processes)"
    )
    prep.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="a Ray cluster (e.g. auto): one Ray task per day instead of local processes; "
        "--out must then be storage every node sees",
    )
    prep.add_argument(
        "--interval", type=float, default=10.0, metavar="S", help="seconds between progress lines"
    )


def run(args) -> int:
    # imported here: TorchRec's Criteo reader takes seconds to import, and every command builds
    # this parser
    from scaler.data.criteo_binary import MALFORMED_SUMMARY, MANIFEST, prepare_criteo

    use_ray = args.address is not None
    if use_ray:
        import ray

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address=args.address, log_to_driver=False)
    manifest = prepare_criteo(
        args.days, args.out, workers=args.workers, use_ray=use_ray, interval=args.interval
    )
    days = manifest["days"]
    rows = sum(e["rows"] for e in days.values())
    bad = sum(sum(e["malformed"].values()) for e in days.values())
    print(
        f"{len(days)} days, {rows:,} rows in {args.out} ({bad:,} malformed lines skipped: see "
        f"{os.path.join(args.out, MALFORMED_SUMMARY)}); manifest: {os.path.join(args.out, MANIFEST)}"
    )
    return 0
