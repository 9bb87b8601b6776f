"""MLflow: one parent run per search, one child run per trial, written with MlflowClient.

Runs are created with an explicit parent id (tag ``mlflow.parentRunId``), never through the
process-local active-run stack, so the Tune callback can open and close child runs in any
order while trials overlap. Default store: SQLite + an artifact dir under the output dir,
always as absolute URIs (Tune changes the working directory of trials).
"""

from __future__ import annotations

import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from clear_ray.config import Config
from clear_ray.console import format_value, log
from clear_ray.errors import ConfigError
from clear_ray.search.outbox import Outbox, pending_child, substitute
from clear_ray.train.keys import (
    BEST_OBJECTIVE,
    BEST_PREFIX,
    BEST_SCORE,
    EPOCH,
    EPOCH_SCORE,
    FEASIBLE,
)
from clear_ray.train.selection import Thresholds

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "clear_ray.trial_id"
DESCRIPTION_TAG = "mlflow.note.content"  # the run page's Description (markdown)
FEASIBLE_OBJECTIVE = "feasible_objective"  # a child's best objective, only once feasible
ADAPTER_ARTIFACT = "best_adapter"
MODEL_ARTIFACT = "model"  # the registered pyfunc model (clear_ray/serving.py)
HEALTH_TIMEOUT_S = 5.0
PROBE_INTERVAL_S = 5.0  # how often an away server is asked for /health
# The MLflow client's own retries of a failed request. Its defaults (7 retries, backoff factor
# 2, a 120 s timeout) try a stopped server for about four minutes before a call fails, and the
# Tune loop waits all that time; with these, about 7 s. A user's own setting wins.
CLIENT_RETRIES = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}
UI_PORT = 5000  # of the local UI that ``ui_command`` starts
# MLflow 3's UI opens in its GenAI view (traces, evaluations) unless a page asks for the
# "Model training" one (runs, metrics, models), which is what a search is.
UI_VIEW = "?workflowType=machine_learning"
_TUNE_BOOKKEEPING = {
    EPOCH,
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
_SCHEDULER_ONLY = {BEST_SCORE, EPOCH_SCORE}


def tracking_uri(cfg: Config) -> str:
    return store_uri(cfg.tracking.tracking_uri, cfg.output_dir)


def store_uri(uri: str, output_dir: str) -> str:
    """``tracking.tracking_uri``, or the SQLite store of ``output_dir`` when it is empty."""
    return uri or f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


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
        reason = server_health(uri)
        if reason is not None:
            raise ConfigError(f"tracking URI {uri} is unreachable: {reason}")
        return
    try:
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
    except Exception as error:  # any store error means: not usable
        raise ConfigError(f"tracking URI {uri} is not usable: {first_line(error)}") from None


def server_health(uri: str) -> str | None:
    """None if the server at ``uri`` answers ``/health`` within ``HEALTH_TIMEOUT_S``, else why
    not; a store that is not a server is not asked."""
    if not is_server(uri):
        return None
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S):
            return None
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def bound_client_retries() -> None:
    for name, value in CLIENT_RETRIES.items():
        os.environ.setdefault(name, value)


def first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else repr(error)


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
    if result.get(FEASIBLE) and BEST_OBJECTIVE in result:
        metrics[FEASIBLE_OBJECTIVE] = result[BEST_OBJECTIVE]
    return metrics


def best_metrics(best: dict[str, float], objective: str) -> dict[str, float]:
    """The best trial's best-epoch values under ``best/``: ``best/<objective>``,
    ``best/clear/retain_metric``, ``best/constraint/min_retain``, ``best/epoch``... from a
    report's ``best_*`` keys (``train/selection.py`` ``BestEpoch.summary``); the scheduler's
    score is left out."""
    renamed = {
        f"best/{key.removeprefix(BEST_PREFIX)}": value
        for key, value in best.items()
        if key not in _SCHEDULER_ONLY and key != BEST_OBJECTIVE
    }
    if BEST_OBJECTIVE in best:
        renamed[f"best/{objective}"] = best[BEST_OBJECTIVE]
    return renamed


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
    values = ", ".join(f"`{name}={format_value(value)}`" for name, value in best_params.items())
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


