"""Where a search keeps what other nodes and later searches find again: the storage path.

``search.storage_path`` is a local path or a pyarrow URI (``s3://``, ``gs://``); Train's run
records, Tune's experiment and the published Original/Gold models and evaluations live there.
"""

from __future__ import annotations

from pathlib import Path

from clear_ray.cache import CacheError, cached_dir, usable
from clear_ray.console import log as console_log

COMPLETE = ".complete"  # marker written after a published folder's files, in the store


def storage_filesystem(storage: str):
    """The pyarrow filesystem of ``search.storage_path`` and the path within it (a plain path
    is local); checkpoint paths that Train reports are paths within this filesystem."""
    from pyarrow import fs  # heavy: --help imports this module (search/session.py)

    return fs.FileSystem.from_uri(storage if "://" in storage else f"file://{storage}")


class Store:
    """``<storage>/references/<kind>/<name>``: folders any node's next search finds again.

    A folder counts once its ``<name>.complete`` marker exists (written after its files; an
    object store has no atomic rename). No storage path: a store that holds nothing.
    """

    def __init__(self, storage: str) -> None:
        self.storage = storage

    def _fs(self):
        filesystem, root = storage_filesystem(self.storage)
        return filesystem, f"{root.rstrip('/')}/references"

    def names(self, kind: str) -> list[str]:
        if not self.storage:
            return []
        from pyarrow import fs  # heavy: --help imports this module (search/session.py)

        filesystem, base = self._fs()
        found = filesystem.get_file_info(fs.FileSelector(f"{base}/{kind}", allow_not_found=True))
        return [Path(i.path).name[: -len(COMPLETE)] for i in found if i.path.endswith(COMPLETE)]

    def pull(self, kind: str, local: Path, names: list[str] | None = None) -> None:
        """Copy the store's complete folders of ``kind`` that ``local`` lacks (or holds
        corrupt) into it. A published folder that fails its manifest is removed from the store
        with a warning: the caller builds it again, and publishes it again."""
        from pyarrow import fs  # heavy: --help imports this module (search/session.py)

        filesystem, base = self._fs() if self.storage else (None, "")
        for name in self.names(kind):
            if (names is None or name in names) and not usable(local / name, f"cached {kind}"):
                source = f"{base}/{kind}/{name}"
                try:
                    cached_dir(
                        local / name,
                        lambda out, s=source: fs.copy_files(
                            s, str(out), filesystem, fs.LocalFileSystem()
                        ),
                        f"published {kind}/{name}",
                    )
                except CacheError as error:
                    console_log(f"warning: {error}; removing it from {self.storage}")
                    filesystem.delete_file(source + COMPLETE)
                    filesystem.delete_dir(source)

    def push(self, kind: str, local: Path, names: list[str] | None = None) -> None:
        """Publish ``local``'s folders (or ``names`` of them) the store lacks."""
        if not self.storage or not local.is_dir():
            return
        from pyarrow import fs  # heavy: --help imports this module (search/session.py)

        filesystem, base = self._fs()
        held = set(self.names(kind))
        for folder in sorted(local.iterdir()):
            if folder.name.startswith(".") or folder.name in held or not folder.is_dir():
                continue  # a hidden folder is a build under way (cache.cached_dir)
            if names is None or folder.name in names:
                target = f"{base}/{kind}/{folder.name}"
                filesystem.create_dir(target, recursive=True)  # copy_files makes subfolders only
                fs.copy_files(str(folder), target, fs.LocalFileSystem(), filesystem)
                with filesystem.open_output_stream(target + COMPLETE):
                    pass
