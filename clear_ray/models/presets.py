"""Model presets by name: how to obtain a base model + processor, where LoRA goes, and the
recipe (finetune and unlearning defaults) that suits the model's scale.

A preset is data plus one builder; the rest of the code never asks which preset it has. This
module stays light (no torch/transformers at import), because resolving a config, ``--help``
and ``--dry-run`` read the recipes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from clear_ray.errors import ConfigError
from clear_ray.models.shapes import LLAVA_7B_SHAPE, TINY_SHAPE, ModelShape

if TYPE_CHECKING:
    from transformers import PreTrainedModel, ProcessorMixin

# (text corpus for a local tokenizer, seed, precision of the weights: fp32 (default) | bf16)
BaseBuilder = Callable[..., "tuple[PreTrainedModel, ProcessorMixin]"]

# The language model's attention and MLP projections (not the vision tower or projector), as in
# LLaVA-1.5's own LoRA finetuning. Unlearning trials put their LoRA here. CLEAR's Original/Gold
# finetune instead adapted every nn.Linear but lm_head (``finetune.lora_targets=all_linear``).
LLAVA_LORA_TARGETS = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)

# CLEAR's scale for LLaVA-1.5-7B (somvy/multimodal_unlearning): Original/Gold from
# config/mm/finetune.yaml and mm/finetune.py (lr 1e-5, 3 epochs as in the paper's model folder
# ft_full+tofu_epoch3_lr1e-05__wd0.01_lora, batch 8 × accumulation 2, weight decay 0.01, bf16,
# warm-up one epoch then HF's linear decay, LoRA r8/α32 on every Linear but lm_head, merged);
# unlearning from config/mm/forget.yaml and mm/forget.py (lr 1e-5, 5 epochs, batch 2 ×
# accumulation 2, warm-up one epoch, bf16).
# The shipped search spaces' lr bounds (1e-4..1e-2, tiny scale) become 1e-6..1e-4. The
# relearning attack (robust/relearn.py) is swept around the unlearning lr as on the tiny preset
# (×3 either side of 1e-5), not at the tiny preset's 1e-3: Deeb & Roger's attack on 7-8B models
# swept 1e-7..5e-6 (full finetune, their conf/*.yaml ft.lrs); LoRA takes a few times more.
CLEAR_7B_RECIPE: Mapping[str, Any] = MappingProxyType(
    {
        "finetune.lr": 1e-5,
        "finetune.epochs": 3,
        "finetune.batch_size": 8,
        "finetune.grad_accum": 2,
        "finetune.weight_decay": 0.01,
        "finetune.warmup_epochs": 1.0,
        "finetune.decay": "linear",
        "finetune.precision": "bf16",
        "finetune.lora_targets": "all_linear",
        "pretrain.epochs": 0,  # pretrained weights: LLaVA already knows the world
        "train.lr": 1e-5,
        "train.epochs": 5,
        "train.batch_size": 2,
        "train.grad_accum": 2,
        "train.warmup_epochs": 1.0,
        "train.precision": "bf16",
        "search.lr_scale": 0.01,
        "robust.relearn_lrs": "3e-6,1e-5,3e-5",
    }
)


@dataclass(frozen=True)
class ModelPreset:
    name: str
    build_base: BaseBuilder
    shape: ModelShape
    lora_target_modules: str
    finetune_full: bool  # True: Original/Gold train every weight (random-init tiny models)
    description: str
    # What a brought Original/Gold must be (its config.json's model_type and architectures).
    model_type: str = "llava"
    architecture: str = "LlavaForConditionalGeneration"
    # Dotted-path overrides applied between the dataclass defaults and the user's flags
    # (config.resolve_config); empty = the defaults, which are the tiny preset's.
    recipe: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def _build_tiny_llava(
    corpus: Iterable[str], seed: int, precision: str = "fp32"
) -> tuple[PreTrainedModel, ProcessorMixin]:
    from clear_ray.models import tiny
    from clear_ray.models.loading import torch_dtype

    tokenizer = tiny.train_tokenizer(corpus)
    model = tiny.build_tiny_llava(tokenizer, seed).to(torch_dtype(precision))
    return model, tiny.build_tiny_processor(tokenizer)


def _from_hub(model_id: str) -> BaseBuilder:
    def build(
        corpus: Iterable[str], seed: int, precision: str = "fp32"
    ) -> tuple[PreTrainedModel, ProcessorMixin]:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from clear_ray.models.loading import torch_dtype

        del corpus, seed  # pretrained: tokenizer and weights come with the checkpoint
        return (
            AutoModelForImageTextToText.from_pretrained(model_id, dtype=torch_dtype(precision)),
            AutoProcessor.from_pretrained(model_id),
        )

    return build


PRESETS: dict[str, ModelPreset] = {
    preset.name: preset
    for preset in (
        ModelPreset(
            name="tiny-llava",
            build_base=_build_tiny_llava,
            shape=TINY_SHAPE,
            lora_target_modules=LLAVA_LORA_TARGETS,
            finetune_full=True,
            description="~0.5M-param LLaVA, random init, tokenizer trained on the data",
        ),
        ModelPreset(
            name="llava-1.5-7b",
            build_base=_from_hub("llava-hf/llava-1.5-7b-hf"),
            shape=LLAVA_7B_SHAPE,
            lora_target_modules=LLAVA_LORA_TARGETS,
            finetune_full=False,
            description="llava-hf/llava-1.5-7b-hf, the model of the CLEAR paper (needs a GPU)",
            recipe=CLEAR_7B_RECIPE,
        ),
    )
}


def get_preset(name: str) -> ModelPreset:
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name]
