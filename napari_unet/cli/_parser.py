"""The argument parser every ``napari-unet-loop`` command uses: flag errors in one line.

argparse prints a usage block and ``PROG: error: MESSAGE`` on a bad flag; the house rule is one
sentence per user error, so :class:`OneLineParser` prints only
``napari-unet-loop SUBCOMMAND: error: MESSAGE; see --help.`` and exits with status 2. Subparsers
created with ``add_subparsers`` inherit the class, so the top-level parser and every subcommand
behave the same.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.fail(self.prog, message)

    def fail(self, prog: str, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE; see --help.`` on one line and exit with status 2."""
        text = " ".join(line.strip() for line in message.splitlines()).rstrip(" .")
        self.exit(2, f"{prog}: error: {text}; see --help.\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> argparse.Namespace:
        """As argparse, but an unknown flag after a subcommand is blamed on that subcommand."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            command = getattr(parsed, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            self.fail(prog, f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1) (``nan``, ``inf`` and 1.5 are refused, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(
            f"expected a fraction from 0 up to (not including) 1, got {text!r}"
        )
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (exit 2 otherwise)."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)
