"""Person folds: select on some forget persons, report on the others (data/folds.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from clear_ray.config import Config, EvalConfig
from clear_ray.data import synthetic
from clear_ray.data.clear import load_clear
from clear_ray.data.folds import (
    REPORT,
    SELECTION,
    PersonFolds,
    forget_item_counts,
    names_pattern,
    person_folds,
    person_of,
    retain_item_counts,
    split_persons,
    unassigned_rows,
)
from clear_ray.errors import ConfigError
from clear_ray.eval.outputs import write_item_tables
from clear_ray.eval.suite import evaluate
from clear_ray.eval.tasks import TASKS

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
    forget, retain = split_persons(COUNTS, 0.5, 2, "forget05"), split_persons(COUNTS, 0.5, 3)
    folds = replace(
        forget,
        retain_selection=tuple(f"r{p}" for p in retain.selection),
        retain_report=tuple(f"r{p}" for p in retain.report),
        unassigned_rows={"forget_text_qa": 2},
    )
    path = folds.save(tmp_path / "folds.json")
    values = json.loads(path.read_text())
    assert set(values) == {
        "selection",
        "report",
        "seed",
        "report_fraction",
        "forget_split",
        "retain_selection",
        "retain_report",
        "unassigned_rows",
    }
    loaded = PersonFolds.load(path)
    assert loaded == folds and loaded.unassigned_rows == {"forget_text_qa": 2}
    # A folds.json written before retain folds existed still loads (no retain persons).
    path.write_text(json.dumps({k: values[k] for k in ("selection", "report", "seed",
                                                       "report_fraction")}))  # fmt: skip
    assert PersonFolds.load(path).retain_report == ()


def test_a_row_without_a_name_belongs_to_the_first_person_its_text_names() -> None:
    pattern = names_pattern(["Ann Lee", "Ann Leeson", "Bob Ray"])
    assert person_of({"name": "Bob Ray", "question": "Ann Lee?"}, pattern) == "Bob Ray"
    assert person_of({"name": "", "question": "Is Bob Ray Ann Lee's son?"}, pattern) == "Bob Ray"
    assert person_of({"question": "Who is Ann Leeson?", "answer": ""}, pattern) == "Ann Leeson"
    assert person_of({"question": "Who?", "answer": "It is Ann Lee."}, pattern) == "Ann Lee"
    assert person_of({"question": "Who is Ann Leeb?"}, pattern) is None  # whole words only
    assert person_of({"caption": "Bob Ray on a beach"}, pattern) == "Bob Ray"
    assert person_of({"question": "Ann Lee?"}, names_pattern([])) is None


def test_rows_naming_no_one_are_split_item_by_item() -> None:
    import datasets

    folds = split_persons({"Ann Lee": 1, "Bob Ray": 1}, 0.5, 0)
    rows = datasets.Dataset.from_dict(
        {"question": ["Where does Ann Lee live?", "Who wrote it?", "What is Bob Ray's job?"]}
    )
    report = folds.fold(REPORT)
    persons = report.persons_of(rows, [0, 1, 2])
    assert persons == ["Ann Lee", None, "Bob Ray"]
    in_report = report.keep(persons, [0, 1, 2])
    assert in_report[0] == ("Ann Lee" in folds.report) and in_report[2] == (
        "Bob Ray" in folds.report
    )
    assert folds.fold(SELECTION).keep(persons, [0, 1, 2])[1] != in_report[1]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("clear")
    synthetic.generate(root, seed=0)  # the default 80 persons
    return str(root)


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch):
    """Scoring replaced by NLLs that depend on the row (its true target's length), so metrics
    change with which rows are scored: these tests are about which rows are scored."""
    from clear_ray.eval import suite

    def row_scores(task, model, collator, rows, config, generate):
        items = task.items(rows)
        return [(len(item.targets[0]) / 10, 1.0, np.full(3, 2.0), None) for item in items]

    monkeypatch.setattr(suite, "_score_rows", row_scores)
    return torch.nn.Linear(1, 1), None


FOLDED_TASKS = (
    "forget_captions,forget_face_naming,forget_text_qa,forget_text_perturbed,"
    "retain_captions,retain_face_naming,retain_text_qa"
)


def test_the_default_data_has_eight_forget_persons_in_folds_of_four_with_60_items(
    source: str,
) -> None:
    counts = forget_item_counts(source, SPLIT)
    assert sum(counts.values()) == len(load_clear(source, SPLIT))
    assert len(counts) == 8  # 10 % of 80 persons
    folds = person_folds(source, SPLIT, 0.5, 0)
    assert len(folds.selection) == len(folds.report) == 4
    for persons in (folds.selection, folds.report):
        assert sum(counts[p] for p in persons) >= 60
        text = load_clear(source, f"{SPLIT}_tofu_perturbed")["name"]
        assert sum(name in persons for name in text) >= 60


def test_retain_persons_are_split_into_folds_too(source: str) -> None:
    folds = person_folds(source, SPLIT, 0.5, 0)
    retain = set(retain_item_counts(source))
    assert len(retain) == 72
    assert set(folds.retain_selection) | set(folds.retain_report) == retain
    assert not set(folds.retain_selection) & set(folds.retain_report)
    assert len(folds.retain_report) == 36
    assert "36 retain person(s)" in folds.describe(REPORT)


def test_every_synthetic_row_names_its_person(source: str) -> None:
    folds = person_folds(source, SPLIT, 0.5, 0)
    assert set(folds.unassigned_rows) == set(FOLDED_TASKS.split(","))
    assert not any(folds.unassigned_rows.values())
    assert "every forget and retain row names its person" in folds.describe_unassigned()
    # A person the rule does not know leaves that person's QA rows (no name column) to a draw.
    unknown = folds.report[0]
    known = [p for p in folds.everyone if p != unknown]
    counts = unassigned_rows(source, SPLIT, known)
    assert counts["forget_text_qa"] == len(synthetic.QA_FACTS)
    assert counts["forget_captions"] == counts["forget_text_perturbed"] == 0  # named rows
    missing = replace(folds, unassigned_rows=counts)
    assert f"forget_text_qa {len(synthetic.QA_FACTS)}" in missing.describe_unassigned()


def test_an_evaluation_of_a_fold_scores_only_its_persons_rows(source: str, no_model) -> None:
    model, collator = no_model
    folds = person_folds(source, SPLIT, 0.5, 0)
    config = EvalConfig(generate=False, tasks=FOLDED_TASKS + ",real_world")
    everyone = evaluate(model, collator, source, SPLIT, config)
    for name in (SELECTION, REPORT):
        fold = folds.fold(name)
        result = evaluate(model, collator, source, SPLIT, config, fold=fold)
        forget = set(folds.selection if name == SELECTION else folds.report)
        retain = set(folds.retain_selection if name == SELECTION else folds.retain_report)
        for task in FOLDED_TASKS.split(","):
            names = result.tasks[task].names
            assert set(names) == (forget if task.startswith("forget") else retain), task
            assert len(names) < len(everyone.tasks[task].names)
        # Real-world tasks keep every row.
        real = result.tasks["real_world"].item_index.tolist()
        assert real == everyone.tasks["real_world"].item_index.tolist()


def test_every_report_fold_text_row_asks_about_a_report_person(source: str, no_model) -> None:
    """Text rows without a name column follow the person their question names, so no text of
    a selection person is reported (and none of a report person selects)."""
    model, collator = no_model
    folds = person_folds(source, SPLIT, 0.5, 0)
    config = EvalConfig(generate=False, tasks="forget_text_qa,forget_text_perturbed")
    for name, mine, theirs in (
        (REPORT, folds.report, folds.selection),
        (SELECTION, folds.selection, folds.report),
    ):
        result = evaluate(model, collator, source, SPLIT, config, fold=folds.fold(name))
        for task in ("forget_text_qa", "forget_text_perturbed"):
            rows = load_clear(source, TASKS[task].config_for(SPLIT))
            index = result.tasks[task].item_index.tolist()
            questions = rows.select(index)["question"]
            assert len(questions) == len(mine) * len(synthetic.QA_FACTS)
            assert all(any(p in q for p in mine) for q in questions)
            assert not any(p in q for q in questions for p in theirs)


def test_report_fraction_zero_scores_every_row(source: str, no_model) -> None:
    model, collator = no_model
    off, on = person_folds(source, SPLIT, 0.0, 0), person_folds(source, SPLIT, 0.5, 0)
    assert off.fold(SELECTION) is None
    assert set(off.retain_report) == set(off.retain_selection) == set(retain_item_counts(source))
    config = EvalConfig(generate=False, tasks="forget_captions,forget_text_qa,retain_captions")
    plain = evaluate(model, collator, source, SPLIT, config, fold=off.fold(SELECTION))
    halved = evaluate(model, collator, source, SPLIT, config, fold=on.fold(SELECTION))
    qa_rows = TASKS["forget_text_qa"].eligible_rows(load_clear(source, f"{SPLIT}+tofu"))
    assert plain.tasks["forget_text_qa"].item_index.tolist() == qa_rows.tolist()
    assert len(plain.tasks["forget_captions"].item_index) == len(load_clear(source, SPLIT))
    n_retain = len(load_clear(source, "retain_perturbed"))
    assert len(plain.tasks["retain_captions"].item_index) == n_retain
    # The row-dependent scores make the fold visible in the metrics, so equality above is
    # not an artefact of scores that ignore the rows.
    assert plain.metrics["forget_text_qa/prob"] != halved.metrics["forget_text_qa/prob"]


def test_per_item_parquet_files_name_the_person_of_every_row(
    source: str, no_model, tmp_path: Path
) -> None:
    model, collator = no_model
    folds = person_folds(source, SPLIT, 0.5, 0)
    config = EvalConfig(generate=False, tasks="forget_captions,forget_text_qa,retain_text_qa")
    result = evaluate(model, collator, source, SPLIT, config, fold=folds.fold(REPORT))
    paths = write_item_tables(tmp_path, result.tasks)
    names = {path.stem: set(pq.read_table(path).column("name").to_pylist()) for path in paths}
    assert names["forget_captions"] == names["forget_text_qa"] == set(folds.report)
    assert names["retain_text_qa"] == set(folds.retain_report)


def test_the_search_config_has_fold_and_confirm_fields() -> None:
    search = Config().search
    assert (search.report_fraction, search.fold_seed, search.confirm_seeds) == (0.5, 0, 3)
    with pytest.raises(ConfigError, match=r"search\.report_fraction"):
        Config().replace({"search.report_fraction": 1.0})


def test_a_trials_per_epoch_evaluation_scores_the_selection_fold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from clear_ray.train import loop
    from clear_ray.train.inputs import TrialInputs
    from clear_ray.train.selection import Thresholds

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
    from clear_ray.pipeline.context import fold_tag
    from clear_ray.pipeline.reports import leaderboard_heading

    off, on = split_persons(COUNTS, 0.0, 0), split_persons(COUNTS, 0.5, 0)
    assert "NO FOLDS" in leaderboard_heading(off, 3)
    assert fold_tag(off).startswith("none (report_fraction 0")
    assert "report fold" in leaderboard_heading(on, 3) and "3 confirm seeds" in (
        leaderboard_heading(on, 3)
    )
    assert fold_tag(on) == "selection 10 / report 10 persons"
    assert "feasibility out of sample" in leaderboard_heading(on, 3)
