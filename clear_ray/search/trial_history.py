"""A restarted trial's record, made whole from its Train run before it goes on.

A trial's checkpoints are its Train run's (search/trainable.py), not Tune's, so Tune restores
none of a trial's files when a resumed search restarts it: ``result.json`` and
``progress.csv`` are copied back from storage only for trials with a Tune checkpoint
(``ray/tune/logger/logger.py`` ``_restore_from_remote``). Left alone, a trial stopped after
epoch 1 and resumed would end with a ``result.json`` of epoch 2 only. And an epoch whose
checkpoint Train kept but whose report had not reached Tune's loop when the search stopped
(a tracking outage, Ctrl-C) is in no record at all, though it is never trained again.

Every epoch checkpoint carries what each epoch so far reported (train/loop.py writes
``epoch_history.json``), so the driver restores Tune's files and then records the epochs they
lack before the trial's next report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pyarrow import fs
from ray.air.constants import EXPR_PROGRESS_FILE, EXPR_RESULT_FILE

from clear_ray.runtime.store import storage_filesystem
from clear_ray.runtime.train_run import trial_run_name
from clear_ray.train.checkpoint_files import HISTORY_FILE, PROGRESS_FILE
from clear_ray.train.keys import EPOCH

REPLAYED = "replayed_from_checkpoint"  # marks a result.json line the driver wrote, not Tune


def restore_result_files(trial) -> Path:
    """Copy the trial's result files from storage into Tune's local folder for it, as Tune
    does for a trial with a Tune checkpoint; the local ``result.json``'s path.

    Only files the local folder lacks: a trial Tune retries in this driver (a lost node)
    keeps the files it is writing."""
    local = Path(trial.local_path)
    local.mkdir(parents=True, exist_ok=True)
    filesystem = trial.storage.storage_filesystem
    for name in (EXPR_RESULT_FILE, EXPR_PROGRESS_FILE):
        source = f"{trial.storage.trial_fs_path}/{name}"
        target = local / name
        if not target.exists() and filesystem.get_file_info(source).type == fs.FileType.File:
            fs.copy_files(source, str(target), source_filesystem=filesystem)
    return local / EXPR_RESULT_FILE


def recorded_epochs(result_file: Path) -> set[int]:
    """The epochs a trial's ``result.json`` holds."""
    if not result_file.is_file():
        return set()
    results = (json.loads(line) for line in result_file.read_text().splitlines() if line.strip())
    return {int(result[EPOCH]) for result in results if EPOCH in result}


def train_checkpoints(filesystem, run: str) -> dict[int, str]:
    """The epoch checkpoints that Train kept of the run at ``run`` (a path in
    ``filesystem``): epoch -> path (Train keeps the best-scoring ones and the latest)."""
    found = {}
    for info in filesystem.get_file_info(fs.FileSelector(run, allow_not_found=True)):
        if info.type == fs.FileType.Directory:
            progress = _json_file(filesystem, f"{info.path}/{PROGRESS_FILE}")
            if progress is not None:
                found[int(progress["epoch"])] = info.path
    return found


def _json_file(filesystem, path: str) -> Any:
    """The JSON in ``path``, or None when there is no such file."""
    if filesystem.get_file_info(path).type != fs.FileType.File:
        return None
    with filesystem.open_input_stream(path) as stream:
        return json.loads(stream.read())


def unrecorded_epochs(
    train_runs: str, trial_id: str, result_file: Path, epochs: int
) -> list[dict[str, Any]]:
    """The reports, in order, of the epochs the trial's latest checkpoint has been through
    and ``result_file`` lacks, each with its checkpoint's path when Train kept it.

    A trial whose latest checkpoint is its last epoch reports that epoch again when it is
    restarted (train/loop.py ``replay_end``): that one is left to it."""
    filesystem, root = storage_filesystem(train_runs)
    checkpoints = train_checkpoints(filesystem, f"{root.rstrip('/')}/{trial_run_name(trial_id)}")
    if not checkpoints:
        return []
    # What every epoch up to the latest checkpoint reported (none in a checkpoint written
    # before checkpoints carried it).
    history = _json_file(filesystem, f"{checkpoints[max(checkpoints)]}/{HISTORY_FILE}") or []
    recorded = recorded_epochs(result_file)
    missing = []
    for report in history:
        epoch = int(report[EPOCH])
        if epoch in recorded or epoch == epochs:
            continue
        where = {"checkpoint_path": checkpoints[epoch]} if epoch in checkpoints else {}
        missing.append({**report, **where})
    return missing


def append_results(result_file: Path, trial_id: str, reports: list[dict[str, Any]]) -> None:
    """Write ``reports`` to the trial's ``result.json`` before Tune appends its next result;
    each marked as written from the checkpoint."""
    with result_file.open("a") as handle:
        for report in reports:
            line = {key: value for key, value in report.items() if key != "checkpoint_path"}
            handle.write(json.dumps({**line, "trial_id": trial_id, REPLAYED: True}) + "\n")
