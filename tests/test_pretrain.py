"""The pretraining stage: who pretrains, what it learns, and how it is cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from clear_ray.config import Config, resolve_config
from clear_ray.data import drawing, synthetic
from clear_ray.data.prompts import FACE_NAME_PROMPT
from clear_ray.errors import ConfigError
from clear_ray.kernels import pinned_settings
from clear_ray.references import recipes
from clear_ray.references.recipes import BASE, model_name


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("pretrain") / "data"
    return str(synthetic.generate(out, synthetic.MIN_PERSONS, 0))


def test_only_random_init_presets_pretrain() -> None:
    assert recipes.pretrain_applies(Config())
    assert not recipes.pretrain_applies(resolve_config({"model.preset": "llava-1.5-7b"}))
    assert resolve_config({"model.preset": "llava-1.5-7b"}).pretrain.epochs == 0
    assert not recipes.pretrain_applies(Config().replace({"pretrain.epochs": 0}))


def test_pretraining_ranges_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"pretrain\.epochs"):
        Config().replace({"pretrain.epochs": -1})
    with pytest.raises(ConfigError, match=r"pretrain\.lr"):
        Config().replace({"pretrain.lr": 0})


def test_recipe_is_the_finetunes_with_pretrainings_epochs_lr_and_batch() -> None:
    cfg = Config().replace(
        {"pretrain.epochs": 7, "pretrain.lr": 0.01, "pretrain.batch_size": 5, "finetune.seed": 3}
    )
    recipe = recipes.pretrain_recipe(cfg)
    assert (recipe.epochs, recipe.lr, recipe.batch_size, recipe.seed) == (7, 0.01, 5, 3)
    assert cfg.finetune.epochs != 7  # the finetune's own recipe is untouched


def test_knowledge_is_real_faces_named_and_real_world_answered(source: str) -> None:
    examples = recipes.knowledge_examples(source)
    faces = synthetic.REAL_FACES_PERSONS * synthetic.REAL_FACES_IMAGES
    assert len(examples) == faces + synthetic.REAL_WORLD_ROWS
    assert all(e.question == FACE_NAME_PROMPT and e.image is not None for e in examples[:faces])
    assert {e.target for e in examples[faces:]} <= {
        *drawing.SHAPE_COLOURS,
        *drawing.SHAPES,
        *drawing.NUMBER_WORDS,
    }


def test_pretraining_recipe_is_in_the_base_and_the_reference_cache_keys(source: str) -> None:
    cfg = Config()
    other = cfg.replace({"pretrain.epochs": cfg.pretrain.epochs + 1})
    assert recipes.base_name(cfg, source) != recipes.base_name(other, source)
    assert model_name(cfg, source, "original") != model_name(other, source, "original")
    off = cfg.replace({"pretrain.epochs": 0})  # no base: the key no longer names one
    assert model_name(off, source, "gold") != model_name(cfg, source, "gold")


def test_models_built_with_other_kernels_are_cached_under_other_names(
    source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinned AVX2, the CPU's own instruction sets, another thread count and a GPU each give
    other weights from one recipe (clear_ray/kernels.py)."""
    cfg = Config()
    # A setting in the environment wins over the pin (and an earlier test's driver code may
    # have pinned this process): none here, so each config's own pins name its build.
    for name in pinned_settings(cfg.search):
        monkeypatch.delenv(name, raising=False)
    others = [
        cfg.replace({"search.pin_cpu_kernels": False}),
        cfg.replace({"search.cpus_per_worker": 2}),
        cfg.replace({"search.gpus_per_trial": 1}),
    ]
    for role in (BASE, "original", "gold"):
        names = {model_name(c, source, role) for c in (cfg, *others)}
        assert len(names) == 4, role
        assert model_name(Config(), source, role) == model_name(cfg, source, role)


def test_original_and_gold_replay_the_knowledge_corpus_unless_turned_off(source: str) -> None:
    from clear_ray.references.recipes import training_set

    cfg = Config()
    corpus = len(recipes.knowledge_corpus(cfg, source)[0])
    off = cfg.replace({"pretrain.replay": False})
    for role in ("original", "gold"):
        replayed, plain = training_set(cfg, source, role), training_set(off, source, role)
        assert len(replayed.examples) == len(plain.examples) + corpus
        assert model_name(cfg, source, role) != model_name(off, source, role)
    seven_b = resolve_config({"model.preset": "llava-1.5-7b"})  # LLaVA replays nothing
    assert recipes.replay_examples(seven_b, source) == []


@pytest.mark.slow
def test_pretrained_base_learns_the_real_sets_and_is_cached(
    session_config: Config, synthetic_source: str
) -> None:
    """The session's base (the suite's e2e searches made it already: free here)."""
    from clear_ray.config import EvalConfig
    from clear_ray.data.collate import Collator
    from clear_ray.eval.suite import evaluate
    from clear_ray.models.loading import load_checkpoint
    from clear_ray.models.presets import get_preset
    from clear_ray.references.jobs import finetune_job
    from clear_ray.references.recipes import tokenizer_corpus
    from clear_ray.runtime.cluster import local_ray

    def real(model, processor) -> float:
        tasks = ["real_faces", "real_world"]
        config = EvalConfig(generate=False)
        collator = Collator(processor)
        return evaluate(
            model, collator, synthetic_source, "forget10", config, task_names=tasks
        ).metrics["clear/real_metric"]

    cfg, models = session_config, Path(session_config.output_dir) / "cache" / "models"
    name = model_name(cfg, synthetic_source, BASE)
    with local_ray(cfg.search):
        made, _ = finetune_job(cfg, BASE, synthetic_source, name, str(models))
        again, _ = finetune_job(cfg, BASE, synthetic_source, name, str(models))  # a cache hit
    base = Path(made.path)
    assert again.path == made.path and base == models / name
    random_base = get_preset(cfg.model.preset).build_base(tokenizer_corpus(synthetic_source), 0)
    assert real(*load_checkpoint(base)) > real(*random_base) + 0.1
