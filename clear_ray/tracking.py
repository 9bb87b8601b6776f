"""MLflow: one parent run per search, one child run per trial, written with MlflowClient.

Runs are created with an explicit parent id (tag ``mlflow.parentRunId``), never through the
process-local active-run stack, so the Tune callback can open and close child runs in any
order while trials overlap. Default store: SQLite + an artifact dir under the output dir,
always as absolute URIs (Tune changes the working directory of trials).
"""

from __future__ import annotations

import math
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray.train import Checkpoint
from ray.tune import Callback

from clear_ray.config import Config, ConfigError
from clear_ray.report.paired import SeedComparison
from clear_ray.search.strategy import ERROR, stop_reason
from clear_ray.train.selection import Thresholds

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "clear_ray.trial_id"
DESCRIPTION_TAG = "mlflow.note.content"  # the run page's Description (markdown)
FEASIBLE_OBJECTIVE = "feasible_objective"  # a child's best objective, only once feasible
ADAPTER_ARTIFACT = "best_adapter"
MODEL_ARTIFACT = "model"  # the registered pyfunc model (clear_ray/serving.py)
HEALTH_TIMEOUT_S = 5.0
UI_PORT = 5000  # of the local UI that ``ui_command`` starts
# MLflow 3's UI opens in its GenAI view (traces, evaluations) unless a page asks for the
# "Model training" one (runs, metrics, models), which is what a search is.
UI_VIEW = "?workflowType=machine_learning"
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
# Rankings for Tune (ASHA, checkpoint order) in which an infeasible epoch scores about −1e6:
# on a chart they flatten every other value, so MLflow never sees them.
_SCHEDULER_ONLY = {"best_score", "epoch_score"}


def tracking_uri(cfg: Config) -> str:
    if cfg.tracking.tracking_uri:
        return cfg.tracking.tracking_uri
    return f"sqlite:///{Path(cfg.output_dir).resolve() / 'mlflow.db'}"


def artifact_location(cfg: Config, uri: str) -> str | None:
    """Local stores keep artifacts under the output dir; a server stores (proxies) its own, so
    trials on other nodes never write to a path of the driver."""
    if is_server(uri):
        return None
    return (Path(cfg.output_dir).resolve() / "mlartifacts").as_uri()


def check_tracking_uri(uri: str) -> None:
    """Fail with one line before any work when the tracking store cannot be used.

    An HTTP server is asked for ``/health`` with a short timeout (the MLflow client itself
    retries for minutes); any other store is opened once.
    """
    if is_server(uri):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S):
                return
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ConfigError(f"tracking URI {uri} is unreachable: {reason}") from None
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as error:  # any store error means: not usable
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise ConfigError(f"tracking URI {uri} is not usable: {first_line}") from None


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def ui_command(uri: str) -> str:
    """One worker: the default four did not answer on a 2-core machine (and SQLite serialises
    writes anyway)."""
    return f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port {UI_PORT} --workers 1"


def ui_address(uri: str) -> str:
    """Where the UI of ``uri`` answers: the server itself, or ``ui_command``'s local one."""
    return uri.rstrip("/") if is_server(uri) else f"http://127.0.0.1:{UI_PORT}"


def where_to_look(uri: str, experiment_id: str) -> str:
    """The console's first MLflow line: the experiment's page, and for a local store the
    command that serves it first."""
    page = f"{ui_address(uri)}/#/experiments/{experiment_id}/runs{UI_VIEW}"
    return page if is_server(uri) else f"{ui_command(uri)}  then open {page}"


