"""Replay a policy on a recorded pool: what would it have run, spent and predicted?

The policy may only "run" rows of the pool.  A chosen row costs its cost; with runs, rows of one
run at increasing data cost only the increment, and the run's earlier checkpoints come free.  The
same policy objects run here as in a live sweep: only the `Design` differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scaler.allocation._base import Candidate, Ledger, Policy
from scaler.allocation._design import Design
from scaler.laws import JointLaw, PowerLaw


@dataclass
class Pool:
    """Rows a policy may choose: law inputs x (n, k), losses y, costs, run labels (or None)."""

    x: np.ndarray
    y: np.ndarray
    cost: np.ndarray
    run: np.ndarray | None = None

    def __post_init__(self):
        self.x = np.asarray(self.x, dtype=float).reshape(len(self.y), -1)
        self.y = np.asarray(self.y, dtype=float)
        self.cost = np.asarray(self.cost, dtype=float)
        for name, v in (("x", self.x), ("y", self.y), ("cost", self.cost)):
            bad = np.flatnonzero(~(np.isfinite(v) & (v > 0)).reshape(len(self.y), -1).all(axis=1))
            if len(bad):
                raise ValueError(
                    f"pool {name} must be finite and > 0, got a bad value at row {bad[0] + 1}"
                )
        if len(self.y) < 2:
            raise ValueError(f"pool has {len(self.y)} rows, but needs at least 2")

    def total_cost(self) -> float:
        """Cost of running the whole pool (with runs: each run to its last row)."""
        if self.run is None:
            return float(self.cost.sum())
        return float(sum(self.cost[self.run == r].max() for r in np.unique(self.run)))


@dataclass
class ReplayDesign(Design):
    """One candidate per row: params = (("group", g),), samples = the row's rank in its group.

    Groups are runs (with `--run`) or the rows' non-data axes (the model): halving promotes
    within a group; prices are incremental within a run only."""

    pool: Pool | None = None
    rows_of: dict = field(default_factory=dict)  # candidate -> row index
    bought_rows: set = field(default_factory=set)
    paid: dict = field(default_factory=dict)  # candidate -> cost when chosen
    revealed: dict = field(default_factory=dict)  # candidate -> rows it revealed
    run_paid: dict = field(default_factory=dict)  # run -> cost of its dearest row bought

    def build(self) -> list[Candidate]:
        pool = self.pool
        if pool.run is not None:
            keys = [str(r) for r in pool.run]
        else:
            keys = [tuple(row[:-1]) for row in pool.x]  # the model: every axis but the last
        labels = {k: g for g, k in enumerate(dict.fromkeys(keys))}
        out = []
        for g in set(labels.values()):
            members = sorted(
                (i for i, k in enumerate(keys) if labels[k] == g),
                key=lambda i: (pool.x[i, -1], pool.cost[i], i),
            )
            for rank, i in enumerate(members, start=1):
                c = Candidate((("group", float(g)),), rank, flops=float(pool.cost[i]))
                self.rows_of[c] = i
                out.append(c)
        self.by_key = {(c.params, c.samples): i for c, i in self.rows_of.items()}
        return sorted(out, key=lambda c: (c.flops, c.params, c.samples))

    @property
    def n_axes(self) -> int:
        return self.pool.x.shape[1]

    def x(self, candidate: Candidate, samples: float) -> tuple[float, ...]:
        return tuple(self.pool.x[self.by_key[(candidate.params, int(samples))]])

    def _new_rows(self, candidate: Candidate) -> list[int]:
        i = self.rows_of[candidate]
        if self.pool.run is None:
            rows = [i]
        else:
            rows = [self.by_key[(candidate.params, r)] for r in range(1, candidate.samples + 1)]
        return [r for r in rows if r not in self.bought_rows]

    def points(self, candidate: Candidate) -> np.ndarray:
        rows = self._new_rows(candidate)
        return self.pool.x[rows].reshape(-1, self.n_axes)

    def top(self, candidate: Candidate) -> np.ndarray:
        return self.pool.x[self.rows_of[candidate]]

    def cost(self, candidate: Candidate) -> float:
        i = self.rows_of[candidate]
        if self.pool.run is None:
            return 0.0 if i in self.bought_rows else float(self.pool.cost[i])
        done = self.run_paid.get(self.pool.run[i], 0.0)
        return float(max(self.pool.cost[i] - done, 0.0))

    def bought(self, candidate: Candidate) -> None:
        self.paid[candidate] = self.cost(candidate)
        rows = self._new_rows(candidate)
        self.revealed[candidate] = rows
        self.bought_rows.update(rows)
        if self.pool.run is not None:
            for r in rows:  # the dearest row bought of each run: what its next rows cost over
                run = self.pool.run[r]
                self.run_paid[run] = max(self.run_paid.get(run, 0.0), float(self.pool.cost[r]))

    def results(self, candidate: Candidate) -> list[dict]:
        rank = {i: s for (_, s), i in self.by_key.items()}
        return [
            {"samples": rank[r], "loss": float(self.pool.y[r])} for r in self.revealed[candidate]
        ]


def run_policy(
    policy: Policy,
    ledger: Ledger,
    results: Callable[[Candidate], list[dict]],
    paid: Callable[[Candidate], float],
    on_step: Callable[[Candidate], None] | None = None,
    max_steps: int = 100_000,
) -> list[Candidate]:
    """Drive a policy sequentially: propose, pay, report every point, complete."""
    chosen: list[Candidate] = []
    for step in range(max_steps):
        c = policy.propose(ledger)
        if c is None:
            break
        tid = f"t{step:05d}"
        cost = paid(c)
        ledger.start(tid, cost)
        policy.on_result(tid, c, results(c))
        policy.on_complete(tid, c)
        ledger.finish(tid, cost, None)
        chosen.append(c)
        if on_step is not None:
            on_step(c)
    return chosen


def law_for(k: int):
    return JointLaw() if k == 2 else PowerLaw()


def fit_law(x, y):
    """The law of x's axes fitted on (x, y), or None if it cannot be fitted."""
    try:
        return law_for(x.shape[1]).fit(x, y)
    except (ValueError, RuntimeError):
        return None


