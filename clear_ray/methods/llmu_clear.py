"""LLMU as CLEAR's code runs it: the retain KL in the reverse direction, KL(π_θ ‖ π_θ₀).

CLEAR's ``mm/trainer.py`` (``llmu`` branch) calls ``kl_div(oracle, current)``, i.e. the
mode-seeking KL(π_θ ‖ π_θ₀), which tolerates losing low-probability retain mass; LLMU's own
code uses the forward direction (``llmu``). Kept under its own name to reproduce CLEAR's row.
"""

from __future__ import annotations

from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import llmu, register_method
from clear_ray.methods.base import LossInputs, kl_divergence


@register_method(
    "llmu_clear",
    views=("forget", "idk", "retain"),
    reference_views=("retain",),
    distribution_views=("retain",),
    paper="https://arxiv.org/abs/2410.18057",
    reads=("method.gamma", "method.alpha"),
)
def llmu_clear_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """−γ·CE(F) + CE(I) + α·KL(π_θ ‖ π_θ₀) on R (CLEAR's reverse KL)."""
    retain_kl = kl_divergence(inputs.policy_logprobs["retain"], inputs.reference_logprobs["retain"])
    return llmu.llmu_terms(inputs, config, retain_kl)
