"""Specification of the robustness checks: relearning, quantization, prompts,
cross-modal leakage, and what a search writes from them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clear_ray.config import ROBUST_CHECKS, Config, EvalConfig, RobustConfig
from clear_ray.data.collate import Collator
from clear_ray.data.prompts import CAPTION_QUESTIONS
from clear_ray.errors import ConfigError
from clear_ray.eval import suite
from clear_ray.eval.reference import GoldReference, TaskReference
from clear_ray.eval.scoring import ScoringItem, score_items
from clear_ray.eval.suite import TaskResult, aggregate
from clear_ray.eval.tasks import CAPTIONS, TASKS
from clear_ray.models.tiny import build_tiny_llava, build_tiny_processor, train_tokenizer
from clear_ray.robust import cross_modal, prompts, quantize
from clear_ray.robust.context import (
    TEXT_TASKS,
    VISUAL_TASKS,
    CheckContext,
    CheckResult,
    PersonData,
    row_mask,
    split_persons,
)
from clear_ray.robust.relearn import attacked, knowledge, recovery
from clear_ray.robust.run import (
    BEST,
    CHECKS,
    CheckOutcome,
    confirm_adapters,
    report_persons,
    write_robustness,
)

# ---- configuration and registry ------------------------------------------------------------


def test_the_registry_holds_exactly_the_configs_checks() -> None:
    assert tuple(CHECKS) == ROBUST_CHECKS


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("all", ROBUST_CHECKS),
        ("none", ()),
        ("", ()),
        ("prompts, relearn", ("relearn", "prompts")),  # registry order, spaces allowed
    ],
)
def test_robust_checks_are_parsed_in_registry_order(spec: str, names: tuple) -> None:
    assert RobustConfig(checks=spec).names() == names


def test_an_unknown_check_fails_validation_with_the_known_ones_named() -> None:
    with pytest.raises(ConfigError, match="relearn, quantize, prompts, cross_modal"):
        Config().replace({"robust.checks": "relearn,quantise"}).validate()


def test_every_check_runs_by_default() -> None:
    assert RobustConfig().names() == ROBUST_CHECKS


# ---- relearning: the arithmetic and the persons ----------------------------------------------


def test_recovery_is_the_fraction_of_the_gap_closed() -> None:
    # Original 0.6, Gold 0.1, unlearned 0.2: back to 0.5 closes 0.3 of the 0.4 gap.
    assert recovery(after=0.5, before=0.2, original=0.6, gold=0.1) == pytest.approx(0.75)
    assert recovery(after=0.2, before=0.2, original=0.6, gold=0.1) == 0.0


def test_recovery_is_clipped_to_nothing_and_everything() -> None:
    assert recovery(after=0.1, before=0.2, original=0.6, gold=0.1) == 0.0
    assert recovery(after=0.7, before=0.2, original=0.6, gold=0.1) == 1.0


def test_a_removal_within_the_noise_counts_as_nothing_removed() -> None:
    # 0.02 removed of an Original-Gold distance of 0.5 (4 % < MIN_GAP): all still there.
    assert recovery(after=0.3, before=0.58, original=0.6, gold=0.1) == 1.0
    assert recovery(after=0.55, before=0.6, original=0.6, gold=0.1) == 1.0


def test_knowledge_places_a_value_between_gold_and_original() -> None:
    assert knowledge(0.4, gold=0.2, original=0.6) == pytest.approx(0.5)
    assert math.isnan(knowledge(0.4, gold=0.3, original=0.3))


def test_persons_split_in_two_disjoint_seeded_halves() -> None:
    persons = ("Ann", "Bob", "Cy", "Dee", "Eve")
    attacked, held = split_persons(persons, seed=0)
    assert set(attacked) | set(held) == set(persons) and not set(attacked) & set(held)
    assert (len(attacked), len(held)) == (3, 2)
    assert split_persons(tuple(reversed(persons)), seed=0) == (attacked, held)
    assert any(split_persons(persons, seed) != (attacked, held) for seed in range(1, 6))


def test_rows_belong_to_a_person_by_name_else_by_the_name_in_their_text() -> None:
    import datasets

    questions = ["Where does Ann Lee live?", "What does Ann Lee write?", "Bob Ray?", "x"]
    questions += ["Did Bob Ray meet Ann Lee?", "Who is Ann Leeson?"]
    rows = datasets.Dataset.from_dict(
        {
            "name": ["Ann Lee", "", "", "Bob Ray", "", ""],
            "question": questions,
            "answer": ["", "", "", "Ann Lee", "", ""],  # a named row is never read by its text
        }
    )
    # The first name in the text decides (Bob Ray's row); a longer name is not read as Ann Lee;
    # a row naming no one belongs to no person.
    everyone = ("Ann Lee", "Bob Ray")
    ann, bob = row_mask(rows, ("Ann Lee",), everyone), row_mask(rows, ("Bob Ray",), everyone)
    assert ann.tolist() == [True, True, False, False, False, False]
    assert bob.tolist() == [False, False, True, True, True, False]


def test_report_persons_are_the_folds_report_fold_else_every_forget_person(
    tmp_path: Path, synthetic_source: str, session_config: Config
) -> None:
    everyone = report_persons(tmp_path, synthetic_source, "forget10")
    assert len(everyone) == session_config.data.synthetic_persons // 10  # forget10: a tenth
    (tmp_path / "folds.json").write_text(
        json.dumps({"selection": [everyone[0]], "report": [everyone[1]], "report_fraction": 0.5})
    )
    assert report_persons(tmp_path, synthetic_source, "forget10") == (everyone[1],)
    (tmp_path / "folds.json").write_text(
        json.dumps({"selection": [], "report": [everyone[1]], "report_fraction": 0})
    )
    assert report_persons(tmp_path, synthetic_source, "forget10") == everyone


def test_person_data_keeps_only_those_persons_rows_of_the_forget_configs(
    synthetic_source: str,
) -> None:
    everyone = report_persons(Path("/nonexistent"), synthetic_source, "forget10")
    data = PersonData(synthetic_source, "forget10", everyone[:1])
    captions = data["forget10_perturbed"]
    assert len(captions) > 0 and set(captions["name"]) == {everyone[0]}
    qa = data["forget10+tofu"]
    text_rows = TASKS["forget_text_qa"].eligible_rows(qa)
    assert len(text_rows) > 0
    assert all(everyone[0] in qa[int(i)]["answer"] for i in text_rows)
    assert all(everyone[1] not in qa[int(i)]["question"] for i in text_rows)
    assert len(data["retain_perturbed"]) == len(
        suite.TaskData(synthetic_source)["retain_perturbed"]
    )


# ---- quantization --------------------------------------------------------------------------


def test_int8_round_trip_errs_by_at_most_half_a_step_per_row() -> None:
    weight = torch.randn(6, 10) * torch.arange(1, 7)[:, None]
    rounded = quantize.int8_round_trip(weight)
    step = weight.abs().amax(dim=1, keepdim=True) / 127
    assert torch.all((rounded - weight).abs() <= step / 2 + 1e-7)
    assert torch.allclose(quantize.int8_round_trip(rounded), rounded, atol=1e-6)  # on the grid
    assert len(torch.unique(torch.round(rounded / step))) <= 255


@pytest.fixture(scope="module")
def tiny() -> tuple:
    corpus = ["USER: ASSISTANT: Describe the image.", "A woman with red hair on a beach."]
    tokenizer = train_tokenizer(corpus)
    return build_tiny_llava(tokenizer, seed=0).eval(), Collator(build_tiny_processor(tokenizer))


def test_the_relearning_attack_does_not_depend_on_what_ran_before_in_its_process() -> None:
    """Ray reuses a task's process, so the global generator's state before an attack varies;
    the attacked model must not (it did: relearn recovery 0.207-0.238 for the same adapters)."""
    from types import SimpleNamespace

    from clear_ray.data.collate import caption_example

    caption = "A woman with red hair on a beach."
    tokenizer = train_tokenizer(["USER: ASSISTANT: Describe the image.", caption])
    image = Image.new("RGB", (32, 32), (200, 40, 30))
    ctx = SimpleNamespace(cfg=Config().replace({"robust.relearn_batch_size": 2}))
    weights = []
    for state in (1, 2):
        model = build_tiny_llava(tokenizer, seed=0)
        torch.manual_seed(state)  # what an earlier task left behind
        merged = attacked(
            model, build_tiny_processor(tokenizer), [caption_example(image, caption)] * 4, ctx
        )
        weights.append(merged.state_dict())
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_quantization_changes_nlls_but_every_metric_keeps_its_contract(tiny) -> None:
    model, collator = tiny
    image = Image.new("RGB", (32, 32), (200, 40, 30))
    items = [
        ScoringItem("Describe the image.", image, ("A woman.", "A woman on a beach.", "red", "x"))
        for _ in range(3)
    ]
    before = np.stack(score_items(model, collator, items, batch_size=8))
    assert quantize.quantize_weights(model, quantize.int8_round_trip) > 0
    assert model.lm_head.weight.dtype == torch.float32
    after = np.stack(score_items(model, collator, items, batch_size=8))
    assert not np.allclose(before, after) and np.allclose(before, after, atol=0.05)
    result = TaskResult(after[:, 0], after[:, 1], list(after[:, 2:]), None, CAPTIONS)
    reference = GoldReference({"forget_captions": TaskReference.of(result)})
    metrics = aggregate({"forget_captions": result}, reference, modality="visual")
    assert 0 < metrics["forget_metric"] <= 1
    assert metrics["forget_quality"] == 1.0 and metrics["log_forget_quality"] == 0.0


def test_nf4_is_skipped_on_cpu_and_says_why() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert quantize.skipped_because(quantize.SCHEMES["nf4"]) == "no GPU"
    assert quantize.skipped_because(quantize.SCHEMES["int8"]) is None


# ---- prompts -------------------------------------------------------------------------------

LEAKY = CAPTION_QUESTIONS[4]


def fake_scores(model, collator, items, batch_size):
    """Under LEAKY the model knows every caption: lower NLL on the true caption and the
    paraphrase than on the perturbed ones; under any other prompt it is indifferent (Gold)."""
    del model, collator, batch_size
    scores = []
    for index, item in enumerate(items):
        nll = np.full(len(item.targets), 3.0) + 0.01 * index
        if item.question == LEAKY:
            nll[:2], nll[2:] = 1.0, 1.5 + 0.01 * index
        scores.append(nll)
    return scores


def test_the_worst_prompt_is_the_one_that_leaks(monkeypatch, synthetic_source: str) -> None:
    monkeypatch.setattr(suite, "score_items", fake_scores)

    model = torch.nn.Module()  # never called: the scores above stand for its forward passes
    data = suite.TaskData(synthetic_source)
    config = EvalConfig(generate=False)
    _, by_variant = prompts.score_variants(model, model, None, data, "forget10", config)
    assert set(by_variant) == {"default", *(f"prompt_{i}" for i in range(9)), "paraphrase"}
    worst = prompts.worst_case(by_variant)
    assert worst["worst_forget_metric_variant"] == f"prompt_{CAPTION_QUESTIONS.index(LEAKY)}"
    assert worst["worst_forget_metric"] > by_variant["prompt_0"]["forget_metric"]


def test_the_worst_case_takes_each_metric_at_its_own_worst_variant() -> None:
    by_variant = {
        "a": {"forget_metric": 0.2, "log_forget_quality": -9.0, "forget_quality_js": 0.5},
        "b": {"forget_metric": 0.4, "log_forget_quality": -1.0, "forget_quality_js": 0.9},
    }
    worst = prompts.worst_case(by_variant)
    assert (worst["worst_forget_metric"], worst["worst_forget_metric_variant"]) == (0.4, "b")
    assert (worst["worst_log_forget_quality"], worst["worst_log_forget_quality_variant"]) == (
        -9.0,
        "a",
    )


def test_the_paraphrase_variant_scores_the_paraphrase_as_the_truth() -> None:
    row = {"image": None, "caption": "c", "paraphrased_caption": "p", "perturbed_captions": ["x"]}
    assert prompts.variants()["paraphrase"].build_item(row).targets == ("p", "p", "x")
    assert prompts.variants()["prompt_3"].build_item(row).question == CAPTION_QUESTIONS[3]


# ---- cross-modal ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("modality", "tasks"), [("visual", TEXT_TASKS), ("text", VISUAL_TASKS), ("both", ())]
)
def test_cross_modal_scores_the_modality_that_was_not_forgotten(modality, tasks) -> None:
    assert cross_modal.other_tasks(modality) == tasks


def context(cfg: Config, source: str, persons: tuple[str, ...], tmp: Path) -> CheckContext:
    return CheckContext(cfg, "original", "gold", None, source, persons, tmp)


def test_after_visual_forgetting_the_text_rows_are_scored(
    tmp_path: Path, synthetic_source: str
) -> None:
    cfg = Config().replace({"data.modality": "visual", "data.forget_split": "forget10"})
    persons = report_persons(tmp_path, synthetic_source, "forget10")
    ctx = context(cfg, synthetic_source, persons, tmp_path)
    data = ctx.data()
    config = ctx.eval_config(data, cross_modal.other_tasks("visual"))
    assert config.tasks == "forget_text_qa,forget_text_perturbed" and not config.generate
    qa = data["forget10+tofu"]
    rows = TASKS["forget_text_qa"].eligible_rows(qa)
    assert len(rows) > 0 and all(qa[int(i)]["image"] is None for i in rows)


def test_relearning_with_one_person_is_skipped_with_a_note(tmp_path: Path) -> None:
    from clear_ray.robust import relearn

    result = relearn.check(context(Config(), "unused", ("A",), tmp_path))
    assert result.metrics == {} and "skipped" in result.notes[0]


def test_cross_modal_after_both_is_skipped_with_a_note(tmp_path: Path) -> None:
    ctx = context(Config(), "unused", ("A",), tmp_path)
    result = cross_modal.check(ctx)
    assert result.metrics == {} and "skipped" in result.notes[0]


# ---- what a search writes ------------------------------------------------------------------


def test_robustness_json_holds_each_models_metrics_and_details_their_items(
    tmp_path: Path,
) -> None:
    result = CheckResult({"robust/quantize/int8/forget_metric": 0.3}, {"x": [1]}, ("nf4: no",))
    outcomes = {BEST: {"quantize": CheckOutcome(result, 2.5, {})}}
    summary, details = write_robustness(tmp_path, outcomes)
    assert json.loads(summary.read_text()) == {BEST: {"robust/quantize/int8/forget_metric": 0.3}}
    detail = json.loads((details / BEST / "quantize.json").read_text())
    assert detail["seconds"] == 2.5 and detail["notes"] == ["nf4: no"]


def test_confirm_runs_are_checked_by_seed(tmp_path: Path) -> None:
    (tmp_path / "a1").mkdir()
    runs = [{"seed": 1, "adapter": str(tmp_path / "a1")}, {"seed": 2, "adapter": "/gone"}]
    confirm = {"configurations": {"tuned": {"runs": runs}}}
    (tmp_path / "confirm.json").write_text(json.dumps(confirm))
    assert confirm_adapters(tmp_path) == {"tuned/seed1": tmp_path / "a1"}


# ---- end to end: relearning as a cached Ray task --------------------------------------------


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from clear_ray.runtime.cluster import ray_env_vars

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": ray_env_vars()},
    )
    yield
    ray.shutdown()


def zero_adapter(original: Path, cfg: Config, out: Path) -> Path:
    """An adapter that changes nothing (peft initialises B = 0): an Original-like model."""
    from clear_ray.models.loading import load_checkpoint
    from clear_ray.models.lora import attach_lora
    from clear_ray.models.presets import get_preset

    model, _ = load_checkpoint(original)
    attach_lora(model, cfg.lora, get_preset(cfg.model.preset).lora_target_modules).save_pretrained(
        str(out)
    )
    return out


@pytest.mark.slow
def test_relearning_recovers_more_on_an_original_like_model_than_gold_learns(
    ray_session, session_config: Config, synthetic_source: str, session_output: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    import os

    from clear_ray.references.prepare import reference_models
    from clear_ray.robust.run import run_checks

    models = reference_models(session_config, synthetic_source, session_output / "cache")
    cfg = session_config.replace(
        {"output_dir": str(tmp_path), "robust.relearn_steps": 4, "eval.batch_size": 64}
    )
    adapter = zero_adapter(models.original, cfg, tmp_path / "zero")
    persons = report_persons(tmp_path, synthetic_source, cfg.data.forget_split)

    def run() -> CheckOutcome:
        outcomes = run_checks(
            cfg, ("relearn",), {"zero": adapter}, str(models.original), str(models.gold),
            synthetic_source, persons,
        )  # fmt: skip
        return outcomes["zero"]["relearn"]

    outcome = run()
    metrics = outcome.result.metrics
    assert outcome.ran_at["pid"] != os.getpid()
    assert outcome.ran_at["resources"] == {"CPU": cfg.search.cpus_per_worker}
    assert metrics["robust/relearn/recovery"] == 1.0  # nothing was removed
    # After the attack the Original-like model knows the held-out person as Original does;
    # Gold, which never knew them, gains far less from the same attack (the floor).
    assert metrics["robust/relearn/knowledge_after"] > 0.8
    assert metrics["robust/relearn/gold_recovery"] < metrics["robust/relearn/knowledge_after"] - 0.3
    held = outcome.result.items["held_out_persons"]
    assert held and not set(held) & set(outcome.result.items["attacked_persons"])
    assert run().seconds == outcome.seconds  # cached: the same record, not a second attack
    assert len(list((tmp_path / "cache" / "robust").glob("relearn-*"))) == 1


def test_mean_metrics_averages_each_metric_over_the_models_that_have_it() -> None:
    from clear_ray.robust.run import mean_metrics

    rows = [{"robust/a": 1.0, "robust/b": 0.0}, {"robust/a": 3.0}]
    assert mean_metrics(rows) == {"robust/a": 2.0, "robust/b": 0.0}
