"""`scaler report`: read a sweep from MLflow, analyse it, write PNGs + a Markdown report, and log
both to the sweep's parent run (artifacts under `report/`)."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib.pyplot as plt
from mlflow.tracking import MlflowClient

from scaler import query
from scaler.analysis import Analysis, analyze

log = logging.getLogger(__name__)


def _ci(lo_hi) -> str:
    return f"[{lo_hi[0]:.4g}, {lo_hi[1]:.4g}]"


def markdown(sweep: str, an: Analysis, images: list[str]) -> str:
    lines = [f"# Scaling report: `{sweep}`", ""]
    lines += ["## Verdicts", ""]
    for s in an.schemes.values():
        lines.append(f"- **{s.name}** — {s.verdict}")
    for name, why in an.skipped.items():
        lines.append(f"- {name}: not fitted ({why})")
    lines += [
        "",
        "## Per-scheme laws  L(x) = a·x^-b + c  (95% bootstrap CIs)",
        "",
        "| scheme | x | b | b CI | c | c CI | x at op. point | gap to c | gap CI "
        "| Δloss / doubling | CI | Δloss / FLOP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in an.schemes.values():
        p, ci = s.law.params_, s.law.ci_
        lines.append(
            f"| {s.name} | {s.axis} | {p.b:.4g} | {_ci(ci['b'])} | {p.c:.4g} | {_ci(ci['c'])} "
            f"| {s.x_op:.3g} | {s.gap:.4g} | {_ci(s.gap_ci)} | {s.per_doubling:.4g} "
            f"| {_ci(s.per_doubling_ci)} | {s.per_flop:.3g} |"
        )
    lines += ["", "## Compute-optimal frontier (joint law)", ""]
    fr = an.frontier
    if fr is None:
        lines.append(f"not fitted: {an.skipped.get('joint', '')}")
    else:
        p, ci = fr.law.params_, fr.law.ci_
        lines.append(
            "L(N, D) = E + A·N^-α + B·D^-β: "
            + ", ".join(f"{k} = {getattr(p, k):.4g} {_ci(ci[k])}" for k in p._fields)
        )
        if fr.degenerate:
            lines += ["", f"**degenerate frontier**: {fr.degenerate}"]
        lines += [
            "",
            f"N* ∝ C^a with a = β/(α+β) = {fr.exponent:.3f} {_ci(fr.ci['a'])}; cost C = {fr.k:g}·N·D",
            "",
            "| C (FLOPs) | | N* | N* CI | D* | D* CI | L* | L* CI |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, tag in enumerate(("largest trained", "10x", "100x")):
            lines.append(
                f"| {fr.C[i]:.3g} | {tag} | {fr.N[i]:.3g} | {_ci((fr.ci['N'][0][i], fr.ci['N'][1][i]))} "
                f"| {fr.D[i]:.3g} | {_ci((fr.ci['D'][0][i], fr.ci['D'][1][i]))} "
                f"| {fr.L[i]:.4g} | {_ci((fr.ci['L'][0][i], fr.ci['L'][1][i]))} |"
            )
    lines += [
        "",
        "## Backtests (fit on the cheapest 80 %, predict the rest)",
        "",
        "| law | train | test | mean abs. rel. error | max |",
        "|---|---|---|---|---|",
    ]
    for b in an.backtests.values():
        lines.append(f"| {b.name} | {b.n_train} | {b.n_test} | {b.mape:.2%} | {b.max_error:.2%} |")
    lines += ["", "## Figures", ""] + [f"![{img}]({img})" for img in images]
    return "\n".join(lines) + "\n"


def _parent_run_id(sweep: str, tracking_uri: str) -> str:
    df = query.sweeps(tracking_uri)
    hit = df[(df["sweep"] == sweep) | (df["run_id"] == sweep)].sort_values("start_time")
    if hit.empty:
        raise ValueError(f"no sweep named {sweep!r} in {tracking_uri}")
    return str(hit["run_id"].iloc[-1])


def write_report(
    sweep: str,
    out: Path,
    tracking_uri: str | None = None,
    *,
    bootstrap: int = 100,
    seed: int = 0,
    gap_threshold: float = 0.01,
    log_to_mlflow: bool = True,
) -> tuple[Analysis, Path]:
    """Analyse `sweep` from MLflow alone; write `out/report.md` and PNGs; log them to the sweep."""
    uri = query.resolve_uri(tracking_uri)
    points, trials = query.points(sweep, uri), query.trials(sweep, uri)
    points, rules_md = _tuned_view(sweep, uri, points, trials)
    an = analyze(
        points,
        trials,
        bootstrap=bootstrap,
        seed=seed,
        gap_threshold=gap_threshold,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from scaler.report_plots import figures

    names = []
    for name, fig in figures(an).items():
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        names.append(name)
    md = out / "report.md"
    md.write_text(markdown(sweep, an, names) + rules_md)
    if log_to_mlflow:
        client = MlflowClient(uri)
        run_id = _parent_run_id(sweep, uri)
        for name in [*names, "report.md"]:
            client.log_artifact(run_id, str(out / name), "report")
    return an, md


def _tuned_view(sweep: str, uri: str, points, trials):
    """For a tuned sweep: only each scale point's best run feeds the laws (as in the live fitter),
    and a Markdown section with the hyperparameter scaling rules.  Untuned sweeps pass through."""
    if "point" not in trials or not trials["point"].notna().any():
        return points, ""
    done = trials[
        (trials["status"] == "completed") & (trials["samples"] == trials["samples_budget"])
    ]
    best = done.loc[done.groupby("point")["loss"].idxmin(), "trial_id"]
    tuned = trials.loc[trials["point"].notna(), "trial_id"]
    keep = points["trial_id"].isin(best) | ~points["trial_id"].isin(tuned)
    lines = ["", "## Hyperparameter scaling rules  h*(N) = a·N^-b  (each point's best run)", ""]
    lines += [
        "| hyperparameter | a | a 95% CI | b | b 95% CI | points |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in query.hparam_rules(sweep, uri).items():
        lines.append(
            f"| {name} | {r.a:.4g} | [{r.a_ci[0]:.4g}, {r.a_ci[1]:.4g}] | {r.b:.4g} "
            f"| [{r.b_ci[0]:.4g}, {r.b_ci[1]:.4g}] | {r.n_points} |"
        )
    spread = done.groupby("point")["loss"].agg(["count", "min", "max"])
    lines += [
        "",
        f"Tuned points: {len(spread)}; median spread (worst - best final loss): "
        f"{(spread['max'] - spread['min']).median():.4g}",
        "",
    ]
    return points[keep], "\n".join(lines)
