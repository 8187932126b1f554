from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def chinchilla():
    """Epoch AI's digitised Chinchilla points, the 5 highest losses dropped as the authors did.
    Returns (X = [N, D], loss)."""
    df = pd.read_csv(DATA_DIR / "chinchilla_epoch_extracted.csv")
    df = df.sort_values("loss", kind="stable").iloc[:-5]
    n = df["Model Size"].to_numpy()
    d = df["Training FLOP"].to_numpy() / (6 * n)
    return np.c_[n, d], df["loss"].to_numpy()


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray for the session (2 CPUs, as on CI), shut down at the end."""
    import os

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
