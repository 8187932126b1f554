"""Criteo files as a trial's data stream: the same interface the trial uses for synthetic data.

A trial reads `batches(TRAIN, batch_size, start, stop, table_rows)` and `eval_batches(n, chunk,
table_rows)`.  Here the train stream is `train_rows` of the files (lines, 0-based, across files in
order) and the eval set the good rows among the first `n` lines of `eval_rows`; the two ranges must not overlap.

Samples count good rows: a malformed line in the train range is skipped (and counted), so a
trial evaluated "at 4096 samples" may have seen 4091 rows of its first 4096 lines.  Within one
process the stream remembers which line follows the rows already trained on; a trial resumed from
a checkpoint at sample `start` re-opens the files at line `train_rows[0] + start`, which is exact
when no line before it was malformed (each skipped line shifts the resume point by one row).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from torchrec.datasets.criteo import CAT_FEATURE_COUNT, DEFAULT_CAT_NAMES, INT_FEATURE_COUNT
from torchrec.datasets.utils import Batch

from scaler.data.criteo import CriteoReader, CriteoSource
from scaler.data.synthetic import EVAL, TRAIN, SparseFeatureSpec

log = logging.getLogger(__name__)

# Criteo categoricals are already hashed to 32 bits: tables fold them with `id % rows`.
_CRITEO_FEATURE = SparseFeatureSpec(vocab_size=1 << 32, zipf_exponent=1.0, hotness=1)


class CriteoFeatures:
    """The feature layout every Criteo data kind shares (TSV or prepared binary)."""

    @property
    def num_dense(self) -> int:
        return INT_FEATURE_COUNT

    @property
    def num_sparse(self) -> int:
        return CAT_FEATURE_COUNT

    @property
    def feature_names(self) -> list[str]:
        return list(DEFAULT_CAT_NAMES)

    @property
    def features(self) -> tuple[SparseFeatureSpec, ...]:
        return (_CRITEO_FEATURE,) * CAT_FEATURE_COUNT


class CriteoDataConfig(CriteoFeatures, BaseModel):
    """`data:` of a trial on Criteo TSV files (Kaggle train.txt or the 1TB day files).

    paths: files read in order; train_rows / eval_rows: [start, stop) line ranges across them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["criteo"] = "criteo"
    paths: tuple[str, ...] = Field(min_length=1)
    train_rows: tuple[int, int] = Field(description="[start, stop) lines for training")
    eval_rows: tuple[int, int] = Field(description="[start, stop) lines for evaluation")
    strict: bool = False  # raise at the first malformed line instead of counting and skipping

    @model_validator(mode="after")
    def _ranges(self) -> CriteoDataConfig:
        for name in ("train_rows", "eval_rows"):
            start, stop = getattr(self, name)
            if not 0 <= start < stop:
                raise ValueError(f"{name} is [{start}, {stop}), but must satisfy 0 <= start < stop")
        (a, b), (c, d) = self.train_rows, self.eval_rows
        if a < d and c < b:
            raise ValueError(f"eval_rows [{c}, {d}) overlaps train_rows [{a}, {b})")
        for p in self.paths:
            if not Path(p).is_file():
                raise ValueError(f"paths: no such Criteo file {p}")
        return self


class CriteoStream:
    """Train batches and the eval set of a `CriteoDataConfig`, with malformed-line stats."""

    def __init__(self, config: CriteoDataConfig):
        self.config = config
        self.readers: list[CriteoReader] = []
        self.train_readers: list[CriteoReader] = []
        self._cursor: tuple[int, int] = (0, config.train_rows[0])  # (samples trained, next line)

    def _reader(
        self, rows: tuple[int, int], batch_size: int, table_rows: Sequence[int]
    ) -> CriteoReader:
        source = CriteoSource(tuple(Path(p) for p in self.config.paths), rows=rows)
        reader = CriteoReader(
            source, batch_size=batch_size, table_sizes=list(table_rows), strict=self.config.strict
        )
        self.readers.append(reader)
        return reader

    def batches(
        self, stream: int, batch_size: int, start: int = 0, stop: int | None = None, table_rows=None
    ) -> Iterator[Batch]:
        if stream != TRAIN:
            raise ValueError(
                f"stream is {stream}, but Criteo data trains from TRAIN ({TRAIN}) only"
            )
        first, last = self.config.train_rows
        begin = self._cursor[1] if start == self._cursor[0] else first + start
        end = last if stop is None else min(last, begin + (stop - start))
        if begin >= end:
            return
        seen = start
        reader = self._reader((begin, end), batch_size, table_rows)
        self.train_readers.append(reader)
        for batch in reader:
            seen += len(batch.labels)
            yield batch
        self._cursor = (seen, end)

    def eval_batches(self, n: int, chunk: int, table_rows) -> list[Batch]:
        """The good rows among the first `n` lines of eval_rows, in batches of `chunk`."""
        first, last = self.config.eval_rows
        batches = list(self._reader((first, min(last, first + n)), chunk, table_rows))
        if not batches:
            raise ValueError(
                f"eval_rows [{first}, {last}) of {self.config.paths} hold no readable row"
            )
        return batches

    def malformed(self, train_only: bool = False) -> dict[str, int]:
        """Malformed lines skipped so far, by reason, over every pass this stream made."""
        total: dict[str, int] = {}
        for r in self.train_readers if train_only else self.readers:
            for reason, count in r.stats.malformed.items():
                total[reason] = total.get(reason, 0) + count
        return total


__all__ = ["EVAL", "TRAIN", "CriteoDataConfig", "CriteoStream"]
