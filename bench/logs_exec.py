"""Benchmark: `kubectl logs -f` and `kubectl exec` at scale through the daemon's kubelet API (issue 16, target 5).

    .venv/bin/python bench/logs_exec.py                      # 60 pods, 100 followers, 50 exec sessions, 30 s
    .venv/bin/python bench/logs_exec.py --pods 60 --followers 100 --execs 50 --seconds 30

Set-up as bench/daemon_burst.py (the sandbox API server and the ECI simulator in this process, the daemon a real
`vk-provider run` subprocess with its default ECI rate limits), but with the simulator's *process* runtime, so
that logs are real: every pod's container is a shell printing a numbered line every --line-interval seconds.
Then, at once and for --seconds:

- --followers clients follow container logs over HTTPS on the daemon's kubelet port, as the API server's
  proxy calls it (``/containerLogs/default/<pod>/main?follow=true``, a bearer token the daemon reviews).
  Follower i follows pod i mod --pods, so with more followers than pods some containers are followed by 2+;
- --execs WebSocket (v5.channel.k8s.io) exec sessions run ``cat`` and make --round-trips echo round trips
  each, one every --rt-pause seconds;
- once every follower has its first byte, a plain ``logs --tail 5`` every 2 s (is it held up by the polls?).

At ECI's 500 DescribeContainerLog a minute the rate limit, not the poll interval, paces the polls past about
seven followed containers: the bounds below are in "cycles", max(interval, followed containers / the polls'
share of the rate) (eci/log_follow.py). --log-quota raises the daemon's quota so that the interval paces them.

Measured: per follower the time to first byte, every line written (the simulator's log file, with its write
time) against the lines received (missing ones, and each line's delay from written to received, p50/p99/max),
the largest gap between two receipts (p50/p99 over followers); per exec session its set-up time and round
trips (p50/p99/max); from the simulator's /_sim/stats the DescribeContainerLog calls after the last first byte
against the budget (one per followed container per poll interval, never more than ECI's per-minute quota for
the action) and the ExecContainerCommand calls; the daemon's CPU time / wall time and RSS, and this process's CPU
(the test bed and the clients). Prints Markdown,
a PASS/FAIL line per target, and exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemon_burst import Bench, bench_stack, table
from kubelet_streams import client_ssl
from status_latency import pct, spread

from vk_provider.eci.log_follow import POLL_SHARE, POLLS_IN_FLIGHT
from vk_provider.eci.names import TAG_POD
from vk_provider.eci.ratelimit import per_minute_bucket
from vk_provider.settings import DEFAULT_PER_MINUTE, KubeletSettings

TOKEN = "bench-logs-exec"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def ms(values: list[float]) -> str:
    return spread(values) if values else "none"


@dataclass
class Follower:
    pod: str
    started: float = 0.0
    first_byte: float | None = None
    lines: dict[str, float] = field(default_factory=dict)  # text -> when received (Unix seconds)
    error: str = ""


@dataclass
class ExecSession:
    pod: str
    setup: float | None = None
    trips: list[float] = field(default_factory=list)
    error: str = ""


async def follow(session: aiohttp.ClientSession, base: str, f: Follower, stop: asyncio.Event) -> None:
    f.started = time.time()
    try:
        async with session.get(f"{base}/containerLogs/default/{f.pod}/main?follow=true", headers=HEADERS) as r:
            if r.status != 200:
                f.error = f"HTTP {r.status}: {(await r.text())[:200]}"
                return
            while not stop.is_set():
                line = await r.content.readline()
                if not line:
                    f.error = "the stream ended"
                    return
                now = time.time()
                if f.first_byte is None:
                    f.first_byte = now
                f.lines.setdefault(line.decode().rstrip("\n"), now)
    except (aiohttp.ClientError, OSError) as exc:
        f.error = repr(exc)


async def exec_echo(
    session: aiohttp.ClientSession, base: str, e: ExecSession, trips: int, pause: float, deadline: float
) -> None:
    t0 = time.monotonic()
    url = f"{base}/exec/default/{e.pod}/main?command=cat&stdin=1&stdout=1"
    try:
        async with session.ws_connect(url, headers=HEADERS, protocols=["v5.channel.k8s.io"]) as ws:
            e.setup = time.monotonic() - t0
            for k in range(trips):
                if time.monotonic() > deadline:
                    e.error = f"out of time after {k} round trips"
                    return
                payload = f"ping {k}\n".encode()
                sent = time.monotonic()
                await ws.send_bytes(b"\x00" + payload)
                got = b""
                while not got.endswith(payload):
                    msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - time.monotonic()))
                    if msg.type != aiohttp.WSMsgType.BINARY:
                        e.error = f"the session ended: {msg.type.name} {msg.data!r}"[:200]
                        return
                    if msg.data[:1] == b"\x01":
                        got += msg.data[1:]
                e.trips.append(time.monotonic() - sent)
                await asyncio.sleep(pause)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        e.error = repr(exc)


async def one_shot_logs(session: aiohttp.ClientSession, base: str, pods: list[str], until: float) -> list[float]:
    """A plain `kubectl logs --tail 5` of a pod every 2 s while the followers follow: how long each takes."""
    took: list[float] = []
    for k in range(1000):
        if time.monotonic() > until:
            break
        t0 = time.monotonic()
        async with session.get(
            f"{base}/containerLogs/default/{pods[k % len(pods)]}/main?tailLines=5", headers=HEADERS
        ) as r:
            await r.read()
            if r.status == 200:
                took.append(time.monotonic() - t0)
        await asyncio.sleep(max(0.0, t0 + 2 - time.monotonic()))
    return took


def written_lines(b: Bench) -> dict[str, list[tuple[float, str]]]:
    """Every pod's log as the simulator's runtime wrote it: (write time, text), by pod name."""
    out: dict[str, list[tuple[float, str]]] = {}
    eng = b.sim.engine
    for group in eng.groups.values():
        pod = dict(group.tags).get(TAG_POD)
        if pod:
            out[pod] = [(ts, text) for ts, _, text in eng.runtime.logs(group, "main", False)]
    return out


def line_script(interval: float) -> list[str]:
    return ["sh", "-c", f'i=0; while :; do i=$((i+1)); echo "$HOSTNAME line $i"; sleep {interval}; done']


async def run(args: argparse.Namespace) -> int:
    interval = KubeletSettings.model_fields["log_poll_interval_seconds"].default
    quota = args.log_quota or DEFAULT_PER_MINUTE["DescribeContainerLog"]
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vk-bench-") as tmp:
        extra: dict[str, object] = {
            "kubelet.tls_mode": "self-signed"
        }  # ECI's per-minute quotas: bench_stack lifts only writes
        if args.log_quota:
            extra["eci.rate_limits_per_minute"] = {"DescribeContainerLog": args.log_quota}
        async with bench_stack(Path(tmp), runtime="process", extra=extra) as b:
            b.apiserver.add_static_token(TOKEN, "bench", ["system:masters"])
            await b.create_pods(args.pods, command=line_script(args.line_interval))
            await b.wait_running(args.pods, 120)
            base = f"https://127.0.0.1:{b.flags['kubelet.port']}"
            pods = [f"p-{i:05d}" for i in range(args.pods)]
            followers = [Follower(pods[i % args.pods]) for i in range(args.followers)]
            execs = [ExecSession(pods[i % args.pods]) for i in range(args.execs)]
            followed = len({f.pod for f in followers})
            stop = asyncio.Event()
            connector = aiohttp.TCPConnector(ssl=client_ssl(), limit=0)
            timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                calls0, cpu0, bed0, t0 = b.eci_calls(), b.cpu_seconds(), time.process_time(), time.monotonic()
                deadline = t0 + args.seconds + 30
                tasks = [asyncio.ensure_future(follow(session, base, f, stop)) for f in followers]
                exec_tasks = [
                    asyncio.ensure_future(exec_echo(session, base, e, args.round_trips, args.rt_pause, deadline))
                    for e in execs
                ]
                await asyncio.sleep(0.1)
                while time.monotonic() - t0 < args.seconds and not all(f.first_byte or f.error for f in followers):
                    await asyncio.sleep(0.1)
                steady0, steady_at, calls1 = time.monotonic(), time.time(), b.eci_calls()  # all first fetches done
                probes = asyncio.ensure_future(one_shot_logs(session, base, pods, t0 + args.seconds - 2))
                await asyncio.sleep(max(0.0, t0 + args.seconds - time.monotonic()))
                await asyncio.wait(exec_tasks, timeout=max(0.1, deadline - time.monotonic()))
                steady = time.monotonic() - steady0
                one_shots = await probes
                calls2, wall = b.eci_calls(), time.monotonic() - t0
                cpu, rss, bed = b.cpu_seconds() - cpu0, b.rss_mb(), time.process_time() - bed0
                end = time.time()
                stop.set()
                for t in tasks + exec_tasks:
                    t.cancel()
                await asyncio.gather(*tasks, *exec_tasks, return_exceptions=True)
            written = written_lines(b)
    load1 = os.getloadavg()

    # Past (quota/min / 60) * POLL_SHARE * interval followed containers the rate limit paces the polls: a round
    # robin "cycle" (log_follow.py).
    rate, burst = per_minute_bucket(quota)
    cycle = max(interval, followed / (rate * POLL_SHARE))
    bound = args.line_bound or 2 * cycle + 1.0
    one_shot_bound = 1.0 + (POLLS_IN_FLIGHT + 1) / rate  # behind the polls in flight, not behind every container
    # Followers: every line written from the follow's start until ``bound`` before the end is received; the
    # delay of each line written once every follower had its first byte (the first fetches are a backlog).
    missing, delays, gaps, ttfb, errors = 0, [], [], [], []
    for f in followers:
        if f.error and not f.lines:
            errors.append(f"{f.pod}: {f.error}")
        if f.first_byte is not None:
            ttfb.append(f.first_byte - f.started)
        for ts, text in written.get(f.pod, []):
            if ts > end - bound:
                continue
            got = f.lines.get(text)
            if got is None:
                missing += 1
            elif ts >= steady_at:
                delays.append(got - ts)
        times = sorted(t for t in f.lines.values())
        gaps.append(max((b2 - a for a, b2 in itertools.pairwise(times)), default=float("inf")))
    trips = [t for e in execs for t in e.trips]
    setups = [e.setup for e in execs if e.setup is not None]
    short = [e for e in execs if len(e.trips) < args.round_trips]
    calls = calls2 - calls0
    steady_logs = (calls2 - calls1)["DescribeContainerLog"]
    budget = followed * steady / interval
    allowed = min(budget, burst + rate * steady)  # never above the action's bucket: then the interval stretches
    lines_written = sum(len(v) for v in written.values())
    cores = cpu / wall

    rows = [
        ("load average before / after (1 min)", f"{load0[0]:.2f} / {load1[0]:.2f}"),
        ("pods (a line every s) / followed containers", f"{args.pods} ({args.line_interval:g}) / {followed}"),
        ("log followers / exec sessions", f"{args.followers} / {args.execs}"),
        ("wall time of the load (s)", f"{wall:.1f}"),
        (f"poll cycle: max({interval:g} s, {followed} containers ÷ {rate * POLL_SHARE:.2f}/s) (s)", f"{cycle:.1f}"),
        ("lines written (all pods)", str(lines_written)),
        ("followers with an error and no line", str(len(errors))),
        ("follow: time to first byte, p50 / p99 / max (ms)", ms(ttfb)),
        (f"follow: lines missing (written ≥ {bound:.1f} s before the end)", str(missing)),
        ("follow: line written → received, after the last first byte, p50 / p99 / max (ms)", ms(delays)),
        ("follow: largest gap between receipts per follower, p50 / p99 (ms)",
         f"{pct(gaps, 0.5) * 1000:.0f} / {pct(gaps, 0.99) * 1000:.0f}"),
        ("plain `logs --tail 5` during the follows, p50 / max (ms)",
         f"{pct(one_shots, 0.5) * 1000:.0f} / {max(one_shots, default=0) * 1000:.0f} ({len(one_shots)} requests)"),
        ("exec: session set-up, p50 / p99 / max (ms)", ms(setups)),
        (f"exec: round trips done / asked ({args.execs} x {args.round_trips})",
         f"{len(trips)} / {args.execs * args.round_trips}"),
        ("exec: round trip, p50 / p99 / max (ms)", ms(trips)),
        ("DescribeContainerLog, all (incl. each follower's first fetch)", str(calls["DescribeContainerLog"])),
        (f"DescribeContainerLog after the last first byte ({steady:.1f} s)", str(steady_logs)),
        ("… per followed container per poll interval", f"{steady_logs / max(budget, 1e-9):.2f}"),
        ("… per minute (quota)", f"{steady_logs * 60 / steady:.0f} ({quota})"),
        ("ExecContainerCommand", str(calls["ExecContainerCommand"])),
        ("daemon CPU (s) / cores (CPU s per wall s)", f"{cpu:.1f} / {cores:.2f}"),
        ("daemon RSS at the end (MB)", f"{rss:.0f}"),
        ("test bed and clients CPU (this process: API server, simulator, the clients) (s)", f"{bed:.1f}"),
    ]  # fmt: skip
    print(f"## Logs and exec at scale: {args.followers} followers, {args.execs} exec sessions\n")
    print(table(rows))
    print()
    print(table([(k, str(v)) for k, v in sorted(calls.items())], ("ECI action (whole load)", "Calls")))
    print()
    for e in errors[:5] + [f"exec {e.pod}: {len(e.trips)} round trips, {e.error}" for e in short[:5]]:
        print(f"- {e}")
    targets = [
        (
            f"no follower starves: each gets every line, within {bound:.1f} s (2 poll cycles + 1 s), "
            f"and never waits longer between two",
            not errors and missing == 0 and bool(delays) and max(delays) <= bound and max(gaps) <= bound,
        ),
        (
            f"a plain `kubectl logs` is not held up behind the polls (≤ {one_shot_bound:.1f} s)",
            bool(one_shots) and max(one_shots) <= one_shot_bound,
        ),
        ("no exec session starves: each makes all its round trips", not short and len(trips) > 0),
        (
            f"log polling within budget (≤ {allowed:.0f} calls: 1 per followed container per {interval:g} s, "
            f"≤ {quota}/min)",
            steady_logs <= allowed + followed,  # a poll per container may straddle the window's start
        ),
        (f"exec: one ExecContainerCommand per session (≤ {args.execs})", calls["ExecContainerCommand"] <= args.execs),
        ("daemon CPU under one core", cores < 1.0),
    ]
    for what, ok in targets:
        print(f"{'PASS' if ok else 'FAIL'}: {what}")
    return 0 if all(ok for _, ok in targets) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=60)
    ap.add_argument("--followers", type=int, default=100)
    ap.add_argument("--execs", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30, help="how long the followers follow")
    ap.add_argument("--line-interval", type=float, default=0.5, help="seconds between two lines of a container")
    ap.add_argument(
        "--line-bound", type=float, default=0, help="seconds a line may take to each follower (default: 2 cycles + 1)"
    )
    ap.add_argument(
        "--log-quota", type=int, default=0, help="the daemon's DescribeContainerLog quota per minute (default: ECI's)"
    )
    ap.add_argument("--round-trips", type=int, default=100, help="per exec session")
    ap.add_argument("--rt-pause", type=float, default=0.2, help="seconds between two round trips of a session")
    args = ap.parse_args()
    if args.pods < 1 or args.followers < 1 or args.seconds <= 0:
        ap.error("--pods, --followers and --seconds must be positive")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
