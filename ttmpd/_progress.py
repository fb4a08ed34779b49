"""Progress bars that say when they stop moving."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

logger = logging.getLogger(__name__)

STALL_AFTER_S = 60.0
"""A bar that has not advanced for this long says so."""


@contextlib.contextmanager
def stall_watch(bar, after_s: float = STALL_AFTER_S, poll_s: float | None = None) -> Iterator[None]:
    """While the block runs, a daemon thread checks ``bar.n`` every ``poll_s`` seconds
    (default ``after_s / 6``); once it has not changed for ``after_s`` seconds the bar's
    postfix reads ``no progress for N s`` and one warning is logged per stall. The thread
    only reads the bar and sets its postfix, so a stall inside native code (which holds no
    Python lock) still shows. A disabled bar (``--no-progress``) counts nothing, so its
    ``update`` calls are counted instead and only the warning is logged."""
    stop = threading.Event()
    poll_s = poll_s if poll_s is not None else max(0.05, after_s / 6)
    calls = [0]
    if getattr(bar, "disable", False):
        update = bar.update

        def counted(n: float = 1) -> bool | None:
            calls[0] += 1
            return update(n)

        bar.update = counted

    def position() -> float:
        return calls[0] if getattr(bar, "disable", False) else bar.n

    def watch() -> None:
        last_n, since, warned = position(), time.monotonic(), False
        while not stop.wait(poll_s):
            if position() != last_n:
                last_n, since, warned = position(), time.monotonic(), False
                continue
            idle = time.monotonic() - since
            if idle >= after_s:
                with contextlib.suppress(Exception):  # a closed bar: nothing to show
                    bar.set_postfix_str(f"no progress for {idle:.0f} s", refresh=True)
                if not warned:
                    logger.warning(
                        "%s: no progress for %.0f s at step %d",
                        getattr(bar, "desc", "") or "work",
                        idle,
                        last_n,
                    )
                    warned = True

    thread = threading.Thread(target=watch, name="ttmpd-stall-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if calls[0] or getattr(bar, "disable", False):
            with contextlib.suppress(AttributeError):
                del bar.update  # the class's method again
