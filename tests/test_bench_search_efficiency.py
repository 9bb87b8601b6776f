"""bench/search_efficiency.py and bench/efficiency_analysis.py: Ray's ASHA replayed on full
curves, the random-search replay's draws, budget accounting, the KS lattice step, the headroom
gate and the pre-registered PASS rule on hand-made raw files whose verdicts are known."""

from __future__ import annotations

import json
import math
import random

import pytest
from bench_scripts import load_bench

analysis = load_bench("efficiency_analysis")
efficiency = load_bench("search_efficiency")

# Five trials' per-epoch scores (running best), 4 epochs each.
CURVES = [[1, 2, 3, 4], [0, 5, 6, 7], [3, 3, 3, 3], [2, 2.5, 9, 9], [1.5, 1, 1, 1]]


# ---------------------------------------------------------------- ASHA


def test_asha_rungs_follow_rays_formula() -> None:
    assert analysis.asha_rungs(1, 2, 4) == [1, 2, 4]
    assert analysis.asha_rungs(1, 2, 5) == [1, 2, 4]
    assert analysis.asha_rungs(2, 2, 5) == [2, 4]
    assert analysis.asha_rungs(2, 2, 3) == [2]  # the study's setting: one comparison, epoch 2
    assert analysis.asha_rungs(1, 3, 5) == [1, 3]


def test_asha_grace_1_stops_at_the_first_epoch_below_the_median() -> None:
    # T1 (0 at epoch 1) is below T0's 1: stopped at once, though it would reach 7.
    # T4: epoch 1 ties the median 1.5 (not below), epoch 2 (1) is below 2.5: stopped.
    assert analysis.asha_stops(CURVES, 1, 2, 4) == [4, 1, 4, 4, 2]


def test_asha_grace_2_lets_slow_starters_through_but_compares_at_epoch_2() -> None:
    # T1 survives now; T3 (2.5 at epoch 2, later 9) is below the median 3 and stopped.
    assert analysis.asha_stops(CURVES, 2, 2, 4) == [4, 4, 2, 2, 2]


def test_asha_never_stops_a_trial_that_ended_by_itself_before_a_rung() -> None:
    # A collapsed trial (one epoch) still counts at rung 1 for later trials.
    assert analysis.asha_stops([[5], [1, 1, 1]], 1, 2, 3) == [1, 1]


@pytest.mark.parametrize(
    "grace,factor,max_t", [(1, 2, 5), (2, 2, 5), (3, 2, 5), (1, 3, 4), (2, 2, 3)]
)
def test_asha_replay_agrees_with_rays_scheduler(grace, factor, max_t) -> None:
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    rng = random.Random(grace * 10 + max_t)
    curves = []
    for _ in range(30):
        # few distinct values, as a KS p-value on few items has: ties decide stops too
        values = [rng.choice([0, 1, 2, 3]) for _ in range(rng.choice([max_t, max_t, 2]))]
        curves.append([max(values[: i + 1]) for i in range(len(values))])  # running best
    scheduler = ASHAScheduler(
        time_attr="epoch", metric="score", mode="max", max_t=max_t,
        grace_period=grace, reduction_factor=factor,
    )  # fmt: skip
    ray_stops = []
    for number, scores in enumerate(curves):
        trial = SimpleNamespace(trial_id=f"t{number}")
        scheduler.on_trial_add(None, trial)
        ran = len(scores)
        for epoch, score in enumerate(scores, 1):
            result = {"epoch": epoch, "score": score}
            if scheduler.on_trial_result(None, trial, result) == TrialScheduler.STOP:
                ran = epoch
                break
        scheduler.on_trial_complete(None, trial, {"epoch": ran, "score": scores[ran - 1]})
        ray_stops.append(ran)
    assert analysis.asha_stops(curves, grace, factor, max_t) == ray_stops


# ---------------------------------------------------------------- RS replay and budget


def test_rs_draws_are_seeded_without_replacement_and_differ_by_seed() -> None:
    order = analysis.rs_order(3, 100)
    assert sorted(order) == list(range(100))  # every pool item once
    assert analysis.rs_order(3, 100) == order  # seeded
    assert analysis.rs_order(4, 100) != order


def curve_line(values, params=None, feasible_from: int = 1) -> dict:
    return {
        "params": params or {},
        "epochs": [
            {"best_score": v, "best_objective": v, "feasible": e >= feasible_from}
            for e, v in enumerate(values, 1)
        ],
    }


