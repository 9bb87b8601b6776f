"""SCRUB: a student (π_θ) moves away from its teacher (θ₀) on forget data, stays on retain data.

Kurmanji et al., "Towards Unbounded Machine Unlearning", https://arxiv.org/abs/2302.09880;
schedule and losses from its code (meghdadk/SCRUB ``scrub.py``, ``helper/loops.py``
``train_distill``, ``helper/KD.py`` ``DistillKL``). In each of the first ``msteps`` epochs
(``method.scrub_max_epochs``) a max pass over the whole forget set ascends KL(π_θ₀ ‖ π_θ);
every epoch then takes a min pass over retain data with γ·CE(R) + α·KL(π_θ₀ ‖ π_θ) (SCRUB's
``gamma``·CE + ``alpha``·KL, 1 and 0.5 in its notebooks). The later min-only epochs are what
repair retain performance. Both KL terms are at temperature T (``method.kl_temperature``, 4
as SCRUB) with SCRUB's T² scaling. Here the min pass takes the retain items paired with the
epoch's forget batches (CLEAR's epoch), not SCRUB's full retain loader. ``msteps`` counts max
epochs as SCRUB's notebooks do (from 1); ``scrub.py`` runs ``if epoch <= msteps`` with a 0-based
epoch, one max epoch more. The LR has no warm-up, as SCRUB's (train/schedule.py
``trial_warmup_epochs``): a warm-up would run the max passes at a fraction of the rate.
"""

from __future__ import annotations

from torch import Tensor

from clear_ray.config import MethodConfig
from clear_ray.methods import register_method
from clear_ray.methods.base import LossInputs, Method, cross_entropy, kl_divergence


def scrub_max_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """−T²·KL_T(π_θ₀ ‖ π_θ) on F (a max-step: ascend the divergence from the teacher)."""
    forget_kl = kl_divergence(
        inputs.reference_logprobs["forget"],
        inputs.policy_logprobs["forget"],
        config.kl_temperature,
    )
    return -forget_kl, {"loss/forget_kl": float(forget_kl.detach())}


def max_epochs(config: MethodConfig) -> int:
    """SCRUB's ``msteps``: the number of leading epochs that take a max pass."""
    return config.scrub_max_epochs


@register_method(
    "scrub",
    views=("retain",),
    reference_views=("retain",),
    distribution_views=("retain",),
    paper="https://arxiv.org/abs/2302.09880",
    ascent=Method(
        name="scrub_max",
        views=("forget",),
        reference_views=("forget",),
        distribution_views=("forget",),
        loss=scrub_max_loss,
        paper="https://arxiv.org/abs/2302.09880",
    ),
    ascent_epochs=max_epochs,
    reads=("method.alpha", "method.gamma", "method.kl_temperature", "method.scrub_max_epochs"),
)
def scrub_min_loss(inputs: LossInputs, config: MethodConfig) -> tuple[Tensor, dict[str, float]]:
    """α·T²·KL_T(π_θ₀ ‖ π_θ) on R + γ·CE(R) (a min-step: stay with the teacher on retain)."""
    retain_kl = kl_divergence(
        inputs.reference_logprobs["retain"],
        inputs.policy_logprobs["retain"],
        config.kl_temperature,
    )
    retain_nll = cross_entropy(inputs.policy["retain"])
    loss = config.alpha * retain_kl + config.gamma * retain_nll
    return loss, {
        "loss/retain_kl": float(retain_kl.detach()),
        "loss/retain_nll": float(retain_nll.detach()),
    }
