"""Greedy generation stops at EOS; the Gold reference cache follows its inputs and shares data."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from torch import nn

from clear_ray.config import EvalConfig
from clear_ray.data.collate import Collator, Example
from clear_ray.data.synthetic import generate
from clear_ray.eval.generation import generate_greedy
from clear_ray.eval.gold import reference_evaluation
from clear_ray.eval.reference import GoldReference, TaskReference
from clear_ray.eval.suite import TaskData
from clear_ray.models.loading import save_checkpoint
from clear_ray.models.tiny import build_tiny_llava, build_tiny_processor, train_tokenizer


@pytest.fixture(scope="module")
def tiny():
    tokenizer = train_tokenizer(["Describe the image. A photo of a person in a park."] * 8)
    return build_tiny_llava(tokenizer, seed=0), build_tiny_processor(tokenizer)


def test_generation_stops_once_every_prompt_has_produced_eos(tiny) -> None:
    model, processor = tiny
    eos = processor.tokenizer.eos_token_id
    head = nn.Linear(model.config.text_config.hidden_size, model.config.text_config.vocab_size)
    nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.fill_(0.0)
        head.bias[eos] = 10.0  # every step's greedy choice is EOS
    model.lm_head = head
    calls = []
    head.register_forward_hook(lambda *args: calls.append(1))
    image = Image.new("RGB", (64, 64), (120, 30, 30))
    prompts = [Example("Describe the image.", "", image), Example("Who is this?", "", None)]
    texts = generate_greedy(model, Collator(processor), prompts, max_new_tokens=20, batch_size=2)
    assert texts == ["", ""]
    assert len(calls) == 1  # the prefill step produced EOS everywhere; no further steps ran


@pytest.fixture
def gold_and_data(tiny, tmp_path: Path) -> tuple[Path, Path]:
    """A saved Gold checkpoint and a synthetic dataset directory."""
    model, processor = tiny
    checkpoint = tmp_path / "gold"
    save_checkpoint(model, processor, checkpoint)
    data = tmp_path / "data"
    generate(data, persons=10, seed=0)
    return checkpoint, data


def test_gold_cache_is_reused_and_invalidated_when_the_data_changes(
    gold_and_data: tuple[Path, Path],
) -> None:
    checkpoint, data = gold_and_data
    config = EvalConfig(tasks="forget_captions", generate=False)
    cache = checkpoint / "evaluations"

    first = reference_evaluation(checkpoint, str(data), "forget10", config)
    files = sorted(cache.iterdir())
    again = reference_evaluation(checkpoint, str(data), "forget10", config)
    assert again == first and sorted(cache.iterdir()) == files and len(files) == 1
    # Per-item values sit next to the aggregates (they are logged to MLflow as they are).
    items = pq.read_table(Path(first.directory) / "forget_captions.parquet").to_pydict()
    own = first.reference.tasks["forget_captions"]
    assert items["nll_paraphrased"] == pytest.approx(own.nll_paraphrased)
    assert items["nll_perturbed"] == [pytest.approx(row) for row in own.nll_perturbed]
    # Its own reference: Gold against itself.
    assert first.metrics["forget_quality"] == first.metrics["clear/forget_quality"] == 1.0

    # Compared with another reference, the key (and so the cache entry) changes.
    other = GoldReference(
        {
            "forget_captions": TaskReference(
                [value + 1.0 for value in own.nll_paraphrased], own.nll_perturbed, own.item_index
            )
        }
    )
    compared = reference_evaluation(checkpoint, str(data), "forget10", config, other)
    assert len(list(cache.iterdir())) == 2 and compared.metrics["forget_quality"] < 1.0
    assert compared.reference == first.reference  # its own values, whatever it is compared with
    # The objective's task follows the modality on reading; the same cache entry serves it.
    text_only = reference_evaluation(checkpoint, str(data), "forget10", config, modality="text")
    assert "forget_quality" not in text_only.metrics  # the text task was not evaluated
    assert text_only.metrics["forget_captions/forget_quality"] == 1.0
    assert len(list(cache.iterdir())) == 2

    generate(data, persons=10, seed=1, overwrite=True)
    reference_evaluation(checkpoint, str(data), "forget10", config)
    assert len(list(cache.iterdir())) == 3


def test_reference_evaluations_given_one_task_data_load_the_data_once(
    gold_and_data: tuple[Path, Path], clear_loads: list[str]
) -> None:
    checkpoint, data = gold_and_data
    captions = EvalConfig(tasks="forget_captions", generate=False)
    shared = TaskData(str(data))
    first = reference_evaluation(checkpoint, shared, "forget10", captions)
    reference_evaluation(
        checkpoint,
        shared,
        "forget10",
        EvalConfig(proxy_items=3, tasks="forget_captions", generate=False),
    )
    assert len(clear_loads) == 1  # two uncached evaluations of the same config, one load
    # The cache entry is the one a path source finds: the key is the data, not how it was passed.
    assert reference_evaluation(checkpoint, str(data), "forget10", captions) == first
    assert len(clear_loads) == 1
