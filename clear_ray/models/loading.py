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


def load_for_evaluation(
    checkpoint: str | Path, adapter: str | Path | None = None
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """A checkpoint with a LoRA adapter merged in (evaluation never trains it), on GPU if any."""
    import torch

    model, processor = load_checkpoint(checkpoint)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if torch.cuda.is_available():
        model = model.cuda()
    return model, processor
