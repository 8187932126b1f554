"""scaler: scaling-law sweeps of recommendation models.

Query a sweep from MLflow:  scaler.trials(name), scaler.points(name), scaler.laws(name).
"""

from scaler.query import fit_history, hparam_rules, laws, points, sweeps, trials

__all__ = ["fit_history", "hparam_rules", "laws", "points", "sweeps", "trials"]
