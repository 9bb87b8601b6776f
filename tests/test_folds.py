"""Person folds: select on some forget persons, report on the others (data/folds.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from clear_ray.config import Config, ConfigError, EvalConfig
from clear_ray.data.clear import load_clear
from clear_ray.data.folds import (
    REPORT,
    SELECTION,
    PersonFolds,
    forget_item_counts,
    person_folds,
    split_persons,
)
from clear_ray.data.synthetic import generate
from clear_ray.eval.outputs import write_item_tables
from clear_ray.eval.suite import evaluate

SPLIT = "forget10"
COUNTS = {f"p{i:02d}": (1 if i < 10 else 10) for i in range(20)}


def test_folds_are_disjoint_and_cover_every_forget_person() -> None:
    folds = split_persons(COUNTS, 0.5, seed=0)
    assert not set(folds.selection) & set(folds.report)
    assert set(folds.selection) | set(folds.report) == set(COUNTS)
    assert len(folds.report) == 10


def test_folds_are_stratified_by_item_count() -> None:
    for seed in range(5):
        report = split_persons(COUNTS, 0.5, seed).report
        assert sum(COUNTS[p] == 1 for p in report) == 5  # half the one-item persons
        assert sum(COUNTS[p] == 10 for p in report) == 5


def test_folds_are_seeded() -> None:
    assert split_persons(COUNTS, 0.5, 3) == split_persons(COUNTS, 0.5, 3)
    assert len({split_persons(COUNTS, 0.5, seed).report for seed in range(6)}) > 1


@pytest.mark.parametrize(("fraction", "expected"), [(0.25, 5), (0.5, 10), (0.99, 19), (0.01, 1)])
def test_the_report_fold_holds_the_fraction_but_never_every_or_no_person(
    fraction: float, expected: int
) -> None:
    assert len(split_persons(COUNTS, fraction, 0).report) == expected


def test_report_fraction_zero_means_no_folds() -> None:
    folds = split_persons(COUNTS, 0.0, 0)
    assert folds.selection == folds.report == tuple(sorted(COUNTS))
    assert not folds.active and folds.fold(SELECTION) is None and folds.fold(REPORT) is None
    assert "report-fraction 0" in folds.describe(SELECTION)


def test_one_forget_person_cannot_be_split() -> None:
    with pytest.raises(ConfigError, match="at least 2"):
        split_persons({"alone": 3}, 0.5, 0, "forget01")


def test_a_named_row_follows_its_person_and_unnamed_rows_split_item_by_item() -> None:
    folds = split_persons({"a": 1, "b": 1}, 0.5, 0)
    selection, report = folds.fold(SELECTION), folds.fold(REPORT)
    (chosen,) = folds.report
    assert report.keep([chosen, folds.selection[0]], [0, 1]) == [True, False]
    assert selection.keep([chosen, folds.selection[0]], [0, 1]) == [False, True]
    unnamed = list(range(200))
    in_report = report.keep([""] * 200, unnamed)
    in_selection = selection.keep([None] * 200, unnamed)
    assert all(a != b for a, b in zip(in_report, in_selection, strict=True))
    assert 60 < sum(in_report) < 140
    assert report.keep([""] * 3, [7, 3, 150]) == [in_report[7], in_report[3], in_report[150]]


def test_folds_json_holds_the_contracts_keys(tmp_path: Path) -> None:
    folds = split_persons(COUNTS, 0.5, 2, "forget05")
    path = folds.save(tmp_path / "folds.json")
    assert set(json.loads(path.read_text())) == {
        "selection",
        "report",
        "seed",
        "report_fraction",
        "forget_split",
    }
    assert PersonFolds.load(path) == folds


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("clear")
    generate(root, persons=40, seed=0)
    return str(root)


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch):
    """Scoring replaced by fixed NLLs: these tests are about which rows are scored."""
    from clear_ray.eval import suite

    def fixed_scores(task, model, collator, rows, config, generate):
        return [(1.0, 1.0, np.full(3, 2.0), None) for _ in rows]

    monkeypatch.setattr(suite, "_score_rows", fixed_scores)
    return torch.nn.Linear(1, 1), None


def test_forget_item_counts_are_the_image_rows_of_each_forget_person(source: str) -> None:
    counts = forget_item_counts(source, SPLIT)
    assert sum(counts.values()) == len(load_clear(source, SPLIT))
    assert len(counts) == 4  # 10 % of 40 persons


def test_an_evaluation_of_a_fold_scores_only_its_persons_forget_rows(source: str, no_model) -> None:
    model, collator = no_model
    folds = person_folds(source, SPLIT, 0.5, 0)
    config = EvalConfig(
        generate=False, tasks="forget_captions,forget_text_perturbed,retain_captions"
    )
    everyone = evaluate(model, collator, source, SPLIT, config)
    for name, persons in ((SELECTION, folds.selection), (REPORT, folds.report)):
        result = evaluate(model, collator, source, SPLIT, config, fold=folds.fold(name))
        for task in ("forget_captions", "forget_text_perturbed"):
            names = result.tasks[task].names
            assert names and set(names) == set(persons)
            assert len(names) < len(everyone.tasks[task].names)
        # Retain-side tasks keep every row.
        retain = result.tasks["retain_captions"].item_index.tolist()
        assert retain == everyone.tasks["retain_captions"].item_index.tolist()


def test_report_fraction_zero_evaluates_exactly_as_without_folds(source: str, no_model) -> None:
    model, collator = no_model
    folds = person_folds(source, SPLIT, 0.0, 0)
    config = EvalConfig(generate=False, tasks="forget_captions,retain_captions")
    plain = evaluate(model, collator, source, SPLIT, config)
    folded = evaluate(model, collator, source, SPLIT, config, fold=folds.fold(SELECTION))
    assert folded.metrics == plain.metrics


def test_per_item_parquet_files_name_the_person(source: str, no_model, tmp_path: Path) -> None:
    model, collator = no_model
    folds = person_folds(source, SPLIT, 0.5, 0)
    config = EvalConfig(generate=False, tasks="forget_captions")
    result = evaluate(model, collator, source, SPLIT, config, fold=folds.fold(REPORT))
    (path,) = write_item_tables(tmp_path, result.tasks)
    assert set(pq.read_table(path).column("name").to_pylist()) == set(folds.report)


def test_the_search_config_has_fold_and_confirm_fields() -> None:
    search = Config().search
    assert (search.report_fraction, search.fold_seed, search.confirm_seeds) == (0.5, 0, 3)
    with pytest.raises(ConfigError, match=r"search\.report_fraction"):
        Config().replace({"search.report_fraction": 1.0})


def test_a_trials_per_epoch_evaluation_scores_the_selection_fold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clear_ray.train import loop
    from clear_ray.train.selection import Thresholds
    from clear_ray.train.worker import TrialInputs

    seen = {}

    def recording_evaluate(*args, **kwargs):
        seen.update(kwargs)
        return type("Result", (), {"metrics": {}})()

    monkeypatch.setattr(loop, "evaluate", recording_evaluate)
    fold = split_persons(COUNTS, 0.5, 0).fold(SELECTION)
    inputs = TrialInputs("data", "original", None, Thresholds("log_forget_quality", 0.0), fold)
    loop._evaluate(None, None, None, Config(), inputs, 0, 1)
    assert seen["fold"] is fold


def test_report_fraction_zero_is_labelled_in_the_heading_and_the_tag() -> None:
    from clear_ray.tune import fold_tag, leaderboard_heading

    off, on = split_persons(COUNTS, 0.0, 0), split_persons(COUNTS, 0.5, 0)
    assert "NO FOLDS" in leaderboard_heading(off, 3)
    assert fold_tag(off).startswith("none (report_fraction 0")
    assert "report fold" in leaderboard_heading(on, 3) and "3 confirm seeds" in (
        leaderboard_heading(on, 3)
    )
    assert fold_tag(on) == "selection 10 / report 10 persons"
