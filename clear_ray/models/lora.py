"""LoRA attach and the reference model.

The reference model θ₀ is the same module with its adapters disabled: no second copy of the
weights in memory (open-unlearning deep-copies the model; we do not).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from transformers import PreTrainedModel

from clear_ray.config import LoraConfig


def attach_lora(model: PreTrainedModel, lora: LoraConfig, target_modules: str) -> PeftModel:
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
