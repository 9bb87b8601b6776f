"""The served model's batch: text and image rows mixed, images as bytes or base64, and a bad row
refused with one line that names it (clear_ray/serving_input.py)."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from clear_ray.serving_input import InvalidRequest, read_batch, read_max_new_tokens


def png(colour: tuple[int, int, int] = (200, 10, 10), size: int = 8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(image: Image.Image) -> list:
    return list(np.asarray(image.convert("RGB")).reshape(-1, 3)[0])


def test_a_batch_mixes_text_rows_and_image_rows_as_bytes_or_base64() -> None:
    wrapped = base64.encodebytes(png((10, 200, 10), size=64)).decode()  # newline every 76
    assert "\n" in wrapped
    frame = pd.DataFrame(
        {
            "question": ["Who is Jane Doe?", "Describe the image.", "What is shown?", "Who?", "A"],
            "image": [None, png(), wrapped, float("nan"), ""],
        }
    )
    examples = read_batch(frame)
    assert [example.question for example in examples] == list(frame["question"])
    assert [example.image is None for example in examples] == [True, False, False, True, True]
    assert pixels(examples[1].image) == [200, 10, 10]
    assert pixels(examples[2].image) == [10, 200, 10]


def test_records_without_an_image_key_and_a_frame_without_the_column_are_text_rows() -> None:
    records = [{"question": "Who is Jane Doe?"}, {"question": "Describe.", "image": png()}]
    examples = read_batch(pd.DataFrame(records))  # what dataframe_records becomes
    assert examples[0].image is None and examples[1].image is not None
    assert read_batch(pd.DataFrame({"question": ["Who?"]}))[0].image is None
    assert read_batch({"question": ["Who?", "What?"]})[1].question == "What?"  # REST `inputs`
    cells = [{"question": np.array("Who?")}, {"question": np.array("Hm?"), "image": png()}]
    assert [example.question for example in read_batch(cells)] == ["Who?", "Hm?"]


@pytest.mark.parametrize(
    ("frame", "line"),
    [
        (
            {"question": ["Who?", "What?"], "image": [None, b"not an image"]},
            "row 1: the image's 12 bytes are not an image format PIL reads (PNG, JPEG, ...)",
        ),
        (
            {"question": ["Who?", "What?"], "image": [None, base64.b64encode(b"nope").decode()]},
            "row 1: the image's 4 bytes are not an image format PIL reads (PNG, JPEG, ...)",
        ),
        ({"question": ["Who?"], "image": ["not base64!"]}, "row 0: the image is not base64 text"),
        ({"question": ["Who?"], "image": [3]}, "row 0: the image must be base64 text or bytes, "
         "got int"),
        ({"question": ["Who?", "  "]}, "row 1: empty question"),
        ({"question": ["Who?", None]}, "row 1: no question"),
        ({"question": [7]}, "row 0: the question must be text, got int"),
        ({"question": ["Who?"], "images": [None]}, "unknown column 'images': the model reads "
         "'question' and, optionally, 'image' (base64 PNG/JPEG over REST, bytes from Python)"),
        ({"prompt": ["Who?"]}, "unknown column 'prompt': the model reads 'question' and, "
         "optionally, 'image' (base64 PNG/JPEG over REST, bytes from Python)"),
        ({"image": [None]}, "no 'question' column: every row needs a question"),
    ],
)  # fmt: skip
def test_a_bad_row_is_refused_with_one_line_naming_it(frame: dict, line: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        read_batch(pd.DataFrame(frame))
    assert refused.value.message == line
    assert refused.value.get_http_status_code() == 400


def test_a_truncated_image_is_refused_at_reading_not_inside_generation() -> None:
    whole = png(size=64)
    with pytest.raises(InvalidRequest, match=r"^row 0: the image could not be decoded \("):
        read_batch(pd.DataFrame({"question": ["Who?"], "image": [whole[: len(whole) // 2]]}))


def test_the_scoring_servers_rewrite_of_the_message_leaves_the_line() -> None:
    """MLflow's server sets ``message`` to "Failed to predict data '<frame>'. Error: ..."."""
    error = InvalidRequest("row 1: empty question")
    error.message = "Failed to predict data '   question\n0  Who?'. \nError: row 1: empty question"
    assert error.message == "row 1: empty question"
    assert '"message": "row 1: empty question"' in error.serialize_as_json()
    assert "stack_trace" not in error.serialize_as_json()


def test_max_new_tokens_defaults_and_must_be_positive() -> None:
    assert read_max_new_tokens(None, 64) == 64
    assert read_max_new_tokens({"max_new_tokens": 8}, 64) == 8
    with pytest.raises(InvalidRequest, match=r"^params: max_new_tokens must be at least 1, got 0$"):
        read_max_new_tokens({"max_new_tokens": 0}, 64)
