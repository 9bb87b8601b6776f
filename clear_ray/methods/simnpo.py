"""SimNPO: reference-free, length-normalised NPO.

Fan et al., "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning", https://arxiv.org/abs/2410.07163. NPO's reliance on θ₀ spreads the unlearning
effort unevenly over forget items of different difficulty and length; SimNPO drops θ₀ and uses
the mean (not summed) answer-token NLL, so long and short answers are pushed alike.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs, cross_entropy


def simnpo_loss(mean_nll: Tensor, beta: float, delta: float) -> Tensor:
    """Per-example SimNPO loss −(2/β)·log σ(β·(ℓ̄ − δ)).

    The paper writes −(2/β)·log σ(−(β/|y|)·logπ_θ(y|x) − γ); with ℓ̄ = −logπ_θ(y|x)/|y| that
    is σ(β·ℓ̄ − γ), i.e. our margin is δ = γ/β (open-unlearning's ``delta``). Intuition: raise
    each forget answer's mean NLL; the push fades once ℓ̄ is well past δ.

    Args:
        mean_nll: mean answer-token NLL ℓ̄ of each forget example under π_θ, [B].
        beta: inverse temperature β > 0.
        delta: margin δ ≥ 0 on ℓ̄ (in nats per token).

    Returns:
        Per-example losses, shape [B]; at ℓ̄ = δ every entry is (2/β)·ln 2.
    """
    # logsigmoid instead of log(sigmoid(·)): finite when ℓ̄ is far below δ.
    return -(2.0 / beta) * F.logsigmoid(beta * (mean_nll - delta))


@register_method(
    "simnpo",
    views=("forget", "retain"),
    reference_views=(),
    paper="https://arxiv.org/abs/2410.07163",
    reads=("method.beta", "method.delta", "method.alpha"),
)
def simnpo_unlearning_loss(
    inputs: LossInputs, config: MethodConfig
) -> tuple[Tensor, dict[str, float]]:
    """Batch mean of :func:`simnpo_loss` on the forget view + α·CE(R); no reference.

    Args:
        inputs: policy scores of "forget" and "retain".
        config: ``beta`` is SimNPO's β, ``delta`` its margin, ``alpha`` weights the retain term.
    """
    forget = inputs.policy["forget"]
    negative = simnpo_loss(forget.mean_nll, config.beta, config.delta).mean()
    retain_nll = cross_entropy(inputs.policy["retain"])
    loss = negative + config.alpha * retain_nll
    return loss, {
        "loss/simnpo": float(negative.detach()),
        "loss/forget_nll": float(cross_entropy(forget).detach()),
        "loss/retain_nll": float(retain_nll.detach()),
    }
