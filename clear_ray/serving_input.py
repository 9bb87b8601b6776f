"""What the served model accepts: a batch of questions, each with an optional image.

From Python the batch is a DataFrame whose ``image`` holds PNG/JPEG bytes; over ``mlflow models
serve`` it is the JSON's ``dataframe_split`` or ``dataframe_records`` with the image as base64
text. A text question has no image: null, NaN, empty, or no ``image`` column (or key) at all.

The registered model declares no input schema, so every check is here. MLflow's enforcement of
one drops an unknown column with a warning in the server's log (a misspelt ``images`` column
would be answered without its images), and its binary column base64-decodes every cell without
a null check, which refuses any batch that mixes text and image questions
(``mlflow/utils/proto_json_utils.py``, ``cast_df_types_according_to_schema``).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from PIL import Image, UnidentifiedImageError

from clear_ray.data.collate import Example

QUESTION = "question"
IMAGE = "image"
COLUMNS = (QUESTION, IMAGE)


class InvalidRequest(MlflowException):
    """A batch the model cannot answer: HTTP 400 whose message is this one line.

    MLflow's scoring server rewrites the message of any error ``predict`` raises to "Failed to
    predict data '<the input frame>'. Error: ..." (``mlflow/pyfunc/scoring_server``,
    ``invocations``), which would echo the base64 images back over several lines; this message
    stays the line written here.
    """

    def __init__(self, line: str) -> None:
        self._line = line
        super().__init__(line, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._line

    @message.setter
    def message(self, _rewritten: str) -> None:
        """Ignores the scoring server's rewrite (see the class docstring)."""


def read_batch(model_input: Any) -> list[Example]:
    """One :class:`Example` per row, in order; the first bad row raises :class:`InvalidRequest`
    naming its position (0 = the first row sent) and what is wrong with it."""
    frame = model_input if isinstance(model_input, pd.DataFrame) else as_frame(model_input)
    unknown = [str(column) for column in frame.columns if column not in COLUMNS]
    if unknown:
        raise InvalidRequest(
            f"unknown column {unknown[0]!r}: the model reads {QUESTION!r} and, optionally, "
            f"{IMAGE!r} (base64 PNG/JPEG over REST, bytes from Python)"
        )
    if QUESTION not in frame.columns:
        raise InvalidRequest(f"no {QUESTION!r} column: every row needs a question")
    images = frame[IMAGE] if IMAGE in frame.columns else [None] * len(frame.index)
    return [
        Example(read_question(scalar(question), row), "", read_image(scalar(image), row))
        for row, (question, image) in enumerate(zip(frame[QUESTION], images, strict=True))
    ]


def as_frame(model_input: Any) -> pd.DataFrame:
    """REST's ``inputs``/``instances`` arrive as records or a dict of columns, not a frame."""
    try:
        return pd.DataFrame(model_input)
    except (TypeError, ValueError) as error:
        raise InvalidRequest(
            f"expected a table of rows with a {QUESTION!r} column, got "
            f"{type(model_input).__name__} ({error})"
        ) from None


def scalar(value: Any) -> Any:
    """REST's ``inputs`` as records wraps each cell in a 0-d numpy array."""
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def read_question(value: Any, row: int) -> str:
    if is_missing(value):
        raise InvalidRequest(f"row {row}: no question")
    if not isinstance(value, str):
        raise InvalidRequest(f"row {row}: the question must be text, got {type(value).__name__}")
    if not value.strip():
        raise InvalidRequest(f"row {row}: empty question")
    return value


def read_image(value: Any, row: int) -> Image.Image | None:
    """None for a text question; else the decoded image, fully read so a truncated file fails
    here rather than inside generation."""
    if is_missing(value) or (isinstance(value, (str, bytes, bytearray)) and not value):
        return None
    if isinstance(value, str):
        try:  # `base64` wraps its output every 76 characters: whitespace is not data
            data = base64.b64decode("".join(value.split()), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"row {row}: the image is not base64 text") from None
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise InvalidRequest(
            f"row {row}: the image must be base64 text or bytes, got {type(value).__name__}"
        )
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise InvalidRequest(
            f"row {row}: the image's {len(data)} bytes are not an image format PIL reads "
            "(PNG, JPEG, ...)"
        ) from None
    except Exception as error:  # PIL's decoders raise OSError, ValueError, SyntaxError, ...
        raise InvalidRequest(f"row {row}: the image could not be decoded ({error})") from None
    return image


def is_missing(value: Any) -> bool:
    """JSON null, pandas' NaN/NA for an absent key of ``dataframe_records``."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def read_max_new_tokens(params: dict[str, Any] | None, default: int) -> int:
    """The ``max_new_tokens`` param (MLflow checks it is an integer), at least 1."""
    value = (params or {}).get("max_new_tokens")
    if value is None:
        return default
    if int(value) < 1:
        raise InvalidRequest(f"params: max_new_tokens must be at least 1, got {value}")
    return int(value)
