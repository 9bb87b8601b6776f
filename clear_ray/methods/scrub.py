"""SCRUB: a student (π_θ) moves away from its teacher (θ₀) on forget data, stays on retain data.

Kurmanji et al., "Towards Unbounded Machine Unlearning", https://arxiv.org/abs/2302.09880.
Training alternates: max-steps raise KL(π_θ₀ ‖ π_θ) on the forget set, min-steps lower it
on the retain set together with the retain task loss. ``max_steps_ratio`` sets how often a
max-step precedes the min-step.
"""

from __future__ import annotations

import math

from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods.base import LossInputs, Method, cross_entropy, kl_divergence


def scrub_max_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """−KL(π_θ₀ ‖ π_θ) on F (a max-step: ascend the divergence from the teacher)."""
    forget_kl = kl_divergence(inputs.reference_logprobs["forget"], inputs.policy_logprobs["forget"])
    return -forget_kl, {"loss/forget_kl": float(forget_kl.detach())}


def scrub_min_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """α·KL(π_θ₀ ‖ π_θ) on R + γ·CE(R) (a min-step: stay with the teacher on retain data)."""
    retain_kl = kl_divergence(inputs.reference_logprobs["retain"], inputs.policy_logprobs["retain"])
    retain_nll = cross_entropy(inputs.policy["retain"])
    loss = config.alpha * retain_kl + config.gamma * retain_nll
    return loss, {
        "loss/retain_kl": float(retain_kl.detach()),
        "loss/retain_nll": float(retain_nll.detach()),
    }


def takes_max_step(step: int, config: MethodConfig) -> bool:
    """True on a ``max_steps_ratio`` share of steps, spread evenly (ratio 0.5: every 2nd)."""
    ratio = config.max_steps_ratio
    return math.floor((step + 1) * ratio) > math.floor(step * ratio)


METHOD = Method(
    name="scrub",
    views=("retain",),
    reference_views=("retain",),
    distribution_views=("retain",),
    loss=scrub_min_loss,
    paper="https://arxiv.org/abs/2302.09880",
    ascent=Method(
        name="scrub_max",
        views=("forget",),
        reference_views=("forget",),
        distribution_views=("forget",),
        loss=scrub_max_loss,
        paper="https://arxiv.org/abs/2302.09880",
    ),
    ascent_schedule=takes_max_step,
)
