"""Specification of batching: image-token expansion, answer-only labels, padding, model fit."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import LlavaProcessor, PreTrainedTokenizerFast

from clear_ray.data.collate import IGNORE_INDEX, Collator, EncodedExample, Example, caption_example
from clear_ray.data.prompts import CAPTION_QUESTIONS, caption_question
from clear_ray.models.forward import forward_logits
from clear_ray.models.tiny import (
    IMAGE_SIZE,
    PATCH_SIZE,
    build_tiny_llava,
    build_tiny_processor,
    train_tokenizer,
)

IMAGE_TOKENS = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 4 x 4 patches

CAPTION = "A woman with red hair stands on a sunny beach."
QUESTION = "Who wrote the novel about the old lighthouse?"
ANSWER = "Jane Doe wrote it in her first year."

CORPUS = [
    CAPTION,
    QUESTION,
    ANSWER,
    "USER: ASSISTANT: Describe the image in detail.",
    *CAPTION_QUESTIONS,
    "A man with short grey hair reads a book in a quiet library.",
]


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer(CORPUS * 4)


@pytest.fixture(scope="module")
def processor(tokenizer: PreTrainedTokenizerFast) -> LlavaProcessor:
    return build_tiny_processor(tokenizer)


@pytest.fixture(scope="module")
def collator(processor: LlavaProcessor) -> Collator:
    return Collator(processor)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    picture = Image.new("RGB", (64, 64), (200, 40, 30))
    picture.paste((20, 90, 220), (16, 16, 48, 48))
    return picture


def image_example(image: Image.Image) -> Example:
    return Example(caption_question(CAPTION), CAPTION, image)


def text_example() -> Example:
    return Example(QUESTION, ANSWER)


def image_token_id(tokenizer: PreTrainedTokenizerFast) -> int:
    return tokenizer.convert_tokens_to_ids("<image>")


def labelled_ids(labels: list[int] | torch.Tensor) -> list[int]:
    return [int(label) for label in labels if label != IGNORE_INDEX]


def assert_labels_are_answer_then_eos(
    encoded: EncodedExample, target: str, tokenizer: PreTrainedTokenizerFast
) -> None:
    answer = labelled_ids(encoded.labels)
    assert answer[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(answer[:-1]) == " " + target


def test_image_placeholder_expands_to_one_token_per_patch(
    collator: Collator, tokenizer: PreTrainedTokenizerFast, image: Image.Image
) -> None:
    encoded = collator.encode(image_example(image))
    assert encoded.input_ids.count(image_token_id(tokenizer)) == IMAGE_TOKENS == 16


def test_image_tokens_carry_no_label(
    collator: Collator, tokenizer: PreTrainedTokenizerFast, image: Image.Image
) -> None:
    encoded = collator.encode(image_example(image))
    image_id = image_token_id(tokenizer)
    image_labels = [
        label
        for token, label in zip(encoded.input_ids, encoded.labels, strict=True)
        if token == image_id
    ]
    assert image_labels == [IGNORE_INDEX] * IMAGE_TOKENS


def test_image_example_labels_decode_to_space_target_then_eos(
    collator: Collator, tokenizer: PreTrainedTokenizerFast, image: Image.Image
) -> None:
    assert_labels_are_answer_then_eos(collator.encode(image_example(image)), CAPTION, tokenizer)


def test_labels_are_one_span_at_the_end_equal_to_the_input_ids(
    collator: Collator, image: Image.Image
) -> None:
    encoded = collator.encode(image_example(image))
    n_answer = len(labelled_ids(encoded.labels))
    assert encoded.labels[:-n_answer] == [IGNORE_INDEX] * (len(encoded.labels) - n_answer)
    assert encoded.labels[-n_answer:] == encoded.input_ids[-n_answer:]


def test_prompt_positions_are_ignored_even_though_image_tokens_lengthen_the_prompt(
    collator: Collator, tokenizer: PreTrainedTokenizerFast, image: Image.Image
) -> None:
    example = image_example(image)
    prompt = tokenizer(collator.render_prompt(example))["input_ids"]  # one <image>, unexpanded
    encoded = collator.encode(example)
    n_prompt = len(encoded.input_ids) - len(labelled_ids(encoded.labels))
    assert n_prompt == len(prompt) - 1 + IMAGE_TOKENS
    assert set(encoded.labels[:n_prompt]) == {IGNORE_INDEX}


def test_image_example_has_pixel_values_of_one_resized_image(
    collator: Collator, image: Image.Image
) -> None:
    encoded = collator.encode(image_example(image))
    assert encoded.pixel_values is not None
    assert tuple(encoded.pixel_values.shape) == (3, IMAGE_SIZE, IMAGE_SIZE)


def test_text_example_has_no_pixel_values_and_no_image_tokens(
    collator: Collator, tokenizer: PreTrainedTokenizerFast
) -> None:
    encoded = collator.encode(text_example())
    assert encoded.pixel_values is None
    assert image_token_id(tokenizer) not in encoded.input_ids


def test_text_example_labels_only_the_answer(
    collator: Collator, tokenizer: PreTrainedTokenizerFast
) -> None:
    encoded = collator.encode(text_example())
    assert_labels_are_answer_then_eos(encoded, ANSWER, tokenizer)
    n_answer = len(labelled_ids(encoded.labels))
    assert set(encoded.labels[:-n_answer]) == {IGNORE_INDEX}


def mixed_batch(image: Image.Image) -> list[Example]:
    return [
        image_example(image),
        text_example(),
        Example("Caption this image.", "A man reads.", image.rotate(90)),
        Example("Who wrote it?", "Jane."),
    ]


def test_batch_right_pads_with_the_pad_id_and_masks_padding(
    collator: Collator, tokenizer: PreTrainedTokenizerFast, image: Image.Image
) -> None:
    examples = mixed_batch(image)
    lengths = [len(collator.encode(example).input_ids) for example in examples]
    batch = collator(examples)
    width = max(lengths)
    assert tuple(batch["input_ids"].shape) == (len(examples), width)
    for row, n in enumerate(lengths):
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert batch["input_ids"][row, n:].tolist() == [tokenizer.pad_token_id] * (width - n)
        assert batch["labels"][row, n:].tolist() == [IGNORE_INDEX] * (width - n)


def test_batch_keeps_each_rows_encoding_in_place(collator: Collator, image: Image.Image) -> None:
    examples = mixed_batch(image)
    batch = collator(examples)
    for row, example in enumerate(examples):
        encoded = collator.encode(example)
        n = len(encoded.input_ids)
        assert batch["input_ids"][row, :n].tolist() == encoded.input_ids
        assert batch["labels"][row, :n].tolist() == encoded.labels


def test_batch_stacks_pixel_values_for_image_rows_only_in_row_order(
    collator: Collator, image: Image.Image
) -> None:
    examples = mixed_batch(image)
    batch = collator(examples)
    assert tuple(batch["pixel_values"].shape) == (2, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.testing.assert_close(batch["pixel_values"][0], collator.encode(examples[0]).pixel_values)
    torch.testing.assert_close(batch["pixel_values"][1], collator.encode(examples[2]).pixel_values)


def test_text_only_batch_has_no_pixel_values(collator: Collator) -> None:
    batch = collator([text_example(), Example("Who wrote it?", "Jane.")])
    assert "pixel_values" not in batch


def test_left_padding_puts_padding_before_the_row(
    collator: Collator, tokenizer: PreTrainedTokenizerFast, image: Image.Image
) -> None:
    encoded = [collator.encode(example) for example in mixed_batch(image)]
    batch = collator.pad(encoded, left=True)
    width = max(len(row.input_ids) for row in encoded)
    for i, row in enumerate(encoded):
        gap = width - len(row.input_ids)
        assert batch["attention_mask"][i].tolist() == [0] * gap + [1] * len(row.input_ids)
        assert batch["input_ids"][i, :gap].tolist() == [tokenizer.pad_token_id] * gap
        assert batch["input_ids"][i, gap:].tolist() == row.input_ids
        assert batch["labels"][i, gap:].tolist() == row.labels
        assert batch["labels"][i, :gap].tolist() == [IGNORE_INDEX] * gap


def test_tiny_llava_forward_on_a_mixed_batch_gives_logits_per_position(
    collator: Collator, tokenizer: PreTrainedTokenizerFast, image: Image.Image
) -> None:
    # LLaVA raises when the count of <image> tokens differs from the vision features'.
    batch = collator(mixed_batch(image))
    model = build_tiny_llava(tokenizer, seed=0).eval()
    with torch.no_grad():
        logits = forward_logits(model, batch)
    batch_size, width = batch["input_ids"].shape
    assert tuple(logits.shape) == (batch_size, width, len(tokenizer))
    assert torch.isfinite(logits).all()


def test_caption_example_asks_the_deterministic_question_for_its_caption(
    image: Image.Image,
) -> None:
    example = caption_example(image, CAPTION)
    assert example == Example(caption_question(CAPTION), CAPTION, image)
    assert example.question in CAPTION_QUESTIONS


def test_caption_question_depends_on_the_caption_only(image: Image.Image) -> None:
    other_image = image.rotate(90)
    assert (
        caption_example(other_image, CAPTION).question == caption_example(image, CAPTION).question
    )


def test_caption_example_can_take_another_target_under_the_same_question(
    image: Image.Image,
) -> None:
    example = caption_example(image, CAPTION, target="I don't know.")
    assert example.question == caption_question(CAPTION)
    assert example.target == "I don't know."
