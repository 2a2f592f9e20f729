"""Doctor's report: which results fail a run, and how they are shown."""

from __future__ import annotations

import json

from vk_provider.doctor.report import Check, passed, render_json, render_table


def test_only_a_failed_required_check_fails_the_run() -> None:
    assert passed([Check.ok("a", "fine"), Check.skipped("b", "not applicable")])
    assert passed([Check.fail("c", "broken", "fix it", required=False)])
    assert not passed([Check.ok("a", "fine"), Check.fail("d", "broken", "fix it")])


def test_table_shows_marks_fixes_and_summary() -> None:
    text = render_table(
        [
            Check.ok("eci.endpoint", "answered"),
            Check.fail("eci.clock", "off by 400 s", "run NTP"),
            Check.fail("kube.metrics-server", "not served", "install it", required=False),
            Check.skipped("kube.elastic-webhook", "nothing to check"),
        ]
    )
    lines = text.splitlines()
    assert lines[0].startswith("✓ eci.endpoint")
    assert lines[1].startswith("✗ eci.clock") and lines[2].strip() == "fix: run NTP"
    assert "(advisory)" in lines[3]
    assert any(line.startswith("- kube.elastic-webhook") for line in lines)
    assert lines[-1] == "NOT ready: 1 passed, 1 failed, 1 skipped"


def test_json_carries_every_field() -> None:
    out = json.loads(render_json([Check.fail("x", "d", "f", data={"n": 1})]))
    assert out == {
        "ready": False,
        "checks": [{"name": "x", "status": "fail", "detail": "d", "fix": "f", "required": True, "data": {"n": 1}}],
    }
