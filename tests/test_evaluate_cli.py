"""python -m clear_ray.evaluate: bad input answers in one line, a real run writes its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clear_ray.cli.evaluate import main
from clear_ray.config import Config
from clear_ray.eval.tasks import TASKS

PER_ITEM_COLUMNS = [
    "item_index",
    "nll_true",
    "nll_paraphrased",
    "nll_perturbed",
    "truth_ratio",
    "clear_truth_ratio",
    "rouge",
    "name",  # the row's person: which fold a forget item fell in (null where rows name nobody)
]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """Looks like a model directory to the CLI's checks (never loaded by these fast tests)."""
    directory = tmp_path / "model"
    directory.mkdir()
    (directory / "config.json").write_text("{}")
    return directory


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, list[str], str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err.strip().splitlines(), captured.out


def assert_rejected(capsys, out: Path, *argv: str, match: str) -> None:
    code, err, stdout = run_cli(capsys, *argv, "--out", str(out))
    assert code == 2
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0]
    assert stdout == ""
    assert not out.exists()


def test_a_missing_checkpoint_exits_2_with_one_line_and_writes_nothing(
    capsys, tmp_path: Path
) -> None:
    assert_rejected(capsys, tmp_path / "out", str(tmp_path / "nowhere"), match="does not exist")


def test_a_directory_without_a_model_is_not_a_checkpoint(capsys, tmp_path: Path) -> None:
    assert_rejected(capsys, tmp_path / "out", str(tmp_path), match="has no config.json")


def test_an_unknown_task_exits_2_with_one_line_and_writes_nothing(
    capsys, tmp_path: Path, checkpoint: Path
) -> None:
    assert_rejected(
        capsys,
        tmp_path / "out",
        str(checkpoint),
        "--tasks",
        "forget_captions,faces",
        match="unknown task 'faces'",
    )


def test_a_missing_adapter_or_gold_exits_2(capsys, tmp_path: Path, checkpoint: Path) -> None:
    for flag in ("--adapter", "--gold"):
        assert_rejected(
            capsys,
            tmp_path / "out",
            str(checkpoint),
            flag,
            str(tmp_path / "missing"),
            match="does not exist",
        )


def test_gold_without_the_forget_quality_task_exits_2(
    capsys, tmp_path: Path, checkpoint: Path
) -> None:
    assert_rejected(
        capsys,
        tmp_path / "out",
        str(checkpoint),
        "--gold",
        str(checkpoint),
        "--tasks",
        "real_world",
        match="forget_captions",
    )


def test_bad_config_values_exit_2(capsys, tmp_path: Path, checkpoint: Path) -> None:
    for flags in (
        ("--forget-split", "forget42"),
        ("--proxy-items", "-3"),
        ("--proxy-items", "many"),
    ):
        assert_rejected(capsys, tmp_path / "out", str(checkpoint), *flags, match="")


def test_bad_input_generates_no_synthetic_data(capsys, tmp_path: Path, checkpoint: Path) -> None:
    output_dir = tmp_path / "runs"
    assert_rejected(
        capsys,
        tmp_path / "out",
        str(checkpoint),
        "--tasks",
        "nope",
        "--output-dir",
        str(output_dir),
        match="unknown task",
    )
    assert not output_dir.exists()


def test_help_names_every_task_and_the_proxy_marker() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "clear_ray.evaluate", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    help_text = " ".join(completed.stdout.split())
    for name in TASKS:
        assert name in help_text
    for flag in ("--adapter", "--gold", "--proxy-items", "--out", "--tracking-uri"):
        assert flag in help_text
    assert "eval/proxy" in help_text
    # What the code does: an MLflow run only when --tracking-uri or --experiment is given.
    assert "Nothing is logged to MLflow unless --tracking-uri or --experiment is given" in help_text


@pytest.mark.slow
def test_a_real_run_writes_metrics_and_per_item_parquet_and_logs_to_mlflow(
    session_config: Config, synthetic_source: str, session_output: Path, tmp_path: Path, capsys
) -> None:
    from mlflow.tracking import MlflowClient

    from clear_ray.references.prepare import reference_models

    models = reference_models(session_config, synthetic_source, session_output / "cache")
    out = tmp_path / "eval"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code, _, stdout = run_cli(
        capsys,
        str(models.original),
        "--data",
        synthetic_source,
        "--gold",
        str(models.gold),
        "--out",
        str(out),
        "--output-dir",
        str(tmp_path / "runs"),
        "--tracking-uri",
        uri,
        "--experiment",
        "evaluate-cli",
    )
    assert code == 0
    assert "forget_captions" in stdout and "log_forget_quality" in stdout

    summary = json.loads((out / "metrics.json").read_text())
    assert summary["eval_kind"] == "full"
    assert summary["tasks"] == list(TASKS)
    metrics = summary["metrics"]
    assert metrics["eval/proxy"] == 0.0
    for key in (
        "forget_metric",
        "retain_metric",
        "real_metric",
        "model_utility",
        "forget_quality",
        "log_forget_quality",
        "forget_quality_js",
        "clear/real_metric",
        "clear/retain_metric",
        "clear/forget_metric",
        "clear/model_utility",
        "clear/forget_quality",
        "clear/log_forget_quality",
        "clear/forget_quality_js",
        "forget_captions/forget_quality",
        "forget_captions/clear_truth_ratio",
        "forget_captions/prob",
        "real_faces/truth_ratio",
        "retain_text_qa/rougeL_recall",
    ):
        assert key in metrics
    assert "forget_text_qa/truth_ratio" not in metrics
    for name in TASKS:
        table = pq.read_table(out / f"{name}.parquet")
        assert table.column_names == PER_ITEM_COLUMNS
        assert table.num_rows > 0
    names = pq.read_table(out / "forget_captions.parquet")["name"].to_pylist()
    assert names and all(names)  # every forget caption names its person

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("evaluate-cli")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["forget_metric"] == pytest.approx(metrics["forget_metric"])
    assert run.data.tags["eval_kind"] == "full"
    assert run.data.tags["objective_task"] == ",".join(summary["objective_task"])
    logged = {item.path for item in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/metrics.json" in logged


@pytest.mark.slow
def test_a_proxy_run_with_an_adapter_is_marked_proxy_and_has_no_rouge(
    session_config: Config, synthetic_source: str, session_output: Path, tmp_path: Path, capsys
) -> None:
    from peft import LoraConfig, get_peft_model

    from clear_ray.models.loading import load_checkpoint
    from clear_ray.models.presets import get_preset
    from clear_ray.references.prepare import reference_models

    models = reference_models(session_config, synthetic_source, session_output / "cache")
    model, _ = load_checkpoint(models.original)
    targets = get_preset(session_config.model.preset).lora_target_modules
    adapter = tmp_path / "adapter"
    get_peft_model(model, LoraConfig(r=2, target_modules=targets)).save_pretrained(str(adapter))
    out = tmp_path / "eval"
    code, _, stdout = run_cli(
        capsys,
        str(models.original),
        "--adapter",
        str(adapter),
        "--data",
        synthetic_source,
        "--gold",
        str(models.gold),
        "--proxy-items",
        "4",
        "--out",
        str(out),
    )
    assert code == 0 and "proxy evaluation" in stdout
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["eval_kind"] == "proxy" and summary["metrics"]["eval/proxy"] == 1.0
    assert not any(key.endswith("rougeL_recall") for key in summary["metrics"])
    assert "log_forget_quality" in summary["metrics"]
    table = pq.read_table(out / "forget_captions.parquet")
    assert table.num_rows == 4
    assert table.column("rouge").null_count == 4
