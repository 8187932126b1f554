"""Is a fitted law a result?  Identification rules, stated once.

A fit always returns numbers.  They mean something only when the data pin them down; otherwise
the optimiser reports whatever corner of the parameter space it stopped in (an exponent at its
bound of 4, a coefficient of 1e-276) and the bootstrap CIs span tens of decades.  A law is *not
identified* when any of these holds, checked in this order:

1. too few distinct values on an axis: a power term a·x^-b next to a constant needs at least
   3 distinct x on its axis, and a one-axis law needs 4 (three parameters and one degree of
   freedom left to test them);
2. an exponent sits at a bound of the fit (0 or the upper bound, 4 by default): at 0 the term is
   a constant indistinguishable from c; at the top the data ask for a step, not a power law;
3. (after a bootstrap) a coefficient's CI spans more than `DECADES` decades, or an exponent's CI
   more than half of the exponent range.

The rules read only the law (its points, parameters and bootstrap), so they hold the same for a
law fitted live, in `scaler fit`, in the report or rebuilt from MLflow.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DECADES = 3.0  # a coefficient CI wider than this many decades is not a measurement
EXPONENT_SPAN = 0.5  # an exponent CI wider than this fraction of the exponent range neither
AT_BOUND = 1e-3  # an exponent within this fraction of the range from a bound sits at it
MIN_DISTINCT_ONE_AXIS = 4
MIN_DISTINCT_PER_TERM = 3


class Identification(NamedTuple):
    identified: bool
    reason: str | None  # why not, in words; None when identified
    cause: str | None = None  # which rule: "distinct" | "bound" | "ci"; None when identified


def _terms(law) -> list[tuple[str, str, str]]:
    """(axis label, coefficient name, exponent name) of every power term."""
    names = law.params_type._fields
    if law.form == "power":
        return [("x", "a", "b")]
    if law.form == "joint":
        return [("N", "A", "alpha"), ("D", "B", "beta")]
    return [(ax, names[1 + 2 * i], names[2 + 2 * i]) for i, ax in enumerate(law.axes)]


def identify(law) -> Identification:
    params = law.params_._asdict()
    lo, hi = law.exponent_bounds
    span = hi - lo
    terms = _terms(law)
    distinct = getattr(law, "distinct_", None)
    if distinct is not None:
        need = MIN_DISTINCT_ONE_AXIS if len(terms) == 1 else MIN_DISTINCT_PER_TERM
        for (axis, _, _), n in zip(terms, distinct, strict=True):
            if n < need:
                return Identification(
                    False,
                    f"{n} distinct values of {axis}; the form needs at least {need}",
                    "distinct",
                )
    for _axis, _coef, exp in terms:
        b = params[exp]
        if b >= hi - AT_BOUND * span:
            return Identification(False, f"{exp} = {b:.3g} sits at its upper bound {hi:g}", "bound")
        if b <= lo + AT_BOUND * span:
            return Identification(
                False,
                f"{exp} = {b:.3g} sits at its lower bound {lo:g} (the term is a constant)",
                "bound",
            )
    ci = law.ci_ if law.bootstrap_ is not None else getattr(law, "stored_ci_", {})
    for _axis, coef, exp in terms:
        if coef in ci:
            c_lo, c_hi = ci[coef]
            wide = c_lo <= 0 or not np.isfinite(c_hi) or np.log10(c_hi / c_lo) > DECADES
            if wide:
                return Identification(
                    False,
                    f"{coef} CI [{c_lo:.3g}, {c_hi:.3g}] spans more than {DECADES:g} decades",
                    "ci",
                )
        if exp in ci:
            e_lo, e_hi = ci[exp]
            if e_hi - e_lo > EXPONENT_SPAN * span:
                return Identification(
                    False,
                    f"{exp} CI [{e_lo:.3g}, {e_hi:.3g}] spans more than half the exponent "
                    f"range [{lo:g}, {hi:g}]",
                    "ci",
                )
    return Identification(True, None)
