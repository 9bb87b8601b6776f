"""The GPU memory estimate of a trial worker (clear_ray/memory.py) and the node types that hold
it (clear_ray/nodes.py), checked by hand and against what transformers, peft and autograd do."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from bench_scripts import load_bench

from clear_ray.cli.tune import main
from clear_ray.config import LoraConfig
from clear_ray.memory import (
    GIB,
    MemoryEstimate,
    activation_bytes_per_token,
    estimate_trial_memory,
    lora_parameters,
    model_parameters,
    projector_parameters,
    text_parameters,
    vision_parameters,
)
from clear_ray.methods.base import sequence_scores
from clear_ray.models.lora import attach_lora
from clear_ray.models.presets import LLAVA_LORA_TARGETS
from clear_ray.models.shapes import LLAVA_7B_SHAPE, TINY_SHAPE
from clear_ray.models.tiny import build_tiny_llava, train_tokenizer
from clear_ray.nodes import CLUSTER_YAML, NodeType, fit_lines, node_types, workers_per_gpu

LLAVA_7B_PARAMETERS = 7_063_427_072
LLAVA_7B_LORA_R8 = 19_988_480  # 32 layers × 8 × (8·4096 + 2·(4096 + 11008) + (11008 + 4096))


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(["Describe the image. Who is Jane Doe? A person in a park."] * 8)


def test_llava_7b_parameters_by_hand() -> None:
    # CLIP ViT-L/14-336: patch conv 3·14²·1024 + CLS 1024 + 577 positions·1024, two LayerNorms,
    # 24 layers of 4·(1024² + 1024) + (1024·4096 + 4096) + (4096·1024 + 1024) + 2·2·1024.
    assert vision_parameters(LLAVA_7B_SHAPE) == 1_193_984 + 4_096 + 24 * 12_596_224
    assert projector_parameters(LLAVA_7B_SHAPE) == (1024 * 4096 + 4096) + (4096 * 4096 + 4096)
    # Vicuna-7B: embeddings and head 32064·4096 each, 32 layers of 4·4096² + 3·4096·11008 + 2·4096.
    assert text_parameters(LLAVA_7B_SHAPE) == 2 * 131_334_144 + 32 * 202_383_360 + 4096
    assert model_parameters(LLAVA_7B_SHAPE) == LLAVA_7B_PARAMETERS


def test_the_counts_are_those_of_the_models_transformers_builds(tokenizer) -> None:
    tiny = build_tiny_llava(tokenizer, seed=0)
    tiny_shape = dataclasses.replace(TINY_SHAPE, vocab=len(tokenizer))
    assert model_parameters(tiny_shape) == sum(p.numel() for p in tiny.parameters())
    from transformers import LlavaForConditionalGeneration

    config = load_bench("eval_throughput").llava15_7b_config(tokenizer)
    with torch.device("meta"):  # shapes only, no memory
        llava = LlavaForConditionalGeneration._from_config(config)
    assert sum(p.numel() for p in llava.parameters()) == LLAVA_7B_PARAMETERS


def test_lora_parameters_by_hand_and_as_peft_attaches_them(tokenizer) -> None:
    assert lora_parameters(LLAVA_7B_SHAPE, 8) == LLAVA_7B_LORA_R8
    model = attach_lora(build_tiny_llava(tokenizer, 0), LoraConfig(r=8), LLAVA_LORA_TARGETS)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == lora_parameters(TINY_SHAPE, 8) == 2 * 8 * (11 * 128 + 3 * 256)


def test_activation_bytes_per_token_of_llava_7b_in_bf16_by_hand() -> None:
    norm = 4 * 4096
    attention = norm + 2 * 5 * 4096
    mlp = norm + 2 * (4096 + 4 * 11008)
    lora = 2 * 7 * 8
    expected = 32 * (attention + mlp + lora) + norm + 4 * 32064
    assert expected == 5_587_712
    assert activation_bytes_per_token(LLAVA_7B_SHAPE, "bf16", 8) == expected


def test_activations_are_what_autograd_saves_on_the_tiny_model(tokenizer) -> None:
    """A scored view's forward saves (parameters aside) within 5 % of the per-token count;
    the first layer's norm input (frozen embeddings, no gradient) is all it counts in excess."""
    model = attach_lora(build_tiny_llava(tokenizer, 0), LoraConfig(r=8), LLAVA_LORA_TARGETS)
    kept = {p.untyped_storage().data_ptr() for p in [*model.parameters(), *model.buffers()]}
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in kept:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    batch, tokens = 4, 64
    ids = torch.randint(
        4, len(tokenizer), (batch, tokens), generator=torch.Generator().manual_seed(0)
    )
    labels = ids.clone()
    labels[:, :16] = -100
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits
        sequence_scores(logits, labels)
    shape = dataclasses.replace(TINY_SHAPE, vocab=len(tokenizer))
    estimate = batch * tokens * activation_bytes_per_token(shape, "fp32", 8)
    assert sum(saved.values()) == pytest.approx(estimate, rel=0.05)


