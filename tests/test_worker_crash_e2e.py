"""A Train worker killed mid-trial is restarted from its last epoch checkpoint (FailureConfig)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from e2e_scale import SESSION_SET
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

EPOCHS = 3  # killed after epoch 1: epochs 2 and 3 come from the restarted worker


def train_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if "RayTrainWorker" in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found


@pytest.fixture(scope="module")
def crashed_search(session_output: Path, synthetic_source: str) -> tuple[str, list[int]]:
    """(search name, pids of the killed workers): one worker SIGKILLed after epoch 1."""
    command = [
        sys.executable, "-m", "clear_ray.tune", "--output-dir", str(session_output),
        "--confirm-seeds", "0",
        "--method", "gd", "--num-samples", "1", "--epochs", str(EPOCHS), "--scheduler", "none",
        "--experiment", "worker_crash", "--set", "eval.generate=false", "--robustness", "none",
        "--set", "eval.proxy_items=8",  # per epoch, as test_method_all_e2e.py
        "--retain-floor", "0",  # the trial must run every epoch, whatever its proxy metrics
        *SESSION_SET,
    ]  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    killed, name, log = [], None, []
    for line in driver.stderr:
        log.append(line)
        if "files in" in line and name is None:
            name = line.split("search ", 1)[1].split(":", 1)[0]
        if "epoch 1:" in line and not killed:
            deadline = time.time() + 60
            while not (workers := train_workers()) and time.time() < deadline:
                time.sleep(0.5)
            for worker in workers:
                worker.kill()
                killed.append(worker.pid)
    driver.wait(timeout=900)
    assert driver.returncode == 0, "".join(log[-40:])
    assert killed, "no Ray Train worker process was found to kill"
    return name, killed


def test_the_trial_completes_after_the_crash(crashed_search, session_output: Path) -> None:
    name, _ = crashed_search
    with (session_output / "searches" / name / "gd" / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["status"], row["stopped_at"]) for row in rows] == [("done", str(EPOCHS))]


def test_training_went_on_from_the_checkpoint_not_from_scratch(crashed_search, session_output):
    """Each epoch reached Tune once: a restart from scratch would report epoch 1 again."""
    name, _ = crashed_search
    (results,) = (session_output / "searches" / name / "ray" / "gd").glob("*/result.json")
    epochs = [json.loads(line)["epoch"] for line in results.read_text().splitlines()]
    assert epochs == [float(e) for e in range(1, EPOCHS + 1)]


def test_mlflow_has_every_epoch_of_the_trial(crashed_search, session_output: Path) -> None:
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("worker_crash")
    runs = client.search_runs([experiment.experiment_id])
    (child,) = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    history = client.get_metric_history(child.info.run_id, "retain_metric")
    assert sorted(metric.step for metric in history) == list(range(1, EPOCHS + 1))
    assert child.info.status == "FINISHED"
