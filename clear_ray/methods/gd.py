"""Gradient Difference (GD): ascend on the forget set, descend on the retain set.

Liu et al., "Continual Learning and Private Unlearning", https://arxiv.org/abs/2203.12817
(as used by TOFU, https://arxiv.org/abs/2401.06121). The retain term anchors the model's
utility while the forget term pushes the forget answers' likelihood down.
"""

from __future__ import annotations

from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs, cross_entropy


@register_method(
    "gd",
    views=("forget", "retain"),
    reference_views=(),
    paper="https://arxiv.org/abs/2203.12817",
    reads=("method.gamma", "method.alpha"),
)
def gd_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """−γ·CE(F) + α·CE(R).

    Args:
        inputs: policy scores of the "forget" and "retain" views.
        config: ``gamma`` weights the forget term, ``alpha`` the retain term.
    """
    forget_nll = cross_entropy(inputs.policy["forget"])
    retain_nll = cross_entropy(inputs.policy["retain"])
    loss = -config.gamma * forget_nll + config.alpha * retain_nll
    return loss, {
        "loss/forget_nll": float(forget_nll.detach()),
        "loss/retain_nll": float(retain_nll.detach()),
    }
