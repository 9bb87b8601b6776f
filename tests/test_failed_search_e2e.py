"""A search killed with SIGKILL, then a search beside it whose every trial fails in its workers.

The killed one: ``--list`` says its driver died and how to resume it, and the next search in
the folder marks its MLflow run KILLED (it stayed RUNNING for ever). The failing one (a batch
larger than the forget set: the workers raise, the driver cannot know before): each trial is
one console line, its error is not retried a third time, and the search ends with one line
and exit 1 instead of a leaderboard row of nan.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from e2e_scale import SESSION_SET
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

EXPERIMENT = "failed_search"
BATCH = 1000  # > the synthetic forget10 split's rows: no batch can be filled
REASON = rf"ValueError: \d+ forget items cannot fill one batch of {BATCH} on 1 workers"


def tune_command(output: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "clear_ray.tune", "--output-dir", str(output), "--method", "ga",
        "--epochs", "1", "--confirm-seeds", "0", "--robustness", "none", "--experiment",
        EXPERIMENT, "--set", "eval.generate=false", *SESSION_SET, *args,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def killed(session_output: Path, synthetic_source: str) -> dict:
    """A search SIGKILLed once its trial started; then ``--list`` of the folder."""
    driver = subprocess.Popen(
        tune_command(session_output, "--num-samples", "1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    name = None
    for line in driver.stderr:
        found = re.search(r"search (\S+): files in", line)
        name = found.group(1) if found else name
        if "] started (1/1)" in line:
            break
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    listing = subprocess.run(
        [sys.executable, "-m", "clear_ray.tune", "--list", "--output-dir", str(session_output)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listing.returncode == 0, listing.stderr
    return {"name": name, "pid": driver.pid, "listing": listing.stdout}


@pytest.fixture(scope="module")
def failed(killed: dict, session_output: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        tune_command(session_output, "--num-samples", "2", "--set", f"train.batch_size={BATCH}"),
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_list_says_the_killed_search_died_and_how_to_resume_it(killed, session_output) -> None:
    lines = killed["listing"].splitlines()
    (at,) = [i for i, line in enumerate(lines) if line.startswith(f"{killed['name']}  ")]
    assert lines[at].startswith(f"{killed['name']}  [ga]  died (pid {killed['pid']} on ")
    assert lines[at + 1] == (
        f"    resume: python -m clear_ray.tune --resume {killed['name']} "
        f"--output-dir {session_output}"
    )


def test_the_next_search_marks_the_dead_searchs_run_killed(killed, failed, session_output):
    state = json.loads((session_output / "searches" / killed["name"] / "state.json").read_text())
    parent = state["runs"]["ga"]["parent_id"]
    run = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}").get_run(parent)
    assert run.info.status == "KILLED"
    assert run.data.tags["clear_ray.ended"].startswith(f"driver pid {killed['pid']} on ")
    assert re.search(
        rf"search {killed['name']}: driver pid {killed['pid']} .* died; its \d+ RUNNING MLflow "
        rf"run\(s\) marked KILLED",
        failed.stderr,
    )


def test_an_all_failed_search_ends_in_one_line_and_exit_1(failed) -> None:
    assert failed.returncode == 1, failed.stderr[-3000:]
    last = failed.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"\[clear_ray\] ga: all 2 trials failed; most common reason \(2/2\): {REASON}; "
        rf"tracebacks: error.txt in each trial's folder under \S+/ray/ga",
        last,
    ), last
    assert "Traceback" not in failed.stderr
    assert "Leaderboard" not in failed.stdout and "nan" not in failed.stdout
    assert "No trial met the thresholds" not in failed.stdout


def test_each_failed_trial_is_one_start_and_one_failed_line(failed) -> None:
    trial_lines = [line for line in failed.stderr.splitlines() if line.startswith("[trial ")]
    trials = {re.match(r"\[trial (\w+)\]", line).group(1) for line in trial_lines}
    assert len(trials) == 2
    for trial in trials:
        mine = [line for line in trial_lines if line.startswith(f"[trial {trial}]")]
        assert len(mine) == 2 and "] started (" in mine[0], mine
        assert re.match(
            rf"\[trial {trial}\] FAILED: {REASON} \(traceback in \S+/error.txt\)", mine[1]
        )


def train_attempts(trial: str) -> int:
    """How many times Train started the workers of ``trial``: its controller's application log
    lines (the ``sys`` log repeats them), in the Ray session logs (Ray's temp folder; the run
    is named after the trial; RAY_TMPDIR when set), each file once."""
    logs = {  # resolved: session_latest links to one of the sessions
        path.resolve()
        for path in Path(os.environ.get("RAY_TMPDIR") or tempfile.gettempdir(), "ray").glob(
            "session_*/logs/train/ray-train-app-controller-*"
        )
    }
    count = 0
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if f'"run_name": "train-{trial}"' in line and "Attempting to start training" in line:
                count += 1
    return count


def test_the_workers_error_was_tried_twice_not_three_times(failed) -> None:
    """search.max_failures is 2: Train would start a deterministic error's workers 3 times."""
    trials = sorted(set(re.findall(r"\[trial (\w+)\] FAILED", failed.stderr)))
    # Ray's processes may still be writing their logs when the driver has exited.
    deadline = time.monotonic() + 60
    while (attempts := [train_attempts(trial) for trial in trials]) != [2, 2]:
        if max(attempts) > 2 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert attempts == [2, 2]


def test_mlflow_keeps_each_failed_trials_traceback(failed, session_output) -> None:
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    name = re.search(r"search (\S+): files in", failed.stderr).group(1)
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`clear_ray.search` = '{name}'"
    )
    parents = [run for run in runs if "clear_ray.trial_id" not in run.data.tags]
    children = [run for run in runs if "clear_ray.trial_id" in run.data.tags]
    assert [run.info.status for run in parents] == ["FAILED"]
    assert re.match(rf"ga: all 2 trials failed; .*{REASON}", parents[0].data.tags["error"])
    assert len(children) == 2
    for run in children:
        assert run.info.status == "FAILED"
        assert re.fullmatch(REASON, run.data.tags["error"])
        (artifact,) = client.list_artifacts(run.info.run_id)
        assert artifact.path == "error.txt"
