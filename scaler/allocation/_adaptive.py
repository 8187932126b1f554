"""Law-aware allocation: run next what most shrinks the error of the target, per unit cost.

After each refit of the law on the points observed so far, the log-loss is modelled around the
fit as a linear-Gaussian model (Laplace / Gauss-Newton, plus a discrepancy term for a law that
is only approximately right):

    log y(x) = log L(x; theta) + delta(x) + eps,   linearised: J(x) = d log L / d theta
    delta ~ GP(0, r s^2 k_l)             k_l: squared-exponential kernel in log x, length l
    eps ~ N(0, (1 - r) s^2)              s^2: residual variance of the fit (>= NOISE_FLOOR^2)

The split r of the residual variance into discrepancy (smooth in log x) and noise, and the
length l, are chosen by marginal likelihood of the residuals (type-II maximum likelihood over a
small grid; `discrepancy=False` fixes r = 0).  The quantity a candidate is scored on is V, the
expected squared log-error (about the squared relative error) at the targets of the law that will
actually be fitted — least squares on the points, with a weak prior P:

    theta_fit - theta = H^-1 J^T (delta + eps),   H = J^T J + (1 - r) s^2 P
    V = mean_t E[(g_t (theta_fit - theta) - delta(t))^2]       g_t: d log L(target_t) / d theta

On a law that fits (r = 0) this is the parameter uncertainty g_t F^-1 g_t^T with
F = J^T J / s^2 + P.  With r > 0, points far from the target carry a discrepancy the law cannot
absorb, so they are worth less, and can be worth less than nothing: the budget moves towards the
target instead of piling up cheap runs whose residuals the law cannot explain.  V conditions on
every observed and every still-running point (their losses are not needed), so several trials
run at once without duplicating information.

A candidate adds the rows of every eval point it observes (each eval point of a run is a
data-axis observation for free); its expected gain is the reduction of V, and the policy picks
the largest gain per unit cost.  A law whose parameter axis saturates (alpha -> 0) makes the
parameter-axis rows nearly uninformative about the target, so the budget flows to the axis that
pays, with no special case.

The sweep stops when sqrt(V) from finished points is below `tolerance / STOP_Z` (an error within
the tolerance with 80 % probability, if Gaussian) and a bootstrap of the fit agrees (the
first-order sd is too optimistic where the law is far from linear in its parameters,
e.g. an exponent near 0 with 1 % noise: measured 0.5-0.8x the realised error there, the bootstrap
1.1x), when no candidate is expected to reduce V, or when the budget is spent; a running trial
stops when the gain per cost of its remaining eval points falls below `stop_ratio` times that of
the best candidate not yet run.  `explain()` says why (with the noise and discrepancy it assumed).

When the law misfits (the fit's residuals are mostly discrepancy, smooth in log x, rather than
noise, by the marginal likelihood above), the error at the target is the law's bias, and the
first-order variance no longer says which runs help.  On every public pool we replay (Chinchilla
and the 15 IsoFLOP setups of Porian et al. 2024, `benchmarks/bench_allocation.py`) a fit on the
runs nearest the target extrapolates 2-10x better than a fit on the whole pool, and the variance
criterion's cheap, far runs make it worse.  So in that mode the policy buys the candidates nearest
the target (in log x, each axis scaled by the space's range), keeping budget for `MIN_RUNS` runs
so that the law stays identified, and only those the model above expects to reduce V (with the
discrepancy term, a far run can raise it: the budget's last cheap runs, tiny models on a few
million tokens, took an IsoFLOP pool's error from 2 % to 13-17 %); when none is left the sweep
ends with budget unspent.  It stops no running trial early.  Until the law is identified
(three distinct values on every axis) it does the same, except that no run is refused for its
expected gain (an unidentified law's expectations are not worth trusting: on an oracle pool the
misfit rule ended a sweep with two model sizes bought, its target 30 % off), preferring runs
that add a value on a thin axis, none dearer than half the budget left (the median candidate's
cost without a FLOP budget): the first runs are then useful whichever mode follows, and a law
that fits has not been paid for at the largest runs' price.  The mode is re-decided at every
decision and recorded with it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from scaler.allocation._base import Candidate, Ledger, Policy, latest_choice
from scaler.allocation._design import Design
from scaler.laws import JointLaw, PowerLaw

log = logging.getLogger(__name__)

STOP_Z = 1.2816  # a tolerance is met with 80 % probability: sd <= tolerance / z(0.9)
CONFIRM_BOOTSTRAP = 50  # resamples that confirm a tolerance stop (0: trust the first order)
NOISE_FLOOR = 1e-3  # relative noise below which residuals are not trusted to shrink further
# log-likelihood a discrepancy must add over noise alone to be kept.  2.0 removes the misfit mode's
# false alarms on small oracle sweeps, but comes too late on the public pools (their errors at
# 5-20 % rose up to 5x, measured): a few runs near the target cost little on a law that fits.
DISCREPANCY_NATS = 0.0
DISCREPANCY_SHARES = (0.0, 0.25, 0.5, 0.75, 0.9)  # candidate shares r of s^2 that are discrepancy
LENGTHS = (0.5, 1.0, 2.0, 4.0)  # candidate kernel lengths, in units of ln x
REFIT_GROWTH = 0.1  # refit the law once the points have grown by this fraction since the last fit
TOP = 5  # candidates shown in each explanation
MIN_RUNS = 8  # runs the nearest-first design keeps budget for (5 law parameters, and spare)


def log_jacobian(theta: np.ndarray, logx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d log L / d theta at each row of logx, for theta = [c, s_1..s_K, a_1..a_K] with
    L = c + sum_k exp(s_k - a_k log x_k).  Returns (J (n, 1+2K), L (n,))."""
    k = logx.shape[1]
    terms = np.exp(theta[1 : 1 + k] - theta[1 + k :] * logx)  # (n, K)
    pred = theta[0] + terms.sum(axis=1)
    jac = np.concatenate([np.ones((len(logx), 1)), terms, -terms * logx], axis=1)
    return jac / pred[:, None], pred


def sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of a (n, k) and b (m, k)."""
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)


def gaussian_loglik(r: np.ndarray, cov: np.ndarray) -> float:
    """log N(r; 0, cov) up to the constant (-inf if cov is not positive definite)."""
    try:
        c, low = cho_factor(cov, lower=True)
    except np.linalg.LinAlgError:
        return -math.inf
    return float(-0.5 * r @ cho_solve((c, low), r) - np.log(np.diag(c)).sum())


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
        discrepancy: bool = True,
        confirm_bootstrap: int = CONFIRM_BOOTSTRAP,
    ):
        super().__init__(candidates, seed, design=design or Design())
        if tolerance is not None and not tolerance > 0:
            raise ValueError(f"tolerance is {tolerance}, but must be > 0")
        self.target = target
        self.tolerance = tolerance
        self.sd_limit = math.inf if tolerance is None else tolerance / STOP_Z  # the stop's sd
        self.stop_ratio = stop_ratio
        self.discrepancy = discrepancy  # False: a law taken as exact (noise only, r = 0)
        self.confirm_bootstrap = confirm_bootstrap
        self.inflation = 1.0  # bootstrap sd / first-order sd at the last confirmation
        self.inflation_points = 0  # points observed at the last confirmation
        self.chosen: list[int] = []
        self.running: dict[int, list[tuple]] = {}  # candidate index -> points seen so far
        self.observed: list[tuple] = []  # (x..., loss) of every reported point
        self.done_reason: str | None = None
        self.decisions: list[dict] = []
        self._fit_cache: tuple[int, object] | None = None
        self._model_cache: tuple[int, dict] | None = None
        self._restored_fit = 0  # points of the last fit, from a restored state
        tops = np.log(np.array([self.design.top(c) for c in self.candidates]))
        tops = tops.reshape(-1, self.design.n_axes)
        self.shift = tops.mean(axis=0) if len(tops) else np.zeros(self.design.n_axes)
        # each candidate's top point, each axis scaled to [0, 1] over the space: for distances
        self._lo = tops.min(axis=0) if len(tops) else self.shift
        self._span = (
            np.where(np.ptp(tops, axis=0) > 0, np.ptp(tops, axis=0), 1.0) if len(tops) else 1.0
        )
        self._unit = (tops - self._lo) / self._span

    # --- bookkeeping ------------------------------------------------------------------------
    def on_result(self, trial_id: str, candidate: Candidate, points: list) -> None:
        i = latest_choice(self.candidates, self.chosen, candidate)
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
        i = latest_choice(self.candidates, self.chosen, candidate)
        if i is not None:
            self.running.pop(i, None)

    # --- the law and its uncertainty ----------------------------------------------------------
    def law(self):
        """The law fitted on the points observed so far (None while too few).  Refitted once the
        points have grown by `REFIT_GROWTH` since the last fit (a fit's optimum moves little
        with a few more points, and the refits were most of a decision's time); in between, the
        model around it (`_model`) still uses every point.  The schedule depends on the point
        count only, so a policy restored from its state refits exactly where it left off."""
        n = len(self.observed)
        if self._fit_cache is None and 0 < self._restored_fit <= n:  # where the state left off
            self._fit_cache = (self._restored_fit, self._fit(self._restored_fit))
        if self._fit_cache is not None:
            fitted_n, fitted = self._fit_cache
            if n == fitted_n or (fitted is not None and n < (1 + REFIT_GROWTH) * fitted_n):
                return fitted
        self._fit_cache = (n, self._fit(n))
        return self._fit_cache[1]

    def _fit(self, n: int):
        """The law fitted on the first n points observed, or None."""
        k = self.design.n_axes
        obs = np.array(self.observed[:n], dtype=float).reshape(-1, k + 1)
        distinct = all(len(np.unique(obs[:, j])) >= 2 for j in range(k))
        if n > 1 + 2 * k + 1 and distinct:
            try:
                return (JointLaw() if k == 2 else PowerLaw()).fit(obs[:, :k], obs[:, k])
            except (ValueError, RuntimeError) as exc:
                log.debug("adaptive: no fit yet (%s)", exc)
        return None

    def _theta(self, law) -> np.ndarray:
        theta = law.theta_.copy()
        k = self.design.n_axes
        theta[1 : 1 + k] -= theta[1 + k :] * self.shift  # centred log x: better conditioned
        return theta

    def _targets(self, law) -> np.ndarray:
        """Law inputs of the target rows (a callable target needs a fitted law: before one,
        the default)."""
        if callable(self.target) and law is not None:
            return np.asarray(self.target(law), dtype=float).reshape(-1, self.design.n_axes)
        if self.target is not None and not callable(self.target):
            return np.asarray(self.target, dtype=float).reshape(-1, self.design.n_axes)
        top = np.array([self.design.top(c) for c in self.candidates]).max(axis=0)
        return (10.0 * top)[None, :]  # default: 10x beyond the largest trial on every axis

    def _model(self, law) -> dict:
        """The linear-Gaussian model around the current fit (cached per fit): theta (centred),
        the prior covariance of theta, noise and discrepancy variances and the kernel length,
        the latter two by marginal likelihood of the residuals over a small grid, searched at
        each refit (the share r and the length are kept in between)."""
        n = len(self.observed)
        if self._model_cache is not None and self._model_cache[0] == n:
            return self._model_cache[1]
        searched = self._model_cache is not None and self._model_cache[1]["law"] is law
        k = self.design.n_axes
        theta = self._theta(law)
        obs = np.array(self.observed, dtype=float).reshape(-1, k + 1)
        lx = np.log(obs[:, :k]) - self.shift
        jac, pred = log_jacobian(theta, lx)
        resid = np.log(obs[:, k]) - np.log(pred)
        dof = max(1, len(obs) - (1 + 2 * k))
        s2 = max(float(resid @ resid) / dof, NOISE_FLOOR**2)
        ymean = float(np.mean(obs[:, k]))
        prior_cov = np.diag([ymean**2] + [9.0] * k + [1.0] * k)
        base = jac @ prior_cov @ jac.T
        best = (-math.inf, s2, 0.0, LENGTHS[0])
        ll0 = -math.inf  # noise alone (the first share is 0)
        if searched:
            r, length = self._model_cache[1]["share"], self._model_cache[1]["length"]
            best = (math.nan, max((1 - r) * s2, NOISE_FLOOR**2), r * s2, length)
        elif self.discrepancy:
            d2 = sq_dist(lx, lx)
            for r in DISCREPANCY_SHARES:
                for length in LENGTHS if r > 0 else LENGTHS[:1]:
                    noise = max((1 - r) * s2, NOISE_FLOOR**2)
                    cov = base + r * s2 * np.exp(-0.5 * d2 / length**2)
                    ll = gaussian_loglik(resid, cov + noise * np.eye(n))
                    if r == 0:
                        ll0 = ll
                    elif ll < ll0 + DISCREPANCY_NATS:
                        continue  # not significant: noise alone explains the residuals
                    if ll > best[0] + 1e-9:
                        best = (ll, noise, r * s2, length)
        model = {
            "law": law,
            "share": best[2] / s2,
            "theta": theta,
            "prior_cov": prior_cov,
            "s2": s2,
            "noise": best[1],
            "disc": best[2],
            "length": best[3],
        }
        self._model_cache = (n, model)
        return model

    def _kernel(self, m: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Covariance of the discrepancy between centred log inputs a (n, k) and b (q, k)."""
        if m["disc"] <= 0:
            return np.zeros((len(a), len(b)))
        return m["disc"] * np.exp(-0.5 * sq_dist(a, b) / m["length"] ** 2)

    def _fit_error(
        self, m: dict, x: np.ndarray, targets: np.ndarray, extras: list[np.ndarray] = ()
    ) -> tuple[float, np.ndarray]:
        """Expected squared log-error at the targets of the law fitted (least squares, to first
        order around theta_hat, with the weak prior) on points x, and for each extra block of
        rows the same error once those rows are added as well.

        theta_fit - theta = H^-1 J^T (delta + eps), H = J^T J + noise P, so the error at target
        t is g_t H^-1 J^T (delta + eps) - delta(t), whose mean square is
        u^T J^T K J u - 2 u^T J^T k_t + k(t, t),  u = H^-1 g_t^T,  K = Cov(delta + eps).
        Without discrepancy and with a weak prior this is g_t F^-1 g_t^T."""
        theta, noise = m["theta"], m["noise"]
        jac, _ = log_jacobian(theta, x)
        g, _ = log_jacobian(theta, targets)
        prior = np.linalg.inv(m["prior_cov"])
        h = jac.T @ jac + noise * prior
        kxx = self._kernel(m, x, x) + noise * np.eye(len(x))
        s0 = jac.T @ kxx @ jac
        q0 = jac.T @ self._kernel(m, x, targets)  # (p, T)
        nt, base_t = len(targets), m["disc"]

        def mse(hh, mm, qq):
            u = np.linalg.solve(hh, np.broadcast_to(g.T, (*hh.shape[:-2], *g.T.shape)))
            quad = np.einsum("...pt,...pq,...qt->...", u, mm, u)
            return (quad - 2 * np.einsum("...pt,...pt->...", u, qq)) / nt + base_t

        base = float(mse(h, s0, q0))
        out = np.full(len(extras), base)
        by_size: dict[int, list[int]] = {}
        for j, rows in enumerate(extras):
            by_size.setdefault(len(rows), []).append(j)
        for size, js in by_size.items():
            if size == 0:
                continue
            r = np.array([extras[j] for j in js])  # (B, size, k)
            jr, _ = log_jacobian(theta, r.reshape(-1, r.shape[-1]))
            jr = jr.reshape(len(js), size, -1)  # (B, size, p)
            kxr = np.stack([self._kernel(m, x, rr) for rr in r])  # (B, n, size)
            krr = np.stack([self._kernel(m, rr, rr) for rr in r]) + noise * np.eye(size)
            krt = np.stack([self._kernel(m, rr, targets) for rr in r])  # (B, size, T)
            cross = jac.T @ kxr @ jr  # (B, p, p)
            jrt = jr.transpose(0, 2, 1)
            mm = s0 + cross + cross.transpose(0, 2, 1) + jrt @ krr @ jr
            out[js] = mse(h + jrt @ jr, mm, q0 + jrt @ krt)
        return base, out

    def _pending(self, exclude: int | None = None) -> list[np.ndarray]:
        """Law inputs of running trials' eval points not yet reported."""
        out = []
        for i, seen in self.running.items():
            if i == exclude:
                continue
            pts = self.design.points(self.candidates[i])
            done = max((row[-2] for row in seen), default=-math.inf)
            out.append(pts[pts[:, -1] > done])
        return out

    def _lx(self, rows) -> np.ndarray:
        return np.log(np.asarray(rows, dtype=float).reshape(-1, self.design.n_axes)) - self.shift

    def assess(self, ledger: Ledger | None = None) -> dict | None:
        """Score every candidate not yet run: expected variance reduction at the target per
        unit cost.  None while no law is fitted."""
        law = self.law()
        if law is None:
            return None
        m = self._model(law)
        k = self.design.n_axes
        obs_x = self._lx(np.array(self.observed, dtype=float).reshape(-1, k + 1)[:, :k])
        pending = [self._lx(p) for p in self._pending()]
        cond = np.concatenate([obs_x, *pending]) if pending else obs_x
        targets = self._lx(self._targets(law))
        chosen = set(self.chosen)
        idx = [i for i in range(len(self.candidates)) if i not in chosen]
        if ledger is not None:
            idx = [i for i in idx if ledger.fits(self.cost(self.candidates[i]))]
        extras = [self._lx(self.design.points(self.candidates[i])) for i in idx]
        v_now, after = self._fit_error(m, cond, targets, extras)
        v_seen, _ = self._fit_error(m, obs_x, targets)
        gains = np.maximum(v_now - after, 0.0)  # a harmful candidate is worth nothing
        costs = np.array([max(self.cost(self.candidates[i]), 1e-300) for i in idx])
        per_cost = gains / costs if idx else gains
        return {
            "law": law,
            "model": m,
            "cond": cond,
            "targets": targets,
            "v_now": v_now,
            "v_seen": v_seen,
            "rel_sd": math.sqrt(max(v_seen, 0.0)),
            "index": idx,
            "gain": gains,
            "change": v_now - after,  # the gain before clipping: < 0 for a harmful candidate
            "cost": costs,
            "per_cost": per_cost,
            "misfit": m["disc"] > m["noise"],  # residuals mostly discrepancy: the law's bias
        }

    # --- decisions ----------------------------------------------------------------------------
    def propose(self, ledger: Ledger) -> Candidate | None:
        if self.done_reason:
            return None
        a = self.assess(ledger)
        if a is None:  # no law yet: nearest the target, as in misfit mode
            i = self._nearest(ledger, None)
            if i is None:
                return None
            self.decisions.append(
                {
                    "step": len(self.chosen),
                    "n_points": len(self.observed),
                    "target_rel_sd": None,
                    "chosen": self.candidates[i].config(),
                    "stop": None,
                    "mode": "identifying: no law yet, nearest the target",
                    "cost_position": self.cost_position(),
                    "top": [],
                    "law": None,
                }
            )
            return self._choose(i)
        # the sd is that of the points seen: trials still running need not finish first (with
        # any concurrency one always is, and the stop never came before the budget's end)
        if self.tolerance is not None and a["rel_sd"] < self.sd_limit:
            boot = self._confirm(a)
            if boot is None or boot < self.sd_limit:
                self.done_reason = f"target relative sd {a['rel_sd']:.4g}" + (
                    "" if boot is None else f" (bootstrap {boot:.4g})"
                )
                self.done_reason += (
                    f" below tolerance {self.tolerance:g} / {STOP_Z:g} (an error within the"
                    " tolerance with 80 % probability)"
                )
                log.info("adaptive: stop, %s", self.done_reason)
                self._record(a, None, ledger)
                return None
            if "rel_sd_bootstrap" in a:
                log.info(
                    "adaptive: first-order sd %.4g is below tolerance, the bootstrap's %.4g is not",
                    a["rel_sd"],
                    boot,
                )
        if not a["index"]:
            return None
        identified = self._identified()
        if a["misfit"] or not identified:
            # in misfit mode, nearest first among the candidates not expected to make the
            # target's error worse: a far cheap run whose residual the law cannot explain moves
            # the whole fit (a 2 % error became 13-17 % on IsoFLOP pools after the budget's last
            # cheap runs, tiny models on a few million tokens); with none left, the sweep ends
            allowed = None
            if a["misfit"] and identified:  # an unidentified law: no verdict yet
                allowed = {j for j, g in zip(a["index"], a["change"], strict=True) if g > 0}
            i = self._nearest(ledger, a["law"], allowed)
            # every candidate in a["index"] fits the budget left (assess(ledger) keeps only
            # those), so None here means no candidate is expected to help, not that none fits
            if i is None:
                if allowed is not None and not self.running:
                    self.done_reason = "misfit: no candidate left is expected to reduce the error"
                    log.info("adaptive: stop, %s", self.done_reason)
                    self._record(a, None, ledger)
                return None
            self._record(a, i, ledger)
            return self._choose(i)
        best = int(np.lexsort((a["cost"], -a["per_cost"]))[0])
        if not a["gain"][best] > 0:
            if not self.running:
                self.done_reason = "no candidate left is expected to reduce the target's error"
                log.info("adaptive: stop, %s", self.done_reason)
                self._record(a, None, ledger)
            return None
        i = a["index"][best]
        self._record(a, i, ledger)
        return self._choose(i)

    def _confirm(self, a: dict) -> float | None:
        """The target's relative sd by bootstrap (half the central 68 % band of log L over
        `confirm_bootstrap` refits, mean over targets), or None when not confirming.  After a
        veto, the bootstrap's inflation over the first-order sd is assumed to persist until the
        points have grown by half (a fit on a few runs is far less linear than one on many): no
        new bootstrap before then unless the first-order sd times it falls below the tolerance."""
        if not self.confirm_bootstrap:
            return None
        fresh = len(self.observed) >= 1.5 * self.inflation_points
        if not fresh and a["rel_sd"] * self.inflation >= self.sd_limit:
            return a["rel_sd"] * self.inflation
        law = a["law"]
        law.bootstrap(n=self.confirm_bootstrap, seed=self.seed, level=0.6827, n_jobs=1)
        _, lo, hi = law.predict_interval(self._targets(law))
        sd = float(np.mean((np.log(hi) - np.log(lo)) / 2))
        self.inflation = max(1.0, sd / max(a["rel_sd"], 1e-300))
        self.inflation_points = len(self.observed)
        a["rel_sd_bootstrap"] = sd
        return sd

    def _nearest(self, ledger: Ledger, law, allowed: set[int] | None = None) -> int | None:
        """The candidate not yet run (and in `allowed`, if given) nearest the target (log x,
        axes scaled to the space) whose cost leaves budget for `MIN_RUNS` runs in all (the
        cheapest ones); once none leaves it, the cheapest that fits.  None when nothing fits."""
        chosen = set(self.chosen)
        free = [i for i in range(len(self.candidates)) if i not in chosen]
        if allowed is not None:
            free = [i for i in free if i in allowed]
        if not free:
            return None
        costs = np.array([self.cost(self.candidates[i]) for i in free])
        need = max(0, MIN_RUNS - len(self.chosen) - 1)
        reserve = float(np.sort(costs)[:need].sum())
        cap = math.inf  # before a law is identified: no run dearer than half the budget left
        new = np.ones(len(free), dtype=bool)  # and runs that add a value on a thin axis first
        if law is None or not self._identified():
            left = self._budget_left(ledger)
            cap = left / 2 if math.isfinite(left) else float(np.median(costs))
            new = self._adds_a_value(free)
        targets = (np.log(self._targets(law)) - self._lo) / self._span
        dist = np.sqrt(sq_dist(self._unit[free], targets)).min(axis=1)
        for j in np.lexsort((costs, dist, ~new)):
            if costs[j] <= cap and ledger.fits(costs[j] + reserve):
                return free[j]
        for j in np.argsort(costs, kind="stable"):
            if ledger.fits(costs[j]):
                return free[j]
        return None

    def _thin_axes(self) -> list[int]:
        """Axes on which the observed points have fewer than 3 distinct values (a power term
        and the constant are not identified from two)."""
        k = self.design.n_axes
        obs = np.array(self.observed, dtype=float).reshape(-1, k + 1)
        return [j for j in range(k) if len(np.unique(obs[:, j])) < 3]

    def _identified(self) -> bool:
        return not self._thin_axes()

    def _adds_a_value(self, free: list[int]) -> np.ndarray:
        """For each candidate in `free`: does its last point add a value on a thin axis?"""
        thin = self._thin_axes()
        if not thin:
            return np.ones(len(free), dtype=bool)
        k = self.design.n_axes
        seen = np.array(self.observed, dtype=float).reshape(-1, k + 1)
        tops = np.array([self.design.top(self.candidates[i]) for i in free]).reshape(-1, k)
        return np.array(
            [any(not np.isclose(seen[:, j], t[j]).any() for j in thin) for t in tops], dtype=bool
        )

    @staticmethod
    def _budget_left(ledger: Ledger) -> float:
        """FLOPs the ledger has left (inf without a FLOP budget)."""
        if ledger.flops_limit is None:
            return math.inf
        return ledger.flops_limit - ledger.spent_flops - sum(ledger.running.values())

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
        i = latest_choice(self.candidates, self.chosen, candidate)
        a = self.assess()
        if i is None or a is None or not len(a["index"]) or a["misfit"]:
            return False  # in misfit mode a run near the target is what the design is for
        rest = self.design.points(candidate)
        rest = rest[rest[:, -1] > samples_done]
        if not len(rest):
            return False
        frac = 1.0 - samples_done / candidate.samples
        cost = max(self.cost(candidate) * frac, 1e-300)
        # value the remaining rows by what they add to everything else (observed, other trials)
        k = self.design.n_axes
        obs_x = self._lx(np.array(self.observed, dtype=float).reshape(-1, k + 1)[:, :k])
        others = [self._lx(p) for p in self._pending(exclude=i)]
        cond = np.concatenate([obs_x, *others]) if others else obs_x
        without, (with_rest,) = self._fit_error(a["model"], cond, a["targets"], [self._lx(rest)])
        gain = without - with_rest
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
                "target_rel_sd_bootstrap": a.get("rel_sd_bootstrap"),
                "target_rel_sd_with_running": math.sqrt(max(a["v_now"], 0.0)),
                "chosen": None if chosen is None else self.candidates[chosen].config(),
                # the chosen run's expected change of the target's squared log-error (> 0: less)
                "chosen_gain": (
                    None
                    if chosen is None or chosen not in a["index"]
                    else float(a["change"][a["index"].index(chosen)])
                ),
                "stop": self.done_reason,
                "mode": (
                    "identifying: nearest the target"
                    if not self._identified()
                    else "misfit: nearest the target"
                    if a["misfit"]
                    else "information"
                ),
                "cost_position": self.cost_position(),
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
                "noise_sd": math.sqrt(a["model"]["noise"]),
                "discrepancy_sd": math.sqrt(a["model"]["disc"]),
                "discrepancy_length": a["model"]["length"],
            }
        )

    def cost_position(self) -> dict[str, float]:
        """Where the cost went: cost-weighted mean position of the chosen runs on each axis,
        0 = the smallest value of the space, 1 = the largest (log scale).  (The FLOPs per value
        of every axis are the searcher's `spent_per_axis`, next to the decision in MLflow.)"""
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
            "inflation": self.inflation,
            "inflation_points": self.inflation_points,
            "fit_points": self._fit_cache[0] if self._fit_cache else 0,
        }

    def load_state_dict(self, state: dict) -> None:
        self.chosen = list(state["chosen"])
        self.running = {int(i): list(v) for i, v in state["running"].items()}
        self.observed = [tuple(r) for r in state["observed"]]
        self.done_reason = state["done_reason"]
        self.decisions = list(state["decisions"])
        self.inflation = float(state.get("inflation", 1.0))  # absent in states saved before it
        self.inflation_points = int(state.get("inflation_points", 0))
        self._fit_cache = None
        self._model_cache = None
        self._restored_fit = int(state.get("fit_points", 0))
