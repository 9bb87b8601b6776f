"""Specification of the robustness checks: relearning, quantization, prompts,
cross-modal leakage, and what a search writes from them."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clear_ray.config import Config, EvalConfig, RobustConfig, resolve_config
from clear_ray.data.collate import Collator
from clear_ray.data.prompts import CAPTION_QUESTIONS
from clear_ray.errors import ConfigError
from clear_ray.eval import suite
from clear_ray.eval.scoring import ScoringItem, score_items
from clear_ray.eval.suite import TaskResult
from clear_ray.eval.tasks import TASKS
from clear_ray.models.loading import save_checkpoint
from clear_ray.models.tiny import build_tiny_llava, build_tiny_processor, train_tokenizer
from clear_ray.references.prepare import ReferenceModels
from clear_ray.robust import cross_modal, prompts, quantize, relearn
from clear_ray.robust.checks import ROBUST_CHECKS
from clear_ray.robust.context import (
    TEXT_TASKS,
    VISUAL_TASKS,
    CheckContext,
    CheckResult,
    PersonData,
    knowledge,
    row_mask,
    split_persons,
    worst_knowledge,
)
from clear_ray.robust.relearn import attacked, gross_recovery, net_recovery
from clear_ray.robust.run import (
    BEST,
    CheckOutcome,
    confirm_adapters,
    report_persons,
    write_robustness,
)

# ---- configuration and registry ------------------------------------------------------------


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


def test_the_attack_learning_rates_are_parsed_sorted_and_validated() -> None:
    assert RobustConfig(relearn_lrs="1e-3, 3e-4,1e-3").lrs() == (3e-4, 1e-3)
    assert len(RobustConfig().lrs()) >= 2  # a sweep by default, not one setting
    for bad in ("1e-3,fast", "0", "-1e-3", ""):
        with pytest.raises(ConfigError, match=r"robust.relearn_lrs: .* is not a positive"):
            Config().replace({"robust.relearn_lrs": bad}).validate()


def test_the_7b_recipe_attacks_at_its_own_learning_rate_scale() -> None:
    """LLaVA-7B unlearns at lr 1e-5 (CLEAR): an attack at the tiny preset's 1e-3 would be a
    hundred times that; its sweep spans the 7B unlearning lr as the tiny one spans 1e-3."""
    tiny, big = resolve_config({}), resolve_config({"model.preset": "llava-1.5-7b"})
    for cfg in (tiny, big):
        lrs = cfg.robust.lrs()
        assert min(lrs) < cfg.train.lr < max(lrs) and max(lrs) / min(lrs) == pytest.approx(10)
    assert max(big.robust.lrs()) < min(tiny.robust.lrs()) / 3


# ---- relearning: the arithmetic and the persons ----------------------------------------------


def test_gross_recovery_is_the_fraction_of_the_gap_closed() -> None:
    # Original 0.6, Gold 0.1, unlearned 0.2: back to 0.5 closes 0.3 of the 0.4 gap.
    assert gross_recovery(after=0.5, before=0.2, original=0.6, gold=0.1) == pytest.approx(0.75)
    assert gross_recovery(after=0.2, before=0.2, original=0.6, gold=0.1) == 0.0
    assert gross_recovery(after=0.1, before=0.2, original=0.6, gold=0.1) == 0.0  # clipped
    assert gross_recovery(after=0.7, before=0.2, original=0.6, gold=0.1) == 1.0
    # 0.02 removed of an Original-Gold distance of 0.5 (4 % < MIN_GAP): all still there.
    assert gross_recovery(after=0.3, before=0.58, original=0.6, gold=0.1) == 1.0


# Original 0.6; Gold 0.1 before the attack, 0.3 after it: the attack alone teaches 0.2.
NET = {"original": 0.6, "gold_before": 0.1, "gold_after": 0.3}


def test_net_recovery_counts_only_what_comes_back_above_attacked_gold() -> None:
    # Forgotten to Gold's level, 0.45 after: knowledge after (0.45-0.3)/(0.6-0.3) = 0.5, while
    # the gross ratio (0.45-0.1)/(0.6-0.1) = 0.7 credits the attack's floor too.
    assert net_recovery(after=0.45, before=0.1, **NET) == pytest.approx(0.5)
    assert gross_recovery(0.45, 0.1, 0.6, 0.1) == pytest.approx(0.7)
    # A model that learns from the attack exactly what Gold learns recovered nothing.
    assert net_recovery(after=0.3, before=0.1, **NET) == 0.0
    assert gross_recovery(0.3, 0.1, 0.6, 0.1) == pytest.approx(0.4)


def test_below_gold_earns_nothing_for_climbing_back_to_gold() -> None:
    # before 0.05 < Gold's 0.1 counts as all removed; after at attacked Gold's 0.3: nothing back.
    assert net_recovery(after=0.3, before=0.05, **NET) == 0.0
    assert net_recovery(after=0.45, before=0.05, **NET) == pytest.approx(0.5)


def test_net_recovery_of_a_partial_removal_is_the_share_of_what_was_removed() -> None:
    # before 0.35: knowledge (0.35-0.1)/0.5 = 0.5 left, 0.5 removed. After 0.525: knowledge
    # (0.525-0.3)/0.3 = 0.75, so 0.25 of the removed 0.5 came back: 0.5.
    assert net_recovery(after=0.525, before=0.35, **NET) == pytest.approx(0.5)
    assert net_recovery(after=0.6, before=0.35, **NET) == 1.0
    assert net_recovery(after=0.45, before=0.35, **NET) == pytest.approx(0.0, abs=1e-12)
    assert net_recovery(after=0.3, before=0.6, **NET) == 1.0  # nothing was removed


def test_an_attack_that_teaches_gold_originals_level_measures_nothing() -> None:
    # Gold after 0.59: Original leads attacked Gold by 0.01, under 5 % of its lead of 0.5.
    floor = {**NET, "gold_after": 0.59}
    assert math.isnan(net_recovery(after=0.6, before=0.1, **floor))
    assert math.isnan(net_recovery(after=0.4, before=0.1, original=0.6, gold_after=0.2,
                                   gold_before=0.7))  # fmt: skip


def test_knowledge_places_a_value_between_gold_and_original_under_one_condition() -> None:
    assert knowledge(0.4, gold=0.2, original=0.6) == pytest.approx(0.5)
    assert math.isnan(knowledge(0.4, gold=0.3, original=0.3))  # zero denominator
    assert math.isnan(knowledge(0.4, gold=0.5, original=0.3))  # Original below Gold: no scale
    assert math.isnan(knowledge(0.4, gold=0.2, original=0.21, min_gap=0.05))
    assert worst_knowledge({"a": 0.2, "b": float("nan"), "c": 0.7}) == (0.7, "c")
    value, name = worst_knowledge({"a": float("nan")})
    assert math.isnan(value) and name is None


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


def test_nf4_takes_each_blocks_absmax_and_the_nearest_of_qloras_16_codes() -> None:
    first = torch.zeros(64)
    first[:4] = torch.tensor([0.8, -0.4, 0.2, -0.06])
    weight = torch.cat([first, torch.tensor([-2.0, 1.0, 0.3, 0.0])]).reshape(4, 17)
    # Block 1 (64 values), absmax 0.8: 0.8/0.8 = 1 -> code 15 (1.0); -0.5 -> code 2 (-0.5251,
    # 0.025 away; -0.3949 is 0.105); 0.25 -> code 10 (0.2461); -0.075 -> code 6 (-0.0911,
    # 0.016 away; 0 is 0.075); zeros -> code 7 (0). Block 2 (the short last one, 4 values),
    # absmax 2: -1 -> code 0; 0.5 -> code 12 (0.4407, 0.059 away; 0.5626 is 0.063);
    # 0.15 -> code 9 (0.1609); 0 -> 0.
    codes = quantize.NF4_CODES
    expected = torch.zeros(68)
    expected[:4] = 0.8 * torch.tensor([codes[15], codes[2], codes[10], codes[6]])
    expected[64:] = 2.0 * torch.tensor([codes[0], codes[12], codes[9], codes[7]])
    rounded = quantize.nf4_round_trip(weight)
    assert rounded.shape == weight.shape
    assert torch.allclose(rounded.reshape(-1), expected, atol=1e-7)
    assert quantize.nf4_round_trip(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]
    bf16 = quantize.nf4_round_trip(weight.to(torch.bfloat16))
    assert bf16.dtype == torch.bfloat16


def test_nf4_codes_are_qloras_normal_quantiles() -> None:
    codes = torch.tensor(quantize.NF4_CODES)
    assert len(codes) == 16 and codes[0] == -1 and codes[-1] == 1 and 0.0 in codes
    assert torch.all(codes[1:] > codes[:-1])
    assert ((codes > 0).sum(), (codes < 0).sum()) == (8, 7)  # asymmetric: 8 positive, 7 negative


def test_the_share_of_moved_weights_that_rounding_returns_to_originals() -> None:
    # One row, int8 step max|w|/127 = 0.01 in both: 0.5 -> 50; 0.3 -> 30. The unlearning moved
    # two of four weights: 0.502 still rounds to 50 (back on Original's value), 0.33 to 33.
    original = {"layer": torch.tensor([[1.27, 0.5, 0.3, 0.0]])}
    unlearned = {"layer": torch.tensor([[1.27, 0.502, 0.33, 0.0]])}
    assert quantize.moved_share(unlearned, original) == 0.5
    assert quantize.same_as_original(unlearned, original, quantize.int8_round_trip) == 0.5
    assert math.isnan(quantize.same_as_original(original, original, quantize.int8_round_trip))


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
            model, build_tiny_processor(tokenizer), [caption_example(image, caption)] * 4, ctx, 1e-3
        )
        weights.append(merged.state_dict())
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_rounding_moves_nlls_and_nf4_more_than_int8(tiny) -> None:
    model, collator = tiny
    image = Image.new("RGB", (32, 32), (200, 40, 30))
    items = [
        ScoringItem("Describe the image.", image, ("A woman.", "A woman on a beach.", "red", "x"))
        for _ in range(3)
    ]
    before = np.stack(score_items(model, collator, items, batch_size=8))
    weights = quantize.linear_weights(model)
    shifts = {}
    for name, round_trip in quantize.SCHEMES.items():
        quantize.round_weights(model, weights, round_trip)
        assert model.lm_head.weight.dtype == torch.float32
        shifts[name] = np.abs(np.stack(score_items(model, collator, items, batch_size=8)) - before)
    quantize.round_weights(model, weights, lambda weight: weight)  # the fixture unchanged
    assert 0 < shifts["int8"].mean() < shifts["nf4"].mean()


# ---- prompts -------------------------------------------------------------------------------

LEAKY = CAPTION_QUESTIONS[4]


class Fake(torch.nn.Module):
    """A model never called: ``scores`` (below) stand for its forward passes."""

    def __init__(self, knows: str) -> None:
        super().__init__()
        self.knows = knows  # "always" (Original), "leaky" (under LEAKY only), "never" (Gold)


def fake_scores(model, collator, items, batch_size):
    """A model that knows a caption: lower NLL on the true caption and the paraphrase than on
    the perturbed ones; one that does not is indifferent (NLL 3 everywhere)."""
    del collator, batch_size
    scores = []
    for index, item in enumerate(items):
        nll = np.full(len(item.targets), 3.0) + 0.01 * index
        if model.knows == "always" or (model.knows == "leaky" and item.question == LEAKY):
            nll[:2], nll[2:] = 1.0, 1.5 + 0.01 * index
        scores.append(nll)
    return scores


def test_the_worst_prompt_is_the_one_that_leaks_measured_between_gold_and_original(
    monkeypatch, synthetic_source: str
) -> None:
    monkeypatch.setattr(suite, "score_items", fake_scores)
    data = suite.TaskData(synthetic_source)
    config = EvalConfig(generate=False)
    model, gold, original = (
        prompts.variant_results(Fake(knows), None, data, "forget10", config)
        for knows in ("leaky", "never", "always")
    )
    by_variant = prompts.score_variants(model, gold, original)
    assert set(by_variant) == {"default", *(f"prompt_{i}" for i in range(9)), "paraphrase"}
    worst = prompts.worst_case(by_variant)
    leaky = f"prompt_{CAPTION_QUESTIONS.index(LEAKY)}"
    # Under LEAKY the model scores as Original does: knowledge 1; elsewhere as Gold: 0.
    assert worst["worst_normalised_variant"] == leaky
    assert worst["worst_normalised"] == pytest.approx(1.0)
    assert by_variant["prompt_0"]["knowledge"] == pytest.approx(0.0)
    assert worst["worst_log_forget_quality_variant"] == leaky
    assert worst["worst_log_forget_quality"] < by_variant["prompt_0"]["log_forget_quality"] == 0


def test_the_worst_case_is_taken_on_knowledge_not_on_the_raw_forget_metric() -> None:
    # "a" has the higher forget metric but so have Gold and Original under it: "b" reveals more.
    by_variant = {
        "a": {"forget_metric": 0.4, "knowledge": 0.2, "log_forget_quality": -1.0,
              "forget_quality_js": 0.9},
        "b": {"forget_metric": 0.1, "knowledge": 0.6, "log_forget_quality": -9.0,
              "forget_quality_js": 0.5},
        "c": {"forget_metric": 0.9, "knowledge": float("nan"), "log_forget_quality": -2.0,
              "forget_quality_js": 0.7},
    }  # fmt: skip
    worst = prompts.worst_case(by_variant)
    assert (worst["worst_normalised"], worst["worst_normalised_variant"]) == (0.6, "b")
    assert (worst["worst_log_forget_quality"], worst["worst_forget_quality_js"]) == (-9.0, 0.5)


def test_a_variant_where_original_barely_leads_gold_is_left_out_of_the_worst_case() -> None:
    def result(nll: float, spread: float) -> TaskResult:
        n = 6
        true = np.full(n, nll)
        return TaskResult(true, true + spread * np.arange(n), [np.full(2, 3.0)] * n, None)

    # Under this variant Original and Gold differ by a hair: (m - g)/(o - g) would be noise.
    model, gold, original = result(2.0, 0.1), result(3.0, 0.0), result(2.999, 0.0)
    values = prompts.variant_metrics(model, gold, original, min_gap=0.01)
    assert math.isnan(values["knowledge"])
    assert values["original_forget_metric"] - values["gold_forget_metric"] < 0.01


def caption_scores(captions: set[str], paraphrases: set[str]):
    """The leaky model remembers each trained caption's exact wording (NLL 1) but scores its
    paraphrase as Gold does; the paraphrase NLLs spread over the items, the perturbed are 3."""

    def scores(model, collator, items, batch_size):
        del collator, batch_size
        rows = []
        for index, item in enumerate(items):
            nll = np.full(len(item.targets), 3.0)
            for position, target in enumerate(item.targets):
                if target in captions and model.knows == "leaky":
                    nll[position] = 1.0
                elif target in paraphrases:
                    nll[position] = 3.0 + 0.05 * index
            rows.append(nll)
        return rows

    return scores


def test_the_paraphrase_variant_scores_the_captions_wording_where_default_scores_the_paraphrase(
    monkeypatch, synthetic_source: str
) -> None:
    data = suite.TaskData(synthetic_source)
    rows = data["forget10_perturbed"]
    captions, paraphrases = set(rows["caption"]), set(rows["paraphrased_caption"])
    assert not captions & paraphrases  # an input where the caption and its paraphrase differ
    monkeypatch.setattr(suite, "score_items", caption_scores(captions, paraphrases))
    config = EvalConfig(generate=False)
    model, gold, original = (
        prompts.variant_results(Fake(knows), None, data, "forget10", config)
        for knows in ("leaky", "never", "never")
    )
    by_variant = prompts.score_variants(model, gold, original)
    # default: the truth ratio sets the paraphrase (scored as Gold scores it) against the
    # perturbed captions, so the model is Gold's twin; the paraphrase variant sets the caption
    # itself, which the model still knows.
    assert by_variant["default"]["log_forget_quality"] == 0.0
    assert by_variant["paraphrase"]["log_forget_quality"] < math.log(0.05)
    row = {"image": None, "caption": "c", "paraphrased_caption": "p", "perturbed_captions": ["x"]}
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
    result = relearn.check(context(Config(), "unused", ("A",), tmp_path))
    assert result.metrics == {} and "skipped" in result.notes[0]


def test_cross_modal_after_both_is_skipped_with_a_note(tmp_path: Path) -> None:
    ctx = context(Config(), "unused", ("A",), tmp_path)
    result = cross_modal.check(ctx)
    assert result.metrics == {} and "skipped" in result.notes[0]


# ---- the checks on tiny checkpoints (random weights: they test the plumbing and the rules) ---


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, synthetic_source: str) -> dict:
    """Original and Gold (two random tiny models) and an adapter that moves Original's
    language-model projections a little, as an unlearning run's LoRA does."""
    from clear_ray.eval.final import read_adapter
    from clear_ray.models.lora import attach_lora
    from clear_ray.models.presets import LLAVA_LORA_TARGETS

    root = tmp_path_factory.mktemp("robust_checkpoints")
    rows = suite.TaskData(synthetic_source)["forget10_perturbed"]
    tokenizer = train_tokenizer(["USER: ASSISTANT: Describe the image.", *rows["caption"][:20]])
    processor = build_tiny_processor(tokenizer)
    for name, seed in (("original", 0), ("gold", 1)):
        save_checkpoint(build_tiny_llava(tokenizer, seed=seed), processor, root / name)
    torch.manual_seed(0)
    model = attach_lora(build_tiny_llava(tokenizer, seed=0), Config().lora, LLAVA_LORA_TARGETS)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.002)
    model.save_pretrained(str(root / "adapter"))
    return {
        "original": str(root / "original"),
        "gold": str(root / "gold"),
        "adapter": read_adapter(root / "adapter"),
    }


