"""Third-party console lines that tell a search's user nothing, silenced in the search driver.

Each is either a note about the library's own defaults or a hint for a tool this project does
not use; what is left is ours (progress, failures) and real warnings from any library.
"""

from __future__ import annotations

import logging
import os

import optuna

from clear_ray.runtime.ray_compat import RAY_TOKEN_LOGGER

# Ray's note that a new local cluster uses token authentication (its default); the warning that
# authentication is *disabled* is kept.
RAY_TOKEN_NOTE = "Token authentication is enabled for this Ray cluster"
# INFO lines at a level of detail no user acts on: Tune's "Wrote the latest version of all result
# files", MLflow's "Creating initial MLflow database tables".
INFO_LOGGERS = ("ray.tune.tune", "mlflow.store.db.utils")
TUNE_SLOW_CALL_S = 5.0
# Tune's closing list of trials that ended in error: each had its own FAILED line.
TUNE_INCOMPLETE_NOTE = "Trials did not complete"


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def quiet_console() -> None:
    """Call once in the driver, before ``ray.init``.

    Tune's new console output prints an experiment box, the results path and a TensorBoard
    hint even with ``verbose=0``; its legacy output (``RAY_AIR_NEW_OUTPUT=0``) prints nothing
    at ``verbose=0``, and our ``ProgressPrinter`` reports the trials. Optuna logs every study
    it creates or loads at INFO. MLflow draws a download bar for every artifact it copies
    while the best model is saved.
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Tune logs each failed attempt of a trial with its whole traceback (~45 lines); the
    # ProgressPrinter says it in one line that points to the trial's error.txt, which has it.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Tune warns when a callback takes over 0.5 s ("may be a performance bottleneck"): the
    # trial logger's MLflow calls and adapter copy take that on a loaded machine, four lines
    # each time. At 5 s a real stall (a tracking server that hangs) is still named.
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", str(TUNE_SLOW_CALL_S))
    # MLflow prints "View run <trial> at: <url>" and "View experiment at: <url>" to stdout for
    # every run it ends on a server: two lines per trial among ours (the search says once
    # where its runs are).
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    token_logger = logging.getLogger(RAY_TOKEN_LOGGER)
    if not any(isinstance(f, _DropMessage) for f in token_logger.filters):
        token_logger.addFilter(_DropMessage(RAY_TOKEN_NOTE))
    for name in INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    tune_logger = logging.getLogger("ray.tune.tune")
    if not any(isinstance(f, _DropMessage) for f in tune_logger.filters):
        tune_logger.addFilter(_DropMessage(TUNE_INCOMPLETE_NOTE))
