"""Benchmark scripts' access to ``clear_ray.tune`` searches: find one on disk, run one with its
console into a log, read its trial curves and its references back.

Each benchmark keeps all its searches in one output dir (Original and Gold are trained once),
and finds a search again by its saved configuration (``state.json``), so a benchmark killed at
any point is rerun with the same command: finished searches are kept, an interrupted one is
continued with ``--resume``. Searches that run at once go to lanes (:func:`make_lanes`): output
dirs of their own (each search has its own local Ray and MLflow store) that share the data and
the reference cache.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

LANE_PREFIX = "lane-"
SHARED = ("data", "cache")  # what lanes share with the output dir (cache.cached_dir: race-safe)


def make_lanes(output: Path, count: int) -> list[Path]:
    """``count`` output dirs under ``output`` for searches that run at once: each links the
    output dir's data and reference cache, so Original and Gold are still made once."""
    lanes = []
    for index in range(count):
        lane = output / f"{LANE_PREFIX}{index}"
        lane.mkdir(parents=True, exist_ok=True)
        for name in SHARED:
            (output / name).mkdir(exist_ok=True)
            link = lane / name
            if not link.is_symlink():
                link.symlink_to(Path("..") / name, target_is_directory=True)
        lanes.append(lane)
    return lanes


def lane_of(search: Path) -> Path:
    """The output dir (a lane or the benchmark's own) that holds ``search``."""
    return search.parent.parent


def find_search(output: Path, method: str, config: dict | None = None) -> Path | None:
    """The newest search of ``method`` alone in ``output`` or its lanes whose saved config has
    every ``config`` value (dotted paths, e.g. ``{"search.seed": 3}``)."""
    found = []
    states = [
        *(output / "searches").glob("*/state.json"),
        *output.glob(f"{LANE_PREFIX}*/searches/*/state.json"),
    ]
    for state_file in states:
        try:
            state = json.loads(state_file.read_text())
            methods, saved = state["methods"], state.get("config", {})
        except (OSError, ValueError, KeyError):
            continue
        if methods == [method] and all(saved.get(k) == v for k, v in (config or {}).items()):
            found.append(state_file.parent)
    return max(found, key=lambda path: (path / "state.json").stat().st_mtime, default=None)


def search_done(search: Path, method: str) -> bool:
    state = json.loads((search / "state.json").read_text())
    return state.get("runs", {}).get(method, {}).get("status") == "done"


def run_logged(command: list[str], log: Path, on_line: Callable[[str], None] = print) -> int:
    """Run ``command`` with its console appended to ``log``; ``on_line`` sees every line."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        for line in process.stdout:
            handle.write(line)
            handle.flush()
            on_line(line)
        return process.wait()


def references_from_leaderboard(text: str) -> dict[str, dict[str, float]]:
    """Original's and Gold's full-evaluation metrics from a search's leaderboard.md, its
    columns mapped back to metric keys (``clear_ray.search.results.LEADERBOARD``; a value a
    row lacks reads ``DASH``)."""
    from clear_ray.search.results import DASH, LEADERBOARD

    by_column = dict(LEADERBOARD)
    lines = [line for line in text.splitlines() if line.startswith("|")]
    if len(lines) < 2:
        return {}
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    references = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] not in ("Original", "Gold"):
            continue
        references[cells[0]] = {
            by_column[column]: float(cell)
            for column, cell in zip(header, cells, strict=True)
            if column in by_column and cell not in ("", DASH)
        }
    return references


def trial_curves(search: Path, method: str) -> list[list[dict]]:
    """Every trial's per-epoch reports (Tune's result.json), trials in creation order."""
    from clear_ray.search.results import trial_identity

    trials = []
    for result in (search / "ray" / method).glob("*/result.json"):
        reports = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        trials.append((trial_identity(result.parent.name)[1], reports))
    return [reports for _, reports in sorted(trials, key=lambda item: item[0])]
