"""Which process drives a search, how each search of an output directory ended (--list), and
the MLflow runs a dead driver left RUNNING, marked by the next search in the directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from clear_ray.cli.tune import main
from clear_ray.errors import ConfigError
from clear_ray.search.driver import (
    DIED,
    DRIVER_FILE,
    FINISHED,
    RUNNING,
    STOPPED,
    Driver,
    close_orphans,
    is_locked,
    list_lines,
    read_record,
    searches,
)
from clear_ray.search.session import FAILED, MethodRun, SearchDirs, SearchState


def saved_search(output: Path, name: str, runs: dict[str, MethodRun] | None = None) -> SearchDirs:
    dirs = SearchDirs(output, name)
    config = {"output_dir": str(output), "tracking.tracking_uri": ""}
    dirs.save(SearchState(name, config, ["ga"], {"ga": "ga.yaml"}, runs=runs or {}))
    return dirs


def killed_driver(root: Path) -> int:
    """A process that becomes the driver of ``root``, then dies by SIGKILL; its pid."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from clear_ray.search.driver import Driver
        with Driver(Path({str(root)!r})):
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "locked"
    assert is_locked(root / DRIVER_FILE)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    return child.pid


def test_a_driver_holds_its_search_and_says_how_it_ended(tmp_path: Path) -> None:
    dirs = saved_search(tmp_path, "ga-1")
    with Driver(dirs.root) as driver:
        record = read_record(dirs.root / DRIVER_FILE)
        assert (record.pid, record.ended) == (os.getpid(), "")
        assert [entry.status for entry in searches(tmp_path)] == [RUNNING]
        with pytest.raises(ConfigError, match=f"search ga-1 is running \\(pid {os.getpid()}"):
            Driver(dirs.root).__enter__()  # a second --resume of the same search
        driver.end(STOPPED, "MLflow away")
    assert not is_locked(dirs.root / DRIVER_FILE)
    assert read_record(dirs.root / DRIVER_FILE).ended == STOPPED
    with pytest.raises(RuntimeError), Driver(dirs.root):
        raise RuntimeError("boom")
    assert (
        read_record(dirs.root / DRIVER_FILE).ended,
        read_record(dirs.root / DRIVER_FILE).reason,
    ) == (
        FAILED,
        "RuntimeError: boom",
    )


def test_a_driver_killed_with_sigkill_is_seen_dead(tmp_path: Path) -> None:
    dirs = saved_search(tmp_path, "ga-1")
    pid = killed_driver(dirs.root)
    (entry,) = searches(tmp_path)
    assert (entry.status, entry.record.pid, entry.resumable) == (DIED, pid, True)


def test_a_driver_that_wrote_nothing_leaves_no_folder(tmp_path: Path) -> None:
    output = tmp_path / "out"
    with pytest.raises(ConfigError), Driver(output / "searches" / "ga-1"):
        raise ConfigError("search.gpus_per_trial: 1 needs 1 GPU per trial")
    assert list(tmp_path.iterdir()) == []
    beside = saved_search(output, "ga-0")  # a folder that was there stays
    with pytest.raises(ConfigError), Driver(output / "searches" / "ga-1"):
        raise ConfigError("search.gpus_per_trial: 1 needs 1 GPU per trial")
    assert [path.name for path in (output / "searches").iterdir()] == [beside.name]


def test_list_shows_each_search_and_how_to_resume_it(tmp_path: Path, capsys) -> None:
    finished = saved_search(tmp_path, "ga-finished")
    with Driver(finished.root) as driver:
        driver.end(FINISHED)
    died = saved_search(tmp_path, "ga-died")
    pid = killed_driver(died.root)
    assert main(["--list", "--output-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "ga-finished  [ga]  finished"
    assert lines[1].startswith(f"ga-died  [ga]  died (pid {pid} on ")
    assert lines[2] == (
        f"    resume: python -m clear_ray.tune --resume ga-died --output-dir {tmp_path}"
    )
    assert len(lines) == 3  # a finished search has nothing to resume
    assert list_lines(tmp_path / "empty") == [f"no searches in {tmp_path / 'empty'}"]


def test_the_next_search_marks_a_dead_drivers_runs_killed_once(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.create_experiment("orphans")
    parent = client.create_run(experiment).info.run_id
    running = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
    done = client.create_run(experiment, tags={"mlflow.parentRunId": parent}).info.run_id
    client.set_terminated(done, "FINISHED")
    died = saved_search(tmp_path, "ga-died", {"ga": MethodRun(parent)})
    killed_driver(died.root)
    alive = saved_search(tmp_path, "ga-alive", {"ga": MethodRun(parent)})

    with Driver(alive.root):  # a live driver's runs are its own
        lines = close_orphans(tmp_path, client, lambda state: True, current="ga-new")
    assert len(lines) == 1 and lines[0].startswith("search ga-died: driver pid ")
    assert "its 2 RUNNING MLflow run(s) marked KILLED (resume: python -m" in lines[0]
    statuses = {run_id: client.get_run(run_id).info.status for run_id in (parent, running, done)}
    assert statuses == {parent: "KILLED", running: "KILLED", done: "FINISHED"}
    assert client.get_run(parent).data.tags["clear_ray.ended"].endswith(" died")
    assert json.loads((died.root / DRIVER_FILE).read_text())["runs_closed"] is True
    assert close_orphans(tmp_path, client, lambda state: True, current="ga-new") == []


def test_a_resumed_search_leaves_its_own_runs_to_reopen(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    parent = client.create_run(client.create_experiment("own")).info.run_id
    died = saved_search(tmp_path, "ga-died", {"ga": MethodRun(parent)})
    killed_driver(died.root)
    assert close_orphans(tmp_path, client, lambda state: True, current="ga-died") == []
    assert close_orphans(tmp_path, client, lambda state: False, current="ga-new") == []
    assert client.get_run(parent).info.status == "RUNNING"


def test_a_new_search_never_shares_a_folder_with_one_started_in_the_same_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clear_ray.config import Config
    from clear_ray.pipeline import plan

    monkeypatch.setattr(plan.time, "strftime", lambda _: "20261207-101010")  # one second
    cfg, state, dirs = plan.new_search(Config(output_dir=str(tmp_path)), "ga", None)
    assert dirs.name == state.name == "ga-20261207-101010"
    dirs.root.mkdir(parents=True)  # another search took the name after this one chose it
    with pytest.raises(FileExistsError):
        Driver(dirs.root, new=True).__enter__()
    with Driver(dirs.root):  # a resume enters its existing folder
        pass
    second_state, second = plan.next_name(cfg, state)
    assert second.name == second_state.name == "ga-20261207-101010-2"
    assert (
        plan.next_name(cfg, second_state)[1].root == tmp_path / "searches" / "ga-20261207-101010-3"
    )
    second.root.mkdir()
    # names taken when a search is planned are skipped at once
    assert plan.new_search(cfg, "ga", None)[2].name == "ga-20261207-101010-3"
