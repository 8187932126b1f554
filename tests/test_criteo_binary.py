"""Criteo day files prepared once to TorchRec's binary layout, then read by trials memory-mapped.

The contract: the binary loader gives the TSV reader's batches for the same rows (dense, ids
after hashing, empty bags, labels); preparation is resumable and never silent about malformed
lines; the loader refuses a folder that disagrees with its manifest; a trial resumes exactly; and
a 2-worker sweep through Ray Tune and MLflow reads disjoint rows covering its sample budget.
"""

import json
import os
import time

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torchrec.datasets.criteo import BinaryCriteoUtils

import scaler
from scaler.cli import main
from scaler.data.criteo import MALFORMED_REASONS, CriteoReader, CriteoSource, write_criteo_tsv
from scaler.data.criteo_binary import (
    CriteoBinaryDataConfig,
    CriteoBinaryStream,
    day_files,
    prepare_criteo,
)
from scaler.data.synthetic import TRAIN
from scaler.trial.config import DLRMTrialConfig
from scaler.trial.dlrm import DLRMTrial

ROWS = 4000  # good rows per day
BAD = 24  # malformed lines per day (6 of each reason)
# one table size per feature, from tiny (many collisions) to larger than any id
TABLE_ROWS = [7, 100, 1000, 65_536, 1 << 31, *range(3000, 3000 + 21)]


