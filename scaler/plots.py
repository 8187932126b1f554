"""Plots draw fitted results; they never refit."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

AXIS_LABELS = {
    "data": ("samples", "training samples"),
    "params": ("params", "parameters (dense + embedding)"),
    "compute": ("flops", "training compute (FLOPs)"),
}


def laws_figure(points, report):
    """Loss vs each axis with its fitted power law, log-log; excluded points drawn hollow."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    used = points[points["excluded"] == ""]
    dropped = points[points["excluded"] != ""]
    for ax, (name, (col, label)) in zip(axes, AXIS_LABELS.items(), strict=True):
        ax.scatter(used[col], used["loss"], s=12, alpha=0.6, label="eval points")
        if len(dropped):
            ax.scatter(
                dropped[col],
                dropped["loss"].clip(upper=used["loss"].max() if len(used) else None),
                s=14,
                facecolors="none",
                edgecolors="red",
                label="excluded",
            )
        law = report.laws.get(name)
        if law is not None and len(used):
            lo, hi = used[col].min(), used[col].max()
            grid = np.geomspace(lo, hi * 10, 100)
            p = law.params_
            ax.plot(grid, law.predict(grid), "k-", label=f"{p.a:.3g}·x^-{p.b:.3f} + {p.c:.4g}")
        else:
            ax.set_title(f"{name}: {report.skipped.get(name, 'not fitted')[:60]}", fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("held-out log loss")
        ax.legend(fontsize=8)
        if law is not None:
            ax.set_title(f"{name} scaling")
    fig.tight_layout()
    return fig