def check_context(checkpoints: dict, source: str, tmp: Path, gold: str = "gold", **overrides):
    # A few items per task: the rules under test hold on any number.
    cfg = Config().replace({"eval.batch_size": 64, "eval.clear_rows": 4, **overrides})
    persons = report_persons(Path("/nonexistent"), source, cfg.data.forget_split)
    return CheckContext(
        cfg, checkpoints["original"], checkpoints[gold], checkpoints["adapter"], source,
        persons[:2], tmp,
    )  # fmt: skip


def test_quantization_rounds_every_model_and_reports_deltas_and_the_mechanism(
    checkpoints: dict, synthetic_source: str, tmp_path: Path
) -> None:
    ctx = check_context(checkpoints, synthetic_source, tmp_path, **{"data.modality": "visual"})
    metrics = quantize.check(ctx).metrics
    value = {key.removeprefix("robust/quantize/"): v for key, v in metrics.items()}
    for scheme in ("int8", "nf4"):  # both run on the CPU
        assert value[f"{scheme}/nll_shift"] > 0
        assert value[f"{scheme}/forget_metric"] != value["forget_metric"]
        assert value[f"{scheme}/delta_forget_metric"] == pytest.approx(
            value[f"{scheme}/forget_metric"] - value["forget_metric"]
        )
        assert value[f"{scheme}/delta_clear/forget_metric"] == pytest.approx(
            value[f"{scheme}/clear/forget_metric"] - value["clear/forget_metric"]
        )
        # Gold is rounded too: its forget metric under the scheme is not its own as evaluated.
        assert "gold_forget_metric" not in value
        assert value[f"{scheme}/gold_forget_metric"] > 0
    assert value["nf4/nll_shift"] > value["int8/nll_shift"]
    # The adapter moved only the language model's projections, by a little; 4-bit's coarser
    # grid sends more of them back onto Original's values than int8's.
    assert 0 < value["moved_share"] < 1
    assert 0 <= value["int8/same_as_original"] < value["nf4/same_as_original"] <= 1
    # Rounded Gold and Original are cached apart from the adapter: one per model and scheme.
    assert len(list((tmp_path / "rounded").glob("[!.]*"))) == 4


