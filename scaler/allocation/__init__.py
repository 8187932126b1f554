"""Allocation policies: which trial to run next, within a budget.  Pure Python (no Ray)."""

import inspect

from scaler.allocation._adaptive import AdaptivePolicy
from scaler.allocation._base import Candidate, Ledger, Policy, build_candidates
from scaler.allocation._design import Design, candidate_size, default_schedule
from scaler.allocation._halving import HalvingPolicy
from scaler.allocation._simple import GridPolicy, RandomPolicy
from scaler.allocation._tuned import TunedPolicy

POLICIES: dict[str, type[Policy]] = {
    p.name: p for p in (GridPolicy, RandomPolicy, HalvingPolicy, AdaptivePolicy)
}


def make_policy(name: str, candidates: list[Candidate], seed: int = 0, **options) -> Policy:
    """Build a policy by name; `options` a policy does not take (target, eta, ...) are ignored."""
    if name not in POLICIES:
        raise ValueError(f"policy is {name!r}, but must be one of {sorted(POLICIES)}")
    cls = POLICIES[name]
    accepted = inspect.signature(cls.__init__).parameters
    return cls(candidates, seed, **{k: v for k, v in options.items() if k in accepted})


__all__ = [
    "POLICIES",
    "AdaptivePolicy",
    "Candidate",
    "Design",
    "GridPolicy",
    "HalvingPolicy",
    "Ledger",
    "Policy",
    "RandomPolicy",
    "TunedPolicy",
    "build_candidates",
    "candidate_size",
    "default_schedule",
    "make_policy",
]