def test_rs_arms_of_one_seed_read_the_pool_in_one_order() -> None:
    pool = [analysis.Curve.of(curve_line([float(i)] * 3, {"i": i})) for i in range(10)]
    settings = analysis.Settings("x", 3, 2, 2.0, (0,), ("gd",))
    live = {analysis.TPE: pool[:1], analysis.TPE_ASHA: pool[:1]}
    runs = analysis.arm_runs(settings, pool, pool[:2], live, seed=7)
    first = analysis.rs_order(7, 10)[0]
    for arm in (analysis.RS, analysis.RS_ASHA, analysis.RS_2B):
        assert runs[arm][0] == (0, float(first))  # the same first configuration
    # RS+ASHA: the first trial always goes on (nothing recorded at its rung before it).
    assert len(runs[analysis.RS]) == 30
    assert len(runs[analysis.RS_ASHA]) < 30


def test_budget_counts_only_epochs_that_end_within_it() -> None:
    curves = [
        analysis.Curve.of(curve_line([1.0, 2.0, 3.0])),
        analysis.Curve.of(curve_line([5.0, 6.0, 7.0], feasible_from=2)),
    ]
    run = analysis.events(curves, [2, 3])  # the first stopped at epoch 2
    assert run == [(0, 1.0), (0, 2.0), (1, -math.inf), (1, 6.0), (1, 7.0)]
    assert analysis.at_budget(run, 3, floor=-9.0) == (2.0, 0)  # trial 1's epoch 1 infeasible
    assert analysis.at_budget(run, 4, floor=-9.0) == (6.0, 1)
    assert analysis.at_budget(run[2:3], 1, floor=-9.0) == (-9.0, None)  # none feasible: Original
    assert analysis.best_so_far(run, floor=-9.0) == [1.0, 2.0, 2.0, 6.0, 7.0]
    # A feasible value below Original's is the arm's value, at B and on the anytime curve.
    assert analysis.best_so_far(run[2:], floor=5.0) == [5.0, 6.0, 7.0]
    assert analysis.best_so_far(run, floor=5.0)[:2] == [1.0, 2.0]
    assert analysis.at_budget(run, 2, floor=5.0) == (2.0, 0)
    assert analysis.epochs_to(run, 6.0) == 4
    assert analysis.epochs_to(run, 8.0) is None


# ---------------------------------------------------------------- lattice and intervals


def test_ks_log_p_is_scipys_for_two_samples_k_over_n_apart() -> None:
    from scipy.stats import ks_2samp

    rng = random.Random(0)
    model = [rng.random() for _ in range(12)]
    gold = [rng.random() + 0.4 for _ in range(12)]
    result = ks_2samp(model, gold)
    k = round(result.statistic * 12)
    assert analysis.ks_log_p(k, 12) == pytest.approx(math.log(result.pvalue), rel=1e-12)
    assert analysis.ks_log_p(0, 12) == 0.0


def test_lattice_step_is_the_smallest_one_item_drop() -> None:
    from clear_ray.eval.metrics import combined_log_p

    one = {"t": [analysis.ks_log_p(5, 30), 5 / 30, 30]}
    assert analysis.lattice_step(one) == pytest.approx(
        analysis.ks_log_p(5, 30) - analysis.ks_log_p(6, 30)
    )
    two = {"a": [analysis.ks_log_p(5, 30), 5 / 30, 30], "b": [analysis.ks_log_p(4, 12), 4 / 12, 12]}
    base = [two["a"][0], two["b"][0]]
    drops = [
        combined_log_p(base) - combined_log_p([analysis.ks_log_p(6, 30), base[1]]),
        combined_log_p(base) - combined_log_p([base[0], analysis.ks_log_p(5, 12)]),
    ]
    assert analysis.lattice_step(two) == pytest.approx(min(drops))
    # The 30-item test has the finer lattice: its one-item drop is the smaller.
    assert drops[0] < drops[1]


def test_lattice_step_at_the_far_end_is_the_step_one_item_closer() -> None:
    far = {"t": [analysis.ks_log_p(12, 12), 1.0, 12]}
    assert analysis.lattice_step(far) == pytest.approx(
        analysis.ks_log_p(11, 12) - analysis.ks_log_p(12, 12)
    )


def test_w1_step_is_one_items_share_of_originals_distance() -> None:
    assert analysis.w1_step(2.0, 20) == pytest.approx(0.1)


def beta_cdf_n_minus_1(x: float, n: int) -> float:
    """P(Beta(n − 1, 2) ≤ x) = n·x^(n−1) − (n − 1)·x^n, by hand."""
    return n * x ** (n - 1) - (n - 1) * x**n


