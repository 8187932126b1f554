"""`scaler` command line.  Each sub-command lives in its own module with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import logging
import sys

from scaler.cli import data, fit, query, replay, report, resume, run, submit, ui


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


COMMANDS = {
    "fit": fit,
    "run": run,
    "resume": resume,
    "submit": submit,
    "query": query,
    "ui": ui,
    "report": report,
    "replay": replay,
    "data": data,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaler", description="Scaling-law sweeps of recommendation models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in COMMANDS.items():
        module.add_parser(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command].run(args) or 0
    except (ValueError, FileNotFoundError, PermissionError, UsageError) as exc:
        print(f"scaler {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
