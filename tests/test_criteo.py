"""Criteo TSV reader: values against an independent line-by-line parse, malformed lines, ranges."""

import gzip
import logging
import math
import re

import numpy as np
import pytest
import torch
from torchrec.datasets.criteo import DEFAULT_CAT_NAMES

from scaler.data import criteo
from scaler.data.criteo import (
    CriteoFormatError,
    CriteoReader,
    CriteoSource,
    write_criteo_tsv,
)

SIZES = [1, 2, 7, 10, 97, 1000, 2**20, 2**32 + 5] + [50 + 13 * k for k in range(18)]

_INT = re.compile(rb"-?[0-9]{1,18}")
_HEX = re.compile(rb"[0-9a-fA-F]{1,8}")


def _reference(paths, sizes):
    """Plain-Python parse: [(global line index, label, dense[13], ids[26] or None)] of good lines."""
    rows, g = [], 0
    for path in paths:
        data = path.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        lines = data.split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        for line in lines:
            f = line.removesuffix(b"\r").split(b"\t")
            ok = (
                len(f) == 40
                and f[0] in (b"0", b"1")
                and all(x == b"" or _INT.fullmatch(x) for x in f[1:14])
                and all(x == b"" or _HEX.fullmatch(x) for x in f[14:])
            )
            if ok:
                dense = [math.log(1 + max(int(x or b"0"), 0)) for x in f[1:14]]
                ids = [int(x, 16) % s if x else None for x, s in zip(f[14:], sizes, strict=True)]
                rows.append((g, float(f[0]), dense, ids))
            g += 1
    return rows


def _rows(batches):
    """Batches -> [(label, dense[13], ids[26] or None)], checking each batch's types and shapes."""
    out = []
    for b in batches:
        n = len(b.labels)
        assert b.dense_features.dtype == torch.float32 and b.dense_features.shape == (n, 13)
        assert b.labels.dtype == torch.float32 and b.labels.shape == (n,)
        kjt = b.sparse_features
        assert kjt.keys() == list(DEFAULT_CAT_NAMES) and kjt.stride() == n
        per_key = kjt.to_dict()
        cols = []
        for name in DEFAULT_CAT_NAMES:
            jt = per_key[name]
            lengths = jt.lengths().tolist()
            assert set(lengths) <= {0, 1}
            vals = iter(jt.values().tolist())
            cols.append([next(vals) if k else None for k in lengths])
        for i in range(n):
            ids = [c[i] for c in cols]
            out.append((b.labels[i].item(), b.dense_features[i].tolist(), ids))
    return out


def _assert_same(got, expected):
    assert len(got) == len(expected)
    for (label, dense, ids), (_, e_label, e_dense, e_ids) in zip(got, expected, strict=True):
        assert label == e_label
        assert ids == e_ids
        np.testing.assert_allclose(dense, e_dense, rtol=1e-6)


def _read(paths, rows=None, sizes=SIZES, **kw):
    reader = CriteoReader(
        CriteoSource(tuple(paths), rows),
        batch_size=kw.pop("batch_size", 64),
        table_sizes=sizes,
        **kw,
    )
    return _rows(reader), reader.stats


# Hand-written lines: (fields or raw bytes, reason or None when well-formed).
_GOOD = [b"1", *[b"3"] * 13, *[b"0a1b2c3d"] * 26]


def _line(**changes):
    f = list(_GOOD)
    for k, v in changes.items():
        f[int(k[1:])] = v
    return b"\t".join(f)


