"""The Tune callback that records each trial as an MLflow child run of its method's search.

Per epoch: the trial's metrics (``tracking.child_metrics``) and, when the epoch is the best so
far, its adapter copied out of the Train checkpoint; at the end, why and when the trial ended,
and a failed one's error. A trial restarted from its Train checkpoint first gets the epochs its
record lacks (search/trial_history.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from pathlib import Path
from typing import Any

from ray.train import Checkpoint
from ray.tune import Callback

from clear_ray.console import log
from clear_ray.methods import method_params
from clear_ray.search.strategy import ERROR, stop_reason
from clear_ray.search.trial_history import (
    append_results,
    restore_result_files,
    unrecorded_epochs,
)
from clear_ray.tracking import ADAPTER_ARTIFACT, SearchTracker, child_metrics
from clear_ray.train.keys import BEST_EPOCH, EPOCH, FEASIBLE
from clear_ray.train.selection import Thresholds


class TrialLogger(Callback):
    """Tune driver callback: a child run per trial, per-epoch metrics, the best epoch's adapter.

    A trial's params are the config's, with the trial's sampled values, less the method
    fields its method does not read (``methods.method_params``).

    The best epoch's adapter is copied out of the Train checkpoint when it is reported (Train
    may later delete checkpoints that are no longer among the best kept ones). Every trial
    is tagged with why it ended (``stopped``: completed, asha, retain_collapse or error, see
    ``search/strategy.py`` ``stop_reason``) and at which epoch; a failed one with its error.
    """

    def __init__(
        self,
        tracker: SearchTracker,
        base_params: dict[str, Any],
        adapters_dir: Path,
        thresholds: Thresholds,
        epochs: int,
        tags: dict[str, str],
        train_runs: str,  # where the trials' Train runs keep their checkpoints
        storage_filesystem=None,  # pyarrow filesystem of the checkpoints; None = local
    ) -> None:
        self.tracker = tracker
        self.train_runs = train_runs
        self.storage_filesystem = storage_filesystem
        self.base_params = base_params
        self.adapters_dir = adapters_dir
        self.thresholds = thresholds
        self.epochs = epochs
        self.tags = tags
        self.run_ids: dict[str, str] = {}
        self.stopping = False  # a stop for a tracking outage was asked of Tune

    def adapter_dir(self, trial_id: str) -> Path:
        return self.adapters_dir / trial_id

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        params = method_params({**self.base_params, **trial.config})
        self.run_ids[trial.trial_id] = self.tracker.start_child(trial.trial_id, params, self.tags)
        # Before Tune's own loggers open the trial's files (user callbacks come first).
        result_file = restore_result_files(trial)
        missing = unrecorded_epochs(self.train_runs, trial.trial_id, result_file, self.epochs)
        if missing:
            append_results(result_file, trial.trial_id, missing)
            for report in missing:
                self.log_epoch(trial, report)
            epochs = ", ".join(str(int(report[EPOCH])) for report in missing)
            log(f"[trial {trial.trial_id}] epoch(s) {epochs} recorded from its checkpoint")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.log_epoch(trial, result)

    def log_epoch(self, trial, result: dict[str, Any]) -> None:
        run_id = self.run_ids[trial.trial_id]
        step = int(result.get(EPOCH, result.get("training_iteration", 0)))
        self.tracker.log_metrics(run_id, child_metrics(result), step=step)
        checkpoint = result.get("checkpoint_path")
        if checkpoint and result.get(BEST_EPOCH) == result.get(EPOCH):
            # Through Train's Checkpoint: the storage may be remote (s3://, gs://, NFS).
            target = self.adapter_dir(trial.trial_id)
            shutil.rmtree(target, ignore_errors=True)
            Checkpoint(checkpoint, self.storage_filesystem).to_directory(str(target))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        run_id = self.run_ids.pop(trial.trial_id)
        last = trial.last_result or {}
        adapter = self.adapter_dir(trial.trial_id)
        if adapter.is_dir():
            self.tracker.log_artifacts(run_id, [adapter], artifact_path=ADAPTER_ARTIFACT)
        tags = {
            "feasible": bool(last.get(FEASIBLE, 0.0)),
            "best_epoch": int(last.get(BEST_EPOCH, -1)),
            "stopped": stop_reason(last, self.epochs, self.thresholds),
            "stopped_at_epoch": int(last.get(EPOCH, 0)),
        }
        self.tracker.finish(run_id, "FINISHED", tags)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        run_id = self.run_ids.pop(trial.trial_id, None)
        if run_id:
            last = trial.last_result or {}
            tags = {
                "feasible": False,
                "stopped": ERROR,
                "stopped_at_epoch": int(last.get(EPOCH, 0)),
                "error": error_reason(trial),
            }
            traceback = error_file(trial)
            if traceback:  # the whole traceback; the console and the tag have its last line
                self.tracker.log_artifacts(run_id, [traceback])
            self.tracker.finish(run_id, "FAILED", tags)

    def on_step_end(self, iteration, trials, **info) -> None:
        """Tune's loop turns about every second: deliver kept tracking calls once the server is
        back, and stop the search once it has been away past ``tracking.max_outage_s``.

        The stop is Tune's own graceful one (SIGUSR1, as Ctrl-C): it saves the experiment's
        state, with every finished trial, before ``fit`` returns, so ``--resume`` trains no
        finished trial again and goes on with the others from their last epoch checkpoints."""
        if self.tracker.heartbeat() and not self.stopping:
            self.stopping = True
            # Tune's warnings on the way out ("Stop signal received", "Trials did not
            # complete", its own restore command) would bury the one line the driver prints.
            logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)
            os.kill(os.getpid(), signal.SIGUSR1)


def error_file(trial) -> Path | None:
    """The driver's local copy of a failed trial's error (Tune syncs it to storage later)."""
    path = Path(trial.error_file) if getattr(trial, "error_file", None) else None
    return path if path and path.is_file() else None


def error_reason(trial) -> str:
    """The last line of a failed trial's error, e.g. ``FloatingPointError: ga loss became nan``.

    Read from the driver's local error file: Tune syncs it to storage only later.
    """
    path = error_file(trial)
    text = path.read_text() if path else ""
    lines = text.strip().splitlines()
    return lines[-1][:500] if lines else f"see {trial.local_path}/error.txt"
