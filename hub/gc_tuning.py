"""The garbage collector's settings for a serving hub process (`mcphub serve`, the benchmark's
runner): fewer young collections, and no full collection walking the imported heap again.

Measured with `benchmarks/bench.py` (handshake era, 16 and 64 clients, the governed hub; GC time
from `gc.callbacks`): with CPython's defaults (a young collection every 700 net allocations) the
collector took 14% of the hub's CPU, and each full collection walked the ~110,000 objects the
imports left (the SDK's and pydantic's models, typer, uvicorn) for 60-75 ms, a pause every
request in flight waited through. Freezing the heap once the hub is built, before it starts its
servers (`gc.freeze`: those objects move to a permanent generation no collection visits), and a
young threshold of 10,000 took the collector to ~3% of the CPU, with no full collection in the
measured windows, and the hub's CPU per call from 1.5-1.9 ms to 1.2-1.4 ms (2 cores shared with
other work). The freeze's own collection (30-40 ms, once) runs before any client is served: run
once every server had started, with a 10,000-tool catalog in the heap, it paused the hub for
~200 ms just as clients made their first lists. A request's own objects still die young; what
the start-up, a reload, a reconnect or a new session builds is collected as usual.

Process-wide, so only a process's entry point calls these (never `Hub` itself: a test process
runs many hubs, and frozen objects that later form garbage cycles would never be collected).
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Final

__all__ = ["YOUNG_THRESHOLD", "freeze_startup_heap", "tune_for_serving"]

logger = logging.getLogger(__name__)

YOUNG_THRESHOLD: Final = 10_000
"""Net allocations between two young-generation collections (CPython's default: 700)."""


def tune_for_serving() -> None:
    """Raise the young generation's threshold to `YOUNG_THRESHOLD` (the older two keep theirs)."""
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def freeze_startup_heap() -> None:
    """Collect once, then move every object alive to the permanent generation (`gc.freeze`):
    call once the hub is built and before it serves, so that later full collections walk only
    what was made since."""
    began = time.process_time()
    gc.collect()
    gc.freeze()
    logger.debug(
        "froze %d objects of the start-up heap in %.1f ms of CPU",
        gc.get_freeze_count(),
        (time.process_time() - began) * 1000,
    )
