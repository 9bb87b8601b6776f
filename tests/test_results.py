"""Trial identities from Tune folders, and the Table-1-style leaderboard."""

from __future__ import annotations

import math

from clear_ray.config import SearchConfig
from clear_ray.search.results import LeaderboardRow, TrialMetrics, leaderboard, trial_identity


def test_trial_identity_reads_id_and_creation_number_from_the_folder() -> None:
    folder = "run_trial_27648273_3_train_lr=1000000000000000019884624838656.0000_2026-11-23_12-22"
    assert trial_identity(folder) == ("27648273", 3)
    assert trial_identity("run_trial_9a7fec20_12") == ("9a7fec20", 12)
    assert trial_identity("unrelated") == ("?", -1)


def test_leaderboard_puts_clears_table_1_columns_first_and_ours_under_their_own_names() -> None:
    rows = [
        LeaderboardRow(
            "Original",
            {"clear/real_metric": 0.5, "clear/retain_metric": 0.7, "retain_metric": 0.6},
            "",
        ),
        LeaderboardRow(
            "dpo",
            {
                "clear/forget_metric": 0.25,
                "clear/log_forget_quality": -4.4,
                "clear/forget_quality_js": 0.875,
                "log_forget_quality": -3.5,
            },
            "yes",
            "t1",
        ),
    ]
    lines = leaderboard(rows).splitlines()
    assert lines[0] == (
        "| model | Real | Retain | Forget | log FQ | D | n | FQ 1-JS | real_metric | "
        "retain_metric | forget_metric | model_utility | log_forget_quality | forget_quality_js "
        "| forget_distance | feasible | trial |"
    )
    assert lines[2] == (
        "| Original | 0.5 | 0.7 | nan | nan | nan | nan | nan | nan | 0.6 | nan | nan | nan | nan "
        "| nan |  |  |"
    )
    assert lines[3] == (
        "| dpo | nan | nan | 0.25 | -4.4 | nan | nan | 0.875 | nan | nan | nan | nan | -3.5 | nan "
        "| nan | yes | t1 |"
    )
    assert math.isnan(float(lines[3].split(" | ")[1]))


def test_leaderboard_shows_each_tasks_log_fq_d_and_n_beside_the_objective() -> None:
    seeds = LeaderboardRow(
        "dpo (tuned, 2 seeds)",
        {
            "log_forget_quality": -1.1,
            "clear/ks_d": 0.2,
            "forget_captions/n_items": 30.0,
            "forget_captions/log_forget_quality": -0.9,
            "forget_captions/ks_d": 0.2,
            "forget_text_perturbed/log_forget_quality": -1.4,
            "forget_text_perturbed/ks_d": 0.5,
            "forget_text_perturbed/n_items": 12.0,
        },
        "2/2",
        "t1",
        {"clear/ks_d": 0.05, "forget_captions/n_items": 0.0, "forget_text_perturbed/n_items": 0.0},
    )
    header, _, line = leaderboard([seeds]).splitlines()
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    cells = dict(zip(columns, (c.strip() for c in line.strip("|").split("|")), strict=True))
    assert (cells["D"], cells["n"]) == ("0.2 ± 0.05", "30")  # a count has no spread
    assert (cells["captions log FQ"], cells["captions D"], cells["captions n"]) == (
        "-0.9",
        "0.2",
        "30",
    )
    assert (cells["text log FQ"], cells["text D"], cells["text n"]) == ("-1.4", "0.5", "12")
    assert columns.index("text n") < columns.index("feasible")


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
