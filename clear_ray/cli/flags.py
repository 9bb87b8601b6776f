"""Command-line plumbing shared by the entry points: flags that address dotted config paths.

Every flag maps to a path of :class:`clear_ray.config.Config`; defaults and types come from
the config, so ``--help``, YAML search spaces and MLflow params never disagree.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

import yaml

from clear_ray.config import Config
from clear_ray.errors import ConfigError

Flags = dict[str, tuple[str, str]]  # flag -> (dotted config path, help text)

# Where the data comes from: the same flags for every command that reads CLEAR.
DATA_FLAGS: Flags = {
    "--data": ("data.source", "hub id (therem/CLEAR) or local CLEAR dir; default: synthetic"),
    "--tofu": (
        "data.tofu_source",
        "local copy of locuslab/TOFU: the text forget-quality task of a local --data copy of "
        "therem/CLEAR (without it that task is left out)",
    ),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every command's ``--help``: a flag's default is shown only where it says something,
    not for a switch (``store_true``) nor a default of None, "" or [] ("not given")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default in (None, "", []):
            return action.help
        return super()._get_help_string(action)


def add_config_flags(
    parser: argparse.ArgumentParser, flags: Flags, defaults: dict[str, Any]
) -> None:
    """One option per flag, stored under its dotted path; ``defaults`` maps path -> default.

    A flag not given leaves no attribute (its default is only shown in the help), so that a
    model preset's recipe, applied under the user's values, is not overwritten by a default.
    A boolean field becomes a switch that turns it on (its default is off).
    """
    for flag, (path, help_text) in flags.items():
        default = defaults.get(path)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=path, action="store_const", const=True, help=help_text)
            continue
        if default not in (None, ""):
            help_text = f"{help_text} (default: {str(default).replace('%', '%%')})"
        metavar = path.rsplit(".", 1)[-1].upper()
        parser.add_argument(
            flag, dest=path, default=argparse.SUPPRESS, metavar=metavar, help=help_text
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
    """Dotted-path overrides from the flags given (absent or ``None`` = not) and every ``--set``."""
    overrides = {
        path: getattr(args, path)
        for path, _ in flags.values()
        if getattr(args, path, None) is not None
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


def dry_run_lines(
    cfg: Config, recipe: Mapping[str, Any], overrides: Mapping[str, Any]
) -> list[str]:
    """``dotted.path: value`` for every field, as YAML; a trailing comment names the model
    preset where its recipe set the value (and the user did not)."""
    lines = []
    for path, value in cfg.to_flat().items():
        line = yaml.safe_dump({path: value}, default_flow_style=False, width=1000).strip()
        if path in recipe and path not in overrides:
            line += f"  # preset {cfg.model.preset}"
        lines.append(line)
    return lines
