"""Person folds: select on one half of the persons, report on the other.

A search picks the best epoch of every trial and the best trial by forget quality; with
``num_samples × epochs`` noisy draws the maximum is biased upward (the winner's curse), and
reported on the same items it overstates what the method does. So the forget persons of the
split are divided into a *selection* fold (per-epoch evaluations, ASHA, best epoch and best
trial, constraints, Optuna) and a *report* fold (final evaluation, leaderboard). Unlearning
still forgets every forget person; only which forget items an evaluation scores changes.

The retain persons (those of ``retain_perturbed``) are divided the same way: trials are kept
feasible on the selection fold's retain persons, so the report fold's feasibility (against
Original's retain metric on the report fold's retain persons) is measured out of sample, not on
the rows the winner was selected for passing. Real-world tasks keep every row: nothing selects
on them by default.

A row belongs to the fold of its person, :func:`person_of`: the ``name`` column where a row has
one, else the person named in its text (TOFU's QA rows carry no name, but their questions and
answers name the author). Every evaluation, per-epoch, final, confirm and robustness check, uses
this one rule. Only a row naming no known person is split item by item (seeded by its index);
:func:`unassigned_rows` counts them, and a search logs the count.

The division is seeded and stratified by item count (persons with many images fall into both
folds alike), so the two folds hold about the same number of items. ``report_fraction`` 0 means
no folds: both are every person (the behaviour before folds, labelled as such).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import datasets

FOLDS_FILE = "folds.json"
SELECTION, REPORT = "selection", "report"


TEXT_COLUMNS = ("question", "answer", "caption")  # where a row without a name names its person


def person_of(row: Mapping[str, object], pattern: re.Pattern[str] | None) -> str | None:
    """The person a row is about: its ``name`` where it has one, else the first person whose
    name occurs (as whole words) in its question, answer or caption, else None.

    ``pattern`` is :func:`names_pattern` of the candidate persons (None: no candidates).
    """
    if row.get("name"):
        return str(row["name"])
    if pattern is None:
        return None
    found = pattern.search(" \n ".join(str(row.get(c) or "") for c in TEXT_COLUMNS))
    return found.group(0) if found else None


def names_pattern(persons: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching any of ``persons`` as whole words; at a position where several
    match, the longest wins (so "Ann Lee" is not read inside "Ann Leeson")."""
    names = sorted(set(persons), key=lambda name: (-len(name), name))
    if not names:
        return None
    return re.compile(r"\b(?:" + "|".join(map(re.escape, names)) + r")\b")


def row_persons(
    rows: datasets.Dataset, index: Sequence[int], persons: Iterable[str]
) -> list[str | None]:
    """:func:`person_of` for the rows ``index`` of ``rows``, matched against ``persons``; reads
    only the name and text columns (no image is decoded)."""
    columns = [c for c in ("name", *TEXT_COLUMNS) if c in rows.column_names]
    pattern = names_pattern(persons)
    return [person_of(row, pattern) for row in rows.select_columns(columns).select(index)]


