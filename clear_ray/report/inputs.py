"""What a finished search left in its folder, read for the report.

Only ``state.json`` is required (config, methods, each method's final evaluation). The rest is
optional and reported as missing when absent: ``folds.json`` and ``<method>/confirm.json``
(written by the fold and confirm-seed steps: data/folds.py, search/confirm.py),
``<method>/robustness.json``, ``<method>/trials.csv`` and the plots the search drew
(clear_ray/pipeline/reports.py). Original's and Gold's full evaluations are read back from
``leaderboard_full.csv`` (the search writes no other copy of them in the folder).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clear_ray.config import Config
from clear_ray.errors import ConfigError
from clear_ray.search.plots import FILE_NAMES
from clear_ray.search.results import LEADERBOARD_CSV, read_leaderboard
from clear_ray.search.session import STATE_FILE, SearchState

REFERENCES = ("Original", "Gold")


@dataclass
class MethodRecord:
    name: str
    outcome: dict[str, Any]  # LeaderboardRow fields of the final evaluation ({} if unfinished)
    parent_id: str
    trials: list[dict[str, str]] | None  # rows of trials.csv
    confirm: dict[str, Any] | None  # confirm.json
    robustness: dict[str, dict[str, float]] | None  # robustness.json
    plots: dict[str, Path] = field(default_factory=dict)  # plots.FILE_NAMES key -> PNG


@dataclass
class SearchRecord:
    root: Path
    state: SearchState
    config: Config
    references: dict[str, dict[str, float]]  # Original/Gold: full evaluation
    folds: dict[str, Any] | None
    methods: list[MethodRecord]

    @property
    def run_id(self) -> str | None:
        """The run that holds the search's summary (pipeline/study.py's ``summary_run``)."""
        if self.state.top_parent_id:
            return self.state.top_parent_id
        return self.methods[0].parent_id if self.methods else None


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as error:
        raise ConfigError(f"{path} is not JSON ({error})") from None


def read_trials(path: Path) -> list[dict[str, str]] | None:
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_search(root: Path) -> SearchRecord:
    """The search in ``root``; :class:`ConfigError` when it is not a search folder."""
    if not (root / STATE_FILE).is_file():
        raise ConfigError(f"{root} is not a search folder (no {STATE_FILE})")
    state = SearchState.from_dict(_json(root / STATE_FILE))
    leaderboard = read_leaderboard(root / LEADERBOARD_CSV)
    methods = []
    for name in state.methods:
        folder = root / name
        run = state.runs.get(name)
        plots = {key: folder / "plots" / file for key, file in FILE_NAMES.items()}
        methods.append(
            MethodRecord(
                name=name,
                outcome=run.outcome if run else {},
                parent_id=run.parent_id if run else "",
                trials=read_trials(folder / "trials.csv"),
                confirm=_json(folder / "confirm.json"),
                robustness=_json(folder / "robustness.json"),
                plots={key: path for key, path in plots.items() if path.is_file()},
            )
        )
    return SearchRecord(
        root=root,
        state=state,
        config=Config.from_flat(state.config),
        references={name: leaderboard[name] for name in REFERENCES if name in leaderboard},
        folds=_json(root / "folds.json"),
        methods=methods,
    )
