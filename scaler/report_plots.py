"""Figures of a sweep `Analysis`: they draw the fitted results they are given and never refit."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from scaler.analysis import Analysis, clamped_frontier, frontier_band

AXIS_LABEL = {
    "samples": "training samples D (examples)",
    "params": "parameters N (count, dense + embedding)",
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
        ax.plot(grid, pred, "k-", label=f"{p.a:.3g}·x^-{p.b:.3f} + {p.c:.4g}")
        ax.fill_between(grid, lo, hi, color="k", alpha=0.15, label="95% CI")
        ax.axhline(p.c, color="grey", ls=":", label="constant c")
        ax.set(xscale="log", yscale="log", xlabel=AXIS_LABEL[s.axis], ylabel=LOSS_LABEL)
        ax.set_title(f"{name}: {'saturated' if s.saturated else 'still paying'}", fontsize=10)
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


def isoflop_figure(an: Analysis, n_levels: int = 5):
    """IsoFLOP view: eval points binned by compute, loss vs N, with the joint law along C = k N D."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pts, fr = an.points, an.frontier
    edges = np.geomspace(pts["flops"].min(), pts["flops"].max() * 1.0001, n_levels + 1)
    colors = plt.cm.viridis(np.linspace(0, 0.9, n_levels))
    for i in range(n_levels):
        sel = pts[(pts["flops"] >= edges[i]) & (pts["flops"] < edges[i + 1])]
        c_mid = float(np.sqrt(edges[i] * edges[i + 1]))
        ax.scatter(sel["params"], sel["loss"], s=10, color=colors[i], alpha=0.6)
        if fr is not None:
            n = np.geomspace(pts["params"].min(), pts["params"].max(), 60)
            d = c_mid / (fr.k * n)
            ax.plot(n, fr.law.predict(np.c_[n, d]), color=colors[i], label=f"C ≈ {c_mid:.2g} FLOPs")
            n_opt, _, l_opt = clamped_frontier(fr.law.params_, [c_mid], fr.k, fr.n_min, fr.d_min)
            ax.plot(n_opt, l_opt, "r*", ms=9)
    ax.set(xscale="log", yscale="log", xlabel=AXIS_LABEL["params"], ylabel=LOSS_LABEL)
    ax.set_title("IsoFLOP curves (joint law); ★ = compute-optimal N*", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def frontier_figure(an: Analysis):
    """N*(C), D*(C) and L*(C) with 95% bands, out to 100x the largest compute trained."""
    fr = an.frontier
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    C = np.geomspace(an.points["flops"].min(), fr.C.max(), 60)
    n, d, loss = clamped_frontier(fr.law.params_, C, fr.k, fr.n_min, fr.d_min)
    f = {"N": n, "D": d, "L": loss}
    band = frontier_band(fr.law, C, fr.k, fr.n_min, fr.d_min)
    for ax, key, label in zip(
        axes,
        ("N", "D", "L"),
        ("optimal parameters N* (count)", "optimal samples D* (examples)", "optimal " + LOSS_LABEL),
        strict=True,
    ):
        ax.plot(C, f[key], "k-", label=f"{key}*(C)")
        ax.fill_between(C, *band[key], color="k", alpha=0.15, label="95% CI")
        ax.axvline(fr.C[0], color="grey", ls=":", label="largest C trained")
        ax.plot(fr.C[1:], getattr(fr, key)[1:], "r*", ms=9, label="10x, 100x")
        ax.set(xscale="log", yscale="log", xlabel=AXIS_LABEL["flops"], ylabel=label)
        ax.legend(fontsize=7)
    fig.suptitle(f"compute-optimal frontier, N* ∝ C^{fr.exponent:.3f}", fontsize=10)
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
