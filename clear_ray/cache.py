"""Content-addressed cache directories: a key from the inputs, an atomic write.

Original/Gold models and their evaluations are expensive and deterministic in their inputs;
a second search over the same data, model and recipe reuses them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cache_key(inputs: dict[str, Any]) -> str:
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached_dir(path: Path, build: Callable[[Path], None]) -> Path:
    """Return ``path``, building it into a temporary sibling and renaming on success."""
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build(staging)
        staging.rename(path)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if not (isinstance(error, OSError) and path.is_dir()):
            raise
        # Another process (a Ray task beside this one) made the same entry first; its content
        # is the same by construction of the key, so it is kept.
    return path
