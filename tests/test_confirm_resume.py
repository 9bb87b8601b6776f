"""What a resumed search's confirm stage runs: ``plan_confirm`` on hand-made seed records and
MLflow children, and the records' round trip on disk."""

from __future__ import annotations

import json
from pathlib import Path

from clear_ray.search.confirm import (
    ChildRun,
    Configuration,
    SeedRecord,
    plan_confirm,
    read_confirm,
    read_seed_records,
    write_seed_record,
)

TUNED = Configuration({"train.lr": 0.001}, 2, "t0")
SEEDS = [1, 2, 3]


def trained(seed: int, params: dict | None = None, epochs: int = 2) -> SeedRecord:
    return SeedRecord(seed, f"trial{seed}", f"/a/seed-{seed}", params or TUNED.params, epochs)


def evaluated(seed: int) -> SeedRecord:
    return SeedRecord(
        seed, f"trial{seed}", f"/a/seed-{seed}", TUNED.params, 2, f"run{seed}", {"m": 0.5}, True
    )


def child(seed: int, status: str = "FINISHED", trial: str = "") -> ChildRun:
    return ChildRun(f"run{seed}{trial}", trial or f"trial{seed}", status)


def test_a_fresh_configuration_trains_every_seed() -> None:
    plan = plan_confirm(TUNED, SEEDS, {}, [])
    assert (plan.keep, plan.evaluate, plan.train, plan.discard) == ({}, {}, SEEDS, [])


def test_evaluated_seeds_are_kept_and_only_the_missing_ones_trained() -> None:
    plan = plan_confirm(TUNED, SEEDS, {1: evaluated(1)}, [child(1)])
    assert list(plan.keep) == [1] and plan.train == [2, 3] and not plan.evaluate
    assert plan.discard == []


def test_a_trained_but_unevaluated_seed_is_only_evaluated() -> None:
    plan = plan_confirm(TUNED, SEEDS, {1: evaluated(1), 2: trained(2)}, [child(1), child(2)])
    assert list(plan.keep) == [1] and list(plan.evaluate) == [2] and plan.train == [3]


def test_a_run_killed_mid_training_is_discarded_and_its_seed_trained_again() -> None:
    # seed 2's child run is RUNNING (the driver died), no record: one new run for seed 2
    plan = plan_confirm(TUNED, SEEDS, {1: evaluated(1)}, [child(1), child(2, "RUNNING")])
    assert plan.train == [2, 3] and plan.discard == ["run2"]


def test_a_record_whose_run_did_not_finish_in_mlflow_is_trained_again() -> None:
    records = {1: evaluated(1), 2: trained(2)}
    plan = plan_confirm(TUNED, SEEDS, records, [child(1), child(2, "FAILED")])
    assert plan.train == [2, 3] and plan.discard == ["run2"] and not plan.evaluate


def test_a_record_without_its_mlflow_run_is_trained_again() -> None:
    plan = plan_confirm(TUNED, SEEDS, {1: evaluated(1)}, [])
    assert plan.train == SEEDS and not plan.keep


def test_a_record_of_another_configuration_does_not_count() -> None:
    records = {1: trained(1, {"train.lr": 0.01}), 2: trained(2, epochs=3)}
    plan = plan_confirm(TUNED, SEEDS, records, [child(1), child(2)])
    assert plan.train == SEEDS and plan.discard == ["run1", "run2"]


def test_a_second_run_of_a_kept_seed_is_discarded() -> None:
    # a seed trained twice (an earlier attempt's run finished, its record lost): one stays
    children = [child(1), child(1, trial="old")]
    plan = plan_confirm(TUNED, SEEDS, {1: evaluated(1)}, children)
    assert list(plan.keep) == [1] and plan.discard == ["run1old"]


def test_records_of_other_seeds_are_ignored() -> None:
    plan = plan_confirm(TUNED, [1], {1: evaluated(1), 4: evaluated(4)}, [child(1), child(4)])
    assert list(plan.keep) == [1] and plan.train == [] and plan.discard == ["run4"]


def test_seed_records_round_trip_and_need_their_adapter(tmp_path: Path) -> None:
    adapter = tmp_path / "seed-1"
    adapter.mkdir()
    record = SeedRecord(1, "trial1", str(adapter), {"train.lr": 1e-3}, 2, "r1", {"m": 0.5}, True)
    write_seed_record(tmp_path, record)
    write_seed_record(tmp_path, SeedRecord(2, "trial2", str(tmp_path / "gone"), {}, 2))
    assert read_seed_records(tmp_path) == {1: record}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_confirm_json_of_the_same_seeds_is_final(tmp_path: Path) -> None:
    path = tmp_path / "confirm.json"
    assert read_confirm(path, [1, 2]) is None
    path.write_text(json.dumps({"seeds": [1, 2], "configurations": {}}))
    assert read_confirm(path, [1, 2]) == {"seeds": [1, 2], "configurations": {}}
    assert read_confirm(path, [1, 2, 3]) is None


