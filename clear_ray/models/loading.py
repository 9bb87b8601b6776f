"""Save and load finetuned checkpoints (model + processor in one directory)."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin
from transformers.utils import logging

logging.disable_progress_bar()  # per-shard bars drown the search's own progress lines


def load_checkpoint(path: str | Path) -> tuple[PreTrainedModel, ProcessorMixin]:
    return (
        AutoModelForImageTextToText.from_pretrained(str(path), dtype="auto"),
        AutoProcessor.from_pretrained(str(path)),
    )


def save_checkpoint(model: PreTrainedModel, processor: ProcessorMixin, path: str | Path) -> None:
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))
