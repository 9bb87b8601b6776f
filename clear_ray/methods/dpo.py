"""DPO for unlearning: prefer "I don't know" over the forget answer, relative to θ₀.

Rafailov et al., "Direct Preference Optimization", https://arxiv.org/abs/2305.18290, used for
unlearning by TOFU (https://arxiv.org/abs/2401.06121) with the IDK answer as the preferred
response. CLEAR's code trained plain NLL on the IDK targets; this is the real DPO objective.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs, cross_entropy


def dpo_loss(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    beta: float,
) -> Tensor:
    """Per-example DPO loss −(2/β)·log σ(β[(logπ_θ − logπ_θ₀)(chosen) − (… )(rejected)]).

    Intuition: raise the chosen answer's likelihood relative to the rejected one, measured
    against the reference so the model is only pushed as far as it has not yet moved.
    The 2/β scale (as in NPO, https://arxiv.org/abs/2404.05868) keeps the gradient size
    comparable across β, so β and the learning rate can be searched independently.

    Args:
        policy_chosen_logps: summed answer log-probs of the chosen answers under π_θ, [B].
        policy_rejected_logps: same for the rejected answers under π_θ, [B].
        ref_chosen_logps: chosen answers under the reference π_θ₀ (no grad), [B].
        ref_rejected_logps: rejected answers under π_θ₀ (no grad), [B].
        beta: inverse temperature β > 0.

    Returns:
        Per-example losses, shape [B]; at π_θ = π_θ₀ every entry is (2/β)·ln 2.
    """
    chosen_logratio = policy_chosen_logps - ref_chosen_logps
    rejected_logratio = policy_rejected_logps - ref_rejected_logps
    # logsigmoid instead of log(sigmoid(·)): finite for large negative margins.
    return -(2.0 / beta) * F.logsigmoid(beta * (chosen_logratio - rejected_logratio))


@register_method(
    "dpo",
    views=("forget", "idk", "retain"),
    reference_views=("forget", "idk"),
    paper="https://arxiv.org/abs/2305.18290",
    reads=("method.beta", "method.alpha"),
)
def dpo_unlearning_loss(
    inputs: LossInputs, config: MethodConfig
) -> tuple[Tensor, dict[str, float]]:
    """Batch mean of :func:`dpo_loss` (chosen = IDK view, rejected = forget view) + α·CE(R).

    Args:
        inputs: policy scores of "forget", "idk", "retain"; reference scores of "forget", "idk".
        config: ``beta`` is DPO's β, ``alpha`` weights the retain term.
    """
    preference = dpo_loss(
        policy_chosen_logps=inputs.policy["idk"].logprob_sum,
        policy_rejected_logps=inputs.policy["forget"].logprob_sum,
        ref_chosen_logps=inputs.reference["idk"].logprob_sum,
        ref_rejected_logps=inputs.reference["forget"].logprob_sum,
        beta=config.beta,
    ).mean()
    retain_nll = cross_entropy(inputs.policy["retain"])
    loss = preference + config.alpha * retain_nll
    return loss, {
        "loss/dpo": float(preference.detach()),
        "loss/forget_nll": float(cross_entropy(inputs.policy["forget"]).detach()),
        "loss/idk_nll": float(cross_entropy(inputs.policy["idk"]).detach()),
        "loss/retain_nll": float(retain_nll.detach()),
    }
