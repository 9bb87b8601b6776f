"""Tracking writes that the MLflow server was not there to take, kept in the search's folder.

A search goes on training while its tracking server is away (restarted, redeployed, its
network down): each write it could not deliver is appended here, one JSON object a line, in
order, and delivered once the server answers again, by this driver or by the next
``--resume``. A file, not memory: a search stopped by a long outage, or killed, loses nothing
it meant to log. Each operation is idempotent (a child run is found by its trial tag before
one is made; MLflow ignores a metric logged twice), so one delivered just before a crash may be
delivered again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from clear_ray.cache import write_atomic

OUTBOX_FILE = "mlflow_outbox.jsonl"
# A child run not made yet (the server was away when its trial started): operations name it
# by this until the run exists, then by its run id.
PENDING_CHILD = "pending-child:"


def pending_child(trial_id: str) -> str:
    return f"{PENDING_CHILD}{trial_id}"


class Outbox:
    """The undelivered operations of one search: ``{"op": name, **arguments}`` per line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, op: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(op) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def pending(self) -> list[dict[str, Any]]:
        """The operations in order; a torn last line (a kill mid-write) is dropped: the
        operation it held was never acknowledged to the caller as kept."""
        if not self.path.is_file():
            return []
        ops = []
        for line in self.path.read_text().splitlines():
            try:
                ops.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return ops

    def replace(self, ops: list[dict[str, Any]]) -> None:
        """Keep only ``ops`` (what is left after a delivery), atomically; no file when none."""
        if not ops:
            self.path.unlink(missing_ok=True)
            return
        write_atomic(self.path, "".join(json.dumps(op) + "\n" for op in ops))


def substitute(ops: list[dict[str, Any]], run_ids: dict[str, str]) -> list[dict[str, Any]]:
    """``ops`` with each pending child's placeholder replaced by its run id, once known."""
    return [
        {**op, "run_id": run_ids.get(op["run_id"], op["run_id"])} if "run_id" in op else op
        for op in ops
    ]
