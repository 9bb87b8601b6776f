"""`--tracking-uri http://...` against a real `mlflow server` (SQLite backend, 127.0.0.1)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow_server")
    uri = f"http://127.0.0.1:{free_port()}"
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
        "--port", uri.rsplit(":", 1)[1], "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2):
                    break
            except OSError:
                if time.time() > deadline or process.poll() is not None:
                    raise RuntimeError("mlflow server did not start") from None
                time.sleep(1)
        yield uri
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def runs(server: str, session_output: Path, synthetic_source: str):
    command = [
        sys.executable, "-m", "clear_ray.tune", "--method", "ga", "--num-samples", "1",
        "--confirm-seeds", "0",
        "--epochs", "1", "--output-dir", str(session_output), "--tracking-uri", server,
        "--experiment", "over-http", "--set", "eval.generate=false",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    client = MlflowClient(server)
    experiment = client.get_experiment_by_name("over-http")
    return client, client.search_runs([experiment.experiment_id])


def test_parent_and_trial_runs_arrive_through_http(runs) -> None:
    _, all_runs = runs
    parents = [r for r in all_runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 1
    assert parents[0].info.status == "FINISHED" and children[0].info.status == "FINISHED"
    assert "log_forget_quality" in children[0].data.metrics


def test_artifacts_are_served_by_the_server_not_a_driver_path(runs) -> None:
    client, all_runs = runs
    child = next(r for r in all_runs if "mlflow.parentRunId" in r.data.tags)
    assert child.info.artifact_uri.startswith("mlflow-artifacts:")
    adapter = {a.path for a in client.list_artifacts(child.info.run_id, "best_adapter")}
    assert "best_adapter/adapter_model.safetensors" in adapter
