"""Specification of CLEAR's L1 regulariser on LoRA weights."""

from __future__ import annotations

import peft
import pytest
import torch
from torch import nn

from clear_ray.errors import ConfigError
from clear_ray.regularizers import l1_penalty, lora_parameters


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj = nn.Linear(4, 3)
        self.o_proj = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.o_proj(self.q_proj(x))


def _lora_model() -> nn.Module:
    """q_proj with rank-2 LoRA: A is [2, 4] filled with 0.5·(−1)^i, B is [3, 2] filled with −1."""
    model = peft.get_peft_model(
        _Attention(), peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"])
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_A" in name:
                param.copy_(0.5 * torch.tensor([[1.0, -1.0, 1.0, -1.0]] * 2))
            elif "lora_B" in name:
                param.fill_(-1.0)
    return model


def test_ab_selects_both_lora_matrices_and_nothing_else():
    names = [name for name, _ in lora_parameters(_lora_model(), "ab")]
    assert len(names) == 2
    assert any("lora_A" in name for name in names) and any("lora_B" in name for name in names)


def test_b_selects_only_lora_b():
    names = [name for name, _ in lora_parameters(_lora_model(), "b")]
    assert len(names) == 1 and "lora_B" in names[0]


def test_l1_over_a_and_b_equals_hand_computation():
    params = [param for _, param in lora_parameters(_lora_model(), "ab")]
    # A: 8 entries of |0.5|, B: 6 entries of |-1| -> 4 + 6, not divided by the 14 weights
    assert l1_penalty(params).item() == pytest.approx(10.0)


def test_l1_over_b_only_equals_hand_computation():
    params = [param for _, param in lora_parameters(_lora_model(), "b")]
    assert l1_penalty(params).item() == pytest.approx(6.0)


def test_l1_gradient_is_sign_whatever_the_number_of_weights():
    params = [param for _, param in lora_parameters(_lora_model(), "ab")]
    l1_penalty(params).backward()
    for param in params:
        torch.testing.assert_close(param.grad, torch.sign(param.detach()))


def test_l1_accumulates_bf16_weights_in_float32():
    weights = torch.full((4096,), 1.0 + 2.0**-7, dtype=torch.bfloat16)  # bf16 sum would round
    penalty = l1_penalty([weights])
    assert penalty.dtype == torch.float32 and penalty.item() == 4096 * (1.0 + 2.0**-7)


def test_unknown_targets_is_a_config_error():
    with pytest.raises(ConfigError, match="l1 targets"):
        lora_parameters(_lora_model(), "a")


def test_model_without_lora_raises_instead_of_regularising_nothing():
    with pytest.raises(ValueError, match="no trainable LoRA parameters"):
        lora_parameters(_Attention(), "ab")


def test_l1_of_no_weights_raises():
    with pytest.raises(ValueError, match="no weights"):
        l1_penalty([])
