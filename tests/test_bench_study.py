"""bench/study.py's pure parts (draw seeds, what is left after a partial raw file, the line a
confirm run gives, the sweep's pick), bench/study_measures.py's (the LoRA delta scaled by α, the
bisection for α*), and bench/searches.py's (finding searches, lanes, leaderboard values)."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench_scripts import BENCH, load_bench

from clear_ray.report.study_runs import Draw, TaskScore, append_run, read_runs

study = load_bench("study")
measures = load_bench("study_measures")
searches = load_bench("searches")

ORIGINAL = -20.5
GOLD_B = -0.9
CONTEXT = study.DrawContext(
    draw=study.draw_of(2),
    commit="0123abc",
    cpu="AMD EPYC 9B14",
    cpu_capability="AVX2",
    pins={"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"},
    original_objective=ORIGINAL,
    gold_b_objective=GOLD_B,
)
DEFAULTS = {"train.lr": 1e-3, "method.gamma": 1.0, "method.alpha": 1.0, "regularizer.l1": 0.0}


def metrics(objective: float, retain: float = 0.6, with_d: bool = True) -> dict[str, float]:
    """A full evaluation's metrics as eval/suite.py names them (a few of its ~60 keys)."""
    values = {
        "clear/real_metric": 0.41,
        "clear/retain_metric": retain,
        "clear/forget_metric": 0.22,
        "log_forget_quality": objective,
        "forget_captions/log_forget_quality": objective,
        "forget_text_perturbed/log_forget_quality": objective - 1.0,
        "forget_text_perturbed/ks_d": 0.5,
        "forget_text_perturbed/n_items": 60.0,
        "forget_distance": 0.8,
        "retain_captions/prob": 0.3,
    }
    if with_d:
        values |= {"forget_captions/ks_d": 0.25, "forget_captions/n_items": 64.0}
    return values


def confirm_run(seed: int, objective: float, feasible: bool = True) -> dict:
    return {"seed": seed, "run_id": f"r{seed}", "adapter": f"/a/seed-{seed}",
            "metrics": metrics(objective), "feasible": feasible}  # fmt: skip


def configuration(params: dict, epochs: int, values: dict[int, float], trial=None) -> dict:
    """A confirm.json configuration (search/confirm.py ``Configuration.summary``)."""
    return {"params": params, "epochs": epochs, "trial": trial,
            "runs": [confirm_run(seed, value) for seed, value in values.items()]}  # fmt: skip


def confirm(default: dict, tuned: dict) -> dict:
    return {"method": "gd", "fold": "report", "seeds": [1, 2],
            "configurations": {"default": default, "tuned": tuned}}  # fmt: skip


MAIN = confirm(
    configuration(DEFAULTS, 3, {1: -15.0, 2: -14.0}),
    configuration(
        {**DEFAULTS, "train.lr": 2.4e-3, "method.gamma": 0.3}, 2, {1: -6.0, 2: -7.0}, "t1"
    ),
)
SWEEP = confirm(
    configuration({"train.lr": 1e-3}, 3, {1: -15.0, 2: -14.0}),
    configuration({"train.lr": 3e-3}, 1, {1: -9.0, 2: -10.0}, "s2"),
)


# ---------------------------------------------------------------- draws


def test_draw_k_uses_seed_k_for_each_of_its_four_seeds_and_gold_b_another() -> None:
    assert study.draw_of(0) == Draw(0, 0, 0, 0, 0)
    assert study.draw_of(7) == Draw(7, 7, 7, 7, 7)
    assert study.gold_b_seed(study.draw_of(7)) == 1007  # no draw's own reference seed
    with pytest.raises(ValueError):
        study.draw_of(-1)
    # The confirm seeds are train.seed 1..S; the searches train with 0.
    assert study.confirm_seeds(study.Settings()) == [1, 2]


def test_the_search_flags_carry_the_draws_seeds_and_the_registered_search() -> None:
    flags = study.search_flags(study.Settings(), study.draw_of(3), "npo", Path("/o"))
    flags += study.main_search_flags(study.Settings())
    pairs = dict(itertools.pairwise(flags))
    assert pairs["--seed"] == "3" and pairs["--num-samples"] == "24"
    assert pairs["--grace-period"] == "2" and pairs["--reduction-factor"] == "2.0"
    assert pairs["--confirm-seeds"] == "2" and pairs["--max-concurrent"] == "1"
    sets = [value for flag, value in itertools.pairwise(flags) if flag == "--set"]
    for setting in ("data.synthetic_seed=3", "finetune.seed=3", "search.fold_seed=3",
                    "train.seed=0", "search.startup_trials=4"):  # fmt: skip
        assert setting in sets


