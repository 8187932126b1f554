"""Criteo day files converted once to TorchRec's binary layout, and read back memory-mapped.

Why: the TSV reader (`scaler.data.criteo`) parses well under a million rows per second per core,
so a GPU trial would wait on text parsing, and every trial of a sweep would parse the same files
again.  `prepare_criteo` parses each day file once (with that same reader: one parser, one set
of malformed-line rules) and writes TorchRec's Criteo 1TB binary layout
(`torchrec.datasets.criteo.BinaryCriteoUtils`), one day per task:

    DIR/day_<d>_dense.npy    float32 [rows, 13]  log(1 + max(count, 0)); a missing count is 0
    DIR/day_<d>_sparse.npy   int64   [rows, 26]  the raw 32-bit categorical value, -1 if empty
    DIR/day_<d>_labels.npy   int32   [rows, 1]   0 / 1
    DIR/manifest.json        rows per day, the rules above, each source file's size and sha256
    DIR/malformed.json       malformed lines skipped, per day and reason, with example positions

Two deliberate differences from TorchRec's own `tsv_to_npys`: the dense transform is the TSV
reader's (TorchRec subtracts each file's minimum, so its days are not comparable), and an empty
categorical is kept as -1 instead of 0 (0 is a real value), so the trial can give it an empty bag
as the TSV reader does.  The sparse file keeps raw values: the trial picks its table sizes and
hashes `value % table_rows` when it reads a batch, so one preparation serves every model size.

Resumable: a day is written to `*.part` files, renamed when complete, and only then marked done
in the manifest; a rerun skips the days marked done (files present, shapes right, same source
size) and redoes the rest.

`CriteoBinaryStream` is a trial's data stream over such a folder (the interface of
`scaler.data.criteo_stream.CriteoStream`): train positions map to rows of the train days in
order, exactly, so a checkpoint's sample count is the whole data position; it records which
positions this process read (`rows_read`), which the multi-worker tests use to show ranks read
disjoint rows.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator
from torchrec.datasets.criteo import (
    CAT_FEATURE_COUNT,
    DEFAULT_CAT_NAMES,
    DEFAULT_INT_NAMES,
    INT_FEATURE_COUNT,
    BinaryCriteoUtils,
)
from torchrec.datasets.utils import Batch
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from scaler.data.criteo import CriteoReader, CriteoSource, _open
from scaler.data.criteo_stream import CriteoFeatures
from scaler.data.synthetic import TRAIN

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MALFORMED_SUMMARY = "malformed.json"
FORMAT = "scaler.criteo_binary/1"
DENSE_RULE = "float32 log(1 + max(count, 0)); a missing count is 0 (as scaler.data.criteo)"
HASHING_RULE = (
    "sparse holds the raw categorical value int(hex, 16) as int64, -1 where the field is empty; "
    "a trial's id is value % table_rows and an empty field is a bag of length 0"
)
# part -> (dtype, columns): TorchRec's layout (BinaryCriteoUtils.tsv_to_npys), 2-D arrays
PARTS: dict[str, tuple[np.dtype, int]] = {
    "dense": (np.dtype("<f4"), INT_FEATURE_COUNT),
    "sparse": (np.dtype("<i8"), CAT_FEATURE_COUNT),
    "labels": (np.dtype("<i4"), 1),
}
_HEADER_BYTES = 128  # fixed .npy header: written first as a placeholder, rewritten with the rows
_PARSE_ROWS = 1 << 16  # rows per parsed batch while preparing
_RAW = 1 << 32  # "table size" that keeps the raw 32-bit value: value % 2**32 == value
_DAY_NAME = re.compile(r"day_(\d+)(\.\w+)*$")


def day_files(out_dir: str | os.PathLike, day: int) -> dict[str, Path]:
    """The three .npy files of one day, by part."""
    return {part: Path(out_dir) / f"day_{day}_{part}.npy" for part in PARTS}


def day_of(path: str | os.PathLike) -> int:
    """The day number of a Criteo day file's name: `day_7`, `day_7.gz`, `day_7.tsv.gz` -> 7."""
    match = _DAY_NAME.fullmatch(Path(path).name)
    if match is None:
        raise ValueError(
            f"cannot tell the day of {path}: name the day files day_<N> or day_<N>.gz "
            "(as in the Criteo 1TB set)"
        )
    return int(match[1])


