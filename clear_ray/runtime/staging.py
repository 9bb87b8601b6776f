"""Directories of the driver's node that trials on any node can open.

The Original checkpoint and a local dataset are written on the driver's node. A trial worker
(or the final evaluation) on that node, or on a node sharing its filesystem, opens them in
place; anywhere else it copies them once per node, in chunks, through Ray tasks pinned to the
driver's node, into a node-local cache. Nothing is put in the object store up front, so a
single-node search copies nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 64 * 2**20
CACHE_ENV = "CLEAR_RAY_STAGING_CACHE"  # where copies go; default ~/.cache/clear_ray/staged


@dataclass(frozen=True)
class DriverDir:
    """A directory on the driver's node, with enough to recognise or fetch it elsewhere."""

    path: str
    node_id: str
    files: tuple[tuple[str, int], ...]  # (relative path, size): a cheap content check

    @classmethod
    def of(cls, path: str | Path) -> DriverDir:
        """Call on the driver, with Ray initialised."""
        import ray  # the served model (serving.py) opens staged paths without Ray

        return cls(
            str(Path(path).resolve()), ray.get_runtime_context().get_node_id(), listing(Path(path))
        )

    @property
    def digest(self) -> str:
        return hashlib.sha256(repr((self.path, self.files)).encode()).hexdigest()[:16]

    def visible_here(self) -> bool:
        path = Path(self.path)
        return path.is_dir() and listing(path) == self.files


def listing(directory: Path) -> tuple[tuple[str, int], ...]:
    return tuple(
        (str(path.relative_to(directory)), path.stat().st_size)
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    )


def stage(value: str) -> str | DriverDir:
    """On the driver: a local directory becomes a ``DriverDir``; a hub id stays as it is."""
    return DriverDir.of(value) if Path(value).is_dir() else value


def on_this_node(value: str | DriverDir) -> str:
    """A path usable in this process: the driver's own if visible, else a node-local copy.

    Plain strings (hub ids, paths in tests) pass through unchanged.
    """
    if isinstance(value, str):
        return value
    if value.visible_here():
        return value.path
    cache = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "clear_ray" / "staged")
    return str(fetch(value, cache))


def fetch(source: DriverDir, cache: Path, chunk_bytes: int = CHUNK_BYTES) -> Path:
    """Copy ``source`` into ``cache/<digest>`` once; concurrent workers of a node wait for it."""
    import ray  # the served model (serving.py) opens staged paths without Ray
    from filelock import FileLock
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    read = ray.remote(read_chunk).options(
        num_cpus=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(source.node_id, soft=False),
    )
    target = cache / source.digest
    cache.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_dir():
            return target
        partial = cache / f"{source.digest}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        for relative, size in source.files:
            _copy_file(
                read, str(Path(source.path) / relative), size, partial / relative, chunk_bytes
            )
        os.replace(partial, target)  # complete or absent, never half-written
    return target


def _copy_file(read, path: str, size: int, out: Path, chunk_bytes: int) -> None:
    """``path`` on the driver's node to ``out`` here, a chunk per ``read`` task."""
    import ray  # the served model (serving.py) opens staged paths without Ray

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        for offset in range(0, max(size, 1), chunk_bytes):
            handle.write(ray.get(read.remote(path, offset, chunk_bytes)))


def read_chunk(path: str, offset: int, size: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)
