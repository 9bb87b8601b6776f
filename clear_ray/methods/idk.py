"""IDK fine-tuning: teach "I don't know" on the forget prompts, keep the retain answers.

Maini et al., "TOFU: A Task of Fictitious Unlearning for LLMs", https://arxiv.org/abs/2401.06121
(their "preference optimisation" baseline: NLL on IDK targets plus NLL on the retain set).
CLEAR's code at HEAD trained on the untouched forget pair here; our "idk" view carries the
forget prompts with an IDK answer, so the target really is a refusal.
"""

from __future__ import annotations

from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs, cross_entropy


@register_method(
    "idk",
    views=("idk", "retain"),
    reference_views=(),
    paper="https://arxiv.org/abs/2401.06121",
    reads=("method.gamma", "method.alpha"),
)
def idk_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """γ·CE(I) + α·CE(R).

    Args:
        inputs: policy scores of the "idk" and "retain" views.
        config: ``gamma`` weights the IDK term, ``alpha`` the retain term.
    """
    idk_nll = cross_entropy(inputs.policy["idk"])
    retain_nll = cross_entropy(inputs.policy["retain"])
    loss = config.gamma * idk_nll + config.alpha * retain_nll
    return loss, {
        "loss/idk_nll": float(idk_nll.detach()),
        "loss/retain_nll": float(retain_nll.detach()),
    }
