"""Specification of the unlearning losses: answer-token scoring, each loss by hand, directions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from clear_ray.config import MethodConfig
from clear_ray.errors import ConfigError
from clear_ray.methods import METHODS, get_method
from clear_ray.methods.base import LossInputs, SequenceScores, cross_entropy, sequence_scores
from clear_ray.methods.dpo import dpo_loss

# Two examples: summed answer log-probs and answer lengths of each view.
FORGET = SequenceScores(torch.tensor([-4.0, -9.0]), torch.tensor([2, 3]))
RETAIN = SequenceScores(torch.tensor([-1.0, -6.0]), torch.tensor([1, 4]))
IDK = SequenceScores(torch.tensor([-10.0, -8.0]), torch.tensor([5, 4]))
REF_FORGET = SequenceScores(torch.tensor([-3.0, -7.0]), torch.tensor([2, 3]))
REF_IDK = SequenceScores(torch.tensor([-12.0, -8.5]), torch.tensor([5, 4]))

FORGET_CE = (4 / 2 + 9 / 3) / 2  # 2.5
RETAIN_CE = (1 / 1 + 6 / 4) / 2  # 1.25


def _inputs(**policy: SequenceScores) -> LossInputs:
    return LossInputs(policy=policy, reference={"forget": REF_FORGET, "idk": REF_IDK})


def _labels_and_logits() -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[-100, -100, 3, 1], [-100, 2, 4, -100]])
    return logits, labels


def test_sequence_scores_matches_hand_computation():
    logits, labels = _labels_and_logits()
    x = logits.numpy().astype(np.float64)

    def logp(b: int, t: int, token: int) -> float:
        return x[b, t, token] - math.log(np.exp(x[b, t]).sum())

    # logits at t predict the label at t + 1
    expected_sums = [logp(0, 1, 3) + logp(0, 2, 1), logp(1, 0, 2) + logp(1, 1, 4)]
    scores = sequence_scores(logits, labels)
    np.testing.assert_allclose(scores.logprob_sum.numpy(), expected_sums, rtol=1e-5)
    np.testing.assert_array_equal(scores.token_count.numpy(), [2, 2])
    np.testing.assert_allclose(scores.mean_nll.numpy(), -np.array(expected_sums) / 2, rtol=1e-5)


def test_sequence_scores_ignores_positions_labelled_minus_100():
    logits, labels = _labels_and_logits()
    changed = logits.clone()
    changed[0, 0] += 100.0  # predicts labels[0, 1] == -100
    changed[1, 2:] -= 50.0  # predict labels[1, 3] == -100 and nothing
    changed[:, -1] = 7.0  # last position predicts nothing
    before, after = sequence_scores(logits, labels), sequence_scores(changed, labels)
    torch.testing.assert_close(before.logprob_sum, after.logprob_sum)


def test_sequence_scores_is_differentiable():
    logits, labels = _labels_and_logits()
    logits.requires_grad_(True)
    sequence_scores(logits, labels).logprob_sum.sum().backward()
    assert logits.grad is not None and logits.grad[0, 0].abs().sum() == 0


def test_sequence_scores_rejects_an_example_without_answer_tokens():
    logits, labels = _labels_and_logits()
    labels[1] = -100
    with pytest.raises(ValueError, match="no answer tokens"):
        sequence_scores(logits, labels)


def test_cross_entropy_weights_every_example_equally():
    assert cross_entropy(FORGET).item() == pytest.approx(FORGET_CE)


def test_ga_loss_is_minus_forget_cross_entropy():
    loss, logs = get_method("ga").loss(_inputs(forget=FORGET), MethodConfig(name="ga"))
    assert loss.item() == pytest.approx(-FORGET_CE)
    assert logs["loss/forget_nll"] == pytest.approx(FORGET_CE)


def test_gd_loss_weights_forget_by_gamma_and_retain_by_alpha():
    config = MethodConfig(name="gd", gamma=0.5, alpha=2.0)
    loss, logs = get_method("gd").loss(_inputs(forget=FORGET, retain=RETAIN), config)
    assert loss.item() == pytest.approx(-0.5 * FORGET_CE + 2.0 * RETAIN_CE)
    assert logs["loss/retain_nll"] == pytest.approx(RETAIN_CE)


def test_dpo_loss_matches_hand_computation():
    beta, alpha = 0.5, 3.0
    # margin_i = (idk - ref_idk) - (forget - ref_forget)
    margins = [(-10.0 + 12.0) - (-4.0 + 3.0), (-8.0 + 8.5) - (-9.0 + 7.0)]  # 3.0, 2.5
    per_example = [-(2 / beta) * math.log(1 / (1 + math.exp(-beta * m))) for m in margins]
    expected = sum(per_example) / 2 + alpha * RETAIN_CE
    config = MethodConfig(name="dpo", beta=beta, alpha=alpha)
    loss, logs = get_method("dpo").loss(_inputs(forget=FORGET, idk=IDK, retain=RETAIN), config)
    assert loss.item() == pytest.approx(expected)
    assert logs["loss/dpo"] == pytest.approx(sum(per_example) / 2)


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_dpo_term_at_policy_equal_to_reference_is_two_ln2_over_beta(beta):
    chosen, rejected = torch.tensor([-3.0, -20.0]), torch.tensor([-1.0, -0.5])
    losses = dpo_loss(chosen, rejected, chosen, rejected, beta)
    torch.testing.assert_close(losses, torch.full((2,), 2 * math.log(2) / beta))


def test_dpo_loss_stays_finite_for_huge_margins():
    huge = torch.tensor([-1e4])
    zero = torch.zeros(1)
    assert torch.isfinite(dpo_loss(huge, zero, zero, zero, beta=1.0)).all()


def _grad_wrt_logprobs(method: str, config: MethodConfig) -> dict[str, torch.Tensor]:
    leaves = {
        view: SequenceScores(scores.logprob_sum.clone().requires_grad_(True), scores.token_count)
        for view, scores in {"forget": FORGET, "retain": RETAIN, "idk": IDK}.items()
    }
    loss, _ = get_method(method).loss(_inputs(**leaves), config)
    loss.backward()
    return {view: scores.logprob_sum.grad for view, scores in leaves.items()}


@pytest.mark.parametrize("method", ["gd", "dpo"])
def test_descending_the_loss_raises_retain_and_lowers_forget_likelihood(method):
    grads = _grad_wrt_logprobs(method, MethodConfig(name=method))
    # d loss / d log p < 0: a gradient step increases log p, i.e. lowers the NLL.
    assert (grads["retain"] < 0).all()
    assert (grads["forget"] > 0).all()


def test_dpo_descent_raises_idk_likelihood():
    grads = _grad_wrt_logprobs("dpo", MethodConfig(name="dpo"))
    assert (grads["idk"] < 0).all()


class _TinyLM(nn.Module):
    """Bigram language model: embedding then a linear head over the vocabulary."""

    def __init__(self, vocab: int = 6, dim: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


def test_gradient_ascent_steps_raise_the_forget_nll():
    torch.manual_seed(0)
    model = _TinyLM()
    tokens = torch.tensor([[0, 1, 2, 3, 4], [5, 1, 3, 2, 0]])
    labels = tokens.clone()
    labels[:, :2] = -100  # prompt positions
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)

    def forget_nll() -> float:
        with torch.no_grad():
            return cross_entropy(sequence_scores(model(tokens), labels)).item()

    before = forget_nll()
    for _ in range(5):
        scores = sequence_scores(model(tokens), labels)
        loss, _ = get_method("ga").loss(LossInputs({"forget": scores}, {}), MethodConfig("ga"))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert forget_nll() > before + 0.1


def test_registry_lists_ga_gd_dpo_under_their_names():
    assert {"ga", "gd", "dpo"} <= set(METHODS)
    assert all(METHODS[name].name == name for name in METHODS)


def test_unknown_method_is_a_config_error_naming_the_known_methods():
    with pytest.raises(ConfigError, match=r"unknown method .x.; known: retain_ft, ga, gd, kl"):
        get_method("x")


def test_methods_only_ask_the_reference_for_views_they_score():
    for method in METHODS.values():
        assert set(method.reference_views) <= set(method.views)
    assert get_method("dpo").reference_views == ("forget", "idk")
    assert get_method("ga").reference_views == ()