def target_mape(x, y, target_x, target_y) -> tuple[dict | None, float]:
    """Fit on (x, y), return (params, mean |relative error| on the target); nan if no fit."""
    return fitted_mape(fit_law(x, y), target_x, target_y)


def fitted_mape(law, target_x, target_y) -> tuple[dict | None, float]:
    """(params, mean |relative error| on the target) of a fitted law; (None, nan) for None."""
    if law is None:
        return None, float("nan")
    pred = law.predict(target_x)
    return law.to_dict()["params"], float(np.mean(np.abs(pred - target_y) / target_y))


@dataclass
class ReplayResult:
    seed: int
    spent_fraction: float
    rows: list[int]
    params: dict | None
    target_mape: float
    trajectory: list[tuple[float, float]]  # (spent fraction, target mape) after each step

    def to_dict(self) -> dict:
        return {
            "seed": self.seed,
            "spent_fraction": self.spent_fraction,
            "rows": self.rows,
            "params": self.params,
            "target_mape": self.target_mape,
        }


def replay(
    pool: Pool,
    target_x: np.ndarray,
    target_y: np.ndarray,
    *,
    policy: str,
    budget: float,
    seed: int = 0,
    trajectory: bool = False,
    tolerance: float | None = None,
    **options,
) -> ReplayResult:
    """Run `policy` on `pool` with `budget` (a fraction of the pool's total cost); `options` go
    to the policy (`make_policy`)."""
    from scaler.allocation import make_policy

    if not 0 < budget <= 1:
        raise ValueError(f"budget is {budget}, but must be in (0, 1]")
    design = ReplayDesign(pool=pool)
    candidates = design.build()
    total = pool.total_cost()
    ledger = Ledger(flops_limit=budget * total * (1 + 1e-12))
    pol = make_policy(
        policy, candidates, seed, design=design, target=target_x, tolerance=tolerance, **options
    )
    traj: list[tuple[float, float]] = []

    def step(c: Candidate) -> None:
        if trajectory:
            rows = sorted(design.bought_rows)
            traj.append(
                (
                    ledger.spent_flops / total,
                    target_mape(pool.x[rows], pool.y[rows], target_x, target_y)[1],
                )
            )

    run_policy(pol, ledger, design.results, lambda c: design.paid[c], on_step=step)
    rows = sorted(int(r) for r in design.bought_rows)
    params, mape = target_mape(pool.x[rows], pool.y[rows], target_x, target_y)
    return ReplayResult(seed, ledger.spent_flops / total, rows, params, mape, traj)
