"""heap.py: glibc's tunables are the environment's when set, else ours; the collector's set-up once started."""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys

import pytest

from vk_provider import heap

GLIBC = ctypes.util.find_library("c") == "libc.so.6"


def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert heap.tune_malloc() == []


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_set_here_when_the_environment_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert heap.tune_malloc() == ["MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_"]
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    assert heap.tune_malloc() == ["MALLOC_MMAP_THRESHOLD_"]


def test_the_collector_freezes_what_exists_and_collects_less_often() -> None:
    # In a process of its own: a frozen object is never collected, which the test process must not get.
    script = (
        "import gc, json; from vk_provider import heap; heap.tune_collector(); "
        "print(json.dumps([gc.get_threshold(), gc.get_freeze_count()]))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    thresholds, frozen = json.loads(out.stdout)
    assert tuple(thresholds) == heap.GC_THRESHOLDS
    assert frozen > 1000  # the modules imported so far, at least
