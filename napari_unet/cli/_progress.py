"""What the CLI shows while it works: log levels, progress lines and tqdm bars.

Verbosity (``-v``/``-q``, before or after the subcommand) maps to levels:

====  ===============================================================================
 -1   ``-q``: errors only (no warnings, no progress lines)
  0   warnings, and the progress lines of :data:`PROGRESS` (INFO)
  1   ``-v``: everything napari_unet logs (DEBUG); other libraries stay at WARNING
  2   ``-vv``: DEBUG from every library (PIL, matplotlib, urllib3, ...)
====  ===============================================================================

On a terminal (stderr is a TTY) ``predict`` and ``train`` draw a tqdm bar; elsewhere (a cluster
job's log file, a pipe) they log a progress line every ~10 s instead, so the log tells how far a
run got. Progress lines are plain messages; other records read ``LEVEL logger: message``.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

#: The logger of the progress lines (INFO at the default verbosity).
PROGRESS = logging.getLogger("napari_unet.progress")

#: Third-party loggers held at WARNING unless ``-vv`` (they log DEBUG noise, e.g. PIL's chunks).
NOISY_LOGGERS: tuple[str, ...] = (
    "PIL",
    "matplotlib",
    "urllib3",
    "numcodecs",
    "fsspec",
    "asyncio",
    "tifffile",
    "h5py",
    "numba",
    "filelock",
    "httpx",
    "httpcore",
    "requests",
    "pooch",
    "zarr",
)

#: Seconds between progress lines when stderr is not a terminal.
LINE_INTERVAL_S = 10.0

_PLAIN_FORMAT = "%(levelname)s %(name)s: %(message)s"


class _Formatter(logging.Formatter):
    """Progress lines as the bare message, everything else as ``LEVEL logger: message``."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name == PROGRESS.name and record.levelno == logging.INFO:
            return record.getMessage()
        return super().format(record)


def verbosity_levels(verbosity: int) -> dict[str, int]:
    """Logger name (``""`` = root) -> level for ``verbosity`` (-1 quiet ... 2 all debug)."""
    if verbosity < 0:
        return {"": logging.ERROR, "napari_unet": logging.ERROR, PROGRESS.name: logging.ERROR}
    levels = {"": logging.WARNING, PROGRESS.name: logging.INFO}
    if verbosity >= 1:
        levels["napari_unet"] = logging.DEBUG
    if verbosity >= 2:
        levels[""] = logging.DEBUG
    else:
        levels.update(dict.fromkeys(NOISY_LOGGERS, logging.WARNING))
    return levels


@contextlib.contextmanager
def logging_for(verbosity: int) -> Iterator[None]:
    """Set the log levels of ``verbosity`` for a command; restore them afterwards.

    A stderr handler is added only when the root logger has none (as ``logging.basicConfig``
    does), so a host that configured logging (pytest, a script calling ``main``) keeps its own;
    the root level is then left alone too.
    """
    root = logging.getLogger()
    handler = None
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter(_PLAIN_FORMAT))
        root.addHandler(handler)
    levels = verbosity_levels(verbosity)
    if handler is None:
        levels.pop("", None)
    saved = {name: logging.getLogger(name).level for name in levels}
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
        if handler is not None:
            root.removeHandler(handler)


def on_terminal() -> bool:
    """Whether progress is drawn as a bar (stderr is a terminal) rather than logged as lines."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def bar(**kwargs: Any) -> Any:
    """A tqdm bar on stderr, drawn only on a terminal and only when progress lines are shown."""
    from tqdm import tqdm

    shown = on_terminal() and PROGRESS.isEnabledFor(logging.INFO)
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(disable=not shown, **kwargs)


@contextlib.contextmanager
def bar_safe_logging() -> Iterator[None]:
    """Log records printed above a tqdm bar instead of through it (terminal only)."""
    if not on_terminal():
        yield
        return
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():
        yield


class Every:
    """True at most once every ``seconds`` (the clock is injectable for tests)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock = seconds, clock
        self._last = clock()

    def __call__(self) -> bool:
        now = self.clock()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True


def clock_text(seconds: float) -> str:
    """``seconds`` as ``M:SS`` or ``H:MM:SS``."""
    seconds = max(round(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class FileProgress:
    """Progress of one file after another (``predict``).

    On a terminal each file gets a tqdm bar (percent done, elapsed, time left) that is cleared
    when the file is done, so only the files' summary lines stay; elsewhere a line
    ``predicting big.tif (2/5): 42%, 1:10 left`` every ~10 s of a file, none for a quick file.
    """

    def __init__(self, total_files: int = 1) -> None:
        self.total_files, self.index = total_files, 0
        self._bar: Any = None
        self._due = Every(LINE_INTERVAL_S)
        self._started = time.monotonic()

    def start(self, index: int) -> None:
        """The ``index``-th file (from 1) begins."""
        self.close()
        self.index = index
        self._due = Every(LINE_INTERVAL_S)
        self._started = time.monotonic()

    def _label(self, name: str) -> str:
        return f"{name} ({self.index}/{self.total_files})" if self.total_files > 1 else name

    def update(self, name: str, fraction: float) -> None:
        """``fraction`` (0 to 1) of the file ``name`` is done."""
        percent = int(100 * min(max(fraction, 0.0), 1.0))
        if on_terminal():
            if self._bar is None:
                self._bar = bar(
                    total=100,
                    desc=self._label(name),
                    leave=False,
                    bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
                )
            self._bar.update(percent - self._bar.n)
        elif self._due():
            elapsed = time.monotonic() - self._started
            left = f", {clock_text(elapsed * (1 - fraction) / fraction)} left" if fraction else ""
            PROGRESS.info("predicting %s: %d%%%s", self._label(name), percent, left)

    def close(self) -> None:
        """Clear the bar of the current file (if one was drawn)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
