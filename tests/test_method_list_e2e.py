"""`--method rmu,ga`: one 1-trial × 1-epoch search per method under one MLflow parent, and the
leaderboard. `--method all` is the same path over CLEAR's table (its expansion: test_cli.py);
every method's own training: test_unlearning_loop.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from e2e_scale import SESSION_SET
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
METHODS = ("rmu", "ga")  # in this order: a method that steers hidden states, plain ascent
PROXY_ITEMS = 8  # as test_worker_crash_e2e.py: one proxy reference evaluation for both


@pytest.fixture(scope="module")
def search(session_output: Path, synthetic_source: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "clear_ray.tune", "--method", ",".join(METHODS), "--num-samples", "1",
        "--confirm-seeds", "0",
        "--epochs", "1", "--output-dir", str(session_output), "--experiment", "method-list",
        "--set", "eval.generate=false", "--robustness", "none",  # test_robust.py has them
        *SESSION_SET,
        "--set", f"eval.proxy_items={PROXY_ITEMS}",  # per epoch; the final evaluation is full
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def leaderboard_rows(text: str) -> dict[str, list[str]]:
    rows = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return {cells[0]: cells for cells in rows[1:]}


def test_leaderboard_has_references_and_each_method_in_order(search) -> None:
    rows = leaderboard_rows(search.stdout.split("Leaderboard")[1])
    assert list(rows) == ["Original", "Gold", *METHODS]
    for method in METHODS:
        cells = rows[method]
        assert cells[-1] in ("yes", "no")  # feasible
        # CLEAR's table columns: Real, Retain, Forget, log FQ, FQ 1-JS; then the objective
        assert all(cell not in ("—", "nan", "") for cell in cells[1:7]), cells


def test_every_method_ran_one_trial_under_one_parent(search, session_output: Path) -> None:
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("method-list")
    runs = client.search_runs([experiment.experiment_id])
    top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(top) == 1 and top[0].info.status == "FINISHED"
    method_runs = {
        r.data.tags["method"]: r
        for r in runs
        if r.data.tags.get("mlflow.parentRunId") == top[0].info.run_id
    }
    assert set(method_runs) == set(METHODS)
    for method, run in method_runs.items():
        trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == run.info.run_id]
        assert len(trials) == 1, method
        assert trials[0].info.status == "FINISHED", method
        assert trials[0].data.params["method.name"] == method
        assert "final/forget_quality" in run.data.metrics, method
    assert "leaderboard.md" in {a.path for a in client.list_artifacts(top[0].info.run_id)}
