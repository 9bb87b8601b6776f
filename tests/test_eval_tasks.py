"""Specification of the CLEAR evaluation tasks: items, candidate layouts, aggregation, proxies."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from clear_ray.config import EvalConfig
from clear_ray.data.clear import load_clear
from clear_ray.data.prompts import FACE_NAME_PROMPT
from clear_ray.data.synthetic import generate
from clear_ray.errors import ConfigError
from clear_ray.eval import metrics
from clear_ray.eval.names import FORGET_QUALITY_TASKS
from clear_ray.eval.reference import GoldReference
from clear_ray.eval.suite import (
    PROXY_METRIC,
    EvalResult,
    TaskData,
    TaskResult,
    aggregate,
    evaluate,
)
from clear_ray.eval.tasks import (
    ANSWER,
    CAPTIONS,
    OPTIONS,
    TASKS,
    distinct_distractors,
    evaluation_rows,
    proxy_subset,
    resolve_task_names,
)

SPLIT = "forget10"


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("clear")
    generate(root, persons=10, seed=0)
    return str(root)


def task_rows(source: str, name: str) -> list[dict]:
    task = TASKS[name]
    dataset = load_clear(source, task.config_for(SPLIT))
    return list(dataset.select(task.eligible_rows(dataset)))


# ----------------------------------------------------------------------------- items


def test_registry_holds_every_clear_task_in_its_group() -> None:
    assert {name: task.group for name, task in TASKS.items()} == {
        "forget_captions": "forget",
        "retain_captions": "retain",
        "forget_face_naming": "forget",
        "retain_face_naming": "retain",
        "forget_text_qa": "forget",
        "forget_text_perturbed": "forget",
        "retain_text_qa": "retain",
        "real_faces": "real",
        "real_world": "real",
    }


def test_tasks_read_the_configs_of_the_contract() -> None:
    assert {name: task.config_for(SPLIT) for name, task in TASKS.items()} == {
        "forget_captions": "forget10_perturbed",
        "retain_captions": "retain_perturbed",
        "forget_face_naming": "forget10_perturbed",
        "retain_face_naming": "retain_perturbed",
        "forget_text_qa": "forget10+tofu",
        "forget_text_perturbed": "forget10_tofu_perturbed",
        "retain_text_qa": "retain90+tofu",
        "real_faces": "real_faces",
        "real_world": "real_world",
    }


@pytest.mark.parametrize("name", ["forget_captions", "retain_captions"])
def test_caption_items_are_true_paraphrase_then_perturbed(source: str, name: str) -> None:
    rows = task_rows(source, name)
    for row, item in zip(rows, TASKS[name].items(rows), strict=True):
        assert item.image is not None
        assert item.targets == (
            row["caption"],
            row["paraphrased_caption"],
            *row["perturbed_captions"],
        )
    assert TASKS[name].layout is CAPTIONS


@pytest.mark.parametrize("name", ["forget_face_naming", "retain_face_naming"])
def test_face_naming_items_ask_for_the_name_with_perturbed_names_as_options(
    source: str, name: str
) -> None:
    rows = task_rows(source, name)
    for row, item in zip(rows, TASKS[name].items(rows), strict=True):
        assert item.question == FACE_NAME_PROMPT and item.image is not None
        assert item.targets == (row["name"], *row["perturbed_names"])
    assert TASKS[name].layout is OPTIONS


def test_real_faces_items_ask_for_the_name_and_keep_the_true_answer_once(source: str) -> None:
    rows = task_rows(source, "real_faces")
    assert any(row["answer"] in row["options"] for row in rows)  # the data does repeat it
    for row, item in zip(rows, TASKS["real_faces"].items(rows), strict=True):
        assert item.question == FACE_NAME_PROMPT
        assert item.targets[0] == row["answer"]
        assert item.targets.count(row["answer"]) == 1
        assert set(item.targets[1:]) == set(row["options"]) - {row["answer"]}


def test_real_world_items_ask_the_question_and_keep_the_true_answer_once(source: str) -> None:
    rows = task_rows(source, "real_world")
    for row, item in zip(rows, TASKS["real_world"].items(rows), strict=True):
        assert item.question == row["question"] and item.image is not None
        assert item.targets[0] == row["answer"]
        assert item.targets.count(row["answer"]) == 1
        assert set(item.targets[1:]) == set(row["options"]) - {row["answer"]}


@pytest.mark.parametrize("name", ["forget_text_qa", "retain_text_qa"])
def test_text_qa_items_are_the_tofu_rows_question_to_answer_only(source: str, name: str) -> None:
    rows = task_rows(source, name)
    assert rows and all(row["image"] is None and row["question"] for row in rows)
    for row, item in zip(rows, TASKS[name].items(rows), strict=True):
        assert item.image is None
        assert (item.question, item.targets) == (row["question"], (row["answer"],))
    assert TASKS[name].layout is ANSWER


def test_text_perturbed_items_are_answer_paraphrase_then_perturbed_without_image(
    source: str,
) -> None:
    rows = task_rows(source, "forget_text_perturbed")
    assert rows
    for row, item in zip(rows, TASKS["forget_text_perturbed"].items(rows), strict=True):
        assert item.image is None and item.question == row["question"]
        assert item.targets == (row["answer"], row["paraphrased_answer"], *row["perturbed_answer"])
    assert TASKS["forget_text_perturbed"].layout is CAPTIONS  # so it has prob and truth ratio


def test_distractors_drop_the_true_answer_and_repeats_whatever_the_spacing_or_case() -> None:
    options = ["Paris", " paris", "Rome", "rome ", "Oslo"]
    assert distinct_distractors("PARIS", options) == ("Rome", "Oslo")


def test_an_item_whose_only_option_is_the_true_answer_is_rejected() -> None:
    row = {"image": None, "question": "Which?", "answer": "a", "options": ["a", "A"]}
    with pytest.raises(ConfigError, match="no option other than the true answer"):
        TASKS["real_world"].build_item(row)


# ----------------------------------------------------------------------------- layouts


def test_caption_layout_splits_true_paraphrase_and_perturbed() -> None:
    true, paraphrase, perturbed = CAPTIONS.split(np.array([1.0, 2.0, 3.0, 4.0]))
    assert (true, paraphrase, perturbed.tolist()) == (1.0, 2.0, [3.0, 4.0])


def test_option_layout_uses_the_true_answer_as_its_paraphrase() -> None:
    true, paraphrase, perturbed = OPTIONS.split(np.array([1.0, 3.0, 4.0]))
    assert (true, paraphrase, perturbed.tolist()) == (1.0, 1.0, [3.0, 4.0])


def test_text_qa_tasks_have_no_truth_ratio() -> None:
    result = TaskResult(np.array([0.5, 1.0]), None, [[], []], None, layout=ANSWER)
    assert result.truth_ratios is None
    assert set(result.scores(forget=True)) == {"prob"}
    with_rouge = TaskResult(np.array([0.5]), None, [[]], np.array([0.3]), layout=ANSWER)
    assert set(with_rouge.scores(forget=False)) == {"prob", "rougeL_recall"}


# ----------------------------------------------------------------------------- scores


def test_option_prob_normalises_over_the_true_answer_and_every_distractor() -> None:
    nll_true = np.array([0.2, 1.0, 0.7])
    perturbed = [np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.9]), np.array([2.0, 2.5])]
    result = TaskResult(nll_true, nll_true, perturbed, None, layout=OPTIONS)
    pairs = zip(nll_true, perturbed, strict=True)
    by_hand = np.mean([np.exp(-t) / (np.exp(-t) + np.exp(-p).sum()) for t, p in pairs])
    assert result.scores(forget=False)["prob"] == pytest.approx(by_hand)


def test_truth_ratio_averages_each_items_own_distractors_even_when_counts_differ() -> None:
    perturbed = [np.array([1.0, 3.0]), np.array([0.5, 1.0, 1.5])]
    result = TaskResult(np.zeros(2), np.array([1.0, 2.0]), perturbed, None, layout=OPTIONS)
    np.testing.assert_allclose(result.truth_ratios, [np.exp(1.0 - 2.0), np.exp(2.0 - 1.0)])


def test_caption_prob_is_the_mean_probability_of_the_true_caption() -> None:
    result = TaskResult(np.array([0.1, 0.4]), np.zeros(2), np.ones((2, 2)), None)
    assert result.scores(forget=False)["prob"] == pytest.approx(metrics.probability([0.1, 0.4]))


# ----------------------------------------------------------------------------- aggregation


def fabricated_results() -> dict[str, TaskResult]:
    rng = np.random.default_rng(0)

    def scored(layout, k: int, n: int = 6, rouge: bool = True) -> TaskResult:
        # The truth is likelier than every distractor, so no score is 0 and every mean is alive.
        nll_true = rng.uniform(0.1, 0.5, n)
        paraphrased = None if layout is ANSWER else rng.uniform(0.1, 0.5, n)
        if layout is OPTIONS:
            paraphrased = nll_true
        return TaskResult(
            nll_true,
            paraphrased,
            rng.uniform(1.0, 2.0, (n, k)),
            rng.uniform(0.1, 1.0, n) if rouge else None,
            layout=layout,
        )

    return {
        "forget_captions": scored(CAPTIONS, 3),
        "forget_face_naming": scored(OPTIONS, 3),
        "forget_text_qa": scored(ANSWER, 0),
        "retain_captions": scored(CAPTIONS, 3),
        "retain_text_qa": scored(ANSWER, 0),
        "real_faces": scored(OPTIONS, 4),
        "real_world": scored(OPTIONS, 3),
    }


def hand_scores(result: TaskResult, forget: bool) -> list[float]:
    if result.layout is OPTIONS:
        prob = metrics.probability_with_options(result.nll_true, np.stack(result.nll_perturbed))
    else:
        prob = float(np.mean(np.exp(-result.nll_true)))
    values = [prob]
    if result.layout is not ANSWER:
        ratios = np.exp(result.nll_paraphrased - np.stack(result.nll_perturbed).mean(axis=1))
        values.append(
            np.mean(np.minimum(ratios, 1 / ratios))
            if forget
            else np.mean(np.maximum(0, 1 - ratios))
        )
    values.append(float(np.mean(result.rouge_recall)))
    return values


def harmonic(values: list[float]) -> float:
    return len(values) / sum(1 / v for v in values)


def test_group_metrics_and_model_utility_are_harmonic_means_of_the_task_scores() -> None:
    results = fabricated_results()
    flat = aggregate(results)
    by_group: dict[str, list[float]] = {"forget": [], "retain": [], "real": []}
    for name, result in results.items():
        group = TASKS[name].group
        by_group[group] += hand_scores(result, forget=group == "forget")
    for group, values in by_group.items():
        assert 0 < flat[f"{group}_metric"] == pytest.approx(harmonic(values))
    assert flat["model_utility"] == pytest.approx(harmonic(by_group["retain"] + by_group["real"]))
    assert flat["forget_text_qa/prob"] == pytest.approx(by_group["forget"][-2])
    assert "forget_text_qa/truth_ratio" not in flat


def test_forget_tasks_score_truth_ratio_as_indifference_and_others_as_preference() -> None:
    ratios_below_one = TaskResult(np.zeros(1), np.array([0.0]), [[np.log(4.0)]], None)
    assert ratios_below_one.truth_ratios == pytest.approx([0.25])
    assert ratios_below_one.scores(forget=True)["truth_ratio"] == pytest.approx(0.25)
    assert ratios_below_one.scores(forget=False)["truth_ratio"] == pytest.approx(0.75)


def test_forget_quality_compares_forget_captions_with_gold() -> None:
    results = fabricated_results()
    own = GoldReference.of(results, FORGET_QUALITY_TASKS)
    flat = aggregate(results, own, modality="visual")
    assert flat["forget_quality"] == pytest.approx(1.0)
    assert flat["log_forget_quality"] == pytest.approx(0.0)
    assert flat["forget_quality_js"] == pytest.approx(1.0)
    assert "forget_quality" not in aggregate(results)


def test_a_full_evaluation_is_marked_as_such_and_a_proxy_one_as_proxy() -> None:
    results = fabricated_results()
    assert aggregate(results)[PROXY_METRIC] == 0.0
    results["real_world"].proxy = True
    flat = aggregate(results)
    assert flat[PROXY_METRIC] == 1.0
    assert EvalResult(results, flat).eval_kind == "proxy"


# ----------------------------------------------------------------------------- selection


def test_proxy_subset_is_seeded_sorted_and_the_same_on_every_call() -> None:
    first = proxy_subset(100, 10, proxy_seed=3)
    assert first.tolist() == proxy_subset(100, 10, proxy_seed=3).tolist()
    assert first.tolist() == sorted(set(first.tolist()))
    assert first.tolist() != proxy_subset(100, 10, proxy_seed=4).tolist()


@pytest.mark.parametrize(("n_rows", "proxy_items"), [(100, 10), (7, 10), (7, 7), (5, 0)])
def test_proxy_subset_holds_min_of_rows_and_proxy_items(n_rows: int, proxy_items: int) -> None:
    expected = n_rows if proxy_items == 0 else min(n_rows, proxy_items)
    subset = proxy_subset(n_rows, proxy_items, proxy_seed=0)
    assert len(subset) == expected
    assert set(subset.tolist()) <= set(range(n_rows))


def test_a_negative_proxy_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="proxy_items"):
        proxy_subset(10, -1, proxy_seed=0)


def test_all_takes_an_optional_task_only_where_its_config_exists() -> None:
    def has(config: str) -> bool:
        return config != "forget10_tofu_perturbed"

    assert "forget_text_perturbed" not in resolve_task_names("all", has, SPLIT)
    assert "forget_text_perturbed" in resolve_task_names("all", lambda config: True, SPLIT)
    named = resolve_task_names("forget_text_perturbed,real_faces", has, SPLIT)
    assert named == ("forget_text_perturbed", "real_faces")  # named: kept, so it fails loudly
    assert [t.name for t in TASKS.values() if t.optional] == ["forget_text_perturbed"]


def without_text_perturbed(source: str, dest: Path) -> str:
    shutil.copytree(source, dest)
    readme = dest / "README.md"
    text = readme.read_text().replace("config_name: forget10_tofu_perturbed", "config_name: gone")
    readme.write_text(text)
    return str(dest)


def test_a_source_without_the_text_config_skips_it_in_all_and_names_it_when_asked(
    source: str, tiny_model, tmp_path: Path
) -> None:
    model, collator = tiny_model
    old = without_text_perturbed(source, tmp_path / "old")
    config = EvalConfig(proxy_items=2)
    assert "forget_text_perturbed" not in evaluate(model, collator, old, SPLIT, config).tasks
    assert "forget_text_perturbed" in evaluate(model, collator, source, SPLIT, config).tasks
    with pytest.raises(ConfigError, match="'forget10_tofu_perturbed'") as error:
        evaluate(model, collator, old, SPLIT, replace(config, tasks="forget_text_perturbed"))
    assert "\n" not in str(error.value)


def test_text_perturbed_task_scores_prob_and_truth_ratio(source: str, tiny_model) -> None:
    model, collator = tiny_model
    config = EvalConfig(tasks="forget_text_perturbed", generate=False)
    result = evaluate(model, collator, source, SPLIT, config)
    assert {"forget_text_perturbed/prob", "forget_text_perturbed/truth_ratio"} <= set(
        result.metrics
    )
    assert len(result.tasks["forget_text_perturbed"].truth_ratios) == len(
        load_clear(source, "forget10_tofu_perturbed")
    )


def test_task_selection_accepts_all_or_names_and_rejects_unknown_ones_in_one_line() -> None:
    assert resolve_task_names("all") == tuple(TASKS)
    assert resolve_task_names("real_world, forget_captions") == ("forget_captions", "real_world")
    with pytest.raises(ConfigError, match="unknown task 'captions'") as error:
        resolve_task_names("forget_captions,captions")
    assert "\n" not in str(error.value)


def test_eval_config_defaults_to_every_task_and_a_full_evaluation() -> None:
    config = EvalConfig()
    assert (config.tasks, config.proxy_items, config.clear_rows) == ("all", 0, 0)
    assert config.max_new_tokens == 200  # TOFU's generation length (CLEAR: 300), not a proxy's


def test_clear_rows_keeps_the_first_rows_of_the_eligible_ones() -> None:
    eligible = np.arange(10, 30)
    assert evaluation_rows(eligible, EvalConfig(clear_rows=5)).tolist() == [10, 11, 12, 13, 14]
    assert evaluation_rows(eligible, EvalConfig(clear_rows=0)).tolist() == eligible.tolist()
    assert evaluation_rows(eligible, EvalConfig(clear_rows=99)).tolist() == eligible.tolist()


def test_a_proxy_draws_its_rows_from_the_first_clear_rows() -> None:
    eligible = np.arange(100, 200)
    config = EvalConfig(clear_rows=30, proxy_items=8, proxy_seed=1)
    chosen = evaluation_rows(eligible, config)
    assert len(chosen) == 8 and set(chosen.tolist()) <= set(range(100, 130))
    assert chosen.tolist() == (100 + proxy_subset(30, 8, 1)).tolist()
    assert evaluation_rows(eligible, replace(config, proxy_items=50)).tolist() == list(
        range(100, 130)
    )


def test_a_negative_clear_rows_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="clear_rows"):
        evaluation_rows(np.arange(3), EvalConfig(clear_rows=-1))


def test_clear_rows_restricts_every_task_of_an_evaluation(source: str, tiny_model) -> None:
    model, collator = tiny_model
    tasks = "forget_captions,retain_text_qa,real_world"
    config = EvalConfig(clear_rows=3, tasks=tasks, generate=False)
    result = evaluate(model, collator, source, SPLIT, config)
    assert result.eval_kind == "full"
    for name, task_result in result.tasks.items():
        dataset = load_clear(source, TASKS[name].config_for(SPLIT))
        assert task_result.item_index.tolist() == TASKS[name].eligible_rows(dataset)[:3].tolist()


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_model(source: str):
    from clear_ray.data.collate import Collator
    from clear_ray.models.presets import get_preset
    from clear_ray.references.recipes import tokenizer_corpus

    model, processor = get_preset("tiny-llava").build_base(tokenizer_corpus(source), 0)
    return model, Collator(processor)


def test_proxy_evaluation_scores_the_same_rows_every_time_without_rouge(
    source: str, tiny_model
) -> None:
    model, collator = tiny_model
    config = EvalConfig(proxy_items=3, tasks="forget_captions,real_faces,retain_text_qa")
    first = evaluate(model, collator, source, SPLIT, config)
    second = evaluate(model, collator, source, SPLIT, config)
    assert first.eval_kind == "proxy" and first.metrics[PROXY_METRIC] == 1.0
    for name, result in first.tasks.items():
        assert len(result.nll_true) == 3
        assert result.item_index.tolist() == second.tasks[name].item_index.tolist()
        assert result.rouge_recall is None
    assert not any(key.endswith("rougeL_recall") for key in first.metrics)
    assert first.metrics == second.metrics


def test_task_data_loads_each_config_once_across_evaluations(
    source: str, tiny_model, clear_loads: list[str]
) -> None:
    model, collator = tiny_model
    config = EvalConfig(proxy_items=3, tasks="forget_captions,forget_face_naming,real_faces")
    data = TaskData(source)
    first = evaluate(model, collator, data, SPLIT, config)
    second = evaluate(model, collator, data, SPLIT, config)
    # captions and face naming share the forget config: two loads for three tasks, two calls
    assert sorted(clear_loads) == sorted({TASKS[t].config_for(SPLIT) for t in first.tasks})
    assert len(clear_loads) == 2
    fresh = evaluate(model, collator, source, SPLIT, config)
    assert first.metrics == second.metrics == fresh.metrics


def test_text_qa_proxy_rows_are_drawn_from_the_tofu_rows_only(source: str, tiny_model) -> None:
    model, collator = tiny_model
    result = evaluate(
        model, collator, source, SPLIT, EvalConfig(proxy_items=4, tasks="forget_text_qa")
    )
    dataset = load_clear(source, "forget10+tofu")
    indices = result.tasks["forget_text_qa"].item_index.tolist()
    assert all(dataset[i]["image"] is None for i in indices)


def test_full_evaluation_with_generation_off_reports_every_row(
    source: str, tiny_model, tmp_path: Path
) -> None:
    model, collator = tiny_model
    config = EvalConfig(generate=False, tasks="real_world")
    result = evaluate(model, collator, source, SPLIT, config)
    assert result.eval_kind == "full" and result.metrics[PROXY_METRIC] == 0.0
    assert len(result.tasks["real_world"].nll_true) == len(load_clear(source, "real_world"))
