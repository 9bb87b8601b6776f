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
from clear_ray.models.introspection import decoder_layers, layer_index, steering_layer
from clear_ray.models.lora import reference_model
from clear_ray.regularizers import l1_penalty, lora_parameters
from clear_ray.train.schedule import micro_steps_per_pass
from clear_ray.train.step import train_epoch, training_step

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


def test_llmu_uses_the_forward_kl_from_reference_to_policy_as_llmu_code() -> None:
    # policy Q, reference P: LLMU's compute_kl is -sum P log Q, i.e. KL(P || Q) up to H(P)
    inputs = LossInputs({"forget": SCORES, "idk": SCORES}, {}, {"retain": Q}, {"retain": P})
    loss, logs = get_method("llmu").loss(inputs, MethodConfig(gamma=2.0, alpha=3.0))
    assert kl_by_hand(P, Q) != pytest.approx(kl_by_hand(Q, P), rel=1e-2)  # directions differ
    assert loss.item() == pytest.approx(-2.0 * 2.5 + 2.5 + 3.0 * kl_by_hand(P, Q), rel=1e-5)
    assert logs["loss/retain_kl"] == pytest.approx(kl_by_hand(P, Q), rel=1e-5)


def test_llmu_clear_uses_clears_reverse_kl_from_policy_to_reference() -> None:
    inputs = LossInputs({"forget": SCORES, "idk": SCORES}, {}, {"retain": Q}, {"retain": P})
    loss, _ = get_method("llmu_clear").loss(inputs, MethodConfig(gamma=2.0, alpha=3.0))
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


def softened(logprobs: torch.Tensor, temperature: float) -> torch.Tensor:
    probs = logprobs.exp() ** (1 / temperature)
    return torch.log(probs / probs.sum(-1, keepdim=True))


def test_tempered_kl_is_t_squared_times_kl_of_the_softened_distributions() -> None:
    # T = 2: p^(1/2) renormalised, by hand for the first row: sqrt(.5, .25, .25) / sum
    row = torch.tensor([0.5, 0.25, 0.25]).sqrt()
    assert softened(P, 2.0)[0].exp().tolist() == pytest.approx((row / row.sum()).tolist())
    expected = 4.0 * kl_by_hand(softened(P, 2.0), softened(Q, 2.0))
    assert kl_divergence(P, Q, temperature=2.0).item() == pytest.approx(expected, rel=1e-5)
    assert kl_divergence(P, Q, temperature=1.0).item() == pytest.approx(kl_by_hand(P, Q))


def test_scrub_max_step_ascends_forget_kl_and_min_step_anchors_retain_at_temperature_4() -> None:
    scrub = get_method("scrub")
    assert MethodConfig().kl_temperature == 4.0  # SCRUB's kd_T
    kl_t4 = 16.0 * kl_by_hand(softened(P, 4.0), softened(Q, 4.0))
    max_loss, _ = scrub.ascent.loss(
        LossInputs({}, {}, {"forget": Q}, {"forget": P}), MethodConfig()
    )
    assert max_loss.item() == pytest.approx(-kl_t4, rel=1e-5)
    inputs = LossInputs({"retain": SCORES}, {}, {"retain": Q}, {"retain": P})
    min_loss, _ = scrub.loss(inputs, MethodConfig(alpha=2.0, gamma=0.5))
    assert min_loss.item() == pytest.approx(2.0 * kl_t4 + 0.5 * 2.5, rel=1e-5)


@pytest.mark.parametrize(
    ("max_epochs", "expected"),
    [(1, [2, 1, 1, 1]), (3, [2, 2, 2, 1]), (0, [1, 1, 1, 1]), (9, [2, 2, 2, 2])],
)
def test_scrub_takes_a_max_pass_then_a_min_pass_only_in_the_first_msteps_epochs(
    max_epochs: int, expected: list[int]
) -> None:
    scrub, config = get_method("scrub"), MethodConfig(scrub_max_epochs=max_epochs)
    passes = [scrub.epoch_passes(epoch, config) for epoch in range(4)]
    assert [len(p) for p in passes] == expected
    for epoch_passes in passes:
        assert [phase.name for phase in epoch_passes][-1] == "scrub"
        assert [phase.name for phase in epoch_passes][:-1] in ([], ["scrub_max"])


def test_single_phase_methods_take_one_pass_every_epoch() -> None:
    assert [len(get_method("npo").epoch_passes(epoch, MethodConfig())) for epoch in range(3)] == [
        1,
        1,
        1,
    ]


def test_layer_fraction_maps_to_a_layer_index() -> None:
    assert layer_index(32, 0.25) == 8 and layer_index(32, 0.0) == 0 and layer_index(32, 1.0) == 31
    assert layer_index(32, MethodConfig().layer_fraction) == 7  # the WMDP paper's layer 7 of 32
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


