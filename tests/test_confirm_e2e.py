"""Folds and confirm runs end to end: folds.json, report-fold final evaluation, confirm.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from e2e_scale import SESSION_SET
from mlflow.tracking import MlflowClient

from clear_ray.data.clear import load_clear

# The first search of the test session builds the pretrained base, Original and Gold of the
# default data (80 persons): on 2 loaded cores that alone took over 20 minutes.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]


@pytest.fixture(scope="module")
def search(session_output: Path, synthetic_source: str) -> tuple[subprocess.CompletedProcess, Path]:
    command = [
        sys.executable, "-m", "clear_ray.tune", "--output-dir", str(session_output),
        "--method", "ga", "--num-samples", "1", "--epochs", "1", "--confirm-seeds", "1",
        "--scheduler", "none", "--experiment", "confirm", "--set", "eval.generate=false",
        "--robustness", "none",  # test_robust.py, test_tune_e2e.py check robustness
        # feasible whatever it draws: the diagnostics need a feasible trial
        "--threshold-mode", "absolute", "--min-retain", "0",
        *SESSION_SET,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, done.stderr[-3000:]
    (root,) = [p for p in (session_output / "searches").iterdir() if (p / "ga").is_dir()
               and json.loads((p / "state.json").read_text())["config"]["search.confirm_seeds"]
               == 1]  # fmt: skip
    return done, root


def test_the_console_says_which_fold_it_selects_and_reports_on(search) -> None:
    done, _ = search
    assert "selects on the selection fold" in done.stderr
    assert "reports on the report fold" in done.stderr
    assert "Full evaluations on the report fold" in done.stdout
    assert "| ga (tuned, 1 seed) |" in done.stdout and "| ga (default, 1 seed) |" in done.stdout
    assert "optimism" in done.stdout


def test_the_final_evaluation_scores_the_report_fold_only(search, synthetic_source: str) -> None:
    _, root = search
    folds = json.loads((root / "folds.json").read_text())
    assert set(folds) == {
        "selection", "report", "seed", "report_fraction", "forget_split", "retain_selection",
        "retain_report", "unassigned_rows",
    }  # fmt: skip
    assert not set(folds["selection"]) & set(folds["report"])
    final = root / "ga" / "final_evaluation"
    table = pq.read_table(final / "forget_captions.parquet")
    assert set(table.column("name").to_pylist()) == set(folds["report"])
    # Text rows follow the person their question names, whether or not the config has a name
    # column (forget_text_qa's +tofu rows have none): no selection person's text is reported.
    for task in ("forget_text_qa", "forget_text_perturbed"):
        names = pq.read_table(final / f"{task}.parquet").column("name").to_pylist()
        assert set(names) == set(folds["report"]), task
    rows = load_clear(synthetic_source, "forget10+tofu")
    index = pq.read_table(final / "forget_text_qa.parquet").column("item_index").to_pylist()
    for question in rows.select(index)["question"]:
        assert any(person in question for person in folds["report"])
        assert not any(person in question for person in folds["selection"])
    # Retain persons are in folds too: the report's feasibility is out of sample.
    retain = pq.read_table(final / "retain_captions.parquet").column("name").to_pylist()
    assert set(retain) == set(folds["retain_report"])
    assert not set(retain) & set(folds["retain_selection"])


def test_confirm_json_and_child_runs_tagged_confirm(search, session_output: Path) -> None:
    _, root = search
    record = json.loads((root / "ga" / "confirm.json").read_text())
    assert record["method"] == "ga" and record["fold"] == "report" and record["seeds"] == [1]
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    for label in ("tuned", "default"):
        configuration = record["configurations"][label]
        (confirm_run,) = configuration["runs"]
        assert "clear/forget_metric" in confirm_run["metrics"]
        assert Path(confirm_run["adapter"], "adapter_model.safetensors").is_file()
        child = client.get_run(confirm_run["run_id"])
        assert child.data.tags["confirm"] == "true"
        assert child.data.tags["configuration"] == label
        assert child.data.params["train.seed"] == "1"
        assert "final/clear/forget_metric" in child.data.metrics
    assert record["configurations"]["default"]["trial"] is None
    assert record["configurations"]["tuned"]["epochs"] == 1


def test_the_parent_run_has_folds_and_diagnostics(search, session_output: Path) -> None:
    _, root = search
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    state = json.loads((root / "state.json").read_text())
    parent = client.get_run(state["runs"]["ga"]["parent_id"])
    folds = json.loads((root / "folds.json").read_text())
    persons = f"selection {len(folds['selection'])} / report {len(folds['report'])} persons"
    assert parent.data.tags["folds"].startswith(persons)
    assert {"diagnostics/optimism", "diagnostics/top3_mean_objective"} <= set(parent.data.metrics)
    assert "diagnostics.edge_params" in parent.data.tags
    assert {"folds.json", "confirm.json"} <= {
        a.path for a in client.list_artifacts(parent.info.run_id)
    }


def test_tuned_against_default_is_paired_and_says_what_one_seed_cannot(
    search, session_output: Path
) -> None:
    done, root = search
    verdict = "inconclusive at 1 seed (one pair gives no interval)"
    assert "Did tuning beat the default?" in done.stdout and verdict in done.stdout
    assert "the draw-to-draw variance" in (root / "leaderboard.md").read_text()
    client = MlflowClient(f"sqlite:///{session_output / 'mlflow.db'}")
    state = json.loads((root / "state.json").read_text())
    parent = client.get_run(state["runs"]["ga"]["parent_id"])
    assert parent.data.tags["confirm.verdict"] == verdict
    assert parent.data.metrics["confirm/pairs"] == 1
    assert "confirm/difference_mean" in parent.data.metrics
