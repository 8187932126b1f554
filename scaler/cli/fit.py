"""`scaler fit DATA.csv --form power|joint --x COL[,COL] --y COL ...` — fit a law to a CSV."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scaler._expr import evaluate, parse_named, split_top_level
from scaler.laws import JointLaw, Law, PowerLaw

FORMS = {"power": PowerLaw, "joint": JointLaw}
FORMULAS = {
    "power": "L(x) = a * x^(-b) + c",
    "joint": "L(N, D) = E + A * N^(-alpha) + B * D^(-beta)",
}


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="fit a scaling law to a CSV of points")
    p.add_argument("data", help="CSV file with one point per row")
    p.add_argument("--form", choices=sorted(FORMS), required=True)
    p.add_argument(
        "--x",
        required=True,
        help="axis column(s), comma-separated (N,D for joint); each may be NAME=EXPR with * / "
        "numbers and parentheses, e.g. 'D=Training FLOP/(6*Model Size)'",
    )
    p.add_argument("--y", required=True, help="loss column")
    p.add_argument(
        "--drop-top-loss",
        type=int,
        default=0,
        metavar="K",
        help="exclude the K highest-loss points",
    )
    p.add_argument("--bootstrap", type=int, default=0, metavar="N", help="N-resample bootstrap CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--level", type=float, default=0.95, help="CI level")
    p.add_argument("--delta", type=float, default=1e-3, help="Huber delta on log residuals")
    p.add_argument(
        "--predict", metavar="OTHER.csv", help="write OTHER's rows with predictions to stdout"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")


def read_csv(path: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a readable CSV ({exc})") from None


def axis_values(df: pd.DataFrame, specs: list[tuple[str, str]], path: str) -> np.ndarray:
    cols = []
    for name, expr in specs:
        try:
            values = evaluate(expr, df)
        except ValueError as exc:
            raise ValueError(f"{path}: --x {name}: {exc}") from None
        bad = np.flatnonzero(~(values > 0) | ~np.isfinite(values))
        if len(bad):
            raise ValueError(
                f"{path}: --x {name} must be > 0, got {values[bad[0]]} at row {bad[0] + 1}"
            )
        cols.append(values)
    return np.stack(cols, axis=1)


def loss_values(df: pd.DataFrame, col: str, path: str) -> np.ndarray:
    try:
        return evaluate(col, df)
    except ValueError as exc:
        raise ValueError(f"{path}: --y: {exc}") from None


def run(args) -> int:
    specs = [parse_named(s) for s in split_top_level(args.x)]
    law_cls = FORMS[args.form]
    if len(specs) != law_cls.n_axes:
        raise ValueError(
            f"--form {args.form} needs {law_cls.n_axes} --x column(s), got {len(specs)}"
        )
    if args.drop_top_loss < 0:
        raise ValueError(f"--drop-top-loss is {args.drop_top_loss}, but must be >= 0")
    if args.bootstrap < 0 or args.bootstrap == 1:
        raise ValueError(f"--bootstrap is {args.bootstrap}, but must be 0 or >= 2")

    df = read_csv(args.data)
    x = axis_values(df, specs, args.data)
    y = loss_values(df, args.y, args.data)
    exclude = [None] * len(y)
    for i in np.argsort(-y, kind="stable")[: args.drop_top_loss]:
        exclude[i] = f"among the {args.drop_top_loss} highest losses (--drop-top-loss)"

    start = time.perf_counter()
    law = law_cls(delta=args.delta).fit(x, y, exclude=exclude)
    if args.bootstrap:
        law.bootstrap(args.bootstrap, seed=args.seed, level=args.level)
    seconds = time.perf_counter() - start

    summary_out = sys.stdout
    if args.predict:
        summary_out = sys.stderr  # stdout carries the prediction CSV
        write_predictions(law, args, specs)
    if args.json:
        print(json.dumps(summary(law, specs, seconds)), file=summary_out)
    else:
        print(table(law, specs, seconds), file=summary_out)
    return 0


def summary(law: Law, specs, seconds: float) -> dict:
    d = law.to_dict()
    out = {
        "form": d["form"],
        "axes": {name: expr for name, expr in specs},
        "params": d["params"],
        "mape": d["mape"],
        "n": d["n"],
        "n_excluded": len(d["excluded"]),
        "seconds": seconds,
        "identified": d["identified"],
        "reason": d["reason"],
    }
    if "ci" in d:
        out.update(ci=d["ci"], se=d["se"], level=d["level"])
    if isinstance(law, JointLaw):
        out["optimal_exponent"] = law.optimal_exponent_
    return out


def table(law: Law, specs, seconds: float) -> str:
    axes = ", ".join(f"{n} = {e}" if n != e else n for n, e in specs)
    lines = [
        f"{type(law).__name__}: {FORMULAS[law.form]}    ({axes})",
        f"n = {law.n_} points ({len(law.excluded_)} excluded), fit in {seconds:.3f} s",
    ]
    ident = law.identification_
    if not ident.identified:  # the numbers below are the optimiser's corner, not a result
        lines.append(f"NOT IDENTIFIED: {ident.reason}")
    ci = law.ci_
    level = f"{law.bootstrap_.level:.0%} CI" if law.bootstrap_ is not None else ""
    lines.append(f"  {'param':<8}{'value':>14}  {level:>28}  {'se' if ci else ''}")
    se = law.bootstrap_.se() if law.bootstrap_ is not None else {}
    for name, value in law.params_._asdict().items():
        band = f"[{ci[name][0]:.5g}, {ci[name][1]:.5g}]" if ci else ""
        err = f"{se[name]:.3g}" if se else ""
        lines.append(f"  {name:<8}{value:>14.6g}  {band:>28}  {err}")
    lines.append(f"in-sample mean |relative error| = {100 * law.mape_:.3f} %")
    if isinstance(law, JointLaw) and ident.identified:
        lines.append(
            f"compute-optimal exponent a = beta/(alpha+beta) = {law.optimal_exponent_:.4f}"
        )
    return "\n".join(lines)


def write_predictions(law: Law, args, specs) -> None:
    other = read_csv(args.predict)
    x = axis_values(other, specs, args.predict)
    out = other.copy()
    if law.bootstrap_ is not None:
        out["pred"], out["lo"], out["hi"] = law.predict_interval(x)
    else:
        out["pred"] = law.predict(x)
    out.to_csv(sys.stdout, index=False)
    if args.y in other.columns:
        y = loss_values(other, args.y, args.predict)
        err = np.abs(out["pred"].to_numpy() - y) / y
        print(
            f"on {args.predict}: mean |relative error| = {100 * err.mean():.3f} %, "
            f"max = {100 * err.max():.3f} % over {len(y)} points",
            file=sys.stderr,
        )
