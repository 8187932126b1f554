"""`scaler replay` on the Chinchilla pool: JSON shape, budget honoured, clear errors, and the
benchmark's holdout is the same pool."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from scaler.allocation._public_pools import holdout_pools
from scaler.allocation._replay import replay
from scaler.cli import main
from scaler.cli.replay import add_parser, load

POOL = str(Path(__file__).parent / "data" / "chinchilla_epoch_extracted.csv")
X = "N=Model Size,D=Training FLOP/(6*Model Size)"


@pytest.mark.parametrize("policy", ["grid", "random", "halving", "adaptive"])
def test_replay_json_has_the_documented_shape_and_respects_the_budget(policy, capsys):
    args = [
        "replay", POOL, "--x", X, "--y", "loss", "--budget", "0.2",
        "--target-top-cost", "0.1", "--policy", policy, "--seeds", "2", "--json",
    ]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"seeds", "median", "full_pool", "design_sd_ratio_bound"}
    assert len(out["seeds"]) == 2
    # no design within the budget is more informative than the certified bound, nor than the
    # whole pool
    bound = out["design_sd_ratio_bound"]
    assert bound > 1
    for s in out["seeds"]:
        assert set(s) == {
            "seed",
            "spent_fraction",
            "rows",
            "params",
            "target_mape",
            "design_sd_ratio",
        }
        assert 0 < s["spent_fraction"] <= 0.2 + 1e-9
        assert s["target_mape"] < 0.2
        assert s["design_sd_ratio"] >= bound * (1 - 1e-6)
    assert set(out["median"]) == {"spent_fraction", "rows", "target_mape", "design_sd_ratio"}
    assert set(out["full_pool"]) == {"params", "target_mape"}
    assert out["full_pool"]["target_mape"] < 0.03


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--budget", "0"], "--budget is 0.0, but must be in (0, 1]"),
        (["--budget", "1.5"], "--budget is 1.5, but must be in (0, 1]"),
        (["--budget", "0.5", "--y", "nope"], "no column 'nope'"),
        (["--budget", "0.5", "--y", "x"], None),  # x column is fine (positive)
    ],
)
def test_replay_bad_input_is_one_clear_error(extra, message, capsys):
    args = ["replay", POOL, "--x", X, "--y", "loss", "--target-top-cost", "0.1", "--policy", "grid"]
    rc = main(args + extra)
    err = capsys.readouterr().err
    if message is None:
        assert rc == 0
    else:
        assert rc == 2 and message in err


def test_replay_refuses_a_target_that_overlaps_the_pool(capsys):
    args = ["replay", POOL, "--x", X, "--y", "loss", "--budget", "0.5", "--target", POOL]
    assert main([*args, "--policy", "grid"]) == 2
    assert "must be held out of the pool" in capsys.readouterr().err


def test_the_benchmarks_holdout_is_the_readmes_replay_example():
    """`bench_allocation.py`'s holdout table replays the pool the README's `scaler replay` line
    builds (all Chinchilla points, the dearest 10 % held out): the same rows (in another order),
    the same target error for adaptive."""
    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub, "replay")
    args = sub.choices["replay"].parse_args([
        POOL, "--x", X, "--y", "loss", "--budget", "0.1", "--target-top-cost", "0.1",
        "--policy", "adaptive",
    ])  # fmt: skip
    pool, tx, ty = load(args)
    hpool, htx, hty = holdout_pools()["chinchilla-all"]
    assert len(pool.y) == 220 and len(ty) == 25  # every point of the CSV, 245

    def rows(*cols):
        table = np.column_stack(cols)
        return table[np.lexsort(table.T[::-1])]

    np.testing.assert_allclose(rows(pool.x, pool.y, pool.cost), rows(hpool.x, hpool.y, hpool.cost))
    np.testing.assert_allclose(rows(tx, ty), rows(htx, hty))
    errors = [replay(p, x, y, policy="adaptive", budget=0.1).target_mape
              for p, x, y in ((pool, tx, ty), (hpool, htx, hty))]  # fmt: skip
    assert errors[0] == pytest.approx(errors[1], rel=1e-6)
