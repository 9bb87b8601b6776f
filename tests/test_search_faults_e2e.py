"""Faults and early stops inside a real search: a NaN trial fails with its reason, a collapsed
trial is stopped at once, and the next trial still runs to completion (no placement-group hang:
clear_ray/runtime/cleanup.py). A grid makes the three trials deterministic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from e2e_scale import SESSION_SET
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

# GA on the tiny model: lr 1e30 overflows the weights (NaN loss at step 2), lr 1.0 drives
# retain_metric to ~0 in one epoch (below the default floor, 0.5 × Original's), lr 1e-6 is inert.
# The grid sampler's seed 3 visits them as 1.0, 1e30, 1e-6: the stop comes first.
GRID = "train.lr: {distribution: categorical, choices: [1.0e+30, 1.0, 1.0e-6]}\n"


@pytest.fixture(scope="module")
def trials(session_output: Path, synthetic_source: str, tmp_path_factory) -> dict[str, object]:
    space = tmp_path_factory.mktemp("space") / "ga_grid.yaml"
    space.write_text(GRID)
    command = [
        sys.executable, "-m", "clear_ray.tune", "--method", "ga", "--search-space", str(space),
        "--confirm-seeds", "0",
        "--sampler", "grid", "--scheduler", "none", "--epochs", "2", "--num-samples", "3",
        "--output-dir", str(session_output), "--experiment", "faults",
        "--set", "eval.generate=false", "--seed", "3", "--robustness", "none", *SESSION_SET,
        "--max-concurrent", "1",  # the next trial starts once the stopped one has ended
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("faults")
    runs = client.search_runs([experiment.experiment_id])
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    return {float(run.data.params["train.lr"]): run for run in children}


@pytest.fixture(scope="module")
def client(session_output: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")


def epochs_reported(client: MlflowClient, run) -> list[int]:
    return [m.step for m in client.get_metric_history(run.info.run_id, "retain_metric")]


def test_every_grid_point_ran_once(trials) -> None:
    assert sorted(trials) == [1e-6, 1.0, 1e30]


def test_nan_trial_fails_with_its_reason(trials) -> None:
    run = trials[1e30]
    assert run.info.status == "FAILED"
    assert "FloatingPointError" in run.data.tags["error"]
    assert "ga loss became nan" in run.data.tags["error"]


def test_collapsed_trial_is_stopped_after_one_epoch(trials, client) -> None:
    run = trials[1.0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["stopped"] == "retain_collapse"
    assert epochs_reported(client, run) == [1]


def test_a_trial_after_the_stopped_one_runs_to_completion(trials, client) -> None:
    stopped, healthy = trials[1.0], trials[1e-6]
    assert healthy.data.tags["stopped"] == "completed"
    assert epochs_reported(client, healthy) == [1, 2]
    assert healthy.data.tags["feasible"] == "True"
    assert stopped.info.end_time <= healthy.info.start_time  # the stop came first
