"""--constrain-relearn X: relearn recovery <= X as a trial constraint.

Validated in the typed config; measured once at a trial's end on the selection fold; told to
Optuna as ``max_relearn`` beside the retain constraint; an unmeasured trial is never feasible.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution

from clear_ray.cli.tune import main
from clear_ray.config import Config
from clear_ray.errors import ConfigError
from clear_ray.robust import constraint
from clear_ray.robust.context import MIN_GAP, CheckResult
from clear_ray.search.constrained import ConstrainedOptunaSearch, trials_table
from clear_ray.search.results import TrialMetrics, TrialRow
from clear_ray.train.inputs import TrialInputs
from clear_ray.train.keys import RELEARN_RECOVERY
from clear_ray.train.selection import BestEpoch, Thresholds

RETAIN = "clear/retain_metric"


def thresholds(max_recovery: float | None) -> Thresholds:
    return Thresholds("log_forget_quality", 0.5, max_relearn_recovery=max_recovery)


def best_epoch(max_recovery: float | None, retain: float = 0.8) -> BestEpoch:
    best = BestEpoch(thresholds(max_recovery))
    best.update(1, {"log_forget_quality": -2.0, RETAIN: retain})
    return best


# ---- config -------------------------------------------------------------------------------


def test_off_by_default_and_round_trips_through_flat() -> None:
    assert Config().search.constrain_relearn is None
    assert Config.from_flat(Config().to_flat()).search.constrain_relearn is None
    on = Config().replace({"search.constrain_relearn": "0.25"})
    assert on.search.constrain_relearn == 0.25
    assert Config.from_flat(on.to_flat()).search.constrain_relearn == 0.25


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--constrain-relearn", "1.5"], "search.constrain_relearn: 1.5 is outside [0, 1]"),
        (["--constrain-relearn", "-0.1"], "search.constrain_relearn: -0.1 is outside [0, 1]"),
        (["--constrain-relearn", "most"], "search.constrain_relearn: expected float"),
        (
            ["--constrain-relearn", "0.3", "--workers-per-trial", "2"],
            "search.constrain_relearn needs --workers-per-trial 1",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path: Path, capsys, args: list[str], message: str
) -> None:
    output = tmp_path / "out"
    assert main([*args, "--output-dir", str(output)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not output.exists()


def test_fewer_than_two_selection_persons_is_refused_before_any_trial() -> None:
    on = Config().replace({"search.constrain_relearn": 0.3}).search
    with pytest.raises(ConfigError, match=r"selection fold has 1 forget person.*needs 2"):
        constraint.check_relearn_persons(on, ("Ann",))
    constraint.check_relearn_persons(on, ("Ann", "Bob"))
    constraint.check_relearn_persons(Config().search, ())  # off: nothing to check


# ---- the constraint -----------------------------------------------------------------------


def test_recovery_above_x_is_a_positive_shortfall_and_infeasible() -> None:
    best = best_epoch(0.3)
    best.relearn_recovery = 0.5
    summary = best.summary()
    assert summary["best_constraint/max_relearn"] == pytest.approx(0.2)
    assert summary["feasible"] == 0.0
    best.relearn_recovery = 0.1
    summary = best.summary()
    assert summary["best_constraint/max_relearn"] == pytest.approx(-0.2)
    assert summary["feasible"] == 1.0


def test_an_unmeasured_trial_counts_as_everything_recovered() -> None:
    summary = best_epoch(0.3).summary()  # e.g. stopped by ASHA before its end
    assert summary["best_constraint/max_relearn"] == pytest.approx(0.7)
    assert summary["feasible"] == 0.0


def test_off_adds_no_constraint_and_epochs_are_never_judged_by_it() -> None:
    assert "best_constraint/max_relearn" not in best_epoch(None).summary()
    # Per-epoch feasibility (best epoch, checkpoint score, ASHA) is the retain constraint only.
    assert best_epoch(0.3).epoch_values({"log_forget_quality": -2.0, RETAIN: 0.8})[
        "epoch_feasible"
    ] == (1.0)
    assert "relearn recovery <= 0.3" in thresholds(0.3).describe()


def test_the_constraint_reaches_the_stored_study_and_decides_feasibility(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/optuna.db"
    search = ConstrainedOptunaSearch(
        space={"train.lr": FloatDistribution(1e-5, 1e-2, log=True)},
        metric="best_objective",
        mode="max",
        storage_url=url,
        study_name="s/dpo",
    )
    for trial_id, recovery in (("robust", 0.1), ("relearnable", 0.9)):
        best = best_epoch(0.3)
        best.relearn_recovery = recovery
        search.suggest(trial_id)
        search.on_trial_complete(trial_id, {**best.summary(), RELEARN_RECOVERY: recovery})
    stored = optuna.load_study(study_name="s/dpo", storage=url).get_trials()
    assert [t.constraints["max_relearn"] for t in stored] == pytest.approx([-0.2, 0.6])
    assert all(t.constraints["min_retain"] == pytest.approx(-0.3) for t in stored)
    header, rows = trials_table(stored, ["best_objective"])
    feasible = [row[header.index("feasible")] for row in rows]
    assert feasible == [True, False]
    assert "constraint/max_relearn" in header


def test_the_trial_table_shows_the_recovery_only_when_constrained() -> None:
    row = TrialRow("t", 0, "done", True, -2.0, 0.1, 0.8, 0.7, 1, 1, {}, "", {}, 0.125)
    on, off = TrialMetrics(relearn=True), TrialMetrics()
    assert on.columns()[-1] == "relearn_recovery" and row.cells([], on)[-1] == "0.125"
    assert "relearn_recovery" not in off.columns() and len(row.cells([], off)) == len(off.columns())


# ---- the trial-end hook -------------------------------------------------------------------


def inputs(max_recovery: float | None = 0.3) -> TrialInputs:
    return TrialInputs("data", "original", None, thresholds(max_recovery), None, "gold", ("A", "B"))


def test_the_hook_attacks_the_best_adapter_on_the_selection_persons(monkeypatch) -> None:
    from clear_ray.robust import run
    from clear_ray.train.loop import _relearn_constraint

    calls = []

    def fake_check(name, cfg, original, gold, adapter, source, persons):
        calls.append((name, original, gold, adapter, source, persons))
        return CheckResult({RELEARN_RECOVERY: 0.4, "robust/relearn/steps": 20.0}), 1.0

    monkeypatch.setattr(run, "cached_check", fake_check)
    best = best_epoch(0.3)
    values = _relearn_constraint(Config(), inputs(), best, {"adapter.bin": b"w"})
    assert calls == [("relearn", "original", "gold", {"adapter.bin": b"w"}, "data", ("A", "B"))]
    assert values[RELEARN_RECOVERY] == 0.4 and best.relearn_recovery == 0.4
    assert best.summary()["best_constraint/max_relearn"] == pytest.approx(0.1)


def test_an_infeasible_best_epoch_is_not_attacked(monkeypatch) -> None:
    from clear_ray.robust import run
    from clear_ray.train.loop import _relearn_constraint

    monkeypatch.setattr(run, "cached_check", lambda *a: pytest.fail("attacked"))
    best = best_epoch(0.3, retain=0.1)  # below min_retain 0.5
    assert _relearn_constraint(Config(), inputs(), best, {"a": b""}) == {}
    assert best.summary()["feasible"] == 0.0


def test_an_attack_that_did_not_run_fails_the_trial(monkeypatch) -> None:
    from clear_ray.robust import run

    skipped = CheckResult({}, notes=("skipped: 1 person(s), 2 needed",))
    monkeypatch.setattr(run, "cached_check", lambda *a: (skipped, 0.0))
    with pytest.raises(RuntimeError, match="did not run: skipped: 1 person"):
        constraint.relearn_at_trial_end(Config(), inputs(), {"a": b""})


@pytest.mark.slow
def test_a_trial_the_attack_recovers_is_infeasible_and_not_selected(
    one_rank_group, session_config: Config, synthetic_source: str, session_output: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    """One real unlearning trial (2 epochs) with the attack at its end, outside Ray. Its lr is
    too small to remove anything of the selection persons, so the attack measures that all of
    it is there (recovery 1 > X): the relearn constraint, and only it, makes the trial
    infeasible, and the trial table ranks it below a feasible trial with a worse objective."""
    from types import SimpleNamespace

    from clear_ray.data.folds import SELECTION, person_folds
    from clear_ray.eval.gold import reference_evaluation
    from clear_ray.references.prepare import reference_models
    from clear_ray.search.results import trial_rows
    from clear_ray.train.loop import unlearn

    max_recovery = 0.5
    cfg = session_config.replace(
        {
            "output_dir": str(tmp_path),
            "method.name": "ga",
            "train.epochs": 2,
            "train.lr": 1e-4,
            "robust.relearn_steps": 6,
            "robust.relearn_lrs": "3e-3",
            "eval.proxy_items": 8,
            "search.constrain_relearn": max_recovery,
        }
    )
    models = reference_models(session_config, synthetic_source, session_output / "cache")
    split = cfg.data.forget_split
    folds = person_folds(synthetic_source, split, cfg.search.report_fraction, 0)
    fold = folds.fold(SELECTION)
    gold = reference_evaluation(models.gold, synthetic_source, split, cfg.eval, fold=fold)
    trial = TrialInputs(
        synthetic_source, str(models.original), gold.reference,
        Thresholds("log_forget_quality", 0.0, max_relearn_recovery=max_recovery),
        fold, str(models.gold), folds.selection,
    )  # fmt: skip
    reports = []
    unlearn(cfg, trial, rank=0, world_size=1, report=lambda m, c: reports.append(m))

    first, last = reports
    # Not yet attacked: counted as recovery 1, so the shortfall is 1 - X.
    assert RELEARN_RECOVERY not in first
    assert first["best_constraint/max_relearn"] == pytest.approx(1 - max_recovery)
    assert last["robust/relearn/steps"] == 6
    # The best epoch kept what Original knows of the held-out persons (measured: knowledge
    # 1.02, forget metric 0.347 against Original's 0.341 and Gold's 0.003), so the attack finds
    # all of it there: recovery 1 (robust/relearn.py: under MIN_GAP removed).
    assert last["robust/relearn/knowledge_before"] > 1 - MIN_GAP
    recovery = last[RELEARN_RECOVERY]
    assert recovery == 1.0 > max_recovery
    # The retain constraint holds; the relearn constraint alone makes the trial infeasible.
    assert last["best_constraint/min_retain"] <= 0
    assert last["best_constraint/max_relearn"] == pytest.approx(recovery - max_recovery)
    assert last["feasible"] == 0.0
    # The trial table (what the leaderboard, the best trial and its confirm runs take) puts a
    # feasible trial with a worse objective first.
    rival = {"feasible": 1.0, "best_objective": last["best_objective"] - 10.0}

    def result(trial_id: str, number: int, metrics: dict) -> SimpleNamespace:
        path = f"/x/trainable_{trial_id}_{number}_p"
        return SimpleNamespace(metrics=metrics, path=path, error=None, config={})

    rows = trial_rows([result("aaaaa", 1, last), result("bbbbb", 2, rival)], tmp_path)
    assert [(row.trial, row.feasible) for row in rows] == [("bbbbb", True), ("aaaaa", False)]
    assert rows[1].relearn_recovery == recovery
    (attack,) = (tmp_path / "cache" / "robust").glob("relearn-*")  # one cached attack
    items = json.loads((attack / "result.json").read_text())["items"]
    attacked = items["attacked_persons"] + items["held_out_persons"]
    assert sorted(attacked) == sorted(folds.selection)  # never the report fold
