"""The daemon's heap and glibc's allocator: how many malloc arenas, and handing freed memory back.

glibc gives a thread that finds the main heap busy an arena of its own, up to eight per core; each keeps
the chunks freed in it until ``malloc_trim``. The ECI SDK's pool (``eci.thread_pool_size`` threads) reads
and parses responses outside the event loop, so without a cap a burst can leave up to 16 arenas, each as
large as its share of the burst's responses. The daemon's threads mostly wait on the network and the GIL
serialises the rest, so two arenas cost no contention worth measuring. ``MALLOC_ARENA_MAX`` set in the
environment (the image sets it) wins.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os

ARENA_MAX = 2
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None  # not glibc (musl, macOS): nothing to tune


def limit_arenas(limit: int = ARENA_MAX) -> bool:
    """Cap glibc's malloc arenas at ``limit`` unless ``MALLOC_ARENA_MAX`` is set; True when capped here.
    Call it before the daemon starts threads: arenas made before stay."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, limit))


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
