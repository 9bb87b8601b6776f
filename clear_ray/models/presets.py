"""Model presets by name: how to obtain a base model + processor, and where LoRA goes.

A preset is data plus one builder; the rest of the code never asks which preset it has.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from clear_ray.config import ConfigError
from clear_ray.models import tiny

BaseBuilder = Callable[[Iterable[str], int], tuple[PreTrainedModel, ProcessorMixin]]

# LoRA on the language model's attention and MLP projections only (not the vision tower),
# as in LLaVA-1.5 LoRA finetuning and CLEAR's unlearning runs.
LLAVA_LORA_TARGETS = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)


@dataclass(frozen=True)
class ModelPreset:
    name: str
    build_base: BaseBuilder  # (text corpus for a local tokenizer, seed) -> (model, processor)
    lora_target_modules: str
    finetune_full: bool  # True: Original/Gold train every weight (random-init tiny models)
    description: str


def _build_tiny_llava(corpus: Iterable[str], seed: int) -> tuple[PreTrainedModel, ProcessorMixin]:
    tokenizer = tiny.train_tokenizer(corpus)
    return tiny.build_tiny_llava(tokenizer, seed), tiny.build_tiny_processor(tokenizer)


def _from_hub(model_id: str) -> BaseBuilder:
    def build(corpus: Iterable[str], seed: int) -> tuple[PreTrainedModel, ProcessorMixin]:
        del corpus, seed  # pretrained: tokenizer and weights come with the checkpoint
        return (
            AutoModelForImageTextToText.from_pretrained(model_id, dtype="auto"),
            AutoProcessor.from_pretrained(model_id),
        )

    return build


PRESETS: dict[str, ModelPreset] = {
    preset.name: preset
    for preset in (
        ModelPreset(
            name="tiny-llava",
            build_base=_build_tiny_llava,
            lora_target_modules=LLAVA_LORA_TARGETS,
            finetune_full=True,
            description="~0.5M-param LLaVA, random init, tokenizer trained on the data",
        ),
        ModelPreset(
            name="llava-1.5-7b",
            build_base=_from_hub("llava-hf/llava-1.5-7b-hf"),
            lora_target_modules=LLAVA_LORA_TARGETS,
            finetune_full=False,
            description="llava-hf/llava-1.5-7b-hf, the model of the CLEAR paper (needs a GPU)",
        ),
    )
}


def get_preset(name: str) -> ModelPreset:
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