def test_the_prompt_check_scores_gold_and_original_once_under_every_variant(
    checkpoints: dict, synthetic_source: str, tmp_path: Path
) -> None:
    ctx = check_context(checkpoints, synthetic_source, tmp_path)
    result = prompts.check(ctx)
    value = {key.removeprefix("robust/prompts/"): v for key, v in result.metrics.items()}
    for name in ("default", "paraphrase", *(f"prompt_{i}" for i in range(9))):
        assert {"knowledge", "gold_forget_metric", "original_forget_metric"} <= {
            key.removeprefix(f"{name}/") for key in value if key.startswith(f"{name}/")
        }
    # The variant's truth ratio sets the caption, not the paraphrase: another distribution
    # (1 - JS is continuous; on 4 items the KS p-value may land on the same lattice point).
    assert value["paraphrase/forget_quality_js"] != value["default/forget_quality_js"]
    assert "worst_normalised" in value and len(result.notes) == 2
    assert len(list((tmp_path / "prompt_variants").glob("[!.]*"))) == 2  # Gold, Original
    assert prompts.check(ctx).metrics == result.metrics  # the second from their cache


def test_relearning_compares_after_the_attack_with_gold_after_the_same_attack(
    checkpoints: dict, synthetic_source: str, tmp_path: Path
) -> None:
    """Gold as the unlearned model (Original = Gold, no adapter): the same attack makes the
    same model, so forget quality after it is Gold's own, at every learning rate. Against
    unattacked Gold the attack itself would read as lost forget quality."""
    overrides = {"robust.relearn_steps": 2, "robust.relearn_batch_size": 2,
                 "robust.relearn_lrs": "1e-4,3e-2", "data.modality": "visual"}  # fmt: skip
    ctx = check_context(checkpoints, synthetic_source, tmp_path, gold="original", **overrides)
    result = relearn.check(replace(ctx, adapter=None))
    value = {key.removeprefix("robust/relearn/"): v for key, v in result.metrics.items()}
    for lr in ("0.0001", "0.03"):
        assert value[f"lr_{lr}/log_forget_quality_after"] == 0.0
        assert math.isnan(value[f"lr_{lr}/net_recovery"])  # Original = Gold: no scale
    assert value["lr_0.03/forget_metric_after"] != value["forget_metric_before"]
    assert value["lr_0.03/forget_metric_after"] != value["lr_0.0001/forget_metric_after"]
    assert "net_recovery" not in value and "no learning rate measured" in result.notes[0]
    assert value["held_out_persons"] == 1 and "1 held-out person" in result.notes[1]
    # Gold's attacks are cached apart from the adapter: one per learning rate, for every adapter.
    assert len(list((tmp_path / "gold_attacks").glob("[!.]*"))) == 2


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