EDGE_LINES = [
    (_line(), None),
    (_line(f1=b"", f2=b"-3", f3=b"0", f4=b"123456789012", f5=b"-0"), None),  # >8 digits is fine
    (_line(f14=b"", f15=b"A", f16=b"FFFFFFFF", f17=b"00000000", f39=b""), None),  # short/upper hex
    (_line() + b"\r", None),  # CRLF line ending
    (b"\t".join([b"0", *[b""] * 39]), None),  # every feature missing
    (_line() + b"\t1", "columns"),
    (b"\t".join(_GOOD[:-1]), "columns"),
    (b"", "columns"),  # blank line
    (b"garbage without tabs", "columns"),
    (_line(f0=b"2"), "label"),
    (_line(f0=b""), "label"),
    (_line(f0=b"1.0"), "label"),
    (_line(f7=b"1.5"), "int"),
    (_line(f7=b"abc"), "int"),
    (_line(f7=b"-"), "int"),
    (_line(f7=b"+4"), "int"),
    (_line(f13=b" 4"), "int"),
    (_line(f13=b"1234567890123456789"), "int"),  # 19 digits: does not fit int64 safely
    (_line(f13=b"12345678901x"), "int"),
    (_line(f7=b"\xff\xfe"), "int"),  # not UTF-8
    (_line(f20=b"zz12ab34"), "hex"),
    (_line(f20=b"123456789"), "hex"),
    (_line(f39=b"0a1b2c3g"), "hex"),
    (_line(f39=b"0x12"), "hex"),
    (_line(f0=b"5", f7=b"x", f20=b"z"), "label"),  # counted once, under the first reason
]


def _write_edge(path):
    path.write_bytes(b"\n".join(line for line, _ in EDGE_LINES) + b"\n")


def test_criteo_values_match_reference(tmp_path):
    path = tmp_path / "day_0"
    write_criteo_tsv(path, 3000, seed=1, malformed=40)
    got, stats = _read([path])
    expected = _reference([path], SIZES)
    assert len(expected) == 3000
    _assert_same(got, expected)
    ids = np.array([[-1 if i is None else i for i in r[2]] for r in got])
    assert (ids < np.array(SIZES)).all() and (ids >= -1).all()
    assert (ids == -1).any() and (ids[:, 0] <= 0).all()  # empty categoricals occur; size 1 -> id 0
    dense = np.array([r[1] for r in got])
    assert (dense >= 0).all() and (dense == 0).any()
    assert stats.rows == 3000 and stats.lines == 3040


def test_criteo_edge_lines_parse_or_are_skipped_by_reason(tmp_path, caplog):
    path = tmp_path / "edge.tsv"
    _write_edge(path)
    with caplog.at_level(logging.WARNING, logger="scaler.data.criteo"):
        got, stats = _read([path], batch_size=3)
    good = [r for r in _reference([path], SIZES)]
    assert [g for g, *_ in good] == [i for i, (_, r) in enumerate(EDGE_LINES) if r is None]
    _assert_same(got, good)
    assert got[1][1][:5] == pytest.approx([0, 0, 0, math.log(123456789013), 0])
    assert got[2][2][:4] == [None, 10 % 2, 0xFFFFFFFF % 7, 0]
    for reason in criteo.MALFORMED_REASONS:
        lines = [i + 1 for i, (_, r) in enumerate(EDGE_LINES) if r == reason]
        assert stats.malformed[reason] == len(lines)
        assert stats.examples[reason] == [(str(path), n) for n in lines[:5]]
    text = caplog.text
    assert f"{path}:6: skipping malformed line (expected 40 tab-separated fields, found 41" in text
    assert f"{path}:10: skipping malformed line (label must be 0 or 1, got b'2')" in text
    assert f"{path}:13: skipping malformed line (int_6 must be an integer, got b'1.5')" in text
    assert f"{path}:21: skipping malformed line (cat_6 must be 1-8 hex digits" in text
    assert "20 malformed lines skipped (columns=4, label=4, int=8, hex=4)" in text


