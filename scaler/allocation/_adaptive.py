"""Law-aware allocation: run next what most shrinks the uncertainty of the target, per unit cost.

After each refit of the law on the points observed so far, the parameter uncertainty is the
local (Laplace / Gauss-Newton) approximation around the fit:

    F = J^T J / s^2 + P          J: d log L(x_i) / d theta at every observed (or running) point
                                 s^2: residual variance of the fit, P: a weak prior
    V = mean_t  g_t^T F^-1 g_t    g_t: d log L(target_t) / d theta

so V is the variance of the log-prediction (about the squared relative error) at the targets.
A candidate adds the rows of every eval point it observes (each eval point of a run is a data-axis
observation for free); its expected gain is V - V(F + J_c^T J_c / s^2), and the policy picks the
largest gain per unit cost.  F does not depend on losses not yet seen, so running trials count as
soon as they start and several trials run at once without duplicating information.  A law whose
parameter axis saturates (alpha -> 0) makes the parameter-axis rows nearly uninformative about the
target, so the budget flows to the axis that pays, with no special case.

The sweep stops when sqrt(V) from finished points is below `tolerance`, or when the budget is
spent; a running trial stops when the gain per cost of its remaining eval points falls below
`stop_ratio` times that of the best candidate not yet run.  `explain()` says why.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np

from scaler.allocation._base import Candidate, Ledger, Policy
from scaler.allocation._design import Design
from scaler.laws import JointLaw, PowerLaw

log = logging.getLogger(__name__)

NOISE_FLOOR = 1e-3  # relative noise below which residuals are not trusted to shrink further
TOP = 5  # candidates shown in each explanation


def log_jacobian(theta: np.ndarray, logx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d log L / d theta at each row of logx, for theta = [c, s_1..s_K, a_1..a_K] with
    L = c + sum_k exp(s_k - a_k log x_k).  Returns (J (n, 1+2K), L (n,))."""
    k = logx.shape[1]
    terms = np.exp(theta[1 : 1 + k] - theta[1 + k :] * logx)  # (n, K)
    pred = theta[0] + terms.sum(axis=1)
    jac = np.concatenate([np.ones((len(logx), 1)), terms, -terms * logx], axis=1)
    return jac / pred[:, None], pred


