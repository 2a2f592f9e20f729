"""Run the benchmark scenarios in sequence, each as its own ``python -m bench.<name>`` subprocess.

    .venv/bin/python -m bench                      # all scenarios, documented sizes (docs/benchmarks.md)
    .venv/bin/python -m bench --list               # list scenarios and their arguments
    .venv/bin/python -m bench daemon_burst eci_sim # a subset
    .venv/bin/python -m bench --quick              # small sizes, a smoke run of a few minutes
    .venv/bin/python -m bench daemon_burst -- --pods 100   # extra arguments for the scenario(s)

Every scenario has bounded loops of its own; on top of that each subprocess gets a wall-clock limit
(--timeout-scale scales it) and is killed, with its process group, when it runs over. The exit status is
non-zero if any scenario failed or timed out.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    args: tuple[str, ...]  # documented size (docs/benchmarks.md)
    quick: tuple[str, ...]  # smoke-test size
    limit: float  # wall-clock limit in seconds at the documented size


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "apiserver_watch",
        "sandbox API server: pod writes/s over HTTPS with 3 watchers, every event in order",
        ("--pods", "10000", "--watchers", "3", "--concurrency", "32"),
        ("--pods", "1000", "--watchers", "3", "--concurrency", "32"),
        900,
    ),
    Scenario(
        "scheduler",
        "sandbox scheduler: 5,000 pending pods placed on 50 nodes (target < 10 s), then unschedulable ones explained",
        ("--pods", "5000", "--nodes", "50", "--target-seconds", "10"),
        ("--pods", "1000", "--nodes", "10", "--target-seconds", "10"),
        300,
    ),
    Scenario(
        "eci_sim",
        "ECI simulator (virtual runtime) through the SDK: create, DescribeContainerGroups, Status rates",
        ("--groups", "10000", "--concurrency", "16"),
        ("--groups", "1000", "--concurrency", "16"),
        900,
    ),
    Scenario(
        "kubelet_streams",
        "kubelet API: exec round trip (WebSocket v5 vs SPDY v4) and log-follow throughput",
        ("--round-trips", "2000", "--size", "64", "--log-mb", "256"),
        ("--round-trips", "200", "--size", "64", "--log-mb", "32"),
        600,
    ),
    Scenario(
        "eci_calls",
        "ECIProvider against the simulator: ECI calls per pod in a burst, calls/min when quiet",
        ("--pods", "500", "--quiet-seconds", "30"),
        ("--pods", "100", "--quiet-seconds", "5"),
        600,
    ),
    Scenario(
        "daemon_burst",
        "whole stack (API server, simulator, vk-provider run): burst of pods to Running, ECI calls/pod",
        ("--pods", "500", "--timeout", "180"),
        ("--pods", "100", "--timeout", "120"),
        600,
    ),
    Scenario(
        "spot",
        "whole stack: 100 of 500 spot replicas reclaimed at once, notice -> replacement Running, lost replicas",
        ("--deployments", "5", "--replicas", "100", "--reclaim", "100", "--notice-seconds", "60"),
        ("--deployments", "2", "--replicas", "20", "--reclaim", "10", "--notice-seconds", "20"),
        600,
    ),
    Scenario(
        "status_latency",
        "whole stack, per pod: bind → create sent, group Running → pod Running, daemon CPU per pod, idle calls/min",
        ("--pods", "2000", "--idle-seconds", "60"),
        ("--pods", "200", "--idle-seconds", "15", "--settle-seconds", "5"),
        900,
    ),
    Scenario(
        "logs_exec",
        "whole stack, real container processes: 100 `logs -f` and 50 exec sessions via the kubelet API, log polls",
        ("--pods", "60", "--followers", "100", "--execs", "50", "--seconds", "30"),
        ("--pods", "10", "--followers", "20", "--execs", "10", "--seconds", "10", "--round-trips", "20"),
        300,
    ),
    Scenario(
        "daemon_steady",
        "whole stack with many steady pods: ECI calls/min, status writes/min, daemon RSS and CPU",
        ("--pods", "10000", "--measure-seconds", "180", "--settle-seconds", "20", "--timeout", "1800"),
        ("--pods", "500", "--measure-seconds", "30", "--settle-seconds", "5", "--timeout", "300"),
        2400,
    ),
    Scenario(
        "failover",
        "two replicas of one node, the leader SIGKILLed under load: kill → Lease acquired → first new pod Running",
        ("--pods", "1000", "--kills", "10"),
        ("--pods", "200", "--kills", "2"),
        1200,
    ),
    Scenario(
        "burst",
        "elastic scheduling: webhook latency at 200 req/s; a Deployment 0 -> 500 bursting past 4 workers; scale-in",
        ("--replicas", "500", "--workers", "4", "--worker-cpu", "4", "--scale-to", "50"),
        ("--replicas", "100", "--workers", "2", "--worker-cpu", "2", "--scale-to", "10", "--webhook-seconds", "3"),
        900,
    ),
)
BY_NAME = {s.name: s for s in SCENARIOS}


def run_one(s: Scenario, args: list[str], limit: float) -> tuple[str, float]:
    cmd = [sys.executable, "-m", f"bench.{s.name}", *args]
    print(f"\n# {s.name}\n\n$ {' '.join(['python', *cmd[1:]])}\n", flush=True)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        rc = proc.wait(timeout=limit)
        status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {limit:.0f} s"
    except KeyboardInterrupt:
        status = "interrupted"
    if proc.returncode is None:  # our own child and its process group (the daemon, the API server)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
    return status, time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("names", nargs="*", metavar="NAME", help="scenarios to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--quick", action="store_true", help="small sizes instead of the documented ones")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="scale every scenario's wall-clock limit")
    opts = ap.parse_args(argv)

    if opts.list:
        for s in SCENARIOS:
            print(f"{s.name:16} {s.what}\n{'':16} args: {' '.join(s.args)}  (--quick: {' '.join(s.quick)})")
        return 0
    unknown = [n for n in opts.names if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    chosen = [BY_NAME[n] for n in opts.names] if opts.names else list(SCENARIOS)

    results: list[tuple[str, str, float]] = []
    for s in chosen:
        args = [*(s.quick if opts.quick else s.args), *extra]  # later flags win in argparse
        status, secs = run_one(s, args, s.limit * opts.timeout_scale)
        results.append((s.name, status, secs))
        if status == "interrupted":
            break

    print("\n# summary\n\n| scenario | result | wall time (s) |\n|---|---|---|")
    for name, status, secs in results:
        print(f"| {name} | {status} | {secs:.0f} |")
    return 0 if all(status == "ok" for _, status, _ in results) and len(results) == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
