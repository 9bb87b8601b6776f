"""What every unlearning method consumes: answer-token statistics, not models.

The trainer runs the forward passes a :class:`Method` declares (its ``views``, and the
``reference_views`` again with LoRA adapters disabled), reduces them with
:func:`sequence_scores`, and hands the result to the method's pure ``loss`` function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from clear_ray.config import METHOD_FIELDS, MethodConfig

IGNORE_INDEX = -100  # label value of image, prompt and padding positions (HF convention)


@dataclass(frozen=True)
class SequenceScores:
    """Per-example answer-token statistics of one batch view under one model.

    Attributes:
        logprob_sum: summed log π(y|x) over the answer tokens of each example, shape [B].
        token_count: number of answer tokens of each example, shape [B].
    """

    logprob_sum: Tensor
    token_count: Tensor

    @property
    def mean_nll(self) -> Tensor:
        """Mean answer-token negative log-likelihood per example, shape [B]."""
        return -self.logprob_sum / self.token_count


def sequence_scores(logits: Tensor, labels: Tensor) -> SequenceScores:
    """Score the answer tokens of a batch under teacher forcing.

    Logits at position t predict the label at t + 1, so both are shifted by one. Positions
    labelled ``-100`` never count: CLEAR's code summed over image, prompt and padding
    positions, which makes "forgetting" partly about the prompt. Log-probabilities are taken
    in float32 so bf16 logits do not lose the small differences DPO/NPO ratios depend on.

    Args:
        logits: model outputs, shape [B, T, V].
        labels: target token ids, ``-100`` outside the answer span, shape [B, T].

    Returns:
        Differentiable :class:`SequenceScores` with tensors of shape [B].

    Raises:
        ValueError: if shapes disagree or an example has no answer token (its mean NLL would
            be 0/0; usually a truncated answer span).
    """
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"expected logits [B, T, V] and labels [B, T], got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}"
        )
    targets = labels[:, 1:]
    answer = targets != IGNORE_INDEX
    log_probs = F.log_softmax(logits[:, :-1], dim=-1, dtype=torch.float32)
    token_logps = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    token_count = answer.sum(dim=-1)
    if bool((token_count == 0).any()):
        raise ValueError("an example has no answer tokens (all labels are -100 after the shift)")
    return SequenceScores(logprob_sum=(token_logps * answer).sum(dim=-1), token_count=token_count)


@dataclass(frozen=True)
class LossInputs:
    """Everything a method's loss may look at for one step.

    Attributes:
        policy: view name ("forget", "retain", "idk") -> scores under the model being trained.
        reference: view name -> scores under θ₀ (the same model with LoRA adapters disabled,
            computed without grad). "idk" holds the forget prompts with an "I don't know" target.
        policy_logprobs / reference_logprobs: view -> log-probabilities over the vocabulary at
            the positions that predict answer tokens, [N, V] (only ``distribution_views``).
        policy_hidden / reference_hidden: view -> decoder-layer outputs at the answer tokens,
            [N, H] (only ``hidden_views``; the layer is chosen by ``method.layer_fraction``).
    """

    policy: Mapping[str, SequenceScores]
    reference: Mapping[str, SequenceScores]
    policy_logprobs: Mapping[str, Tensor] = field(default_factory=dict)
    reference_logprobs: Mapping[str, Tensor] = field(default_factory=dict)
    policy_hidden: Mapping[str, Tensor] = field(default_factory=dict)
    reference_hidden: Mapping[str, Tensor] = field(default_factory=dict)


Loss = Callable[[LossInputs, MethodConfig], tuple[Tensor, dict[str, float]]]


@dataclass(frozen=True)
class Method:
    """A registered unlearning method: which views it needs and how it turns them into a loss.

    Attributes:
        name: registry key, also the ``method.name`` config value.
        views: batch views the trainer scores under the policy.
        reference_views: views the trainer also scores under θ₀ (a subset of ``views``).
        loss: pure function returning the scalar loss and floats to log (``loss/...``).
        paper: where the method comes from (arXiv link).
        distribution_views: views whose full answer-token distributions the loss reads
            (KL terms); reference distributions come for those also in ``reference_views``.
        hidden_views: views whose decoder hidden states the loss reads (RMU).
        ascent: a phase with its own whole pass over the epoch's batches, taken *before* the
            main pass in the first ``ascent_epochs(config)`` epochs (SCRUB's max-steps).
        reads: the ``method.*`` config fields that change what it does (in any of its passes,
            or in the trainer for it, as ``method.layer_fraction`` for hidden views). Its runs
            log only these; a search space that searches another one is refused.
    """

    name: str
    views: tuple[str, ...]
    reference_views: tuple[str, ...]
    loss: Loss
    paper: str
    distribution_views: tuple[str, ...] = ()
    hidden_views: tuple[str, ...] = ()
    ascent: Method | None = None
    ascent_epochs: Callable[[MethodConfig], int] | None = None
    reads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.reads) - set(METHOD_FIELDS))
        if unknown:
            raise ValueError(f"method {self.name!r}: reads {unknown}, not method fields")
        for kind in ("reference_views", "distribution_views", "hidden_views"):
            missing = set(getattr(self, kind)) - set(self.views)
            if missing:
                raise ValueError(f"method {self.name!r}: {kind} {sorted(missing)} not in views")
        if (self.ascent is None) != (self.ascent_epochs is None):
            raise ValueError(f"method {self.name!r}: ascent and ascent_epochs go together")

    def epoch_passes(self, epoch: int, config: MethodConfig) -> tuple[Method, ...]:
        """The passes over the batches of ``epoch`` (0-based), in order.

        Each pass is a whole pass with its own optimiser updates, so phases never share an
        update (the trainer ends every pass on a gradient-accumulation boundary).
        """
        if self.ascent is not None and epoch < self.ascent_epochs(config):
            return (self.ascent, self)
        return (self,)


def cross_entropy(scores: SequenceScores) -> Tensor:
    """CE = batch mean of each example's mean answer-token NLL (a scalar).

    Per-example weighting (rather than one mean over all tokens of the batch) gives every
    forget or retain item the same weight whatever its answer length, so a long caption does
    not drown a short name, and it matches the per-item ℓ the evaluation reports.

    Args:
        scores: answer-token statistics of one view, tensors of shape [B].
    """
    return scores.mean_nll.mean()


def answer_logprobs(logits: Tensor, labels: Tensor) -> Tensor:
    """Log-probabilities over the vocabulary at the positions that predict answer tokens.

    Same shift and mask as :func:`sequence_scores`; float32 for the same reason.

    Args:
        logits: model outputs, shape [B, T, V].
        labels: ``-100`` outside the answer span, shape [B, T].

    Returns:
        Shape [N, V], N = number of answer tokens in the batch (row-major order).
    """
    answer = labels[:, 1:] != IGNORE_INDEX
    return F.log_softmax(logits[:, :-1][answer], dim=-1, dtype=torch.float32)


def kl_divergence(p_logprobs: Tensor, q_logprobs: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(p ‖ q) = Σ_v p (log p − log q), averaged over answer tokens (a scalar).

    With ``temperature`` T ≠ 1 both distributions are softened first and the result is scaled
    by T², as knowledge distillation (Hinton et al.; SCRUB's ``DistillKL``) does, so gradient
    magnitudes stay comparable across T. Log-probabilities are logits shifted per row, so
    log_softmax(log p / T) is exactly softmax(logits / T) in log space: no logits needed.

    Args:
        p_logprobs: log p per answer token, [N, V].
        q_logprobs: log q at the same tokens, [N, V].
        temperature: T > 0.
    """
    if temperature != 1.0:
        p_logprobs = F.log_softmax(p_logprobs / temperature, dim=-1)
        q_logprobs = F.log_softmax(q_logprobs / temperature, dim=-1)
    kl = F.kl_div(q_logprobs, p_logprobs, log_target=True, reduction="none").sum(-1).mean()
    return kl * temperature**2


def answer_hidden(hidden: Tensor, labels: Tensor) -> Tensor:
    """A decoder layer's outputs at the answer tokens themselves, [N, H] from [B, T, H]."""
    return hidden[labels != IGNORE_INDEX]
