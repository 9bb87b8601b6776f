"""Negative Preference Optimization (NPO): DPO with only a rejected answer.

Zhang et al., "Negative Preference Optimization: From Catastrophic Collapse to Effective
Unlearning", https://arxiv.org/abs/2404.05868. Like gradient ascent it lowers the forget
answers' likelihood, but the sigmoid saturates once π_θ has moved away from θ₀, which slows
the collapse GA runs into. CLEAR's code took the ratio per vocabulary entry; the paper's (and
ours) is one ratio of whole-answer likelihoods per example.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs, cross_entropy


def npo_loss(policy_logps: Tensor, ref_logps: Tensor, beta: float) -> Tensor:
    """Per-example NPO loss −(2/β)·log σ(−β[logπ_θ(y|x) − logπ_θ₀(y|x)]).

    Intuition: push the forget answer's likelihood below the reference's; the push fades as
    the log-ratio becomes very negative, and as β → 0 the gradient tends to GA's.

    Args:
        policy_logps: summed answer log-probs of the forget answers under π_θ, [B].
        ref_logps: the same answers under the reference π_θ₀ (no grad), [B].
        beta: inverse temperature β > 0.

    Returns:
        Per-example losses, shape [B]; at π_θ = π_θ₀ every entry is (2/β)·ln 2.
    """
    # logsigmoid instead of log(sigmoid(·)): finite when the policy has moved far above θ₀.
    return -(2.0 / beta) * F.logsigmoid(-beta * (policy_logps - ref_logps))


@register_method(
    "npo",
    views=("forget", "retain"),
    reference_views=("forget",),
    paper="https://arxiv.org/abs/2404.05868",
    reads=("method.beta", "method.alpha"),
)
def npo_unlearning_loss(
    inputs: LossInputs, config: MethodConfig
) -> tuple[Tensor, dict[str, float]]:
    """Batch mean of :func:`npo_loss` on the forget view + α·CE(R).

    Args:
        inputs: policy scores of "forget" and "retain"; reference scores of "forget".
        config: ``beta`` is NPO's β, ``alpha`` weights the retain term.
    """
    forget = inputs.policy["forget"]
    negative = npo_loss(forget.logprob_sum, inputs.reference["forget"].logprob_sum, config.beta)
    negative = negative.mean()
    retain_nll = cross_entropy(inputs.policy["retain"])
    loss = negative + config.alpha * retain_nll
    return loss, {
        "loss/npo": float(negative.detach()),
        "loss/forget_nll": float(cross_entropy(forget).detach()),
        "loss/retain_nll": float(retain_nll.detach()),
    }
