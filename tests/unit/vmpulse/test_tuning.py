"""The runtime tuning a streaming process makes at start-up (vmpulse/tuning.py)."""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys

from vmpulse.tuning import tune_gc, tune_malloc


def test_tune_gc_moves_young_collections_to_every_50000_allocations() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (50_000, 20, 20)
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_tune_malloc_keeps_freed_megabytes_in_the_process() -> None:
    """Three blocks of ~3 MB allocated, written and freed again and again, as librdkafka's
    batches and zstd contexts are: with glibc's defaults each round gives the memory
    back (the heap is trimmed past twice the largest block freed) and faults it in anew;
    tuned, it stays. In a child process: malloc's settings are process-wide for good."""
    child = """
import ctypes, resource, sys
from vmpulse.tuning import tune_malloc
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "tuned":
    assert tune_malloc()
SIZE = 3_000_000
def faults_of_one_round():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(SIZE) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, SIZE)
    for block in blocks:
        libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_round()
print(min(faults_of_one_round() for _ in range(5)))
"""
    faults = {
        mode: int(
            subprocess.run(
                [sys.executable, "-c", child, mode], capture_output=True, text=True, check=True
            ).stdout
        )
        for mode in ("default", "tuned")
    }
    pages = 3 * 3_000_000 // 4096
    assert faults["default"] >= pages // 2, faults  # given back and faulted in every round
    assert faults["tuned"] < 64, faults


def test_tune_malloc_says_whether_it_changed_anything() -> None:
    try:
        ctypes.CDLL("libc.so.6").mallopt  # noqa: B018
    except (OSError, AttributeError):
        assert tune_malloc() is False
    else:
        assert tune_malloc() is True
