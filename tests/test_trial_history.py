"""A trial restarted from its Train checkpoint (a resumed search) keeps every epoch in its
``result.json`` and its MLflow run: the files Tune restores only for Tune checkpoints are
restored from storage, and the epochs they lack are written from the checkpoint's history."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from pyarrow.fs import LocalFileSystem

from clear_ray.config import Config
from clear_ray.search.trial_history import REPLAYED, unrecorded_epochs
from clear_ray.search.trial_logger import TrialLogger
from clear_ray.tracking import SearchTracker
from clear_ray.train.checkpoint_files import HISTORY_FILE, PROGRESS_FILE
from clear_ray.train.selection import Thresholds

RETAIN = "clear/retain_metric"
THRESHOLDS = Thresholds("log_forget_quality", 0.6, retain_floor=0.2, retain_metric=RETAIN)
EPOCHS = 3


def report(epoch: int, best_epoch: int) -> dict:
    return {"epoch": float(epoch), RETAIN: 0.5 + epoch / 10, "best_epoch": float(best_epoch)}


def train_checkpoint(runs: Path, trial_id: str, name: str, history: list[dict]) -> Path:
    """An epoch checkpoint as train/loop.py writes it, in the trial's Train run."""
    directory = runs / f"train-{trial_id}" / name
    directory.mkdir(parents=True)
    epoch = int(history[-1]["epoch"])
    (directory / PROGRESS_FILE).write_text(json.dumps({"epoch": epoch, "step": 4, "best": None}))
    (directory / HISTORY_FILE).write_text(json.dumps(history))
    (directory / "adapter_model.safetensors").write_bytes(f"epoch {epoch}".encode())
    return directory


def tune_trial(root: Path, trial_id: str) -> SimpleNamespace:
    storage = SimpleNamespace(
        storage_filesystem=LocalFileSystem(), trial_fs_path=str(root / "ray" / trial_id)
    )
    return SimpleNamespace(
        trial_id=trial_id,
        config={"train.lr": 1e-3},
        local_path=str(root / "staging" / trial_id),
        storage=storage,
    )


def trial_logger(tmp_path: Path, runs: Path) -> tuple[SearchTracker, TrialLogger]:
    """A search's tracker (local MLflow store) and the trial logger over Train runs ``runs``."""
    tracker = SearchTracker(Config().replace({"output_dir": str(tmp_path)}))
    tracker.start_parent("s", {}, {})
    logger = TrialLogger(
        tracker,
        Config().to_flat(),
        tmp_path / "adapters",
        THRESHOLDS,
        EPOCHS,
        {},
        train_runs=str(runs),
    )
    return tracker, logger


def result_epochs(path: Path) -> list[tuple[float, bool]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [(line["epoch"], line.get(REPLAYED, False)) for line in lines]


def test_a_resumed_trial_gets_back_its_stored_epochs_and_the_ones_tune_never_saw(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "ray_train"
    history = [report(1, 1), report(2, 1)]
    # Train kept epoch 1 (the best) and epoch 2 (the latest); storage's result.json has
    # epoch 1 only: epoch 2's report had not reached Tune when the search stopped.
    train_checkpoint(runs, "t1", "checkpoint_a", history[:1])
    train_checkpoint(runs, "t1", "checkpoint_b", history)
    trial = tune_trial(tmp_path, "t1")
    stored = Path(trial.storage.trial_fs_path)
    stored.mkdir(parents=True)
    (stored / "result.json").write_text(json.dumps({**history[0], "trial_id": "t1"}) + "\n")
    (stored / "progress.csv").write_text("epoch,clear/retain_metric\n1.0,0.6\n")

    tracker, logger = trial_logger(tmp_path, runs)
    logger.on_trial_start(0, [], trial)

    local = Path(trial.local_path)
    assert result_epochs(local / "result.json") == [(1.0, False), (2.0, True)]
    assert (local / "progress.csv").read_text() == (stored / "progress.csv").read_text()
    (run,) = tracker.children()
    steps = tracker.client.get_metric_history(run.info.run_id, RETAIN)
    assert [(m.step, m.value) for m in steps] == [(2, 0.7)]  # epoch 1 was logged before
    assert not (tmp_path / "adapters" / "t1").exists()  # epoch 2 was not the best

    # Tune's next report (epoch 3) goes on the same file and run.
    logger.on_trial_result(0, [], trial, report(3, 3))
    steps = tracker.client.get_metric_history(run.info.run_id, RETAIN)
    assert sorted(m.step for m in steps) == [2, 3]


def test_an_unrecorded_best_epoch_brings_its_adapter(tmp_path: Path) -> None:
    runs = tmp_path / "ray_train"
    checkpoint = train_checkpoint(runs, "t1", "checkpoint_a", [report(1, 1)])
    trial = tune_trial(tmp_path, "t1")  # nothing in storage: Tune never saw epoch 1
    _, logger = trial_logger(tmp_path, runs)
    logger.on_trial_start(0, [], trial)
    assert result_epochs(Path(trial.local_path) / "result.json") == [(1.0, True)]
    adapter = tmp_path / "adapters" / "t1" / "adapter_model.safetensors"
    assert adapter.read_bytes() == (checkpoint / "adapter_model.safetensors").read_bytes()


def test_a_trial_tune_restarts_in_this_driver_keeps_its_files(tmp_path: Path) -> None:
    """A lost node's trial: Tune's local result.json is still being written; nothing is
    copied over it and no epoch it holds is written twice."""
    runs = tmp_path / "ray_train"
    train_checkpoint(runs, "t1", "checkpoint_a", [report(1, 1)])
    local = tmp_path / "staging" / "t1" / "result.json"
    local.parent.mkdir(parents=True)
    local.write_text(json.dumps(report(1, 1)) + "\n")
    assert unrecorded_epochs(str(runs), "t1", local, EPOCHS) == []


def test_a_finished_trials_last_epoch_is_left_to_its_own_replay(tmp_path: Path) -> None:
    """A trial whose latest checkpoint is its last epoch reports that epoch again itself
    (train/loop.py replay_end); only the epochs before it are written here."""
    runs = tmp_path / "ray_train"
    history = [report(epoch, 1) for epoch in (1, 2, 3)]
    train_checkpoint(runs, "t1", "checkpoint_a", history)
    missing = unrecorded_epochs(str(runs), "t1", tmp_path / "none.json", EPOCHS)
    assert [m["epoch"] for m in missing] == [1.0, 2.0]
    assert all("checkpoint_path" not in m for m in missing)  # Train no longer keeps them


def test_a_fresh_trial_has_nothing_to_restore(tmp_path: Path) -> None:
    assert unrecorded_epochs(str(tmp_path / "ray_train"), "t9", tmp_path / "r.json", 3) == []