def test_leaderboard_rows_come_from_confirm_json_as_written(tmp_path: Path) -> None:
    from clear_ray.pipeline.confirm import confirm_rows
    from clear_ray.search.confirm import ConfirmRun, write_confirm

    def run(seed: int, forget: float, feasible: bool) -> ConfirmRun:
        return ConfirmRun(seed, f"r{seed}", f"a{seed}", {"clear/forget_metric": forget}, feasible)

    tuned = Configuration({"train.lr": 0.001}, 2, "t0", [run(1, 0.2, True), run(2, 0.4, False)])
    default = Configuration({"train.lr": 0.01}, 3, None, [run(1, 0.5, True)])
    path = tmp_path / "confirm.json"
    write_confirm(path, "ga", [1, 2], {"tuned": tuned, "default": default})
    rows = confirm_rows("ga", json.loads(path.read_text()))
    assert [row.model for row in rows] == ["ga (tuned, 2 seeds)", "ga (default, 1 seed)"]
    assert [row.feasible for row in rows] == ["1/2", "1/1"]
    assert [row.trial for row in rows] == ["t0", "defaults"]
    assert rows[0].cell("clear/forget_metric") == "0.3 ± 0.14"
    assert rows[1].cell("clear/forget_metric") == "0.5"


def test_the_final_evaluation_on_disk_counts_only_for_its_adapter(tmp_path: Path) -> None:
    from clear_ray.pipeline.final import FINAL_DIR, read_final_evaluation

    assert read_final_evaluation(tmp_path, "/a/t0") == {}
    (tmp_path / FINAL_DIR).mkdir()
    summary = {"adapter": "/a/t0", "metrics": {"clear/forget_metric": 0.25}}
    (tmp_path / FINAL_DIR / "metrics.json").write_text(json.dumps(summary))
    assert read_final_evaluation(tmp_path, "/a/t0") == {"clear/forget_metric": 0.25}
    assert read_final_evaluation(tmp_path, "/a/t1") == {}


def test_a_state_json_without_stages_resumes_at_the_search() -> None:
    from clear_ray.search.session import SEARCH, SearchState

    saved = {"name": "s", "config": {}, "methods": ["ga"], "space_origins": {"ga": "ga.yaml"},
             "runs": {"ga": {"parent_id": "p", "status": "running", "outcome": {}}}}  # fmt: skip
    assert SearchState.from_dict(saved).runs["ga"].stage == SEARCH


def test_a_confirm_run_keeps_the_searchs_lr_schedule_and_stops_at_the_selected_epoch() -> None:
    """Epoch 2 of a 5-epoch trial is not a 2-epoch run (whose decay would end at epoch 2)."""
    from clear_ray.config import Config
    from clear_ray.search.confirm import schedule_epochs

    cfg = Config().replace({"train.epochs": 5})
    assert schedule_epochs(cfg, TUNED) == 5  # stopped by Tune after TUNED.epochs = 2
    assert schedule_epochs(cfg, Configuration({}, 5, None)) == 5  # the default runs them all
    searched = Configuration({"train.epochs": 4}, 3, "t1")  # epochs searched: the trial's own
    assert schedule_epochs(cfg, searched) == 4


def test_confirm_points_carry_the_schedule_and_one_seed_each() -> None:
    from clear_ray.config import Config
    from clear_ray.search.confirm import confirm_points

    cfg = Config().replace({"train.epochs": 5})
    assert confirm_points(cfg, TUNED, [1, 2]) == [
        {"train.lr": 0.001, "train.epochs": 5, "train.seed": 1},
        {"train.lr": 0.001, "train.epochs": 5, "train.seed": 2},
    ]


def test_configurations_train_in_one_tune_run_unless_their_trials_look_alike() -> None:
    """One run fills the trial slots with every configuration's seeds; but a trial is told to
    its configuration by its params, so two configurations with the same params and schedule
    (here: the defaults, selected at epoch 2 and run to the end) need a Tune run each."""
    from clear_ray.config import Config
    from clear_ray.search.confirm import tuner_groups

    cfg = Config().replace({"train.epochs": 5})
    default = Configuration({"train.lr": 0.002}, 5, None)
    assert tuner_groups(cfg, {"tuned": (TUNED, SEEDS), "default": (default, SEEDS)}) == [
        ["tuned", "default"]
    ]
    same_params = Configuration(dict(TUNED.params), 5, None)
    assert tuner_groups(cfg, {"tuned": (TUNED, SEEDS), "default": (same_params, SEEDS)}) == [
        ["tuned"],
        ["default"],
    ]
    other_keys = Configuration({"method.beta": 0.1}, 5, None)
    assert tuner_groups(cfg, {"tuned": (TUNED, SEEDS), "arm": (other_keys, SEEDS)}) == [
        ["tuned"],
        ["arm"],
    ]


def test_each_trials_events_reach_its_own_configurations_callbacks() -> None:
    from types import SimpleNamespace

    from ray.tune import Callback

    from clear_ray.search.confirm import PerConfiguration

    class Recorder(Callback):
        def __init__(self) -> None:
            self.events: list[tuple[str, int]] = []

        def on_trial_start(self, iteration, trials, trial, **info) -> None:
            self.events.append(("start", trial.config["train.seed"]))

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            self.events.append(("result", trial.config["train.seed"]))

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self.events.append(("complete", trial.config["train.seed"]))

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self.events.append(("error", trial.config["train.seed"]))

    tuned, default = Recorder(), Recorder()
    route = PerConfiguration(
        lambda config: "tuned" if config["train.lr"] == 0.001 else "default",
        {"tuned": [tuned], "default": [default]},
    )
    first = SimpleNamespace(config={"train.lr": 0.001, "train.seed": 1})
    second = SimpleNamespace(config={"train.lr": 0.002, "train.seed": 1})
    route.on_trial_start(0, [], first)
    route.on_trial_start(0, [], second)
    route.on_trial_result(1, [], first, {"epoch": 1})
    route.on_trial_complete(2, [], first)
    route.on_trial_error(2, [], second)
    assert tuned.events == [("start", 1), ("result", 1), ("complete", 1)]
    assert default.events == [("start", 1), ("error", 1)]
