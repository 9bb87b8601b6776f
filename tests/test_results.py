"""Trial identities from Tune folders, and the Table-1-style leaderboard."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import pytest

from clear_ray.config import Config, SearchConfig
from clear_ray.errors import ConfigError
from clear_ray.paired import compare_seeds
from clear_ray.search.results import (
    Leaderboard,
    LeaderboardRow,
    TrialMetrics,
    method_rows,
    read_leaderboard,
    trial_identity,
    write_leaderboard,
)


def test_trial_identity_reads_id_and_creation_number_from_the_folder() -> None:
    folder = "run_trial_27648273_3_train_lr=1000000000000000019884624838656.0000_2026-11-23_12-22"
    assert trial_identity(folder) == ("27648273", 3)
    assert trial_identity("run_trial_9a7fec20_12") == ("9a7fec20", 12)
    assert trial_identity("unrelated") == ("?", -1)


ORIGINAL = {
    "clear/real_metric": 0.57,
    "clear/retain_metric": 0.61,
    "clear/forget_metric": 0.34,
    "clear/log_forget_quality": -5.4,
    "clear/ks_d": 0.32,
    "clear/forget_quality_js": 0.79,
    "retain_metric": 0.0,  # an extended aggregate whose harmonic mean has a 0 in every row
    "forget_metric": 0.44,
    "log_forget_quality": -25.7,
    "forget_captions/ks_d": 0.65,
    "forget_captions/n_items": 60.0,
    "forget_text_perturbed/ks_d": 0.23,
    "forget_text_perturbed/n_items": 12.0,
}
GOLD = {**ORIGINAL, "clear/forget_metric": 0.0008, "log_forget_quality": 0.0}
GOLD.update({"forget_metric": 0.0, "forget_captions/ks_d": 0.0, "forget_text_perturbed/ks_d": 0.0})
TUNED = {**ORIGINAL, "log_forget_quality": -20.6, "robust/relearn/net_recovery": 0.0}
TUNED["robust/quantize/worst_normalised"] = 0.5


def board_rows() -> list[LeaderboardRow]:
    """Original, Gold, a method's tuned row (seed means, two seed pairs) and its default row."""
    tuned = asdict(
        LeaderboardRow("dpo (tuned, 2 seeds)", TUNED, "2/2", "t1", {"clear/real_metric": 0.01})
    )
    default = asdict(LeaderboardRow("dpo (default, 2 seeds)", ORIGINAL, "1/2", "defaults"))
    comparison = compare_seeds({1: -20.0, 2: -19.0}, {1: -21.0, 2: -22.0})  # tuned − default +1, +3
    return [
        LeaderboardRow("Original", ORIGINAL, ""),
        LeaderboardRow("Gold", GOLD, ""),
        *method_rows(tuned, default, comparison),
    ]