def adapter(
    models: ReferenceModels, cfg: Config, out: Path, forget_source: str | None = None
) -> Path:
    """A LoRA adapter on Original: untrained (peft initialises B = 0: an Original-like model),
    or after gradient ascent (−CE, methods/ga.py) on the forget persons' text QA rows of
    ``forget_source`` until their mean NLL reaches Gold's: a model that removed what Gold
    never learned, as far as these rows tell, on any build of the references.

    Why a stopping rule: a fixed number of steps removed most on one build and little on
    another (below). Made in a Ray task, with the kernels a search pins: this test's process
    may compute with others (it is pinned only if a search ran in it before torch did)."""
    import ray

    def make() -> int:
        from clear_ray.data.clear import load_clear
        from clear_ray.data.collate import Collator, row_example
        from clear_ray.data.unlearning import select_modality
        from clear_ray.models.loading import load_checkpoint
        from clear_ray.models.lora import attach_lora
        from clear_ray.models.presets import get_preset

        model, processor = load_checkpoint(models.original)
        torch.manual_seed(0)
        model = attach_lora(model, cfg.lora, get_preset(cfg.model.preset).lora_target_modules)
        steps = 0
        if forget_source:
            rows = load_clear(forget_source, f"{cfg.data.forget_split}+tofu")
            examples = select_modality([row_example(row) for row in rows], "text")
            collator = Collator(processor)

            def mean_nll(scored) -> float:
                with torch.no_grad():
                    return float(scored(**collator(examples)).loss)

            gold_nll = mean_nll(load_checkpoint(models.gold)[0])
            order = np.random.default_rng(0).permutation(len(examples))
            trained = [weight for weight in model.parameters() if weight.requires_grad]
            optimizer = torch.optim.AdamW(trained, lr=GA_LR)
            while mean_nll(model) < gold_nll:
                if steps == GA_MAX_STEPS:
                    raise AssertionError(f"{steps} steps of ascent left NLL under Gold's")
                batch = [examples[order[(4 * steps + i) % len(order)]] for i in range(4)]
                (-model(**collator(batch)).loss).backward()
                optimizer.step()
                optimizer.zero_grad()
                steps += 1
        model.save_pretrained(str(out))
        return steps

    steps = ray.get(ray.remote(num_cpus=cfg.search.cpus_per_worker)(make).remote())
    assert steps > 0 or not forget_source
    return out


