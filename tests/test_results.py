"""Trial identities from Tune folders, and the Table-1-style leaderboard."""

from __future__ import annotations

import math

from clear_ray.search.results import LeaderboardRow, leaderboard, trial_identity


def test_trial_identity_reads_id_and_creation_number_from_the_folder() -> None:
    folder = "run_trial_27648273_3_train_lr=1000000000000000019884624838656.0000_2026-11-23_12-22"
    assert trial_identity(folder) == ("27648273", 3)
    assert trial_identity("run_trial_9a7fec20_12") == ("9a7fec20", 12)
    assert trial_identity("unrelated") == ("?", -1)


def test_leaderboard_lists_real_retain_forget_fq_and_feasibility() -> None:
    rows = [
        LeaderboardRow("Original", {"real_metric": 0.5, "retain_metric": 0.7}, ""),
        LeaderboardRow("dpo", {"forget_quality": 0.0123, "log_forget_quality": -4.4}, "yes", "t1"),
    ]
    lines = leaderboard(rows).splitlines()
    assert lines[0] == "| model | Real | Retain | Forget | FQ | log FQ | feasible | trial |"
    assert lines[2] == "| Original | 0.5 | 0.7 | nan | nan | nan |  |  |"
    assert lines[3] == "| dpo | nan | nan | nan | 0.0123 | -4.4 | yes | t1 |"
    assert math.isnan(float(lines[3].split(" | ")[1]))
