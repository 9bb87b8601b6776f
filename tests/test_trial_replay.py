"""A trial restored from a checkpoint that already ended reports that end again, not nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clear_ray.train.checkpoint_files import DIVERGED_FILE, METRICS_FILE, PROGRESS_FILE
from clear_ray.train.keys import DIVERGED_KEY
from clear_ray.train.loop import replay_end


class Reports:
    def __init__(self) -> None:
        self.calls: list[tuple[dict, list[str] | None]] = []

    def __call__(self, metrics: dict, checkpoint: Path | None) -> None:
        files = sorted(p.name for p in checkpoint.iterdir()) if checkpoint else None
        self.calls.append((metrics, files))


def epoch_checkpoint(directory: Path, epoch: int) -> Path:
    directory.mkdir()
    (directory / PROGRESS_FILE).write_text(json.dumps({"epoch": epoch, "step": 7, "best": None}))
    (directory / METRICS_FILE).write_text(json.dumps({"epoch": epoch, "best_objective": -3.5}))
    (directory / "adapter_model.safetensors").write_bytes(b"weights")
    return directory


def test_a_finished_trial_reports_its_last_epoch_again_with_its_checkpoint(tmp_path) -> None:
    reports = Reports()
    assert replay_end(reports, epoch_checkpoint(tmp_path / "c", 2), epochs=2, rank=0)
    ((metrics, files),) = reports.calls
    assert metrics == {"epoch": 2, "best_objective": -3.5}
    assert files == ["adapter_model.safetensors", METRICS_FILE, PROGRESS_FILE]


def test_other_ranks_report_without_a_checkpoint(tmp_path) -> None:
    reports = Reports()
    assert replay_end(reports, epoch_checkpoint(tmp_path / "c", 3), epochs=3, rank=1)
    assert reports.calls == [({"epoch": 3, "best_objective": -3.5}, None)]


@pytest.mark.parametrize("epoch", [1, 2])
def test_an_unfinished_trial_goes_on_training(tmp_path, epoch: int) -> None:
    reports = Reports()
    assert not replay_end(reports, epoch_checkpoint(tmp_path / "c", epoch), epochs=3, rank=0)
    assert reports.calls == []


def test_a_diverged_trial_fails_again_with_its_reason(tmp_path) -> None:
    checkpoint = tmp_path / "c"
    checkpoint.mkdir()
    (checkpoint / DIVERGED_FILE).write_text("epoch 1: ga loss became nan\n")
    reports = Reports()
    assert replay_end(reports, checkpoint, epochs=3, rank=0)
    ((metrics, files),) = reports.calls
    assert metrics[DIVERGED_KEY] == 1.0 and metrics["reason"] == "epoch 1: ga loss became nan"
    assert files == [DIVERGED_FILE]