class TrackingOutage(Exception):
    """The tracking server stayed away longer than ``tracking.max_outage_s``."""

    def __init__(self, uri: str, away_s: float, pending: int) -> None:
        super().__init__(f"MLflow server {uri} unreachable for {away_s:.0f} s")
        self.uri = uri
        self.away_s = away_s
        self.pending = pending


class SearchTracker:
    """The parent run of one search and the client every child run shares.

    With an ``outbox`` (the search's folder) and an HTTP server, the search does not depend on
    the server being up: a write that fails because the server does not answer its health
    check is kept in the outbox and delivered, in order, once the server is back (probed at
    most every ``PROBE_INTERVAL_S``); a read waits for it. Away longer than
    ``tracking.max_outage_s``, a read raises :class:`TrackingOutage`, and ``heartbeat`` says
    so to the Tune callback, which stops the search. An error of a server that answers its
    health check is a real error and is raised.
    """

    def __init__(self, cfg: Config, outbox: Path | None = None) -> None:
        self.uri = tracking_uri(cfg)
        bound_client_retries()
        self.client = MlflowClient(tracking_uri=self.uri)
        self.max_outage_s = cfg.tracking.max_outage_s
        self.away_since: float | None = None
        self.last_probe = 0.0
        self.outage: TrackingOutage | None = None  # set once away past the limit
        self.run_ids: dict[str, str] = {}  # pending child placeholder -> its run id
        self.parent_id: str | None = None
        self.outbox = None  # kept calls name this experiment: it comes first
        self.experiment_id = self._experiment(cfg)
        self.outbox = Outbox(outbox) if outbox and is_server(self.uri) else None

    def tracks(self, state) -> bool:
        """Whether the search of ``state`` (a SearchState) logs to this tracker's store."""
        flat = state.config
        return store_uri(flat.get("tracking.tracking_uri", ""), flat["output_dir"]) == self.uri

    def _experiment(self, cfg: Config) -> str:
        experiment = self.client.get_experiment_by_name(cfg.tracking.experiment)
        if experiment:
            return experiment.experiment_id
        return self.client.create_experiment(
            cfg.tracking.experiment, artifact_location=artifact_location(cfg, self.uri)
        )

    # -- the server's outages -------------------------------------------------------------

    def _away(self, error: Exception) -> bool:
        """Whether ``error`` came from a server that is not there (it then counts as away)."""
        if self.outbox is None or server_health(self.uri) is None:
            return False
        if self.away_since is None:
            self.away_since = time.monotonic()
            log(f"MLflow server {self.uri} unreachable; the search goes on, its tracking calls "
                f"kept in {self.outbox.path} until the server is back (at most "
                f"tracking.max_outage_s={self.max_outage_s:g} s)")  # fmt: skip
        self.last_probe = time.monotonic()
        return True

    def _deliver(self) -> bool:
        """Deliver what the outbox holds; True when it is empty and the server reachable.

        While away, the server is probed at most every ``PROBE_INTERVAL_S``."""
        if self.outbox is None:
            return True
        if self.away_since is not None:
            if time.monotonic() - self.last_probe < PROBE_INTERVAL_S:
                return False
            self.last_probe = time.monotonic()
            if server_health(self.uri) is not None:
                return False
        pending = self.outbox.pending()
        for done, op in enumerate(pending):
            try:
                self._apply(op)
            except Exception as error:
                if self._away(error):
                    self.outbox.replace(substitute(pending[done:], self.run_ids))
                    return False
                # Refused by a server that is up: it never will be taken; the rest goes on.
                log(f"MLflow refused a kept {op['op']} call for run {op.get('run_id')}: "
                    f"{first_line(error)}; dropped")  # fmt: skip
        if pending:
            self.outbox.replace([])
            log(f"MLflow server {self.uri} is back: {len(pending)} kept tracking call(s) "
                f"delivered")  # fmt: skip
        elif self.away_since is not None:
            log(f"MLflow server {self.uri} is back")
        self.away_since = None
        return True

    def _write(self, op: dict[str, Any]) -> None:
        """Apply ``op`` now, or keep it in the outbox behind what is already there.

        Kept, it names its run by id once the run exists: a trial that started while the
        server was away still holds the placeholder, and the next driver, which never saw
        the placeholder's run made, could not resolve it."""
        if self._deliver():
            try:
                self._apply(op)
                return
            except Exception as error:
                if not self._away(error):
                    raise
        (kept,) = substitute([op], self.run_ids)
        self.outbox.append(kept)

    def _needs_server(self, call, *args, **kwargs):
        """``call``'s answer, waiting for an away server up to ``tracking.max_outage_s``."""
        while True:
            if self._deliver():
                try:
                    return call(*args, **kwargs)
                except Exception as error:
                    if not self._away(error):
                        raise
            if self.heartbeat():
                raise self.outage
            time.sleep(PROBE_INTERVAL_S)

    def wait_delivered(self) -> None:
        """Return once every kept call reached the server (a search's last step: it must not
        end with calls still in its outbox); raises :class:`TrackingOutage` past the limit."""
        self._needs_server(lambda: None)

    def heartbeat(self) -> bool:
        """Deliver what waits if the server is back; True once it has been away past the
        limit (``self.outage`` then says for how long)."""
        if self.outage is None and not self._deliver() and self.away_since is not None:
            away = time.monotonic() - self.away_since
            if away > self.max_outage_s:
                self.outage = TrackingOutage(self.uri, away, len(self.outbox.pending()))
        return self.outage is not None

    def _apply(self, op: dict[str, Any]) -> None:
        kind, run_id = op["op"], self.run_ids.get(op.get("run_id", ""), op.get("run_id"))
        if kind == "start_child":
            self.run_ids[op["placeholder"]] = self._start_child(
                op["parent_id"], op["trial"], op["params"], op["tags"]
            )
        elif kind == "params":
            items = [Param(key, value) for key, value in op["params"].items()]
            for start in range(0, len(items), 100):  # MLflow's batch limit
                self.client.log_batch(run_id, params=items[start : start + 100])
        elif kind == "metrics":
            metrics = [
                Metric(key, value, timestamp=0, step=op["step"])
                for key, value in op["metrics"].items()
            ]
            for start in range(0, len(metrics), 1000):
                self.client.log_batch(run_id, metrics=metrics[start : start + 1000])
        elif kind == "tags":
            for key, value in op["tags"].items():
                self.client.set_tag(run_id, key, value)
        elif kind == "status":
            for key, value in op["tags"].items():
                self.client.set_tag(run_id, key, value)
            if op["status"] == "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            else:
                self.client.set_terminated(run_id, status=op["status"])
        elif kind == "artifacts":
            self._log_artifacts(run_id, op["paths"], op["artifact_path"])
        elif kind == "delete":
            self.client.delete_run(run_id)
        else:
            raise ValueError(f"unknown tracking operation {kind!r}")

    def _log_artifacts(self, run_id: str, paths: list[str], artifact_path: str | None) -> None:
        for path in map(Path, paths):
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path=artifact_path)
            elif path.is_file():
                self.client.log_artifact(run_id, str(path), artifact_path=artifact_path)
            else:  # kept while the server was away, and gone since
                log(f"MLflow: {path} no longer exists; not logged to run {run_id}")

    # -- runs -----------------------------------------------------------------------------

    def start_parent(
        self,
        name: str,
        params: dict[str, Any],
        tags: dict[str, str],
        parent_id: str | None = None,
    ) -> str:
        """A search's run (nested under ``parent_id`` when one search of ``--method all``)."""
        tags = {**tags, PARENT_TAG: parent_id} if parent_id else tags
        run = self._needs_server(
            self.client.create_run, self.experiment_id, run_name=name, tags=tags
        )
        self.parent_id = run.info.run_id
        self.log_params(self.parent_id, params)
        return self.parent_id

    def reopen(self, run_id: str) -> str:
        """Continue a run of an interrupted search (``--resume``)."""
        self._write({"op": "status", "run_id": run_id, "status": "RUNNING", "tags": {}})
        self.parent_id = run_id
        return run_id

    def find_child(self, trial_id: str) -> str | None:
        """The child run already opened for ``trial_id`` (a resumed trial must not get two)."""
        return self._needs_server(self._find_child, self.parent_id, trial_id)

    def _find_child(self, parent_id: str, trial_id: str) -> str | None:
        query = f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{TRIAL_TAG}` = '{trial_id}'"
        runs = self.client.search_runs([self.experiment_id], filter_string=query)
        return runs[0].info.run_id if runs else None

    def child_ids(self) -> dict[str, str]:
        """Tune trial id -> MLflow run id of this search's children."""
        runs = self.children()
        return {
            run.data.tags[TRIAL_TAG]: run.info.run_id for run in runs if TRIAL_TAG in run.data.tags
        }

    def children(self) -> list:
        return self._needs_server(
            self.client.search_runs,
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{self.parent_id}'",
        )

    def delete_runs(self, run_ids: list[str]) -> None:
        """Delete runs that count for nothing (MLflow keeps them as deleted until ``mlflow gc``);
        search_runs no longer returns them."""
        for run_id in run_ids:
            self._write({"op": "delete", "run_id": run_id})

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
        registered before (a search resumed after its registration) keeps its version.
        Needs the server (``model_dir`` may be temporary): waits for an away one."""
        return self._needs_server(
            self._register_model, model_name, run_id, model_dir, tags, description, alias
        )

    def _register_model(self, model_name, run_id, model_dir, tags, description, alias) -> int:
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
        self._log_artifacts(run_id, [str(model_dir)], MODEL_ARTIFACT)
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
        version = self.client.create_model_version(
            model_name, source=source, run_id=run_id, tags=tags, description=description
        )
        self.client.set_registered_model_alias(model_name, alias, version.version)
        return int(version.version)

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        values = {key: str(value) for key, value in params.items()}
        self._write({"op": "params", "run_id": run_id, "params": values})

    def log_metrics(
        self, run_id: str, values: dict[str, Any], step: int = 0, prefix: str = ""
    ) -> None:
        metrics = {f"{prefix}{key}": value for key, value in _float_metrics(values).items()}
        self._write({"op": "metrics", "run_id": run_id, "metrics": metrics, "step": step})

    def start_child(
        self, trial_id: str, params: dict[str, Any], tags: dict[str, str] | None = None
    ) -> str:
        """The trial's child run (its earlier one on a resume); while the server is away, a
        placeholder that the outbox's operations name until the run is made."""
        op = {
            "op": "start_child",
            "placeholder": pending_child(trial_id),
            "parent_id": self.parent_id,
            "trial": trial_id,
            "params": {key: str(value) for key, value in params.items()},
            "tags": {key: str(value) for key, value in (tags or {}).items()},
        }
        self._write(op)
        return self.run_ids.get(op["placeholder"], op["placeholder"])

    def _start_child(
        self, parent_id: str, trial_id: str, params: dict[str, str], tags: dict[str, str]
    ) -> str:
        existing = self._find_child(parent_id, trial_id)
        if existing:
            self.client.update_run(existing, status="RUNNING")
            return existing
        tags = {**tags, PARENT_TAG: parent_id, TRIAL_TAG: trial_id}
        run = self.client.create_run(self.experiment_id, run_name=trial_id, tags=tags)
        self._apply({"op": "params", "run_id": run.info.run_id, "params": params})
        return run.info.run_id

    def finish(
        self, run_id: str, status: str = "FINISHED", tags: dict[str, Any] | None = None
    ) -> None:
        values = {key: str(value) for key, value in (tags or {}).items()}
        self._write({"op": "status", "run_id": run_id, "status": status, "tags": values})

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        values = {key: str(value) for key, value in tags.items()}
        self._write({"op": "tags", "run_id": run_id, "tags": values})

    def describe(self, run_id: str, text: str) -> None:
        """The run page's Description (markdown)."""
        self.set_tags(run_id, {DESCRIPTION_TAG: text})

    def run_url(self, run_id: str) -> str | None:
        """The run's page on an MLflow server; None for a local store (no server to link)."""
        return self.run_page(run_id) if is_server(self.uri) else None

    def run_page(self, run_id: str) -> str:
        """The run's page on the server, or on the local UI once ``ui_command`` runs."""
        return f"{ui_address(self.uri)}/#/experiments/{self.experiment_id}/runs/{run_id}{UI_VIEW}"

    def log_artifacts(
        self, run_id: str, paths: Iterable[Path], artifact_path: str | None = None
    ) -> None:
        op = {
            "op": "artifacts",
            "run_id": run_id,
            "paths": [str(Path(path).resolve()) for path in paths],
            "artifact_path": artifact_path,
        }
        self._write(op)