def table(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Header and rows (by model) of the first markdown table in ``text``."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    end = next((i for i, row in enumerate(cells) if i > 1 and row[0] == "method"), len(cells))
    return cells[0], {row[0]: row for row in cells[2:end]}


def test_the_compact_leaderboard_is_clears_five_the_objective_and_the_comparison() -> None:
    text = Leaderboard(board_rows(), "Full evaluations on the report fold.").markdown()
    header, rows = table(text)
    assert header == [
        "model", "Real", "Retain", "Forget", "log FQ", "FQ 1-JS", "log_forget_quality",
        "D (captions / text)", "n (captions / text)", "tuned − default",
        "net relearn recovery", "feasible",
    ]  # fmt: skip
    assert rows["Original"][1:] == [
        "0.57", "0.61", "0.34", "-5.4", "0.79", "-25.7", "0.65 / 0.23", "60 / 12", "—", "—", "—"
    ]  # fmt: skip
    tuned = rows["dpo (tuned, 2 seeds)"]
    assert tuned[1] == "0.57 ± 0.01"
    # +1 and +3: mean 2, sd √2, half-width t(0.975, 1) · √2 / √2 = 12.706
    assert tuned[9:] == ["+2 [-10.7, +14.7]", "0", "2/2"]  # a net recovery of 0 is a value
    assert rows["dpo (default, 2 seeds)"][9:] == ["—", "—", "1/2"]
    assert "nan" not in text and text.startswith("Full evaluations on the report fold.")
    assert "Every column: leaderboard_full.csv, or --leaderboard full." in text


def test_the_objectives_d_and_n_follow_the_modality_and_absent_columns_are_left_out() -> None:
    rows = [LeaderboardRow("Original", ORIGINAL, ""), LeaderboardRow("Gold", GOLD, "")]
    header, cells = table(Leaderboard(rows, modality="visual").markdown())
    assert header[-3:] == ["D (captions)", "n (captions)", "feasible"]  # no seeds, no checks
    assert cells["Original"][-3:-1] == ["0.65", "60"]
    assert "net relearn recovery" not in Leaderboard(rows).markdown()


def test_the_full_view_has_every_column_but_one_that_reads_zero_on_every_row() -> None:
    text = Leaderboard(board_rows()).markdown("full")
    header, rows = table(text)
    assert "forget_metric" in header and header[-2:] == ["feasible", "trial"]
    assert "retain_metric" not in header  # 0 for Original, Gold and both methods' rows
    assert {"captions D", "text n", "quantize worst", "tuned − default"} <= set(header)
    assert rows["dpo (default, 2 seeds)"][-1] == "defaults" and rows["Gold"][-1] == "—"
    assert rows["Gold"][header.index("quantize worst")] == "—"
    assert "Every column" not in text  # the compact view's line


def test_the_full_csv_keeps_every_metric_at_full_precision(tmp_path: Path) -> None:
    rows = [*board_rows(), LeaderboardRow("ga", {"clear/ks_d": 0.123456789}, "no", "t9")]
    text = write_leaderboard(tmp_path, Leaderboard(rows), "compact", "paired table")
    assert text.endswith("\n\npaired table")
    assert (tmp_path / "leaderboard.md").read_text() == text + "\n"
    with (tmp_path / "leaderboard_full.csv").open() as handle:
        header, *lines = list(csv.reader(handle))
    assert header[:5] == ["model", "feasible", "trial", "clear/real_metric", "sd clear/real_metric"]
    assert "retain_metric" in header  # the CSV drops nothing
    read = read_leaderboard(tmp_path / "leaderboard_full.csv")
    assert read["ga"] == {"clear/ks_d": 0.123456789}
    assert read["dpo (tuned, 2 seeds)"]["confirm/difference_mean"] == 2.0
    assert read["Gold"]["retain_metric"] == 0.0
    assert lines[2][header.index("sd clear/real_metric")] == "0.01"


def test_the_view_is_a_config_field_with_a_flag() -> None:
    from clear_ray.cli.flags import overrides_from
    from clear_ray.cli.tune import FLAGS, build_parser

    assert Config().report.leaderboard == "compact"
    args = build_parser().parse_args(["--leaderboard", "full"])
    assert overrides_from(args, FLAGS) == {"report.leaderboard": "full"}
    with pytest.raises(
        ConfigError, match=r"report\.leaderboard: 'wide' is not one of compact, full"
    ):
        Config().replace({"report.leaderboard": "wide"})


def test_trial_table_names_the_constraints_metrics() -> None:
    assert TrialMetrics().columns()[5:8] == (
        "best_clear/forget_metric",
        "best_clear/retain_metric",
        "best_clear/model_utility",
    )
    extended = TrialMetrics.of(
        SearchConfig(retain_metric="retain_metric", utility_metric="model_utility")
    )
    assert extended.columns()[5:8] == (
        "best_forget_metric",
        "best_retain_metric",
        "best_model_utility",
    )


def test_tied_trials_rank_by_creation_order_whatever_order_tune_returns_them(tmp_path) -> None:
    """A restored ResultGrid may list trials in another order: the best must not change."""
    from types import SimpleNamespace

    from clear_ray.search.results import trial_rows

    def result(trial: str, number: int, objective: float):
        metrics = {"feasible": 1.0, "best_objective": objective}
        return SimpleNamespace(
            metrics=metrics, path=f"/x/trainable_{trial}_{number}_p", error=None, config={}
        )

    grid = [result("bbbbb", 2, -2.4), result("aaaaa", 1, -2.4), result("ccccc", 3, -9.0)]
    for order in (grid, grid[::-1]):
        assert [row.trial for row in trial_rows(order, tmp_path)] == ["aaaaa", "bbbbb", "ccccc"]


def test_a_search_whose_trials_all_failed_says_how_many_and_the_most_common_reason(
    tmp_path,
) -> None:
    from types import SimpleNamespace

    from clear_ray.search.results import all_failed, trial_rows

    # As Tune hands a trial's error over: Ray's wrapper, then the worker's own last line.
    corrupt = RuntimeError(
        'ray::_Inner.train() (pid=7, ip=10.0.0.2)\n  File "loading.py", line 40\n'
        "safetensors_rust.SafetensorsError: Error while deserializing header: "
        "MetadataIncompleteBuffer\n"
    )
    nan = FloatingPointError("ga loss became nan at step 2")

    def result(trial: str, number: int, error: Exception | None):
        metrics = {} if error else {"feasible": 1.0, "best_objective": -3.0}
        path = f"/x/trainable_{trial}_{number}_p"
        return SimpleNamespace(metrics=metrics, path=path, error=error, config={})

    failed = [result("aaaaa", 1, nan), result("bbbbb", 2, corrupt), result("ccccc", 3, corrupt)]
    rows = trial_rows(failed, tmp_path)
    assert all_failed("ga", rows) == (
        "ga: all 3 trials failed; most common reason (2/3): safetensors_rust.SafetensorsError: "
        "Error while deserializing header: MetadataIncompleteBuffer"
    )
    tie = trial_rows([failed[1], failed[0]], tmp_path)  # equally common: the first trial's
    assert all_failed("ga", tie).endswith("(1/2): ga loss became nan at step 2")
    one_ran = trial_rows([*failed, result("ddddd", 4, None)], tmp_path)
    assert all_failed("ga", one_ran) is None
    assert all_failed("ga", []) is None
