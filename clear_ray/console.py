"""Progress as a person reads it: a redrawing bar on a terminal, a few lines in a log file.

A tqdm bar written to a file or a pipe leaves every redraw behind (690 updates, 78 KB for one
finetune); a log wants the quarter marks and the end, each one line.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

from tqdm.auto import tqdm

SUMMARY_PARTS = 4  # a log line at 25 %, 50 %, 75 % and 100 %


def log(message: str) -> None:
    """One line of the CLIs' own progress on stderr, told apart from Ray's by its prefix."""
    print(f"[clear_ray] {message}", file=sys.stderr, flush=True)


def counted(count: int, noun: str) -> str:
    """``1 epoch``, ``3 epochs``: a count and its noun, singular for one."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def format_value(value: Any) -> str:
    """A number as a person reads it in a sentence or a table cell: 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``: what a user reads at a glance."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def summary_steps(total: int, parts: int = SUMMARY_PARTS) -> list[int]:
    """The steps after which a log gets its line: each ``1/parts`` of ``total``, once."""
    return sorted({math.ceil(total * k / parts) for k in range(1, parts + 1)} - {0})


class LogProgress:
    """tqdm's ``update``/``set_postfix`` for a stream that is not a terminal: one line per
    ``summary_steps`` mark, with the elapsed time and the latest postfix."""

    def __init__(self, total: int, description: str, stream: TextIO) -> None:
        self.total = total
        self.description = description
        self.stream = stream
        self.marks = summary_steps(total)
        self.count = 0
        self.postfix: dict[str, Any] = {}
        self.started = time.monotonic()

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def update(self, n: int = 1) -> None:
        self.count += n
        if self.marks and self.count >= self.marks[0]:
            while self.marks and self.count >= self.marks[0]:
                self.marks.pop(0)
            details = "".join(f", {key}={value}" for key, value in self.postfix.items())
            elapsed = format_duration(time.monotonic() - self.started)
            print(
                f"{self.description}: {100 * self.count // self.total}% "
                f"({self.count}/{self.total} steps, {elapsed}{details})",
                file=self.stream,
                flush=True,
            )

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def step_progress(
    total: int, description: str, stream: TextIO | None = None, disable: bool = False
) -> Any:
    """A context manager with ``update`` and ``set_postfix``: tqdm on a terminal, else
    ``LogProgress``; nothing when ``disable`` (the ranks but the first of a Train job)."""
    if disable:
        return tqdm(total=total, disable=True)
    stream = stream or sys.stderr
    if stream.isatty():
        return tqdm(total=total, desc=description, unit="step", file=stream)
    return LogProgress(total, description, stream)