def _float_metrics(values: dict[str, Any]) -> dict[str, float]:
    """Finite numeric values only (MLflow rejects the rest; Tune adds strings and dicts)."""
    return {
        key: float(value)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


def child_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """A trial's epoch report as its child run logs it: no Tune bookkeeping, no scheduler
    score, and ``feasible_objective`` (the best objective) once the trial is feasible, so
    sorting children by it lists feasible trials only, best first."""
    metrics = {
        key: value
        for key, value in result.items()
        if key not in _TUNE_BOOKKEEPING and key not in _SCHEDULER_ONLY
    }
    if result.get("feasible") and "best_objective" in result:
        metrics[FEASIBLE_OBJECTIVE] = result["best_objective"]
    return metrics


def best_metrics(best: dict[str, float], objective: str) -> dict[str, float]:
    """The best trial's best-epoch values under ``best/``: ``best/<objective>``,
    ``best/clear/retain_metric``, ``best/constraint/min_retain``, ``best/epoch``... from a
    report's ``best_*`` keys (``train/selection.py`` ``BestEpoch.summary``); the scheduler's
    score is left out."""
    renamed = {
        f"best/{key.removeprefix('best_')}": value
        for key, value in best.items()
        if key not in _SCHEDULER_ONLY and key != "best_objective"
    }
    if "best_objective" in best:
        renamed[f"best/{objective}"] = best["best_objective"]
    return renamed


def comparison_metrics(comparison: SeedComparison) -> dict[str, float]:
    """The method run's ``confirm/*`` summary of tuned − default over the confirm seeds (the
    per-seed differences are ``confirm/difference`` at step = seed, logged beside these)."""
    low, high = comparison.interval or (math.nan, math.nan)
    return {
        "confirm/pairs": len(comparison.differences),
        "confirm/difference_mean": comparison.mean,
        "confirm/difference_low": low,
        "confirm/difference_high": high,
        "confirm/sign_flip_p": comparison.p_sign_flip,
    }


def search_description(
    method: str,
    objective: str,
    thresholds: Thresholds,
    best_trial: str | None,
    best_run: str | None,
    best_params: dict[str, Any],
) -> str:
    """The parent run's Description: what was searched and where its best trial is."""
    lines = [
        f"**{method}** search: maximise `{objective}` subject to {thresholds.describe()}.",
        "",
    ]
    if best_trial is None:
        lines.append("No trial met the thresholds: lower `--min-retain` or widen the space.")
        return "\n".join(lines)
    values = ", ".join(f"`{name}={_short(value)}`" for name, value in best_params.items())
    lines += [
        f"Best feasible trial: **{best_trial}** ({values}); its best-epoch values are the "
        f"`best/*` metrics and `best.*` params of this run, its full evaluation the `final/*` "
        f"metrics.",
        "",
        f"Open it: the child run `{best_run or best_trial}` (sort the child runs by "
        f"`{FEASIBLE_OBJECTIVE}`, descending); its adapter is the artifact "
        f"`{ADAPTER_ARTIFACT}/`.",
    ]
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


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
                cfg.tracking.experiment, artifact_location=artifact_location(cfg, self.uri)
            )
        )
        self.parent_id: str | None = None

    def start_parent(
        self,
        name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        parent_id: str | None = None,
    ) -> str:
        """A search's run (nested under ``parent_id`` when one search of ``--method all``)."""
        tags = {**tags, PARENT_TAG: parent_id} if parent_id else tags
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.parent_id = run.info.run_id
        self.log_params(self.parent_id, params)
        return self.parent_id

    def reopen(self, run_id: str) -> str:
        """Continue a run of an interrupted search (``--resume``)."""
        self.client.update_run(run_id, status="RUNNING")
        self.parent_id = run_id
        return run_id

    def find_child(self, trial_id: str) -> str | None:
        """The child run already opened for ``trial_id`` (a resumed trial must not get two)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`{PARENT_TAG}` = '{self.parent_id}' and tags.`{TRIAL_TAG}` = '{trial_id}'"
            ),
        )
        return runs[0].info.run_id if runs else None

    def child_ids(self) -> dict[str, str]:
        """Tune trial id -> MLflow run id of this search's children."""
        runs = self.children()
        return {
            run.data.tags[TRIAL_TAG]: run.info.run_id for run in runs if TRIAL_TAG in run.data.tags
        }

    def children(self) -> list:
        return self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_id}'"
        )

    def delete_runs(self, run_ids: list[str]) -> None:
        """Delete runs that count for nothing (MLflow keeps them as deleted until ``mlflow gc``);
        search_runs no longer returns them."""
        for run_id in run_ids:
            self.client.delete_run(run_id)

    def register_model(
        self,
        model_name: str,
        run_id: str,
        model_dir: Path,
        tags: dict[str, str],
        description: str,
        alias: str,
    ) -> int:
        """Log an MLflow model directory to ``run_id`` as ``model/`` and register it as a new
        version of ``model_name`` with tags, a description and ``alias`` (moved to it). A run
        registered before (a search resumed after its registration) keeps its version."""
        try:
            self.client.create_registered_model(model_name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        query = f"name = '{model_name}' and run_id = '{run_id}'"
        earlier = self.client.search_model_versions(query)
        if earlier:
            version = max(int(v.version) for v in earlier)
            self.client.set_registered_model_alias(model_name, alias, str(version))
            return version
        self.log_artifacts(run_id, [model_dir], artifact_path=MODEL_ARTIFACT)
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
        version = self.client.create_model_version(
            model_name, source=source, run_id=run_id, tags=tags, description=description
        )
        self.client.set_registered_model_alias(model_name, alias, version.version)
        return int(version.version)

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

    def start_child(
        self, trial_id: str, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> str:
        existing = self.find_child(trial_id)
        if existing:
            self.client.update_run(existing, status="RUNNING")
            return existing
        tags = {**(tags or {}), PARENT_TAG: self.parent_id, TRIAL_TAG: trial_id}
        run = self.client.create_run(self.experiment_id, run_name=trial_id, tags=tags)
        self.log_params(run.info.run_id, params)
        return run.info.run_id

    def finish(
        self, run_id: str, status: str = "FINISHED", tags: dict[str, Any] | None = None
    ) -> None:
        for key, value in (tags or {}).items():
            self.client.set_tag(run_id, key, str(value))
        self.client.set_terminated(run_id, status=status)

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, str(value))

    def describe(self, run_id: str, text: str) -> None:
        """The run page's Description (markdown)."""
        self.client.set_tag(run_id, DESCRIPTION_TAG, text)

    def run_url(self, run_id: str) -> str | None:
        """The run's page on an MLflow server; None for a local store (no server to link)."""
        return self.run_page(run_id) if is_server(self.uri) else None

    def run_page(self, run_id: str) -> str:
        """The run's page on the server, or on the local UI once ``ui_command`` runs."""
        return f"{ui_address(self.uri)}/#/experiments/{self.experiment_id}/runs/{run_id}{UI_VIEW}"

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
        storage_filesystem=None,  # pyarrow filesystem of the checkpoints; None = local
    ) -> None:
        self.tracker = tracker
        self.storage_filesystem = storage_filesystem
        self.base_params = base_params
        self.adapters_dir = adapters_dir
        self.thresholds = thresholds
        self.epochs = epochs
        self.tags = tags
        self.run_ids: dict[str, str] = {}

    def adapter_dir(self, trial_id: str) -> Path:
        return self.adapters_dir / trial_id

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        params = {**self.base_params, **trial.config}
        self.run_ids[trial.trial_id] = self.tracker.start_child(trial.trial_id, params, self.tags)

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        run_id = self.run_ids[trial.trial_id]
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        self.tracker.log_metrics(run_id, child_metrics(result), step=step)
        checkpoint = result.get("checkpoint_path")
        if checkpoint and result.get("best_epoch") == result.get("epoch"):
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
            "feasible": bool(last.get("feasible", 0.0)),
            "best_epoch": int(last.get("best_epoch", -1)),
            "stopped": stop_reason(last, self.epochs, self.thresholds),
            "stopped_at_epoch": int(last.get("epoch", 0)),
        }
        self.tracker.finish(run_id, "FINISHED", tags)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        run_id = self.run_ids.pop(trial.trial_id, None)
        if run_id:
            last = trial.last_result or {}
            tags = {
                "feasible": False,
                "stopped": ERROR,
                "stopped_at_epoch": int(last.get("epoch", 0)),
                "error": error_reason(trial),
            }
            self.tracker.finish(run_id, "FAILED", tags)


def error_reason(trial) -> str:
    """The last line of a failed trial's error, e.g. ``FloatingPointError: ga loss became nan``.

    Read from the driver's local error file: Tune syncs it to storage only later.
    """
    error_file = Path(trial.error_file) if getattr(trial, "error_file", None) else None
    text = error_file.read_text() if error_file and error_file.is_file() else ""
    lines = text.strip().splitlines()
    return lines[-1][:500] if lines else f"see {trial.local_path}/error.txt"