# Measured on two builds of the session references, one with the pinned AVX2 kernels and one
# with AVX-512 ones (kernels.py), at the default attack (20 steps, lrs 3e-4, 1e-3, 3e-3). A fixed
# 10 steps at 3e-3 on all forget rows left knowledge 0.03 on the first and 0.71 on the second;
# 15 steps left too little for the attack to bring back (gross recovery 0.14 in modality both).
# Ascent on the text rows at 2e-3 until Gold's NLL stopped after 14 and 18 steps: knowledge
# before the attack 0.14 and 0.05; the worst attack (lr 3e-3) recovered 0.91 and 0.87 gross
# against Gold's 0.19 and 0.16, 0.88 and 0.85 net.
GA_LR, GA_MAX_STEPS = 2e-3, 60
REMOVED_BELOW, RECOVERED_ABOVE = 0.4, 0.5


def net_by_hand(values: dict[str, float], lr: str) -> float:
    """Net recovery from the raw forget metrics (relearn.py's formula): knowledge above Gold
    before the attack (Gold as evaluated) and after it (Gold after the same attack), each on
    the scale of Original's lead, and the share of the removed part that came back."""
    original, gold = values["original_forget_metric"], values["gold_forget_metric_before"]
    known_before = max((values["forget_metric_before"] - gold) / (original - gold), 0.0)
    gold_after = values[f"{lr}/gold_forget_metric_after"]
    known_after = (values[f"{lr}/forget_metric_after"] - gold_after) / (original - gold_after)
    return min(max((known_after - known_before) / (1.0 - known_before), 0.0), 1.0)


