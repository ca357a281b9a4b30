"""Command-line interface: ``napari-unet-loop SUBCOMMAND ...`` (also ``python -m napari_unet``).

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``. Heavy imports (torch) happen inside ``run`` so ``--help`` is instant.
A bad flag ends the command with ``napari-unet-loop SUB: error: ...; see --help.`` and exit
status 2 (:class:`~napari_unet.cli._parser.OneLineParser`, shared by every parser).
A :class:`~napari_unet.core.errors.UserInputError` ends the command with its one-line message
and exit status 2. So does an ``OSError`` that reaches the top (a full or read-only disk, a
missing permission: the message names the folder, never a temporary file) and a ``MemoryError``;
other failures (programming errors) are not swallowed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from napari_unet import __version__
from napari_unet.cli._parser import OneLineParser

logger = logging.getLogger(__name__)

#: Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS: tuple[str, ...] = (
    "predict",
    "models",
    "train",
    "evaluate",
    "simulate",
    "export",
    "gui",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = OneLineParser(
        prog="napari-unet-loop",
        description="U-Net segmentation that learns from your corrections (napari plugin + CLI).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_verbosity(parser)
    # every subcommand's parser is a OneLineParser too: one-line flag errors everywhere
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser
    )
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"napari_unet.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"napari_unet.cli.{name}":
                continue  # subcommand not part of this build
            raise
        add_verbosity(module.add_parser(subparsers), after_command=True)
    return parser


def add_verbosity(parser: argparse.ArgumentParser, *, after_command: bool = False) -> None:
    """``-v``/``-q`` on ``parser``; after the subcommand they count into separate attributes."""
    suffix = "_after" if after_command else ""
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        dest=f"verbose{suffix}",
        help="more messages: -v all of napari-unet-loop's, -vv also other libraries' debug",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="count",
        default=0,
        dest=f"quiet{suffix}",
        help="errors only: no progress, no warnings",
    )


def verbosity(args: argparse.Namespace) -> int:
    """-1 (quiet) ... 2 (-vv), from ``-v``/``-q`` given before and after the subcommand."""
    louder = getattr(args, "verbose", 0) + getattr(args, "verbose_after", 0)
    quieter = getattr(args, "quiet", 0) + getattr(args, "quiet_after", 0)
    return max(-1, min(2, louder - quieter))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    from napari_unet.cli._progress import logging_for

    with logging_for(verbosity(args)):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the parsed command; user errors become one line on stderr and exit status 2."""
    from napari_unet.core.errors import UserInputError, describe_os_error

    try:
        return int(args.run(args) or 0)
    except UserInputError as err:
        print(f"error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:
        logger.debug("%s failed", args.command, exc_info=True)
        print(f"error: {describe_os_error(err)}", file=sys.stderr)
        return 2
    except MemoryError:
        logger.debug("%s failed", args.command, exc_info=True)
        print(
            "error: not enough memory; use smaller images, a smaller --patch, --tile or "
            "--batch-size, or a machine with more memory.",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _one_line(message: str) -> str:
    """``message`` on one line (a path with a newline must not split the error)."""
    return " ".join(line.strip() for line in message.splitlines())
