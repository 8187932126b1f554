"""`scaler fit`: the command-line promise (flags, JSON shape, predictions, one-line errors)."""

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaler.cli import main

DATA = Path(__file__).parent / "data" / "chinchilla_epoch_extracted.csv"
JOINT = ["--form", "joint", "--x", "N=Model Size,D=Training FLOP/(6*Model Size)", "--y", "loss"]


def run(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_fit_joint_json_recovers_chinchilla(capsys):
    rc, out, _ = run(["fit", str(DATA), *JOINT, "--drop-top-loss", "5", "--json"], capsys)
    assert rc == 0
    result = json.loads(out)
    assert result["form"] == "joint" and result["n"] == 240 and result["n_excluded"] == 5
    assert set(result["params"]) == {"E", "A", "alpha", "B", "beta"}
    assert abs(result["params"]["E"] - 1.817) <= 0.026
    assert abs(result["params"]["alpha"] - 0.348) <= 0.015
    assert abs(result["params"]["beta"] - 0.366) <= 0.021
    assert result["mape"] <= 0.005
    assert 0 < result["seconds"] < 5
    assert "ci" not in result


def test_fit_bootstrap_adds_ci_to_json_and_table(capsys):
    rc, out, _ = run(
        ["fit", str(DATA), *JOINT, "--drop-top-loss", "5", "--bootstrap", "60", "--json"], capsys
    )
    assert rc == 0
    ci = json.loads(out)["ci"]
    assert set(ci) == {"E", "A", "alpha", "B", "beta"}
    assert ci["alpha"][0] < 0.3473 < ci["alpha"][1]
    rc, out, _ = run(
        ["fit", str(DATA), *JOINT, "--drop-top-loss", "5", "--bootstrap", "20"], capsys
    )
    assert rc == 0 and "95% CI" in out and "alpha" in out and "compute-optimal exponent" in out


def test_fit_power_on_one_column(tmp_path, capsys):
    x = np.geomspace(1e4, 1e7, 20)
    pd.DataFrame({"samples": x, "loss": 4 * x**-0.3 + 0.25}).to_csv(tmp_path / "p.csv", index=False)
    rc, out, _ = run(
        [
            "fit",
            str(tmp_path / "p.csv"),
            "--form",
            "power",
            "--x",
            "samples",
            "--y",
            "loss",
            "--json",
        ],
        capsys,
    )
    assert rc == 0
    params = json.loads(out)["params"]
    assert params["b"] == pytest.approx(0.3, rel=1e-3) and params["c"] == pytest.approx(
        0.25, rel=1e-3
    )


def test_fit_predict_writes_rows_in_order_with_bands(tmp_path, capsys):
    other = pd.read_csv(DATA).iloc[[7, 3, 100]]
    other.to_csv(tmp_path / "other.csv", index=False)
    argv = [
        "fit",
        str(DATA),
        *JOINT,
        "--drop-top-loss",
        "5",
        "--bootstrap",
        "30",
        "--predict",
        str(tmp_path / "other.csv"),
    ]
    rc, out, err = run(argv, capsys)
    assert rc == 0
    pred = pd.read_csv(io.StringIO(out))
    assert list(pred["x"]) == list(other["x"])  # OTHER's row order
    assert {"pred", "lo", "hi"} <= set(pred.columns)
    assert np.all(pred["lo"] <= pred["pred"]) and np.all(pred["pred"] <= pred["hi"])
    assert "mean |relative error|" in err  # OTHER has the y column


@pytest.mark.parametrize(
    "mutate,argv_extra,message",
    [
        (None, ["--x", "N=Model Size,D=Training FLOP/(6*Model Sz)"], "no column 'Model Sz'"),
        (lambda df: df.assign(**{"Model Size": -df["Model Size"]}), [], "must be > 0"),
        (lambda df: df.assign(loss=df["loss"].where(df.index != 4)), [], "row 5"),
        (lambda df: df.iloc[:4], [], "at least 6 usable points"),
    ],
)
def test_fit_bad_input_is_one_line_and_nonzero(tmp_path, capsys, mutate, argv_extra, message):
    df = pd.read_csv(DATA)
    path = tmp_path / "bad.csv"
    (mutate(df) if mutate else df).to_csv(path, index=False)
    argv = ["fit", str(path), *JOINT]
    if argv_extra:
        argv[argv.index("--x") + 1] = argv_extra[1]
    rc, out, err = run(argv, capsys)
    assert rc != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_fit_missing_file(capsys):
    rc, _, err = run(["fit", "/nonexistent/points.csv", *JOINT], capsys)
    assert rc != 0 and "no such file: /nonexistent/points.csv" in err


def test_fit_wrong_number_of_axes(capsys):
    rc, _, err = run(
        ["fit", str(DATA), "--form", "joint", "--x", "Model Size", "--y", "loss"], capsys
    )
    assert rc != 0 and "needs 2 --x column(s), got 1" in err


def test_installed_entry_point_runs():
    exe = Path(sys.executable).parent / "scaler"
    proc = subprocess.run(
        [str(exe), "fit", str(DATA), *JOINT, "--json"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["form"] == "joint"
