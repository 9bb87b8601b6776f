"""Content-addressed cache directories: a key from the inputs, an atomic write, a manifest.

Original/Gold models and their evaluations are expensive and deterministic in their inputs;
a second search over the same data, model and recipe reuses them. Each entry carries a
manifest of its files (sizes and sha256), written after them, and is checked against it
before it is used: a file cut short by a full disk or a killed copy makes the entry be built
again, with one warning line, instead of failing every trial that loads it.

Two searches in one output directory build an entry once: the builder holds the entry's file
lock (:func:`build_lock`) and the other waits for it, then finds the entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from clear_ray.console import log
from clear_ray.errors import ConfigError

MANIFEST = "clear_ray-manifest.json"
# Files up to this size are hashed whole on every check (the tiny model, evaluations, the
# synthetic data: well under a second at the ~700 MB/s sha256 of a 2-core machine). Larger ones (a
# 7B checkpoint's ~5 GB shards, where a whole hash costs ~7 s each) are checked by size and a
# hash of their first and last ENDS_BYTES: a truncated or rewritten shard changes those.
WHOLE_FILE_BYTES = 256 * 2**20
ENDS_BYTES = 16 * 2**20


class CacheError(Exception):
    """A copied cache entry does not match the manifest it came with."""


def cache_key(inputs: dict[str, Any]) -> str:
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _sha256(path: Path, spans: list[tuple[int, int]]) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for offset, length in spans:
            handle.seek(offset)
            while length > 0:
                chunk = handle.read(min(length, 2**20))
                if not chunk:
                    break
                digest.update(chunk)
                length -= len(chunk)
    return digest.hexdigest()


def file_entry(path: Path) -> dict[str, Any]:
    """A file's manifest entry: its size and the sha256 of its bytes (of its ends if large)."""
    size = path.stat().st_size
    if size <= WHOLE_FILE_BYTES:
        return {"size": size, "sha256": _sha256(path, [(0, size)])}
    return {
        "size": size,
        "sha256_ends": _sha256(path, [(0, ENDS_BYTES), (size - ENDS_BYTES, ENDS_BYTES)]),
    }


def _files(directory: Path) -> list[tuple[str, Path]]:
    """The files a manifest covers: all but the manifest and hidden names (temporary files)."""
    found = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if path.is_file() and relative != MANIFEST and not path.name.startswith("."):
            found.append((relative, path))
    return found


def write_atomic(path: Path, text: str) -> None:
    """``text`` as ``path``, whole or not at all: written to a hidden scratch file beside it
    (its own name, so concurrent writers do not mix) and renamed over it. A process killed
    while writing leaves the previous file, or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    scratch.write_text(text, encoding="utf-8", newline="")  # the text exactly as given
    os.replace(scratch, path)


def write_manifest(directory: Path) -> None:
    """``directory``'s manifest, written last and atomically (a reader sees all of it or none)."""
    files = {relative: file_entry(path) for relative, path in _files(directory)}
    write_atomic(directory / MANIFEST, json.dumps({"files": files}, indent=1, sort_keys=True))


def manifest_problem(directory: Path) -> str | None:
    """None when every file ``directory``'s manifest lists is there with its size and hash;
    else what differs first, in a few words. Files the manifest does not list are ignored."""
    try:
        listed = json.loads((directory / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return f"no {MANIFEST}"
    except (ValueError, KeyError, TypeError):
        return f"{MANIFEST} is unreadable"
    for relative, entry in sorted(listed.items()):
        path = directory / relative
        if not path.is_file():
            return f"{relative} is missing"
        size = path.stat().st_size
        if size != entry.get("size"):
            return f"{relative} is {size} bytes, its manifest says {entry.get('size')}"
        if file_entry(path) != entry:
            return f"{relative} does not match its manifest's sha256"
    return None


def discard(path: Path) -> None:
    """Remove a cache entry: first renamed aside (atomic), so that no reader sees half of it."""
    aside = path.parent / f".{path.name}-discarded-{uuid.uuid4().hex[:8]}"
    try:
        path.rename(aside)
    except FileNotFoundError:  # another process discarded it first
        return
    shutil.rmtree(aside, ignore_errors=True)


def usable(path: Path, what: str) -> bool:
    """Whether the cache entry ``path`` exists and matches its manifest.

    An entry that does not is discarded, with one warning line naming ``what`` and the first
    difference, so that the caller builds it again.
    """
    if not path.is_dir():
        return False
    problem = manifest_problem(path)
    if problem is None:
        return True
    log(f"warning: {what} at {path} failed its check ({problem}); building it again")
    discard(path)
    return False


def cached_dir(path: Path, build: Callable[[Path], None], what: str = "cache entry") -> Path:
    """Return ``path``, building it into a temporary sibling and renaming on success.

    The build's manifest is written last, before the rename. A build that copies an entry
    with its manifest (from the store, from another node) is checked against it instead, and
    raises :class:`CacheError` on a difference.
    """
    if usable(path, what):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        build(staging)
        if (staging / MANIFEST).is_file():
            problem = manifest_problem(staging)
            if problem:
                raise CacheError(f"{what}: the copy for {path} is corrupt ({problem})")
        else:
            write_manifest(staging)
        staging.rename(path)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if not (isinstance(error, OSError) and path.is_dir()):
            raise
        # Another process (a Ray task beside this one) made the same entry first; its content
        # is the same by construction of the key, so it is kept.
    return path


@contextmanager
def build_lock(path: Path, what: str, timeout_s: float) -> Iterator[None]:
    """Hold ``path``'s build lock: one process builds a cache entry, the others wait and reuse.

    The lock is a file beside the entry (hidden: the store publishes folders only); the OS
    releases it when its holder dies, so a killed search leaves nothing to clean up. Raises
    :class:`TimeoutError` naming the entry after ``timeout_s``.
    """
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.parent / f".{path.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"{what}: another process is building {path}; waiting up to {timeout_s:g}s for it")
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise ConfigError(
                f"{what}: {path} was still being built by another process after {timeout_s:g}s "
                f"(its lock: {lock.lock_file}); raise search.reference_wait_s or wait for it"
            ) from None
    try:
        yield
    finally:
        lock.release()
