"""Container logs from DescribeContainerLog, including ``follow`` by polling.

ECI has no streaming logs. Following asks for logs with timestamps since the last one seen, at the
poll interval, and de-duplicates on the timestamps: lines older than the last emitted one are
dropped, and of the lines carrying exactly that timestamp the ones already emitted are skipped. So
no line is lost or repeated across polls, as long as fewer than ``MAX_TAIL`` lines are written in one
poll interval (the service returns at most that many).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from vk_provider.provider import LogOptions

MAX_TAIL = 2000
MAX_LIMIT_BYTES = 1048576
_TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2}) ")

Fetch = Callable[[dict[str, Any]], Awaitable[str]]
TsKey = tuple[int, int]


def split_timestamp(line: str) -> tuple[TsKey | None, str]:
    """(sortable key, text after the timestamp) of one ``Timestamps=true`` log line."""
    m = _TS.match(line)
    if not m:
        return None, line
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        when = datetime.fromisoformat(m.group(1) + zone)
    except ValueError:
        return None, line
    nanos = int((m.group(2) or "0").ljust(9, "0"))
    return (int(when.timestamp()), nanos), line[m.end() :]


def _rfc3339(key: TsKey) -> str:
    return datetime.fromtimestamp(key[0], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def first_params(opts: LogOptions) -> dict[str, Any]:
    p: dict[str, Any] = {"Timestamps": True}
    # Without tailLines the kubelet returns the whole log; the service's default tail is 500 lines,
    # so ask for its maximum.
    p["Tail"] = MAX_TAIL if opts.tail_lines is None else min(max(opts.tail_lines, 0), MAX_TAIL)
    if opts.since_seconds is not None:
        p["SinceSeconds"] = opts.since_seconds
    elif opts.since_time is not None:
        t = opts.since_time if opts.since_time.tzinfo else opts.since_time.replace(tzinfo=UTC)
        p["StartTime"] = t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if opts.limit_bytes is not None and opts.timestamps:
        # The service counts the timestamp prefixes we strip, so the limit is only passed on when the
        # caller keeps them; otherwise it is applied here, after stripping.
        p["LimitBytes"] = min(max(opts.limit_bytes, 1), MAX_LIMIT_BYTES)
    if opts.previous:
        p["LastTime"] = True
    return p


class _Dedup:
    """Remembers the last emitted timestamp and how many lines carried it."""

    def __init__(self) -> None:
        self.last: TsKey | None = None
        self.at_last = 0

    def filter(self, content: str) -> list[tuple[str, str]]:
        """New (full line, text) pairs from one poll, in order."""
        out: list[tuple[str, str]] = []
        skip_key, skip_budget = self.last, self.at_last
        prev: TsKey | None = self.last
        for line in content.splitlines(keepends=True):
            key, text = split_timestamp(line)
            key = key or prev
            prev = key
            if skip_key is not None and key is not None:
                if key < skip_key:
                    continue
                if key == skip_key and skip_budget > 0:
                    skip_budget -= 1
                    continue
            out.append((line, text))
            if key is not None:
                if key == self.last:
                    self.at_last += 1
                else:
                    self.last, self.at_last = key, 1
        return out


async def stream_logs(
    fetch: Fetch,
    opts: LogOptions,
    *,
    finished: Callable[[], bool],
    interval: float,
    sleep: Callable[[float], Awaitable[None]],
    shared: asyncio.Queue[str | None] | None = None,
) -> AsyncIterator[bytes]:
    """Yield log bytes; with ``opts.follow`` poll until ``finished()`` (then once more) or the caller stops.

    With ``shared`` (log_follow.py: a queue subscribed before this call) a follow takes the new lines
    from the shared poller after its own first fetch instead of polling itself."""
    dedup = _Dedup()
    budget = opts.limit_bytes
    params = first_params(opts)
    follow = opts.follow and not opts.previous
    first = True
    while True:
        done_before = finished() if follow else True
        if shared is not None and not first:
            received = await shared.get()
            if received is None:
                return
            content, done_before = received, False
        else:
            content = await fetch(params)
        first = False
        chunk = "".join(line if opts.timestamps else text for line, text in dedup.filter(content))
        if chunk:
            data = chunk.encode()
            if budget is not None:
                data = data[:budget]
                budget -= len(data)
            yield data
            if budget is not None and budget <= 0:
                return
        if not follow or done_before:
            return
        if shared is not None:
            continue  # the shared poller keeps the pace
        await sleep(interval)
        params = {"Timestamps": True, "Tail": MAX_TAIL}
        if dedup.last is not None:
            params["StartTime"] = _rfc3339(dedup.last)
        elif opts.since_seconds is not None or opts.since_time is not None:
            params.update({k: v for k, v in first_params(opts).items() if k in ("SinceSeconds", "StartTime")})