def test_criteo_malformed_lines_from_writer_are_counted_at_their_lines(tmp_path, caplog):
    path = tmp_path / "bad.tsv.gz"
    bad = write_criteo_tsv(path, 500, seed=3, malformed=23)
    with caplog.at_level(logging.WARNING, logger="scaler.data.criteo"):
        got, stats = _read([path])
    assert len(got) == 500 == stats.rows
    for reason in criteo.MALFORMED_REASONS:
        lines = sorted(n for n, r in bad.items() if r == reason)
        assert stats.malformed[reason] == len(lines) > 0
        assert [n for _, n in stats.examples[reason]] == lines[:5]
    assert stats.n_malformed == 23
    assert "23 malformed lines skipped" in caplog.records[-1].getMessage()
    assert caplog.records[-1].levelno == logging.WARNING


def test_criteo_strict_raises_with_file_and_line(tmp_path):
    path = tmp_path / "bad.tsv"
    bad = write_criteo_tsv(path, 300, seed=4, malformed=3)
    first = min(bad)
    reader = CriteoReader(CriteoSource([path]), batch_size=16, table_sizes=100, strict=True)
    with pytest.raises(CriteoFormatError, match=rf"^{re.escape(str(path))}:{first}: "):
        for _ in reader:
            pass
    good = tmp_path / "good.tsv"
    write_criteo_tsv(good, 100, seed=4)
    assert (
        sum(
            len(b.labels)
            for b in CriteoReader(CriteoSource([good]), batch_size=16, table_sizes=100, strict=True)
        )
        == 100
    )


def test_criteo_gzip_reads_the_same_as_plain(tmp_path):
    plain, gz = tmp_path / "day_1", tmp_path / "day_1.gz"
    write_criteo_tsv(plain, 700, seed=5, malformed=9)
    write_criteo_tsv(gz, 700, seed=5, malformed=9)
    assert gzip.decompress(gz.read_bytes()) == plain.read_bytes()
    assert _read([gz])[0] == _read([plain])[0]


def test_criteo_row_ranges_for_train_and_eval_are_disjoint_and_cover(tmp_path, monkeypatch):
    monkeypatch.setattr(criteo, "_BLOCK_BYTES", 1000)  # many blocks: ranges cut inside blocks
    paths = [tmp_path / "a.tsv", tmp_path / "b.tsv.gz", tmp_path / "c.tsv"]
    for k, p in enumerate(paths):
        write_criteo_tsv(p, 150, seed=10 + k, malformed=5)
    expected = _reference(paths, SIZES)  # 465 lines in all
    for cut in (0, 1, 100, 155, 156, 300, 465, 999):
        train, s_train = _read(paths, rows=(0, cut))
        evals, s_eval = _read(paths, rows=(cut, None))
        _assert_same(train, [r for r in expected if r[0] < cut])
        _assert_same(evals, [r for r in expected if r[0] >= cut])
        assert s_train.lines == min(cut, 465) and s_eval.lines == 465 - min(cut, 465)
    middle, _ = _read(paths, rows=(120, 320))
    _assert_same(middle, [r for r in expected if 120 <= r[0] < 320])


def test_criteo_block_size_does_not_change_results(tmp_path, monkeypatch):
    path = tmp_path / "x.tsv"
    write_criteo_tsv(path, 400, seed=6, malformed=8)
    with path.open("ab") as f:
        f.write(b"\t".join(_GOOD))  # last line without its newline
    whole, stats = _read([path])
    assert stats.rows == 401
    monkeypatch.setattr(criteo, "_BLOCK_BYTES", 37)  # shorter than a line
    assert _read([path]) == (whole, stats)


def test_criteo_batches_and_drop_last(tmp_path):
    path = tmp_path / "x.tsv"
    write_criteo_tsv(path, 1000, seed=7, malformed=10)
    sizes = [
        len(b.labels) for b in CriteoReader(CriteoSource([path]), batch_size=300, table_sizes=10)
    ]
    assert sizes == [300, 300, 300, 100]
    reader = CriteoReader(CriteoSource([path]), batch_size=300, table_sizes=10, drop_last=True)
    assert [len(b.labels) for b in reader] == [300, 300, 300]