def write_days(folder, days=3, rows=ROWS):
    """day_0 plain, day_1.gz, day_2 plain ...: {day: {line: reason}} of the malformed lines."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = {}
    for d in range(days):
        path = folder / (f"day_{d}.gz" if d % 2 else f"day_{d}")
        bad[d] = write_criteo_tsv(path, rows, seed=100 + d, malformed=BAD)
    return bad


def day_paths(folder):
    return sorted(p for p in folder.iterdir() if p.name.startswith("day_"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("criteo")
    bad = write_days(root / "raw")
    lines = []
    manifest = prepare_criteo(day_paths(root / "raw"), root / "bin", report=lines.append)
    return root, bad, manifest, lines


def binary_config(root, **kw):
    return CriteoBinaryDataConfig(
        path=str(root / "bin"), **{"train_days": (0, 1), "eval_days": (2,), **kw}
    )


def assert_same_batch(a, b):
    assert torch.equal(a.dense_features, b.dense_features)
    assert torch.equal(a.labels, b.labels)
    ka, kb = a.sparse_features, b.sparse_features
    assert ka.keys() == kb.keys() and ka.stride() == kb.stride()
    assert torch.equal(ka.lengths(), kb.lengths()) and torch.equal(ka.values(), kb.values())
    assert ka.length_per_key() == kb.length_per_key()


def test_prepare_writes_torchrecs_layout_a_manifest_and_the_malformed_summary(prepared):
    root, bad, manifest, lines = prepared
    assert sorted(manifest["days"]) == ["0", "1", "2"]
    for d in range(3):
        entry = manifest["days"][str(d)]
        assert entry["done"] and entry["rows"] == ROWS and entry["lines"] == ROWS + BAD
        source = root / "raw" / (f"day_{d}.gz" if d % 2 else f"day_{d}")
        assert entry["source"]["size"] == source.stat().st_size
        assert len(entry["source"]["sha256"]) == 64
        files = day_files(root / "bin", d)
        # TorchRec's own tools read the files (shape from the header, a row range)
        assert BinaryCriteoUtils.get_shape_from_npy(str(files["sparse"])) == (ROWS, 26)
        dense = BinaryCriteoUtils.load_npy_range(str(files["dense"]), 10, 5)
        assert dense.shape == (5, 13) and dense.dtype == np.float32
        labels = np.load(files["labels"])
        assert labels.shape == (ROWS, 1) and set(np.unique(labels)) == {0, 1}
        sparse = np.load(files["sparse"], mmap_mode="r")
        assert sparse.dtype == np.int64 and sparse.min() == -1 and sparse.max() < 1 << 32
        assert not list((root / "bin").glob("*.part"))
    assert "value % table_rows" in manifest["hashing"] and "log(1 + max" in manifest["dense"]
    summary = json.loads((root / "bin" / "malformed.json").read_text())
    for d in range(3):
        expected = {r: list(bad[d].values()).count(r) for r in MALFORMED_REASONS}
        assert summary[str(d)]["malformed"] == expected  # every reason counted, none silent
        example_lines = [ln for ex in summary[str(d)]["examples"].values() for _, ln in ex]
        assert min(bad[d]) in example_lines  # with file:line positions to look at
    assert any(f"{BAD} malformed lines skipped" in line for line in lines)
    assert any("rows/s" in line and "ETA" in line for line in lines)


def test_binary_batches_equal_the_tsv_readers_for_the_same_rows(prepared):
    root, _, _, _ = prepared
    stream = CriteoBinaryStream(binary_config(root))
    tsv = CriteoReader(
        CriteoSource((root / "raw" / "day_0", root / "raw" / "day_1.gz")),
        batch_size=1000,
        table_sizes=TABLE_ROWS,
    )
    got = list(stream.batches(TRAIN, 1000, 0, None, TABLE_ROWS))
    want = list(tsv)
    assert len(got) == len(want) == 2 * ROWS // 1000  # a batch spans the day boundary
    for a, b in zip(want, got, strict=True):
        assert_same_batch(a, b)
    assert any((b.sparse_features.lengths() == 0).any() for b in got)  # empty bags kept empty
    # the held-out set: day 2's first rows
    held_out = CriteoReader(
        CriteoSource((root / "raw" / "day_2",)), batch_size=512, table_sizes=TABLE_ROWS
    )
    evals = stream.eval_batches(ROWS, 512, TABLE_ROWS)
    for a, b in zip(list(held_out), evals, strict=True):
        assert_same_batch(a, b)
    # any row range, e.g. a rank's slice of a global batch, is the same rows
    (part,) = stream.batches(TRAIN, 300, 3900, 4200, TABLE_ROWS)
    whole = torch.cat([b.labels for b in want])
    assert torch.equal(part.labels, whole[3900:4200])


def test_prepare_resumes_redoing_only_unfinished_days(prepared, tmp_path):
    root, _, _, _ = prepared
    raw = root / "raw"
    out = tmp_path / "bin"
    prepare_criteo(day_paths(raw)[:2], out, report=lambda _: None)  # days 0, 1
    kept = day_files(out, 0)["sparse"].stat().st_mtime_ns
    # a killed day 1: its files half-written (parts left behind), not marked done
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["days"]["1"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    for path in day_files(out, 1).values():
        path.rename(path.with_name(path.name + ".part"))
        with open(path.with_name(path.name + ".part"), "r+b") as f:
            f.truncate(1000)
    lines = []
    time.sleep(0.01)
    manifest = prepare_criteo(day_paths(raw), out, report=lines.append)
    assert any("day 0 already prepared" in line for line in lines)
    assert not any("day 1 already" in line or "day 2 already" in line for line in lines)
    assert day_files(out, 0)["sparse"].stat().st_mtime_ns == kept  # not redone
    assert {d: e["rows"] for d, e in manifest["days"].items()} == {"0": ROWS, "1": ROWS, "2": ROWS}
    assert not list(out.glob("*.part"))
    # the redone day is byte-identical to a clean preparation
    for part, path in day_files(out, 1).items():
        assert path.read_bytes() == day_files(root / "bin", 1)[part].read_bytes()


def test_loader_checks_the_manifest_and_names_bad_fields(prepared, tmp_path):
    root, _, _, _ = prepared
    with pytest.raises(
        ValidationError, match=r"day 5 is not prepared .*prepared days: \[0, 1, 2\]"
    ):
        binary_config(root, eval_days=(5,))
    with pytest.raises(ValidationError, match=r"eval_days \[1\] are inside train_days \[0, 1\]"):
        binary_config(root, eval_days=(1,))
    with pytest.raises(ValidationError, match=r"eval_rows is 5000, but must be <= 4000"):
        binary_config(root, eval_rows=5000)
    with pytest.raises(ValidationError, match=r"train_days is \[2, 1\]"):
        binary_config(root, train_days=(2, 1))
    with pytest.raises(ValidationError, match=r"path: .*manifest.json does not exist"):
        CriteoBinaryDataConfig(path=str(tmp_path), train_days=(0, 0), eval_days=(1,))
    # a file replaced after preparation: its rows disagree with the manifest
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in (root / "bin").iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    np.save(day_files(copy, 1)["sparse"], np.zeros((10, 26), dtype=np.int64))
    with pytest.raises(
        ValidationError,
        match=r"day_1_sparse.npy has shape \(10, 26\), but the manifest says \(4000, 26\)",
    ):
        CriteoBinaryDataConfig(path=str(copy), train_days=(0, 1), eval_days=(2,))
    # the budget must fit the rows (unique samples) unless epochs allow repeats
    with pytest.raises(ValidationError, match=r"train.samples is 9000, but must be <= 8000"):
        trial_config(root, samples=9000)
    assert trial_config(root, samples=9000, epochs=2).train.samples == 9000


def binary_data(root, **extra) -> dict:
    """The spec's `data` section for the prepared test days: days 0-1 train, day 2 evaluates."""
    return {
        "kind": "criteo_binary",
        "path": str(root / "bin"),
        "train_days": [0, 1],
        "eval_days": [2],
        "eval_rows": 2000,
        **extra,
    }


