"""Kill the driver mid-search (SIGKILL), ``--resume``: nothing lost, nothing duplicated.

Ray's results and checkpoints go to a ``file://`` storage URI outside the search folder, the
route a cluster takes with ``s3://``: restore and adapter copies must read from there.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from e2e_scale import SESSION_SET
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

SAMPLES = 3


def tune_command(output: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "clear_ray.tune", "--output-dir", str(output), *args]


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("remote_storage")


@pytest.fixture(scope="module")
def resumed(session_output: Path, synthetic_source: str, storage: Path) -> str:
    """Name of a search killed after its first trial finished, then resumed to the end."""
    command = tune_command(
        session_output, "--confirm-seeds", "0",
        "--method", "ga", "--num-samples", str(SAMPLES), "--epochs", "1",
        "--scheduler", "none", "--experiment", "resume", "--set", "eval.generate=false",
        "--storage-path", f"file://{storage}", "--robustness", "none", *SESSION_SET,
    )  # fmt: skip
    driver = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    name = None
    for line in driver.stderr:
        found = re.search(r"search (\S+): files in", line)
        name = found.group(1) if found else name
        if f"done (1/{SAMPLES})" in line:
            break
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    assert name, "the search never reported its name"
    result = subprocess.run(
        tune_command(session_output, "--resume", name),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming search {name}" in result.stderr
    return name


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_every_trial_completed_once(resumed: str, session_output: Path) -> None:
    rows = read_csv(session_output / "searches" / resumed / "ga" / "trials.csv")
    assert len(rows) == SAMPLES
    assert [row["status"] for row in rows] == ["done"] * SAMPLES
    assert len({row["trial"] for row in rows}) == SAMPLES


def test_optuna_told_every_trial_once(resumed: str, session_output: Path) -> None:
    rows = read_csv(session_output / "searches" / resumed / "ga" / "optuna_trials.csv")
    states = [row["state"] for row in rows]
    # A trial asked after Tune's last checkpoint is never run by the resumed search: FAIL.
    assert states.count("COMPLETE") == SAMPLES and set(states) <= {"COMPLETE", "FAIL"}


def test_the_stored_study_continued_with_its_numbers(resumed: str, session_output: Path) -> None:
    """The resumed search told the same stored study: numbers contiguous, none left running,
    every trial Tune ran told once with its constraint."""
    db = session_output / "searches" / resumed / "optuna.db"
    trials = optuna.load_study(study_name=f"{resumed}/ga", storage=f"sqlite:///{db}").trials
    assert [t.number for t in trials] == list(range(len(trials)))
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == SAMPLES
    assert all(t.state == TrialState.FAIL for t in trials if t not in complete)
    assert all("min_retain" in t.constraints for t in complete)
    tune_rows = read_csv(session_output / "searches" / resumed / "ga" / "trials.csv")
    assert sorted(float(row["train.lr"]) for row in tune_rows) == pytest.approx(
        sorted(t.params["train.lr"] for t in complete), rel=1e-3
    )


def test_one_mlflow_child_run_per_trial(resumed: str, session_output: Path) -> None:
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("resume")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(children) == SAMPLES
    assert len({run.data.tags["clear_ray.trial_id"] for run in children}) == SAMPLES
    assert all(run.info.status == "FINISHED" for run in children)


def test_ray_results_and_checkpoints_live_in_the_storage(
    resumed: str, session_output: Path, storage: Path
) -> None:
    search = session_output / "searches" / resumed
    assert not (search / "ray").exists() and not (search / "ray_train").exists()
    assert (storage / resumed / "ray" / "ga").is_dir()
    checkpoints = list((storage / resumed / "ray_train").glob("train-*/checkpoint_*"))
    assert len({path.parent for path in checkpoints}) == SAMPLES
    # every trial's best adapter was copied out of the storage by the driver
    assert len(list((search / "ga" / "adapters").glob("*/adapter_model.safetensors"))) == SAMPLES
