"""Scaling-law forms, fitting, uncertainty and backtests.  Pure NumPy/SciPy.

>>> law = JointLaw().fit(np.c_[N, D], loss)
>>> law.params_.alpha, law.predict([[1e9, 2e10]])
>>> law.bootstrap(1000, seed=0).ci()["alpha"]
"""

from scaler.laws._backtest import Backtest, backtest
from scaler.laws._bootstrap import BootstrapResult
from scaler.laws._forms import (
    Exclusion,
    Frontier,
    JointLaw,
    JointLawParams,
    Law,
    MultiLaw,
    NotFittedError,
    PowerLaw,
    PowerLawParams,
    compute_frontier,
)
from scaler.laws._identify import Identification, identify

__all__ = [
    "Backtest",
    "BootstrapResult",
    "Exclusion",
    "Frontier",
    "Identification",
    "JointLaw",
    "JointLawParams",
    "Law",
    "MultiLaw",
    "NotFittedError",
    "PowerLaw",
    "PowerLawParams",
    "backtest",
    "compute_frontier",
    "identify",
]
