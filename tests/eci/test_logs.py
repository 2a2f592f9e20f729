"""Log polling: timestamp parsing and de-duplication across polls."""

from __future__ import annotations

from typing import Any

from vk_provider.eci.logs import first_params, split_timestamp, stream_logs
from vk_provider.provider import LogOptions


def test_split_timestamp() -> None:
    """RFC 3339 nano timestamps parse to sortable keys; lines without one are returned whole."""
    key, text = split_timestamp("2026-01-01T00:00:01.5Z hello\n")
    assert key == (1767225601, 500000000) and text == "hello\n"
    assert split_timestamp("plain\n") == (None, "plain\n")


def test_first_params() -> None:
    """Kubelet log options map to DescribeContainerLog parameters, always with timestamps."""
    p = first_params(LogOptions(tail_lines=5000, limit_bytes=10, since_seconds=30, previous=True, timestamps=True))
    assert p == {"Timestamps": True, "Tail": 2000, "SinceSeconds": 30, "LimitBytes": 10, "LastTime": True}
    # No tailLines means the whole log (the service's maximum), and limitBytes without timestamps is
    # applied locally because the service would count the stripped prefixes.
    assert first_params(LogOptions(limit_bytes=10)) == {"Timestamps": True, "Tail": 2000}


async def test_follow_dedups_overlapping_polls() -> None:
    """Overlapping poll answers (same-second lines, repeated tails) yield each line once, without timestamps."""
    t = "2026-01-01T00:00:0{}Z {}\n"
    answers = [
        t.format(1, "a") + t.format(1, "b"),
        t.format(1, "a") + t.format(1, "b") + t.format(1, "c") + t.format(2, "d"),
        t.format(2, "d") + t.format(2, "e"),
        t.format(2, "d") + t.format(2, "e"),
    ]
    seen_params: list[dict[str, Any]] = []

    async def fetch(params: dict[str, Any]) -> str:
        seen_params.append(params)
        return answers[len(seen_params) - 1]

    polls = {"n": 0}

    def finished() -> bool:
        polls["n"] += 1
        return polls["n"] >= 4

    async def no_sleep(_: float) -> None:
        return None

    out = b"".join(
        [c async for c in stream_logs(fetch, LogOptions(follow=True), finished=finished, interval=0, sleep=no_sleep)]
    )
    assert out == b"a\nb\nc\nd\ne\n"
    assert seen_params[1]["StartTime"] == "2026-01-01T00:00:01Z"
    assert len(seen_params) == 4


async def test_limit_bytes_and_timestamps() -> None:
    """timestamps=True keeps the prefix, and limitBytes cuts the stream."""

    async def fetch(_: dict[str, Any]) -> str:
        return "2026-01-01T00:00:01Z hello\n"

    async def no_sleep(_: float) -> None:
        return None

    out = b"".join(
        [
            c
            async for c in stream_logs(
                fetch, LogOptions(timestamps=True, limit_bytes=12), finished=lambda: True, interval=0, sleep=no_sleep
            )
        ]
    )
    assert out == b"2026-01-01T0"
