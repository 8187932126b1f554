"""The baselines a user would otherwise pick: every candidate in order, or in a seeded shuffle."""

from __future__ import annotations

import random

from scaler.allocation._base import Candidate, Ledger, Policy


class GridPolicy(Policy):
    """Every candidate once, cheapest first, while the budget allows."""

    name = "grid"

    def __init__(self, candidates: list[Candidate], seed: int = 0, *, design=None):
        super().__init__(candidates, seed, design=design)
        self.next_index = 0

    def propose(self, ledger: Ledger) -> Candidate | None:
        if self.next_index >= len(self.candidates):
            return None
        candidate = self.candidates[self.next_index]
        if not ledger.fits(self.cost(candidate)):
            return None
        self.next_index += 1
        if self.design is not None:
            self.design.bought(candidate)
        return candidate

    def state_dict(self) -> dict:
        return {"next_index": self.next_index}

    def load_state_dict(self, state: dict) -> None:
        self.next_index = state["next_index"]


class RandomPolicy(GridPolicy):
    """Candidates in a seeded random order, each at most once (sampling without replacement)."""

    name = "random"

    def __init__(self, candidates: list[Candidate], seed: int = 0, *, design=None):
        shuffled = list(candidates)
        random.Random(seed).shuffle(shuffled)
        super().__init__(shuffled, seed, design=design)