@pytest.mark.parametrize(
    ("spec", "indices"),
    [
        ("0-3", [0, 1, 2, 3]),
        ("4", [4]),
        ("0-1,5,1", [0, 1, 5]),
        ("2-3", [2, 3]),
    ],
)
def test_draws_are_parsed_in_order_each_once(spec: str, indices: list[int]) -> None:
    assert study.parse_draws(spec) == indices


@pytest.mark.parametrize("spec", ["3-1", "a", "1-", "", "-2"])
def test_bad_draws_are_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        study.parse_draws(spec)


@pytest.mark.parametrize("argv", [["--draws", "3-1"], ["--methods", "gd,rmu"], ["--methods", ","]])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "study.py"), *argv, "--raw", str(tmp_path / "r.jsonl")],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(BENCH.parent)},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.jsonl").exists()


def test_smoke_is_one_draw_one_method_and_leaves_the_studys_raw_file_alone() -> None:
    args = study.parse_args(["--smoke", "--draws", "0-9", "--methods", "npo,dpo"])
    assert (args.draw_indices, args.methods) == ([0], ["gd"])
    assert args.raw != study.RAW and args.output_dir != Path("/tmp/clear_ray_study")
    assert (study.SMOKE.trials, study.SMOKE.epochs, study.SMOKE.confirm_seeds) == (2, 1, 2)
    full = study.parse_args([])
    assert (full.draw_indices, full.methods, full.raw) == (
        [0, 1, 2, 3],
        list(study.METHODS),
        study.RAW,
    )


def test_the_commit_is_refused_with_changed_tracked_files_but_the_raw_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def git(*args: str) -> str:
        result = subprocess.run(["git", "-C", str(tmp_path), *args], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    git("init", "-q")
    raw = tmp_path / "bench" / "results" / "study_runs.jsonl"
    raw.parent.mkdir(parents=True)
    raw.write_text("")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "frozen")
    head = git("rev-parse", "HEAD")
    monkeypatch.setattr(study, "ROOT", tmp_path)
    raw.write_text("{}\n")  # the study appended a line to the committed raw file
    (tmp_path / "notes.txt").write_text("untracked")
    assert study.checkout_commit(False, raw) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    with pytest.raises(ValueError, match="uncommitted changes"):
        study.checkout_commit(False, raw)
    assert study.checkout_commit(True, raw) == f"{head}-dirty"


# ---------------------------------------------------------------- what is left


def test_a_partial_raw_file_leaves_only_the_missing_runs(tmp_path: Path) -> None:
    raw = tmp_path / "study_runs.jsonl"
    written = study.lines_for(CONTEXT, "gd", [("default", 1), ("default", 2), ("tuned", 1)],
                              MAIN, SWEEP, "log_forget_quality", {})  # fmt: skip
    for line in written:
        append_run(raw, line)
    runs = read_runs(raw)
    draw2, draw3 = study.draw_of(2), study.draw_of(3)
    assert study.missing_runs(runs, draw2, "gd", [1, 2]) == [
        ("sweep", 1), ("sweep", 2), ("tuned", 2)
    ]  # fmt: skip
    assert study.missing_runs(runs, draw2, "npo", [1, 2]) == [
        (arm, seed) for arm in ("default", "sweep", "tuned") for seed in (1, 2)
    ]
    assert study.pending_units(runs, [draw2, draw3], ["gd", "npo"], [1, 2]) == [
        (draw2, "gd"), (draw2, "npo"), (draw3, "gd"), (draw3, "npo")
    ]  # fmt: skip
    rest = study.lines_for(CONTEXT, "gd", study.missing_runs(runs, draw2, "gd", [1, 2]),
                           MAIN, SWEEP, "log_forget_quality", {})  # fmt: skip
    for line in rest:
        append_run(raw, line)
    runs = read_runs(raw)  # the analysis' reader takes the whole file: no run twice
    assert len(runs) == 6
    assert study.pending_units(runs, [draw2, draw3], ["gd"], [1, 2]) == [(draw3, "gd")]


