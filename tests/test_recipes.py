"""Model presets carry their recipes: resolution order, CLEAR's 7B values, the finetune loop's
schedule, accumulation and LoRA targets, and the precision of reference evaluations."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from peft.tuners.lora import LoraLayer
from torch import nn

from clear_ray.config import Config, FinetuneConfig, LoraConfig, resolve_config
from clear_ray.errors import ConfigError
from clear_ray.models.lora import attach_lora, finetune_targets
from clear_ray.models.presets import LLAVA_LORA_TARGETS, PRESETS
from clear_ray.search.space import scale_lr, space_lines
from clear_ray.train.schedule import lr_factor
from clear_ray.train.supervised import autocast, train_supervised


def test_the_tiny_preset_resolves_to_the_dataclass_defaults() -> None:
    assert resolve_config({}) == Config()
    assert resolve_config({"model.preset": "tiny-llava"}) == Config()


def test_the_7b_preset_resolves_to_clears_recipe() -> None:
    cfg = resolve_config({"model.preset": "llava-1.5-7b"})
    # config/mm/finetune.yaml + mm/finetune.py (3 epochs: the paper's model folder name)
    assert cfg.finetune == FinetuneConfig(
        lr=1e-5,
        epochs=3,
        batch_size=8,
        grad_accum=2,
        weight_decay=0.01,
        warmup_epochs=1.0,
        decay="linear",
        precision="bf16",
        lora_targets="all_linear",
        seed=0,
    )
    # config/mm/forget.yaml
    assert (cfg.train.lr, cfg.train.epochs, cfg.train.precision) == (1e-5, 5, "bf16")
    assert (cfg.train.batch_size, cfg.train.grad_accum, cfg.train.warmup_epochs) == (2, 2, 1.0)
    assert cfg.search.lr_scale == 0.01


def test_the_users_values_win_over_the_recipe() -> None:
    cfg = resolve_config({"model.preset": "llava-1.5-7b", "finetune.lr": "2e-5"})
    assert cfg.finetune.lr == 2e-5
    assert cfg.finetune.epochs == 3  # the rest of the recipe stays


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_recipe_addresses_valid_config_values(name: str) -> None:
    Config().replace(PRESETS[name].recipe)  # raises on an unknown path or a bad value


def test_an_unknown_preset_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown model preset 'nope'"):
        resolve_config({"model.preset": "nope"})


def test_lr_scale_multiplies_the_lr_bounds_only() -> None:
    space = {
        "train.lr": FloatDistribution(1e-4, 1e-2, log=True),
        "method.beta": FloatDistribution(0.01, 1.0, log=True),
    }
    scaled = scale_lr(space, 0.01)
    assert scaled["train.lr"] == FloatDistribution(1e-6, 1e-4, log=True)
    assert scaled["method.beta"] == space["method.beta"]
    grid = scale_lr({"train.lr": CategoricalDistribution([1e-3, 1e-2])}, 0.1)
    assert grid["train.lr"].choices == (1e-4, 1e-3)
    assert scale_lr({"method.beta": space["method.beta"]}, 0.01) == {
        "method.beta": space["method.beta"]
    }


def test_a_non_positive_lr_scale_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"search\.lr_scale must be positive"):
        scale_lr({"train.lr": FloatDistribution(1e-4, 1e-2, log=True)}, 0.0)


def test_space_lines_have_the_yaml_files_form() -> None:
    lines = space_lines(
        {
            "train.lr": FloatDistribution(1e-6, 1e-4, log=True),
            "method.layer_fraction": FloatDistribution(0.0, 0.75),
            "train.epochs": IntDistribution(1, 5),
            "regularizer.l1_targets": CategoricalDistribution(["ab", "b"]),
        }
    )
    assert lines == [
        "train.lr: {distribution: loguniform, low: 1.0e-06, high: 0.0001}",
        "method.layer_fraction: {distribution: uniform, low: 0.0, high: 0.75}",
        "train.epochs: {distribution: int, low: 1, high: 5}",
        "regularizer.l1_targets: {distribution: categorical, choices: [ab, b]}",
    ]


def test_linear_schedule_warms_up_then_decays_as_hf_linear() -> None:
    factor = lr_factor(total=10, warmup=2, decay="linear")
    # warm-up s/2; then (10 - s) / (10 - 2)
    assert [factor(s) for s in (0, 1, 2, 6, 9)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.125])


def test_cosine_schedule_is_half_way_down_at_mid_decay() -> None:
    factor = lr_factor(total=10, warmup=2, decay="cosine")
    assert factor(2) == pytest.approx(1.0)
    assert factor(6) == pytest.approx(0.5)
    assert factor(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8)))


def test_bf16_autocast_is_for_gpus_only() -> None:
    with autocast("bf16", torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


class _Bigram(nn.Module):
    """Next-token logits from the current token: enough to exercise the SFT loop."""

    def __init__(self, vocab: int = 7) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.table = nn.Embedding(vocab, vocab)

    def forward(self, input_ids, attention_mask, use_cache):
        return SimpleNamespace(logits=self.table(input_ids))


class _RowsCollator:
    def encode(self, example: list[int]) -> list[int]:
        return example

    def pad(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor(rows)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def _trained_table(batch_size: int, grad_accum: int, rows: int = 4) -> torch.Tensor:
    from clear_ray.train.deepspeed import engine_config, import_deepspeed
    from clear_ray.train.schedule import lr_scheduler

    model = _Bigram()
    data = [[1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6], [4, 5, 6, 1], [5, 6, 1, 2]][:rows]
    recipe = FinetuneConfig(lr=0.1, epochs=2, batch_size=batch_size, grad_accum=grad_accum)
    engine, *_ = import_deepspeed().initialize(
        model=model,
        model_parameters=list(model.parameters()),
        config=engine_config(batch_size, grad_accum, 0.1, 0.01, zero_stage=0, bf16=False),
        lr_scheduler=lr_scheduler(2, 0, "linear"),  # 2 updates, constant then half
    )
    train_supervised(engine, _RowsCollator(), data, recipe, "test")
    return model.table.weight.detach().clone()


@pytest.mark.slow
def test_accumulating_two_half_batches_is_one_step_on_the_whole_batch(one_rank_group) -> None:
    whole = _trained_table(batch_size=4, grad_accum=1)
    assert torch.allclose(_trained_table(batch_size=2, grad_accum=2), whole, atol=1e-6)
    assert not torch.allclose(_trained_table(batch_size=2, grad_accum=1), whole, atol=1e-4)


@pytest.mark.slow
def test_an_epoch_ends_on_a_short_window_of_its_own(one_rank_group) -> None:
    # 5 rows, batch 3, accumulation 2: one update per epoch, over a window of 2 micro-batches
    # (3 rows and 2 rows) that is averaged as such, the same as one whole batch of 5 rows
    # up to the per-batch token means.
    assert torch.allclose(
        _trained_table(batch_size=3, grad_accum=2, rows=5),
        _trained_table(batch_size=3, grad_accum=4, rows=5),
        atol=1e-6,
    )


@pytest.fixture(scope="module")
def tiny_model():
    from clear_ray.models.tiny import build_tiny_llava, train_tokenizer

    return build_tiny_llava(train_tokenizer(["a photo of a person"] * 4), seed=0)


def _adapted(model: nn.Module, lora_targets: str) -> list[str]:
    targets = finetune_targets(model, lora_targets, LLAVA_LORA_TARGETS)
    peft_model = attach_lora(model, LoraConfig(), targets)
    names = [name for name, m in peft_model.named_modules() if isinstance(m, LoraLayer)]
    peft_model.unload()  # give the module-scoped model back without adapters
    return names


def test_all_linear_lora_adapts_the_vision_tower_and_projector(tiny_model) -> None:
    names = _adapted(tiny_model, "all_linear")
    assert any("vision_tower" in name and name.endswith("q_proj") for name in names)
    assert any("vision_tower" in name and name.endswith("fc1") for name in names)
    assert any(name.endswith("multi_modal_projector.linear_1") for name in names)
    assert any("language_model" in name and name.endswith("down_proj") for name in names)
    assert not any(name.endswith("lm_head") for name in names)


def test_language_model_lora_leaves_the_vision_tower_and_projector_alone(tiny_model) -> None:
    names = _adapted(tiny_model, "language_model")
    assert names and all("language_model" in name for name in names)


@pytest.fixture(scope="module")
def gold_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from clear_ray.data.synthetic import generate
    from clear_ray.models.loading import save_checkpoint
    from clear_ray.models.tiny import build_tiny_llava, build_tiny_processor, train_tokenizer

    root = tmp_path_factory.mktemp("precision")
    tokenizer = train_tokenizer(["Describe the image. A photo of a person in a park."] * 8)
    checkpoint = root / "gold"
    save_checkpoint(build_tiny_llava(tokenizer, 0), build_tiny_processor(tokenizer), checkpoint)
    generate(root / "data", persons=10, seed=0)
    return checkpoint, root / "data"


def test_checkpoints_load_in_the_precision_asked_for(gold_checkpoint) -> None:
    from clear_ray.models.loading import load_checkpoint

    checkpoint, _ = gold_checkpoint
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        model, _ = load_checkpoint(checkpoint, precision)
        assert {p.dtype for p in model.parameters()} == {dtype}


def test_reference_evaluations_are_cached_per_precision(gold_checkpoint) -> None:
    from clear_ray.config import EvalConfig
    from clear_ray.eval.gold import reference_evaluation

    checkpoint, data = gold_checkpoint
    config = EvalConfig(tasks="forget_captions", generate=False)
    fp32 = reference_evaluation(checkpoint, str(data), "forget10", config)
    bf16 = reference_evaluation(checkpoint, str(data), "forget10", config, precision="bf16")
    assert fp32.directory != bf16.directory
    # bf16 rounding moves the per-item NLLs that every forget quality compares against.
    fp32_nll = fp32.reference.tasks["forget_captions"].nll_paraphrased
    bf16_nll = bf16.reference.tasks["forget_captions"].nll_paraphrased
    assert fp32_nll != pytest.approx(bf16_nll, abs=1e-9)


def _dry_run(command: str, cwd: Path, *args: str):
    import os
    import subprocess
    import sys

    hub = cwd.parent / "hub"  # a download would create it
    env = {**os.environ, "HF_HOME": str(hub), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", command, *args, "--dry-run", "--output-dir", "out"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert list(cwd.iterdir()) == [] and not hub.exists()  # nothing generated, trained, written
    return result.stdout


@pytest.fixture
def empty_cwd(tmp_path: Path) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return cwd


def test_tune_dry_run_of_the_7b_command_shows_clears_recipe_and_writes_nothing(
    empty_cwd: Path,
) -> None:
    import yaml

    out = _dry_run("clear_ray.tune", empty_cwd, "--model", "llava-1.5-7b", "--method", "all")
    lines = out.splitlines()
    assert "finetune.lr: 1.0e-05  # preset llava-1.5-7b" in lines
    assert "finetune.decay: linear  # preset llava-1.5-7b" in lines
    assert "train.precision: bf16  # preset llava-1.5-7b" in lines
    headers = [line for line in lines if line.startswith("# search space of ")]
    assert len(headers) == 11
    lr_lines = [line for line in lines if line.startswith("train.lr: {")]
    assert set(lr_lines) == {"train.lr: {distribution: loguniform, low: 1.0e-06, high: 0.0001}"}
    # The configuration part is YAML that gives back the resolved config.
    config_text = "\n".join(lines[: lines.index(headers[0])])
    expected = resolve_config(
        {
            "model.preset": "llava-1.5-7b",
            "method.name": "all",
            "output_dir": str((empty_cwd / "out").resolve()),
        }
    )
    assert Config.from_flat(yaml.safe_load(config_text)) == expected


def test_a_flag_given_on_the_command_line_wins_over_the_recipe(empty_cwd: Path) -> None:
    out = _dry_run("clear_ray.tune", empty_cwd, "--model", "llava-1.5-7b", "--epochs", "3")
    assert "train.epochs: 3" in out.splitlines()  # the recipe's 5, overridden, not annotated


def test_finetune_dry_run_shows_the_recipe_and_writes_nothing(empty_cwd: Path) -> None:
    out = _dry_run("clear_ray.references", empty_cwd, "--model", "llava-1.5-7b", "--lr", "2e-5")
    lines = out.splitlines()
    assert "finetune.lr: 2.0e-05" in lines
    assert "finetune.epochs: 3  # preset llava-1.5-7b" in lines
    assert "finetune.lora_targets: all_linear  # preset llava-1.5-7b" in lines


def test_finetune_dry_run_of_the_tiny_preset_is_the_defaults(empty_cwd: Path) -> None:
    out = _dry_run("clear_ray.references", empty_cwd)
    assert "finetune.lr: 0.003" in out.splitlines()
    assert "# preset" not in out


@pytest.mark.slow  # a tokenizer and one LoRA epoch on the synthetic data
def test_a_lora_finetune_on_all_linear_changes_the_vision_tower_once_merged(
    tmp_path: Path, one_rank_group
) -> None:
    import dataclasses

    from clear_ray.data.clear import load_clear
    from clear_ray.data.collate import row_example
    from clear_ray.data.synthetic import generate
    from clear_ray.models.loading import load_checkpoint, save_checkpoint
    from clear_ray.references.recipes import TrainingSet, finetune, tokenizer_corpus

    source = str(generate(tmp_path / "data", persons=10, seed=0))
    lora_preset = dataclasses.replace(PRESETS["tiny-llava"], finetune_full=False)
    recipe = FinetuneConfig(lr=1e-2, epochs=1, batch_size=16, lora_targets="all_linear")
    examples = [row_example(row) for row in load_clear(source, "full+tofu")]
    data = TrainingSet(examples, recipe, tokenizer_corpus(source), "finetune")
    save_checkpoint(*finetune(lora_preset, data, 2), tmp_path / "original")
    # Same corpus and seed: the weights before training.
    base, _ = lora_preset.build_base(tokenizer_corpus(source), recipe.seed)
    tuned, _ = load_checkpoint(tmp_path / "original")
    name = "model.multi_modal_projector.linear_1.weight"
    before, after = dict(base.named_parameters()), dict(tuned.named_parameters())
    assert not torch.equal(before[name], after[name])  # the merged adapter moved the projector
    tower = [n for n in after if "vision_tower" in n and n.endswith("q_proj.weight")]
    assert tower and all(not torch.equal(before[n], after[n]) for n in tower)
