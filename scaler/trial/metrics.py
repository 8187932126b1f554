"""Held-out metrics: log loss, normalized entropy, ROC AUC (NumPy / SciPy only)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from scaler.data.synthetic import binary_entropy


def log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy (nats) of logits [n] against labels [n] in {0, 1}."""
    z = logits.astype(np.float64)
    y = labels.astype(np.float64)
    # -y log s(z) - (1 - y) log(1 - s(z)) = softplus(z) - y z, computed stably
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def normalized_entropy(loss: float, labels: np.ndarray) -> float:
    """loss / H(base rate), the base rate being the mean of these (eval) labels."""
    return float(loss / binary_entropy(float(np.mean(labels))))


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties given average ranks; nan if one class."""
    y = labels.astype(bool)
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))