# ------------------------------------------------------------------------------------ writing


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version-1.0 .npy header of exactly `_HEADER_BYTES` bytes (padded with spaces, as
    numpy pads), so the placeholder written before the row count is known can be overwritten."""
    text = f"{{'descr': '{dtype.str}', 'fortran_order': False, 'shape': {shape}, }}"
    size = _HEADER_BYTES - 10  # magic (6) + version (2) + header length (2)
    body = text.ljust(size - 1).encode("latin1") + b"\n"
    if len(body) != size:
        raise ValueError(f"npy header for shape {shape} does not fit {_HEADER_BYTES} bytes")
    return b"\x93NUMPY\x01\x00" + size.to_bytes(2, "little") + body


class _NpyAppender:
    """Appends rows to a 2-D .npy file whose row count is written when it is closed."""

    def __init__(self, path: Path, dtype: np.dtype, columns: int) -> None:
        self.path, self.dtype, self.columns, self.rows = path, dtype, columns, 0
        self.file = open(path, "wb")
        self.file.write(_npy_header(dtype, (0, columns)))

    def append(self, rows: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        self.file.seek(0)
        self.file.write(_npy_header(self.dtype, (self.rows, self.columns)))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


@dataclass
class DayResult:
    """What preparing one day produced (the manifest's entry for the day)."""

    day: int
    rows: int  # well-formed rows written
    lines: int  # lines read
    malformed: dict[str, int]  # reason -> lines skipped
    examples: dict[str, list[tuple[str, int]]]  # reason -> first (file, line) positions
    source: dict[str, Any]  # path, size, sha256
    seconds: float


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def prepare_day(source: str | os.PathLike, out_dir: str | os.PathLike) -> DayResult:
    """Parse one day file (plain or gzip) into its three .npy files under `out_dir`.

    Writes `*.part` files and renames them only when complete, so a killed task leaves no
    file that looks finished.  Parsing is `CriteoReader`'s (malformed lines counted, skipped).
    """
    start = time.perf_counter()
    source, out_dir = Path(source), Path(out_dir)
    day = day_of(source)
    final = day_files(out_dir, day)
    parts = {part: path.with_name(path.name + ".part") for part, path in final.items()}
    for path in final.values():  # a redo: no stale complete file may outlive the new parts
        path.unlink(missing_ok=True)
    reader = CriteoReader(CriteoSource((source,)), batch_size=_PARSE_ROWS, table_sizes=_RAW)
    writers = {p: _NpyAppender(parts[p], *PARTS[p]) for p in PARTS}
    try:
        for batch in reader:
            n = len(batch.labels)
            kjt = batch.sparse_features
            present = kjt.lengths().numpy().reshape(CAT_FEATURE_COUNT, n).astype(bool)
            raw = np.full((CAT_FEATURE_COUNT, n), -1, dtype=np.int64)
            raw[present] = kjt.values().numpy()  # key-major values fill key-major slots
            writers["dense"].append(batch.dense_features.numpy())
            writers["sparse"].append(raw.T)
            writers["labels"].append(batch.labels.numpy().astype(np.int32).reshape(n, 1))
    finally:
        for w in writers.values():
            w.close()
    for part, path in parts.items():
        os.replace(path, final[part])
    stats = reader.stats
    return DayResult(
        day=day,
        rows=stats.rows,
        lines=stats.lines,
        malformed=dict(stats.malformed),
        examples={r: [list(e) for e in ex] for r, ex in stats.examples.items()},
        source={"path": str(source), "size": source.stat().st_size, "sha256": sha256_of(source)},
        seconds=time.perf_counter() - start,
    )


def estimate_rows(path: Path, sample_bytes: int = 4 << 20) -> int:
    """About how many lines a (possibly gzip'd) day file holds, from its first few MB: used for
    the progress line's ETA only."""
    size = path.stat().st_size
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    with _open(path) as f:
        lines = f.read(sample_bytes).count(b"\n")
        consumed = f.fileobj.tell() if gz else f.tell()  # compressed bytes read for those lines
    return int(lines * size / max(consumed, 1))


# ---------------------------------------------------------------------------------- manifest


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: prepare the day files first "
            f"(scaler data prepare-criteo day_0.gz ... --out {out_dir})"
        )
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format is {manifest.get('format')!r}, but must be {FORMAT!r}")
    return manifest


