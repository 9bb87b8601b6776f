"""The pretraining stage: who pretrains, what it learns, and how it is cached."""

from __future__ import annotations

from pathlib import Path

import pytest

from clear_ray import pretrain
from clear_ray.config import Config, ConfigError, resolve_config
from clear_ray.data import synthetic
from clear_ray.data.prompts import FACE_NAME_PROMPT
from clear_ray.finetune import model_name


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    out = tmp_path_factory.mktemp("pretrain") / "data"
    return str(synthetic.generate(out, synthetic.MIN_PERSONS, 0))


def test_only_random_init_presets_pretrain() -> None:
    assert pretrain.applies(Config())
    assert not pretrain.applies(resolve_config({"model.preset": "llava-1.5-7b"}))
    assert resolve_config({"model.preset": "llava-1.5-7b"}).pretrain.epochs == 0
    assert not pretrain.applies(Config().replace({"pretrain.epochs": 0}))


def test_pretraining_ranges_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"pretrain\.epochs"):
        Config().replace({"pretrain.epochs": -1})
    with pytest.raises(ConfigError, match=r"pretrain\.lr"):
        Config().replace({"pretrain.lr": 0})


def test_recipe_is_the_finetunes_with_pretrainings_epochs_lr_and_batch() -> None:
    cfg = Config().replace(
        {"pretrain.epochs": 7, "pretrain.lr": 0.01, "pretrain.batch_size": 5, "finetune.seed": 3}
    )
    recipe = pretrain.recipe(cfg)
    assert (recipe.epochs, recipe.lr, recipe.batch_size, recipe.seed) == (7, 0.01, 5, 3)
    assert cfg.finetune.epochs != 7  # the finetune's own recipe is untouched


def test_knowledge_is_real_faces_named_and_real_world_answered(source: str) -> None:
    examples = pretrain.knowledge_examples(source)
    faces = synthetic.REAL_FACES_PERSONS * synthetic.REAL_FACES_IMAGES
    assert len(examples) == faces + synthetic.REAL_WORLD_ROWS
    assert all(e.question == FACE_NAME_PROMPT and e.image is not None for e in examples[:faces])
    assert {e.target for e in examples[faces:]} <= {
        *synthetic.SHAPE_COLOURS,
        *synthetic.SHAPES,
        *synthetic.NUMBER_WORDS,
    }


def test_pretraining_recipe_is_in_the_base_and_the_reference_cache_keys(source: str) -> None:
    cfg = Config()
    other = cfg.replace({"pretrain.epochs": cfg.pretrain.epochs + 1})
    assert pretrain.base_name(cfg, source) != pretrain.base_name(other, source)
    assert model_name(cfg, source, "original") != model_name(other, source, "original")
    off = cfg.replace({"pretrain.epochs": 0})  # no base: the key no longer names one
    assert model_name(off, source, "gold") != model_name(cfg, source, "gold")


@pytest.mark.slow
def test_pretrained_base_learns_the_real_sets_and_is_cached(source: str, tmp_path: Path) -> None:
    from clear_ray.config import EvalConfig
    from clear_ray.data.collate import Collator
    from clear_ray.eval.suite import evaluate
    from clear_ray.models.loading import load_checkpoint

    cfg = Config().replace({"pretrain.epochs": 12, "pretrain.scene_images": 12})
    base = pretrain.pretrained_base(cfg, source, tmp_path)
    assert pretrain.pretrained_base(cfg, source, tmp_path) == base  # cached
    model, processor = load_checkpoint(base)
    tasks = ["real_faces", "real_world"]
    metrics = evaluate(
        model, Collator(processor), source, "forget10", EvalConfig(generate=False),
        task_names=tasks,
    ).metrics  # fmt: skip
    # 5 options: a random base puts ~0.2 on the true one
    assert metrics["real_faces/prob"] > 0.3 and metrics["real_world/prob"] > 0.3
