"""`scaler run SPEC.yaml [--address ADDR] [--tracking-uri URI] [--storage PATH]` — run a sweep."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from scaler.spec import load_spec


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
        "--no-report",
        action="store_true",
        help="skip the analysis at the end (scaler report writes it later)",
    )
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
        self.last_decision: dict | None = None

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
        decision = info.get("decision")
        if decision and decision != self.last_decision:
            self.last_decision = decision
            print(f"           {describe_decision(decision)}", file=self.stream, flush=True)


def describe_decision(d: dict) -> str:
    """One line for an adaptive decision: the target's uncertainty, what runs next and why."""
    sd = d.get("target_rel_sd")
    head = f"allocation: target rel. sd {100 * sd:.2f}%" if sd is not None else "allocation:"
    if d.get("target_rel_sd_bootstrap") is not None:
        head += f" (bootstrap {100 * d['target_rel_sd_bootstrap']:.2f}%)"
    if d.get("stop"):
        return f"{head}; sweep stops: {d['stop']}"
    chosen = d.get("chosen") or {}
    what = ", ".join(f"{k}={v:g}" for k, v in chosen.get("params", {}).items())
    what = (
        f"{what}, samples={chosen.get('samples', 0):g}"
        if what
        else f"samples={chosen.get('samples', 0):g}"
    )
    top = d.get("top") or []
    gain = (
        f" (gain/FLOP {top[0]['gain_per_cost']:.3g}, {len(top)} best shown in MLflow)"
        if top
        else ""
    )
    return f"{head}; next {what}{gain}"


def _short(name: str, law) -> str:
    p = law.params_
    if not law.identified_:
        return f"{name}: not identified"
    if law.form == "power":
        return f"{name}: b={p.b:.3f} c={p.c:.4g}"
    return f"{name}: alpha={p.alpha:.3f} beta={p.beta:.3f} E={p.E:.4g}"


def _final_report(name: str, result, args) -> None:
    """The analysis a user came for, at the end of the run: verdicts, the multi-axis law, the
    frontier under the measured cost, the next 10x; the full report is logged to MLflow."""
    from scaler.report import summary_lines, write_report

    out = Path(result.storage) / name / "report"
    try:
        an, md = write_report(
            name, out, result.tracking_uri, bootstrap=min(max(args.bootstrap, 2), 100)
        )
    except ValueError as exc:  # too few points for any law: say so, the sweep itself is fine
        print(f"\nNo report: {exc}")
        return
    print("\nAnalysis (scaler report; 95% bootstrap CIs):")
    for line in summary_lines(an):
        print(f"  {line}")
    print(f"Full report: {md} (also on the sweep's MLflow run, under report/)")


def run(args) -> int:
    return execute(load_spec(args.spec), args, resume=args.resume)


def execute(spec, args, *, resume: bool = False) -> int:
    # imports Ray and MLflow: only once the spec is known to be good
    from scaler.cli.fit import FORMULAS
    from scaler.sweep import run_sweep
    from scaler.tracking import ui_hint

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
    print(f"\n{result.trials} trials ({result.errors} failed). Live laws (as the sweep ran):")
    for name, law in result.report.laws.items():
        print(f"  {name:<8} {FORMULAS[law.form]:<46} {law!r}")
    for name, why in result.report.skipped.items():
        print(f"  {name:<8} not fitted: {why}")
    if getattr(args, "no_report", False) or args.bootstrap == 0:
        print(f"\nNo report (--no-report or --bootstrap 0): scaler report {spec.name}")
    elif result.trials > result.errors:
        _final_report(spec.name, result, args)
    print(
        f"\nMLflow store: {result.tracking_uri}  (experiment {result.experiment!r}, sweep run {result.parent_run_id})"
    )
    print(f"Tune storage: {result.storage / spec.name}")
    print(f"Open the UI:  {ui_hint(result.tracking_uri)}")
    print(f"In Python:    scaler.laws({spec.name!r}, tracking_uri={result.tracking_uri!r})")
    return 0 if result.errors < result.trials else 1
