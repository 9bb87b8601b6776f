"""The browser check: a 2-trial search against a real `mlflow server` (SQLite, 127.0.0.1), then
the tree a user sees in the UI, read through MLflow's REST API (what the UI itself calls)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_scale import SESSION_SET

from clear_ray.mlflow_server import mlflow_server

pytestmark = pytest.mark.slow

API = "/api/2.0/mlflow"
EXPERIMENT = "over-http"
METHOD = "ga"


def rest(server: str, endpoint: str, body: dict | None = None, **query: str) -> dict:
    """GET ``endpoint`` with ``query``, or POST ``body`` as JSON; the decoded answer."""
    url = f"{server}{API}/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=30) as reply:
        return json.load(reply)


def flat(run: dict, field: str) -> dict:
    """A run's ``metrics``/``params``/``tags`` list of key-value pairs as a dict."""
    return {item["key"]: item["value"] for item in run["data"].get(field, [])}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow_server")
    with mlflow_server(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts") as url:
        yield url


@pytest.fixture(scope="module")
def search(server: str, session_output: Path, synthetic_source: str) -> str:
    command = [
        sys.executable, "-m", "clear_ray.tune", "--method", METHOD, "--num-samples", "2",
        "--confirm-seeds", "0",
        "--epochs", "1", "--output-dir", str(session_output), "--tracking-uri", server,
        "--experiment", EXPERIMENT, "--set", "eval.generate=false", "--robustness", "none",
        *SESSION_SET,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.fixture(scope="module")
def tree(server: str, search: str) -> tuple[dict, list[dict]]:
    experiment = rest(server, "experiments/get-by-name", experiment_name=EXPERIMENT)
    runs = rest(
        server, "runs/search", {"experiment_ids": [experiment["experiment"]["experiment_id"]]}
    )["runs"]
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in flat(run, "tags")]
    children = [run for run in runs if "mlflow.parentRunId" in flat(run, "tags")]
    return parent, children


def feasible(run: dict) -> bool:
    return flat(run, "tags").get("feasible") == "True"


def top_runs(children: list[dict]) -> set[str]:
    """Run ids of the feasible children with the highest objective (ties: all of them)."""
    values = {c["info"]["run_id"]: flat(c, "metrics").get("feasible_objective") for c in children}
    present = [value for value in values.values() if value is not None]
    return {run_id for run_id, value in values.items() if present and value == max(present)}


def test_console_starts_with_the_run_page_and_ends_each_trial_with_why(
    server: str, search: str, tree
) -> None:
    parent, _ = tree
    assert f"MLflow: {server}/#/experiments/" in search
    assert f"MLflow run {server}/#/experiments/" in search
    assert parent["info"]["run_id"] in search
    assert search.count("completed 1/1 epochs") == 2
    assert "[search] 2/2 trials done" in search


def test_parent_has_a_description_and_the_best_trial(tree) -> None:
    parent, children = tree
    assert parent["info"]["status"] == "FINISHED"
    description = flat(parent, "tags")["mlflow.note.content"]
    assert f"**{METHOD}** search" in description
    params, metrics = flat(parent, "params"), flat(parent, "metrics")
    assert any(key.startswith("search_space.") for key in params)
    if not any(feasible(child) for child in children):
        assert "No trial met the thresholds" in description
        return
    assert {"best/log_forget_quality", "best/clear/forget_metric"} <= set(metrics)
    assert "best.train.lr" in params


def test_children_sort_by_the_feasible_objective(server: str, tree) -> None:
    parent, children = tree
    parent_id = parent["info"]["run_id"]
    assert len(children) == 2
    for child in children:
        tags = flat(child, "tags")
        assert tags["mlflow.parentRunId"] == parent_id
        assert tags["stopped"] == "completed" and tags["stopped_at_epoch"] == "1"
        assert ("feasible_objective" in flat(child, "metrics")) == feasible(child)
    ordered = rest(
        server,
        "runs/search",
        {
            "experiment_ids": [parent["info"]["experiment_id"]],
            "filter": f"tags.`mlflow.parentRunId` = '{parent_id}'",
            "order_by": ["metrics.`feasible_objective` DESC"],
        },
    )["runs"]
    values = [flat(run, "metrics").get("feasible_objective") for run in ordered]
    present = [value for value in values if value is not None]
    assert values[: len(present)] == sorted(present, reverse=True)  # feasible first, best first
    if present:
        assert flat(parent, "metrics")["best/log_forget_quality"] == present[0]
        description = flat(parent, "tags")["mlflow.note.content"]
        assert any(run_id in description for run_id in top_runs(children))  # ties: either


def test_registry_model_points_at_the_best_feasible_trial(server: str, tree) -> None:
    _, children = tree
    name = f"clear_ray-{METHOD}"
    best = [c for c in children if feasible(c)]
    if not best:
        with pytest.raises(urllib.error.HTTPError):
            rest(server, "registered-models/get", name=name)
        return
    model = rest(server, "registered-models/get", name=name)["registered_model"]
    versions = rest(server, "model-versions/search", filter=f"name='{name}'")["model_versions"]
    assert len(versions) == 1 and versions[0]["run_id"] in top_runs(children)
    (alias,) = [a for a in model["aliases"] if a["alias"] == "best"]
    assert alias["version"] == versions[0]["version"]


def test_artifacts_are_served_by_the_server_not_a_driver_path(server: str, tree) -> None:
    _, children = tree
    child = children[0]
    assert child["info"]["artifact_uri"].startswith("mlflow-artifacts:")
    files = rest(server, "artifacts/list", run_id=child["info"]["run_id"], path="best_adapter")
    assert "best_adapter/adapter_model.safetensors" in {f["path"] for f in files["files"]}
