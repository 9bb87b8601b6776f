"""Gradient Ascent (GA): climb the forget-set loss.

Jang et al., "Knowledge Unlearning for Mitigating Privacy Risks in Language Models",
https://arxiv.org/abs/2210.01504. The simplest baseline: undo finetuning by maximising the
NLL of the forget answers; nothing holds the rest of the model in place, so it collapses.
"""

from __future__ import annotations

from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs, cross_entropy


@register_method(
    "ga",
    views=("forget",),
    reference_views=(),
    paper="https://arxiv.org/abs/2210.01504",
    reads=(),
)
def ga_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """−CE(F).

    Args:
        inputs: policy scores of the "forget" view.
        config: unused; GA tunes only the learning rate.
    """
    forget_nll = cross_entropy(inputs.policy["forget"])
    return -forget_nll, {"loss/forget_nll": float(forget_nll.detach())}
