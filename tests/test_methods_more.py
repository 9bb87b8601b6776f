"""Specification of retain_ft, idk, npo and simnpo: each loss by hand, how it moves a model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from clear_ray.config import MethodConfig
from clear_ray.methods import METHODS, get_method
from clear_ray.methods.base import LossInputs, SequenceScores, cross_entropy, sequence_scores
from clear_ray.methods.npo import npo_loss
from clear_ray.methods.simnpo import simnpo_loss
from clear_ray.search.space import load_space

NEW_METHODS = ("retain_ft", "idk", "npo", "simnpo")

# Two examples: summed answer log-probs and answer lengths of each view.
FORGET = SequenceScores(torch.tensor([-4.0, -9.0]), torch.tensor([2, 3]))
RETAIN = SequenceScores(torch.tensor([-1.0, -6.0]), torch.tensor([1, 4]))
IDK = SequenceScores(torch.tensor([-10.0, -8.0]), torch.tensor([5, 4]))
REF_FORGET = SequenceScores(torch.tensor([-3.0, -7.0]), torch.tensor([2, 3]))

FORGET_MEAN_NLL = [4 / 2, 9 / 3]  # 2.0, 3.0
RETAIN_CE = (1 / 1 + 6 / 4) / 2  # 1.25
IDK_CE = (10 / 5 + 8 / 4) / 2  # 2.0


def _log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def _inputs(reference: SequenceScores = REF_FORGET, **policy: SequenceScores) -> LossInputs:
    return LossInputs(policy=policy, reference={"forget": reference})


def test_retain_ft_loss_is_retain_cross_entropy():
    loss, logs = get_method("retain_ft").loss(_inputs(retain=RETAIN), MethodConfig("retain_ft"))
    assert loss.item() == pytest.approx(RETAIN_CE)
    assert logs == {"loss/retain_nll": pytest.approx(RETAIN_CE)}


def test_idk_loss_weights_idk_by_gamma_and_retain_by_alpha():
    config = MethodConfig(name="idk", gamma=0.5, alpha=2.0)
    loss, logs = get_method("idk").loss(_inputs(idk=IDK, retain=RETAIN), config)
    assert loss.item() == pytest.approx(0.5 * IDK_CE + 2.0 * RETAIN_CE)
    assert logs["loss/idk_nll"] == pytest.approx(IDK_CE)
    assert logs["loss/retain_nll"] == pytest.approx(RETAIN_CE)


def test_npo_loss_matches_hand_computation_with_one_ratio_per_sequence():
    beta, alpha = 0.5, 3.0
    logratios = [-4.0 - -3.0, -9.0 - -7.0]  # summed over the answer: -1.0, -2.0
    per_example = [-(2 / beta) * _log_sigmoid(-beta * r) for r in logratios]
    config = MethodConfig(name="npo", beta=beta, alpha=alpha)
    loss, logs = get_method("npo").loss(_inputs(forget=FORGET, retain=RETAIN), config)
    assert loss.item() == pytest.approx(sum(per_example) / 2 + alpha * RETAIN_CE)
    assert logs["loss/npo"] == pytest.approx(sum(per_example) / 2)
    assert logs["loss/forget_nll"] == pytest.approx(sum(FORGET_MEAN_NLL) / 2)


@pytest.mark.parametrize("beta", [0.1, 1.0, 5.0])
def test_npo_at_policy_equal_to_reference_is_two_ln2_over_beta_plus_retain(beta):
    alpha = 0.7
    config = MethodConfig(name="npo", beta=beta, alpha=alpha)
    inputs = _inputs(reference=FORGET, forget=FORGET, retain=RETAIN)
    loss, _ = get_method("npo").loss(inputs, config)
    assert loss.item() == pytest.approx(2 * math.log(2) / beta + alpha * RETAIN_CE)


def test_npo_loss_stays_finite_for_huge_log_ratios():
    zero = torch.zeros(2)
    assert torch.isfinite(npo_loss(torch.tensor([1e4, -1e4]), zero, beta=1.0)).all()


def test_simnpo_loss_matches_hand_computation():
    beta, delta, alpha = 2.5, 0.5, 0.7
    per_example = [-(2 / beta) * _log_sigmoid(beta * (nll - delta)) for nll in FORGET_MEAN_NLL]
    config = MethodConfig(name="simnpo", beta=beta, delta=delta, alpha=alpha)
    loss, logs = get_method("simnpo").loss(_inputs(forget=FORGET, retain=RETAIN), config)
    assert loss.item() == pytest.approx(sum(per_example) / 2 + alpha * RETAIN_CE)
    assert logs["loss/simnpo"] == pytest.approx(sum(per_example) / 2)


def test_simnpo_ignores_the_reference():
    config = MethodConfig(name="simnpo", beta=2.5, delta=0.5)
    policy = {"forget": FORGET, "retain": RETAIN}
    with_reference, _ = get_method("simnpo").loss(_inputs(**policy), config)
    without, _ = get_method("simnpo").loss(LossInputs(policy=policy, reference={}), config)
    assert with_reference.item() == without.item()
    assert get_method("simnpo").reference_views == ()


def test_simnpo_normalises_by_answer_length():
    # Same mean NLL (1.5 nats/token), answers of 2 and 6 tokens: the same per-example loss.
    losses = simnpo_loss(
        SequenceScores(torch.tensor([-3.0, -9.0]), torch.tensor([2, 6])).mean_nll, 2.5, 0.0
    )
    assert losses[0].item() == pytest.approx(losses[1].item())


@pytest.mark.parametrize("beta", [0.5, 2.5])
def test_simnpo_at_mean_nll_equal_to_delta_is_two_ln2_over_beta(beta):
    losses = simnpo_loss(torch.tensor([0.8, 0.8]), beta=beta, delta=0.8)
    torch.testing.assert_close(losses, torch.full((2,), 2 * math.log(2) / beta))


class _TinyLM(nn.Module):
    """Bigram language model: embedding then a linear head over the vocabulary."""

    def __init__(self, vocab: int = 8, dim: int = 8):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens))


def _answer_labels(tokens: torch.Tensor) -> torch.Tensor:
    labels = tokens.clone()
    labels[:, :2] = -100  # prompt positions
    return labels


# Forget and IDK share their prompts (first two tokens); retain uses other bigrams.
VIEW_TOKENS = {
    "forget": torch.tensor([[0, 1, 2, 3, 4], [1, 0, 3, 2, 4]]),
    "idk": torch.tensor([[0, 1, 5, 5, 6], [1, 0, 5, 5, 6]]),
    "retain": torch.tensor([[7, 6, 7, 6, 7], [6, 7, 6, 7, 6]]),
}


def _view_nlls_before_and_after(method_name: str, config: MethodConfig, steps: int = 5):
    torch.manual_seed(0)
    model = _TinyLM()
    method = get_method(method_name)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)

    def scores(view: str) -> SequenceScores:
        tokens = VIEW_TOKENS[view]
        return sequence_scores(model(tokens), _answer_labels(tokens))

    def nlls() -> dict[str, float]:
        with torch.no_grad():
            return {view: cross_entropy(scores(view)).item() for view in VIEW_TOKENS}

    with torch.no_grad():  # θ₀: the model before unlearning, fixed throughout
        reference = {view: scores(view) for view in method.reference_views}
    before = nlls()
    for _ in range(steps):
        loss, _ = method.loss(LossInputs({v: scores(v) for v in method.views}, reference), config)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return before, nlls()


def test_retain_ft_steps_lower_the_retain_nll():
    before, after = _view_nlls_before_and_after("retain_ft", MethodConfig("retain_ft"))
    assert after["retain"] < before["retain"] - 0.1


def test_idk_steps_lower_the_idk_nll():
    before, after = _view_nlls_before_and_after("idk", MethodConfig("idk"))
    assert after["idk"] < before["idk"] - 0.1
    assert after["retain"] < before["retain"]


def test_npo_steps_raise_the_forget_nll():
    before, after = _view_nlls_before_and_after("npo", MethodConfig("npo", beta=0.1))
    # Well past the ~0.1 the retain term alone moves it (see the retain_ft test's model).
    assert after["forget"] > before["forget"] + 1.0


def test_simnpo_steps_raise_the_forget_nll():
    # A random bigram model starts near ln 8 ≈ 2.1 nats/token, where σ(−β·ℓ̄) with δ = 0 has
    # already all but vanished; the margin keeps the push strong (the paper's γ > 0 case).
    config = MethodConfig("simnpo", beta=1.0, delta=2.0)
    before, after = _view_nlls_before_and_after("simnpo", config)
    assert after["forget"] > before["forget"] + 1.0


def test_registry_lists_every_method_with_its_views():
    assert set(NEW_METHODS) <= set(METHODS)
    assert get_method("retain_ft").views == ("retain",)
    assert get_method("idk").views == ("idk", "retain")
    assert get_method("npo").views == ("forget", "retain")
    assert get_method("npo").reference_views == ("forget",)
    assert get_method("simnpo").views == ("forget", "retain")
    for name in NEW_METHODS:
        assert get_method(name).paper.startswith("https://arxiv.org/abs/")


@pytest.mark.parametrize("name", NEW_METHODS)
def test_every_method_has_a_search_space_with_a_learning_rate(name):
    space = load_space(name)
    assert "train.lr" in space and "regularizer.l1" in space


def test_simnpo_searches_its_margin():
    assert "method.delta" in load_space("simnpo")
