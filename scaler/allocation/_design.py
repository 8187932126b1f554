"""What running a candidate buys: the law inputs it observes and what it costs.

A `Design` connects a policy to where its candidates come from, so one policy runs live (a Tune
sweep: a trial observes every point of its eval schedule) and in replay (a recorded pool: a
chosen row, and with runs every earlier checkpoint of its run, for only the increment in cost).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from scaler.allocation._base import Candidate


def default_schedule(samples: int, n_points: int = 6) -> list[int]:
    """Log-spaced eval points ending at `samples` (the oracle trial's schedule)."""
    first = max(1, samples // 2**7)
    return sorted({int(v) for v in np.round(np.geomspace(first, samples, n_points))})


@dataclass
class Design:
    """Law inputs x = (N, D) (or (D,) when only data varies) of what a candidate observes.

    size_of:   the model size N of a candidate (None: the law has the data axis only)
    schedule:  the sample counts at which a candidate of budget D is evaluated
    """

    size_of: Callable[[Candidate], float] | None = None
    schedule: Callable[[int], list[int]] = default_schedule

    @property
    def n_axes(self) -> int:
        return 1 if self.size_of is None else 2

    def x(self, candidate: Candidate, samples: float) -> tuple[float, ...]:
        if self.size_of is None:
            return (float(samples),)
        return (float(self.size_of(candidate)), float(samples))

    def points(self, candidate: Candidate) -> np.ndarray:
        """(m, n_axes) law inputs running the candidate would add."""
        rows = [self.x(candidate, d) for d in self.schedule(candidate.samples)]
        return np.array(rows, dtype=float).reshape(-1, self.n_axes)

    def top(self, candidate: Candidate) -> np.ndarray:
        """Law input of the candidate's last (largest) point."""
        return np.array(self.x(candidate, candidate.samples), dtype=float)

    def cost(self, candidate: Candidate) -> float:
        return candidate.flops

    def group(self, candidate: Candidate):
        """The model a candidate trains (halving promotes a model to more data)."""
        return candidate.params

    def bought(self, candidate: Candidate) -> None:
        """The candidate was chosen (replay designs use it to price later increments)."""


def candidate_size(candidate: Candidate) -> float:
    """N of a candidate: its `n_params` knob, else the product of its knobs."""
    p = dict(candidate.params)
    if "n_params" in p:
        return float(p["n_params"])
    return float(np.prod([v for v in p.values()])) if p else 1.0
