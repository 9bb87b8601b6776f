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
        "| model | Real | Retain | Forget | log FQ | FQ 1-JS | real_metric | retain_metric "
        "| forget_metric | model_utility | log_forget_quality | forget_quality_js "
        "| feasible | trial |"
    )
    assert lines[2] == (
        "| Original | 0.5 | 0.7 | nan | nan | nan | nan | 0.6 | nan | nan | nan | nan |  |  |"
    )
    assert lines[3] == (
        "| dpo | nan | nan | 0.25 | -4.4 | 0.875 | nan | nan | nan | nan | -3.5 | nan | yes | t1 |"
    )
    assert math.isnan(float(lines[3].split(" | ")[1]))


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
