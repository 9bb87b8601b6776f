"""Third-party console noise is silenced; real warnings are not."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import optuna
import pytest

from clear_ray.runtime.ray_compat import RAY_TOKEN_LOGGER
from clear_ray.search.quiet import TUNE_SLOW_CALL_S, quiet_console


def test_quiet_console_drops_only_the_notes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_AIR_NEW_OUTPUT", raising=False)
    monkeypatch.delenv("TUNE_PRINT_ALL_TRIAL_ERRORS", raising=False)
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    before = optuna.logging.get_verbosity()
    try:
        quiet_console()
        quiet_console()  # twice: still one filter
        assert os.environ["RAY_AIR_NEW_OUTPUT"] == "0"
        assert os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] == "0"  # one line per failed trial
        assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
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
        tune_logger = logging.getLogger("ray.tune.tune")
        assert tune_logger.getEffectiveLevel() == logging.WARNING
        tune_logger.addHandler(handler)
        try:
            tune_logger.error("Trials did not complete: [run_trial_d3c243d3]")
            tune_logger.error("Experiment state snapshotting failed")
        finally:
            tune_logger.removeHandler(handler)
        assert seen[1:] == ["Experiment state snapshotting failed"]
    finally:
        optuna.logging.set_verbosity(before)


def test_tune_names_only_callbacks_slower_than_five_seconds() -> None:
    """Tune reads its threshold when ``ray.tune`` is first imported: after quiet_console in a
    search driver (a fresh process here; this one may have imported Tune already)."""
    code = (
        "import os; os.environ.pop('TUNE_WARN_THRESHOLD_S', None)\n"
        "from clear_ray.search.quiet import quiet_console\n"
        "quiet_console()\n"
        "from ray.tune.utils.util import warn_if_slow\n"
        "print(warn_if_slow.DEFAULT_THRESHOLD)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == str(TUNE_SLOW_CALL_S) == "5.0", result.stderr[-2000:]
