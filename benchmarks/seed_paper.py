"""The seed paper's five scaling schemes (Ardalani et al. 2022), reproduced on synthetic data: one
markdown verdict table over the five sweeps of `search_spaces/seed_paper/` that `make seed-paper`
ran (each sweep's headline scheme: `data` for the data sweep, its knob for the others).

Run:  .venv/bin/python benchmarks/seed_paper.py [--storage scaler_runs/seed_paper]
                                                [--figures notebooks/figures/seed_paper]

Each sweep is analysed from MLflow alone (`scaler.report.write_report`, nothing logged back);
its report and PNGs go to STORAGE/report-SWEEP/.  --figures also copies each sweep's
schemes.png there (as SWEEP.png).  Wall time: from the start of the sweep's parent run to its end
(training), and to the end of the analysis `scaler run` printed (its report.md).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient

from scaler.report import _parent_run_id, write_report
from scaler.tracking import default_tracking_uri

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "search_spaces" / "seed_paper"
# file stem -> (the scheme of that sweep to report, what the paper found)
SCHEMES = {
    "data": ("data", "keeps paying"),
    "embedding_rows": ("model.num_embeddings", "saturates"),
    "embedding_dim": ("model.embedding_dim", "saturates"),
    "over_arch": ("model.top_mlp_width", "saturates"),
    "all_mlp": ("model.mlp_width", "saturates"),
}


def _g(v: float, fmt: str = ".3g") -> str:
    """A number; a fit's numerical zero (a flat law: 1e-300) as 0."""
    return "0" if abs(v) < 1e-12 else format(v, fmt)


def _ci(lo_hi) -> str:
    return f"[{_g(lo_hi[0])}, {_g(lo_hi[1])}]"


def wall_seconds(client: MlflowClient, sweep: str, uri: str, storage: Path) -> tuple[float, float]:
    """(training, end to end): the sweep's parent run from start to end, and from its start to
    the end of `scaler run`'s analysis (its report.md in the Tune storage); nan where unknown."""
    run = client.get_run(_parent_run_id(sweep, uri))
    start, end = run.info.start_time / 1000.0, run.info.end_time
    md = storage / sweep / "report" / "report.md"
    total = md.stat().st_mtime - start if md.is_file() else float("nan")
    return (end / 1000.0 - start if end else float("nan")), total


def row(stem: str, storage: Path, uri: str, figures: Path | None, bootstrap: int):
    """(the table row of one sweep's headline scheme, the sweep's wall time in seconds)."""
    sweep = yaml.safe_load((SPECS / f"{stem}.yaml").read_text())["name"]
    scheme, paper = SCHEMES[stem]
    out = storage / f"report-{sweep}"
    try:
        train, wall = wall_seconds(MlflowClient(uri), sweep, uri, storage)
    except ValueError as exc:  # not run (yet)
        return f"| {stem} | {scheme} | not run: {exc} | | | {paper} | |", 0.0
    an, _ = write_report(sweep, out, uri, bootstrap=bootstrap, log_to_mlflow=False)
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "schemes.png", figures / f"{sweep}.png")
    s = an.schemes.get(scheme)
    if s is None:
        why = an.skipped.get(scheme, "no such scheme")
        return (
            f"| {stem} | {scheme} | not fitted: {why} | | | {paper} | {train:.0f} / {wall:.0f} |",
            wall,
        )
    b = f"{s.law.params_.b:.3g} {_ci(s.law.ci_['b'])}" if s.identified else "—"
    dbl = f"{_g(s.per_doubling, '.2g')} {_ci(s.per_doubling_ci)} ({s.per_doubling / s.loss_op:.2%})"
    cells = f"{stem} | {scheme} ({s.axis}) | **{s.status}** | {b} | {dbl} | {paper}"
    return f"| {cells} | {train:.0f} / {wall:.0f} |", wall


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storage", type=Path, default=Path("scaler_runs/seed_paper"))
    p.add_argument("--tracking-uri", default=None, help="default: the sqlite store in --storage")
    p.add_argument("--figures", type=Path, default=None, help="copy each schemes.png here")
    p.add_argument("--bootstrap", type=int, default=100)
    args = p.parse_args(argv)
    uri = args.tracking_uri or default_tracking_uri(args.storage)
    lines = [
        "| scheme | x (resource) | verdict | exponent b [95% CI] "
        "| loss per doubling [CI] (% of loss) | paper | wall (s): training / with analysis |",
        "|---|---|---|---|---|---|---|",
    ]
    total = 0.0
    for stem in SCHEMES:
        line, wall = row(stem, args.storage, uri, args.figures, args.bootstrap)
        lines.append(line)
        total += wall
    print("\n".join(lines))
    print(
        f"\nTotal wall time of the five sweeps (training and analysis; not Ray's start-up): "
        f"{total:.0f} s ({total / 60:.1f} min)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
