"""KL, LLMU, RMU and SCRUB: distribution and hidden-state terms, schedules, layer choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)

from clear_ray.config import Config, MethodConfig
from clear_ray.methods import get_method
from clear_ray.methods.base import LossInputs, SequenceScores, answer_logprobs, kl_divergence
from clear_ray.methods.rmu import steering_direction
from clear_ray.methods.scrub import takes_max_step
from clear_ray.models.introspection import decoder_layers, layer_index, steering_layer
from clear_ray.models.lora import reference_model
from clear_ray.train.step import training_step

P = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
Q = torch.log(torch.tensor([[0.25, 0.5, 0.25], [0.2, 0.4, 0.4]]))


def kl_by_hand(p: torch.Tensor, q: torch.Tensor) -> float:
    p, q = p.exp().numpy(), q.exp().numpy()
    return float(
        np.mean(
            [
                sum(pi * math.log(pi / qi) for pi, qi in zip(pr, qr, strict=True))
                for pr, qr in zip(p, q, strict=True)
            ]
        )
    )


SCORES = SequenceScores(torch.tensor([-4.0, -9.0]), torch.tensor([2, 3]))  # CE = 2.5


def test_kl_divergence_matches_hand_computation_and_is_zero_on_itself() -> None:
    assert kl_divergence(P, Q).item() == pytest.approx(kl_by_hand(P, Q), rel=1e-5)
    assert kl_divergence(P, P).item() == pytest.approx(0.0, abs=1e-7)


def test_answer_logprobs_keeps_only_positions_that_predict_answer_tokens() -> None:
    logits = torch.randn(2, 4, 5, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[-100, -100, 3, 1], [-100, 2, -100, -100]])
    rows = answer_logprobs(logits, labels)
    expected = torch.log_softmax(torch.stack([logits[0, 1], logits[0, 2], logits[1, 0]]), -1)
    torch.testing.assert_close(rows, expected)


def test_kl_method_is_ascent_on_forget_plus_kl_from_reference_on_retain() -> None:
    inputs = LossInputs({"forget": SCORES}, {}, {"retain": Q}, {"retain": P})
    loss, _ = get_method("kl").loss(inputs, MethodConfig(gamma=0.5, alpha=2.0))
    assert loss.item() == pytest.approx(-0.5 * 2.5 + 2.0 * kl_by_hand(P, Q), rel=1e-5)


def test_llmu_uses_the_policy_to_reference_kl_direction() -> None:
    inputs = LossInputs({"forget": SCORES, "idk": SCORES}, {}, {"retain": Q}, {"retain": P})
    loss, _ = get_method("llmu").loss(inputs, MethodConfig(gamma=2.0, alpha=3.0))
    assert loss.item() == pytest.approx(-2.0 * 2.5 + 2.5 + 3.0 * kl_by_hand(Q, P), rel=1e-5)


def test_rmu_loss_matches_hand_computation() -> None:
    forget, retain, reference = torch.ones(2, 4), torch.zeros(3, 4), torch.full((3, 4), 0.5)
    inputs = LossInputs(
        {},
        {},
        policy_hidden={"forget": forget, "retain": retain},
        reference_hidden={"retain": reference},
    )
    config = MethodConfig(steering_coeff=3.0, alpha=2.0)
    u = steering_direction(4, torch.device("cpu"), torch.float32)
    expected = ((forget - 3.0 * u) ** 2).mean() + 2.0 * 0.25
    loss, _ = get_method("rmu").loss(inputs, config)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert u.norm().item() == pytest.approx(1.0) and (u >= 0).all()


def test_scrub_max_step_ascends_forget_kl_and_min_step_anchors_retain() -> None:
    scrub = get_method("scrub")
    max_loss, _ = scrub.ascent.loss(
        LossInputs({}, {}, {"forget": Q}, {"forget": P}), MethodConfig()
    )
    assert max_loss.item() == pytest.approx(-kl_by_hand(P, Q), rel=1e-5)
    inputs = LossInputs({"retain": SCORES}, {}, {"retain": Q}, {"retain": P})
    min_loss, _ = scrub.loss(inputs, MethodConfig(alpha=2.0, gamma=0.5))
    assert min_loss.item() == pytest.approx(2.0 * kl_by_hand(P, Q) + 0.5 * 2.5, rel=1e-5)


@pytest.mark.parametrize(
    ("ratio", "expected"),
    [(0.5, [0, 1, 0, 1, 0, 1]), (1.0, [1] * 6), (0.0, [0] * 6), (1 / 3, [0, 0, 1, 0, 0, 1])],
)
def test_scrub_takes_max_steps_on_an_even_share_of_steps(ratio: float, expected: list[int]) -> None:
    config = MethodConfig(max_steps_ratio=ratio)
    assert [int(takes_max_step(step, config)) for step in range(6)] == expected
    phases = [len(get_method("scrub").phases(step, config)) for step in range(6)]
    assert phases == [1 + e for e in expected]


def test_layer_fraction_maps_to_a_layer_index() -> None:
    assert layer_index(32, 0.25) == 8 and layer_index(32, 0.0) == 0 and layer_index(32, 1.0) == 31
    assert layer_index(2, 0.25) == 0
    with pytest.raises(ValueError):
        layer_index(32, 1.5)


def _tiny_llama() -> nn.Module:
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    return LlamaForCausalLM(config)


def _tiny_qwen2_vl() -> nn.Module:
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": 64,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 3,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
        },
        vision_config={"depth": 2, "embed_dim": 16, "hidden_size": 16, "num_heads": 2},
    )
    return Qwen2VLForConditionalGeneration(config)


def _tiny_llava() -> nn.Module:
    from clear_ray.models.tiny import build_tiny_llava, train_tokenizer

    return build_tiny_llava(train_tokenizer(["a tiny corpus for a tiny model"] * 4), seed=0)


@pytest.mark.parametrize("build", [_tiny_llama, _tiny_qwen2_vl, _tiny_llava])
def test_decoder_layers_are_found_in_text_models_and_not_in_vision_towers(build) -> None:
    model = build()
    layers = decoder_layers(get_peft_model(model, LoraConfig(target_modules=["q_proj"])))
    text_layers = model.config.get_text_config().num_hidden_layers
    assert len(layers) == text_layers
    assert all("Decoder" in type(layer).__name__ for layer in layers)
    assert steering_layer(model, 1.0) is layers[-1]


class PlainEngine:
    """The part of DeepSpeed's engine protocol the trainer uses, on a plain optimiser."""

    def __init__(self, module: nn.Module, lr: float) -> None:
        self.module = module
        self.optimizer = torch.optim.SGD([p for p in module.parameters() if p.requires_grad], lr=lr)

    def __call__(self, **inputs):
        return self.module(**inputs)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad()