def test_a_raw_file_of_other_seeds_for_a_draw_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "study_runs.jsonl"
    other = study.DrawContext(**{**CONTEXT.__dict__, "draw": Draw(2, 102, 202, 302, 402)})
    append_run(raw, study.lines_for(other, "gd", [("default", 1)], MAIN, SWEEP,
                                    "log_forget_quality", {})[0])  # fmt: skip
    with pytest.raises(ValueError, match="draw 2 has other seeds"):
        study.check_draws(read_runs(raw), [study.draw_of(2)])
    study.check_draws(read_runs(raw), [study.draw_of(3)])  # another draw: fine


def test_new_lines_must_keep_their_draws_original() -> None:
    on_file = study.lines_for(
        CONTEXT, "gd", [("default", 1)], MAIN, SWEEP, "log_forget_quality", {}
    )
    same = study.lines_for(CONTEXT, "npo", [("tuned", 2)], MAIN, SWEEP, "log_forget_quality", {})
    study.check_original(on_file, same)
    rebuilt = study.DrawContext(**{**CONTEXT.__dict__, "original_objective": -7.0})
    moved = study.lines_for(rebuilt, "npo", [("tuned", 2)], MAIN, SWEEP, "log_forget_quality", {})
    with pytest.raises(study.StudyFailed, match=r"-7\.0 now, -20\.5 in the raw file"):
        study.check_original(on_file, moved)
    other_draw = study.DrawContext(**{**rebuilt.__dict__, "draw": study.draw_of(3)})
    study.check_original(on_file, study.lines_for(other_draw, "gd", [("tuned", 1)], MAIN, SWEEP,
                                                  "log_forget_quality", {}))  # fmt: skip


# ---------------------------------------------------------------- a line


def test_the_line_of_a_confirm_run_takes_its_report_fold_evaluation() -> None:
    run = confirm_run(2, -7.5, feasible=False)
    matched = {"alpha": 0.40625, "matched_objective": -9.25}
    params = {**DEFAULTS, "train.lr": 2.4e-3}
    line = study.run_line(CONTEXT, "gd", "tuned", run, params, 2, "log_forget_quality", matched)
    assert line.draw == Draw(2, 2, 2, 2, 2) and line.commit == "0123abc"
    assert (line.method, line.arm, line.seed, line.epoch) == ("gd", "tuned", 2, 2)
    assert line.params == params and line.feasible is False
    assert (line.clear_real, line.clear_retain, line.clear_forget) == (0.41, 0.6, 0.22)
    assert line.tasks == {
        "forget_captions": TaskScore(-7.5, 0.25, 64),
        "forget_text_perturbed": TaskScore(-8.5, 0.5, 60),
    }
    assert line.forget_distance == 0.8
    assert (line.objective_name, line.objective) == ("log_forget_quality", -7.5)
    assert (line.alpha, line.matched_objective) == (0.40625, -9.25)
    assert (line.original_objective, line.gold_b_objective) == (ORIGINAL, GOLD_B)
    assert line.primary == ORIGINAL  # infeasible: Original's value (the primary endpoint)


def test_a_task_without_d_and_n_and_a_run_without_w1_or_alpha_leave_them_out() -> None:
    run = confirm_run(1, -7.5)
    run["metrics"] = metrics(-7.5, with_d=False)
    del run["metrics"]["forget_distance"]
    line = study.run_line(CONTEXT, "gd", "default", run, DEFAULTS, 3, "log_forget_quality", None)
    assert list(line.tasks) == ["forget_text_perturbed"]
    assert line.forget_distance is None and line.alpha is None and line.matched_objective is None


def test_the_sweep_arm_is_the_sweeps_pick_at_the_other_defaults() -> None:
    matched = {
        "default": {"default/seed1": {"alpha": 0.5, "matched_objective": -16.0}},
        "tuned": {"tuned/seed1": {"alpha": 1.0, "matched_objective": -6.0}},
        "sweep": {"tuned/seed1": {"alpha": 1.0, "matched_objective": -9.0}},
    }
    wanted = [("default", 1), ("sweep", 1), ("sweep", 2), ("tuned", 1)]
    lines = study.lines_for(CONTEXT, "gd", wanted, MAIN, SWEEP, "log_forget_quality", matched)
    default, sweep1, sweep2, tuned = lines
    assert sweep1.params == {**DEFAULTS, "train.lr": 3e-3}  # every searched parameter named
    assert (sweep1.epoch, sweep1.objective, sweep2.objective) == (1, -9.0, -10.0)
    assert sweep1.matched_objective == -9.0 and sweep2.alpha is None  # not measured: null
    assert (default.params, default.epoch, default.objective) == (DEFAULTS, 3, -15.0)
    assert default.alpha == 0.5
    assert (tuned.params["train.lr"], tuned.epoch, tuned.objective) == (2.4e-3, 2, -6.0)
    with pytest.raises(ValueError, match="no run of seed 3"):
        study.lines_for(CONTEXT, "gd", [("tuned", 3)], MAIN, SWEEP, "log_forget_quality", {})