@dataclass(frozen=True)
class PersonFolds:
    """The forget persons of ``forget_split``, and the retain persons, in a selection and a
    report fold each."""

    selection: tuple[str, ...]
    report: tuple[str, ...]
    seed: int
    report_fraction: float
    forget_split: str = ""
    retain_selection: tuple[str, ...] = ()
    retain_report: tuple[str, ...] = ()
    # Per task: its rows whose person the rule finds nowhere, split item by item instead.
    unassigned_rows: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def active(self) -> bool:
        """False for ``report_fraction`` 0: selection and report use the same persons."""
        return self.report_fraction > 0

    @property
    def everyone(self) -> tuple[str, ...]:
        """Every forget and retain person of either fold: the names a text row is matched to."""
        return tuple(
            sorted({*self.selection, *self.report, *self.retain_selection, *self.retain_report})
        )

    def fold(self, name: str) -> Fold | None:
        """The rows filter of fold ``name`` (selection | report); None when folds are off."""
        if not self.active:
            return None
        if name == SELECTION:
            persons = (*self.selection, *self.retain_selection)
        else:
            persons = (*self.report, *self.retain_report)
        return Fold(name, frozenset(persons), self.everyone, self.seed, self.report_fraction)

    def describe(self, name: str) -> str:
        """One line for the console: which persons an evaluation of fold ``name`` uses."""
        if not self.active:
            return "no folds (--report-fraction 0): selection and report on every person"
        persons = self.selection if name == SELECTION else self.report
        retain = self.retain_selection if name == SELECTION else self.retain_report
        return (
            f"{name} fold: {len(persons)} forget person(s) ({', '.join(persons)}) "
            f"and {len(retain)} retain person(s)"
        )

    def describe_unassigned(self) -> str:
        """One line: how many rows the person rule could not place (split item by item)."""
        counts = {task: n for task, n in self.unassigned_rows.items() if n}
        if not counts:
            return "every forget and retain row names its person: rows follow their person"
        listed = ", ".join(f"{task} {n}" for task, n in sorted(counts.items()))
        return f"rows naming no known person, split item by item: {listed}"

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        values = {
            **asdict(self),
            **{key: list(getattr(self, key)) for key in PERSON_FIELDS},
        }
        path.write_text(json.dumps(values, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> PersonFolds:
        values = json.loads(Path(path).read_text())
        return cls(
            **{key: tuple(values.get(key, ())) for key in PERSON_FIELDS},
            seed=int(values["seed"]),
            report_fraction=float(values["report_fraction"]),
            forget_split=values.get("forget_split", ""),
            unassigned_rows=dict(values.get("unassigned_rows", {})),
        )


PERSON_FIELDS = ("selection", "report", "retain_selection", "retain_report")


@dataclass(frozen=True)
class Fold:
    """Which forget and retain rows an evaluation of one fold scores.

    A row belongs to the fold of its person (:func:`person_of`, matched against ``everyone``).
    A row whose person the rule cannot find is split item by item, seeded by the row index, in
    the same proportion: selection and report still never score the same item.
    """

    name: str  # selection | report
    persons: frozenset[str]  # this fold's forget and retain persons
    everyone: tuple[str, ...]  # both folds' persons
    seed: int
    report_fraction: float

    def persons_of(self, rows: datasets.Dataset, index: Sequence[int]) -> list[str | None]:
        """Each row's person by the shared rule (None: none found)."""
        return row_persons(rows, index, self.everyone)

    def keep(self, persons: Sequence[str | None], row_index: Sequence[int]) -> list[bool]:
        """Per row (its person or None, its index in the task's config): in this fold?"""
        import numpy as np

        draws = np.random.default_rng(self.seed).random(max(row_index, default=-1) + 1)
        return [
            (person in self.persons)
            if person
            else ((draws[index] < self.report_fraction) == (self.name == REPORT))
            for person, index in zip(persons, row_index, strict=True)
        ]


def split_persons(
    item_counts: dict[str, int], report_fraction: float, seed: int, forget_split: str = ""
) -> PersonFolds:
    """Seeded, stratified division of the persons (name -> item count) into two folds.

    Persons are shuffled (seed), then sorted by item count (stable, so ties stay shuffled);
    the report fold takes one person from each of ``n_report`` consecutive strata of that
    order, at a seeded offset (systematic sampling), so both folds span the item counts.
    ``n_report`` = round(fraction × n), at least 1 and at most n − 1.
    """
    import numpy as np

    from clear_ray.errors import ConfigError

    persons = sorted(item_counts)
    if report_fraction == 0:
        return PersonFolds(tuple(persons), tuple(persons), seed, 0.0, forget_split)
    if len(persons) < 2:
        raise ConfigError(
            f"search.report_fraction: {forget_split or 'the forget split'} has "
            f"{len(persons)} forget person(s), two folds need at least 2 (use 0: no folds)"
        )
    rng = np.random.default_rng(seed)
    shuffled = [persons[i] for i in rng.permutation(len(persons))]
    ordered = sorted(shuffled, key=lambda person: item_counts[person])
    n_report = min(max(round(report_fraction * len(persons)), 1), len(persons) - 1)
    offset = rng.random()
    picks = {int((i + offset) * len(ordered) / n_report) for i in range(n_report)}
    report = tuple(sorted(ordered[i] for i in picks))
    selection = tuple(person for person in persons if person not in report)
    return PersonFolds(selection, report, seed, report_fraction, forget_split)


def forget_item_counts(source: str, forget_split: str) -> dict[str, int]:
    """Forget person -> number of image rows in the split's ``forgetNN`` config."""
    return _name_counts(source, forget_split)


def retain_item_counts(source: str) -> dict[str, int]:
    """Retain person -> number of rows in ``retain_perturbed`` (the retain tasks' images)."""
    return _name_counts(source, "retain_perturbed")


def _name_counts(source: str, config: str) -> dict[str, int]:
    from collections import Counter

    from clear_ray.data.clear import load_clear

    names = load_clear(source, config).select_columns(["name"])["name"]
    return dict(Counter(name for name in names if name))


def benchmark_persons(source: str, forget_split: str) -> tuple[str, ...]:
    """The forget and retain persons of the split: the candidates :func:`person_of` matches
    text against (``PersonFolds.everyone`` of any folds of this split)."""
    return tuple(sorted({*forget_item_counts(source, forget_split), *retain_item_counts(source)}))


def unassigned_rows(source: str, forget_split: str, persons: Sequence[str]) -> dict[str, int]:
    """Per forget and retain task of the split: how many of its rows :func:`person_of` places
    with no one of ``persons`` (those an evaluation of a fold splits item by item)."""
    from clear_ray.data.clear import config_available, load_clear
    from clear_ray.eval.tasks import TASKS

    counts = {}
    for name, task in TASKS.items():
        config = task.config_for(forget_split)
        if task.group not in FOLDED_GROUPS or not config_available(source, config):
            continue
        rows = load_clear(source, config)
        found = row_persons(rows, task.eligible_rows(rows).tolist(), persons)
        counts[name] = sum(person is None for person in found)
    return counts


FOLDED_GROUPS = ("forget", "retain")  # the task groups a fold restricts (eval/tasks.py)


def person_folds(source: str, forget_split: str, report_fraction: float, seed: int) -> PersonFolds:
    """Forget and retain persons in folds (the same seed), with the count of rows that name
    no person."""
    forget = split_persons(forget_item_counts(source, forget_split), report_fraction, seed)
    retain = split_persons(retain_item_counts(source), report_fraction, seed)
    folds = PersonFolds(
        forget.selection,
        forget.report,
        seed,
        report_fraction,
        forget_split,
        retain.selection,
        retain.report,
    )
    missing = unassigned_rows(source, forget_split, folds.everyone)
    return replace(folds, unassigned_rows=missing)
