"""`vk-provider doctor`: run every check with the daemon's settings, print them, exit 0 only when all passed."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import Literal

from vk_provider.doctor.eci_checks import run_eci_checks
from vk_provider.doctor.kube_checks import run_kube_checks
from vk_provider.doctor.report import Check, passed, render_json, render_table
from vk_provider.log import configure_logging
from vk_provider.settings import Settings

Output = Literal["table", "json"]


async def _guarded(name: str, checks: Awaitable[list[Check]]) -> list[Check]:
    """A check that breaks unexpectedly is a failed check in the report, not a traceback."""
    try:
        return await checks
    except Exception as exc:
        return [
            Check.fail(name, f"the checks stopped: {type(exc).__name__}: {exc}", "run again; report it if it stays")
        ]


async def run_checks(settings: Settings) -> list[Check]:
    """ECI and Kubernetes, side by side: they share nothing."""
    eci, kube = await asyncio.gather(
        _guarded("eci", run_eci_checks(settings)), _guarded("kube", run_kube_checks(settings))
    )
    return [*eci, *kube]


def main(settings: Settings, output: Output = "table") -> int:
    configure_logging(settings.log.level, settings.log.format)  # to stderr: stdout is the report
    checks = asyncio.run(run_checks(settings))
    sys.stdout.write(render_json(checks) if output == "json" else render_table(checks))
    return 0 if passed(checks) else 1