def _write_json(path: Path, value: Any) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _new_manifest() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "layout": "torchrec.datasets.criteo.BinaryCriteoUtils: day_<d>_{dense,sparse,labels}.npy",
        "dense": DENSE_RULE,
        "hashing": HASHING_RULE,
        "dense_columns": list(DEFAULT_INT_NAMES),
        "sparse_columns": list(DEFAULT_CAT_NAMES),
        "days": {},
    }


def check_day(out_dir: str | os.PathLike, manifest: dict[str, Any], day: int) -> int:
    """Rows of a prepared day; raises if the manifest lacks it or a file disagrees with it."""
    entry = manifest["days"].get(str(day))
    if entry is None or not entry.get("done"):
        have = sorted(int(d) for d, e in manifest["days"].items() if e.get("done"))
        raise ValueError(
            f"day {day} is not prepared in {out_dir} (prepared days: {have}): run "
            f"scaler data prepare-criteo on its day file with --out {out_dir}"
        )
    rows = int(entry["rows"])
    for part, path in day_files(out_dir, day).items():
        if not path.is_file():
            raise ValueError(f"{path} is missing, but the manifest lists day {day}: prepare again")
        shape = tuple(BinaryCriteoUtils.get_shape_from_npy(str(path)))
        expected = (rows, PARTS[part][1])
        if shape != expected:
            raise ValueError(
                f"{path} has shape {shape}, but the manifest says {expected} "
                "(a replaced or truncated file: prepare the day again)"
            )
    return rows


def _is_done(out_dir: Path, manifest: dict[str, Any], day: int, source: Path) -> bool:
    entry = manifest["days"].get(str(day))
    if entry is None or entry["source"]["size"] != source.stat().st_size:
        return False
    try:
        check_day(out_dir, manifest, day)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------------------- the driver


@dataclass
class _Progress:
    """The progress line: rows written (finished days + the .part files' sizes), rows/s, ETA."""

    out_dir: Path
    expected: dict[int, int]  # day -> rows (actual when done, estimated before)
    done: dict[int, int] = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)

    def rows_so_far(self) -> int:
        rows = sum(self.done.values())
        for day in self.expected.keys() - self.done.keys():
            part = self.out_dir / f"day_{day}_dense.npy.part"
            try:
                rows += max(part.stat().st_size - _HEADER_BYTES, 0) // (4 * INT_FEATURE_COUNT)
            except FileNotFoundError:
                pass
        return rows

    def line(self) -> str:
        rows, elapsed = self.rows_so_far(), time.perf_counter() - self.start
        rate = rows / elapsed if elapsed > 0 else 0.0
        left = max(sum(self.expected.values()) - rows, 0)
        eta = time.strftime("%H:%M:%S", time.gmtime(left / rate)) if rate > 0 else "?"
        return (
            f"prepare-criteo: {len(self.done)}/{len(self.expected)} days, {rows:,} rows, "
            f"{rate / 1e6:.2f}M rows/s, ETA {eta}"
        )


def _run_local(sources: list[Path], out_dir: Path, workers: int):
    """Futures of `prepare_day`: a thread for one worker (no process start-up), else processes
    (spawned: forking a process that has torch's threads running is unsafe)."""
    if workers == 1:
        pool: cf.Executor = cf.ThreadPoolExecutor(1)
    else:
        pool = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    futures = {pool.submit(prepare_day, s, out_dir): s for s in sources}

    def wait(timeout: float) -> list[DayResult]:
        done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        for f in done:
            del futures[f]
        return [f.result() for f in done]

    return wait, lambda: bool(futures), pool.shutdown


