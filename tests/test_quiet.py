"""Third-party console noise is silenced; real warnings are not."""

from __future__ import annotations

import logging
import os

import optuna
import pytest

from clear_ray.search.quiet import RAY_TOKEN_LOGGER, quiet_console


def test_quiet_console_drops_only_the_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    before = optuna.logging.get_verbosity()
    try:
        quiet_console()
        quiet_console()  # twice: still one filter
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
        assert optuna.logging.get_verbosity() == optuna.logging.WARNING
        logger = logging.getLogger(RAY_TOKEN_LOGGER)
        assert len(logger.filters) == 1
        seen: list[str] = []  # a handler of its own: Ray's loggers may not propagate
        handler = logging.Handler(logging.WARNING)
        handler.emit = lambda record: seen.append(record.getMessage())
        logger.addHandler(handler)
        try:
            logger.warning("Token authentication is enabled for this Ray cluster. Set ...")
            logger.warning("Token authentication is disabled for this Ray cluster. Anyone ...")
        finally:
            logger.removeHandler(handler)
        assert len(seen) == 1 and "is disabled" in seen[0]
        assert logging.getLogger("ray.tune.tune").getEffectiveLevel() == logging.WARNING
    finally:
        optuna.logging.set_verbosity(before)
