"""Driving the core's generators: run one to the end, seeing what it yields on the way.

The core's long jobs (``iter_predict``, ``iter_train``, ``iter_simulate``...) are generators that
yield progress or events and *return* their result; :func:`run_to_end` is the one loop that drives
them for callers that do not need to stop early.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

Y = TypeVar("Y")
R = TypeVar("R")


def run_to_end(generator: Generator[Y, Any, R], on_item: Callable[[Y], Any] | None = None) -> R:
    """Exhaust ``generator``, passing each yielded item to ``on_item``; return its return value.

    Example:
        >>> def job():
        ...     yield 1
        ...     yield 2
        ...     return "done"
        >>> seen = []
        >>> run_to_end(job(), seen.append), seen
        ('done', [1, 2])
    """
    while True:
        try:
            item = next(generator)
        except StopIteration as done:
            return done.value
        if on_item is not None:
            on_item(item)
