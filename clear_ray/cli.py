"""Command-line plumbing shared by the entry points: flags that address dotted config paths.

Every flag maps to a path of :class:`clear_ray.config.Config`; defaults and types come from
the config, so ``--help``, YAML search spaces and MLflow params never disagree.
"""

from __future__ import annotations

import argparse
from typing import Any

from clear_ray.config import ConfigError

Flags = dict[str, tuple[str, str]]  # flag -> (dotted config path, help text)


def add_config_flags(
    parser: argparse.ArgumentParser, flags: Flags, defaults: dict[str, Any]
) -> None:
    """One option per flag, stored under its dotted path; ``defaults`` maps path -> default.

    A boolean field becomes a switch that turns it on (its default is off).
    """
    for flag, (path, help_text) in flags.items():
        if isinstance(defaults.get(path), bool):
            parser.add_argument(flag, dest=path, action="store_const", const=True, help=help_text)
            continue
        metavar = path.rsplit(".", 1)[-1].upper()
        parser.add_argument(
            flag, dest=path, default=defaults.get(path), metavar=metavar, help=help_text
        )


def add_set_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override any config field by its dotted path (repeatable)",
    )


def overrides_from(args: argparse.Namespace, flags: Flags) -> dict[str, Any]:
    """Dotted-path overrides from the given flags (``None`` = not given) and every ``--set``."""
    overrides = {
        path: getattr(args, path) for path, _ in flags.values() if getattr(args, path) is not None
    }
    for item in args.overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects PATH=VALUE, got {item!r}")
        path, value = item.split("=", 1)
        overrides[path] = value
    return overrides


def error_line(error: ConfigError, flags: Flags) -> str:
    """The one line a CLI prints: the flag that sets the offending path, when there is one."""
    message = str(error)
    for flag, (path, _) in flags.items():
        if message.startswith(f"{path}:"):
            return f"error: {flag}, {message}"
    return f"error: {message}"
