"""LLMU: ascend on the forget answers, learn "I don't know", stay close to θ₀ on retain data.

Yao et al., "Large Language Model Unlearning", https://arxiv.org/abs/2310.10683. Three terms:
gradient ascent on harmful (here: forget) answers, a random-but-harmless answer (here: the
IDK view; LLMU samples K = 5 random normal-data answers) to give the model somewhere to go,
and the forward KL(π_θ₀ ‖ π_θ) on normal (retain) data, as LLMU's code computes it
(kevinyaobytedance/llm_unlearn ``utils.py`` ``compute_kl``: −Σ P log Q with P the pretrained
model, Q the current one; the same gradient as KL(P ‖ Q)). CLEAR's ``mm/trainer.py`` uses the
reverse direction; that variant is ``llmu_clear``.
"""

from __future__ import annotations

from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs, cross_entropy, kl_divergence


def llmu_terms(
    inputs: LossInputs, config: MethodConfig, retain_kl: Tensor
) -> tuple[Tensor, dict[str, float]]:
    """−γ·CE(F) + CE(I) + α·``retain_kl``: LLMU's loss around a retain KL of either direction."""
    forget_nll = cross_entropy(inputs.policy["forget"])
    idk_nll = cross_entropy(inputs.policy["idk"])
    loss = -config.gamma * forget_nll + idk_nll + config.alpha * retain_kl
    return loss, {
        "loss/forget_nll": float(forget_nll.detach()),
        "loss/idk_nll": float(idk_nll.detach()),
        "loss/retain_kl": float(retain_kl.detach()),
    }


@register_method(
    "llmu",
    views=("forget", "idk", "retain"),
    reference_views=("retain",),
    distribution_views=("retain",),
    paper="https://arxiv.org/abs/2310.10683",
    reads=("method.gamma", "method.alpha"),
)
def llmu_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """−γ·CE(F) + CE(I) + α·KL(π_θ₀ ‖ π_θ) on R (forward KL, LLMU's ``compute_kl``).

    Args:
        inputs: policy scores of "forget" and "idk"; policy and reference distributions of
            "retain".
        config: ``gamma`` weights the ascent term, ``alpha`` the KL term.
    """
    retain_kl = kl_divergence(inputs.reference_logprobs["retain"], inputs.policy_logprobs["retain"])
    return llmu_terms(inputs, config, retain_kl)
