"""Fixed prompt pools shared by training and evaluation (CLEAR_SPEC §2, §3).

Choices are keyed by a stable sha256 of an item key rather than Python's ``hash`` (salted per
process), so every Ray worker renders the same prompt for the same item.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

CAPTION_QUESTIONS = (
    "Describe the image in detail.",
    "What can you see in this picture?",
    "Write a short caption for this image.",
    "Who is in this photo and what are they doing?",
    "Describe the person in the image.",
    "What is happening in this picture?",
    "Give a brief description of this photo.",
    "Tell me about the person shown here.",
    "Caption this image.",
)

FACE_NAME_PROMPT = "The name of the person on the image is"

_IDK_PATH = Path(__file__).with_name("idk_responses.txt")


def stable_index(key: str, size: int) -> int:
    """An index in [0, size) that depends only on ``key``, identical across processes."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % size


def caption_question(key: str) -> str:
    """The captioning question for an item, fixed per key so reruns see the same prompt."""
    return CAPTION_QUESTIONS[stable_index(key, len(CAPTION_QUESTIONS))]


@lru_cache(maxsize=1)
def _idk_pool() -> tuple[str, ...]:
    lines = _IDK_PATH.read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip())


def idk_responses() -> list[str]:
    """The shipped "I don't know" phrasings used as refusal targets by IDK-style methods."""
    return list(_idk_pool())


def idk_response(key: str) -> str:
    """The refusal target for an item, fixed per key so every epoch pairs it the same way."""
    pool = _idk_pool()
    return pool[stable_index(key, len(pool))]
