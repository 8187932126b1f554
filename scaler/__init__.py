"""scaler: scaling-law sweeps of recommendation models."""