def test_criteo_passes_are_deterministic_and_writer_is_byte_identical(tmp_path):
    a, b = tmp_path / "a.gz", tmp_path / "b.gz"
    assert write_criteo_tsv(a, 300, seed=8, malformed=4) == write_criteo_tsv(
        b, 300, seed=8, malformed=4
    )
    assert a.read_bytes() == b.read_bytes()
    reader = CriteoReader(CriteoSource([a]), batch_size=64, table_sizes=SIZES)
    assert _rows(reader) == _rows(reader)
    write_criteo_tsv(tmp_path / "c.gz", 300, seed=9, malformed=4)
    assert (tmp_path / "c.gz").read_bytes() != a.read_bytes()


def test_criteo_abandoned_pass_still_reports(tmp_path, caplog):
    path = tmp_path / "x.tsv"
    write_criteo_tsv(path, 2000, seed=2, malformed=20)
    reader = CriteoReader(CriteoSource([path]), batch_size=100, table_sizes=10)
    with caplog.at_level(logging.WARNING, logger="scaler.data.criteo"):
        it = iter(reader)
        next(it)
        it.close()  # the trial reached its sample budget
    assert "malformed lines skipped" in caplog.records[-1].getMessage()


def test_criteo_from_days_resolves_plain_and_gzip(tmp_path):
    write_criteo_tsv(tmp_path / "day_0", 10, seed=0)
    write_criteo_tsv(tmp_path / "day_3.gz", 10, seed=0)
    src = CriteoSource.from_days(tmp_path, [3, 0], rows=(5, 15))
    assert src.paths == (tmp_path / "day_3.gz", tmp_path / "day_0") and src.rows == (5, 15)
    with pytest.raises(FileNotFoundError, match=r"day 1.*day_1\.gz"):
        CriteoSource.from_days(tmp_path, [1])
    with pytest.raises(ValueError, match=r"days contains 24, but each day must be in \[0, 23\]"):
        CriteoSource.from_days(tmp_path, [24])


def test_criteo_bad_arguments_name_field_and_bound(tmp_path):
    path = tmp_path / "x.tsv"
    write_criteo_tsv(path, 5, seed=0)
    src = CriteoSource([path])
    with pytest.raises(ValueError, match=r"table_sizes\[3\] is 0, but must be an int >= 1"):
        CriteoReader(src, batch_size=8, table_sizes=[5, 5, 5, 0] + [5] * 22)
    with pytest.raises(ValueError, match=r"table_sizes is -1|table_sizes\[0\] is -1"):
        CriteoReader(src, batch_size=8, table_sizes=-1)
    with pytest.raises(ValueError, match="table_sizes has 3 entries, but must have 26"):
        CriteoReader(src, batch_size=8, table_sizes=[5, 5, 5])
    with pytest.raises(ValueError, match="batch_size is 0, but must be an int >= 1"):
        CriteoReader(src, batch_size=0, table_sizes=5)
    with pytest.raises(ValueError, match="rows start is -1, but must be >= 0"):
        CriteoSource([path], rows=(-1, 3))
    with pytest.raises(ValueError, match=r"rows stop is 2, but must be >= start \(3\)"):
        CriteoSource([path], rows=(3, 2))
    with pytest.raises(ValueError, match="paths is empty"):
        CriteoSource([])
    missing = tmp_path / "nope" / "day_9"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        CriteoReader(CriteoSource([path, missing]), batch_size=8, table_sizes=5)
    assert CriteoSource(str(path)).paths == (path,)  # one path, not its characters


def test_criteo_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "day_2.gz"
    write_criteo_tsv(path, 2000, seed=0)
    path.write_bytes(path.read_bytes()[:-3000])
    with pytest.raises(OSError, match=re.escape(str(path))):
        for _ in CriteoReader(CriteoSource([path]), batch_size=8, table_sizes=5):
            pass
