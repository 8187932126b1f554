"""Bad input through the CLI: one line naming the field and the bound, non-zero exit, and nothing
already recorded harmed."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from scaler.tracking import SweepTracker
from tests.faults.helpers import ORACLE_SPEC, run, write_spec


def _spec_text(**overrides) -> str:
    return yaml.safe_dump({**ORACLE_SPEC, **overrides})


CASES = {
    "malformed yaml": ("name: x\naxes: [1, 2\n", "line"),
    "unknown key": (_spec_text(colour="red"), "colour"),
    "wrong type": (_spec_text(seed="zero"), "seed"),
    "empty axes": (_spec_text(axes={"params": {"n_params": []}}), "n_params"),
    "non-positive budget": (_spec_text(budget={"trials": 0}), "budget.trials"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_is_one_line_naming_the_field(tmp_path, case):
    text, field = CASES[case]
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    out = run(["run", str(spec), "--storage", str(tmp_path / "runs")], timeout=60)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("scaler run: error:"), out.stderr
    assert field in lines[0]
    assert not (tmp_path / "runs" / "mlflow.db").exists()  # nothing recorded


def test_a_bad_spec_is_refused_before_ray_mlflow_or_torch_are_imported(tmp_path):
    """The error comes in about a second, not after the seconds it takes to import the stack
    (it took 6 s when every sub-command imported its dependencies up front)."""
    spec = tmp_path / "bad.yaml"
    spec.write_text(CASES["unknown key"][0])
    code = (
        "import sys\n"
        "from scaler.cli import main\n"
        f"assert main(['run', {str(spec)!r}]) == 2\n"
        "heavy = sorted({'ray', 'mlflow', 'torch', 'torchrec'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "colour" in out.stderr  # the one-line error was still printed


def test_missing_spec_file_and_unknown_sweep_to_resume(tmp_path):
    out = run(["run", str(tmp_path / "nope.yaml")], timeout=60)
    assert out.returncode == 2 and "no such search space" in out.stderr
    out = run(["resume", "nope", "--storage", str(tmp_path)], timeout=60)
    assert out.returncode == 2 and "no saved sweep" in out.stderr


def test_unreachable_tracking_uri_is_one_line(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", name="faults-uri")
    out = run(
        ["run", str(spec), "--tracking-uri", "http://127.0.0.1:9", "--storage", str(tmp_path)]
    )
    assert out.returncode == 2, out.stderr[-2000:]
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("scaler run: error:")]
    assert len(lines) == 1 and "tracking" in lines[0] and "127.0.0.1:9" in lines[0], out.stderr


def test_same_name_different_spec_is_refused_and_record_untouched(tmp_path):
    storage = tmp_path / "runs"
    uri = f"sqlite:///{storage / 'mlflow.db'}"
    storage.mkdir()
    recorded = write_spec(tmp_path / "a.yaml", name="faults-name")
    from scaler.spec import load_spec

    first = load_spec(recorded)
    tracker = SweepTracker(uri, first.tracking.experiment)
    parent = tracker.start_sweep(first.name, first.resolved(), first.fingerprint())
    before = tracker.client.get_run(parent).data

    changed = write_spec(tmp_path / "b.yaml", name="faults-name", seed=7)
    out = run(["run", str(changed), "--storage", str(storage)], timeout=60)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "name: sweep 'faults-name' already exists" in out.stderr and "--resume" in out.stderr
    after = tracker.client.get_run(parent).data
    assert after.params == before.params and after.tags == before.tags
    assert len(tracker.client.search_runs([tracker.experiment_id()])) == 1
