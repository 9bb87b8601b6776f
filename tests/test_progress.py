"""What the console says while a search runs: why each trial ended, its time, the ETA; bars
that redraw only on a terminal."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest

from clear_ray.config import Config
from clear_ray.console import LogProgress, format_duration, step_progress, summary_steps
from clear_ray.search.progress import ProgressPrinter, eta_line, eta_seconds, stop_text
from clear_ray.search.strategy import ASHA, COMPLETED, RETAIN_COLLAPSE, stop_reason
from clear_ray.search.trial_logger import TrialLogger
from clear_ray.tracking import SearchTracker, where_to_look
from clear_ray.train.selection import Thresholds

RETAIN = "clear/retain_metric"
THRESHOLDS = Thresholds("log_forget_quality", 0.6, retain_floor=0.2, retain_metric=RETAIN)


@pytest.mark.parametrize(
    ("last", "reason"),
    [
        ({"epoch": 3, RETAIN: 0.7}, COMPLETED),
        ({"epoch": 3, RETAIN: 0.1}, COMPLETED),  # collapsed at the end: it still ran all epochs
        ({"epoch": 1, RETAIN: 0.1}, RETAIN_COLLAPSE),
        ({"epoch": 2, RETAIN: 0.5}, ASHA),  # infeasible but above the floor: ASHA's cut
        ({"epoch": 1}, ASHA),
    ],
)
def test_stop_reason(last: dict, reason: str) -> None:
    assert stop_reason(last, 3, THRESHOLDS) == reason


def test_stop_text_names_the_epoch_and_the_collapse() -> None:
    assert stop_text(COMPLETED, {"epoch": 3}, 3, THRESHOLDS) == "completed 3/3 epochs"
    assert "ASHA at epoch 2/3" in stop_text(ASHA, {"epoch": 2}, 3, THRESHOLDS)
    collapse = stop_text(RETAIN_COLLAPSE, {"epoch": 1, RETAIN: 0.05}, 3, THRESHOLDS)
    assert "epoch 1/3" in collapse and f"{RETAIN}=0.05 < floor 0.2" in collapse


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (44.6, "45s"), (185, "3m05s"), (7625, "2h07m")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_eta_counts_running_trials_and_concurrency() -> None:
    # 6 trials left at 60 s each = 360 s of work; the running ones did 30 s and (capped) 60 s:
    # 270 s left over 2 slots.
    assert eta_seconds(6, 60.0, 2, [30.0, 90.0]) == 135.0
    assert eta_seconds(1, 60.0, 4, [20.0]) == 40.0  # one trial left uses one slot, not four
    assert eta_seconds(3, 60.0, 1) == 180.0
    assert eta_seconds(0, 60.0, 2) == 0.0


def test_eta_line() -> None:
    line = eta_line(4, 10, 250.0, [50.0, 70.0], 2, [30.0, 90.0])
    assert line == "4/10 trials done, 4m10s elapsed, about 2m15s left (mean trial 1m00s, 2 at once)"
    assert eta_line(1, 2, 5.0, [], 1).endswith("time left known after the first trial")
    assert eta_line(2, 2, 125.0, [60.0, 60.0], 1) == "2/2 trials done, 2m05s elapsed"


def test_printer_says_why_a_trial_ended_its_time_and_the_eta(capsys) -> None:
    printer = ProgressPrinter("log_forget_quality", 2, THRESHOLDS, 3, 1)
    first = SimpleNamespace(trial_id="t1", config={"train.lr": 1e-3}, status="RUNNING")
    second = SimpleNamespace(trial_id="t2", config={"train.lr": 2e-3}, status="PENDING")
    printer.on_trial_start(0, [first], first)
    first.last_result = {
        "epoch": 1,
        RETAIN: 0.5,
        "best_epoch": 1,
        "best_objective": -3.2,
        "feasible": 0.0,
    }
    printer.on_trial_complete(0, [first, second], first)
    err = capsys.readouterr().err
    assert "[trial t1] stopped by ASHA at epoch 1/3" in err
    assert "log_forget_quality=-3.2, infeasible in 0s" in err
    assert "[search] 1/2 trials done" in err and "left (mean trial 0s, 1 at once)" in err


def test_an_epoch_line_shows_the_forget_and_retain_metrics_of_the_thresholds_family(
    capsys,
) -> None:
    printer = ProgressPrinter("log_forget_quality", 2, THRESHOLDS, 3, 1)
    trial = SimpleNamespace(trial_id="t1", config={}, status="RUNNING")
    result = {"epoch": 1, "log_forget_quality": -2.5, "forget_metric": 0.0, RETAIN: 0.5}
    printer.on_trial_result(0, [trial], trial, {**result, "clear/forget_metric": 0.25})
    err = capsys.readouterr().err
    assert "epoch 1: log_forget_quality=-2.5 clear/forget_metric=0.250 " in err
    assert f"{RETAIN}=0.500 (infeasible)" in err


def test_trials_started_at_once_are_numbered_in_creation_order(capsys) -> None:
    printer = ProgressPrinter("log_forget_quality", 8, THRESHOLDS, 3, 2)
    first = SimpleNamespace(trial_id="t1", config={}, status="PENDING")
    second = SimpleNamespace(trial_id="t2", config={}, status="PENDING")
    printer.on_trial_start(0, [first, second], second)  # Tune made both before either started
    printer.on_trial_start(0, [first, second], first)
    err = capsys.readouterr().err
    assert "[trial t2] started (2/8)" in err and "[trial t1] started (1/8)" in err


def test_bars_redraw_only_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    with step_progress(8, "finetune", Terminal()) as bar:
        assert not isinstance(bar, LogProgress)
    assert isinstance(step_progress(8, "finetune", io.StringIO()), LogProgress)


def test_a_log_gets_a_line_per_quarter() -> None:
    assert summary_steps(40) == [10, 20, 30, 40]
    assert summary_steps(3) == [1, 2, 3]
    assert summary_steps(0) == []
    log = io.StringIO()
    with step_progress(40, "finetune original", log) as bar:
        for step in range(40):
            bar.set_postfix(epoch=step // 10 + 1, loss="0.500")
            bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("finetune original: 25% (10/40 steps, ")
    assert lines[-1].endswith("epoch=4, loss=0.500)") and "100% (40/40" in lines[-1]


def test_the_first_mlflow_line_says_where_to_look() -> None:
    page = "/#/experiments/3/runs?workflowType=machine_learning"  # the Model training view
    assert where_to_look("http://host:5000/", "3") == f"http://host:5000{page}"
    local = where_to_look("sqlite:////out/mlflow.db", "3")
    assert local.startswith("mlflow ui --backend-store-uri sqlite:////out/mlflow.db")
    assert "--workers 1" in local and local.endswith(f"open http://127.0.0.1:5000{page}")


def tune_trial(tmp_path: Path, trial_id: str, **fields) -> SimpleNamespace:
    """What TrialLogger reads of a Tune trial: its id, config, local folder and storage."""
    from pyarrow.fs import LocalFileSystem

    storage = SimpleNamespace(
        storage_filesystem=LocalFileSystem(), trial_fs_path=str(tmp_path / "ray" / trial_id)
    )
    local_path = str(tmp_path / "staging" / trial_id)
    return SimpleNamespace(
        trial_id=trial_id, config={}, local_path=local_path, storage=storage, **fields
    )


def test_child_runs_are_tagged_with_why_the_trial_ended(tmp_path: Path) -> None:
    tracker = SearchTracker(Config().replace({"output_dir": str(tmp_path)}))
    tracker.start_parent("s", {}, {})
    logger = TrialLogger(
        tracker, Config().to_flat(), tmp_path / "adapters", THRESHOLDS, 3, {}, str(tmp_path)
    )
    stopped = tune_trial(tmp_path, "t1", last_result={"epoch": 1, RETAIN: 0.1})
    failed = tune_trial(tmp_path, "t2", last_result={}, error_file=None)
    for trial in (stopped, failed):
        logger.on_trial_start(0, [], trial)
    logger.on_trial_complete(0, [], stopped)
    logger.on_trial_error(0, [], failed)
    runs = {run.data.tags["clear_ray.trial_id"]: run for run in tracker.children()}
    assert runs["t1"].data.tags["stopped"] == "retain_collapse"
    assert runs["t1"].data.tags["stopped_at_epoch"] == "1"
    assert runs["t2"].data.tags["stopped"] == "error"
    assert runs["t2"].info.status == "FAILED"


def pickled_error(path: Path, error: Exception) -> str:
    from ray import cloudpickle

    path.write_bytes(cloudpickle.dumps(error))
    return str(path)


def test_a_failed_trial_is_one_line_and_only_a_lost_node_says_it_restarts(
    tmp_path: Path, capsys
) -> None:
    """Tune restarts every failed trial; a driver's own error comes back at once from the
    restart (FinalError), so only the final FAILED line is printed for it."""
    from ray.exceptions import ActorDiedError, RayTaskError

    printer = ProgressPrinter("log_forget_quality", 2, THRESHOLDS, 3, 1)
    error = tmp_path / "error.txt"
    error.write_text(
        "Failure # 1\nTraceback ...\nValueError: 84 forget items cannot fill one batch\n"
    )
    raised = RayTaskError("train", "Traceback ...", ValueError("84 forget items"))
    failing = SimpleNamespace(
        trial_id="t1",
        config={},
        status="RUNNING",
        path="/search/ray/ga/run_trial_t1",
        error_file=str(error),
        pickled_error_file=pickled_error(tmp_path / "t1.pkl", raised),
    )
    lost = SimpleNamespace(
        trial_id="t2",
        config={},
        status="RUNNING",
        pickled_error_file=pickled_error(tmp_path / "t2.pkl", ActorDiedError()),
    )
    trials = [failing, lost]
    for attempt in range(3):  # the first start and Tune's two restarts
        printer.on_trial_start(0, trials, failing)
        printer.on_trial_start(0, trials, lost)
        if attempt < 2:
            printer.on_trial_recover(0, trials, failing)
            printer.on_trial_recover(0, trials, lost)
    printer.on_trial_error(0, trials, failing)
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if line.startswith("[trial t1]")] == [
        "[trial t1] started (1/2): ",
        "[trial t1] FAILED: ValueError: 84 forget items cannot fill one batch (traceback in "
        "/search/ray/ga/run_trial_t1/error.txt) in 0s",
    ]
    assert [line for line in lines if line.startswith("[trial t2]")] == [
        "[trial t2] started (2/2): ",
        *["[trial t2] lost (ActorDiedError); restarting from its last checkpoint"] * 2,
    ]


def test_a_failed_trials_run_keeps_its_traceback(tmp_path: Path) -> None:
    tracker = SearchTracker(Config().replace({"output_dir": str(tmp_path)}))
    tracker.start_parent("s", {}, {})
    logger = TrialLogger(
        tracker, Config().to_flat(), tmp_path / "adapters", THRESHOLDS, 3, {}, str(tmp_path)
    )
    error = tmp_path / "error.txt"
    error.write_text("Failure # 1\nTraceback (most recent call last):\n  ...\nValueError: bad\n")
    failed = tune_trial(tmp_path, "t1", last_result={}, error_file=str(error))
    logger.on_trial_start(0, [], failed)
    logger.on_trial_error(0, [], failed)
    (run,) = tracker.children()
    assert run.data.tags["error"] == "ValueError: bad"
    (artifact,) = tracker.client.list_artifacts(run.info.run_id)
    local = tracker.client.download_artifacts(run.info.run_id, artifact.path, str(tmp_path / "d"))
    assert Path(local).read_text() == error.read_text()