def test_clopper_pearson_lower_bounds_by_hand() -> None:
    low, high = analysis.clopper_pearson(10, 10)
    assert low == pytest.approx(0.05 ** (1 / 10)) and high == 1.0  # 0.7411
    low9, _ = analysis.clopper_pearson(9, 10)
    assert beta_cdf_n_minus_1(low9, 10) == pytest.approx(0.05)
    assert 0.5 < low9 < 0.61
    # The pre-registered thresholds: 8 wins and a tie of 10 pass, 8 wins do not; 20 of 30 pass.
    assert analysis.clopper_pearson(8.5, 10)[0] > 0.5 > analysis.clopper_pearson(8, 10)[0]
    assert analysis.clopper_pearson(20, 30)[0] > 0.5 > analysis.clopper_pearson(19.5, 30)[0]
    assert analysis.clopper_pearson(0, 10)[0] == 0.0


def test_win_share_counts_ties_half() -> None:
    assert analysis.win_share([1, 2, 3], [0, 2, 4]) == 1.5


# ---------------------------------------------------------------- hand-made raw files

ORIGINAL = -2.0  # W1 objective: −W1; 20 items, so one step = 2.0 / 20 = 0.1; the gate −1.8
SEEDS = list(range(10))


def raw_lines(pool: list[float], tpe_asha: list[float], tpe: list[float]) -> list[dict]:
    """A W1 study of gd: 6 pool trials and 2 grid trials with the curve ``pool`` (3 epochs),
    per seed one TPE+ASHA trial ``tpe_asha`` (B = its length) and one TPE trial ``tpe``."""
    settings = {"objective": analysis.NEG_W1, "max_t": 3, "grace": 2, "reduction_factor": 2.0,
                "seeds": SEEDS, "methods": ["gd"]}  # fmt: skip
    tasks = {"forget_captions": [-5.0, 0.3, 10], "forget_text_perturbed": [-5.0, 0.3, 10]}
    lines = [
        {"kind": "settings", "settings": settings},
        {"kind": "original", "method": "gd", "selection": {"objective": ORIGINAL, "tasks": tasks},
         "report": {"objective": -2.5}},
    ]  # fmt: skip

    def trial(source, seed, number, values) -> dict:
        epochs = [
            {"epoch": e, "objective": v, "epoch_feasible": True, "best_objective": v,
             "best_score": v, "feasible": True, "tasks": tasks}
            for e, v in enumerate(values, 1)
        ]  # fmt: skip
        return {"kind": "trial", "method": "gd", "source": source, "seed": seed,
                "trial": number, "params": {"train.lr": 1e-3 * (number + 1), "src": source},
                "epochs": epochs}  # fmt: skip

    lines += [trial("pool", None, i, pool) for i in range(6)]
    lines += [trial("grid", None, i, pool) for i in range(2)]
    for seed in SEEDS:
        lines += [trial("tpe_asha", seed, 0, tpe_asha), trial("tpe", seed, 0, tpe)]
    return lines


def test_a_clear_win_passes_and_rs_at_2b_is_reported_apart() -> None:
    # B = 2: RS sees epochs 1-2 of its first trial (−1.9); TPE+ASHA −0.5 at once; TPE −1.0.
    # RS at 2B sees the first trial's epoch 3 (−0.45) and beats TPE+ASHA on every seed.
    result = analysis.analyse(raw_lines([-1.9, -1.9, -0.45], [-0.5, -0.5], [-1.0, -1.0, -1.0]))
    gd = result["methods"]["gd"]
    assert gd["gated"] and gd["gate_step"] == pytest.approx(0.1)
    assert gd["target"] == pytest.approx(-0.55)  # the pool's best less one step
    assert [p.budget for p in gd["pairs"]] == [2] * 10
    v = result["verdict"]
    assert v["verdict"] == "PASS" and v["pairs"] == 10
    assert v["p_tpe_asha_over_rs"]["estimate"] == 1.0
    assert v["median_epochs_to_target"] == {analysis.TPE_ASHA: 1.0, analysis.RS: 3.0}
    assert v["beats_rs_2b"] is False and v["p_tpe_asha_over_rs_2b"]["estimate"] == 0.0


def test_beating_rs_at_twice_the_budget_is_said() -> None:
    result = analysis.analyse(raw_lines([-1.9, -1.9, -1.0], [-0.5, -0.5], [-1.0, -1.0, -1.0]))
    assert result["verdict"]["verdict"] == "PASS"
    assert result["verdict"]["beats_rs_2b"] is True


