"""Figures of a sweep `Analysis`: they draw the fitted results they are given and never refit."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from scaler.analysis import Analysis

AXIS_LABEL = {
    "samples": "training samples D (examples)",
    "params": "parameters N (count, dense + embedding)",
    "sparse_params": "embedding parameters (count)",
    "dense_params": "dense (MLP) parameters (count)",
    "flops": "training compute C (FLOPs)",
}
LOSS_LABEL = "held-out log loss (nats / example)"


def scheme_figure(an: Analysis):
    """Loss vs each scheme's resource: points, fitted a·x^-b + c, its 95% band and the constant."""
    names = list(an.schemes)
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(5 * max(len(names), 1), 4.2))
    for ax, name in zip(np.atleast_1d(axes), names, strict=False):
        s = an.schemes[name]
        grid = np.geomspace(s.x.min(), s.x.max() * 10, 100)
        pred, lo, hi = s.law.predict_interval(grid)
        p = s.law.params_
        ax.scatter(s.x, s.loss, s=14, alpha=0.7, label="eval points")
        if s.transients:
            tx, ty, _ = zip(*s.transients, strict=True)
            ax.scatter(tx, ty, s=14, marker="x", color="grey", label="transient (left out)")
        fit = f"{p.a:.3g}·x^-{p.b:.3f} + {p.c:.4g}" if s.identified else "fit (not identified)"
        ax.plot(grid, pred, "k-", label=fit)
        ax.fill_between(grid, lo, hi, color="k", alpha=0.15, label="95% CI")
        ax.axhline(p.c, color="grey", ls=":", label="constant c")
        ax.set(xscale="log", yscale="log", xlabel=AXIS_LABEL[s.axis], ylabel=LOSS_LABEL)
        ax.set_title(f"{name}: {s.status}", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def residuals_figure(an: Analysis):
    """Relative residual (data / fit - 1) of every scheme and the joint law vs its resource."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, s in an.schemes.items():
        ax.scatter(s.x, s.loss / s.law.predict(s.x) - 1, s=12, label=f"{name} (x = {s.axis})")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="resource of the scheme (samples, parameters or FLOPs)")
    ax.set_ylabel("relative residual (observed / fitted − 1)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def isoflop_figure(an: Analysis):
    """IsoFLOP view: eval points binned by measured compute, loss vs parameters, with the joint
    law's loss of every config at that compute (samples = C / the config's FLOPs per sample)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts, fr = an.points, an.frontier
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(fr.iso), 1)))
    for color, level in zip(colors, fr.iso, strict=False):
        sel = pts[(pts["flops"] >= level["lo"]) & (pts["flops"] < level["hi"])]
        ax.scatter(sel["params"], sel["loss"], s=10, color=color, alpha=0.6)
        ax.plot(level["params"], level["loss"], color=color, label=f"C ≈ {level['C']:.2g} FLOPs")
        ax.plot(level["opt_params"], level["opt_loss"], "r*", ms=9)
    ax.set(xscale="log", yscale="log", xlabel=AXIS_LABEL["params"], ylabel=LOSS_LABEL)
    ax.set_title(
        f"IsoFLOP curves (joint law, cost {fr.cost_model['kind']}); ★ = compute-optimal config",
        fontsize=10,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def frontier_figure(an: Analysis):
    """Optimal parameters (sparse and dense), samples and loss vs compute, with the loss's 95%
    band, out to 100x the largest compute trained."""
    fr = an.frontier
    cv = fr.curve
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    ax = axes[0]
    ax.plot(cv["C"], cv["params"], "k-", label="all parameters")
    if np.any(cv["sparse_params"] > 0):
        ax.plot(cv["C"], cv["sparse_params"], "b--", label="embedding (sparse)")
        ax.plot(cv["C"], cv["dense_params"], "g--", label="dense (MLPs)")
    ax.set(ylabel="optimal parameters (count)")
    axes[1].plot(cv["C"], cv["samples"], "k-", label="samples*(C)")
    axes[1].set(ylabel="optimal samples (examples)")
    axes[2].plot(cv["C"], cv["loss"], "k-", label="L*(C)")
    axes[2].fill_between(cv["C"], cv["lo"], cv["hi"], color="k", alpha=0.15, label="95% CI")
    axes[2].set(ylabel="optimal " + LOSS_LABEL)
    for ax in axes:
        ax.axvline(fr.rows[0].C, color="grey", ls=":", label="largest C trained")
        ax.set(xscale="log", yscale="log", xlabel=AXIS_LABEL["flops"])
        ax.legend(fontsize=7)
    title = f"compute-optimal frontier ({fr.cost_words.split(':')[0]} cost)"
    if not fr.identified:
        title += f" -- joint law NOT identified: {fr.reason}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def figures(an: Analysis) -> dict[str, object]:
    """file name -> figure, for every figure the analysis supports."""
    out = {}
    if an.schemes:
        out["schemes.png"] = scheme_figure(an)
        out["residuals.png"] = residuals_figure(an)
    if an.frontier is not None:
        out["isoflop.png"] = isoflop_figure(an)
        out["frontier.png"] = frontier_figure(an)
    return out