def trial_config(root, samples=6000, epochs=1, eval_at=(2048, 6000)):
    return DLRMTrialConfig.model_validate(
        {
            "data": binary_data(root, epochs=epochs),
            "model": {
                "embedding_dim": 8,
                "num_embeddings": 1000,
                "bottom_mlp": [16],
                "top_mlp": [16],
            },
            "train": {
                "samples": samples,
                "eval_at": list(eval_at),
                "batch_size": 512,
                "eval_samples": 4000,
                "num_threads": 1,
            },
        }
    )


def test_trial_resumes_exactly_and_records_the_rows_it_read(prepared):
    root, _, _, _ = prepared
    full = list(DLRMTrial(trial_config(root)).run())
    first = DLRMTrial(trial_config(root))
    next(first.run())
    state = first.state_dict()
    assert state["rows_read"] == [[[0, 2048]]]
    resumed = DLRMTrial(trial_config(root), checkpoint=state)
    points = list(resumed.run())
    assert [p.samples for p in points] == [6000]
    assert points[-1].loss == full[-1].loss  # the same rows in the same order: exact
    assert resumed.state_dict()["rows_read"] == [[[0, 6000]]]
    assert len(resumed.eval_batches()[0].labels) + len(resumed.eval_batches()[-1].labels) > 0
    assert sum(len(b.labels) for b in resumed.eval_batches()) == 2000  # eval_rows caps the set


def test_epochs_repeat_rows_only_when_allowed(prepared):
    root, _, _, _ = prepared
    stream = CriteoBinaryStream(binary_config(root, epochs=2))
    (wrap,) = stream.batches(TRAIN, 1000, 7500, 8500, TABLE_ROWS)  # the end, then the start
    first = next(stream.batches(TRAIN, 500, 0, 500, TABLE_ROWS))
    assert torch.equal(wrap.labels[500:], first.labels)
    once = CriteoBinaryStream(binary_config(root))
    with pytest.raises(ValueError, match=r"sample 8500 is past the data: 1 epoch\(s\) of the 8000"):
        next(once.batches(TRAIN, 1000, 7500, 8500, TABLE_ROWS))


