"""Which process runs a search, and how each search in an output directory ended.

The driver of a search holds an exclusive ``flock`` on ``<search>/driver.json`` for as long as
it runs, and writes there who it is (pid, host, start time, command) and, on its way out, how
it ended (finished, failed, stopped). The kernel drops the lock of a process that dies however
it dies (``kill -9``, the OOM killer, a lost node's NFS lease), so "not locked, and no end
written" means: the driver died. Its MLflow runs, left RUNNING, are then marked KILLED by the
next search that starts (or resumes) in the same output directory (``close_orphans``), and
``python -m clear_ray.tune --list`` shows every search with its state and the command that
resumes it. The same lock refuses a second driver of one search (two ``--resume`` at once).
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from clear_ray.errors import ConfigError
from clear_ray.search.session import FAILED, STATE_FILE, SearchState

DRIVER_FILE = "driver.json"
RUNNING, FINISHED, STOPPED, DIED = "running", "finished", "stopped", "died"
# How a driver ended -> the MLflow status of the runs it left RUNNING.
RUN_STATUS = {FAILED: "FAILED", STOPPED: "KILLED", DIED: "KILLED"}


@dataclass
class DriverRecord:
    pid: int
    host: str
    started: float  # time.time()
    command: str
    ended: str = ""  # "" while running, else FINISHED | FAILED | STOPPED
    reason: str = ""  # of a FAILED or STOPPED end
    runs_closed: bool = False  # its RUNNING MLflow runs were marked (close_orphans)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, started {when}"


def resume_command(output: Path, name: str) -> str:
    where = shlex.quote(str(output))
    return f"python -m clear_ray.tune --resume {shlex.quote(name)} --output-dir {where}"


class Driver:
    """This process as the driver of the search in ``root``: ``with Driver(root): ...``.

    A ``new`` search's folder must not exist yet: entering makes it in one ``mkdir``, which
    fails with FileExistsError when another search started in the same second took the name
    (checking first and making it after would let both in)."""

    def __init__(self, root: Path, new: bool = False) -> None:
        self.new = new
        self.path = root / DRIVER_FILE
        self.handle = None
        self.record: DriverRecord | None = None
        self.created: list[Path] = []  # the folders entering made, deepest first

    def __enter__(self) -> Driver:
        root = self.path.parent
        self.created = [path for path in (root, *root.parents) if not path.exists()]
        root.parent.mkdir(parents=True, exist_ok=True)
        root.mkdir(exist_ok=not self.new)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            other = read_record(self.path)
            who = f" ({other.describe()})" if other else ""
            raise ConfigError(
                f"search {self.path.parent.name} is running{who}; wait for it or stop it first"
            ) from None
        self.handle = handle
        self.record = DriverRecord(
            os.getpid(), socket.gethostname(), time.time(), shlex.join(sys.argv)
        )
        self._write()
        return self

    def end(self, how: str, reason: str = "") -> None:
        """How this driver ends; written before the lock goes, so no one reads it as DIED."""
        self.record.ended, self.record.reason = how, reason
        self._write()

    def __exit__(self, kind, error, traceback) -> None:
        if not self.record.ended:
            if kind is KeyboardInterrupt:
                self.end(STOPPED, "interrupted (Ctrl-C)")
            else:
                self.end(FAILED, f"{kind.__name__}: {error}" if kind else "")
        if [path.name for path in self.path.parent.iterdir()] == [DRIVER_FILE]:
            # It wrote nothing else (bad input found late, by the cluster): nothing is left.
            self.path.unlink()
            for folder in self.created:  # deepest first; others may have written beside it
                if not any(folder.iterdir()):
                    folder.rmdir()
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()

    def _write(self) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(json.dumps(asdict(self.record)))
        self.handle.flush()
        os.fsync(self.handle.fileno())


def read_record(path: Path) -> DriverRecord | None:
    try:
        return DriverRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):  # none, or torn mid-write
        return None


def is_locked(path: Path) -> bool:
    """Whether a live driver holds ``path`` (this process's own lock counts: flock locks of
    two opens of one file conflict)."""
    try:
        handle = path.open("r")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


@dataclass
class SearchEntry:
    """One search of an output directory, as ``--list`` shows it."""

    name: str
    state: SearchState
    record: DriverRecord | None
    status: str  # RUNNING | FINISHED | FAILED | STOPPED | DIED | "interrupted" (no record)

    @property
    def resumable(self) -> bool:
        return self.status not in (RUNNING, FINISHED)


def searches(output: Path) -> list[SearchEntry]:
    """Every search in ``output`` with a state file, oldest first."""
    entries = []
    for state_file in sorted((output / "searches").glob(f"*/{STATE_FILE}")):
        root = state_file.parent
        try:
            state = SearchState.from_dict(json.loads(state_file.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        record = read_record(root / DRIVER_FILE)
        if is_locked(root / DRIVER_FILE):
            status = RUNNING
        elif record is None:  # written before drivers recorded themselves
            done = state.runs and all(run.status == "done" for run in state.runs.values())
            status = FINISHED if done and len(state.runs) == len(state.methods) else "interrupted"
        else:
            status = record.ended or DIED
        entries.append(SearchEntry(root.name, state, record, status))
    return sorted(entries, key=lambda e: e.record.started if e.record else 0.0)


def list_lines(output: Path) -> list[str]:
    """``--list``: a line per search (name, methods, state, driver) and, for each one that
    did not finish, the command that resumes it."""
    entries = searches(output)
    if not entries:
        return [f"no searches in {output}"]
    lines = []
    for entry in entries:
        what = entry.status
        if entry.record and entry.status == RUNNING:
            what = f"running ({entry.record.describe()})"
        elif entry.record and entry.status == DIED:
            what = f"died ({entry.record.describe()}: gone without a word)"
        elif entry.record and entry.record.reason:
            what = f"{entry.status}: {entry.record.reason}"
        lines.append(f"{entry.name}  [{','.join(entry.state.methods)}]  {what}")
        if entry.resumable:
            lines.append(f"    resume: {resume_command(output, entry.name)}")
    return lines


def orphaned_runs(entry: SearchEntry) -> list[str]:
    """The MLflow parent runs a search that ended without closing them may have left RUNNING."""
    ids = [entry.state.top_parent_id, *(run.parent_id for run in entry.state.runs.values())]
    return [run_id for run_id in ids if run_id]


def close_orphans(
    output: Path, client, tracked_here: Callable[[SearchState], bool], current: str
) -> list[str]:
    """Mark the MLflow runs that searches in ``output`` left RUNNING when their driver died,
    failed or stopped: the parent runs and their RUNNING children, KILLED (FAILED after a
    failure), tagged ``clear_ray.ended`` with why. Only searches that ``tracked_here`` (in
    ``client``'s store), not ``current`` (a resumed search reopens its own runs), each once.
    Returns a line per search whose runs were marked."""
    lines = []
    for entry in searches(output):
        record = entry.record
        if entry.name == current or not entry.resumable or (record and record.runs_closed):
            continue
        if not tracked_here(entry.state):
            continue
        status = RUN_STATUS.get(entry.status, "KILLED")
        why = (
            f"driver {record.describe()} {entry.status}"
            f"{': ' + record.reason if record and record.reason else ''}"
            if record
            else "its driver ended without closing its runs"
        )
        marked = 0
        for parent_id in orphaned_runs(entry):
            run = client.get_run(parent_id)
            children = client.search_runs(
                [run.info.experiment_id],
                filter_string=(
                    f"tags.`mlflow.parentRunId` = '{parent_id}' and attributes.status = 'RUNNING'"
                ),
            )
            running = [child.info.run_id for child in children]
            if run.info.status == "RUNNING":
                running.append(parent_id)
            for run_id in running:
                client.set_tag(run_id, "clear_ray.ended", why)
                client.set_terminated(run_id, status=status)
                marked += 1
        if record:
            mark_closed(output / "searches" / entry.name / DRIVER_FILE)
        if marked:
            lines.append(
                f"search {entry.name}: {why}; its {marked} RUNNING MLflow run(s) marked {status} "
                f"(resume: {resume_command(output, entry.name)})"
            )
    return lines


def mark_closed(path: Path) -> None:
    """Record that a dead driver's runs were marked, under its lock (skipped if a driver
    took the search meanwhile)."""
    with path.open("r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
        record = read_record(path)
        if record is None:
            return
        record.runs_closed = True
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(asdict(record)))
