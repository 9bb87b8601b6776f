"""L1 on LoRA weights: CLEAR's regulariser (Dontsov et al., https://arxiv.org/abs/2410.18057).

A sparse low-rank update touches few directions of the base model, which in CLEAR kept
utility while forgetting. The penalty is CLEAR's un-normalised Σ|w| (``mm/trainer.py``, the L1
block of ``compute_loss``: λ·‖cat(LoRA params)‖₁, λ = 0.01 in the paper): its per-weight pull
λ·sign(w) is the same at every model size, so λ = 0.01 means what it meant in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from clear_ray.errors import ConfigError

_LORA_MATRICES = {"ab": ("lora_A", "lora_B"), "b": ("lora_B",)}


def lora_parameters(model: nn.Module, targets: str) -> list[tuple[str, Tensor]]:
    """The trainable peft LoRA matrices of ``model`` selected by ``targets``, with their names.

    Args:
        model: a peft-wrapped model; LoRA weights are found by the ``lora_A``/``lora_B``
            segment of their parameter names.
        targets: "ab" for both A and B matrices, "b" for B only.

    Raises:
        ConfigError: on an unknown ``targets`` string.
        ValueError: if no LoRA parameter matches; CLEAR's code silently regularised nothing
            when no adapter was attached, which is the bug this guards against.
    """
    if targets not in _LORA_MATRICES:
        raise ConfigError(f"unknown l1 targets {targets!r}; expected one of {list(_LORA_MATRICES)}")
    wanted = set(_LORA_MATRICES[targets])
    params = [
        (name, param)
        for name, param in model.named_parameters()
        if param.requires_grad and wanted & set(name.split("."))
    ]
    if not params:
        raise ValueError(
            f"no trainable LoRA parameters ({', '.join(sorted(wanted))}) found in "
            f"{type(model).__name__}; attach peft LoRA adapters before regularising"
        )
    return params


def l1_penalty(params: Sequence[Tensor]) -> Tensor:
    """Σ|w| over all ``params`` (a scalar), not divided by their number, as CLEAR.

    Its gradient is sign(w) per weight whatever the model size; dividing by the number of
    weights n would shrink that pull as 1/n (≈ 2·10⁷ LoRA weights on LLaVA-7B). Sums are
    accumulated in float32 so bf16 adapters do not lose precision.

    Args:
        params: the weights to penalise, any shapes (usually from :func:`lora_parameters`).

    Raises:
        ValueError: if ``params`` is empty or holds no elements.
    """
    if sum(p.numel() for p in params) == 0:
        raise ValueError("l1_penalty got no weights to regularise")
    return torch.stack([p.abs().sum(dtype=torch.float32) for p in params]).sum()
