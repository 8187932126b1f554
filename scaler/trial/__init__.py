"""Trainables: one trial as plain Python/Torch (the sweep engine wraps them for Ray Tune).

Names are imported lazily, so that `scaler.trial.oracle` (an oracle trial in a Ray worker)
does not pay for importing torch and torchrec.
"""

from importlib import import_module

_EXPORTS = {
    "DLRMTrialConfig": "scaler.trial.config",
    "Hparams": "scaler.trial.config",
    "TrainConfig": "scaler.trial.config",
    "default_hparams": "scaler.trial.config",
    "eval_schedule": "scaler.trial.config",
    "resolve_hparams": "scaler.trial.config",
    "DLRMTrial": "scaler.trial.dlrm",
    "train": "scaler.trial.dlrm",
    "log_loss": "scaler.trial.metrics",
    "normalized_entropy": "scaler.trial.metrics",
    "roc_auc": "scaler.trial.metrics",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'scaler.trial' has no attribute {name!r}")
