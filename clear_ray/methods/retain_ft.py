"""Retain fine-tuning: keep training on the retain set and let the forget set fade.

A baseline in CLEAR (https://arxiv.org/abs/2410.18057) and earlier unlearning work: never
touches the forget set, so whatever it forgets comes from interference alone. It shows how much
"unlearning" the other methods owe to plain continued fine-tuning.
"""

from __future__ import annotations

from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs, cross_entropy


@register_method(
    "retain_ft",
    views=("retain",),
    reference_views=(),
    paper="https://arxiv.org/abs/2410.18057",
    reads=(),
)
def retain_ft_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """CE(R).

    Args:
        inputs: policy scores of the "retain" view.
        config: unused; retain fine-tuning tunes only the learning rate.
    """
    retain_nll = cross_entropy(inputs.policy["retain"])
    return retain_nll, {"loss/retain_nll": float(retain_nll.detach())}
