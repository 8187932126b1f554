"""Column expressions for the command line: column names, numbers, `*`, `/` and parentheses.

    "Training FLOP/(6*Model Size)"  ->  df["Training FLOP"] / (6 * df["Model Size"])

A tiny recursive-descent parser: nothing is `eval`-ed, so a column spec can never run code.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

_TOKEN = re.compile(r"\s*([*/()])\s*")


class ExpressionError(ValueError):
    pass


def split_top_level(spec: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in spec:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_named(spec: str) -> tuple[str, str]:
    """'D=Training FLOP/(6*N)' -> ('D', 'Training FLOP/(6*N)'); 'loss' -> ('loss', 'loss')."""
    name, sep, expr = spec.partition("=")
    if sep and name.strip() and "(" not in name and "*" not in name and "/" not in name:
        return name.strip(), expr.strip()
    return spec.strip(), spec.strip()


def evaluate(expr: str, df: pd.DataFrame) -> np.ndarray:
    tokens = [t for t in _TOKEN.split(expr) if t and t.strip()]
    if not tokens:
        raise ExpressionError("empty column expression")
    pos = 0

    def atom() -> np.ndarray:
        nonlocal pos
        if pos >= len(tokens):
            raise ExpressionError(f"expression {expr!r} ends early")
        tok = tokens[pos].strip()
        pos += 1
        if tok == "(":
            value = product()
            if pos >= len(tokens) or tokens[pos] != ")":
                raise ExpressionError(f"expression {expr!r}: missing ')'")
            pos += 1
            return value
        if tok in "*/)":
            raise ExpressionError(f"expression {expr!r}: unexpected {tok!r}")
        try:
            return np.float64(float(tok))
        except ValueError:
            pass
        if tok not in df.columns:
            raise ExpressionError(f"no column {tok!r} (columns: {', '.join(map(str, df.columns))})")
        col = pd.to_numeric(df[tok], errors="coerce").to_numpy(dtype=float)
        bad = np.flatnonzero(~np.isfinite(col))
        if len(bad):
            raise ExpressionError(
                f"column {tok!r} has a missing or non-numeric value at row {bad[0] + 1}"
            )
        return col

    def product() -> np.ndarray:
        nonlocal pos
        value = atom()
        while pos < len(tokens) and tokens[pos] in "*/":
            op = tokens[pos]
            pos += 1
            rhs = atom()
            value = value * rhs if op == "*" else value / rhs
        return value

    result = product()
    if pos != len(tokens):
        raise ExpressionError(f"expression {expr!r}: unexpected {tokens[pos]!r}")
    return np.broadcast_to(np.asarray(result, dtype=float), (len(df),)).copy()
