"""Backtests: fit on the cheaper runs, predict the most expensive ones — the honest test of a law."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Backtest(NamedTuple):
    cut: float  # cost threshold: points with cost > cut are held out
    n_train: int
    n_test: int
    mape: float  # mean |relative error| on the held-out points
    max_error: float  # max |relative error| on the held-out points
    test_index: np.ndarray  # indices (into the caller's arrays) of the held-out points
    predicted: np.ndarray  # predictions at the held-out points
    law: object  # the law fitted on the training side


def backtest(law, X, y, *, holdout: float = 0.2, cost=None, exclude=None) -> Backtest:
    """Fit a clone of `law` on the points below the top `holdout` fraction by cost and report
    the error above it.  cost defaults to the form's natural cost (x, or N*D for JointLaw)."""
    if not 0 < holdout < 1:
        raise ValueError(f"holdout is {holdout}, but must be in (0, 1)")
    template = law.clone()
    x = template._as_x(X)
    y = np.asarray(y, dtype=float)
    keep, _ = template._clean(x, y, None, exclude)
    c = template.backtest_cost(x) if cost is None else np.asarray(cost, dtype=float)
    usable = np.flatnonzero(keep)
    cut = float(np.quantile(c[usable], 1.0 - holdout))
    test = usable[c[usable] > cut]
    train_mask = keep & (c <= cut)
    if len(test) == 0:
        raise ValueError(f"holdout {holdout} leaves no point above the cost cut {cut:g}")
    fitted = template.fit(x[train_mask], y[train_mask])
    pred = fitted.predict(x[test])
    err = np.abs(pred - y[test]) / y[test]
    return Backtest(
        cut=cut,
        n_train=int(train_mask.sum()),
        n_test=len(test),
        mape=float(err.mean()),
        max_error=float(err.max()),
        test_index=test,
        predicted=pred,
        law=fitted,
    )
