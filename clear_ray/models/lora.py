"""LoRA attach and the reference model.

The reference model θ₀ is the same module with its adapters disabled: no second copy of the
weights in memory (open-unlearning deep-copies the model; we do not).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel

from clear_ray.config import LoraConfig


def all_linear_names(model: nn.Module) -> list[str]:
    """Every ``nn.Linear`` but the output head: vision tower, projector and language model.

    CLEAR's Original/Gold LoRA (``utils.py`` find_all_linear_names, which matches by suffix
    and so also adapts the CLIP tower and projector). Full names, so nothing else matches.
    """
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] != "lm_head"
    ]


def finetune_targets(model: nn.Module, lora_targets: str, language_model: str) -> str | list[str]:
    """Where Original/Gold's LoRA goes (``finetune.lora_targets``); ``language_model`` is the
    preset's regex for its language-model projections."""
    targets = {
        "language_model": lambda: language_model,
        "all_linear": lambda: all_linear_names(model),
    }
    return targets[lora_targets]()


def attach_lora(
    model: PreTrainedModel, lora: LoraConfig, target_modules: str | list[str]
) -> PeftModel:
    peft_config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=target_modules,
        bias="none",
    )
    return get_peft_model(model, peft_config)


def reference_model(model: PeftModel) -> AbstractContextManager:
    """Context in which ``model`` computes θ₀ (the model being unlearned, before unlearning)."""
    return model.disable_adapter()
