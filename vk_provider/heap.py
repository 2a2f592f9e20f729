"""The daemon's heap: glibc's allocator (arenas, where large blocks go, handing freed memory back) and the
cyclic garbage collector.

glibc gives a thread that finds the main heap busy an arena of its own, up to eight per core; each keeps
the chunks freed in it until ``malloc_trim``. The ECI SDK's pool (``eci.thread_pool_size`` threads) reads
and parses responses outside the event loop, so without a cap a burst can leave up to 16 arenas, each as
large as its share of the burst's responses. The daemon's threads mostly wait on the network and the GIL
serialises the rest, so two arenas cost no contention worth measuring.

glibc serves a block of ``M_MMAP_THRESHOLD`` bytes or more (128 KiB at first) with its own mmap, returned to
the system on free; but each such free raises the threshold to the freed block's size (up to 32 MiB). After
a burst's first large answers (a DescribeContainerGroups page, a relist) every later one is carved from the
heap instead, between blocks that live on, and stays there as free chunks. A fixed threshold keeps large
blocks out of the heap (10,000 steady pods: 218-223 MB against 224-241 MB in single runs, docs/benchmarks.md).

``MALLOC_ARENA_MAX`` and ``MALLOC_MMAP_THRESHOLD_`` set in the environment win (the image sets the former).

The collector: the daemon allocates containers fast (every watch event, ECI answer and request body is a tree
of dicts and lists) and almost none of them form cycles, so the default first-generation threshold (700)
runs a collection every few hundred of them, a full one every hundred of those: a daemon that started and
ran a 2,000-pod burst spent 0.4-1.0 s of CPU collecting (0.26 s with the settings below). Once started, the
daemon freezes what exists (modules, classes, settings: never garbage, and no full collection walks them
again) and collects the young generation every 20,000 net allocations.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os

ARENA_MAX = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's starting value, kept from rising
GC_THRESHOLDS = (20_000, 20, 10)
# mallopt's parameter numbers (malloc.h), and the variable that sets each from the environment.
_TUNABLES = {"MALLOC_ARENA_MAX": (-8, ARENA_MAX), "MALLOC_MMAP_THRESHOLD_": (-3, MMAP_THRESHOLD)}


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None  # not glibc (musl, macOS): nothing to tune


def tune_malloc() -> list[str]:
    """Cap glibc's arenas and fix its mmap threshold, each unless its variable is set in the environment;
    the variables of what was set here. Call it before the daemon starts threads: arenas made before stay."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return []
    return [env for env, (param, value) in _TUNABLES.items() if env not in os.environ and mallopt(param, value)]


def tune_collector() -> None:
    """Once the daemon started: freeze the objects that exist and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def trim_heap() -> None:
    """Hand freed heap memory back to the OS (glibc's malloc_trim); a no-op elsewhere.

    A burst of thousands of pods parses and drops a lot of JSON; glibc keeps the freed chunks, so RSS
    would stay at the burst's peak for good. Trimming after a collection returns them.
    """
    gc.collect()
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


async def run_heap_trimmer(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        trim_heap()