@pytest.mark.slow
def test_relearning_recovers_part_of_what_gradient_ascent_removed_beyond_golds_floor(
    ray_session, session_config: Config, synthetic_source: str, session_output: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    import os

    from clear_ray.references.prepare import reference_models
    from clear_ray.robust.run import run_checks

    models = reference_models(session_config, synthetic_source, session_output / "cache")
    # The text forget tasks: their forget metric falls with what GA removes. With face naming
    # (modality both or visual) it need not: its truth-ratio score min(TR, 1/TR) rises as the
    # model stops telling the true name from the others, and it is the harmonic mean's
    # smallest term (0.08 for Original), so a milder ascent read as more knowledge than
    # Original's (1.1-1.3).
    cfg = session_config.replace(
        {"output_dir": str(tmp_path), "eval.batch_size": 64, "data.modality": "text"}
    )
    persons = report_persons(tmp_path, synthetic_source, cfg.data.forget_split)
    adapters = {
        "zero": adapter(models, cfg, tmp_path / "zero"),
        "ga": adapter(models, cfg, tmp_path / "ga", forget_source=synthetic_source),
    }

    def run() -> dict[str, CheckOutcome]:
        outcomes = run_checks(
            cfg, ("relearn",), adapters, str(models.original), str(models.gold),
            synthetic_source, persons,
        )  # fmt: skip
        return {label: checks["relearn"] for label, checks in outcomes.items()}

    outcomes = run()
    zero = outcomes["zero"].result.metrics
    ga = {k.removeprefix("robust/relearn/"): v for k, v in outcomes["ga"].result.metrics.items()}
    assert outcomes["ga"].ran_at["pid"] != os.getpid()
    assert outcomes["ga"].ran_at["resources"] == {"CPU": cfg.search.cpus_per_worker}
    assert zero["robust/relearn/net_recovery"] == 1.0  # nothing was removed
    # First: gradient ascent removed most of the held-out persons' knowledge, their forget
    # metric fell from Original's most of the way to Gold's ...
    assert ga["knowledge_before"] < REMOVED_BELOW
    assert ga["forget_metric_before"] < ga["original_forget_metric"]
    # ... then the attack on the other persons brings a good part of it back, far more than
    # it lifts Gold ...
    lrs = [f"lr_{lr:g}" for lr in cfg.robust.lrs()]
    assert ga["gross_recovery"] > RECOVERED_ABOVE
    assert ga["gross_recovery"] > 2 * ga["gold_recovery"]
    assert ga["net_recovery"] > RECOVERED_ABOVE
    # ... and the net recovery is the formula's, at every learning rate, on the raw metrics.
    for lr in lrs:
        assert ga[f"{lr}/net_recovery"] == pytest.approx(net_by_hand(ga, lr), abs=1e-12)
    # The worst of the swept learning rates is the one whose attack left most knowledge.
    worst = max(lrs, key=lambda lr: ga[f"{lr}/knowledge_after"])
    assert ga["worst_lr"] == cfg.robust.lrs()[lrs.index(worst)]
    assert ga["net_recovery"] == ga[f"{worst}/net_recovery"]
    assert ga["worst_normalised"] == ga["knowledge_after"] == ga[f"{worst}/knowledge_after"]
    held = outcomes["ga"].result.items["held_out_persons"]
    assert len(held) == ga["held_out_persons"] == 2
    assert not set(held) & set(outcomes["ga"].result.items["attacked_persons"])
    again = run()  # cached: the same records, not a second attack
    assert all(again[label].seconds == outcomes[label].seconds for label in adapters)
    assert len(list((tmp_path / "cache" / "robust").glob("relearn-*"))) == 2
    gold_attacks = (tmp_path / "cache" / "robust" / "gold_attacks").glob("[!.]*")
    assert len(list(gold_attacks)) == len(lrs)  # shared by both adapters


def test_mean_metrics_averages_each_metric_over_the_models_that_have_it() -> None:
    from clear_ray.robust.run import mean_metrics

    rows = [{"robust/a": 1.0, "robust/b": 0.0}, {"robust/a": 3.0}]
    assert mean_metrics(rows) == {"robust/a": 2.0, "robust/b": 0.0}
