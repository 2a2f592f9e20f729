"""`vk-provider`: argument parsing and dispatch, nothing else.

Exit codes: 0 success, 1 runtime failure, 2 bad usage or a bad setting (nothing was started),
3 leadership lost (a leader that could not renew its election Lease stopped every write; restarted, it
stands by), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any, Protocol

from vk_provider import __version__
from vk_provider.settings import FIELDS, SettingsError, load_settings

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_LOST_LEADERSHIP = 3  # returned by app.run_until_signalled (app.EXIT_LOST_LEADERSHIP)
EXIT_INTERRUPTED = 130


class _SubcommandModule(Protocol):
    """A module behind a subcommand: it declares its own flags and runs from the parsed namespace."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def main(self, args: argparse.Namespace) -> int: ...


# subcommand path -> (module, help). Modules are imported lazily so `--help` stays fast.
_SANDBOX_COMMANDS: dict[str, tuple[str, str]] = {
    "apiserver": ("vk_sandbox.apiserver.cli", "run the sandbox Kubernetes API server alone"),
    "eci": ("vk_sandbox.eci.cli", "run the ECI OpenAPI simulator alone"),
}
_SANDBOX_ALL_IN_ONE = "vk_sandbox.up"
_SANDBOX_PACKAGE = "vk_sandbox"
_SANDBOX_MISSING = (
    "vk-provider: the sandbox is not installed (it is the separate distribution vk-eci-sandbox, which the "
    "production image leaves out); in a checkout run `make run`, or `pip install -e ./sandbox`"
)


def _load(module: str) -> _SubcommandModule:
    mod: Any = importlib.import_module(module)
    return mod  # type: ignore[no-any-return]


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for field in FIELDS.values():
        section = field.path.split(".")[0] if "." in field.path else "general"
        group = groups.get(section) or groups.setdefault(section, parser.add_argument_group(f"{section} settings"))
        names = [field.flag] + ([field.short_flag] if field.short_flag else [])
        default = field.info.get_default(call_default_factory=True)
        group.add_argument(
            *names,
            dest=field.dest,
            default=None,
            metavar="VALUE",
            help=f"{field.info.description or ''} [env {field.env}; default {default!r}]",
        )


def _flag_values(args: argparse.Namespace) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {}
    for field in FIELDS.values():
        value = getattr(args, field.dest, None)
        if value is None:
            continue
        # Maps and lists may be given as JSON on the command line, like in env.
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except ValueError:
                pass
        out[field.path] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vk-provider",
        description="A virtual-kubelet provider that runs Kubernetes pods as Alibaba Cloud ECI container groups.",
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 bad usage or setting, 3 leadership lost, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"vk-provider {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the daemon against a cluster and ECI",
        description="Register the virtual node and run every pod bound to it as an ECI container group. "
        "Every setting can also come from VK_* environment variables or a YAML file (--config).",
    )
    _add_setting_flags(run)

    doctor = sub.add_parser(
        "doctor",
        help="check credentials, permissions, network and clock before (and after) deploying",
        description="Run every check that can stop `run` from working, with the same settings (flags, VK_* "
        "environment, --config), and say how to fix each failure. Exit 0 when every required check passes, "
        "1 when one fails, 2 for a bad setting.",
    )
    doctor.add_argument("--output", choices=("table", "json"), default="table", help="table (default) or json")
    _add_setting_flags(doctor)

    sandbox = sub.add_parser(
        "sandbox",
        help="all-in-one local sandbox: API server, ECI simulator and the daemon",
        description="With no subcommand: start the sandbox API server, the ECI simulator and the daemon "
        "together, and print how to use them.",
    )
    _load_optional_arguments(sandbox, _SANDBOX_ALL_IN_ONE)
    sandbox_sub = sandbox.add_subparsers(dest="sandbox_command", metavar="COMPONENT")
    for name, (module, help_text) in _SANDBOX_COMMANDS.items():
        p = sandbox_sub.add_parser(name, help=help_text, description=help_text)
        _load_optional_arguments(p, module)

    sub.add_parser(
        "config-docs",
        help="print docs/configuration.md, generated from the settings model",
        description="Print the settings reference (Markdown) generated from the settings model.",
    )
    return parser


def _load_optional_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    try:
        mod = _load(module)
    except ModuleNotFoundError as exc:
        if not _is_sandbox_missing(exc):
            raise
        return  # the test bed is not installed; dispatch says so
    mod.add_arguments(parser)


def _is_sandbox_missing(exc: ModuleNotFoundError) -> bool:
    return exc.name is not None and exc.name.split(".")[0] == _SANDBOX_PACKAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if args.command == "config-docs":
        from vk_provider.settings import render_markdown

        sys.stdout.write(render_markdown())
        return EXIT_OK
    if args.command in ("run", "doctor"):
        try:
            settings = load_settings(_flag_values(args))
        except SettingsError as exc:
            print(f"vk-provider: invalid setting {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.command == "doctor":
            doctor: Any = importlib.import_module("vk_provider.doctor.run")
            return int(doctor.main(settings, args.output))
        app: Any = importlib.import_module("vk_provider.app")
        return int(app.main(settings))
    if args.command == "sandbox":
        module = _SANDBOX_COMMANDS[args.sandbox_command][0] if args.sandbox_command else _SANDBOX_ALL_IN_ONE
        try:
            mod = _load(module)
        except ModuleNotFoundError as exc:
            if not _is_sandbox_missing(exc):
                raise
            print(_SANDBOX_MISSING, file=sys.stderr)
            return EXIT_USAGE
        return mod.main(args)
    parser.print_help()
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
