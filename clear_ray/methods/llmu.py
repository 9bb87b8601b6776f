"""LLMU: ascend on the forget answers, learn "I don't know", stay close to θ₀ on retain data.

Yao et al., "Large Language Model Unlearning", https://arxiv.org/abs/2310.10683. Three terms:
gradient ascent on harmful (here: forget) answers, a random-but-harmless answer (here: the
IDK view) to give the model somewhere to go, and KL(π_θ ‖ π_θ₀) on normal (retain) data.
"""

from __future__ import annotations

from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods.base import LossInputs, Method, cross_entropy, kl_divergence


def llmu_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """−γ·CE(F) + CE(I) + α·KL(π_θ ‖ π_θ₀) on R (note the KL direction: the paper's).

    Args:
        inputs: policy scores of "forget" and "idk"; policy and reference distributions of
            "retain".
        config: ``gamma`` weights the ascent term, ``alpha`` the KL term.
    """
    forget_nll = cross_entropy(inputs.policy["forget"])
    idk_nll = cross_entropy(inputs.policy["idk"])
    retain_kl = kl_divergence(inputs.policy_logprobs["retain"], inputs.reference_logprobs["retain"])
    loss = -config.gamma * forget_nll + idk_nll + config.alpha * retain_kl
    return loss, {
        "loss/forget_nll": float(forget_nll.detach()),
        "loss/idk_nll": float(idk_nll.detach()),
        "loss/retain_kl": float(retain_kl.detach()),
    }


METHOD = Method(
    name="llmu",
    views=("forget", "idk", "retain"),
    reference_views=("retain",),
    distribution_views=("retain",),
    loss=llmu_loss,
    paper="https://arxiv.org/abs/2310.10683",
)
