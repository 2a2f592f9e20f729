"""Doctor's results: one ``Check`` per question, rendered as a table or JSON, and the exit code."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ok", "fail", "skipped"]

_MARK = {"ok": "✓", "fail": "✗", "skipped": "-"}


@dataclass
class Check:
    """One check's answer. ``fix`` says what to do when it failed; an advisory check (``required`` false)
    is shown but does not fail the run."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    required: bool = True
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, name: str, detail: str, **kw: Any) -> Check:
        return cls(name, "ok", detail, **kw)

    @classmethod
    def fail(cls, name: str, detail: str, fix: str, **kw: Any) -> Check:
        return cls(name, "fail", detail, fix, **kw)

    @classmethod
    def skipped(cls, name: str, reason: str, **kw: Any) -> Check:
        return cls(name, "skipped", reason, **kw)


def passed(checks: Sequence[Check]) -> bool:
    """True when no required check failed (skipped ones do not count either way)."""
    return not any(c.status == "fail" and c.required for c in checks)


def render_table(checks: Sequence[Check]) -> str:
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        mark = _MARK[c.status]
        note = " (advisory)" if c.status == "fail" and not c.required else ""
        lines.append(f"{mark} {c.name.ljust(width)}  {c.detail}{note}")
        if c.status == "fail" and c.fix:
            lines.append(f"  {' ' * width}  fix: {c.fix}")
    failed = [c for c in checks if c.status == "fail" and c.required]
    skipped = sum(1 for c in checks if c.status == "skipped")
    ok = sum(1 for c in checks if c.status == "ok")
    summary = f"{ok} passed, {len(failed)} failed, {skipped} skipped"
    lines.append("")
    lines.append(("ready: " if not failed else "NOT ready: ") + summary)
    return "\n".join(lines) + "\n"


def render_json(checks: Sequence[Check]) -> str:
    return json.dumps({"ready": passed(checks), "checks": [asdict(c) for c in checks]}, indent=2) + "\n"
