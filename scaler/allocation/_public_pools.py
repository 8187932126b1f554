"""Replay pools from published scaling sweeps: a fit region a policy may buy rows of, and the
expensive region held out as its target.  Shared by `benchmarks/bench_allocation.py` and the
tests; the data and its sources are in `tests/data/` (SOURCES.md).

- chinchilla: Hoffmann et al. 2022's points (digitised by Besiroglu et al. 2024) less the 5
  highest losses, as the authors do (`holdout_pools`' chinchilla-all keeps them); x = (N,
  D = C / 6N), cost C; the most expensive 10 % of the rows held out.
- porian/<setup>: the IsoFLOP sweeps of Porian et al. 2024, one pool per setup (dataset,
  hyper-parameters, warmup, decay, parameter-count convention, train/val loss: never mixed);
  x = (n_params, tokens), cost the row's FLOP budget; the two largest budgets held out (4x the
  compute of the largest row a policy may buy).

On these pools the error at the target is mostly the law's misfit, not noise: even the whole fit
region's law misses the held-out losses by about as much as the noise moves them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaler.allocation._replay import Pool

DATA = Path(__file__).resolve().parents[2] / "tests" / "data"
PORIAN_SETUP = ["dataset", "hparams", "warmup", "decay", "param_count", "val"]
PORIAN_HELD_BUDGETS = 2  # the largest FLOP budgets of a setup, held out as its target

PublicPool = tuple[Pool, np.ndarray, np.ndarray]  # (pool, target x, target loss)


def _read(name: str, data: Path | None) -> pd.DataFrame:
    path = (data or DATA) / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: public pool data not found (it ships in tests/data/)")
    return pd.read_csv(path)


def chinchilla_pool(
    held_fraction: float = 0.1, data: Path | None = None, drop_highest: int = 5
) -> PublicPool:
    df = _read("chinchilla_epoch_extracted.csv", data).sort_values("loss")
    df = df.iloc[: len(df) - drop_highest]
    n = df["Model Size"].to_numpy()
    cost = df["Training FLOP"].to_numpy()
    x, y = np.c_[n, cost / (6 * n)], df["loss"].to_numpy()
    held = cost > np.quantile(cost, 1 - held_fraction)
    return Pool(x[~held], y[~held], cost[~held]), x[held], y[held]


def porian_pools(data: Path | None = None) -> dict[str, PublicPool]:
    """One pool per setup, named 'porian/rw-tuned-short-const-standard-val' and so on."""
    df = _read("porian2024_isoflop_points.csv", data)
    out = {}
    for setup, rows in df.groupby(PORIAN_SETUP, sort=True):
        budgets = np.sort(rows["flops_budget"].unique())
        held = rows["flops_budget"].to_numpy() >= budgets[-PORIAN_HELD_BUDGETS]
        x = rows[["n_params", "tokens"]].to_numpy(dtype=float)
        y = rows["loss"].to_numpy(dtype=float)
        cost = rows["flops_budget"].to_numpy(dtype=float)
        out["porian/" + "-".join(setup)] = (
            Pool(x[~held], y[~held], cost[~held]),
            x[held],
            y[held],
        )
    return out


def public_pools(data: Path | None = None) -> dict[str, PublicPool]:
    """Every public pool by name: chinchilla first, then the Porian setups."""
    return {"chinchilla": chinchilla_pool(data=data), **porian_pools(data)}


def holdout_pools(data: Path | None = None) -> dict[str, PublicPool]:
    """Pools kept out of the benchmark's verdict, to check an allocation change on data it was not
    judged on. 'chinchilla-all' is the README's `scaler replay` example: Chinchilla with all its
    points (the 5 highest losses kept), its most expensive 10 % held out. An earlier rule (MIN_DOF)
    looked better on the benchmark's cells and lost to random on this pool at every budget."""
    return {"chinchilla-all": chinchilla_pool(data=data, drop_highest=0)}
