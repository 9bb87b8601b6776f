"""Import a script of bench/ (not a package: each is run as ``python bench/<name>.py``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str) -> ModuleType:
    """bench/<name>.py as ``python bench/<name>.py`` sees it: bench/ first on the path, so the
    scripts' imports of each other (``from searches import ...``) resolve."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)
