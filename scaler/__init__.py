"""scaler: scaling-law sweeps of recommendation models.

Query a sweep from MLflow:  scaler.trials(name), scaler.points(name), scaler.laws(name).
"""

import importlib

# The query functions are imported on first use (PEP 562): `import scaler.spec` (every CLI
# command, every Ray worker that unpickles a trial) need not pay for MLflow. One of them shares
# its name with the `scaler.laws` subpackage, whose import would set `scaler.laws` to the
# subpackage: it is imported first, and the name is then bound to the query function below.
importlib.import_module("scaler.laws")

__all__ = ["fit_history", "hparam_rules", "laws", "points", "sweeps", "trials"]


def laws(sweep: str, tracking_uri: str | None = None) -> dict:
    """The latest fitted laws of a sweep (`scaler.query.laws`): {"data"|"params"|...: Law}."""
    return importlib.import_module("scaler.query").laws(sweep, tracking_uri)


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("scaler.query"), name)
    raise AttributeError(f"module 'scaler' has no attribute {name!r}")
