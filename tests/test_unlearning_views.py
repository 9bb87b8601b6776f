"""Specification of the unlearning views: forget/retain pairing, IDK targets, rank splits."""

from __future__ import annotations

import pytest
from PIL import Image

from clear_ray.data.collate import Example
from clear_ray.data.prompts import idk_responses
from clear_ray.data.unlearning import UnlearningData, epoch_views, select_modality

BATCH_SIZE = 2


def tiny_image(shade: int) -> Image.Image:
    return Image.new("RGB", (4, 4), (shade, 255 - shade, 0))


def forget_examples() -> list[Example]:
    texts = [Example(f"Where was author {i} born?", f"In town {i}.") for i in range(5)]
    images = [
        Example(f"Describe photo {i}.", f"Author {i} at a desk.", tiny_image(10 * i))
        for i in range(6)
    ]
    return texts + images  # 11 items: not a multiple of world_size * batch_size


def retain_examples() -> list[Example]:
    return [Example(f"What did writer {i} write?", f"Novel {i}.") for i in range(7)]


@pytest.fixture
def data() -> UnlearningData:
    return UnlearningData(forget=forget_examples(), retain=retain_examples())


def batches(data: UnlearningData, **kwargs) -> list[dict[str, list[Example]]]:
    options = {
        "views": ("forget", "retain", "idk"),
        "batch_size": BATCH_SIZE,
        "epoch": 0,
        "seed": 0,
    }
    return list(epoch_views(data, **{**options, **kwargs}))


def forget_order(steps: list[dict[str, list[Example]]]) -> list[str]:
    """Forget items by question, which is unique per item (images are unhashable)."""
    return [example.question for step in steps for example in step["forget"]]


def questions(examples: list[Example]) -> set[str]:
    return {example.question for example in examples}


def test_single_rank_epoch_is_full_batches_over_the_forget_set(data: UnlearningData) -> None:
    steps = batches(data)
    assert len(steps) == len(data.forget) // BATCH_SIZE == data.batches_per_epoch(BATCH_SIZE, 1)
    assert all(len(step["forget"]) == BATCH_SIZE for step in steps)
    seen = forget_order(steps)
    assert len(set(seen)) == len(seen)
    assert set(seen) <= questions(data.forget)


def test_every_rank_gets_the_same_number_of_batches(data: UnlearningData) -> None:
    per_rank = [batches(data, rank=rank, world_size=2) for rank in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == data.batches_per_epoch(BATCH_SIZE, 2) == 2
    assert all(len(step["forget"]) == BATCH_SIZE for steps in per_rank for step in steps)


def test_ranks_see_disjoint_forget_items(data: UnlearningData) -> None:
    rank0, rank1 = (set(forget_order(batches(data, rank=r, world_size=2))) for r in (0, 1))
    assert len(rank0) == len(rank1) == 2 * BATCH_SIZE
    assert not rank0 & rank1
    assert rank0 | rank1 <= questions(data.forget)


def test_each_forget_example_is_paired_with_a_retain_example(data: UnlearningData) -> None:
    for rank in (0, 1):
        for step in batches(data, rank=rank, world_size=2):
            assert len(step["retain"]) == len(step["forget"])
            assert all(example in data.retain for example in step["retain"])


def test_idk_view_keeps_the_forget_question_and_image(data: UnlearningData) -> None:
    for step in batches(data):
        assert len(step["idk"]) == len(step["forget"])
        for forget, idk in zip(step["forget"], step["idk"], strict=True):
            assert idk.question == forget.question
            assert idk.image is forget.image


def test_idk_view_targets_an_i_dont_know_response(data: UnlearningData) -> None:
    pool = set(idk_responses())
    for step in batches(data):
        for forget, idk in zip(step["forget"], step["idk"], strict=True):
            assert idk.target in pool
            assert idk.target != forget.target


def test_idk_target_of_an_item_is_the_same_every_epoch(data: UnlearningData) -> None:
    def idk_by_question(epoch: int) -> dict[str, str]:
        return {e.question: e.target for step in batches(data, epoch=epoch) for e in step["idk"]}

    first, second = idk_by_question(0), idk_by_question(1)
    common = first.keys() & second.keys()
    assert common
    assert all(first[question] == second[question] for question in common)


def test_same_epoch_and_seed_give_the_same_batches(data: UnlearningData) -> None:
    assert batches(data, epoch=3, seed=7) == batches(data, epoch=3, seed=7)


def test_different_epochs_give_different_orders(data: UnlearningData) -> None:
    assert forget_order(batches(data, epoch=0)) != forget_order(batches(data, epoch=1))


def test_different_seeds_give_different_orders(data: UnlearningData) -> None:
    assert forget_order(batches(data, seed=0)) != forget_order(batches(data, seed=1))


def test_retain_pairing_is_redrawn_each_epoch() -> None:
    data = UnlearningData(forget=forget_examples(), retain=retain_examples())

    def pairs(epoch: int) -> set[tuple[str, str]]:
        steps = batches(data, epoch=epoch)
        return {
            (f.question, r.question)
            for step in steps
            for f, r in zip(step["forget"], step["retain"], strict=True)
        }

    assert pairs(0) != pairs(1)


@pytest.mark.parametrize("views", [("forget",), ("forget", "retain"), ("idk", "retain")])
def test_only_requested_views_are_present(data: UnlearningData, views: tuple[str, ...]) -> None:
    for step in batches(data, views=views):
        assert set(step) == set(views)


def test_retain_set_smaller_than_forget_set_is_reused() -> None:
    data = UnlearningData(forget=forget_examples(), retain=retain_examples()[:2])
    for step in batches(data):
        assert len(step["retain"]) == len(step["forget"])
        assert all(example in data.retain for example in step["retain"])


def test_forget_set_smaller_than_one_global_batch_yields_nothing() -> None:
    data = UnlearningData(forget=forget_examples()[:3], retain=retain_examples())
    assert batches(data, rank=0, world_size=2) == []
    assert batches(data, rank=1, world_size=2) == []


def test_select_visual_keeps_only_image_rows() -> None:
    selected = select_modality(forget_examples(), "visual")
    assert len(selected) == 6
    assert all(example.image is not None for example in selected)


def test_select_text_keeps_only_qa_rows() -> None:
    selected = select_modality(forget_examples(), "text")
    assert len(selected) == 5
    assert all(example.image is None for example in selected)


def test_select_both_keeps_every_row_in_order() -> None:
    examples = forget_examples()
    assert select_modality(examples, "both") == examples