def test_the_sweep_is_a_three_point_grid_over_the_learning_rate(tmp_path: Path) -> None:
    from clear_ray.search.space import load_space
    from clear_ray.search.strategy import grid_size

    (tmp_path / "sweep_lr.yaml").write_text(study.sweep_space())
    space = load_space("sweep_lr", tmp_path)
    assert list(space) == ["train.lr"] and grid_size(space) == 3
    assert sorted(space["train.lr"].choices) == [3e-4, 1e-3, 3e-3]
    flags = study.sweep_search_flags(tmp_path / "sweep_lr.yaml", {})
    pairs = dict(itertools.pairwise(flags))
    assert (pairs["--sampler"], pairs["--scheduler"], pairs["--num-samples"]) == (
        "grid",
        "none",
        "3",
    )


def test_the_sweep_holds_the_other_parameters_at_the_methods_published_setting() -> None:
    from clear_ray.search.space import PublishedDefault, load_defaults

    published = {
        "train.lr": PublishedDefault(None, "config"),
        "method.beta": PublishedDefault(2.5, "SimNPO paper"),
        "method.alpha": PublishedDefault(None, "config"),
        "regularizer.l1": PublishedDefault(0.0, "no L1"),
    }
    fixed = study.sweep_fixed(published)
    assert fixed == {"method.beta": 2.5, "regularizer.l1": 0.0}
    flags = study.sweep_search_flags(Path("s.yaml"), fixed)
    sets = [value for flag, value in itertools.pairwise(flags) if flag == "--set"]
    assert sets == ["method.beta=2.5", "regularizer.l1=0.0"]
    # The shipped npo space: beta 0.1 (the NPO paper), alpha 1, no L1; lr the config's.
    assert study.sweep_fixed(load_defaults("npo")) == {
        "method.beta": 0.1,
        "method.alpha": 1.0,
        "regularizer.l1": 0.0,
    }


def test_the_sweeps_default_runs_say_whether_they_reproduce_the_searchs() -> None:
    assert "reproduce the search's exactly" in study.reproduced(MAIN, SWEEP, "log_forget_quality")
    moved = confirm(
        configuration({"train.lr": 1e-3}, 3, {1: -15.0, 2: -13.0}), SWEEP["configurations"]["tuned"]
    )
    assert "differ from the search's (seeds [2])" in study.reproduced(
        MAIN, moved, "log_forget_quality"
    )


def test_trial_ends_are_recognised_in_the_clis_console() -> None:
    ended = (
        "[trial 48b7b31b] completed 1/1 epochs; best epoch 1, log_forget_quality=-13, "
        "feasible in 1m19s",
        "[trial 9f1c2a3b] stopped by ASHA at epoch 2/3 (below its rung's cut); best epoch 2, "
        "log_forget_quality=-9.1, feasible in 58s",
        "[trial 9f1c2a3b] FAILED: worker died (traceback in /x/error.txt) in 12s",
    )
    assert all(study.trial_ended(line) for line in ended)
    assert not study.trial_ended("[trial 48b7b31b] started (1/2): train.lr=0.00125")
    assert not study.trial_ended(
        "[trial 48b7b31b] epoch 1: log_forget_quality=-13 clear/forget_metric=0.237"
    )
    assert not study.trial_ended("[clear_ray] gd: tuned configuration: seed 1 trained")


def test_eta_uses_measured_pairs_then_the_plan() -> None:
    # two pairs measured at 600 and 800 s, three left, the running one 100 s in.
    assert study.eta_seconds([600.0, 800.0], 3, 2, 100.0) == pytest.approx(2000.0)
    # nothing measured: the plan's per pair, and per draw for its references.
    planned = 4 * study.PLANNED_UNIT_S + 1 * study.PLANNED_DRAW_S
    assert study.eta_seconds([], 4, 1, 0.0) == pytest.approx(planned)
    assert study.eta_seconds([600.0], 0, 0, 0.0) == 0.0


