"""`scaler run SPEC.yaml [--address ADDR] [--tracking-uri URI] [--storage PATH]` — run a sweep."""

from __future__ import annotations

import math
import sys
import time

from scaler.cli.fit import FORMULAS
from scaler.spec import load_spec
from scaler.tracking import ui_hint


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="run a sweep described by a search-space YAML")
    p.add_argument("spec", help="search space, e.g. search_spaces/demo.yaml")
    p.add_argument(
        "--address", help="Ray cluster address (default: start a local Ray for this run)"
    )
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: sqlite store in --storage)"
    )
    p.add_argument("--storage", default=None, help="Tune storage folder (default: ./scaler_runs)")
    p.add_argument(
        "--bootstrap", type=int, default=200, help="bootstrap resamples of the final fit"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue a sweep of this name that was interrupted (see `scaler resume`)",
    )


class Progress:
    """One status line per finished trial: counts, budget spent, the current laws."""

    def __init__(self, stream=sys.stdout):
        self.stream = stream
        self.start = time.time()

    def __call__(self, info: dict) -> None:
        report = info["report"]
        laws = ""
        if report is not None:
            laws = "  ".join(_short(name, law) for name, law in report.laws.items())
        budget = "" if math.isnan(info["budget"]) else f" budget {100 * info['budget']:.0f}%"
        print(
            f"[{time.time() - self.start:6.1f}s] trials done {info['done']} (errors {info['errors']}) "
            f"running {info['running']} pending {info['pending']}{budget} | {laws}",
            file=self.stream,
            flush=True,
        )


def _short(name: str, law) -> str:
    p = law.params_
    if law.form == "power":
        return f"{name}: b={p.b:.3f} c={p.c:.4g}"
    return f"{name}: alpha={p.alpha:.3f} beta={p.beta:.3f} E={p.E:.4g}"


def run(args) -> int:
    return execute(load_spec(args.spec), args, resume=args.resume)


def execute(spec, args, *, resume: bool = False) -> int:
    from scaler.sweep import run_sweep  # imports Ray: only once the spec is known to be good

    print(f"sweep {spec.name}: backend {spec.backend}, policy {spec.policy.name}", flush=True)
    result = run_sweep(
        spec,
        address=args.address,
        tracking_uri=args.tracking_uri,
        storage=args.storage,
        progress=Progress(),
        final_bootstrap=args.bootstrap,
        resume=resume,
    )
    print(f"\n{result.trials} trials ({result.errors} failed). Fitted laws:")
    for name, law in result.report.laws.items():
        print(f"  {name:<8} {FORMULAS[law.form]:<46} {law!r}")
        for param, (lo, hi) in law.ci_.items():
            print(f"           {param:<6} 95% CI [{lo:.4g}, {hi:.4g}]")
    for name, why in result.report.skipped.items():
        print(f"  {name:<8} not fitted: {why}")
    print(
        f"\nMLflow store: {result.tracking_uri}  (experiment {result.experiment!r}, sweep run {result.parent_run_id})"
    )
    print(f"Tune storage: {result.storage / spec.name}")
    print(f"Open the UI:  {ui_hint(result.tracking_uri)}")
    print(f"In Python:    scaler.laws({spec.name!r}, tracking_uri={result.tracking_uri!r})")
    return 0 if result.errors < result.trials else 1