def test_a_tie_fails() -> None:
    result = analysis.analyse(raw_lines([-1.9, -1.9, -0.45], [-1.9, -1.9], [-1.9, -1.9, -1.9]))
    v = result["verdict"]
    assert v["verdict"] == "FAIL"
    assert v["p_tpe_asha_over_rs"]["estimate"] == 0.5 and not v["beats_rs"]
    assert v["median_epochs_to_target"][analysis.TPE_ASHA] == math.inf  # never reached


def test_a_loss_fails() -> None:
    result = analysis.analyse(raw_lines([-1.9, -1.9, -0.45], [-1.95, -1.95], [-1.9, -1.9, -1.9]))
    assert result["verdict"]["verdict"] == "FAIL"
    assert result["verdict"]["p_tpe_asha_over_rs"]["estimate"] == 0.0


def test_worse_than_tpe_at_equal_budget_fails_a_win_over_rs() -> None:
    result = analysis.analyse(raw_lines([-1.9, -1.9, -0.45], [-0.5, -0.5], [-0.3, -0.3, -0.3]))
    v = result["verdict"]
    assert v["beats_rs"] and v["half_the_epochs"]
    assert not v["not_worse_than_tpe"] and v["verdict"] == "FAIL"


def test_no_headroom_leaves_the_method_out_of_the_verdict() -> None:
    # Best of any arm −1.85: above Original (−2.0) by 1.5 steps, not 2.
    result = analysis.analyse(raw_lines([-1.9, -1.9, -1.85], [-1.9, -1.9], [-1.9, -1.9, -1.9]))
    assert result["methods"]["gd"]["gated"] is False
    assert result["verdict"] == {"verdict": "NO HEADROOM", "pairs": 0}


def test_a_pool_without_a_feasible_epoch_has_no_target() -> None:
    lines = raw_lines([-1.9, -1.9, -0.45], [-0.5, -0.5], [-1.0, -1.0, -1.0])
    for line in lines:
        if line.get("source") == "pool":
            for epoch in line["epochs"]:
                epoch["epoch_feasible"] = epoch["feasible"] = False
    gd = analysis.analyse(lines)["methods"]["gd"]
    assert gd["target"] is None
    assert all(t is None for p in gd["pairs"] for t in p.to_target.values())


def test_a_missing_pair_is_left_out_not_counted() -> None:
    lines = raw_lines([-1.9, -1.9, -0.45], [-0.5, -0.5], [-1.0, -1.0, -1.0])
    lines = [line for line in lines if not (line.get("source") == "tpe" and line["seed"] == 3)]
    assert analysis.analyse(lines)["verdict"]["pairs"] == 9


def test_report_values_count_infeasible_confirm_runs_as_originals() -> None:
    lines = raw_lines([-1.9, -1.9, -0.45], [-0.5, -0.5], [-1.0, -1.0, -1.0])
    picked = {"train.lr": 1e-3, "src": "tpe_asha"}
    lines.append({"kind": "confirm", "method": "gd", "params": picked, "runs": [
        {"seed": 1, "objective": -1.0, "feasible": True},
        {"seed": 2, "objective": -0.1, "feasible": False},
    ]})  # fmt: skip
    gd = analysis.analyse(lines)["methods"]["gd"]
    assert gd["report_values"][analysis.TPE_ASHA] == [pytest.approx((-1.0 - 2.5) / 2)] * 10
    assert gd["report_values"][analysis.TPE] == [None] * 10  # not confirmed (yet)
    wanted = analysis.selected_configurations(lines)["gd"]
    assert picked in wanted and len(wanted) == len({json.dumps(w) for w in wanted})


def test_analysis_writes_markdown_and_plot_and_refuses_a_bad_raw_file(tmp_path) -> None:
    raw = tmp_path / "runs.jsonl"
    lines = raw_lines([-1.9, -1.9, -0.45], [-0.5, -0.5], [-1.0, -1.0, -1.0])
    raw.write_text("".join(json.dumps(line) + "\n" for line in lines))
    printed = []
    assert analysis.main([str(raw)], out=printed.append) == 0
    assert "**PASS** over 10 (method, seed) pairs" in printed[0]
    assert raw.with_suffix(".png").stat().st_size > 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert analysis.main([str(bad)]) == 2
    assert not bad.with_suffix(".md").exists()


# ---------------------------------------------------------------- the runner's pure parts


