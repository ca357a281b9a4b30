"""Reaching a dask scheduler: ``local:N`` (a ``LocalCluster``) or an address (``tcp://host:8786``)."""

from __future__ import annotations

import logging
from typing import Any

from napari_unet.core.errors import UserInputError

logger = logging.getLogger(__name__)

#: Seconds to wait for a scheduler before giving up.
CONNECT_TIMEOUT = 5.0


def require_distributed() -> Any:
    """The ``distributed`` module, or a one-sentence :class:`UserInputError` naming the install."""
    try:
        import distributed
    except ImportError:
        raise UserInputError(
            "--dask needs dask.distributed, which is not installed; "
            "pip install 'napari-unet-loop[dask]' (or pip install distributed)."
        ) from None
    return distributed


def parse_local(scheduler: str) -> int | None:
    """``local:N`` -> N (workers); any other text -> None (an address)."""
    if not scheduler.startswith("local"):
        return None
    _, _, count = scheduler.partition(":")
    if not count.strip().isdigit() or int(count) < 1:
        raise UserInputError(
            f"--dask {scheduler!r}: write local:N with N >= 1 workers (e.g. local:4), "
            "or a scheduler address such as tcp://host:8786."
        )
    return int(count)


def connect(scheduler: str, *, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A ``distributed.Client`` for ``scheduler`` (``local:N`` starts N one-thread workers).

    Raises:
        UserInputError: the scheduler cannot be reached within ``timeout`` seconds.
    """
    distributed = require_distributed()
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # the scheduler of a local cluster logs every start, cancel and close at INFO level
        logging.getLogger("distributed").setLevel(logging.WARNING)
        # and warns when it has to kill a worker that is slow to close at the very end
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
    workers = parse_local(scheduler)
    if workers is not None:
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        )
        return distributed.Client(cluster)
    try:
        return distributed.Client(scheduler, timeout=f"{timeout}s")
    except (OSError, TimeoutError, ValueError) as err:
        logger.debug("cannot connect to %s", scheduler, exc_info=True)
        raise UserInputError(
            f"cannot reach the dask scheduler at {scheduler} within {timeout:g} s "
            f"({type(err).__name__}); "
            "check the address and that the scheduler is running, or use --dask local:N."
        ) from None


def close(client: Any) -> None:
    """Close ``client`` and, for a ``local:N`` cluster, its workers."""
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()
