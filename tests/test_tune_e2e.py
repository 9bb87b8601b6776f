"""`python -m clear_ray.tune` end to end: Ray Tune + Optuna + Ray Train + DeepSpeed + MLflow."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

SEARCHED = ("train.lr", "method.beta", "method.alpha", "regularizer.l1")


@pytest.fixture(scope="module")
def search(session_output: Path, synthetic_source: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "clear_ray.tune",
        "--method",
        "dpo",
        "--num-samples",
        "2",
        "--epochs",
        "1",
        "--output-dir",
        str(session_output),
        "--experiment",
        "e2e",
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def runs(search: subprocess.CompletedProcess, session_output: Path):
    assert search.returncode == 0, search.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("e2e")
    all_runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in all_runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_search_prints_the_trial_table_and_the_mlflow_command(search) -> None:
    assert "Trials (objective = log_forget_quality, feasible first)" in search.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in search.stdout


def test_one_parent_run_records_the_search(runs) -> None:
    client, parents, _ = runs
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["method"] == "dpo"
    assert parent.data.params["search.min_retain"] == "0.9"
    assert all(f"search_space.{path}" in parent.data.params for path in SEARCHED)
    assert {"original/retain_metric", "gold/forget_metric"} <= set(parent.data.metrics)
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "trials.md",
        "trials.csv",
    }


def test_each_trial_is_a_child_run_with_params_metrics_and_adapter(runs) -> None:
    client, parents, children = runs
    assert len(children) == 2
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.tags["feasible"] in ("True", "False")
        assert all(path in child.data.params for path in SEARCHED)
        assert child.data.params["method.name"] == "dpo"
        history = client.get_metric_history(child.info.run_id, "log_forget_quality")
        assert [m.step for m in history] == [1]
        assert {"retain_metric", "forget_metric", "forget_quality", "loss/dpo"} <= set(
            child.data.metrics
        )
        adapter = {a.path for a in client.list_artifacts(child.info.run_id, "best_adapter")}
        assert "best_adapter/adapter_model.safetensors" in adapter


def test_sampled_params_differ_between_trials(runs) -> None:
    _, _, children = runs
    learning_rates = {child.data.params["train.lr"] for child in children}
    assert len(learning_rates) == 2
