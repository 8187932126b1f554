"""`scaler report`: read a sweep from MLflow, analyse it, write PNGs + a Markdown report, and log
both to the sweep's parent run (artifacts under `report/`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib.pyplot as plt
from mlflow.tracking import MlflowClient

from scaler import query
from scaler.analysis import Analysis, analyze

log = logging.getLogger(__name__)


def _ci(lo_hi) -> str:
    return f"[{lo_hi[0]:.4g}, {lo_hi[1]:.4g}]"


def _cfg(config: dict) -> str:
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in config.items()
    )


def _law_line(law, ident_reason) -> str:
    if ident_reason:
        return f"not identified: {ident_reason}"
    p, ci = law.params_._asdict(), law.ci_
    return ", ".join(
        f"{k} = {v:.4g} {_ci(ci[k])}" if k in ci else f"{k} = {v:.4g}" for k, v in p.items()
    )


def markdown(sweep: str, an: Analysis, images: list[str]) -> str:
    lines = [f"# Scaling report: `{sweep}`", ""]
    lines += [f"Cost model: {an.cost_words}.", ""]
    lines += ["## Verdicts", ""]
    for s in an.schemes.values():
        lines.append(f"- **{s.name}** — {s.verdict}")
    for name, why in an.skipped.items():
        lines.append(f"- {name}: not fitted ({why})")
    lines += [
        "",
        "## Per-scheme laws  L(x) = a·x^-b + c  (95% bootstrap CIs)",
        "",
        "| scheme | x | verdict | b | b CI | c | c CI | x at op. point | gap to c | gap CI "
        "| Δloss / doubling | CI | Δloss / FLOP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in an.schemes.values():
        p, ci = s.law.params_, s.law.ci_
        if s.identified:
            b_cells = f"{p.b:.4g} | {_ci(ci['b'])} | {p.c:.4g} | {_ci(ci['c'])}"
        else:
            b_cells = f"not identified: {s.reason} | | |"
        lines.append(
            f"| {s.name} | {s.axis} | {s.status} | {b_cells} "
            f"| {s.x_op:.3g} | {s.gap:.4g} | {_ci(s.gap_ci)} | {s.per_doubling:.4g} "
            f"| {_ci(s.per_doubling_ci)} | {s.per_flop:.3g} |"
        )
    dropped = [(s.name, t) for s in an.schemes.values() for t in s.transients]
    if dropped:
        lines += ["", "Left out of the scheme fits (first steps of training):", ""]
        lines += [f"- {name}: x = {x:.3g}, loss {y:.4g} — {why}" for name, (x, y, why) in dropped]
    lines += ["", "## Joint law and compute-optimal frontier", ""]
    fr, law = an.frontier, an.joint
    if law is None:
        lines.append(f"not fitted: {an.skipped.get('joint', '')}")
    else:
        terms = " + ".join(f"A_{a}·{a}^-alpha_{a}" for a in law.axes)
        ident = law.identification_
        lines += [f"L = E + {terms}", "", _law_line(law, ident.reason), ""]
        lines += [f"- {axis}: {why}" for axis, why in an.joint_dropped.items()]
        if an.joint_dropped:
            lines.append("")
    if fr is not None:
        cap = (
            f"memory cap {fr.memory_cap:.3g} bytes"
            if fr.memory_cap is not None
            else "memory cap: the largest trained config's embedding bytes x C / C_max"
        )
        rng = "; ".join(f"{k} in [{lo:g}, {hi:g}]" for k, (lo, hi) in fr.knob_range.items())
        if not fr.identified:
            lines += [f"**the joint law is not identified ({fr.reason}): the frontier below is "
                      "the fit's, not a result**", ""]  # fmt: skip
        lines += [
            f"Searched: {rng or 'the one trained config'}; {cap}.",
            "",
            "| C (FLOPs) | | samples | FLOPs / sample | config | params (sparse + dense) "
            "| embedding bytes | loss | loss CI |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r, tag in zip(fr.rows, ("largest trained", "10x", "100x"), strict=False):
            lines.append(
                f"| {r.C:.3g} | {tag} | {r.samples:.3g} | {r.flops_per_sample:.3g} "
                f"| {_cfg(r.config)} | {r.params:.3g} ({r.sparse_params:.3g} + "
                f"{r.dense_params:.3g}) | {r.memory_bytes:.3g} | {r.loss:.4g} | {_ci(r.loss_ci)} |"
            )
        lines += [
            "",
            "### Where the next 10x should go",
            "",
            "| spend 10x on | C | samples | config | embedding bytes | loss | loss CI | |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n in fr.next_10x:
            lines.append(
                f"| {n.spend_on} | {n.C:.3g} | {n.samples:.3g} | {_cfg(n.config)} "
                f"| {n.memory_bytes:.3g} | {n.loss:.4g} | {_ci(n.loss_ci)} | {n.note} |"
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
    lines += [
        "",
        "On real data a law's misfit, not the noise, usually dominates the backtest error: "
        "a CI that is narrow says the fit is stable, not that the form is right.",
    ]
    lines += ["", "## Figures", ""] + [f"![{img}]({img})" for img in images]
    return "\n".join(lines) + "\n"


def summary_lines(an: Analysis) -> list[str]:
    """A few lines for a terminal: each scheme's verdict, the joint law, the frontier at the
    largest compute trained and where the next 10x should go."""
    lines = [f"cost model: {an.cost_words}"]
    for s in an.schemes.values():
        law = "" if not s.identified else f"  [b = {s.law.params_.b:.3g} {_ci(s.law.ci_['b'])}]"
        lines.append(f"{s.name:<22} {s.verdict}{law}")
    for name, why in an.skipped.items():
        lines.append(f"{name:<22} not fitted: {why}")
    if an.joint is not None:
        ident = an.joint.identification_
        lines.append(f"{'joint (' + ', '.join(an.joint.axes) + ')':<22} "
                     + _law_line(an.joint, ident.reason))  # fmt: skip
        lines += [f"{'':<22} {axis}: {why}" for axis, why in an.joint_dropped.items()]
    fr = an.frontier
    if fr is not None:
        r = fr.rows[0]
        if not fr.identified:
            lines.append(
                "the joint law is not identified: the optimum below is the fit's, not a result"
            )
        lines.append(
            f"optimum at C = {r.C:.3g} FLOPs: {_cfg(r.config)}, {r.samples:.3g} samples, "
            f"loss {r.loss:.4g} {_ci(r.loss_ci)}"
        )
        lines += [
            f"10x on {n.spend_on:<18} loss {n.loss:.4g} {_ci(n.loss_ci)}  ({n.note})"
            for n in fr.next_10x
        ]
    return lines


def _ci_dict(law) -> dict:
    return {k: [float(lo), float(hi)] for k, (lo, hi) in law.ci_.items()}


def to_json(sweep: str, an: Analysis) -> dict:
    """The report as one JSON object (names promised to users: keep them)."""
    schemes = {}
    for name, s in an.schemes.items():
        schemes[name] = {
            "x": s.axis,
            "identified": bool(s.identified),
            "reason": s.reason,
            "verdict": s.status,
            "verdict_text": s.verdict,
            "params": {k: float(v) for k, v in s.law.params_._asdict().items()},
            "ci": _ci_dict(s.law),
            "loss_per_doubling": float(s.per_doubling),
            "transients": [{"x": x, "loss": y, "reason": r} for x, y, r in s.transients],
        }
    joint: dict = {"axes": [], "identified": False, "reason": an.skipped.get("joint"),
                   "params": {}, "ci": {}}  # fmt: skip
    if an.joint is not None:
        ident = an.joint.identification_
        joint = {
            "axes": list(an.joint.axes),
            "identified": bool(ident.identified),
            "reason": ident.reason,
            "params": {k: float(v) for k, v in an.joint.params_._asdict().items()},
            "ci": _ci_dict(an.joint),
            "dropped": dict(an.joint_dropped),
        }
    fr = an.frontier
    frontier = [
        {
            "C": r.C,
            "samples": r.samples,
            "flops_per_sample": r.flops_per_sample,
            "config": r.config,
            "params": r.params,
            "dense_params": r.dense_params,
            "sparse_params": r.sparse_params,
            "memory_bytes": r.memory_bytes,
            "loss": r.loss,
            "loss_ci": list(r.loss_ci),
        }
        for r in (fr.rows if fr else [])
    ]
    nxt = [
        {"spend_on": n.spend_on, "loss": n.loss, "loss_ci": list(n.loss_ci), "C": n.C,
         "samples": n.samples, "config": n.config, "memory_bytes": n.memory_bytes, "note": n.note}
        for n in (fr.next_10x if fr else [])
    ]  # fmt: skip
    return {
        "sweep": sweep,
        "cost_model": dict(an.cost_model),
        "schemes": schemes,
        "skipped": dict(an.skipped),
        "joint": joint,
        "frontier": frontier,
        "next_10x": nxt,
        "backtests": {
            name: {"n_train": b.n_train, "n_test": b.n_test, "mape": b.mape}
            for name, b in an.backtests.items()
        },
    }


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
    memory_cap: float | None = None,
) -> tuple[Analysis, Path]:
    """Analyse `sweep` from MLflow alone; write `out/report.md` and PNGs; log them to the sweep."""
    uri = query.resolve_uri(tracking_uri)
    points, trials = query.points(sweep, uri), query.trials(sweep, uri)
    points, rules_md = _tuned_view(sweep, uri, points, trials)
    an = analyze(
        points,
        trials,
        cost_model=sweep_cost_model(sweep, uri),
        bootstrap=bootstrap,
        seed=seed,
        gap_threshold=gap_threshold,
        memory_cap=memory_cap,
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


def sweep_cost_model(sweep: str, uri: str):
    """The sweep's cost model, from the spec logged on its parent run (None: not rebuildable,
    and the analysis falls back to the trained configs' logged FLOPs)."""
    from scaler.costs import cost_model_for
    from scaler.spec import SweepSpec

    client = MlflowClient(uri)
    try:
        path = client.download_artifacts(_parent_run_id(sweep, uri), "spec.json")
        spec = SweepSpec.model_validate(json.loads(Path(path).read_text()))
    except Exception as exc:  # an old sweep, or a spec this version cannot read
        log.warning("no cost model from the sweep's spec (%s): using logged FLOPs", exc)
        return None
    return cost_model_for(spec)


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
