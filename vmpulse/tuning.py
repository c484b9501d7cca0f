"""How a streaming vmpulse process tunes the runtime under it: the collector and malloc.

Both are process-wide and made once at start-up, before the hot path runs; they are
here, apart from `vmpulse up`, so that a stage (`vmpulse bridge`) sets them without
importing the whole pipeline.
"""

from __future__ import annotations

import ctypes
import gc
import logging
from typing import Final

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_gc", "tune_malloc"]

log = logging.getLogger(__name__)

MMAP_THRESHOLD: Final = 4 * 1024 * 1024
"""glibc allocations from this size on get pages of their own (mmap); smaller ones come
from the heap. glibc's own start is 128 KiB."""

TRIM_THRESHOLD: Final = 32 * 1024 * 1024
"""Free memory at a heap's top that glibc keeps instead of returning it to the system."""

_M_TRIM_THRESHOLD: Final = -1  # glibc's <malloc.h>
_M_MMAP_THRESHOLD: Final = -3


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path of a streaming process.

    A batch of 20,000 agent lines allocates hundreds of thousands of short-lived
    containers; with CPython's default threshold (700) the collector ran so often
    that it took about 40 % of validating a batch (docs/BENCHMARKS.md, worker).
    Everything built during start-up is frozen out of the collections, and young
    collections run every 50,000 allocations instead of 700.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def tune_malloc() -> bool:
    """Stop glibc from handing memory back to the system only to fault it in again.

    librdkafka compresses each batch with a fresh zstd context of a megabyte or
    two. With glibc's defaults that memory went back to the system (an mmap of its
    own, or a trimmed heap) after every batch and the next one page-faulted it in
    anew: 105,000-125,000 faults in the bridge's librdkafka thread per 500,000 lines,
    an eighth of that thread's CPU (docs/BENCHMARKS.md, session 13). With a fixed
    4 MiB mmap threshold and 32 MiB trim threshold the contexts stay in the heap and
    at most 32 MiB of free memory per heap stays with the process. False where the C
    library is not glibc (nothing is changed there).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        log.debug("no glibc mallopt here: malloc left as it is")
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
