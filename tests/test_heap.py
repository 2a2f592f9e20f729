"""heap.py: the malloc arena cap is the environment's when set, else ours (glibc)."""

from __future__ import annotations

import ctypes.util

import pytest

from vk_provider import heap

GLIBC = ctypes.util.find_library("c") == "libc.so.6"


def test_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert heap.limit_arenas() is False


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_capped_when_the_environment_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert heap.limit_arenas() is True