def _add_walls(walls_file: Path, key: str, times: int, go) -> None:
    go.wait(60)
    for _ in range(times):
        study.add_wall(walls_file, key, 1.0)


def test_lanes_sharing_an_output_dir_keep_each_others_wall_times(tmp_path: Path) -> None:
    walls_file = tmp_path / "study_walls.json"
    study.add_wall(walls_file, "draw-0/gd", 600.0)  # lane A
    study.add_wall(walls_file, "draw-0/dpo", 700.0)  # lane B, meanwhile
    assert study.add_wall(walls_file, "draw-0/gd", 50.0) == {
        "draw-0/gd": 650.0,
        "draw-0/dpo": 700.0,
    }
    # two processes writing at once lose nothing: each reads, adds and replaces under a lock.
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    lanes = [
        context.Process(target=_add_walls, args=(walls_file, key, 300, go)) for key in ("a", "b")
    ]
    for lane in lanes:
        lane.start()
    go.set()
    for lane in lanes:
        lane.join(timeout=60)
    assert [lane.exitcode for lane in lanes] == [0, 0]
    walls = json.loads(walls_file.read_text())
    assert (walls["a"], walls["b"], walls["draw-0/dpo"]) == (300.0, 300.0, 700.0)


# ---------------------------------------------------------------- retain matching


def test_alpha_bisection_finds_the_largest_feasible_scale_within_one_32nd() -> None:
    """Retain falls with α and crosses the threshold at 0.3: 0.5 no, 0.25 yes, 0.375 no,
    0.3125 no, 0.28125 yes."""
    tried = []

    def evaluate(alpha: float) -> tuple[bool, float]:
        tried.append(alpha)
        return alpha <= 0.3, -10.0 * alpha

    alpha, value = measures.retain_matched(evaluate, steps=5)
    assert tried == [0.5, 0.25, 0.375, 0.3125, 0.28125]
    assert (alpha, value) == (0.28125, pytest.approx(-2.8125))


def test_alpha_is_zero_when_no_scale_tried_keeps_retain() -> None:
    assert measures.retain_matched(lambda alpha: (False, 0.0), steps=3) == (0.0, None)


def test_the_adapter_delta_is_scaled_through_its_b_matrices() -> None:
    import torch
    from safetensors.torch import load, save

    a, b = torch.arange(6.0).reshape(2, 3), torch.arange(4.0).reshape(2, 2) - 1.0
    files = {
        "adapter_model.safetensors": save(
            {"m.q_proj.lora_A.weight": a, "m.q_proj.lora_B.weight": b}
        ),
        "adapter_config.json": b'{"r": 2, "lora_alpha": 4}',
    }
    scaled = measures.scaled_adapter(files, 0.25)
    tensors = load(scaled["adapter_model.safetensors"])
    assert torch.equal(tensors["m.q_proj.lora_A.weight"], a)
    assert torch.equal(tensors["m.q_proj.lora_B.weight"], b * 0.25)
    assert (tensors["m.q_proj.lora_B.weight"] @ a).equal((b @ a) * 0.25)  # the delta, scaled
    assert scaled["adapter_config.json"] == files["adapter_config.json"]
    with pytest.raises(ValueError, match=r"no adapter_model\.safetensors"):
        measures.scaled_adapter({"adapter_config.json": b"{}"}, 0.5)


# ---------------------------------------------------------------- bench/searches.py

LEADERBOARD = """\
| model | Real | Retain | Forget | log FQ | FQ 1-JS | real_metric | retain_metric | forget_metric | model_utility | log_forget_quality | forget_quality_js | feasible | trial |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|
| Original | 0.2432 | 0.6646 | 0.3154 | -2.372 | 0.8141 | 0.1383 | 0.7131 | 0.4492 | 0.2504 | -13.31 | 0.7585 |  |  |
| Gold | 0.2573 | 0.5468 | 0.02662 | 0 | 1 | 0.1802 | 0.5976 | 0.01509 | 0.2944 | 0 | 1 |  |  |
| dpo | 0.2368 | 0.665 | 0.383 | -3.352 | 0.8129 | 0.1534 | 0.7126 | 0.5254 | 0.272 | -11.01 | 0.7567 | yes | e63d3db5 |
"""  # noqa: E501


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