def test_plan_runs_a_pool_a_grid_and_both_live_arms_per_seed() -> None:
    settings = efficiency.Settings()
    planned = efficiency.plan(settings)
    assert len(planned) == 3 * (2 + 2 * 10)
    pool = planned[0]
    assert pool.source == "pool" and "search.startup_trials=100" in pool.flags  # random: RS
    assert pool.config["search.seed"] not in settings.seeds
    live = [p for p in planned if p.method == "gd" and p.seed == 4]
    assert {p.config["search.scheduler"] for p in live} == {"asha", "none"}
    assert all(p.config["search.num_samples"] == 24 for p in live)
    # Only the one-point searches of selected configurations run confirm runs.
    flags = efficiency.cli_flags(settings, "gd")
    assert flags[flags.index("--confirm-seeds") + 1] == "0"


def test_trial_lines_keep_every_epoch_and_task(tmp_path) -> None:
    item = efficiency.plan(efficiency.SMOKE)[0]
    reports = [[
        {"epoch": e, "log_forget_quality": -3.0 + e, "epoch_feasible": 1.0, "best_objective": -2.0,
         "best_score": -2.0, "feasible": 1.0, "config": {"train.lr": 0.002},
         "forget_captions/log_forget_quality": -3.0, "forget_captions/ks_d": 0.4,
         "forget_captions/n_items": 30.0}
        for e in (1, 2)
    ]]  # fmt: skip
    reports[0].append({"diverged": 1.0, "reason": "loss is nan"})  # kept out of the curve
    (line,) = efficiency.trial_lines(item, "gd-1", reports, "log_forget_quality")
    assert line["params"] == {"train.lr": 0.002} and line["source"] == "pool"
    assert [e["objective"] for e in line["epochs"]] == [-2.0, -1.0]
    assert line["epochs"][0]["tasks"] == {"forget_captions": [-3.0, 0.4, 30.0]}


def test_every_raw_line_names_its_commit_and_machine(tmp_path) -> None:
    path = tmp_path / "raw.jsonl"
    raw = efficiency.Raw(path, "abc123", "x86_64, 2 cores, AMD EPYC; kernels pinned: …")
    raw.append([{"kind": "original", "method": "gd"}, {"kind": "confirm", "method": "gd"}])
    lines = [json.loads(text) for text in path.read_text().splitlines()]
    assert [(line["kind"], line["commit"], line["machine"]) for line in lines] == [
        ("original", "abc123", "x86_64, 2 cores, AMD EPYC; kernels pinned: …"),
        ("confirm", "abc123", "x86_64, 2 cores, AMD EPYC; kernels pinned: …"),
    ]
    assert "MKL_CBWR=" in efficiency.searched_machine()


def test_a_point_space_loads_with_its_exact_values(tmp_path) -> None:
    from clear_ray.search.space import load_space

    params = {"train.lr": 0.0012520653814999472, "regularizer.l1": 1e-05, "method.beta": 0.1}
    (tmp_path / "point.yaml").write_text(efficiency.point_space(params))
    space = load_space("point", tmp_path)
    assert space["train.lr"].choices == (params["train.lr"],)
    assert space["regularizer.l1"].choices == (1e-05,)  # not the string "1e-05"
    assert space["method.beta"].choices == (0.1,)


def test_trial_curves_are_read_in_trial_creation_order(tmp_path) -> None:
    searches = load_bench("searches")
    for folder, scores in (
        ("run_trial_def34567_2_lr=0.001_2026-12-01_11-49-14", [0.5]),
        ("run_trial_abc12345_1_lr=0.003_2026-12-01_11-48-48", [0.7, 0.8]),
    ):
        trial = tmp_path / "ray" / "gd" / folder
        trial.mkdir(parents=True)
        lines = [json.dumps({"epoch": e, "best_score": v}) for e, v in enumerate(scores, 1)]
        (trial / "result.json").write_text("\n".join(lines) + "\n")
    curves = searches.trial_curves(tmp_path, "gd")
    assert [[report["best_score"] for report in reports] for reports in curves] == [
        [0.7, 0.8],
        [0.5],
    ]


def test_bad_input_exits_2_with_nothing_written(tmp_path) -> None:
    with pytest.raises(SystemExit) as exited:
        efficiency.parse_args(["--methods", "gd,nosuch"])
    assert exited.value.code == 2
    raw = tmp_path / "runs.jsonl"
    other = {"kind": "settings", "settings": {**efficiency.Settings().record(), "pool": 50}}
    raw.write_text(json.dumps(other) + "\n")
    output = tmp_path / "out"
    assert efficiency.main(["--raw", str(raw), "--output-dir", str(output)]) == 2
    assert raw.read_text() == json.dumps(other) + "\n" and not output.exists()
