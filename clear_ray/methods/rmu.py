"""RMU: steer a decoder layer's activations on forget data towards a fixed random direction.

Li et al., "The WMDP Benchmark" (Representation Misdirection for Unlearning),
https://arxiv.org/abs/2403.03218. Forget activations at layer ℓ are pushed to c·u, a scaled
random unit vector, which later layers read as noise; retain activations are held at θ₀'s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs

STEERING_SEED = 0  # u is fixed for a model width: every trial steers towards the same u


def steering_direction(hidden_size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The fixed random unit vector u of RMU (uniform in [0, 1) then normalised, as the paper)."""
    generator = torch.Generator().manual_seed(STEERING_SEED)
    u = torch.rand(hidden_size, generator=generator)
    return (u / u.norm()).to(device=device, dtype=dtype)


@register_method(
    "rmu",
    views=("forget", "retain"),
    reference_views=("retain",),
    hidden_views=("forget", "retain"),
    paper="https://arxiv.org/abs/2403.03218",
    reads=("method.steering_coeff", "method.alpha", "method.layer_fraction"),
)
def rmu_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """MSE(h_ℓ(F), c·u) + α·MSE(h_ℓ(R), h_ℓ^θ₀(R)) over answer tokens.

    Reductions: each MSE is the mean over every (answer token, hidden unit) of the batch, the
    same mean-reduced ``mse_loss`` as WMDP's ``rmu/unlearn.py`` (which averages over all
    tokens, prompt included), so its α ≈ 10³ (1200 for Zephyr-7B) carries over; long answers
    weigh more than short ones (open-unlearning averages per example first).

    Args:
        inputs: policy hidden states of "forget" and "retain", reference ones of "retain",
            each [N, H] at the layer chosen by ``config.layer_fraction``.
        config: ``steering_coeff`` is c, ``alpha`` weights the retain term.
    """
    forget_hidden = inputs.policy_hidden["forget"].float()
    target = config.steering_coeff * steering_direction(
        forget_hidden.shape[-1], forget_hidden.device, forget_hidden.dtype
    )
    forget_term = F.mse_loss(forget_hidden, target.expand_as(forget_hidden))
    retain_term = F.mse_loss(
        inputs.policy_hidden["retain"].float(), inputs.reference_hidden["retain"].float()
    )
    loss = forget_term + config.alpha * retain_term
    return loss, {
        "loss/rmu_forget": float(forget_term.detach()),
        "loss/rmu_retain": float(retain_term.detach()),
    }
