"""Save and load finetuned checkpoints (model + processor in one directory).

Loading names its precision: ``dtype="auto"`` would give each checkpoint its own saved dtype
(llava-hf's 7B ships fp16), so references and trials could score in different precisions and
their NLL offsets would feed straight into forget quality. Everything loads in the config's
``train.precision`` instead.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin
from transformers.utils import logging

logging.disable_progress_bar()  # per-shard bars drown the search's own progress lines

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def torch_dtype(precision: str) -> torch.dtype:
    """The weights' dtype for a config precision (``train.precision``, ``finetune.precision``)."""
    return DTYPES[precision]


def load_checkpoint(
    path: str | Path, precision: str = "fp32"
) -> tuple[PreTrainedModel, ProcessorMixin]:
    return (
        AutoModelForImageTextToText.from_pretrained(str(path), dtype=torch_dtype(precision)),
        AutoProcessor.from_pretrained(str(path)),
    )


def save_checkpoint(model: PreTrainedModel, processor: ProcessorMixin, path: str | Path) -> None:
    model.save_pretrained(str(path))
    processor.save_pretrained(str(path))


def load_for_evaluation(
    checkpoint: str | Path, adapter: str | Path | None = None, precision: str = "fp32"
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """A checkpoint with a LoRA adapter merged in (evaluation never trains it), on GPU if any."""
    model, processor = load_checkpoint(checkpoint, precision)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if torch.cuda.is_available():
        model = model.cuda()
    return model, processor