def test_cli_prepares_days_and_reruns_skip_them(tmp_path, capsys):
    write_days(tmp_path / "raw", days=2, rows=1000)
    out = tmp_path / "bin"
    args = ["data", "prepare-criteo", *map(str, day_paths(tmp_path / "raw")), "--out", str(out)]
    assert main([*args, "--interval", "1"]) == 0
    printed = capsys.readouterr()
    assert f"2 days, 2,000 rows in {out} (48 malformed lines skipped" in printed.out
    assert "2/2 days" in printed.err and "already prepared" not in printed.err
    assert main(args) == 0  # rerun: nothing to do
    assert capsys.readouterr().err.count("already prepared") == 2
    assert main(["data", "prepare-criteo", str(tmp_path / "nope"), "--out", str(out)]) == 2
    assert "no such Criteo day file" in capsys.readouterr().err


@pytest.mark.slow  # ~50-100 s on 2 shared cores: each spawned process imports torch, TorchRec
def test_two_worker_processes_prepare_the_same_bytes(prepared, tmp_path):
    root, _, _, _ = prepared
    prepare_criteo(day_paths(root / "raw"), tmp_path, workers=2, report=lambda _: None)
    for d in range(3):
        for part, path in day_files(tmp_path, d).items():
            assert path.read_bytes() == day_files(root / "bin", d)[part].read_bytes()


# --- end to end: prepare, then a 2-worker DLRM sweep through Ray Tune and MLflow ----------------
SWEEP_SAMPLES = 6144


def sweep_spec(root):
    return {
        "name": "criteo-binary-2workers",
        "backend": "dlrm",
        "dlrm": {
            "data": binary_data(root),
            "model": {"embedding_dim": 8, "bottom_mlp": [16], "top_mlp": [16]},
            "train": {"eval_samples": 2000, "num_threads": 1, "batch_size": 512},
        },
        "trial": {
            "samples": SWEEP_SAMPLES,
            "eval_points": 2,
            "min_samples": 2048,
            "workers": 2,
            "sharding": ["table_wise"],
        },
        "axes": {"params": {"model.num_embeddings": [1000]}},
        "budget": {"trials": 1},
        "resources": {"cpus_per_trial": 0.5, "cpus_per_worker": 0.5, "concurrency": 1},
        "tracking": {"experiment": "criteo-binary-2workers"},
    }


@pytest.mark.ray
@pytest.mark.slow  # ~2-3 min on 2 shared cores (Ray Train starts two worker processes)
def test_prepare_then_a_two_worker_sweep_reads_disjoint_rows_covering_the_budget(
    tmp_path, ray_local
):
    from scaler.spec import parse_spec
    from scaler.sweep import run_sweep

    bad = write_days(tmp_path / "raw")
    manifest = prepare_criteo(  # one Ray task per day, on the test's cluster
        day_paths(tmp_path / "raw"), tmp_path / "bin", use_ray=True, report=lambda _: None
    )
    assert sum(sum(e["malformed"].values()) for e in manifest["days"].values()) == sum(
        len(b) for b in bad.values()
    )
    result = run_sweep(
        parse_spec(sweep_spec(tmp_path)), storage=tmp_path / "runs", final_bootstrap=0
    )
    assert result.trials == 1 and result.errors == 0
    trials = scaler.trials("criteo-binary-2workers", tracking_uri=result.tracking_uri)
    points = scaler.points("criteo-binary-2workers", tracking_uri=result.tracking_uri)
    assert len(trials) == 1 and trials.iloc[0]["status"] in {"completed", "diverged"}
    assert max(points["samples"]) == SWEEP_SAMPLES and (points["loss"] > 0).all()
    (last,) = sorted((tmp_path / "runs").rglob("train/checkpoint_*/trial.pt"))[-1:]
    state = torch.load(last, weights_only=False)
    assert state["samples"] == SWEEP_SAMPLES
    per_rank = [{i for lo, hi in ranges for i in range(lo, hi)} for ranges in state["rows_read"]]
    assert len(per_rank) == 2 and all(per_rank)
    assert not per_rank[0] & per_rank[1]  # disjoint
    assert per_rank[0] | per_rank[1] == set(range(SWEEP_SAMPLES))  # covers the budget
    assert os.path.isfile(tmp_path / "bin" / "malformed.json")
