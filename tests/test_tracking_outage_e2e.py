"""A real `mlflow server` stopped under a running search: the search trains on, what it could
not log reaches the server when it is back; a server that stays away past
tracking.max_outage_s stops the search in one line, and ``--resume`` trains no finished trial
again and loses nothing.

Three trials one at a time, two epochs each: the server goes away when trial A completes and
comes back once trial B has reported its first epoch (B's start and epoch 1 wait in the
outbox); it goes away again once the search has seen it back and B has completed, and stays
away: the search stops once the limit has passed, during trial C or while it waits to log the
end.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from e2e_scale import SESSION_SET
from mlflow.tracking import MlflowClient

from clear_ray.mlflow_server import mlflow_server
from clear_ray.net import free_port
from clear_ray.search.outbox import OUTBOX_FILE

pytestmark = pytest.mark.slow

LIMIT_S = 90  # room for the server's restart (~15 s on 2 loaded cores) and a probe after it
EXPERIMENT = "outage"


def tune_command(output: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "clear_ray.tune", "--output-dir", str(output), *args]


class Server:
    """One `mlflow server` on a fixed port, stopped and started again as the test says."""

    def __init__(self, root: Path) -> None:
        self.store, self.artifacts = f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.running: ExitStack | None = None

    def start(self) -> None:
        self.running = ExitStack()
        self.running.enter_context(mlflow_server(self.store, self.artifacts, self.port))

    def stop(self) -> None:
        self.running.close()
        self.running = None


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    server = Server(tmp_path_factory.mktemp("outage_server"))
    server.start()
    yield server
    if server.running:
        server.stop()


@pytest.fixture(scope="module")
def stopped(server: Server, session_output: Path, synthetic_source: str) -> dict:
    """The first run of the search: its name, exit status, stderr and when the server left."""
    command = tune_command(
        session_output, "--method", "ga", "--num-samples", "3", "--max-concurrent", "1",
        "--epochs", "2", "--scheduler", "none", "--retain-floor", "0", "--confirm-seeds", "0",
        "--robustness", "none", "--set", "eval.generate=false", "--set", "eval.proxy_items=8",
        "--tracking-uri", server.url, "--experiment", EXPERIMENT,
        "--set", f"tracking.max_outage_s={LIMIT_S}", *SESSION_SET,
    )  # fmt: skip
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines, trials, left, back, b_done = [], [], None, False, False
    for line in driver.stderr:
        lines.append(line)
        started = re.match(r"\[trial (\w+)\] started", line)
        if started:
            trials.append(started.group(1))
        if len(trials) == 1 and f"[trial {trials[0]}] completed" in line:
            server.stop()  # A completed: away until B reported its first epoch
        if len(trials) == 2 and f"[trial {trials[1]}] epoch 1:" in line:
            server.start()
        back = back or re.match(r"\[clear_ray\] MLflow server \S+ is back", line) is not None
        b_done = b_done or (len(trials) >= 2 and f"[trial {trials[1]}] completed" in line)
        if back and b_done and left is None:
            server.stop()  # the search saw the server back and B completed: away for good
            left = time.monotonic()
    driver.wait(timeout=120)
    name = re.search(r"search (\S+): files in", "".join(lines)).group(1)
    return {
        "name": name,
        "returncode": driver.returncode,
        "stderr": "".join(lines),
        "stop_s": time.monotonic() - left if left else None,
        "trials": trials,
    }


@pytest.fixture(scope="module")
def resumed(stopped: dict, server: Server, session_output: Path) -> subprocess.CompletedProcess:
    server.start()
    result = subprocess.run(
        tune_command(session_output, "--resume", stopped["name"]),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_the_search_trained_on_while_the_server_restarted(stopped: dict) -> None:
    assert len(stopped["trials"]) == 3, stopped["stderr"][-3000:]
    assert re.search(
        r"MLflow server \S+ is back: \d+ kept tracking call\(s\) delivered", stopped["stderr"]
    )


def test_a_server_away_past_the_limit_stops_the_search_in_one_line(
    stopped: dict, server: Server, session_output: Path
) -> None:
    assert stopped["returncode"] == 3, stopped["stderr"][-3000:]
    assert "Traceback" not in stopped["stderr"]
    last = stopped["stderr"].strip().splitlines()[-1]
    assert re.fullmatch(
        rf"MLflow server {server.url} unreachable for \d+ s \(tracking.max_outage_s={LIMIT_S}\): "
        rf"search {stopped['name']} stopped; trial results and checkpoints are kept, and \d+ "
        rf"tracking call\(s\) wait in \S+{OUTBOX_FILE}\. Once the server is back: python -m "
        rf"clear_ray.tune --resume {stopped['name']} --output-dir {session_output}",
        last,
    ), last
    # The limit counts from the first call that failed, just after the server left; then the
    # Tune loop stops within a step, and Ray shuts down.
    assert LIMIT_S <= stopped["stop_s"] < LIMIT_S + 60


def test_the_resume_trains_no_finished_trial_again(stopped: dict, resumed, session_output) -> None:
    first, second, _ = stopped["trials"]
    assert f"[trial {first}] started" not in resumed.stderr
    assert f"[trial {second}] started" not in resumed.stderr
    experiment = session_output / "searches" / stopped["name"] / "ray" / "ga"
    for trial in stopped["trials"]:
        (results,) = experiment.glob(f"*_{trial}_*/result.json")
        epochs = [json.loads(line)["epoch"] for line in results.read_text().splitlines()]
        assert epochs == [1.0, 2.0], (trial, epochs)  # each epoch trained and reported once


def test_mlflow_has_every_trial_and_epoch(stopped: dict, resumed, server: Server, session_output):
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    children = {
        run.data.tags["clear_ray.trial_id"]: run
        for run in runs
        if run.data.tags.get("clear_ray.search") == stopped["name"]
        and "clear_ray.trial_id" in run.data.tags
    }
    assert sorted(children) == sorted(stopped["trials"])  # one child per trial, none twice
    for trial, run in children.items():
        assert run.info.status == "FINISHED", trial
        history = client.get_metric_history(run.info.run_id, "retain_metric")
        tracking = [
            line
            for line in (stopped["stderr"] + resumed.stderr).splitlines()
            if "MLflow" in line or trial in line
        ]
        assert sorted(m.step for m in history) == [1, 2], "\n".join([trial, *tracking])
        assert client.list_artifacts(run.info.run_id, "best_adapter"), trial
    assert not (session_output / "searches" / stopped["name"] / OUTBOX_FILE).exists()
