"""Successive halving along the data axis (ASHA-like): the baseline a tuner would pick.

Every model starts at its smallest sample budget (rung 0).  A finished trial is promoted to its
model's next sample budget when its loss is in the best 1/eta of the trials finished at its rung
(asynchronously, as in ASHA: no rung waits to fill).  Promotions come first, then new models.
"""

from __future__ import annotations

import math

from scaler.allocation._base import Candidate, Ledger, Policy, latest_choice
from scaler.allocation._design import Design


def promotable(losses: list[tuple[float, int]], promoted: set[int], eta: int) -> list[int]:
    """Indices among `losses` = [(loss, index)] in the best floor(len/eta), not yet promoted."""
    k = len(losses) // eta
    best = sorted(losses)[:k]
    return [i for _, i in best if i not in promoted]


class HalvingPolicy(Policy):
    name = "halving"

    def __init__(
        self, candidates: list[Candidate], seed: int = 0, *, design: Design | None = None, eta=3
    ):
        super().__init__(candidates, seed, design=design or Design())
        if eta < 2:
            raise ValueError(f"eta is {eta}, but must be >= 2")
        self.eta = eta
        groups: dict = {}
        for i, c in enumerate(self.candidates):
            groups.setdefault(self.design.group(c), []).append(i)
        # each model's candidates by increasing data: its rungs
        self.ladders = [
            sorted(ix, key=lambda i: self.candidates[i].samples) for ix in groups.values()
        ]
        self.ladders.sort(key=lambda ix: (self.candidates[ix[0]].flops, ix[0]))
        self.rung_of = {i: (g, r) for g, ix in enumerate(self.ladders) for r, i in enumerate(ix)}
        self.next_group = 0
        self.running: set[int] = set()
        self.losses: dict[int, float] = {}  # finished candidate -> its final loss
        self.losses_pending: dict[int, float] = {}  # running candidate -> its latest loss
        self.promoted: set[int] = set()
        self.chosen: list[int] = []

    def propose(self, ledger: Ledger) -> Candidate | None:
        for i in self._promotions():
            g, r = self.rung_of[i]
            nxt = self.ladders[g][r + 1]
            if ledger.fits(self.cost(self.candidates[nxt])):
                self.promoted.add(i)
                return self._choose(nxt)
        while self.next_group < len(self.ladders):
            first = self.ladders[self.next_group][0]
            self.next_group += 1
            if ledger.fits(self.cost(self.candidates[first])):
                return self._choose(first)
        return None

    def _promotions(self) -> list[int]:
        out = []
        top = max((len(ix) for ix in self.ladders), default=0)
        for r in range(top - 2, -1, -1):  # higher rungs first
            at = [
                (loss, i)
                for i, loss in self.losses.items()
                if self.rung_of[i][1] == r and r + 1 < len(self.ladders[self.rung_of[i][0]])
            ]
            out += promotable(at, self.promoted, self.eta)
        return out

    def _choose(self, i: int) -> Candidate:
        self.running.add(i)
        self.chosen.append(i)
        self.design.bought(self.candidates[i])
        return self.candidates[i]

    def waiting(self, ledger: Ledger) -> bool:
        return bool(self.running)

    def on_result(self, trial_id: str, candidate: Candidate, points: list) -> None:
        i = latest_choice(self.candidates, self.chosen, candidate)
        for p in points:
            if i is not None and "loss" in p and math.isfinite(p["loss"]):
                self.losses_pending[i] = float(p["loss"])

    def on_complete(self, trial_id: str, candidate: Candidate, result: dict | None = None) -> None:
        i = latest_choice(self.candidates, self.chosen, candidate)
        if i is None:
            return
        self.running.discard(i)
        loss = self.losses_pending.pop(i, math.inf)
        self.losses[i] = loss

    def state_dict(self) -> dict:
        return {
            "next_group": self.next_group,
            "running": sorted(self.running),
            "losses": dict(self.losses),
            "pending": dict(self.losses_pending),
            "promoted": sorted(self.promoted),
            "chosen": list(self.chosen),
        }

    def load_state_dict(self, state: dict) -> None:
        self.next_group = state["next_group"]
        self.running = set(state["running"])
        self.losses = {int(k): v for k, v in state["losses"].items()}
        self.losses_pending = {int(k): v for k, v in state["pending"].items()}
        self.promoted = set(state["promoted"])
        self.chosen = list(state["chosen"])