def target_variance(info: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Mean over targets of g F^-1 g^T, for one F (P, P) or a batch (C, P, P)."""
    inv = np.linalg.inv(info)
    return np.einsum("tp,...pq,tq->...", g, inv, g) / len(g)


class AdaptivePolicy(Policy):
    name = "adaptive"

    def __init__(
        self,
        candidates: list[Candidate],
        seed: int = 0,
        *,
        design: Design | None = None,
        target: np.ndarray | Callable | None = None,
        tolerance: float | None = None,
        stop_ratio: float = 0.1,
    ):
        super().__init__(candidates, seed, design=design or Design())
        if tolerance is not None and not tolerance > 0:
            raise ValueError(f"tolerance is {tolerance}, but must be > 0")
        self.target = target
        self.tolerance = tolerance
        self.stop_ratio = stop_ratio
        self.chosen: list[int] = []
        self.running: dict[int, list[tuple]] = {}  # candidate index -> points seen so far
        self.observed: list[tuple] = []  # (x..., loss) of every reported point
        self.done_reason: str | None = None
        self.decisions: list[dict] = []
        self._fit_cache: tuple[int, object] | None = None
        tops = [self.design.top(c) for c in self.candidates]
        self.shift = np.log(np.array(tops)).mean(axis=0) if tops else np.zeros(self.design.n_axes)

    # --- bookkeeping ------------------------------------------------------------------------
    def _index(self, candidate: Candidate) -> int | None:
        for i in reversed(self.chosen):
            if self.candidates[i] == candidate:
                return i
        return None

    def on_result(self, trial_id: str, candidate: Candidate, points: list) -> None:
        i = self._index(candidate)
        for p in points:
            if "loss" not in p or "samples" not in p:
                continue
            loss = float(p["loss"])
            if not (math.isfinite(loss) and loss > 0):
                continue
            row = (*self.design.x(candidate, p["samples"]), loss)
            self.observed.append(row)
            if i is not None and i in self.running:
                self.running[i].append(row)

    def on_complete(self, trial_id: str, candidate: Candidate, result: dict | None = None) -> None:
        i = self._index(candidate)
        if i is not None:
            self.running.pop(i, None)

    # --- the law and its uncertainty ----------------------------------------------------------
    def law(self):
        """The law fitted on every point observed so far (None while too few)."""
        n = len(self.observed)
        if self._fit_cache is not None and self._fit_cache[0] == n:
            return self._fit_cache[1]
        law = None
        k = self.design.n_axes
        obs = np.array(self.observed, dtype=float).reshape(-1, k + 1)
        distinct = all(len(np.unique(obs[:, j])) >= 2 for j in range(k))
        if n > 1 + 2 * k + 1 and distinct:
            try:
                law = (JointLaw() if k == 2 else PowerLaw()).fit(obs[:, :k], obs[:, k])
            except (ValueError, RuntimeError) as exc:
                log.debug("adaptive: no fit yet (%s)", exc)
        self._fit_cache = (n, law)
        return law

    def _theta(self, law) -> np.ndarray:
        theta = law.theta_.copy()
        k = self.design.n_axes
        theta[1 : 1 + k] -= theta[1 + k :] * self.shift  # centred log x: better conditioned
        return theta

    def _targets(self, law) -> np.ndarray:
        if callable(self.target):
            return np.asarray(self.target(law), dtype=float).reshape(-1, self.design.n_axes)
        if self.target is not None:
            return np.asarray(self.target, dtype=float).reshape(-1, self.design.n_axes)
        top = np.array([self.design.top(c) for c in self.candidates]).max(axis=0)
        return (10.0 * top)[None, :]  # default: 10x beyond the largest trial on every axis

    def _info(self, law, theta, rows: np.ndarray) -> tuple[np.ndarray, float]:
        k = self.design.n_axes
        obs = np.array(self.observed, dtype=float).reshape(-1, k + 1)
        resid = np.log(law.predict(obs[:, :k])) - np.log(obs[:, k])
        dof = max(1, len(obs) - (1 + 2 * k))
        s2 = max(float(resid @ resid) / dof, NOISE_FLOOR**2)
        ymean = float(np.mean(obs[:, k]))
        prior = np.diag([1 / ymean**2] + [1 / 9.0] * k + [1.0] * k)
        jac, _ = log_jacobian(theta, np.log(rows) - self.shift)
        return jac.T @ jac / s2 + prior, s2

    def assess(self, ledger: Ledger | None = None) -> dict | None:
        """Score every candidate not yet run: expected variance reduction at the target per
        unit cost.  None while no law is fitted."""
        law = self.law()
        if law is None:
            return None
        theta = self._theta(law)
        k = self.design.n_axes
        obs_x = np.array(self.observed, dtype=float).reshape(-1, k + 1)[:, :k]
        pending = [self.design.points(self.candidates[i]) for i in self.running]
        rows = np.concatenate([obs_x, *pending]) if pending else obs_x
        info, s2 = self._info(law, theta, rows)
        info_seen, _ = self._info(law, theta, obs_x)
        targets = self._targets(law)
        g, _ = log_jacobian(theta, np.log(targets) - self.shift)
        v_now = float(target_variance(info, g))
        v_seen = float(target_variance(info_seen, g))
        chosen = set(self.chosen)
        idx = [i for i in range(len(self.candidates)) if i not in chosen]
        if ledger is not None:
            idx = [i for i in idx if ledger.fits(self.cost(self.candidates[i]))]
        gains = np.zeros(len(idx))
        if idx:
            batch = []
            for i in idx:
                jc, _ = log_jacobian(
                    theta, np.log(self.design.points(self.candidates[i])) - self.shift
                )
                batch.append(info + jc.T @ jc / s2)
            gains = v_now - target_variance(np.array(batch), g)
        costs = np.array([max(self.cost(self.candidates[i]), 1e-300) for i in idx])
        per_cost = gains / costs if idx else gains
        return {
            "law": law,
            "theta": theta,
            "info": info,
            "s2": s2,
            "g": g,
            "v_now": v_now,
            "v_seen": v_seen,
            "rel_sd": math.sqrt(max(v_seen, 0.0)),
            "index": idx,
            "gain": gains,
            "cost": costs,
            "per_cost": per_cost,
        }

    # --- decisions ----------------------------------------------------------------------------
    def propose(self, ledger: Ledger) -> Candidate | None:
        if self.done_reason:
            return None
        a = self.assess(ledger)
        if a is None:
            return self._seed(ledger)
        if self.tolerance is not None and a["rel_sd"] < self.tolerance and not self.running:
            self.done_reason = (
                f"target relative sd {a['rel_sd']:.4g} below tolerance {self.tolerance:g}"
            )
            log.info("adaptive: stop, %s", self.done_reason)
            self._record(a, None, ledger)
            return None
        if not a["index"]:
            return None
        best = int(np.lexsort((a["cost"], -a["per_cost"]))[0])
        if not a["gain"][best] > 0:
            return None
        i = a["index"][best]
        self._record(a, i, ledger)
        return self._choose(i)

    def _seed(self, ledger: Ledger) -> Candidate | None:
        """Before a law can be fitted: the smallest run of the smallest, largest and middle model
        (spread on every axis at the least cost), then the cheapest runs."""
        chosen = set(self.chosen)
        groups: dict = {}
        for i, c in enumerate(self.candidates):
            groups.setdefault(self.design.group(c), []).append(i)
        by_size = sorted(groups.values(), key=lambda ix: self.design.top(self.candidates[ix[0]])[0])
        order = []
        if self.design.n_axes == 2 and by_size:
            picks = [by_size[0], by_size[-1], by_size[len(by_size) // 2]]
            order += [min(ix, key=lambda i: self.cost(self.candidates[i])) for ix in picks]
        order += sorted(
            range(len(self.candidates)), key=lambda i: (self.cost(self.candidates[i]), i)
        )
        for i in order:
            if i not in chosen and ledger.fits(self.cost(self.candidates[i])):
                return self._choose(i)
        return None

    def _choose(self, i: int) -> Candidate:
        self.chosen.append(i)
        self.running[i] = []
        self.design.bought(self.candidates[i])
        return self.candidates[i]

    def waiting(self, ledger: Ledger) -> bool:
        return bool(self.running) and not self.done_reason

    def should_stop(self, trial_id: str, candidate: Candidate, result: dict) -> bool:
        """Stop a running trial when the sweep is done, or when its remaining eval points are
        worth less than `stop_ratio` of the best candidate not yet run (per unit cost)."""
        samples_done = int(result.get("samples", 0))
        if self.done_reason:
            return True
        i = self._index(candidate)
        a = self.assess()
        if i is None or a is None or not len(a["index"]):
            return False
        rest = self.design.points(candidate)
        rest = rest[rest[:, -1] > samples_done]
        if not len(rest):
            return False
        frac = 1.0 - samples_done / candidate.samples
        cost = max(self.cost(candidate) * frac, 1e-300)
        # the trial's remaining rows are already counted in F as pending: value them by removal
        jr, _ = log_jacobian(a["theta"], np.log(rest) - self.shift)
        without = a["info"] - jr.T @ jr / a["s2"]
        gain = float(target_variance(without, a["g"])) - a["v_now"]
        stop = gain / cost < self.stop_ratio * float(np.max(a["per_cost"]))
        if stop:
            log.info(
                "adaptive: stop trial %s at %d samples (gain/cost %.3g)",
                trial_id,
                samples_done,
                gain / cost,
            )
        return bool(stop)

    def _record(self, a: dict, chosen: int | None, ledger: Ledger) -> None:
        order = np.argsort(-a["per_cost"])[:TOP]
        self.decisions.append(
            {
                "step": len(self.chosen),
                "n_points": len(self.observed),
                "target_rel_sd": a["rel_sd"],
                "target_rel_sd_with_running": math.sqrt(max(a["v_now"], 0.0)),
                "chosen": None if chosen is None else self.candidates[chosen].config(),
                "stop": self.done_reason,
                "spent_per_axis": self.spent_per_axis(),
                "top": [
                    {
                        "config": self.candidates[a["index"][j]].config(),
                        "gain": float(a["gain"][j]),
                        "cost": float(a["cost"][j]),
                        "gain_per_cost": float(a["per_cost"][j]),
                    }
                    for j in order
                ],
                "law": a["law"].to_dict()["params"],
            }
        )

    def spent_per_axis(self) -> dict[str, float]:
        """Where the cost went: cost-weighted mean position of the chosen runs on each axis,
        0 = the smallest value of the space, 1 = the largest (log scale)."""
        if not self.chosen:
            return {}
        names = ["params", "samples"] if self.design.n_axes == 2 else ["samples"]
        top = [self.design.top(c) for c in self.candidates]
        logs = np.log(np.array(top))
        lo, hi = logs.min(axis=0), logs.max(axis=0)
        span = np.where(hi > lo, hi - lo, 1.0)
        pos = (logs[self.chosen] - lo) / span
        w = np.array([self.cost(self.candidates[i]) for i in self.chosen])
        w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1 / len(w))
        return {n: float(w @ pos[:, j]) for j, n in enumerate(names)}

    def explain(self) -> dict | None:
        return self.decisions[-1] if self.decisions else None

    # --- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "chosen": list(self.chosen),
            "running": {i: list(v) for i, v in self.running.items()},
            "observed": list(self.observed),
            "done_reason": self.done_reason,
            "decisions": list(self.decisions),
        }

    def load_state_dict(self, state: dict) -> None:
        self.chosen = list(state["chosen"])
        self.running = {int(i): list(v) for i, v in state["running"].items()}
        self.observed = [tuple(r) for r in state["observed"]]
        self.done_reason = state["done_reason"]
        self.decisions = list(state["decisions"])
        self._fit_cache = None
