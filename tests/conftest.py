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
