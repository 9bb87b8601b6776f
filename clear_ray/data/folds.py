"""Person folds: select on one half of the forget persons, report on the other.

A search picks the best epoch of every trial and the best trial by forget quality; with
``num_samples × epochs`` noisy draws the maximum is biased upward (the winner's curse), and
reported on the same items it overstates what the method does. So the forget persons of the
split are divided into a *selection* fold (per-epoch evaluations, ASHA, best epoch and best
trial, constraints, Optuna) and a *report* fold (final evaluation, leaderboard). Unlearning
still forgets every forget person; only which forget items an evaluation scores changes.

The division is seeded and stratified by item count (persons with many images fall into both
folds alike), so the two folds hold about the same number of items. ``report_fraction`` 0 means
no folds: both are every person (the behaviour before folds, labelled as such).

Retain-side tasks keep all their rows: the retain metric is a constraint, not the maximised
objective, its rows are the other 90–99 % of the persons (little noise to exploit), and its
threshold is relative to Original's value on those same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

FOLDS_FILE = "folds.json"
SELECTION, REPORT = "selection", "report"


@dataclass(frozen=True)
class PersonFolds:
    """The forget persons of ``forget_split`` in a selection and a report fold."""

    selection: tuple[str, ...]
    report: tuple[str, ...]
    seed: int
    report_fraction: float
    forget_split: str = ""

    @property
    def active(self) -> bool:
        """False for ``report_fraction`` 0: selection and report use the same persons."""
        return self.report_fraction > 0

    def fold(self, name: str) -> Fold | None:
        """The rows filter of fold ``name`` (selection | report); None when folds are off."""
        if not self.active:
            return None
        persons = self.selection if name == SELECTION else self.report
        return Fold(name, frozenset(persons), self.seed, self.report_fraction)

    def describe(self, name: str) -> str:
        """One line for the console: which persons an evaluation of fold ``name`` uses."""
        if not self.active:
            return "no folds (--report-fraction 0): selection and report on every forget person"
        persons = self.selection if name == SELECTION else self.report
        return f"{name} fold: {len(persons)} forget person(s) ({', '.join(persons)})"

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        values = {**asdict(self), "selection": list(self.selection), "report": list(self.report)}
        path.write_text(json.dumps(values, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> PersonFolds:
        values = json.loads(Path(path).read_text())
        return cls(
            selection=tuple(values["selection"]),
            report=tuple(values["report"]),
            seed=int(values["seed"]),
            report_fraction=float(values["report_fraction"]),
            forget_split=values.get("forget_split", ""),
        )


@dataclass(frozen=True)
class Fold:
    """Which forget rows an evaluation of one fold scores.

    A row naming a person belongs to the fold of that person. A row naming none (TOFU's text
    QA, which does not say whose biography it is) cannot follow its person, so such rows are
    split item by item, seeded by the row index, in the same proportion: selection and report
    still never score the same item.
    """

    name: str  # selection | report
    persons: frozenset[str]
    seed: int
    report_fraction: float

    def keep(self, names: Sequence[str | None], row_index: Sequence[int]) -> list[bool]:
        """Per row (its person's name or ""/None, its index in the task's config): in this fold?"""
        import numpy as np

        draws = np.random.default_rng(self.seed).random(max(row_index, default=-1) + 1)
        return [
            (name in self.persons)
            if name
            else ((draws[index] < self.report_fraction) == (self.name == REPORT))
            for name, index in zip(names, row_index, strict=True)
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

    from clear_ray.config import ConfigError

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
    from collections import Counter

    from clear_ray.data.clear import load_clear

    return dict(Counter(load_clear(source, forget_split)["name"]))


def person_folds(source: str, forget_split: str, report_fraction: float, seed: int) -> PersonFolds:
    return split_persons(
        forget_item_counts(source, forget_split), report_fraction, seed, forget_split
    )
