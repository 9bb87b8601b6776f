"""MLflow: one parent run per search, one child run per trial, written with MlflowClient.

Runs are created with an explicit parent id (tag ``mlflow.parentRunId``), never through the
process-local active-run stack, so the Tune callback can open and close child runs in any
order while trials overlap. Default store: SQLite + an artifact dir under the output dir,
always as absolute URIs (Tune changes the working directory of trials).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from clear_ray.config import Config

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "clear_ray.trial_id"
ADAPTER_ARTIFACT = "best_adapter"
_TUNE_BOOKKEEPING = {
    "epoch",
    "training_iteration",
    "time_this_iter_s",
    "time_total_s",
    "timestamp",
    "time_since_restore",
    "iterations_since_restore",
    "pid",
}


def tracking_uri(cfg: Config) -> str:
    if cfg.tracking.tracking_uri:
        return cfg.tracking.tracking_uri
    return f"sqlite:///{Path(cfg.output_dir).resolve() / 'mlflow.db'}"


def artifact_location(cfg: Config) -> str:
    return (Path(cfg.output_dir).resolve() / "mlartifacts").as_uri()


def ui_command(uri: str) -> str:
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"


def _float_metrics(values: dict[str, Any]) -> dict[str, float]:
    """Finite numeric values only (MLflow rejects the rest; Tune adds strings and dicts)."""
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


class SearchTracker:
    """The parent run of one search and the client every child run shares."""

    def __init__(self, cfg: Config) -> None:
        self.uri = tracking_uri(cfg)
        self.client = MlflowClient(tracking_uri=self.uri)
        experiment = self.client.get_experiment_by_name(cfg.tracking.experiment)
        self.experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(
                cfg.tracking.experiment, artifact_location=artifact_location(cfg)
            )
        )
        self.parent_id: str | None = None

    def start_parent(self, name: str, params: dict[str, Any], tags: dict[str, str]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.parent_id = run.info.run_id
        self.log_params(self.parent_id, params)
        return self.parent_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        items = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(
        self, run_id: str, values: dict[str, Any], step: int = 0, prefix: str = ""
    ) -> None:
        metrics = [
            Metric(f"{prefix}{key}", value, timestamp=0, step=step)
            for key, value in _float_metrics(values).items()
        ]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(run_id, metrics=metrics[start : start + 1000])

    def start_child(self, trial_id: str, params: dict[str, Any]) -> str:
        tags = {PARENT_TAG: self.parent_id, TRIAL_TAG: trial_id}
        run = self.client.create_run(self.experiment_id, run_name=trial_id, tags=tags)
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def finish(
        self, run_id: str, status: str = "FINISHED", tags: dict[str, Any] | None = None
    ) -> None:
        for key, value in (tags or {}).items():
            self.client.set_tag(run_id, key, str(value))
        self.client.set_terminated(run_id, status=status)

    def log_artifacts(
        self, run_id: str, paths: Iterable[Path], artifact_path: str | None = None
    ) -> None:
        for path in paths:
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=artifact_path)
            else:
                self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)


class TrialLogger(Callback):
    """Tune driver callback: a child run per trial, per-epoch metrics, the best epoch's adapter.

    The best epoch's adapter is copied out of the Train checkpoint when it is reported (Train
    may later delete checkpoints that are no longer among the best kept ones).
    """

    def __init__(
        self, tracker: SearchTracker, base_params: dict[str, Any], adapters_dir: Path
    ) -> None:
        self.tracker = tracker
        self.base_params = base_params
        self.adapters_dir = adapters_dir
        self.run_ids: dict[str, str] = {}

    def adapter_dir(self, trial_id: str) -> Path:
        return self.adapters_dir / trial_id

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        params = {**self.base_params, **trial.config}
        self.run_ids[trial.trial_id] = self.tracker.start_child(trial.trial_id, params)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        run_id = self.run_ids[trial.trial_id]
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        metrics = {k: v for k, v in result.items() if k not in _TUNE_BOOKKEEPING}
        self.tracker.log_metrics(run_id, metrics, step=step)
        checkpoint = result.get("checkpoint_path")
        if checkpoint and result.get("best_epoch") == result.get("epoch"):
            target = self.adapter_dir(trial.trial_id)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(checkpoint, target)

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        run_id = self.run_ids.pop(trial.trial_id)
        last = trial.last_result or {}
        adapter = self.adapter_dir(trial.trial_id)
        if adapter.is_dir():
            self.tracker.log_artifacts(run_id, [adapter], artifact_path=ADAPTER_ARTIFACT)
        tags = {
            "feasible": bool(last.get("feasible", 0.0)),
            "best_epoch": int(last.get("best_epoch", -1)),
        }
        self.tracker.finish(run_id, "FINISHED", tags)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        run_id = self.run_ids.pop(trial.trial_id, None)
        if run_id:
            error = getattr(trial, "error_file", None) or "see the Tune trial folder"
            self.tracker.finish(run_id, "FAILED", {"feasible": False, "error": error})
