"""Run ``vk-provider`` with its heap traced, for benchmarks (not a test, not part of the product).

    python bench/heap_probe.py OUT_DIR run

Runs the CLI with the remaining arguments. On SIGUSR1 it writes ``OUT_DIR/heap-N.txt``: the RSS, glibc's
own accounting (mallinfo2 over all arenas: in use, free chunks kept, mmapped chunks), pymalloc's (arenas,
pools, free blocks: ``sys._debugmallocstats``), and the live objects by type (count and shallow size).
With VK_PROBE_TRACE=1 it also starts tracemalloc (one frame) before the daemon imports anything and adds
the top allocation sites by file:line and by file; tracing slows the daemon and costs memory of its own,
so the RSS of a traced run is not the RSS to report. bench/daemon_steady.py --heap-report uses it.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import tempfile
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType

TOP = 40


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in [
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        ]
    ]


def _glibc() -> list[str]:
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return ["mallinfo2: not available"]
    fn.restype = _MallInfo2
    mi = fn()
    mb = 1024 * 1024
    return [
        f"glibc arenas {mi.arena / mb:.1f} MB: in use {mi.uordblks / mb:.1f} MB, free {mi.fordblks / mb:.1f} MB",
        f"glibc mmapped chunks {mi.hblks} = {mi.hblkhd / mb:.1f} MB",
    ]


def _status() -> list[str]:
    keep = ("VmRSS", "RssAnon", "RssFile", "VmData", "Threads")
    return [line for line in Path("/proc/self/status").read_text().splitlines() if line.split(":")[0] in keep]


def _pymalloc() -> list[str]:
    """The summary lines of sys._debugmallocstats (it writes to the C stderr, so through a temporary file)."""
    with tempfile.TemporaryFile() as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    keep = ("arenas allocated current", "# bytes in allocated blocks", "# bytes in available blocks", "Total")
    return ["pymalloc " + line.strip() for line in text.splitlines() if line.startswith(keep)]


def _types() -> list[str]:
    sizes: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        name = type(obj).__qualname__
        sizes[name] += sys.getsizeof(obj)
        counts[name] += 1
    lines = [f"## top {TOP} container types by shallow size (gc-tracked objects only; str/bytes/int are not)"]
    return lines + [f"{size / 2**20:8.2f} MB {counts[name]:9d}  {name}" for name, size in sizes.most_common(TOP)]


def _report(out: Path, n: int) -> None:
    gc.collect()
    lines = [*_status(), *_glibc(), *_pymalloc(), "", *_types(), ""]
    if not tracemalloc.is_tracing():
        (out / f"heap-{n}.txt").write_text("\n".join(lines))
        return
    snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
    traced, peak = tracemalloc.get_traced_memory()
    lines.append(f"tracemalloc: {traced / 2**20:.1f} MB traced (peak {peak / 2**20:.1f} MB)")
    for key in ("lineno", "filename"):
        stats = snap.statistics(key)
        lines.append(f"## top {TOP} by {key}")
        lines += [f"{s.size / 2**20:8.2f} MB {s.count:9d} blocks  {s.traceback}" for s in stats[:TOP]]
        lines.append("")
    (out / f"heap-{n}.txt").write_text("\n".join(lines))


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    if os.environ.get("VK_PROBE_TRACE") == "1":
        tracemalloc.start(1)
    reports = iter(range(1, 1000))

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        _report(out, next(reports))

    signal.signal(signal.SIGUSR1, on_signal)
    from vk_provider.cli import main as cli

    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
