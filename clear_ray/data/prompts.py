"""Fixed prompt pools shared by training and evaluation (CLEAR_SPEC §2, §3).

Choices are keyed by a stable sha256 of an item key rather than Python's ``hash`` (salted per
process), so every Ray worker renders the same prompt for the same item.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

# CLEAR's own pool, verbatim (`mm/dataset.py` IMAGE_CAPTION_QUESTIONS, punctuation included): none
# asks who is shown, so captioning is not trained as a disguised face-naming task.
CAPTION_QUESTIONS = (
    "What can you see in this picture?",
    "Tell me about the content of this image",
    "Can you give a description of the image?",
    "What is depicted in the image?",
    "Explain what you observe in the picture.",
    "Describe the image in detail.",
    "What is the main subject of this image?",
    "Can you describe the scene or objects in the image?",
    "What is happening in this image?",
)

# CLEAR's face-naming question (`mm/dataset.py`, strategy "random_faces"), trailing space kept:
# it is the user turn, so the chat template's assistant marker follows it and the
# space changes only the prompt's tokens, which is what comparability with CLEAR asks for.
FACE_NAME_PROMPT = "The name of the person on the image is "

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