def _one_batch_per_pass(views: tuple[str, ...]) -> list[dict[str, dict[str, torch.Tensor]]]:
    return [{view: BATCHES[view] for view in views}]


def _train_epochs(engine, cfg: Config, epochs: int, layer) -> list[dict[str, float]]:
    method = get_method(cfg.method.name)
    return [
        log
        for epoch in range(epochs)
        for log in train_epoch(engine, method, cfg, epoch, _one_batch_per_pass, 1, layer)
    ]


@pytest.mark.parametrize("method", ["kl", "llmu", "llmu_clear", "scrub", "npo", "dpo", "rmu"])
def test_reference_outputs_do_not_change_during_training(method: str) -> None:
    engine = _lora_engine()
    cfg = Config().replace({"method.name": method, "method.scrub_max_epochs": 3})
    layer = steering_layer(engine.module, 0.5)
    with reference_model(engine.module):
        before = _forget_nll(engine.module)
    adapted_before = _forget_nll(engine.module)
    _train_epochs(engine, cfg, 3, layer)
    with reference_model(engine.module):
        assert _forget_nll(engine.module) == pytest.approx(before, abs=1e-6)
    assert _forget_nll(engine.module) != pytest.approx(adapted_before, abs=1e-4)


@pytest.mark.parametrize("method", ["kl", "llmu", "llmu_clear", "scrub"])
def test_a_few_steps_raise_the_forget_nll(method: str) -> None:
    engine = _lora_engine()
    cfg = Config().replace(
        {"method.name": method, "method.scrub_max_epochs": 3, "method.alpha": 0.1}
    )
    before = _forget_nll(engine.module)
    _train_epochs(engine, cfg, 3, None)
    assert _forget_nll(engine.module) > before


def test_rmu_steps_move_forget_activations_towards_the_steering_target() -> None:
    engine = _lora_engine(lr=0.05)
    cfg = Config().replace({"method.name": "rmu", "method.steering_coeff": 2.0})
    layer = steering_layer(engine.module, 0.5)
    losses = [log["loss/rmu_forget"] for log in _train_epochs(engine, cfg, 4, layer)]
    assert losses[-1] < losses[0]


class AccumulatingEngine(PlainEngine):
    """DeepSpeed's managed accumulation: backward adds loss/gas, every gas-th step updates."""

    def __init__(self, module: nn.Module, lr: float, grad_accum: int) -> None:
        super().__init__(module, lr)
        self.grad_accum, self.micro_steps, self.updates = grad_accum, 0, []

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.grad_accum).backward()

    def step(self) -> None:
        self.micro_steps += 1
        if self.micro_steps % self.grad_accum == 0:  # DeepSpeed's is_gradient_accumulation_boundary
            super().step()
            self.updates.append(list(range(self.micro_steps - self.grad_accum, self.micro_steps)))


def test_with_grad_accum_2_scrub_max_and_min_gradients_never_share_an_update() -> None:
    engine = AccumulatingEngine(_lora_engine().module, lr=0.1, grad_accum=2)
    cfg = Config().replace(
        {"method.name": "scrub", "method.scrub_max_epochs": 1, "train.grad_accum": 2}
    )

    def three_batches(views: tuple[str, ...]) -> list:  # odd on purpose
        return _one_batch_per_pass(views) * 3

    micro_steps = micro_steps_per_pass(3, cfg.train.grad_accum)
    assert micro_steps == 2  # the third batch would straddle the max and min passes
    logs = [
        log
        for epoch in range(2)
        for log in train_epoch(
            engine, get_method("scrub"), cfg, epoch, three_batches, micro_steps, None
        )
    ]
    phases = ["scrub_max" if "loss/scrub_max" in log else "scrub" for log in logs]
    assert phases == ["scrub_max"] * 2 + ["scrub"] * 2 + ["scrub"] * 2  # epoch 0, epoch 1
    assert engine.micro_steps == len(logs) == 6  # nothing left pending at the end
    assert [{phases[i] for i in update} for update in engine.updates] == [
        {"scrub_max"},
        {"scrub"},
        {"scrub"},
    ]


def test_l1_is_added_once_per_micro_step_and_logged_with_its_weight() -> None:
    engine = _lora_engine()
    cfg = Config().replace(
        {"method.name": "scrub", "method.scrub_max_epochs": 1, "regularizer.l1": 0.01}
    )
    lora = [param for _, param in lora_parameters(engine.module, "ab")]
    penalty = l1_penalty(lora).item()
    log = training_step(engine, get_method("scrub").ascent, BATCHES, cfg, None)
    assert log["loss/l1"] == pytest.approx(penalty)
    assert log["loss/l1_weighted"] == pytest.approx(0.01 * penalty)
    assert log["loss/scrub_max"] == pytest.approx(-log["loss/forget_kl"] + 0.01 * penalty)