def _batch(seed: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, 64, (2, 6), generator=torch.Generator().manual_seed(seed))
    labels = ids.clone()
    labels[:, :3] = -100
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


BATCHES = {"forget": _batch(1), "retain": _batch(2), "idk": _batch(3)}


def _lora_engine(lr: float = 0.5) -> PlainEngine:
    torch.manual_seed(0)
    model = get_peft_model(
        _tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    return PlainEngine(model, lr)


def _forget_nll(module: nn.Module) -> float:
    batch = BATCHES["forget"]
    with torch.no_grad():
        logits = module(input_ids=batch["input_ids"]).logits
    from clear_ray.methods.base import sequence_scores

    return sequence_scores(logits, batch["labels"]).mean_nll.mean().item()


@pytest.mark.parametrize("method", ["kl", "llmu", "scrub", "npo", "dpo", "rmu"])
def test_reference_outputs_do_not_change_during_training(method: str) -> None:
    engine = _lora_engine()
    cfg = Config().replace({"method.name": method, "method.max_steps_ratio": 1.0})
    layer = steering_layer(engine.module, 0.5)
    with reference_model(engine.module):
        before = _forget_nll(engine.module)
    adapted_before = _forget_nll(engine.module)
    for step in range(3):
        training_step(engine, get_method(method), BATCHES, cfg, step, layer)
    with reference_model(engine.module):
        assert _forget_nll(engine.module) == pytest.approx(before, abs=1e-6)
    assert _forget_nll(engine.module) != pytest.approx(adapted_before, abs=1e-4)


@pytest.mark.parametrize("method", ["kl", "llmu", "scrub"])
def test_a_few_steps_raise_the_forget_nll(method: str) -> None:
    engine = _lora_engine()
    cfg = Config().replace(
        {"method.name": method, "method.max_steps_ratio": 1.0, "method.alpha": 0.1}
    )
    before = _forget_nll(engine.module)
    for step in range(3):
        training_step(engine, get_method(method), BATCHES, cfg, step, None)
    assert _forget_nll(engine.module) > before


def test_rmu_steps_move_forget_activations_towards_the_steering_target() -> None:
    engine = _lora_engine(lr=0.05)
    method = get_method("rmu")
    cfg = Config().replace({"method.name": "rmu", "method.steering_coeff": 2.0})
    layer = steering_layer(engine.module, 0.5)
    first = training_step(engine, method, BATCHES, cfg, 0, layer)["loss/rmu_forget"]
    for step in range(1, 4):
        last = training_step(engine, method, BATCHES, cfg, step, layer)["loss/rmu_forget"]
    assert last < first
