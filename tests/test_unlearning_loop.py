"""The per-worker loop alone (outside Ray/Tune): DeepSpeed steps, evaluation, adapter reports."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from clear_ray.config import Config
from clear_ray.eval.gold import reference_evaluation
from clear_ray.methods import METHODS
from clear_ray.references.prepare import reference_models
from clear_ray.train.inputs import TrialInputs
from clear_ray.train.loop import unlearn
from clear_ray.train.selection import Thresholds

pytestmark = pytest.mark.slow
# Per-epoch scoring without greedy generation: what this test checks are NLLs and probabilities.
NO_GENERATION = {"eval.generate": False}


@pytest.fixture(scope="module")
def trial_inputs(
    session_config: Config, synthetic_source: str, session_output: Path
) -> TrialInputs:
    models = reference_models(session_config, synthetic_source, session_output / "cache")
    split = session_config.data.forget_split
    eval_config = session_config.replace(NO_GENERATION).eval
    gold = reference_evaluation(models.gold, synthetic_source, split, eval_config)
    return TrialInputs(
        synthetic_source,
        str(models.original),
        gold.reference,
        Thresholds("log_forget_quality", 0.0),
    )


def test_gradient_ascent_reports_every_epoch_with_an_adapter_and_forgets(
    one_rank_group, trial_inputs: TrialInputs, session_config: Config, tmp_path: Path
) -> None:
    cfg = session_config.replace(
        {"method.name": "ga", "train.epochs": 2, "train.lr": 3e-3, **NO_GENERATION}
    )
    reports = []

    def report(metrics: dict[str, float], checkpoint: Path | None) -> None:
        files = sorted(p.name for p in checkpoint.iterdir()) if checkpoint else []
        saved = json.loads((checkpoint / "epoch_metrics.json").read_text()) if checkpoint else {}
        history = json.loads((checkpoint / "epoch_history.json").read_text())
        reports.append((metrics, files, saved, history))
        shutil.copytree(checkpoint, tmp_path / f"epoch{int(metrics['epoch'])}")

    unlearn(cfg, trial_inputs, rank=0, world_size=1, report=report)

    assert [metrics["epoch"] for metrics, *_ in reports] == [1.0, 2.0]
    for metrics, files, saved, history in reports:
        assert "adapter_model.safetensors" in files and "adapter_config.json" in files
        assert saved["epoch"] == metrics["epoch"]
        # every epoch so far, as reported: what a resumed trial's record is rebuilt from
        so_far = [saved for _, _, saved, _ in reports[: int(metrics["epoch"])]]
        assert json.dumps(history) == json.dumps(so_far)  # as text: a NaN equals itself
    resumed = []
    unlearn(
        cfg,
        trial_inputs,
        0,
        1,
        lambda m, c: resumed.append(json.loads((c / "epoch_history.json").read_text())),
        resume_from=tmp_path / "epoch1",
    )
    ((earlier, latest),) = resumed  # one report (epoch 2); its history goes back to epoch 1
    assert json.dumps(earlier) == json.dumps(reports[0][2]) and latest["epoch"] == 2.0
    # gradient ascent drives the forget loss up and the model's grip on forget captions down
    first, last = reports[0][0], reports[1][0]
    assert last["loss/forget_nll"] > first["loss/forget_nll"]
    assert last["forget_captions/prob"] < first["forget_captions/prob"]
    assert {"forget_metric", "retain_metric", "forget_quality", "log_forget_quality"} <= set(last)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_an_epoch_and_reports_clears_metrics(
    one_rank_group, trial_inputs: TrialInputs, session_config: Config, method: str
) -> None:
    """Each method's own machinery (reference model, hidden states, SCRUB's max pass) through
    the worker loop; the search plumbing around it is method-agnostic (test_method_all_e2e.py
    runs two methods through it)."""
    cfg = session_config.replace({"method.name": method, "train.epochs": 1, **NO_GENERATION})
    reports = []
    unlearn(cfg, trial_inputs, 0, 1, lambda metrics, checkpoint: reports.append(metrics))

    (metrics,) = reports
    assert metrics["epoch"] == 1.0
    losses = {key: value for key, value in metrics.items() if key.startswith("loss/")}
    assert set(losses) - {"loss/l1", "loss/l1_weighted"}, metrics  # the method's own loss
    assert all(math.isfinite(value) for value in losses.values()), losses
    for key in ("clear/forget_metric", "clear/retain_metric", "clear/log_forget_quality"):
        assert math.isfinite(metrics[key]), (key, metrics)


@pytest.mark.parametrize(
    ("search", "generated"),
    [({}, False), ({"search.retain_metric": "retain_metric"}, True)],
)
def test_an_epoch_generates_for_rouge_only_when_a_selection_metric_reads_it(
    one_rank_group, trial_inputs: TrialInputs, session_config: Config, search, generated
) -> None:
    """By default nothing that selects reads ROUGE, so epochs score without generating; the
    extended retain metric (ROUGE in its harmonic mean) makes them generate."""
    cfg = session_config.replace(
        {"method.name": "ga", "train.epochs": 1, "eval.generate": True, **search}
    )
    reports = []
    unlearn(cfg, trial_inputs, 0, 1, lambda metrics, checkpoint: reports.append(metrics))

    (metrics,) = reports
    assert ("retain_captions/rougeL_recall" in metrics) is generated
    assert math.isfinite(metrics["clear/retain_metric"])
