"""Allocation policies: which trial to run next, within a budget.  Pure Python (no Ray)."""

from scaler.allocation._base import Candidate, Ledger, Policy, build_candidates
from scaler.allocation._simple import GridPolicy, RandomPolicy
from scaler.allocation._tuned import TunedPolicy

POLICIES: dict[str, type[Policy]] = {p.name: p for p in (GridPolicy, RandomPolicy)}


def make_policy(name: str, candidates: list[Candidate], seed: int = 0) -> Policy:
    if name not in POLICIES:
        raise ValueError(f"policy is {name!r}, but must be one of {sorted(POLICIES)}")
    return POLICIES[name](candidates, seed)


__all__ = [
    "POLICIES",
    "Candidate",
    "GridPolicy",
    "Ledger",
    "Policy",
    "RandomPolicy",
    "TunedPolicy",
    "build_candidates",
    "make_policy",
]
