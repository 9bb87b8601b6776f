"""One search on disk: its folder layout and the state that ``--resume`` continues from.

Everything a search writes lives under ``<output>/searches/<name>/``: ``state.json`` (the
config, the methods and their MLflow runs), Ray Tune's experiment per method, Ray Train's
checkpoints, the best adapters, the reports. A search killed at any point is resumed from
here: finished methods are kept, the running one is restored with ``Tuner.restore``.
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from clear_ray.cache import write_atomic
from clear_ray.errors import ConfigError
from clear_ray.runtime.store import storage_filesystem

STATE_FILE = "state.json"
# SQLite, not Optuna's journal file: a driver killed with SIGKILL (OOM killer, spot loss,
# `kill -9`) leaves an SQLite database consistent (each write is a transaction; the OS drops
# the dead process's file lock), and the next process writes at once. The journal file's lock
# is a symlink that a killed writer leaves behind: the next writer waits its 30 s grace
# period; and after a torn last line (full disk, power cut) the study takes no more trials
# until the file is repaired by hand. Measured in bench/RESULTS.md
# ("Optuna storage under kill -9"). Only the Tune driver writes it, so the file stays on the
# driver's local disk, never on NFS.
OPTUNA_DB = "optuna.db"


# A method's stages, in order. state.json records the one it is at, so that a resumed search
# starts there: after the search a resume reads Tune's results without running Tune again, and
# the best trial's final evaluation from disk; the confirm runs resume per seed (confirm.py);
# robustness checks that finished are read from their cache (robust/run.py).
SEARCH, CONFIRM = "search", "confirm"  # CONFIRM: confirm runs, robustness, registration
FAILED = "failed"  # a method whose trials all failed (MethodRun.status)


@dataclass
class MethodRun:
    parent_id: str
    status: str = "running"  # running | done | FAILED
    outcome: dict = field(default_factory=dict)  # what the leaderboard shows once done
    # The default configuration's leaderboard row (confirm seeds; empty when off).
    default_outcome: dict = field(default_factory=dict)
    stage: str = SEARCH  # while running: SEARCH, then CONFIRM once the final evaluation is done
    failure: str = ""  # why it FAILED: the count and the most common reason


@dataclass
class SearchState:
    name: str
    config: dict  # Config.to_flat() of the search
    methods: list[str]
    space_origins: dict[str, str]  # method -> search space file
    top_parent_id: str | None = None  # the --method all parent run
    runs: dict[str, MethodRun] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> SearchState:
        runs = {name: MethodRun(**run) for name, run in values.pop("runs").items()}
        return cls(**values, runs=runs)


class SearchDirs:
    """Paths of one search; every writer asks here.

    Ray's results and checkpoints go under ``storage`` when given (a URI or a shared mount
    that trials on other nodes reach), else under the search folder.
    """

    def __init__(self, output: Path, name: str, storage: str = "") -> None:
        self.output = output
        self.root = output / "searches" / name
        self.name = name
        self.storage = f"{storage.rstrip('/')}/{name}" if storage else str(self.root)

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def ray_results(self) -> str:
        return f"{self.storage}/ray"

    @property
    def ray_train(self) -> str:
        return f"{self.storage}/ray_train"

    def tune_experiment(self, method: str) -> str:
        return f"{self.ray_results}/{method}"

    def optuna_storage(self, url: str = "") -> str:
        """The Optuna studies' storage: ``url`` (search.optuna_storage) or SQLite here."""
        return url or f"sqlite:///{self.root.absolute() / OPTUNA_DB}"

    def study_name(self, method: str) -> str:
        """Unique in a storage that many searches share (a PostgreSQL on the head)."""
        return f"{self.name}/{method}"

    def method(self, method: str) -> Path:
        return self.root / method

    def adapters(self, method: str) -> Path:
        return self.method(method) / "adapters"

    def save(self, state: SearchState) -> None:
        write_atomic(self.state, json.dumps(asdict(state), indent=2, default=str))

    def load(self) -> SearchState:
        return SearchState.from_dict(json.loads(self.state.read_text()))


def find_search(output: Path, name: str) -> SearchDirs:
    """The search ``name`` in ``output``, or with ``name == "latest"`` the newest one."""
    searches = sorted(
        (path.parent for path in (output / "searches").glob(f"*/{STATE_FILE}")),
        key=lambda path: (path / STATE_FILE).stat().st_mtime,
    )
    if name == "latest":
        if not searches:
            raise ConfigError(f"no search to resume in {output}")
        return SearchDirs(output, searches[-1].name)
    if not (output / "searches" / name / STATE_FILE).is_file():
        known = ", ".join(path.name for path in searches) or "none"
        raise ConfigError(f"no search named {name!r} in {output} (searches: {known})")
    return SearchDirs(output, name)


def check_storage_path(storage: str) -> None:
    """An unusable ``search.storage_path`` fails before the search starts, in one line."""
    try:
        filesystem, path = storage_filesystem(storage)
        filesystem.get_file_info(path)
    except Exception as error:  # pyarrow raises several types, all with a readable message
        raise ConfigError(f"storage path {storage} is unusable: {error}") from None


def check_optuna_storage(url: str) -> None:
    """An unusable ``search.optuna_storage`` fails before the search starts, in one line."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            folder = Path(parsed.database or "").absolute().parent
            if not parsed.database or not folder.is_dir():
                raise ValueError(f"no folder {folder} for the database file")
        else:  # a server: connect once (creates nothing)
            with create_engine(url).connect():
                pass
    except Exception as error:  # sqlalchemy and its drivers raise many types, all readable
        shown = hide_password(url)
        raise ConfigError(f"optuna storage {shown} is unusable: {error}") from None


def hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: nothing to hide
        return url


def dashboard_command(url: str) -> str:
    """The command that opens the stored studies, with how to install it where it is not."""
    command = f"optuna-dashboard {shlex.quote(hide_password(url))}"
    if shutil.which("optuna-dashboard"):
        return command
    return f'{command}  (not installed here: pip install -e ".[ui]" in the clear_ray checkout)'
