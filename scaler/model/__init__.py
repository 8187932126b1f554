"""The DLRM model (TorchRec) and its exact parameter / FLOP / byte accounting."""

from scaler.model.accounting import ModelCost, OpCost, linear_cost, model_cost
from scaler.model.config import DLRMConfig
from scaler.model.dlrm import DLRM, SparseOptimizer, build_dlrm

__all__ = [
    "DLRM",
    "DLRMConfig",
    "ModelCost",
    "OpCost",
    "SparseOptimizer",
    "build_dlrm",
    "linear_cost",
    "model_cost",
]
