"""bench/study.py's pure parts: mean ± sd over seeds, the "did tuning help" sentence, the ETA,
and the report built from hand-written confirm.json files (format: CONTRACTS.md)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from bench_scripts import load_bench

study = load_bench("study")
searches = load_bench("searches")

LEADERBOARD = """\
| model | Real | Retain | Forget | log FQ | FQ 1-JS | real_metric | retain_metric | forget_metric | model_utility | log_forget_quality | forget_quality_js | feasible | trial |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| Original | 0.2432 | 0.6646 | 0.3154 | -2.372 | 0.8141 | 0.1383 | 0.7131 | 0.4492 | 0.2504 | -13.31 | 0.7585 |  |  |
| Gold | 0.2573 | 0.5468 | 0.02662 | 0 | 1 | 0.1802 | 0.5976 | 0.01509 | 0.2944 | 0 | 1 |  |  |
| dpo | 0.2368 | 0.665 | 0.383 | -3.352 | 0.8129 | 0.1534 | 0.7126 | 0.5254 | 0.272 | -11.01 | 0.7567 | yes | e63d3db5 |
"""  # noqa: E501


def run(seed: int, log_fq: float, retain: float, feasible: bool = True) -> dict:
    metrics = {
        "log_forget_quality": log_fq,
        "forget_quality_js": 0.9,
        "clear/retain_metric": retain,
        "clear/real_metric": 0.3,
    }
    return {"seed": seed, "run_id": f"r{seed}", "adapter": "/a", "metrics": metrics,
            "feasible": feasible}  # fmt: skip


def configuration(params: dict, runs: list[dict], trial: str | None) -> dict:
    return {"params": params, "epochs": 3, "trial": trial, "runs": runs, "mean": {}, "sd": {},
            "feasible_fraction": sum(r["feasible"] for r in runs) / len(runs)}  # fmt: skip


def confirm(method: str, default: list[float], tuned: list[float], tuned_feasible=True) -> dict:
    return {
        "method": method,
        "fold": "report",
        "seeds": [1, 2, 3],
        "configurations": {
            "default": configuration(
                {"train.lr": 1e-3}, [run(s, v, 0.66) for s, v in enumerate(default, 1)], None
            ),
            "tuned": configuration(
                {"train.lr": 3.6e-3},
                [run(s, v, 0.62, tuned_feasible) for s, v in enumerate(tuned, 1)],
                "a5bea50f",
            ),
        },
    }


def summary(values: list[float], feasible: int | None = None):
    runs = [run(s, v, 0.6) for s, v in enumerate(values, 1)]
    for index, item in enumerate(runs):
        item["feasible"] = feasible is None or index < feasible
    return study.summarise_configuration(configuration({}, runs, None), ["log_forget_quality"])


def test_mean_sd_is_the_sample_sd_over_finite_values() -> None:
    stat = study.mean_sd([1.0, 2.0, 3.0, float("nan"), None])
    assert (stat.mean, stat.sd, stat.n) == (2.0, 1.0, 3)
    assert str(stat) == "2 ± 1"
    one = study.mean_sd([-7.5])
    assert one.n == 1 and math.isnan(one.sd) and str(one) == "-7.5"
    assert study.mean_sd([]).n == 0 and str(study.mean_sd([])) == "–"


def test_summary_recomputes_mean_and_counts_feasible_runs() -> None:
    tuned = summary([-6.0, -8.0, -7.0], feasible=2)
    stat = tuned.stats["log_forget_quality"]
    assert (stat.mean, stat.sd) == (-7.0, 1.0)
    assert (tuned.feasible, tuned.runs) == (2, 3)


def test_verdict_tuning_helped_when_the_gain_exceeds_one_sd() -> None:
    sentence = study.verdict(summary([-13, -11, -12]), summary([-6, -8, -7]), "log_forget_quality")
    assert sentence.startswith("Tuning helped: tuned mean log FQ -7 vs default -12, +5")
    assert "3/3 tuned runs feasible" in sentence


def test_verdict_tuning_did_not_help_within_one_sd() -> None:
    # default -11 ± 1, tuned -10.67 ± 0.76: the gain 0.33 is within the larger sd, 1.
    sentence = study.verdict(
        summary([-10, -12, -11]), summary([-10.5, -11.5, -10]), "log_forget_quality"
    )
    assert sentence.startswith("Tuning did not help:")
    assert "within one sd (one sd = 1)" in sentence


def test_verdict_tuning_hurt_when_the_tuned_mean_is_lower_by_more_than_one_sd() -> None:
    sentence = study.verdict(summary([-6, -7, -8]), summary([-12, -13, -11]), "log_forget_quality")
    assert sentence.startswith("Tuning hurt:") and "lower by 5" in sentence


def test_verdict_a_loss_against_a_collapsed_default_is_a_trade_not_harm() -> None:
    """The gd study row: the default forgot more, but none of its runs kept retain."""
    sentence = study.verdict(
        summary([-6, -7, -8], feasible=0), summary([-12, -13, -11]), "log_forget_quality"
    )
    assert sentence.startswith("Tuning traded log FQ for feasibility:") and "lower by 5" in sentence
    assert "3/3 tuned runs feasible, 0/3 default runs" in sentence


def test_verdict_a_gain_that_costs_feasibility_is_not_a_clear_gain() -> None:
    sentence = study.verdict(
        summary([-13, -11, -12]), summary([-6, -8, -7], feasible=1), "log_forget_quality"
    )
    assert "not a clear gain" in sentence and "1/3 tuned runs feasible" in sentence


def test_verdict_no_feasible_tuned_run_did_not_help() -> None:
    sentence = study.verdict(
        summary([-13, -11, -12]), summary([-1, -2, -3], feasible=0), "log_forget_quality"
    )
    assert sentence.startswith("Tuning did not help: no tuned run is feasible")


def test_verdict_same_objective_but_more_feasible_runs_says_so() -> None:
    sentence = study.verdict(
        summary([-10, -12, -11], feasible=1), summary([-11, -10, -12]), "log_forget_quality"
    )
    assert sentence.startswith("Tuning did not raise log FQ beyond one sd")
    assert "more tuned runs are feasible" in sentence


def test_verdict_with_one_seed_compares_means_only() -> None:
    sentence = study.verdict(summary([-12.0]), summary([-11.0]), "log_forget_quality")
    assert sentence.startswith("Tuning helped") and "one seed each, no spread" in sentence


def test_eta_uses_finished_methods_then_the_running_estimate() -> None:
    # running: 120 s estimated, 30 s in → 90 s; two more at the finished mean (150 s).
    assert study.eta_seconds([100.0, 200.0], 3, 120.0, 30.0) == pytest.approx(390.0)
    # no method finished yet: the running estimate stands in for the rest too.
    assert study.eta_seconds([], 2, 100.0, 40.0) == pytest.approx(160.0)
    # a method over its estimate adds nothing negative.
    assert study.eta_seconds([], 1, 100.0, 150.0) == 0.0
    assert study.eta_seconds([100.0], 0, 100.0, 0.0) == 0.0


def test_method_seconds_counts_trials_and_two_confirmation_runs_per_seed() -> None:
    trial_s = 20.0
    assert study.method_seconds(10, 3, trial_s) - study.method_seconds(0, 3, trial_s) == 200.0
    confirm_s = study.method_seconds(0, 3, trial_s) - study.method_seconds(0, 0, trial_s)
    assert confirm_s == pytest.approx(6 * (trial_s + study.FULL_EVAL_S))


def test_trial_finished_recognises_the_progress_printer_lines() -> None:
    assert study.trial_finished("[trial a5bea50f] done (3/3): best epoch 2, feasible")
    assert study.trial_finished("[trial a5bea50f] FAILED: worker died (traceback in /x)")
    assert not study.trial_finished("[trial a5bea50f] epoch 1: log_forget_quality=-13.31")
    assert not study.trial_finished("[clear_ray] dpo: full evaluation of the best trial")


def test_references_are_read_back_from_the_leaderboard_columns() -> None:
    references = searches.references_from_leaderboard(LEADERBOARD)
    assert set(references) == {"Original", "Gold"}
    assert references["Original"]["log_forget_quality"] == -13.31
    assert references["Original"]["clear/real_metric"] == 0.2432
    assert references["Gold"]["clear/forget_quality_js"] == 1.0


def write_search(
    output: Path, name: str, methods: list[str], mtime: float, config: dict | None = None
) -> Path:
    root = output / "searches" / name
    root.mkdir(parents=True)
    (root / "state.json").write_text(json.dumps({"methods": methods, "config": config or {}}))
    os.utime(root / "state.json", (mtime, mtime))
    return root


def test_find_method_search_takes_the_newest_search_of_that_method_alone(tmp_path) -> None:
    write_search(tmp_path, "dpo-old", ["dpo"], 1_000)
    newest = write_search(tmp_path, "dpo-new", ["dpo"], 2_000)
    write_search(tmp_path, "all-newer", ["gd", "dpo"], 3_000)
    assert searches.find_search(tmp_path, "dpo") == newest
    assert searches.find_search(tmp_path, "idk") is None


def test_find_search_matches_the_saved_config(tmp_path) -> None:
    seed1 = write_search(tmp_path, "gd-1", ["gd"], 1_000, {"search.seed": 1, "train.epochs": 5})
    write_search(tmp_path, "gd-2", ["gd"], 2_000, {"search.seed": 2, "train.epochs": 5})
    assert searches.find_search(tmp_path, "gd", {"search.seed": 1}) == seed1
    assert searches.find_search(tmp_path, "gd", {"search.seed": 1, "train.epochs": 4}) is None


def test_lanes_share_data_and_cache_and_their_searches_are_found(tmp_path) -> None:
    lanes = searches.make_lanes(tmp_path, 2)
    assert searches.make_lanes(tmp_path, 2) == lanes  # again: the same lanes, links kept
    (lanes[1] / "cache" / "models").mkdir()
    assert (tmp_path / "cache" / "models").is_dir()  # one cache: references made once
    assert (lanes[0] / "data").resolve() == (tmp_path / "data").resolve()
    write_search(tmp_path, "gd-0", ["gd"], 1_000, {"search.seed": 0})
    in_lane = write_search(lanes[1], "gd-1", ["gd"], 2_000, {"search.seed": 1})
    assert searches.find_search(tmp_path, "gd", {"search.seed": 1}) == in_lane
    assert searches.find_search(tmp_path, "gd") == in_lane  # the newest, whichever lane
    assert searches.lane_of(in_lane) == lanes[1]


def test_report_only_builds_the_tables_and_verdicts_from_confirm_files(tmp_path) -> None:
    config = study.study_config(study.parse_args([])[0])
    for method, default, tuned, when in (
        ("gd", [-10, -12, -11], [-10.5, -11.5, -10], 1_000),
        ("dpo", [-13, -11, -12], [-6, -8, -7], 2_000),
    ):
        root = write_search(tmp_path, f"{method}-x", [method], when, config)
        (root / method).mkdir()
        (root / method / "confirm.json").write_text(json.dumps(confirm(method, default, tuned)))
        (root / "leaderboard.md").write_text(LEADERBOARD)
    # A search of other settings in the same folder is not this study's.
    other = write_search(tmp_path, "idk-x", ["idk"], 3_000, {**config, "train.epochs": 1})
    (other / "idk").mkdir()
    (other / "idk" / "confirm.json").write_text(json.dumps(confirm("idk", [-9], [-8])))
    markdown, record = tmp_path / "STUDY.md", tmp_path / "study.json"
    study.main(["--report-only", "--methods", "gd,dpo,idk", "--output-dir", str(tmp_path),
                "--markdown", str(markdown), "--json", str(record)])  # fmt: skip

    data = json.loads(record.read_text())
    assert list(data["methods"]) == ["gd", "dpo"]
    assert data["methods"]["dpo"]["tuned"]["mean"]["log_forget_quality"] == -7.0
    assert data["methods"]["dpo"]["default"]["sd"]["log_forget_quality"] == 1.0
    text = markdown.read_text()
    assert "| dpo | tuned | -7 ± 1 | 0.9 ± 0 |" in text
    assert "| Original | reference | -13.31 |" in text
    assert "- **gd**: Tuning did not help" in text
    assert "- **dpo**: Tuning helped" in text


def test_smoke_shrinks_the_defaults_but_a_flag_given_wins() -> None:
    args, passthrough = study.parse_args(["--smoke", "--epochs", "3", "--set", "train.lr=1e-3"])
    assert (args.num_samples, args.epochs, args.confirm_seeds) == (2, 3, 2)
    assert passthrough == ["--set", "train.lr=1e-3"]
    assert args.markdown.parent != Path("bench")  # a smoke run leaves bench/STUDY.md alone


# ---------------------------------------------------------------- robustness columns, L1 arm

arm = load_bench("study_arm")


def robust_row(recovery: float, before: float = -10.0, after: float = -11.5) -> dict:
    """A robustness.json row as clear_ray/robust/run.py writes it (a few of its ~45 keys)."""
    return {
        "robust/relearn/recovery": recovery,
        "robust/relearn/gold_recovery": 0.1,
        "robust/quantize/log_forget_quality": before,
        "robust/quantize/int8/log_forget_quality": after,
        "robust/prompts/worst_log_forget_quality": -20.0,
    }


def test_headline_robustness_takes_four_values_and_the_int8_change() -> None:
    values = study.headline_robustness(robust_row(0.4, before=-10.0, after=-11.5))
    assert values == {
        "relearn_recovery": 0.4,
        "int8_log_fq_change": -1.5,  # after − before
        "worst_prompt_log_fq": -20.0,
    }  # cross_modal skipped the model (--modality both): left out, not 0
    with_cross = {**robust_row(0.4), "robust/cross_modal/knowledge": 0.7}
    assert study.headline_robustness(with_cross)["cross_modal_knowledge"] == 0.7


def test_robustness_stats_spread_the_seeds_of_one_label_prefix() -> None:
    robustness = {
        "best": robust_row(1.0),
        "tuned/seed1": robust_row(0.2),
        "tuned/seed2": robust_row(0.4),
        "default/seed1": robust_row(0.9),
    }
    stats = study.robustness_stats(robustness, "tuned/")
    assert stats["relearn_recovery"].mean == pytest.approx(0.3)
    assert stats["relearn_recovery"].n == 2
    assert stats["relearn_recovery"].sd == pytest.approx(math.sqrt(0.02))
    assert stats["cross_modal_knowledge"].n == 0


def test_the_arm_toggles_l1_off_or_to_the_geometric_middle_of_the_space() -> None:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    grid = CategoricalDistribution([0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
    assert arm.toggled_l1(3e-3, grid) == 0.0
    assert arm.toggled_l1(0.0, grid) == pytest.approx(1e-3)  # sqrt(1e-4 · 1e-2)
    assert arm.toggled_l1(0.0, FloatDistribution(1e-5, 1e-1, log=True)) == pytest.approx(1e-3)
    assert arm.toggled_l1(0.0, CategoricalDistribution([0.0])) is None
    tuned = {"train.lr": 2e-3, "regularizer.l1": 0.0}
    assert arm.arm_params(tuned, {"regularizer.l1": grid}, 0.0) == {
        "train.lr": 2e-3,
        "regularizer.l1": pytest.approx(1e-3),
    }
    assert arm.arm_params(tuned, {"train.lr": grid}, 0.0) is None  # L1 not searched


def stat(values: list[float]):
    return study.mean_sd(values)


def test_l1_sentence_says_which_way_recovery_moved_beyond_one_sd() -> None:
    # tuned has L1 = 0.001 and recovers 0.25 ± 0.05; the arm (L1 = 0) recovers 0.85 ± 0.05.
    sentence = study.l1_sentence(
        1e-3,
        0.0,
        (stat([0.2, 0.3, 0.25]), stat([-7.0, -8.0, -6.0])),
        (stat([0.8, 0.9, 0.85]), stat([-7.5, -6.5, -7.0])),
        "log_forget_quality",
    )
    assert "L1 lowered relearn recovery from 0.85 ± 0.05 to 0.25 ± 0.05" in sentence
    assert "no clear difference in log FQ (without L1 -7 ± 0.5, with -7 ± 1;" in sentence
    assert sentence.endswith("So forgetting with L1 was harder to undo.")


def test_l1_sentence_with_l1_only_in_the_arm_and_no_clear_difference() -> None:
    # tuned L1 = 0, arm L1 = 0.001: "with" is the arm; 0.5 vs 0.45 is within one sd (0.1).
    sentence = study.l1_sentence(
        0.0,
        1e-3,
        (stat([0.4, 0.6, 0.5]), stat([-7.0, -8.0, -6.0])),
        (stat([0.35, 0.55, 0.45]), stat([-3.0, -2.0, -2.5])),
        "log_forget_quality",
    )
    assert sentence.startswith("L1 = 0.001 vs 0 on the tuned configuration: no clear difference")
    assert "L1 raised log FQ from -7 ± 1 to -2.5 ± 0.5" in sentence
    assert "did not measurably change" in sentence


def test_report_only_adds_the_robustness_table_and_the_l1_sentences(tmp_path) -> None:
    config = study.study_config(study.parse_args([])[0])
    root = write_search(tmp_path, "dpo-x", ["dpo"], 1_000, config)
    folder = root / "dpo"
    (folder / "study").mkdir(parents=True)
    record = confirm("dpo", [-13, -11, -12], [-6, -8, -7])
    record["configurations"]["tuned"]["params"]["regularizer.l1"] = 1e-3
    (folder / "confirm.json").write_text(json.dumps(record))
    (root / "leaderboard.md").write_text(LEADERBOARD)
    tuned_rows = {"best": robust_row(0.0), "tuned/seed1": robust_row(0.2),
                  "tuned/seed2": robust_row(0.3), "tuned/seed3": robust_row(0.25)}  # fmt: skip
    (folder / "robustness.json").write_text(json.dumps(tuned_rows))
    extra = {
        "default/seed1": robust_row(0.6),
        "default/seed2": robust_row(0.6),
        "l1_toggled/seed1": {"robust/relearn/recovery": 0.8},
        "l1_toggled/seed2": {"robust/relearn/recovery": 0.9},
        "l1_toggled/seed3": {"robust/relearn/recovery": 0.85},
    }
    (folder / "study" / "robustness.json").write_text(json.dumps(extra))
    arm_runs = [run(s, v, 0.6) for s, v in enumerate([-7.5, -6.5, -7.0], 1)]
    arm_params = {"train.lr": 3.6e-3, "regularizer.l1": 0.0}
    toggled = {"l1_toggled": configuration(arm_params, arm_runs, None)}
    arm_confirm = {"method": "dpo", "fold": "report", "seeds": [1, 2, 3], "configurations": toggled}
    (folder / "study" / "confirm.json").write_text(json.dumps(arm_confirm))
    markdown, out = tmp_path / "STUDY.md", tmp_path / "study.json"
    study.main(["--report-only", "--methods", "dpo", "--output-dir", str(tmp_path),
                "--markdown", str(markdown), "--json", str(out)])  # fmt: skip

    data = json.loads(out.read_text())["methods"]["dpo"]
    assert data["robustness"]["tuned"]["relearn_recovery"]["mean"] == pytest.approx(0.25)
    assert data["robustness"]["default"]["int8_log_fq_change"]["mean"] == pytest.approx(-1.5)
    assert data["l1_arm"]["tuned_l1"] == 1e-3 and data["l1_arm"]["arm_l1"] == 0.0
    text = markdown.read_text()
    header = "| method | configuration | relearn recovery | int8 Δ log FQ | worst-prompt log FQ | "
    assert header + "cross-modal knowledge |" in text
    assert "| dpo | default | 0.6 ± 0 | -1.5 ± 0 | -20 ± 0 | – |" in text
    assert "| dpo | tuned | 0.25 ± 0.05 | -1.5 ± 0 | -20 ± 0 | – |" in text
    assert "| dpo | tuned, L1 = 0 (arm) | 0.85 ± 0.05 | – | – | – |" in text
    assert "L1 lowered relearn recovery from 0.85 ± 0.05 to 0.25 ± 0.05" in text
    assert "3/3 arm runs feasible" in text


def test_a_study_without_the_arm_says_so(tmp_path) -> None:
    config = study.study_config(study.parse_args([])[0])
    root = write_search(tmp_path, "gd-x", ["gd"], 1_000, config)
    (root / "gd").mkdir()
    (root / "gd" / "confirm.json").write_text(json.dumps(confirm("gd", [-9, -10], [-8, -9])))
    markdown = tmp_path / "STUDY.md"
    study.main(["--report-only", "--methods", "gd", "--output-dir", str(tmp_path),
                "--markdown", str(markdown), "--json", str(tmp_path / "s.json")])  # fmt: skip
    text = markdown.read_text()
    assert "- **gd**: no L1 arm" in text
    assert "| gd | tuned | – | – | – | – |" in text
