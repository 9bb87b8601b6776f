"""`python -m clear_ray.tune` end to end: Ray Tune + Optuna + Ray Train + DeepSpeed + MLflow."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_scale import SESSION_SET
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

SEARCHED = ("train.lr", "method.beta", "method.alpha", "regularizer.l1")


def run_tune(output: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "clear_ray.tune", "--output-dir", str(output), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def search_dir(output: Path, prefix: str) -> Path:
    (found,) = [p for p in (output / "searches").iterdir() if p.name.startswith(prefix)]
    return found


@pytest.fixture(scope="module")
def search(session_output: Path, synthetic_source: str) -> subprocess.CompletedProcess:
    return run_tune(
        session_output, "--method", "dpo", "--num-samples", "2", "--epochs", "1",
        "--confirm-seeds", "0",
        "--experiment", "e2e",
        # Per epoch: scoring only (no generation); the references' and the final evaluations
        # are full, with generation. test_references.py asks for the same evaluations (cache).
        "--set", "eval.proxy_items=8", *SESSION_SET,
    )  # fmt: skip


@pytest.fixture(scope="module")
def runs(search: subprocess.CompletedProcess, session_output: Path):
    assert search.returncode == 0, search.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("e2e")
    all_runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in all_runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in all_runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def test_search_prints_trials_leaderboard_and_the_mlflow_command(search) -> None:
    assert "dpo: trials (objective = log_forget_quality, feasible first)" in search.stdout
    assert "Leaderboard:" in search.stdout
    for row in ("| Original |", "| Gold |", "| dpo |"):
        assert row in search.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in search.stdout


def test_one_parent_run_records_the_search(runs) -> None:
    client, parents, _ = runs
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["method"] == "dpo"
    assert parent.data.params["search.min_retain"] == "0.9"
    assert all(f"search_space.{path}" in parent.data.params for path in SEARCHED)
    # A tuned parameter's default was never used: not a param of the search's run.
    assert not any(path in parent.data.params for path in SEARCHED)
    assert "method.gamma" not in parent.data.params  # a method field dpo does not read
    assert "dpo" in parent.data.tags["mlflow.note.content"]
    # Per-epoch evaluations see the selection fold, the full ones the report fold: both are
    # logged. Only without folds and proxy rows would they be the same evaluation, logged once.
    assert parent.data.tags["folds"].startswith("selection ")
    assert any(key.startswith("original_full/") for key in parent.data.metrics)
    assert {"original/retain_metric", "gold/forget_metric"} <= set(parent.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"trials.md", "trials.csv", "optuna_trials.csv", "plots"} <= artifacts
    assert {"leaderboard.md", "leaderboard_full.csv"} <= artifacts


def test_parent_run_has_system_tags(runs) -> None:
    _, parents, _ = runs
    tags = parents[0].data.tags
    assert tags["seed"] == "0" and tags["world_size"] == "1" and tags["deepspeed.zero_stage"] == "2"
    assert tags["version.torch"].startswith("2.") and tags["git.commit"]


def test_parent_run_has_the_plots(runs) -> None:
    client, parents, _ = runs
    plots = {a.path for a in client.list_artifacts(parents[0].info.run_id, "plots")}
    for name in ("optimisation_history", "forget_vs_retain", "parameter_importances"):
        assert f"plots/{name}.png" in plots


def test_gold_per_item_values_are_logged_once(runs) -> None:
    client, parents, _ = runs
    gold = {a.path for a in client.list_artifacts(parents[0].info.run_id, "reference/gold")}
    assert "reference/gold/forget_captions.parquet" in gold
    assert "reference/gold/reference.json" in gold


def test_best_trial_gets_a_full_final_evaluation(runs) -> None:
    client, parents, _ = runs
    parent = parents[0]
    assert parent.data.metrics["final/eval/proxy"] == 0.0
    assert {"final/forget_quality", "final/retain_metric"} <= set(parent.data.metrics)
    final = {a.path for a in client.list_artifacts(parent.info.run_id, "final_evaluation")}
    assert "final_evaluation/forget_captions.parquet" in final


def test_the_default_robustness_checks_reach_the_json_the_run_and_the_leaderboard(
    runs, search, session_output: Path
) -> None:
    _, parents, _ = runs
    method_dir = search_dir(session_output, "dpo-") / "dpo"
    best = json.loads((method_dir / "robustness.json").read_text())["best"]
    for key in (  # cross_modal: nothing after --modality both
        "robust/quantize/int8/forget_metric",
        "robust/quantize/nf4/forget_metric",  # NF4 runs on the CPU
        "robust/quantize/nf4/same_as_original",
    ):
        assert 0 <= best[key] <= 1
        assert parents[0].data.metrics[key] == pytest.approx(best[key])
    assert best["robust/prompts/worst_log_forget_quality"] <= 0
    # forget10 of the session data has 4 forget persons: the report fold's 2 are one attacked
    # and one held out, so the relearning attack runs; recovery is a fraction of what was removed.
    assert 0 <= best["robust/relearn/net_recovery"] <= 1
    assert parents[0].data.metrics["robust/relearn/net_recovery"] == pytest.approx(
        best["robust/relearn/net_recovery"]
    )
    assert "relearn took" in search.stderr and "needed" not in search.stderr
    # The compact leaderboard leaves the per-scheme values to leaderboard_full.csv.
    assert "int8 forget_metric" not in search.stdout.split("Leaderboard")[1]
    with (search_dir(session_output, "dpo-") / "leaderboard_full.csv").open() as handle:
        (row,) = [row for row in csv.DictReader(handle) if row["model"] == "dpo"]
    key = "robust/quantize/int8/forget_metric"
    assert float(row[key]) == pytest.approx(best[key])


def test_each_trial_is_a_child_run_with_params_metrics_and_adapter(runs) -> None:
    client, parents, children = runs
    assert len(children) == 2
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.tags["feasible"] in ("True", "False")
        assert child.data.tags["stopped"] == "completed"
        assert all(path in child.data.params for path in SEARCHED)
        assert child.data.params["method.name"] == "dpo"
        # Of the method fields, only those dpo reads (beta and alpha, both searched).
        assert not [
            p
            for p in child.data.params
            if p.startswith("method.") and p not in SEARCHED and p != "method.name"
        ]
        history = client.get_metric_history(child.info.run_id, "log_forget_quality")
        assert [m.step for m in history] == [1]
        assert {"retain_metric", "forget_metric", "forget_quality", "loss/dpo"} <= set(
            child.data.metrics
        )
        adapter = {a.path for a in client.list_artifacts(child.info.run_id, "best_adapter")}
        assert "best_adapter/adapter_model.safetensors" in adapter


def test_best_feasible_adapter_is_registered(runs) -> None:
    client, _, children = runs
    ours = {child.info.run_id: child for child in children}
    # The registry is shared by every search; keep this search's versions.
    versions = [v for v in client.search_model_versions("name='clear_ray-dpo'") if v.run_id in ours]
    feasible = [c for c in children if c.data.tags["feasible"] == "True"]
    if feasible:
        best = max(child.data.metrics["best_objective"] for child in feasible)
        assert len(versions) == 1  # ties may register either of the tied trials
        registered = ours[versions[0].run_id]
        assert registered.data.tags["feasible"] == "True"
        assert registered.data.metrics["best_objective"] == best
        # A pyfunc model under the alias `best` (loading and predict: test_serving.py).
        version = client.get_model_version_by_alias("clear_ray-dpo", "best")
        assert version.version == versions[0].version
        assert version.tags["trial"] == registered.data.tags["clear_ray.trial_id"]
        model = {a.path for a in client.list_artifacts(registered.info.run_id, "model")}
        assert "model/MLmodel" in model
    else:
        assert versions == []


def test_optuna_records_every_trial_with_its_constraint(runs, session_output: Path) -> None:
    _, _, children = runs
    with (search_dir(session_output, "dpo-") / "dpo" / "optuna_trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["state"] for row in rows] == ["COMPLETE", "COMPLETE"]
    run_ids = {child.data.tags["clear_ray.trial_id"]: child.info.run_id for child in children}
    assert {row["tune_trial_id"]: row["mlflow_run_id"] for row in rows} == run_ids
    for row in rows:  # one column each, numbers (not Python reprs): float() reads them
        float(row["best_objective"]), float(row["constraint/min_retain"])
        assert [float(row[path]) for path in SEARCHED]


def test_the_best_feasible_trial_is_on_the_search_run(runs) -> None:
    _, parents, children = runs
    parent = parents[0]
    for child in children:  # sortable: only feasible trials have it; no -1e6 anywhere
        feasible = child.data.tags["feasible"] == "True"
        assert ("feasible_objective" in child.data.metrics) == feasible
        assert not {"best_score", "epoch_score"} & set(child.data.metrics)
        assert min(child.data.metrics.values()) > -1e5
    feasible = [c for c in children if c.data.tags["feasible"] == "True"]
    if not feasible:
        assert "No trial met the thresholds" in parent.data.tags["mlflow.note.content"]
        return
    # The Description names the best trial's run (of tied objectives, either may be it).
    (best,) = [c for c in feasible if c.info.run_id in parent.data.tags["mlflow.note.content"]]
    top = max(child.data.metrics["feasible_objective"] for child in feasible)
    metrics = parent.data.metrics
    assert metrics["best/log_forget_quality"] == best.data.metrics["feasible_objective"] == top
    for name in ("clear/retain_metric", "clear/forget_metric", "epoch"):
        assert metrics[f"best/{name}"] == best.data.metrics[f"best_{name}"]
    for path in SEARCHED:
        assert parent.data.params[f"best.{path}"] == best.data.params[path]


def test_sampled_params_differ_between_trials(runs) -> None:
    _, _, children = runs
    learning_rates = {child.data.params["train.lr"] for child in children}
    assert len(learning_rates) == 2


def test_the_search_ends_with_its_report(runs, search, session_output: Path) -> None:
    client, parents, _ = runs
    folder = search_dir(session_output, "dpo-")
    assert f"Report (Table 1, L1 question, plots): {folder / 'report.html'}" in search.stdout
    page = (folder / "report.html").read_text()
    assert page.count("<table>") >= 3 and 'src="data:image/png;base64,' in page
    tuned = next(line for line in (folder / "report.md").read_text().splitlines()
                 if line.startswith("| dpo (tuned) |"))  # fmt: skip
    assert "final evaluation of trial" in tuned and "| — |" not in tuned
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"report.md", "report.html"} <= artifacts