def _run_ray(sources: list[Path], out_dir: Path):
    """One Ray task per day (the cluster's CPUs); `out_dir` must be shared storage."""
    import ray

    task = ray.remote(num_cpus=1, max_retries=2)(prepare_day)
    pending = [task.remote(str(s), str(out_dir)) for s in sources]

    def wait(timeout: float) -> list[DayResult]:
        nonlocal pending
        done, pending = ray.wait(pending, num_returns=1, timeout=timeout)
        return ray.get(done)

    return wait, lambda: bool(pending), lambda: None


def prepare_criteo(
    sources: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    workers: int = 1,
    use_ray: bool = False,
    interval: float = 10.0,
    report: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Prepare every day file of `sources` under `out_dir`; returns the manifest.

    Days already prepared from a source of the same size are skipped.  `use_ray` runs one Ray
    task per day on the connected cluster, else `workers` local processes.  `report` gets the
    progress line every `interval` seconds and a line per finished day (default: stderr).
    """
    if workers < 1:
        raise ValueError(f"workers is {workers}, but must be >= 1")
    report = report or (lambda line: print(line, file=sys.stderr, flush=True))
    out_dir = Path(out_dir)
    paths = [Path(s) for s in sources]
    if not paths:
        raise ValueError("no day files given")
    by_day: dict[int, Path] = {}
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"no such Criteo day file: {path}")
        day = day_of(path)
        if day in by_day:
            raise ValueError(f"day {day} is given twice: {by_day[day]} and {path}")
        by_day[day] = path
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out_dir) if (out_dir / MANIFEST).is_file() else _new_manifest()
    summary_path = out_dir / MALFORMED_SUMMARY
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    todo = [p for d, p in sorted(by_day.items()) if not _is_done(out_dir, manifest, d, p)]
    for day in sorted(set(by_day) - {day_of(p) for p in todo}):
        rows = manifest["days"][str(day)]["rows"]
        report(f"prepare-criteo: day {day} already prepared ({rows:,} rows), skipped")
    for path in todo:  # a day being redone is not done until its new files are complete
        entry = manifest["days"].get(str(day_of(path)))
        if entry is not None:
            entry["done"] = False
    _write_json(out_dir / MANIFEST, manifest)
    progress = _Progress(out_dir, {day_of(p): estimate_rows(p) for p in todo})
    if todo:
        runner = _run_ray(todo, out_dir) if use_ray else _run_local(todo, out_dir, workers)
        wait, busy, close = runner
        try:
            while busy():
                for r in wait(interval):
                    _record(out_dir, manifest, summary, r)
                    progress.done[r.day] = progress.expected[r.day] = r.rows
                    bad = sum(r.malformed.values())
                    report(
                        f"prepare-criteo: day {r.day}: {r.rows:,} rows, {bad:,} malformed lines "
                        f"skipped, {r.rows / max(r.seconds, 1e-9) / 1e6:.2f}M rows/s"
                    )
                report(progress.line())
        finally:
            close()
    if not summary_path.exists():
        _write_json(summary_path, summary)
    return manifest


def _record(out_dir: Path, manifest: dict, summary: dict, r: DayResult) -> None:
    """A finished day into the manifest (now marked done) and the malformed-line summary."""
    entry = {k: v for k, v in asdict(r).items() if k != "day"}
    manifest["days"][str(r.day)] = {**entry, "done": True}
    _write_json(out_dir / MANIFEST, manifest)
    summary[str(r.day)] = {
        "source": r.source["path"],
        "lines": r.lines,
        "malformed": r.malformed,
        "examples": r.examples,
    }
    _write_json(out_dir / MALFORMED_SUMMARY, summary)


# ----------------------------------------------------------------------------------- reading


class CriteoBinaryDataConfig(CriteoFeatures, BaseModel):
    """`data:` of a trial on prepared Criteo days (`scaler data prepare-criteo`).

    path: the prepared folder; train_days: [first, last] (inclusive) days trained on in order;
    eval_days: days of the held-out set; eval_rows: its first rows used (default: all);
    epochs: passes over the train days a budget may take (1: every sample is a new row).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["criteo_binary"] = "criteo_binary"
    path: str
    train_days: tuple[int, int] = Field(description="[first, last] days, inclusive")
    eval_days: tuple[int, ...] = Field(min_length=1)
    eval_rows: int | None = Field(default=None, gt=0)
    epochs: int = Field(default=1, ge=1)
    _rows: dict[int, int] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _check_days(self) -> CriteoBinaryDataConfig:
        first, last = self.train_days
        if not 0 <= first <= last:
            raise ValueError(
                f"train_days is [{first}, {last}], but must be [first, last] with 0 <= first <= last"
            )
        overlap = sorted(d for d in self.eval_days if first <= d <= last)
        if overlap:
            raise ValueError(f"eval_days {overlap} are inside train_days [{first}, {last}]")
        try:
            manifest = read_manifest(self.path)
        except FileNotFoundError as e:  # pydantic reports ValueErrors with the field's name
            raise ValueError(f"path: {e}") from None
        for day in (*range(first, last + 1), *self.eval_days):
            self._rows[day] = check_day(self.path, manifest, day)
        held_out = sum(self._rows[d] for d in self.eval_days)
        if self.eval_rows is not None and self.eval_rows > held_out:
            raise ValueError(
                f"eval_rows is {self.eval_rows}, but must be <= {held_out} (the rows of "
                f"eval_days {list(self.eval_days)})"
            )
        return self

    @property
    def train_rows(self) -> int:
        first, last = self.train_days
        return sum(self._rows[d] for d in range(first, last + 1))


class PreparedDays:
    """Days of a prepared folder as one memory-mapped sequence of rows (read-only, zero-copy
    until a range is taken)."""

    def __init__(self, path: str | os.PathLike, days: Sequence[int], limit: int | None = None):
        self.arrays = [
            {p: np.load(f, mmap_mode="r") for p, f in day_files(path, d).items()} for d in days
        ]
        lengths = [len(a["labels"]) for a in self.arrays]
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.rows = int(self.offsets[-1]) if limit is None else min(limit, int(self.offsets[-1]))

    def take(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dense, sparse, labels) copies of rows [lo, hi), across day boundaries."""
        if not 0 <= lo <= hi <= self.rows:
            raise IndexError(f"rows [{lo}, {hi}) are outside [0, {self.rows})")
        pieces = []
        i = int(np.searchsorted(self.offsets, lo, side="right")) - 1
        while lo < hi:
            a, day_end = self.arrays[i], int(self.offsets[i + 1])
            stop = min(hi, day_end)
            k0, k1 = lo - int(self.offsets[i]), stop - int(self.offsets[i])
            pieces.append((a["dense"][k0:k1], a["sparse"][k0:k1], a["labels"][k0:k1]))
            lo, i = stop, i + 1
        if len(pieces) == 1:
            return tuple(np.array(x) for x in pieces[0])  # type: ignore[return-value]
        return tuple(np.concatenate(x) for x in zip(*pieces, strict=True))  # type: ignore


def binary_batch(
    dense: np.ndarray, sparse: np.ndarray, labels: np.ndarray, table_rows: np.ndarray
) -> Batch:
    """Prepared rows -> the `Batch` the TSV reader makes of the same rows (`criteo._to_batch`):
    ids `value % table_rows`, an empty field (-1) a bag of length 0, KJT key-major."""
    n = len(labels)
    if (table_rows < _RAW).all():  # uint32 division is faster than int64's; -1 wraps (dropped)
        ids = np.array(sparse.T, dtype=np.uint32, order="C") % table_rows.astype(np.uint32)[:, None]
    else:  # a table of 2**32 rows keeps the raw value
        ids = sparse.T % table_rows[:, None]
    empty = sparse.T < 0
    if empty.any():
        present = ~empty
        values = ids[present].astype(np.int64)
        lengths = present.reshape(-1).astype(np.int32)
        per_key = present.sum(axis=1).tolist()
    else:
        values = ids.reshape(-1).astype(np.int64)
        lengths = np.ones(CAT_FEATURE_COUNT * n, dtype=np.int32)
        per_key = [n] * CAT_FEATURE_COUNT
    return Batch(
        dense_features=torch.from_numpy(dense),
        sparse_features=KeyedJaggedTensor(
            keys=list(DEFAULT_CAT_NAMES),
            values=torch.from_numpy(values),
            lengths=torch.from_numpy(lengths),
            stride=n,
            length_per_key=per_key,
        ),
        labels=torch.from_numpy(labels.reshape(-1).astype(np.float32)),
    )


def _table_rows(table_rows: Sequence[int] | int) -> np.ndarray:
    rows = np.broadcast_to(np.asarray(table_rows, dtype=np.int64), (CAT_FEATURE_COUNT,))
    if (rows < 1).any() or (rows > _RAW).any():
        raise ValueError(f"table_rows are {rows.tolist()}, but each must be in [1, 2**32]")
    return rows


class CriteoBinaryStream:
    """Train batches and the eval set of a `CriteoBinaryDataConfig` (the trial's data interface).

    Train position p (samples trained so far) is row `p % train_rows` of the train days in order,
    in epoch `p // train_rows`: positions map to rows exactly, so a trial resumed at sample p
    reads what the uninterrupted trial would have.  `rows_read` lists the [start, stop) train
    positions this process read, merged.
    """

    def __init__(self, config: CriteoBinaryDataConfig) -> None:
        self.config = config
        first, last = config.train_days
        self.train = PreparedDays(config.path, range(first, last + 1))
        self.eval = PreparedDays(config.path, config.eval_days, config.eval_rows)
        self.rows_read: list[tuple[int, int]] = []

    def _record(self, lo: int, hi: int) -> None:
        if self.rows_read and self.rows_read[-1][1] == lo:
            self.rows_read[-1] = (self.rows_read[-1][0], hi)
        else:
            self.rows_read.append((lo, hi))

    def batches(
        self, stream: int, batch_size: int, start: int = 0, stop: int | None = None, table_rows=None
    ) -> Iterator[Batch]:
        if stream != TRAIN:
            raise ValueError(
                f"stream is {stream}, but Criteo data trains from TRAIN ({TRAIN}) only"
            )
        n, epochs = self.train.rows, self.config.epochs
        stop = n * epochs if stop is None else stop
        if stop > n * epochs:
            raise ValueError(
                f"sample {stop} is past the data: {epochs} epoch(s) of the {n} rows of "
                f"train_days {list(self.config.train_days)} (raise data.epochs to repeat rows)"
            )
        rows = _table_rows(self.config.features[0].vocab_size if table_rows is None else table_rows)
        for lo in range(start, stop, batch_size):
            hi = min(lo + batch_size, stop)
            if lo // n != (hi - 1) // n:  # the batch wraps into the next epoch
                cut = (lo // n + 1) * n
                a, b = self.train.take(lo % n, n), self.train.take(0, hi - cut)
                parts = tuple(np.concatenate(x) for x in zip(a, b, strict=True))
            else:
                parts = self.train.take(lo % n, (hi - 1) % n + 1)
            if lo > 0 and lo % n == 0:
                logger.info("Criteo binary: epoch %d of train_days starts", lo // n)
            self._record(lo, hi)
            yield binary_batch(*parts, rows)

    def eval_batches(self, n: int, chunk: int, table_rows) -> list[Batch]:
        """The first `n` rows of the eval days (at most `eval_rows`), in batches of `chunk`."""
        rows, stop = _table_rows(table_rows), min(n, self.eval.rows)
        return [
            binary_batch(*self.eval.take(lo, min(lo + chunk, stop)), rows)
            for lo in range(0, stop, chunk)
        ]

    def malformed(self, train_only: bool = False) -> dict[str, int]:
        """Nothing is malformed in prepared data (see the folder's malformed.json)."""
        return {}
