"""Driver killed (SIGKILL) in the middle of the confirm runs, ``--resume``: the search trials
are not run again, the finished confirm run is kept, only the missing seeds are trained, and
confirm.json, MLflow and Tune name the same runs, one per seed.

The kill is deterministic: ``tests/confirm_killer.py tuned:2`` kills the driver at the first
result of the tuned configuration's seed-2 run, when seed 1 has trained (not yet evaluated)
and seed 2's child run is open in MLflow.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_scale import SESSION_SET
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

EXPERIMENT = "resume_confirm"


KILLER = Path(__file__).with_name("confirm_killer.py")


def tune(output: Path, log: Path, *args: str, kill_at: str = "") -> int:
    entry = [str(KILLER), kill_at] if kill_at else ["-m", "clear_ray.tune"]
    command = [sys.executable, *entry, "--output-dir", str(output), *args]
    with log.open("w") as handle:  # a file, not a pipe: Ray's processes may outlive a kill
        done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=1200)
    return done.returncode


@pytest.fixture(scope="module")
def resumed(session_output: Path, synthetic_source: str, tmp_path_factory) -> dict:
    logs = tmp_path_factory.mktemp("logs")
    killed_log, resumed_log = logs / "killed.log", logs / "resumed.log"
    returncode = tune(
        session_output, killed_log,
        "--method", "ga", "--num-samples", "1", "--epochs", "1", "--confirm-seeds", "2",
        "--scheduler", "none", "--robustness", "none", "--experiment", EXPERIMENT,
        "--set", "eval.generate=false", *SESSION_SET,
        "--max-concurrent", "1",  # seed 1 trains before seed 2 starts: a deterministic kill
        kill_at="tuned:2",
    )  # fmt: skip
    killed = killed_log.read_text()
    assert returncode == -signal.SIGKILL, killed[-3000:]
    name = re.search(r"search (\S+): files in", killed).group(1)
    root = session_output / "searches" / name
    before = json.loads((root / "ga" / "confirm" / "tuned" / "seed-1.json").read_text())
    assert not (root / "ga" / "confirm.json").exists()
    assert tune(session_output, resumed_log, "--resume", name) == 0, resumed_log.read_text()[-3000:]
    return {"root": root, "before": before, "log": resumed_log.read_text()}


@pytest.fixture(scope="module")
def runs(resumed: dict, session_output: Path) -> list:
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([experiment.experiment_id])


def test_the_search_trials_are_not_run_again(resumed: dict, runs: list) -> None:
    with (resumed["root"] / "ga" / "trials.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 1
    trials = [
        r for r in runs if "mlflow.parentRunId" in r.data.tags and "confirm" not in r.data.tags
    ]
    assert len(trials) == 1
    assert "reading its results from" in resumed["log"]
    assert "full evaluation of the best trial" not in resumed["log"]


def test_the_trained_seed_is_kept_and_only_the_missing_ones_trained(resumed: dict) -> None:
    log = resumed["log"]
    assert "tuned configuration resumed: seeds [] kept, [1] to evaluate, [2] to train" in log
    assert "1 unfinished MLflow run(s) deleted" in log
    assert "confirming the tuned configuration (1 epoch) with seeds [2]" in log
    assert "confirming the default configuration (1 epoch) with seeds [1, 2]" in log
    record = json.loads((resumed["root"] / "ga" / "confirm.json").read_text())
    (seed_one,) = [r for r in record["configurations"]["tuned"]["runs"] if r["seed"] == 1]
    assert seed_one["adapter"] == resumed["before"]["adapter"]


def test_confirm_json_and_mlflow_name_one_run_per_seed(resumed: dict, runs: list) -> None:
    record = json.loads((resumed["root"] / "ga" / "confirm.json").read_text())
    confirm = {r.info.run_id: r for r in runs if r.data.tags.get("confirm") == "true"}
    assert len(confirm) == 4  # the killed seed-2 run was deleted, not kept beside its rerun
    for label in ("tuned", "default"):
        listed = record["configurations"][label]["runs"]
        assert [run["seed"] for run in listed] == [1, 2]
        for run in listed:
            child = confirm[run["run_id"]]
            assert child.info.status == "FINISHED"
            assert child.data.tags["configuration"] == label
            assert child.data.params["train.seed"] == str(run["seed"])
            assert "final/clear/forget_metric" in child.data.metrics
    tuned_one = confirm[record["configurations"]["tuned"]["runs"][0]["run_id"]]
    assert tuned_one.data.tags["clear_ray.trial_id"] == resumed["before"]["trial"]


def test_the_resumed_search_reports_as_usual(resumed: dict, runs: list) -> None:
    board = (resumed["root"] / "leaderboard.md").read_text()
    assert "ga (tuned, 2 seeds)" in board and "ga (default, 2 seeds)" in board
    assert (resumed["root"] / "report.html").is_file()
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "FINISHED"
