"""KL minimisation: gradient ascent on the forget set, KL to θ₀ on the retain set.

TOFU's "KL" baseline (Maini et al., https://arxiv.org/abs/2401.06121): the retain term
keeps the output *distribution* on retain data close to the model before unlearning,
a stronger anchor than the retain answers' likelihood alone.
"""

from __future__ import annotations

from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs, cross_entropy, kl_divergence


@register_method(
    "kl",
    views=("forget", "retain"),
    reference_views=("retain",),
    distribution_views=("retain",),
    paper="https://arxiv.org/abs/2401.06121",
    reads=("method.gamma", "method.alpha"),
)
def kl_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """−γ·CE(F) + α·KL(π_θ₀ ‖ π_θ) on R.

    Args:
        inputs: policy scores of "forget"; policy and reference distributions of "retain".
        config: ``gamma`` weights the forget term, ``alpha`` the KL term.
    """
    forget_nll = cross_entropy(inputs.policy["forget"])
    retain_kl = kl_divergence(inputs.reference_logprobs["retain"], inputs.policy_logprobs["retain"])
    loss = -config.gamma * forget_nll + config.alpha * retain_kl
    return loss, {
        "loss/forget_nll": float(forget_nll.detach()),
        "loss/retain_kl": float(retain_kl.detach()),
    }