def test_the_7b_recipe_estimate_by_hand() -> None:
    """bf16, LoRA r8, ZeRO-2, 1 worker, micro-batch 2, DPO's 3 views of 576 + 128 tokens."""
    estimate = estimate_trial_memory(LLAVA_7B_SHAPE, "bf16", 8, 2, 1, 2, 3, 704)
    assert estimate == MemoryEstimate(
        weights=(LLAVA_7B_PARAMETERS + LLAVA_7B_LORA_R8) * 2,
        lora_gradients=LLAVA_7B_LORA_R8 * 2,
        optimizer=LLAVA_7B_LORA_R8 * (4 + 4 + 4),  # fp32 m, v and master copy
        reduce_bucket=500_000_000 * 2,
        activations=3 * 2 * 704 * 5_587_712,
    )
    assert estimate.total == 39_049_165_312
    assert round(estimate.total / GIB, 2) == 36.37


def test_zero_stages_partition_over_the_workers() -> None:
    one = estimate_trial_memory(LLAVA_7B_SHAPE, "bf16", 8, 2, 1, 2, 3, 704)
    two = estimate_trial_memory(LLAVA_7B_SHAPE, "bf16", 8, 2, 2, 2, 3, 704)
    assert (two.optimizer, two.lora_gradients) == (one.optimizer // 2, one.lora_gradients // 2)
    assert two.weights == one.weights and two.activations == one.activations
    three = estimate_trial_memory(LLAVA_7B_SHAPE, "bf16", 8, 3, 2, 2, 3, 704)
    assert three.weights == one.weights // 2
    zero = estimate_trial_memory(LLAVA_7B_SHAPE, "bf16", 8, 0, 2, 2, 3, 704)
    assert (zero.optimizer, zero.reduce_bucket) == (one.optimizer, 0)
    fp32 = estimate_trial_memory(LLAVA_7B_SHAPE, "fp32", 8, 2, 1, 2, 3, 704)
    assert fp32.optimizer == LLAVA_7B_LORA_R8 * 8  # the parameters are their own master copy


def test_the_node_types_of_cluster_yaml() -> None:
    assert node_types(CLUSTER_YAML) == [
        NodeType("head", "m7i.4xlarge", 0),
        NodeType("gpu_1x", "g6e.xlarge", 1),
        NodeType("gpu_8x", "g6e.48xlarge", 8),
    ]


def test_a_node_type_holds_what_fits_in_nine_tenths_of_a_gpu(tmp_path: Path) -> None:
    nodes = [NodeType("cpu", "m7i.large", 0), NodeType("l40s", "g6e.xlarge", 1)]
    nodes.append(NodeType("odd", "x9.large", 2))
    lines = fit_lines(nodes, int(43 * GIB))
    assert lines[0].endswith("no GPU")
    assert lines[1].endswith("1 x L40S 48 GiB  holds it (43.0 of 43.2 GiB usable per GPU)")
    assert lines[2].endswith("2 GPU(s) of unknown memory (not in nodes.GPU_GIB)")
    assert "too small (43.5 of 43.2" in fit_lines(nodes, int(43.5 * GIB))[1]


@pytest.mark.parametrize(
    ("gpus_per_trial", "workers", "per_gpu"),
    [(1, 1, 1), (2, 2, 1), (4, 2, 1), (1, 2, 2), (0.5, 1, 2), (0.3, 1, 3)],
)
def test_workers_per_gpu(gpus_per_trial: float, workers: int, per_gpu: int) -> None:
    assert workers_per_gpu(gpus_per_trial, workers) == per_gpu


def test_the_7b_dry_run_prints_the_estimate_and_the_node_types(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["--model", "llava-1.5-7b", "--method", "dpo,gd", "--gpus-per-trial", "1"]
    assert main([*args, "--dry-run", "--output-dir", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# GPU memory per trial"))
    assert "llava-1.5-7b, bf16, LoRA r8, ZeRO-2 over 1 worker(s), micro-batch 2" in lines[start]
    table = "\n".join(lines[start:])
    assert "activations: dpo (3 views), 704 tokens = 576 image + 128 text" in table
    assert "#   total" in table and "36.37 GiB" in table
    assert "#   gpu_1x  g6e.xlarge      1 x L40S 48 GiB  holds it (36.4 of 43.2" in table
    assert not (tmp_path / "out").exists()
